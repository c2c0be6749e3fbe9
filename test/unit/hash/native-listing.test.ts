// Folder listings on native threads (@sed-pipe/fslist, src/hash/native-listing.ts): the addon's text
// signs exactly as listDirSync (numbers printed as JavaScript prints them, entries in Node's readdir
// order, links followed, special files skipped, a dangling link failing the folder), on any number of
// threads, and signed there as JavaScript signs the text; statMany stats as fs.statSync; a record
// checked through it passes warm and sees an in-place edit; the launcher's preload
// is taken once per folder and dropped when the first assessment ends; the hint names the folders of
// big records and is rewritten only when they change.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { mkdir, readFile, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { statSync } from "node:fs";
import { join } from "node:path";
import { DigestService } from "../../../src/hash/digest.ts";
import { FolderLister } from "../../../src/hash/folder-lister.ts";
import { listDirSync } from "../../../src/hash/listing.ts";
import { fsListAddon, HINT_FILE, HINT_MIN_FILES, nativeListings, Preloaded, readHint, sigOfText, type FsListAddon } from "../../../src/hash/native-listing.ts";
import { Rng } from "../../../src/rng.ts";
import { requires } from "../../helpers/skip.ts";
import { tempDir, writeAged } from "./hash-fixture.ts";

const addon = fsListAddon();
const native = requires("fslist-addon", () => (addon ? true : "@sed-pipe/fslist is not installed or does not load (npm ci builds it; a C++17 compiler is needed)"));
const fl = addon as FsListAddon;
// Signing on the listing threads needs the OpenSSL headers that ship with Node (include/node/openssl).
const digests = requires("fslist-digests", () => (!addon ? "@sed-pipe/fslist is not installed" : addon.digests ? true : "@sed-pipe/fslist was built without OpenSSL's headers (Node's include/node/openssl): listings are signed in JavaScript"));

native.test("formatNumber prints every kind of double as JavaScript's String() does", () => {
  const fixed = [0, -0, 1, -1, 0.1, 0.5, 1e-6, 1.5e-6, 1e-7, 123e-20, 1e20, 1e21, 1.5e21, 2 ** 53, 2 ** 53 + 2, 2 ** 63, 2 ** 64, 1.7976931348623157e308, 5e-324, -5e-324, NaN, Infinity, -Infinity];
  fixed.push(1733400000000, 1733400000123.4567, 1796497454528.321, 1796497455289.5293, 999999999999999.9, 123456789012345680000);
  for (const x of fixed) assert.is(fl.formatNumber(x), String(x), `formatNumber(${x})`);
  const rng = new Rng(14);
  const next = () => rng.int(4294967296);
  const view = new DataView(new ArrayBuffer(8));
  let checked = 0;
  for (let i = 0; i < 100_000; i++) {
    // Timestamps as Node makes them (sec * 1e3 + nsec / 1e6), whole seconds among them, and sizes and inodes.
    const sec = 946_684_800 + (next() % 1_000_000_000);
    const nsec = i % 7 === 0 ? 0 : i % 11 === 0 ? (next() % 1000) * 1_000_000 : next() % 1_000_000_000;
    for (const x of [sec * 1e3 + nsec / 1e6, next() * 2 ** 21 + next()]) {
      assert.is(fl.formatNumber(x), String(x));
      checked++;
    }
    // Any finite double, from random bits.
    view.setUint32(0, next());
    view.setUint32(4, next());
    const y = view.getFloat64(0);
    if (Number.isFinite(y)) {
      assert.is(fl.formatNumber(y), String(y), `bits ${view.getUint32(0).toString(16)} ${view.getUint32(4).toString(16)}`);
      checked++;
    }
  }
  assert.ok(checked > 290_000);
});

/** A folder with what a listing must handle: names in byte order unlike locale order, links, a FIFO, nanosecond and whole-second mtimes. */
async function mixedFolder(root: string): Promise<string> {
  const dir = join(root, "mixed");
  await mkdir(join(dir, "sub"), { recursive: true });
  const names = ["b.txt", "B.txt", "_x", "a b", "é", "z10", "z2", "日本語.png", "empty", ".hidden"];
  for (const [i, n] of names.entries()) await writeFile(join(dir, n), n === "empty" ? "" : `${n}:${i}`);
  await utimes(join(dir, "b.txt"), 1_700_000_000, 1_700_000_000); // whole seconds
  await utimes(join(dir, "B.txt"), 1_700_000_000.123456, 1_700_000_000.987654);
  await symlink(join(dir, "a b"), join(dir, "link-to-file"));
  await symlink(join(dir, "sub"), join(dir, "link-to-dir"));
  assert.is(spawnSync("mkfifo", [join(dir, "fifo")]).status, 0, "mkfifo made the FIFO the listing must skip");
  return dir;
}

