import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-wasm";
import "@tensorflow/tfjs-backend-cpu";
import { fusedOptimizer, loadBlasAddon } from "../../../src/ml/wasm-blas.ts";
import { adamwUpdate, sgdUpdate } from "../../../src/ml/optim.ts";
import { Rng } from "../../../src/rng.ts";
import { requires } from "../../helpers/skip.ts";

const loaded = loadBlasAddon();
const blasTest = requires("blas-addon", () => ("blas" in loaded ? true : `@sed-pipe/blas not loaded: ${loaded.error}`)).test;

const rng = new Rng(5);
const rand = (n: number, lo = -1, hi = 1) => {
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = rng.uniform(lo, hi);
  return d;
};

function maxRelErr(a: tf.Tensor, b: tf.Tensor): number {
  const x = a.dataSync(), y = b.dataSync();
  assert.is(x.length, y.length);
  let err = 0, scale = 1e-12;
  for (let i = 0; i < x.length; i++) {
    err = Math.max(err, Math.abs(x[i] - y[i]));
    scale = Math.max(scale, Math.abs(y[i]));
  }
  return err / scale;
}

test("fusedOptimizer is null off the wasm backend", async () => {
  await tf.setBackend("cpu");
  assert.is(fusedOptimizer(), null);
});

blasTest("fused AdamW matches optim.ts adamwUpdate over several steps, without leaks", async () => {
  await tf.setBackend("wasm");
  const fused = fusedOptimizer()!;
  const o = { type: "adamw" as const, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weight_decay: 0.05 };
  const n = 1000;
  let pRef: tf.Tensor = tf.tensor1d(rand(n)), mRef: tf.Tensor = tf.zeros([n]), vRef: tf.Tensor = tf.zeros([n]);
  let pF: tf.Tensor = tf.tensor1d(pRef.dataSync()), mF: tf.Tensor = tf.zeros([n]), vF: tf.Tensor = tf.zeros([n]);
  const p0 = pF.dataSync().slice();
  const ids = tf.backend().numDataIds();
  for (let step = 1; step <= 4; step++) {
    const g = tf.tensor1d(rand(n));
    const lr = 1e-3 * step;
    // optim.ts leaves its intermediates to the caller's tidy
    const r = tf.tidy(() => adamwUpdate(pRef, g, { exp_avg: mRef, exp_avg_sq: vRef }, o as never, lr, step) as never) as {
      param: tf.Tensor; slots: Record<string, tf.Tensor>;
    };
    const f = fused.adamwUpdate(pF, g, { exp_avg: mF, exp_avg_sq: vF }, o, lr, step);
    if (step === 1) assert.equal(Array.from(pF.dataSync()), Array.from(p0), "the input parameter is never written");
    tf.dispose([pRef, mRef, vRef, pF, mF, vF, g]);
    [pRef, mRef, vRef] = [r.param, r.slots.exp_avg, r.slots.exp_avg_sq];
    [pF, mF, vF] = [f.param, f.slots.exp_avg, f.slots.exp_avg_sq];
    assert.ok(maxRelErr(pF, pRef) < 1e-5, `step ${step}: param ${maxRelErr(pF, pRef)}`);
    assert.ok(maxRelErr(mF, mRef) < 1e-5, `step ${step}: exp_avg`);
    assert.ok(maxRelErr(vF, vRef) < 1e-5, `step ${step}: exp_avg_sq`);
  }
  assert.is(tf.backend().numDataIds(), ids, "data ids grew");
  tf.dispose([pRef, mRef, vRef, pF, mF, vF]);
});

blasTest("fused SGD matches optim.ts sgdUpdate with and without momentum", async () => {
  await tf.setBackend("wasm");
  const fused = fusedOptimizer()!;
  for (const momentum of [0, 0.9]) {
    for (const weight_decay of [0, 1e-4]) {
      const o = { type: "sgd" as const, momentum, weight_decay };
      const n = 777;
      const p = tf.tensor1d(rand(n)), g = tf.tensor1d(rand(n)), buf = tf.tensor1d(rand(n));
      const slots: Record<string, tf.Tensor> = momentum > 0 ? { momentum: buf } : {};
      const r = tf.tidy(() => sgdUpdate(p, g, slots as never, o as never, 0.1) as never) as {
        param: tf.Tensor; slots: Record<string, tf.Tensor>;
      };
      const before = tf.memory().numTensors;
      const f = fused.sgdUpdate(p, g, slots, o, 0.1);
      assert.is(tf.memory().numTensors, before + 1 + Object.keys(f.slots).length, "fused SGD creates only its outputs");
      assert.ok(maxRelErr(f.param, r.param) < 1e-6, `momentum ${momentum} wd ${weight_decay}: param`);
      assert.equal(Object.keys(f.slots), Object.keys(r.slots));
      if (momentum > 0) assert.ok(maxRelErr(f.slots.momentum, r.slots.momentum) < 1e-6, "momentum buffer");
      tf.dispose([r.param, f.param, ...Object.values(r.slots), ...Object.values(f.slots), p, g, buf]);
    }
  }
});

blasTest("fused updates reject mismatched or missing inputs with a clear message", async () => {
  await tf.setBackend("wasm");
  const fused = fusedOptimizer()!;
  const p = tf.zeros([4]), g = tf.zeros([5]);
  assert.throws(() => fused.sgdUpdate(p, g, {}, { momentum: 0, weight_decay: 0 }, 0.1), /shapes differ/);
  assert.throws(() => fused.sgdUpdate(p, p, {}, { momentum: 0.9, weight_decay: 0 }, 0.1), /needs slots.momentum/);
  assert.throws(() => fused.adamwUpdate(p, p, { exp_avg: p, exp_avg_sq: p }, { betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0 }, 0.1, 0), /step must be >= 1/);
  tf.dispose([p, g]);
});

test.run();
