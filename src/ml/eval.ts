// Evaluates one head ensemble on batches of cached features (reference §3.2-3.5): head forwards with
// tfjs, then accuracies, diversity statistics and per-sample OOD scores on plain arrays. Owns the
// per-batch bookkeeping; never reads files (the stage feeds batches) and never picks a backend.
import * as tf from "@tensorflow/tfjs-core";
import { InputError } from "../errors.ts";
import { HEAD_PARAM_NAMES, headLogits, headTensorsFromArrays, type EnsembleArrays, type HeadArrays, type HeadTensors } from "./heads.ts";
import { confidences, countCorrect, headSlice, meanOverHeads, predictRows, subsetStack, subsetVotes } from "./metrics.ts";
import { DIVERSITY_NAMES, SCORE_NAMES, diversityStats, stackScores, type DiversityName, type ScoreName, type Stack } from "./scores.ts";

export interface EvalConfig {
  /** Rows per batch; diversity statistics are means of batch means, so this is part of the definition. */
  batchSize: number;
  /** Reproduce the reference's numeric quirks (see scores.ts / metrics.ts) instead of the correct versions. */
  quirks: boolean;
  /** Class subset (ImageNet-A/R style): head outputs become masked one-hot votes for accuracy and diversity. */
  subset: Int32Array | null;
  /** Also evaluate the uniform model soup (reference ood_gen run). */
  soup: boolean;
}

export interface EvalSummary {
  samples: number;
  batches: number;
  heads: number;
  /** Classes the labels index: the model's, or the subset's size. */
  label_classes: number;
  accuracy: {
    ensemble: number;
    soup: number | null;
    best_single_model: number;
    mean_single_model: number;
    submodels: number[];
  };
  /** Means of batch means (reference §3.4); NaN where undefined (e.g. `var` with one head). */
  diversity: Record<DiversityName, number>;
}

/** Uniform model soup (reference `cook_soup`): every parameter averaged over heads. */
export function soupArrays(heads: HeadArrays[]): HeadArrays {
  if (heads.length === 0) throw new InputError("cannot cook a soup of an ensemble without heads");
  const out = {} as HeadArrays;
  for (const k of HEAD_PARAM_NAMES) {
    const n = heads[0][k].length;
    const acc = new Float64Array(n);
    for (const h of heads) {
      const a = h[k];
      for (let i = 0; i < n; i++) acc[i] += a[i];
    }
    const avg = new Float32Array(n);
    for (let i = 0; i < n; i++) avg[i] = acc[i] / heads.length;
    out[k] = avg;
  }
  return out;
}

/** Rows per head forward: the largest multiple of the eval batch size up to 256 (at least one batch). */
export function forwardRows(batchSize: number): number {
  return Math.max(1, Math.floor(256 / batchSize)) * batchSize;
}

export class EnsembleEvaluator {
  readonly scores: Record<ScoreName, Float64Array>;
  private readonly heads: HeadTensors[];
  private readonly soupHead: HeadTensors | null;
  private readonly correct: number[];
  private correctEnsemble = 0;
  private correctSoup = 0;
  private readonly diversitySums: Record<DiversityName, number>;
  private seen = 0;
  private batches = 0;
  private readonly labelClasses: number;

  constructor(
    private readonly ensemble: EnsembleArrays,
    private readonly totalRows: number,
    private readonly cfg: EvalConfig,
  ) {
    if (ensemble.heads.length === 0) throw new InputError("the ensemble has no heads");
    if (!Number.isInteger(cfg.batchSize) || cfg.batchSize <= 0) throw new InputError(`eval batch_size must be a positive integer (got ${cfg.batchSize})`);
    this.labelClasses = cfg.subset ? cfg.subset.length : ensemble.shape.classes;
    for (const k of cfg.subset ?? []) {
      if (k < 0 || k >= ensemble.shape.classes) throw new InputError(`class subset index ${k} is outside the model's ${ensemble.shape.classes} classes`);
    }
    this.heads = ensemble.heads.map((h) => headTensorsFromArrays(h, ensemble.shape));
    this.soupHead = cfg.soup ? headTensorsFromArrays(soupArrays(ensemble.heads), ensemble.shape) : null;
    this.correct = new Array(ensemble.heads.length).fill(0);
    this.scores = Object.fromEntries(SCORE_NAMES.map((n) => [n, new Float64Array(totalRows)])) as Record<ScoreName, Float64Array>;
    this.diversitySums = Object.fromEntries(DIVERSITY_NAMES.map((n) => [n, 0])) as Record<DiversityName, number>;
  }

  private forward(p: HeadTensors, x: tf.Tensor2D, out: Float32Array, offset: number): void {
    const y = tf.tidy(() => headLogits(p, x, this.ensemble.shape));
    out.set(y.dataSync() as Float32Array, offset);
    y.dispose();
  }

