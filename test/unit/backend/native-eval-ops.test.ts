// Native LayerNorm, GELU and row softmax of the eval forward (src/ml/kernels/native-eval-ops.ts):
// accurate against exact values, close to the tfjs ops they replace, and chosen only on wasm+blas.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-wasm";
import { installBlasKernels, loadBlasAddon, setBlasThreads } from "../../../src/ml/wasm-blas.ts";
import { evalOpsPath, evalSoftmaxRows, nativeEvalOps } from "../../../src/ml/kernels/native-eval-ops.ts";
import { geluExact, headLogits, headTensorsFromArrays, initHeadArrays } from "../../../src/ml/heads.ts";
import { softmaxRows } from "../../../src/ml/scores.ts";
import { Rng } from "../../../src/rng.ts";
import { requires } from "../../helpers/skip.ts";

const loaded = loadBlasAddon();
const nativeTest = requires("blas-addon", () =>
  !("blas" in loaded) ? `@sed-pipe/blas not loaded: ${loaded.error}` : typeof loaded.blas.gelu === "function" || "@sed-pipe/blas predates gelu (rebuild: node native/blas/install.js)",
).test;

await tf.setBackend("wasm");
await tf.ready();

nativeTest("GELU: exact values (erfc form) to 1e-6 relative, and the tfjs ops to 2e-7 of max(1, |x|)", async () => {
  await installBlasKernels();
  setBlasThreads(1);
  const ops = nativeEvalOps()!;
  // x * erfc(-x / sqrt 2) / 2 in double precision (Python's math.erfc).
  const exact: [number, number][] = [
    [-10, -7.619853024160593e-23], [-5, -1.4332578593959731e-6], [-3, -0.004049694094890287], [-1, -0.15865525393145707],
    [-0.5, -0.15426876936299344], [0, 0], [0.5, 0.34573123063700656], [1, 0.8413447460685429], [3, 2.99595030590511], [5, 4.99999856674214],
  ];
  const got = tf.tidy(() => ops.gelu(tf.tensor2d(exact.map(([x]) => x), [1, exact.length])).dataSync());
  exact.forEach(([x, want], i) => {
    const tol = x === -10 ? 1e-4 : 1e-6;
    assert.ok(Math.abs(got[i] - want) <= tol * Math.abs(want), `gelu(${x}) = ${got[i]}, exact ${want}`);
  });
  const rng = new Rng(3);
  const xs = Float32Array.from({ length: 100_000 }, (_, i) => (i < 50_000 ? -12 + (24 * i) / 50_000 : rng.normal() * 3));
  const [n, s] = tf.tidy(() => {
    const x = tf.tensor2d(xs, [1000, 100]);
    return [ops.gelu(x).dataSync(), geluExact(x).dataSync()];
  });
  let worst = 0;
  for (let i = 0; i < xs.length; i++) worst = Math.max(worst, Math.abs(n[i] - s[i]) / Math.max(1, Math.abs(xs[i])));
  assert.ok(worst < 2e-7, `max |native - tfjs| / max(1, |x|) = ${worst}`);
});

