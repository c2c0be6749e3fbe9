// One-pass native AdamW / SGD parameter updates on the wasm heap: drop-ins for src/ml/optim.ts
// adamwUpdate / sgdUpdate (same formulas, same ParamUpdate result) when @sed-pipe/blas is loaded.
// Always writes fresh output tensors, never into its inputs (packed-weight caches stay valid).
import * as tf from "@tensorflow/tfjs-core";
import type { TensorInfo } from "@tensorflow/tfjs-core";
import type { BlasOptimAddon } from "./blas-addon.ts";
import { asWasmBackend, f32View, type WasmBackendLike } from "./wasm-heap.ts";

export interface FusedParamUpdate {
  param: tf.Tensor;
  slots: Record<string, tf.Tensor>;
}
export interface SgdOptions {
  momentum: number;
  weight_decay: number;
}
export interface AdamWOptions {
  betas: readonly number[];
  eps: number;
  weight_decay: number;
}

export interface FusedOptimizer {
  sgdUpdate(p: tf.Tensor, g: tf.Tensor, slots: Record<string, tf.Tensor>, o: SgdOptions, lr: number): FusedParamUpdate;
  adamwUpdate(p: tf.Tensor, g: tf.Tensor, slots: Record<string, tf.Tensor>, o: AdamWOptions, lr: number, step: number): FusedParamUpdate;
}

function backendFor(ts: tf.Tensor[], what: string): WasmBackendLike {
  if (tf.getBackend() !== "wasm") throw new Error(`fused ${what} needs the wasm backend active, not "${tf.getBackend()}"`);
  const be = asWasmBackend(tf.backend());
  const n = ts[0].size;
  for (const t of ts) {
    if (t.dtype !== "float32") throw new Error(`fused ${what}: tensors must be float32, got ${t.dtype}`);
    if (t.size !== n) throw new Error(`fused ${what}: shapes differ ([${ts[0].shape}] vs [${t.shape}])`);
    if (t.isDisposed) throw new Error(`fused ${what}: a tensor is disposed`);
    // Data created on another backend moves on first use by a kernel, not here.
    if (!be.dataIdMap.get(t.dataId)) throw new Error(`fused ${what}: tensor [${t.shape}] is not on the wasm backend; move it first (e.g. tf.clone under wasm)`);
  }
  return be;
}

function wrap(info: TensorInfo): tf.Tensor {
  return tf.engine().makeTensorFromTensorInfo(info);
}

/** The fused updates over an addon (see wasm-blas.ts fusedOptimizer() for the loaded one). */
export function makeFusedOptimizer(blas: BlasOptimAddon): FusedOptimizer {
  return {
    sgdUpdate(p, g, slots, o, lr) {
      const withMomentum = o.momentum > 0;
      const buf = slots.momentum;
      if (withMomentum && !buf) throw new Error("fused SGD with momentum needs slots.momentum (zeros at the first step)");
      const be = backendFor(withMomentum ? [p, g, buf] : [p, g], "SGD");
      const pOut = be.makeOutput(p.shape, "float32");
      const bOut = withMomentum ? be.makeOutput(p.shape, "float32") : null;
      // Views after the last allocation: makeOutput may grow (and detach) the heap.
      blas.sgd(
        f32View(be, p), f32View(be, g), withMomentum ? f32View(be, buf) : null, f32View(be, pOut),
        bOut ? f32View(be, bOut) : null, lr, withMomentum ? o.momentum : 0, o.weight_decay,
      );
      const out: Record<string, tf.Tensor> = {};
      if (bOut) out.momentum = wrap(bOut);
      return { param: wrap(pOut), slots: out };
    },
    adamwUpdate(p, g, slots, o, lr, step) {
      const { exp_avg: m, exp_avg_sq: v } = slots;
      if (!m || !v) throw new Error("fused AdamW needs slots.exp_avg and slots.exp_avg_sq");
      if (!(step >= 1)) throw new Error(`fused AdamW: step must be >= 1 (the count after increment), got ${step}`);
      const [b1, b2] = o.betas;
      const be = backendFor([p, g, m, v], "AdamW");
      const pOut = be.makeOutput(p.shape, "float32");
      const mOut = be.makeOutput(p.shape, "float32");
      const vOut = be.makeOutput(p.shape, "float32");
      blas.adamw(
        f32View(be, p), f32View(be, g), f32View(be, m), f32View(be, v), f32View(be, pOut), f32View(be, mOut), f32View(be, vOut),
        lr, b1, b2, o.eps, o.weight_decay, 1 - Math.pow(b1, step), 1 - Math.pow(b2, step),
      );
      return { param: wrap(pOut), slots: { exp_avg: wrap(mOut), exp_avg_sq: wrap(vOut) } };
    },
  };
}
