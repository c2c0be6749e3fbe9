// Evaluates one head ensemble on batches of cached features (reference §3.2-3.5): head forwards with
// tfjs, then accuracies, diversity statistics and per-sample OOD scores on plain arrays. Owns the
// per-batch bookkeeping; never reads files (the stage feeds batches) and never picks a backend.
import * as tf from "@tensorflow/tfjs-core";
import { InputError } from "../errors.ts";
import { HEAD_PARAM_NAMES, headLogits, headTensorsFromArrays, type EnsembleArrays, type HeadArrays, type HeadShape, type HeadTensors } from "./heads.ts";
import { HeadPool, sharedF32 } from "./head-pool.ts";
import { headLayout, packHead } from "./device-head.ts";
import { evalSoftmaxRows } from "./kernels/native-eval-ops.ts";
import { confidences, countCorrect, headSlice, meanOverHeads, predictRows, subsetStack, subsetVotes } from "./metrics.ts";
import { DIVERSITY_NAMES, SCORE_NAMES, diversityStats, stackScores, type DiversityName, type ScoreName, type Softmaxed, type Stack } from "./scores.ts";

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

/**
 * The statistics of one evaluation: per-sample scores, accuracies and diversity, fed with the heads'
 * logits chunk by chunk (whoever computed them: EnsembleEvaluator on this thread, ThreadedEvaluator on
 * head threads). Never runs a head.
 */
export class EvalAccumulator {
  readonly scores: Record<ScoreName, Float64Array>;
  private readonly correct: number[];
  private correctEnsemble = 0;
  private correctSoup = 0;
  private readonly diversitySums: Record<DiversityName, number>;
  private seen = 0;
  private batches = 0;
  readonly labelClasses: number;

  constructor(
    private readonly shape: HeadShape,
    private readonly heads: number,
    private readonly totalRows: number,
    private readonly cfg: EvalConfig,
  ) {
    if (heads === 0) throw new InputError("the ensemble has no heads");
    if (!Number.isInteger(cfg.batchSize) || cfg.batchSize <= 0) throw new InputError(`eval batch_size must be a positive integer (got ${cfg.batchSize})`);
    this.labelClasses = cfg.subset ? cfg.subset.length : shape.classes;
    for (const k of cfg.subset ?? []) {
      if (k < 0 || k >= shape.classes) throw new InputError(`class subset index ${k} is outside the model's ${shape.classes} classes`);
    }
    this.correct = new Array(heads).fill(0);
    this.scores = Object.fromEntries(SCORE_NAMES.map((n) => [n, new Float64Array(totalRows)])) as Record<ScoreName, Float64Array>;
    this.diversitySums = Object.fromEntries(DIVERSITY_NAMES.map((n) => [n, 0])) as Record<DiversityName, number>;
  }

  /** Checks a chunk before any head runs on it: size, batch alignment and labels. */
  checkChunk(embed: Float32Array, labels: ArrayLike<number>, count: number, pendingRows = 0): void {
    const { dim } = this.shape;
    const at = this.seen + pendingRows;
    if (at % this.cfg.batchSize !== 0) {
      throw new Error(`addBatch: chunk starts at row ${at}, not on an eval batch boundary (batch ${this.cfg.batchSize})`);
    }
    if (embed.length < count * dim) throw new InputError(`feature batch holds ${embed.length} values, expected ${count}x${dim}`);
    if (at + count > this.totalRows) throw new InputError(`feature reader yielded more than the ${this.totalRows} rows it announced`);
    for (let i = 0; i < count; i++) {
      const l = labels[i];
      if (!Number.isInteger(l) || l < 0 || l >= this.labelClasses) {
        throw new InputError(
          `label ${l} of row ${at + i} is outside the ${this.labelClasses} classes the ${this.cfg.subset ? "class subset" : "model"} has`,
          { hint: "the features and the model (or the class-list file) come from different class sets" },
        );
      }
    }
  }

  /**
   * Statistics of a chunk of `count` rows from its logits: `all` is [heads, count, classes] (with
   * `softmax`, its row softmax, already computed), `soupOut` the soup's [count, classes] or null.
   * Statistics are taken per eval batch inside the chunk.
   */
  addLogits(all: Float32Array, soupOut: Float32Array | null, labels: ArrayLike<number>, count: number, softmax: Softmaxed | null = null): void {
    const m = this.heads;
    const { classes } = this.shape;
    const bs = this.cfg.batchSize;
    for (let s = 0; s < count; s += bs) {
      const n = Math.min(bs, count - s);
      let data = all.subarray(0, m * count * classes);
      let sm = softmax ? { p: softmax.p.subarray(0, m * count * classes), lse: softmax.lse.subarray(0, m * count) } : null;
      if (n !== count) {
        data = new Float32Array(m * n * classes);
        for (let h = 0; h < m; h++) data.set(all.subarray((h * count + s) * classes, (h * count + s + n) * classes), h * n * classes);
        if (softmax) {
          sm = { p: new Float32Array(m * n * classes), lse: new Float64Array(m * n) };
          for (let h = 0; h < m; h++) {
            sm.p.set(softmax.p.subarray((h * count + s) * classes, (h * count + s + n) * classes), h * n * classes);
            sm.lse.set(softmax.lse.subarray(h * count + s, h * count + s + n), h * n);
          }
        }
      }
      const stack: Stack = { heads: m, rows: n, classes, data, kind: "logits" };
      this.statsBatch(stack, soupOut ? soupOut.subarray(s * classes, (s + n) * classes) : null, Array.prototype.slice.call(labels, s, s + n), sm ?? undefined);
    }
  }

