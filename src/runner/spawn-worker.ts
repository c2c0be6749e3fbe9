// Runs one stage instance in its own worker process and reports how it ended. Owns the process
// (fork, abort, kill after a grace period) and its log file; never moves outputs or writes the lock.
import { fork } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import type { ProgressEvent } from "./stage-api.ts";
import type { FromWorker, ToWorker, WorkerSpec } from "./worker-protocol.ts";
import { bundleStage } from "./stage-bundle.ts";
import { WORKER_SOURCE } from "./worker-path.ts";

const WORKER_PATH = WORKER_SOURCE;
// Resolved from the engine's own node_modules so a project elsewhere needs no tsx of its own.
const TSX_URL = import.meta.resolve("tsx");

export type WorkerOutcome =
  | { ok: true }
  | { ok: false; error: string; aborted: boolean; tail: string[] };

export interface WorkerHooks {
  logPath: string;
  signal: AbortSignal;
  /** After an abort, how long the stage gets to stop before its process group is SIGKILLed. */
  graceMs: number;
  /** Aborted when the user insists (second Ctrl-C): SIGKILL the process group at once. */
  killSignal?: AbortSignal;
  onProgress(event: ProgressEvent): void;
  onLog(stream: "log" | "stdout" | "stderr", line: string): void;
  /**
   * Cores for this worker (cores / parallel jobs): its OpenBLAS threads (SED_PIPE_BLAS_THREADS) and
   * its head threads (SED_PIPE_CORES, src/ml/head-pool.ts); either variable set by the user wins.
   */
  blasThreads?: number;
  /** Called with the worker's pid once it is forked (tests kill it from outside). */
  onSpawn?(pid: number): void;
}

const TAIL_LINES = 20;

export async function runInWorker(spec: WorkerSpec, hooks: WorkerHooks): Promise<WorkerOutcome> {
  await mkdir(dirname(hooks.logPath), { recursive: true });
  const log = createWriteStream(hooks.logPath, { flags: "w" });
  const tail: string[] = [];
  const line = (stream: "log" | "stdout" | "stderr", text: string) => {
    const prefix = stream === "log" ? "" : `[${stream}] `;
    log.write(`${prefix}${text}\n`);
    tail.push(`${prefix}${text}`);
    if (tail.length > TAIL_LINES) tail.shift();
    hooks.onLog(stream, text);
  };
  log.write(`# ${spec.instanceId} (${spec.module}) started ${new Date().toISOString()}\n`);

  // A bundle starts on plain node (fast, small); if bundling fails, say why and fall back to tsx.
  let entry = WORKER_PATH;
  let execArgv = ["--import", TSX_URL];
  if (process.env.SED_PIPE_NO_BUNDLE !== "1") {
    try {
      entry = await bundleStage(spec.modulePath, join(spec.root, "cache"));
      execArgv = ["--enable-source-maps"];
    } catch (err) {
      line("log", `# could not bundle ${spec.module} (${(err as Error).message.split("\n")[0]}); running it through tsx`);
    }
  }
  const env = { ...process.env };
  if (env.SED_PIPE_BLAS_THREADS === undefined && hooks.blasThreads) env.SED_PIPE_BLAS_THREADS = String(hooks.blasThreads);
  if (env.SED_PIPE_CORES === undefined && hooks.blasThreads) env.SED_PIPE_CORES = String(hooks.blasThreads);
  const child = fork(entry, [], {
    cwd: spec.root,
    env,
    execArgv,
    stdio: ["ignore", "pipe", "pipe", "ipc"],
    // Own process group: a terminal's Ctrl-C reaches only the runner, which stops workers itself,
    // and a kill of the group also reaches anything the stage spawned.
    detached: true,
    serialization: "advanced",
  });
  if (child.pid) hooks.onSpawn?.(child.pid);
  createInterface({ input: child.stdout! }).on("line", (l) => line("stdout", l));
  createInterface({ input: child.stderr! }).on("line", (l) => line("stderr", l));

  let failure: Extract<FromWorker, { type: "failed" }> | null = null;
  let done = false;
  child.on("message", (raw) => {
    const msg = raw as FromWorker;
    switch (msg.type) {
      case "ready":
        child.send({ type: "start", spec } satisfies ToWorker);
        break;
      case "progress":
        hooks.onProgress(msg.event);
        break;
      case "log":
        line("log", msg.line);
        break;
      case "done":
        done = true;
        break;
      case "failed":
        failure = msg;
        if (msg.stack) log.write(`${msg.stack}\n`);
        break;
    }
  });

  const killGroup = (sig: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, sig);
    } catch {
      child.kill(sig);
    }
  };
  let killTimer: NodeJS.Timeout | undefined;
  const onAbort = () => {
    if (child.connected) child.send({ type: "abort" } satisfies ToWorker, () => {});
    killTimer = setTimeout(() => killGroup("SIGKILL"), hooks.graceMs);
  };
  if (hooks.signal.aborted) onAbort();
  else hooks.signal.addEventListener("abort", onAbort, { once: true });
  const onKill = () => killGroup("SIGKILL");
  if (hooks.killSignal?.aborted) onKill();
  else hooks.killSignal?.addEventListener("abort", onKill, { once: true });

  const closed = new Promise<void>((resolve) => child.on("close", () => resolve()));
  const [code, sig] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
    child.on("error", (err) => {
      line("stderr", `cannot start worker: ${err.message}`);
      resolve([null, null]);
    });
    child.on("exit", (c, s) => resolve([c, s]));
  });
  clearTimeout(killTimer);
  hooks.signal.removeEventListener("abort", onAbort);
  hooks.killSignal?.removeEventListener("abort", onKill);
  // Grandchildren the stage left behind must not outlive it (they could also hold its stdout open).
  killGroup("SIGKILL");
  await Promise.race([closed, new Promise<void>((r) => setTimeout(r, 1000))]);
  const status = sig ? `killed by ${sig}` : `exit code ${code}`;
  log.write(`# ended ${new Date().toISOString()} (${done ? "ok" : status})\n`);
  await new Promise<void>((r) => log.end(r));

  if (done && code === 0) return { ok: true };
  const f = failure as Extract<FromWorker, { type: "failed" }> | null;
  if (f) return { ok: false, error: f.message, aborted: f.aborted || hooks.signal.aborted, tail };
  return {
    ok: false,
    error: sig ? `stage process was killed by ${sig}` : `stage process exited with code ${code} without finishing`,
    aborted: hooks.signal.aborted,
    tail,
  };
}
