// DeiT-3 (LayerScale ViT) featurizer in TensorFlow.js, cut where the reference cuts (§1.1): blocks
// 0..depth-2 in full, then only the last block's attention residual branch; output = CLS vector.
// Inference only. Owns architecture, parameter names/shapes and the forward; no file I/O here.
import * as tf from "@tensorflow/tfjs-core";
import { ConfigError } from "../errors.ts";

export interface VitArch {
  image_size: number;
  patch_size: number;
  in_chans: number;
  embed_dim: number;
  depth: number;
  num_heads: number;
  mlp_ratio: number;
  /** LayerScale gamma init (1e-4 for DeiT-3 Base); used only when generating weights. */
  layerscale_init: number;
}

/** deit_base_patch16_LS as in the reference (§1.1). */
export const DEIT3_BASE_ARCH: VitArch = {
  image_size: 224,
  patch_size: 16,
  in_chans: 3,
  embed_dim: 768,
  depth: 12,
  num_heads: 12,
  mlp_ratio: 4,
  layerscale_init: 1e-4,
};

export const LN_EPS = 1e-6;

/** Validates an arch from params; errors name `where` (e.g. "featurizer.arch"). */
export function parseVitArch(raw: unknown, where = "featurizer.arch"): VitArch {
  if (typeof raw !== "object" || raw === null) throw new ConfigError(`${where}: expected a mapping, got ${JSON.stringify(raw)}`);
  const r = raw as Record<string, unknown>;
  const num = (k: keyof VitArch, integer: boolean): number => {
    const v = r[k];
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0 || (integer && !Number.isInteger(v))) {
      throw new ConfigError(`${where}.${k}: expected a positive ${integer ? "integer" : "number"}, got ${JSON.stringify(v)}`, {
        hint: `e.g. ${k}: ${DEIT3_BASE_ARCH[k]} (DeiT-3 Base)`,
      });
    }
    return v;
  };
  const arch: VitArch = {
    image_size: num("image_size", true),
    patch_size: num("patch_size", true),
    in_chans: num("in_chans", true),
    embed_dim: num("embed_dim", true),
    depth: num("depth", true),
    num_heads: num("num_heads", true),
    mlp_ratio: num("mlp_ratio", false),
    layerscale_init: num("layerscale_init", false),
  };
  if (arch.image_size % arch.patch_size !== 0) {
    throw new ConfigError(
      `${where}: image_size ${arch.image_size} is not divisible by patch_size ${arch.patch_size}`,
      { hint: "pick a patch size that divides the image size (224/16, 28/7, ...)" },
    );
  }
  if (arch.embed_dim % arch.num_heads !== 0) {
    throw new ConfigError(`${where}: embed_dim ${arch.embed_dim} is not divisible by num_heads ${arch.num_heads}`);
  }
  if (!Number.isInteger(arch.embed_dim * arch.mlp_ratio)) {
    throw new ConfigError(`${where}: embed_dim * mlp_ratio = ${arch.embed_dim * arch.mlp_ratio} is not an integer`);
  }
  return arch;
}

export function numPatches(a: VitArch): number {
  return (a.image_size / a.patch_size) ** 2;
}

/**
 * The timm/DeiT-3 state-dict names and shapes of the whole backbone (`norm`/`head` excluded: they
 * are not part of the featurizer and are accepted but ignored when a checkpoint has them).
 */
export function vitParamShapes(a: VitArch): Map<string, number[]> {
  const D = a.embed_dim;
  const hid = D * a.mlp_ratio;
  const m = new Map<string, number[]>([
    ["cls_token", [1, 1, D]],
    ["pos_embed", [1, numPatches(a), D]],
    ["patch_embed.proj.weight", [D, a.in_chans, a.patch_size, a.patch_size]],
    ["patch_embed.proj.bias", [D]],
  ]);
  for (let i = 0; i < a.depth; i++) {
    const p = `blocks.${i}.`;
    m.set(p + "gamma_1", [D]);
    m.set(p + "gamma_2", [D]);
    m.set(p + "norm1.weight", [D]);
    m.set(p + "norm1.bias", [D]);
    m.set(p + "attn.qkv.weight", [3 * D, D]);
    m.set(p + "attn.qkv.bias", [3 * D]);
    m.set(p + "attn.proj.weight", [D, D]);
    m.set(p + "attn.proj.bias", [D]);
    m.set(p + "norm2.weight", [D]);
    m.set(p + "norm2.bias", [D]);
    m.set(p + "mlp.fc1.weight", [hid, D]);
    m.set(p + "mlp.fc1.bias", [hid]);
    m.set(p + "mlp.fc2.weight", [D, hid]);
    m.set(p + "mlp.fc2.bias", [D]);
  }
  return m;
}

/** Names a full DeiT-3 checkpoint may carry beyond the backbone; allowed, never used. */
export function isIgnoredVitKey(name: string): boolean {
  return /^(norm|fc_norm|head)\.(weight|bias)$/.test(name);
}

export interface NamedArray {
  shape: number[];
  data: Float32Array;
}

/**
 * Strict key/shape check of a checkpoint's tensors against the arch. Returns a list of problems
 * (empty = fine), each naming the key.
 */
