// The digest service: file and folder digests against values computed outside sed-pipe (sha256sum),
// the one symlink rule, the stat cache, the hash pool, manifests read back.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createHash } from "node:crypto";
import { rename, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DigestService, listTree, manifestBytes, parseManifest, SymlinkError, treeDigest } from "../../../src/hash/digest.ts";
import { HashPool, sha256FileSync } from "../../../src/io/sha256.ts";
import { tempDir, writeAged } from "./hash-fixture.ts";

// printf 'ex' | sha256sum; printf 'bee' | sha256sum
const EX = "sha256:5312fb609f60384731fcfcb95deef3602239bf61f865a07bd8e08d818d22e9fa";
const BEE = "sha256:62cb81b5904a262ffaeed02abef36bfc540b09f964b8b0b636662f77ffce6714";
// sha256 of the manifest text {"files":[{"digest":EX,"path":"a/x.txt","size":2},{"digest":BEE,"path":"b.txt","size":3}],"version":2}
const FOLDER = "sha256:452be0e1ed2fc487f6f05afcd4cac055ce9f7c62b7bbaf5de5c8b1f5273e5af7";

const service = () => DigestService.inMemory({ pool: null });

test("file digest = sha256 of the bytes, across read-block boundaries", async () => {
  const t = await tempDir();
  try {
    const d = service();
    assert.is((await d.digestPath(await writeAged(t.root, "abc", "abc")))!.digest, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert.is((await d.digestPath(await writeAged(t.root, "empty", "")))!.digest, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const big = Buffer.alloc(9 * 1024 * 1024 + 123);
    for (let i = 0; i < big.length; i += 4096) big[i] = i & 255;
    // python3: hashlib.sha256(the same bytes).hexdigest()
    assert.is((await d.digestPath(await writeAged(t.root, "big", big)))!.digest, "sha256:a9a12a08a5c6935871a79c777c468692624f909a658bcc1d2fec2ccddac5ea75");
    assert.is(await d.digestPath(join(t.root, "nothing-here")), null);
  } finally {
    await t.cleanup();
  }
});

test("folder digest: the documented manifest; order of writing, empty folders do not matter; content and names do", async () => {
  const t = await tempDir();
  try {
    const dir = join(t.root, "d");
    await writeAged(t.root, "d/b.txt", "bee");
    await writeAged(t.root, "d/a/x.txt", "ex");
    await writeAged(t.root, "d/empty/.keep-no", "");
    await rename(join(dir, "empty/.keep-no"), join(t.root, "moved-out"));
    const d = service();
    const got = (await d.digestPath(dir))!;
    assert.is(got.kind, "dir");
    assert.is(got.size, 5);
    assert.equal(got.files, [
      { path: "a/x.txt", size: 2, digest: EX },
      { path: "b.txt", size: 3, digest: BEE },
    ]);
    assert.is(got.digest, FOLDER);
    assert.is(treeDigest(got.files!), FOLDER);
    await writeAged(t.root, "d2/b.txt", "bee");
    await writeAged(t.root, "d2/a/x.txt", "ex");
    assert.is((await d.digestPath(join(t.root, "d2")))!.digest, FOLDER);
    await rename(join(dir, "b.txt"), join(dir, "c.txt"));
    assert.is.not((await d.digestPath(dir))!.digest, FOLDER);
  } finally {
    await t.cleanup();
  }
});

test("the symlink rule: links are followed; dangling links and cycles are errors", async () => {
  const t = await tempDir();
  try {
    await writeAged(t.root, "real/a/x.txt", "ex");
    await writeAged(t.root, "real/b.txt", "bee");
    await symlink(join(t.root, "real"), join(t.root, "linked"));
    const d = service();
    assert.is((await d.digestPath(join(t.root, "linked")))!.digest, FOLDER);
    await writeAged(t.root, "viafile/a/x.txt", "ex");
    await symlink(join(t.root, "real/b.txt"), join(t.root, "viafile/b.txt"));
    assert.is((await d.digestPath(join(t.root, "viafile")))!.digest, FOLDER, "a linked file digests as its target");
    await symlink(join(t.root, "nowhere"), join(t.root, "real/dangling"));
    await assertRejects(d.digestPath(join(t.root, "real")), /^dangling symlink .*dangling$/);
    await assertRejects(d.digestPath(join(t.root, "real/dangling")), /^dangling symlink/);
    await writeAged(t.root, "cyc/f.txt", "x");
    await symlink(join(t.root, "cyc"), join(t.root, "cyc/loop"));
    await assertRejects(d.digestPath(join(t.root, "cyc")), /^symlink cycle at .*loop$/);
  } finally {
    await t.cleanup();
  }
});

async function assertRejects(p: Promise<unknown>, re: RegExp): Promise<void> {
  try {
    await p;
    assert.unreachable("must fail");
  } catch (err) {
    assert.instance(err, SymlinkError);
    assert.match((err as Error).message, re);
  }
}

test("the stat cache answers unchanged files without reading them, and survives a restart", async () => {
  const t = await tempDir();
  try {
    await writeAged(t.root, "d/a/x.txt", "ex");
    await writeAged(t.root, "d/b.txt", "bee");
    const first = await DigestService.open(t.root, { pool: null });
    assert.is((await first.digestPath(join(t.root, "d")))!.digest, FOLDER);
    assert.equal(first.stats, { filesHashed: 2, bytesHashed: 5, cacheHits: 0, treesByDirs: 0, treesByFiles: 0, treesRebuilt: 1 });
    await first.save();
    const second = await DigestService.open(t.root, { pool: null });
    assert.is((await second.digestPath(join(t.root, "d")))!.digest, FOLDER);
    assert.equal(second.stats, { filesHashed: 0, bytesHashed: 0, cacheHits: 0, treesByDirs: 0, treesByFiles: 1, treesRebuilt: 0 }, "the folder's tree record, checked file by file");
    // Same size, new bytes, the old mtime set back by hand: the ctime still changes, so it is re-read.
    await writeFile(join(t.root, "d/b.txt"), "BEE");
    const t0 = new Date(Date.now() - 60_000);
    await utimes(join(t.root, "d/b.txt"), t0, t0);
    assert.is((await second.digestPath(join(t.root, "d/b.txt")))!.digest, "sha256:7f952e070b77f36cf027859da3b4126e8844d730dbb2fc495506f83ea90b4d05");
    assert.is(second.stats.filesHashed, 1);
    // The folder sees it too (by ctime: size and mtime are as recorded); only that file is re-read.
    const third = await DigestService.open(t.root, { pool: null });
    assert.is.not((await third.digestPath(join(t.root, "d")))!.digest, FOLDER);
    assert.is(third.stats.treesRebuilt, 1);
    assert.is(third.stats.filesHashed, 1, "only the edited file is read again");
  } finally {
    await t.cleanup();
  }
});

test("a file modified within the racy window of its hashing is not trusted", async () => {
  const t = await tempDir();
  try {
    await writeFile(join(t.root, "fresh.txt"), "ex");
    const d = await DigestService.open(t.root, { pool: null });
    assert.is((await d.digestPath(join(t.root, "fresh.txt")))!.digest, EX);
    assert.is((await d.digestPath(join(t.root, "fresh.txt")))!.digest, EX);
    assert.is(d.stats.cacheHits, 0, "written just now: hashed both times");
  } finally {
    await t.cleanup();
  }
});

test("the hash pool and this thread agree; errors keep their code", async () => {
  const t = await tempDir();
  const pool = new HashPool(2);
  try {
    const files: string[] = [];
    for (let i = 0; i < 4; i++) files.push(await writeAged(t.root, `d/f${i}.bin`, Buffer.alloc(1024 * 1024 + i * 4099, i + 1)));
    const viaPool = await Promise.all(files.map((f) => pool.sha256File(f)));
    assert.equal(viaPool, files.map((f) => sha256FileSync(f)));
    const pooled = DigestService.inMemory({ pool });
    const inline = service();
    assert.is((await pooled.digestPath(join(t.root, "d")))!.digest, (await inline.digestPath(join(t.root, "d")))!.digest);
    try {
      await pool.sha256File(join(t.root, "missing.bin"));
      assert.unreachable("must fail");
    } catch (err) {
      assert.is((err as NodeJS.ErrnoException).code, "ENOENT");
    }
  } finally {
    await pool.close();
    await t.cleanup();
  }
});

test("manifests read back: verified against their name, older version-1 manifests accepted, unsafe paths refused", () => {
  const files = [
    { path: "a/x.txt", size: 2, digest: EX },
    { path: "b.txt", size: 3, digest: BEE },
  ];
  const text = manifestBytes([files[1]!, files[0]!]);
  assert.equal(parseManifest(text, FOLDER), files);
  assert.throws(() => parseManifest(text + " ", FOLDER), /corrupt/);
  const v1 = JSON.stringify({ version: 1, files: [{ path: "b.txt", digest: BEE.slice(7), size: 3 }] });
  const v1Digest = `sha256:${sha256Text(v1)}`;
  assert.equal(parseManifest(v1, v1Digest), [{ path: "b.txt", size: 3, digest: BEE }]);
  for (const bad of ["../x", "/etc/passwd", "a//b", "a\\b", "./a"]) {
    const m = JSON.stringify({ version: 2, files: [{ path: bad, digest: BEE, size: 3 }] });
    assert.throws(() => parseManifest(m, `sha256:${sha256Text(m)}`), /unsafe path/);
  }
});

/** A manifest's name, for manifests built by hand in this test. */
function sha256Text(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

test("listTree lists regular files only, sorted by code unit", async () => {
  const t = await tempDir();
  try {
    await writeAged(t.root, "d/B", "1");
    await writeAged(t.root, "d/a", "1");
    await writeAged(t.root, "d/_/z", "1");
    assert.equal(listTree(join(t.root, "d")).map((e) => e.rel), ["B", "_/z", "a"]);
  } finally {
    await t.cleanup();
  }
});

test.run();
