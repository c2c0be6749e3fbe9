// Per-sample OOD scores and per-batch diversity statistics of reference §3.4/§3.5, computed on stacked
// head outputs [M, N, C] held in a Float32Array. Pure numeric code (no tfjs, no I/O). Each place where
// the reference's code differs from the stated definition is switched by `quirks` (reference §12):
//   1. get_probs: the reference decides "these are already probabilities" when EVERY value of the
//      stacked batch lies in [0, 1] (so a batch of raw logits inside [0, 1] silently skips softmax).
//      Correct mode: softmax exactly when the stack holds logits (`kind`), never by range.
//   2. mutual_information_per_sample: the reference subtracts the BATCH mean (over samples and heads)
//      of the head entropies, a per-batch constant. Correct mode subtracts the sample's own mean
//      head entropy, so the score no longer depends on batch size or batch neighbours. (The batch
//      mean `mutual_information` statistic is the same in both modes.)
//   3. entropy: the reference takes log p without epsilon, so a probability that underflowed to 0
//      gives 0 * -inf = NaN. Correct mode uses the convention 0 log 0 = 0.

/** Stacked outputs of M heads for N samples over C classes, row-major [M, N, C]. */
export interface Stack {
  heads: number;
  rows: number;
  classes: number;
  data: Float32Array;
  /** "logits" for raw head outputs; "probs" for outputs that are already probabilities (masked votes). */
  kind: "logits" | "probs";
}

/** The per-sample scores written to the scores file and compared by AUROC (reference §3.5). */
export const SCORE_NAMES = [
  "ensemble_conf",
  "mean_submodel_conf",
  "div_different_preds_per_sample",
  "div_continous_unique_per_sample",
  "ens_entropy_per_sample",
  "average_entropy_per_sample",
  "mutual_information_per_sample",
  "inv_mutual_information_per_sample",
  "average_energy_per_sample",
  "average_max_logit_per_sample",
  "inv_average_max_logit_per_sample",
  "a2d_score_per_sample",
] as const;
export type ScoreName = (typeof SCORE_NAMES)[number];

/** Batch-mean diversity statistics of the ood_gen run (reference §3.4), averaged over batches later. */
export const DIVERSITY_NAMES = [
  "div_different_preds",
  "div_continous_unique",
  "var",
  "ens_entropy",
  "average_entropy",
  "mutual_information",
  "average_energy",
  "average_max_logit",
  "a2d_score",
] as const;
export type DiversityName = (typeof DIVERSITY_NAMES)[number];

/** The reference's A2D epsilon (DU train/losses.py EPS). */
export const A2D_EPS = 1e-9;

export interface ScoreOptions {
  quirks: boolean;
}

/** Softmax of one row into dst; returns the row's logsumexp (reused for the energy score). */
function softmaxRowInto(src: Float32Array, off: number, c: number, dst: Float32Array): number {
  let max = -Infinity;
  for (let k = 0; k < c; k++) if (src[off + k] > max) max = src[off + k];
  let sum = 0;
  for (let k = 0; k < c; k++) {
    const e = Math.exp(src[off + k] - max);
    dst[off + k] = e;
    sum += e;
  }
  // Stored as float32 like torch's softmax, so probabilities underflow to 0 where torch's would.
  for (let k = 0; k < c; k++) dst[off + k] = dst[off + k] / sum;
  return max + Math.log(sum);
}

/** Row softmax of a whole stack: the same layout as its data, and one logsumexp per row. */
export interface Softmaxed {
  p: Float32Array;
  /** logsumexp per row (row = head * rows + sample). */
  lse: Float64Array;
}

/**
 * Softmax of the rows of data[start, end) into p (same offsets) and their logsumexp into
 * lse[offset / c]. Head threads run it on their own heads' rows, so the main thread's scores start
 * from the same bits it would have computed itself.
 */
export function softmaxRows(data: Float32Array, start: number, end: number, c: number, p: Float32Array, lse: Float64Array): void {
  for (let off = start; off < end; off += c) lse[off / c] = softmaxRowInto(data, off, c, p);
}

function softmaxAll(data: Float32Array, c: number): Softmaxed {
  const p = new Float32Array(data.length);
  const lse = new Float64Array(data.length / c);
  softmaxRows(data, 0, data.length, c, p, lse);
  return { p, lse };
}

function allInUnitRange(data: Float32Array): boolean {
  for (let i = 0; i < data.length; i++) if (!(data[i] >= 0 && data[i] <= 1)) return false;
  return true;
}

/** get_probs of the reference (quirks) or the kind-driven version (correct). */
export function probabilities(data: Float32Array, classes: number, kind: Stack["kind"], quirks: boolean, softmaxed?: Softmaxed): Float32Array {
  const isProbs = quirks ? allInUnitRange(data) : kind === "probs";
  return isProbs ? data : (softmaxed ?? softmaxAll(data, classes)).p;
}

function entropyRow(p: Float32Array | Float64Array, off: number, c: number, quirks: boolean): number {
  let h = 0;
  for (let k = 0; k < c; k++) {
    const v = p[off + k];
    if (quirks) h -= v * Math.log(v);
    else if (v > 0) h -= v * Math.log(v);
  }
  return h;
}

