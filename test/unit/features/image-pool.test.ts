// Image threads (src/io/image-pool.ts): the pooled preparation equals the stage's-thread one bit for
// bit on the committed JPEG/PNG fixtures (eval, and train with several seeds and passes, flips both
// ways), bad images come back as outcomes, a dead thread is a typed error and never a hang, abort
// and close end the work, and a process that used a pool exits.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { copyFile, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import type { Worker } from "node:worker_threads";
import { ImagePool, ImageThreadError, imageThreadCount, IMAGE_THREAD_DEPTH, prepareOnThisThread, type BadImage, type PrepareJob } from "../../../src/io/image-pool.ts";
import { augmentSeed, prepareInto, preparedSize, randomResizedCropBox, readImage, type ImagePrep } from "../../../src/io/images.ts";
import { InputError, SedPipeError } from "../../../src/errors.ts";
import { Rng } from "../../../src/rng.ts";

const FIX = fileURLToPath(new URL("./fixtures/", import.meta.url));
const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const NORM = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const EVAL: ImagePrep = { kind: "eval", transform: { resize: 32, crop: 24, ...NORM } };
const train = (seed: number): ImagePrep => ({ kind: "train", transform: { size: 24, scale: [0.08, 1], ratio: [3 / 4, 4 / 3], hflip: 0.5, ...NORM }, seed });

/** Rejects after ms: a hang becomes a failure, not a stuck test file. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms)))]).finally(() => clearTimeout(timer));
}

function sameBits(a: Float32Array, b: Float32Array, what: string): void {
  assert.is(a.length, b.length, what);
  const ua = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const ub = new Uint32Array(b.buffer, b.byteOffset, b.length);
  let first = -1;
  for (let i = 0; i < ua.length && first < 0; i++) if (ua[i] !== ub[i]) first = i;
  assert.is(first, -1, `${what}: first differing float at ${first} (${a[first]} vs ${b[first]})`);
}

/** What the stage's thread computes for the same jobs (the reference the pool must equal). */
async function inThread(jobs: PrepareJob[], pass: number, prep: ImagePrep): Promise<{ out: Float32Array; bad: (BadImage | null)[] }> {
  const per = preparedSize(prep);
  const out = new Float32Array(jobs.length * per);
  const bad: (BadImage | null)[] = [];
  for (const [k, j] of jobs.entries()) {
    try {
      prepareInto(await readImage(j.file), prep, pass, j.index, out, k * per);
      bad.push(null);
    } catch (err) {
      if (!(err instanceof InputError)) throw err;
      bad.push({ message: err.message, ...(err.hint ? { hint: err.hint } : {}) });
    }
  }
  return { out, bad };
}

function shared(n: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(n * 4));
}

let dir = "";
let jobs: PrepareJob[] = [];
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sed-image-pool-"));
  const names = (await readdir(FIX)).filter((f) => /\.(jpg|png)$/.test(f)).sort();
  assert.ok(names.filter((f) => f.endsWith(".jpg")).length >= 7, `fixtures: ${names}`);
  for (const f of names) await copyFile(join(FIX, f), join(dir, f));
  // Two ImageNet-sized JPEGs (500x375 4:2:0, and a 4:4:4 portrait), generated deterministically.
  for (const [name, w, h, sub] of [["big-420.jpg", 500, 375, "4:2:0"], ["tall-444.jpg", 333, 500, "4:4:4"]] as const) {
    const raw = Buffer.alloc(w * h * 3);
    for (let i = 0; i < w * h; i++) raw.set([(i * 7) % 256, ((i / w) | 0) % 256, ((i % w) * 3) % 256], i * 3);
    await writeFile(join(dir, name), await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90, chromaSubsampling: sub }).toBuffer());
  }
  const files = (await readdir(dir)).sort();
  // Each file several times, at dataset indices that differ (so each copy draws its own crop and flip).
  jobs = [0, 1, 2].flatMap((r) => files.map((f, i) => ({ file: join(dir, f), index: r * 100 + i })));
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

