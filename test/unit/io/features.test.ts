import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, rm, readFile, writeFile, truncate, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createFeatureFile } from "../../../src/io/feature-writer.ts";
import { openFeatureFile } from "../../../src/io/feature-reader.ts";
import { ATTR_FORMAT } from "../../../src/io/feature-layout.ts";
import { loadH5 } from "../../../src/io/hdf5.ts";
import { InputError } from "../../../src/errors.ts";
import { Rng } from "../../../src/rng.ts";
import { pythonWith, requires } from "../../helpers/skip.ts";

let dir = "";
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sed-features-"));
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Row r of pass p: value (p*1000 + i) * 0.5 + d (distinct, never all-zero). */
function rowValue(p: number, i: number, d: number): number {
  return (p * 1000 + i) * 0.5 + d + 1;
}

async function writeMultiPass(path: string, dim: number, n: number, passes: number, appendSize = 7): Promise<void> {
  const w = await createFeatureFile(path, { dim, expectedRows: n * passes });
  for (let p = 0; p < passes; p++) {
    for (let s = 0; s < n; s += appendSize) {
      const k = Math.min(appendSize, n - s);
      const e = new Float32Array(k * dim);
      const l: number[] = [];
      const x: number[] = [];
      for (let j = 0; j < k; j++) {
        for (let d = 0; d < dim; d++) e[j * dim + d] = rowValue(p, s + j, d);
        l.push((s + j) % 5);
        x.push(s + j);
      }
      w.append(e, l, x);
    }
  }
  assert.is(w.rows, n * passes);
  await w.finish();
}

async function expectInputError(p: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, pattern);
    return;
  }
  assert.unreachable(`expected InputError matching ${pattern}`);
}

test("write then read back: shapes, passes, completeness, values", async () => {
  const path = join(dir, "multi.hdf5");
  await writeMultiPass(path, 6, 103, 3);
  const r = await openFeatureFile(path, { dim: 6, requireComplete: true });
  assert.is(r.rows, 309);
  assert.is(r.dim, 6);
  assert.is(r.passRows, 103);
  assert.is(r.passes, 3);
  assert.ok(r.complete);
  assert.equal(r.completion, { referenceRule: true, marker: "complete" });
  let seen = 0;
  for (const b of r.sequential(50)) {
    assert.is(b.start, seen);
    for (let j = 0; j < b.count; j++) {
      const row = b.start + j;
      const p = Math.floor(row / 103);
      const i = row % 103;
      assert.is(b.index[j], i);
      assert.is(b.label[j], i % 5);
      assert.is(b.embed[j * 6 + 2], rowValue(p, i, 2));
    }
    seen += b.count;
  }
  assert.is(seen, 309);
  const labels = r.labels();
  assert.is(labels.length, 309);
  assert.is(labels[108], 0);
  assert.is(labels[109], 1);
  r.close();
});

test("sequential range: batches start at the range start and stop at its end", async () => {
  const path = join(dir, "multi.hdf5");
  const r = await openFeatureFile(path);
  const counts: number[] = [];
  const starts: number[] = [];
  for (const b of r.sequential(40, { start: 103, end: 206 })) {
    counts.push(b.count);
    starts.push(b.start);
    assert.is(b.index[0], b.start - 103);
  }
  assert.equal(counts, [40, 40, 23]);
  assert.equal(starts, [103, 143, 183]);
  try {
    [...r.sequential(10, { start: 0, end: 400 })];
    assert.unreachable("range past the end accepted");
  } catch (err) {
    assert.match((err as Error).message, /bad row range/);
  }
  r.close();
});

