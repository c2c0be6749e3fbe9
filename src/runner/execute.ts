// Executes a plan: observe the workspace (assess.ts), plan (the injected pure planner), then let the
// scheduler (scheduler.ts) bring each instance up to date through the instance pipeline
// (instance.ts) on an executor (worker-pool.ts). Emits RunnerEvents; never prints, never reads
// argv/env, never decides exit codes (src/cli.ts does).
import { setMaxListeners } from "node:events";
import { mkdir, readdir, rm } from "node:fs/promises";
import { join, relative } from "node:path";
import { randomBytes } from "node:crypto";
import type { Pipeline, PlanStep } from "../pipeline/types.ts";
import type { MissingInput, Needs } from "../pipeline/needs.ts";
import { EXIT, SedPipeError } from "../errors.ts";
import type { DigestService } from "../hash/digest.ts";
import type { ContentStore } from "../store/cas.ts";
import type { LockStore } from "../store/lock-file.ts";
import { assess, type Fingerprinter, type Planner } from "./assess.ts";
import { EVENT_SCHEMA_VERSION, type EventSink, type RunCounts, type RunDoneEvent } from "./events.ts";
import { bringUpToDate, logPathFor, type RunContext } from "./instance.ts";
import { countSlots, schedule, type InstanceFailure, type Slots } from "./scheduler.ts";
import { fitToMachine, localMachine, NOTHING, resourceSlots, type Fitted, type Machine, type Need } from "./resource-slots.ts";
import { DEFAULT_RESOURCES } from "../pipeline/resources.ts";
import type { StageSettings } from "../stage-api.ts";
import { WorkerPool, type Executor } from "./worker-pool.ts";
import { SlurmExecutor, type SlurmOptions } from "./slurm/executor.ts";

export { logPathFor, safeInstanceId, scratchPathFor } from "./instance.ts";
export { criticalFirst } from "./scheduler.ts";

/** The caller holds the workspace run lock (src/store/run-lock.ts) for the whole call, unless dryRun. */
export interface ExecuteOptions {
  pipeline: Pipeline;
  /** Instance ids to consider, in topological order (the target closure). */
  order: string[];
  planner: Planner;
  fingerprinter: Fingerprinter;
  digests: DigestService;
  store: ContentStore;
  lock: LockStore;
  cacheDir: string;
  /** Instances running at once, at most (-j); on a local run, resources decide within that cap. */
  jobs: number;
  /** GPUs of this machine for local runs (--gpus / SED_PIPE_GPUS, read by the CLI); default 0. */
  gpus?: number;
  /** The local budget; default: this machine (cores, memory less a margin, `gpus`). Tests set it. */
  machine?: Machine;
  keepGoing: boolean;
  /** Instance ids to run even when fresh. */
  force: string[];
  dryRun: boolean;
  backend: string;
  /** What the user set of the per-instance settings; the rest follows from cores and jobs. */
  settings?: Partial<StageSettings>;
  /** Where instances run; default: persistent worker processes on this machine, or Slurm jobs with `slurm`. */
  executor?: Executor;
  /** Run instances as Slurm jobs (src/runner/slurm/executor.ts) with these options. */
  slurm?: Omit<SlurmOptions, "root" | "cacheDir" | "runId" | "fromSource">;
  /** Environment of local worker processes (the CLI passes its own; nothing here reads process.env). */
  workerEnv: NodeJS.ProcessEnv;
  /** Run stages through tsx instead of bundles (SED_PIPE_NO_BUNDLE=1). */
  fromSource?: boolean;
  /** Aborted on Ctrl-C / SIGTERM: stop scheduling, abort workers, clean temp outputs. */
  signal: AbortSignal;
  emit: EventSink;
  /** ms a stage gets to stop after an abort before its process group is killed (default 3000). */
  graceMs?: number;
  /** Aborted on a second Ctrl-C: kill running stages at once, without the grace period. */
  killSignal?: AbortSignal;
  runId?: string;
  /**
   * What the plan needs (downloads, missing manual inputs, disk, time): added to the plan event. A
   * run (not a dry run) with a missing manual input stops before anything starts.
   */
  needs?: (steps: readonly PlanStep[]) => Promise<Needs>;
  /** Test hook: the pid of the worker process running each instance. */
  onWorkerSpawn?: (id: string, pid: number) => void;
}

