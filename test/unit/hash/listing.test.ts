// Listing folders (src/hash/listing.ts): THE listing signature, the same on the helper thread as here
// (it runs the very source of listDirSync), folders claimed once by whichever thread is free, a
// signature that is not the expected one stopping both, a dead helper costing nothing but time, and
// a record big enough for the helper checked through it: an in-place edit is still seen.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { DigestService } from "../../../src/hash/digest.ts";
import { claimListings, HELPER_MIN_FILES, ListingHelper, listDirSync, type ListJob } from "../../../src/hash/listing.ts";
import { tempDir, writeAged } from "./hash-fixture.ts";

/** `dirs` folders of `per` files each under root/t, dated a minute back. */
async function folders(root: string, dirs: number, per: number): Promise<string[]> {
  const out: string[] = [];
  for (let d = 0; d < dirs; d++) {
    const dir = join(root, "t", `c${d}`);
    await mkdir(dir, { recursive: true });
    await Promise.all(Array.from({ length: per }, (_, i) => writeFile(join(dir, `f${i}.txt`), `${d}/${i}`)));
    out.push(dir);
  }
  // Files and folders dated a minute back: a record does not trust anything modified within its racy window.
  const t = new Date(Date.now() - 60_000);
  for (const dir of out) {
    for (let i = 0; i < per; i++) await utimes(join(dir, `f${i}.txt`), t, t);
    await utimes(dir, t, t);
  }
  return out;
}

const jobsOf = (dirs: string[]): ListJob[] => dirs.map((abs) => ({ abs, rel: "", expect: listDirSync(abs, "", false).sig }));

test("listDirSync: the signature covers names and stats, not the rel prefix; keep=false keeps nothing", async () => {
  const t = await tempDir();
  try {
    const [dir] = await folders(t.root, 1, 3);
    const full = listDirSync(dir!, "x/y", true);
    const bare = listDirSync(dir!, "", false);
    assert.is(full.sig, bare.sig);
    assert.is(full.racyUntilMs, bare.racyUntilMs);
    assert.equal(full.files.map((f) => f.rel).sort(), ["x/y/f0.txt", "x/y/f1.txt", "x/y/f2.txt"]);
    assert.equal([bare.files, bare.subdirs], [[], []]);
    await writeFile(join(dir!, "f1.txt"), "1/1");
    assert.is.not(listDirSync(dir!, "", false).sig, bare.sig, "a rewrite with the same bytes moves mtime/ctime");
    await symlink(join(dir!, "nope"), join(dir!, "dangling"));
    try {
      listDirSync(dir!, "", false);
      assert.unreachable("a dangling link must throw");
    } catch (err) {
      assert.is((err as { code?: string }).code, "SED_PIPE_TREE_LINK");
    }
  } finally {
    await t.cleanup();
  }
});

test("claimListings: each folder once, in claim order; a signature not the expected one stops the claims", async () => {
  const t = await tempDir();
  try {
    const dirs = await folders(t.root, 5, 2);
    const jobs = jobsOf(dirs);
    const control = new Int32Array(new SharedArrayBuffer(8));
    const all = claimListings(jobs, control);
    assert.equal(all.map((l) => l[0]), [0, 1, 2, 3, 4]);
    assert.equal(all.map((l) => l[1]), jobs.map((j) => j.expect));
    assert.is(Atomics.load(control, 1), 0);
    const bad = jobs.map((j, i) => (i === 1 ? { ...j, expect: "0".repeat(64) } : j));
    const stopped = new Int32Array(new SharedArrayBuffer(8));
    assert.equal(claimListings(bad, stopped).map((l) => l[0]), [0, 1], "stops after the mismatch");
    assert.is(Atomics.load(stopped, 1), 1);
    const gone = claimListings([{ abs: join(t.root, "missing"), rel: "", expect: "" }], new Int32Array(new SharedArrayBuffer(8)));
    assert.equal(gone, [[0, null, 0]]);
  } finally {
    await t.cleanup();
  }
});

test("the helper thread signs folders exactly as this thread; shared, every folder is listed once", async () => {
  const t = await tempDir();
  const helper = new ListingHelper();
  try {
    const dirs = await folders(t.root, 40, 5);
    const jobs = jobsOf(dirs);
    const want = dirs.map((d) => listDirSync(d, "", false)).map(({ sig, racyUntilMs }) => ({ sig, racyUntilMs }));
    assert.equal(await helper.list(jobs, { here: false }), want, "helper only");
    assert.equal(await helper.list(jobs), want, "both threads");
    const bad = await helper.list(jobs.map((j, i) => (i === 3 ? { ...j, expect: "x" } : j)), { here: false });
    assert.equal(bad[3], want[3], "the folder that differs is reported with what it is now");
    bad.forEach((x, i) => assert.ok(x === undefined || isDeepStrictEqual(x, want[i]), `folder ${i}: not listed, or listed right`));
  } finally {
    await helper.close();
    await t.cleanup();
  }
});

test("a helper that is gone: everything is listed here", async () => {
  const t = await tempDir();
  const helper = new ListingHelper();
  try {
    const dirs = await folders(t.root, 6, 2);
    await helper.close();
    const want = dirs.map((d) => listDirSync(d, "", false)).map(({ sig, racyUntilMs }) => ({ sig, racyUntilMs }));
    assert.equal(await helper.list(jobsOf(dirs), { here: false }), want);
  } finally {
    await t.cleanup();
  }
});

test("a record of the helper's minFiles files or more is checked on two threads: warm, it passes; an edit in place is seen", async () => {
  const t = await tempDir();
  const helper = new ListingHelper({ minFiles: 1000 });
  try {
    assert.ok(HELPER_MIN_FILES > 22_199, "the demo's 22,199-file universe is checked on one thread (measured: no gain)");
    const per = Math.ceil((helper.minFiles + 10) / 16);
    await folders(t.root, 16, per);
    const dir = join(t.root, "t");
    const old = new Date(Date.now() - 60_000);
    await utimes(dir, old, old);
    const open = () => DigestService.open(t.root, { pool: null, listing: helper, native: null });
    const first = await open();
    const before = (await first.digestPath(dir))!;
    await first.save();
    const warm = await open();
    assert.is((await warm.session(() => warm.digestPath(dir)))!.digest, before.digest);
    assert.equal([warm.stats.treesByFiles, warm.stats.treesRebuilt], [1, 0]);
    await writeAged(t.root, "t/c9/f3.txt", "9/X");
    const after = await open();
    assert.is.not((await after.session(() => after.digestPath(dir)))!.digest, before.digest);
    assert.equal([after.stats.treesRebuilt, after.stats.filesHashed], [1, 1], "only the edited file is read");
    await rm(join(dir, "c2"), { recursive: true });
    const removed = await open();
    assert.is.not((await removed.session(() => removed.digestPath(dir)))!.digest, before.digest);
    assert.is(removed.stats.treesRebuilt, 1);
  } finally {
    await helper.close();
    await t.cleanup();
  }
});

test.run();
