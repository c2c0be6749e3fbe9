import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { PNG } from "pngjs";
import { run, parseFeaturizerParams } from "../../../stages/cache-features.ts";
import type { ProgressEvent, StageContext, StageSettings } from "../../../src/stage-api.ts";
import { writeSeededVitCheckpoint, readVitWeights } from "../../../src/ml/vit-checkpoint.ts";
import { createVit, disposeVit, featurizeBatch, type VitArch } from "../../../src/ml/vit.ts";
import { decodeImage, evalCrop, normalizeInto } from "../../../src/io/images.ts";
import { createFeatureFile } from "../../../src/io/feature-writer.ts";
import { openFeatureFile } from "../../../src/io/feature-reader.ts";
import { referenceFeatureFileName } from "../../../src/hash/reference-name.ts";
import { ConfigError, InputError } from "../../../src/errors.ts";
import { initBackend } from "../../../src/ml/backend.ts";
import { loadH5 } from "../../../src/io/hdf5.ts";
import { bundleStage } from "../../../src/runner/stage-bundle.ts";
import { TEST_SETTINGS } from "../../helpers/stage-context.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));
const FIXTURES = fileURLToPath(new URL("./fixtures/", import.meta.url));
/** Two image threads, whatever the machine: the pooled path, to compare with TEST_SETTINGS' stage thread. */
const THREADS: StageSettings = { ...TEST_SETTINGS, cores: 2, imageThreads: 2 };

const ARCH: VitArch = { image_size: 8, patch_size: 4, in_chans: 3, embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2, layerscale_init: 1 };
const NORM = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
const FEATURIZER = {
  checkpoint: "models/vit.safetensors",
  model_name: "vit_test",
  reference_model_path: null,
  arch: ARCH,
  eval_transform: { resize: 8, crop: 8, ...NORM },
  train_transform: { size: 8, scale: [0.5, 1.0], ratio: [0.75, 4 / 3], hflip: 0.5, ...NORM },
  batch_size: 3,
  seed: 42,
  on_bad_image: "fail",
};

function png(w: number, h: number, seed: number): Buffer {
  const p = new PNG({ width: w, height: h });
  for (let i = 0; i < w * h; i++) {
    p.data[i * 4] = (i * 37 + seed * 11) % 256;
    p.data[i * 4 + 1] = (i * 13 + seed * 101) % 256;
    p.data[i * 4 + 2] = (seed * 53) % 256;
    p.data[i * 4 + 3] = 255;
  }
  return PNG.sync.write(p);
}

let root = "";
test.before(async () => {
  await initBackend("auto");
});
test.before.each(async () => {
  root = await mkdtemp(join(tmpdir(), "sed-cache-features-"));
  for (const [cls, n] of [["cat", 3], ["dog", 2]] as const) {
    await mkdir(join(root, "images", cls), { recursive: true });
    for (let i = 0; i < n; i++) await writeFile(join(root, "images", cls, `${i}.png`), png(10, 9, cls.length * 10 + i));
  }
  await mkdir(join(root, "models"), { recursive: true });
  await writeSeededVitCheckpoint(ARCH, 0, join(root, "models", "vit.safetensors"));
});
test.after.each(async () => {
  await rm(root, { recursive: true, force: true });
});

function ctx(dataset: Record<string, unknown>, featurizer: Record<string, unknown> = FEATURIZER, signal?: AbortSignal, settings: StageSettings = TEST_SETTINGS) {
  const events: ProgressEvent[] = [];
  const logs: string[] = [];
  const c: StageContext = {
    instanceId: `cache-features@${dataset.key}`,
    stage: "cache-features",
    root,
    profile: "test",
    item: dataset,
    params: { dataset, featurizer },
    deps: { images: join(root, String(dataset.images)), checkpoint: join(root, "models", "vit.safetensors") },
    outs: { features: join(root, ".tmp", `out-${String(dataset.key)}`), classes: join(root, ".tmp", `classes-${String(dataset.key)}.json`) },
    scratch: join(root, ".scratch"),
    backend: "auto",
    settings,
    signal: signal ?? new AbortController().signal,
    progress: (e) => events.push(e),
    log: (l) => logs.push(l),
  };
  return { c, events, logs };
}

