// Image decoding (JPEG via jpeg-js, PNG via pngjs) to 8-bit RGB, and the reference's eval/train
// transforms (torchvision Resize/CenterCrop/RandomResizedCrop/RandomHorizontalFlip/Normalize) to
// float CHW. Resampling re-implements Pillow's antialiased bilinear. Knows nothing about datasets.
import jpeg from "jpeg-js";
import { PNG } from "pngjs";
import { InputError } from "../errors.ts";
import { Rng } from "../rng.ts";

/** 8-bit RGB, row-major, 3 bytes per pixel. */
export interface RgbImage {
  width: number;
  height: number;
  data: Uint8Array;
}

export interface EvalTransform {
  /** Shorter side after resize (torchvision Resize(int)). */
  resize: number;
  crop: number;
  mean: number[];
  std: number[];
}

export interface TrainTransform {
  size: number;
  /** RandomResizedCrop area range, fractions of the image area. */
  scale: [number, number];
  /** RandomResizedCrop aspect-ratio range (w/h). */
  ratio: [number, number];
  /** Horizontal flip probability. */
  hflip: number;
  mean: number[];
  std: number[];
}

/**
 * Decodes JPEG or PNG bytes (sniffed by magic, not by extension) to RGB; grayscale is replicated,
 * alpha dropped (as PIL's convert("RGB")). PNG is lossless, so pixels equal PIL's. JPEG is where we
 * differ from the reference: jpeg-js is not libjpeg-turbo (PIL's decoder). Measured against PIL 9.4
 * on a 300x200 test image: 4:4:4 max |diff| 3, mean 0.54 levels; grayscale max 1, mean 0.07; 4:2:0
 * (most ImageNet JPEGs) mean 1.64 but up to 104 at sharp colour edges, because jpeg-js upsamples
 * chroma differently from libjpeg's "fancy" (triangular) upsampling.
 */
export function decodeImage(bytes: Uint8Array, file: string): RgbImage {
  const bad = (why: string, cause?: unknown) =>
    new InputError(`${file}: cannot decode image (${why})`, {
      hint: "the file is corrupt or not a JPEG/PNG; replace it, or set featurizer.on_bad_image: skip",
      cause,
    });
  let rgba: Uint8Array;
  let width: number;
  let height: number;
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
    try {
      const img = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true, maxMemoryUsageInMB: 1024 });
      ({ width, height } = img);
      rgba = img.data as Uint8Array;
    } catch (err) {
      throw bad(`JPEG: ${(err as Error).message}`, err);
    }
  } else if (bytes.length >= 8 && Buffer.from(bytes.subarray(0, 8)).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    try {
      const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      ({ width, height } = png);
      rgba = png.data;
    } catch (err) {
      throw bad(`PNG: ${(err as Error).message}`, err);
    }
  } else {
    throw bad("neither JPEG nor PNG by its first bytes");
  }
  if (!(width > 0 && height > 0) || rgba.length < width * height * 4) throw bad(`bad size ${width}x${height}`);
  const data = new Uint8Array(width * height * 3);
  for (let i = 0, j = 0; i < width * height; i++, j += 4) {
    data[i * 3] = rgba[j];
    data[i * 3 + 1] = rgba[j + 1];
    data[i * 3 + 2] = rgba[j + 2];
  }
  return { width, height, data };
}

// ---------------------------------------------------------------------------------------------
// Pillow-compatible bilinear resampling (Pillow src/libImaging/Resample.c, 8-bit path).
// Pillow downscales with an ANTIALIASED triangle filter: the support widens by the scale factor,
// so every source pixel under an output pixel contributes (unlike a plain 2x2 bilinear lookup,
// which aliases). It resamples horizontally first, rounds to uint8, then vertically, with 22-bit
// fixed-point weights. Reproducing those steps makes our pixels match PIL's bit for bit on the
// same decoded input (test/unit/features/images.test.ts checks 12 PIL 9.4 outputs: max |diff| 0).
// A plain 4-tap bilinear (tf.image.resizeBilinear-style, half-pixel centres) is what PIL does only
// when upscaling (measured on the fixtures: max 1 level up); downscaling noise 37x23 -> 24x15 it is
// off by mean 19 / max 97 levels, because it ignores all but 4 source pixels per output pixel.

