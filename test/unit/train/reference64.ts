// Float64 plain-JS reference of the SED head and loss, for hand checks and finite differences
// (not a test suite itself). Mirrors reference §1.2 and §2.3 literally, loop by loop.
import { HEAD_PARAM_NAMES, headParamShapes, type HeadArrays, type HeadShape } from "../../../src/ml/heads.ts";

export type Head64 = Record<(typeof HEAD_PARAM_NAMES)[number], Float64Array>;

export function to64(h: HeadArrays): Head64 {
  const o = {} as Head64;
  for (const k of HEAD_PARAM_NAMES) o[k] = Float64Array.from(h[k]);
  return o;
}

export function erf(z: number): number {
  if (Math.abs(z) > 5) return Math.sign(z);
  let sum = 0;
  let term = z;
  for (let n = 0; n < 100; n++) {
    sum += term / (2 * n + 1);
    term *= (-z * z) / (n + 1);
  }
  return (2 / Math.sqrt(Math.PI)) * sum;
}

function ln(v: number[], w: Float64Array, b: Float64Array, eps: number): number[] {
  const m = v.reduce((a, c) => a + c, 0) / v.length;
  const va = v.reduce((a, c) => a + (c - m) ** 2, 0) / v.length;
  return v.map((c, i) => ((c - m) / Math.sqrt(va + eps)) * w[i] + b[i]);
}
function lin(v: number[], W: Float64Array, b: Float64Array, out: number): number[] {
  return Array.from({ length: out }, (_, o) => v.reduce((a, c, i) => a + c * W[o * v.length + i], b[o]));
}

export function headLogits64(h: Head64, x: number[][], s: HeadShape): number[][] {
  const eps = s.eps ?? 1e-6;
  return x.map((row) => {
    const a = ln(row, h["norm2.weight"], h["norm2.bias"], eps);
    const f1 = lin(a, h["mlp.fc1.weight"], h["mlp.fc1.bias"], s.hidden).map((z) => 0.5 * z * (1 + erf(z / Math.SQRT2)));
    const f2 = lin(f1, h["mlp.fc2.weight"], h["mlp.fc2.bias"], s.dim);
    const y = row.map((c, i) => c + h.gamma_2[i] * f2[i]);
    return lin(ln(y, h["norm.weight"], h["norm.bias"], eps), h["head.weight"], h["head.bias"], s.classes);
  });
}

function softmax(z: number[]): number[] {
  const m = Math.max(...z);
  const e = z.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

export interface Loss64Opts {
  lambda: number;
  mu: number;
  computeRepulsion: boolean;
  smoothingEps: number | null;
}

/** Returns {task, repulsion, total, alpha, a2d} for logits[k][n][c]. */
export function sedLoss64(logits: number[][][], labels: number[], C: number, o: Loss64Opts, ref: number, alphaFixed?: number[]) {
  const K = logits.length;
  const N = labels.length;
  const t = labels.map((y) => Array.from({ length: C }, (_, c) => (o.smoothingEps === null ? (c === y ? 1 : 0) : (1 - o.smoothingEps) * (c === y ? 1 : 0) + o.smoothingEps / C)));
  let task = 0;
  for (let k = 0; k < K; k++) {
    let s = 0;
    for (let n = 0; n < N; n++) {
      const p = softmax(logits[k][n]);
      s += -t[n].reduce((a, tc, c) => a + tc * Math.log(p[c]), 0);
    }
    task += s / N / K;
  }
  if (!o.computeRepulsion) return { task, repulsion: 0, total: (1 - o.lambda) * task, alpha: [] as number[], a2d: [] as number[] };
  const ce = labels.map((y, n) => {
    const ens = Array.from({ length: C }, (_, c) => logits.reduce((a, z) => a + z[n][c], 0) / K);
    return -Math.log(softmax(ens)[y]);
  });
  const meanCe = ce.reduce((a, b) => a + b, 0) / N;
  const alpha = alphaFixed ?? ce.map((v) => v / meanCe ** 2);
  const a2d = labels.map((_, n) => {
    const pr = softmax(logits[ref][n]);
    let s = 0;
    for (let i = 0; i < K; i++) {
      if (i === ref) continue;
      const pi = softmax(logits[i][n]);
      let c = 0;
      for (let j = 1; j < C; j++) if (pi[j] > pi[c]) c = j;
      const a = pi[c];
      const b = pr[c];
      s += -Math.log(a * (1 - b) + b * (1 - a) + 1e-9);
    }
    return s / (K - 1);
  });
  const repulsion = alpha.reduce((acc, al, n) => acc + al * a2d[n], 0) / N;
  return { task, repulsion, total: (1 - o.lambda) * task + o.mu * o.lambda * repulsion, alpha, a2d };
}

export function zeros64(s: HeadShape): Head64 {
  const sh = headParamShapes(s);
  const o = {} as Head64;
  for (const k of HEAD_PARAM_NAMES) o[k] = new Float64Array(sh[k].reduce((a, b) => a * b, 1));
  return o;
}
