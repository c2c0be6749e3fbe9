// Seeded stand-ins for the paper profile's inputs, at their real shapes but few rows, for the
// `paper-smoke` profile (and anyone who wants to rehearse the paper pipeline without ImageNet):
//  - an ImageNet-like image folder: JPEGs of ImageNet's sizes in wnid class folders (ImageFolder layout);
//  - the authors' cached-features tarball as it unpacks: one HDF5 per eval set in the reference layout,
//    ImageNet-C sets in folders under the reference's hashed file names (reference sections 5, 11);
//  - a DU wnid list (`all_wnids` + a 200-class subset, reference 3.3).
// Same seed, same bytes (sharp's JPEG encoder and the feature writer are deterministic).
import { mkdir, rm } from "node:fs/promises";
import { basename, join } from "node:path";
import { Rng } from "../rng.ts";
import { InputError } from "../errors.ts";
import { writeFileAtomic } from "./atomic.ts";
import { createFeatureFile } from "./feature-writer.ts";
import { referenceFeatureFileName } from "../hash/reference-name.ts";

/** Synthetic wnids in ImageNet's form (`n` + 8 digits), sorted in index order. */
export function standInWnid(i: number): string {
  return `n9${String(i).padStart(7, "0")}`;
}

export interface ImageFolderStandIn {
  seed: number;
  classes: number;
  per_class: number;
  /** [width, height] of the images, used in turn. */
  sizes: [number, number][];
  quality: number;
}

type Sharp = typeof import("sharp").default;

async function loadSharp(): Promise<Sharp> {
  try {
    return (await import("sharp")).default;
  } catch (err) {
    throw new InputError(`cannot write JPEG stand-ins: the sharp package does not load here (${(err as Error).message.split("\n")[0]})`, {
      hint: "run `npm ci` again; sharp ships prebuilt libvips for linux, macOS and Windows",
    });
  }
}

/**
 * RGB pixels with a photo's statistics, roughly: a few smooth colour waves (large flat-ish areas and
 * edges), a bright blob, and sensor-like noise, so that the JPEG sizes and decode work are realistic.
 */
export function standInPixels(width: number, height: number, rng: Rng): Uint8Array {
  const px = new Uint8Array(width * height * 3);
  const waves = Array.from({ length: 3 }, () => ({
    fx: rng.uniform(0.5, 6) / width,
    fy: rng.uniform(0.5, 6) / height,
    phase: rng.uniform(0, 2 * Math.PI),
    amp: [rng.uniform(20, 70), rng.uniform(20, 70), rng.uniform(20, 70)],
  }));
  const base = [rng.uniform(60, 190), rng.uniform(60, 190), rng.uniform(60, 190)];
  const cx = rng.uniform(0.2, 0.8) * width;
  const cy = rng.uniform(0.2, 0.8) * height;
  const r2 = (rng.uniform(0.1, 0.3) * Math.min(width, height)) ** 2;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const blob = (x - cx) ** 2 + (y - cy) ** 2 < r2 ? 50 : 0;
      for (let c = 0; c < 3; c++) {
        let v = base[c] + blob + (rng.next() - 0.5) * 24;
        for (const w of waves) v += w.amp[c] * Math.sin(2 * Math.PI * (w.fx * x + w.fy * y) + w.phase);
        px[(y * width + x) * 3 + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    }
  }
  return px;
}

