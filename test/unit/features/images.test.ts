import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import sharp from "sharp";
import { PNG } from "pngjs";
import {
  augmentSeed,
  centerCropBox,
  cropImage,
  decodeImage,
  evalCrop,
  normalizeInto,
  pyRound,
  randomResizedCropBox,
  resizeBilinear,
  resizedSize,
  trainCrop,
  type RgbImage,
} from "../../../src/io/images.ts";
import { Rng } from "../../../src/rng.ts";
import { InputError } from "../../../src/errors.ts";

const FIX = new URL("./fixtures/", import.meta.url).pathname;

test("resize matches PIL 9.4 Image.resize(BILINEAR) bit for bit (down, up, one axis, crop+resize)", async () => {
  // Expected pixels: test/unit/features/fixtures/make-pil-fixtures.py
  const exp = JSON.parse(readFileSync(join(FIX, "pil-resize.expected.json"), "utf8"));
  assert.ok(exp.cases.length >= 12);
  for (const c of exp.cases) {
    let img = await decodeImage(readFileSync(join(FIX, c.image)), c.image);
    if (c.op === "crop-resize") img = cropImage(img, c.box[1], c.box[0], c.box[3] - c.box[1], c.box[2] - c.box[0]);
    const r = resizeBilinear(img, c.size[0], c.size[1]);
    assert.is(r.data.length, c.pixels.length);
    let worst = 0;
    for (let i = 0; i < r.data.length; i++) worst = Math.max(worst, Math.abs(r.data[i] - c.pixels[i]));
    assert.is(worst, 0, `${c.image} ${c.op} ${c.size}`);
  }
});

test("decode: grayscale PNG replicated to RGB, RGBA drops alpha, JPEG decodes", async () => {
  const g = await decodeImage(readFileSync(join(FIX, "gray-6x4.png")), "gray.png");
  assert.is(g.width, 6);
  assert.is(g.height, 4);
  assert.equal(Array.from(g.data.subarray(0, 6)), [0, 0, 0, 10, 10, 10]);
  const png = new PNG({ width: 1, height: 1 });
  png.data.set([10, 20, 30, 0]);
  const rgba = await decodeImage(PNG.sync.write(png), "a.png");
  assert.equal(Array.from(rgba.data), [10, 20, 30]);
  const j = await sharp(Buffer.alloc(16 * 16 * 3, 128), { raw: { width: 16, height: 16, channels: 3 } }).jpeg({ quality: 95 }).toBuffer();
  const d = await decodeImage(j, "x.jpg");
  assert.is(d.width, 16);
  assert.ok(d.data.every((v) => Math.abs(v - 128) <= 1));
});

test("JPEG decodes equal PIL 9.4's (libjpeg-turbo) bit for bit: 4:2:0/4:2:2 colour edges, 4:4:4, progressive, gray, odd sizes, CMYK", async () => {
  // Expected pixels: test/unit/features/fixtures/make-jpeg-fixtures.py (Image.open(f).convert("RGB")).
  const exp = JSON.parse(readFileSync(join(FIX, "pil-jpeg.expected.json"), "utf8")) as { cases: Record<string, number[]> };
  const names = Object.keys(exp.cases);
  assert.ok(names.length >= 7 && names.includes("cmyk.jpg"));
  for (const name of names) {
    const img = await decodeImage(readFileSync(join(FIX, name)), name);
    const want = exp.cases[name]!;
    assert.is(img.data.length, want.length, name);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(img.data[i]! - want[i]!));
    assert.is(worst, 0, `${name}: max |diff| ${worst} levels`);
  }
});

test("corrupt or unknown image bytes -> InputError naming the file", async () => {
  const jpgHead = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0, 16, 1, 2, 3]);
  const pngHead = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0]);
  for (const [bytes, re] of [
    [jpgHead, /broken\.jpg: cannot decode image \(JPEG/],
    [pngHead, /broken\.jpg: cannot decode image \(PNG/],
    [new TextEncoder().encode("GIF89a...."), /neither JPEG nor PNG/],
  ] as const) {
    let caught: unknown;
    await decodeImage(bytes, "/data/broken.jpg").catch((e: unknown) => (caught = e));
    assert.ok(caught instanceof InputError && re.test(caught.message) && /on_bad_image: skip/.test(caught.hint ?? ""), String(caught));
  }
});

test("eval geometry: torchvision Resize(int) and CenterCrop with Python's half-to-even round", () => {
  assert.equal(resizedSize(500, 375, 256), { width: 341, height: 256 }); // int(256*500/375) = 341
  assert.equal(resizedSize(375, 500, 256), { width: 256, height: 341 });
  assert.equal(resizedSize(300, 300, 256), { width: 256, height: 256 });
  assert.is(pyRound(0.5), 0);
  assert.is(pyRound(1.5), 2);
  assert.is(pyRound(2.5), 2);
  assert.is(pyRound(2.6), 3);
  assert.equal(centerCropBox(341, 256, 224), { top: 16, left: 58 }); // round(58.5) = 58
  assert.equal(centerCropBox(227, 227, 224), { top: 2, left: 2 }); // round(1.5) = 2
  const img: RgbImage = { width: 4, height: 6, data: new Uint8Array(72).map((_, i) => Math.floor(i / 3)) };
  // 4x6 -> Resize(4) is identity -> CenterCrop(2): top round(2)=2, left round(1)=1
  const c = evalCrop(img, { resize: 4, crop: 2, mean: [0, 0, 0], std: [1, 1, 1] });
  assert.is(c.width, 2);
  assert.equal(Array.from(c.data).filter((_, i) => i % 3 === 0), [9, 10, 13, 14]);
});