test("shuffled: every row of the chosen pass exactly once, seeded, pass wraps, small windows", async () => {
  const path = join(dir, "multi.hdf5");
  const r = await openFeatureFile(path);
  const collect = (pass: number, seed: number, blockRows?: number, windowRows?: number) => {
    const idx: number[] = [];
    const sizes: number[] = [];
    for (const b of r.shuffled({ pass, batchSize: 16, rng: new Rng(seed), blockRows, windowRows })) {
      sizes.push(b.count);
      for (let j = 0; j < b.count; j++) {
        const i = b.index[j];
        // The row really belongs to pass (pass mod 3) and carries its own label/embed.
        assert.is(b.embed[j * 6], rowValue(pass % 3, i, 0));
        assert.is(b.label[j], i % 5);
        idx.push(i);
      }
    }
    return { idx, sizes };
  };
  const a = collect(1, 7, 10, 30);
  assert.equal([...a.idx].sort((x, y) => x - y), Array.from({ length: 103 }, (_, i) => i));
  // All batches full except the last one.
  assert.ok(a.sizes.slice(0, -1).every((s) => s === 16));
  assert.is(a.sizes.reduce((x, y) => x + y, 0), 103);
  assert.not.equal(a.idx, Array.from({ length: 103 }, (_, i) => i), "not shuffled");
  assert.equal(collect(1, 7, 10, 30).idx, a.idx, "same seed, same order");
  assert.not.equal(collect(1, 8, 10, 30).idx, a.idx, "different seed, different order");
  const wrapped = collect(4, 7, 10, 30);
  assert.equal(wrapped.idx, a.idx, "pass 4 of 3 = pass 1");
  const defaults = collect(2, 3);
  assert.is(defaults.idx.length, 103);
  r.close();
});

test("zero-row file: opens, no batches, incomplete by the reference rule", async () => {
  const path = join(dir, "empty.hdf5");
  const w = await createFeatureFile(path, { dim: 4 });
  await w.finish();
  const r = await openFeatureFile(path);
  assert.is(r.rows, 0);
  assert.is(r.passes, 0);
  assert.equal([...r.sequential(8)], []);
  assert.equal([...r.shuffled({ pass: 0, batchSize: 8, rng: new Rng(1) })], []);
  assert.is(r.completion.referenceRule, false);
  assert.is(r.completion.marker, "complete");
  r.close();
});

test("writer: expectedRows mismatch fails finish and removes the file; abort removes it", async () => {
  const path = join(dir, "short.hdf5");
  const w = await createFeatureFile(path, { dim: 3, expectedRows: 5 });
  w.append(new Float32Array(6).fill(1), [0, 1], [0, 1]);
  try {
    await w.finish();
    assert.unreachable("finish accepted 2 of 5 rows");
  } catch (err) {
    assert.match((err as Error).message, /wrote 2 rows, expected 5/);
  }
  await expectInputError(openFeatureFile(path), /cannot read the file/);
  const w2 = await createFeatureFile(path, { dim: 3 });
  try {
    w2.append(new Float32Array(5), [0, 1], [0, 1]);
    assert.unreachable("bad append accepted");
  } catch (err) {
    assert.match((err as Error).message, /5 embed values, 2 labels/);
  }
  try {
    w2.append(new Float32Array(6), [0, 1.5], [0, 1]);
    assert.unreachable("fractional label accepted");
  } catch (err) {
    assert.match((err as Error).message, /label 1\.5 \/ index 1 must be whole numbers/);
  }
  try {
    w2.append(new Float32Array(3), [0], [2 ** 25]);
    assert.unreachable("index beyond float32 precision accepted");
  } catch (err) {
    assert.match((err as Error).message, /below 2\^24/);
  }
  await w2.abort();
  await expectInputError(openFeatureFile(path), /cannot read the file/);
});

/** Writes a file with h5wasm directly, bypassing our writer (reference-style, no attributes). */
async function writeRaw(
  path: string,
  sets: { name: string; data: Float32Array; shape: number[]; compression?: "gzip" }[],
  attrs: Record<string, number | string> = {},
  earliest = false,
): Promise<void> {
  const h5 = await loadH5();
  // "earliest" writes version-1 object headers: no checksums, so a test can patch them.
  const f = new h5.File(path, "w", earliest ? { libver: ["earliest", "v108"] } : {});
  for (const [k, v] of Object.entries(attrs)) f.create_attribute(k, v);
  for (const s of sets) {
    f.create_dataset({
      name: s.name,
      data: s.data,
      shape: s.shape,
      maxshape: [null, ...s.shape.slice(1)],
      chunks: [Math.max(1, s.shape[0]), ...s.shape.slice(1)],
      dtype: "<f",
      ...(s.compression ? { compression: s.compression } : {}),
    });
  }
  f.close();
}

