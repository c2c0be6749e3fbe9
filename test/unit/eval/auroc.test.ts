import { test } from "uvu";
import * as assert from "uvu/assert";
import { directedAuroc, isReversedScore, rocAuc } from "../../../src/ml/auroc.ts";
import { InputError } from "../../../src/errors.ts";
import { Rng } from "../../../src/rng.ts";

function bruteForce(pos: number[], neg: number[]): number {
  let s = 0;
  for (const p of pos) for (const n of neg) s += p > n ? 1 : p === n ? 0.5 : 0;
  return s / (pos.length * neg.length);
}

test("perfect, reversed and chance separations", () => {
  assert.is(rocAuc([3, 4, 5], [0, 1, 2]), 1);
  assert.is(rocAuc([0, 1, 2], [3, 4, 5]), 0);
  // sklearn: roc_auc_score([0,0,1,1], [0.1,0.4,0.35,0.8]) == 0.75
  assert.is(rocAuc([0.35, 0.8], [0.1, 0.4]), 0.75);
});

test("ties count one half (average ranks)", () => {
  // pairs: (1 vs 1) tie, (1 vs 0) win, (2 vs 1) win, (2 vs 0) win -> 3.5/4
  assert.is(rocAuc([1, 2], [1, 0]), 0.875);
  // sklearn: roc_auc_score([0,0,1,1,1], [0.5,0.5,0.5,0.7,0.5]) == 0.625
  assert.is(rocAuc([0.5, 0.7, 0.5], [0.5, 0.5]), (0.5 * 2 + 1 * 2 + 0.5 * 2) / 6);
});

test("constant scores give exactly 0.5", () => {
  assert.is(rocAuc([2, 2, 2], [2, 2]), 0.5);
});

test("randomized comparison against the O(n*m) pair count, with many ties", () => {
  const rng = new Rng(7);
  for (let trial = 0; trial < 30; trial++) {
    const np = 1 + Math.floor(rng.next() * 60);
    const nn = 1 + Math.floor(rng.next() * 60);
    const levels = 1 + Math.floor(rng.next() * 8);
    const draw = (shift: number) => Math.floor(rng.next() * levels + shift) / 2;
    const pos = Array.from({ length: np }, () => draw(0.7));
    const neg = Array.from({ length: nn }, () => draw(0));
    assert.ok(Math.abs(rocAuc(pos, neg) - bruteForce(pos, neg)) < 1e-12, `trial ${trial}`);
  }
});

test("NaN scores give NaN; an empty class is a clear error", () => {
  assert.ok(Number.isNaN(rocAuc([NaN, 1], [0])));
  assert.throws(() => rocAuc([], [1, 2]), (e: unknown) => e instanceof InputError && /both classes/.test((e as Error).message));
});

test("directions follow the reference's name rules", () => {
  for (const n of ["ensemble_conf", "mean_submodel_conf", "mutual_information_per_sample", "inv_mutual_information_per_sample", "average_max_logit_per_sample", "inv_average_max_logit_per_sample"]) {
    assert.ok(isReversedScore(n), n);
  }
  for (const n of ["div_continous_unique_per_sample", "div_different_preds_per_sample", "ens_entropy_per_sample", "average_entropy_per_sample", "average_energy_per_sample", "a2d_score_per_sample"]) {
    assert.not.ok(isReversedScore(n), n);
  }
  // OOD has the higher PDS -> 1; ID has the higher confidence -> 1
  assert.is(directedAuroc("div_continous_unique_per_sample", [1, 1.1], [2, 3]), 1);
  assert.is(directedAuroc("ensemble_conf", [0.9, 0.95], [0.2, 0.3]), 1);
});

test.run();
