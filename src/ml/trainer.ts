// Trains an SED ensemble (reference §1.3, §2.3-2.5): stochastic pair selection, the SED loss, torch
// optimisers, cosine schedule, frozen first epoch, per-epoch validation, checkpoints and bit-exact
// resume. Reads batches only through the TrainSource/EvalSource interfaces; never opens files itself
// except its own checkpoint.
import * as tf from "@tensorflow/tfjs-core";
import { createHash } from "node:crypto";
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { Rng, type RngState } from "../rng.ts";
import { InputError } from "../errors.ts";
import { readSafetensors, writeSafetensors, type SafeTensor } from "../io/safetensors.ts";
import type { ProgressEvent } from "../runner/stage-api.ts";
import {
  HEAD_PARAM_NAMES, headBackward, headForwardCached, headLogits, headParamShapes, initHeadArrays, type HeadArrays, type HeadParamName, type HeadShape, type HeadTensors,
} from "./heads.ts";
import { sedLoss, sedLossWithGrad, smoothedTargets, softCrossEntropy } from "./losses.ts";
import { gradsFinite, slotNames } from "./optim.ts";
import { deviceTensors, headLayout, packHead, unpackHead, updatedHead, type DeviceHead, type HeadLayout } from "./device-head.ts";
import { lrAt } from "./lr-schedule.ts";
import { readInto } from "./kernels/wasm-heap.ts";
import { headThreadCount, type HeadThreadSettings } from "./head-pool.ts";
export { headLayout, packHead, unpackHead, type DeviceHead, type HeadLayout } from "./device-head.ts";
import { effectiveLoss, epochSeed, headShapeOf, type EffectiveLoss, type TrainConfig } from "./train-config.ts";

export interface Batch {
  /** count*dim values, row-major. */
  embed: Float32Array;
  label: Int32Array;
  count: number;
}

export interface TrainSource {
  dim: number;
  /** Rows per augmented pass; an epoch is one pass. */
  passRows: number;
  passes: number;
  /** Shuffled batches of pass `epoch mod passes` (drop_last false). */
  batches(epoch: number, batchSize: number, rng: Rng): Iterable<Batch>;
}

export interface EvalSource {
  dim: number;
  rows: number;
  batches(batchSize: number): Iterable<Batch>;
}

export interface EpochRow {
  epoch: number;
  frozen: boolean;
  lr: number;
  steps: number;
  skipped_steps: number;
  train_task_loss: number;
  train_repulsion_loss: number;
  train_total_loss: number;
  val_acc_mean: number;
  val_acc_max: number;
  val_acc_min: number;
  val_acc_std: number;
  val_ensemble_acc: number;
  val_task_loss: number;
  val_repulsion_loss: number;
  val_total_loss: number;
  walltime_s: number;
}

export const CSV_COLUMNS: (keyof EpochRow)[] = [
  "epoch", "frozen", "lr", "steps", "skipped_steps", "train_task_loss", "train_repulsion_loss", "train_total_loss",
  "val_acc_mean", "val_acc_max", "val_acc_min", "val_acc_std", "val_ensemble_acc", "val_task_loss", "val_repulsion_loss",
  "val_total_loss", "walltime_s",
];

export function trainingCsv(rows: EpochRow[]): string {
  const lines = [CSV_COLUMNS.join(",")];
  for (const r of rows) lines.push(CSV_COLUMNS.map((c) => (typeof r[c] === "boolean" ? (r[c] ? "1" : "0") : String(r[c]))).join(","));
  return lines.join("\n") + "\n";
}

export interface TrainHooks {
  signal?: AbortSignal;
  log?(line: string): void;
  progress?(e: ProgressEvent): void;
  /** Folder for the per-epoch checkpoint (ctx.scratch); none = no checkpoint, no resume. */
  checkpointDir?: string;
  /** Called after an epoch's checkpoint is written (tests interrupt here). */
  onEpochEnd?(epoch: number, row: EpochRow): void;
  /** Extra identity of the data folded into the checkpoint digest (e.g. feature file sizes). */
  dataIdentity?: string;
  /** Cores and head threads (a stage passes ctx.settings); default: all cores, threads by head size. */
  settings?: HeadThreadSettings;
}

