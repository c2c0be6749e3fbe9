// Head threads (src/ml/head-pool.ts): the threaded evaluator and the two-thread trainer compute
// exactly what the single-thread code computes on the same backend with one OpenBLAS thread.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
const { initBackend } = await import("../../../src/ml/backend.ts");
const { initHeadArrays } = await import("../../../src/ml/heads.ts");
const { EnsembleEvaluator, ThreadedEvaluator } = await import("../../../src/ml/eval.ts");
const { HeadPool, MIN_POOLED_HEAD, headThreadCount } = await import("../../../src/ml/head-pool.ts");
const { Rng } = await import("../../../src/rng.ts");
import type { EnsembleArrays, HeadShape } from "../../../src/ml/heads.ts";
import { requires } from "../../helpers/skip.ts";

// One OpenBLAS thread here, as on each head thread: the bits the threads must reproduce.
const backend = await initBackend("wasm", { blasThreads: 1 });
const shape: HeadShape = { dim: 16, hidden: 48, classes: 10 };

test("headThreadCount: forced counts win (capped by most and heads); otherwise big heads on wasm get the cores", async () => {
  const big: HeadShape = { dim: 1024, hidden: MIN_POOLED_HEAD / 1024, classes: 10 };
  assert.is(headThreadCount(shape, 5, 2, { cores: 1, headThreads: 2 }), 2, "forced: any head size, any cores");
  assert.is(headThreadCount(shape, 5, 2, { headThreads: 4 }), 2, "forced, capped by most");
  assert.is(headThreadCount(shape, 3, Infinity, { headThreads: 8 }), 3, "forced, capped by heads");
  assert.is(headThreadCount(big, 5, 2, { cores: 4, headThreads: 1 }), 1, "1 = never");
  assert.is(headThreadCount(shape, 5, 2, { cores: 4, headThreads: null }), 1, "small heads stay on the stage's thread");
  assert.is(headThreadCount(big, 5, 2, { cores: 4, headThreads: null }), 2, "big heads: the cores, capped by most");
  assert.is(headThreadCount(big, 6, Infinity, { cores: 3 }), 3, "big heads: the cores");
  assert.is(headThreadCount(big, 2, Infinity, { cores: 3 }), 2, "big heads: no more threads than heads");
  assert.is(headThreadCount(big, 5, 2, { cores: 1 }), 1, "one core: no head threads");
  for (const bad of [{ headThreads: 0 }, { headThreads: 1.5 }, { cores: 0 }]) {
    assert.throws(() => headThreadCount(big, 5, 2, bad), /must be a positive integer/, JSON.stringify(bad));
  }
  await import("@tensorflow/tfjs-backend-cpu");
  await tf.setBackend("cpu");
  try {
    assert.is(headThreadCount(big, 5, 2, { cores: 4 }), 1, "not on the cpu backend unless forced");
  } finally {
    await tf.setBackend("wasm");
  }
});

function ensemble(m: number, seed: number): EnsembleArrays {
  const rng = new Rng(seed);
  const heads = Array.from({ length: m }, () => {
    const h = initHeadArrays(shape, rng);
    h["head.weight"] = h["head.weight"].map(() => rng.normal());
    h.gamma_2 = h.gamma_2.map(() => rng.normal() * 0.3);
    return h;
  });
  return { shape, heads };
}

function rows(n: number, seed: number): { x: Float32Array; y: Int32Array } {
  const rng = new Rng(seed);
  return { x: Float32Array.from({ length: n * shape.dim }, () => rng.normal()), y: Int32Array.from({ length: n }, () => rng.int(shape.classes)) };
}

const evalVariants: [string, { quirks: boolean; subset: Int32Array | null }][] = [
  ["plain", { quirks: false, subset: null }],
  ["reference_quirks", { quirks: true, subset: null }],
  ["class subset (masked votes)", { quirks: false, subset: Int32Array.from([1, 3, 4, 8]) }],
];
for (const [variant, opts] of evalVariants) test(`threaded eval = single-thread eval, bit for bit (${backend.name}; ${variant}; 2 and 3 threads, ragged last chunk, soup)`, async () => {
  const e = ensemble(5, 1);
  const total = 37;
  const { x, y: yAll } = rows(total, 2);
  // A subset's labels index the subset's classes.
  const y = opts.subset ? yAll.map((v) => v % opts.subset!.length) : yAll;
  const cfg = { batchSize: 8, soup: true, ...opts };
  const chunk = 16;
  const single = new EnsembleEvaluator(e, total, cfg);
  for (let s = 0; s < total; s += chunk) {
    const c = Math.min(chunk, total - s);
    await single.addBatch(x.subarray(s * shape.dim), y.subarray(s, s + c), c);
  }
  const want = single.summary();
  single.dispose();
  const tensorsBefore = tf.memory().numTensors;
  for (const threads of [2, 3]) {
    const ev = await ThreadedEvaluator.start(e, total, cfg, threads, chunk);
    try {
      for (let s = 0; s < total; s += chunk) {
        const c = Math.min(chunk, total - s);
        await ev.addBatch(x.subarray(s * shape.dim), y.subarray(s, s + c), c);
      }
      const got = await ev.summary();
      assert.equal(got, want, `${threads} threads: summary`);
      for (const [name, v] of Object.entries(single.scores)) {
        assert.equal(Array.from(ev.scores[name as keyof typeof single.scores]), Array.from(v), `${threads} threads: score ${name}`);
      }
    } finally {
      await ev.dispose();
    }
  }
  assert.is(tf.memory().numTensors, tensorsBefore, "no tensors left on this thread");
});

