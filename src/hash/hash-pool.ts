// A small pool of worker threads that sha256 whole files, so several files hash on several cores
// (node:crypto's update() runs on the calling thread). Owns the workers only; no caching here.
import { Worker } from "node:worker_threads";
import { availableParallelism } from "node:os";

// Plain CommonJS evaluated in the worker: it must run without tsx or any loader.
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
const { openSync, readSync, closeSync } = require("node:fs");
const CHUNK = 4 * 1024 * 1024;
const buf = Buffer.allocUnsafe(CHUNK);
parentPort.on("message", ({ id, path }) => {
  let fd;
  try {
    fd = openSync(path, "r");
    const h = createHash("sha256");
    let pos = 0;
    for (;;) {
      const n = readSync(fd, buf, 0, CHUNK, pos);
      if (n === 0) break;
      pos += n;
      h.update(n === CHUNK ? buf : buf.subarray(0, n));
    }
    parentPort.postMessage({ id, digest: "sha256:" + h.digest("hex") });
  } catch (e) {
    parentPort.postMessage({ id, error: { message: e.message, code: e.code } });
  } finally {
    if (fd !== undefined) { try { closeSync(fd); } catch {} }
  }
});
`;

interface Job {
  id: number;
  path: string;
  resolve: (digest: string) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
}

export class HashPool {
  private slots: Slot[] = [];
  private queue: Job[] = [];
  private nextId = 0;
  private closed = false;

  constructor(readonly size: number = Math.max(1, Math.min(4, availableParallelism()))) {}

  /** sha256 of the file's bytes ("sha256:<hex>"), computed on a worker thread. */
  digestFile(path: string): Promise<string> {
    if (this.closed) return Promise.reject(new Error("hash pool is closed"));
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, path, resolve, reject });
      this.pump();
    });
  }

  private spawn(): Slot {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    const slot: Slot = { worker, job: undefined };
    worker.on("message", (msg: { id: number; digest?: string; error?: { message: string; code?: string } }) => {
      const job = slot.job;
      slot.job = undefined;
      if (job && job.id === msg.id) {
        if (msg.error) job.reject(Object.assign(new Error(msg.error.message), { code: msg.error.code }));
        else job.resolve(msg.digest!);
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
    // Idle workers must not keep the process alive.
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
