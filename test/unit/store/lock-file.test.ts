import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFile, writeFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { LockStore, readLock, serializeLock, writeLock } from "../../../src/store/lock-file.ts";
import { SedPipeError } from "../../../src/errors.ts";
import type { LockEntry } from "../../../src/pipeline/types.ts";
import { tempDir, removeDir } from "../../helpers/tmp.ts";

/** An entry whose fingerprint is "sha256:" + 64 times `c`. */
const entry = (c: string): LockEntry => ({
  fingerprint: "sha256:" + c.repeat(64),
  parts: { params: { b: 1, a: 2 }, paramsHash: "p", deps: {}, code: { "stages/x.ts": "c" }, runtime: { node: "v20" } },
  outs: { out: { path: "artifacts/x", kind: "file", digest: "sha256:" + "d".repeat(64), size: 3 } },
  finishedAt: "2026-01-01T00:00:00.000Z",
  durationMs: 5,
});

test("missing lock reads as empty; write/read round-trips with sorted keys", async () => {
  const dir = await tempDir();
  try {
    assert.equal(await readLock(dir), { version: 1, instances: {} });
    await writeLock(dir, { version: 1, instances: { zeta: entry("f"), alpha: entry("a") } });
    const text = await readFile(join(dir, "pipeline.lock"), "utf8");
    assert.ok(text.indexOf('"alpha"') < text.indexOf('"zeta"'));
    assert.ok(text.indexOf('"a": 2') < text.indexOf('"b": 1'));
    assert.equal((await readLock(dir)).instances.alpha, entry("a"));
    assert.is(serializeLock(await readLock(dir)), text);
    // No temp files left behind by the atomic write.
    assert.equal(await readdir(dir), ["pipeline.lock"]);
  } finally {
    await removeDir(dir);
  }
});

test("a lock with non-ASCII ids and paths reads back as written (the UTF-8 branch; ASCII files skip decoding)", async () => {
  const dir = await tempDir();
  try {
    const e = entry("b");
    const uni: LockEntry = { ...e, outs: { out: { ...e.outs.out!, path: "artifacts/café/ü-☃.bin" } } };
    await writeLock(dir, { version: 1, instances: { "eval@Éclair_1": uni, plain: entry("c") } });
    const back = await readLock(dir);
    assert.equal(back.instances["eval@Éclair_1"], uni);
    assert.equal(back.instances.plain, entry("c"));
  } finally {
    await removeDir(dir);
  }
});

test("a corrupt lock is a clear error with a hint, not silently dropped", async () => {
  const dir = await tempDir();
  try {
    for (const bad of ['{"version":1,"instances":{', "", '{"version":2,"instances":{}}', '{"version":1,"instances":{"x":{"fingerprint":1}}}']) {
      await writeFile(join(dir, "pipeline.lock"), bad);
      try {
        await readLock(dir);
        assert.unreachable(`should have thrown for ${JSON.stringify(bad)}`);
      } catch (err) {
        assert.instance(err, SedPipeError);
        assert.match((err as Error).message, /^pipeline\.lock: /);
        const hint = (err as SedPipeError).hint ?? "";
        // pipeline.lock is not tracked by git here: the hint must not send the user to git.
        assert.not.match(hint, /git/);
        assert.match(hint, /mv pipeline\.lock pipeline\.lock\.bad/);
        assert.match(hint, /restored from the cache instead of rerun/);
      }
    }
  } finally {
    await removeDir(dir);
  }
});

test("entries written by older versions (bare hex out digests) read in the current form", async () => {
  const dir = await tempDir();
  try {
    const old = { ...entry("a"), outs: { out: { path: "artifacts/x", kind: "file", digest: "d".repeat(64), size: 3 } } };
    await writeFile(join(dir, "pipeline.lock"), JSON.stringify({ version: 1, instances: { x: old } }));
    assert.is((await readLock(dir)).instances.x!.outs.out!.digest, "sha256:" + "d".repeat(64));
    await writeFile(join(dir, "pipeline.lock"), JSON.stringify({ version: 1, instances: { x: { ...old, fingerprint: "fp-1" } } }));
    try {
      await readLock(dir);
      assert.unreachable("a fingerprint that is no digest must be refused");
    } catch (err) {
      assert.match((err as Error).message, /entry "x" is incomplete/);
    }
  } finally {
    await removeDir(dir);
  }
});

test("LockStore writes each change through, in order", async () => {
  const dir = await tempDir();
  try {
    const ls = await LockStore.open(dir);
    await Promise.all([ls.set("a", entry("1")), ls.set("b", entry("2")), ls.set("a", undefined)]);
    const onDisk = await readLock(dir);
    assert.equal(Object.keys(onDisk.instances), ["b"]);
    assert.equal(ls.snapshot, onDisk);
  } finally {
    await removeDir(dir);
  }
});

test.run();
