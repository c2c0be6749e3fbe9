// Runs stage instances in worker processes that stay warm between instances (persistent workers, as
// in Bazel): a worker runs one instance at a time, and the next instance of the same stage code,
// backend and settings reuses it, so tfjs, the wasm backend and h5wasm load once per worker, not once
// per instance. What per-instance processes gave is kept: a crash fails only the instance it ran (the
// worker is replaced), a failed or interrupted instance retires its worker, memory stays bounded (a
// worker is recycled after `recycleAfter` instances or above `rssLimit`), an abort stops the stage
// and kills its process group after a grace period. Owns processes and instance log files; never
// moves outputs or writes the lock.
import { fork, type ChildProcess } from "node:child_process";
import { createWriteStream, type WriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import type { ProgressEvent } from "../stage-api.ts";
import type { Resources } from "../pipeline/types.ts";
import type { ErrorInfo, FromWorker, ToWorker, WorkerSpec } from "./worker-protocol.ts";
import { bundleStage } from "./stage-bundle.ts";
import { WORKER_SOURCE } from "./worker-path.ts";

// Resolved from the engine's own node_modules so a project elsewhere needs no tsx of its own.
const TSX_URL = import.meta.resolve("tsx");
const TAIL_LINES = 20;

/**
 * A worker process's environment: `env`, plus a libuv thread pool as large as the instance's cores
 * (at least libuv's default 4) unless the user set UV_THREADPOOL_SIZE. The pool is process-wide and
 * sized once, before the process's first file read, so only the parent can set it: JPEG decoding
 * (sharp) and file reads run on it, and with the default 4 an instance with 8 cores would decode on 4.
 * Workers are keyed by their settings, so one process serves one core count.
 */
export function workerProcessEnv(env: NodeJS.ProcessEnv, cores: number): NodeJS.ProcessEnv {
  if (env.UV_THREADPOOL_SIZE) return env;
  return { ...env, UV_THREADPOOL_SIZE: String(Math.max(4, Math.min(cores, 1024))) };
}

export type WorkerOutcome =
  /**
   * `release`: call once the outputs are committed or given up. Until then the executor keeps what
   * it needs to hand them over again after a crash (the Slurm executor: the job's record and folder).
   */
  | { ok: true; release?: () => Promise<void> }
  | { ok: false; error: string; aborted: boolean; tail: string[]; info?: ErrorInfo };

export interface JobHooks {
  logPath: string;
  signal: AbortSignal;
  /** After an abort, how long the stage gets to stop before its process group is SIGKILLed. */
  graceMs: number;
  /** Aborted when the user insists (second Ctrl-C): SIGKILL at once. */
  killSignal?: AbortSignal;
  onProgress(event: ProgressEvent): void;
  onLog(stream: "log" | "stdout" | "stderr", line: string): void;
  /** The pid of the worker process that runs the instance (tests kill it from outside). */
  onSpawn?(pid: number): void;
  /** What the instance asks a cluster scheduler for (executors that submit jobs read it). */
  resources?: Resources;
  /** A cluster job's id, state and node, whenever they change. */
  onJob?(info: { jobId: string; state: string; nodes: string }): void;
}

/** Runs instances somewhere: worker processes here (WorkerPool), or jobs of a cluster scheduler. */
export interface Executor {
  run(spec: WorkerSpec, hooks: JobHooks): Promise<WorkerOutcome>;
  /** Stops idle workers; call when the run is over. */
  close(): Promise<void>;
}

export interface PoolOptions {
  /** Folder for stage bundles (cache/). */
  cacheDir: string;
  /** Workers alive at most (busy + idle); an idle one is stopped to make room. */
  maxWorkers: number;
  /** Instances a worker runs before it is replaced (0 = one instance per process). */
  recycleAfter?: number;
  /** A worker whose resident memory exceeds this after an instance is replaced (bytes). */
  rssLimit?: number;
  /** Run stages from source through tsx instead of a bundle (SED_PIPE_NO_BUNDLE=1). */
  fromSource?: boolean;
  /** Environment of the worker processes. */
  env: NodeJS.ProcessEnv;
}

interface Job {
  id: number;
  hooks: JobHooks;
  log: WriteStream;
  tail: string[];
  failure: { error: ErrorInfo; aborted: boolean } | null;
  done: boolean;
  settle: (o: WorkerOutcome) => void;
}

class WorkerProcess {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  job: Job | null = null;
  runs = 0;
  lastUsed = Date.now();
  exited = false;
  rss = 0;
  private killTimer: NodeJS.Timeout | undefined;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(
    readonly key: string,
    entry: string,
    execArgv: string[],
    env: NodeJS.ProcessEnv,
    cwd: string,
  ) {
    this.child = fork(entry, [], {
      cwd,
      env,
      execArgv,
      stdio: ["ignore", "pipe", "pipe", "ipc"],
      // Own process group: a terminal's Ctrl-C reaches only the runner, which stops workers itself,
      // and a kill of the group also reaches anything the stage spawned.
      detached: true,
      serialization: "advanced",
    });
    createInterface({ input: this.child.stdout! }).on("line", (l) => this.line("stdout", l));
    createInterface({ input: this.child.stderr! }).on("line", (l) => this.line("stderr", l));
    this.ready = new Promise((resolve, reject) => {
      const onMsg = (m: unknown) => {
        if ((m as FromWorker).type === "ready") {
          this.child.off("message", onMsg);
          resolve();
        }
      };
      this.child.on("message", onMsg);
      this.child.once("error", reject);
      this.child.once("exit", () => reject(new Error("worker exited before it was ready")));
    });
    this.ready.catch(() => {});
    this.child.on("message", (raw) => this.message(raw as FromWorker));
    this.exit = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        this.exited = true;
        clearTimeout(this.killTimer);
        resolve({ code, signal });
      });
      this.child.once("error", () => {
        this.exited = true;
        resolve({ code: null, signal: null });
      });
    });
  }

  line(stream: "log" | "stdout" | "stderr", text: string): void {
    const j = this.job;
    if (!j) return;
    const prefix = stream === "log" ? "" : `[${stream}] `;
    j.log.write(`${prefix}${text}\n`);
    j.tail.push(`${prefix}${text}`);
    if (j.tail.length > TAIL_LINES) j.tail.shift();
    j.hooks.onLog(stream, text);
  }

  private message(msg: FromWorker): void {
    const j = this.job;
    if (msg.type === "ready" || !j || msg.job !== j.id) return;
    switch (msg.type) {
      case "progress":
        j.hooks.onProgress(msg.event);
        break;
      case "log":
        this.line("log", msg.line);
        break;
      case "done":
        this.rss = msg.rss;
        j.done = true;
        j.settle({ ok: true });
        break;
      case "failed":
        if (msg.error.stack) j.log.write(`${msg.error.stack}\n`);
        j.failure = { error: msg.error, aborted: msg.aborted || j.hooks.signal.aborted };
        j.settle({ ok: false, error: msg.error.message, aborted: j.failure.aborted, tail: j.tail, info: msg.error });
        break;
    }
  }

  send(msg: ToWorker): void {
    if (this.child.connected) this.child.send(msg, () => {});
  }

  /** SIGKILL the worker's process group (the worker and anything it spawned). */
  kill(): void {
    try {
      if (this.child.pid) process.kill(-this.child.pid, "SIGKILL");
    } catch {
      this.child.kill("SIGKILL");
    }
  }

  /** Asks an idle worker to exit, killing it if it does not within `ms`. */
  async stop(ms = 2000): Promise<void> {
    if (this.exited) return;
    this.send({ type: "exit" });
    this.killTimer = setTimeout(() => this.kill(), ms);
    this.killTimer.unref();
    await this.exit;
  }
}

