import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, utimes, writeFile, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { DigestService, STATE_FILE as STAT_CACHE_PATH } from "../../../src/hash/digest.ts";
import { tempDir, writeAged } from "./hash-fixture.ts";

/** A digest service over `root`, its stat cache loaded from disk, hashing on this thread. */
async function service(root: string, onWarn: (m: string) => void = () => {}) {
  const d = await DigestService.open(root, { pool: null, onWarn });
  return Object.assign(d, {
    root,
    digestRel: async (rel: string) => (await d.digestPath(join(root, rel)))!.digest,
  });
}

test("unchanged file: a second Hasher answers from the saved cache without reading", async () => {
  const t = await tempDir();
  try {
    await writeAged(t.root, "data/x.bin", "hello");
    const h1 = await service(t.root);
    const d1 = await h1.digestRel("data/x.bin");
    assert.equal(h1.stats, { filesHashed: 1, bytesHashed: 5, cacheHits: 0, treesByDirs: 0, treesByFiles: 0, treesRebuilt: 0 });
    await h1.save();
    const saved = JSON.parse(await readFile(join(t.root, STAT_CACHE_PATH), "utf8"));
    assert.is(saved.version, 1);
    const h2 = await service(t.root);
    assert.is(await h2.digestRel("data/x.bin"), d1);
    assert.equal(h2.stats, { filesHashed: 0, bytesHashed: 0, cacheHits: 1, treesByDirs: 0, treesByFiles: 0, treesRebuilt: 0 });
  } finally {
    await t.cleanup();
  }
});

test("touch without content change: re-read once (mtime changed), same digest", async () => {
  const t = await tempDir();
  try {
    const abs = await writeAged(t.root, "x.bin", "hello", 120);
    const h1 = await service(t.root);
    const d1 = await h1.digestRel("x.bin");
    await h1.save();
    const later = new Date(Date.now() - 30_000);
    await utimes(abs, later, later);
    const h2 = await service(t.root);
    assert.is(await h2.digestRel("x.bin"), d1);
    assert.is(h2.stats.filesHashed, 1);
    await h2.save();
    const h3 = await service(t.root);
    assert.is(await h3.digestRel("x.bin"), d1);
    assert.is(h3.stats.filesHashed, 0, "after the re-read the new stat is cached");
  } finally {
    await t.cleanup();
  }
});

test("content change with the same size and restored mtime is still seen (ctime)", async () => {
  const t = await tempDir();
  try {
    const fixed = new Date("2025-01-01T00:00:00Z");
    const abs = join(t.root, "x.bin");
    await writeFile(abs, "hello");
    await utimes(abs, fixed, fixed);
    const h1 = await service(t.root);
    const d1 = await h1.digestRel("x.bin");
    await h1.save();
    const before = await stat(abs, { bigint: true });
    await writeFile(abs, "jello");
    await utimes(abs, fixed, fixed);
    const after = await stat(abs, { bigint: true });
    assert.equal([after.size, after.mtimeNs, after.ino], [before.size, before.mtimeNs, before.ino]);
    const h2 = await service(t.root);
    const d2 = await h2.digestRel("x.bin");
    assert.is.not(d2, d1);
    assert.is(h2.stats.filesHashed, 1);
  } finally {
    await t.cleanup();
  }
});

test("a file modified just now is not trusted from the cache (racy window)", async () => {
  const t = await tempDir();
  try {
    await mkdir(join(t.root, "d"));
    await writeFile(join(t.root, "d", "fresh.bin"), "new");
    const h1 = await service(t.root);
    await h1.digestRel("d/fresh.bin");
    await h1.save();
    // Dated in the future relative to the hashing: cannot be a trusted entry.
    const future = new Date(Date.now() + 60_000);
    await utimes(join(t.root, "d", "fresh.bin"), future, future);
    const h2 = await service(t.root);
    await h2.digestRel("d/fresh.bin");
    assert.is(h2.stats.filesHashed, 1);
  } finally {
    await t.cleanup();
  }
});

test("folders use the per-file cache", async () => {
  const t = await tempDir();
  try {
    for (let i = 0; i < 5; i++) await writeAged(t.root, `dir/f${i}.bin`, `file ${i}`);
    const h1 = await service(t.root);
    const d1 = await h1.digestRel("dir");
    assert.is(h1.stats.filesHashed, 5);
    await h1.save();
    await writeAged(t.root, "dir/f2.bin", "changed");
    const h2 = await service(t.root);
    const d2 = await h2.digestRel("dir");
    assert.is.not(d2, d1);
    assert.equal([h2.stats.filesHashed, h2.stats.cacheHits], [1, 4]);
  } finally {
    await t.cleanup();
  }
});

test("corrupt cache file: warning, empty cache, correct digests, rewritten on save", async () => {
  const t = await tempDir();
  try {
    await writeAged(t.root, "x.bin", "hello");
    await writeAged(t.root, STAT_CACHE_PATH, '{"version": 1, "entries": {tru');
    const warnings: string[] = [];
    const h = await service(t.root, (m) => warnings.push(m));
    assert.is(await h.digestRel("x.bin"), "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    assert.is(warnings.length, 1);
    assert.match(warnings[0]!, /stat cache .*stat-cache\.json is corrupt \(.*\); ignoring it, files will be re-hashed/);
    await h.save();
    assert.is(JSON.parse(await readFile(join(t.root, STAT_CACHE_PATH), "utf8")).version, 1);
  } finally {
    await t.cleanup();
  }
});

test("a cache entry with a forged digest is only used while the stat matches", async () => {
  const t = await tempDir();
  try {
    await writeAged(t.root, "x.bin", "hello");
    const h1 = await service(t.root);
    await h1.digestRel("x.bin");
    await h1.save();
    const file = join(t.root, STAT_CACHE_PATH);
    const data = JSON.parse(await readFile(file, "utf8"));
    const key = Object.keys(data.entries)[0]!;
    data.entries[key].size = "999";
    await writeFile(file, JSON.stringify(data));
    const h2 = await service(t.root);
    await h2.digestRel("x.bin");
    assert.is(h2.stats.filesHashed, 1);
  } finally {
    await t.cleanup();
  }
});

test("saves from two processes merge; entries hashed long ago are pruned", async () => {
  const t = await tempDir();
  try {
    await writeAged(t.root, "a.bin", "a");
    await writeAged(t.root, "b.bin", "b");
    const h1 = await service(t.root);
    const h2 = await service(t.root);
    await h1.digestRel("a.bin");
    await h2.digestRel("b.bin");
    await h1.save();
    await h2.save();
    const file = join(t.root, STAT_CACHE_PATH);
    const data = JSON.parse(await readFile(file, "utf8"));
    assert.equal(Object.keys(data.entries).map((k) => k.split("/").pop()).sort(), ["a.bin", "b.bin"]);
    const keyA = Object.keys(data.entries).find((k) => k.endsWith("a.bin"))!;
    data.entries[keyA].hashedAtNs = "1000";
    await writeFile(file, JSON.stringify(data));
    await writeAged(t.root, "c.bin", "c");
    const h3 = await service(t.root);
    await h3.digestRel("c.bin");
    await h3.save();
    const after = JSON.parse(await readFile(file, "utf8"));
    assert.equal(Object.keys(after.entries).map((k) => k.split("/").pop()).sort(), ["b.bin", "c.bin"]);
  } finally {
    await t.cleanup();
  }
});

test.run();
