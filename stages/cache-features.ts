// Stage cache-features: images -> frozen DeiT-3 featurizer -> HDF5 feature file in the reference
// layout (§4), E passes of the train transform or one pass of the eval transform. Owns the batch
// loop (the next batches are prepared while one runs through the ViT), bad-image policy and output
// naming (its params are checked by cache-features.contract.ts); the math is src/ml/vit.ts, the
// images and files are src/io/* (image threads: src/io/image-pool.ts).
import { link, copyFile, mkdir, readdir, stat } from "node:fs/promises";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { parseParams, parseWith, type ParamsOf, type StageContext } from "../src/stage-api.ts";
import { ConfigError, InputError } from "../src/errors.ts";
import { writeFileAtomic } from "../src/io/atomic.ts";
import { initBackend } from "../src/ml/backend.ts";
import { createVit, disposeVit, featurizeBatch, type VitArch, type VitModel } from "../src/ml/vit.ts";
import { readVitWeights } from "../src/ml/vit-checkpoint.ts";
import { listImages, type ImageLayout, type ImageList } from "../src/io/image-folder.ts";
import { preparedSize, type EvalTransform, type ImagePrep, type TrainTransform } from "../src/io/images.ts";
import { ImagePool, imageThreadCount, prepareOnThisThread, type BadImage, type PrepareJob } from "../src/io/image-pool.ts";
import { Prefetch } from "../src/io/prefetch.ts";
import { createFeatureFile, type FeatureWriter } from "../src/io/feature-writer.ts";
import { openFeatureFile } from "../src/io/feature-reader.ts";
import { referenceFeatureFileName } from "../src/hash/reference-name.ts";
import { contract, featurizerSchema } from "./cache-features.contract.ts";

export { contract };

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

type CacheFeaturesParams = ParamsOf<typeof contract>;

/** The dataset as the stage uses it: the transform's kind, and its own parameters when it carries them. */
function datasetOf(d: CacheFeaturesParams["dataset"]): DatasetParams {
  let transformSpec: EvalTransform | TrainTransform | undefined;
  if (typeof d.transform !== "string") {
    const { kind: _kind, ...spec } = d.transform;
    transformSpec = spec;
  }
  return {
    key: d.key,
    ...(d.images ? { images: d.images } : {}),
    ...(d.prebuilt ? { prebuilt: d.prebuilt } : {}),
    layout: d.layout,
    transform: typeof d.transform === "string" ? d.transform : d.transform.kind,
    ...(transformSpec ? { transformSpec } : {}),
    passes: d.passes,
    naming: d.naming ?? undefined,
    features: d.features,
  };
}

/** The transform a dataset uses: its own (`transform: {kind, ...}`), else the featurizer's of that kind. */
export function transformFor(ds: DatasetParams, fz: FeaturizerParams): EvalTransform | TrainTransform {
  const t = ds.transformSpec ?? (ds.transform === "eval" ? fz.eval_transform : fz.train_transform);
  // The contract refuses a dataset featurized from images whose transform is nowhere.
  if (!t) throw new Error(`datasets[${ds.key}]: no ${ds.transform} transform (the cache-features contract should have refused this)`);
  return t;
}