const PRECISION_BITS = 32 - 8 - 2;

function precomputeCoeffs(inSize: number, in0: number, in1: number, outSize: number): { bounds: Int32Array; kk: Int32Array; ksize: number } {
  const scale = (in1 - in0) / outSize;
  const filterscale = Math.max(scale, 1);
  const support = 1.0 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const kk = new Int32Array(outSize * ksize);
  const bounds = new Int32Array(outSize * 2);
  const pre = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = in0 + (xx + 0.5) * scale;
    const ss = 1 / filterscale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      let t = Math.abs((x + xmin - center + 0.5) * ss);
      const w = t < 1 ? 1 - t : 0;
      pre[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const v = ww !== 0 ? pre[x] / ww : pre[x];
      // C's (int) cast truncates toward zero
      kk[xx * ksize + x] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { bounds, kk, ksize };
}

function clip8(v: number): number {
  const s = v >> PRECISION_BITS;
  return s < 0 ? 0 : s > 255 ? 255 : s;
}

/** PIL `img.resize((outW, outH), Image.BILINEAR)` on an RGB image. */
export function resizeBilinear(img: RgbImage, outW: number, outH: number): RgbImage {
  if (outW === img.width && outH === img.height) return { width: outW, height: outH, data: img.data.slice() };
  let cur = img;
  // Products fit in int32 for 8-bit inputs (255 * 2^22 * small sums), and JS bit ops are int32.
  if (outW !== img.width) {
    const { bounds, kk, ksize } = precomputeCoeffs(img.width, 0, img.width, outW);
    const out = new Uint8Array(outW * img.height * 3);
    for (let y = 0; y < img.height; y++) {
      const row = y * img.width * 3;
      for (let xx = 0; xx < outW; xx++) {
        const xmin = bounds[xx * 2];
        const xmax = bounds[xx * 2 + 1];
        const k = xx * ksize;
        let s0 = 1 << (PRECISION_BITS - 1);
        let s1 = s0;
        let s2 = s0;
        for (let x = 0; x < xmax; x++) {
          const w = kk[k + x];
          const p = row + (x + xmin) * 3;
          s0 += cur.data[p] * w;
          s1 += cur.data[p + 1] * w;
          s2 += cur.data[p + 2] * w;
        }
        const o = (y * outW + xx) * 3;
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
      }
    }
    cur = { width: outW, height: img.height, data: out };
  }
  if (outH !== cur.height) {
    const { bounds, kk, ksize } = precomputeCoeffs(cur.height, 0, cur.height, outH);
    const out = new Uint8Array(outW * outH * 3);
    for (let yy = 0; yy < outH; yy++) {
      const ymin = bounds[yy * 2];
      const ymax = bounds[yy * 2 + 1];
      const k = yy * ksize;
      for (let xx = 0; xx < outW; xx++) {
        let s0 = 1 << (PRECISION_BITS - 1);
        let s1 = s0;
        let s2 = s0;
        for (let y = 0; y < ymax; y++) {
          const w = kk[k + y];
          const p = ((y + ymin) * outW + xx) * 3;
          s0 += cur.data[p] * w;
          s1 += cur.data[p + 1] * w;
          s2 += cur.data[p + 2] * w;
        }
        const o = (yy * outW + xx) * 3;
        out[o] = clip8(s0);
        out[o + 1] = clip8(s1);
        out[o + 2] = clip8(s2);
      }
    }
    cur = { width: outW, height: outH, data: out };
  }
  return cur;
}

/** PIL `img.crop((left, top, left + w, top + h))`; regions outside the image are zero (black). */
export function cropImage(img: RgbImage, top: number, left: number, h: number, w: number): RgbImage {
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const sy = top + y;
    if (sy < 0 || sy >= img.height) continue;
    for (let x = 0; x < w; x++) {
      const sx = left + x;
      if (sx < 0 || sx >= img.width) continue;
      const s = (sy * img.width + sx) * 3;
      const d = (y * w + x) * 3;
      out[d] = img.data[s];
      out[d + 1] = img.data[s + 1];
      out[d + 2] = img.data[s + 2];
    }
  }
  return { width: w, height: h, data: out };
}

