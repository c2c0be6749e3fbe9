// The SED training loop (reference §1.3, §2.3-2.5): epochs, cosine LR, frozen first epoch, validation,
// checkpoint and bit-exact resume. Reads batches only through train-sources.ts; never places heads.
import { join } from "node:path";
import { Rng } from "../rng.ts";
import { InputError } from "../errors.ts";
import type { ProgressEvent } from "../stage-api.ts";
import { initHeadArrays, lazyHeads, type HeadArrays } from "./heads.ts";
import type { HeadThreadSettings } from "./head-pool.ts";
import { lrAt } from "./lr-schedule.ts";
import { startEnsembleTrainer, type EnsembleTrainer } from "./ensemble-trainer.ts";
import { StepAccumulators, epochLogLine, epochRow, type EpochRow } from "./epoch-log.ts";
import { drawStep, epochStream, epochStreams, streamStates, type EpochStreams } from "./epoch-streams.ts";
import { CKPT_FILE, checkpointDigest, loadCheckpoint, saveCheckpoint } from "./train-checkpoint.ts";
import { effectiveLoss, epochSeed, headShapeOf, type EffectiveLoss, type TrainConfig } from "./train-config.ts";
import type { EvalSource, TrainSource } from "./train-sources.ts";
import { noValidation } from "./validation-tally.ts";

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

/** What every epoch of one training run shares. */
interface Run {
  cfg: TrainConfig;
  trainer: EnsembleTrainer;
  train: TrainSource;
  val: EvalSource | null;
  loss: EffectiveLoss;
  stepsPerEpoch: number;
  hooks: TrainHooks;
  log: (line: string) => void;
}

/** Trains the whole ensemble; resumes from hooks.checkpointDir when it holds a matching checkpoint. */
export async function trainEnsemble(cfg: TrainConfig, train: TrainSource, val: EvalSource | null, hooks: TrainHooks = {}): Promise<TrainResult> {
  const log = hooks.log ?? (() => {});
  checkDims(cfg, train, val);
  const digest = checkpointDigest(cfg, train, hooks.dataIdentity ?? "");
  const { trainer, rows, start } = await startOrResume(cfg, digest, hooks, log);
  const run: Run = { cfg, trainer, train, val, loss: effectiveLoss(cfg), stepsPerEpoch: Math.ceil(train.passRows / cfg.batch_size), hooks, log };
  try {
    for (let e = start; e < cfg.n_epochs; e++) {
      const lastAcc = rows.length ? rows[rows.length - 1].val_acc_mean : NaN;
      const { row, streams } = await trainEpoch(run, e, lastAcc);
      rows.push(row);
      if (hooks.checkpointDir) {
        await saveCheckpoint(hooks.checkpointDir, digest, trainer, { epochsDone: e + 1, rows, rng: streamStates(streams) });
      }
      hooks.onEpochEnd?.(e, row);
    }
    // Views: the trainer takes no further step; dispose() frees device tensors and threads, not host buffers.
    const { heads } = await trainer.snapshot({ views: true });
    return { heads, rows, resumedEpochs: start, skippedSteps: rows.reduce((a, r) => a + r.skipped_steps, 0) };
  } finally {
    await trainer.dispose();
  }
}

function checkDims(cfg: TrainConfig, train: TrainSource, val: EvalSource | null): void {
  const hint = "set embed_dim to the featurizer's embedding size";
  if (train.dim !== cfg.embed_dim) throw new InputError(`train features have dim ${train.dim} but config "${cfg.name}" has embed_dim ${cfg.embed_dim}`, { hint });
  if (val && val.dim !== cfg.embed_dim) throw new InputError(`val features have dim ${val.dim} but config "${cfg.name}" has embed_dim ${cfg.embed_dim}`, { hint });
}

