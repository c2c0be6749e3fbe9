import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn } from "node:child_process";
import { mkdir, writeFile, utimes } from "node:fs/promises";
import { hostname } from "node:os";
import { getEventListeners } from "node:events";
import { acquireRunLock, liveHolder, readOwner, runLockPaths } from "../../../src/store/run-lock.ts";
import { SedPipeError } from "../../../src/errors.ts";
import { tempDir, removeDir, withTimeout } from "../../helpers/tmp.ts";
import { waitFor } from "../../helpers/project.ts";

test("second acquirer fails at once with --no-wait, naming the holder", async () => {
  const dir = await tempDir();
  try {
    const a = await acquireRunLock(dir, { wait: false });
    try {
      await acquireRunLock(dir, { wait: false });
      assert.unreachable("second lock should fail");
    } catch (err) {
      assert.instance(err, SedPipeError);
      assert.is((err as SedPipeError).exitCode, 2);
      assert.match((err as Error).message, new RegExp(`pid ${process.pid}`));
    } finally {
      await a.release();
    }
    const b = await acquireRunLock(dir, { wait: false });
    await b.release();
  } finally {
    await removeDir(dir);
  }
});

test("a waiting acquirer announces the holder and gets the lock after release", () =>
  withTimeout(
    (async () => {
      const dir = await tempDir();
      try {
        const a = await acquireRunLock(dir, { wait: false });
        const seen: Array<number | undefined> = [];
        const waiting = acquireRunLock(dir, { wait: true, pollMs: 50, onWait: (o) => seen.push(o?.pid) });
        // Poll for the announcement (a fixed sleep raced the waiter on a busy machine).
        await waitFor(() => seen.length > 0, 15_000, "the waiter to announce the holder");
        assert.equal(seen, [process.pid]);
        await a.release();
        const b = await waiting;
        assert.is((await readOwner(dir))?.startedAt, b.owner.startedAt);
        await b.release();
      } finally {
        await removeDir(dir);
      }
    })(),
    20_000,
  ));

test("a long wait keeps one abort listener (no MaxListenersExceededWarning) and an abort stops it", () =>
  withTimeout(
    (async () => {
      const dir = await tempDir();
      const warnings: string[] = [];
      const onWarning = (w: Error) => warnings.push(`${w.name}: ${w.message}`);
      process.on("warning", onWarning);
      try {
        const a = await acquireRunLock(dir, { wait: false });
        const ac = new AbortController();
        let waited = false;
        const waiting = acquireRunLock(dir, { wait: true, pollMs: 1, signal: ac.signal, onWait: () => (waited = true) });
        // Node warns at 11 listeners: let many more polls than that happen (each one used to add one).
        const polls = Date.now();
        while (!waited || Date.now() - polls < 300) await new Promise((r) => setTimeout(r, 20));
        assert.ok(getEventListeners(ac.signal, "abort").length <= 1, `abort listeners: ${getEventListeners(ac.signal, "abort").length}`);
        ac.abort();
        try {
          await waiting;
          assert.unreachable("an aborted wait rejects");
        } catch (err) {
          assert.instance(err, SedPipeError);
          assert.is((err as SedPipeError).exitCode, 130);
        }
        assert.is(getEventListeners(ac.signal, "abort").length, 0);
        await a.release();
        await new Promise((r) => setImmediate(r));
        assert.equal(warnings.filter((w) => /MaxListeners/.test(w)), []);
      } finally {
        process.off("warning", onWarning);
        await removeDir(dir);
      }
    })(),
    20_000,
  ));

test("liveHolder: names a live holder without locking; null when free or when the owner is dead", async () => {
  const dir = await tempDir();
  try {
    assert.is(await liveHolder(dir), null);
    const a = await acquireRunLock(dir, { wait: false, command: "run" });
    const h = await liveHolder(dir);
    assert.is(h?.pid, process.pid);
    assert.is(h?.command, "run");
    await a.release();
    assert.is(await liveHolder(dir), null);
    const child = spawn(process.execPath, ["-e", "0"]);
    const pid: number = await new Promise((r) => child.on("exit", () => r(child.pid!)));
    const paths = runLockPaths(dir);
    await mkdir(paths.lock);
    await writeFile(paths.owner, JSON.stringify({ pid, host: hostname(), startedAt: new Date().toISOString(), command: "run" }));
    assert.is(await liveHolder(dir), null, "a dead owner is left to acquireRunLock to recover");
  } finally {
    await removeDir(dir);
  }
});

test("a lock left by a dead process is recovered", () =>
  withTimeout(
    (async () => {
      const dir = await tempDir();
      try {
        // A real process that exits: its pid is dead afterwards.
        const child = spawn(process.execPath, ["-e", "0"]);
        const pid: number = await new Promise((r) => child.on("exit", () => r(child.pid!)));
        const paths = runLockPaths(dir);
        await mkdir(paths.lock);
        const old = new Date(Date.now() - 5000);
        await utimes(paths.lock, old, old);
        await writeFile(paths.owner, JSON.stringify({ pid, host: hostname(), startedAt: old.toISOString(), command: "run" }));
        const b = await acquireRunLock(dir, { wait: false });
        assert.is(b.owner.pid, process.pid);
        await b.release();
      } finally {
        await removeDir(dir);
      }
    })(),
    20_000,
  ));

test("a lock whose heartbeat stopped (no owner note) is taken over after the stale time", () =>
  withTimeout(
    (async () => {
      const dir = await tempDir();
      try {
        const paths = runLockPaths(dir);
        await mkdir(paths.lock);
        const old = new Date(Date.now() - 60_000);
        await utimes(paths.lock, old, old);
        const b = await acquireRunLock(dir, { wait: false, staleMs: 2000 });
        await b.release();
      } finally {
        await removeDir(dir);
      }
    })(),
    20_000,
  ));

test.run();