native.test("the addon's listing signs as listDirSync: order, names, links, special files, mtimes; on 0 to 3 threads", async () => {
  const t = await tempDir();
  try {
    const mixed = await mixedFolder(t.root);
    const many: string[] = [mixed, join(mixed, "sub")];
    for (let d = 0; d < 40; d++) {
      const dir = join(t.root, "many", `d${d}`);
      await mkdir(dir, { recursive: true });
      for (let i = 0; i < 25; i++) await writeFile(join(dir, `f${i}`), `${d}.${i}`);
      many.push(dir);
    }
    const want = many.map((d) => {
      const l = listDirSync(d, "", false);
      return { sig: l.sig, racyUntilMs: l.racyUntilMs };
    });
    for (const threads of [0, 1, 3]) {
      assert.equal(nativeListings(fl, many, threads), want, `${threads} threads`);
      const texts = fl.finish(fl.begin(many, threads, false));
      assert.equal(texts.map((x) => sigOfText(x![0], x![1])), want, `${threads} threads, texts signed in JavaScript`);
    }
    const text = fl.finish(fl.begin([mixed], 0))[0]![0];
    assert.ok(!text.includes("fifo"), "a FIFO is skipped, as listDirSync skips it");
    assert.ok(text.includes("d\0link-to-dir\n") && text.includes("f\0link-to-file\0"), "links are followed");
  } finally {
    await t.cleanup();
  }
});

digests.test("signed on the listing threads: each digest is the SHA-256 of the listing's text, on 0 to 3 threads", async () => {
  const t = await tempDir();
  try {
    const mixed = await mixedFolder(t.root);
    const folders = [mixed, join(mixed, "sub"), t.root];
    const texts = fl.finish(fl.begin(folders, 0, false));
    for (const threads of [0, 1, 3]) {
      const signed = fl.finish(fl.begin(folders, threads, true));
      assert.equal(signed, texts.map((x) => [sigOfText(x![0], x![1]).sig, x![1]]), `${threads} threads`);
      assert.ok(signed.every((x) => /^[0-9a-f]{64}$/.test(x![0])));
    }
    assert.equal(fl.finish(fl.begin([join(t.root, "missing")], 1, true)), [null], "a folder that cannot be listed is null here too");
  } finally {
    await t.cleanup();
  }
});

native.test("statMany: size and mtimeMs as fs.statSync gives them (links followed), NaN where stat fails", async () => {
  const t = await tempDir();
  try {
    const mixed = await mixedFolder(t.root);
    const whole = join(t.root, "whole-second");
    await writeFile(whole, "12345");
    await utimes(whole, 1_700_000_000, 1_700_000_000);
    const paths = [join(mixed, "a b"), join(mixed, "link-to-file"), join(mixed, "sub"), whole, join(t.root, "missing"), join(mixed, "a b", "not-a-folder")];
    const got = Array.from(fl.statMany(paths));
    const want = paths.flatMap((p) => {
      try {
        const st = statSync(p);
        return [st.size, st.mtimeMs];
      } catch {
        return [NaN, NaN];
      }
    });
    assert.equal(got, want);
    assert.equal(got.slice(6, 8), [5, 1_700_000_000_000]);
    assert.ok(Number.isNaN(got[8]) && Number.isNaN(got[11]), "missing, and a path through a file: NaN");
    assert.equal(Array.from(fl.statMany([])), []);
    assert.throws(() => fl.statMany([1] as unknown as string[]), /^statMany: every path must be a string/);
  } finally {
    await t.cleanup();
  }
});

native.test("a folder that cannot be listed is null: missing, not a folder, a dangling link in it; the others still list", async () => {
  const t = await tempDir();
  try {
    const ok = join(t.root, "ok");
    await mkdir(ok);
    await writeFile(join(ok, "f"), "x");
    const dangling = join(t.root, "dangling");
    await mkdir(dangling);
    await symlink(join(dangling, "nope"), join(dangling, "l"));
    const got = nativeListings(fl, [join(t.root, "missing"), join(ok, "f"), dangling, ok], 1);
    assert.equal(got.slice(0, 3), [null, null, null]);
    assert.is(got[3]!.sig, listDirSync(ok, "", false).sig);
    assert.throws(() => fl.begin("nope" as unknown as string[], 1), /begin\(paths: string\[\], threads: number, digest\?: boolean\)/);
    assert.throws(() => fl.begin([ok, 1] as unknown as string[], 1), /^begin: every path must be a string/);
    assert.throws(() => fl.finish({}), /not a handle/);
  } finally {
    await t.cleanup();
  }
});