nativeTest("LayerNorm: the tfjs moments form to 2e-6 (rows of noise, a constant row, large offsets)", async () => {
  await installBlasKernels();
  const ops = nativeEvalOps()!;
  const rng = new Rng(5);
  const D = 768;
  const rows = 9;
  const x = Float32Array.from({ length: rows * D }, (_, i) => {
    const r = Math.floor(i / D);
    return r === 0 ? 0.25 : r === 1 ? 1000 + rng.normal() : rng.normal() * (r + 1);
  });
  const w = Float32Array.from({ length: D }, () => 1 + 0.1 * rng.normal());
  const b = Float32Array.from({ length: D }, () => 0.1 * rng.normal());
  const before = tf.memory().numTensors;
  const [n, s] = tf.tidy(() => {
    const xt = tf.tensor2d(x, [rows, D]);
    const wt = tf.tensor1d(w);
    const bt = tf.tensor1d(b);
    const { mean, variance } = tf.moments(xt, -1, true);
    const stock = tf.add(tf.mul(tf.mul(tf.sub(xt, mean), tf.rsqrt(tf.add(variance, 1e-6))), wt), bt);
    return [ops.layerNorm(xt, wt, bt, 1e-6).dataSync(), stock.dataSync()];
  });
  assert.is(tf.memory().numTensors, before, "no tensors left");
  let worst = 0;
  for (let i = 0; i < n.length; i++) worst = Math.max(worst, Math.abs(n[i] - s[i]) / Math.max(1, Math.abs(s[i])));
  // Row 1 (values near 1000) is where float32 moments lose digits; the native statistics are in double.
  assert.ok(worst < 2e-3, `worst ${worst}`);
  let worstClean = 0;
  for (let i = 2 * D; i < n.length; i++) worstClean = Math.max(worstClean, Math.abs(n[i] - s[i]) / Math.max(1, Math.abs(s[i])));
  assert.ok(worstClean < 2e-6, `worst on well-conditioned rows ${worstClean}`);
  for (let k = 0; k < D; k++) assert.ok(Math.abs(n[k] - b[k]) < 1e-6, "a constant row normalises to the bias");
});

nativeTest("row softmax: JavaScript's to 1e-6 in p and lse, underflow to exactly 0 kept", async () => {
  await installBlasKernels();
  const rng = new Rng(9);
  const C = 1000;
  const rows = 12;
  const data = Float32Array.from({ length: rows * C }, (_, i) => (Math.floor(i / C) === 3 ? (i % C === 7 ? 200 : -200) : rng.normal() * 6));
  const p1 = new Float32Array(data.length), p2 = new Float32Array(data.length);
  const l1 = new Float64Array(rows), l2 = new Float64Array(rows);
  assert.is.not(evalSoftmaxRows(), softmaxRows, "native on wasm+blas");
  evalSoftmaxRows()(data, C, data.length, C, p1, l1); // from the second row on: offsets work
  softmaxRows(data, C, data.length, C, p2, l2);
  for (let i = C; i < data.length; i++) assert.ok(Math.abs(p1[i] - p2[i]) < 1e-6, `p[${i}] ${p1[i]} vs ${p2[i]}`);
  for (let r = 1; r < rows; r++) assert.ok(Math.abs(l1[r] - l2[r]) < 1e-6 * Math.max(1, Math.abs(l2[r])), `lse[${r}]`);
  assert.is(p1[3 * C + 8], 0, "e^-400 underflows to 0 as in torch");
  assert.is(p1[3 * C + 7], 1);
  assert.is(l1[0], 0, "rows before `start` untouched");
});

nativeTest("headLogits with the native ops stays within 1e-4 of the tfjs ops; the fallback path uses the tfjs ops", async () => {
  const shape = { dim: 64, hidden: 256, classes: 40 };
  const rng = new Rng(11);
  const h = initHeadArrays(shape, rng);
  h.gamma_2 = h.gamma_2.map(() => rng.normal() * 0.5);
  const x = Float32Array.from({ length: 32 * shape.dim }, () => rng.normal());
  const run = () => tf.tidy(() => headLogits(headTensorsFromArrays(h, shape), tf.tensor2d(x, [32, shape.dim]), shape).dataSync());
  await installBlasKernels({ prefer: "fixed" });
  assert.is(evalOpsPath(), "tfjs");
  assert.is(evalSoftmaxRows(), softmaxRows);
  const stock = run();
  await installBlasKernels();
  assert.is(evalOpsPath(), "native");
  const native = run();
  let worst = 0;
  for (let i = 0; i < stock.length; i++) worst = Math.max(worst, Math.abs(native[i] - stock[i]) / Math.max(1, Math.abs(stock[i])));
  assert.ok(worst < 1e-4, `worst ${worst}`);
  assert.ok(worst > 0, "the two paths really differ (the comparison is not a no-op)");
});

test.run();
