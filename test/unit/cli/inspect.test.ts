import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { main } from "../../../src/cli.ts";
import { createFeatureFile } from "../../../src/io/feature-writer.ts";
import { tempDir, removeDir } from "../../helpers/tmp.ts";

async function call(argv: string[], cwd: string) {
  let out = "";
  let err = "";
  const code = await main(argv, { cwd, out: (t) => void (out += t), err: (t) => void (err += t), color: false, env: {} });
  return { code, out, err };
}

test("inspect prints shapes, passes, completeness and labels; --json gives the report", async () => {
  const dir = await tempDir();
  try {
    const w = await createFeatureFile(join(dir, "f.hdf5"), { dim: 4 });
    const rows = 6;
    const embed = new Float32Array(rows * 4).map((_, i) => i + 1);
    w.append(embed, [0, 1, 2, 0, 1, 2], [0, 1, 2, 0, 1, 2]);
    await w.finish();
    const r = await call(["inspect", "f.hdf5"], dir);
    assert.is(r.code, 0, r.err);
    assert.match(r.out, /embed\s+shape \(6, 4\)/);
    assert.match(r.out, /passes: 2 x 3 rows/);
    assert.match(r.out, /complete: yes/);
    assert.match(r.out, /labels: 0\.\.2/);
    const j = await call(["inspect", "--json", "f.hdf5"], dir);
    assert.is(j.code, 0);
    const report = JSON.parse(j.out);
    assert.is(report.usable, true);
  } finally {
    await removeDir(dir);
  }
});

test("inspect of a file that is not HDF5 is a clear error naming it", async () => {
  const dir = await tempDir();
  try {
    await writeFile(join(dir, "notes.hdf5"), "just text");
    const r = await call(["inspect", "notes.hdf5"], dir);
    assert.is(r.code, 1);
    assert.match(r.err, /notes\.hdf5: not an HDF5 file/);
  } finally {
    await removeDir(dir);
  }
});

test("inspect of a missing path or a folder is a usage error (exit 2) naming it", async () => {
  const dir = await tempDir();
  try {
    const r = await call(["inspect", "nope/missing.hdf5"], dir);
    assert.is(r.code, 2);
    assert.is(r.out, "");
    assert.match(r.err, /^error: inspect: nope\/missing\.hdf5: no such file\nhint: give the path of a feature \.hdf5 file/);
    const d = await call(["inspect", "."], dir);
    assert.is(d.code, 2);
    assert.match(d.err, /^error: inspect: \.: not a file/);
  } finally {
    await removeDir(dir);
  }
});

test("inspect of a file with NaN embeddings and negative labels: NOT usable, exit 1, the reason printed", async () => {
  const dir = await tempDir();
  try {
    const w = await createFeatureFile(join(dir, "bad.hdf5"), { dim: 2 });
    w.append(new Float32Array([1, NaN, 3, 4]), [-3, 1], [0, 1]);
    await w.finish();
    const r = await call(["inspect", "bad.hdf5", "--classes", "10"], dir);
    assert.is(r.code, 1, r.err);
    assert.match(r.out, /NOT usable: 1 negative label \(first at row 0\); embed holds 1 non-finite value \(NaN or Inf; first at row 0\)/);
    assert.match(r.out, /embed values: 1 NON-FINITE .*\(all 2 rows checked\)/);
    const j = JSON.parse((await call(["inspect", "--json", "bad.hdf5"], dir)).out);
    assert.is(j.usable, false);
    assert.is(j.embedCheck.nonFinite, 1);
    assert.is(j.labels.negative, 1);
  } finally {
    await removeDir(dir);
  }
});

test.run();
