import { test } from "uvu";
import * as assert from "uvu/assert";
import { diversityStats, probabilities, stackScores, varianceStat, type Stack } from "../../../src/ml/scores.ts";
import { Rng } from "../../../src/rng.ts";
import { confidences, headSlice } from "../../../src/ml/metrics.ts";

const close = (a: number, b: number, tol = 1e-6) => Math.abs(a - b) <= tol;

// 2 heads, 1 sample, 3 classes, given as probabilities (masked-vote style)
const disagree: Stack = { heads: 2, rows: 1, classes: 3, kind: "probs", data: Float32Array.from([1, 0, 0, 0, 1, 0]) };
const agree: Stack = { heads: 2, rows: 1, classes: 3, kind: "probs", data: Float32Array.from([1, 0, 0, 1, 0, 0]) };

test("PDS, distinct predictions and entropies on hand-computable votes", () => {
  const s = stackScores(disagree, { quirks: false });
  assert.is(s.div_continous_unique_per_sample[0], 2);
  assert.is(s.div_different_preds_per_sample[0], 2);
  assert.ok(close(s.ens_entropy_per_sample[0], Math.LN2));
  assert.is(s.average_entropy_per_sample[0], 0);
  assert.ok(close(s.mutual_information_per_sample[0], Math.LN2));
  assert.ok(close(s.inv_mutual_information_per_sample[0], 1 - Math.LN2));
  const a = stackScores(agree, { quirks: false });
  assert.is(a.div_continous_unique_per_sample[0], 1);
  assert.is(a.div_different_preds_per_sample[0], 1);
});

test("a2d score: disagreement ~ 0, agreement = log(1e-9)", () => {
  const d = stackScores(disagree, { quirks: false }).a2d_score_per_sample[0];
  const a = stackScores(agree, { quirks: false }).a2d_score_per_sample[0];
  assert.ok(close(d, Math.log(1 + 1e-9), 1e-12));
  assert.ok(close(a, Math.log(1e-9), 1e-9));
  assert.ok(d > a, "more disagreement -> higher score (higher => OOD)");
});

test("energy and max logit on raw logits", () => {
  const s: Stack = { heads: 2, rows: 1, classes: 3, kind: "logits", data: Float32Array.from([0, 0, 0, 2, 0, 0]) };
  const r = stackScores(s, { quirks: false });
  const lse2 = 2 + Math.log(1 + 2 * Math.exp(-2));
  assert.ok(close(r.average_energy_per_sample[0], -(Math.log(3) + lse2) / 2));
  assert.ok(close(r.average_max_logit_per_sample[0], -1));
  assert.ok(close(r.inv_average_max_logit_per_sample[0], 2));
});

test("PDS lies in [1, M] for random logits", () => {
  const rng = new Rng(3);
  const m = 5, n = 40, c = 7;
  const data = Float32Array.from({ length: m * n * c }, () => rng.normal() * 4);
  const r = stackScores({ heads: m, rows: n, classes: c, kind: "logits", data }, { quirks: false });
  for (const v of r.div_continous_unique_per_sample) assert.ok(v >= 1 - 1e-6 && v <= m + 1e-6, String(v));
  for (const v of r.div_different_preds_per_sample) assert.ok(v >= 1 && v <= m);
});

test("meanHeadTopProb equals the mean of per-head confidences; energy's reused logsumexp is exact", () => {
  const rng = new Rng(9);
  const m = 4, n = 6, c = 5;
  const st: Stack = { heads: m, rows: n, classes: c, kind: "logits", data: Float32Array.from({ length: m * n * c }, () => rng.normal() * 3) };
  const r = stackScores(st, { quirks: false });
  for (let i = 0; i < n; i++) {
    let want = 0;
    let lse = 0;
    for (let h = 0; h < m; h++) {
      want += confidences(headSlice(st, h), n, c, "logits", false)[i] / m;
      const row = Array.from(headSlice(st, h).subarray(i * c, (i + 1) * c));
      lse += Math.log(row.reduce((a, v) => a + Math.exp(v), 0));
    }
    assert.ok(close(r.meanHeadTopProb[i], want, 1e-12));
    let ent = 0;
    for (let h = 0; h < m; h++) {
      const row = Array.from(headSlice(st, h).subarray(i * c, (i + 1) * c));
      const z = Math.log(row.reduce((a, v) => a + Math.exp(v), 0));
      ent -= row.reduce((a, v) => a + Math.exp(v - z) * (v - z), 0) / m;
    }
    assert.ok(close(r.average_entropy_per_sample[i], ent, 1e-6));
    assert.ok(close(r.average_energy_per_sample[i], -lse / m, 1e-9));
  }
});

