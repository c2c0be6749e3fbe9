// SED training with the active pair on two head threads (head-pool.ts): which thread holds each head,
// the steps and the validation there. No epoch loop (trainer.ts), no choosing (ensemble-trainer.ts).
import * as tf from "@tensorflow/tfjs-core";
import { headLayout, packHead, unpackHead, type HeadLayout } from "./device-head.ts";
import { HeadPool, sharedF32, type FlatHead } from "./head-pool.ts";
import type { EnsembleSnapshot, HeadArrays, HeadList, SnapshotOptions } from "./heads.ts";
import { slotNames } from "./optim.ts";
import { effectiveLoss, headShapeOf, type TrainConfig } from "./train-config.ts";
import type { StepAccumulators } from "./epoch-log.ts";
import type { EvalSource } from "./train-sources.ts";
import { EvalTally, batchCounts, type EvalOptions, type EvalResult } from "./validation-tally.ts";

export interface ThreadedStepInput {
  x: Float32Array;
  y: Int32Array;
  rows: number;
  /** The active pair, ascending. */
  active: number[];
  ref: number;
  lr: number;
  update: boolean;
}

function sharedHead(total: number, slots: string[]): FlatHead {
  return { params: sharedF32(total), slots: Object.fromEntries(slots.map((s) => [s, sharedF32(total)])) };
}

/**
 * Each step's active pair runs one head per thread; the threads trade the pair's logits, each
 * evaluates the (identical) loss and back-propagates and updates its own head. Owns where each head
 * lives (which thread, or the host with keep_inactive_on_cpu) and its AdamW step count.
 */
export class ThreadedEnsemble {
  readonly headSteps: number[];
  readonly layout: HeadLayout;
  readonly slotNames: string[];
  /** Thread of each head (device mode); null for heads kept on the host. */
  private readonly owner: (number | null)[];
  /** keep_inactive_on_cpu: the master copy of every head (shared buffers the threads read and write). */
  private readonly host: FlatHead[] | null;
  /** Device mode: the shared buffers a head passes through when it moves between threads. */
  private readonly mailbox: FlatHead | null;
  moves = 0;

  /** host: the shared master copies (keep_inactive_on_cpu), or null when the heads live on the threads. */
  private constructor(readonly cfg: TrainConfig, private readonly pool: HeadPool, host: FlatHead[] | null, steps: number[]) {
    this.layout = headLayout(headShapeOf(cfg));
    this.slotNames = slotNames(cfg.optimizer);
    this.headSteps = [...steps];
    this.owner = steps.map(() => null);
    this.host = host;
    this.mailbox = host ? null : sharedHead(this.layout.total, this.slotNames);
  }

  get size(): number {
    return this.headSteps.length;
  }

  /** Two threads; heads alternate between them (device mode) or stay on the host (keep_inactive_on_cpu). */
  static async start(cfg: TrainConfig, heads: HeadList, slots?: Record<string, HeadArrays>[], steps?: number[]): Promise<ThreadedEnsemble> {
    if (cfg.random_select !== 2) throw new Error(`head threads train pairs (random_select 2), not ${cfg.random_select}`);
    const shape = headShapeOf(cfg);
    const layout = headLayout(shape);
    const names = slotNames(cfg.optimizer);
    // One head at a time into its final buffers (50 paper-size heads with momentum are 2.2 GB).
    const flatHead = (i: number, alloc: (n: number) => Float32Array): FlatHead => {
      const pack = (h: HeadArrays | undefined) => {
        const out = alloc(layout.total);
        if (h) out.set(packHead(h, layout));
        return out;
      };
      return { params: pack(heads.at(i)), slots: Object.fromEntries(names.map((s) => [s, pack(slots?.[i]?.[s])])) };
    };
    const pool = await HeadPool.start(2, shape, { loss: effectiveLoss(cfg), optimizer: cfg.optimizer, slots: names, classes: cfg.num_classes });
    try {
      const n = heads.length;
      const host = cfg.keep_inactive_on_cpu ? Array.from({ length: n }, (_, i) => flatHead(i, sharedF32)) : null;
      const te = new ThreadedEnsemble(cfg, pool, host, steps ?? new Array<number>(n).fill(0));
      if (!host) {
        for (let i = 0; i < n; i++) {
          await pool.put(i % 2, i, flatHead(i, (n) => new Float32Array(n)));
          te.owner[i] = i % 2;
        }
      }
      return te;
    } catch (err) {
      await pool.close();
      throw err;
    }
  }