/** First index of the row maximum (torch argmax on ties). */
export function argmaxRow(a: ArrayLike<number>, off: number, c: number): number {
  let best = 0;
  let bv = a[off];
  for (let k = 1; k < c; k++) {
    if (a[off + k] > bv) {
      bv = a[off + k];
      best = k;
    }
  }
  return best;
}

/**
 * Ensemble-independent per-sample scores of a stack (everything in SCORE_NAMES except the two
 * confidences, which need the ensemble / head predictions: see confidenceScores).
 */
export type StackScores = Record<Exclude<ScoreName, "ensemble_conf" | "mean_submodel_conf">, Float64Array> & {
  /** −var statistic of this batch (computed here to reuse the softmax pass). */
  readonly batchVar: number;
  /** mean over heads of max_c p_m(c): mean_submodel_conf in correct mode (stack of logits). */
  readonly meanHeadTopProb: Float64Array;
  /** predictRows of each head's raw outputs, [head * rows + sample] (metrics.ts rule: an all-zero row gives -1). */
  readonly headPred: Int32Array;
  /** meanOverHeads of the raw outputs: the ensemble's [rows, classes]. */
  readonly ensembleMean: Float32Array;
};

/** `softmaxed`: the stack's row softmax when already computed (e.g. by the head threads). */
export function stackScores(s: Stack, opts: ScoreOptions, softmaxed?: Softmaxed): StackScores {
  const { heads: m, rows: n, classes: c, data } = s;
  if (data.length !== m * n * c) throw new Error(`stack data has ${data.length} values, expected ${m}x${n}x${c}`);
  if (softmaxed && (softmaxed.p.length !== data.length || softmaxed.lse.length !== m * n)) throw new Error("stackScores: the softmax given does not match the stack");
  // One softmax pass serves get_probs (when it applies), the energy's logsumexp and `var`.
  const sm = softmaxed ?? softmaxAll(data, c);
  const p = probabilities(data, c, s.kind, opts.quirks, sm);
  const fromSoftmax = p === sm.p && !opts.quirks;
  const plane = n * c;

  const diffPreds = new Float64Array(n);
  const pds = new Float64Array(n);
  const ensEnt = new Float64Array(n);
  const avgEnt = new Float64Array(n);
  const mi = new Float64Array(n);
  const invMi = new Float64Array(n);
  const energy = new Float64Array(n);
  const maxLogit = new Float64Array(n);
  const invMaxLogit = new Float64Array(n);
  const a2d = new Float64Array(n);
  const topProb = new Float64Array(n);

  const meanP = new Float64Array(c);
  const maxP = new Float64Array(c);
  const meanZ = new Float64Array(c);
  const ss = new Float64Array(c);
  const pred = new Int32Array(m);
  const predP = new Float64Array(m);
  const headPred = new Int32Array(m * n);
  const ensembleMean = new Float32Array(n * c);
  let batchHeadEntropy = 0;
  // `var` (varianceStat's definition, same summation order), accumulated sample by sample while the
  // sample's [heads, classes] block is in cache; always over the softmax, as the reference's div_var.
  const pv = sm.p;
  let varTotal = 0;

  for (let i = 0; i < n; i++) {
    meanP.fill(0);
    maxP.fill(-Infinity);
    meanZ.fill(0);
    let entSum = 0;
    let lse = 0;
    let maxl = 0;
    for (let h = 0; h < m; h++) {
      const off = h * plane + i * c;
      // One pass over the row: ensemble mean and max of p, argmax of p (first index on ties, as torch),
      // max logit, and Σ p z for the entropy. For a softmax row, −Σ p log p = lse − Σ p z: no log per
      // class. Quirks mode keeps the literal log p so that underflowed probabilities give the reference's NaN.
      let bv = p[off];
      let best = 0;
      let mx = -Infinity;
      let pz = 0;
      let zb = data[off];
      let zi = 0;
      let zsum = 0;
      for (let k = 0; k < c; k++) {
        const v = p[off + k];
        meanP[k] += v;
        if (v > maxP[k]) maxP[k] = v;
        if (v > bv) {
          bv = v;
          best = k;
        }
        // energy and max logit read the raw outputs (the reference applies no get_probs there)
        const z = data[off + k];
        if (z > mx) mx = z;
        if (v > 0) pz += v * z;
        // the head's prediction and the ensemble mean, as predictRows / meanOverHeads compute them
        if (z > zb) {
          zb = z;
          zi = k;
        }
        zsum += z;
        meanZ[k] += z;
      }
      headPred[h * n + i] = zsum === 0 ? -1 : zi;
      entSum += fromSoftmax ? sm.lse[h * n + i] - pz : entropyRow(p, off, c, opts.quirks);
      pred[h] = best;
      predP[h] = p[off + best];
      lse += sm.lse[h * n + i];
      maxl += mx;
    }
    let pdsV = 0;
    for (let k = 0; k < c; k++) {
      meanP[k] /= m;
      pdsV += maxP[k];
      ensembleMean[i * c + k] = meanZ[k] / m;
    }
    if (m > 1) {
      // mean of the softmax over heads (meanP is that mean when p is the softmax; recomputed otherwise)
      const mean = pv === p ? meanP : meanZ.fill(0);
      if (pv !== p) {
        for (let h = 0; h < m; h++) for (let k = 0, off = h * plane + i * c; k < c; k++) mean[k] += pv[off + k];
        for (let k = 0; k < c; k++) mean[k] /= m;
      }
      ss.fill(0);
      for (let h = 0; h < m; h++) {
        const off = h * plane + i * c;
        for (let k = 0; k < c; k++) {
          const d = pv[off + k] - mean[k];
          ss[k] += d * d;
        }
      }
      for (let k = 0; k < c; k++) varTotal += ss[k] / (m - 1);
    }
    pds[i] = pdsV;
    ensEnt[i] = entropyRow(meanP, 0, c, opts.quirks);
    avgEnt[i] = entSum / m;
    batchHeadEntropy += entSum;
    energy[i] = -lse / m;
    maxLogit[i] = -maxl / m;
    invMaxLogit[i] = 1 - maxLogit[i];

    const distinct = new Set<number>();
    for (let h = 0; h < m; h++) distinct.add(pred[h]);
    diffPreds[i] = distinct.size;
    let tp = 0;
    for (let h = 0; h < m; h++) tp += predP[h];
    topProb[i] = tp / m;

    // a2d_score_per_sample: every head r in turn is the reference; for each other head j the
    // disagreement term uses j's predicted class. One head: no pair, score 0.
    if (m > 1) {
      let total = 0;
      for (let r = 0; r < m; r++) {
        const roff = r * plane + i * c;
        let sum = 0;
        for (let j = 0; j < m; j++) {
          if (j === r) continue;
          const a = predP[j];
          const b = p[roff + pred[j]];
          sum += Math.log(a * (1 - b) + b * (1 - a) + A2D_EPS);
        }
        total += sum / (m - 1);
      }
      a2d[i] = total / m;
    }
  }
  const batchMeanHeadEntropy = batchHeadEntropy / (n * m);
  for (let i = 0; i < n; i++) {
    mi[i] = ensEnt[i] - (opts.quirks ? batchMeanHeadEntropy : avgEnt[i]);
    invMi[i] = 1 - mi[i];
  }
  return {
    div_different_preds_per_sample: diffPreds,
    div_continous_unique_per_sample: pds,
    ens_entropy_per_sample: ensEnt,
    average_entropy_per_sample: avgEnt,
    mutual_information_per_sample: mi,
    inv_mutual_information_per_sample: invMi,
    average_energy_per_sample: energy,
    average_max_logit_per_sample: maxLogit,
    inv_average_max_logit_per_sample: invMaxLogit,
    a2d_score_per_sample: a2d,
    batchVar: m < 2 ? NaN : -varTotal / plane,
    meanHeadTopProb: topProb,
    headPred,
    ensembleMean,
  };
}

