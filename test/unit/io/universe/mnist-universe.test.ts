import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, rm, readFile, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { createHash } from "node:crypto";
import { PNG } from "pngjs";
import { buildMnistUniverse, parseUniverseParams, loadDigit, renditionOf, SIZE } from "../../../../src/io/universe/mnist-universe.ts";
import { CORRUPTIONS, type Image } from "../../../../src/io/universe/corruptions.ts";
import { ConfigError } from "../../../../src/errors.ts";
import { Rng } from "../../../../src/rng.ts";

const RAW = {
  seed: 3,
  id_classes: [2, 0, 1],
  val_fraction: 0.25,
  subset_classes: [0, 2],
  semantic_sets: { inat: [8], openimages: [9] },
  corruptions: ["gaussian_noise", "pixelate"],
  severities: [1, 5],
  max_per_class: 12,
};

let dir = "";
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sed-universe-"));
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function tree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.set(relative(root, p), createHash("sha256").update(await readFile(p)).digest("hex"));
    }
  };
  await walk(root);
  return out;
}

test("layout, counts, class lists, manifest", async () => {
  const out = join(dir, "a");
  const m = await buildMnistUniverse(parseUniverseParams(RAW, "t"), out);
  assert.equal(m.classes, ["digit_0", "digit_1", "digit_2"]);
  assert.equal(m.subset_classes, ["digit_0", "digit_2"]);
  assert.equal((await readdir(out)).sort(), ["MANIFEST.json", "imagenet-c", "ood", "subset", "subset_classes.json", "train", "val"]);
  assert.equal((await readdir(join(out, "train"))).sort(), ["digit_0", "digit_1", "digit_2"]);
  // 12 per class, val = round(12 * 0.25) = 3.
  assert.is((await readdir(join(out, "train/digit_1"))).length, 9);
  assert.is((await readdir(join(out, "val/digit_1"))).length, 3);
  assert.equal(m.counts, {
    train: 27,
    val: 9,
    "imagenet-c/gaussian_noise/1": 9,
    "imagenet-c/gaussian_noise/5": 9,
    "imagenet-c/pixelate/1": 9,
    "imagenet-c/pixelate/5": 9,
    subset: 6,
    "ood/inat": 12,
    "ood/openimages": 12,
  });
  assert.equal((await readdir(join(out, "imagenet-c/pixelate/5"))).sort(), ["digit_0", "digit_1", "digit_2"]);
  assert.equal((await readdir(join(out, "subset"))).sort(), ["digit_0", "digit_2"]);
  // Train and val are disjoint; corrupted sets hold exactly the val images.
  const val = (await readdir(join(out, "val/digit_2"))).sort();
  const train = new Set(await readdir(join(out, "train/digit_2")));
  assert.ok(val.every((f) => !train.has(f)));
  assert.equal((await readdir(join(out, "imagenet-c/gaussian_noise/1/digit_2"))).sort(), val);
  assert.equal((await readdir(join(out, "subset/digit_2"))).sort(), val);
  // OOD sets are flat folders.
  const inat = await readdir(join(out, "ood/inat"), { withFileTypes: true });
  assert.ok(inat.every((e) => e.isFile() && e.name.endsWith(".png")));
  assert.equal(JSON.parse(await readFile(join(out, "subset_classes.json"), "utf8")), {
    all_wnids: ["digit_0", "digit_1", "digit_2"],
    subset_wnids: ["digit_0", "digit_2"],
  });
  const manifest = JSON.parse(await readFile(join(out, "MANIFEST.json"), "utf8"));
  assert.is(manifest.digest, m.digest);
  const files = await tree(out);
  assert.is(m.files, files.size - 1, "manifest counts every file but itself");
  // The digest really covers the tree.
  const h = createHash("sha256");
  for (const rel of [...files.keys()].filter((f) => f !== "MANIFEST.json").sort()) h.update(`${rel}\0${files.get(rel)}\n`);
  assert.is(h.digest("hex"), m.digest);
});

test("corrupt_per_class caps the corrupted sets to the first val images of each class", async () => {
  const out = join(dir, "capped");
  const m = await buildMnistUniverse(parseUniverseParams({ ...RAW, corrupt_per_class: 2 }, "t"), out);
  assert.is(m.counts["imagenet-c/pixelate/5"], 6);
  assert.is(m.counts.val, 9);
  const val = (await readdir(join(out, "val/digit_1"))).sort();
  assert.equal((await readdir(join(out, "imagenet-c/pixelate/5/digit_1"))).sort(), val.slice(0, 2));
});

