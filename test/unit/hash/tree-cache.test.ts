// Tree records (src/hash/tree-cache.ts) through the digest service: what the full check and the
// immutable (folders-only) check detect and what they do not, records written by save(), state left
// by older versions (file digests in stat-cache.json, no trees/) converted, damaged records ignored.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdir, readFile, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DigestService, STATE_FILE } from "../../../src/hash/digest.ts";
import { isInsideAny } from "../../../src/hash/fingerprint.ts";
import { isRacy, racyWindowMs, sigLine } from "../../../src/hash/tree-cache.ts";
import { tempDir, writeAged } from "./hash-fixture.ts";

const open = (root: string) => DigestService.open(root, { pool: null });

test("racy window: 2 s for whole-second mtimes, 50 ms otherwise", () => {
  assert.is(racyWindowMs(1_700_000_000_000), 2000);
  assert.is(racyWindowMs(1_700_000_000_123.456), 50);
  assert.ok(isRacy(1_700_000_000_000, 1_700_000_002_000));
  assert.not.ok(isRacy(1_700_000_000_000, 1_700_000_002_001));
  assert.ok(isRacy(1_700_000_000_100.5, 1_700_000_000_150));
  assert.not.ok(isRacy(1_700_000_000_100.5, 1_700_000_000_151));
});

test("sigLine: every compared field is in the line", () => {
  assert.is(sigLine("b.png", { dev: 2049, ino: 77, size: 5, mtimeMs: 1.5, ctimeMs: 2.25 }), "f\u0000b.png\u00002049\u000077\u00005\u00001.5\u00002.25\n");
});

test("isInsideAny: the folder itself and what is under it, not a sibling with the same prefix", () => {
  const dirs = ["/data/imagenet", "/mnt/x/"];
  assert.ok(isInsideAny("/data/imagenet", dirs));
  assert.ok(isInsideAny("/data/imagenet/train/n01/x.JPEG", dirs));
  assert.not.ok(isInsideAny("/data/imagenet2/train", dirs));
  assert.not.ok(isInsideAny("/data", dirs));
  assert.ok(isInsideAny("/mnt/x/y", dirs));
  assert.not.ok(isInsideAny("/anything", []));
});

async function tree(root: string): Promise<string> {
  await writeAged(root, "d/c1/a.txt", "aaa");
  await writeAged(root, "d/c1/b.txt", "bbb");
  await writeAged(root, "d/c2/c.txt", "ccc");
  // Folders dated in the past too: a folder modified within the racy window of a record is not trusted.
  const t = new Date(Date.now() - 60_000);
  for (const f of ["d/c1", "d/c2", "d"]) await utimes(join(root, f), t, t);
  return join(root, "d");
}

test("a warm folder is answered by its record; an edit in place with size and mtime kept is still seen (ctime)", async () => {
  const t = await tempDir();
  try {
    const dir = await tree(t.root);
    const first = await open(t.root);
    const before = (await first.digestPath(dir))!.digest;
    await first.save();
    const heads = (await readdir(join(t.root, "cache/state/trees"))).filter((n) => !n.includes("entries"));
    assert.is(heads.length, 1, "one head per folder");
    const warm = await open(t.root);
    assert.is((await warm.digestPath(dir))!.digest, before);
    assert.equal([warm.stats.treesByFiles, warm.stats.treesRebuilt, warm.stats.filesHashed], [1, 0, 0]);
    // touch -d: same size, new bytes, the old mtime put back.
    await writeFile(join(dir, "c1/a.txt"), "AAA");
    const old = new Date(Date.now() - 60_000);
    await utimes(join(dir, "c1/a.txt"), old, old);
    const after = await open(t.root);
    assert.is.not((await after.digestPath(dir))!.digest, before);
    assert.equal([after.stats.treesRebuilt, after.stats.filesHashed], [1, 1], "only the edited file is read");
  } finally {
    await t.cleanup();
  }
});

