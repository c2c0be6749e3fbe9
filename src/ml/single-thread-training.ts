// SED training on the stage's own thread, over an EnsembleState: THE per-step compute (sedTrainStep)
// and the per-epoch validation (evaluateEnsemble). Knows nothing of epochs, checkpoints or threads.
import * as tf from "@tensorflow/tfjs-core";
import { HEAD_PARAM_NAMES, headBackward, headForwardCached, headLogits, type HeadTensors } from "./heads.ts";
import { sedLossWithGrad, smoothedTargets, softCrossEntropy } from "./losses.ts";
import { gradsFinite } from "./optim.ts";
import { deviceTensors, updatedHead, type DeviceHead } from "./device-head.ts";
import type { EnsembleState } from "./ensemble-state.ts";
import type { StepAccumulators } from "./epoch-log.ts";
import type { EffectiveLoss } from "./train-config.ts";
import type { EvalSource } from "./train-sources.ts";
import { EvalTally, batchCounts, hits, type EvalOptions, type EvalResult } from "./validation-tally.ts";

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
export async function sedTrainStep(st: EnsembleState, loss: EffectiveLoss, inp: StepInput, acc: StepAccumulators): Promise<void> {
  const cfg = st.cfg;
  const o = cfg.optimizer;
  const heads = inp.active.map((i) => st.acquire(i));
  interface Grads {
    task: tf.Scalar;
    repulsion: tf.Scalar;
    total: tf.Scalar;
    grads: HeadTensors[];
    finite: tf.Scalar | null;
  }
  let g: Grads | null = null;
  let next: DeviceHead[] | null = null;
  let skipped: tf.Scalar | null = null;
  try {
    g = tf.tidy(() => {
      const fwd = heads.map((h) => headForwardCached(h.params, inp.x, st.shape));
      const l = sedLossWithGrad(fwd.map((f) => f.logits), inp.y, cfg.num_classes, loss, inp.ref);
      const grads = inp.update ? heads.map((h, j) => headBackward(h.params, fwd[j].cache, l.dlogits[j])) : [];
      const finite = inp.update && o.type === "sgd" && o.nan_check ? gradsFinite(grads.flatMap((gr) => HEAD_PARAM_NAMES.map((k) => gr[k]))) : null;
      return { task: l.task, repulsion: l.repulsion, total: l.total, grads, finite } as unknown as tf.TensorContainer;
    }) as unknown as Grads;
    // The reference's NaN-checking SGD wrapper tests `isnan().any()` on the host each step, and so
    // does this: one boolean read, asynchronous (a GPU backend cannot read synchronously), and a
    // skipped step costs no update at all.
    if (g.finite && (await g.finite.data())[0] === 0) skipped = tf.scalar(1);
    else if (inp.update) {
      const gr = g;
      for (const i of inp.active) st.headSteps[i]++;
      next = tf.tidy(() => heads.map((h, j): DeviceHead => updatedHead(h, gr.grads[j]!, o, st.slotNames, inp.lr, st.headSteps[inp.active[j]!]!)) as unknown as tf.TensorContainer) as unknown as DeviceHead[];
      // The new state outlives any tidy scope the caller may have opened around this step.
      for (const h of next) for (const t of deviceTensors(h)) tf.keep(t);
    }
    acc.add({ task: g.task, repulsion: g.repulsion, total: g.total, skipped: skipped ?? undefined });
  } finally {
    if (g) tf.dispose([g.task, g.repulsion, g.total, ...g.grads.flatMap((h) => Object.values(h) as tf.Tensor[]), ...(g.finite ? [g.finite] : [])]);
    if (skipped) skipped.dispose();
    heads.forEach((h, j) => {
      if (next) st.release(inp.active[j]!, next[j]!, h);
      else st.releaseUnchanged(inp.active[j]!, h);
    });
  }
}

interface ValBatch {
  x: tf.Tensor2D;
  y: tf.Tensor1D;
}

/**
 * Top-1 accuracy of every head and of the mean-logit ensemble, and the eval-mode loss; one host read at
 * the end. Batches outer (every head per batch) when heads live on the device or the repulsion term
 * needs them all at once; heads outer otherwise (host-kept heads are uploaded once per evaluation).
 */
export async function evaluateEnsemble(st: EnsembleState, val: EvalSource, batchSize: number, opts: EvalOptions = {}): Promise<EvalResult> {
  const loss = opts.loss;
  if (loss?.computeRepulsion && !opts.refRng) throw new Error("evaluateEnsemble: refRng is required for the repulsion term");
  const cached: ValBatch[] = [];
  for (const b of val.batches(batchSize)) {
    cached.push({ x: tf.tensor2d(b.embed, [b.count, val.dim]), y: tf.tensor1d(b.label, "int32") });
  }
  const tally = new EvalTally(st.size);
  try {
    if (!st.cfg.keep_inactive_on_cpu || loss?.computeRepulsion) tallyBatchesOuter(st, cached, tally, opts);
    else tallyHeadsOuter(st, cached, tally, opts);
    return await tally.result(val.rows, cached.length, loss !== undefined);
  } finally {
    tf.dispose(cached.flatMap((b) => [b.x, b.y]));
    tally.dispose();
  }
}

/** Head i's weights, and the release to call when done with them. */
function borrowHead(st: EnsembleState, i: number): { p: HeadTensors; done: () => void } {
  const h = st.acquire(i);
  return { p: h.params, done: () => st.releaseUnchanged(i, h) };
}

/** Every head on each batch: device heads are held throughout, host-kept ones uploaded per batch. */
function tallyBatchesOuter(st: EnsembleState, cached: ValBatch[], tally: EvalTally, opts: EvalOptions): void {
  const M = st.size;
  const loss = opts.loss;
  const held = st.cfg.keep_inactive_on_cpu ? null : Array.from({ length: M }, (_, i) => borrowHead(st, i));
  try {
    for (const b of cached) {
      opts.signal?.throwIfAborted();
      const ref = loss?.computeRepulsion ? opts.refRng!.int(M) : 0;
      const now = held ?? Array.from({ length: M }, (_, i) => borrowHead(st, i));
      try {
        const [dc, dl] = tf.tidy(() => batchCounts(now.map((h) => headLogits(h.p, b.x, st.shape)), b.y, st.cfg.num_classes, loss, ref));
        tally.add(dc, dl);
        tf.dispose([dc, dl]);
      } finally {
        if (!held) for (const h of now) h.done();
      }
    }
  } finally {
    if (held) for (const h of held) h.done();
  }
}

/**
 * Each host-kept head once, on every batch. Only without the repulsion term: the task term is then a
 * plain mean over heads, and the ensemble's logits are summed per batch as the heads go by.
 */
function tallyHeadsOuter(st: EnsembleState, cached: ValBatch[], tally: EvalTally, opts: EvalOptions): void {
  const M = st.size;
  const C = st.cfg.num_classes;
  const loss = opts.loss;
  const unit = (i: number) => tf.reshape(tf.oneHot(tf.tensor1d([i], "int32"), M + 1), [M + 1]);
  const sums: (tf.Tensor2D | null)[] = cached.map(() => null);
  try {
    for (let i = 0; i < M; i++) {
      opts.signal?.throwIfAborted();
      const h = borrowHead(st, i);
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
