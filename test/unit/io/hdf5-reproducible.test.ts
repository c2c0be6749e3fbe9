// The same data written at two different times gives byte-identical HDF5 files (no object header
// timestamps), so a rerun with unchanged results leaves its outputs' digests, and downstream, alone.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFeatureFile } from "../../../src/io/feature-writer.ts";
import { writeScoresFile } from "../../../src/io/scores-file.ts";

let dir = "";
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sed-h5-repro-"));
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Runs fn with the wall clock moved by `shiftMs` (HDF5 would stamp that time into object headers). */
async function at<T>(shiftMs: number, fn: () => Promise<T>): Promise<T> {
  const now = Date.now;
  Date.now = () => now() + shiftMs;
  try {
    return await fn();
  } finally {
    Date.now = now;
  }
}

test("scores files: same data, different days, same bytes", async () => {
  const data = { scores: { a: Float64Array.from([0.5, 1.5, -2]), b: Float64Array.from([3, 2, 1]) }, labels: Int32Array.from([1, 0, 2]), attrs: { model: "m" } };
  await at(0, () => writeScoresFile(join(dir, "s1.hdf5"), data));
  await at(3 * 86_400_000, () => writeScoresFile(join(dir, "s2.hdf5"), data));
  assert.ok((await readFile(join(dir, "s1.hdf5"))).equals(await readFile(join(dir, "s2.hdf5"))));
});

test("feature files: same rows, different days, same bytes", async () => {
  const write = async (name: string) => {
    const w = await createFeatureFile(join(dir, name), { dim: 4 });
    w.append(Float32Array.from({ length: 12 }, (_, i) => i + 0.25), Float32Array.from([0, 1, 2]), Float32Array.from([0, 1, 2]));
    await w.finish();
  };
  await at(0, () => write("f1.hdf5"));
  await at(5 * 86_400_000, () => write("f2.hdf5"));
  assert.ok((await readFile(join(dir, "f1.hdf5"))).equals(await readFile(join(dir, "f2.hdf5"))));
});

test.run();
