// wasm kernels Transpose and Unpack for 4-byte dtypes (float32, int32) as strided copies over heap
// views. The stock tfjs-wasm 4.22 kernels take a generic per-element path for the ViT's attention
// layouts: profiled on DeiT-B (batch 8, 2 cores) Transpose was 36% and Unpack 20% of the forward,
// more than the matMuls. Pure data movement: the results are the stock kernels' bit for bit (tested).
// Other dtypes go to the stock kernels.
import * as tf from "@tensorflow/tfjs-core";
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { asWasmBackend, callKernel, type WasmBackendLike } from "./wasm-heap.ts";

function is4Byte(t: TensorInfo): boolean {
  return t.dtype === "float32" || t.dtype === "int32";
}

/** Int32 view of a 4-byte tensor's heap data (bit copies need no float semantics). */
function i32View(be: WasmBackendLike, t: TensorInfo, size = tf.util.sizeFromShape(t.shape)): Int32Array {
  const data = be.dataIdMap.get(t.dataId);
  if (!data) throw new Error(`tensor ${t.shape} is not on the wasm backend (disposed?)`);
  return new Int32Array(be.wasm.HEAPU8.buffer, data.memoryOffset, size);
}

/**
 * out = x transposed by perm (out.shape[i] = x.shape[perm[i]]), both row-major. Walks the output in
 * order; the innermost output axis is copied as one run when it is x's innermost axis too (the ViT's
 * head splits move whole 64-float rows), else element by element with x's stride.
 */
export function transposeInto(x: Int32Array | Float32Array, shape: number[], perm: number[], out: Int32Array | Float32Array): void {
  const r = shape.length;
  if (r === 0 || x.length === 0) {
    out.set(x);
    return;
  }
  const inStrides = new Array<number>(r);
  for (let i = r - 1, s = 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= shape[i];
  }
  const outShape = perm.map((p) => shape[p]);
  const step = perm.map((p) => inStrides[p]); // input stride of each output axis
  const inner = outShape[r - 1];
  const innerStep = step[r - 1];
  const idx = new Array<number>(r - 1).fill(0);
  let src = 0;
  let o = 0;
  const rows = out.length / inner;
  for (let row = 0; row < rows; row++) {
    if (innerStep === 1) {
      out.set(x.subarray(src, src + inner), o);
      o += inner;
    } else {
      for (let j = 0, s = src; j < inner; j++, s += innerStep) out[o++] = x[s];
    }
    // odometer over the outer output axes
    for (let a = r - 2; a >= 0; a--) {
      idx[a]++;
      src += step[a];
      if (idx[a] < outShape[a]) break;
      src -= step[a] * outShape[a];
      idx[a] = 0;
    }
  }
}

export function fastTransposeConfig(stock: KernelConfig): KernelConfig {
  const kernelFunc = ({ inputs, backend, attrs }: Parameters<KernelFunc>[0]) => {
    const { x } = inputs as { x: TensorInfo };
    const { perm } = attrs as unknown as { perm: number[] };
    const be = asWasmBackend(backend);
    if (!is4Byte(x)) return callKernel(stock, { x }, be, attrs ?? {});
    const out = be.makeOutput(perm.map((p) => x.shape[p]), x.dtype);
    // Views after makeOutput: an allocation may grow (and detach) the heap.
    transposeInto(i32View(be, x), x.shape, perm, i32View(be, out));
    return out;
  };
  return { kernelName: "Transpose", backendName: "wasm", kernelFunc: kernelFunc as KernelFunc };
}

export function fastUnpackConfig(stock: KernelConfig): KernelConfig {
  const kernelFunc = ({ inputs, backend, attrs }: Parameters<KernelFunc>[0]) => {
    const { value } = inputs as { value: TensorInfo };
    const be = asWasmBackend(backend);
    if (!is4Byte(value)) return callKernel(stock, { value }, be, attrs ?? {}) as unknown as TensorInfo;
    const r = value.shape.length;
    let axis = (attrs as unknown as { axis: number }).axis;
    if (axis < 0) axis += r;
    const n = value.shape[axis];
    const outShape = value.shape.filter((_, i) => i !== axis);
    const outer = tf.util.sizeFromShape(value.shape.slice(0, axis));
    const inner = tf.util.sizeFromShape(value.shape.slice(axis + 1));
    const outs: TensorInfo[] = [];
    for (let k = 0; k < n; k++) outs.push(be.makeOutput(outShape, value.dtype));
    const x = i32View(be, value);
    for (let k = 0; k < n; k++) {
      const y = i32View(be, outs[k]);
      if (outer === 1) y.set(x.subarray(k * inner, (k + 1) * inner));
      else for (let o = 0; o < outer; o++) y.set(x.subarray((o * n + k) * inner, (o * n + k + 1) * inner), o * inner);
    }
    return outs;
  };
  return { kernelName: "Unpack", backendName: "wasm", kernelFunc: kernelFunc as unknown as KernelFunc };
}
