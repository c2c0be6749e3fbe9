import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFeatureFile } from "../../../src/io/feature-writer.ts";
import { inspectFeatureFile, formatInspect } from "../../../src/io/inspect.ts";
import { loadH5 } from "../../../src/io/hdf5.ts";
import { InputError } from "../../../src/errors.ts";

let dir = "";
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sed-inspect-"));
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("report on a complete two-pass file", async () => {
  const path = join(dir, "f.hdf5");
  const w = await createFeatureFile(path, { dim: 3 });
  for (let p = 0; p < 2; p++) {
    w.append(new Float32Array(12).fill(p + 1), [2, 5, 2, 7], [0, 1, 2, 3]);
  }
  await w.finish();
  const r = await inspectFeatureFile(path);
  assert.ok(r.usable);
  assert.is(r.problem, null);
  assert.equal(r.datasets.map((d) => d.name).sort(), ["embed", "index", "label"]);
  const embed = r.datasets.find((d) => d.name === "embed")!;
  assert.equal(embed.shape, [8, 3]);
  assert.equal(embed.maxshape, [null, 3]);
  assert.is(embed.dtype, "float32");
  assert.ok(embed.chunks);
  assert.equal(embed.filters, []);
  assert.is(r.passes, 2);
  assert.is(r.passRows, 4);
  assert.equal(r.completeness, { referenceRule: true, marker: "complete", complete: true });
  assert.equal(r.labels, { min: 2, max: 7, distinct: 3, negative: 0, firstNegativeRow: null, classes: null, aboveClasses: null, firstAboveRow: null });
  assert.equal(r.embedCheck, { checkedRows: 8, totalRows: 8, blocks: 1, nonFinite: 0, firstNonFiniteRow: null });
  assert.is(r.attributes.sed_pipe_rows, 8);
  const text = formatInspect(r);
  assert.match(text, /usable feature file/);
  assert.match(text, /embed\s+shape \(8, 3\)\s+max \(None, 3\)\s+float32\s+chunks \(\d+, 3\)\s+no filters/);
  assert.match(text, /passes: 2 x 4 rows/);
  assert.match(text, /labels: 2\.\.7, 3 distinct\n/);
  assert.match(text, /embed values: all finite \(all 8 rows checked\)/);
});

test("NaN / Inf embeddings and negative labels make a file NOT usable, with the rows named", async () => {
  const path = join(dir, "bad-values.hdf5");
  const w = await createFeatureFile(path, { dim: 2 });
  // 5 rows x 2: row 1 holds NaN, row 3 holds -Inf; labels -1 at row 2, 12 at row 4.
  w.append(new Float32Array([1, 2, NaN, 4, 5, 6, 7, -Infinity, 9, 10]), [0, 3, -1, 2, 12], [0, 1, 2, 3, 4]);
  await w.finish();
  const r = await inspectFeatureFile(path, { classes: 10 });
  assert.not.ok(r.usable);
  assert.equal(r.completeness, { referenceRule: true, marker: "complete", complete: true });
  assert.equal(r.embedCheck, { checkedRows: 5, totalRows: 5, blocks: 1, nonFinite: 2, firstNonFiniteRow: 1 });
  assert.equal(r.labels, {
    min: -1, max: 12, distinct: 5, negative: 1, firstNegativeRow: 2, classes: 10, aboveClasses: 1, firstAboveRow: 4,
  });
  assert.is(
    r.problem,
    "1 negative label (first at row 2); 1 label >= 10 classes (first at row 4); embed holds 2 non-finite values (NaN or Inf; first at row 1)",
  );
  const text = formatInspect(r);
  assert.match(text, /^NOT usable: 1 negative label/m);
  assert.match(text, /labels: -1\.\.12, 5 distinct, 1 NEGATIVE \(first at row 2\), 1 >= 10 classes \(first at row 4\)/);
  assert.match(text, /embed values: 2 NON-FINITE \(NaN or Inf; first at row 1\) \(all 5 rows checked\)/);
  // Without a class count, 12 is only out of range if the caller says so.
  const noClasses = await inspectFeatureFile(path);
  assert.is(noClasses.labels!.aboveClasses, null);
  assert.not.match(noClasses.problem!, /classes/);
});

test("a clean file says how many rows were checked; --check-rows samples evenly spaced blocks", async () => {
  const path = join(dir, "many.hdf5");
  const w = await createFeatureFile(path, { dim: 3 });
  const rows = 1000;
  const e = new Float32Array(rows * 3).map((_, i) => (i % 7) + 1);
  // One NaN in the last row: an interrupted writer's typical damage is at the end.
  e[(rows - 1) * 3 + 1] = NaN;
  w.append(e, Array.from({ length: rows }, (_, i) => i % 4), Array.from({ length: rows }, (_, i) => i));
  await w.finish();
  const all = await inspectFeatureFile(path, { classes: 4 });
  assert.equal(all.embedCheck, { checkedRows: 1000, totalRows: 1000, blocks: 1, nonFinite: 1, firstNonFiniteRow: 999 });
  assert.match(formatInspect(all), /labels: 0\.\.3, 4 distinct, all below 4 classes/);
  const sampled = await inspectFeatureFile(path, { checkRows: 80 });
  // 8 blocks of 10 rows at 0, 141, 283, ..., 990: first and last rows included.
  assert.equal(sampled.embedCheck, { checkedRows: 80, totalRows: 1000, blocks: 8, nonFinite: 1, firstNonFiniteRow: 999 });
  assert.match(formatInspect(sampled), /\(80 of 1000 rows checked, in 8 evenly spaced blocks\)/);
  assert.not.ok(sampled.usable);
});

test("a file that is HDF5 but not a feature file is reported, not thrown", async () => {
  const path = join(dir, "other.hdf5");
  const h5 = await loadH5();
  const f = new h5.File(path, "w");
  f.create_dataset({ name: "weights", data: new Float32Array(6), shape: [2, 3], dtype: "<f" });
  f.close();
  const r = await inspectFeatureFile(path);
  assert.not.ok(r.usable);
  assert.match(r.problem!, /missing dataset "embed"/);
  assert.equal(r.datasets.map((d) => d.name), ["weights"]);
  assert.is(r.datasets[0].chunks, null);
  assert.match(formatInspect(r), /NOT usable: missing dataset "embed"/);
});

test("a non-HDF5 file is an InputError naming it", async () => {
  const path = join(dir, "x.txt");
  await writeFile(path, "plain text");
  try {
    await inspectFeatureFile(path);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, /x\.txt: not an HDF5 file/);
  }
});

test.run();