test("center crop larger than the image pads with zeros (torchvision pads)", () => {
  const img: RgbImage = { width: 2, height: 2, data: new Uint8Array(12).fill(200) };
  const c = evalCrop(img, { resize: 2, crop: 4, mean: [0, 0, 0], std: [1, 1, 1] });
  assert.is(c.data.filter((v) => v === 200).length, 12);
  assert.is(c.data.filter((v) => v === 0).length, 36);
});

test("normalize: (v/255 - mean)/std, CHW order, optional horizontal flip", () => {
  const img: RgbImage = { width: 2, height: 1, data: new Uint8Array([255, 0, 51, 0, 255, 102]) };
  const out = new Float32Array(7).fill(-99);
  normalizeInto(img, [0.5, 0.25, 0], [0.5, 0.25, 0.2], out, 1);
  close(out, [-99, 1, -1, -1, 3, 1, 2], 1e-6);
  normalizeInto(img, [0.5, 0.25, 0], [0.5, 0.25, 0.2], out, 1, true);
  close(out, [-99, -1, 1, 3, -1, 2, 1], 1e-6);
});

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number) {
  assert.is(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `[${i}] ${a[i]} vs ${b[i]}`);
}

test("RandomResizedCrop: boxes inside the image, area and ratio within range, deterministic under a seed", () => {
  const draw = (seed: number) => {
    const rng = new Rng(seed);
    return Array.from({ length: 200 }, () => randomResizedCropBox(500, 375, [0.08, 1], [3 / 4, 4 / 3], rng));
  };
  const a = draw(42);
  assert.equal(a, draw(42));
  assert.not.equal(a, draw(43));
  for (const b of a) {
    assert.ok(b.top >= 0 && b.left >= 0 && b.top + b.height <= 375 && b.left + b.width <= 500, JSON.stringify(b));
    const area = (b.width * b.height) / (500 * 375);
    assert.ok(area > 0.07 && area <= 1.01, `area ${area}`);
    const r = b.width / b.height;
    assert.ok(r > 0.7 && r < 1.4, `ratio ${r}`);
  }
});

test("RandomResizedCrop falls back to a ratio-clamped center crop when 10 tries fail", () => {
  // A 100x10 strip with ratio <= 4/3 and area >= 90%: no random box fits, fallback h=10, w=round(10*4/3)=13
  const b = randomResizedCropBox(100, 10, [0.9, 1], [3 / 4, 4 / 3], new Rng(1));
  assert.equal(b, { top: 0, left: 43, height: 10, width: 13 });
  // A tall strip: w=10, h=round(10/(3/4))=13, centered
  assert.equal(randomResizedCropBox(10, 100, [0.9, 1], [3 / 4, 4 / 3], new Rng(1)), { top: 43, left: 0, height: 13, width: 10 });
});

test("train transform: per-image seed from (seed, pass, index); flip follows p", () => {
  assert.is(augmentSeed(42, 0, 5), augmentSeed(42, 0, 5));
  const seeds = new Set<number>();
  for (let p = 0; p < 4; p++) for (let i = 0; i < 500; i++) seeds.add(augmentSeed(42, p, i));
  assert.is(seeds.size, 2000);
  const img: RgbImage = { width: 20, height: 16, data: new Uint8Array(20 * 16 * 3).map((_, i) => (i * 7) % 256) };
  const t = { size: 8, scale: [0.5, 1] as [number, number], ratio: [0.75, 4 / 3] as [number, number], mean: [0, 0, 0], std: [1, 1, 1] };
  const a = trainCrop(img, { ...t, hflip: 0.5 }, new Rng(augmentSeed(1, 0, 3)));
  const b = trainCrop(img, { ...t, hflip: 0.5 }, new Rng(augmentSeed(1, 0, 3)));
  assert.equal(a, b);
  assert.is(a.image.width, 8);
  assert.is(a.image.height, 8);
  let flips = 0;
  for (let i = 0; i < 200; i++) flips += trainCrop(img, { ...t, hflip: 0.5 }, new Rng(i)).flip ? 1 : 0;
  assert.ok(flips > 60 && flips < 140, `flips ${flips}`);
  assert.not.ok(trainCrop(img, { ...t, hflip: 0 }, new Rng(3)).flip);
  assert.ok(trainCrop(img, { ...t, hflip: 1 }, new Rng(3)).flip);
});

test.run();
