// Where the heads live while training on the stage's thread: device tensors, or host buffers with
// keep_inactive_on_cpu. Owns uploads, downloads and step counts; computes nothing.
import * as tf from "@tensorflow/tfjs-core";
import { HEAD_PARAM_NAMES, headParamShapes, type EnsembleSnapshot, type HeadArrays, type HeadParamName, type HeadShape, type HeadTensors, type HeadList, type SnapshotOptions } from "./heads.ts";
import { slotNames } from "./optim.ts";
import { deviceTensors, headLayout, packHead, unpackHead, type DeviceHead, type HeadLayout } from "./device-head.ts";
import { readInto } from "./kernels/wasm-heap.ts";
import { headShapeOf, type TrainConfig } from "./train-config.ts";

/** Host copy of a head: flat params and flat slots, in HeadLayout order. */
interface HostHead {
  params: Float32Array;
  slots: Record<string, Float32Array>;
}

/** CPU backends (wasm, cpu, tfjs-node) read tensors synchronously; a GPU backend (webgpu) cannot. */
function hostReadsAreSync(): boolean {
  return tf.getBackend() !== "webgpu";
}

/**
 * The ensemble's weights and optimiser state. On device by default; with keep_inactive_on_cpu they live
 * as host Float32Arrays and only the active heads are uploaded per step (the reference parks inactive
 * heads on the CPU to save accelerator memory; here it keeps them out of the 32-bit wasm heap).
 */
export class EnsembleState {
  readonly shape: HeadShape;
  readonly layout: HeadLayout;
  readonly slotNames: string[];
  /** Optimiser steps taken per head (torch counts per parameter; a head's parameters always step together). */
  readonly headSteps: number[];
  private device: (DeviceHead | null)[];
  private host: (HostHead | null)[];
  private readonly shapes: Record<HeadParamName, number[]>;

  constructor(readonly cfg: TrainConfig, heads: HeadList, slots?: Record<string, HeadArrays>[], steps?: number[]) {
    this.shape = headShapeOf(cfg);
    this.layout = headLayout(this.shape);
    this.shapes = headParamShapes(this.shape);
    this.slotNames = slotNames(cfg.optimizer);
    const n = heads.length;
    this.headSteps = steps ? [...steps] : new Array<number>(n).fill(0);
    const hostHeads: HostHead[] = Array.from({ length: n }, (_, i) => ({
      params: packHead(heads.at(i)!, this.layout),
      slots: Object.fromEntries(
        this.slotNames.map((s) => [s, slots?.[i]?.[s] ? packHead(slots[i][s], this.layout) : new Float32Array(this.layout.total)]),
      ),
    }));
    // Host-kept heads are read back after every step, which only a CPU backend does synchronously;
    // on a GPU (webgpu) every head stays resident on the device instead.
    if (cfg.keep_inactive_on_cpu && hostReadsAreSync()) {
      this.host = hostHeads;
      this.device = hostHeads.map(() => null);
    } else {
      this.host = hostHeads.map(() => null);
      this.device = hostHeads.map((h) => this.upload(h));
    }
  }

  get size(): number {
    return this.headSteps.length;
  }

  private toDevice(flat: Float32Array): HeadTensors {
    const o = {} as HeadTensors;
    const v = unpackHead(flat, this.layout);
    for (const k of HEAD_PARAM_NAMES) o[k] = tf.tensor(v[k], this.shapes[k], "float32");
    return o;
  }

  /** Reads every tensor of t into `into` (flat, HeadLayout order; a new buffer when absent). */
  private toHost(t: HeadTensors, into?: Float32Array): Float32Array {
    const out = into ?? new Float32Array(this.layout.total);
    HEAD_PARAM_NAMES.forEach((k, i) => readInto(t[k], out, this.layout.offsets[i]));
    return out;
  }

  private upload(h: HostHead): DeviceHead {
    return {
      params: this.toDevice(h.params),
      slots: Object.fromEntries(Object.entries(h.slots).map(([s, a]) => [s, this.toDevice(a)])),
    };
  }

  /** Device tensors of head i (uploaded when kept on the host; then release() must follow). */
  acquire(i: number): DeviceHead {
    return this.device[i] ?? this.upload(this.host[i]!);
  }

  /** Stores head i's new tensors; the old ones (and, for host heads, the new ones after download) are disposed. */
  release(i: number, next: DeviceHead, prev: DeviceHead): void {
    if (this.device[i]) {
      const keep = new Set<tf.Tensor>(deviceTensors(next));
      tf.dispose(deviceTensors(prev).filter((t) => !keep.has(t)));
      this.device[i] = next;
      return;
    }
    // In place: snapshot() hands out copies (or views, to a caller done with them before this step).
    const h = this.host[i]!;
    this.toHost(next.params, h.params);
    for (const [s, t] of Object.entries(next.slots)) this.toHost(t, h.slots[s]);
    tf.dispose([...new Set([...deviceTensors(next), ...deviceTensors(prev)])]);
  }

  /** Done with acquired tensors that were not changed (eval). */
  releaseUnchanged(i: number, h: DeviceHead): void {
    if (!this.device[i]) tf.dispose(deviceTensors(h));
  }

  /** Reads every tensor of t into a new flat buffer, asynchronously (the only way a GPU backend reads). */
  private async toHostAsync(t: HeadTensors): Promise<Float32Array> {
    if (hostReadsAreSync()) return this.toHost(t);
    const out = new Float32Array(this.layout.total);
    for (const [i, k] of HEAD_PARAM_NAMES.entries()) out.set((await t[k].data()) as Float32Array, this.layout.offsets[i]);
    return out;
  }

  /** Host copies of weights and slots (reads the device once per tensor); see SnapshotOptions. */
  async snapshot(opts: SnapshotOptions = {}): Promise<EnsembleSnapshot> {
    const heads: HeadArrays[] = [];
    const slots: Record<string, HeadArrays>[] = [];
    for (let i = 0; i < this.size; i++) {
      const d = this.device[i];
      const h: HostHead = d
        ? { params: await this.toHostAsync(d.params), slots: Object.fromEntries(await Promise.all(Object.entries(d.slots).map(async ([s, t]) => [s, await this.toHostAsync(t)] as const))) }
        : opts.views
          ? this.host[i]!
          : { params: this.host[i]!.params.slice(), slots: Object.fromEntries(Object.entries(this.host[i]!.slots).map(([s, a]) => [s, a.slice()])) };
      heads.push(unpackHead(h.params, this.layout));
      slots.push(Object.fromEntries(Object.entries(h.slots).map(([s, a]) => [s, unpackHead(a, this.layout)])));
    }
    return { heads, slots };
  }

  dispose(): void {
    for (const d of this.device) if (d) tf.dispose(deviceTensors(d));
    this.device = this.device.map(() => null);
  }
}
