// `npm run bench -- gpu`: sed-pipe on the webgpu backend, and PyTorch on the same machine where
// python3 has torch (CUDA when it has a GPU), in one run:
//   - DeiT-3 Base forward img/s at batch 64 / 128 / 256 (PyTorch: timm-free forward_features of the
//     same architecture, fp32 with TF32 off, and with TF32 on)
//   - the SED training step (ood_gen config: 5 heads of 768/3072/1000, 2 active, AdamW) at batch 32
//     and 256, and a 50-head SGD step (momentum, NaN check)
//   - 50-head eval with soup and every score, samples/s
// On a software adapter (Mesa llvmpipe: this project's CPU machines and CI) it runs the same code at
// small sizes and says so: those figures check the path, they are not GPU figures. Sizes by env:
// SED_GPU_SIZES=paper|small (default: paper on a hardware adapter), SED_GPU_ROUNDS (timed rounds).
// bench/gpu/prepare.sh packs this bench for a machine without Node (see gpu-notes).
import * as tf from "@tensorflow/tfjs-core";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { initBackend } from "../src/ml/backend.ts";
import { createVit, disposeVit, featurizeBatch, DEIT3_BASE_ARCH, type VitArch } from "../src/ml/vit.ts";
import { seededVitWeights } from "../src/ml/vit-checkpoint.ts";
import { initHeadArrays, type EnsembleArrays, type HeadShape } from "../src/ml/heads.ts";
import { parseTrainConfig, effectiveLoss, headShapeOf } from "../src/ml/train-config.ts";
import { EnsembleState } from "../src/ml/ensemble-state.ts";
import { sedTrainStep } from "../src/ml/single-thread-training.ts";
import { StepAccumulators } from "../src/ml/epoch-log.ts";
import { EnsembleEvaluator, forwardRows } from "../src/ml/eval.ts";
import { Rng } from "../src/rng.ts";

const HERE = process.env.SED_GPU_BENCH_DIR ?? fileURLToPath(new URL(".", import.meta.url));
const backend = await initBackend("webgpu").catch((err: unknown) => {
  console.log(`SKIP gpu bench: ${(err as Error).message}`);
  process.exit(0);
});
const software = /software/.test(backend.reason);
const paper = (process.env.SED_GPU_SIZES ?? (software ? "small" : "paper")) === "paper";
const ROUNDS = Number(process.env.SED_GPU_ROUNDS ?? (paper ? 10 : 2));
console.log(`backend: ${backend.name} (${backend.reason})`);
if (software) console.log("SOFTWARE ADAPTER: the figures below check the GPU code path at small sizes; they are not GPU figures");

const vitArch: VitArch = paper ? DEIT3_BASE_ARCH : { ...DEIT3_BASE_ARCH, image_size: 32, embed_dim: 64, depth: 2, num_heads: 4 };
const head: HeadShape = paper ? { dim: 768, hidden: 3072, classes: 1000, eps: 1e-6 } : { dim: 64, hidden: 128, classes: 50, eps: 1e-6 };
const results: Record<string, number> = {};

// 1. ViT forward
for (const batch of paper ? [64, 128, 256] : [8]) {
  const m = createVit(seededVitWeights(vitArch, 0), vitArch);
  const px = new Float32Array(batch * 3 * vitArch.image_size ** 2).map((_, i) => Math.sin(i * 0.001));
  await featurizeBatch(m, px, batch);
  const t = performance.now();
  for (let r = 0; r < ROUNDS; r++) await featurizeBatch(m, px, batch);
  const s = (performance.now() - t) / 1000;
  results[`vit_img_s_b${batch}`] = (ROUNDS * batch) / s;
  console.log(`${paper ? "DeiT-3 Base" : "small ViT"} forward, batch ${batch}: ${((ROUNDS * batch) / s).toFixed(1)} img/s`);
  disposeVit(m);
}