const { parseTrainConfig } = await import("../../../src/ml/train-config.ts");
const { trainEnsemble } = await import("../../../src/ml/trainer.ts");
const { memoryTrainSource, memoryEvalSource } = await import("../../../src/ml/train-sources.ts");

function trainData(n: number, seed: number) {
  const rng = new Rng(seed);
  // Learnable labels: the class is the argmax of the first `classes` features.
  const x = Float32Array.from({ length: n * shape.dim }, () => rng.normal());
  const y = Int32Array.from({ length: n }, (_, i) => {
    let best = 0;
    for (let c = 1; c < shape.classes; c++) if (x[i * shape.dim + c] > x[i * shape.dim + best]) best = c;
    return best;
  });
  return { x, y };
}

async function trainWith(threads: number, over: Record<string, unknown>) {
  const cfg = parseTrainConfig({
    name: "t", n_models: 5, random_select: 2, embed_dim: shape.dim, mlp_hidden: shape.hidden, num_classes: shape.classes,
    batch_size: 16, eval_batch_size: 32, optimizer: { type: "adamw", lr: 0.003, weight_decay: 0.05 },
    lr_scheduler: { type: "cosine", t_max: 15 }, n_epochs: 3, freeze_first_epoch: true, lambda: 0.5, manual_lambda: 1,
    use_always_labeled: true, smoothing_eps: 0.1, ...over,
  });
  const tr = trainData(96, 5);
  const va = trainData(40, 6);
  const logs: string[] = [];
  const settings = { headThreads: threads };
  return { ...(await trainEnsemble(cfg, memoryTrainSource(tr.x, tr.y, shape.dim), memoryEvalSource(va.x, va.y, shape.dim), { log: (l) => logs.push(l), settings })), logs };
}

const variants: [string, Record<string, unknown>, boolean][] = [
  ["AdamW, A2D repulsion, heads on the threads", {}, true],
  ["SGD with momentum and the NaN check", { optimizer: { type: "sgd", lr: 0.05, momentum: 0.9, weight_decay: 0.0005, nan_check: true } }, true],
  // Host-kept heads: the val loss sums in another order on the single-thread path (heads outer).
  ["keep_inactive_on_cpu", { keep_inactive_on_cpu: true }, false],
];
for (const [name, over, sameLosses] of variants) {
  test(`two-thread training = single-thread training, bit for bit: ${name}`, async () => {
    const before = tf.memory().numTensors;
    const one = await trainWith(1, over);
    const two = await trainWith(2, over);
    assert.ok(two.logs.some((l) => /2 head threads/.test(l)), "the threaded path ran");
    assert.not.ok(one.logs.some((l) => /head threads/.test(l)), "the single-thread path ran");
    one.heads.forEach((h, i) => {
      for (const [k, v] of Object.entries(h)) assert.ok(Buffer.from(v.buffer, v.byteOffset, v.byteLength).equals(Buffer.from(two.heads[i][k as keyof typeof h].buffer, two.heads[i][k as keyof typeof h].byteOffset, v.byteLength)), `head ${i} ${k}`);
    });
    const strip = (rows: typeof one.rows, all: boolean) =>
      rows.map(({ walltime_s: _w, ...r }) => (all ? r : { ...r, val_task_loss: 0, val_repulsion_loss: 0, val_total_loss: 0 }));
    assert.equal(strip(two.rows, sameLosses), strip(one.rows, sameLosses));
    assert.ok(one.rows[2].val_acc_mean > one.rows[0].val_acc_mean, "it learned something (the comparison is not between two no-ops)");
    assert.is(tf.memory().numTensors, before, "no tensors left on this thread");
  });
}

async function rejects(fn: () => Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await fn();
  } catch (err) {
    assert.match((err as Error).message, re);
    return;
  }
  assert.unreachable(`expected a rejection matching ${re}`);
}

test("a thread's error reaches the caller with its message; the pool closes", async () => {
  const pool = await HeadPool.start(2, shape);
  try {
    await rejects(() => pool.put(1, 0, { params: new Float32Array(3), slots: {} }), /head thread 1: put: head 0 has 3 values, expected/);
    await rejects(() => pool.take(0, 7, true), /head 7 is not on this thread/);
  } finally {
    await pool.close();
  }
  await rejects(async () => pool.drop(0, 0), /closed/);
});

const { loadBlasAddon, setBlasThreads } = await import("../../../src/ml/wasm-blas.ts");
const loaded = loadBlasAddon();
const withBlas = requires("blas-addon", () => ("blas" in loaded ? true : `@sed-pipe/blas not loaded: ${loaded.error}`));

withBlas.test("the pool runs OpenBLAS at one thread while open and gives the caller's count back on close", async () => {
  if (!("blas" in loaded)) throw new Error("unreachable: registered only with the addon");
  setBlasThreads(2);
  try {
    const pool = await HeadPool.start(2, shape);
    assert.is(loaded.blas.numThreads(), 1, "one OpenBLAS thread per head thread");
    await pool.close();
    assert.is(loaded.blas.numThreads(), 2, "restored, not the threads' 1");
  } finally {
    setBlasThreads(1);
  }
});

test.run();
