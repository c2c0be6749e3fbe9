// Runs the heads of an ensemble on worker threads (head-thread.ts), one tfjs backend and one OpenBLAS
// thread each, so a 2-core machine uses both cores on the parts of a head that tfjs-wasm runs on one
// (GELU, LayerNorm, softmax, the optimiser) as well as on the matMuls. Owns the threads, the RPC to
// them and how many to use; which head lives where is up to the caller (threaded-training.ts, eval.ts).
import { availableParallelism } from "node:os";
import { MessageChannel, Worker, type TransferListItem } from "node:worker_threads";
import * as tf from "@tensorflow/tfjs-core";
import { SedPipeError } from "../errors.ts";
import { HEAD_THREAD_FLAG, type FlatHead, type StepReply, type ThreadReply, type ThreadRequest, type ThreadTrainSetup } from "./head-thread.ts";
import type { HeadShape } from "./heads.ts";
import { activeBlasPath, loadBlasAddon, setBlasThreads } from "./wasm-blas.ts";

export type { FlatHead, StepReply, ThreadTrainSetup } from "./head-thread.ts";

/** A Float32Array of n zeros on a SharedArrayBuffer (what the pool's threads read and write in place). */
export function sharedF32(n: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(n * 4));
}

/** Heads smaller than this (dim x hidden) run on the stage's own thread: messages would cost more than they save. */
export const MIN_POOLED_HEAD = 1 << 20;

/**
 * The caller's say over head threads (a stage passes ctx.settings, which has these fields). Nothing
 * here reads the environment: src/cli.ts maps SED_PIPE_CORES and SED_PIPE_HEAD_THREADS.
 */
export interface HeadThreadSettings {
  /** Cores the caller may use (the runner gives a stage its declared resources.cpus). Default: all of them. */
  readonly cores?: number;
  /** null or absent: decide by head size, backend and cores; 1 = never; n = force n (any head size). */
  readonly headThreads?: number | null;
}

function positive(name: string, n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new SedPipeError(`${name} must be a positive integer, got ${n}`);
  return n;
}

/**
 * How many head threads to use: settings.headThreads when set (1 = none); otherwise the core budget
 * (settings.cores, else all cores), but only on the wasm backend (tfjs-node threads itself and cannot
 * load in a worker thread) and for heads of at least MIN_POOLED_HEAD weights. `most` caps it (e.g. 2
 * for the two active heads of a training step), and so does `heads`.
 */
export function headThreadCount(shape: HeadShape, heads: number, most: number, settings: HeadThreadSettings = {}): number {
  const forced = settings.headThreads ?? null;
  if (forced !== null) return Math.min(positive("headThreads", forced), most, heads);
  if (tf.getBackend() !== "wasm" || shape.dim * shape.hidden < MIN_POOLED_HEAD) return 1;
  const cores = settings.cores === undefined ? availableParallelism() : positive("cores", settings.cores);
  return Math.max(1, Math.min(cores, most, heads));
}

/** The backend name a head thread must load to compute exactly what this thread would. */
function threadBackend(): string {
  const b = tf.getBackend();
  if (b === "wasm") return activeBlasPath() ?? "wasm";
  if (b === "cpu") return "cpu";
  throw new SedPipeError(`head threads need the wasm or cpu backend, not "${b}"`, { hint: "set SED_PIPE_HEAD_THREADS=1" });
}

/**
 * A head thread: the stage bundle that contains head-thread.ts, or, running from source (tests,
 * benchmarks, SED_PIPE_NO_BUNDLE), head-thread.ts itself through tsx's loader, which the thread must
 * register for itself (Node 20 does not apply the parent's `--import tsx` to worker threads).
 */
function spawnThread(): Worker {
  const workerData = { [HEAD_THREAD_FLAG]: true };
  if (!import.meta.url.endsWith(".ts")) return new Worker(new URL(import.meta.url), { workerData });
  const entry = new URL("./head-thread.ts", import.meta.url).href;
  const tsx = import.meta.resolve("tsx/esm/api");
  const boot = `import(${JSON.stringify(tsx)}).then((t) => { t.register(); return import(${JSON.stringify(entry)}); });`;
  return new Worker(boot, { eval: true, workerData });
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

class ThreadHandle {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private failure: Error | null = null;

  constructor(readonly index: number, private readonly worker: Worker) {
    worker.on("message", (m: ThreadReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else {
        const e = new Error(`head thread ${index}: ${m.message}`);
        if (m.stack) e.stack = `${e.message}\n--- in the thread ---\n${m.stack}`;
        p.reject(e);
      }
    });
    const fail = (e: Error) => {
      this.failure = e;
      for (const p of this.pending.values()) p.reject(e);
      this.pending.clear();
    };
    worker.on("error", (e) => fail(new Error(`head thread ${index} crashed: ${e.message}`)));
    worker.on("exit", (code) => fail(new Error(`head thread ${index} exited (code ${code})`)));
  }

  call<T>(req: ThreadRequest, transfer: TransferListItem[] = []): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ id, req }, transfer);
    });
  }

  async terminate(): Promise<void> {
    await this.worker.terminate();
  }
}

export class HeadPool {
  private closed = false;
  private savedBlasThreads: number | null = null;

  private constructor(private readonly threads: ThreadHandle[], readonly backend: string, readonly shape: HeadShape) {}

  get size(): number {
    return this.threads.length;
  }