export interface TrainResult {
  heads: HeadArrays[];
  rows: EpochRow[];
  /** Epochs already done by a checkpoint this run resumed from (0 = fresh start). */
  resumedEpochs: number;
  skippedSteps: number;
}

/** Host copy of a head: flat params and flat slots, in HeadLayout order. */
interface HostHead {
  params: Float32Array;
  slots: Record<string, Float32Array>;
}

/**
 * The ensemble's weights and optimiser state. On device by default; with keep_inactive_on_cpu they live
 * as host Float32Arrays and only the active heads are uploaded per step (the reference parks inactive
 * heads on the CPU to save accelerator memory; here it keeps them out of the 32-bit wasm heap).
 */
export class EnsembleState {
  readonly shape: HeadShape;
  readonly layout: HeadLayout;
  readonly slotNames: string[];
  /** Optimiser steps taken per head (torch counts per parameter; a head's parameters always step together). */
  readonly headSteps: number[];
  private device: (DeviceHead | null)[];
  private host: (HostHead | null)[];
  private readonly shapes: Record<HeadParamName, number[]>;

  constructor(readonly cfg: TrainConfig, heads: HeadArrays[], slots?: Record<string, HeadArrays>[], steps?: number[]) {
    this.shape = headShapeOf(cfg);
    this.layout = headLayout(this.shape);
    this.shapes = headParamShapes(this.shape);
    this.slotNames = slotNames(cfg.optimizer);
    this.headSteps = steps ? [...steps] : heads.map(() => 0);
    const hostHeads: HostHead[] = heads.map((h, i) => ({
      params: packHead(h, this.layout),
      slots: Object.fromEntries(
        this.slotNames.map((s) => [s, slots?.[i]?.[s] ? packHead(slots[i][s], this.layout) : new Float32Array(this.layout.total)]),
      ),
    }));
    if (cfg.keep_inactive_on_cpu) {
      this.host = hostHeads;
      this.device = heads.map(() => null);
    } else {
      this.host = heads.map(() => null);
      this.device = hostHeads.map((h) => this.upload(h));
    }
  }

  get size(): number {
    return this.headSteps.length;
  }

  private toDevice(flat: Float32Array): HeadTensors {
    const o = {} as HeadTensors;
    const v = unpackHead(flat, this.layout);
    for (const k of HEAD_PARAM_NAMES) o[k] = tf.tensor(v[k], this.shapes[k], "float32");
    return o;
  }

  /** Reads every tensor of t into `into` (flat, HeadLayout order; a new buffer when absent). */
  private toHost(t: HeadTensors, into?: Float32Array): Float32Array {
    const out = into ?? new Float32Array(this.layout.total);
    HEAD_PARAM_NAMES.forEach((k, i) => readInto(t[k], out, this.layout.offsets[i]));
    return out;
  }

  private upload(h: HostHead): DeviceHead {
    return {
      params: this.toDevice(h.params),
      slots: Object.fromEntries(Object.entries(h.slots).map(([s, a]) => [s, this.toDevice(a)])),
    };
  }

  /** Device tensors of head i (uploaded when kept on the host; then release() must follow). */
  acquire(i: number): DeviceHead {
    return this.device[i] ?? this.upload(this.host[i]!);
  }

  /** Stores head i's new tensors; the old ones (and, for host heads, the new ones after download) are disposed. */
  release(i: number, next: DeviceHead, prev: DeviceHead): void {
    if (this.device[i]) {
      const keep = new Set<tf.Tensor>(deviceTensors(next));
      tf.dispose(deviceTensors(prev).filter((t) => !keep.has(t)));
      this.device[i] = next;
      return;
    }
    // In place: snapshot() hands out copies, so nothing else holds these buffers.
    const h = this.host[i]!;
    this.toHost(next.params, h.params);
    for (const [s, t] of Object.entries(next.slots)) this.toHost(t, h.slots[s]);
    tf.dispose([...new Set([...deviceTensors(next), ...deviceTensors(prev)])]);
  }

  /** Done with acquired tensors that were not changed (eval). */
  releaseUnchanged(i: number, h: DeviceHead): void {
    if (!this.device[i]) tf.dispose(deviceTensors(h));
  }