test("quirk 1: logits inside [0,1] skip softmax only in quirks mode", () => {
  const data = Float32Array.from([0.2, 0.5, 0.3]);
  assert.is(probabilities(data, 3, "logits", true), data);
  const p = probabilities(data, 3, "logits", false);
  assert.ok(close(p[1], Math.exp(0.5) / (Math.exp(0.2) + Math.exp(0.5) + Math.exp(0.3))));
  const s: Stack = { heads: 1, rows: 1, classes: 3, kind: "logits", data };
  const q = stackScores(s, { quirks: true }).ens_entropy_per_sample[0];
  const c = stackScores(s, { quirks: false }).ens_entropy_per_sample[0];
  assert.ok(close(q, -(0.2 * Math.log(0.2) + 0.5 * Math.log(0.5) + 0.3 * Math.log(0.3)), 1e-6));
  assert.ok(Math.abs(q - c) > 1e-3);
});

test("quirk 2: per-sample MI subtracts a batch constant in quirks mode; batch means agree", () => {
  // sample 0: both heads certain and different; sample 1: both heads uniform
  const s: Stack = { heads: 2, rows: 2, classes: 2, kind: "logits", data: Float32Array.from([40, -40, 0, 0, -40, 40, 0, 0]) };
  const q = stackScores(s, { quirks: true });
  const c = stackScores(s, { quirks: false });
  assert.ok(close(c.mutual_information_per_sample[0], Math.LN2, 1e-6));
  assert.ok(close(c.mutual_information_per_sample[1], 0, 1e-9));
  // batch mean head entropy = (0 + 0 + ln2 + ln2) / 4
  assert.ok(close(q.mutual_information_per_sample[0], Math.LN2 - Math.LN2 / 2, 1e-6));
  assert.ok(close(q.mutual_information_per_sample[1], Math.LN2 - Math.LN2 / 2, 1e-6));
  const dq = diversityStats(s, { quirks: true }).mutual_information;
  const dc = diversityStats(s, { quirks: false }).mutual_information;
  assert.ok(close(dq, dc, 1e-9));
});

test("quirk 3: entropy without epsilon gives NaN on an underflowed probability", () => {
  const s: Stack = { heads: 2, rows: 1, classes: 2, kind: "logits", data: Float32Array.from([200, 0, 0, 200]) };
  assert.ok(Number.isNaN(stackScores(s, { quirks: true }).average_entropy_per_sample[0]));
  assert.is(stackScores(s, { quirks: false }).average_entropy_per_sample[0], 0);
});

test("var statistic: minus the mean unbiased variance over heads of softmax", () => {
  const s: Stack = { heads: 2, rows: 1, classes: 2, kind: "logits", data: Float32Array.from([0, 0, Math.log(3), 0]) };
  // probs [0.5,0.5] and [0.75,0.25]: per class var = (0.25^2)/2*... unbiased: (d^2*2)/(1) with d = 0.125
  const v = varianceStat(s);
  assert.ok(close(v, -(2 * 0.125 ** 2), 1e-7));
  assert.ok(Number.isNaN(varianceStat({ ...s, heads: 1, data: s.data.subarray(0, 2) })));
});

test("stackScores' fused by-products equal varianceStat, predictRows and meanOverHeads bit for bit", async () => {
  const { predictRows, meanOverHeads, headSlice } = await import("../../../src/ml/metrics.ts");
  const { Rng } = await import("../../../src/rng.ts");
  const rng = new Rng(9);
  for (const [m, n, c] of [[5, 7, 11], [1, 3, 4], [3, 4, 6]]) {
    for (const kind of ["logits", "probs"] as const) {
      for (const quirks of [false, true]) {
        const data = Float32Array.from({ length: m * n * c }, () => (kind === "probs" ? rng.next() : rng.normal() * 4));
        // an all-zero row of head 0, sample 1 (predictRows gives it -1)
        data.fill(0, 1 * c, 2 * c);
        const st: Stack = { heads: m, rows: n, classes: c, kind, data };
        const r = stackScores(st, { quirks });
        const v = varianceStat(st);
        assert.ok(Object.is(r.batchVar, v), `var ${m}x${n}x${c} ${kind} quirks=${quirks}: ${r.batchVar} vs ${v}`);
        for (let h = 0; h < m; h++) assert.equal(Array.from(r.headPred.subarray(h * n, (h + 1) * n)), Array.from(predictRows(headSlice(st, h), n, c)), `head ${h} predictions`);
        assert.equal(Array.from(r.ensembleMean), Array.from(meanOverHeads(st)), "ensemble mean");
        assert.is(r.headPred[1], -1, "the all-zero row predicts -1");
      }
    }
  }
});

test.run();
