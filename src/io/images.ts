// Image decoding (JPEG via sharp/libjpeg-turbo, PNG via pngjs) to 8-bit RGB, and the reference's eval/train
// transforms (torchvision Resize/CenterCrop/RandomResizedCrop/RandomHorizontalFlip/Normalize) to
// float CHW. Resampling re-implements Pillow's antialiased bilinear. Knows nothing about datasets;
// the same functions run on the stage's thread and on image threads (image-pool.ts).
import { readFile } from "node:fs/promises";
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
 * alpha dropped (as PIL's convert("RGB")). JPEG goes through sharp (libvips with libjpeg-turbo, the
 * library PIL decodes with: the same IDCT and "fancy" chroma upsampling), so pixels equal PIL's bit
 * for bit (test/unit/features/images.test.ts: 4:2:0 with sharp colour edges, 4:2:2, 4:4:4,
 * progressive, grayscale, odd sizes); jpeg-js, used before, differed by up to 104 levels at 4:2:0
 * colour edges. sharp decodes on libuv's thread pool, so a batch's images decode in parallel while
 * this thread resizes. PNG is lossless: pngjs's pixels equal PIL's.
 */
export async function decodeImage(bytes: Uint8Array, file: string): Promise<RgbImage> {
  const bad = (why: string, cause?: unknown) =>
    new InputError(`${file}: cannot decode image (${why})`, {
      hint: "the file is corrupt or not a JPEG/PNG; replace it, or set featurizer.on_bad_image: skip",
      cause,
    });
  if (bytes.length >= 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff) {
    const sharp = await loadSharp();
    let out: { data: Buffer; info: { width: number; height: number; channels: number } };
    let cmyk = false;
    try {
      // No EXIF rotation (PIL applies none either). CMYK files (a few dozen in ImageNet) are read as
      // CMYK and converted with PIL's own formula below: libvips' colour-managed conversion differs
      // from PIL's by ~30 levels on average.
      const opts = { failOn: "error", limitInputPixels: 2 ** 28 } as const;
      cmyk = (await sharp(bytes, opts).metadata()).space === "cmyk";
      const img = sharp(bytes, opts);
      out = await (cmyk ? img.pipelineColourspace("cmyk").toColourspace("cmyk") : img.toColourspace("srgb")).raw().toBuffer({ resolveWithObject: true });
    } catch (err) {
      throw bad(`JPEG: ${(err as Error).message.split("\n")[0]}`, err);
    }
    const { width, height, channels } = out.info;
    if (!(width > 0 && height > 0) || out.data.length < width * height * channels) throw bad(`bad size ${width}x${height}`);
    if (cmyk && channels === 4) return { width, height, data: cmykToRgb(out.data, width * height) };
    return { width, height, data: toRgb(out.data, width * height, channels) };
  }
  if (bytes.length >= 8 && Buffer.from(bytes.subarray(0, 8)).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    let png: { width: number; height: number; data: Uint8Array };
    try {
      png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    } catch (err) {
      throw bad(`PNG: ${(err as Error).message}`, err);
    }
    if (!(png.width > 0 && png.height > 0) || png.data.length < png.width * png.height * 4) throw bad(`bad size ${png.width}x${png.height}`);
    return { width: png.width, height: png.height, data: toRgb(png.data, png.width * png.height, 4) };
  }
  throw bad("neither JPEG nor PNG by its first bytes");
}

/** PIL's CMYK -> RGB (Convert.c cmyk2rgb): channel = (255 - k) - v * (255 - k) / 255, rounded as PIL rounds. */
function cmykToRgb(src: Uint8Array, pixels: number): Uint8Array {
  const data = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const nk = 255 - src[i * 4 + 3]!;
    for (let c = 0; c < 3; c++) {
      const t = src[i * 4 + c]! * nk + 128;
      data[i * 3 + c] = Math.max(0, Math.min(255, nk - ((t + (t >> 8)) >> 8)));
    }
  }
  return data;
}

/** RGB from 1 (gray), 2 (gray + alpha), 3 or 4 (RGBA) channels. */
function toRgb(src: Uint8Array, pixels: number, channels: number): Uint8Array {
  if (channels === 3) return new Uint8Array(src.buffer, src.byteOffset, pixels * 3);
  const data = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const j = i * channels;
    if (channels <= 2) data[i * 3] = data[i * 3 + 1] = data[i * 3 + 2] = src[j]!;
    else {
      data[i * 3] = src[j]!;
      data[i * 3 + 1] = src[j + 1]!;
      data[i * 3 + 2] = src[j + 2]!;
    }
  }
  return data;
}

/** Reads and decodes one image file; an unreadable file is an InputError naming it, like an undecodable one. */
export async function readImage(file: string): Promise<RgbImage> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new InputError(`${file}: cannot read image (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, { cause: err });
  }
  return decodeImage(bytes, file);
}

type Sharp = typeof import("sharp").default;
let sharpModule: Promise<Sharp> | undefined;

/**
 * Loads sharp on this thread ahead of image threads: with glibc, libvips must stay loaded by the main
 * thread, or a thread that exits unloads it under the others (sharp's docs, issue #2263). A sharp that
 * does not load is not an error here: PNG still decodes, and a JPEG then fails as a bad image.
 */
export async function preloadSharp(): Promise<void> {
  await loadSharp().catch(() => undefined);
}

/** sharp, loaded once; its prebuilt libvips ships inside the registry package for common platforms. */
function loadSharp(): Promise<Sharp> {
  sharpModule ??= import("sharp").then(
    (m) => {
      const sharp = m.default;
      // One libvips thread per image: parallelism comes from decoding a batch's images at once.
      sharp.concurrency(1);
      sharp.cache(false);
      return sharp;
    },
    (err: unknown) => {
      sharpModule = undefined;
      throw new InputError(`cannot decode JPEG images: the sharp package does not load here (${(err as Error).message.split("\n")[0]})`, {
        hint: "sharp ships prebuilt libvips for linux (glibc and musl, x64/arm64), macOS and Windows; run `npm ci` again, or see https://sharp.pixelplumbing.com/install",
      });
    },
  );
  return sharpModule;
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

/** One image's preparation, all a thread needs to reproduce the stage's numbers: the transform, and for train the seed. */
export type ImagePrep = { kind: "eval"; transform: EvalTransform } | { kind: "train"; transform: TrainTransform; seed: number };

/** Floats one prepared image takes (3 x side x side). */
export function preparedSize(prep: ImagePrep): number {
  const side = prep.kind === "eval" ? prep.transform.crop : prep.transform.size;
  return 3 * side * side;
}

/**
 * The transform of image `index` in pass `pass`, written as normalised CHW floats into out at offset:
 * eval = Resize/CenterCrop, train = RandomResizedCrop + flip drawn from augmentSeed(seed, pass, index).
 * The one definition of a prepared image: the stage's thread and image threads both call it.
 */
export function prepareInto(img: RgbImage, prep: ImagePrep, pass: number, index: number, out: Float32Array, offset: number): void {
  const t = prep.transform;
  if (prep.kind === "eval") {
    normalizeInto(evalCrop(img, prep.transform), t.mean, t.std, out, offset);
    return;
  }
  const { image, flip } = trainCrop(img, prep.transform, new Rng(augmentSeed(prep.seed, pass, index)));
  normalizeInto(image, t.mean, t.std, out, offset, flip);
}