  /** Host copies of weights and slots (reads the device once per tensor). */
  snapshot(): { heads: HeadArrays[]; slots: Record<string, HeadArrays>[] } {
    const heads: HeadArrays[] = [];
    const slots: Record<string, HeadArrays>[] = [];
    for (let i = 0; i < this.size; i++) {
      const d = this.device[i];
      const h: HostHead = d
        ? { params: this.toHost(d.params), slots: Object.fromEntries(Object.entries(d.slots).map(([s, t]) => [s, this.toHost(t)])) }
        : { params: this.host[i]!.params.slice(), slots: Object.fromEntries(Object.entries(this.host[i]!.slots).map(([s, a]) => [s, a.slice()])) };
      heads.push(unpackHead(h.params, this.layout));
      slots.push(Object.fromEntries(Object.entries(h.slots).map(([s, a]) => [s, unpackHead(a, this.layout)])));
    }
    return { heads, slots };
  }

  dispose(): void {
    for (const d of this.device) if (d) tf.dispose(deviceTensors(d));
    this.device = this.device.map(() => null);
  }
}

/** Running on-device sums of one epoch; read on the host only at log points. */
export class StepAccumulators {
  task = tf.scalar(0);
  repulsion = tf.scalar(0);
  total = tf.scalar(0);
  skipped = tf.scalar(0);
  steps = 0;

  add(parts: { task: tf.Scalar; repulsion: tf.Scalar; total: tf.Scalar; skipped?: tf.Scalar }): void {
    const next = tf.tidy(() => ({
      task: tf.add(this.task, parts.task) as tf.Scalar,
      repulsion: tf.add(this.repulsion, parts.repulsion) as tf.Scalar,
      total: tf.add(this.total, parts.total) as tf.Scalar,
      skipped: (parts.skipped ? tf.add(this.skipped, parts.skipped) : tf.clone(this.skipped)) as tf.Scalar,
    }));
    tf.dispose([this.task, this.repulsion, this.total, this.skipped]);
    Object.assign(this, next);
    for (const t of [this.task, this.repulsion, this.total, this.skipped]) tf.keep(t);
    this.steps++;
  }

  /** One host read of the four sums. */
  read(): { task: number; repulsion: number; total: number; skipped: number } {
    const v = tf.tidy(() => tf.stack([this.task, this.repulsion, this.total, this.skipped]).dataSync());
    const n = Math.max(1, this.steps);
    return { task: v[0] / n, repulsion: v[1] / n, total: v[2] / n, skipped: v[3] };
  }

  dispose(): void {
    tf.dispose([this.task, this.repulsion, this.total, this.skipped]);
  }
}

export interface StepInput {
  x: tf.Tensor2D;
  y: tf.Tensor1D;
  /** Active head indices, ascending. */
  active: number[];
  /** Position (in `active`) of the A2D reference head. */
  ref: number;
  lr: number;
  /** false = frozen epoch: forward + backward, no update. */
  update: boolean;
}

/**
 * THE per-step compute: forward of the active heads, SED loss, gradients, optimiser update of the
 * active heads only. Everything stays on the device; the loss parts are added to `acc`. A native
 * backend replaces this one function.
 */
