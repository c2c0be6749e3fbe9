// ImageNet-C-style corruptions for the demo universe's small images (H x W x 3 floats in [0, 1]).
// Pure functions of (image, severity, Rng): no I/O, no Math.random.
//
// Severity constants are those of Hendrycks & Dietterich's ImageNet-C (imagenet_c/corruptions.py,
// severities 1..5). Photometric constants (noise levels, brightness, contrast) are used unchanged
// because they act on [0, 1] pixel values, whatever the image size. Spatial constants were chosen
// for 224 px images; our images are 28 px, and a plain 224 -> 28 rescale (1/8) would make severity
// 1 invisible, so spatial sizes are scaled by 1/4 instead (MNIST strokes are ~2-3 px wide, about
// twice ImageNet's relative edge width) and documented per corruption below.
import type { Rng } from "../../rng.ts";

export interface Image {
  width: number;
  height: number;
  /** Row-major, interleaved RGB, values in [0, 1]. */
  data: Float32Array;
}

export type CorruptionFn = (img: Image, severity: number, rng: Rng) => Image;

const clip01 = (v: number): number => (v < 0 ? 0 : v > 1 ? 1 : v);

function mapPixels(img: Image, f: (v: number, i: number) => number): Image {
  const out = new Float32Array(img.data.length);
  for (let i = 0; i < out.length; i++) out[i] = clip01(f(img.data[i], i));
  return { width: img.width, height: img.height, data: out };
}

function pick<T>(table: readonly T[], severity: number, name: string): T {
  if (!Number.isInteger(severity) || severity < 1 || severity > table.length) {
    throw new RangeError(`${name}: severity must be an integer 1..${table.length}, got ${severity}`);
  }
  return table[severity - 1];
}

/** ImageNet-C gaussian_noise: x + N(0, c), c = [.08, .12, .18, .26, .38]. */
const GAUSSIAN = [0.08, 0.12, 0.18, 0.26, 0.38] as const;
export const gaussianNoise: CorruptionFn = (img, s, rng) => {
  const c = pick(GAUSSIAN, s, "gaussian_noise");
  return mapPixels(img, (v) => v + c * rng.normal());
};

/**
 * ImageNet-C shot_noise: Poisson(x * c) / c, c = [60, 25, 12, 5, 3]. Poisson draws are exact
 * (Knuth) for means up to 30 and normal-approximated above (error far below one 8-bit level).
 */
const SHOT = [60, 25, 12, 5, 3] as const;
function poisson(lam: number, rng: Rng): number {
  if (lam <= 0) return 0;
  if (lam > 30) return Math.max(0, Math.round(lam + Math.sqrt(lam) * rng.normal()));
  const l = Math.exp(-lam);
  let k = 0;
  let p = 1;
  do {
    k++;
    p *= rng.next();
  } while (p > l);
  return k - 1;
}
export const shotNoise: CorruptionFn = (img, s, rng) => {
  const c = pick(SHOT, s, "shot_noise");
  return mapPixels(img, (v) => poisson(v * c, rng) / c);
};

/**
 * ImageNet-C impulse_noise: salt-and-pepper (skimage random_noise 's&p') replacing a fraction
 * c = [.03, .06, .09, .17, .27] of the values, half with 1 and half with 0, per channel.
 */
const IMPULSE = [0.03, 0.06, 0.09, 0.17, 0.27] as const;
export const impulseNoise: CorruptionFn = (img, s, rng) => {
  const c = pick(IMPULSE, s, "impulse_noise");
  return mapPixels(img, (v) => (rng.next() < c ? (rng.next() < 0.5 ? 0 : 1) : v));
};

/** ImageNet-C brightness: V += c in HSV, c = [.1, .2, .3, .4, .5]; done on V = max(R, G, B). */
const BRIGHTNESS = [0.1, 0.2, 0.3, 0.4, 0.5] as const;
export const brightness: CorruptionFn = (img, s) => {
  const c = pick(BRIGHTNESS, s, "brightness");
  const out = new Float32Array(img.data.length);
  for (let p = 0; p < img.data.length; p += 3) {
    const r = img.data[p];
    const g = img.data[p + 1];
    const b = img.data[p + 2];
    const v = Math.max(r, g, b);
    const nv = clip01(v + c);
    // Scaling RGB by nv / v keeps hue and saturation, as the HSV round trip does; black becomes grey.
    if (v === 0) {
      out[p] = out[p + 1] = out[p + 2] = nv;
    } else {
      const k = nv / v;
      out[p] = clip01(r * k);
      out[p + 1] = clip01(g * k);
      out[p + 2] = clip01(b * k);
    }
  }
  return { width: img.width, height: img.height, data: out };
};

/** ImageNet-C contrast: (x - mean) * c + mean, per channel mean, c = [.4, .3, .2, .1, .05]. */
const CONTRAST = [0.4, 0.3, 0.2, 0.1, 0.05] as const;
export const contrast: CorruptionFn = (img, s) => {
  const c = pick(CONTRAST, s, "contrast");
  const mean = [0, 0, 0];
  for (let i = 0; i < img.data.length; i++) mean[i % 3] += img.data[i];
  const n = img.data.length / 3;
  for (let k = 0; k < 3; k++) mean[k] /= n;
  return mapPixels(img, (v, i) => (v - mean[i % 3]) * c + mean[i % 3]);
};

/**
 * ImageNet-C defocus_blur: disk kernel of radius r, then a Gaussian "alias blur" of sigma a,
 * (r, a) = [(3, .1), (4, .5), (6, .5), (8, .5), (10, .5)] at 224 px. Radii scaled by 1/4 here
 * (0.75, 1, 1.5, 2, 2.5 px); the alias sigma is kept as is (already sub-pixel).
 */
