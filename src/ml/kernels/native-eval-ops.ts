// Native LayerNorm, GELU and row softmax for the eval forward (@sed-pipe/blas, on the wasm heap or
// on plain arrays). tfjs-wasm runs these elementwise ops one scalar at a time on one core: for a
// 50-head eval they were a quarter of the time. Not bit-equal to the tfjs ops (~1e-7 relative, and
// GELU is more accurate in its negative tail), so the training step keeps the tfjs ops; available
// only where the OpenBLAS kernels are installed (`wasm+blas`), so every thread of a run agrees.
import * as tf from "@tensorflow/tfjs-core";
import { softmaxRows as softmaxRowsJs } from "../scores.ts";
import { activeBlasPath, loadBlasAddon } from "../wasm-blas.ts";
import type { BlasAddon } from "./blas-addon.ts";
import { asWasmBackend, f32View } from "./wasm-heap.ts";

type EvalAddon = BlasAddon & Required<Pick<BlasAddon, "gelu" | "layerNorm" | "softmaxRows">>;

function evalAddon(): EvalAddon | null {
  if (activeBlasPath() !== "wasm+blas" || tf.getBackend() !== "wasm") return null;
  const loaded = loadBlasAddon();
  if (!("blas" in loaded)) return null;
  const b = loaded.blas;
  return b.gelu && b.layerNorm && b.softmaxRows ? (b as EvalAddon) : null;
}

/** Which implementation the eval forward uses now (for logs and tests). */
export function evalOpsPath(): "native" | "tfjs" {
  return evalAddon() ? "native" : "tfjs";
}

export interface NativeEvalOps {
  layerNorm(x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor, eps: number): tf.Tensor2D;
  gelu(x: tf.Tensor2D): tf.Tensor2D;
}

/** The native ops, or null where they do not apply (then the caller uses tfjs ops). */
export function nativeEvalOps(): NativeEvalOps | null {
  const blas = evalAddon();
  if (!blas) return null;
  const be = asWasmBackend(tf.backend());
  const onHeap = (...ts: tf.Tensor[]) => ts.every((t) => t.dtype === "float32" && be.dataIdMap.get(t.dataId));
  return {
    layerNorm(x, w, b, eps) {
      if (!onHeap(x, w, b)) throw new Error("nativeEvalOps.layerNorm: tensors must be float32 on the wasm backend");
      const cols = x.shape[1];
      const out = be.makeOutput(x.shape, "float32");
      // Views after the allocation: makeOutput may grow (and detach) the heap.
      if (x.size > 0) blas.layerNorm(f32View(be, x), cols, f32View(be, w), f32View(be, b), eps, f32View(be, out));
      return tf.engine().makeTensorFromTensorInfo(out) as tf.Tensor2D;
    },
    gelu(x) {
      if (!onHeap(x)) throw new Error("nativeEvalOps.gelu: the tensor must be float32 on the wasm backend");
      const out = be.makeOutput(x.shape, "float32");
      if (x.size > 0) blas.gelu(f32View(be, x), f32View(be, out));
      return tf.engine().makeTensorFromTensorInfo(out) as tf.Tensor2D;
    },
  };
}

/**
 * softmaxRows of src/ml/scores.ts (rows of data[start, end) into p, logsumexp into lse[offset / c]),
 * natively where the eval ops are native. Every thread of one evaluation must use the same one.
 */
export function evalSoftmaxRows(): (data: Float32Array, start: number, end: number, c: number, p: Float32Array, lse: Float64Array) => void {
  const blas = evalAddon();
  if (!blas) return softmaxRowsJs;
  return (data, start, end, c, p, lse) => {
    if (end > start) blas.softmaxRows(data.subarray(start, end), c, p.subarray(start, end), lse.subarray(start / c, end / c));
  };
}
