// One measured part of the stage rehearsal in bench/scale.bench.ts, in a fresh process so its peak RSS
// (VmHWM) is the part's own: `node --import tsx bench/scale-stage-child.ts <part> <args...>` prints one
// JSON line (seconds, work items, bytes written, peak RSS). Parts drive the project's real code:
//   write-features OUT ROWS_PER_PASS PASSES SEED  the feature writer (reference layout, real chunking)
//   read-train FILE BATCH                         one shuffled pass through the train reader alone
//   train CONFIG TRAIN VAL STEPS OUTDIR           train-heads' calls for a paper config: its reader,
//                                                 trainEnsemble (STEPS steps, then one full validation
//                                                 pass, then the epoch checkpoint), saveEnsemble
//   make-ensemble OUT HEADS                       random (initHeadArrays) heads, saved with saveEnsemble
//   eval ENSEMBLE FEATURES OUTDIR                 the eval stage's run() itself (role id, batch 32)
//   make-images DIR CLASSES PER_CLASS             ImageNet-sized JPEG stand-ins (src/io/stand-ins.ts)
//   make-deit FILE                                a seeded DeiT-3 Base .pth like the release (349 MB)
//   featurize IMAGES CHECKPOINT OUT PASSES        the cache-features stage's run() itself: in_train's
//                                                 train transform, DeiT-3 Base, batch 64, PASSES passes
import { readFileSync, statSync, readdirSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { createFeatureFile } from "../src/io/feature-writer.ts";
import { openFeatureFile } from "../src/io/feature-reader.ts";
import { initBackend } from "../src/ml/backend.ts";
import { initHeadArrays, saveEnsemble, type HeadShape } from "../src/ml/heads.ts";
import { headShapeOf, parseTrainConfig } from "../src/ml/train-config.ts";
import { trainEnsemble } from "../src/ml/trainer.ts";
import { checkLabels, featureEvalSource, featureTrainSource, type TrainSource } from "../src/ml/train-sources.ts";
import { Rng } from "../src/rng.ts";
import type { StageContext, StageSettings } from "../src/stage-api.ts";
import * as evalStage from "../stages/eval.ts";
import * as cacheFeaturesStage from "../stages/cache-features.ts";
import { writeImageFolderStandIn } from "../src/io/stand-ins.ts";
import { writeSeededVitCheckpoint } from "../src/ml/vit-checkpoint.ts";

const here = new URL(".", import.meta.url);
const status = (field: string): number => {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
};
/** Bytes this process handed to write(2) so far (/proc/self/io wchar). */
const wchar = (): number => Number(/^wchar:\s+(\d+)/m.exec(readFileSync("/proc/self/io", "utf8"))?.[1] ?? NaN);
const duBytes = (p: string): number => {
  const s = statSync(p);
  if (!s.isDirectory()) return s.size;
  return readdirSync(p).reduce((a, f) => a + duBytes(join(p, f)), 0);
};
/** What a local `sed-pipe run` grants an instance on this machine (src/runner/execute.ts defaults). */
const cores = Number(process.env.SED_PIPE_CORES ?? 0) || (await import("node:os")).availableParallelism();
const settings: StageSettings = { cores, blasThreads: cores, headThreads: null, blas: true };
const BACKEND = process.env.SED_SCALE_BACKEND ?? "wasm";

interface Measured {
  /** Rows, samples or head-rows done in `seconds`. */
  work: number;
  /** Outputs the part produced (file or folder), for the bytes-on-disk figure. */
  outputs?: string[];
  extra?: Record<string, number | string>;
  /** Seconds of a sub-phase worth its own rate (e.g. validation). */
  phases?: Record<string, number>;
}

async function writeFeatures(out: string, passRows: number, passes: number, seed: number): Promise<Measured> {
  const dim = 768;
  const w = await createFeatureFile(out, { dim, expectedRows: passRows * passes });
  const rng = new Rng(seed);
  const B = 1024;
  const embed = new Float32Array(B * dim);
  const label = new Float32Array(B);
  const index = new Float32Array(B);
  try {
    for (let p = 0; p < passes; p++) {
      for (let s = 0; s < passRows; s += B) {
        const n = Math.min(B, passRows - s);
        // Class-dependent mean so a head can learn something; values like post-LN ViT features.
        for (let j = 0; j < n; j++) {
          const y = (s + j) % 1000;
          label[j] = y;
          index[j] = s + j;
          const row = embed.subarray(j * dim, (j + 1) * dim);
          for (let d = 0; d < dim; d++) row[d] = rng.next() * 2 - 1 + (d === y % dim ? 2 : 0);
        }
        w.append(embed.subarray(0, n * dim), label.subarray(0, n), index.subarray(0, n));
      }
    }
    await w.finish();
  } catch (err) {
    await w.abort();
    throw err;
  }
  return { work: passRows * passes, outputs: [out] };
}

async function readTrain(file: string, batch: number): Promise<Measured> {
  const r = await openFeatureFile(file, { dim: 768, requireComplete: true });
  try {
    const labels = r.labels();
    checkLabels(labels, 1000, file);
    let rows = 0;
    let sum = 0;
    for (const b of r.shuffled({ pass: 0, batchSize: batch, rng: new Rng(3) })) {
      rows += b.count;
      sum += b.embed[0];
    }
    return { work: rows, extra: { passRows: r.passRows, passes: r.passes, chunkRows: r.chunkRows ?? 0, checksum: sum } };
  } finally {
    r.close();
  }
}

/** The first `steps` batches of the pass: train-heads' source, cut short (passRows stays the file's). */
function firstSteps(src: TrainSource, steps: number, timing: { start: number; end: number }): TrainSource {
  return {
    ...src,
    *batches(epoch, batchSize, rng) {
      let n = 0;
      timing.start = performance.now();
      for (const b of src.batches(epoch, batchSize, rng)) {
        if (n++ >= steps) break;
        yield b;
      }
      timing.end = performance.now();
    },
  };
}

async function train(name: string, trainFile: string, valFile: string, steps: number, outDir: string): Promise<Measured> {
  const paper = parseYaml(readFileSync(new URL("../params/paper.yaml", here), "utf8")) as { train_configs: { name: string }[] };
  const raw = paper.train_configs.find((c) => c.name === name);
  if (!raw) throw new Error(`no train config ${name} in params/paper.yaml`);
  // One epoch that trains (not the frozen first one), so the steps update the heads as epochs 2-11 do.
  const cfg = parseTrainConfig({ ...raw, n_epochs: 1, freeze_first_epoch: false });
  const backend = await initBackend(BACKEND, settings);
  const trainReader = await openFeatureFile(trainFile, { dim: cfg.embed_dim, requireComplete: true });
  const valReader = await openFeatureFile(valFile, { dim: cfg.embed_dim, requireComplete: true });
  const scratch = join(outDir, "scratch");
  await mkdir(scratch, { recursive: true });
  const lines: string[] = [];
  let valSeconds = NaN;
  let stepsDone = 0;
  try {
    checkLabels(trainReader.labels(), cfg.num_classes, trainFile);
    checkLabels(valReader.labels(), cfg.num_classes, valFile);
    const rssOpen = status("VmRSS");
    // Time the validation pass on its own: the first val batch starts it, the epoch line ends it.
    const val = featureEvalSource(valReader);
    let valStart = 0;
    let valEnd = NaN;
    /** VmHWM at phase ends (it only grows): which phase set the peak. */
    const hwm: Record<string, number> = { readersOpen: status("VmHWM") };
    const timedVal = {
      ...val,
      *batches(bs: number) {
        valStart = performance.now();
        hwm.afterSteps = status("VmHWM");
        yield* val.batches(bs);
        valSeconds = (performance.now() - valStart) / 1000;
        valEnd = performance.now();
        hwm.afterValidation = status("VmHWM");
      },
    };
    const t0 = performance.now();
    const timing = { start: NaN, end: NaN };
    const result = await trainEnsemble(cfg, firstSteps(featureTrainSource(trainReader), steps, timing), timedVal, {
      log: (l) => lines.push(l),
      checkpointDir: scratch,
      settings,
      dataIdentity: "bench",
    });
    const trainSeconds = (performance.now() - t0) / 1000;
    hwm.afterCheckpointAndSnapshot = status("VmHWM");
    const startup = (timing.start - t0) / 1000;
    const checkpointAndSnapshot = (performance.now() - valEnd) / 1000;
    stepsDone = result.rows[0]?.steps ?? steps;
    const t1 = performance.now();
    await saveEnsemble(join(outDir, "ensemble.safetensors"), { shape: headShapeOf(cfg), heads: result.heads, meta: { config: JSON.stringify(cfg), backend: backend.name } });
    const saveSeconds = (performance.now() - t1) / 1000;
    hwm.afterSave = status("VmHWM");
    return {
      work: stepsDone * cfg.batch_size,
      outputs: [outDir],
      phases: { startup, steps: (timing.end - timing.start) / 1000, validation: valSeconds, checkpointAndSnapshot, save: saveSeconds, trainEnsemble: trainSeconds },
      extra: {
        backend: backend.name,
        heads: cfg.n_models,
        batch: cfg.batch_size,
        steps: stepsDone,
        valRows: valReader.rows,
        rssReadersOpen: rssOpen,
        val_acc_mean: result.rows[0]?.val_acc_mean ?? NaN,
        hwmByPhase: Object.entries(hwm).map(([k, v]) => `${k} ${(v / 1e9).toFixed(2)}`).join(", "),
        epochLine: lines.filter((l) => l.includes("epoch")).pop() ?? "",
      },
    };
  } finally {
    trainReader.close();
    valReader.close();
  }
}

async function makeEnsemble(out: string, heads: number): Promise<Measured> {
  const shape: HeadShape = { dim: 768, hidden: 3072, classes: 1000, eps: 1e-6 };
  const rng = new Rng(42);
  const e = { shape, heads: Array.from({ length: heads }, () => initHeadArrays(shape, rng)) };
  // LayerScale 1e-4 makes every head nearly the same function; spread it so scores are not degenerate.
  for (const h of e.heads) h.gamma_2.fill(0.5);
  await saveEnsemble(out, e);
  return { work: heads, outputs: [out] };
}

async function evalPart(ensemble: string, features: string, outDir: string): Promise<Measured> {
  await mkdir(outDir, { recursive: true });
  const lines: string[] = [];
  const ctx: StageContext = {
    instanceId: "eval@bench/in_val",
    stage: "eval",
    root: outDir,
    profile: "paper",
    item: null,
    params: {
      model: { name: "bench", path: ensemble, format: "sed-pipe" },
      dataset: { key: "in_val", features, role: "id" },
      eval: { batch_size: 32, reference_quirks: false },
    },
    deps: { model: ensemble, features },
    outs: { result: join(outDir, "result.json"), scores: join(outDir, "scores.hdf5") },
    scratch: join(outDir, "scratch"),
    backend: BACKEND,
    settings,
    signal: new AbortController().signal,
    progress: () => {},
    log: (l) => lines.push(l),
  };
  await evalStage.run(ctx);
  const r = JSON.parse(readFileSync(ctx.outs.result, "utf8")) as { counts: { samples: number; heads: number } };
  return {
    work: r.counts.samples,
    outputs: [ctx.outs.result, ctx.outs.scores],
    extra: { heads: r.counts.heads, samples: r.counts.samples, log: lines.join(" | ") },
  };
}

/** The paper's featurizer and in_train transform (params/paper.yaml), with this part's passes. */
const DEIT3_BASE = { image_size: 224, patch_size: 16, in_chans: 3, embed_dim: 768, depth: 12, num_heads: 12, mlp_ratio: 4, layerscale_init: 0.0001 };
/** ImageNet's most common sizes, in turn (most train images are 500 px on the long side). */
const IMAGENET_SIZES: [number, number][] = [[500, 375], [375, 500], [500, 333], [500, 400], [333, 500], [640, 480], [500, 500], [1024, 768]];

async function makeImages(dir: string, classes: number, perClass: number): Promise<Measured> {
  const n = await writeImageFolderStandIn({ seed: 0, classes, per_class: perClass, sizes: IMAGENET_SIZES, quality: 90 }, dir);
  return { work: n, outputs: [dir] };
}

async function makeDeit(file: string): Promise<Measured> {
  await writeSeededVitCheckpoint(DEIT3_BASE, 0, file, "pth");
  return { work: 1, outputs: [file] };
}

async function featurize(images: string, checkpoint: string, out: string, passes: number): Promise<Measured> {
  const lines: string[] = [];
  const t0 = performance.now();
  let firstBatch = NaN;
  let firstRows = 0;
  const ctx: StageContext = {
    instanceId: "cache-features@in_train",
    stage: "cache-features",
    root: join(out, ".."),
    profile: "paper",
    item: null,
    params: {
      dataset: {
        key: "in_train", images, layout: "imagefolder", passes, features: out,
        transform: { kind: "train", size: 224, scale: [0.08, 1.0], ratio: [0.75, 1.3333333333333333], hflip: 0.5, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
      },
      featurizer: { checkpoint, model_name: "deit3_21k", reference_model_path: null, arch: DEIT3_BASE, batch_size: 64, seed: 42, on_bad_image: "fail" },
    },
    deps: { images, checkpoint },
    outs: { features: out, classes: `${out}.classes.json` },
    scratch: `${out}.scratch`,
    backend: BACKEND,
    settings,
    signal: new AbortController().signal,
    progress: (e) => {
      if (Number.isNaN(firstBatch) && typeof e.done === "number" && e.done > 0) {
        firstBatch = (performance.now() - t0) / 1000;
        firstRows = e.done;
      }
    },
    log: (l) => lines.push(l),
  };
  await cacheFeaturesStage.run(ctx);
  const r = await openFeatureFile(out, { dim: 768, requireComplete: true });
  const rows = r.rows;
  r.close();
  return { work: rows, outputs: [out], phases: { firstBatch, total: (performance.now() - t0) / 1000 }, extra: { firstRows, log: lines.join(" | ").slice(0, 600) } };
}

const [part, ...args] = process.argv.slice(2);
const rssBefore = status("VmRSS");
const w0 = wchar();
const t0 = performance.now();
let m: Measured;
switch (part) {
  case "write-features":
    m = await writeFeatures(args[0], Number(args[1]), Number(args[2]), Number(args[3]));
    break;
  case "read-train":
    m = await readTrain(args[0], Number(args[1]));
    break;
  case "train":
    m = await train(args[0], args[1], args[2], Number(args[3]), args[4]);
    break;
  case "make-ensemble":
    m = await makeEnsemble(args[0], Number(args[1]));
    break;
  case "eval":
    m = await evalPart(args[0], args[1], args[2]);
    break;
  case "make-images":
    m = await makeImages(args[0], Number(args[1]), Number(args[2]));
    break;
  case "make-deit":
    m = await makeDeit(args[0]);
    break;
  case "featurize":
    m = await featurize(args[0], args[1], args[2], Number(args[3]));
    break;
  default:
    throw new Error(`unknown part ${part} (write-features | read-train | train | make-ensemble | eval | make-images | make-deit | featurize)`);
}
const seconds = (performance.now() - t0) / 1000;
const diskBytes = (m.outputs ?? []).reduce((a, p) => a + duBytes(p), 0);
console.log(JSON.stringify({ part, seconds, work: m.work, rssBefore, peakRss: status("VmHWM"), wrote: wchar() - w0, diskBytes, phases: m.phases ?? {}, extra: m.extra ?? {} }));