export function checkVitWeights(shapes: Map<string, number[]>, a: VitArch): string[] {
  const want = vitParamShapes(a);
  const missing = [...want.keys()].filter((k) => !shapes.has(k));
  const unexpected = [...shapes.keys()].filter((k) => !want.has(k) && !isIgnoredVitKey(k));
  const wrong: string[] = [];
  for (const [k, s] of want) {
    const got = shapes.get(k);
    if (got && (got.length !== s.length || got.some((v, i) => v !== s[i]))) wrong.push(`${k}: checkpoint [${got}] vs arch [${s}]`);
  }
  const problems: string[] = [];
  if (missing.length) problems.push(`missing keys (${missing.length}): ${abbreviate(missing)}`);
  if (unexpected.length) problems.push(`unexpected keys (${unexpected.length}): ${abbreviate(unexpected)}`);
  if (wrong.length) problems.push(`shape mismatches (${wrong.length}): ${abbreviate(wrong)}`);
  return problems;
}

function abbreviate(xs: string[], n = 8): string {
  return xs.length <= n ? xs.join(", ") : `${xs.slice(0, n).join(", ")}, ... (+${xs.length - n} more)`;
}

interface BlockTensors {
  gamma1: tf.Tensor1D;
  gamma2: tf.Tensor1D;
  norm1w: tf.Tensor1D;
  norm1b: tf.Tensor1D;
  /** [D, 3D]: transposed once at load so every forward matMul is untransposed (fast path in wasm). */
  qkvT: tf.Tensor2D;
  qkvb: tf.Tensor1D;
  projT: tf.Tensor2D;
  projb: tf.Tensor1D;
  norm2w: tf.Tensor1D;
  norm2b: tf.Tensor1D;
  fc1T: tf.Tensor2D;
  fc1b: tf.Tensor1D;
  fc2T: tf.Tensor2D;
  fc2b: tf.Tensor1D;
}

export interface VitModel {
  arch: VitArch;
  cls: tf.Tensor3D;
  pos: tf.Tensor3D;
  /** [C*P*P, D] */
  patchT: tf.Tensor2D;
  patchb: tf.Tensor1D;
  blocks: BlockTensors[];
}

/** Builds the model's tensors from named arrays (already checked with checkVitWeights). */
export function createVit(weights: Map<string, NamedArray>, a: VitArch): VitModel {
  const problems = checkVitWeights(new Map([...weights].map(([k, v]) => [k, v.shape])), a);
  if (problems.length) throw new ConfigError(`ViT weights do not match the arch: ${problems.join("; ")}`);
  const D = a.embed_dim;
  const get = (k: string) => weights.get(k)!;
  const vec = (k: string) => tf.tensor1d(get(k).data);
  // torch Linear weight is [out, in]; store [in, out].
  const linT = (k: string, out: number, inn: number) =>
    tf.tidy(() => tf.transpose(tf.tensor2d(get(k).data, [out, inn]))) as tf.Tensor2D;
  const hid = D * a.mlp_ratio;
  const blocks: BlockTensors[] = [];
  for (let i = 0; i < a.depth; i++) {
    const p = `blocks.${i}.`;
    blocks.push({
      gamma1: vec(p + "gamma_1"),
      gamma2: vec(p + "gamma_2"),
      norm1w: vec(p + "norm1.weight"),
      norm1b: vec(p + "norm1.bias"),
      qkvT: linT(p + "attn.qkv.weight", 3 * D, D),
      qkvb: vec(p + "attn.qkv.bias"),
      projT: linT(p + "attn.proj.weight", D, D),
      projb: vec(p + "attn.proj.bias"),
      norm2w: vec(p + "norm2.weight"),
      norm2b: vec(p + "norm2.bias"),
      fc1T: linT(p + "mlp.fc1.weight", hid, D),
      fc1b: vec(p + "mlp.fc1.bias"),
      fc2T: linT(p + "mlp.fc2.weight", D, hid),
      fc2b: vec(p + "mlp.fc2.bias"),
    });
  }
  const cpp = a.in_chans * a.patch_size * a.patch_size;
  return {
    arch: a,
    cls: tf.tensor3d(get("cls_token").data, [1, 1, D]),
    pos: tf.tensor3d(get("pos_embed").data, [1, numPatches(a), D]),
    patchT: linT("patch_embed.proj.weight", D, cpp),
    patchb: vec("patch_embed.proj.bias"),
    blocks,
  };
}

export function disposeVit(m: VitModel): void {
  const all: tf.Tensor[] = [m.cls, m.pos, m.patchT, m.patchb];
  for (const b of m.blocks) all.push(...(Object.values(b) as tf.Tensor[]));
  tf.dispose(all);
}

/** LayerNorm over the last axis, biased variance, as torch.nn.LayerNorm(eps=1e-6). */
export function layerNorm(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor, eps = LN_EPS): tf.Tensor {
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), w), b);
}