function refSets(n: number, dim: number, lastRowZero: boolean) {
  const e = new Float32Array(n * dim).map((_, i) => (i % 7) + 1);
  if (lastRowZero) e.fill(0, (n - 1) * dim);
  return [
    { name: "embed", data: e, shape: [n, dim] },
    { name: "label", data: new Float32Array(n).map((_, i) => i % 3), shape: [n, 1] },
    { name: "index", data: new Float32Array(n).map((_, i) => i), shape: [n, 1] },
  ];
}

test("reference-style file without our attributes: complete by the last-row rule", async () => {
  const ok = join(dir, "ref-ok.hdf5");
  await writeRaw(ok, refSets(10, 4, false));
  const r = await openFeatureFile(ok, { requireComplete: true });
  assert.equal(r.completion, { referenceRule: true, marker: "absent" });
  assert.is(r.passes, 1);
  r.close();
  const bad = join(dir, "ref-zero.hdf5");
  await writeRaw(bad, refSets(10, 4, true));
  const r2 = await openFeatureFile(bad);
  assert.not.ok(r2.complete);
  r2.close();
  await expectInputError(openFeatureFile(bad, { requireComplete: true }), /incomplete feature file: its last embed row is all zeros/);
});

test("our file without the completion marker is incomplete even when its last row is non-zero", async () => {
  const p = join(dir, "unfinished.hdf5");
  await writeRaw(p, refSets(10, 4, false), { [ATTR_FORMAT]: "features/1" });
  const r = await openFeatureFile(p);
  assert.equal(r.completion, { referenceRule: true, marker: "incomplete" });
  assert.not.ok(r.complete);
  r.close();
  await expectInputError(openFeatureFile(p, { requireComplete: true }), /writer never finished/);
});

test("validation: missing dataset, wrong width, length mismatch, wrong rank", async () => {
  const missing = join(dir, "missing.hdf5");
  await writeRaw(missing, refSets(5, 4, false).filter((s) => s.name !== "label"));
  await expectInputError(openFeatureFile(missing), /missing\.hdf5: missing dataset "label"/);

  const p = join(dir, "ok.hdf5");
  await writeRaw(p, refSets(5, 4, false));
  await expectInputError(openFeatureFile(p, { dim: 768 }), /ok\.hdf5: "embed" has width 4, expected 768/);

  const mism = join(dir, "mismatch.hdf5");
  const sets = refSets(5, 4, false);
  sets[1] = { name: "label", data: new Float32Array(4), shape: [4, 1] };
  await writeRaw(mism, sets);
  await expectInputError(openFeatureFile(mism), /"label" has 4 rows but "embed" has 5/);

  const rank = join(dir, "rank.hdf5");
  const s2 = refSets(5, 4, false);
  s2[0] = { name: "embed", data: new Float32Array(20), shape: [20] };
  await writeRaw(rank, s2);
  await expectInputError(openFeatureFile(rank), /"embed" must be 2-D/);
});

test("validation: a group named like a dataset is refused", async () => {
  const p = join(dir, "group.hdf5");
  const h5 = await loadH5();
  const f = new h5.File(p, "w");
  f.create_group("embed");
  f.create_dataset({ name: "label", data: new Float32Array(2), shape: [2, 1], dtype: "<f" });
  f.create_dataset({ name: "index", data: new Float32Array([0, 1]), shape: [2, 1], dtype: "<f" });
  f.close();
  await expectInputError(openFeatureFile(p), /group\.hdf5: "embed" is not a dataset/);
});

test("validation: float64 embed is refused with the dtype named", async () => {
  const p = join(dir, "f64.hdf5");
  const h5 = await loadH5();
  const f = new h5.File(p, "w");
  f.create_dataset({ name: "embed", data: new Float64Array(8).fill(1), shape: [2, 4], dtype: "<d" });
  f.create_dataset({ name: "label", data: new Float32Array(2), shape: [2, 1], dtype: "<f" });
  f.create_dataset({ name: "index", data: new Float32Array([0, 1]), shape: [2, 1], dtype: "<f" });
  f.close();
  await expectInputError(openFeatureFile(p), /f64\.hdf5: "embed" must be little-endian float32, found float64/);
});