const TRAIN = { key: "in_train", images: "images", layout: "imagefolder", transform: "train", passes: 2, features: "features/train.hdf5" };
const VAL = { key: "in_val", images: "images", layout: "imagefolder", transform: "eval", features: "features/val.hdf5" };

test("eval pass: rows in ImageFolder order, labels and indices, features equal a direct forward; classes saved", async () => {
  const { c, events } = ctx(VAL);
  const before = tf.memory().numTensors;
  await run(c);
  assert.is(tf.memory().numTensors, before, "no tensors left behind");
  const r = await openFeatureFile(c.outs.features, { dim: 16, requireComplete: true });
  try {
    assert.is(r.rows, 5);
    assert.is(r.passes, 1);
    const [b] = [...r.sequential(10)];
    assert.equal(Array.from(b.label), [0, 0, 0, 1, 1]);
    assert.equal(Array.from(b.index), [0, 1, 2, 3, 4]);
    // independent path: decode + eval transform + forward for image dog/1.png (row 4)
    const img = await decodeImage(await readFile(join(root, "images", "dog", "1.png")), "dog/1.png");
    const px = new Float32Array(3 * 64);
    normalizeInto(evalCrop(img, FEATURIZER.eval_transform), NORM.mean, NORM.std, px, 0);
    const m = createVit(await readVitWeights(join(root, "models", "vit.safetensors"), ARCH), ARCH);
    const want = await featurizeBatch(m, px, 1);
    disposeVit(m);
    for (let i = 0; i < 16; i++) assert.ok(Math.abs(b.embed[4 * 16 + i] - want[i]) < 1e-5, `feature ${i}`);
  } finally {
    r.close();
  }
  assert.equal(JSON.parse(await readFile(c.outs.classes, "utf8")), { classes: ["cat", "dog"] });
  const last = events[events.length - 1];
  assert.is(last.done, 5);
  assert.is(last.total, 5);
  assert.ok(last.metrics!.img_per_s > 0);
  assert.is(events.length, 2, "one progress event per batch (batch 3)");
});

test("train transform: E passes one after another, index restarts, passes differ, reruns are identical", async () => {
  const a = ctx(TRAIN);
  await run(a.c);
  const read = async (p: string) => {
    const r = await openFeatureFile(p, { dim: 16, requireComplete: true });
    try {
      const [b] = [...r.sequential(100)];
      return { rows: r.rows, passes: r.passes, embed: b.embed, index: Array.from(b.index), label: Array.from(b.label) };
    } finally {
      r.close();
    }
  };
  const x = await read(a.c.outs.features);
  assert.is(x.rows, 10);
  assert.is(x.passes, 2);
  assert.equal(x.index, [0, 1, 2, 3, 4, 0, 1, 2, 3, 4]);
  assert.equal(x.label, [0, 0, 0, 1, 1, 0, 0, 0, 1, 1]);
  let diff = 0;
  for (let i = 0; i < 5 * 16; i++) diff = Math.max(diff, Math.abs(x.embed[i] - x.embed[5 * 16 + i]));
  assert.ok(diff > 1e-3, "pass 1 is augmented differently from pass 0");
  const b = ctx({ ...TRAIN, key: "again" });
  await run(b.c);
  const y = await read(b.c.outs.features);
  assert.equal(Array.from(y.embed), Array.from(x.embed));
  // another batch size gives the same rows (per-image seeds)
  const c2 = ctx({ ...TRAIN, key: "batch5" }, { ...FEATURIZER, batch_size: 5 });
  await run(c2.c);
  const z = await read(c2.c.outs.features);
  for (let i = 0; i < z.embed.length; i++) assert.ok(Math.abs(z.embed[i] - x.embed[i]) < 1e-5);
});