test("PNG files are 28x28 RGB and the train image matches the mnist package pixels", async () => {
  const out = join(dir, "a");
  const f = (await readdir(join(out, "train/digit_1"))).sort()[0];
  const png = PNG.sync.read(await readFile(join(out, "train/digit_1", f)));
  assert.is(png.width, SIZE);
  assert.is(png.height, SIZE);
  const i = Number(f.replace(".png", ""));
  const grey = loadDigit(1);
  for (const p of [0, 300, 400, 783]) {
    const want = Math.round(grey[i * SIZE * SIZE + p] * 255);
    assert.is(png.data[p * 4], want);
    assert.is(png.data[p * 4 + 1], want);
  }
});

test("deterministic: same params -> identical bytes; other seed -> other split", async () => {
  const a = await tree(join(dir, "a"));
  const b = join(dir, "b");
  await buildMnistUniverse(parseUniverseParams(RAW, "t"), b);
  assert.equal(await tree(b), a);
  const c = join(dir, "c");
  await buildMnistUniverse(parseUniverseParams({ ...RAW, seed: 4 }, "t"), c);
  assert.not.equal((await readdir(join(c, "val/digit_0"))).sort(), (await readdir(join(dir, "a/val/digit_0"))).sort());
});

function meanAbsChange(a: Image, b: Image): number {
  let s = 0;
  for (let i = 0; i < a.data.length; i++) s += Math.abs(a.data[i] - b.data[i]);
  return s / a.data.length;
}

test("every corruption: severity 5 changes images more than severity 1, values stay in [0, 1]", () => {
  const grey = loadDigit(3);
  const imgs: Image[] = [];
  for (let k = 0; k < 20; k++) {
    const data = new Float32Array(SIZE * SIZE * 3);
    for (let p = 0; p < SIZE * SIZE; p++) data[p * 3] = data[p * 3 + 1] = data[p * 3 + 2] = grey[k * SIZE * SIZE + p];
    imgs.push({ width: SIZE, height: SIZE, data });
  }
  for (const [name, fn] of CORRUPTIONS) {
    const change = [1, 2, 3, 4, 5].map((s) => {
      const rng = new Rng(11);
      let total = 0;
      for (const img of imgs) {
        const out = fn(img, s, rng);
        assert.is(out.data.length, img.data.length);
        for (const v of out.data) if (!(v >= 0 && v <= 1)) assert.unreachable(`${name} s${s}: value ${v}`);
        total += meanAbsChange(img, out);
      }
      return total / imgs.length;
    });
    assert.ok(change[0] > 0.001, `${name}: severity 1 changes something (${change[0]})`);
    assert.ok(change[4] > change[0] * 1.5, `${name}: severity 5 (${change[4].toFixed(4)}) clearly harsher than 1 (${change[0].toFixed(4)})`);
  }
  try {
    CORRUPTIONS.get("contrast")!(imgs[0], 6, new Rng(1));
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /severity must be an integer 1\.\.5/);
  }
});

test("rendition: the stroke becomes its outline in coloured ink on a dark background", () => {
  const data = new Float32Array(SIZE * SIZE * 3);
  for (let y = 10; y < 15; y++) for (let x = 10; x < 15; x++) for (let c = 0; c < 3; c++) data[(y * SIZE + x) * 3 + c] = 1;
  const out = renditionOf({ width: SIZE, height: SIZE, data });
  const px = (x: number, y: number) => [...out.data.subarray((y * SIZE + x) * 3, (y * SIZE + x) * 3 + 3)].map((v) => Math.round(v * 100) / 100);
  const background = px(0, 0);
  assert.equal(px(12, 12), background, "inside the stroke: background");
  assert.equal(px(9, 12), [1, 0.6, 0.1], "just outside the stroke: ink");
  assert.equal(px(8, 12), background, "two pixels out: background");
  assert.ok(background[2] > background[0], "dark blue background");
});

test("params validation names the problem", () => {
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...RAW, id_classes: [0, 10] }, /id_classes: 10 is not a digit/],
    [{ ...RAW, subset_classes: [5] }, /subset_classes: digit 5 is not in id_classes/],
    [{ ...RAW, semantic_sets: { inat: [1] } }, /semantic_sets\.inat: digit 1 is an in-distribution class/],
    [{ ...RAW, corruptions: ["fog"] }, /unknown corruption "fog"/],
    [{ ...RAW, severities: [0] }, /severity 0 is not 1\.\.5/],
    [{ ...RAW, val_fraction: 1 }, /val_fraction must be/],
    [{ ...RAW, semantic_sets: { "../x": [8] } }, /bad set name/],
    [{ ...RAW, corrupt_per_class: 0 }, /corrupt_per_class must be an integer >= 1/],
  ];
  for (const [raw, re] of bad) {
    try {
      parseUniverseParams(raw, "sources[universe]");
      assert.unreachable(String(re));
    } catch (err) {
      assert.instance(err, ConfigError);
      assert.match((err as Error).message, /^sources\[universe\]: /);
      assert.match((err as Error).message, re);
    }
  }
});

test.run();
