// The worker process: forked by the runner (src/runner/worker-pool.ts) as a bundle built by
// stage-bundle.ts (plain node; the stage module is handed over through a global), or, as a fallback,
// with `node --import tsx` importing the stage module itself. It runs one instance at a time, as many
// as the runner sends (a persistent worker: the stage module and its libraries load once). Talks to
// the runner only over IPC; never touches artifacts/, the cache or pipeline.lock.
import { closeSync, openSync, readFileSync, renameSync, writeFileSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { isMainThread } from "node:worker_threads";
import type { ProgressEvent, StageContext, StageModule } from "../stage-api.ts";
import type { ErrorInfo, FromWorker, JobEvent, JobGroup, JobResult, ToWorker, WorkerSpec } from "./worker-protocol.ts";

// Same value as worker-protocol.ts's JOB_FLAG (types only are imported from there, to keep this file lean).
const JOB_FLAG = "--sed-pipe-job";

// Same value as stage-bundle.ts's BUNDLED_STAGE_GLOBAL (not imported: that module loads esbuild).
const BUNDLED_STAGE_GLOBAL = "__sedPipeBundledStage";

function send(msg: FromWorker): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(msg, undefined, {}, () => resolve());
  });
}

/** A thrown value as it crosses to the runner: class name, message, and a SedPipeError's hint and exit code. */
export function errorInfo(err: unknown): ErrorInfo {
  if (!(err instanceof Error)) return { name: "Error", message: String(err) };
  const e = err as Error & { hint?: unknown; exitCode?: unknown };
  const info: ErrorInfo = { name: e.name || "Error", message: e.message || e.name || "Error" };
  if (typeof e.hint === "string") info.hint = e.hint;
  if (typeof e.exitCode === "number") info.exitCode = e.exitCode;
  if (e.stack) info.stack = e.stack;
  return info;
}

let current: { job: number; controller: AbortController } | null = null;
let exiting = false;
const modules = new Map<string, Promise<Partial<StageModule>>>();

function loadModule(spec: WorkerSpec): Promise<Partial<StageModule>> {
  const bundled = (globalThis as Record<string, unknown>)[BUNDLED_STAGE_GLOBAL];
  if (bundled) return Promise.resolve(bundled as Partial<StageModule>);
  let m = modules.get(spec.modulePath);
  if (!m) {
    m = import(pathToFileURL(spec.modulePath).href) as Promise<Partial<StageModule>>;
    modules.set(spec.modulePath, m);
  }
  return m;
}

function contextFor(spec: WorkerSpec, signal: AbortSignal, report: { progress(e: ProgressEvent): void; log(line: string): void }): StageContext {
  return {
    instanceId: spec.instanceId,
    stage: spec.stage,
    root: spec.root,
    profile: spec.profile,
    item: spec.item,
    params: Object.freeze(spec.params),
    deps: Object.freeze(spec.deps),
    outs: Object.freeze(spec.outs),
    scratch: spec.scratch,
    backend: spec.backend,
    settings: Object.freeze({ ...spec.settings }),
    signal,
    progress: (event: ProgressEvent) => report.progress(event),
    log: (line: string) => report.log(String(line)),
  };
}

async function runJob(job: number, spec: WorkerSpec): Promise<void> {
  const controller = new AbortController();
  current = { job, controller };
  try {
    let mod: Partial<StageModule>;
    try {
      mod = await loadModule(spec);
    } catch (err) {
      const e = errorInfo(err);
      await send({ type: "failed", job, error: { ...e, message: `cannot load stage module ${spec.module}: ${e.message}` }, aborted: false });
      return;
    }
    if (typeof mod.run !== "function") {
      await send({ type: "failed", job, error: { name: "Error", message: `stage module ${spec.module} does not export run(ctx)` }, aborted: false });
      return;
    }
    try {
      await mod.run(
        contextFor(spec, controller.signal, {
          progress: (event) => void send({ type: "progress", job, event }),
          log: (line) => void send({ type: "log", job, line }),
        }),
      );
      await send({ type: "done", job, rss: process.memoryUsage.rss() });
    } catch (err) {
      await send({ type: "failed", job, error: errorInfo(err), aborted: controller.signal.aborted });
    }
  } finally {
    current = null;
    if (exiting) process.exit(0);
  }
}