test("reference-hash naming: a folder out holding the reference file name, plus classes.json", async () => {
  const ds = { key: "Brightness_1", images: "images", layout: "imagefolder", transform: "eval", naming: "reference-hash", features: "features/Brightness_1" };
  const { c } = ctx(ds, { ...FEATURIZER, reference_model_path: "/mnt/lustre/work/oh/arubinstein17/github/diverse-universe-public/models/deit3/deit_3_base_224_21k.pth" });
  await run(c);
  const files = (await readdir(c.outs.features)).sort();
  // reference section 5.3: Brightness_1 -> 4c905e75df34398dcc32 with the authors' path
  assert.equal(files, ["4c905e75df34398dcc32_torch_load_block_-1_model_Brightness_1_dataset_1_epochs_5_samples.hdf5", "classes.json"]);
  const d2 = ctx({ ...ds, key: "Brightness_5" });
  await run(d2.c);
  const expected = referenceFeatureFileName({ modelPath: join(root, "models", "vit.safetensors"), modelName: "deit3_21k", datasetKey: "Brightness_5", epochs: 1, samples: 5 });
  assert.ok((await readdir(d2.c.outs.features)).includes(expected));
});

test("bad image: fail names the file; skip logs it and writes the others", async () => {
  await writeFile(join(root, "images", "dog", "0.png"), "not a png at all");
  const f = ctx(VAL);
  await run(f.c).then(
    () => assert.unreachable("should fail"),
    (e: Error) => {
      assert.instance(e, InputError);
      assert.match(e.message, /images\/dog\/0\.png: cannot decode image/);
    },
  );
  const s = ctx({ ...VAL, key: "skip" }, { ...FEATURIZER, on_bad_image: "skip" });
  await run(s.c);
  assert.ok(s.logs.some((l) => /skipping bad image .*dog\/0\.png/.test(l)));
  const r = await openFeatureFile(s.c.outs.features, { dim: 16, requireComplete: true });
  try {
    assert.is(r.rows, 4);
    const [b] = [...r.sequential(10)];
    assert.equal(Array.from(b.index), [0, 1, 2, 4]);
  } finally {
    r.close();
  }
});

test("bad input: empty class folder, checkpoint with missing keys, transform/arch size mismatch, abort", async () => {
  await mkdir(join(root, "images", "emu"));
  await run(ctx(VAL).c).then(
    () => assert.unreachable("should fail"),
    (e: Error) => assert.match(e.message, /class folder\(s\) hold no images: emu/),
  );
  await rm(join(root, "images", "emu"), { recursive: true });
  await writeSeededVitCheckpoint({ ...ARCH, depth: 1 }, 0, join(root, "models", "vit.safetensors"));
  await run(ctx(VAL).c).then(
    () => assert.unreachable("should fail"),
    (e: Error) => assert.match(e.message, /vit\.safetensors: checkpoint does not match featurizer\.arch: missing keys \(14\): blocks\.1\./),
  );
  assert.throws(
    () => parseFeaturizerParams({ ...FEATURIZER, eval_transform: { resize: 10, crop: 9, ...NORM } }),
    (e: Error) => e instanceof ConfigError && /eval_transform\.crop is 9 but featurizer\.arch\.image_size is 8/.test(e.message),
  );
  assert.throws(() => parseFeaturizerParams({ ...FEATURIZER, arch: { ...ARCH, image_size: 10 } }), /image_size 10 is not divisible by patch_size 4/);
  await writeSeededVitCheckpoint(ARCH, 0, join(root, "models", "vit.safetensors"));
  const ac = new AbortController();
  ac.abort(new Error("interrupted by test"));
  const a = ctx(VAL, FEATURIZER, ac.signal);
  await run(a.c).then(
    () => assert.unreachable("should abort"),
    (e: Error) => assert.match(e.message, /interrupted by test/),
  );
  await openFeatureFile(a.c.outs.features).then(
    () => assert.unreachable("aborted output must not remain"),
    () => {},
  );
});

/** A file as the reference writer leaves it: embed/label/index float32, no sed-pipe attributes. */
async function writeReferenceStyle(path: string, rows: number, dim: number, lastRowZero: boolean): Promise<void> {
  const h5 = await loadH5();
  await mkdir(join(path, ".."), { recursive: true });
  const f = new h5.File(path, "w");
  const e = new Float32Array(rows * dim).map((_, i) => (i % 7) + 1);
  if (lastRowZero) e.fill(0, (rows - 1) * dim);
  const sets: [string, Float32Array, number[]][] = [
    ["embed", e, [rows, dim]],
    ["label", new Float32Array(rows), [rows, 1]],
    ["index", new Float32Array(rows).map((_, i) => i), [rows, 1]],
  ];
  for (const [name, data, shape] of sets) {
    f.create_dataset({ name, data, shape, maxshape: [null, shape[1]], chunks: [rows, shape[1]], dtype: "<f" });
  }
  f.close();
}

