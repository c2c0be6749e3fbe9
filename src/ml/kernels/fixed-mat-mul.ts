// Pure-wasm fallback for BatchMatMul / _FusedMatMul when @sed-pipe/blas is unavailable: transposes
// operands with the wasm Transpose kernel and splits batches, so every product runs on the stock
// XNNPACK path (untransposed, batch 1). Must hand the stock kernel a fresh tensor for every
// rewritten operand: XNNPACK caches packed weights by tensor id.
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { activationName, composeEpilogue } from "./blas-mat-mul.ts";
import { matMulGeometry, type MatMulGeometry } from "./mat-mul-geometry.ts";
import { asWasmBackend, assertFloat32, callKernel, runWasmKernel, type WasmBackendLike } from "./wasm-heap.ts";

export interface StockMatMulKernels {
  batchMatMul: KernelConfig;
  fusedMatMul: KernelConfig;
}

/** [batch, rows, cols] operand with op() applied, as the stock fast path wants it. */
function plainOperand(
  be: WasmBackendLike, t: TensorInfo, batch: number, rows: number, cols: number, transposed: boolean,
): { info: TensorInfo; temp: boolean } {
  if (!transposed) return { info: { dataId: t.dataId, shape: [batch, rows, cols], dtype: t.dtype }, temp: false };
  const stored: TensorInfo = { dataId: t.dataId, shape: [batch, cols, rows], dtype: t.dtype };
  return { info: runWasmKernel("Transpose", { x: stored }, be, { perm: [0, 2, 1] }), temp: true };
}

function heapCopy(be: WasmBackendLike, src: TensorInfo, srcElem: number, dst: TensorInfo, dstElem: number, count: number): void {
  const heap = new Float32Array(be.wasm.HEAPU8.buffer);
  const s = be.dataIdMap.get(src.dataId)!.memoryOffset / 4 + srcElem;
  const d = be.dataIdMap.get(dst.dataId)!.memoryOffset / 4 + dstElem;
  heap.copyWithin(d, s, s + count);
}

/** One matrix of a [batch, rows, cols] operand as a fresh [1, rows, cols] tensor. */
function sliceMatrix(be: WasmBackendLike, t: TensorInfo, index: number, rows: number, cols: number): TensorInfo {
  const out = be.makeOutput([1, rows, cols], "float32");
  heapCopy(be, t, index * rows * cols, out, 0, rows * cols);
  return out;
}

export function fixedProduct(
  stock: StockMatMulKernels, be: WasmBackendLike, a: TensorInfo, b: TensorInfo,
  transposeA: boolean, transposeB: boolean, g: MatMulGeometry, outShape: number[],
): TensorInfo {
  const { m, n, k } = g;
  const noT = { transposeA: false, transposeB: false };
  if (!transposeA && !transposeB && g.batch === 1) {
    const r = callKernel(stock.batchMatMul, { a, b }, be, noT);
    r.shape = outShape;
    return r;
  }
  const pa = plainOperand(be, a, g.batchA, m, k, transposeA);
  const pb = plainOperand(be, b, g.batchB, k, n, transposeB);
  let out: TensorInfo;
  if (g.batch === 1) {
    out = callKernel(stock.batchMatMul, { a: pa.info, b: pb.info }, be, noT);
    out.shape = outShape;
  } else {
    out = be.makeOutput(outShape, "float32");
    for (let i = 0; i < g.batch; i++) {
      const ia = g.index ? g.index.a[i] : i % g.batchA;
      const ib = g.index ? g.index.b[i] : i % g.batchB;
      const ai = g.batchA === 1 ? pa.info : sliceMatrix(be, pa.info, ia, m, k);
      const bi = g.batchB === 1 ? pb.info : sliceMatrix(be, pb.info, ib, k, n);
      const r = callKernel(stock.batchMatMul, { a: ai, b: bi }, be, noT);
      heapCopy(be, r, 0, out, i * m * n, m * n);
      be.disposeData(r.dataId);
      if (ai !== pa.info) be.disposeData(ai.dataId);
      if (bi !== pb.info) be.disposeData(bi.dataId);
    }
  }
  if (pa.temp) be.disposeData(pa.info.dataId);
  if (pb.temp) be.disposeData(pb.info.dataId);
  return out;
}

export function fixedBatchMatMulConfig(stock: StockMatMulKernels): KernelConfig {
  const kernelFunc = ({ inputs, backend, attrs }: Parameters<KernelFunc>[0]) => {
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
    assertFloat32("BatchMatMul", a, b);
    const be = asWasmBackend(backend);
    const g = matMulGeometry(a.shape, b.shape, !!transposeA, !!transposeB);
    return fixedProduct(stock, be, a, b, !!transposeA, !!transposeB, g, g.outShape);
  };
  return { kernelName: "BatchMatMul", backendName: "wasm", kernelFunc: kernelFunc as KernelFunc };
}

export function fixedFusedMatMulConfig(stock: StockMatMulKernels): KernelConfig {
  const kernelFunc = ({ inputs, backend, attrs }: Parameters<KernelFunc>[0]) => {
    const { a, b, bias, preluActivationWeights: prelu } = inputs as Record<string, TensorInfo | undefined> as {
      a: TensorInfo; b: TensorInfo; bias?: TensorInfo; preluActivationWeights?: TensorInfo;
    };
    const { transposeA, transposeB, leakyreluAlpha } = attrs as { transposeA: boolean; transposeB: boolean; leakyreluAlpha?: number };
    const act = activationName(attrs?.activation);
    assertFloat32("_FusedMatMul", a, b, bias, prelu);
    const be = asWasmBackend(backend);
    const g = matMulGeometry(a.shape, b.shape, !!transposeA, !!transposeB);
    // The stock kernel's own fast case (XNNPACK with a fused per-column bias and clamp) is right as
    // it is; everything else is a product plus the epilogue in separate kernels.
    const stockFast =
      !transposeA && !transposeB && g.batch === 1 && a.shape.length === 3 && b.shape.length === 3 &&
      (!bias || (bias.shape.length === 1 && bias.shape[0] === g.n)) &&
      (act === "linear" || act === "relu" || act === "relu6");
    if (stockFast) return callKernel(stock.fusedMatMul, { a, b, bias }, be, attrs as never);
    const out = fixedProduct(stock, be, a, b, !!transposeA, !!transposeB, g, g.outShape);
    return composeEpilogue(be, out, bias, act, prelu, leakyreluAlpha ?? 0.2);
  };
  return { kernelName: "_FusedMatMul", backendName: "wasm", kernelFunc: kernelFunc as KernelFunc };
}
