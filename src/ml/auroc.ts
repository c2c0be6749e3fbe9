// Exact, tie-aware area under the ROC curve (equal to scikit-learn's roc_auc_score: the Mann-Whitney
// statistic with average ranks for ties) and the per-score AUROC directions of reference §3.5. Pure.
import { InputError } from "../errors.ts";

/**
 * P(pos > neg) + 0.5 * P(pos == neg) over all (pos, neg) pairs. One sort of the pooled scores; each
 * positive's average rank is found by binary search, so equal scores share their mean rank exactly as
 * in sklearn. Returns NaN when any score is NaN (sklearn refuses such input; the caller reports it).
 */
export function rocAuc(positives: ArrayLike<number>, negatives: ArrayLike<number>): number {
  const np = positives.length;
  const nn = negatives.length;
  if (np === 0 || nn === 0) {
    throw new InputError(
      `AUROC needs samples of both classes (got ${np} positive and ${nn} negative scores)`,
      { hint: "check that neither the evaluated dataset nor the in-distribution reference set is empty" },
    );
  }
  const pooled = new Float64Array(np + nn);
  for (let i = 0; i < np; i++) pooled[i] = positives[i];
  for (let i = 0; i < nn; i++) pooled[np + i] = negatives[i];
  for (let i = 0; i < pooled.length; i++) if (Number.isNaN(pooled[i])) return NaN;
  pooled.sort();
  // Average 1-based rank of value v = (first + last) / 2 with first = lowerBound + 1, last = upperBound.
  let rankSum = 0;
  for (let i = 0; i < np; i++) {
    const v = positives[i];
    rankSum += (lowerBound(pooled, v) + 1 + upperBound(pooled, v)) / 2;
  }
  const u = rankSum - (np * (np + 1)) / 2;
  return u / (np * nn);
}

function lowerBound(a: Float64Array, v: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function upperBound(a: Float64Array, v: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid] <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Reference §3.5 (DU cross_eval/eval.py `compute_roc_auc`): a score whose name contains "conf",
 * "average_max_logit_per_sample" or "mutual_information_per_sample" (inv_ variants included) is
 * "reversed": the in-distribution set is the positive class. Otherwise the OOD set is positive.
 */
export function isReversedScore(name: string): boolean {
  return name.includes("conf") || name.includes("average_max_logit_per_sample") || name.includes("mutual_information_per_sample");
}

/** AUROC of one score with the reference's direction for that score name. */
export function directedAuroc(name: string, idScores: ArrayLike<number>, oodScores: ArrayLike<number>): number {
  return isReversedScore(name) ? rocAuc(idScores, oodScores) : rocAuc(oodScores, idScores);
}