test("a complete reference file already at the target is reused; an incomplete one, or one we wrote, is rebuilt", async () => {
  const target = join(root, "features", "val.hdf5");
  await writeReferenceStyle(target, 5, 16, false);
  const a = ctx(VAL);
  await run(a.c);
  assert.ok(a.logs.some((l) => /reusing complete reference file/.test(l)));
  const read = async (p: string) => {
    const r = await openFeatureFile(p, { dim: 16 });
    try {
      return { marker: r.completion.marker, embed: [...r.sequential(10)][0].embed };
    } finally {
      r.close();
    }
  };
  const reused = await read(a.c.outs.features);
  assert.is(reused.marker, "absent");
  assert.is(reused.embed[0], 1);
  await writeReferenceStyle(target, 5, 16, true);
  const b = ctx({ ...VAL, key: "b" });
  await run(b.c);
  assert.ok(b.logs.some((l) => /incomplete .*rebuilding/.test(l)));
  assert.is((await read(b.c.outs.features)).marker, "complete");
  // a file sed-pipe wrote is the engine's business: the stage recomputes
  const ours = ctx({ ...VAL, key: "d", features: "features/ours.hdf5" });
  await mkdir(join(root, "features"), { recursive: true });
  await copyFile(b.c.outs.features, join(root, "features", "ours.hdf5"));
  await run(ours.c);
  assert.not.ok(ours.logs.some((l) => /reusing/.test(l)));
});

async function rejects(p: Promise<unknown>, ok: (e: unknown) => boolean): Promise<void> {
  try {
    await p;
  } catch (e) {
    assert.ok(ok(e), `unexpected error: ${(e as Error).message}`);
    return;
  }
  assert.unreachable("should have thrown");
}

test("prebuilt reference features are validated and linked under the reference name, without images", async () => {
  // The authors' tarball holds in_val as a file and each ImageNet-C set as a folder with one hashed file.
  const valSrc = join(root, "cached", "in_val_deit3b_-1.hdf5");
  const cName = referenceFeatureFileName({ modelPath: "/m/deit.pth", datasetKey: "Brightness_1", samples: 4 });
  const cDir = join(root, "cached", "Brightness_1");
  await mkdir(cDir, { recursive: true });
  for (const f of [valSrc, join(cDir, cName)]) {
    const w = await createFeatureFile(f, { dim: 16 });
    w.append(new Float32Array(4 * 16).fill(0.5), [0, 1, 0, 1], [0, 1, 2, 3]);
    await w.finish();
  }
  const val = ctx({ key: "in_val", prebuilt: "cached/in_val_deit3b_-1.hdf5", layout: "imagefolder", transform: "eval", features: "features/val.hdf5" });
  val.c = { ...val.c, deps: { prebuilt: valSrc, checkpoint: join(root, "models", "vit.safetensors") } };
  await run(val.c);
  const r = await openFeatureFile(val.c.outs.features, { dim: 16, requireComplete: true });
  assert.is(r.rows, 4);
  r.close();
  assert.equal(JSON.parse(await readFile(val.c.outs.classes, "utf8")).classes, []);

  const c1 = ctx({ key: "Brightness_1", prebuilt: "cached/Brightness_1", layout: "imagefolder", transform: "eval", naming: "reference-hash", features: "features/Brightness_1" });
  c1.c = { ...c1.c, deps: { prebuilt: cDir, checkpoint: join(root, "models", "vit.safetensors") } };
  await run(c1.c);
  assert.equal(await readdir(c1.c.outs.features), [cName]);

  // A folder that does not hold exactly one file, or a width mismatch, is refused with the path named.
  await writeFile(join(cDir, "second.hdf5"), "x");
  await rejects(run(c1.c), (e: unknown) => e instanceof InputError && /expected exactly one \.hdf5 file/.test((e as Error).message));
  const wide = ctx({ key: "in_val", prebuilt: "x", layout: "imagefolder", transform: "eval", features: "features/val.hdf5" }, { ...FEATURIZER, arch: { ...ARCH, embed_dim: 32, num_heads: 2 } });
  wide.c = { ...wide.c, deps: { prebuilt: valSrc, checkpoint: join(root, "models", "vit.safetensors") } };
  await rejects(run(wide.c), (e: unknown) => e instanceof InputError && (e as Error).message.includes("in_val_deit3b_-1.hdf5"));
});

