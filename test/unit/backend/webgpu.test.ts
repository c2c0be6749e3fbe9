// The webgpu backend (Dawn through the npm `webgpu` package) against the cpu backend, at small sizes:
// a ViT forward, head forward/backward, SED training steps with each optimizer (SGD with the NaN
// check included), the 50-head layout (kept resident on a GPU), eval with all scores; no tensor leaks.
// Here and in CI the adapter is Mesa's llvmpipe through EGL (Debian: libegl1 libegl-mesa0
// libgl1-mesa-dri); where no adapter loads, every test is a skip with the reason.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { requires } from "../../helpers/skip.ts";
import { initBackend } from "../../../src/ml/backend.ts";
import { createVit, disposeVit, featurizeBatch, type VitArch } from "../../../src/ml/vit.ts";
import { seededVitWeights } from "../../../src/ml/vit-checkpoint.ts";
import { HEAD_PARAM_NAMES, headForwardCached, headBackward, headTensorsFromArrays, initHeadArrays, type EnsembleArrays } from "../../../src/ml/heads.ts";
import { parseTrainConfig, effectiveLoss, headShapeOf, type TrainConfigInput } from "../../../src/ml/train-config.ts";
import { EnsembleState } from "../../../src/ml/ensemble-state.ts";
import { sedTrainStep } from "../../../src/ml/single-thread-training.ts";
import { StepAccumulators } from "../../../src/ml/epoch-log.ts";
import { EnsembleEvaluator } from "../../../src/ml/eval.ts";
import { Rng } from "../../../src/rng.ts";
import { clusters } from "../train/synthetic.ts";

const REPO = fileURLToPath(new URL("../../..", import.meta.url));

/** Any WebGPU adapter (a software one is fine for these tests), asked in a child process. */
const adapter = requires("webgpu-adapter", () => {
  const probe = `const { probeAdapters } = await import(${JSON.stringify(`${REPO}src/ml/webgpu.ts`)}); const r = await probeAdapters(); console.log(JSON.stringify(r)); process.exit(0);`;
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", probe], { cwd: REPO, encoding: "utf8", timeout: 60_000 });
  const line = r.stdout.trim().split("\n").pop() ?? "";
  if (r.status !== 0 || !line.startsWith("{")) return (r.stderr.trim().split("\n").pop() ?? `probe exited ${r.status}`) || "the probe printed nothing";
  const p = JSON.parse(line) as { adapters: unknown[]; failures: string[] };
  return p.adapters.length > 0 ? true : `no WebGPU adapter (${p.failures.join("; ")}); on Debian: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri`;
});

const TOL = 1e-4;