  /** Scores, accuracies and diversity of one eval batch (the reference's dataloader batch). */
  private statsBatch(stack: Stack, soupOut: Float32Array | null, labels: ArrayLike<number>, softmax?: Softmaxed): void {
    const { heads: m, rows: count, classes } = stack;
    // Per-sample OOD scores always read the raw logits (the reference's ood_det run never wraps).
    const raw = stackScores(stack, { quirks: this.cfg.quirks }, softmax);
    const ensLogits = raw.ensembleMean;
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
    for (let h = 0; h < m; h++) {
      const pred = this.cfg.subset ? predictRows(headSlice(view, h), count, view.classes) : raw.headPred.subarray(h * count, (h + 1) * count);
      this.correct[h] += countCorrect(pred, labels);
    }
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
      heads: this.heads,
      label_classes: this.labelClasses,
      accuracy: {
        ensemble: this.correctEnsemble / this.seen,
        soup: this.cfg.soup ? this.correctSoup / this.seen : null,
        best_single_model: Math.max(...acc),
        mean_single_model: acc.reduce((a, b) => a + b, 0) / acc.length,
        submodels: acc,
      },
      diversity: Object.fromEntries(DIVERSITY_NAMES.map((k) => [k, this.diversitySums[k] / this.batches])) as Record<DiversityName, number>,
    };
  }

}

/** Evaluates an ensemble on this thread: heads uploaded once, run on each chunk, statistics after. */
export class EnsembleEvaluator {
  private readonly acc: EvalAccumulator;
  private readonly heads: HeadTensors[];
  private readonly soupHead: HeadTensors | null;

  constructor(
    private readonly ensemble: EnsembleArrays,
    totalRows: number,
    cfg: EvalConfig,
  ) {
    this.acc = new EvalAccumulator(ensemble.shape, ensemble.heads.length, totalRows, cfg);
    this.heads = ensemble.heads.map((h) => headTensorsFromArrays(h, ensemble.shape));
    this.soupHead = cfg.soup ? headTensorsFromArrays(soupArrays(ensemble.heads), ensemble.shape) : null;
  }

  get scores(): Record<ScoreName, Float64Array> {
    return this.acc.scores;
  }

  /**
   * One head's logits into out at offset. The read is asynchronous (a GPU backend cannot read
   * synchronously) and per head, so only one head's logits are on the device at a time.
   */
  private async forward(p: HeadTensors, x: tf.Tensor2D, out: Float32Array, offset: number): Promise<void> {
    const y = tf.tidy(() => headLogits(p, x, this.ensemble.shape));
    try {
      out.set((await y.data()) as Float32Array, offset);
    } finally {
      y.dispose();
    }
  }

  /**
   * A chunk of `count` rows: embed is count*dim floats, labels count class indices. The heads run on the
   * whole chunk (bigger matMuls); statistics are taken per eval batch of `batchSize` rows inside it, so a
   * chunk must start on a batch boundary (every chunk but the last is a multiple of batchSize).
   */
  async addBatch(embed: Float32Array, labels: ArrayLike<number>, count: number): Promise<void> {
    const { dim, classes } = this.ensemble.shape;
    if (count <= 0) return;
    this.acc.checkChunk(embed, labels, count);
    const m = this.heads.length;
    const all = new Float32Array(m * count * classes);
    const x = tf.tensor2d(embed.subarray(0, count * dim), [count, dim]);
    let soupOut: Float32Array | null = null;
    try {
      for (let h = 0; h < m; h++) await this.forward(this.heads[h]!, x, all, h * count * classes);
      if (this.soupHead) {
        soupOut = new Float32Array(count * classes);
        await this.forward(this.soupHead, x, soupOut, 0);
      }
    } finally {
      x.dispose();
    }
    // The row softmax as the head threads compute it (native with the OpenBLAS kernels), so both
    // evaluators give the same bits.
    const softmax = { p: new Float32Array(all.length), lse: new Float64Array(m * count) };
    evalSoftmaxRows()(all, 0, all.length, classes, softmax.p, softmax.lse);
    this.acc.addLogits(all, soupOut, labels, count, softmax);
  }

  summary(): EvalSummary {
    return this.acc.summary();
  }

  dispose(): void {
    for (const h of this.heads) for (const t of Object.values(h)) t.dispose();
    if (this.soupHead) for (const t of Object.values(this.soupHead)) t.dispose();
  }
}