/** A tree of `dirs` folders x `per` files under root/t, dated a minute back (outside every racy window). */
async function agedTree(root: string, dirs: number, per: number): Promise<string> {
  const tree = join(root, "t");
  for (let d = 0; d < dirs; d++) for (let i = 0; i < per; i++) await writeAged(root, `t/c${d}/f${i}.txt`, `${d}/${i}`);
  const old = new Date(Date.now() - 60_000);
  for (let d = 0; d < dirs; d++) await utimes(join(tree, `c${d}`), old, old);
  await utimes(tree, old, old);
  return tree;
}

native.test("a record checked on native threads: warm it passes, an edit in place (size and mtime put back) is seen", async () => {
  const t = await tempDir();
  try {
    const tree = await agedTree(t.root, 12, 200);
    const open = () => DigestService.open(t.root, { pool: null, listing: null, native: fl, preload: null });
    const first = await open();
    const before = (await first.digestPath(tree))!;
    await first.save();
    const warm = await open();
    assert.is((await warm.session(() => warm.digestPath(tree)))!.digest, before.digest);
    assert.equal([warm.stats.treesByFiles, warm.stats.treesRebuilt], [1, 0], "a record made by the JS walk passes the native check");
    const f = join(tree, "c7/f9.txt");
    const st = await stat(f);
    await writeFile(f, "7/X");
    await utimes(f, st.atime, st.mtime);
    const after = await open();
    assert.is.not((await after.session(() => after.digestPath(tree)))!.digest, before.digest);
    assert.equal([after.stats.treesRebuilt, after.stats.filesHashed], [1, 1], "only the edited file is read");
  } finally {
    await t.cleanup();
  }
});

native.test("the launcher's preload: taken once per folder by the first service, dropped when its first session ends", async () => {
  const t = await tempDir();
  try {
    const one = await agedTree(join(t.root, "1"), 4, 80);
    const two = await agedTree(join(t.root, "2"), 4, 80);
    const foldersOf = (tree: string) => [tree, ...[0, 1, 2, 3].map((d) => join(tree, `c${d}`))];
    const first = await DigestService.open(t.root, { pool: null, listing: null, native: fl, preload: null });
    const digest1 = (await first.digestPath(one))!.digest;
    const digest2 = (await first.digestPath(two))!.digest;
    await first.save();
    // What bin/sed-pipe.js leaves on globalThis (here a preload that has finished listing); then a
    // file of each tree is edited after the preload listed it.
    const folders = [...foldersOf(one), ...foldersOf(two)];
    const listed = fl.finish(fl.begin(folders, 1));
    assert.ok(listed.every((x) => x !== null));
    (globalThis as Record<string, unknown>).__sedPipePreload = { folders, digests: false, finish: () => listed };
    await new Promise((r) => setTimeout(r, 20));
    const ds = await DigestService.open(t.root, { pool: null, listing: null, native: fl });
    assert.is((globalThis as Record<string, unknown>).__sedPipePreload, undefined, "claimed by the first service opened on disk");
    await writeFile(join(one, "c2/f5.txt"), "2/5 edited");
    await writeFile(join(two, "c1/f7.txt"), "1/7 edited");
    // The first session answers from the listings made when the command started (before the edit)...
    assert.is((await ds.session(() => ds.digestPath(one)))!.digest, digest1);
    assert.equal([ds.stats.treesByFiles, ds.stats.treesRebuilt], [1, 0]);
    // ...and what it did not take is dropped when it ends: the next session lists again and sees the edits.
    await ds.session(() => ds.digestPath(two));
    assert.equal([ds.stats.treesByFiles, ds.stats.treesRebuilt], [1, 1], "the preloaded listings of the second tree were dropped");
    assert.is.not((await ds.session(() => ds.digestPath(one)))!.digest, digest1, "taken once: the first tree is listed again");
    assert.is.not(digest2, undefined);
    // Taken once: a second take of the same folder gets nothing.
    const p = new Preloaded({ folders: [one], digests: false, finish: () => fl.finish(fl.begin([one], 0)) });
    const got = p.take(one);
    assert.equal(got, nativeListings(fl, [one], 0)[0], "a preloaded text is signed as a listing made now");
    assert.is(p.take(one), undefined);
    assert.is(p.take(join(one, "c0")), undefined, "a folder the preload did not list");
  } finally {
    delete (globalThis as Record<string, unknown>).__sedPipePreload;
    await t.cleanup();
  }
});