export function sedTrainStep(st: EnsembleState, loss: EffectiveLoss, inp: StepInput, acc: StepAccumulators): void {
  const cfg = st.cfg;
  const o = cfg.optimizer;
  const heads = inp.active.map((i) => st.acquire(i));
  interface StepOut {
    task: tf.Scalar;
    repulsion: tf.Scalar;
    total: tf.Scalar;
    next: DeviceHead[] | null;
    skipped: tf.Scalar | null;
  }
  const compute = (): StepOut => {
    const fwd = heads.map((h) => headForwardCached(h.params, inp.x, st.shape));
    const l = sedLossWithGrad(fwd.map((f) => f.logits), inp.y, cfg.num_classes, loss, inp.ref);
    const grads = heads.map((h, j) => headBackward(h.params, fwd[j].cache, l.dlogits[j]));
    if (!inp.update) return { task: l.task, repulsion: l.repulsion, total: l.total, next: null, skipped: null };
    if (o.type === "sgd" && o.nan_check) {
      // The reference's NaN-checking SGD wrapper tests `isnan().any()` on the host each step, and so
      // does this: one boolean read (free on wasm/cpu), and a skipped step costs no update at all.
      if (gradsFinite(grads.flatMap((g) => HEAD_PARAM_NAMES.map((k) => g[k]))).dataSync()[0] === 0) {
        return { task: l.task, repulsion: l.repulsion, total: l.total, next: null, skipped: tf.scalar(1) };
      }
    }
    for (const i of inp.active) st.headSteps[i]++;
    const next = heads.map((h, j): DeviceHead => updatedHead(h, grads[j], o, st.slotNames, inp.lr, st.headSteps[inp.active[j]]));
    return { task: l.task, repulsion: l.repulsion, total: l.total, next, skipped: null };
  };
  const out = tf.tidy(() => compute() as unknown as tf.TensorContainer) as unknown as StepOut;
  // The new state outlives any tidy scope the caller may have opened around this step.
  if (out.next) for (const h of out.next) for (const t of deviceTensors(h)) tf.keep(t);
  acc.add({ task: out.task, repulsion: out.repulsion, total: out.total, skipped: out.skipped ?? undefined });
  tf.dispose([out.task, out.repulsion, out.total, ...(out.skipped ? [out.skipped] : [])]);
  heads.forEach((h, j) => {
    if (out.next) st.release(inp.active[j], out.next[j], h);
    else st.releaseUnchanged(inp.active[j], h);
  });
}

export interface EvalResult {
  perHead: number[];
  ensemble: number;
  /** Eval-mode SED loss over ALL heads (mean over batches), as the reference's val columns; NaN without opts.loss. */
  task: number;
  repulsion: number;
  total: number;
}

export interface EvalOptions {
  signal?: AbortSignal;
  /** Also compute the val losses (all heads active: A2D of one random reference head against the M-1 others). */
  loss?: EffectiveLoss;
  /** Draws the reference head of each batch (required with loss.computeRepulsion). */
  refRng?: Rng;
}

const hits = (logits: tf.Tensor2D, y: tf.Tensor1D) => tf.sum(tf.cast(tf.equal(tf.argMax(logits, -1), y), "int32"));

/**
 * One val batch with every head's logits at hand: [hits per head..., ensemble hits] and [task,
 * repulsion, total] (zeros without a loss). Call inside tidy. Shared with the head-thread trainer.
 */
export function batchCounts(logits: tf.Tensor2D[], y: tf.Tensor1D, classes: number, loss: EffectiveLoss | undefined, ref: number): [tf.Tensor1D, tf.Tensor1D] {
  const dc = tf.stack([...logits.map((z) => hits(z, y)), hits(tf.addN(logits) as tf.Tensor2D, y)]) as tf.Tensor1D;
  if (!loss) return [dc, tf.zeros([3])];
  const l = sedLoss(logits, y, classes, loss, ref);
  return [dc, tf.stack([l.task, l.repulsion, l.total]) as tf.Tensor1D];
}

/**
 * Running on-device sums of one evaluation: hits per head then the ensemble's, and the [task,
 * repulsion, total] loss sums; one host read in result(). Shared by evaluateEnsemble and the
 * head-thread trainer's evaluate.
 */
export class EvalTally {
  private correct: tf.Tensor1D;
  private lossSum: tf.Tensor1D = tf.zeros([3]);

  constructor(private readonly heads: number) {
    this.correct = tf.zeros([heads + 1], "int32");
  }

  private static addTo(acc: tf.Tensor1D, inc: tf.Tensor1D): tf.Tensor1D {
    const next = tf.add(acc, inc) as tf.Tensor1D;
    acc.dispose();
    return tf.keep(next);
  }

  /** Adds hit counts ([heads + 1]) and, when given, loss parts ([3]); the caller disposes its tensors. */
  add(hits: tf.Tensor1D, losses?: tf.Tensor1D): void {
    this.correct = EvalTally.addTo(this.correct, hits);
    if (losses) this.lossSum = EvalTally.addTo(this.lossSum, losses);
  }

  /** Accuracies over `rows` samples; losses as means over `batches` (NaN without a loss). */
  result(rows: number, batches: number, withLoss: boolean): EvalResult {
    const counts = this.correct.dataSync();
    const l = this.lossSum.dataSync();
    const n = Math.max(1, rows);
    const nb = Math.max(1, batches);
    return {
      perHead: Array.from(counts.slice(0, this.heads), (v) => v / n),
      ensemble: counts[this.heads] / n,
      task: withLoss ? l[0] / nb : NaN,
      repulsion: withLoss ? l[1] / nb : NaN,
      total: withLoss ? l[2] / nb : NaN,
    };
  }

