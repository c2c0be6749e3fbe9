// The per-epoch validation's on-device sums (hits per head and of the mean-logit ensemble, SED loss
// parts) and its result; shared by the single-thread and the head-thread trainers. Computes no logits.
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../rng.ts";
import { sedLoss } from "./losses.ts";
import type { EffectiveLoss } from "./train-config.ts";

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

/** Rows whose top-1 class is the label (int32 scalar). */
export const hits = (logits: tf.Tensor2D, y: tf.Tensor1D) => tf.sum(tf.cast(tf.equal(tf.argMax(logits, -1), y), "int32"));

/**
 * One val batch with every head's logits at hand: [hits per head..., ensemble hits] and [task,
 * repulsion, total] (zeros without a loss). Call inside tidy.
 */
export function batchCounts(logits: tf.Tensor2D[], y: tf.Tensor1D, classes: number, loss: EffectiveLoss | undefined, ref: number): [tf.Tensor1D, tf.Tensor1D] {
  const dc = tf.stack([...logits.map((z) => hits(z, y)), hits(tf.addN(logits) as tf.Tensor2D, y)]) as tf.Tensor1D;
  if (!loss) return [dc, tf.zeros([3])];
  const l = sedLoss(logits, y, classes, loss, ref);
  return [dc, tf.stack([l.task, l.repulsion, l.total]) as tf.Tensor1D];
}

/**
 * Running on-device sums of one evaluation: hits per head then the ensemble's, and the [task,
 * repulsion, total] loss sums; one host read in result().
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
  async result(rows: number, batches: number, withLoss: boolean): Promise<EvalResult> {
    // Asynchronous host reads (a GPU backend cannot read synchronously).
    const [counts, l] = await Promise.all([this.correct.data(), this.lossSum.data()]);
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

/** The validation of an epoch without a val set. */
export function noValidation(): EvalResult {
  return { perHead: [NaN], ensemble: NaN, task: NaN, repulsion: NaN, total: NaN };
}
