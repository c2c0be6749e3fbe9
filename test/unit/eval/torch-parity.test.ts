import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { stackScores, type Stack } from "../../../src/ml/scores.ts";
import { confidences, headSlice, meanOverHeads } from "../../../src/ml/metrics.ts";

// Scores computed with torch float32 along the reference's code path (fixtures/make-torch-scores.py).
const fx = JSON.parse(readFileSync(fileURLToPath(new URL("./fixtures/torch-scores.json", import.meta.url)), "utf8"));

function ours(s: Stack, quirks: boolean): Record<string, Float64Array> {
  const { batchVar: _v, meanHeadTopProb: _t, headPred: _p, ensembleMean: _e, ...r } = stackScores(s, { quirks });
  const ens = confidences(meanOverHeads(s), s.rows, s.classes, "logits", quirks);
  const sub = new Float64Array(s.rows);
  for (let h = 0; h < s.heads; h++) {
    const c = confidences(headSlice(s, h), s.rows, s.classes, "logits", quirks);
    for (let i = 0; i < s.rows; i++) sub[i] += c[i] / s.heads;
  }
  return { ...r, ensemble_conf: ens, mean_submodel_conf: sub };
}

for (const [name, b] of Object.entries(fx.batches) as [string, { logits: number[]; scores: Record<string, (number | null)[]> }][]) {
  test(`quirks mode equals the reference's torch computation: ${name} batch`, () => {
    const s: Stack = { heads: fx.M, rows: fx.N, classes: fx.C, kind: "logits", data: Float32Array.from(b.logits) };
    const got = ours(s, true);
    for (const [score, want] of Object.entries(b.scores)) {
      want.forEach((w, i) => {
        const g = got[score][i];
        if (w === null) assert.ok(Number.isNaN(g), `${score}[${i}]: torch NaN, ours ${g}`);
        else assert.ok(Math.abs(g - w) <= 1e-4 * Math.max(1, Math.abs(w)), `${score}[${i}]: torch ${w}, ours ${g}`);
      });
    }
  });
}

test("correct mode differs from the reference exactly where the quirks bite", () => {
  const unit = fx.batches.unit_range;
  const s: Stack = { heads: fx.M, rows: fx.N, classes: fx.C, kind: "logits", data: Float32Array.from(unit.logits) };
  const c = ours(s, false);
  // logits inside [0,1]: the reference skipped softmax, we do not
  assert.ok(Math.abs(c.div_continous_unique_per_sample[0] - (unit.scores.div_continous_unique_per_sample[0] as number)) > 1e-3);
  // energy never goes through get_probs: identical in both modes
  c.average_energy_per_sample.forEach((v, i) => assert.ok(Math.abs(v - (unit.scores.average_energy_per_sample[i] as number)) < 1e-4));
  const ext = fx.batches.extreme;
  const e = ours({ heads: fx.M, rows: fx.N, classes: fx.C, kind: "logits", data: Float32Array.from(ext.logits) }, false);
  for (const v of e.average_entropy_per_sample) assert.ok(Number.isFinite(v) && v >= 0);
  for (const v of e.mutual_information_per_sample) assert.ok(Number.isFinite(v));
});

test.run();