export interface RunResult {
  outcome: RunDoneEvent["outcome"];
  counts: RunCounts;
  steps: PlanStep[];
  durationMs: number;
  /** The failures, by instance id (their class, hint and exit code decide the run's exit code). */
  failures: Map<string, InstanceFailure>;
  /** True when the run was interrupted before the plan was complete: nothing was decided or run. */
  interruptedWhilePlanning?: boolean;
}

/** Nothing has started: the user must first bring these (each with its path and how). */
export function missingInputsError(missing: readonly MissingInput[]): SedPipeError {
  const lines = missing.map((m) => `  ${m.path}${m.desc ? `: ${m.desc}` : ""}\n    ${m.how ?? "(not described in the params file's inputs: section)"}`);
  return new SedPipeError(`${missing.length === 1 ? "a manual input is" : `${missing.length} manual inputs are`} missing; nothing was run:\n${lines.join("\n")}`, {
    hint: "put each in place (sed-pipe run --dry-run lists everything the run needs), or run targets that do not need it",
    exitCode: EXIT.usage,
  });
}

function newRunId(): string {
  return `${new Date().toISOString().replace(/[:.]/g, "-")}-${randomBytes(3).toString("hex")}`;
}

/**
 * An instance's settings: cores = its declared cpus, clamped to `machineCores` on a local run (null:
 * a cluster job, which runs where it gets what it asked for), unless the user set a value.
 */
export function instanceSettings(user: Partial<StageSettings>, cpus: number, machineCores: number | null): StageSettings {
  const cores = user.cores ?? Math.max(1, machineCores === null ? cpus : Math.min(cpus, machineCores));
  return {
    cores,
    blasThreads: user.blasThreads ?? cores,
    headThreads: user.headThreads ?? null,
    ...(user.imageThreads != null ? { imageThreads: user.imageThreads } : {}),
    blas: user.blas ?? true,
  };
}

/**
 * Local capacity: what each instance takes of the machine (resource-slots.ts), or for a cluster a count
 * of jobs in flight (the cluster's scheduler places them). A step planned fresh (and not waiting on
 * its upstream) is only checked, never run: it takes a count slot and nothing else, so it does not
 * wait behind a busy GPU. Warnings say once per stage when a request was clamped to the machine.
 */
function slotsFor(o: ExecuteOptions, steps: readonly PlanStep[], machine: Machine, warn: (id: string, message: string) => void): Slots {
  if (o.slurm) return countSlots(o.jobs);
  const p = o.pipeline;
  const planned = new Map(steps.map((s) => [s.id, s]));
  const fitted = new Map<string, Fitted>();
  const fitOf = (id: string): Fitted => {
    let f = fitted.get(id);
    if (!f) fitted.set(id, (f = fitToMachine(p.instances.get(id)?.resources ?? DEFAULT_RESOURCES, machine)));
    return f;
  };
  const warned = new Set<string>();
  const need = (id: string): Need => {
    const step = planned.get(id);
    if (step && step.action === "skip" && !step.pending) return NOTHING;
    const f = fitOf(id);
    const stage = p.instances.get(id)?.stage ?? id;
    for (const note of f.notes) {
      if (warned.has(`${stage}\0${note}`)) continue;
      warned.add(`${stage}\0${note}`);
      warn(id, `${note} (said once for stage ${stage})`);
    }
    return f.need;
  };
  return resourceSlots({ machine, jobs: o.jobs, need });
}

function planCounts(steps: readonly PlanStep[]) {
  const n = { run: 0, restore: 0, skip: 0, pending: 0 };
  for (const s of steps) {
    if (s.pending) n.pending++;
    else n[s.action]++;
  }
  return n;
}

