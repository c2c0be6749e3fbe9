// A head's tensors on the compute backend (parameters and optimiser slots) and its optimiser step.
// Shared by the single-thread trainer (single-thread-training.ts, ensemble-state.ts) and the head
// threads (head-thread.ts).
import * as tf from "@tensorflow/tfjs-core";
import { HEAD_PARAM_NAMES, headParamShapes, type HeadArrays, type HeadShape, type HeadTensors } from "./heads.ts";
import { adamwUpdate, sgdUpdate } from "./optim.ts";
import type { TrainConfig } from "./train-config.ts";
import { fusedOptimizer } from "./wasm-blas.ts";

/**
 * A head on the device: one tensor per parameter (and per parameter and slot). The forward and the
 * optimiser use them as they are; a flat per-head buffer would cost a split and a concat of every
 * weight (2 x 22 MB copies per head at paper sizes) each step.
 */
export interface DeviceHead {
  params: HeadTensors;
  slots: Record<string, HeadTensors>;
}
export function deviceTensors(h: DeviceHead): tf.Tensor[] {
  return [...Object.values(h.params), ...Object.values(h.slots).flatMap((s) => Object.values(s))];
}

/**
 * One head's optimiser step as new tensors (call inside tidy). `step` is the head's AdamW step count
 * after increment. One native loop per parameter on wasm+BLAS (same formulas, 1.5-3x faster); tensor
 * ops elsewhere. Shared by sedTrainStep and the head threads.
 */
export function updatedHead(h: DeviceHead, grads: HeadTensors, o: TrainConfig["optimizer"], slots: string[], lr: number, step: number): DeviceHead {
  const opt = fusedOptimizer() ?? { sgdUpdate, adamwUpdate };
  const d: DeviceHead = { params: {} as HeadTensors, slots: Object.fromEntries(slots.map((s) => [s, {} as HeadTensors])) };
  for (const k of HEAD_PARAM_NAMES) {
    const sl = Object.fromEntries(slots.map((s) => [s, h.slots[s][k]]));
    const u = o.type === "sgd" ? opt.sgdUpdate(h.params[k], grads[k], sl, o, lr) : opt.adamwUpdate(h.params[k], grads[k], sl, o, lr, step);
    d.params[k] = u.param;
    for (const s of slots) d.slots[s][k] = u.slots[s];
  }
  return d;
}

/** One head's parameters (or one optimiser slot) as a single flat buffer, params in HEAD_PARAM_NAMES order. */
export interface HeadLayout {
  sizes: number[];
  offsets: number[];
  total: number;
}

export function headLayout(s: HeadShape): HeadLayout {
  const sh = headParamShapes(s);
  const sizes = HEAD_PARAM_NAMES.map((k) => sh[k].reduce((a, b) => a * b, 1));
  const offsets: number[] = [];
  let t = 0;
  for (const n of sizes) {
    offsets.push(t);
    t += n;
  }
  return { sizes, offsets, total: t };
}

export function packHead(h: HeadArrays, l: HeadLayout): Float32Array {
  const out = new Float32Array(l.total);
  HEAD_PARAM_NAMES.forEach((k, i) => out.set(h[k], l.offsets[i]));
  return out;
}

/** Views into `flat` (no copy). */
export function unpackHead(flat: Float32Array, l: HeadLayout): HeadArrays {
  const o = {} as HeadArrays;
  HEAD_PARAM_NAMES.forEach((k, i) => (o[k] = flat.subarray(l.offsets[i], l.offsets[i] + l.sizes[i])));
  return o;
}