test("validation: non-integer label is refused when read", async () => {
  const p = join(dir, "frac.hdf5");
  const sets = refSets(5, 4, false);
  sets[1].data[2] = 1.5;
  await writeRaw(p, sets);
  const r = await openFeatureFile(p);
  try {
    r.labels();
    assert.unreachable("fractional label accepted");
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, /"label" row 2 holds 1\.5/);
  }
  r.close();
});

test("validation: non-HDF5 and truncated files", async () => {
  const txt = join(dir, "notes.hdf5");
  await writeFile(txt, "hello, not hdf5\n".repeat(100));
  await expectInputError(openFeatureFile(txt), /notes\.hdf5: not an HDF5 file/);
  const src = join(dir, "multi.hdf5");
  const cut = join(dir, "cut.hdf5");
  await writeFile(cut, await readFile(src));
  await truncate(cut, Math.floor((await stat(cut)).size / 2));
  await expectInputError(openFeatureFile(cut), /cut\.hdf5: truncated HDF5 file/);
  await expectInputError(openFeatureFile(join(dir, "nope.hdf5")), /nope\.hdf5: cannot read the file \(ENOENT\)/);
});

test("validation: a filter other than deflate/shuffle (LZF) is refused, gzip is read", async () => {
  const gz = join(dir, "gzip.hdf5");
  const sets = refSets(64, 4, false).map((s) => ({ ...s, compression: "gzip" as const }));
  await writeRaw(gz, sets, {}, true);
  const r = await openFeatureFile(gz, { requireComplete: true });
  const first = [...r.sequential(64)][0];
  assert.is(first.embed[5], (5 % 7) + 1);
  r.close();
  // Turn the deflate filter entries of the pipeline messages into LZF (id 32000): version-1 filter
  // description = id u16, name length u16, flags u16, n values u16, "deflate\0".
  const bytes = Buffer.from(await readFile(gz));
  const needle = Buffer.from("deflate\0");
  let patched = 0;
  for (let at = bytes.indexOf(needle); at >= 0; at = bytes.indexOf(needle, at + 1)) {
    if (bytes.readUInt16LE(at - 8) !== 1 || bytes.readUInt16LE(at - 6) !== 8) continue;
    bytes.writeUInt16LE(32000, at - 8);
    bytes.write("lzf\0\0\0\0\0", at, "latin1");
    patched++;
  }
  assert.ok(patched >= 1, "no deflate filter message found to patch");
  const lzf = join(dir, "lzf.hdf5");
  await writeFile(lzf, bytes);
  await expectInputError(openFeatureFile(lzf), /lzf\.hdf5: dataset "embed" uses the HDF5 filter .*32000/);
});

// Fixtures written by h5py (test/fixtures/io/make-h5py-fixtures.py): checked without Python.
const FIXTURES = fileURLToPath(new URL("../../fixtures/io/", import.meta.url));

