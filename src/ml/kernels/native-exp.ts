// exp and logSoftmax for the hand-differentiated training step: @sed-pipe/blas's threaded expf on the
// wasm heap when the BLAS kernels are installed, tf.exp otherwise. No gradients; must not change bits.
import * as tf from "@tensorflow/tfjs-core";
import { activeBlasPath, loadBlasAddon } from "../wasm-blas.ts";
import type { BlasAddon } from "./blas-addon.ts";
import { asWasmBackend, f32View } from "./wasm-heap.ts";

/**
 * e^x. tfjs-wasm's Exp kernel is a single-threaded scalar expf loop, and musl (emscripten) and glibc
 * share ARM optimized-routines' expf, so the native loop gives the same bits (checked on 117M float
 * bit patterns spread over the whole range) at ~6x the speed on [256, 3072].
 */
export function expFast(x: tf.Tensor): tf.Tensor {
  const blas = x.dtype === "float32" ? nativeExpAddon() : null;
  if (!blas) return tf.exp(x);
  const be = asWasmBackend(tf.backend());
  if (!be.dataIdMap.get(x.dataId)) return tf.exp(x);
  const out = be.makeOutput(x.shape, "float32");
  // Views after the allocation: makeOutput may grow (and detach) the heap.
  if (x.size > 0) blas.exp(f32View(be, x), f32View(be, out));
  return tf.engine().makeTensorFromTensorInfo(out);
}

function nativeExpAddon(): (BlasAddon & { exp: NonNullable<BlasAddon["exp"]> }) | null {
  if (activeBlasPath() !== "wasm+blas" || tf.getBackend() !== "wasm") return null;
  const loaded = loadBlasAddon();
  return "blas" in loaded && loaded.blas.exp ? (loaded.blas as BlasAddon & { exp: NonNullable<BlasAddon["exp"]> }) : null;
}

/** Which exp expFast uses now (for tests and logs). */
export function expFastPath(): "native" | "tf.exp" {
  return nativeExpAddon() ? "native" : "tf.exp";
}

/** tf.logSoftmax over the last axis, op for op (tfjs-core 4.22's forward), with expFast. */
export function logSoftmaxFast(logits: tf.Tensor2D): tf.Tensor2D {
  const shifted = tf.sub(logits, tf.max(logits, -1, true));
  return tf.sub(tf.cast(shifted, "float32"), tf.log(tf.sum(expFast(shifted), -1, true))) as tf.Tensor2D;
}
