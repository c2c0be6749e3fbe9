// The per-epoch training checkpoint (heads, optimiser slots, steps, rows, config+data digest): its
// format and its validity. Never decides when to save or what to train.
import { createHash } from "node:crypto";
import { rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { RngState } from "../rng.ts";
import { InputError } from "../errors.ts";
import { readSafetensors, writeSafetensors, type SafeTensor } from "../io/safetensors.ts";
import { HEAD_PARAM_NAMES, headParamShapes, type EnsembleSnapshot, type HeadArrays, type HeadParamName, type SnapshotOptions } from "./heads.ts";
import { slotNames } from "./optim.ts";
import type { EpochRow } from "./epoch-log.ts";
import { headShapeOf, type TrainConfig } from "./train-config.ts";
import type { TrainSource } from "./train-sources.ts";

const CKPT_FORMAT = "sed-pipe-train-checkpoint-v1";
export const CKPT_FILE = "checkpoint.safetensors";

export interface Checkpoint extends EnsembleSnapshot {
  epochsDone: number;
  headSteps: number[];
  rows: EpochRow[];
  rng: Record<string, RngState>;
}

/** What a checkpoint is saved from: either trainer (single-thread or head threads). */
export interface CheckpointSource {
  readonly cfg: TrainConfig;
  readonly headSteps: number[];
  readonly slotNames: string[];
  snapshot(opts?: SnapshotOptions): EnsembleSnapshot | Promise<EnsembleSnapshot>;
}

/** Identity of a training run's inputs: a checkpoint with another digest belongs to another run. */
export function checkpointDigest(cfg: TrainConfig, train: TrainSource, extra: string): string {
  return createHash("sha256")
    .update(JSON.stringify({ cfg, dim: train.dim, passRows: train.passRows, passes: train.passes, extra }))
    .digest("hex")
    .slice(0, 20);
}

/** Writes checkpoint.safetensors into dir (the instance's scratch folder), atomically. */
export async function saveCheckpoint(dir: string, digest: string, st: CheckpointSource, c: Omit<Checkpoint, "heads" | "slots" | "headSteps">): Promise<void> {
  // Views: the write below finishes before the trainer takes another step.
  const { heads, slots } = await st.snapshot({ views: true });
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

/** The checkpoint in dir when it is readable and matches the digest; null (and a log line why) otherwise. */
export async function loadCheckpoint(dir: string, digest: string, cfg: TrainConfig, log: (s: string) => void): Promise<Checkpoint | null> {
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
  const { heads, slots } = checkpointTensors(file, f.tensors, cfg);
  return {
    epochsDone: Number(m.epochs_done),
    heads,
    slots,
    headSteps: JSON.parse(m.head_steps),
    rows: JSON.parse(m.rows),
    rng: JSON.parse(m.rng),
  };
}

/** Every head's weights and slots out of a checkpoint's tensors, each checked for its shape. */
function checkpointTensors(file: string, tensors: Record<string, SafeTensor>, cfg: TrainConfig): EnsembleSnapshot {
  const sh = headParamShapes(headShapeOf(cfg));
  const names = slotNames(cfg.optimizer);
  const get = (key: string, k: HeadParamName) => {
    const t = tensors[key];
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
  return { heads, slots };
}

export async function removeCheckpoint(dir: string): Promise<void> {
  await rm(join(dir, CKPT_FILE), { force: true });
}
