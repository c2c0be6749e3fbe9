import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend, predictBackend } from "../../../src/ml/backend.ts";
import { SedPipeError } from "../../../src/errors.ts";

test("auto predicts a loadable backend and says why", () => {
  const choice = predictBackend("auto");
  assert.ok(["tfjs-node-gpu", "tfjs-node", "wasm"].includes(choice.name));
  assert.match(choice.reason, /^auto: /);
});

test("an unknown backend is a user error naming the choices", () => {
  try {
    predictBackend("cuda");
    assert.unreachable("should throw");
  } catch (err) {
    assert.instance(err, SedPipeError);
    assert.match((err as SedPipeError).message, /unknown backend "cuda"/);
    assert.match((err as SedPipeError).hint ?? "", /wasm/);
  }
});

test("forcing cpu activates the cpu backend and computes", async () => {
  const choice = await initBackend("cpu");
  assert.is(choice.name, "cpu");
  assert.is(tf.getBackend(), "cpu");
  const y = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]]));
  assert.equal(Array.from(await y.data()), [11]);
  y.dispose();
});

test("wasm-fixed and wasm+blas can be forced; the path in use is reported", async () => {
  const fixed = await initBackend("wasm-fixed");
  assert.is(fixed.name, "wasm-fixed");
  assert.is(tf.getBackend(), "wasm");
  assert.match(fixed.reason, /matMul: wasm-fixed/);
  const { fusedOptimizer, loadBlasAddon } = await import("../../../src/ml/wasm-blas.ts");
  assert.is(fusedOptimizer(), null, "no native optimizer when wasm-fixed is forced");
  const y = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3], [4]]), false, false);
  assert.equal(Array.from(await y.data()), [11]);
  y.dispose();
  if ("blas" in loadBlasAddon()) {
    const blas = await initBackend("wasm+blas");
    assert.is(blas.name, "wasm+blas");
    assert.match(blas.reason, /matMul: wasm\+blas/);
  } else {
    // Without the addon, forcing it is a clear error rather than a silent fallback.
    try {
      await initBackend("wasm+blas");
      assert.unreachable("should throw");
    } catch (err) {
      assert.match((err as Error).message, /wasm\+blas failed to load: the OpenBLAS kernels are not available/);
    }
  }
});

test("blas: false gives the pure-wasm matMul path and says why; forcing wasm+blas with it is an error", async () => {
  const off = await initBackend("wasm", { blas: false });
  assert.is(off.name, "wasm");
  assert.is(tf.getBackend(), "wasm");
  assert.match(off.reason, /matMul: wasm-fixed \(OpenBLAS kernels turned off \(blas: false/);
  const { activeBlasPath, fusedOptimizer } = await import("../../../src/ml/wasm-blas.ts");
  assert.is(activeBlasPath(), "wasm-fixed");
  assert.is(fusedOptimizer(), null, "no native optimizer with the kernels turned off");
  const y = tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3, 4]]), false, true);
  assert.equal(Array.from(await y.data()), [11]);
  y.dispose();
  try {
    await initBackend("wasm+blas", { blas: false });
    assert.unreachable("should throw");
  } catch (err) {
    assert.match((err as Error).message, /wasm\+blas failed to load: the OpenBLAS kernels are not available \(OpenBLAS kernels turned off/);
  }
});

test.run();