  dispose(): void {
    tf.dispose([this.correct, this.lossSum]);
  }
}

/**
 * Top-1 accuracy of every head and of the mean-logit ensemble, and the eval-mode loss; one host read at
 * the end. Batches outer (every head per batch) when heads live on the device or the repulsion term
 * needs them all at once; heads outer otherwise (host-kept heads are uploaded once per evaluation).
 */
export function evaluateEnsemble(st: EnsembleState, val: EvalSource, batchSize: number, opts: EvalOptions = {}): EvalResult {
  const M = st.size;
  const C = st.cfg.num_classes;
  const loss = opts.loss;
  if (loss?.computeRepulsion && !opts.refRng) throw new Error("evaluateEnsemble: refRng is required for the repulsion term");
  const cached: { x: tf.Tensor2D; y: tf.Tensor1D }[] = [];
  for (const b of val.batches(batchSize)) {
    cached.push({ x: tf.tensor2d(b.embed, [b.count, val.dim]), y: tf.tensor1d(b.label, "int32") });
  }
  const tally = new EvalTally(M);
  const unit = (i: number) => tf.reshape(tf.oneHot(tf.tensor1d([i], "int32"), M + 1), [M + 1]);
  const headParams = (i: number) => {
    const h = st.acquire(i);
    return { p: h.params, done: () => st.releaseUnchanged(i, h) };
  };
  try {
    if (!st.cfg.keep_inactive_on_cpu || loss?.computeRepulsion) {
      const held = st.cfg.keep_inactive_on_cpu ? null : Array.from({ length: M }, (_, i) => headParams(i));
      try {
        for (const b of cached) {
          opts.signal?.throwIfAborted();
          const ref = loss?.computeRepulsion ? opts.refRng!.int(M) : 0;
          const now = held ?? Array.from({ length: M }, (_, i) => headParams(i));
          try {
            const [dc, dl] = tf.tidy(() => batchCounts(now.map((h) => headLogits(h.p, b.x, st.shape)), b.y, C, loss, ref));
            tally.add(dc, dl);
            tf.dispose([dc, dl]);
          } finally {
            if (!held) for (const h of now) h.done();
          }
        }
      } finally {
        if (held) for (const h of held) h.done();
      }
    } else {
      // Heads outer: the task term is a plain mean over heads, and the repulsion term is never computed.
      const sums: (tf.Tensor2D | null)[] = cached.map(() => null);
      try {
        for (let i = 0; i < M; i++) {
          opts.signal?.throwIfAborted();
          const h = headParams(i);
          try {
            cached.forEach((b, j) => {
              const logits = tf.tidy(() => headLogits(h.p, b.x, st.shape));
              const [dc, dl] = tf.tidy(() => {
                const dc = tf.mul(unit(i), hits(logits, b.y)) as tf.Tensor1D;
                if (!loss) return [dc, tf.zeros([3])];
                const ce = tf.div(tf.mean(softCrossEntropy(logits, smoothedTargets(b.y, C, loss.smoothingEps))), M);
                return [dc, tf.stack([ce, tf.scalar(0), tf.mul(ce, 1 - loss.lambda)])];
              }) as [tf.Tensor1D, tf.Tensor1D];
              tally.add(dc, dl);
              tf.dispose([dc, dl]);
              const prev = sums[j];
              sums[j] = prev ? (tf.add(prev, logits) as tf.Tensor2D) : logits;
              if (prev) tf.dispose([prev, logits]);
            });
          } finally {
            h.done();
          }
        }
        const ens = tf.tidy(() => tf.mul(unit(M), tf.addN(cached.map((b, j) => hits(sums[j]!, b.y)))) as tf.Tensor1D);
        tally.add(ens);
        ens.dispose();
      } finally {
        tf.dispose(sums.filter((t): t is tf.Tensor2D => t !== null));
      }
    }
    return tally.result(val.rows, cached.length, loss !== undefined);
  } finally {
    tf.dispose(cached.flatMap((b) => [b.x, b.y]));
    tally.dispose();
  }
}

