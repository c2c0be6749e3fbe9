// wasm kernels BatchMatMul and _FusedMatMul computed by OpenBLAS on views of the wasm heap. Owns
// nothing between calls (no packed-weight cache: every call reads the operands' current bytes);
// must not keep heap views across an allocation.
import type { KernelConfig, KernelFunc, TensorInfo } from "@tensorflow/tfjs-core";
import { ACTIVATION_CODES, type BlasAddon, type FusableActivationName } from "./blas-addon.ts";
import { matMulGeometry, type MatMulGeometry } from "./mat-mul-geometry.ts";
import { asWasmBackend, assertFloat32, f32View, runWasmKernel, type WasmBackendLike } from "./wasm-heap.ts";

/** Computes op(a) x op(b) into a freshly allocated output of shape outShape. */
function blasProduct(
  blas: BlasAddon, backend: WasmBackendLike, a: TensorInfo, b: TensorInfo,
  transposeA: boolean, transposeB: boolean, g: MatMulGeometry, outShape: number[],
): TensorInfo {
  const out = backend.makeOutput(outShape, "float32");
  // Views only now: makeOutput may have grown the heap and detached older ones.
  const av = f32View(backend, a);
  const bv = f32View(backend, b);
  const ov = f32View(backend, out);
  const { m, n, k } = g;
  if (g.index === null) {
    blas.batchMatMul(av, bv, ov, g.batchA, g.batchB, m, n, k, transposeA, transposeB);
  } else {
    const lda = transposeA ? m : k;
    const ldb = transposeB ? k : n;
    for (let i = 0; i < g.batch; i++) {
      blas.sgemm(
        transposeA, transposeB, m, n, k, 1,
        av.subarray(g.index.a[i] * m * k, (g.index.a[i] + 1) * m * k), lda,
        bv.subarray(g.index.b[i] * k * n, (g.index.b[i] + 1) * k * n), ldb,
        0, ov.subarray(i * m * n, (i + 1) * m * n), n,
      );
    }
  }
  return out;
}

export function blasBatchMatMulConfig(blas: BlasAddon): KernelConfig {
  const kernelFunc = ({ inputs, backend, attrs }: Parameters<KernelFunc>[0]) => {
    const { a, b } = inputs as { a: TensorInfo; b: TensorInfo };
    const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
    assertFloat32("BatchMatMul", a, b);
    const be = asWasmBackend(backend);
    const g = matMulGeometry(a.shape, b.shape, !!transposeA, !!transposeB);
    return blasProduct(blas, be, a, b, !!transposeA, !!transposeB, g, g.outShape);
  };
  return { kernelName: "BatchMatMul", backendName: "wasm", kernelFunc: kernelFunc as KernelFunc };
}

/** True when t broadcasts along the last axis only: a scalar-like [1..1] or an [1..1, n] row. */
export function isRowVector(t: TensorInfo, n: number): boolean {
  const size = t.shape.reduce((p, d) => p * d, 1);
  return size === 1 || (size === n && t.shape[t.shape.length - 1] === n);
}

/** Applies bias then activation with the wasm backend's own kernels (the general-broadcast case). */
export function composeEpilogue(
  backend: WasmBackendLike, x: TensorInfo, bias: TensorInfo | undefined, activation: FusableActivationName,
  prelu: TensorInfo | undefined, leakyreluAlpha: number,
): TensorInfo {
  let cur = x;
  const step = (next: TensorInfo) => {
    backend.disposeData(cur.dataId);
    cur = next;
  };
  if (bias) step(runWasmKernel("Add", { a: cur, b: bias }, backend));
  switch (activation) {
    case "linear":
      break;
    case "relu":
      step(runWasmKernel("Relu", { x: cur }, backend));
      break;
    case "relu6":
      step(runWasmKernel("Relu6", { x: cur }, backend));
      break;
    case "elu":
      step(runWasmKernel("Elu", { x: cur }, backend));
      break;
    case "sigmoid":
      step(runWasmKernel("Sigmoid", { x: cur }, backend));
      break;
    case "leakyrelu":
      step(runWasmKernel("LeakyRelu", { x: cur }, backend, { alpha: leakyreluAlpha }));
      break;
    case "prelu":
      if (!prelu) throw new Error("_FusedMatMul: activation prelu needs preluActivationWeights");
      step(runWasmKernel("Prelu", { x: cur, alpha: prelu }, backend));
      break;
  }
  return cur;
}

export function activationName(activation: unknown): FusableActivationName {
  const name = (activation ?? "linear") as string;
  if (!(name in ACTIVATION_CODES)) throw new Error(`${name} activation not yet supported for _FusedMatMul in the wasm backend.`);
  return name as FusableActivationName;
}

export function blasFusedMatMulConfig(blas: BlasAddon): KernelConfig {
  const kernelFunc = ({ inputs, backend, attrs }: Parameters<KernelFunc>[0]) => {
    const { a, b, bias, preluActivationWeights: prelu } = inputs as Record<string, TensorInfo | undefined> as {
      a: TensorInfo; b: TensorInfo; bias?: TensorInfo; preluActivationWeights?: TensorInfo;
    };
    const { transposeA, transposeB, leakyreluAlpha } = attrs as { transposeA: boolean; transposeB: boolean; leakyreluAlpha?: number };
    const act = activationName(attrs?.activation);
    assertFloat32("_FusedMatMul", a, b, bias, prelu);
    const be = asWasmBackend(backend);
    const g = matMulGeometry(a.shape, b.shape, !!transposeA, !!transposeB);
    // Same output rank as the stock wasm kernel: the op reshapes it to the user's shape afterwards.
    const out = blasProduct(blas, be, a, b, !!transposeA, !!transposeB, g, g.outShape);
    const alpha = leakyreluAlpha ?? 0.2;
    const nativeBias = !bias || isRowVector(bias, g.n);
    const nativeAct = act !== "prelu" || (prelu !== undefined && isRowVector(prelu, g.n));
    if (nativeBias && nativeAct) {
      if ((bias || act !== "linear") && g.batch * g.m * g.n > 0) {
        blas.biasActivation(
          f32View(be, out), g.n, bias ? f32View(be, bias) : null, ACTIVATION_CODES[act], alpha,
          act === "prelu" && prelu ? f32View(be, prelu) : null,
        );
      }
      return out;
    }
    return composeEpilogue(be, out, bias, act, prelu, alpha);
  };
  return { kernelName: "_FusedMatMul", backendName: "wasm", kernelFunc: kernelFunc as KernelFunc };
}