/** −mean over (samples, classes) of the unbiased variance over heads of softmax (reference `div_var`: always softmax). */
export function varianceStat(s: Stack, softmaxed?: Softmaxed): number {
  const { heads: m, rows: n, classes: c } = s;
  if (m < 2) return NaN;
  const p = (softmaxed ?? softmaxAll(s.data, c)).p;
  const plane = n * c;
  // Two passes (mean, then squared deviations), each walking the heads' planes in memory order: the
  // per-element loop over heads strides a whole plane per read, which the cache punishes at 50 heads.
  const mean = new Float64Array(plane);
  for (let h = 0; h < m; h++) {
    const off = h * plane;
    for (let j = 0; j < plane; j++) mean[j] += p[off + j];
  }
  for (let j = 0; j < plane; j++) mean[j] /= m;
  const ss = new Float64Array(plane);
  for (let h = 0; h < m; h++) {
    const off = h * plane;
    for (let j = 0; j < plane; j++) {
      const d = p[off + j] - mean[j];
      ss[j] += d * d;
    }
  }
  let total = 0;
  for (let j = 0; j < plane; j++) total += ss[j] / (m - 1);
  return -total / plane;
}

function mean(a: Float64Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i];
  return s / a.length;
}

/** The batch means of §3.4 for one batch, from that batch's stack (and its per-sample scores if already computed). */
export function diversityStats(s: Stack, opts: ScoreOptions, scores?: StackScores): Record<DiversityName, number> {
  const sc = scores ?? stackScores(s, opts);
  return {
    div_different_preds: mean(sc.div_different_preds_per_sample),
    div_continous_unique: mean(sc.div_continous_unique_per_sample),
    var: sc.batchVar,
    ens_entropy: mean(sc.ens_entropy_per_sample),
    average_entropy: mean(sc.average_entropy_per_sample),
    mutual_information: mean(sc.mutual_information_per_sample),
    average_energy: mean(sc.average_energy_per_sample),
    average_max_logit: mean(sc.average_max_logit_per_sample),
    a2d_score: mean(sc.a2d_score_per_sample),
  };
}
