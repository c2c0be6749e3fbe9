// The trainable SED head (reference §1.2: the rest of DeiT-3 block 12 + final LayerNorm + Linear), its
// init and its ensemble file format. Owns head math and (de)serialisation; never trains or reads features.
import * as tf from "@tensorflow/tfjs-core";
import { InputError } from "../errors.ts";
import { truncNormalArray, type Rng } from "../rng.ts";
import { readSafetensors, writeSafetensors, type SafeTensor } from "../io/safetensors.ts";
import { expFast } from "./kernels/native-exp.ts";
import { nativeEvalOps } from "./kernels/native-eval-ops.ts";

export interface HeadShape {
  dim: number;
  hidden: number;
  classes: number;
  /** LayerNorm epsilon; 1e-6 as in DeiT-3. */
  eps?: number;
}

/** State-dict order of one `TimmVitFinalLayers` as tabulated in reference §1.2. */
export const HEAD_PARAM_NAMES = [
  "gamma_2",
  "mlp.fc1.weight",
  "mlp.fc1.bias",
  "mlp.fc2.weight",
  "mlp.fc2.bias",
  "norm2.weight",
  "norm2.bias",
  "norm.weight",
  "norm.bias",
  "head.weight",
  "head.bias",
] as const;
export type HeadParamName = (typeof HEAD_PARAM_NAMES)[number];
/** Torch layout: a Linear weight is [out, in]. */
export type HeadArrays = Record<HeadParamName, Float32Array>;
export type HeadTensors = Record<HeadParamName, tf.Tensor>;

export const ENSEMBLE_FORMAT = "sed-pipe-ensemble-v1";
export const DEFAULT_LN_EPS = 1e-6;

export function headParamShapes(s: HeadShape): Record<HeadParamName, number[]> {
  const { dim: d, hidden: h, classes: c } = s;
  return {
    gamma_2: [d],
    "mlp.fc1.weight": [h, d],
    "mlp.fc1.bias": [h],
    "mlp.fc2.weight": [d, h],
    "mlp.fc2.bias": [d],
    "norm2.weight": [d],
    "norm2.bias": [d],
    "norm.weight": [d],
    "norm.bias": [d],
    "head.weight": [c, d],
    "head.bias": [c],
  };
}

export function headParamCount(s: HeadShape): number {
  const shapes = headParamShapes(s);
  return HEAD_PARAM_NAMES.reduce((n, k) => n + shapes[k].reduce((a, b) => a * b, 1), 0);
}

function layerNorm(x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor, eps: number): tf.Tensor2D {
  // Biased variance, as torch.nn.LayerNorm.
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), w), b) as tf.Tensor2D;
}

