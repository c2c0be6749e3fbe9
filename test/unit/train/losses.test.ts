import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { Rng } from "../../../src/rng.ts";
import { sedLoss, sedLossWithGrad, smoothedTargets } from "../../../src/ml/losses.ts";
import { headBackward, headForwardCached, headTensorsFromArrays, initHeadArrays, HEAD_PARAM_NAMES, type HeadShape } from "../../../src/ml/heads.ts";
import { sedLoss64, headLogits64, to64, type Loss64Opts } from "./reference64.ts";

await tf.setBackend("cpu");

const close = (got: number, want: number, tol: number, what: string) =>
  assert.ok(Math.abs(got - want) <= tol * Math.max(1, Math.abs(want)), `${what}: got ${got}, want ${want}`);

const Z0 = [[2, 1, 0], [0, 1, 0]];
const Z1 = [[1, 0, 0], [0, 0, 3]];
const Y = [0, 2];

function run(opts: Loss64Opts, ref: number) {
  return tf.tidy(() => {
    const l = sedLoss([tf.tensor2d(Z0), tf.tensor2d(Z1)], tf.tensor1d(Y, "int32"), 3, opts, ref);
    const g = sedLossWithGrad([tf.tensor2d(Z0), tf.tensor2d(Z1)], tf.tensor1d(Y, "int32"), 3, opts, ref);
    return { l: [l.task, l.repulsion, l.total].map((t) => t.dataSync()[0]), g: [g.task, g.repulsion, g.total].map((t) => t.dataSync()[0]) };
  });
}

test("smoothed targets: (1-eps) onehot + eps/C", () => {
  const t = tf.tidy(() => smoothedTargets(tf.tensor1d([1], "int32"), 4, 0.5).arraySync());
  assert.equal(t[0].map((v) => Number(v.toFixed(6))), [0.125, 0.625, 0.125, 0.125]);
});

test("2 heads, 3 classes: task, alpha, A2D and total by hand", () => {
  const sm = (z: number[]) => { const e = z.map(Math.exp); const s = e[0] + e[1] + e[2]; return e.map((v) => v / s); };
  // task with eps = 0.5: t = [2/3, 1/6, 1/6] for y = 0
  const eps = 0.5;
  const ce = (z: number[], y: number) => -sm(z).reduce((a, p, c) => a + ((1 - eps) * (c === y ? 1 : 0) + eps / 3) * Math.log(p), 0);
  const task = ((ce(Z0[0], 0) + ce(Z0[1], 2)) / 2 + (ce(Z1[0], 0) + ce(Z1[1], 2)) / 2) / 2;
  // alpha from the mean-logit ensemble with hard labels
  const ens = [0, 1].map((n) => Z0[n].map((v, c) => (v + Z1[n][c]) / 2));
  const ceE = ens.map((z, n) => -Math.log(sm(z)[Y[n]]));
  const m = (ceE[0] + ceE[1]) / 2;
  const alpha = ceE.map((v) => v / (m * m));
  // A2D with reference position 1 (head 1): head 0's argmax class
  const a2d = [0, 1].map((n) => {
    const p0 = sm(Z0[n]);
    const c = p0.indexOf(Math.max(...p0));
    const a = p0[c];
    const b = sm(Z1[n])[c];
    return -Math.log(a * (1 - b) + b * (1 - a) + 1e-9);
  });
  const R = (alpha[0] * a2d[0] + alpha[1] * a2d[1]) / 2;
  const opts = { lambda: 0.5, mu: 5, computeRepulsion: true, smoothingEps: eps };
  const r = run(opts, 1);
  for (const v of [r.l, r.g]) {
    close(v[0], task, 1e-5, "task");
    close(v[1], R, 1e-5, "repulsion");
    close(v[2], 0.5 * task + 2.5 * R, 1e-5, "total");
  }
  const ref = sedLoss64([Z0, Z1], Y, 3, opts, 1);
  close(ref.repulsion, R, 1e-12, "float64 reference agrees");
});

test("repulsion never computed (use_always_labeled false): logged 0, total (1-lambda) task", () => {
  const r = run({ lambda: 0.5, mu: 0.0002, computeRepulsion: false, smoothingEps: null }, 0);
  const ref = sedLoss64([Z0, Z1], Y, 3, { lambda: 0.5, mu: 0.0002, computeRepulsion: false, smoothingEps: null }, 0);
  assert.is(r.l[1], 0);
  close(r.l[2], 0.5 * ref.task, 1e-6, "total");
});

test("manual_lambda 0: repulsion computed and logged but multiplied by 0", () => {
  const opts = { lambda: 0.5, mu: 0, computeRepulsion: true, smoothingEps: 0.5 };
  const r = run(opts, 0);
  const ref = sedLoss64([Z0, Z1], Y, 3, opts, 0);
  assert.ok(r.l[1] > 0);
  close(r.l[1], ref.repulsion, 1e-5, "repulsion");
  close(r.l[2], 0.5 * ref.task, 1e-6, "total");
});

