import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, readFile, writeFile, stat, chmod, readdir, utimes } from "node:fs/promises";
import { join } from "node:path";
import { ContentStore } from "../../../src/store/cas.ts";
import { DigestService } from "../../../src/hash/digest.ts";
import { tempDir, removeDir } from "../../helpers/tmp.ts";

test("put a file, restore it elsewhere with identical bytes; object is read-only", async () => {
  const dir = await tempDir();
  try {
    const store = new ContentStore(join(dir, "cache"));
    await writeFile(join(dir, "a.txt"), "hello");
    const rec = await store.put(join(dir, "a.txt"), "a.txt");
    assert.is(rec.kind, "file");
    assert.is(rec.digest, "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"); // printf hello | sha256sum
    assert.is(rec.size, 5);
    assert.ok(await store.has(rec));
    assert.is((await stat(store.objectPath(rec.digest))).mode & 0o222, 0);
    const r = await store.restore(rec, join(dir, "out", "b.txt"));
    assert.ok(r.ok);
    assert.is(await readFile(join(dir, "out", "b.txt"), "utf8"), "hello");
  } finally {
    await removeDir(dir);
  }
});

test("put a folder as manifest + files; restore replaces an existing folder whole", async () => {
  const dir = await tempDir();
  try {
    const store = new ContentStore(join(dir, "cache"));
    const src = join(dir, "model");
    await mkdir(join(src, "sub"), { recursive: true });
    await writeFile(join(src, "w.bin"), "weights");
    await writeFile(join(src, "sub", "cfg.json"), "{}");
    const rec = await store.put(src, "model");
    assert.is(rec.kind, "dir");
    assert.is(rec.size, 9);
    const manifest = JSON.parse(await readFile(store.objectPath(rec.digest), "utf8"));
    assert.equal(manifest.files.map((f: { path: string }) => f.path), ["sub/cfg.json", "w.bin"]);
    const target = join(dir, "restored");
    await mkdir(target);
    await writeFile(join(target, "stale.txt"), "old");
    const r = await store.restore(rec, target);
    assert.ok(r.ok);
    assert.equal((await readdir(target)).sort(), ["sub", "w.bin"]);
    assert.is(await readFile(join(target, "sub", "cfg.json"), "utf8"), "{}");
    // Same content gives the same digest (content addressing), a different one a different digest.
    assert.is((await DigestService.inMemory({ pool: null }).digestPath(target))!.digest, rec.digest);
  } finally {
    await removeDir(dir);
  }
});

test("a corrupt object is a miss, never a hit, and is moved aside", async () => {
  const dir = await tempDir();
  try {
    const store = new ContentStore(join(dir, "cache"));
    await writeFile(join(dir, "a.txt"), "good bytes");
    const rec = await store.put(join(dir, "a.txt"), "a.txt");
    const obj = store.objectPath(rec.digest);
    await chmod(obj, 0o644);
    await writeFile(obj, "evil bytes");
    const target = join(dir, "out.txt");
    const r = await store.restore(rec, target);
    assert.is(r.ok, false);
    if (!r.ok) {
      assert.is(r.reason, "corrupt");
      assert.match(r.detail, /corrupt/);
    }
    await assert.not.ok(await stat(target).catch(() => null));
    assert.not.ok(await store.has(rec));
    assert.is((await readdir(store.corruptDir)).length, 1);
  } finally {
    await removeDir(dir);
  }
});

test("a corrupt file inside a folder object fails the whole restore and leaves the target alone", async () => {
  const dir = await tempDir();
  try {
    const store = new ContentStore(join(dir, "cache"));
    const src = join(dir, "d");
    await mkdir(src);
    await writeFile(join(src, "x"), "xx");
    await writeFile(join(src, "y"), "yy");
    const rec = await store.put(src, "d");
    const obj = store.objectPath("sha256:ef90d9c1ec76b1edc9edfaf2c0c05359c10ccc49ae8ecf7b7fd25ce9c02e86a4");
    await chmod(obj, 0o644);
    await writeFile(obj, "zz");
    const target = join(dir, "t");
    await mkdir(target);
    await writeFile(join(target, "keep"), "k");
    const r = await store.restore(rec, target);
    assert.is(r.ok, false);
    assert.equal(await readdir(target), ["keep"]);
  } finally {
    await removeDir(dir);
  }
});