/** Independent per-epoch streams: 1 pair selection, 2 A2D reference head, 3 shuffling, 4 reference head of the val loss. */
export function epochStream(seed: number, stream: 1 | 2 | 3 | 4): Rng {
  return new Rng((Math.imul(seed >>> 0, 0x9e3779b1) + Math.imul(stream, 0x85ebca77)) >>> 0);
}

const CKPT_FORMAT = "sed-pipe-train-checkpoint-v1";
const CKPT_FILE = "checkpoint.safetensors";

function configDigest(cfg: TrainConfig, train: TrainSource, extra: string): string {
  return createHash("sha256")
    .update(JSON.stringify({ cfg, dim: train.dim, passRows: train.passRows, passes: train.passes, extra }))
    .digest("hex")
    .slice(0, 20);
}

interface Checkpoint {
  epochsDone: number;
  heads: HeadArrays[];
  slots: Record<string, HeadArrays>[];
  headSteps: number[];
  rows: EpochRow[];
  rng: Record<string, RngState>;
}

async function saveCheckpoint(
  dir: string, digest: string, st: { snapshot(): { heads: HeadArrays[]; slots: Record<string, HeadArrays>[] } | Promise<{ heads: HeadArrays[]; slots: Record<string, HeadArrays>[] }>; headSteps: number[]; slotNames: string[]; cfg: TrainConfig },
  c: Omit<Checkpoint, "heads" | "slots" | "headSteps">,
): Promise<void> {
  const { heads, slots } = await st.snapshot();
  const sh = headParamShapes(headShapeOf(st.cfg));
  const tensors: Record<string, SafeTensor> = {};
  heads.forEach((h, i) => {
    for (const k of HEAD_PARAM_NAMES) tensors[`submodels.${i}.${k}`] = { dtype: "F32", shape: sh[k], data: h[k] };
    for (const s of st.slotNames) for (const k of HEAD_PARAM_NAMES) tensors[`optimizer.${i}.${s}.${k}`] = { dtype: "F32", shape: sh[k], data: slots[i][s][k] };
  });
  await writeSafetensors(join(dir, CKPT_FILE), tensors, {
    format: CKPT_FORMAT,
    digest,
    epochs_done: String(c.epochsDone),
    head_steps: JSON.stringify(st.headSteps),
    rows: JSON.stringify(c.rows),
    rng: JSON.stringify(c.rng),
  });
}

async function loadCheckpoint(dir: string, digest: string, cfg: TrainConfig, log: (s: string) => void): Promise<Checkpoint | null> {
  const file = join(dir, CKPT_FILE);
  try {
    await stat(file);
  } catch {
    return null;
  }
  let f;
  try {
    f = await readSafetensors(file);
  } catch (err) {
    log(`ignoring unreadable checkpoint ${file}: ${(err as Error).message}`);
    return null;
  }
  const m = f.metadata;
  if (m.format !== CKPT_FORMAT || m.digest !== digest) {
    log(`ignoring checkpoint ${file}: it belongs to another configuration or data (digest ${m.digest ?? "none"} != ${digest})`);
    return null;
  }
  const shape = headShapeOf(cfg);
  const sh = headParamShapes(shape);
  const names = slotNames(cfg.optimizer);
  const get = (key: string, k: (typeof HEAD_PARAM_NAMES)[number]) => {
    const t = f.tensors[key];
    if (!t || t.dtype !== "F32" || t.shape.join() !== sh[k].join()) {
      throw new InputError(`${file}: checkpoint tensor "${key}" is missing or has the wrong shape`, { hint: `delete ${file} to restart training from scratch` });
    }
    return t.data as Float32Array;
  };
  const heads: HeadArrays[] = [];
  const slots: Record<string, HeadArrays>[] = [];
  for (let i = 0; i < cfg.n_models; i++) {
    const h = {} as HeadArrays;
    for (const k of HEAD_PARAM_NAMES) h[k] = get(`submodels.${i}.${k}`, k);
    heads.push(h);
    const s: Record<string, HeadArrays> = {};
    for (const n of names) {
      s[n] = {} as HeadArrays;
      for (const k of HEAD_PARAM_NAMES) s[n][k] = get(`optimizer.${i}.${n}.${k}`, k);
    }
    slots.push(s);
  }
  return {
    epochsDone: Number(m.epochs_done),
    heads,
    slots,
    headSteps: JSON.parse(m.head_steps),
    rows: JSON.parse(m.rows),
    rng: JSON.parse(m.rng),
  };
}