/** Largest |a - b| over the largest |b| (errors relative to the values' scale); NaN must meet NaN. */
function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.is(a.length, b.length, "lengths");
  let d = 0;
  let m = 1e-6;
  for (let i = 0; i < a.length; i++) {
    if (Number.isNaN(a[i]!) || Number.isNaN(b[i]!)) {
      if (Number.isNaN(a[i]!) !== Number.isNaN(b[i]!)) return Infinity;
      continue;
    }
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

/** Runs `fn` on the cpu backend, then on webgpu; returns both results and checks webgpu leaks nothing. */
async function both<T>(fn: () => Promise<T>): Promise<{ cpu: T; gpu: T }> {
  await initBackend("cpu");
  const cpu = await fn();
  await initBackend("webgpu");
  assert.is(tf.getBackend(), "webgpu");
  const before = tf.memory().numTensors;
  const gpu = await fn();
  assert.is(tf.memory().numTensors, before, "no tensor leaks on webgpu");
  return { cpu, gpu };
}

const ARCH: VitArch = { image_size: 16, patch_size: 4, in_chans: 3, embed_dim: 32, depth: 2, num_heads: 4, mlp_ratio: 2, layerscale_init: 0.1 };

adapter.test("ViT forward: the same features as the cpu backend", async () => {
  const w = seededVitWeights(ARCH, 7);
  const px = Float32Array.from({ length: 4 * 3 * 16 * 16 }, (_, i) => Math.sin(i * 0.37));
  const r = await both(async () => {
    const m = createVit(w, ARCH);
    try {
      return await featurizeBatch(m, px, 4);
    } finally {
      disposeVit(m);
    }
  });
  assert.ok(relErr(r.gpu, r.cpu) < TOL, `rel err ${relErr(r.gpu, r.cpu)}`);
});

const SHAPE = { dim: 12, hidden: 24, classes: 5, lnEps: 1e-6 };

adapter.test("head forward and backward: logits and every gradient as on the cpu backend", async () => {
  const h = initHeadArrays(SHAPE, new Rng(3));
  const x = Float32Array.from({ length: 8 * SHAPE.dim }, (_, i) => Math.cos(i));
  const dl = Float32Array.from({ length: 8 * SHAPE.classes }, (_, i) => Math.sin(i) / 8);
  const r = await both(async () => {
    const p = headTensorsFromArrays(h, SHAPE);
    const xt = tf.tensor2d(x, [8, SHAPE.dim]);
    const d = tf.tensor2d(dl, [8, SHAPE.classes]);
    try {
      const out = tf.tidy(() => {
        const f = headForwardCached(p, xt, SHAPE);
        const g = headBackward(p, f.cache, d);
        return [f.logits, ...HEAD_PARAM_NAMES.map((k) => g[k])];
      });
      const vals = await Promise.all(out.map((t) => t.data()));
      tf.dispose(out);
      return vals.map((v) => Array.from(v));
    } finally {
      tf.dispose([xt, d, ...Object.values(p)]);
    }
  });
  r.gpu.forEach((v, i) => assert.ok(relErr(v, r.cpu[i]!) < TOL, `output ${i}: rel err ${relErr(v, r.cpu[i]!)}`));
});

function cfgOf(over: Partial<TrainConfigInput> = {}) {
  return parseTrainConfig({
    name: "g", n_models: 4, random_select: 2, embed_dim: SHAPE.dim, mlp_hidden: SHAPE.hidden, num_classes: SHAPE.classes, batch_size: 8, eval_batch_size: 16,
    optimizer: { type: "adamw", lr: 0.01, weight_decay: 0.1 }, lr_scheduler: { type: "cosine", t_max: 15 }, n_epochs: 3,
    freeze_first_epoch: false, lambda: null, patch_diversity_lambda: 0.5, manual_lambda: 5, use_always_labeled: true, smoothing_eps: 0.5,
    ...over,
  });
}

for (const [label, over] of [
  ["AdamW", {}],
  ["SGD with the NaN check", { optimizer: { type: "sgd", lr: 0.05, momentum: 0.9, weight_decay: 1e-4, nan_check: true } }],
  ["SGD, the 50-head layout (keep_inactive_on_cpu: resident on a GPU)", { n_models: 6, keep_inactive_on_cpu: true, optimizer: { type: "sgd", lr: 0.05, momentum: 0.9, weight_decay: 1e-4, nan_check: true } }],
] as [string, Partial<TrainConfigInput>][]) {
  adapter.test(`SED steps (${label}): weights, optimizer state and loss parts as on the cpu backend`, async () => {
    const cfg = cfgOf(over);
    const data = clusters(8, SHAPE.dim, SHAPE.classes, 1);
    const bad = data.embed.slice();
    bad[5] = NaN;
    const r = await both(async () => {
      const st = new EnsembleState(cfg, Array.from({ length: cfg.n_models }, (_, i) => initHeadArrays(headShapeOf(cfg), new Rng(i))));
      const acc = new StepAccumulators();
      try {
        for (const [i, active] of [[0, 1], [2, 3], [1, 2], [0, 3]].entries()) {
          const x = tf.tensor2d(i === 2 && cfg.optimizer.type === "sgd" ? bad : data.embed, [8, SHAPE.dim]);
          const y = tf.tensor1d(data.label, "int32");
          await sedTrainStep(st, effectiveLoss(cfg), { x, y, active: active!, ref: 0, lr: 0.05, update: true }, acc);
          tf.dispose([x, y]);
        }
        const snap = await st.snapshot();
        return { means: await acc.read(), heads: snap.heads.map((h) => HEAD_PARAM_NAMES.map((k) => Array.from(h[k]))), slots: snap.slots.map((s) => Object.values(s).map((h) => HEAD_PARAM_NAMES.map((k) => Array.from(h[k])))) };
      } finally {
        st.dispose();
        acc.dispose();
      }
    });
    if (cfg.optimizer.type === "sgd") assert.is(r.gpu.means.skipped, 1, "the NaN step was skipped on webgpu too");
    for (const k of ["task", "repulsion", "total"] as const) assert.ok(relErr([r.gpu.means[k]], [r.cpu.means[k]]) < TOL, `${k}: ${r.gpu.means[k]} vs ${r.cpu.means[k]}`);
    r.gpu.heads.forEach((h, i) => h.forEach((p, j) => assert.ok(relErr(p, r.cpu.heads[i]![j]!) < TOL, `head ${i} param ${HEAD_PARAM_NAMES[j]}: ${relErr(p, r.cpu.heads[i]![j]!)}`)));
    r.gpu.slots.forEach((s, i) => s.forEach((slot, j) => slot.forEach((p, k) => assert.ok(relErr(p, r.cpu.slots[i]![j]![k]!) < TOL, `head ${i} slot ${j} param ${k}`))));
  });
}

adapter.test("eval: accuracies, diversity and every per-sample score as on the cpu backend", async () => {
  const e: EnsembleArrays = { shape: SHAPE, heads: [0, 1, 2].map((i) => initHeadArrays(SHAPE, new Rng(10 + i))) };
  const { embed, label } = clusters(40, SHAPE.dim, SHAPE.classes, 4);
  const r = await both(async () => {
    const ev = new EnsembleEvaluator(e, 40, { batchSize: 16, quirks: false, subset: null, soup: true });
    try {
      for (let s = 0; s < 40; s += 16) {
        const c = Math.min(16, 40 - s);
        await ev.addBatch(embed.subarray(s * SHAPE.dim, (s + c) * SHAPE.dim), label.subarray(s, s + c), c);
      }
      return { sum: ev.summary(), scores: Object.fromEntries(Object.entries(ev.scores).map(([k, v]) => [k, Array.from(v)])) };
    } finally {
      ev.dispose();
    }
  });
  assert.equal(r.gpu.sum.accuracy, r.cpu.sum.accuracy);
  for (const [k, v] of Object.entries(r.cpu.sum.diversity)) assert.ok(relErr([r.gpu.sum.diversity[k as keyof typeof r.cpu.sum.diversity]], [v]) < TOL, k);
  for (const [k, v] of Object.entries(r.cpu.scores)) assert.ok(relErr(r.gpu.scores[k]!, v) < TOL, `${k}: ${relErr(r.gpu.scores[k]!, v)}`);
});

test.run();