/** Exact GELU 0.5·x·(1 + erf(x/√2)) (torch default; tfjs's own gelu-less ops need tf.erf). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1));
}

/** x [B, N, Din] · wT [Din, Dout] + b */
function linear(x: tf.Tensor3D, wT: tf.Tensor2D, b: tf.Tensor1D): tf.Tensor3D {
  const [B, N, Din] = x.shape;
  const y = tf.add(tf.matMul(tf.reshape(x, [B * N, Din]) as tf.Tensor2D, wT), b);
  return tf.reshape(y, [B, N, wT.shape[1]]) as tf.Tensor3D;
}

/** Multi-head self-attention with qkv bias; x [B, N, D] -> [B, N, D]. */
export function attention(x: tf.Tensor3D, blk: Pick<BlockTensors, "qkvT" | "qkvb" | "projT" | "projb">, heads: number): tf.Tensor3D {
  const [B, N, D] = x.shape;
  const dh = D / heads;
  const qkv = tf.reshape(linear(x, blk.qkvT, blk.qkvb), [B, N, 3, heads, dh]);
  const [q, k, v] = tf.unstack(tf.transpose(qkv, [2, 0, 3, 1, 4])) as tf.Tensor4D[]; // each [B, H, N, dh]
  // Scale q before the product, as the reference does (q = q * scale).
  const kT = tf.transpose(k, [0, 1, 3, 2]);
  const att = tf.softmax(tf.matMul(tf.mul(q, dh ** -0.5) as tf.Tensor4D, kT as tf.Tensor4D), -1);
  const o = tf.reshape(tf.transpose(tf.matMul(att as tf.Tensor4D, v), [0, 2, 1, 3]), [B, N, D]) as tf.Tensor3D;
  return linear(o, blk.projT, blk.projb);
}

/** Patch embedding as a matMul over non-overlapping patches (= Conv2d stride P); x NCHW. */
export function patchEmbed(m: VitModel, x: tf.Tensor4D): tf.Tensor3D {
  const { patch_size: P, in_chans: C, image_size: S, embed_dim: D } = m.arch;
  const [B] = x.shape;
  const g = S / P;
  const patches = tf.reshape(tf.transpose(tf.reshape(x, [B, C, g, P, g, P]), [0, 2, 4, 1, 3, 5]), [B * g * g, C * P * P]);
  return tf.reshape(tf.add(tf.matMul(patches as tf.Tensor2D, m.patchT), m.patchb), [B, g * g, D]) as tf.Tensor3D;
}

/**
 * The featurizer forward: x [B, C, S, S] normalised pixels -> [B, D] CLS features. No tidy inside
 * (the caller tidies).
 */
export function vitFeatures(m: VitModel, x: tf.Tensor4D): tf.Tensor2D {
  const a = m.arch;
  if (x.shape[1] !== a.in_chans || x.shape[2] !== a.image_size || x.shape[3] !== a.image_size) {
    throw new ConfigError(`ViT input [${x.shape}] does not match the arch (expected [B, ${a.in_chans}, ${a.image_size}, ${a.image_size}])`);
  }
  const B = x.shape[0];
  // DeiT-III: position embedding on the patch tokens only, then the CLS token is prepended.
  let h = tf.tidy(() => tf.concat([tf.tile(m.cls, [B, 1, 1]), tf.add(patchEmbed(m, x), m.pos)], 1) as tf.Tensor3D);
  for (let i = 0; i < a.depth; i++) {
    const blk = m.blocks[i];
    const last = i === a.depth - 1;
    // One tidy per block: a single outer tidy would keep every block's intermediates alive until the
    // end (DeiT-B, batch 8: > 4 GB, past the wasm32 heap).
    const next = tf.tidy(() => {
      let y = tf.add(h, tf.mul(blk.gamma1, attention(layerNorm(h, blk.norm1w, blk.norm1b) as tf.Tensor3D, blk, a.num_heads))) as tf.Tensor3D;
      if (last) return y; // the cut: the last block's MLP branch belongs to the trainable head
      const mlp = linear(gelu(linear(layerNorm(y, blk.norm2w, blk.norm2b) as tf.Tensor3D, blk.fc1T, blk.fc1b)) as tf.Tensor3D, blk.fc2T, blk.fc2b);
      y = tf.add(y, tf.mul(blk.gamma2, mlp)) as tf.Tensor3D;
      return y;
    });
    h.dispose();
    h = next;
  }
  const cls = tf.reshape(tf.slice(h, [0, 0, 0], [B, 1, a.embed_dim]), [B, a.embed_dim]) as tf.Tensor2D;
  h.dispose();
  return cls;
}

/** Runs one batch of CHW float pixels (row-major, `batch` images) and returns [batch·D] features. */
export async function featurizeBatch(m: VitModel, pixels: Float32Array, batch: number): Promise<Float32Array> {
  const a = m.arch;
  const per = a.in_chans * a.image_size * a.image_size;
  if (pixels.length !== batch * per) throw new Error(`featurizeBatch: ${pixels.length} values for ${batch} images of ${per}`);
  const out = tf.tidy(() => vitFeatures(m, tf.tensor4d(pixels, [batch, a.in_chans, a.image_size, a.image_size])));
  try {
    return (await out.data()) as Float32Array;
  } finally {
    out.dispose();
  }
}
