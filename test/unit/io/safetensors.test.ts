import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, readFile, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodeSafetensors, encodeSafetensors, readSafetensors, readSafetensorsHeader, writeSafetensors } from "../../../src/io/safetensors.ts";
import { InputError } from "../../../src/errors.ts";

test("round trip keeps names, order, shapes, values and metadata", async () => {
  const dir = await mkdtemp(join(tmpdir(), "st-"));
  try {
    const file = join(dir, "a.safetensors");
    await writeSafetensors(
      file,
      {
        "submodels.0.gamma_2": { dtype: "F32", shape: [3], data: new Float32Array([1e-4, 2, -3]) },
        "submodels.0.head.weight": { dtype: "F32", shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
        step: { dtype: "I64", shape: [1], data: new BigInt64Array([7n]) },
      },
      { format: "sed-pipe" },
    );
    const f = await readSafetensors(file);
    assert.equal(Object.keys(f.tensors), ["submodels.0.gamma_2", "submodels.0.head.weight", "step"]);
    assert.equal(f.tensors["submodels.0.head.weight"].shape, [2, 3]);
    assert.equal(Array.from(f.tensors["submodels.0.gamma_2"].data as Float32Array), [Math.fround(1e-4), 2, -3]);
    assert.equal((f.tensors.step.data as BigInt64Array)[0], 7n);
    assert.equal(f.metadata, { format: "sed-pipe" });
    const h = await readSafetensorsHeader(file);
    assert.equal(h["submodels.0.head.weight"], { dtype: "F32", shape: [2, 3], data_offsets: [12, 36] } as any);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("encoding matches the safetensors layout byte for byte (literal bytes, built by hand from the spec)", () => {
  // u64 LE header length, JSON header (__metadata__ first, tensors in order) padded with spaces to
  // a multiple of 8, then the raw little-endian data. Header: 142 bytes + 2 spaces = 144 = 0x90.
  // Data: struct.pack('<ff', 1, -2.5) = 0000803f000020c0, struct.pack('<q', 7) = 0700000000000000.
  const header =
    '{"__metadata__":{"format":"pt"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"step":{"dtype":"I64","shape":[1],"data_offsets":[8,16]}}  ';
  const want = Buffer.concat([Buffer.from("9000000000000000", "hex"), Buffer.from(header, "latin1"), Buffer.from("0000803f000020c00700000000000000", "hex")]);
  const got = encodeSafetensors(
    { w: { dtype: "F32", shape: [2], data: new Float32Array([1, -2.5]) }, step: { dtype: "I64", shape: [1], data: new BigInt64Array([7n]) } },
    { format: "pt" },
  );
  assert.is(Buffer.from(got).toString("hex"), want.toString("hex"));
});

test("header is 8-byte aligned", () => {
  const bytes = encodeSafetensors({ x: { dtype: "F32", shape: [1], data: new Float32Array([1]) } });
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assert.is((8 + n) % 8, 0);
});

test("truncated and garbage files are clear errors naming the file", async () => {
  const good = encodeSafetensors({ x: { dtype: "F32", shape: [4], data: new Float32Array(4) } });
  assert.throws(() => decodeSafetensors(good.slice(0, good.length - 4), "w.safetensors"), (e: unknown) => e instanceof InputError && /w\.safetensors: .*outside the file/.test((e as Error).message));
  assert.throws(() => decodeSafetensors(new Uint8Array([1, 2, 3]), "g.bin"), /g\.bin: not a valid safetensors file/);
  const dir = await mkdtemp(join(tmpdir(), "st-"));
  try {
    await writeFile(join(dir, "junk"), "not a tensor file at all");
    try {
      await readSafetensors(join(dir, "junk"));
      assert.unreachable();
    } catch (e) {
      assert.instance(e, InputError);
      assert.match((e as Error).message, /junk: not a valid safetensors file/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("readSafetensors reads tensor by tensor: each tensor owns exactly its bytes, unaligned data included", async () => {
  const dir = await mkdtemp(join(tmpdir(), "st-"));
  try {
    // A header of odd length (other writers need not pad): every tensor starts unaligned in the file.
    const header = JSON.stringify({ a: { dtype: "F32", shape: [3], data_offsets: [0, 12] }, b: { dtype: "F64", shape: [2], data_offsets: [12, 28] }, c: { dtype: "U8", shape: [1], data_offsets: [28, 29] } }) + " ";
    const hb = Buffer.from(header.length % 2 ? header : header + " ");
    const data = Buffer.concat([Buffer.from(new Float32Array([1, -2, 3.5]).buffer), Buffer.from(new Float64Array([0.25, -8]).buffer), Buffer.from([9])]);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(hb.length));
    const file = join(dir, "odd.safetensors");
    await writeFile(file, Buffer.concat([len, hb, data]));
    const f = await readSafetensors(file);
    assert.equal(Array.from(f.tensors.a.data as Float32Array), [1, -2, 3.5]);
    assert.equal(Array.from(f.tensors.b.data as Float64Array), [0.25, -8]);
    assert.equal(Array.from(f.tensors.c.data as Uint8Array), [9]);
    // A 16 MB file: no tensor is a view into a whole-file buffer (the reader never holds the file).
    const big: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (let i = 0; i < 4; i++) big[`t${i}`] = { dtype: "F32", shape: [1024, 1024], data: new Float32Array(1024 * 1024).fill(i) };
    await writeSafetensors(join(dir, "big.safetensors"), big);
    const g = await readSafetensors(join(dir, "big.safetensors"));
    for (let i = 0; i < 4; i++) {
      const d = g.tensors[`t${i}`].data;
      assert.is(d.buffer.byteLength, 4 * 1024 * 1024);
      assert.is(d[1024 * 1024 - 1], i);
    }
    // Truncated: a tensor reaching past the end is refused before anything is read.
    const whole = await readFile(join(dir, "big.safetensors"));
    await writeFile(join(dir, "cut.safetensors"), whole.subarray(0, whole.length - 1));
    try {
      await readSafetensors(join(dir, "cut.safetensors"));
      assert.unreachable();
    } catch (e) {
      assert.instance(e, InputError);
      assert.match((e as Error).message, /cut\.safetensors: not a valid safetensors file \(tensor "t3" lies outside the file\)/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("writeSafetensors streams the parts: the file is byte for byte encodeSafetensors' buffer", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sed-st-parts-"));
  try {
    const tensors = {
      a: { dtype: "F32" as const, shape: [3], data: Float32Array.from([1, 2, 3]) },
      b: { dtype: "I32" as const, shape: [2, 2], data: Int32Array.from([4, -5, 6, 7]) },
      // A view into a larger buffer: only its own bytes may be written.
      c: { dtype: "F32" as const, shape: [2], data: new Float32Array(Float32Array.from([9, 8, 7, 6]).buffer, 4, 2) },
    };
    const file = join(dir, "x.safetensors");
    await writeSafetensors(file, tensors, { k: "v" });
    assert.ok(Buffer.from(await readFile(file)).equals(Buffer.from(encodeSafetensors(tensors, { k: "v" }))));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("mismatched data length is refused on write", () => {
  assert.throws(() => encodeSafetensors({ x: { dtype: "F32", shape: [2, 2], data: new Float32Array(3) } }), /3 values for shape \[2,2\]/);
});

test.run();
