import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Rng } from "../../../src/rng.ts";
import {
  HEAD_PARAM_NAMES, headParamCount, headParamShapes, initHeadArrays, headLogits, headTensorsFromArrays,
  saveEnsemble, loadEnsemble, lazyHeads, type HeadShape,
} from "../../../src/ml/heads.ts";
import { EnsembleState } from "../../../src/ml/ensemble-state.ts";
import { parseTrainConfig, headShapeOf } from "../../../src/ml/train-config.ts";
import { writeSafetensors } from "../../../src/io/safetensors.ts";

await tf.setBackend("cpu");

test("paper-size head has 5,495,272 parameters", () => {
  assert.is(headParamCount({ dim: 768, hidden: 3072, classes: 1000 }), 5_495_272);
  assert.equal(headParamShapes({ dim: 768, hidden: 3072, classes: 1000 })["mlp.fc1.weight"], [3072, 768]);
});

test("init follows the spec table", () => {
  const s: HeadShape = { dim: 16, hidden: 64, classes: 5 };
  const h = initHeadArrays(s, new Rng(42));
  assert.ok(h.gamma_2.every((v) => v === Math.fround(1e-4)));
  assert.ok(h["norm.weight"].every((v) => v === 1) && h["norm2.bias"].every((v) => v === 0));
  assert.ok(h["head.bias"].every((v) => v === 0) && h["mlp.fc1.bias"].every((v) => v === 0));
  const w = h["mlp.fc1.weight"];
  const mean = w.reduce((a, b) => a + b, 0) / w.length;
  const std = Math.sqrt(w.reduce((a, b) => a + (b - mean) ** 2, 0) / w.length);
  assert.ok(Math.abs(std - 0.02) < 0.003, `std ${std}`);
  assert.ok(Math.abs(mean) < 0.003, `mean ${mean}`);
});

test("forward equals a hand-written reference on a tiny head", () => {
  const s: HeadShape = { dim: 3, hidden: 4, classes: 2 };
  const h = initHeadArrays(s, new Rng(1));
  h.gamma_2.set([0.5, -0.3, 0.2]); // make the MLP branch matter
  const x = [[0.3, -1.2, 2.0], [1.0, 0.5, -0.7]];
  const p = headTensorsFromArrays(h, s);
  const got = tf.tidy(() => headLogits(p, tf.tensor2d(x), s).arraySync());
  const ln = (v: number[], w: Float32Array, b: Float32Array) => {
    const m = v.reduce((a, c) => a + c, 0) / v.length;
    const va = v.reduce((a, c) => a + (c - m) ** 2, 0) / v.length;
    return v.map((c, i) => ((c - m) / Math.sqrt(va + 1e-6)) * w[i] + b[i]);
  };
  const lin = (v: number[], W: Float32Array, b: Float32Array, out: number) =>
    Array.from({ length: out }, (_, o) => v.reduce((a, c, i) => a + c * W[o * v.length + i], b[o]));
  const erf = (z: number) => { // Abramowitz-Stegun 7.1.26 is too coarse; use series
    let sum = 0, term = z;
    for (let n = 0; n < 60; n++) { sum += term / (2 * n + 1); term *= (-z * z) / (n + 1); }
    return (2 / Math.sqrt(Math.PI)) * sum;
  };
  for (let r = 0; r < 2; r++) {
    const a = ln(x[r], h["norm2.weight"], h["norm2.bias"]);
    const f1 = lin(a, h["mlp.fc1.weight"], h["mlp.fc1.bias"], 4).map((z) => 0.5 * z * (1 + erf(z / Math.SQRT2)));
    const f2 = lin(f1, h["mlp.fc2.weight"], h["mlp.fc2.bias"], 3);
    const y = x[r].map((c, i) => c + h.gamma_2[i] * f2[i]);
    const want = lin(ln(y, h["norm.weight"], h["norm.bias"]), h["head.weight"], h["head.bias"], 2);
    for (let c = 0; c < 2; c++) assert.ok(Math.abs(got[r][c] - want[c]) < 1e-5, `${got[r][c]} vs ${want[c]}`);
  }
  tf.dispose(Object.values(p));
});

test("ensemble save/load round trip with submodels.<i>.<param> keys; strict errors", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sed-heads-"));
  try {
    const s: HeadShape = { dim: 4, hidden: 8, classes: 3 };
    const rng = new Rng(7);
    const heads = [initHeadArrays(s, rng), initHeadArrays(s, rng)];
    const f = join(dir, "e.safetensors");
    await saveEnsemble(f, { shape: s, heads, meta: { config: '{"name":"x"}' } });
    const back = await loadEnsemble(f);
    assert.is(back.heads.length, 2);
    assert.equal(back.shape, { ...s, eps: 1e-6 });
    assert.is(back.meta?.config, '{"name":"x"}');
    for (const k of HEAD_PARAM_NAMES) assert.equal(Array.from(back.heads[1][k]), Array.from(heads[1][k]));
    // missing tensor
    await writeSafetensors(f, { "submodels.0.gamma_2": { dtype: "F32", shape: [4], data: new Float32Array(4) } }, { format: "sed-pipe-ensemble-v1", shape: JSON.stringify(s) });
    try { await loadEnsemble(f); assert.unreachable(); } catch (e) { assert.match((e as Error).message, f); assert.match((e as Error).message, /tensors, not a multiple/); }
    await writeFile(f, "garbage!garbage!");
    try { await loadEnsemble(f); assert.unreachable(); } catch (e) { assert.match((e as Error).message, f); }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("lazy heads: made once each, in index order, and a trainer built from them equals one built from an array", async () => {
  const cfg = parseTrainConfig({
    name: "lazy", n_models: 3, random_select: 2, keep_inactive_on_cpu: true, embed_dim: 4, mlp_hidden: 6, num_classes: 3, batch_size: 4, eval_batch_size: 4,
    optimizer: { type: "sgd", lr: 0.1, momentum: 0.9 }, lr_scheduler: null, n_epochs: 1, freeze_first_epoch: false,
    lambda: 0.5, patch_diversity_lambda: null, manual_lambda: 0, use_always_labeled: false, smoothing_eps: null,
  });
  const made: number[] = [];
  const rngA = new Rng(9);
  const lazy = lazyHeads(3, (i) => (made.push(i), initHeadArrays(headShapeOf(cfg), rngA)));
  const a = new EnsembleState(cfg, lazy);
  assert.equal(made, [0, 1, 2]);
  const rngB = new Rng(9);
  const b = new EnsembleState(cfg, Array.from({ length: 3 }, () => initHeadArrays(headShapeOf(cfg), rngB)));
  const [sa, sb] = [await a.snapshot(), await b.snapshot()];
  for (let i = 0; i < 3; i++) for (const k of HEAD_PARAM_NAMES) assert.equal(Array.from(sa.heads[i][k]), Array.from(sb.heads[i][k]), `head ${i} ${k}`);
  a.dispose();
  b.dispose();
  const once = lazyHeads(2, () => initHeadArrays(headShapeOf(cfg), new Rng(1)));
  once.at(0);
  assert.throws(() => once.at(0), /head 0 asked for, expected 1/);
});

test.run();