  /** One SED step of the pair; the loss parts (and a skipped NaN step) go to acc exactly as sedTrainStep adds them. */
  async step(inp: ThreadedStepInput, acc: StepAccumulators): Promise<void> {
    const [a, b] = inp.active;
    if (inp.active.length !== 2 || !(a < b)) throw new Error(`ThreadedEnsemble.step: expected an ascending pair, got [${inp.active}]`);
    let swap: boolean;
    // Uploads are not awaited before the step: each thread handles its requests in order, so its step
    // starts right after its own upload, and a thread that has nothing to receive starts at once.
    let uploads: Promise<unknown> = Promise.resolve();
    if (this.host) {
      uploads = Promise.all([this.pool.put(0, a, this.host[a]), this.pool.put(1, b, this.host[b])]);
      swap = false;
    } else {
      if (this.owner[a] === this.owner[b]) {
        // Both on one thread: move b to the other (its weights and optimiser state, two copies). The
        // sending thread goes on with a's forward while the other one copies b in.
        const from = this.owner[b]!;
        await this.pool.take(from, b, false, this.mailbox);
        uploads = this.pool.put(1 - from, b, this.mailbox!);
        this.owner[b] = 1 - from;
        this.moves++;
      }
      swap = this.owner[a] === 1;
    }
    const stepping = this.pool.step(a, b, { x: inp.x, y: inp.y, rows: inp.rows, ref: inp.ref, lr: inp.lr, update: inp.update, ta: this.headSteps[a] + 1, tb: this.headSteps[b] + 1 }, swap);
    const [, r] = await Promise.all([uploads, stepping]);
    if (inp.update && !r.skipped) {
      this.headSteps[a]++;
      this.headSteps[b]++;
    }
    if (this.host) {
      // Written back in place; a frozen step changed nothing, so the threads just free the pair.
      if (inp.update && !r.skipped) await Promise.all([this.pool.take(0, a, false, this.host[a]), this.pool.take(1, b, false, this.host[b])]);
      else await Promise.all([this.pool.drop(0, a), this.pool.drop(1, b)]);
    }
    const [task, repulsion, total] = r.loss!;
    const parts = { task: tf.scalar(task), repulsion: tf.scalar(repulsion), total: tf.scalar(total), skipped: r.skipped ? tf.scalar(1) : undefined };
    acc.add(parts);
    tf.dispose([parts.task, parts.repulsion, parts.total, ...(parts.skipped ? [parts.skipped] : [])]);
  }

  /** Host copies of weights and slots; see SnapshotOptions. */
  async snapshot(opts: SnapshotOptions = {}): Promise<EnsembleSnapshot> {
    const heads: HeadArrays[] = [];
    const slots: Record<string, HeadArrays>[] = [];
    for (let i = 0; i < this.size; i++) {
      const f = this.host && opts.views ? this.host[i] : this.host ? { params: this.host[i].params.slice(), slots: Object.fromEntries(Object.entries(this.host[i].slots).map(([s, a]) => [s, a.slice()])) } : await this.pool.take(this.owner[i]!, i, true);
      heads.push(unpackHead(f.params, this.layout));
      slots.push(Object.fromEntries(Object.entries(f.slots).map(([s, a]) => [s, unpackHead(a, this.layout)])));
    }
    return { heads, slots };
  }

  /**
   * evaluateEnsemble's results (batch by batch, every head at once) with the heads' logits computed on
   * the threads. Host-kept heads are placed on the threads (weights only) for the evaluation.
   */
  async evaluate(val: EvalSource, batchSize: number, opts: EvalOptions = {}): Promise<EvalResult> {
    const M = this.size;
    const C = this.cfg.num_classes;
    const loss = opts.loss;
    if (loss?.computeRepulsion && !opts.refRng) throw new Error("evaluate: refRng is required for the repulsion term");
    const placement: number[][] = [[], []];
    const placed: number[] = [];
    const tally = new EvalTally(M);
    try {
      for (let i = 0; i < M; i++) {
        if (this.host) {
          await this.pool.put(i % 2, i, { params: this.host[i].params, slots: {} });
          placed.push(i);
          placement[i % 2].push(i);
        } else placement[this.owner[i]!].push(i);
      }
      const x = sharedF32(batchSize * val.dim);
      const out = sharedF32(M * batchSize * C);
      let nb = 0;
      for (const b of val.batches(batchSize)) {
        opts.signal?.throwIfAborted();
        const ref = loss?.computeRepulsion ? opts.refRng!.int(M) : 0;
        const n = b.count;
        x.set(b.embed.subarray(0, n * val.dim));
        const offsets = Array.from({ length: M }, (_, h) => h * n * C);
        await this.pool.logits(placement, x, n, out, offsets);
        const y = tf.tensor1d(b.label.subarray(0, n), "int32");
        try {
          const [dc, dl] = tf.tidy(() => batchCounts(offsets.map((o) => tf.tensor2d(out.subarray(o, o + n * C), [n, C])), y, C, loss, ref));
          tally.add(dc, dl);
          tf.dispose([dc, dl]);
        } finally {
          y.dispose();
        }
        nb++;
      }
      return tally.result(val.rows, nb, loss !== undefined);
    } finally {
      tally.dispose();
      await Promise.all(placed.map((i) => this.pool.drop(i % 2, i)));
    }
  }

  async dispose(): Promise<void> {
    await this.pool.close();
  }
}
