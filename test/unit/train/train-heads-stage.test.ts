import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import { mkdtemp, rm, readFile, readdir, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../../stages/train-heads.ts";
import { createFeatureFile } from "../../../src/io/feature-writer.ts";
import { loadEnsemble } from "../../../src/ml/heads.ts";
import type { ProgressEvent, StageContext } from "../../../src/stage-api.ts";
import { clusters } from "./synthetic.ts";
import { TEST_SETTINGS } from "../../helpers/stage-context.ts";

const DIM = 8;

async function writeFeatures(file: string, data: { embed: Float32Array; label: Int32Array }, passes: number): Promise<void> {
  const w = await createFeatureFile(file, { dim: DIM });
  const n = data.label.length / passes;
  for (let p = 0; p < passes; p++) {
    const rows = data.label.subarray(p * n, (p + 1) * n);
    w.append(data.embed.subarray(p * n * DIM, (p + 1) * n * DIM), rows, Int32Array.from({ length: n }, (_, i) => i));
  }
  await w.finish();
}

function ctxFor(dir: string, config: unknown, events: ProgressEvent[], logs: string[]): StageContext {
  return {
    instanceId: "train-heads@t", stage: "train-heads", root: dir, profile: "demo", item: config,
    params: { config }, deps: { train: join(dir, "train.hdf5"), val: join(dir, "val.hdf5") },
    outs: { model: join(dir, "out", "model") }, scratch: join(dir, "scratch"), backend: "cpu", settings: TEST_SETTINGS,
    signal: new AbortController().signal, progress: (e) => events.push(e), log: (l) => logs.push(l),
  };
}

const config = {
  name: "t", n_models: 3, random_select: 2, embed_dim: DIM, mlp_hidden: 16, num_classes: 3, batch_size: 16, eval_batch_size: 32,
  optimizer: { type: "adamw", lr: 0.01, weight_decay: 0.1 }, lr_scheduler: { type: "cosine", t_max: 15 }, n_epochs: 3,
  freeze_first_epoch: true, lambda: null, patch_diversity_lambda: 0.5, manual_lambda: 0.5, use_always_labeled: true, smoothing_eps: null, seed: 42,
};

test("stage trains from feature files and writes ensemble.safetensors, training.csv, config.json", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sed-train-stage-"));
  try {
    await writeFeatures(join(dir, "train.hdf5"), clusters(128, DIM, 3, 1, 0.5), 2);
    await writeFeatures(join(dir, "val.hdf5"), clusters(40, DIM, 3, 1, 0.5, 77), 1);
    await mkdir(join(dir, "scratch"));
    const events: ProgressEvent[] = [];
    const logs: string[] = [];
    await run(ctxFor(dir, config, events, logs));
    assert.match(logs[0], /^backend: cpu/);
    const out = join(dir, "out", "model");
    assert.equal((await readdir(out)).sort(), ["config.json", "ensemble.safetensors", "training.csv"]);
    const e = await loadEnsemble(join(out, "ensemble.safetensors"));
    assert.is(e.heads.length, 3);
    assert.equal({ dim: e.shape.dim, hidden: e.shape.hidden, classes: e.shape.classes }, { dim: DIM, hidden: 16, classes: 3 });
    const csv = (await readFile(join(out, "training.csv"), "utf8")).trim().split("\n");
    assert.is(csv.length, 4);
    const cj = JSON.parse(await readFile(join(out, "config.json"), "utf8"));
    assert.equal(cj.effective_loss, { lambda: 0.5, mu: 0.5, computeRepulsion: true, smoothingEps: null });
    assert.ok(events.some((v) => v.phase === "epoch 3/3" && v.unit === "step" && typeof v.metrics?.acc === "number"));
    assert.is(tf.memory().numTensors, 0, "no tensors left after the stage");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("labels outside num_classes and bad configs fail with clear errors", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sed-train-stage-"));
  try {
    await writeFeatures(join(dir, "train.hdf5"), clusters(32, DIM, 5, 1), 1);
    await writeFeatures(join(dir, "val.hdf5"), clusters(16, DIM, 3, 1), 1);
    try {
      await run(ctxFor(dir, config, [], []));
      assert.unreachable();
    } catch (err) {
      assert.match((err as Error).message, /train\.hdf5: row \d+ has label [34], outside \[0, 3\)/);
    }
    try {
      await run(ctxFor(dir, { ...config, optimizer: { type: "lion", lr: 1 } }, [], []));
      assert.unreachable();
    } catch (err) {
      assert.match((err as Error).message, 'params.config.optimizer.type: expected "sgd" or "adamw", got the string "lion"');
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