function randomLogits(K: number, N: number, C: number, seed: number): number[][][] {
  const rng = new Rng(seed);
  return Array.from({ length: K }, () => Array.from({ length: N }, () => Array.from({ length: C }, () => 2 * rng.normal())));
}

for (const [K, opts, ref] of [
  [2, { lambda: 0.5, mu: 5, computeRepulsion: true, smoothingEps: 0.5 }, 1],
  [3, { lambda: 0.3, mu: 0.5, computeRepulsion: true, smoothingEps: null }, 2],
  [2, { lambda: 0.5, mu: 0.0002, computeRepulsion: false, smoothingEps: null }, 0],
] as [number, Loss64Opts, number][]) {
  test(`dL/dlogits matches finite differences (K=${K}, repulsion ${opts.computeRepulsion}, eps ${opts.smoothingEps})`, () => {
    const N = 4, C = 3;
    const Z = randomLogits(K, N, C, 11 + K);
    const labels = [0, 2, 1, 2];
    const alpha = sedLoss64(Z, labels, C, opts, ref).alpha; // alpha carries no gradient
    const analytic = tf.tidy(() => sedLossWithGrad(Z.map((z) => tf.tensor2d(z)), tf.tensor1d(labels, "int32"), C, opts, ref).dlogits.map((d) => d.arraySync()));
    const h = 1e-6;
    for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) for (let c = 0; c < C; c++) {
      const zp = structuredClone(Z); zp[k][n][c] += h;
      const zm = structuredClone(Z); zm[k][n][c] -= h;
      const fd = (sedLoss64(zp, labels, C, opts, ref, opts.computeRepulsion ? alpha : undefined).total - sedLoss64(zm, labels, C, opts, ref, opts.computeRepulsion ? alpha : undefined).total) / (2 * h);
      assert.ok(Math.abs(analytic[k][n][c] - fd) < 1e-5 + 1e-3 * Math.abs(fd), `dz[${k}][${n}][${c}]: ${analytic[k][n][c]} vs fd ${fd}`);
    }
  });
}

test("head parameter gradients match finite differences of the float64 reference", () => {
  const s: HeadShape = { dim: 4, hidden: 6, classes: 3 };
  const rng = new Rng(5);
  const heads = [initHeadArrays(s, rng), initHeadArrays(s, rng)];
  for (const h of heads) {
    // Make every path matter: large LayerScale, non-trivial LN affine and weights.
    for (const k of HEAD_PARAM_NAMES) for (let i = 0; i < h[k].length; i++) h[k][i] = (k === "gamma_2" ? 0.7 : k.startsWith("norm") && k.endsWith("weight") ? 1 : 0) + 0.4 * rng.normal();
  }
  const x = Array.from({ length: 5 }, () => Array.from({ length: 4 }, () => rng.normal()));
  const labels = [0, 1, 2, 1, 0];
  const opts = { lambda: 0.5, mu: 5, computeRepulsion: true, smoothingEps: 0.5 };
  const ref = 0;
  const h64 = heads.map(to64);
  const alpha = sedLoss64(h64.map((h) => headLogits64(h, x, s)), labels, 3, opts, ref).alpha;
  const loss64 = () => sedLoss64(h64.map((h) => headLogits64(h, x, s)), labels, 3, opts, ref, alpha).total;
  const grads = tf.tidy(() => {
    const xt = tf.tensor2d(x);
    const ps = heads.map((h) => headTensorsFromArrays(h, s));
    const f = ps.map((p) => headForwardCached(p, xt, s));
    const l = sedLossWithGrad(f.map((v) => v.logits), tf.tensor1d(labels, "int32"), 3, opts, ref);
    return ps.map((p, j) => { const g = headBackward(p, f[j].cache, l.dlogits[j]); return Object.fromEntries(HEAD_PARAM_NAMES.map((k) => [k, Array.from(g[k].dataSync())])); });
  });
  const h = 1e-6;
  let checked = 0;
  for (let j = 0; j < 2; j++) for (const k of HEAD_PARAM_NAMES) for (let i = 0; i < h64[j][k].length; i++) {
    const v = h64[j][k][i];
    h64[j][k][i] = v + h; const lp = loss64();
    h64[j][k][i] = v - h; const lm = loss64();
    h64[j][k][i] = v;
    const fd = (lp - lm) / (2 * h);
    const g = grads[j][k][i];
    assert.ok(Math.abs(g - fd) < 2e-5 + 2e-3 * Math.abs(fd), `head ${j} ${k}[${i}]: ${g} vs fd ${fd}`);
    checked++;
  }
  assert.is(checked, 2 * (4 + 24 + 6 + 24 + 4 + 4 * 4 + 12 + 3));
});

test.run();
