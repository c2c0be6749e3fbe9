// The runner's event stream: typed, UI-agnostic, serialisable as JSON. Every UI sink (plain lines,
// NDJSON, the Ink TUI) consumes exactly this union and nothing else. No rendering here.
import type { PlanCounts, PlanStep } from "../pipeline/types.ts";
import type { Needs } from "../pipeline/needs.ts";
import type { ProgressEvent } from "../stage-api.ts";

/** Bumped when an event's shape changes incompatibly (consumers of `--json` read it from "plan"). */
export const EVENT_SCHEMA_VERSION = 1;

/**
 * Emitted once, before anything executes: the decision for every instance of the target closure,
 * in topological order. `dryRun` runs stop after this event (and a run-done).
 */
export interface PlanEvent {
  type: "plan";
  schemaVersion: typeof EVENT_SCHEMA_VERSION;
  runId: string;
  dryRun: boolean;
  jobs: number;
  /** Steps by action; `pending` ones are decided when their upstream is done. */
  counts: PlanCounts;
  steps: PlanStep[];
  /** Downloads, missing manual inputs, disk and time of the steps that would run (src/pipeline/needs.ts). */
  needs?: Needs;
}

/** An instance starts executing (worker forked) or restoring from the cache. */
export interface InstanceStartEvent {
  type: "instance-start";
  id: string;
  action: "run" | "restore";
  /** Why it runs, one line (from the plan, or from the re-decision after upstream finished). */
  reason: string;
  /** Where the stage's log goes (project-relative). */
  logPath: string;
}

/** A cluster job runs the instance: its id, Slurm state and node(s), sent whenever they change. */
export interface InstanceJobEvent {
  type: "instance-job";
  id: string;
  executor: "slurm";
  jobId: string;
  /** PENDING, RUNNING, COMPLETED, ... as Slurm names it; ADOPTED for a job an earlier run submitted. */
  state: string;
  nodes: string;
}

/** The stage's own ProgressEvent, unchanged, tagged with the instance and time since it started. */
export interface InstanceProgressEvent {
  type: "progress";
  id: string;
  elapsedMs: number;
  progress: ProgressEvent;
}

/** One log line of a stage (ctx.log, or a line the worker printed on stdout/stderr). */
export interface InstanceLogEvent {
  type: "log";
  id: string;
  stream: "log" | "stdout" | "stderr";
  line: string;
}

/** An instance is settled successfully: executed, found fresh, or restored from the cache. */
export interface InstanceDoneEvent {
  type: "instance-done";
  id: string;
  action: "ran" | "skipped" | "restored";
  reason: string;
  durationMs: number;
}

/** An instance failed: the stage threw, its process died, or an output was missing. */
export interface InstanceFailedEvent {
  type: "instance-failed";
  id: string;
  /** One line, e.g. "stage did not write out features (artifacts/features/x.hdf5)". */
  error: string;
  logPath: string;
  /** The last lines of the instance's log. */
  tail: string[];
  durationMs: number;
  /** True when the run was interrupted (Ctrl-C) and stopped this instance: not the stage's fault. */
  interrupted?: boolean;
  /** The stage error's hint, when it had one. */
  hint?: string;
  /** The stage error's exit code (2: a config or usage error), when it had one. */
  exitCode?: number;
}

/** An instance was not started because an upstream instance failed or the run was interrupted. */
export interface InstanceBlockedEvent {
  type: "instance-blocked";
  id: string;
  /** The failed upstream instance, or null when the run stopped scheduling (failure without --keep-going, or Ctrl-C). */
  because: string | null;
}

export interface RunCounts {
  ran: number;
  skipped: number;
  restored: number;
  failed: number;
  blocked: number;
}

export interface RunDoneEvent {
  type: "run-done";
  outcome: "ok" | "failed" | "interrupted";
  counts: RunCounts;
  durationMs: number;
}

/** Something the user should know that is not a failure (corrupt cache object, slow worker kill...). */
export interface WarningEvent {
  type: "warning";
  id: string | null;
  message: string;
}

export type RunnerEvent =
  | PlanEvent
  | InstanceStartEvent
  | InstanceJobEvent
  | InstanceProgressEvent
  | InstanceLogEvent
  | InstanceDoneEvent
  | InstanceFailedEvent
  | InstanceBlockedEvent
  | RunDoneEvent
  | WarningEvent;

export type EventSink = (event: RunnerEvent) => void;
