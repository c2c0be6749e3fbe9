// The worker-thread side of a head pool (head-pool.ts): one tfjs backend per thread, holding some
// heads of an ensemble. It computes logits (and their softmax) for eval, and one head's share of an
// SED training step, trading the pair's logits with its peer thread over a MessagePort. Pure
// compute: never reads files, never picks a backend on its own (the pool names the main thread's).
//
// The pool starts this module as a thread entry: from source under tsx, or as the stage bundle that
// contains it (the bundle's other top-level code does nothing in a thread).
import { isMainThread, parentPort, workerData, type MessagePort, type TransferListItem } from "node:worker_threads";
import * as tf from "@tensorflow/tfjs-core";
import { deviceTensors, updatedHead, type DeviceHead } from "./device-head.ts";
import { HEAD_PARAM_NAMES, headBackward, headForwardCached, headLogits, headParamShapes, type HeadShape, type HeadTensors } from "./heads.ts";
import { readInto } from "./kernels/wasm-heap.ts";
import { sedLossWithGrad } from "./losses.ts";
import { gradsFinite } from "./optim.ts";
import { evalSoftmaxRows } from "./kernels/native-eval-ops.ts";
import type { EffectiveLoss, TrainConfig } from "./train-config.ts";

/** workerData key that makes a module load serve as a head thread. */
export const HEAD_THREAD_FLAG = "sedPipeHeadThread";

export interface ThreadTrainSetup {
  loss: EffectiveLoss;
  optimizer: TrainConfig["optimizer"];
  slots: string[];
  classes: number;
}

/** A head as flat host buffers in HEAD_PARAM_NAMES order (params, and each optimiser slot likewise). */
export interface FlatHead {
  params: Float32Array;
  slots: Record<string, Float32Array>;
}

export type ThreadRequest =
  | { op: "init"; backend: string; shape: HeadShape; peer: MessagePort | null; train: ThreadTrainSetup | null }
  | ({ op: "put"; head: number } & FlatHead)
  /** Reads a head back (into the given shared buffers, else new ones); keep=false also frees it in the thread. */
  | { op: "take"; head: number; keep: boolean; into: FlatHead | null }
  | { op: "drop"; head: number }
  /**
   * Logits of `heads` for `rows` rows of x into out at offsets[i] (rows x classes each); with p/lse,
   * also each row's softmax (same offsets) and logsumexp (offset / classes). Buffers are shared.
   */
  | { op: "logits"; heads: number[]; x: Float32Array; rows: number; out: Float32Array; offsets: number[]; p: Float32Array | null; lse: Float64Array | null }
  /** This thread's head of an active pair: pos is its place in the pair, lead says who reports the loss. */
  | { op: "step"; head: number; pos: 0 | 1; x: Float32Array; y: Int32Array; rows: number; ref: number; lr: number; update: boolean; t: number; lead: boolean };

export interface StepReply {
  skipped: boolean;
  /** task, repulsion, total as float32 values; from the lead thread only. */
  loss: [number, number, number] | null;
}

export type ThreadReply = { id: number; ok: true; value: unknown } | { id: number; ok: false; message: string; stack?: string };

interface Peer {
  port: MessagePort;
  queue: unknown[];
  waiting: ((v: unknown) => void) | null;
}

/** tf.tidy for results that are plain objects of tensors (tidy keeps every tensor it returns). */
function tidyKeep<T>(fn: () => T): T {
  return tf.tidy(fn as unknown as () => tf.TensorContainer) as unknown as T;
}

/** A head's tensors into one flat buffer, in HEAD_PARAM_NAMES order. */
function flatOf(t: HeadTensors, offsets: number[], out: Float32Array): Float32Array {
  HEAD_PARAM_NAMES.forEach((k, i) => readInto(t[k], out, offsets[i]));
  return out;
}

class HeadThread {
  private readonly heads = new Map<number, DeviceHead>();
  private shape!: HeadShape;
  private shapes!: ReturnType<typeof headParamShapes>;
  private offsets: number[] = [];
  private total = 0;
  private train: ThreadTrainSetup | null = null;
  private peer: Peer | null = null;
  private softmax: ReturnType<typeof evalSoftmaxRows> | null = null;

