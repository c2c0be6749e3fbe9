// Widening of 16-bit floats (IEEE half and bfloat16) to float32, for checkpoint readers that meet
// them (safetensors F16/BF16, torch float16/bfloat16 storages). No I/O.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bf16(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

function f16(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (m / 1024);
  if (e === 31) return m ? NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + m / 1024);
}

/** Little-endian 16-bit floats in `bytes` -> a new Float32Array. */
export function widenHalfFloats(bytes: Uint8Array, kind: "f16" | "bf16"): Float32Array {
  const u16 = new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2);
  const out = new Float32Array(u16.length);
  const conv = kind === "bf16" ? bf16 : f16;
  for (let i = 0; i < u16.length; i++) out[i] = conv(u16[i]);
  return out;
}