  /**
   * Starts n threads on the backend this thread uses. With `train`, the first two are peers that
   * trade logits in training steps.
   */
  static async start(n: number, shape: HeadShape, train: ThreadTrainSetup | null = null): Promise<HeadPool> {
    if (!Number.isInteger(n) || n < 1) throw new Error(`HeadPool.start: ${n} threads`);
    if (train && n !== 2) throw new Error(`HeadPool.start: training runs on exactly 2 threads, not ${n}`);
    const backend = threadBackend();
    // The threads share OpenBLAS with this one and its thread count is process-wide: each thread sets
    // it to 1 when it starts, and close() puts this thread's back.
    const blas = backend === "wasm+blas" ? loadBlasAddon() : null;
    const saved = blas && "blas" in blas ? blas.blas.numThreads() : null;
    const channel = train ? new MessageChannel() : null;
    const threads = Array.from({ length: n }, (_, i) => new ThreadHandle(i, spawnThread()));
    const pool = new HeadPool(threads, backend, shape);
    pool.savedBlasThreads = saved;
    try {
      await Promise.all(
        threads.map((t, i) => {
          const peer = channel ? (i === 0 ? channel.port1 : channel.port2) : null;
          return t.call<string>({ op: "init", backend, shape, peer, train }, peer ? [peer] : []);
        }),
      );
    } catch (err) {
      await pool.close();
      throw new SedPipeError(`cannot start ${n} head threads on ${backend}: ${(err as Error).message}`, {
        hint: "set SED_PIPE_HEAD_THREADS=1 to run the heads on the stage's own thread",
        cause: err,
      });
    }
    if (saved !== null) setBlasThreads(1);
    return pool;
  }

  private thread(w: number): ThreadHandle {
    if (this.closed) throw new Error("the head pool is closed");
    const t = this.threads[w];
    if (!t) throw new Error(`no head thread ${w} (pool of ${this.threads.length})`);
    return t;
  }

  /**
   * Puts a head on thread w. Plain buffers are transferred (the caller must not use them afterwards);
   * SharedArrayBuffer-backed ones are shared and only read.
   */
  put(w: number, head: number, h: FlatHead): Promise<null> {
    const transfer = [h.params.buffer, ...Object.values(h.slots).map((a) => a.buffer)].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
    return this.thread(w).call<null>({ op: "put", head, params: h.params, slots: h.slots }, [...new Set(transfer)]);
  }

  /**
   * Reads a head back from thread w; keep=false frees it there. With `into` (SharedArrayBuffer-backed,
   * one array per part), the thread writes there and that same object is returned.
   */
  async take(w: number, head: number, keep: boolean, into: FlatHead | null = null): Promise<FlatHead> {
    for (const a of into ? [into.params, ...Object.values(into.slots)] : []) {
      if (!(a.buffer instanceof SharedArrayBuffer)) throw new Error("HeadPool.take: `into` must be SharedArrayBuffer-backed");
    }
    const r = await this.thread(w).call<FlatHead | null>({ op: "take", head, keep, into });
    return into ?? r!;
  }

  drop(w: number, head: number): Promise<null> {
    return this.thread(w).call<null>({ op: "drop", head });
  }

  /**
   * Logits of every head of `placement` (heads per thread) for `rows` rows of x, written into out at
   * offsets[head] (and, with softmax, p and lse likewise). All threads run at once; x, out, p and lse
   * must live on SharedArrayBuffers.
   */
  async logits(
    placement: number[][], x: Float32Array, rows: number, out: Float32Array, offsets: number[],
    softmax: { p: Float32Array; lse: Float64Array } | null = null,
  ): Promise<void> {
    for (const a of [x, out, softmax?.p, softmax?.lse]) {
      if (a && !(a.buffer instanceof SharedArrayBuffer)) throw new Error("HeadPool.logits: buffers must be SharedArrayBuffer-backed");
    }
    await Promise.all(
      placement.map((heads, w) =>
        heads.length === 0
          ? null
          : this.thread(w).call<null>({ op: "logits", heads, x, rows, out, offsets: heads.map((h) => offsets[h]), p: softmax?.p ?? null, lse: softmax?.lse ?? null }),
      ),
    );
  }

  /**
   * One SED step of the active pair [a on thread 0, b on thread 1] (a < b: loss positions 0 and 1).
   * ta / tb are the heads' AdamW step counts after this step. Returns thread 0's reply (it reports the loss).
   */
  async step(a: number, b: number, inp: { x: Float32Array; y: Int32Array; rows: number; ref: number; lr: number; update: boolean; ta: number; tb: number }, swap: boolean): Promise<StepReply> {
    // Copies of just the batch (a posted view would carry its whole underlying buffer).
    const base = { x: inp.x.slice(0, inp.rows * this.shape.dim), y: inp.y.slice(0, inp.rows), rows: inp.rows, ref: inp.ref, lr: inp.lr, update: inp.update };
    // swap: head a sits on thread 1 and b on thread 0; positions follow the head order, not the thread.
    const [onT0, onT1] = swap
      ? [{ head: b, pos: 1 as const, t: inp.tb }, { head: a, pos: 0 as const, t: inp.ta }]
      : [{ head: a, pos: 0 as const, t: inp.ta }, { head: b, pos: 1 as const, t: inp.tb }];
    const [r0, r1] = await Promise.all([
      this.thread(0).call<StepReply>({ op: "step", ...base, ...onT0, lead: onT0.pos === 0 }),
      this.thread(1).call<StepReply>({ op: "step", ...base, ...onT1, lead: onT1.pos === 0 }),
    ]);
    if (r0.skipped !== r1.skipped) throw new Error("head threads disagree on skipping a NaN step");
    return r0.loss ? r0 : r1;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.threads.map((t) => t.terminate()));
    if (this.savedBlasThreads !== null) setBlasThreads(this.savedBlasThreads);
  }
}