export class WorkerPool implements Executor {
  private workers: WorkerProcess[] = [];
  private bundles = new Map<string, Promise<{ entry: string; execArgv: string[]; note?: string }>>();
  private nextJob = 1;
  private readonly recycleAfter: number;
  private readonly rssLimit: number;

  constructor(private readonly o: PoolOptions) {
    this.recycleAfter = o.recycleAfter ?? 100;
    this.rssLimit = o.rssLimit ?? 4 * 1024 ** 3;
  }

  /** Workers alive now (for tests and the bench). */
  get size(): number {
    return this.workers.length;
  }

  /**
   * The worker entry for a stage module: its bundle (one esbuild per module and run), or the worker
   * runtime through tsx when bundling is off or fails.
   */
  private entryFor(spec: WorkerSpec): Promise<{ entry: string; execArgv: string[]; note?: string }> {
    let b = this.bundles.get(spec.modulePath);
    if (!b) {
      b = (async () => {
        const fromSource = { entry: WORKER_SOURCE, execArgv: ["--import", TSX_URL] };
        if (this.o.fromSource) return fromSource;
        try {
          return { entry: await bundleStage(spec.modulePath, join(spec.root, "cache")), execArgv: ["--enable-source-maps"] };
        } catch (err) {
          return { ...fromSource, note: `# could not bundle ${spec.module} (${(err as Error).message.split("\n")[0]}); running it through tsx` };
        }
      })();
      this.bundles.set(spec.modulePath, b);
    }
    return b;
  }