test("imageThreadCount: forced (0 = none), else one per core from two cores, capped by the images", () => {
  assert.is(imageThreadCount(100, { cores: 1 }), 0, "one core: the stage's thread");
  assert.is(imageThreadCount(100, { cores: 2 }), 2);
  assert.is(imageThreadCount(100, { cores: 8, imageThreads: null }), 8);
  assert.is(imageThreadCount(3, { cores: 8 }), 3, "no more threads than images");
  assert.is(imageThreadCount(100, { cores: 8, imageThreads: 0 }), 0, "0 = the stage's thread");
  assert.is(imageThreadCount(100, { cores: 1, imageThreads: 2 }), 2, "forced beats cores");
  assert.is(imageThreadCount(1, { imageThreads: 4 }), 1);
  for (const bad of [{ imageThreads: -1 }, { imageThreads: 1.5 }, { cores: 0 }]) {
    assert.throws(() => imageThreadCount(10, bad), (e: Error) => e instanceof SedPipeError, JSON.stringify(bad));
  }
});

test("pooled preparation equals the stage's thread bit for bit: eval, and train over seeds and passes with flips both ways", async () => {
  const pool = await ImagePool.start(2);
  try {
    assert.is(pool.size, 2);
    const cases: [ImagePrep, number][] = [[EVAL, 0], [train(42), 0], [train(42), 1], [train(42), 3], [train(7), 0], [train(123456789), 2]];
    let flips = 0;
    let plain = 0;
    for (const [prep, pass] of cases) {
      const per = preparedSize(prep);
      const out = shared(jobs.length * per);
      const got = await within(pool.prepare(jobs, pass, prep, out, per), 60_000, "prepare");
      const want = await inThread(jobs, pass, prep);
      assert.equal(got, want.bad);
      assert.ok(got.every((b) => b === null));
      sameBits(out, want.out, `${prep.kind} seed ${prep.kind === "train" ? prep.seed : "-"} pass ${pass}`);
      // The stage's thread (decoding a window ahead) is the same computation too.
      const here = new Float32Array(jobs.length * per);
      assert.equal(await prepareOnThisThread(jobs, pass, prep, here, per), want.bad);
      sameBits(here, want.out, `on this thread: ${prep.kind} pass ${pass}`);
      if (prep.kind === "train") {
        for (const j of jobs) {
          // The flip is the draw after the crop's (trainCrop): replay the same generator.
          const rng = new Rng(augmentSeed(prep.seed, pass, j.index));
          randomResizedCropBox(100, 100, prep.transform.scale, prep.transform.ratio, rng);
          if (rng.next() < prep.transform.hflip) flips++;
          else plain++;
        }
      }
    }
    assert.ok(flips > 10 && plain > 10, `flips ${flips}, unflipped ${plain}`);
  } finally {
    await pool.close();
  }
});

test("bad images come back as outcomes in their slots (missing file, corrupt bytes); the others are still right", async () => {
  await writeFile(join(dir, "corrupt.jpg"), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 1, 2, 3]));
  const mixed: PrepareJob[] = [jobs[0]!, { file: join(dir, "missing.png"), index: 1 }, jobs[2]!, { file: join(dir, "corrupt.jpg"), index: 3 }, jobs[4]!];
  const pool = await ImagePool.start(2);
  try {
    const prep = train(42);
    const per = preparedSize(prep);
    const out = shared(mixed.length * per);
    const got = await within(pool.prepare(mixed, 0, prep, out, per), 60_000, "prepare");
    assert.is(got[0], null);
    assert.match(got[1]!.message, /missing\.png: cannot read image \(ENOENT\)/);
    assert.is(got[2], null);
    assert.match(got[3]!.message, /corrupt\.jpg: cannot decode image \(JPEG/);
    assert.match(got[3]!.hint ?? "", /on_bad_image: skip/);
    assert.is(got[4], null);
    const want = await inThread(mixed, 0, prep);
    assert.equal(got, want.bad);
    assert.equal(await prepareOnThisThread(mixed, 0, prep, new Float32Array(mixed.length * per), per), want.bad);
    for (const k of [0, 2, 4]) sameBits(out.subarray(k * per, (k + 1) * per), want.out.subarray(k * per, (k + 1) * per), `image ${k}`);
  } finally {
    await pool.close();
    await rm(join(dir, "corrupt.jpg"));
  }
});

/** A pool's thread handles, for tests that kill one (private on purpose: nothing else may reach them). */
function workersOf(pool: ImagePool): Worker[] {
  return (pool as unknown as { threads: { worker: Worker }[] }).threads.map((t) => t.worker);
}

