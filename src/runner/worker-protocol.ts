// The IPC messages between the runner and a worker process (src/runner/worker.ts). A worker runs one
// instance at a time and may run many in its life (persistent workers). Types only.
import type { ProgressEvent, StageSettings } from "../stage-api.ts";

/** Everything a worker needs to build a StageContext; all paths absolute. */
export interface WorkerSpec {
  instanceId: string;
  stage: string;
  /** Project-relative module path (for messages). */
  module: string;
  modulePath: string;
  root: string;
  profile: string;
  item: unknown;
  params: Record<string, unknown>;
  deps: Record<string, string>;
  /** Temporary out paths inside cache/tmp/<run-id>/. */
  outs: Record<string, string>;
  scratch: string;
  backend: string;
  settings: StageSettings;
  /** The instance's fingerprint when the stage started (executors that outlive the engine key jobs by it). */
  fingerprint?: string;
}

/** A stage's error as it crosses the process boundary: its class name, hint and exit code survive. */
export interface ErrorInfo {
  name: string;
  message: string;
  hint?: string;
  exitCode?: number;
  stack?: string;
}

export type ToWorker =
  | { type: "start"; job: number; spec: WorkerSpec }
  | { type: "abort"; job: number }
  /** No more work: exit when idle. */
  | { type: "exit" };

export type FromWorker =
  | { type: "ready" }
  | { type: "progress"; job: number; event: ProgressEvent }
  | { type: "log"; job: number; line: string }
  /** `rss`: the process's resident memory after the instance (the runner recycles big workers). */
  | { type: "done"; job: number; rss: number }
  | { type: "failed"; job: number; error: ErrorInfo; aborted: boolean };

/**
 * A batch job's work list (src/runner/slurm/executor.ts writes it, the worker's job mode reads it):
 * instances run one after another in one process; each reports through files in its own folder:
 * `events.ndjson` (JobEvent lines, appended) and `result.json` (a JobResult, written once, atomically).
 */
export interface JobGroup {
  version: 1;
  instances: Array<{ dir: string; spec: WorkerSpec }>;
}

export type JobEvent =
  | { t: "start"; pid: number; host: string; at: string }
  | { t: "log"; line: string }
  | { t: "progress"; event: ProgressEvent };

export type JobResult = { ok: true; rss: number; host: string } | { ok: false; error: ErrorInfo; aborted: boolean; host: string };

/** The worker's command-line flag for job mode: `node <bundle> --sed-pipe-job <group.json>`. */
export const JOB_FLAG = "--sed-pipe-job";