  /**
   * An idle worker for `key`, or a new one (stopping the least recently used idle worker to make
   * room), reserved for `job` before anything else can run: synchronous on purpose.
   */
  private acquire(key: string, entry: string, execArgv: string[], spec: WorkerSpec, job: Job): WorkerProcess {
    const idle = this.workers.find((w) => !w.job && !w.exited && w.key === key);
    if (idle) {
      idle.job = job;
      return idle;
    }
    this.workers = this.workers.filter((w) => !w.exited);
    while (this.workers.length >= this.o.maxWorkers) {
      const lru = this.workers.filter((w) => !w.job).sort((a, b) => a.lastUsed - b.lastUsed)[0];
      if (!lru) break;
      this.retire(lru);
    }
    const w = new WorkerProcess(key, entry, execArgv, workerProcessEnv(this.o.env, spec.settings.cores), spec.root);
    w.job = job;
    this.workers.push(w);
    void w.exit.then(() => (this.workers = this.workers.filter((x) => x !== w)));
    return w;
  }

  private retire(w: WorkerProcess): void {
    this.workers = this.workers.filter((x) => x !== w);
    void w.stop();
  }

  async run(spec: WorkerSpec, hooks: JobHooks): Promise<WorkerOutcome> {
    await mkdir(dirname(hooks.logPath), { recursive: true });
    const log = createWriteStream(hooks.logPath, { flags: "w" });
    log.write(`# ${spec.instanceId} (${spec.module}) started ${new Date().toISOString()}\n`);
    const { entry, execArgv, note } = await this.entryFor(spec);
    if (note) log.write(note + "\n");
    // Instances share a worker only when everything the process was started with is equal.
    const key = JSON.stringify([entry, execArgv, spec.root, spec.backend, spec.settings]);
    let settle!: (o: WorkerOutcome) => void;
    const settled = new Promise<WorkerOutcome>((r) => (settle = r));
    const job: Job = { id: this.nextJob++, hooks, log, tail: [], failure: null, done: false, settle };
    const w = this.acquire(key, entry, execArgv, spec, job);
    w.lastUsed = Date.now();
    if (w.child.pid) hooks.onSpawn?.(w.child.pid);

    let killTimer: NodeJS.Timeout | undefined;
    const onAbort = () => {
      w.send({ type: "abort", job: job.id });
      killTimer = setTimeout(() => w.kill(), hooks.graceMs);
    };
    const onKill = () => w.kill();
    const crash = w.exit.then(({ code, signal }): WorkerOutcome => {
      const status = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      return { ok: false, error: `stage process ${status} without finishing`, aborted: hooks.signal.aborted, tail: job.tail };
    });
    let outcome: WorkerOutcome;
    try {
      await Promise.race([w.ready, crash]);
      if (hooks.signal.aborted) onAbort();
      else hooks.signal.addEventListener("abort", onAbort, { once: true });
      if (hooks.killSignal?.aborted) onKill();
      else hooks.killSignal?.addEventListener("abort", onKill, { once: true });
      w.send({ type: "start", job: job.id, spec });
      outcome = await Promise.race([settled, crash]);
    } finally {
      clearTimeout(killTimer);
      hooks.signal.removeEventListener("abort", onAbort);
      hooks.killSignal?.removeEventListener("abort", onKill);
    }
    w.job = null;
    w.runs++;
    w.lastUsed = Date.now();
    // Only a worker that finished cleanly is trusted with the next instance.
    const reusable = outcome.ok && !w.exited && w.runs < this.recycleAfter && w.rss <= this.rssLimit && !hooks.signal.aborted;
    if (!reusable) {
      if (!w.exited && !outcome.ok) w.kill();
      else this.retire(w);
      await Promise.race([w.exit, new Promise((r) => setTimeout(r, 1000))]);
    }
    log.write(`# ended ${new Date().toISOString()} (${outcome.ok ? "ok" : outcome.error})\n`);
    await new Promise<void>((r) => log.end(r));
    return outcome;
  }

  async close(): Promise<void> {
    const all = this.workers;
    this.workers = [];
    await Promise.all(all.map((w) => (w.job ? (w.kill(), w.exit) : w.stop())));
  }
}
