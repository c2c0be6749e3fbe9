// Prepares images (read, decode, resize, crop, augment, normalise) on worker threads (image-thread.ts)
// into a shared batch buffer, so a stage's own thread is free for the model while the next batches are
// prepared, and the same work on the caller's own thread (prepareOnThisThread). Owns the threads, how
// many to use, the queue and what a dead thread means; the bad-image policy and the batch order are the
// caller's (stages/cache-features.ts).
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { EXIT, InputError, SedPipeError } from "../errors.ts";
import { IMAGE_THREAD_FLAG, type BadImage, type ImageThreadReply, type ImageThreadRequest } from "./image-thread.ts";
import { preloadSharp, prepareInto, readImage, type ImagePrep, type RgbImage } from "./images.ts";

export type { BadImage } from "./image-thread.ts";

/** An image thread died (crash, out of memory, killed) or could not start: the run cannot go on with it. */
export class ImageThreadError extends SedPipeError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, {
      ...options,
      exitCode: EXIT.stageFailed,
      hint: "SED_PIPE_IMAGE_THREADS=0 prepares images on the stage's own thread; the stage's log has the thread's error",
    });
  }
}

/**
 * The caller's say over image threads (a stage passes ctx.settings, which has these fields). Nothing
 * here reads the environment: src/cli.ts maps SED_PIPE_CORES and SED_PIPE_IMAGE_THREADS.
 */
export interface ImageThreadSettings {
  /** Cores the caller may use (the runner gives a stage its declared resources.cpus). Default: all of them. */
  readonly cores?: number;
  /** null or absent: decide by cores; 0 = prepare on the caller's thread; n = n threads. */
  readonly imageThreads?: number | null;
}

/**
 * How many image threads to use for `images` images: settings.imageThreads when set (0 = none);
 * otherwise one per core when there are two or more (settings.cores, else all cores). With one core
 * a thread would only take turns with the stage's thread, so images are prepared there (the next
 * batches are still read and decoded ahead, on libuv's pool).
 */
export function imageThreadCount(images: number, settings: ImageThreadSettings = {}): number {
  const forced = settings.imageThreads ?? null;
  if (forced !== null) {
    if (!Number.isInteger(forced) || forced < 0) throw new SedPipeError(`imageThreads must be a whole number >= 0, got ${forced}`);
    return Math.min(forced, images);
  }
  const cores = settings.cores ?? availableParallelism();
  if (!Number.isInteger(cores) || cores < 1) throw new SedPipeError(`cores must be a positive integer, got ${cores}`);
  return cores >= 2 ? Math.min(cores, images) : 0;
}

/**
 * Images in flight per thread: one being transformed on the thread while the next is read and decoded
 * on libuv's pool. With the batch buffers, this is what bounds the pool's memory: at most
 * threads x DEPTH files and their decoded pixels at a time, whatever the batch size.
 */
export const IMAGE_THREAD_DEPTH = 2;

/** On the caller's own thread: images read and decoded (on libuv's pool) ahead of the one being transformed. */
export const DECODE_WINDOW = 8;

/** One image of a prepare() call: its file and its index in the dataset (the train augmentation's seed). */
export interface PrepareJob {
  file: string;
  index: number;
}

interface Call {
  settled: boolean;
  done(k: number, bad: BadImage | null): void;
  fail(err: Error): void;
}

interface Task {
  call: Call;
  k: number;
  req: Extract<ImageThreadRequest, { op: "prepare" }>;
}

/**
 * An image thread: image-thread.ts from the stage bundle that contains it, or, running from source
 * (tests, benchmarks, SED_PIPE_NO_BUNDLE), image-thread.ts itself through tsx's loader, which the thread
 * registers for itself (Node 20 does not pass the parent's `--import tsx` on to worker threads). The
 * same scheme as head threads (src/ml/head-pool.ts).
 */
