// Shape arithmetic shared by the matMul overrides: tfjs's BatchMatMul contract (inner dims, batch
// broadcasting, output shape). Pure; must not touch tensors or the heap.
import * as tf from "@tensorflow/tfjs-core";

export interface MatMulGeometry {
  /** Rows of op(a), columns of op(b), shared dimension. */
  m: number;
  n: number;
  k: number;
  batchA: number;
  batchB: number;
  /** Number of output matrices (product of the broadcast batch dims). */
  batch: number;
  outShape: number[];
  /**
   * Which a / b matrix feeds output matrix i; null when it is simply i % batchA and i % batchB (the
   * equal, one-is-1 and suffix-broadcast cases), the rule the native batch loop implements.
   */
  index: { a: Int32Array; b: Int32Array } | null;
}

export function matMulGeometry(aShape: number[], bShape: number[], transposeA: boolean, transposeB: boolean): MatMulGeometry {
  const ra = aShape.length;
  const rb = bShape.length;
  if (ra < 2 || rb < 2) throw new Error(`matMul needs rank >= 2 operands, got shapes [${aShape}] and [${bShape}]`);
  const innerA = transposeA ? aShape[ra - 2] : aShape[ra - 1];
  const innerB = transposeB ? bShape[rb - 1] : bShape[rb - 2];
  const m = transposeA ? aShape[ra - 1] : aShape[ra - 2];
  const n = transposeB ? bShape[rb - 2] : bShape[rb - 1];
  tf.util.assert(
    innerA === innerB,
    () =>
      `Error in matMul: inner shapes (${innerA}) and (${innerB}) of Tensors with shapes ${aShape} and ` +
      `${bShape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
  );
  const dimsA = aShape.slice(0, -2);
  const dimsB = bShape.slice(0, -2);
  const outDims = tf.broadcast_util.assertAndGetBroadcastShape(dimsA, dimsB);
  const batchA = tf.util.sizeFromShape(dimsA);
  const batchB = tf.util.sizeFromShape(dimsB);
  const batch = tf.util.sizeFromShape(outDims);
  const ia = broadcastIndex(dimsA, outDims);
  const ib = broadcastIndex(dimsB, outDims);
  let modulo = true;
  for (let i = 0; i < batch && modulo; i++) modulo = ia[i] === i % batchA && ib[i] === i % batchB;
  return { m, n, k: innerA, batchA, batchB, batch, outShape: [...outDims, m, n], index: modulo ? null : { a: ia, b: ib } };
}

/** For each flat index of outDims, the flat index into dims broadcast (right-aligned) to it. */
function broadcastIndex(dims: number[], outDims: number[]): Int32Array {
  const total = tf.util.sizeFromShape(outDims);
  const res = new Int32Array(total);
  const off = outDims.length - dims.length;
  const strides = new Array<number>(dims.length);
  let s = 1;
  for (let d = dims.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= dims[d];
  }
  for (let i = 0; i < total; i++) {
    let rem = i;
    let src = 0;
    for (let d = outDims.length - 1; d >= 0; d--) {
      const coord = rem % outDims[d];
      rem = Math.floor(rem / outDims[d]);
      const dd = d - off;
      if (dd >= 0 && dims[dd] !== 1) src += coord * strides[dd];
    }
    res[i] = src;
  }
  return res;
}
