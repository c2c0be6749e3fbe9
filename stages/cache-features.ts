// Stage cache-features: images -> frozen DeiT-3 featurizer -> HDF5 feature file in the reference
// layout (§4), E passes of the train transform or one pass of the eval transform. Owns the batch
// loop, bad-image policy and output naming; the math is src/ml/vit.ts, the files are src/io/*.
import { link, copyFile, mkdir, readdir, readFile, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import type { StageContext } from "../src/runner/stage-api.ts";
import { ConfigError, InputError } from "../src/errors.ts";
import { Rng } from "../src/rng.ts";
import { writeFileAtomic } from "../src/io/atomic.ts";
import { initBackend } from "../src/ml/backend.ts";
import { createVit, disposeVit, featurizeBatch, parseVitArch, type VitArch } from "../src/ml/vit.ts";
import { readVitWeights } from "../src/ml/vit-checkpoint.ts";
import { listImages, type ImageLayout, type ImageList } from "../src/io/image-folder.ts";
import {
  augmentSeed,
  decodeImage,
  evalCrop,
  normalizeInto,
  trainCrop,
  type EvalTransform,
  type TrainTransform,
} from "../src/io/images.ts";
import { createFeatureFile, type FeatureWriter } from "../src/io/feature-writer.ts";
import { openFeatureFile } from "../src/io/feature-reader.ts";
import { referenceFeatureFileName } from "../src/hash/reference-name.ts";

export interface DatasetParams {
  key: string;
  /** Image folder to featurize; absent when `prebuilt` supplies the features. */
  images?: string;
  /** A reference-written feature file (or a folder holding exactly one), e.g. from the authors' tarball. */
  prebuilt?: string;
  layout: ImageLayout;
  transform: "eval" | "train";
  /**
   * The transform's own parameters when the dataset carries them (`transform: {kind: eval, ...}`), so
   * that editing the train augmentation reruns only in_train. Absent: the featurizer's
   * eval_transform / train_transform.
   */
  transformSpec?: EvalTransform | TrainTransform;
  passes: number;
  naming?: "reference-hash";
  features: string;
}

export interface FeaturizerParams {
  checkpoint: string;
  model_name: string;
  reference_model_path: string | null;
  arch: VitArch;
  eval_transform?: EvalTransform;
  train_transform?: TrainTransform;
  batch_size: number;
  seed: number;
  on_bad_image: "fail" | "skip";
}

function obj(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new ConfigError(`${where}: expected a mapping, got ${JSON.stringify(v)}`);
  return v as Record<string, unknown>;
}

function str(r: Record<string, unknown>, k: string, where: string): string {
  const v = r[k];
  if (typeof v !== "string" || v === "") throw new ConfigError(`${where}.${k}: expected a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

function posInt(r: Record<string, unknown>, k: string, where: string, dflt?: number): number {
  const v = r[k] ?? dflt;
  if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) throw new ConfigError(`${where}.${k}: expected a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

function nums(r: Record<string, unknown>, k: string, where: string, n: number): number[] {
  const v = r[k];
  if (!Array.isArray(v) || v.length !== n || v.some((x) => typeof x !== "number" || !Number.isFinite(x))) {
    throw new ConfigError(`${where}.${k}: expected ${n} numbers, got ${JSON.stringify(v)}`);
  }
  return v as number[];
}

function meanStd(r: Record<string, unknown>, where: string): { mean: number[]; std: number[] } {
  const mean = nums(r, "mean", where, 3);
  const std = nums(r, "std", where, 3);
  if (std.some((s) => s <= 0)) throw new ConfigError(`${where}.std: every value must be > 0, got ${JSON.stringify(std)}`);
  return { mean, std };
}

export function parseDatasetParams(raw: unknown): DatasetParams {
  const r = obj(raw, "dataset");
  const key = str(r, "key", "dataset");
  const where = `datasets[${key}]`;
  const layout = r.layout as ImageLayout;
  if (layout !== "imagefolder" && layout !== "single-folder") {
    throw new ConfigError(`${where}.layout: expected imagefolder or single-folder, got ${JSON.stringify(r.layout)}`);
  }
  let transform: "eval" | "train";
  let transformSpec: EvalTransform | TrainTransform | undefined;
  if (typeof r.transform === "object" && r.transform !== null && !Array.isArray(r.transform)) {
    const t = r.transform as Record<string, unknown>;
    if (t.kind === "eval") transformSpec = parseEvalTransform(t, `${where}.transform`);
    else if (t.kind === "train") transformSpec = parseTrainTransform(t, `${where}.transform`);
    else throw new ConfigError(`${where}.transform.kind: expected eval or train, got ${JSON.stringify(t.kind)}`);
    transform = t.kind;
  } else {
    transform = r.transform as "eval" | "train";
    if (transform !== "eval" && transform !== "train") {
      throw new ConfigError(`${where}.transform: expected eval, train or a mapping with kind: eval|train, got ${JSON.stringify(r.transform)}`);
    }
  }
  const passes = posInt(r, "passes", where, 1);
  if (transform === "eval" && passes !== 1) throw new ConfigError(`${where}.passes: ${passes} passes of the deterministic eval transform would repeat identical rows`, { hint: "use passes only with transform: train" });
  if (r.naming !== undefined && r.naming !== null && r.naming !== "reference-hash") {
    throw new ConfigError(`${where}.naming: expected reference-hash or nothing, got ${JSON.stringify(r.naming)}`);
  }
  const images = r.images === undefined || r.images === null ? undefined : str(r, "images", where);
  const prebuilt = r.prebuilt === undefined || r.prebuilt === null ? undefined : str(r, "prebuilt", where);
  if (!images && !prebuilt) {
    throw new ConfigError(`${where}: needs images (a folder to featurize) or prebuilt (a reference feature file)`);
  }
  return {
    key,
    ...(images ? { images } : {}),
    ...(prebuilt ? { prebuilt } : {}),
    layout,
    transform,
    ...(transformSpec ? { transformSpec } : {}),
    passes,
    naming: r.naming === "reference-hash" ? "reference-hash" : undefined,
    features: str(r, "features", where),
  };
}

function parseEvalTransform(e: Record<string, unknown>, where: string): EvalTransform {
  return { resize: posInt(e, "resize", where), crop: posInt(e, "crop", where), ...meanStd(e, where) };
}

function parseTrainTransform(t: Record<string, unknown>, where: string): TrainTransform {
  const scale = nums(t, "scale", where, 2) as [number, number];
  const ratio = nums(t, "ratio", where, 2) as [number, number];
  if (!(scale[0] > 0 && scale[0] <= scale[1] && scale[1] <= 1)) throw new ConfigError(`${where}.scale: expected 0 < lo <= hi <= 1, got ${JSON.stringify(scale)}`);
  if (!(ratio[0] > 0 && ratio[0] <= ratio[1])) throw new ConfigError(`${where}.ratio: expected 0 < lo <= hi, got ${JSON.stringify(ratio)}`);
  const hflip = t.hflip;
  if (typeof hflip !== "number" || hflip < 0 || hflip > 1) throw new ConfigError(`${where}.hflip: expected a probability, got ${JSON.stringify(hflip)}`);
  return { size: posInt(t, "size", where), scale, ratio, hflip, ...meanStd(t, where) };
}

function checkTransformSize(name: string, size: number, arch: VitArch): void {
  if (size !== arch.image_size) {
    throw new ConfigError(`${name} is ${size} but featurizer.arch.image_size is ${arch.image_size}`, {
      hint: "the transform must produce images of the size the ViT was built for",
    });
  }
}

/** The transform a dataset uses: its own (`transform: {kind, ...}`), else the featurizer's of that kind. */
export function transformFor(ds: DatasetParams, fz: FeaturizerParams): EvalTransform | TrainTransform {
  const t = ds.transformSpec ?? (ds.transform === "eval" ? fz.eval_transform : fz.train_transform);
  if (!t) {
    throw new ConfigError(`datasets[${ds.key}].transform is "${ds.transform}" but featurizer.${ds.transform}_transform is not set`, {
      hint: `give the dataset its own transform ({kind: ${ds.transform}, ...}) or set featurizer.${ds.transform}_transform`,
    });
  }
  if (ds.transformSpec) checkTransformSize(`datasets[${ds.key}].transform.${ds.transform === "eval" ? "crop" : "size"}`, ds.transform === "eval" ? (t as EvalTransform).crop : (t as TrainTransform).size, fz.arch);
  return t;
}

export function parseFeaturizerParams(raw: unknown): FeaturizerParams {
  const r = obj(raw, "featurizer");
  const arch = parseVitArch(r.arch, "featurizer.arch");
  if (arch.in_chans !== 3) throw new ConfigError(`featurizer.arch.in_chans: images are decoded to RGB, so it must be 3 (got ${arch.in_chans})`);
  const evalT = r.eval_transform === undefined ? undefined : parseEvalTransform(obj(r.eval_transform, "featurizer.eval_transform"), "featurizer.eval_transform");
  const trainT = r.train_transform === undefined ? undefined : parseTrainTransform(obj(r.train_transform, "featurizer.train_transform"), "featurizer.train_transform");
  if (evalT) checkTransformSize("featurizer.eval_transform.crop", evalT.crop, arch);
  if (trainT) checkTransformSize("featurizer.train_transform.size", trainT.size, arch);
  const policy = r.on_bad_image ?? "fail";
  if (policy !== "fail" && policy !== "skip") throw new ConfigError(`featurizer.on_bad_image: expected fail or skip, got ${JSON.stringify(policy)}`);
  const seed = r.seed ?? 42;
  if (typeof seed !== "number" || !Number.isInteger(seed)) throw new ConfigError(`featurizer.seed: expected an integer, got ${JSON.stringify(seed)}`);
  const rmp = r.reference_model_path ?? null;
  if (rmp !== null && typeof rmp !== "string") throw new ConfigError(`featurizer.reference_model_path: expected a string or null`);
  return {
    checkpoint: str(r, "checkpoint", "featurizer"),
    model_name: typeof r.model_name === "string" ? r.model_name : "deit3_21k",
    reference_model_path: rmp,
    arch,
    ...(evalT ? { eval_transform: evalT } : {}),
    ...(trainT ? { train_transform: trainT } : {}),
    batch_size: posInt(r, "batch_size", "featurizer"),
    seed,
    on_bad_image: policy,
  };
}

/**
 * A file already at the declared target that the reference wrote (no sed-pipe marker) and that is
 * complete by the reference rule is reused instead of recomputed: that is how paper users bring the
 * published caches. Files sed-pipe wrote are the engine's business (it would not run us if they
 * were fresh), so they are rebuilt.
 */
async function reusableReferenceFile(path: string, dim: number, rows: number, log: (s: string) => void): Promise<boolean> {
  if (!(await stat(path).catch(() => null))?.isFile()) return false;
  try {
    const r = await openFeatureFile(path, { dim });
    try {
      if (r.completion.marker !== "absent") return false;
      if (!r.complete) {
        log(`${path}: existing reference file is incomplete (last row all zeros or empty): rebuilding`);
        return false;
      }
      if (r.rows !== rows) {
        log(`${path}: existing reference file has ${r.rows} rows, this dataset gives ${rows}: rebuilding`);
        return false;
      }
      return true;
    } finally {
      r.close();
    }
  } catch (err) {
    log(`${path}: existing file is unusable (${(err as Error).message.split("\n")[0]}): rebuilding`);
    return false;
  }
}

/**
 * Features the reference already computed (the authors' cached-features tarball): validated (layout,
 * width, completeness by the reference rule), then linked into place under the reference's file
 * name. The class list is unknown without the images, so the classes out records an empty list.
 */
async function usePrebuilt(ctx: StageContext, ds: DatasetParams, fz: FeaturizerParams): Promise<void> {
  const src = ctx.deps.prebuilt!;
  const out = ctx.outs.features;
  if (!out) throw new ConfigError(`cache-features needs outs.features (got outs: ${Object.keys(ctx.outs).join(", ")})`);
  let file = src;
  if ((await stat(src)).isDirectory()) {
    const found = (await readdir(src)).filter((n) => n.endsWith(".hdf5"));
    if (found.length !== 1) {
      throw new InputError(`${src}: expected exactly one .hdf5 file in the prebuilt folder of ${ds.key}, found ${found.length}`, {
        hint: "point `prebuilt:` at the file itself",
      });
    }
    file = join(src, found[0]);
  }
  const r = await openFeatureFile(file, { dim: fz.arch.embed_dim });
  let rows: number;
  try {
    if (!r.complete) {
      throw new InputError(`${file}: the prebuilt features of ${ds.key} are incomplete (last row all zeros or no completion marker)`, {
        hint: "re-download or re-extract it, or featurize from images: set `images:` and drop `prebuilt:`",
      });
    }
    rows = r.rows;
  } finally {
    r.close();
  }
  let dest = out;
  if (ds.naming === "reference-hash") {
    const name = basename(file);
    if (!/^[0-9a-f]{20}_.*_model_.*_dataset_\d+_epochs_\d+_samples\.hdf5$/.test(name)) {
      throw new InputError(`${file}: not a reference ImageNet-C file name (<hash>_..._model_<key>_dataset_<E>_epochs_<N>_samples.hdf5)`);
    }
    await mkdir(out, { recursive: true });
    dest = join(out, name);
  }
  await linkOrCopy(file, dest);
  if (ctx.outs.classes) {
    await writeFileAtomic(ctx.outs.classes, JSON.stringify({ classes: [], prebuilt: file }, null, 1) + "\n");
  }
  ctx.log(`using prebuilt features ${file} (${rows} rows of ${fz.arch.embed_dim})`);
}

async function linkOrCopy(from: string, to: string): Promise<void> {
  await mkdir(dirname(to), { recursive: true });
  try {
    await link(from, to);
  } catch {
    await copyFile(from, to);
  }
}

interface Prepared {
  pixels: Float32Array;
  labels: number[];
  indices: number[];
}

export async function run(ctx: StageContext): Promise<void> {
  const ds = parseDatasetParams(ctx.params.dataset);
  const fz = parseFeaturizerParams(ctx.params.featurizer);
  if (ctx.deps.prebuilt) return usePrebuilt(ctx, ds, fz);
  const imagesDir = ctx.deps.images;
  const checkpoint = ctx.deps.checkpoint;
  const out = ctx.outs.features;
  if (!imagesDir || !checkpoint || !out) {
    throw new ConfigError(`cache-features needs deps.images, deps.checkpoint and outs.features (got deps: ${Object.keys(ctx.deps).join(", ")}; outs: ${Object.keys(ctx.outs).join(", ")})`);
  }
  const list = await listImages(imagesDir, ds.layout);
  const N = list.items.length;
  const E = ds.passes;
  const dim = fz.arch.embed_dim;
  const target = isAbsolute(ds.features) ? ds.features : join(ctx.root, ds.features);

  let file = out;
  let existing = target;
  if (ds.naming === "reference-hash") {
    const modelPath = fz.reference_model_path ?? resolve(checkpoint);
    const name = referenceFeatureFileName({ modelPath, modelName: "deit3_21k", datasetKey: ds.key, epochs: E, samples: N });
    await mkdir(out, { recursive: true });
    file = join(out, name);
    existing = join(target, name);
    if (ds.layout === "imagefolder") await writeFileAtomic(join(out, "classes.json"), JSON.stringify({ classes: list.classes }, null, 1) + "\n");
  }
  if (await reusableReferenceFile(existing, dim, N * E, ctx.log)) {
    ctx.log(`reusing complete reference file ${existing} (${N * E} rows)`);
    await linkOrCopy(existing, file);
    await writeClasses(ctx, ds, list);
    return;
  }

  const transform = transformFor(ds, fz);
  const backend = await initBackend(ctx.backend, ctx.settings);
  ctx.log(`backend ${backend.name} (${backend.reason}); ${N} images x ${E} pass(es) from ${imagesDir}; checkpoint ${checkpoint}`);
  const model = createVit(await readVitWeights(checkpoint, fz.arch), fz.arch);
  let writer: FeatureWriter | undefined;
  try {
    writer = await createFeatureFile(file, { dim, expectedRows: fz.on_bad_image === "fail" ? N * E : undefined });
    const per = 3 * fz.arch.image_size * fz.arch.image_size;
    const started = Date.now();
    let done = 0;
    let skipped = 0;
    for (let pass = 0; pass < E; pass++) {
      for (let b0 = 0; b0 < N; b0 += fz.batch_size) {
        if (ctx.signal.aborted) throw ctx.signal.reason ?? new Error("aborted");
        const idx = Array.from({ length: Math.min(fz.batch_size, N - b0) }, (_, i) => b0 + i);
        const prep = await prepareBatch(list, idx, pass, ds, fz, transform, per, (file, err) => {
          skipped++;
          ctx.log(`skipping bad image ${file}: ${err.message}`);
        });
        if (prep.labels.length > 0) {
          const feats = await featurizeBatch(model, prep.pixels, prep.labels.length);
          writer.append(feats, prep.labels, prep.indices);
        }
        done += idx.length;
        const secs = (Date.now() - started) / 1000;
        const rate = done / Math.max(secs, 1e-3);
        ctx.progress({
          phase: E > 1 ? `features pass ${pass + 1}/${E}` : "features",
          done,
          total: N * E,
          unit: "img",
          metrics: { img_per_s: rate, eta_s: (N * E - done) / rate },
        });
      }
    }
    if (writer.rows === 0) throw new InputError(`${imagesDir}: every image was skipped as unreadable; no features written`);
    await writer.finish();
    ctx.log(`wrote ${writer.rows} rows of ${dim} features to ${file}${skipped ? ` (${skipped} bad images skipped)` : ""}`);
  } catch (err) {
    await writer?.abort().catch(() => {});
    throw err;
  } finally {
    disposeVit(model);
  }
  await writeClasses(ctx, ds, list);
}

/**
 * The class list is a declared out (`classes`, pipeline.yaml) so the engine sees, stores and restores
 * it like the features: never written next to the final path behind the engine's back. Single-folder
 * OOD sets have no classes (every image is label 0): their list is empty.
 */
async function writeClasses(ctx: StageContext, ds: DatasetParams, list: ImageList): Promise<void> {
  if (!ctx.outs.classes) return;
  const classes = ds.layout === "imagefolder" ? list.classes : [];
  await writeFileAtomic(ctx.outs.classes, JSON.stringify({ classes }, null, 1) + "\n");
}

async function prepareBatch(
  list: ImageList,
  idx: number[],
  pass: number,
  ds: DatasetParams,
  fz: FeaturizerParams,
  transform: EvalTransform | TrainTransform,
  per: number,
  onSkip: (file: string, err: Error) => void,
): Promise<Prepared> {
  const bytes = await Promise.all(
    idx.map((i) =>
      readFile(list.items[i].file).catch((err: NodeJS.ErrnoException) => {
        return new InputError(`${list.items[i].file}: cannot read image (${err.code ?? err.message})`);
      }),
    ),
  );
  const pixels = new Float32Array(idx.length * per);
  const labels: number[] = [];
  const indices: number[] = [];
  for (let k = 0; k < idx.length; k++) {
    const item = list.items[idx[k]];
    try {
      const b = bytes[k];
      if (b instanceof Error) throw b;
      const img = decodeImage(b, item.file);
      const off = labels.length * per;
      if (ds.transform === "eval") {
        const t = transform as EvalTransform;
        normalizeInto(evalCrop(img, t), t.mean, t.std, pixels, off);
      } else {
        const t = transform as TrainTransform;
        const { image, flip } = trainCrop(img, t, new Rng(augmentSeed(fz.seed, pass, idx[k])));
        normalizeInto(image, t.mean, t.std, pixels, off, flip);
      }
      labels.push(item.label);
      indices.push(idx[k]);
    } catch (err) {
      if (fz.on_bad_image === "skip" && err instanceof InputError) onSkip(item.file, err);
      else throw err;
    }
  }
  return { pixels: pixels.subarray(0, labels.length * per), labels, indices };
}