function spawnThread(): Worker {
  const workerData = { [IMAGE_THREAD_FLAG]: true };
  if (!import.meta.url.endsWith(".ts")) return new Worker(new URL(import.meta.url), { workerData });
  const entry = new URL("./image-thread.ts", import.meta.url).href;
  const tsx = import.meta.resolve("tsx/esm/api");
  const boot = `import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { eval: true, workerData });
}

class ImageThread {
  /** Requests sent and not answered, by id; a thread that dies fails every one of them. */
  readonly inFlight = new Map<number, Task | { ping: (err: Error | null) => void }>();

  constructor(readonly index: number, readonly worker: Worker) {}

  /** A thread with nothing in flight does not keep the process alive (a pool left open cannot hang an exit). */
  updateRef(): void {
    if (this.inFlight.size > 0) this.worker.ref();
    else this.worker.unref();
  }
}

export class ImagePool {
  private readonly queue: Task[] = [];
  private nextId = 1;
  private failure: Error | null = null;
  private closed = false;

  private constructor(private readonly threads: ImageThread[]) {
    for (const t of threads) {
      t.worker.on("message", (m: ImageThreadReply) => this.reply(t, m));
      t.worker.on("error", (e) => this.die(new ImageThreadError(`image thread ${t.index} crashed: ${e.message}`, { cause: e })));
      t.worker.on("messageerror", (e) => this.die(new ImageThreadError(`image thread ${t.index}: a message could not be read (${e.message})`, { cause: e })));
      t.worker.on("exit", (code) => this.die(new ImageThreadError(`image thread ${t.index} exited unexpectedly (code ${code})`)));
    }
  }

  /** Starts n threads and waits until each one serves (a thread that cannot load is an ImageThreadError). */
  static async start(n: number): Promise<ImagePool> {
    if (!Number.isInteger(n) || n < 1) throw new Error(`ImagePool.start: ${n} threads`);
    await preloadSharp();
    const pool = new ImagePool(Array.from({ length: n }, (_, i) => new ImageThread(i, spawnThread())));
    try {
      await Promise.all(pool.threads.map((t) => pool.ping(t)));
    } catch (err) {
      await pool.close();
      throw err instanceof ImageThreadError ? err : new ImageThreadError(`cannot start ${n} image threads: ${(err as Error).message}`, { cause: err });
    }
    return pool;
  }

  get size(): number {
    return this.threads.length;
  }

  private ping(t: ImageThread): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      t.inFlight.set(id, { ping: (err) => (err ? reject(err) : resolve()) });
      t.updateRef();
      t.worker.postMessage({ id, req: { op: "ping" } satisfies ImageThreadRequest });
    });
  }

  /**
   * Prepares jobs[k] into out at offset k * per (per = the prepared image's floats), spread over the
   * threads, and resolves with each job's outcome: null, or the bad image's message (the caller applies
   * its policy). out must be SharedArrayBuffer-backed. Rejects with an ImageThreadError when a thread
   * dies, with signal's reason on abort, and when the pool closes; after a rejection, threads may still
   * write into out until close() resolves.
   */
  prepare(jobs: readonly PrepareJob[], pass: number, prep: ImagePrep, out: Float32Array, per: number, signal?: AbortSignal): Promise<(BadImage | null)[]> {
    if (!(out.buffer instanceof SharedArrayBuffer)) return Promise.reject(new Error("ImagePool.prepare: `out` must be SharedArrayBuffer-backed"));
    if (out.length < jobs.length * per) return Promise.reject(new Error(`ImagePool.prepare: out holds ${out.length} floats, ${jobs.length} images need ${jobs.length * per}`));
    if (this.failure) return Promise.reject(this.failure);
    if (this.closed) return Promise.reject(new Error("the image pool is closed"));
    if (signal?.aborted) return Promise.reject(signal.reason ?? new Error("aborted"));
    if (jobs.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      const results = new Array<BadImage | null>(jobs.length);
      let left = jobs.length;
      const onAbort = () => call.fail(signal!.reason ?? new Error("aborted"));
      const call: Call = {
        settled: false,
        done: (k, bad) => {
          if (call.settled) return;
          results[k] = bad;
          if (--left === 0) {
            call.settled = true;
            signal?.removeEventListener("abort", onAbort);
            resolve(results);
          }
        },
        fail: (err) => {
          if (call.settled) return;
          call.settled = true;
          signal?.removeEventListener("abort", onAbort);
          // Its queued images are dropped; those in flight finish in their threads and are ignored.
          for (let i = this.queue.length - 1; i >= 0; i--) if (this.queue[i]!.call === call) this.queue.splice(i, 1);
          reject(err);
        },
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      jobs.forEach((j, k) => this.queue.push({ call, k, req: { op: "prepare", file: j.file, index: j.index, pass, prep, out, offset: k * per } }));
      this.pump();
    });
  }

  /** Hands queued images to the least busy threads, at most IMAGE_THREAD_DEPTH in flight on each (FIFO: earlier batches first). */
  private pump(): void {
    while (this.queue.length > 0 && !this.failure && !this.closed) {
      let best: ImageThread | null = null;
      for (const t of this.threads) if (t.inFlight.size < IMAGE_THREAD_DEPTH && (!best || t.inFlight.size < best.inFlight.size)) best = t;
      if (!best) return;
      const task = this.queue.shift()!;
      const id = this.nextId++;
      best.inFlight.set(id, task);
      best.updateRef();
      best.worker.postMessage({ id, req: task.req });
    }
  }

  private reply(t: ImageThread, m: ImageThreadReply): void {
    const entry = t.inFlight.get(m.id);
    if (!entry) return;
    t.inFlight.delete(m.id);
    t.updateRef();
    const err = m.ok ? null : Object.assign(new Error(`image thread ${t.index}: ${m.message}`), m.stack ? { stack: `image thread ${t.index}: ${m.message}\n--- in the thread ---\n${m.stack}` } : {});
    if ("ping" in entry) entry.ping(err);
    else if (err) entry.call.fail(err);
    else entry.call.done(entry.k, m.ok ? m.bad : null);
    this.pump();
  }

  /** A thread died: every call in flight or queued fails with the error, and so does every later one. */
  private die(err: Error): void {
    if (this.closed || this.failure) return;
    this.failure = err;
    for (const t of this.threads) {
      for (const entry of t.inFlight.values()) {
        if ("ping" in entry) entry.ping(err);
        else entry.call.fail(err);
      }
      t.inFlight.clear();
    }
    for (const task of this.queue.splice(0)) task.call.fail(err);
    // The other threads are of no use any more; terminate them now rather than at close().
    void Promise.all(this.threads.map((t) => t.worker.terminate()));
  }

  /** Fails whatever is pending and terminates the threads; resolves once they are gone. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const err = new Error("the image pool is closed");
    for (const t of this.threads) {
      for (const entry of t.inFlight.values()) {
        if ("ping" in entry) entry.ping(err);
        else entry.call.fail(err);
      }
      t.inFlight.clear();
    }
    for (const task of this.queue.splice(0)) task.call.fail(err);
    await Promise.all(this.threads.map((t) => t.worker.terminate()));
  }
}

/**
 * ImagePool.prepare's work without threads: images read and decoded up to DECODE_WINDOW ahead (on
 * libuv's pool), transformed on this thread one after another, jobs[k] into out at k x per. out may be
 * any Float32Array. Checks `signal` before each image.
 */
export async function prepareOnThisThread(jobs: readonly PrepareJob[], pass: number, prep: ImagePrep, out: Float32Array, per: number, signal?: AbortSignal): Promise<(BadImage | null)[]> {
  const loads: (Promise<RgbImage> | undefined)[] = [];
  const load = (k: number) => {
    if (k >= jobs.length || loads[k]) return;
    const p = readImage(jobs[k]!.file);
    p.catch(() => undefined);
    loads[k] = p;
  };
  const outcomes: (BadImage | null)[] = [];
  for (let k = 0; k < jobs.length; k++) {
    if (signal?.aborted) throw signal.reason ?? new Error("aborted");
    for (let a = k; a < k + DECODE_WINDOW; a++) load(a);
    const loading = loads[k]!;
    loads[k] = undefined;
    try {
      prepareInto(await loading, prep, pass, jobs[k]!.index, out, k * per);
      outcomes.push(null);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      outcomes.push({ message: err.message, ...(err.hint ? { hint: err.hint } : {}) });
    }
  }
  return outcomes;
}
