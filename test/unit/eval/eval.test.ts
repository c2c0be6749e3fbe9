import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../../../src/ml/backend.ts";
import { initHeadArrays, headLogits, headTensorsFromArrays, type EnsembleArrays, type HeadShape } from "../../../src/ml/heads.ts";
import { EnsembleEvaluator, forwardRows, soupArrays } from "../../../src/ml/eval.ts";
import { InputError } from "../../../src/errors.ts";
import { Rng } from "../../../src/rng.ts";

/** Like assert.throws, for a promise: it must reject with an error matching `want`. */
async function rejects(p: Promise<unknown>, want: RegExp | ((err: unknown) => boolean)): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.ok(want instanceof RegExp ? want.test((err as Error).message) : want(err), `rejected with: ${(err as Error).message}`);
    return;
  }
  assert.unreachable("expected a rejection");
}

const shape: HeadShape = { dim: 6, hidden: 12, classes: 4 };

function ensemble(m: number, seed: number): EnsembleArrays {
  const rng = new Rng(seed);
  const heads = Array.from({ length: m }, () => {
    const h = initHeadArrays(shape, rng);
    // make heads opinionated: larger output weights
    h["head.weight"] = h["head.weight"].map(() => rng.normal());
    return h;
  });
  return { shape, heads };
}

function rows(n: number, seed: number): { x: Float32Array; y: Int32Array } {
  const rng = new Rng(seed);
  return { x: Float32Array.from({ length: n * shape.dim }, () => rng.normal()), y: Int32Array.from({ length: n }, () => Math.floor(rng.next() * shape.classes)) };
}

test("soup = parameter mean over heads", () => {
  const e = ensemble(3, 1);
  const s = soupArrays(e.heads);
  for (const k of ["mlp.fc1.weight", "head.bias", "gamma_2"] as const) {
    for (let i = 0; i < s[k].length; i += 7) {
      const m = (e.heads[0][k][i] + e.heads[1][k][i] + e.heads[2][k][i]) / 3;
      assert.ok(Math.abs(s[k][i] - m) < 1e-6);
    }
  }
});

test("accuracies match a direct forward; batching does not change accuracy; no tensor leaks", async () => {
  await initBackend("cpu");
  const e = ensemble(3, 2);
  const { x, y } = rows(50, 3);
  // direct: mean of logits, argmax
  const ps = e.heads.map((h) => headTensorsFromArrays(h, shape));
  const xt = tf.tensor2d(x, [50, shape.dim]);
  const mean = tf.tidy(() => tf.div(tf.addN(ps.map((p) => headLogits(p, xt, shape))), 3));
  const pred = (await tf.argMax(mean, 1).data()) as Int32Array;
  const expected = pred.reduce((n, p, i) => n + (p === y[i] ? 1 : 0), 0) / 50;
  mean.dispose();
  xt.dispose();
  ps.forEach((p) => Object.values(p).forEach((t) => t.dispose()));

  const before = tf.memory().numTensors;
  for (const bs of [7, 50]) {
    const ev = new EnsembleEvaluator(e, 50, { batchSize: bs, quirks: false, subset: null, soup: true });
    for (let s = 0; s < 50; s += bs) {
      const c = Math.min(bs, 50 - s);
      await ev.addBatch(x.subarray(s * shape.dim, (s + c) * shape.dim), y.subarray(s, s + c), c);
    }
    const sum = ev.summary();
    assert.ok(Math.abs(sum.accuracy.ensemble - expected) < 1e-12, `batch ${bs}: ${sum.accuracy.ensemble} vs ${expected}`);
    assert.is(sum.batches, Math.ceil(50 / bs));
    assert.is(sum.accuracy.best_single_model, Math.max(...sum.accuracy.submodels));
    for (const v of ev.scores.div_continous_unique_per_sample) assert.ok(v >= 1 - 1e-6 && v <= 3 + 1e-6);
    ev.dispose();
  }
  assert.is(tf.memory().numTensors, before);
});