native.test("the hint: folders of records of HINT_MIN_FILES files or more, rewritten after an assessment when they change", async () => {
  const t = await tempDir();
  try {
    const small = await agedTree(join(t.root, "s"), 2, 3);
    const big = await agedTree(t.root, 3, Math.ceil(HINT_MIN_FILES / 3));
    const hintFile = join(t.root, "cache", "state", HINT_FILE);
    const open = () => DigestService.open(t.root, { pool: null, listing: null, native: fl, preload: null });
    const a = await open();
    await a.session(() => a.digestPath(small));
    await a.save();
    assert.is(readHint(hintFile), null, "a small record is not hinted");
    const a1 = await open();
    await a1.digestPath(big);
    await a1.save();
    assert.is(readHint(hintFile), null, "outside an assessment (a session) the hint is left alone");
    const a2 = await open();
    await a2.session(() => a2.digestPath(big, { immutable: true }));
    await a2.save();
    assert.is(readHint(hintFile), null, "an immutable folder's check lists nothing: not hinted");
    const b = await open();
    await b.session(() => b.digestPath(big));
    await b.save();
    const want = [big, join(big, "c0"), join(big, "c1"), join(big, "c2")];
    assert.equal(readHint(hintFile)?.slice().sort(), want.slice().sort(), "checked file by file: its folders are hinted");
    const written = (await stat(hintFile)).mtimeMs;
    await new Promise((r) => setTimeout(r, 20));
    const c = await open();
    await c.session(() => c.digestPath(big));
    await c.save();
    assert.is(c.stats.treesByFiles, 1);
    assert.is((await stat(hintFile)).mtimeMs, written, "the same folders: not rewritten");
    // A check answered wholly by the launcher's preload checked the same folders: not rewritten either
    // (it once noted none, so every other status wrote an empty hint and went without a preload).
    const preloaded = fl.finish(fl.begin(want, 0, fl.digests));
    const p = await DigestService.open(t.root, { pool: null, listing: null, native: fl, preload: new Preloaded({ folders: want, digests: fl.digests, finish: () => preloaded }) });
    await p.session(() => p.digestPath(big));
    await p.save();
    assert.is(p.stats.treesByFiles, 1);
    assert.equal(readHint(hintFile)?.slice().sort(), want.slice().sort(), "preloaded folders stay hinted");
    assert.is((await stat(hintFile)).mtimeMs, written, "the same folders, all preloaded: not rewritten");
    await rm(join(big, "c1"), { recursive: true });
    const d = await open();
    await d.session(() => d.digestPath(big));
    await d.save();
    assert.equal(readHint(hintFile)?.slice().sort(), [big, join(big, "c0"), join(big, "c2")].sort(), "a folder gone is no longer hinted");
    const e = await open();
    await e.session(() => e.digestPath(big, { immutable: true }));
    await e.save();
    assert.equal(readHint(hintFile), [], "an assessment that lists nothing empties the hint (the folder was declared immutable since)");
    await writeFile(hintFile, "{not json");
    assert.is(readHint(hintFile), null);
    const lister = new FolderLister({ native: fl, helper: null, preload: null });
    await lister.saveHint(hintFile);
    assert.is(await readFile(hintFile, "utf8"), "{not json", "nothing listed and no hint: nothing written");
  } finally {
    await t.cleanup();
  }
});

native.test("a check of part of the pipeline keeps the hint's other folders; the next whole check drops what it no longer checks", async () => {
  const t = await tempDir();
  try {
    const per = Math.ceil(HINT_MIN_FILES / 2);
    const a = await agedTree(join(t.root, "a"), 2, per);
    const b = await agedTree(join(t.root, "b"), 2, per);
    const foldersOf = (tree: string) => [tree, join(tree, "c0"), join(tree, "c1")];
    const hintFile = join(t.root, "cache", "state", HINT_FILE);
    const sorted = (x: readonly string[] | null | undefined) => x?.slice().sort();
    const check = async (paths: string[], part: boolean) => {
      const ds = await DigestService.open(t.root, { pool: null, listing: null, native: fl, preload: null });
      await ds.session(async () => {
        for (const p of paths) await ds.digestPath(p);
      }, { part });
      await ds.save();
    };
    await check([a, b], false);
    assert.equal(sorted(readHint(hintFile)), sorted([...foldersOf(a), ...foldersOf(b)]));
    const written = (await stat(hintFile)).mtimeMs;
    await new Promise((r) => setTimeout(r, 20));
    await check([a], true);
    assert.is((await stat(hintFile)).mtimeMs, written, "`status <a stage>` checks a only: b's folders stay, nothing is rewritten");
    await check([a], false);
    assert.equal(sorted(readHint(hintFile)), sorted(foldersOf(a)), "a whole check that no longer checks b drops its folders");
    await check([b], true);
    assert.equal(sorted(readHint(hintFile)), sorted([...foldersOf(a), ...foldersOf(b)]), "a check of part adds what it checked");
  } finally {
    await t.cleanup();
  }
});

test.run();
