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

interface ValBatch {
  x: tf.Tensor2D;
  y: tf.Tensor1D;
}

/**
 * Top-1 accuracy of every head and of the mean-logit ensemble, and the eval-mode loss; one host read at
 * the end. Batches outer (every head per batch) when heads live on the device or the repulsion term
 * needs them all at once; heads outer otherwise (host-kept heads are uploaded once per evaluation).
 */
export function evaluateEnsemble(st: EnsembleState, val: EvalSource, batchSize: number, opts: EvalOptions = {}): EvalResult {
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
    return tally.result(val.rows, cached.length, loss !== undefined);
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
