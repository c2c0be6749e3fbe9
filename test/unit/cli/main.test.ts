import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { main } from "../../../src/cli.ts";
import { tempDir, removeDir } from "../../helpers/tmp.ts";

async function call(argv: string[], cwd = process.cwd()) {
  let out = "";
  let err = "";
  const code = await main(argv, { cwd, out: (t) => void (out += t), err: (t) => void (err += t), color: false, env: {} });
  return { code, out, err };
}

test("--help and --version exit 0; every command has help with an example", async () => {
  const h = await call(["--help"]);
  assert.is(h.code, 0);
  for (const c of ["run", "status", "why", "invalidate", "dag", "name", "logs"]) {
    assert.match(h.out, new RegExp(`\\n  ${c}\\b`));
    const sub = await call([c, "--help"]);
    assert.is(sub.code, 0, c);
    assert.match(sub.out, /Examples:\n  \$ sed-pipe /, c);
  }
  assert.is((await call(["--version"])).out, "0.1.0\n");
});

test("usage errors exit 2", async () => {
  const r = await call(["frobnicate"]);
  assert.is(r.code, 2);
  assert.match(r.err, /unknown command 'frobnicate'/);
  assert.is((await call(["name", "--dataset", "x"])).code, 2);
  assert.is((await call(["run", "--jobs", "0"])).code, 2);
});

test("name prints the reference feature file name", async () => {
  const r = await call(["name", "--dataset", "Brightness_1", "--model-path", "/models/deit3_21k.pth", "--samples", "100"]);
  assert.is(r.code, 0);
  assert.match(r.out, /^[0-9a-f]{20}_torch_load_block_-1_model_Brightness_1_dataset_1_epochs_100_samples\.hdf5\n$/);
});

test("a user error prints error + hint, no stack; the root is found walking up", async () => {
  const dir = await tempDir();
  try {
    const none = await call(["status"], dir);
    assert.is(none.code, 2);
    assert.match(none.err, /^error: no pipeline\.yaml found in /);
    assert.match(none.err, /\nhint: /);
    assert.not.match(none.err, /\n\s+at /);
    await writeFile(join(dir, "pipeline.yaml"), "version: 1\nstages: {}\n");
    await mkdir(join(dir, "sub", "deeper"), { recursive: true });
    const bad = await call(["status"], join(dir, "sub", "deeper"));
    assert.is(bad.code, 2);
    assert.match(bad.err, /^error: pipeline\.yaml/);
  } finally {
    await removeDir(dir);
  }
});

test.run();