const DEFOCUS = [
  [3, 0.1],
  [4, 0.5],
  [6, 0.5],
  [8, 0.5],
  [10, 0.5],
] as const;
const SPATIAL_SCALE = 0.25;
function diskKernel(radius: number, aliasSigma: number): { size: number; k: Float32Array } {
  // Odd kernel covering the disk, at least 3 px.
  const half = Math.max(1, Math.ceil(radius));
  const size = 2 * half + 1;
  const k = new Float32Array(size * size);
  let sum = 0;
  for (let y = -half; y <= half; y++) {
    for (let x = -half; x <= half; x++) {
      // Anti-aliased disk: coverage of the pixel by the disk, approximated on a 4x4 subgrid.
      let cov = 0;
      for (let sy = 0; sy < 4; sy++) {
        for (let sx = 0; sx < 4; sx++) {
          const px = x - 0.375 + sx * 0.25;
          const py = y - 0.375 + sy * 0.25;
          if (px * px + py * py <= radius * radius) cov++;
        }
      }
      k[(y + half) * size + (x + half)] = cov / 16;
      sum += cov / 16;
    }
  }
  for (let i = 0; i < k.length; i++) k[i] /= sum;
  // Alias blur: separable Gaussian folded into the kernel (small sigma, a 3x3 smear at most).
  if (aliasSigma > 0) {
    const g = [Math.exp(-1 / (2 * aliasSigma * aliasSigma)), 1, Math.exp(-1 / (2 * aliasSigma * aliasSigma))];
    const gs = g[0] + g[1] + g[2];
    const tmp = new Float32Array((size + 2) * (size + 2));
    const big = size + 2;
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++)
        for (let dy = -1; dy <= 1; dy++)
          for (let dx = -1; dx <= 1; dx++)
            tmp[(y + 1 + dy) * big + (x + 1 + dx)] += (k[y * size + x] * g[dy + 1] * g[dx + 1]) / (gs * gs);
    return { size: big, k: tmp };
  }
  return { size, k };
}
function convolve(img: Image, kernel: { size: number; k: Float32Array }): Image {
  const { width: w, height: h, data } = img;
  const half = (kernel.size - 1) / 2;
  const out = new Float32Array(data.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      for (let ch = 0; ch < 3; ch++) {
        let acc = 0;
        for (let ky = 0; ky < kernel.size; ky++) {
          // Edge pixels replicate (ImageNet-C's cv2.filter2D uses reflect-101; same effect at 28 px).
          const yy = Math.min(h - 1, Math.max(0, y + ky - half));
          for (let kx = 0; kx < kernel.size; kx++) {
            const xx = Math.min(w - 1, Math.max(0, x + kx - half));
            acc += data[(yy * w + xx) * 3 + ch] * kernel.k[ky * kernel.size + kx];
          }
        }
        out[(y * w + x) * 3 + ch] = clip01(acc);
      }
    }
  }
  return { width: w, height: h, data: out };
}
const defocusKernels = new Map<number, { size: number; k: Float32Array }>();
export const defocusBlur: CorruptionFn = (img, s) => {
  const [r, a] = pick(DEFOCUS, s, "defocus_blur");
  let kernel = defocusKernels.get(s);
  if (!kernel) defocusKernels.set(s, (kernel = diskKernel(r * SPATIAL_SCALE, a)));
  return convolve(img, kernel);
};

/**
 * ImageNet-C pixelate: box-downsample to size * c and back, c = [.6, .5, .4, .3, .25]. These are
 * relative factors, so they carry over to 28 px unchanged (16, 14, 11, 8 and 7 px).
 */
const PIXELATE = [0.6, 0.5, 0.4, 0.3, 0.25] as const;
export const pixelate: CorruptionFn = (img, s) => {
  const c = pick(PIXELATE, s, "pixelate");
  const { width: w, height: h, data } = img;
  const sw = Math.max(1, Math.floor(w * c));
  const sh = Math.max(1, Math.floor(h * c));
  const small = new Float32Array(sw * sh * 3);
  // Box filter down: each small pixel averages the source pixels whose centres fall in it.
  const count = new Float32Array(sw * sh);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(sh - 1, Math.floor(((y + 0.5) * sh) / h));
    for (let x = 0; x < w; x++) {
      const sx = Math.min(sw - 1, Math.floor(((x + 0.5) * sw) / w));
      const o = sy * sw + sx;
      count[o]++;
      for (let ch = 0; ch < 3; ch++) small[o * 3 + ch] += data[(y * w + x) * 3 + ch];
    }
  }
  for (let o = 0; o < sw * sh; o++) for (let ch = 0; ch < 3; ch++) small[o * 3 + ch] /= count[o] || 1;
  const out = new Float32Array(data.length);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(sh - 1, Math.floor(((y + 0.5) * sh) / h));
    for (let x = 0; x < w; x++) {
      const sx = Math.min(sw - 1, Math.floor(((x + 0.5) * sw) / w));
      for (let ch = 0; ch < 3; ch++) out[(y * w + x) * 3 + ch] = small[(sy * sw + sx) * 3 + ch];
    }
  }
  return { width: w, height: h, data: out };
};

/** Corruption directory name (ImageNet-C's) -> function. */
export const CORRUPTIONS: ReadonlyMap<string, CorruptionFn> = new Map([
  ["gaussian_noise", gaussianNoise],
  ["shot_noise", shotNoise],
  ["impulse_noise", impulseNoise],
  ["defocus_blur", defocusBlur],
  ["brightness", brightness],
  ["contrast", contrast],
  ["pixelate", pixelate],
]);

export const SEVERITIES = [1, 2, 3, 4, 5] as const;