/**
 * Job mode (a batch job of a cluster scheduler, no IPC): runs the group's instances one after
 * another, each reporting through its own folder, then exits (1 if any instance failed). A SIGTERM
 * (scancel, or the time limit) aborts the running stage and skips the rest.
 */
async function runGroup(file: string): Promise<void> {
  const group = JSON.parse(readFileSync(file, "utf8")) as JobGroup;
  const controller = new AbortController();
  process.on("SIGTERM", () => controller.abort(new Error("cancelled by the scheduler (SIGTERM)")));
  const host = hostname();
  let failed = false;
  for (const { dir, spec } of group.instances) {
    if (controller.signal.aborted) break;
    const fd = openSync(join(dir, "events.ndjson"), "a");
    const emit = (e: JobEvent) => writeSync(fd, JSON.stringify(e) + "\n");
    let result: JobResult;
    try {
      emit({ t: "start", pid: process.pid, host, at: new Date().toISOString() });
      const mod = await loadModule(spec);
      if (typeof mod.run !== "function") throw new Error(`stage module ${spec.module} does not export run(ctx)`);
      await mod.run(contextFor(spec, controller.signal, { progress: (event) => emit({ t: "progress", event }), log: (line) => emit({ t: "log", line }) }));
      result = { ok: true, rss: process.memoryUsage.rss(), host };
    } catch (err) {
      failed = true;
      result = { ok: false, error: errorInfo(err), aborted: controller.signal.aborted, host };
    } finally {
      closeSync(fd);
    }
    // Written once, whole: the engine reads a result only under its final name.
    writeFileSync(join(dir, "result.json.tmp"), JSON.stringify(result));
    renameSync(join(dir, "result.json.tmp"), join(dir, "result.json"));
  }
  process.exit(failed || controller.signal.aborted ? 1 : 0);
}

const jobFlag = process.argv.indexOf(JOB_FLAG);
if (isMainThread && jobFlag >= 0) {
  void runGroup(process.argv[jobFlag + 1]!).catch((err) => {
    process.stderr.write(`sed-pipe job: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(2);
  });
}

// A head thread (src/ml/head-thread.ts) loads the stage bundle too: the runtime only runs on the
// process's main thread.
if (isMainThread && process.send && jobFlag < 0) {
  process.on("message", (raw: unknown) => {
    const msg = raw as ToWorker;
    if (msg.type === "start") {
      if (current) {
        void send({ type: "failed", job: msg.job, error: { name: "Error", message: `worker busy with job ${current.job}` }, aborted: false });
        return;
      }
      void runJob(msg.job, msg.spec);
    } else if (msg.type === "abort") {
      if (current?.job === msg.job) current.controller.abort(new Error("interrupted"));
    } else if (msg.type === "exit") {
      exiting = true;
      if (!current) process.exit(0);
    }
  });

  // If the runner dies, nobody will move our outputs into place: stop rather than compute for nothing.
  process.on("disconnect", () => {
    exiting = true;
    current?.controller.abort(new Error("runner went away"));
    if (!current) process.exit(0);
    setTimeout(() => process.exit(1), 2000).unref();
  });

  // An error nobody awaited leaves the process in an unknown state: fail the instance and go.
  process.on("unhandledRejection", async (err) => {
    const e = errorInfo(err);
    if (current) await send({ type: "failed", job: current.job, error: { ...e, message: `unhandled rejection: ${e.message}` }, aborted: current.controller.signal.aborted });
    process.exit(1);
  });

  void send({ type: "ready" });
}
