// The IPC messages between the runner and a worker process (src/runner/worker.ts). Types only.
import type { ProgressEvent, StageSettings } from "./stage-api.ts";

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
}

export type ToWorker = { type: "start"; spec: WorkerSpec } | { type: "abort" };

export type FromWorker =
  | { type: "ready" }
  | { type: "progress"; event: ProgressEvent }
  | { type: "log"; line: string }
  | { type: "done" }
  | { type: "failed"; message: string; stack?: string; aborted: boolean };
