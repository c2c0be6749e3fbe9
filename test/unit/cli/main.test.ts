import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { main } from "../../../src/cli.ts";
import { acquireRunLock } from "../../../src/store/run-lock.ts";
import { tempDir, removeDir } from "../../helpers/tmp.ts";

async function call(argv: string[], cwd = process.cwd(), env: NodeJS.ProcessEnv = {}) {
  let out = "";
  let err = "";
  const code = await main(argv, { cwd, out: (t) => void (out += t), err: (t) => void (err += t), color: false, env });
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
  const g = await call(["run", "--gpus", "-1"]);
  assert.is(g.code, 2);
  assert.match(g.err, /--gpus must be an integer >= 0/);
  const env = await call(["run", "--dry-run"], process.cwd(), { SED_PIPE_GPUS: "two" });
  assert.is(env.code, 2);
  assert.match(env.err, /^error: SED_PIPE_GPUS must be a whole number >= 0, got "two"\nhint: unset it, or set e\.g\. SED_PIPE_GPUS=1/);
});

test("run --no-wait fails at once while a live run holds the workspace: before loading the pipeline", async () => {
  const dir = await tempDir();
  try {
    // A pipeline.yaml that would fail to load: the busy error coming first shows that the lock is
    // checked before any pipeline work (timing-free evidence of "at once").
    await writeFile(join(dir, "pipeline.yaml"), "version: 1\nstages: [not, a, map\n");
    const held = await acquireRunLock(join(dir, "cache"), { wait: false, command: "run" });
    try {
      const r = await call(["run", "--no-wait"], dir);
      assert.is(r.code, 2, r.err);
      assert.match(r.err, new RegExp(`^error: the workspace is busy: the run started by pid ${process.pid} at .* holds .*cache/run\\.lock\nhint: wait for that run to finish, or drop --no-wait`));
      const inv = await call(["invalidate", "anything", "--no-wait"], dir);
      assert.is(inv.code, 2, inv.err);
      assert.match(inv.err, /^error: the workspace is busy: /);
    } finally {
      await held.release();
    }
    // Free again: the same command now gets as far as the broken pipeline.yaml.
    const free = await call(["run", "--no-wait"], dir);
    assert.is(free.code, 2);
    assert.not.match(free.err, /busy/);
    assert.match(free.err, /pipeline\.yaml/);
  } finally {
    await removeDir(dir);
  }
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
