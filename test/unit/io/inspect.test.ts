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
  assert.equal(r.labels, { min: 2, max: 7, distinct: 3 });
  assert.is(r.attributes.sed_pipe_rows, 8);
  const text = formatInspect(r);
  assert.match(text, /usable feature file/);
  assert.match(text, /embed\s+shape \(8, 3\)\s+max \(None, 3\)\s+float32\s+chunks \(\d+, 3\)\s+no filters/);
  assert.match(text, /passes: 2 x 4 rows/);
  assert.match(text, /labels: 2\.\.7, 3 distinct/);
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
