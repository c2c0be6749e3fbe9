import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, rm, writeFile, readFile, readdir, lstat, readlink } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { extractTarGz, unsafeEntryReason } from "../../../src/io/archive.ts";
import { InputError } from "../../../src/errors.ts";

let dir = "";
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sed-archive-"));
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Entry {
  path: string;
  type?: "0" | "1" | "2" | "3" | "5";
  data?: string;
  linkpath?: string;
}

/** A hand-built ustar archive, so that tests can hold entries tar(1) itself would refuse to write. */
function makeTarGz(entries: Entry[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const data = Buffer.from(e.data ?? "");
    const h = Buffer.alloc(512);
    h.write(e.path, 0, 100, "utf8");
    h.write((e.type === "5" ? "0000755" : "0000644") + "\0", 100);
    h.write("0000000\0", 108);
    h.write("0000000\0", 116);
    h.write(data.length.toString(8).padStart(11, "0") + "\0", 124);
    h.write("00000000000\0", 136);
    h.write("        ", 148);
    h.write(e.type ?? "0", 156);
    if (e.linkpath) h.write(e.linkpath, 157, 100, "utf8");
    h.write("ustar\0", 257);
    h.write("00", 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

async function expectRefusal(entries: Entry[], pattern: RegExp): Promise<void> {
  const archive = join(dir, `bad-${Math.random().toString(36).slice(2)}.tar.gz`);
  await writeFile(archive, makeTarGz([{ path: "top/", type: "5" }, { path: "top/ok.txt", data: "fine" }, ...entries]));
  const dest = join(dir, "out-bad");
  try {
    await extractTarGz(archive, dest);
    assert.unreachable("unsafe archive extracted");
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, /refusing to extract/);
    assert.match((err as Error).message, pattern);
  }
  assert.not.ok(existsSync(dest), "target folder removed after refusal");
  assert.not.ok(existsSync(join(dir, "evil.txt")), "nothing written outside");
}

test("extracts a normal archive, with strip", async () => {
  const archive = join(dir, "good.tar.gz");
  await writeFile(
    archive,
    makeTarGz([
      { path: "imagenet-a/", type: "5" },
      { path: "imagenet-a/n01/", type: "5" },
      { path: "imagenet-a/n01/a.jpg", data: "AAAA" },
      { path: "imagenet-a/n01/b.jpg", data: "BB" },
      { path: "imagenet-a/n01/latest.jpg", type: "2", linkpath: "b.jpg" },
    ]),
  );
  const dest = join(dir, "out-good");
  const r = await extractTarGz(archive, dest, { strip: 1 });
  assert.equal(r, { files: 2, dirs: 2, links: 1, bytes: 6 });
  assert.equal((await readdir(dest)).sort(), ["n01"]);
  assert.is(await readFile(join(dest, "n01/a.jpg"), "utf8"), "AAAA");
  assert.ok((await lstat(join(dest, "n01/latest.jpg"))).isSymbolicLink());
  assert.is(await readlink(join(dest, "n01/latest.jpg")), "b.jpg");
});

test("refuses ../ entries", async () => {
  await expectRefusal([{ path: "top/../../evil.txt", data: "x" }], /path with '\.\.'/);
});

test("refuses absolute paths", async () => {
  await expectRefusal([{ path: "/tmp/evil.txt", data: "x" }], /absolute path/);
});

test("refuses symlinks and hard links pointing outside", async () => {
  await expectRefusal([{ path: "top/link", type: "2", linkpath: "../../etc/passwd" }], /link pointing outside/);
  await expectRefusal([{ path: "top/link", type: "2", linkpath: "/etc/passwd" }], /link to absolute path/);
  await expectRefusal([{ path: "top/hard", type: "1", linkpath: "../outside" }], /link pointing outside/);
});

test("refuses device entries", async () => {
  await expectRefusal([{ path: "top/dev", type: "3" }], /entry type CharacterDevice/);
});

test("a damaged archive is a clear error", async () => {
  const archive = join(dir, "damaged.tar.gz");
  const good = makeTarGz([{ path: "a.txt", data: "x".repeat(5000) }]);
  await writeFile(archive, good.subarray(0, Math.floor(good.length / 2)));
  const dest = join(dir, "out-damaged");
  try {
    await extractTarGz(archive, dest);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, /damaged\.tar\.gz: cannot extract/);
  }
  assert.not.ok(existsSync(dest));
});

test("unsafeEntryReason: links resolved relative to their folder, strip applied", () => {
  assert.is(unsafeEntryReason("SymbolicLink", "a/b/c", "../x"), null);
  assert.match(unsafeEntryReason("SymbolicLink", "a/b/c", "../../../x")!, /outside/);
  // With strip 1, "a/b/c" lands at "b/c": "../x" still stays inside, "../../x" does not.
  assert.is(unsafeEntryReason("SymbolicLink", "a/b/c", "../x", 1), null);
  assert.match(unsafeEntryReason("SymbolicLink", "a/b/c", "../../x", 1)!, /outside/);
  assert.is(unsafeEntryReason("File", "a/b..c/d", undefined), null);
});

test.run();
