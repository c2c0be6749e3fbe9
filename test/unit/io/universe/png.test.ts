import { test } from "uvu";
import * as assert from "uvu/assert";
import { PNG } from "pngjs";
import { encodeRgbPng } from "../../../../src/io/universe/png.ts";
import { Rng } from "../../../../src/rng.ts";

test("pngjs decodes our PNGs to the same pixels (28x28 and an odd size)", () => {
  const rng = new Rng(9);
  for (const [w, h] of [
    [28, 28],
    [5, 3],
    [64, 40],
  ]) {
    const rgb = new Uint8Array(w * h * 3);
    for (let i = 0; i < rgb.length; i++) rgb[i] = i % 7 === 0 ? rng.int(256) : (i * 13) % 256;
    const png = PNG.sync.read(encodeRgbPng(w, h, rgb));
    assert.is(png.width, w);
    assert.is(png.height, h);
    for (let p = 0; p < w * h; p++) {
      for (let c = 0; c < 3; c++) {
        if (png.data[p * 4 + c] !== rgb[p * 3 + c]) assert.unreachable(`pixel ${p} channel ${c}`);
      }
      assert.is(png.data[p * 4 + 3], 255);
    }
  }
});

test("deterministic bytes; wrong buffer size refused", () => {
  const rgb = new Uint8Array(28 * 28 * 3).fill(200);
  assert.ok(encodeRgbPng(28, 28, rgb).equals(encodeRgbPng(28, 28, rgb)));
  try {
    encodeRgbPng(28, 28, new Uint8Array(10));
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /10 bytes for 28x28 RGB/);
  }
});

test.run();
