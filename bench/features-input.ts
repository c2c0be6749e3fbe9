// The input pipeline of cache-features (part of `npm run bench -- features`): ImageNet-sized JPEGs
// generated deterministically into a temp folder, then
//   1. decode alone: one image at a time (img/s per core) and all at once on libuv's pool;
//   2. preparation (read + decode + transform + normalise) in batches: the previous stage code (a
//      batch decoded at once, then transformed on the stage's thread), the stage's thread now
//      (prepareOnThisThread), and image threads (ImagePool) with 1 and 2 threads;
//   3. the stage's loop (batches prepared up to 2 ahead while one runs through the model) with a
//      real ViT forward on these CPUs and with a simulated GPU forward (the thread waits, as it waits
//      for a GPU), against the previous serial loop; and the stage's own run() on 0, 1 and 2 threads.
// Env: SED_BENCH_JPEGS (256), SED_BENCH_INPUT_BATCH (64), SED_BENCH_GPU_RATE (437 img/s: tfjs-webgpu's
// DeiT-B forward on an H200, ../shared/guides/gpu-notes.md), SED_BENCH_KEEP_JPEGS=dir (reuse a folder),
// SED_BENCH_INPUT_PARTS (decode,prep,loop,run: a comma list of the parts to run), SED_BENCH_INPUT_REPEAT (3:
// runs per figure, modes interleaved; the median is printed with the range), SED_BENCH_RUN_REPEAT (2).
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import sharp from "sharp";
import { Rng } from "../src/rng.ts";
import { decodeImage, prepareInto, preparedSize, type ImagePrep } from "../src/io/images.ts";
import { ImagePool, prepareOnThisThread, type PrepareJob } from "../src/io/image-pool.ts";
import { Prefetch } from "../src/io/prefetch.ts";
import { createVit, disposeVit, featurizeBatch, type VitArch, type VitModel } from "../src/ml/vit.ts";
import { seededVitWeights, writeSeededVitCheckpoint } from "../src/ml/vit-checkpoint.ts";
import { run as runCacheFeatures } from "../stages/cache-features.ts";
import type { StageContext } from "../src/stage-api.ts";

const COUNT = Number(process.env.SED_BENCH_JPEGS ?? 256);
const BATCH = Number(process.env.SED_BENCH_INPUT_BATCH ?? 32);
/** Passes over the JPEGs in the loops (each pass draws other train crops), so a loop is many batches long. */
const PASSES = Number(process.env.SED_BENCH_INPUT_PASSES ?? 2);
const GPU_RATE = Number(process.env.SED_BENCH_GPU_RATE ?? 437);
const NORM = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const EVAL: ImagePrep = { kind: "eval", transform: { resize: 256, crop: 224, ...NORM } };
const TRAIN: ImagePrep = { kind: "train", transform: { size: 224, scale: [0.08, 1], ratio: [3 / 4, 4 / 3], hflip: 0.5, ...NORM }, seed: 42 };
/**
 * A small ViT at the real input size (DeiT-Tiny's width, SED_BENCH_INPUT_DEPTH blocks, default 2): a CPU
 * forward about as fast as the preparation, so that the two compete for the same cores.
 */
const TINY_224: VitArch = { image_size: 224, patch_size: 16, in_chans: 3, embed_dim: 192, depth: Number(process.env.SED_BENCH_INPUT_DEPTH ?? 2), num_heads: 3, mlp_ratio: 4, layerscale_init: 1 };

const PARTS = new Set((process.env.SED_BENCH_INPUT_PARTS ?? "decode,prep,loop,run").split(","));
const RUN_REPEAT = Number(process.env.SED_BENCH_RUN_REPEAT ?? 2);
/** Each preparation and loop figure is the median of this many runs, modes interleaved (this machine is shared: load moves figures). */
const REPEAT = Number(process.env.SED_BENCH_INPUT_REPEAT ?? 3);
const fmt = (x: number, d = 0) => x.toFixed(d);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A photo-like image: smooth colour fields (cubic upscaling of random colours) plus noise, 4:2:0 quality 90. */
async function photoJpeg(w: number, h: number, seed: number): Promise<Buffer> {
  const rng = new Rng(seed);
  const sw = Math.ceil(w / 16);
  const sh = Math.ceil(h / 16);
  const small = Buffer.alloc(sw * sh * 3);
  for (let i = 0; i < small.length; i++) small[i] = rng.nextU32() & 255;
  const data = await sharp(small, { raw: { width: sw, height: sh, channels: 3 } }).resize(w, h, { kernel: "cubic" }).raw().toBuffer();
  for (let i = 0; i < data.length; i++) data[i] = Math.max(0, Math.min(255, data[i]! + ((rng.nextU32() & 63) - 32)));
  return sharp(data, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90, chromaSubsampling: "4:2:0" }).toBuffer();
}

