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
    for (const bad of ['{"version":1,"instances":{', "", '{"version":3,"instances":{}}', '{"version":2,"instances":{}}', '{"version":1,"instances":{"x":{"fingerprint":1}}}']) {
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

test("format 2 keeps each code closure once and entries name it; format 1 files still read; a name with no closure is refused", async () => {
  const dir = await tempDir();
  try {
    const other: LockEntry = { ...entry("b"), parts: { ...entry("b").parts, code: { "stages/y.ts": "y", "src/lib.ts": "l" } } };
    const instances = { a: entry("a"), b: other, c: entry("c") };
    await writeLock(dir, { version: 1, instances });
    const file = JSON.parse(await readFile(join(dir, "pipeline.lock"), "utf8"));
    assert.is(file.version, 2);
    assert.is(Object.keys(file.code).length, 2, "two distinct closures, each once");
    assert.is(file.instances.a.parts.code, file.instances.c.parts.code, "entries with one closure name the same one");
    assert.match(file.instances.a.parts.code, /^sha256:[0-9a-f]{64}$/);
    assert.equal(file.code[file.instances.b.parts.code], { "src/lib.ts": "l", "stages/y.ts": "y" });
    const back = await readLock(dir);
    assert.equal(back.instances, instances);
    assert.is(back.instances.a!.parts.code, back.instances.c!.parts.code, "read back, they share one object");
    assert.is(serializeLock(back), await readFile(join(dir, "pipeline.lock"), "utf8"), "written again: the same bytes");

    // A format 1 file (every entry with its closure) reads as it always did, and is written as format 2.
    await writeFile(join(dir, "pipeline.lock"), JSON.stringify({ version: 1, instances }, null, 2));
    assert.equal((await readLock(dir)).instances, instances);
    const ls = await LockStore.open(dir);
    await ls.set("d", entry("d"));
    assert.is(JSON.parse(await readFile(join(dir, "pipeline.lock"), "utf8")).version, 2);
    assert.equal((await readLock(dir)).instances, { ...instances, d: entry("d") });

    file.instances.c.parts.code = "sha256:" + "0".repeat(64);
    await writeFile(join(dir, "pipeline.lock"), JSON.stringify(file));
    try {
      await readLock(dir);
      assert.unreachable("an entry naming a closure the file does not hold must be refused");
    } catch (err) {
      assert.instance(err, SedPipeError);
      assert.match((err as Error).message, /^pipeline\.lock: entry "c" names code "sha256:0{64}", which "code" does not hold/);
    }
    // An entry with no closure (none of this version's writing) is written and read as it is.
    const { code: _code, ...withoutCode } = entry("e").parts;
    const bare = { ...entry("e"), parts: withoutCode } as unknown as LockEntry;
    await writeLock(dir, { version: 1, instances: { a: entry("a"), e: bare } });
    assert.equal((await readLock(dir)).instances, { a: entry("a"), e: bare });
    await writeFile(join(dir, "pipeline.lock"), JSON.stringify({ ...file, version: 3 }));
    await readLock(dir).then(
      () => assert.unreachable("a format this sed-pipe does not know must be refused"),
      (err: Error) => assert.match(err.message, /unsupported version 3 \(this sed-pipe reads 1 and 2: was it written by a newer one\?\)/),
    );
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