function stats(v: number[]): { mean: number; max: number; min: number; std: number } {
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  // Population std over heads (numpy's default).
  const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
  return { mean, max: Math.max(...v), min: Math.min(...v), std };
}

/** Trains the whole ensemble; resumes from hooks.checkpointDir when it holds a matching checkpoint. */
export async function trainEnsemble(cfg: TrainConfig, train: TrainSource, val: EvalSource | null, hooks: TrainHooks = {}): Promise<TrainResult> {
  const log = hooks.log ?? (() => {});
  if (train.dim !== cfg.embed_dim) {
    throw new InputError(`train features have dim ${train.dim} but config "${cfg.name}" has embed_dim ${cfg.embed_dim}`, { hint: "set embed_dim to the featurizer's embedding size" });
  }
  if (val && val.dim !== cfg.embed_dim) {
    throw new InputError(`val features have dim ${val.dim} but config "${cfg.name}" has embed_dim ${cfg.embed_dim}`, { hint: "set embed_dim to the featurizer's embedding size" });
  }
  const loss = effectiveLoss(cfg);
  const shape = headShapeOf(cfg);
  const digest = configDigest(cfg, train, hooks.dataIdentity ?? "");
  const ckpt = hooks.checkpointDir ? await loadCheckpoint(hooks.checkpointDir, digest, cfg, log) : null;
  let rows: EpochRow[] = [];
  let start = 0;
  let initial: HeadArrays[];
  if (ckpt) {
    initial = ckpt.heads;
    rows = ckpt.rows;
    start = ckpt.epochsDone;
    log(`resuming "${cfg.name}" after epoch ${start}/${cfg.n_epochs} from ${join(hooks.checkpointDir!, CKPT_FILE)}`);
  } else {
    // One init stream, heads in index order (the reference seeds once with 42 before building all heads).
    const init = new Rng(cfg.seed);
    initial = Array.from({ length: cfg.n_models }, () => initHeadArrays(shape, init));
  }
  const k = cfg.random_select;
  // The pair on two head threads when the stage has two cores for big heads (src/ml/head-pool.ts):
  // the same bits as this thread with one OpenBLAS thread, about 1.3x faster at paper sizes.
  const threads = k === 2 ? headThreadCount(shape, cfg.n_models, 2, hooks.settings) : 1;
  let st: EnsembleState | null = null;
  let te: import("./threaded-training.ts").ThreadedEnsemble | null = null;
  if (threads === 2) {
    const { ThreadedEnsemble } = await import("./threaded-training.ts");
    te = await ThreadedEnsemble.start(cfg, initial, ckpt?.slots, ckpt?.headSteps);
    initial = []; // the threads (or their shared buffers) hold the heads now
    log(`training "${cfg.name}": the active pair on 2 head threads (one head each)`);
  } else st = new EnsembleState(cfg, initial, ckpt?.slots, ckpt?.headSteps);
  const stepsPerEpoch = Math.ceil(train.passRows / cfg.batch_size);
  try {
    for (let e = start; e < cfg.n_epochs; e++) {
      const t0 = performance.now();
      const frozen = cfg.freeze_first_epoch && e === 0;
      const seed = epochSeed(cfg, e);
      const pairRng = epochStream(seed, 1);
      const refRng = epochStream(seed, 2);
      const shuffleRng = epochStream(seed, 3);
      // The scheduler steps once after each trained epoch: epoch e has seen (e - frozen epochs) steps.
      const lr = lrAt(cfg.optimizer.lr, cfg.lr_scheduler, Math.max(0, e - (cfg.freeze_first_epoch ? 1 : 0)));
      const phase = `epoch ${e + 1}/${cfg.n_epochs}`;
      const logEvery = cfg.log_every || Math.floor(stepsPerEpoch / 10) + 1;
      const acc = new StepAccumulators();
      const lastAcc = rows.length ? rows[rows.length - 1].val_acc_mean : NaN;
      try {
        let step = 0;
        for (const b of train.batches(e, cfg.batch_size, shuffleRng)) {
          hooks.signal?.throwIfAborted();
          const active = pairRng.sample(cfg.n_models, k).sort((a, c) => a - c);
          const ref = loss.computeRepulsion ? refRng.int(k) : 0;
          if (te) await te.step({ x: b.embed, y: b.label, rows: b.count, active, ref, lr, update: !frozen }, acc);
          else {
            const x = tf.tensor2d(b.embed, [b.count, train.dim]);
            const y = tf.tensor1d(b.label, "int32");
            try {
              sedTrainStep(st!, loss, { x, y, active, ref, lr, update: !frozen }, acc);
            } finally {
              tf.dispose([x, y]);
            }
          }
          step++;
          if (step % logEvery === 0) {
            const r = acc.read();
            // acc = mean per-head val accuracy of the last finished epoch (absent before the first one).
            hooks.progress?.({ phase, done: step, total: stepsPerEpoch, unit: "step", metrics: Number.isNaN(lastAcc) ? { loss: r.total } : { loss: r.total, acc: lastAcc } });
          }
          // Let the event loop breathe (abort signals, IPC) without a per-step host read.
          if (step % 64 === 0) await new Promise((r) => setImmediate(r));
        }
        const sums = acc.read();
        const evalOpts = { signal: hooks.signal, loss, refRng: epochStream(seed, 4) };
        const ev = !val
          ? { perHead: [NaN], ensemble: NaN, task: NaN, repulsion: NaN, total: NaN }
          : te
            ? await te.evaluate(val, cfg.eval_batch_size, evalOpts)
            : evaluateEnsemble(st!, val, cfg.eval_batch_size, evalOpts);
        const s = stats(ev.perHead);
        const row: EpochRow = {
          epoch: e,
          frozen,
          lr,
          steps: step,
          skipped_steps: sums.skipped,
          train_task_loss: sums.task,
          train_repulsion_loss: sums.repulsion,
          train_total_loss: sums.total,
          val_acc_mean: s.mean,
          val_acc_max: s.max,
          val_acc_min: s.min,
          val_acc_std: s.std,
          val_ensemble_acc: ev.ensemble,
          val_task_loss: ev.task,
          val_repulsion_loss: ev.repulsion,
          val_total_loss: ev.total,
          walltime_s: Number(((performance.now() - t0) / 1000).toFixed(3)),
        };
        rows.push(row);
        log(
          `${cfg.name} ${phase}${frozen ? " (frozen)" : ""}: lr ${lr.toPrecision(6)} task ${row.train_task_loss.toFixed(4)} ` +
            `repulsion ${row.train_repulsion_loss.toFixed(4)} total ${row.train_total_loss.toFixed(4)} | val acc mean ${s.mean.toFixed(4)} ` +
            `max ${s.max.toFixed(4)} min ${s.min.toFixed(4)} std ${s.std.toFixed(4)} ensemble ${ev.ensemble.toFixed(4)} ` +
            `loss task ${ev.task.toFixed(4)} repulsion ${ev.repulsion.toFixed(4)} total ${ev.total.toFixed(4)}` +
            (row.skipped_steps ? ` | ${row.skipped_steps} NaN steps skipped` : "") + ` | ${row.walltime_s} s`,
        );
        hooks.progress?.({ phase, done: step, total: stepsPerEpoch, unit: "step", metrics: { loss: row.train_total_loss, acc: s.mean } });
      } finally {
        acc.dispose();
      }
      if (hooks.checkpointDir) {
        await saveCheckpoint(hooks.checkpointDir, digest, (te ?? st)!, {
          epochsDone: e + 1,
          rows,
          rng: { pair: pairRng.state(), ref: refRng.state(), shuffle: shuffleRng.state() },
        });
      }
      hooks.onEpochEnd?.(e, rows[rows.length - 1]);
    }
    const { heads } = te ? await te.snapshot() : st!.snapshot();
    return { heads, rows, resumedEpochs: start, skippedSteps: rows.reduce((a, r) => a + r.skipped_steps, 0) };
  } finally {
    st?.dispose();
    await te?.dispose();
  }
}

export async function removeCheckpoint(dir: string): Promise<void> {
  await rm(join(dir, CKPT_FILE), { force: true });
}