/** Python's round() (half to even), which torchvision's crop arithmetic uses. */
export function pyRound(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** torchvision Resize(int) output size: shorter side -> size, longer side int(size * long / short). */
export function resizedSize(width: number, height: number, size: number): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.trunc((size * height) / width) };
  return { width: Math.trunc((size * width) / height), height: size };
}

/** torchvision CenterCrop offsets (int(round((H - h) / 2)), same for width). */
export function centerCropBox(width: number, height: number, crop: number): { top: number; left: number } {
  return { top: pyRound((height - crop) / 2), left: pyRound((width - crop) / 2) };
}

/** ToTensor + Normalize: RGB HWC uint8 -> CHW float written into `out` at `offset`. */
export function normalizeInto(img: RgbImage, mean: number[], std: number[], out: Float32Array, offset: number, flip = false): void {
  const { width: w, height: h, data } = img;
  const plane = w * h;
  for (let c = 0; c < 3; c++) {
    const m = mean[c];
    const s = std[c];
    const base = offset + c * plane;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const sx = flip ? w - 1 - x : x;
        // (v / 255 - mean) / std in float32 steps, as torch does
        out[base + y * w + x] = (Math.fround(data[(y * w + sx) * 3 + c] / 255) - m) / s;
      }
    }
  }
}

/** Eval transform: Resize(shorter=resize, PIL bilinear) -> CenterCrop(crop) -> RGB image. */
export function evalCrop(img: RgbImage, t: EvalTransform): RgbImage {
  const size = resizedSize(img.width, img.height, t.resize);
  const r = resizeBilinear(img, size.width, size.height);
  const { top, left } = centerCropBox(r.width, r.height, t.crop);
  if (top === 0 && left === 0 && r.width === t.crop && r.height === t.crop) return r;
  return cropImage(r, top, left, t.crop, t.crop);
}

export interface CropBox {
  top: number;
  left: number;
  height: number;
  width: number;
}

/**
 * torchvision RandomResizedCrop.get_params: up to 10 tries of (area fraction ~ U(scale), log aspect
 * ~ U(log ratio)), the first box that fits wins; otherwise a center crop clamped to the ratio range.
 */
export function randomResizedCropBox(width: number, height: number, scale: [number, number], ratio: [number, number], rng: Rng): CropBox {
  const area = width * height;
  const logLo = Math.log(ratio[0]);
  const logHi = Math.log(ratio[1]);
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logLo, logHi));
    const w = pyRound(Math.sqrt(targetArea * aspect));
    const h = pyRound(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = rng.int(height - h + 1);
      const left = rng.int(width - w + 1);
      return { top, left, height: h, width: w };
    }
  }
  const inRatio = width / height;
  let w: number;
  let h: number;
  if (inRatio < Math.min(...ratio)) {
    w = width;
    h = pyRound(w / Math.min(...ratio));
  } else if (inRatio > Math.max(...ratio)) {
    h = height;
    w = pyRound(h * Math.max(...ratio));
  } else {
    w = width;
    h = height;
  }
  return { top: Math.floor((height - h) / 2), left: Math.floor((width - w) / 2), height: h, width: w };
}

/**
 * Seed of the augmentation of image `index` in pass `pass`: a hash of (seed, pass, index), so a
 * pass's crops do not depend on batch size, worker count or where a resumed run restarted.
 */
export function augmentSeed(seed: number, pass: number, index: number): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (const v of [pass, index]) {
    h = Math.imul(h ^ (v >>> 0), 0x01000193) >>> 0;
    h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d) >>> 0;
    h = Math.imul(h ^ (h >>> 12), 0x297a2d39) >>> 0;
    h = (h ^ (h >>> 15)) >>> 0;
  }
  return h;
}

/** Train transform: RandomResizedCrop(size) -> RandomHorizontalFlip(p) decisions for one image. */
export function trainCrop(img: RgbImage, t: TrainTransform, rng: Rng): { image: RgbImage; flip: boolean } {
  const box = randomResizedCropBox(img.width, img.height, t.scale, t.ratio, rng);
  const cropped = cropImage(img, box.top, box.left, box.height, box.width);
  const image = resizeBilinear(cropped, t.size, t.size);
  // torchvision: flip when torch.rand(1) < p
  const flip = rng.next() < t.hflip;
  return { image, flip };
}