  async init(r: Extract<ThreadRequest, { op: "init" }>): Promise<string> {
    const { initBackend } = await import("./backend.ts");
    // The backend the pool names says which matMul path to load (wasm+blas or wasm-fixed), so the
    // thread needs no settings of its own. One OpenBLAS thread per head thread: the pool's threads
    // are the parallelism.
    const choice = await initBackend(r.backend, { blasThreads: 1 });
    this.shape = r.shape;
    this.shapes = headParamShapes(r.shape);
    this.total = 0;
    this.offsets = HEAD_PARAM_NAMES.map((k) => {
      const o = this.total;
      this.total += this.shapes[k].reduce((a, b) => a * b, 1);
      return o;
    });
    this.train = r.train;
    // Chosen after the backend, exactly as the stage's thread chooses it (the same path loads in both).
    this.softmax = evalSoftmaxRows();
    if (r.peer) {
      const peer: Peer = { port: r.peer, queue: [], waiting: null };
      r.peer.on("message", (m: unknown) => {
        if (peer.waiting) {
          const w = peer.waiting;
          peer.waiting = null;
          w(m);
        } else peer.queue.push(m);
      });
      this.peer = peer;
    }
    return `${choice.name} (${choice.reason})`;
  }

  private fromFlat(flat: Float32Array): HeadTensors {
    const o = {} as HeadTensors;
    HEAD_PARAM_NAMES.forEach((k, i) => {
      o[k] = tf.tensor(flat.subarray(this.offsets[i], this.offsets[i] + this.shapes[k].reduce((a, b) => a * b, 1)), this.shapes[k], "float32");
    });
    return o;
  }

  put(r: Extract<ThreadRequest, { op: "put" }>): null {
    if (r.params.length !== this.total) throw new Error(`put: head ${r.head} has ${r.params.length} values, expected ${this.total}`);
    this.drop(r.head);
    this.heads.set(r.head, {
      params: this.fromFlat(r.params),
      slots: Object.fromEntries(Object.entries(r.slots).map(([s, a]) => [s, this.fromFlat(a)])),
    });
    return null;
  }

  private get(head: number): DeviceHead {
    const h = this.heads.get(head);
    if (!h) throw new Error(`head ${head} is not on this thread`);
    return h;
  }

  take(head: number, keep: boolean, into: FlatHead | null): FlatHead {
    const h = this.get(head);
    const buf = (a: Float32Array | undefined, what: string) => {
      if (!a) return new Float32Array(this.total);
      if (a.length !== this.total) throw new Error(`take: the buffer for ${what} holds ${a.length} values, expected ${this.total}`);
      return a;
    };
    const out: FlatHead = {
      params: flatOf(h.params, this.offsets, buf(into?.params, "params")),
      slots: Object.fromEntries(Object.entries(h.slots).map(([s, t]) => [s, flatOf(t, this.offsets, buf(into?.slots[s], s))])),
    };
    if (!keep) this.drop(head);
    return out;
  }

  drop(head: number): null {
    const h = this.heads.get(head);
    if (h) tf.dispose(deviceTensors(h));
    this.heads.delete(head);
    return null;
  }

  logits(r: Extract<ThreadRequest, { op: "logits" }>): null {
    const { dim, classes } = this.shape;
    const x = tf.tensor2d(r.x.subarray(0, r.rows * dim), [r.rows, dim]);
    try {
      r.heads.forEach((head, i) => {
        const y = tf.tidy(() => headLogits(this.get(head).params, x, this.shape));
        const off = r.offsets[i];
        readInto(y, r.out, off);
        y.dispose();
        if (r.p && r.lse) this.softmax!(r.out, off, off + r.rows * classes, classes, r.p, r.lse);
      });
    } finally {
      x.dispose();
    }
    return null;
  }

  private nextFromPeer(): Promise<unknown> {
    const peer = this.peer;
    if (!peer) return Promise.reject(new Error("this head thread has no peer"));
    if (peer.queue.length) return Promise.resolve(peer.queue.shift());
    return new Promise((res) => (peer.waiting = res));
  }