test("a dataset may carry its own transform; the featurizer's transforms are then not needed", async () => {
  const base = ctx(VAL);
  await run(base.c);
  const { eval_transform, train_transform, ...model } = FEATURIZER;
  void train_transform;
  const own = ctx({ ...VAL, key: "in_val_own", transform: { kind: "eval", ...eval_transform } }, model);
  await run(own.c);
  const a = await openFeatureFile(base.c.outs.features, { dim: 16 });
  const b = await openFeatureFile(own.c.outs.features, { dim: 16 });
  try {
    assert.equal(Array.from([...b.sequential(10)][0].embed), Array.from([...a.sequential(10)][0].embed));
  } finally {
    a.close();
    b.close();
  }
  const missing = ctx(VAL, model);
  await rejects(run(missing.c), (e: unknown) => e instanceof ConfigError && /transform is "eval" but featurizer\.eval_transform is not set/.test((e as Error).message));
  const bad = ctx({ ...VAL, transform: { kind: "eval", ...eval_transform, crop: 6 } }, model);
  await rejects(run(bad.c), (e: unknown) => e instanceof ConfigError && /transform\.crop is 6 but featurizer\.arch\.image_size is 8/.test((e as Error).message));
});

test("a dataset with neither images nor prebuilt is a config error", async () => {
  const { c } = ctx({ key: "x", layout: "imagefolder", transform: "eval", features: "features/x.hdf5" });
  await rejects(run(c), (e: unknown) => e instanceof ConfigError && /needs images .* or prebuilt/.test((e as Error).message));
});

/** A feature file's rows, for exact comparisons. */
async function rowsOf(path: string) {
  const r = await openFeatureFile(path, { dim: 16, requireComplete: true });
  try {
    const [b] = [...r.sequential(1000)];
    return { rows: r.rows, embed: Array.from(b.embed), label: Array.from(b.label), index: Array.from(b.index) };
  } finally {
    r.close();
  }
}

/** JPEGs among the PNGs (the threads decode them with sharp, as the stage's thread does). */
async function addJpegs(): Promise<void> {
  await copyFile(join(FIXTURES, "edges-420.jpg"), join(root, "images", "cat", "3.jpg"));
  await copyFile(join(FIXTURES, "odd-61x45.jpg"), join(root, "images", "dog", "2.jpg"));
}

