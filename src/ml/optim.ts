// Optimiser updates with torch semantics (SGD with momentum + coupled weight decay + optional NaN
// skip; AdamW with decoupled weight decay), as pure tensor functions of (params, grads, state).
// Never writes into an existing tensor: every update returns new tensors (the wasm backend caches
// packed matMul weights by tensor id, so in-place writes would leave stale weights in use).
import * as tf from "@tensorflow/tfjs-core";
import type { TrainConfig } from "./train-config.ts";

export type OptimizerConfig = TrainConfig["optimizer"];

/** Slot names per parameter: SGD keeps "momentum", AdamW keeps "exp_avg" and "exp_avg_sq". */
export function slotNames(o: OptimizerConfig): string[] {
  if (o.type === "sgd") return o.momentum > 0 ? ["momentum"] : [];
  return ["exp_avg", "exp_avg_sq"];
}

export interface ParamUpdate {
  param: tf.Tensor;
  /** slot name -> tensor */
  slots: Record<string, tf.Tensor>;
}

/**
 * One torch SGD step for one parameter (dampening 0, nesterov off):
 *   g = grad + wd * p;  buf = momentum * buf + g  (buf starts as zeros, so the first step gives buf = g
 *   exactly, as torch's clone);  p = p - lr * buf.
 */
export function sgdUpdate(p: tf.Tensor, g: tf.Tensor, slots: Record<string, tf.Tensor>, o: Extract<OptimizerConfig, { type: "sgd" }>, lr: number): ParamUpdate {
  let d = o.weight_decay !== 0 ? tf.add(g, tf.mul(p, o.weight_decay)) : g;
  const out: Record<string, tf.Tensor> = {};
  if (o.momentum > 0) {
    d = tf.add(tf.mul(slots.momentum, o.momentum), d);
    out.momentum = d;
  }
  return { param: tf.sub(p, tf.mul(d, lr)), slots: out };
}

/**
 * One torch AdamW step for one parameter (`step` = this parameter's step count after increment):
 *   p = p * (1 - lr * wd);  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *   p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 */
export function adamwUpdate(p: tf.Tensor, g: tf.Tensor, slots: Record<string, tf.Tensor>, o: Extract<OptimizerConfig, { type: "adamw" }>, lr: number, step: number): ParamUpdate {
  const [b1, b2] = o.betas;
  const decayed = o.weight_decay !== 0 ? tf.mul(p, 1 - lr * o.weight_decay) : p;
  const m = tf.add(tf.mul(slots.exp_avg, b1), tf.mul(g, 1 - b1));
  const v = tf.add(tf.mul(slots.exp_avg_sq, b2), tf.mul(tf.square(g), 1 - b2));
  const bc1 = 1 - Math.pow(b1, step);
  const bc2 = 1 - Math.pow(b2, step);
  const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(bc2)), o.eps);
  const param = tf.sub(decayed, tf.mul(tf.div(m, denom), lr / bc1));
  return { param, slots: { exp_avg: m, exp_avg_sq: v } };
}

/** A boolean scalar: true when no gradient holds a NaN (the reference's NaN-checking SGD wrapper). */
export function gradsFinite(grads: tf.Tensor[]): tf.Scalar {
  const anyNan = grads.map((g) => tf.any(tf.isNaN(g)));
  return tf.logicalNot(anyNan.length === 1 ? anyNan[0] : tf.any(tf.stack(anyNan))) as tf.Scalar;
}