/** Sizes of image i: 3/4 are ImageNet's typical 500x375 (or 375x500), 1/8 1024x768, 1/8 1600x1200. */
function sizeOf(i: number): [number, number] {
  const r = i % 8;
  if (r < 6) return r % 2 === 0 ? [500, 375] : [375, 500];
  return r === 6 ? [1024, 768] : [1600, 1200];
}

/** The JPEGs in an ImageFolder layout (two classes), so the stage's run() reads the same files. */
async function makeJpegs(dir: string): Promise<string[]> {
  const files: string[] = [];
  for (let i = 0; i < COUNT; i++) {
    const cls = join(dir, i % 2 === 0 ? "n01" : "n02");
    await mkdir(cls, { recursive: true });
    const f = join(cls, `${String(i).padStart(5, "0")}.jpg`);
    if (!(await stat(f).catch(() => null))) await writeFile(f, await photoJpeg(...sizeOf(i), i));
    files.push(f);
  }
  return files.sort();
}

/** The stage's batch preparation before image threads: the batch read and decoded at once, then transformed in order here. */
async function previousPrepare(jobs: readonly PrepareJob[], pass: number, prep: ImagePrep, out: Float32Array, per: number): Promise<void> {
  const bytes = await Promise.all(jobs.map((j) => readFile(j.file)));
  const decoded = bytes.map((b, k) => decodeImage(b, jobs[k]!.file));
  for (let k = 0; k < jobs.length; k++) prepareInto(await decoded[k]!, prep, pass, jobs[k]!.index, out, k * per);
}

type Mode = "previous" | "here" | 1 | 2;
const label = (m: Mode) => (m === "previous" ? "previous (serial, stage thread)" : m === "here" ? "stage thread + prefetch" : `${m} image thread${m > 1 ? "s" : ""}`);

/**
 * The stage's batch loop for `mode`: "previous" prepares a batch, then runs it (as the stage did);
 * the others prepare up to 2 batches ahead of the one in `forward` (as featurizeAll does now).
 * Returns img/s over all the images.
 */
async function stageLoop(jobs: PrepareJob[], prep: ImagePrep, mode: Mode, pool: ImagePool | null, forward: (px: Float32Array, n: number) => Promise<void>, passes: number): Promise<number> {
  const per = preparedSize(prep);
  const perPass = Math.ceil(jobs.length / BATCH);
  const count = perPass * passes;
  const slice = (j: number) => jobs.slice((j % perPass) * BATCH, ((j % perPass) + 1) * BATCH);
  const passOf = (j: number) => Math.floor(j / perPass);
  const t = performance.now();
  if (mode === "previous") {
    const out = new Float32Array(BATCH * per);
    for (let j = 0; j < count; j++) {
      const b = slice(j);
      await previousPrepare(b, passOf(j), prep, out, per);
      await forward(out.subarray(0, b.length * per), b.length);
    }
  } else {
    const slots = Array.from({ length: 3 }, () => new Float32Array(new SharedArrayBuffer(BATCH * per * 4)));
    let previous: Promise<unknown> = Promise.resolve();
    const batches = new Prefetch(count, 2, (j) => {
      const b = slice(j);
      const slot = slots[j % 3]!;
      const p = pool
        ? pool.prepare(b, passOf(j), prep, slot, per).then(() => b.length)
        : previous.then(() => prepareOnThisThread(b, passOf(j), prep, slot, per).then(() => b.length));
      previous = p.catch(() => undefined);
      return p;
    });
    for (let j = 0; j < count; j++) {
      const n = await batches.take();
      await forward(slots[j % 3]!.subarray(0, n * per), n);
    }
  }
  return (jobs.length * passes) / ((performance.now() - t) / 1000);
}

const MODES = ["previous", "here", 1, 2] as const;

/**
 * img/s and CPU ms per image (all threads of this process) of the stage loop in each mode, REPEAT
 * times with the modes interleaved; pool start-up is not timed.
 */