  /**
   * A chunk of `count` rows: embed is count*dim floats, labels count class indices. The heads run on the
   * whole chunk (bigger matMuls); statistics are taken per eval batch of `batchSize` rows inside it, so a
   * chunk must start on a batch boundary (every chunk but the last is a multiple of batchSize).
   */
  addBatch(embed: Float32Array, labels: ArrayLike<number>, count: number): void {
    const { dim, classes } = this.ensemble.shape;
    if (count <= 0) return;
    if (this.seen % this.cfg.batchSize !== 0) {
      throw new Error(`addBatch: chunk starts at row ${this.seen}, not on an eval batch boundary (batch ${this.cfg.batchSize})`);
    }
    if (embed.length < count * dim) throw new InputError(`feature batch holds ${embed.length} values, expected ${count}x${dim}`);
    if (this.seen + count > this.totalRows) throw new InputError(`feature reader yielded more than the ${this.totalRows} rows it announced`);
    for (let i = 0; i < count; i++) {
      const l = labels[i];
      if (!Number.isInteger(l) || l < 0 || l >= this.labelClasses) {
        throw new InputError(
          `label ${l} of row ${this.seen + i} is outside the ${this.labelClasses} classes the ${this.cfg.subset ? "class subset" : "model"} has`,
          { hint: "the features and the model (or the class-list file) come from different class sets" },
        );
      }
    }
    const m = this.heads.length;
    const all = new Float32Array(m * count * classes);
    const x = tf.tensor2d(embed.subarray(0, count * dim), [count, dim]);
    let soupOut: Float32Array | null = null;
    try {
      for (let h = 0; h < m; h++) this.forward(this.heads[h], x, all, h * count * classes);
      if (this.soupHead) {
        soupOut = new Float32Array(count * classes);
        this.forward(this.soupHead, x, soupOut, 0);
      }
    } finally {
      x.dispose();
    }
    const bs = this.cfg.batchSize;
    for (let s = 0; s < count; s += bs) {
      const n = Math.min(bs, count - s);
      let data = all;
      if (n !== count) {
        data = new Float32Array(m * n * classes);
        for (let h = 0; h < m; h++) data.set(all.subarray((h * count + s) * classes, (h * count + s + n) * classes), h * n * classes);
      }
      const stack: Stack = { heads: m, rows: n, classes, data, kind: "logits" };
      this.statsBatch(stack, soupOut ? soupOut.subarray(s * classes, (s + n) * classes) : null, Array.prototype.slice.call(labels, s, s + n));
    }
  }

  /** Scores, accuracies and diversity of one eval batch (the reference's dataloader batch). */
  private statsBatch(stack: Stack, soupOut: Float32Array | null, labels: ArrayLike<number>): void {
    const { heads: m, rows: count, classes } = stack;
    // Per-sample OOD scores always read the raw logits (the reference's ood_det run never wraps).
    const raw = stackScores(stack, { quirks: this.cfg.quirks });
    const ensLogits = meanOverHeads(stack);
    const ensConf = confidences(ensLogits, count, classes, "logits", this.cfg.quirks);
    // Correct mode: a head's confidence is its top softmax probability, already computed with the
    // scores. Quirks mode: each head's block goes through get_probs on its own (reference).
    let subConf = raw.meanHeadTopProb;
    if (this.cfg.quirks) {
      subConf = new Float64Array(count);
      for (let h = 0; h < m; h++) {
        const c = confidences(headSlice(stack, h), count, classes, "logits", true);
        for (let i = 0; i < count; i++) subConf[i] += c[i] / m;
      }
    }
    for (const name of SCORE_NAMES) {
      const v = name === "ensemble_conf" ? ensConf : name === "mean_submodel_conf" ? subConf : raw[name];
      this.scores[name].set(v, this.seen);
    }

    // Accuracies and diversity: on masked votes for a class subset, on logits otherwise.
    const view = this.cfg.subset ? subsetStack(stack, this.cfg.subset) : stack;
    const ensOut = this.cfg.subset ? meanOverHeads(view) : ensLogits;
    this.correctEnsemble += countCorrect(predictRows(ensOut, count, view.classes), labels);
    for (let h = 0; h < m; h++) this.correct[h] += countCorrect(predictRows(headSlice(view, h), count, view.classes), labels);
    if (soupOut) {
      const s = this.cfg.subset ? subsetVotes(soupOut, count, classes, this.cfg.subset) : soupOut;
      this.correctSoup += countCorrect(predictRows(s, count, view.classes), labels);
    }
    const div = diversityStats(view, { quirks: this.cfg.quirks }, this.cfg.subset ? undefined : raw);
    for (const k of DIVERSITY_NAMES) this.diversitySums[k] += div[k];

    this.seen += count;
    this.batches += 1;
  }

  summary(): EvalSummary {
    if (this.seen === 0) throw new InputError("the dataset has no rows: nothing to evaluate", { hint: "re-run cache-features for this dataset" });
    if (this.seen !== this.totalRows) throw new InputError(`feature reader yielded ${this.seen} rows but announced ${this.totalRows}`);
    const acc = this.correct.map((c) => c / this.seen);
    return {
      samples: this.seen,
      batches: this.batches,
      heads: this.heads.length,
      label_classes: this.labelClasses,
      accuracy: {
        ensemble: this.correctEnsemble / this.seen,
        soup: this.soupHead ? this.correctSoup / this.seen : null,
        best_single_model: Math.max(...acc),
        mean_single_model: acc.reduce((a, b) => a + b, 0) / acc.length,
        submodels: acc,
      },
      diversity: Object.fromEntries(DIVERSITY_NAMES.map((k) => [k, this.diversitySums[k] / this.batches])) as Record<DiversityName, number>,
    };
  }

  dispose(): void {
    for (const h of this.heads) for (const t of Object.values(h)) t.dispose();
    if (this.soupHead) for (const t of Object.values(this.soupHead)) t.dispose();
  }
}
