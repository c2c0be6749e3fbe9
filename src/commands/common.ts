// Helpers every command module shares: help examples, integer options, opening the workspace and
// taking the run lock with the user-facing messages. No command is registered here.
import { join, relative } from "node:path";
import { InvalidArgumentError } from "commander";
import type { CliContext } from "./context.ts";
import { EXIT, SedPipeError } from "../errors.ts";
import type { StageSettings } from "../stage-api.ts";
import type { Workspace } from "../runner/workspace.ts";
import type { RunLock } from "../store/run-lock.ts";

/** Version of the JSON that `status --json` and `why --json` print. */
export const JSON_SCHEMA_VERSION = 1;

export const EXAMPLES = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;

export function intOption(name: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

export function warnLine(cli: Pick<CliContext, "err">, msg: string): void {
  cli.err(`warning: ${msg}\n`);
}

/**
 * The per-instance settings the user set through the environment: SED_PIPE_CORES,
 * SED_PIPE_BLAS_THREADS, SED_PIPE_HEAD_THREADS (positive integers), SED_PIPE_IMAGE_THREADS (a whole
 * number, 0 = none) and SED_PIPE_NO_BLAS=1. A bad value is a usage error (exit 2), before anything runs.
 */
export function settingsFromEnv(env: NodeJS.ProcessEnv): Partial<StageSettings> {
  const int = (name: string, least = 1): number | undefined => {
    const v = env[name];
    if (v === undefined || v === "") return undefined;
    const n = Number(v);
    if (!Number.isInteger(n) || n < least) {
      throw new SedPipeError(`${name} must be ${least === 1 ? "a positive integer" : `a whole number >= ${least}`}, got "${v}"`, { hint: `unset it, or set e.g. ${name}=2`, exitCode: EXIT.usage });
    }
    return n;
  };
  const out: { -readonly [K in keyof StageSettings]?: StageSettings[K] } = {};
  const cores = int("SED_PIPE_CORES");
  const blasThreads = int("SED_PIPE_BLAS_THREADS");
  const headThreads = int("SED_PIPE_HEAD_THREADS");
  const imageThreads = int("SED_PIPE_IMAGE_THREADS", 0);
  if (cores !== undefined) out.cores = cores;
  if (blasThreads !== undefined) out.blasThreads = blasThreads;
  if (headThreads !== undefined) out.headThreads = headThreads;
  if (imageThreads !== undefined) out.imageThreads = imageThreads;
  if (env.SED_PIPE_NO_BLAS === "1") out.blas = false;
  return out;
}

/**
 * GPUs of this machine that local runs hand out to stages' `resources.gpus`: `--gpus`, else
 * SED_PIPE_GPUS (an integer >= 0), else 0. A bad value is a usage error (exit 2), before anything runs.
 */
export function gpusFrom(env: NodeJS.ProcessEnv, flag: number | undefined): number {
  if (flag !== undefined) return flag;
  const v = env.SED_PIPE_GPUS;
  if (v === undefined || v.trim() === "") return 0;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new SedPipeError(`SED_PIPE_GPUS must be a whole number >= 0, got "${v}"`, { hint: "unset it, or set e.g. SED_PIPE_GPUS=1 (the GPUs local runs may give stages)", exitCode: EXIT.usage });
  return n;
}

/** SED_PIPE_CACHE_LINK: how artifacts and cache objects share bytes ("copy", the default, or "hardlink"). */
export function linkModeFromEnv(env: NodeJS.ProcessEnv): "copy" | "hardlink" {
  const v = env.SED_PIPE_CACHE_LINK;
  if (v === undefined || v === "" || v === "copy") return "copy";
  if (v === "hardlink") return "hardlink";
  throw new SedPipeError(`SED_PIPE_CACHE_LINK must be "copy" or "hardlink", got "${v}"`, {
    hint: "unset it (copies: safe to edit artifacts) or set hardlink (no second copy of big outputs; never write to artifacts in place)",
    exitCode: EXIT.usage,
  });
}

/** The backend that `--backend <requested>` would run here, as fingerprints record it (never "auto"). */
export async function fingerprintBackend(requested: string = "auto"): Promise<string> {
  const { predictBackend } = await import("../ml/backend-choice.ts");
  return predictBackend(requested).name;
}

export async function openFor(cli: Pick<CliContext, "root" | "err" | "env">, opts: { profile?: string; backend?: string; paranoid?: boolean }): Promise<Workspace> {
  const o: { profile?: string; backend?: string; blas: boolean; link: "copy" | "hardlink"; paranoid: boolean; onWarn: (m: string) => void } = {
    paranoid: opts.paranoid === true,
    blas: cli.env.SED_PIPE_NO_BLAS !== "1",
    link: linkModeFromEnv(cli.env),
    onWarn: (m) => warnLine(cli, m),
  };
  if (opts.profile !== undefined) o.profile = opts.profile;
  o.backend = await fingerprintBackend(opts.backend);
  const { openWorkspace } = await import("../runner/workspace.ts");
  return openWorkspace(cli.root(), o);
}

/** Takes the workspace run lock (cacheDir/run.lock), telling the user whom it waits for. */
export async function takeRunLock(
  cli: Pick<CliContext, "err" | "cwd">,
  cacheDir: string,
  wait: boolean,
  command: string,
  signal?: AbortSignal,
): Promise<RunLock> {
  const { acquireRunLock, describeOwner } = await import("../store/run-lock.ts");
  const opts: Parameters<typeof acquireRunLock>[1] = {
    wait,
    command,
    onWait: (owner) => cli.err(`waiting for ${describeOwner(owner)} (${relative(cli.cwd, cacheDir) || "."}/run.lock) ...\n`),
  };
  if (signal) opts.signal = signal;
  try {
    return await acquireRunLock(cacheDir, opts);
  } catch (err) {
    if (err instanceof SedPipeError && !wait) {
      throw new SedPipeError(err.message, { hint: "wait for that run to finish, or drop --no-wait to queue behind it", exitCode: EXIT.usage });
    }
    throw err;
  }
}

/**
 * `--no-wait`: fails at once (exit 2) when a live process holds the run lock, before the command
 * imports its modules or loads the pipeline (on a machine busy with that other run, that work alone
 * took seconds). Where the holder is not certain, the command goes on and takeRunLock decides.
 */
export async function failIfBusy(cli: Pick<CliContext, "root">): Promise<void> {
  const { busyError, liveHolder, runLockPaths } = await import("../store/run-lock.ts");
  const cacheDir = join(cli.root(), "cache");
  const owner = await liveHolder(cacheDir);
  if (!owner) return;
  const err = busyError(owner, runLockPaths(cacheDir).lock);
  throw new SedPipeError(err.message, { hint: "wait for that run to finish, or drop --no-wait to queue behind it", exitCode: EXIT.usage });
}

/** Runs fn while holding the run lock. */
export async function withRunLock<T>(cli: Pick<CliContext, "err" | "cwd">, cacheDir: string, command: string, wait: boolean, fn: () => Promise<T>): Promise<T> {
  const lock = await takeRunLock(cli, cacheDir, wait, command);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
