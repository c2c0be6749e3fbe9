import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import { activeBlasPath, installBlasKernels, loadBlasAddon, uninstallBlasKernels } from "../../../src/ml/wasm-blas.ts";
import { expFast, expFastPath, logSoftmaxFast } from "../../../src/ml/kernels/native-exp.ts";
import { Rng } from "../../../src/rng.ts";
import { requires } from "../../helpers/skip.ts";

const loaded = loadBlasAddon();
const expTest = requires("blas-addon", () =>
  !("blas" in loaded) ? `@sed-pipe/blas not loaded: ${loaded.error}` : typeof loaded.blas.exp === "function" || "@sed-pipe/blas predates exp (rebuild: node native/blas/install.js)",
).test;

const bits = (t: tf.Tensor) => Array.from(new Uint32Array((t.dataSync() as Float32Array).slice().buffer));

/** Spread over every float bit pattern (stride 9973), plus the edge values, plus a training-like range. */
function inputs(): Float32Array {
  const u = new Uint32Array(Math.ceil(2 ** 32 / (9973 * 4096)) * 4096);
  for (let i = 0; i < u.length; i++) u[i] = (i * 9973 * 4096 + (i % 4096)) >>> 0;
  const f = new Float32Array(u.buffer);
  const rng = new Rng(7);
  const extra = [0, -0, 1, -1, 88.72, 88.73, -87.3, -103.9, -104, Infinity, -Infinity, NaN, 1e-30, -1e-30];
  const r = Float32Array.from({ length: 300_000 }, () => rng.uniform(-30, 5));
  const out = new Float32Array(f.length + extra.length + r.length);
  out.set(f);
  out.set(extra, f.length);
  out.set(r, f.length + extra.length);
  return out;
}

expTest("expFast gives tfjs-wasm's Exp bits (threaded sizes included) and leaks nothing", async () => {
  await tf.setBackend("wasm");
  await installBlasKernels();
  assert.is(activeBlasPath(), "wasm+blas");
  const x = tf.tensor1d(inputs());
  const n0 = tf.memory().numTensors;
  const ref = tf.exp(x);
  assert.is(expFastPath(), "native", "expFast would fall back to tf.exp");
  const got = expFast(x);
  const a = bits(ref), b = bits(got);
  let diff = 0;
  for (let i = 0; i < a.length; i++) {
    // NaN payloads may differ; both must be NaN there
    const nanA = (a[i] & 0x7f800000) === 0x7f800000 && (a[i] & 0x7fffff) !== 0;
    const nanB = (b[i] & 0x7f800000) === 0x7f800000 && (b[i] & 0x7fffff) !== 0;
    if (nanA ? !nanB : a[i] !== b[i]) diff++;
  }
  assert.is(diff, 0, `${diff} of ${a.length} values differ from tf.exp`);
  assert.equal(got.shape, x.shape);
  tf.dispose([ref, got]);
  assert.is(tf.memory().numTensors, n0);
  x.dispose();
});

expTest("logSoftmaxFast equals tf.logSoftmax bit for bit; 2-D shapes kept", async () => {
  await tf.setBackend("wasm");
  await installBlasKernels();
  const rng = new Rng(3);
  const z = tf.tensor2d(Float32Array.from({ length: 64 * 1000 }, () => rng.normal() * 4), [64, 1000]);
  const n0 = tf.memory().numTensors;
  const [a, b] = tf.tidy(() => [tf.logSoftmax(z), logSoftmaxFast(z)]);
  assert.equal(b.shape, [64, 1000]);
  assert.equal(bits(b), bits(a));
  tf.dispose([a, b]);
  assert.is(tf.memory().numTensors, n0);
  z.dispose();
});

test("expFast falls back to tf.exp off wasm+blas (cpu backend, stock wasm kernels)", async () => {
  await tf.setBackend("cpu");
  const x = tf.tensor1d([-2, 0, 0.5, 3]);
  assert.is(expFastPath(), "tf.exp");
  assert.equal(bits(expFast(x)), bits(tf.exp(x)));
  await tf.setBackend("wasm");
  uninstallBlasKernels();
  assert.is(activeBlasPath(), null);
  const y = tf.tensor1d([-2, 0, 0.5, 3]);
  assert.is(expFastPath(), "tf.exp");
  assert.equal(bits(expFast(y)), bits(tf.exp(y)));
  await installBlasKernels();
});

test.run();