test("image threads write the same feature file as the stage's thread: eval, and train over 2 passes in many small batches", async () => {
  await addJpegs();
  for (const [dataset, featurizer] of [[VAL, FEATURIZER], [TRAIN, { ...FEATURIZER, batch_size: 2 }]] as const) {
    const here = ctx({ ...dataset, key: `${dataset.key}-here` }, featurizer);
    await run(here.c);
    assert.ok(here.logs.some((l) => /images prepared on the stage's thread, read and decoded up to 2 batches ahead/.test(l)), here.logs.join("\n"));
    const pooled = ctx({ ...dataset, key: `${dataset.key}-pooled` }, featurizer, undefined, THREADS);
    const before = tf.memory().numTensors;
    await run(pooled.c);
    assert.is(tf.memory().numTensors, before, "no tensors left behind");
    assert.ok(pooled.logs.some((l) => /images prepared on 2 image threads, up to 2 batches ahead/.test(l)), pooled.logs.join("\n"));
    const a = await rowsOf(here.c.outs.features);
    const b = await rowsOf(pooled.c.outs.features);
    assert.is(a.rows, 7 * (dataset === TRAIN ? 2 : 1));
    assert.equal(b, a, `${dataset.key}: pooled rows equal the stage thread's exactly`);
    assert.equal(pooled.events.map((e) => e.done), here.events.map((e) => e.done));
  }
});

test("image threads: a bad image follows on_bad_image (fail names the file; skip writes the same rows as the stage's thread)", async () => {
  await addJpegs();
  await writeFile(join(root, "images", "dog", "0.png"), "not a png at all");
  await run(ctx(VAL, FEATURIZER, undefined, THREADS).c).then(
    () => assert.unreachable("should fail"),
    (e: Error) => {
      assert.instance(e, InputError);
      assert.match(e.message, /images\/dog\/0\.png: cannot decode image/);
      assert.match((e as InputError).hint ?? "", /on_bad_image: skip/);
    },
  );
  const skip = { ...FEATURIZER, on_bad_image: "skip", batch_size: 2 };
  const here = ctx({ ...TRAIN, key: "skip-here" }, skip);
  await run(here.c);
  const pooled = ctx({ ...TRAIN, key: "skip-pooled" }, skip, undefined, THREADS);
  await run(pooled.c);
  assert.is(pooled.logs.filter((l) => /skipping bad image .*dog\/0\.png: .*cannot decode image/.test(l)).length, 2, "once per pass");
  const a = await rowsOf(here.c.outs.features);
  const b = await rowsOf(pooled.c.outs.features);
  assert.equal(b.index, [0, 1, 2, 3, 5, 6, 0, 1, 2, 3, 5, 6]);
  assert.equal(b, a);
});

test("image threads: abort while batches are prepared ahead stops the run, leaves no output, and the threads go", async () => {
  const ac = new AbortController();
  const a = ctx(TRAIN, { ...FEATURIZER, batch_size: 1 }, ac.signal, THREADS);
  const c: StageContext = { ...a.c, progress: (e) => e.done === 2 && ac.abort(new Error("interrupted by test")) };
  await run(c).then(
    () => assert.unreachable("should abort"),
    (e: Error) => assert.match(e.message, /interrupted by test/),
  );
  await openFeatureFile(c.outs.features).then(
    () => assert.unreachable("aborted output must not remain"),
    () => {},
  );
});

test("from its stage bundle on plain node (as the runner starts it), image threads load the bundle: same rows, and the process exits", async () => {
  await addJpegs();
  const here = ctx(TRAIN);
  await run(here.c);
  const cache = await mkdtemp(join(REPO, "cache", "test-bundle-"));
  try {
    const bundle = await bundleStage(join(REPO, "stages", "cache-features.ts"), cache);
    const pooled = ctx({ ...TRAIN, key: "bundled" }, FEATURIZER, undefined, THREADS);
    const { signal: _s, progress: _p, log: _l, ...spec } = pooled.c;
    const script = [
      `import { pathToFileURL } from "node:url";`,
      `await import(pathToFileURL(process.argv[2]).href);`,
      `const stage = globalThis.__sedPipeBundledStage;`,
      `const spec = JSON.parse(process.argv[3]);`,
      `await stage.run({ ...spec, signal: new AbortController().signal, progress() {}, log: (l) => console.log("log: " + l) });`,
      `console.log("run resolved");`,
    ].join("\n");
    const main = join(cache, "run-stage.mjs");
    await writeFile(main, script);
    const r = spawnSync(process.execPath, [main, bundle, JSON.stringify(spec)], {
      cwd: REPO,
      encoding: "utf8",
      timeout: 120_000,
      env: { ...process.env, NODE_OPTIONS: "" },
    });
    assert.is(r.signal, null, `killed: the process did not exit\n${r.stdout}\n${r.stderr.slice(-2000)}`);
    assert.is(r.status, 0, `${r.stdout}\n${r.stderr.slice(-3000)}`);
    assert.match(r.stdout, /images prepared on 2 image threads/);
    assert.match(r.stdout, /run resolved/);
    assert.equal(await rowsOf(pooled.c.outs.features), await rowsOf(here.c.outs.features));
  } finally {
    await rm(cache, { recursive: true, force: true });
  }
});

test.run();
