import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { symlink, rename } from "node:fs/promises";
import { join } from "node:path";
import { digestFile, digestPathUncached, listFolder } from "../../../src/hash/file-digest.ts";
import { tempDir, writeAged } from "./hash-fixture.ts";

test("file digest = sha256 of the bytes, across chunk boundaries", async () => {
  const t = await tempDir();
  try {
    assert.is(await digestFile(await writeAged(t.root, "abc", "abc")), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert.is(await digestFile(await writeAged(t.root, "empty", "")), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const big = Buffer.alloc(9 * 1024 * 1024 + 123);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 255;
    const want = "sha256:" + createHash("sha256").update(big).digest("hex");
    assert.is(await digestFile(await writeAged(t.root, "big", big)), want);
  } finally {
    await t.cleanup();
  }
});

test("folder digest: sorted manifest; content, names and moves change it; empty dirs do not", async () => {
  const t = await tempDir();
  try {
    const d = join(t.root, "d");
    await writeAged(t.root, "d/b.txt", "bee");
    await writeAged(t.root, "d/a/x.txt", "ex");
    assert.equal((await listFolder(d)).map((e) => e.rel), ["a/x.txt", "b.txt"]);
    const d0 = await digestPathUncached(d);
    await writeAged(t.root, "d2/a/x.txt", "ex");
    await writeAged(t.root, "d2/b.txt", "bee");
    assert.is(await digestPathUncached(join(t.root, "d2")), d0, "same files written in another order give the same digest");
    await writeAged(t.root, "d/b.txt", "BEE");
    const d1 = await digestPathUncached(d);
    assert.is.not(d1, d0);
    await rename(join(d, "b.txt"), join(d, "c.txt"));
    assert.is.not(await digestPathUncached(d), d1);
  } finally {
    await t.cleanup();
  }
});

test("symlinks are followed: a linked file digests as its target", async () => {
  const t = await tempDir();
  try {
    await writeAged(t.root, "real/data.bin", "payload");
    await writeAged(t.root, "d1/data.bin", "payload");
    await symlink(join(t.root, "real"), join(t.root, "d2"));
    assert.is(await digestPathUncached(join(t.root, "d2")), await digestPathUncached(join(t.root, "d1")));
    await symlink(join(t.root, "nowhere"), join(t.root, "d1", "dangling"));
    try {
      await digestPathUncached(join(t.root, "d1"));
      assert.unreachable("a dangling link must fail");
    } catch (err) {
      assert.match((err as Error).message, /^dangling symlink .*dangling$/);
    }
  } finally {
    await t.cleanup();
  }
});

test.run();