/** `out/<wnid>/<wnid>_<k>.JPEG`, classes x per_class images. Returns the number written. */
export async function writeImageFolderStandIn(
  p: ImageFolderStandIn,
  out: string,
  opts: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {},
): Promise<number> {
  const sharp = await loadSharp();
  const rng = new Rng(p.seed);
  const total = p.classes * p.per_class;
  await rm(out, { recursive: true, force: true });
  let done = 0;
  for (let c = 0; c < p.classes; c++) {
    const dir = join(out, standInWnid(c));
    await mkdir(dir, { recursive: true });
    for (let k = 0; k < p.per_class; k++) {
      opts.signal?.throwIfAborted();
      const [width, height] = p.sizes[done % p.sizes.length];
      const pixels = standInPixels(width, height, rng);
      const jpeg = await sharp(pixels, { raw: { width, height, channels: 3 } })
        .jpeg({ quality: p.quality, chromaSubsampling: "4:2:0" })
        .toBuffer();
      await writeFileAtomic(join(dir, `${standInWnid(c)}_${k}.JPEG`), jpeg);
      opts.onProgress?.(++done, total);
    }
  }
  return total;
}

export interface FeatureFileStandIn {
  /** Relative to the output folder; a path not ending in .hdf5 is an ImageNet-C folder (see below). */
  path: string;
  rows: number;
  /** Labels drawn from 0..classes-1; 1 = every label 0 (iNaturalist, OpenImages). */
  classes: number;
}

export interface CachedFeaturesStandIn {
  seed: number;
  dim: number;
  /** Hashed into the ImageNet-C file names as the reference does (reference 5.2). */
  reference_model_path: string;
  files: FeatureFileStandIn[];
}

/**
 * The unpacked cached-features tarball. A file entry ending in `.hdf5` is written there; any other
 * path is a folder holding one file under the reference's ImageNet-C name, whose dataset key is the
 * folder's name. Rows are a per-class prototype (shared by every file: class c looks alike
 * everywhere) plus unit noise, so heads trained on them learn something and the scores vary.
 */
export async function writeCachedFeaturesStandIn(
  p: CachedFeaturesStandIn,
  out: string,
  opts: { signal?: AbortSignal; onProgress?: (done: number, total: number) => void } = {},
): Promise<string[]> {
  const maxClasses = Math.max(...p.files.map((f) => f.classes));
  const protoRng = new Rng(p.seed);
  const prototypes = new Float32Array(maxClasses * p.dim);
  for (let i = 0; i < prototypes.length; i++) prototypes[i] = protoRng.normal() * 2;
  await rm(out, { recursive: true, force: true });
  const written: string[] = [];
  for (const [n, f] of p.files.entries()) {
    opts.signal?.throwIfAborted();
    const rng = new Rng(p.seed * 1000003 + n + 1);
    const file = f.path.endsWith(".hdf5")
      ? join(out, f.path)
      : join(out, f.path, referenceFeatureFileName({ modelPath: p.reference_model_path, datasetKey: basename(f.path), samples: f.rows }));
    const w = await createFeatureFile(file, { dim: p.dim, expectedRows: f.rows });
    try {
      const embed = new Float32Array(p.dim);
      for (let r = 0; r < f.rows; r++) {
        const label = f.classes === 1 ? 0 : rng.int(f.classes);
        const proto = prototypes.subarray(label * p.dim, (label + 1) * p.dim);
        for (let j = 0; j < p.dim; j++) embed[j] = proto[j] + rng.normal();
        w.append(embed, [label], [r]);
      }
      await w.finish();
    } catch (err) {
      await w.abort();
      throw err;
    }
    written.push(file);
    opts.onProgress?.(n + 1, p.files.length);
  }
  return written;
}

export interface ClassListStandIn {
  seed: number;
  classes: number;
  subset: number;
  key: string;
}

/** `{all_wnids: [...classes], <key>: [...subset, sorted]}` as DU's imagenet_{a,r}_wnids.json. */
export function classListStandIn(p: ClassListStandIn): Record<string, string[]> {
  if (p.subset > p.classes) throw new InputError(`class-list stand-in ${p.key}: subset ${p.subset} > classes ${p.classes}`);
  const all = Array.from({ length: p.classes }, (_, i) => standInWnid(i));
  const picked = new Rng(p.seed).sample(p.classes, p.subset).sort((a, b) => a - b);
  return { all_wnids: all, [p.key]: picked.map((i) => all[i]) };
}
