// Type of the @sed-pipe/blas Node-API addon (native/blas/src/sed_blas.c). Declarations only.

/** Activation codes of the native epilogue; equal to tfjs-backend-wasm's FusableActivation enum. */
export const ACTIVATION_CODES = {
  linear: 0,
  relu: 1,
  relu6: 2,
  prelu: 3,
  leakyrelu: 4,
  sigmoid: 5,
  elu: 6,
} as const;
export type FusableActivationName = keyof typeof ACTIVATION_CODES;

export interface BlasAddon extends BlasOptimAddon {
  /** Row-major cblas_sgemm: C = alpha * op(A) x op(B) + beta * C. Bounds-checked against the views. */
  sgemm(
    transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
    a: Float32Array, lda: number, b: Float32Array, ldb: number, beta: number, c: Float32Array, ldc: number,
  ): void;
  /** out[i] = op(a[i % batchA]) x op(b[i % batchB]) for i < max(batchA, batchB); contiguous [batch, rows, cols]. */
  batchMatMul(
    a: Float32Array, b: Float32Array, out: Float32Array, batchA: number, batchB: number,
    m: number, n: number, k: number, transA: boolean, transB: boolean,
  ): void;
  /** In place over rows of length n: + bias (length 1 or n), then the activation (prelu weights length 1 or n). */
  biasActivation(out: Float32Array, n: number, bias: Float32Array | null, activation: number, alpha: number, preluWeights: Float32Array | null): void;
  /** out[i] = expf(x[i]) on OpenBLAS's threads (same bits as tfjs-wasm's Exp kernel); absent in builds before it. */
  exp?(x: Float32Array, out: Float32Array): void;
  /** Exact-erf GELU, x * Phi(x) through erfc (accurate in the negative tail), ~1e-7 relative; absent in older builds. */
  gelu?(x: Float32Array, out: Float32Array): void;
  /** LayerNorm over rows of `cols` (biased variance, statistics in double); absent in older builds. */
  layerNorm?(x: Float32Array, cols: number, w: Float32Array, b: Float32Array, eps: number, out: Float32Array): void;
  /** Row softmax into p and each row's logsumexp into lse; absent in older builds. */
  softmaxRows?(x: Float32Array, cols: number, p: Float32Array, lse: Float64Array): void;
  /** out[j] = sum over i of x[i * cols + j], for i < rows, j < cols. */
  colSum(x: Float32Array, rows: number, cols: number, out: Float32Array): void;
  setNumThreads(threads: number): void;
  numThreads(): number;
  /** OpenBLAS build string and the core it dispatched to. */
  config(): string;
}

export interface BlasOptimAddon {
  /** One AdamW step (bc1 = 1 - beta1^t, bc2 = 1 - beta2^t); all arrays the same length. */
  adamw(
    p: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, pOut: Float32Array, mOut: Float32Array, vOut: Float32Array,
    lr: number, beta1: number, beta2: number, eps: number, weightDecay: number, bc1: number, bc2: number,
  ): void;
  /** One SGD step (dampening 0, no nesterov); buf/bufOut required when momentum > 0. */
  sgd(
    p: Float32Array, g: Float32Array, buf: Float32Array | null, pOut: Float32Array, bufOut: Float32Array | null,
    lr: number, momentum: number, weightDecay: number,
  ): void;
}