export async function executeRun(o: ExecuteOptions): Promise<RunResult> {
  const started = Date.now();
  const p = o.pipeline;
  const runId = o.runId ?? newRunId();
  const counts: RunCounts = { ran: 0, skipped: 0, restored: 0, failed: 0, blocked: 0 };
  const failures = new Map<string, InstanceFailure>();
  const observer = { root: p.root, fingerprinter: o.fingerprinter, digests: o.digests, store: o.store };
  const saveState = async () => {
    await o.digests.save().catch(() => {});
    await o.fingerprinter.save?.().catch(() => {});
  };
  const done = (outcome: RunDoneEvent["outcome"], steps: PlanStep[]): RunResult => {
    const durationMs = Date.now() - started;
    o.emit({ type: "run-done", outcome, counts: { ...counts }, durationMs });
    return { outcome, counts, steps, durationMs, failures };
  };

  let a;
  try {
    a = await assess(observer, p, o.order, o.lock.snapshot, o.force, o.signal);
  } catch (err) {
    if (!o.signal.aborted) throw err;
    // Interrupted while looking: nothing was decided, so nothing is reported as blocked or fresh.
    await saveState();
    return { ...done("interrupted", []), interruptedWhilePlanning: true };
  }
  const steps = o.planner.planRun({ order: o.order, upstream: a.upstream, lock: o.lock.snapshot, current: a.current, outputs: a.outputs, cached: a.cached, reusable: a.reusable, force: o.force });
  const needs = o.needs ? await o.needs(steps) : undefined;
  o.emit({ type: "plan", schemaVersion: EVENT_SCHEMA_VERSION, runId, dryRun: o.dryRun, jobs: o.jobs, counts: planCounts(steps), steps, ...(needs ? { needs } : {}) });
  if (o.dryRun) {
    await saveState();
    return done("ok", steps);
  }
  if (needs && needs.missingInputs.length > 0) {
    await saveState();
    throw missingInputsError(needs.missingInputs);
  }

  const tmpRoot = join(o.cacheDir, "tmp", runId);
  const machine = o.machine ?? localMachine(o.gpus ?? 0);
  // Every instance in flight listens to the run's signal (hundreds at once on a cluster).
  setMaxListeners(Math.max(10, 2 * o.jobs + 10), o.signal);
  if (o.killSignal) setMaxListeners(Math.max(10, 2 * o.jobs + 10), o.killSignal);
  const executor =
    o.executor ??
    (o.slurm
      ? new SlurmExecutor({
          ...o.slurm,
          root: p.root,
          cacheDir: o.cacheDir,
          runId,
          fromSource: !!o.fromSource,
          // An engine killed after a commit, before it dropped the job's record: nothing to adopt.
          committed: (id, fingerprint) => o.lock.snapshot.instances[id]?.fingerprint === fingerprint,
        })
      : new WorkerPool({ cacheDir: o.cacheDir, maxWorkers: o.jobs + 1, env: o.workerEnv, fromSource: !!o.fromSource }));
  const ctx: RunContext = {
    pipeline: p,
    cacheDir: o.cacheDir,
    tmpRoot,
    backend: o.backend,
    settingsFor: (inst) => instanceSettings(o.settings ?? {}, (inst.resources ?? DEFAULT_RESOURCES).cpus, o.slurm ? null : machine.cores),
    graceMs: o.graceMs ?? 3000,
    planner: o.planner,
    observer,
    lock: o.lock,
    executor,
    emit: o.emit,
    signal: o.signal,
    forced: new Set(o.force),
    executed: new Set(),
    assessment: a,
    planned: new Map(steps.map((s) => [s.id, s])),
    counts,
    ...(o.killSignal ? { killSignal: o.killSignal } : {}),
    ...(o.onWorkerSpawn ? { onWorkerSpawn: o.onWorkerSpawn } : {}),
  };
  const rel = (abs: string) => relative(p.root, abs) || ".";
  try {
    // Only one run holds the workspace at a time (run lock), so any other folder under cache/tmp is
    // the leftover of a run that was killed: its temp outputs can never be committed.
    for (const name of await readdir(join(o.cacheDir, "tmp")).catch(() => [] as string[])) {
      await rm(join(o.cacheDir, "tmp", name), { recursive: true, force: true });
    }
    await mkdir(tmpRoot, { recursive: true });
    await schedule({
      order: o.order,
      upstream: a.upstream,
      slots: slotsFor(o, steps, machine, (id, message) => o.emit({ type: "warning", id, message })),
      keepGoing: o.keepGoing,
      signal: o.signal,
      process: (id) => bringUpToDate(ctx, id),
      onFailed: (id, err, durationMs) => {
        counts.failed++;
        failures.set(id, err);
        o.emit({
          type: "instance-failed",
          id,
          error: err.message,
          logPath: rel(logPathFor(o.cacheDir, id)),
          tail: err.tail.filter((l) => l !== ""),
          durationMs,
          interrupted: err.aborted && o.signal.aborted,
          ...(err.info.hint ? { hint: err.info.hint } : {}),
          ...(err.info.exitCode !== undefined ? { exitCode: err.info.exitCode } : {}),
        });
      },
      onBlocked: (id, because) => {
        counts.blocked++;
        o.emit({ type: "instance-blocked", id, because });
      },
    });
  } finally {
    if (!o.executor) await executor.close();
    await rm(tmpRoot, { recursive: true, force: true }).catch(() => {});
    await saveState();
  }
  return done(o.signal.aborted ? "interrupted" : counts.failed > 0 ? "failed" : "ok", steps);
}