/** Exact (erf) GELU, as torch.nn.GELU() with approximate='none'. */
export function geluExact(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

function linear(x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor): tf.Tensor2D {
  // w is [out, in]: on wasm, initBackend installs matMul kernels (OpenBLAS, or transpose-first
  // XNNPACK) that avoid tfjs-wasm's slow transposed path. The bias rides in the same kernel (one
  // float add per element either way, so the same bits as a separate tf.add, one pass fewer).
  return tf.fused.matMul({ a: x, b: w as tf.Tensor2D, transposeB: true, bias: b }) as tf.Tensor2D;
}

/**
 * logits = head(LN(x + gamma_2 * fc2(GELU(fc1(LN2(x)))))). No tidy inside: the caller tidies (so
 * gradients can be taken through it).
 */
export function headLogits(p: HeadTensors, x: tf.Tensor2D, s: HeadShape): tf.Tensor2D {
  const eps = s.eps ?? DEFAULT_LN_EPS;
  // Inference only: with the OpenBLAS kernels, LayerNorm and GELU run natively (vectorised; ~1e-7
  // relative from the tfjs ops). The training step's forward (headForwardCached) keeps the tfjs ops.
  const fast = nativeEvalOps();
  if (fast) {
    const h = fast.layerNorm(x, p["norm2.weight"], p["norm2.bias"], eps);
    const m = linear(fast.gelu(linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"])), p["mlp.fc2.weight"], p["mlp.fc2.bias"]);
    const y = tf.add(x, tf.mul(p.gamma_2, m)) as tf.Tensor2D;
    return linear(fast.layerNorm(y, p["norm.weight"], p["norm.bias"], eps), p["head.weight"], p["head.bias"]);
  }
  const h = layerNorm(x, p["norm2.weight"], p["norm2.bias"], eps);
  const m = linear(geluExact(linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"])) as tf.Tensor2D, p["mlp.fc2.weight"], p["mlp.fc2.bias"]);
  const y = tf.add(x, tf.mul(p.gamma_2, m)) as tf.Tensor2D;
  return linear(layerNorm(y, p["norm.weight"], p["norm.bias"], eps), p["head.weight"], p["head.bias"]);
}

/** Reference §1.2 init table: LayerScale 1e-4, trunc normal 0.02 for Linear weights, zero biases, LN 1/0. */
export function initHeadArrays(s: HeadShape, rng: Rng): HeadArrays {
  const shapes = headParamShapes(s);
  const size = (k: HeadParamName) => shapes[k].reduce((a, b) => a * b, 1);
  const out = {} as HeadArrays;
  for (const k of HEAD_PARAM_NAMES) {
    if (k === "gamma_2") out[k] = new Float32Array(size(k)).fill(1e-4);
    else if (k.endsWith(".weight") && k.startsWith("norm")) out[k] = new Float32Array(size(k)).fill(1);
    else if (k.endsWith(".weight")) out[k] = truncNormalArray(size(k), 0.02, rng);
    else out[k] = new Float32Array(size(k));
  }
  return out;
}

/**
 * Weights of a trained-looking head for throughput measurements (calibrate, benches): LN 1, LayerScale
 * 0.1, everything else uniform in ±0.035, so logits and softmaxes take realistic values (the init's
 * 1e-4 LayerScale and zero biases would make every head nearly the same).
 */
export function randomHeadArrays(s: HeadShape, rng: Rng): HeadArrays {
  const shapes = headParamShapes(s);
  const h = {} as HeadArrays;
  for (const k of HEAD_PARAM_NAMES) {
    const n = shapes[k].reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    if (k.startsWith("norm") && k.endsWith(".weight")) a.fill(1);
    else if (k === "gamma_2") a.fill(0.1);
    else for (let i = 0; i < n; i++) a[i] = (rng.next() - 0.5) * 0.07;
    h[k] = a;
  }
  return h;
}

export function headTensorsFromArrays(a: HeadArrays, s: HeadShape): HeadTensors {
  const shapes = headParamShapes(s);
  const out = {} as HeadTensors;
  for (const k of HEAD_PARAM_NAMES) out[k] = tf.tensor(a[k], shapes[k], "float32");
  return out;
}

export interface EnsembleArrays {
  shape: HeadShape;
  heads: HeadArrays[];
  /** Extra metadata (e.g. `config` as JSON); `format` and `shape` are written by saveEnsemble. */
  meta?: Record<string, string>;
}

/** Host copies of an ensemble in training: every head's weights and its optimiser slots by slot name. */
export interface EnsembleSnapshot {
  heads: HeadArrays[];
  slots: Record<string, HeadArrays>[];
}

/**
 * Heads handed to a trainer: an array, or a list that makes head i when asked (`at(i)`, called once
 * per head, in index order), so that 50 fresh paper-size heads (1.1 GB) are never held next to the
 * trainer's own packed copies: each is packed and dropped before the next is made.
 */
export interface HeadList {
  readonly length: number;
  at(i: number): HeadArrays | undefined;
}

/** A HeadList that makes each head with `make` on demand (in index order: a shared RNG stays in order). */
export function lazyHeads(count: number, make: (i: number) => HeadArrays): HeadList {
  let next = 0;
  return {
    length: count,
    at(i: number): HeadArrays {
      if (i !== next) throw new Error(`lazyHeads: head ${i} asked for, expected ${next} (heads are made once, in order)`);
      next++;
      return make(i);
    },
  };
}

export interface SnapshotOptions {
  /**
   * Hand out the trainer's own host buffers where heads live on the host, instead of copies. Only for
   * a caller done with them before the next step (a checkpoint write, the final save): with 50 heads
   * of the paper's size that is 2.2 GB (weights + SGD momentum) not copied.
   */
  views?: boolean;
}

/** Tensors keyed `submodels.<i>.<param>` (the reference's RedneckEnsemble state-dict keys). */
export function ensembleTensors(e: EnsembleArrays, prefix = "submodels"): Record<string, SafeTensor> {
  const shapes = headParamShapes(e.shape);
  const tensors: Record<string, SafeTensor> = {};
  e.heads.forEach((h, i) => {
    for (const k of HEAD_PARAM_NAMES) tensors[`${prefix}.${i}.${k}`] = { dtype: "F32", shape: shapes[k], data: h[k] };
  });
  return tensors;
}

export async function saveEnsemble(file: string, e: EnsembleArrays): Promise<void> {
  const meta: Record<string, string> = {
    ...(e.meta ?? {}),
    format: ENSEMBLE_FORMAT,
    shape: JSON.stringify({ dim: e.shape.dim, hidden: e.shape.hidden, classes: e.shape.classes, eps: e.shape.eps ?? DEFAULT_LN_EPS }),
    n_models: String(e.heads.length),
  };
  if (meta.config === undefined) meta.config = "{}";
  await writeSafetensors(file, ensembleTensors(e), meta);
}

export async function loadEnsemble(file: string): Promise<EnsembleArrays> {
  const { tensors, metadata } = await readSafetensors(file);
  const hint = "re-run the train-heads stage (sed-pipe run train-heads) to re-create the ensemble file";
  if (metadata.format !== ENSEMBLE_FORMAT) {
    throw new InputError(`${file}: not a sed-pipe ensemble (metadata format is ${JSON.stringify(metadata.format)}, expected "${ENSEMBLE_FORMAT}")`, { hint });
  }
  let shape: HeadShape;
  try {
    shape = JSON.parse(metadata.shape);
  } catch {
    throw new InputError(`${file}: metadata "shape" is not JSON (${JSON.stringify(metadata.shape)})`, { hint });
  }
  for (const k of ["dim", "hidden", "classes"] as const) {
    if (!Number.isInteger(shape?.[k]) || shape[k] <= 0) throw new InputError(`${file}: metadata shape.${k} is not a positive integer`, { hint });
  }
  const n = Object.keys(tensors).length / HEAD_PARAM_NAMES.length;
  if (!Number.isInteger(n) || n === 0) {
    throw new InputError(`${file}: holds ${Object.keys(tensors).length} tensors, not a multiple of the ${HEAD_PARAM_NAMES.length} per head`, { hint });
  }
  const shapes = headParamShapes(shape);
  const heads: HeadArrays[] = [];
  for (let i = 0; i < n; i++) {
    const h = {} as HeadArrays;
    for (const k of HEAD_PARAM_NAMES) {
      const key = `submodels.${i}.${k}`;
      const t = tensors[key];
      if (!t) throw new InputError(`${file}: missing tensor "${key}"`, { hint });
      if (t.dtype !== "F32") throw new InputError(`${file}: tensor "${key}" is ${t.dtype}, expected F32`, { hint });
      if (t.shape.join(",") !== shapes[k].join(",")) {
        throw new InputError(`${file}: tensor "${key}" has shape [${t.shape}], expected [${shapes[k]}] for ${JSON.stringify(shape)}`, { hint });
      }
      h[k] = t.data as Float32Array;
    }
    heads.push(h);
  }
  const { format: _f, shape: _s, ...meta } = metadata;
  return { shape, heads, meta };
}

/** Intermediates of one head's forward pass kept for the hand-written backward. */
export interface HeadCache {
  xhat2: tf.Tensor2D;
  rstd2: tf.Tensor2D;
  h: tf.Tensor2D;
  a1: tf.Tensor2D;
  /** erf(a1 / sqrt 2) + 1, shared by GELU and its derivative (saves an erf pass in the backward). */
  erf1: tf.Tensor2D;
  g: tf.Tensor2D;
  m: tf.Tensor2D;
  xhat: tf.Tensor2D;
  rstd: tf.Tensor2D;
  n: tf.Tensor2D;
}

function lnParts(x: tf.Tensor2D, eps: number): { xhat: tf.Tensor2D; rstd: tf.Tensor2D } {
  const { mean, variance } = tf.moments(x, -1, true);
  const rstd = tf.rsqrt(tf.add(variance, eps)) as tf.Tensor2D;
  return { xhat: tf.mul(tf.sub(x, mean), rstd) as tf.Tensor2D, rstd };
}

/**
 * Same math as headLogits, keeping what the backward needs. tfjs-core's npm build registers no
 * gradients, and the stock ones would hit wasm's slow transposed matMul anyway, so the trainer
 * differentiates by hand (headBackward; checked against finite differences in the tests).
 */
export function headForwardCached(p: HeadTensors, x: tf.Tensor2D, s: HeadShape): { logits: tf.Tensor2D; cache: HeadCache } {
  const eps = s.eps ?? DEFAULT_LN_EPS;
  const l2 = lnParts(x, eps);
  const h = tf.add(tf.mul(l2.xhat, p["norm2.weight"]), p["norm2.bias"]) as tf.Tensor2D;
  const a1 = linear(h, p["mlp.fc1.weight"], p["mlp.fc1.bias"]);
  // geluExact(a1) with the erf term kept (same ops in the same order, so the same bits).
  const erf1 = tf.add(tf.erf(tf.mul(a1, Math.SQRT1_2)), 1) as tf.Tensor2D;
  const g = tf.mul(tf.mul(a1, 0.5), erf1) as tf.Tensor2D;
  const m = linear(g, p["mlp.fc2.weight"], p["mlp.fc2.bias"]);
  const y = tf.add(x, tf.mul(p.gamma_2, m)) as tf.Tensor2D;
  const l = lnParts(y, eps);
  const n = tf.add(tf.mul(l.xhat, p["norm.weight"]), p["norm.bias"]) as tf.Tensor2D;
  const logits = linear(n, p["head.weight"], p["head.bias"]);
  return { logits, cache: { xhat2: l2.xhat, rstd2: l2.rstd, h, a1, erf1, g, m, xhat: l.xhat, rstd: l.rstd, n } };
}

/** d(LayerNorm input) from d(normalised) : rstd * (d - mean(d) - xhat * mean(d * xhat)). */
function lnBackward(dxhat: tf.Tensor2D, xhat: tf.Tensor2D, rstd: tf.Tensor2D): tf.Tensor2D {
  const m1 = tf.mean(dxhat, -1, true);
  const m2 = tf.mean(tf.mul(dxhat, xhat), -1, true);
  return tf.mul(rstd, tf.sub(tf.sub(dxhat, m1), tf.mul(xhat, m2))) as tf.Tensor2D;
}

/** Gradients of all head parameters given dL/dlogits (the input features are frozen: no dx). */
export function headBackward(p: HeadTensors, c: HeadCache, dz: tf.Tensor2D): HeadTensors {
  const sum0 = (t: tf.Tensor) => tf.sum(t, 0);
  const dHeadW = tf.matMul(dz, c.n, true, false);
  const dn = tf.matMul(dz, p["head.weight"] as tf.Tensor2D) as tf.Tensor2D;
  const dy = lnBackward(tf.mul(dn, p["norm.weight"]) as tf.Tensor2D, c.xhat, c.rstd);
  const dm = tf.mul(dy, p.gamma_2) as tf.Tensor2D;
  const dg = tf.matMul(dm, p["mlp.fc2.weight"] as tf.Tensor2D);
  // GELU'(a) = Phi(a) + a * phi(a)
  const a = c.a1;
  const dgelu = tf.add(tf.mul(c.erf1, 0.5), tf.mul(a, tf.mul(expFast(tf.mul(tf.square(a), -0.5)), 1 / Math.sqrt(2 * Math.PI))));
  const da1 = tf.mul(dg, dgelu) as tf.Tensor2D;
  const dh = tf.matMul(da1, p["mlp.fc1.weight"] as tf.Tensor2D);
  return {
    gamma_2: sum0(tf.mul(dy, c.m)),
    "mlp.fc1.weight": tf.matMul(da1, c.h, true, false),
    "mlp.fc1.bias": sum0(da1),
    "mlp.fc2.weight": tf.matMul(dm, c.g, true, false),
    "mlp.fc2.bias": sum0(dm),
    "norm2.weight": sum0(tf.mul(dh, c.xhat2)),
    "norm2.bias": sum0(dh),
    "norm.weight": sum0(tf.mul(dn, c.xhat)),
    "norm.bias": sum0(dn),
    "head.weight": dHeadW,
    "head.bias": sum0(dz),
  };
}