  async step(r: Extract<ThreadRequest, { op: "step" }>): Promise<StepReply> {
    const setup = this.train;
    if (!setup || !this.peer) throw new Error("step: the thread was not set up for training");
    const h = this.get(r.head);
    const { dim } = this.shape;
    const C = setup.classes;
    const x = tf.tensor2d(r.x.subarray(0, r.rows * dim), [r.rows, dim]);
    const y = tf.tensor1d(r.y.subarray(0, r.rows), "int32");
    const fwd = tidyKeep(() => headForwardCached(h.params, x, this.shape));
    let parts: { task: tf.Scalar; repulsion: tf.Scalar; total: tf.Scalar; g: HeadTensors; finite: tf.Scalar | null };
    try {
      const mine = fwd.logits.dataSync() as Float32Array;
      this.peer.port.postMessage(mine, [mine.buffer as ArrayBuffer]);
      const theirs = (await this.nextFromPeer()) as Float32Array;
      parts = tidyKeep(() => {
        const other = tf.tensor2d(theirs, [r.rows, C]);
        // Both threads evaluate the loss on the same two logits in the same order: the same bits.
        const l = sedLossWithGrad(r.pos === 0 ? [fwd.logits, other] : [other, fwd.logits], y, C, setup.loss, r.ref);
        const g = headBackward(h.params, fwd.cache, l.dlogits[r.pos]);
        const o = setup.optimizer;
        const finite = r.update && o.type === "sgd" && o.nan_check ? gradsFinite(HEAD_PARAM_NAMES.map((k) => g[k])) : null;
        return { task: l.task, repulsion: l.repulsion, total: l.total, g, finite };
      });
    } finally {
      tf.dispose([x, y, fwd.logits, ...Object.values(fwd.cache)]);
    }
    try {
      let ok = true;
      if (parts.finite) {
        // The reference skips the step when ANY gradient of the pair holds a NaN: both threads agree.
        const mineOk = parts.finite.dataSync()[0] !== 0;
        this.peer.port.postMessage(mineOk);
        ok = mineOk && (await this.nextFromPeer()) === true;
      }
      if (r.update && ok) {
        const p = parts;
        const next = tidyKeep(() => updatedHead(h, p.g, setup.optimizer, setup.slots, r.lr, r.t));
        const keep = new Set(deviceTensors(next));
        tf.dispose(deviceTensors(h).filter((t) => !keep.has(t)));
        this.heads.set(r.head, next);
      }
      const loss = r.lead ? ([parts.task.dataSync()[0], parts.repulsion.dataSync()[0], parts.total.dataSync()[0]] as [number, number, number]) : null;
      return { skipped: !ok, loss };
    } finally {
      tf.dispose([parts.task, parts.repulsion, parts.total, ...Object.values(parts.g), ...(parts.finite ? [parts.finite] : [])]);
    }
  }
}

async function serve(port: MessagePort): Promise<void> {
  const t = new HeadThread();
  // Requests are handled one at a time, in order (the pool awaits each reply before the next request).
  let chain = Promise.resolve();
  port.on("message", (msg: { id: number; req: ThreadRequest }) => {
    chain = chain.then(async () => {
      const { id, req } = msg;
      try {
        let value: unknown;
        const transfer: TransferListItem[] = [];
        switch (req.op) {
          case "init": value = await t.init(req); break;
          case "put": value = t.put(req); break;
          case "take": {
            const f = t.take(req.head, req.keep, req.into);
            // Shared buffers were written in place; new ones move to the caller without a copy.
            for (const a of [f.params, ...Object.values(f.slots)]) if (a.buffer instanceof ArrayBuffer) transfer.push(a.buffer);
            value = req.into ? null : f;
            break;
          }
          case "drop": value = t.drop(req.head); break;
          case "logits": value = t.logits(req); break;
          case "step": value = await t.step(req); break;
        }
        port.postMessage({ id, ok: true, value } satisfies ThreadReply, transfer);
      } catch (err) {
        const e = err as Error;
        port.postMessage({ id, ok: false, message: e?.message ?? String(err), stack: e?.stack } satisfies ThreadReply);
      }
    });
  });
}

if (!isMainThread && parentPort && (workerData as Record<string, unknown> | null)?.[HEAD_THREAD_FLAG] === true) void serve(parentPort);
