// Benchmark of the SED training step (src/ml/single-thread-training.ts sedTrainStep): samples/s and GFLOP/s on the
// backend in use, and the same step in PyTorch (Debian python3-torch) when it is installed.
//   node --import tsx bench/train.bench.ts                 step timings (< 60 s)
//   SED_BENCH_DEMO=1 node --import tsx bench/train.bench.ts  demo proxy: the 4 demo configs of
//     params/demo.yaml on real MNIST digits through the seeded demo ViT (time, val acc, disagreement)
//   SED_BENCH_BACKEND=wasm|cpu|auto (default auto), SED_BENCH_TORCH_THREADS (default 2),
//   SED_BENCH_KEEP_HEADS (heads of the keep_inactive_on_cpu step, default 10),
//   SED_BENCH_HEAD_THREADS (1 = never use head threads, 2 = always; default: by head size and cores)
import * as tf from "@tensorflow/tfjs-core";
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { initBackend } from "../src/ml/backend.ts";
import { Rng } from "../src/rng.ts";
import { initHeadArrays, headLogits } from "../src/ml/heads.ts";
import { parseTrainConfig, effectiveLoss, headShapeOf, type TrainConfigInput } from "../src/ml/train-config.ts";
import { trainEnsemble } from "../src/ml/trainer.ts";
import { EnsembleState } from "../src/ml/ensemble-state.ts";
import { sedTrainStep } from "../src/ml/single-thread-training.ts";
import { StepAccumulators } from "../src/ml/epoch-log.ts";
import { headThreadCount } from "../src/ml/head-pool.ts";
import { memoryEvalSource, memoryTrainSource } from "../src/ml/train-sources.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const backend = await initBackend(process.env.SED_BENCH_BACKEND ?? "auto");
const headSettings = { headThreads: process.env.SED_BENCH_HEAD_THREADS ? Number(process.env.SED_BENCH_HEAD_THREADS) : null };
console.log(`backend: ${backend.name} (${backend.reason})`);
const mb = (n: number) => `${(n / 2 ** 20).toFixed(0)} MB`;

function cfgFor(dim: number, hidden: number, classes: number, batch: number, heads = 5, keepInactive = false): ReturnType<typeof parseTrainConfig> {
  return parseTrainConfig({
    name: "bench", n_models: heads, random_select: 2, keep_inactive_on_cpu: keepInactive, embed_dim: dim, mlp_hidden: hidden, num_classes: classes, batch_size: batch,
    eval_batch_size: 256, optimizer: { type: "adamw", lr: 0.001, weight_decay: 0.1 }, lr_scheduler: { type: "cosine", t_max: 15 },
    n_epochs: 11, freeze_first_epoch: true, lambda: 0.5, manual_lambda: 0, use_always_labeled: true, smoothing_eps: 0.5,
  } satisfies TrainConfigInput);
}

/** Matmul FLOPs of one step: per active head 3 forward products and 6 backward ones (dX and dW each). */
function stepFlops(dim: number, hidden: number, classes: number, batch: number, active = 2): number {
  const fwd = 2 * batch * (dim * hidden * 2 + dim * classes);
  return active * 3 * fwd;
}

function torchStep(dim: number, hidden: number, classes: number, batch: number, steps: number): { step_ms: number; torch: string; threads: number } | string {
  const threads = process.env.SED_BENCH_TORCH_THREADS ?? "2";
  const r = spawnSync("/usr/bin/python3", [`${root}bench/train-step.py`, ...[dim, hidden, classes, batch, 5, steps].map(String), threads], {
    env: { ...process.env, OMP_WAIT_POLICY: "PASSIVE" },
    encoding: "utf8",
    timeout: 120_000,
  });
  if (r.error) return `python3 not runnable: ${r.error.message}`;
  if (r.status !== 0) return /No module named 'torch'/.test(r.stderr) ? "python3-torch not installed (apt-get install -y python3-torch)" : `torch run failed: ${r.stderr.trim().split("\n").pop()}`;
  return JSON.parse(r.stdout.trim().split("\n").pop()!);
}