test("a thread that dies mid-batch fails the batch and every later one with ImageThreadError, never a hang", async () => {
  for (const kill of ["exits", "terminated"] as const) {
    const pool = await ImagePool.start(2);
    try {
      const per = preparedSize(EVAL);
      const many = Array.from({ length: 8 }, () => jobs).flat();
      const pending = pool.prepare(many, 0, EVAL, shared(many.length * per), per);
      const w = workersOf(pool)[0]!;
      if (kill === "exits") w.postMessage({ id: 0, req: { op: "exit", code: 3 } });
      else void w.terminate();
      const err = await within(pending.then(() => null, (e: unknown) => e), 30_000, "batch after a dead thread");
      assert.instance(err, ImageThreadError, kill);
      assert.match((err as Error).message, kill === "exits" ? /image thread 0 exited unexpectedly \(code 3\)/ : /image thread 0 exited unexpectedly/);
      assert.match((err as ImageThreadError).hint ?? "", /SED_PIPE_IMAGE_THREADS=0/);
      const later = await within(pool.prepare(jobs, 0, EVAL, shared(jobs.length * per), per).then(() => null, (e: unknown) => e), 5_000, "later batch");
      assert.instance(later, ImageThreadError);
    } finally {
      await within(pool.close(), 10_000, "close");
    }
  }
});

test("abort rejects with the signal's reason and drops the queued images; the pool goes on; close fails what is left", async () => {
  const pool = await ImagePool.start(1);
  try {
    const per = preparedSize(EVAL);
    const many = Array.from({ length: 10 }, () => jobs).flat();
    const ac = new AbortController();
    const pending = pool.prepare(many, 0, EVAL, shared(many.length * per), per, ac.signal);
    ac.abort(new Error("stopped by test"));
    await within(pending.then(() => assert.unreachable("should abort"), (e: Error) => assert.match(e.message, /stopped by test/)), 5_000, "abort");
    assert.ok((pool as unknown as { queue: unknown[] }).queue.length === 0, "queued images dropped");
    const out = shared(jobs.length * per);
    await within(pool.prepare(jobs, 0, EVAL, out, per), 60_000, "after abort");
    sameBits(out, (await inThread(jobs, 0, EVAL)).out, "after abort");
    const left = pool.prepare(many, 0, EVAL, shared(many.length * per), per).then(() => assert.unreachable("closed"), (e: Error) => assert.match(e.message, /image pool is closed/));
    await pool.close();
    await within(left, 5_000, "close");
    await pool.prepare(jobs, 0, EVAL, out, per).then(() => assert.unreachable("closed"), (e: Error) => assert.match(e.message, /closed/));
  } finally {
    await pool.close();
  }
});

test("a plain (unshared) buffer or one too small is refused", async () => {
  const pool = await ImagePool.start(1);
  try {
    const per = preparedSize(EVAL);
    await pool.prepare(jobs, 0, EVAL, new Float32Array(jobs.length * per), per).then(() => assert.unreachable(), (e: Error) => assert.match(e.message, /SharedArrayBuffer/));
    await pool.prepare(jobs, 0, EVAL, shared(per), per).then(() => assert.unreachable(), (e: Error) => assert.match(e.message, /holds \d+ floats/));
    assert.equal(await pool.prepare([], 0, EVAL, shared(1), per), []);
    assert.is(IMAGE_THREAD_DEPTH, 2);
  } finally {
    await pool.close();
  }
});

test("a process that used a pool exits: after close, and even when it forgot to close", () => {
  for (const close of [true, false]) {
    const script = [
      `import { ImagePool } from ${JSON.stringify(join(REPO, "src/io/image-pool.ts"))};`,
      `import { preparedSize } from ${JSON.stringify(join(REPO, "src/io/images.ts"))};`,
      `const prep = ${JSON.stringify(EVAL)}; const per = preparedSize(prep);`,
      `const pool = await ImagePool.start(2);`,
      `const jobs = ${JSON.stringify(jobs.slice(0, 6))};`,
      `const r = await pool.prepare(jobs, 0, prep, new Float32Array(new SharedArrayBuffer(jobs.length * per * 4)), per);`,
      "console.log(`prepared ${r.filter((x) => x === null).length}`);",
      close ? `await pool.close();` : ``,
    ].join("\n");
    const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { cwd: REPO, encoding: "utf8", timeout: 60_000 });
    assert.is(r.signal, null, `close=${close}: killed (did not exit): ${r.stderr.slice(-1000)}`);
    assert.is(r.status, 0, `close=${close}: ${r.stderr.slice(-2000)}`);
    assert.match(r.stdout, /prepared 6/, `close=${close}: ${r.stdout} ${r.stderr.slice(-2000)}`);
  }
});

test.run();