/** The featurizer section parsed by the contract's schema (a ConfigError naming every problem otherwise). */
export function parseFeaturizerParams(raw: unknown): FeaturizerParams {
  return parseWith(featurizerSchema, raw, { name: "cache-features", path: "featurizer" });
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

/**
 * Batches prepared ahead of the one in the ViT. Memory: (PREFETCH_BATCHES + 1) batch buffers of
 * batch_size x 3 x S x S float32 (S = the ViT's image size), plus the images being read and decoded
 * (image threads: IMAGE_THREAD_DEPTH per thread; the stage's thread: DECODE_WINDOW; src/io/image-pool.ts).
 */
export const PREFETCH_BATCHES = 2;

interface Prepared {
  /** Images of the batch, bad ones included. */
  size: number;
  pixels: Float32Array;
  labels: number[];
  indices: number[];
  skipped: { file: string; message: string }[];
}

export async function run(ctx: StageContext): Promise<void> {
  const params = parseParams(contract, ctx.params);
  const ds = datasetOf(params.dataset);
  const fz: FeaturizerParams = params.featurizer;
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
  const prep: ImagePrep = ds.transform === "eval" ? { kind: "eval", transform: transform as EvalTransform } : { kind: "train", transform: transform as TrainTransform, seed: fz.seed };
  // Image threads load while the backend starts and the checkpoint is read.
  const threads = imageThreadCount(N, ctx.settings);
  const poolStart = threads > 0 ? ImagePool.start(threads) : null;
  poolStart?.catch(() => undefined);
  let pool: ImagePool | null = null;
  let model: VitModel | null = null;
  let writer: FeatureWriter | undefined;
  try {
    const backend = await initBackend(ctx.backend, ctx.settings);
    ctx.log(`backend ${backend.name} (${backend.reason}); ${N} images x ${E} pass(es) from ${imagesDir}; checkpoint ${checkpoint}`);
    model = createVit(await readVitWeights(checkpoint, fz.arch), fz.arch);
    pool = await poolStart;
    ctx.log(
      pool
        ? `images prepared on ${pool.size} image threads, up to ${PREFETCH_BATCHES} batches ahead of the ViT`
        : `images prepared on the stage's thread, read and decoded up to ${PREFETCH_BATCHES} batches ahead of the ViT`,
    );
    writer = await createFeatureFile(file, { dim, expectedRows: fz.on_bad_image === "fail" ? N * E : undefined });
    const skipped = await featurizeAll(ctx, list, E, fz, prep, model, pool, writer);
    if (writer.rows === 0) throw new InputError(`${imagesDir}: every image was skipped as unreadable; no features written`);
    await writer.finish();
    ctx.log(`wrote ${writer.rows} rows of ${dim} features to ${file}${skipped ? ` (${skipped} bad images skipped)` : ""}`);
  } catch (err) {
    await writer?.abort().catch(() => {});
    throw err;
  } finally {
    pool ??= await poolStart?.catch(() => null) ?? null;
    await pool?.close();
    if (model) disposeVit(model);
  }
  await writeClasses(ctx, ds, list);
}

/**
 * The batch loop: batch j of every pass, in order, through the ViT into the writer, while batches
 * j+1..j+PREFETCH_BATCHES are read, decoded and transformed (on image threads, or on this thread in
 * the gaps the ViT leaves). Returns the number of bad images skipped.
 */
async function featurizeAll(
  ctx: StageContext,
  list: ImageList,
  E: number,
  fz: FeaturizerParams,
  prep: ImagePrep,
  model: VitModel,
  pool: ImagePool | null,
  writer: FeatureWriter,
): Promise<number> {
  const N = list.items.length;
  const per = preparedSize(prep);
  const perPass = Math.ceil(N / fz.batch_size);
  const count = perPass * E;
  const slots = Array.from({ length: Math.min(PREFETCH_BATCHES + 1, count) }, () => new Float32Array(new SharedArrayBuffer(Math.min(fz.batch_size, N) * per * 4)));
  // Stops the batches being prepared ahead when the loop ends early (error or abort).
  const stop = new AbortController();
  const onAbort = () => stop.abort(ctx.signal.reason);
  ctx.signal.addEventListener("abort", onAbort, { once: true });
  // On this thread, one batch is transformed at a time (in order): the next starts when it is done.
  let previous: Promise<unknown> = Promise.resolve();
  const batches = new Prefetch<Prepared>(count, PREFETCH_BATCHES, (j) => {
    const pass = Math.floor(j / perPass);
    const b0 = (j % perPass) * fz.batch_size;
    const idx = Array.from({ length: Math.min(fz.batch_size, N - b0) }, (_, i) => b0 + i);
    const slot = slots[j % slots.length]!;
    const p = pool
      ? prepareBatch(list, idx, prep, slot, fz.on_bad_image, (jobs) => pool.prepare(jobs, pass, prep, slot, per, stop.signal))
      : previous.then(() => prepareBatch(list, idx, prep, slot, fz.on_bad_image, (jobs) => prepareOnThisThread(jobs, pass, prep, slot, per, stop.signal)));
    previous = p.catch(() => undefined);
    return p;
  });
  const started = Date.now();
  let done = 0;
  let skipped = 0;
  try {
    for (let j = 0; j < count; j++) {
      if (ctx.signal.aborted) throw ctx.signal.reason ?? new Error("aborted");
      const b = await batches.take();
      for (const s of b.skipped) {
        skipped++;
        ctx.log(`skipping bad image ${s.file}: ${s.message}`);
      }
      if (b.labels.length > 0) {
        const feats = await featurizeBatch(model, b.pixels, b.labels.length);
        writer.append(feats, b.labels, b.indices);
      }
      done += b.size;
      const secs = (Date.now() - started) / 1000;
      const rate = done / Math.max(secs, 1e-3);
      const pass = Math.floor(j / perPass);
      ctx.progress({
        phase: E > 1 ? `features pass ${pass + 1}/${E}` : "features",
        done,
        total: N * E,
        unit: "img",
        metrics: { img_per_s: rate, eta_s: (N * E - done) / rate },
      });
    }
  } finally {
    stop.abort();
    ctx.signal.removeEventListener("abort", onAbort);
    await batches.settle();
  }
  return skipped;
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

/**
 * One batch into `out` (image k at k x per, from `prepare`, which reports each image's outcome), then
 * the bad-image policy: fail names the first bad file; skip drops it and closes the gap, so the good
 * images' pixels are contiguous and in order.
 */
async function prepareBatch(
  list: ImageList,
  idx: number[],
  prep: ImagePrep,
  out: Float32Array,
  policy: FeaturizerParams["on_bad_image"],
  prepare: (jobs: PrepareJob[]) => Promise<(BadImage | null)[]>,
): Promise<Prepared> {
  const per = preparedSize(prep);
  const outcomes = await prepare(idx.map((i) => ({ file: list.items[i]!.file, index: i })));
  const labels: number[] = [];
  const indices: number[] = [];
  const skipped: Prepared["skipped"] = [];
  for (let k = 0; k < idx.length; k++) {
    const item = list.items[idx[k]!]!;
    const bad = outcomes[k];
    if (bad) {
      if (policy === "fail") throw new InputError(bad.message, bad.hint ? { hint: bad.hint } : {});
      skipped.push({ file: item.file, message: bad.message });
      continue;
    }
    const row = labels.length;
    if (row !== k) out.copyWithin(row * per, k * per, (k + 1) * per);
    labels.push(item.label);
    indices.push(idx[k]!);
  }
  return { size: idx.length, pixels: out.subarray(0, labels.length * per), labels, indices, skipped };
}
