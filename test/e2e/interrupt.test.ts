// End to end: kill -9 of a running stage, Ctrl-C of a run, and two runs at once on one workspace.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFile, rm, writeFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { cli, counts, exists, makeProject, startCli, waitFor } from "../helpers/project.ts";
import { readLock } from "../../src/store/lock-file.ts";
import { removeDir, withTimeout } from "../helpers/tmp.ts";

const T = 120_000;

test("kill -9 of a running stage fails it (exit 1), leaves it stale, and the next run redoes it", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        await writeFile(join(root, "hold"), "");
        const run = startCli(root, ["run", "slow"]);
        await waitFor(() => exists(join(root, "started-slow")), 60_000, "slow to start");
        const pid = Number(await readFile(join(root, "started-slow"), "utf8"));
        process.kill(pid, "SIGKILL");
        const r = await run.done;
        assert.is(r.code, 1, r.stdout + r.stderr);
        assert.match(r.stdout, /FAILED slow .*killed by SIGKILL/);
        assert.not.ok(await exists(join(root, "artifacts/slow.txt")), "no partial output in artifacts/");
        assert.match((await cli(root, "status", "slow")).stdout, /stale\s+slow/);
        await rm(join(root, "hold"));
        const r2 = await cli(root, "run", "slow");
        assert.is(r2.code, 0, r2.stdout + r2.stderr);
        assert.equal(await counts(root), ["slow", "slow"]);
        assert.is(await readFile(join(root, "artifacts/slow.txt"), "utf8"), "slow done t1");
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test("Ctrl-C: exit 130, no partial output or temp files, lock released, status truthful", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        assert.is((await cli(root, "run", "make")).code, 0);
        await writeFile(join(root, "hold"), "");
        const run = startCli(root, ["run", "slow"]);
        await waitFor(() => exists(join(root, "started-slow")), 60_000, "slow to start");
        run.child.kill("SIGINT");
        const r = await run.done;
        assert.is(r.code, 130, r.stdout + r.stderr);
        assert.match(r.stdout, /interrupted:/);
        assert.not.ok(await exists(join(root, "artifacts/slow.txt")));
        assert.equal(await readdir(join(root, "cache/tmp")), []);
        assert.equal(Object.keys((await readLock(root)).instances).sort(), ["make@a", "make@b"]);
        const st = await cli(root, "status");
        assert.match(st.stdout, /stale\s+slow\s+new: never ran/);
        assert.match(st.stdout, /fresh\s+make@a/);
        // The run lock was released: a --no-wait run gets it.
        await rm(join(root, "hold"));
        const r2 = await cli(root, "run", "slow", "--no-wait");
        assert.is(r2.code, 0, r2.stdout + r2.stderr);
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test("SIGTERM (CI cancel, timeout, docker stop) stops like Ctrl-C: exit 143, summary, nothing partial", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        await writeFile(join(root, "hold"), "");
        const run = startCli(root, ["run", "slow"]);
        await waitFor(() => exists(join(root, "started-slow")), 60_000, "slow to start");
        run.child.kill("SIGTERM");
        const r = await run.done;
        assert.is(r.code, 143, r.stdout + r.stderr);
        assert.match(r.stderr, /SIGTERM: stopping/);
        assert.match(r.stdout, /interrupted:/);
        assert.not.ok(await exists(join(root, "artifacts/slow.txt")));
        assert.equal(await readdir(join(root, "cache/tmp")), []);
        assert.match((await cli(root, "status", "slow")).stdout, /stale\s+slow/);
      } finally {
        await rm(join(root, "hold"), { force: true });
        await removeDir(root);
      }
    })(),
    T,
  ));

test("two runs at once: the second waits (or fails with --no-wait) and nothing is corrupted", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        await writeFile(join(root, "hold"), "");
        const first = startCli(root, ["run"]);
        await waitFor(() => exists(join(root, "started-slow")), 60_000, "slow to start");
        const busy = await cli(root, "run", "--no-wait");
        assert.is(busy.code, 2);
        assert.match(busy.stderr, /error: the workspace is busy: the run started by pid \d+ at /);
        assert.match(busy.stderr, /hint: /);
        const second = startCli(root, ["run"]);
        await waitFor(() => /waiting for the run started by pid \d+ at/.test(second.output()), 60_000, "second run to wait");
        await rm(join(root, "hold"));
        const [r1, r2] = await Promise.all([first.done, second.done]);
        assert.is(r1.code, 0, r1.stdout + r1.stderr);
        assert.is(r2.code, 0, r2.stdout + r2.stderr);
        assert.match(r2.stdout, /plan: 0 to run, 0 to restore, 5 fresh/);
        assert.equal((await counts(root)).sort(), ["flaky", "make@a", "make@b", "slow", "sum"]);
        assert.is(Object.keys((await readLock(root)).instances).length, 5);
        assert.match((await cli(root, "status")).stdout, /5 fresh, 0 stale, 0 missing/);
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test.run();
