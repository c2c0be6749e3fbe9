// Access to the tfjs-wasm backend's heap and stock kernels for the matMul overrides. Owns the
// invariant that heap views are taken after the last allocation of a kernel (growth detaches them);
// must not cache views or anything keyed by tensor id.
import * as tf from "@tensorflow/tfjs-core";
import type { DataType, KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from "@tensorflow/tfjs-core";

/** The parts of tfjs-backend-wasm 4.22's BackendWasm these kernels rely on. */
export interface WasmBackendLike {
  wasm: { HEAPU8: Uint8Array };
  dataIdMap: { get(dataId: object): { memoryOffset: number; shape: number[]; dtype: DataType } | undefined };
  makeOutput(shape: number[], dtype: DataType): TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
}

export function asWasmBackend(backend: unknown): WasmBackendLike {
  const b = backend as Partial<WasmBackendLike> | null;
  if (!b || !b.wasm || !b.dataIdMap || typeof b.makeOutput !== "function") {
    throw new Error("matMul override called on a backend that is not tfjs-backend-wasm 4.x");
  }
  return b as WasmBackendLike;
}

/** Float32 view of a tensor's data on the wasm heap; valid until the next heap allocation. */
export function f32View(backend: WasmBackendLike, t: TensorInfo, size = tf.util.sizeFromShape(t.shape)): Float32Array {
  const data = backend.dataIdMap.get(t.dataId);
  if (!data) throw new Error(`tensor ${t.shape} is not on the wasm backend (disposed?)`);
  return new Float32Array(backend.wasm.HEAPU8.buffer, data.memoryOffset, size);
}

/**
 * Copies a float32 tensor's values into out at offset: on the wasm backend straight from the heap
 * (dataSync would allocate and copy first; that made moving a paper-size head cost ~45 ms), on other
 * backends through dataSync.
 */
export function readInto(t: tf.Tensor, out: Float32Array, offset = 0): void {
  if (tf.getBackend() === "wasm") out.set(f32View(asWasmBackend(tf.backend()), t), offset);
  else out.set(t.dataSync() as Float32Array, offset);
}

/** Runs another wasm kernel (stock or current) by name, as a kernel would. */
export function runWasmKernel(
  name: string,
  inputs: Record<string, TensorInfo>,
  backend: WasmBackendLike,
  attrs: NamedAttrMap = {},
): TensorInfo {
  const k = tf.getKernel(name, "wasm");
  if (!k) throw new Error(`the wasm backend has no ${name} kernel`);
  return k.kernelFunc({ inputs, backend: backend as never, attrs }) as TensorInfo;
}

/** Calls a saved (stock) kernel config. */
export function callKernel(
  config: KernelConfig,
  inputs: Record<string, TensorInfo | undefined>,
  backend: WasmBackendLike,
  attrs: NamedAttrMap,
): TensorInfo {
  return (config.kernelFunc as KernelFunc)({ inputs: inputs as never, backend: backend as never, attrs }) as TensorInfo;
}

export function assertFloat32(kernel: string, ...ts: (TensorInfo | undefined | null)[]): void {
  for (const t of ts) {
    if (t && t.dtype !== "float32") throw new Error(`${kernel} for non-float32 tensors is not supported (got ${t.dtype})`);
  }
}