async function stepBench(label: string, dim: number, hidden: number, classes: number, batch: number, steps: number, warmup = 2, heads = 5, keepInactive = false): Promise<void> {
  const cfg = cfgFor(dim, hidden, classes, batch, heads, keepInactive);
  const rng = new Rng(1);
  const st = new EnsembleState(cfg, Array.from({ length: heads }, () => initHeadArrays(headShapeOf(cfg), rng)));
  const x = tf.randomNormal([batch, dim]) as tf.Tensor2D;
  const y = tf.tensor1d(Array.from({ length: batch }, () => rng.int(classes)), "int32");
  const acc = new StepAccumulators();
  const loss = effectiveLoss(cfg);
  const run = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const active = rng.sample(heads, 2).sort((a, b) => a - b);
      await sedTrainStep(st, loss, { x, y, active, ref: rng.int(2), lr: 0.001, update: true }, acc);
    }
    await acc.read(); // one host read: waits for the queued work
  };
  // Warm-up: wasm kernel set-up, JIT and heap growth, until every head has been updated at least once.
  await run(warmup);
  const t0 = performance.now();
  await run(steps);
  const s = (performance.now() - t0) / 1000 / steps;
  const gflops = stepFlops(dim, hidden, classes, batch) / s / 1e9;
  console.log(`${label}: ${(s * 1000).toFixed(1)} ms/step, ${(batch / s).toFixed(0)} samples/s, ${gflops.toFixed(1)} GFLOP/s (matmul FLOPs), rss ${mb(process.memoryUsage().rss)}`);
  let best = s;
  if (headThreadCount(headShapeOf(cfg), heads, 2, headSettings) === 2) {
    // The same steps with the pair on two head threads (one head each, logits traded per step).
    const { ThreadedEnsemble } = await import("../src/ml/threaded-training.ts");
    const trng = new Rng(1);
    const te = await ThreadedEnsemble.start(cfg, Array.from({ length: heads }, () => initHeadArrays(headShapeOf(cfg), trng)));
    const xa = Float32Array.from({ length: batch * dim }, () => trng.normal());
    const ya = Int32Array.from({ length: batch }, () => trng.int(classes));
    const tacc = new StepAccumulators();
    const trun = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const active = trng.sample(heads, 2).sort((a, b) => a - b);
        await te.step({ x: xa, y: ya, rows: batch, active, ref: trng.int(2), lr: 0.001, update: true }, tacc);
      }
    };
    try {
      await trun(warmup);
      const moves0 = te.moves;
      const t1 = performance.now();
      await trun(steps);
      const s2 = (performance.now() - t1) / 1000 / steps;
      best = Math.min(best, s2);
      console.log(`  on 2 head threads: ${(s2 * 1000).toFixed(1)} ms/step, ${(batch / s2).toFixed(0)} samples/s (${te.moves - moves0} of ${steps} steps moved a head between threads), rss ${mb(process.memoryUsage().rss)}`);
    } finally {
      tacc.dispose();
      await te.dispose();
    }
  } else console.log("  head threads: not used here (SED_BENCH_HEAD_THREADS=1, one core, small heads, or a backend other than wasm)");
  if (keepInactive) {
    console.log("  pytorch: not measured for host-kept heads (train-step.py keeps its heads in memory)");
    tf.dispose([x, y]);
    acc.dispose();
    st.dispose();
    return;
  }
  const t = torchStep(dim, hidden, classes, batch, steps);
  if (typeof t === "string") console.log(`  pytorch: ${t}`);
  else console.log(`  pytorch ${t.torch} (${t.threads} threads): ${t.step_ms.toFixed(1)} ms/step; tfjs/torch speed ratio ${(t.step_ms / 1000 / best).toFixed(3)} (the faster sed-pipe figure)`);
  tf.dispose([x, y]);
  acc.dispose();
  st.dispose();
}

