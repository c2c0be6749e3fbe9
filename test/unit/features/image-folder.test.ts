import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { listImages } from "../../../src/io/image-folder.ts";
import { InputError } from "../../../src/errors.ts";

async function tree(files: string[]): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "sed-imgfolder-"));
  for (const f of files) {
    await mkdir(join(dir, f, ".."), { recursive: true });
    if (!f.endsWith("/")) await writeFile(join(dir, f), "x");
    else await mkdir(join(dir, f), { recursive: true });
  }
  return dir;
}

const fails = async (p: Promise<unknown>, re: RegExp) =>
  p.then(
    () => assert.unreachable("should fail"),
    (e: Error) => {
      assert.instance(e, InputError);
      assert.match(e.message, re);
    },
  );

test("imagefolder: classes sorted by name, files sorted and recursive, non-images ignored", async () => {
  const dir = await tree(["n02/b.JPEG", "n02/a.png", "n02/sub/c.jpg", "n01/z.jpeg", "n01/notes.txt", "B/x.png", "readme.md"]);
  try {
    const l = await listImages(dir, "imagefolder");
    assert.equal(l.classes, ["B", "n01", "n02"]); // code-point order, as Python's sorted()
    assert.equal(
      l.items.map((i) => [i.file.slice(dir.length + 1), i.label]),
      [["B/x.png", 0], ["n01/z.jpeg", 1], ["n02/a.png", 2], ["n02/b.JPEG", 2], ["n02/sub/c.jpg", 2]],
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("single-folder: every image labelled 0, sorted", async () => {
  const dir = await tree(["b.png", "a.jpg", "x.txt"]);
  try {
    const l = await listImages(dir, "single-folder");
    assert.equal(l.classes, []);
    assert.equal(l.items.map((i) => [i.file.slice(dir.length + 1), i.label]), [["a.jpg", 0], ["b.png", 0]]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("empty class folder, no class folders, no images, missing folder: clear errors", async () => {
  const dir = await tree(["cat/a.png", "dog/", "flat/readme.txt"]);
  try {
    await fails(listImages(dir, "imagefolder"), /2 class folder\(s\) hold no images: dog, flat/);
    await fails(listImages(join(dir, "flat"), "imagefolder"), /flat: no class folders found/);
    await fails(listImages(join(dir, "dog"), "single-folder"), /dog: no images found/);
    await fails(listImages(join(dir, "missing"), "imagefolder"), /missing: image folder does not exist/);
    await fails(listImages(join(dir, "cat", "a.png"), "imagefolder"), /expected a folder of images, found a file/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
