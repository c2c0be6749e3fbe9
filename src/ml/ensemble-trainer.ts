// Where an ensemble's heads train: on the stage's thread or the pair on two head threads; the one
// module that imports both trainers, behind one interface. Knows no epochs and no checkpoints.
import * as tf from "@tensorflow/tfjs-core";
import { headThreadCount, type HeadThreadSettings } from "./head-pool.ts";
import type { EnsembleSnapshot, HeadArrays, HeadList, SnapshotOptions } from "./heads.ts";
import { EnsembleState } from "./ensemble-state.ts";
import { evaluateEnsemble, sedTrainStep } from "./single-thread-training.ts";
import { ThreadedEnsemble } from "./threaded-training.ts";
import type { StepAccumulators } from "./epoch-log.ts";
import { effectiveLoss, headShapeOf, type TrainConfig } from "./train-config.ts";
import type { Batch, EvalSource } from "./train-sources.ts";
import type { EvalOptions, EvalResult } from "./validation-tally.ts";

/** What a step trains: the active heads (ascending), the A2D reference's position, the LR, and whether to update (false: frozen). */
export interface StepPick {
  active: number[];
  ref: number;
  lr: number;
  update: boolean;
}

/** An ensemble in training, wherever its heads live. */
export interface EnsembleTrainer {
  readonly cfg: TrainConfig;
  /** Optimiser steps taken per head. */
  readonly headSteps: number[];
  readonly slotNames: string[];
  /** One SED step on a batch; the loss parts (and a skipped NaN step) go to acc. */
  step(b: Batch, pick: StepPick, acc: StepAccumulators): Promise<void>;
  /** Per-head and ensemble accuracy and the eval-mode loss (evaluateEnsemble's numbers). */
  evaluate(val: EvalSource, batchSize: number, opts: EvalOptions): Promise<EvalResult>;
  /** Host copies of weights and optimiser slots (or, with `views`, the host buffers themselves). */
  snapshot(opts?: SnapshotOptions): Promise<EnsembleSnapshot>;
  dispose(): Promise<void>;
}

/** Where a run starts from: fresh heads, or a checkpoint's heads with their optimiser state. */
export interface TrainerStart {
  heads: HeadList;
  slots?: Record<string, HeadArrays>[];
  headSteps?: number[];
}

/**
 * Puts the heads where they train. The pair goes on two head threads when the settings give two
 * cores for big heads on wasm (src/ml/head-pool.ts): the same bits as this thread with one OpenBLAS
 * thread, about 1.3x faster at paper sizes. The trainer holds the heads afterwards (the caller drops `start`).
 */
export async function startEnsembleTrainer(cfg: TrainConfig, start: TrainerStart, settings: HeadThreadSettings = {}, log: (line: string) => void = () => {}): Promise<EnsembleTrainer> {
  const threads = cfg.random_select === 2 ? headThreadCount(headShapeOf(cfg), cfg.n_models, 2, settings) : 1;
  if (threads === 2) {
    const te = await ThreadedEnsemble.start(cfg, start.heads, start.slots, start.headSteps);
    log(`training "${cfg.name}": the active pair on 2 head threads (one head each)`);
    return onHeadThreads(te);
  }
  return onThisThread(new EnsembleState(cfg, start.heads, start.slots, start.headSteps));
}

function onThisThread(st: EnsembleState): EnsembleTrainer {
  const loss = effectiveLoss(st.cfg);
  return {
    cfg: st.cfg,
    headSteps: st.headSteps,
    slotNames: st.slotNames,
    async step(b, pick, acc) {
      const x = tf.tensor2d(b.embed, [b.count, st.shape.dim]);
      const y = tf.tensor1d(b.label, "int32");
      try {
        await sedTrainStep(st, loss, { x, y, ...pick }, acc);
      } finally {
        tf.dispose([x, y]);
      }
    },
    evaluate: async (val, batchSize, opts) => evaluateEnsemble(st, val, batchSize, opts),
    snapshot: async (opts) => st.snapshot(opts),
    dispose: async () => st.dispose(),
  };
}

function onHeadThreads(te: ThreadedEnsemble): EnsembleTrainer {
  return {
    cfg: te.cfg,
    headSteps: te.headSteps,
    slotNames: te.slotNames,
    step: (b, pick, acc) => te.step({ x: b.embed, y: b.label, rows: b.count, ...pick }, acc),
    evaluate: (val, batchSize, opts) => te.evaluate(val, batchSize, opts),
    snapshot: (opts) => te.snapshot(opts),
    dispose: () => te.dispose(),
  };
}