async function loopFigures(jobs: PrepareJob[], prep: ImagePrep, forward: (px: Float32Array, n: number) => Promise<void>, passes: number): Promise<string> {
  const rates = new Map<Mode, number[]>(MODES.map((m) => [m, []]));
  const cpus = new Map<Mode, number[]>(MODES.map((m) => [m, []]));
  for (let r = 0; r < REPEAT; r++) {
    for (const mode of MODES) {
      await withPool(mode, jobs, async (pool) => {
        const cpu = process.cpuUsage();
        rates.get(mode)!.push(await stageLoop(jobs, prep, mode, pool, forward, passes));
        const used = process.cpuUsage(cpu);
        cpus.get(mode)!.push((used.user + used.system) / 1000 / (jobs.length * passes));
      });
    }
  }
  return MODES.map((m) => `${label(m)} ${spread(rates.get(m)!)} (CPU ${fmt(median(cpus.get(m)!), 1)} ms/img)`).join("; ");
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

/** "median (min-max)" */
function spread(xs: number[]): string {
  return xs.length === 1 ? fmt(xs[0]!) : `${fmt(median(xs))} (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})`;
}

/** Runs fn with a pool for `mode` (none for the stage thread), started and warmed up (sharp loaded in each thread) beforehand. */
async function withPool<T>(mode: Mode, warm: PrepareJob[], fn: (pool: ImagePool | null) => Promise<T>): Promise<T> {
  const pool = typeof mode === "number" ? await ImagePool.start(mode) : null;
  if (pool) {
    const per = preparedSize(EVAL);
    const few = warm.slice(0, 2 * pool.size);
    await pool.prepare(few, 0, EVAL, new Float32Array(new SharedArrayBuffer(few.length * per * 4)), per);
  }
  try {
    return await fn(pool);
  } finally {
    await pool?.close();
  }
}

export async function benchInputPipeline(): Promise<void> {
  const cores = availableParallelism();
  const keep = process.env.SED_BENCH_KEEP_JPEGS;
  const dir = keep ?? (await mkdtemp(join(tmpdir(), "sed-bench-jpegs-")));
  try {
    let t = performance.now();
    const files = await makeJpegs(join(dir, "images"));
    const bytes = await Promise.all(files.map((f) => readFile(f)));
    const total = bytes.reduce((s, b) => s + b.length, 0);
    const typical = files.map((_, i) => i).filter((i) => sizeOf(i)[0] * sizeOf(i)[1] === 500 * 375);
    console.log(
      `input pipeline: ${files.length} JPEGs (4:2:0, q90; ${typical.length} of 500x375 or 375x500, the rest 1024x768 and 1600x1200), ` +
        `mean ${fmt(total / files.length / 1024)} KiB, ready in ${fmt((performance.now() - t) / 1000, 1)} s; ${cores} cores; libuv pool ${process.env.UV_THREADPOOL_SIZE ?? 4} threads; batch ${BATCH}, ${PASSES} passes in each loop; load average ${loadavg().map((x) => x.toFixed(1)).join(" ")}`,
    );

    // 1. Decode alone (bytes in memory).
    await decodeImage(bytes[0]!, "warm.jpg");
    for (const [name, set] of PARTS.has("decode") ? ([["500x375", typical], ["the mix", files.map((_, i) => i)]] as const) : []) {
      t = performance.now();
      for (const i of set) await decodeImage(bytes[i]!, files[i]!);
      const one = set.length / ((performance.now() - t) / 1000);
      t = performance.now();
      await Promise.all(set.map((i) => decodeImage(bytes[i]!, files[i]!)));
      const all = set.length / ((performance.now() - t) / 1000);
      console.log(`  decode only, ${name}: ${fmt(one)} img/s one at a time (= per core, ${fmt(1000 / one, 1)} ms/img); all at once ${fmt(all)} img/s on ${cores} cores (${fmt(all / cores)} per core)`);
    }
    if (PARTS.has("decode")) {
      // The JavaScript that follows a decode, alone, on this thread: per core.
      const decoded = await Promise.all(typical.map((i) => decodeImage(bytes[i]!, files[i]!)));
      const row: string[] = [];
      for (const prep of [EVAL, TRAIN]) {
        const out = new Float32Array(preparedSize(prep));
        t = performance.now();
        decoded.forEach((img, k) => prepareInto(img, prep, 0, k, out, 0));
        row.push(`${prep.kind} ${fmt((performance.now() - t) / decoded.length, 1)} ms/img`);
      }
      console.log(`  transform + normalise only (JavaScript, one thread), 500x375: ${row.join(", ")}`);
    }

    // 2. Preparation alone (read + decode + transform + normalise), no model.
    const jobs: PrepareJob[] = files.map((file, index) => ({ file, index }));
    for (const prep of PARTS.has("prep") ? [EVAL, TRAIN] : []) {
      const name = prep.kind === "eval" ? "eval (Resize 256, CenterCrop 224)" : "train (RandomResizedCrop 224 + flip)";
      console.log(`  preparation alone, ${name}, img/s: ${await loopFigures(jobs, prep, async () => {}, PASSES)}`);
    }

    // 3. The stage's loop with a model. The forward rates alone first.
    const model = createVit(seededVitWeights(TINY_224, 0), TINY_224);
    const per = preparedSize(EVAL);
    const px = new Float32Array(BATCH * per).map((_, i) => Math.sin(i * 0.001));
    await featurizeBatch(model, px, BATCH);
    t = performance.now();
    for (let r = 0; r < 4; r++) await featurizeBatch(model, px, BATCH);
    const tinyRate = (4 * BATCH) / ((performance.now() - t) / 1000);
    const forwards: [string, number, (px: Float32Array, n: number) => Promise<void>][] = [
      [`ViT 224/16 d192x${TINY_224.depth} on these CPUs (tfjs, ${fmt(tinyRate)} img/s alone)`, tinyRate, async (p, n) => void (await featurizeBatch(model, p, n))],
      [`simulated GPU forward (${GPU_RATE} img/s; this thread waits, as for a GPU)`, GPU_RATE, async (_p, n) => void (await sleep((n / GPU_RATE) * 1000))],
    ];
    for (const [name, alone, forward] of PARTS.has("loop") ? forwards : []) {
      // The CPU forward is slow: one pass over the JPEGs per run.
      const figures = await loopFigures(jobs, EVAL, forward, alone < 100 ? 1 : PASSES);
      console.log(`  stage loop (eval transform) with ${name}, img/s: ${figures}; the forward alone ${fmt(alone)}`);
    }
    disposeVit(model as VitModel);

    // The stage's own run() on the same files (the small ViT), on the stage's thread and on 1 and 2 image threads, twice over.
    const ckpt = join(dir, "vit-tiny.safetensors");
    await writeSeededVitCheckpoint(TINY_224, 0, ckpt);
    const row: string[] = [];
    const runs = PARTS.has("run") ? Array.from({ length: RUN_REPEAT }, () => [0, 1, 2]).flat() : [];
    for (const [i, imageThreads] of runs.entries()) {
      const rates: number[] = [];
      const ctx: StageContext = {
        instanceId: "cache-features@bench",
        stage: "cache-features",
        root: dir,
        profile: "bench",
        item: null,
        params: {
          dataset: { key: `bench${i}`, images: "images", layout: "imagefolder", transform: "train", passes: PASSES, features: `features-${i}.hdf5` },
          featurizer: { checkpoint: ckpt, arch: TINY_224, train_transform: TRAIN.transform, batch_size: BATCH },
        },
        deps: { images: join(dir, "images"), checkpoint: ckpt },
        outs: { features: join(dir, `out-${i}.hdf5`) },
        scratch: join(dir, "scratch"),
        backend: process.env.SED_BACKEND ?? "auto",
        settings: { cores, blasThreads: cores, headThreads: null, imageThreads, blas: true },
        signal: new AbortController().signal,
        progress: (e) => e.metrics?.img_per_s !== undefined && rates.push(e.metrics.img_per_s),
        log: () => {},
      };
      t = performance.now();
      const cpu = process.cpuUsage();
      await runCacheFeatures(ctx);
      const used = process.cpuUsage(cpu);
      const cpuMs = (used.user + used.system) / 1000 / (jobs.length * PASSES);
      row.push(`${imageThreads === 0 ? "stage thread" : `${imageThreads} image thread${imageThreads > 1 ? "s" : ""}`} ${fmt(rates.at(-1) ?? NaN)} (run() ${fmt((performance.now() - t) / 1000, 1)} s with start-up, CPU ${fmt(cpuMs, 1)} ms/img)`);
    }
    console.log(`  (load average now ${loadavg().map((x) => x.toFixed(1)).join(" ")})`);
    if (runs.length > 0) console.log(`  cache-features run(), ViT 224/16 d192x${TINY_224.depth}, train transform, ${PASSES} passes, img/s from its progress (thread start-up not in it; in the run time and CPU): ${row.join("; ")}`);
  } finally {
    if (!keep) await rm(dir, { recursive: true, force: true });
  }
}
