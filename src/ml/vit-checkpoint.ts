// ViT weights on disk: reads a DeiT-3 state dict from a PyTorch checkpoint (.pth, state dict under
// `model`) or safetensors with strict key/shape checks, and writes seeded generated checkpoints for
// the demo. Owns no forward math (src/ml/vit.ts) and no file formats (src/io/*).
import { open } from "node:fs/promises";
import { InputError } from "../errors.ts";
import { Rng, truncNormalArray } from "../rng.ts";
import { readSafetensors, writeSafetensors, type SafeTensor } from "../io/safetensors.ts";
import { openTorchCheckpoint, isTorchTensor, type TorchTensor } from "../io/torch-checkpoint.ts";
import { writeTorchStateDict } from "../io/torch-writer.ts";
import { checkVitWeights, isIgnoredVitKey, vitParamShapes, type NamedArray, type VitArch } from "./vit.ts";

/**
 * Seeded weights with DeiT-3's init: Linear weights and cls/pos embeddings trunc-normal(0.02),
 * Linear biases 0, LayerNorm 1/0, LayerScale gammas = arch.layerscale_init, and the patch Conv2d at
 * PyTorch's default (kaiming_uniform(a=√5) → U(±1/√fan_in) for weight and bias), because DeiT-3's
 * _init_weights touches only Linear and LayerNorm. Same (arch, seed) -> same bytes.
 */
export function seededVitWeights(arch: VitArch, seed: number): Map<string, NamedArray> {
  const rng = new Rng(seed);
  const out = new Map<string, NamedArray>();
  for (const [name, shape] of vitParamShapes(arch)) {
    const n = shape.reduce((a, b) => a * b, 1);
    let data: Float32Array;
    if (name.startsWith("patch_embed.proj.")) {
      const bound = 1 / Math.sqrt(arch.in_chans * arch.patch_size * arch.patch_size);
      data = new Float32Array(n);
      for (let i = 0; i < n; i++) data[i] = rng.uniform(-bound, bound);
    } else if (name === "cls_token" || name === "pos_embed" || /\.(qkv|proj|fc1|fc2)\.weight$/.test(name)) {
      data = truncNormalArray(n, 0.02, rng);
    } else if (/gamma_[12]$/.test(name)) {
      data = new Float32Array(n).fill(arch.layerscale_init);
    } else if (/norm[12]\.weight$/.test(name)) {
      data = new Float32Array(n).fill(1);
    } else {
      data = new Float32Array(n); // biases
    }
    out.set(name, { shape, data });
  }
  return out;
}

/**
 * Writes a seeded generated checkpoint with timm's names; the download stage calls this. `safetensors`
 * (default), or `pth`: a torch.save zip laid out like DeiT-3's release (`{"model": state dict}` with
 * the final `norm` and the 1000-class `head` too, which the featurizer reads past), so the paper's
 * `.pth` reading path runs on it.
 */
export async function writeSeededVitCheckpoint(arch: VitArch, seed: number, file: string, format: "safetensors" | "pth" = "safetensors"): Promise<void> {
  if (format === "pth") {
    const tensors = new Map(seededVitWeights(arch, seed));
    const D = arch.embed_dim;
    tensors.set("norm.weight", { shape: [D], data: new Float32Array(D).fill(1) });
    tensors.set("norm.bias", { shape: [D], data: new Float32Array(D) });
    tensors.set("head.weight", { shape: [1000, D], data: truncNormalArray(1000 * D, 0.02, new Rng(seed + 1)) });
    tensors.set("head.bias", { shape: [1000], data: new Float32Array(1000) });
    await writeTorchStateDict(file, tensors);
    return;
  }
  const tensors: Record<string, SafeTensor> = {};
  for (const [name, t] of seededVitWeights(arch, seed)) tensors[name] = { dtype: "F32", shape: t.shape, data: t.data };
  await writeSafetensors(file, tensors, { format: "sed-pipe-vit", generator: "seeded", seed: String(seed), arch: JSON.stringify(arch) });
}

async function isZip(file: string): Promise<boolean> {
  let fh;
  try {
    fh = await open(file, "r");
  } catch (err) {
    throw new InputError(`${file}: cannot open checkpoint (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, {
      hint: "run the download stage first, or fix featurizer.checkpoint",
    });
  }
  try {
    const b = Buffer.alloc(4);
    await fh.read(b, 0, 4, 0);
    return b.toString("latin1") === "PK\x03\x04";
  } finally {
    await fh.close();
  }
}

function reject(file: string, problems: string[]): never {
  throw new InputError(`${file}: checkpoint does not match featurizer.arch: ${problems.join("; ")}`, {
    hint: "check featurizer.arch against the checkpoint (DeiT-3 Base: 224/16, 768 wide, 12 deep, 12 heads)",
  });
}

/**
 * Reads the featurizer weights from a .pth (zip; state dict under `model`, or the dict itself) or a
 * safetensors file, strictly: every backbone key present with the arch's shape, no unknown key
 * (only norm/fc_norm/head may be extra, and are skipped).
 */
export async function readVitWeights(file: string, arch: VitArch): Promise<Map<string, NamedArray>> {
  const out = new Map<string, NamedArray>();
  if (await isZip(file)) {
    const ck = await openTorchCheckpoint(file);
    try {
      const root = ck.root as Record<string, unknown>;
      const sd = (root && typeof root === "object" && "model" in root ? root.model : root) as Record<string, unknown>;
      if (!sd || typeof sd !== "object") throw new InputError(`${file}: no state dict found (expected a dict, or a dict with "model")`);
      const tensors = new Map<string, TorchTensor>();
      for (const [k, v] of Object.entries(sd)) if (isTorchTensor(v)) tensors.set(k, v);
      if (tensors.size === 0) {
        throw new InputError(`${file}: the state dict holds no tensors (keys: ${Object.keys(sd).slice(0, 8).join(", ")})`, {
          hint: "expected a DeiT-3 checkpoint such as deit_3_base_224_21k.pth",
        });
      }
      const problems = checkVitWeights(new Map([...tensors].map(([k, t]) => [k, t.shape])), arch);
      if (problems.length) reject(file, problems);
      for (const [k, t] of tensors) {
        if (isIgnoredVitKey(k)) continue;
        out.set(k, { shape: t.shape, data: await t.readFloat32() });
      }
    } finally {
      await ck.close();
    }
    return out;
  }
  const st = await readSafetensors(file);
  const problems = checkVitWeights(new Map(Object.entries(st.tensors).map(([k, t]) => [k, t.shape])), arch);
  if (problems.length) reject(file, problems);
  for (const [k, t] of Object.entries(st.tensors)) {
    if (isIgnoredVitKey(k)) continue;
    let data: Float32Array;
    if (t.data instanceof Float32Array) data = t.data;
    else {
      data = new Float32Array(t.data.length);
      for (let i = 0; i < t.data.length; i++) data[i] = Number(t.data[i]);
    }
    out.set(k, { shape: t.shape, data });
  }
  return out;
}
