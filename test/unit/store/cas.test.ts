import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, readFile, writeFile, stat, chmod, readdir } from "node:fs/promises";
import { join } from "node:path";
import { ContentStore } from "../../../src/store/cas.ts";
import { OutputDigester, sha256Hex } from "../../../src/store/digest.ts";
import { tempDir, removeDir } from "../../helpers/tmp.ts";

test("put a file, restore it elsewhere with identical bytes; object is read-only", async () => {
  const dir = await tempDir();
  try {
    const store = new ContentStore(join(dir, "cache"));
    await writeFile(join(dir, "a.txt"), "hello");
    const rec = await store.put(join(dir, "a.txt"), "a.txt");
    assert.is(rec.kind, "file");
    assert.is(rec.digest, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"); // printf hello | sha256sum
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
    assert.is((await new OutputDigester(null).digestPath(target))!.digest, rec.digest);
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
    const obj = store.objectPath(sha256Hex("yy"));
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
    const rec = { path: "a", kind: "file" as const, digest: sha256Hex("nothing"), size: 7 };
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
    const d1 = new OutputDigester(state);
    assert.is((await d1.digestPath(f))!.digest, sha256Hex("one"));
    await d1.save();
    await writeFile(f, "two!");
    const d2 = new OutputDigester(state);
    assert.is((await d2.digestPath(f))!.digest, sha256Hex("two!"));
    assert.is(await d2.digestPath(join(dir, "nope")), null);
  } finally {
    await removeDir(dir);
  }
});

test("storing an output keeps its cached digest valid (link/chmod move only ctime)", async () => {
  const dir = await tempDir();
  try {
    const state = join(dir, "state.json");
    const d = new OutputDigester(state);
    const store = new ContentStore(join(dir, "cache"), d);
    await mkdir(join(dir, "o"));
    await writeFile(join(dir, "o", "a"), "A");
    await store.put(join(dir, "o"), "o");
    await d.save();
    const raw = JSON.parse(await readFile(state, "utf8"));
    const entry = raw.entries[join(dir, "o", "a")];
    const st = await stat(join(dir, "o", "a"), { bigint: true });
    assert.is(entry.ctimeNs, String(st.ctimeNs));
  } finally {
    await removeDir(dir);
  }
});

test.run();