// 2. SED steps
async function stepMs(label: string, heads: number, batch: number, optimizer: Record<string, unknown>, keepInactive = false): Promise<void> {
  const cfg = parseTrainConfig({
    name: "gpu", n_models: heads, random_select: 2, keep_inactive_on_cpu: keepInactive, embed_dim: head.dim, mlp_hidden: head.hidden, num_classes: head.classes,
    batch_size: batch, eval_batch_size: 256, optimizer, lr_scheduler: { type: "cosine", t_max: 15 }, n_epochs: 10, freeze_first_epoch: false,
    lambda: 0.5, manual_lambda: 0, use_always_labeled: true, smoothing_eps: 0.5,
  });
  const rng = new Rng(1);
  const st = new EnsembleState(cfg, Array.from({ length: heads }, () => initHeadArrays(headShapeOf(cfg), rng)));
  const acc = new StepAccumulators();
  const x = tf.randomNormal([batch, head.dim], 0, 1, "float32", 3) as tf.Tensor2D;
  const y = tf.tensor1d(Array.from({ length: batch }, () => rng.int(head.classes)), "int32");
  const run = async (n: number) => {
    for (let i = 0; i < n; i++) {
      const active = rng.sample(heads, 2).sort((a, b) => a - b);
      await sedTrainStep(st, effectiveLoss(cfg), { x, y, active, ref: 0, lr: 0.001, update: true }, acc);
    }
    await acc.read();
  };
  await run(2);
  const t = performance.now();
  await run(ROUNDS);
  const ms = (performance.now() - t) / ROUNDS;
  results[label] = ms;
  console.log(`SED step, ${label}: ${ms.toFixed(2)} ms`);
  tf.dispose([x, y]);
  st.dispose();
  acc.dispose();
}
const adamw = { type: "adamw", lr: 0.001, weight_decay: 0.1 };
const sgd = { type: "sgd", lr: 0.05, momentum: 0.9, weight_decay: 0.0005, nan_check: true };
await stepMs("ood_gen_b32", 5, 32, adamw);
if (paper) await stepMs("ood_gen_b256", 5, 256, adamw);
await stepMs("50_heads_sgd_b16", paper ? 50 : 6, 16, sgd, true);

// 3. 50-head eval with soup and every score
{
  const M = paper ? 50 : 6;
  const rows = paper ? 8192 : 256;
  const rng = new Rng(2);
  const ens: EnsembleArrays = { shape: head, heads: Array.from({ length: M }, () => initHeadArrays(head, rng)) };
  const x = Float32Array.from({ length: rows * head.dim }, () => rng.normal());
  const y = Int32Array.from({ length: rows }, () => rng.int(head.classes));
  const chunk = forwardRows(256);
  const ev = new EnsembleEvaluator(ens, rows, { batchSize: 256, quirks: false, subset: null, soup: true });
  const t = performance.now();
  for (let s = 0; s < rows; s += chunk) {
    const c = Math.min(chunk, rows - s);
    await ev.addBatch(x.subarray(s * head.dim, (s + c) * head.dim), y.subarray(s, s + c), c);
  }
  ev.summary();
  const sps = rows / ((performance.now() - t) / 1000);
  ev.dispose();
  results.eval_samples_s = sps;
  console.log(`eval, ${M} heads + soup + scores, ${rows} rows: ${sps.toFixed(0)} samples/s`);
}
console.log(`tensors left: ${tf.memory().numTensors}`);

// 4. PyTorch on the same machine, same sizes.
const py = process.env.SED_GPU_PYTHON ?? "python3";
const args = [`${HERE}gpu-torch.py`, paper ? "paper" : "small", String(ROUNDS)];
const r = spawnSync(py, args, { encoding: "utf8", timeout: 600_000 });
if (r.error || r.status !== 0) {
  console.log(`PyTorch: not run (${r.error?.message ?? r.stderr.trim().split("\n").pop()})`);
} else {
  const torch = JSON.parse(r.stdout.trim().split("\n").pop()!) as Record<string, number | string>;
  console.log(`PyTorch ${torch.torch} on ${torch.device}:`);
  for (const [k, v] of Object.entries(torch)) {
    if (typeof v !== "number") continue;
    const ours = results[k.replace(/_tf32$/, "")];
    // img/s and samples/s: higher is better; ms: lower is better.
    const ratio = ours === undefined ? "" : k.endsWith("_s") || k.includes("_s_") ? ` (sed-pipe ${(ours / v).toFixed(2)}x)` : ` (sed-pipe ${(v / ours).toFixed(2)}x)`;
    console.log(`  ${k}: ${v.toFixed(2)}${ratio}`);
  }
}
console.log(`RESULTS ${JSON.stringify({ backend: backend.reason, paper, results })}`);