test("a missing object is a miss", async () => {
  const dir = await tempDir();
  try {
    const store = new ContentStore(join(dir, "cache"));
    const rec = { path: "a", kind: "file" as const, digest: "sha256:1785cfc3bc6ac7738e8b38cdccd1af12563c2b9070e07af336a1bf8c0f772b6a", size: 7 };
    assert.not.ok(await store.has(rec));
    const r = await store.restore(rec, join(dir, "a"));
    assert.equal(r.ok ? "hit" : r.reason, "missing");
  } finally {
    await removeDir(dir);
  }
});

test("digester reuses a digest while the stat tuple holds and rehashes on change", async () => {
  const dir = await tempDir();
  try {
    const state = join(dir, "state.json");
    const f = join(dir, "f");
    await writeFile(f, "one");
    const d1 = await DigestService.open(dir, { statePath: state, pool: null });
    assert.is((await d1.digestPath(f))!.digest, "sha256:7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed");
    await d1.save();
    await writeFile(f, "two!");
    const d2 = await DigestService.open(dir, { statePath: state, pool: null });
    assert.is((await d2.digestPath(f))!.digest, "sha256:a97b629a5b1da759586c3353a9bc284bf673970d8eca56e11e556b715c329614");
    assert.is(await d2.digestPath(join(dir, "nope")), null);
  } finally {
    await removeDir(dir);
  }
});

test("copy mode (default): artifacts and objects never share bytes; the object is read-only", async () => {
  const dir = await tempDir();
  try {
    const store = new ContentStore(join(dir, "cache"));
    await mkdir(join(dir, "o"));
    await writeFile(join(dir, "o", "a"), "A");
    const rec = await store.put(join(dir, "o"), "o");
    const files = await store.readManifest(rec.digest);
    const obj = store.objectPath(files[0]!.digest);
    const [art, o] = await Promise.all([stat(join(dir, "o", "a")), stat(obj)]);
    assert.is.not(art.ino, o.ino);
    assert.is(art.nlink, 1);
    assert.is(o.mode & 0o222, 0);
    await writeFile(join(dir, "o", "a"), "B");
    assert.is(await readFile(obj, "utf8"), "A");
    // A restored artifact is the user's: writable, and again not the object's inode.
    await store.restore(rec, join(dir, "r"));
    const r = await stat(join(dir, "r", "a"));
    assert.is.not(r.ino, o.ino);
    assert.ok(r.mode & 0o200);
  } finally {
    await removeDir(dir);
  }
});

test("hardlink mode: the artifact becomes the object (read-only) and its cached digest stays valid", async () => {
  const dir = await tempDir();
  try {
    const state = join(dir, "state.json");
    const d = await DigestService.open(dir, { statePath: state, pool: null });
    const store = new ContentStore(join(dir, "cache"), d, { link: "hardlink" });
    await mkdir(join(dir, "o"));
    const f = join(dir, "o", "a");
    await writeFile(f, "A");
    const old = new Date(Date.now() - 60_000);
    await utimes(f, old, old);
    await store.put(join(dir, "o"), "o");
    await d.save();
    const st = await stat(f, { bigint: true });
    assert.is(st.nlink, 2n);
    assert.is(Number(st.mode) & 0o222, 0);
    // chmod and link moved ctime; the folder's tree record followed: nothing is read again.
    const again = await DigestService.open(dir, { statePath: state, pool: null });
    assert.is((await again.digestPath(join(dir, "o")))!.digest, (await d.digestPath(join(dir, "o")))!.digest);
    assert.is(again.stats.filesHashed, 0);
    assert.is(again.stats.cacheHits, 1);
  } finally {
    await removeDir(dir);
  }
});

test.run();