test("forward chunks of several eval batches give the same statistics as one batch at a time", async () => {
  await initBackend("cpu");
  const e = ensemble(3, 8);
  const { x, y } = rows(45, 9);
  const run = async (chunk: number) => {
    const ev = new EnsembleEvaluator(e, 45, { batchSize: 7, quirks: true, subset: null, soup: true });
    for (let s = 0; s < 45; s += chunk) {
      const c = Math.min(chunk, 45 - s);
      await ev.addBatch(x.subarray(s * shape.dim, (s + c) * shape.dim), y.subarray(s, s + c), c);
    }
    const out = { sum: ev.summary(), mi: Array.from(ev.scores.mutual_information_per_sample) };
    ev.dispose();
    return out;
  };
  const a = await run(7);
  const b = await run(21);
  assert.is(a.sum.batches, 7);
  assert.is(b.sum.batches, 7);
  assert.equal(b.sum.accuracy, a.sum.accuracy);
  for (const [k, v] of Object.entries(a.sum.diversity)) assert.ok(Math.abs(v - b.sum.diversity[k as keyof typeof a.sum.diversity]) < 1e-6, k);
  a.mi.forEach((v, i) => assert.ok(Math.abs(v - b.mi[i]) < 1e-6));
  const ev = new EnsembleEvaluator(e, 45, { batchSize: 7, quirks: false, subset: null, soup: false });
  await ev.addBatch(x, y, 5);
  await rejects(ev.addBatch(x, y, 7), /not on an eval batch boundary/);
  ev.dispose();
  assert.is(forwardRows(32), 256);
  assert.is(forwardRows(256), 256);
  assert.is(forwardRows(300), 300);
  assert.is(forwardRows(100), 200);
});

test("identical heads: soup = ensemble = every head, PDS = 1, one distinct prediction", async () => {
  await initBackend("cpu");
  const one = ensemble(1, 4);
  const e: EnsembleArrays = { shape, heads: [one.heads[0], one.heads[0]] };
  const { x, y } = rows(20, 5);
  const ev = new EnsembleEvaluator(e, 20, { batchSize: 8, quirks: false, subset: null, soup: true });
  for (let s = 0; s < 20; s += 8) {
    const c = Math.min(8, 20 - s);
    await ev.addBatch(x.subarray(s * shape.dim), y.subarray(s), c);
  }
  const sum = ev.summary();
  assert.is(sum.accuracy.soup, sum.accuracy.ensemble);
  assert.is(sum.accuracy.submodels[0], sum.accuracy.ensemble);
  assert.ok(Math.abs(sum.diversity.div_continous_unique - 1) < 1e-5);
  assert.is(sum.diversity.div_different_preds, 1);
  ev.dispose();
});

test("subset evaluation uses masked votes; labels outside the class set and empty data are clear errors", async () => {
  await initBackend("cpu");
  const e = ensemble(3, 6);
  const { x } = rows(10, 7);
  const ev = new EnsembleEvaluator(e, 10, { batchSize: 10, quirks: false, subset: Int32Array.from([0, 2]), soup: true });
  await rejects(ev.addBatch(x, new Int32Array(10).fill(2), 10), (err: unknown) => err instanceof InputError && /outside the 2 classes the class subset has/.test((err as Error).message));
  await ev.addBatch(x, new Int32Array(10).fill(1), 10);
  const s = ev.summary();
  assert.is(s.label_classes, 2);
  assert.ok(s.diversity.div_continous_unique <= 3);
  ev.dispose();
  const plain = new EnsembleEvaluator(e, 10, { batchSize: 10, quirks: false, subset: null, soup: false });
  await rejects(plain.addBatch(x, new Int32Array(10).fill(4), 10), /label 4 of row 0 is outside the 4 classes the model has/);
  await rejects(plain.addBatch(x.subarray(0, 5), new Int32Array(10), 10), /feature batch holds 5 values, expected 10x6/);
  plain.dispose();
  const empty = new EnsembleEvaluator(e, 0, { batchSize: 4, quirks: false, subset: null, soup: false });
  assert.throws(() => empty.summary(), /no rows/);
  empty.dispose();
});

test.run();