interface ChunkSlot {
  x: Float32Array;
  out: Float32Array;
  p: Float32Array;
  lse: Float64Array;
  labels: Int32Array;
  count: number;
  running: Promise<void> | null;
}

/**
 * Evaluates on head threads (src/ml/head-pool.ts): the heads and the soup are split across the threads,
 * which compute their logits and row softmax into shared buffers; this thread computes the
 * statistics of one chunk while the threads run the heads on the next. Same results, bit for bit, as
 * EnsembleEvaluator on a backend with one OpenBLAS thread.
 */
export class ThreadedEvaluator {
  private slots: ChunkSlot[];
  private turn = 0;
  private inFlight: ChunkSlot | null = null;

  private constructor(
    private readonly pool: HeadPool,
    private readonly acc: EvalAccumulator,
    private readonly placement: number[][],
    private readonly shape: HeadShape,
    private readonly heads: number,
    chunkRows: number,
  ) {
    const rows = (heads + 1) * chunkRows;
    this.slots = [0, 1].map(() => ({
      x: sharedF32(chunkRows * shape.dim),
      out: sharedF32(rows * shape.classes),
      p: sharedF32(rows * shape.classes),
      lse: new Float64Array(new SharedArrayBuffer(rows * 8)),
      labels: new Int32Array(chunkRows),
      count: 0,
      running: null,
    }));
  }

  /** Starts the threads and places the heads (and the soup, when cfg.soup) on them; chunkRows = largest chunk. */
  static async start(ensemble: EnsembleArrays, totalRows: number, cfg: EvalConfig, threads: number, chunkRows: number): Promise<ThreadedEvaluator> {
    const acc = new EvalAccumulator(ensemble.shape, ensemble.heads.length, totalRows, cfg);
    const m = ensemble.heads.length;
    const pool = await HeadPool.start(threads, ensemble.shape);
    try {
      // Contiguous, even split of heads 0..m-1 and the soup (index m).
      const units = cfg.soup ? m + 1 : m;
      const placement: number[][] = Array.from({ length: threads }, (_, w) => {
        const from = Math.floor((w * units) / threads);
        const to = Math.floor(((w + 1) * units) / threads);
        return Array.from({ length: to - from }, (_, i) => from + i);
      });
      const soup = cfg.soup ? soupArrays(ensemble.heads) : null;
      const layout = headLayout(ensemble.shape);
      await Promise.all(
        placement.map(async (heads, w) => {
          for (const h of heads) await pool.put(w, h, { params: packHead(h === m ? soup! : ensemble.heads[h], layout), slots: {} });
        }),
      );
      return new ThreadedEvaluator(pool, acc, placement, ensemble.shape, m, chunkRows);
    } catch (err) {
      await pool.close();
      throw err;
    }
  }

  get scores(): Record<ScoreName, Float64Array> {
    return this.acc.scores;
  }

  private async flush(): Promise<void> {
    const s = this.inFlight;
    if (!s) return;
    this.inFlight = null;
    await s.running;
    const { classes } = this.shape;
    const m = this.heads;
    const n = s.count;
    const soupOut = this.placement.some((p) => p.includes(m)) ? s.out.subarray(m * n * classes, (m + 1) * n * classes) : null;
    this.acc.addLogits(s.out, soupOut, s.labels, n, { p: s.p, lse: s.lse });
  }

  /** As EnsembleEvaluator.addBatch; the chunk's statistics are taken during the next call (or summary()). */
  async addBatch(embed: Float32Array, labels: ArrayLike<number>, count: number): Promise<void> {
    if (count <= 0) return;
    const s = this.slots[this.turn];
    if (count * this.shape.dim > s.x.length) throw new Error(`ThreadedEvaluator: chunk of ${count} rows exceeds the ${s.labels.length} it was started for`);
    this.acc.checkChunk(embed, labels, count, this.inFlight?.count ?? 0);
    this.turn ^= 1;
    s.x.set(embed.subarray(0, count * this.shape.dim));
    for (let i = 0; i < count; i++) s.labels[i] = labels[i];
    s.count = count;
    const offsets = Array.from({ length: this.heads + 1 }, (_, h) => h * count * this.shape.classes);
    s.running = this.pool.logits(this.placement, s.x, count, s.out, offsets, { p: s.p, lse: s.lse });
    // Awaited in flush(); marked handled now so a failure cannot surface as an unhandled rejection first.
    s.running.catch(() => undefined);
    // Statistics of the previous chunk while the threads run the heads on this one.
    const prev = this.inFlight;
    this.inFlight = s;
    if (prev) {
      this.inFlight = prev;
      try {
        await this.flush();
      } finally {
        this.inFlight = s;
      }
    }
  }

  async summary(): Promise<EvalSummary> {
    await this.flush();
    return this.acc.summary();
  }

  async dispose(): Promise<void> {
    await Promise.allSettled(this.slots.map((s) => s.running));
    await this.pool.close();
  }
}