async function demoProxy(): Promise<void> {
  // Real MNIST digits 0-7 through the seeded demo ViT (what download + cache-features produce, minus
  // the train-time random crops), then the 4 demo configurations exactly as params/demo.yaml has them.
  const { loadDigit, SIZE } = await import("../src/io/universe/mnist-universe.ts");
  const { seededVitWeights } = await import("../src/ml/vit-checkpoint.ts");
  const { createVit, vitFeatures, disposeVit, parseVitArch } = await import("../src/ml/vit.ts");
  const params = parseYaml(readFileSync(`${root}params/demo.yaml`, "utf8")) as Record<string, any>;
  const arch = parseVitArch(params.featurizer.arch);
  const { mean, std } = params.transforms.eval as { mean: number[]; std: number[] };
  const vit = createVit(seededVitWeights(arch, 0), arch);
  const rng = new Rng(0);
  const imgs: { grey: Float32Array; off: number; y: number }[] = [];
  for (let d = 0; d < 8; d++) {
    const g = loadDigit(d);
    for (let off = 0; off < g.length; off += SIZE * SIZE) imgs.push({ grey: g, off, y: d });
  }
  rng.shuffle(imgs);
  const nVal = Math.round(imgs.length * 0.25);
  const featurize = (set: typeof imgs, noise: number) => {
    const D = arch.embed_dim;
    const out = new Float32Array(set.length * D);
    const nr = new Rng(5);
    for (let s = 0; s < set.length; s += 256) {
      const part = set.slice(s, s + 256);
      const px = new Float32Array(part.length * 3 * SIZE * SIZE);
      part.forEach((im, b) => {
        for (let i = 0; i < SIZE * SIZE; i++) {
          const v = Math.min(1, Math.max(0, im.grey[im.off + i] + noise * nr.normal()));
          for (let c = 0; c < 3; c++) px[((b * 3 + c) * SIZE * SIZE) + i] = (v - mean[c]) / std[c];
        }
      });
      const f = tf.tidy(() => vitFeatures(vit, tf.tensor4d(px, [part.length, 3, SIZE, SIZE])));
      out.set(f.dataSync(), s * D);
      f.dispose();
    }
    return out;
  };
  const val = imgs.slice(0, nVal);
  const train = imgs.slice(nVal);
  const trE = featurize(train, 0);
  const trL = Int32Array.from(train, (i) => i.y);
  const vaE = featurize(val, 0);
  const vaL = Int32Array.from(val, (i) => i.y);
  const shifted = featurize(val, 0.5); // gaussian-noise shift, severity ~5 analogue
  disposeVit(vit);
  const D = arch.embed_dim;
  // two identical "passes" (the real file's passes differ by random crops)
  const tr2E = new Float32Array(trE.length * 2);
  tr2E.set(trE);
  tr2E.set(trE, trE.length);
  const tr2L = new Int32Array(trL.length * 2);
  tr2L.set(trL);
  tr2L.set(trL, trL.length);
  console.log(`demo proxy: ${train.length} train x 2 passes, ${val.length} val, dim ${D}`);
  let total = 0;
  // Tuning knobs: SED_BENCH_ONLY=name[,name] and SED_BENCH_PATCH='{"name": {...overrides}}'.
  const only = process.env.SED_BENCH_ONLY?.split(",");
  const patch = JSON.parse(process.env.SED_BENCH_PATCH ?? "{}") as Record<string, Record<string, unknown>>;
  for (const raw of params.train_configs as { name: string }[]) {
    if (only && !only.includes(raw.name)) continue;
    const cfg = parseTrainConfig({ ...raw, ...(patch[raw.name] ?? {}) }, "params/demo.yaml train_configs");
    const t0 = performance.now();
    const r = await trainEnsemble(cfg, memoryTrainSource(tr2E, tr2L, D, 2), memoryEvalSource(vaE, vaL, D), { settings: headSettings });
    const secs = (performance.now() - t0) / 1000;
    total += secs;
    // disagreement on shifted vs clean val: fraction of samples where heads' argmaxes are not all equal
    const disagree = (e: Float32Array) =>
      tf.tidy(() => {
        const x = tf.tensor2d(e, [e.length / D, D]);
        const preds = r.heads.map((h) => {
          const { headTensorsFromArrays } = heads;
          return tf.argMax(headLogits(headTensorsFromArrays(h, headShapeOf(cfg)), x, headShapeOf(cfg)), -1);
        });
        const st = tf.stack(preds);
        const allSame = tf.all(tf.equal(st, tf.max(st, 0)), 0);
        return 1 - tf.mean(tf.cast(allSame, "float32")).dataSync()[0];
      });
    const last = r.rows[r.rows.length - 1];
    if (patch[raw.name]) console.log(`  ${cfg.name} patched with ${JSON.stringify(patch[raw.name])}`);
    console.log(
      `  ${cfg.name}: ${secs.toFixed(1)} s, val acc mean ${last.val_acc_mean.toFixed(3)} (min ${last.val_acc_min.toFixed(3)}), ` +
        `ensemble ${last.val_ensemble_acc.toFixed(3)}, heads disagree on ${(100 * disagree(vaE)).toFixed(1)}% clean / ${(100 * disagree(shifted)).toFixed(1)}% noisy val`,
    );
  }
  console.log(`demo proxy total training time: ${total.toFixed(1)} s, rss ${mb(process.memoryUsage().rss)}`);
}
import * as heads from "../src/ml/heads.ts";

if (process.env.SED_BENCH_DEMO === "1") {
  await demoProxy();
} else {
  // Steady state: a 2-step warm-up left the demo figure ~1.7x above its value after 20 steps.
  await stepBench("ood_gen step at demo sizes (192/384/8, batch 32)", 192, 384, 8, 32, 300, 30);
  await stepBench("ood_gen step at paper sizes (768/3072/1000, batch 32)", 768, 3072, 1000, 32, 30, 6);
  await stepBench("paper sizes, batch 256", 768, 3072, 1000, 256, 16, 4);
  // The 50_models layout (keep_inactive_on_cpu: heads on the host, the pair uploaded per step); the
  // step cost does not depend on how many heads wait on the host, so 10 stand in for 50 unless
  // SED_BENCH_KEEP_HEADS=50 (then the rss figures show the whole ensemble's footprint).
  const keepHeads = Number(process.env.SED_BENCH_KEEP_HEADS ?? 10);
  await stepBench(`paper sizes, batch 32, keep_inactive_on_cpu (${keepHeads} heads)`, 768, 3072, 1000, 32, 12, 4, keepHeads, true);
}
