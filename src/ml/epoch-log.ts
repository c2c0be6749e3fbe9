// What one training epoch records: the on-device sums of its steps, its EpochRow (one row of
// training.csv, like the reference's filled_training.csv) and its log line. Trains nothing.
import * as tf from "@tensorflow/tfjs-core";
import type { EvalResult } from "./validation-tally.ts";

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
  async read(): Promise<StepMeans> {
    const t = tf.stack([this.task, this.repulsion, this.total, this.skipped]);
    const v = await t.data();
    t.dispose();
    const n = Math.max(1, this.steps);
    return { task: v[0] / n, repulsion: v[1] / n, total: v[2] / n, skipped: v[3] };
  }

  dispose(): void {
    tf.dispose([this.task, this.repulsion, this.total, this.skipped]);
  }
}

/** Loss parts as means over the steps read so far, and the count of skipped (NaN) steps. */
export interface StepMeans {
  task: number;
  repulsion: number;
  total: number;
  skipped: number;
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

function headStats(v: number[]): { mean: number; max: number; min: number; std: number } {
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  // Population std over heads (numpy's default).
  const std = Math.sqrt(v.reduce((a, b) => a + (b - mean) ** 2, 0) / v.length);
  return { mean, max: Math.max(...v), min: Math.min(...v), std };
}

/** An epoch's row from its step sums and its validation (all NaN without a val set). */
export function epochRow(e: { epoch: number; frozen: boolean; lr: number; steps: number; sums: StepMeans; val: EvalResult; startedMs: number }): EpochRow {
  const s = headStats(e.val.perHead);
  return {
    epoch: e.epoch,
    frozen: e.frozen,
    lr: e.lr,
    steps: e.steps,
    skipped_steps: e.sums.skipped,
    train_task_loss: e.sums.task,
    train_repulsion_loss: e.sums.repulsion,
    train_total_loss: e.sums.total,
    val_acc_mean: s.mean,
    val_acc_max: s.max,
    val_acc_min: s.min,
    val_acc_std: s.std,
    val_ensemble_acc: e.val.ensemble,
    val_task_loss: e.val.task,
    val_repulsion_loss: e.val.repulsion,
    val_total_loss: e.val.total,
    walltime_s: Number(((performance.now() - e.startedMs) / 1000).toFixed(3)),
  };
}

/** The log line of a finished epoch. */
export function epochLogLine(name: string, phase: string, row: EpochRow): string {
  return (
    `${name} ${phase}${row.frozen ? " (frozen)" : ""}: lr ${row.lr.toPrecision(6)} task ${row.train_task_loss.toFixed(4)} ` +
    `repulsion ${row.train_repulsion_loss.toFixed(4)} total ${row.train_total_loss.toFixed(4)} | val acc mean ${row.val_acc_mean.toFixed(4)} ` +
    `max ${row.val_acc_max.toFixed(4)} min ${row.val_acc_min.toFixed(4)} std ${row.val_acc_std.toFixed(4)} ensemble ${row.val_ensemble_acc.toFixed(4)} ` +
    `loss task ${row.val_task_loss.toFixed(4)} repulsion ${row.val_repulsion_loss.toFixed(4)} total ${row.val_total_loss.toFixed(4)}` +
    (row.skipped_steps ? ` | ${row.skipped_steps} NaN steps skipped` : "") + ` | ${row.walltime_s} s`
  );
}