test("immutable: folders only. A file added is seen; a file rewritten in place is not (documented), unless paranoid", async () => {
  const t = await tempDir();
  try {
    const dir = await tree(t.root);
    const first = await open(t.root);
    const before = (await first.digestPath(dir, { immutable: true }))!.digest;
    await first.save();
    const warm = await open(t.root);
    assert.is((await warm.digestPath(dir, { immutable: true }))!.digest, before);
    assert.is(warm.stats.treesByDirs, 1);

    await writeFile(join(dir, "c1/a.txt"), "AAA");
    const old = new Date(Date.now() - 60_000);
    await utimes(join(dir, "c1/a.txt"), old, old);
    const trusting = await open(t.root);
    assert.is((await trusting.digestPath(dir, { immutable: true }))!.digest, before, "in-place edit of an immutable folder: not seen");
    const paranoid = await open(t.root);
    const seen = (await paranoid.digestPath(dir))!.digest;
    assert.is.not(seen, before, "the full check sees it");
    await paranoid.save();

    await writeAged(t.root, "d/c2/new.txt", "new");
    const added = await open(t.root);
    assert.is.not((await added.digestPath(dir, { immutable: true }))!.digest, seen, "a file added moves its folder's mtime");
    assert.is(added.stats.treesRebuilt, 1);
  } finally {
    await t.cleanup();
  }
});

test("folders nested in one another, in one session: both answered by their records, and both see an edit", async () => {
  const t = await tempDir();
  try {
    const dir = await tree(t.root);
    const first = await open(t.root);
    const outer = (await first.digestPath(dir))!.digest;
    const inner = (await first.digestPath(join(dir, "c1")))!.digest;
    await first.save();
    const warm = await open(t.root);
    await warm.session(async () => {
      assert.is((await warm.digestPath(dir))!.digest, outer);
      assert.is((await warm.digestPath(join(dir, "c1")))!.digest, inner);
    });
    assert.equal([warm.stats.treesByFiles, warm.stats.treesRebuilt], [2, 0]);
    await writeAged(t.root, "d/c1/sub/new.txt", "new");
    const after = await open(t.root);
    await after.session(async () => {
      assert.is.not((await after.digestPath(dir))!.digest, outer);
      assert.is.not((await after.digestPath(join(dir, "c1")))!.digest, inner);
    });
    assert.equal([after.stats.treesRebuilt, after.stats.filesHashed], [2, 2], "the new file, once per record that holds it");
  } finally {
    await t.cleanup();
  }
});

test("state of an older version: file digests in stat-cache.json are used once, then move into the record", async () => {
  const t = await tempDir();
  try {
    const dir = await tree(t.root);
    // What an older version left: every file of the folder in the stat cache, no trees/ folder.
    const old = await open(t.root);
    for (const f of ["c1/a.txt", "c1/b.txt", "c2/c.txt"]) await old.digestPath(join(dir, f));
    await old.save();
    const oldState = JSON.parse(await readFile(join(t.root, STATE_FILE), "utf8"));
    assert.is(Object.keys(oldState.entries).length, 3);

    const upgraded = await open(t.root);
    await upgraded.digestPath(dir);
    assert.equal([upgraded.stats.filesHashed, upgraded.stats.cacheHits], [0, 3], "nothing re-read");
    await upgraded.save();
    const state = JSON.parse(await readFile(join(t.root, STATE_FILE), "utf8"));
    assert.is(Object.keys(state.entries).length, 0, "their digests now live in the tree record only");
  } finally {
    await t.cleanup();
  }
});

test("a damaged or foreign tree record reads as none: the folder is walked again, same digest", async () => {
  const t = await tempDir();
  try {
    const dir = await tree(t.root);
    const first = await open(t.root);
    const before = (await first.digestPath(dir))!.digest;
    await first.save();
    const trees = join(t.root, "cache/state/trees");
    const names = await readdir(trees);
    for (const n of names) await writeFile(join(trees, n), n.includes("entries") ? "[1,2" : JSON.stringify({ version: 1, path: "/elsewhere" }));
    const again = await open(t.root);
    assert.is((await again.digestPath(dir))!.digest, before);
    assert.is(again.stats.treesRebuilt, 1);
    assert.is(again.stats.filesHashed, 3);
  } finally {
    await t.cleanup();
  }
});

test.run();
