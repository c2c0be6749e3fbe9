// wasm kernel Sum for float32 reductions over leading axes (bias gradients: [batch, n] -> [n]) as
// one native pass; every other Sum goes to the stock kernel. Must not change Sum's results beyond
// float summation order.
import * as tf from "@tensorflow/tfjs-core";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import type { BlasAddon } from "./blas-addon.ts";
import { asWasmBackend, callKernel, f32View } from "./wasm-heap.ts";

/** Number of leading axes reduced, or 0 when the axes are not a proper leading prefix. */
export function leadingAxes(axis: number | number[] | undefined, shape: number[]): number {
  if (shape.length < 2) return 0;
  const all = axis === undefined || axis === null ? shape.map((_, i) => i) : tf.util.parseAxisParam(axis, shape);
  const axes = [...new Set(all.map((a) => (a < 0 ? a + shape.length : a)))].sort((a, b) => a - b);
  const k = axes.length;
  if (k === 0 || k >= shape.length) return 0;
  return axes.every((a, i) => a === i) ? k : 0;
}

export function leadingSumConfig(blas: BlasAddon, stockSum: KernelConfig): KernelConfig {
  const kernelFunc = ({ inputs, backend, attrs }: Parameters<KernelFunc>[0]) => {
    const { x } = inputs as { x: TensorInfo };
    const { axis, keepDims } = (attrs ?? {}) as { axis?: number | number[]; keepDims?: boolean };
    const be = asWasmBackend(backend);
    const k = x.dtype === "float32" ? leadingAxes(axis, x.shape) : 0;
    if (k === 0) return callKernel(stockSum, { x }, be, attrs ?? {});
    const rest = x.shape.slice(k);
    const rows = tf.util.sizeFromShape(x.shape.slice(0, k));
    const cols = tf.util.sizeFromShape(rest);
    const out = be.makeOutput(keepDims ? [...x.shape.slice(0, k).map(() => 1), ...rest] : rest, "float32");
    if (cols > 0) blas.colSum(f32View(be, x), rows, cols, f32View(be, out));
    return out;
  };
  return { kernelName: "Sum", backendName: "wasm", kernelFunc: kernelFunc as KernelFunc };
}