/** The trainer with the checkpoint's heads, rows and epoch when one matches; fresh heads otherwise. */
async function startOrResume(cfg: TrainConfig, digest: string, hooks: TrainHooks, log: (line: string) => void): Promise<{ trainer: EnsembleTrainer; rows: EpochRow[]; start: number }> {
  const ckpt = hooks.checkpointDir ? await loadCheckpoint(hooks.checkpointDir, digest, cfg, log) : null;
  if (ckpt) {
    log(`resuming "${cfg.name}" after epoch ${ckpt.epochsDone}/${cfg.n_epochs} from ${join(hooks.checkpointDir!, CKPT_FILE)}`);
    const trainer = await startEnsembleTrainer(cfg, ckpt, hooks.settings, log);
    return { trainer, rows: ckpt.rows, start: ckpt.epochsDone };
  }
  // One init stream, heads in index order (the reference seeds once with 42 before building all heads);
  // made one at a time as the trainer packs them, so the fresh arrays never all coexist with the packed ones.
  const init = new Rng(cfg.seed);
  const heads = lazyHeads(cfg.n_models, () => initHeadArrays(headShapeOf(cfg), init));
  return { trainer: await startEnsembleTrainer(cfg, { heads }, hooks.settings, log), rows: [], start: 0 };
}

/**
 * Epoch e: its steps, then its validation. Returns its row and its streams (the checkpoint records
 * them). lastAcc: the previous epoch's mean val accuracy, for progress (NaN before the first).
 */
async function trainEpoch(run: Run, e: number, lastAcc: number): Promise<{ row: EpochRow; streams: EpochStreams }> {
  const { cfg, hooks } = run;
  const startedMs = performance.now();
  const frozen = cfg.freeze_first_epoch && e === 0;
  const seed = epochSeed(cfg, e);
  const streams = epochStreams(seed);
  // The scheduler steps once after each trained epoch: epoch e has seen (e - frozen epochs) steps.
  const lr = lrAt(cfg.optimizer.lr, cfg.lr_scheduler, Math.max(0, e - (cfg.freeze_first_epoch ? 1 : 0)));
  const phase = `epoch ${e + 1}/${cfg.n_epochs}`;
  const acc = new StepAccumulators();
  try {
    const steps = await runSteps(run, { e, frozen, lr, phase, streams, lastAcc }, acc);
    const sums = await acc.read();
    const evalOpts = { signal: hooks.signal, loss: run.loss, refRng: epochStream(seed, 4) };
    const val = run.val ? await run.trainer.evaluate(run.val, cfg.eval_batch_size, evalOpts) : noValidation();
    const row = epochRow({ epoch: e, frozen, lr, steps, sums, val, startedMs });
    run.log(epochLogLine(cfg.name, phase, row));
    hooks.progress?.({ phase, done: steps, total: run.stepsPerEpoch, unit: "step", metrics: { loss: row.train_total_loss, acc: row.val_acc_mean } });
    return { row, streams };
  } finally {
    acc.dispose();
  }
}

/** The steps of one epoch, their loss parts into acc; returns how many ran. */
async function runSteps(
  run: Run, ep: { e: number; frozen: boolean; lr: number; phase: string; streams: EpochStreams; lastAcc: number }, acc: StepAccumulators,
): Promise<number> {
  const { cfg, hooks } = run;
  const logEvery = cfg.log_every || Math.floor(run.stepsPerEpoch / 10) + 1;
  let step = 0;
  for (const b of run.train.batches(ep.e, cfg.batch_size, ep.streams.shuffle)) {
    hooks.signal?.throwIfAborted();
    const { active, ref } = drawStep(ep.streams, cfg.n_models, cfg.random_select, run.loss.computeRepulsion);
    await run.trainer.step(b, { active, ref, lr: ep.lr, update: !ep.frozen }, acc);
    step++;
    if (step % logEvery === 0) {
      const r = await acc.read();
      // acc = mean per-head val accuracy of the last finished epoch (absent before the first one).
      const metrics: Record<string, number> = Number.isNaN(ep.lastAcc) ? { loss: r.total } : { loss: r.total, acc: ep.lastAcc };
      hooks.progress?.({ phase: ep.phase, done: step, total: run.stepsPerEpoch, unit: "step", metrics });
    }
    // Let the event loop breathe (abort signals, IPC) without a per-step host read.
    if (step % 64 === 0) await new Promise((r) => setImmediate(r));
  }
  return step;
}
