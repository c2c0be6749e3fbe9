// sha256 of bytes and of files: THE file hash of sed-pipe. One implementation (`sha256FileSync`) runs
// on this thread for small files and, for big ones, on a small pool of worker threads so several files
// hash on several cores (node:crypto's update() runs on the calling thread). No caching here.
import { createHash } from "node:crypto";
import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";

/** sha256 of bytes or a string (utf-8), lowercase hex. */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/**
 * sha256 (hex) of a file's bytes, read in 4 MiB blocks: no whole-file buffering. Self-contained on
 * purpose (it fetches its modules itself): the hash pool runs this very function's source in its
 * worker threads, which load no TypeScript.
 */
export function sha256FileSync(path: string): string {
  const fs = process.getBuiltinModule("node:fs");
  const crypto = process.getBuiltinModule("node:crypto");
  const fd = fs.openSync(path, "r");
  try {
    const size = fs.fstatSync(fd).size;
    // +1: a file that grew since the stat is still read to its end.
    const buf = Buffer.allocUnsafe(Math.min(4 * 1024 * 1024, size + 1));
    const hash = crypto.createHash("sha256");
    let pos = 0;
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, pos);
      if (n === 0) break;
      pos += n;
      hash.update(n === buf.length ? buf : buf.subarray(0, n));
    }
    return hash.digest("hex");
  } finally {
    fs.closeSync(fd);
  }
}

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const sha256FileSync = ${sha256FileSync.toString()};
parentPort.on("message", ({ id, path }) => {
  try {
    parentPort.postMessage({ id, hex: sha256FileSync(path) });
  } catch (e) {
    parentPort.postMessage({ id, error: { message: e.message, code: e.code } });
  }
});
`;

interface Job {
  id: number;
  path: string;
  resolve: (hex: string) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
}

/** Worker threads that run sha256FileSync; idle threads never keep the process alive. */
export class HashPool {
  private slots: Slot[] = [];
  private queue: Job[] = [];
  private nextId = 0;
  private closed = false;

  constructor(readonly size: number = Math.max(1, Math.min(4, availableParallelism()))) {}

  /** sha256 (hex) of the file's bytes, computed on a worker thread. */
  sha256File(path: string): Promise<string> {
    if (this.closed) return Promise.reject(new Error("hash pool is closed"));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, path, resolve, reject });
      this.pump();
    });
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    const slot: Slot = { worker, job: undefined };
    worker.on("message", (msg: { id: number; hex?: string; error?: { message: string; code?: string } }) => {
      const job = slot.job;
      slot.job = undefined;
      if (job && job.id === msg.id) {
        if (msg.error) job.reject(Object.assign(new Error(msg.error.message), { code: msg.error.code }));
        else job.resolve(msg.hex!);
      }
      this.pump();
    });
    worker.on("error", (err) => {
      // A crashed worker fails its job and is replaced on the next pump.
      slot.job?.reject(err);
      slot.job = undefined;
      this.slots = this.slots.filter((s) => s !== slot);
      this.pump();
    });
    worker.unref();
    this.slots.push(slot);
    return slot;
  }

  private pump(): void {
    while (this.queue.length) {
      let slot = this.slots.find((s) => !s.job);
      if (!slot && this.slots.length < this.size) slot = this.spawn();
      if (!slot) break;
      const job = this.queue.shift()!;
      slot.job = job;
      slot.worker.ref();
      slot.worker.postMessage({ id: job.id, path: job.path });
    }
    for (const s of this.slots) if (!s.job) s.worker.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    const slots = this.slots;
    this.slots = [];
    await Promise.all(slots.map((s) => s.worker.terminate()));
  }
}

let shared: HashPool | undefined;

/** The process-wide pool (created on first use). */
export function sharedHashPool(): HashPool {
  shared ??= new HashPool();
  return shared;
}

/** Files at least this big are hashed on the pool; smaller ones cost less on this thread. */
export const POOL_MIN_BYTES = 1024 * 1024;

/**
 * sha256 (hex) of a file: on the shared pool when it is big (the event loop stays free, so an abort
 * is seen at once), else here. `size` saves a stat when the caller has one.
 */
export async function sha256File(path: string, opts: { size?: number; signal?: AbortSignal; pool?: HashPool | null } = {}): Promise<string> {
  opts.signal?.throwIfAborted();
  const size = opts.size ?? (await import("node:fs/promises").then((fs) => fs.stat(path))).size;
  const pool = opts.pool === undefined ? sharedHashPool() : opts.pool;
  if (!pool || size < POOL_MIN_BYTES) return sha256FileSync(path);
  if (!opts.signal) return pool.sha256File(path);
  const signal = opts.signal;
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    pool.sha256File(path).then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}