test("fixture: a reference-layout file written by h5py (2 passes, auto-chunked, no attributes)", async () => {
  const r = await openFeatureFile(join(FIXTURES, "reference-2pass.hdf5"), { dim: 8, requireComplete: true });
  assert.is(r.rows, 12);
  assert.is(r.passRows, 6);
  assert.is(r.passes, 2);
  assert.equal(r.completion, { referenceRule: true, marker: "absent" });
  assert.ok(r.chunkRows !== null && r.chunkRows > 0);
  const [b] = [...r.sequential(12)];
  // embed[p, i, d] = p * 100 + i + d / 10 + 1
  assert.ok(Math.abs(b.embed[7 * 8 + 3] - (100 + 1 + 0.3 + 1)) < 1e-5);
  assert.equal([...b.label], [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
  assert.equal([...b.index], [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5]);
  const seen: number[] = [];
  for (const s of r.shuffled({ pass: 1, batchSize: 4, rng: new Rng(2) })) {
    for (let j = 0; j < s.count; j++) {
      assert.ok(s.embed[j * 8] >= 100, "pass 1 rows only");
      seen.push(s.index[j]);
    }
  }
  assert.equal(seen.sort(), [0, 1, 2, 3, 4, 5]);
  r.close();
});

test("fixture: an LZF-compressed file written by h5py is refused", async () => {
  await expectInputError(openFeatureFile(join(FIXTURES, "lzf.hdf5")), /lzf\.hdf5: dataset "embed" uses the HDF5 filter lzf \(id 32000\)/);
});

// Cross-checks with h5py (Debian's python3-h5py; CI installs it and requires these to run).
const found = pythonWith("h5py");
const h5py = requires("python3-h5py", () => ("python" in found ? true : found.reason));
const PYTHON = "python" in found ? found.python : "python3";

h5py.test("h5py reads our file with the reference names, shapes and dtypes", async () => {
  const path = join(dir, "multi.hdf5");
  const py = `
import h5py, sys, json
f = h5py.File(sys.argv[1], "r")
out = {k: [list(f[k].shape), str(f[k].dtype), list(f[k].maxshape), f[k].chunks is not None] for k in ("embed", "label", "index")}
out["row"] = [float(v) for v in f["embed"][104, :3]]
out["index_value"] = float(f["index"][104, 0])
print(json.dumps(out))
`;
  const res = spawnSync(PYTHON, ["-c", py, path], { encoding: "utf8" });
  assert.is(res.status, 0, res.stderr);
  const got = JSON.parse(res.stdout);
  assert.equal(got.embed, [[309, 6], "float32", [null, 6], true]);
  assert.equal(got.label, [[309, 1], "float32", [null, 1], true]);
  assert.equal(got.index, [[309, 1], "float32", [null, 1], true]);
  assert.equal(got.row, [rowValue(1, 1, 0), rowValue(1, 1, 1), rowValue(1, 1, 2)]);
  assert.is(got.index_value, 1);
});

h5py.test("a file h5py wrote (reference writer's calls) reads back through our reader", async () => {
  const path = join(dir, "h5py-written.hdf5");
  // Mirrors save_activations: resizable float32 datasets, 2 passes of 50 rows, index restarting.
  const py = `
import h5py, numpy as np, sys
n, passes, dim = 50, 2, 12
with h5py.File(sys.argv[1], "w") as f:
    e = f.create_dataset("embed", (0, dim), maxshape=(None, dim))
    l = f.create_dataset("label", (0, 1), maxshape=(None, 1))
    x = f.create_dataset("index", (0, 1), maxshape=(None, 1))
    for p in range(passes):
        for s in range(0, n, 16):
            k = min(16, n - s)
            rows = np.arange(s, s + k)
            e.resize(e.shape[0] + k, axis=0); l.resize(l.shape[0] + k, axis=0); x.resize(x.shape[0] + k, axis=0)
            e[-k:] = (p * 1000 + rows)[:, None] + np.arange(dim)[None, :] + 1
            l[-k:] = (rows % 4)[:, None]
            x[-k:] = rows[:, None]
`;
  const res = spawnSync(PYTHON, ["-c", py, path], { encoding: "utf8" });
  assert.is(res.status, 0, res.stderr);
  const r = await openFeatureFile(path, { dim: 12, requireComplete: true });
  assert.is(r.rows, 100);
  assert.is(r.passRows, 50);
  assert.is(r.passes, 2);
  assert.equal(r.completion, { referenceRule: true, marker: "absent" });
  const b = [...r.sequential(100)][0];
  assert.is(b.embed[60 * 12 + 3], 1000 + 10 + 3 + 1);
  assert.is(b.label[61], 11 % 4);
  r.close();
});

h5py.test("an LZF-compressed file written by h5py is refused (h5wasm would return garbage)", async () => {
  const path = join(dir, "h5py-lzf.hdf5");
  const py = `
import h5py, numpy as np, sys
with h5py.File(sys.argv[1], "w") as f:
    f.create_dataset("embed", data=np.ones((20, 8), "f4"), maxshape=(None, 8), compression="lzf")
    f.create_dataset("label", data=np.zeros((20, 1), "f4"), maxshape=(None, 1))
    f.create_dataset("index", data=np.arange(20, dtype="f4")[:, None], maxshape=(None, 1))
`;
  const res = spawnSync(PYTHON, ["-c", py, path], { encoding: "utf8" });
  assert.is(res.status, 0, res.stderr);
  await expectInputError(openFeatureFile(path), /h5py-lzf\.hdf5: dataset "embed" uses the HDF5 filter lzf \(id 32000\)/);
});

test.run();
