// Writes sed-pipe's own safetensors model files at real size for bench/scale.bench.ts, without
// torch and without holding the file in memory: a trained 50-head ensemble (`ensemble.safetensors`,
// 1.1 GB) and a train-heads resume checkpoint with AdamW's two slots per parameter (3.3 GB).
// Values are a seeded block repeated, not trained weights: the readers only see layout.
// Usage: node --import tsx bench/scale-safetensors.ts ensemble|train-checkpoint OUT [heads]
import { open } from "node:fs/promises";
import { ENSEMBLE_FORMAT, HEAD_PARAM_NAMES, headParamShapes, type HeadShape } from "../src/ml/heads.ts";
import { Rng } from "../src/rng.ts";

const SHAPE: HeadShape = { dim: 768, hidden: 3072, classes: 1000, eps: 1e-6 };

/** Streams a safetensors file: header first, then each tensor's bytes from `fill`. */
async function writeStreamed(file: string, tensors: { name: string; shape: number[] }[], metadata: Record<string, string>): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = t.shape.reduce((a, b) => a * b, 1) * 4;
    header[t.name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += " ";
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const block = new Float32Array(3072 * 1000);
  const rng = new Rng(1);
  for (let i = 0; i < block.length; i++) block[i] = rng.uniform(-0.05, 0.05);
  const fh = await open(file, "w");
  try {
    let pos = 0;
    const put = async (b: Uint8Array) => {
      await fh.write(b, 0, b.byteLength, pos);
      pos += b.byteLength;
    };
    await put(len);
    await put(Buffer.from(json, "utf8"));
    for (const [i, t] of tensors.entries()) {
      const n = t.shape.reduce((a, b) => a * b, 1);
      for (let s = 0; s < n; s += block.length) {
        const k = Math.min(block.length, n - s);
        block[0] = i; // tensors differ
        await put(new Uint8Array(block.buffer, 0, k * 4));
      }
    }
  } finally {
    await fh.close();
  }
}

const [kind, out, headsArg] = process.argv.slice(2);
const heads = Number(headsArg ?? 50);
const shapes = headParamShapes(SHAPE);
const tensors: { name: string; shape: number[] }[] = [];
for (let i = 0; i < heads; i++) for (const k of HEAD_PARAM_NAMES) tensors.push({ name: `submodels.${i}.${k}`, shape: shapes[k] });
const meta: Record<string, string> = { shape: JSON.stringify(SHAPE), n_models: String(heads), config: "{}" };
if (kind === "ensemble") {
  await writeStreamed(out, tensors, { ...meta, format: ENSEMBLE_FORMAT });
} else if (kind === "train-checkpoint") {
  for (let i = 0; i < heads; i++) {
    for (const s of ["m", "v"]) for (const k of HEAD_PARAM_NAMES) tensors.push({ name: `optimizer.${i}.${s}.${k}`, shape: shapes[k] });
  }
  await writeStreamed(out, tensors, { ...meta, format: "sed-pipe-train-checkpoint-v1" });
} else {
  throw new Error(`unknown kind ${kind} (ensemble | train-checkpoint)`);
}
