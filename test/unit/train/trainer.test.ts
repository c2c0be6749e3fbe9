import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { mkdtemp, rm, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Rng } from "../../../src/rng.ts";
import { HEAD_PARAM_NAMES, headParamCount, initHeadArrays, type HeadArrays } from "../../../src/ml/heads.ts";
import { parseTrainConfig, effectiveLoss, headShapeOf, type TrainConfigInput } from "../../../src/ml/train-config.ts";
import { trainEnsemble } from "../../../src/ml/trainer.ts";
import { EnsembleState } from "../../../src/ml/ensemble-state.ts";
import { sedTrainStep, evaluateEnsemble } from "../../../src/ml/single-thread-training.ts";
import { StepAccumulators, trainingCsv } from "../../../src/ml/epoch-log.ts";
import { memoryTrainSource, memoryEvalSource } from "../../../src/ml/train-sources.ts";
import { clusters } from "./synthetic.ts";
import { sedLoss64 } from "./reference64.ts";

await tf.setBackend("cpu");

const DIM = 6;
function cfgOf(over: Partial<TrainConfigInput> = {}) {
  return parseTrainConfig({
    name: "t", n_models: 4, random_select: 2, embed_dim: DIM, mlp_hidden: 8, num_classes: 3, batch_size: 8, eval_batch_size: 16,
    optimizer: { type: "adamw", lr: 0.01, weight_decay: 0.1 }, lr_scheduler: { type: "cosine", t_max: 15 }, n_epochs: 3,
    freeze_first_epoch: true, lambda: null, patch_diversity_lambda: 0.5, manual_lambda: 5, use_always_labeled: true, smoothing_eps: 0.5,
    ...over,
  });
}

function withTimeout<T>(p: Promise<T>, ms = 60_000): Promise<T> {
  return Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`timed out after ${ms} ms`)), ms).unref())]);
}

const same = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

async function snapshotCopy(st: EnsembleState) {
  const s = await st.snapshot();
  return {
    heads: s.heads.map((h) => Object.fromEntries(HEAD_PARAM_NAMES.map((k) => [k, h[k].slice()])) as HeadArrays),
    slots: s.slots.map((o) => Object.fromEntries(Object.entries(o).map(([n, h]) => [n, Object.fromEntries(HEAD_PARAM_NAMES.map((k) => [k, h[k].slice()]))]))),
  };
}

for (const [label, over] of [
  ["adamw on device", {}],
  ["sgd, inactive heads on the host", { optimizer: { type: "sgd", lr: 0.05, momentum: 0.9, weight_decay: 1e-4, nan_check: true }, keep_inactive_on_cpu: true }],
] as [string, Partial<TrainConfigInput>][]) {
  test(`2-of-M selection updates only the active heads; inactive weights and optimizer state stay bit-identical (${label})`, async () => {
    const cfg = cfgOf(over);
    const rng = new Rng(3);
    const st = new EnsembleState(cfg, Array.from({ length: 4 }, () => initHeadArrays(headShapeOf(cfg), rng)));
    const data = clusters(8, DIM, 3, 1);
    const acc = new StepAccumulators();
    const x = tf.tensor2d(data.embed, [8, DIM]);
    const y = tf.tensor1d(data.label, "int32");
    // warm step on heads 0 and 2 so every head's state differs from zeros before the checked step
    await sedTrainStep(st, effectiveLoss(cfg), { x, y, active: [0, 2], ref: 0, lr: 0.01, update: true }, acc);
    await sedTrainStep(st, effectiveLoss(cfg), { x, y, active: [1, 3], ref: 1, lr: 0.01, update: true }, acc);
    const before = (await snapshotCopy(st));
    const nBefore = tf.memory().numTensors;
    await sedTrainStep(st, effectiveLoss(cfg), { x, y, active: [1, 2], ref: 0, lr: 0.01, update: true }, acc);
    assert.is(tf.memory().numTensors, nBefore, "tensor count is stable across steps");
    const after = (await snapshotCopy(st));
    for (const i of [0, 3]) {
      for (const k of HEAD_PARAM_NAMES) assert.ok(same(before.heads[i][k], after.heads[i][k]), `inactive head ${i} ${k} changed`);
      for (const s of Object.keys(before.slots[i])) for (const k of HEAD_PARAM_NAMES) assert.ok(same(before.slots[i][s][k], after.slots[i][s][k]), `inactive head ${i} slot ${s}.${k} changed`);
    }
    for (const i of [1, 2]) assert.not.ok(same(before.heads[i]["head.weight"], after.heads[i]["head.weight"]), `active head ${i} did not change`);
    assert.equal(st.headSteps, [1, 2, 2, 1]);
    tf.dispose([x, y]);
    acc.dispose();
    st.dispose();
  });
}

test("a step whose gradients hold a NaN is skipped and counted (SGD nan_check)", async () => {
  const cfg = cfgOf({ optimizer: { type: "sgd", lr: 0.05, momentum: 0.9, weight_decay: 1e-4, nan_check: true } });
  const st = new EnsembleState(cfg, Array.from({ length: 4 }, (_, i) => initHeadArrays(headShapeOf(cfg), new Rng(i))));
  const data = clusters(8, DIM, 3, 1);
  const acc = new StepAccumulators();
  const bad = data.embed.slice();
  bad[3] = NaN;
  const before = (await snapshotCopy(st));
  await sedTrainStep(st, effectiveLoss(cfg), { x: tf.tensor2d(bad, [8, DIM]), y: tf.tensor1d(data.label, "int32"), active: [0, 1], ref: 0, lr: 0.05, update: true }, acc);
  assert.is((await acc.read()).skipped, 1);
  const mid = (await snapshotCopy(st));
  for (const k of HEAD_PARAM_NAMES) assert.ok(same(before.heads[0][k], mid.heads[0][k]) && same(before.slots[0].momentum[k], mid.slots[0].momentum[k]), `${k} changed by a skipped step`);
  await sedTrainStep(st, effectiveLoss(cfg), { x: tf.tensor2d(data.embed, [8, DIM]), y: tf.tensor1d(data.label, "int32"), active: [0, 1], ref: 0, lr: 0.05, update: true }, acc);
  assert.is((await acc.read()).skipped, 1);
  assert.not.ok(same(mid.heads[0]["head.weight"], (await snapshotCopy(st)).heads[0]["head.weight"]));
  acc.dispose();
  st.dispose();
});

test("frozen step: forward/backward, no update", async () => {
  const cfg = cfgOf();
  const st = new EnsembleState(cfg, Array.from({ length: 4 }, (_, i) => initHeadArrays(headShapeOf(cfg), new Rng(i))));
  const data = clusters(8, DIM, 3, 1);
  const acc = new StepAccumulators();
  const before = (await snapshotCopy(st));
  await sedTrainStep(st, effectiveLoss(cfg), { x: tf.tensor2d(data.embed, [8, DIM]), y: tf.tensor1d(data.label, "int32"), active: [0, 1], ref: 0, lr: 0.05, update: false }, acc);
  const r = (await acc.read());
  assert.ok(r.task > 0 && r.total > 0);
  for (const k of HEAD_PARAM_NAMES) assert.ok(same(before.heads[0][k], (await snapshotCopy(st)).heads[0][k]));
  assert.equal(st.headSteps, [0, 0, 0, 0]);
  acc.dispose();
  st.dispose();
});

for (const [label, over] of [
  ["device, batches outer, with repulsion", {}],
  ["host-kept heads, heads outer, repulsion never computed", { keep_inactive_on_cpu: true, use_always_labeled: false, lambda: 0.5, patch_diversity_lambda: null, smoothing_eps: null }],
  ["host-kept heads, batches outer because of the repulsion term", { keep_inactive_on_cpu: true }],
] as [string, Partial<TrainConfigInput>][]) {
  test(`evaluateEnsemble: per-head and mean-logit accuracy, eval-mode losses over all heads (${label})`, async () => {
    const cfg = cfgOf({ n_models: 3, ...over });
    const shape = headShapeOf(cfg);
    const st = new EnsembleState(cfg, [0, 1, 2].map((i) => initHeadArrays(shape, new Rng(i))));
    const v = clusters(20, DIM, 3, 4);
    const n0 = tf.memory().numTensors;
    const loss = effectiveLoss(cfg);
    const r = await evaluateEnsemble(st, memoryEvalSource(v.embed, v.label, DIM), 7, { loss, refRng: new Rng(9) });
    assert.is(tf.memory().numTensors, n0, "no tensors leak from evaluation");
    const { heads } = await st.snapshot();
    const logits = heads.map((h) => tf.tidy(() => HL.headLogits(HL.headTensorsFromArrays(h, shape), tf.tensor2d(v.embed, [20, DIM]), shape).arraySync()));
    const argmax = (row: number[]) => row.indexOf(Math.max(...row));
    const acc = (rows: number[][]) => rows.filter((row, n) => argmax(row) === v.label[n]).length / 20;
    assert.equal(r.perHead, logits.map(acc));
    assert.is(r.ensemble, acc(logits[0].map((row, n) => row.map((z, c) => z + logits[1][n][c] + logits[2][n][c]))));
    // expected: the reference's loss per batch of 7 (all heads active), averaged over the 3 batches
    const refs = new Rng(9);
    let task = 0, rep = 0, total = 0;
    for (let s0 = 0; s0 < 20; s0 += 7) {
      const ref = loss.computeRepulsion ? refs.int(3) : 0;
      const part = sedLoss64(logits.map((z) => z.slice(s0, s0 + 7)), Array.from(v.label.slice(s0, s0 + 7)), 3, loss, ref);
      task += part.task / 3; rep += part.repulsion / 3; total += part.total / 3;
    }
    for (const [got, want, what] of [[r.task, task, "task"], [r.repulsion, rep, "repulsion"], [r.total, total, "total"]] as const) {
      assert.ok(Math.abs(got - want) < 1e-5 * Math.max(1, Math.abs(want)), `${what}: ${got} vs ${want}`);
    }
    st.dispose();
  });
}
import * as HL from "../../../src/ml/heads.ts";

test("interrupted training resumes from the last complete epoch and ends bit-identical", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sed-train-"));
  try {
    const tr = clusters(96, DIM, 3, 1, 1);
    const va = clusters(30, DIM, 3, 2, 1);
    const train = memoryTrainSource(tr.embed, tr.label, DIM, 2);
    const val = memoryEvalSource(va.embed, va.label, DIM);
    const cfg = cfgOf({ n_epochs: 4 });
    const n0 = tf.memory().numTensors;
    const full = await withTimeout(trainEnsemble(cfg, train, val, { checkpointDir: join(dir, "a") }));
    assert.is(tf.memory().numTensors, n0, "no tensors leak from a whole run");
    assert.is(full.rows.length, 4);
    assert.ok(full.rows[0].frozen && !full.rows[1].frozen);
    assert.is(full.rows[0].lr, 0.01);
    assert.is(full.rows[1].lr, 0.01);
    assert.ok(Math.abs(full.rows[2].lr - 0.01 * 0.989074) < 1e-8);

    const ac = new AbortController();
    const b = join(dir, "b");
    await (await import("node:fs/promises")).mkdir(b);
    let failed = false;
    try {
      await withTimeout(trainEnsemble(cfg, train, val, { checkpointDir: b, signal: ac.signal, onEpochEnd: (e) => e === 1 && ac.abort(new Error("interrupted")) }));
    } catch (e) {
      failed = (e as Error).message === "interrupted";
    }
    assert.ok(failed, "the run was interrupted");
    assert.equal(await readdir(b), ["checkpoint.safetensors"]);
    const logs: string[] = [];
    const resumed = await withTimeout(trainEnsemble(cfg, train, val, { checkpointDir: b, log: (l) => logs.push(l) }));
    assert.is(resumed.resumedEpochs, 2);
    assert.match(logs[0], "resuming");
    for (let i = 0; i < 4; i++) for (const k of HEAD_PARAM_NAMES) assert.ok(same(full.heads[i][k], resumed.heads[i][k]), `head ${i} ${k} differs after resume`);
    const strip = (rows: typeof full.rows) => rows.map(({ walltime_s: _w, ...r }) => r);
    assert.equal(strip(resumed.rows), strip(full.rows));
    assert.match(trainingCsv(full.rows).split("\n")[0], "epoch,frozen,lr,steps,skipped_steps,train_task_loss");

    // A different config ignores the checkpoint instead of resuming from it.
    const logs2: string[] = [];
    const other = await withTimeout(trainEnsemble(cfgOf({ n_epochs: 2, seed: 7 }), train, val, { checkpointDir: b, log: (l) => logs2.push(l) }));
    assert.is(other.resumedEpochs, 0);
    assert.match(logs2[0], "ignoring checkpoint");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("heads learn: val accuracy rises well above chance (CE-only config, like ood_gen)", async () => {
  const tr = clusters(240, DIM, 3, 1, 0.7);
  const va = clusters(60, DIM, 3, 1, 0.7, 99); // same class centres, fresh samples
  const r = await withTimeout(trainEnsemble(cfgOf({ n_epochs: 4, lambda: 0.5, patch_diversity_lambda: null, manual_lambda: 0 }), memoryTrainSource(tr.embed, tr.label, DIM, 2), memoryEvalSource(va.embed, va.label, DIM)));
  assert.ok(r.rows[3].train_task_loss < r.rows[0].train_task_loss, "task loss goes down");
  assert.ok(r.rows[3].val_acc_mean > 0.8, `val acc ${r.rows[3].val_acc_mean}`);
  assert.ok(r.rows[3].train_repulsion_loss > 0, "repulsion computed and logged although mu = 0");
});

test("features of the wrong width are refused with a clear error", async () => {
  const tr = clusters(16, DIM + 1, 3, 1);
  try {
    await trainEnsemble(cfgOf(), memoryTrainSource(tr.embed, tr.label, DIM + 1), null);
    assert.unreachable();
  } catch (e) {
    assert.match((e as Error).message, "train features have dim 7 but config \"t\" has embed_dim 6");
  }
});

test("50 heads with keep_inactive_on_cpu: only the active pair ever lives on the backend", async () => {
  // The paper's 50-head ensemble is 1.1 GB of weights plus 1.1 GB of SGD momentum: more than the
  // wasm heap holds with activations. Kept on the host, device memory must not grow with M.
  const M = 50;
  const over: Partial<TrainConfigInput> = { n_models: M, optimizer: { type: "sgd", lr: 0.05, momentum: 0.9, weight_decay: 1e-4, nan_check: true } };
  const data = clusters(8, DIM, 3, 1);
  const x = tf.tensor2d(data.embed, [8, DIM]);
  const y = tf.tensor1d(data.label, "int32");
  const base = tf.memory().numBytes;
  const perHead = headParamCount(headShapeOf(cfgOf(over))) * 4 * 2; // weights + momentum, float32
  const deviceBytes = async (keepOnHost: boolean) => {
    const cfg = cfgOf({ ...over, keep_inactive_on_cpu: keepOnHost });
    const rng = new Rng(5);
    const st = new EnsembleState(cfg, Array.from({ length: M }, () => initHeadArrays(headShapeOf(cfg), rng)));
    const acc = new StepAccumulators();
    for (const active of [[0, 1], [7, 42], [13, 49]]) {
      await sedTrainStep(st, effectiveLoss(cfg), { x, y, active, ref: 0, lr: 0.05, update: true }, acc);
    }
    const held = tf.memory().numBytes - base;
    st.dispose();
    acc.dispose();
    return held;
  };
  const onHost = await deviceBytes(true);
  const onDevice = await deviceBytes(false);
  assert.ok(onDevice >= M * perHead, `on device: ${onDevice} bytes for ${M} heads of ${perHead}`);
  assert.ok(onHost <= 2 * perHead, `host-kept: ${onHost} bytes on the backend, more than the active pair (${2 * perHead})`);
  tf.dispose([x, y]);
});

test("snapshot views: host-kept heads are handed out without a copy, and a default snapshot stays a copy", async () => {
  const cfg = cfgOf({ optimizer: { type: "sgd", lr: 0.05, momentum: 0.9, weight_decay: 1e-4, nan_check: true }, keep_inactive_on_cpu: true });
  const rng = new Rng(5);
  const st = new EnsembleState(cfg, Array.from({ length: 4 }, () => initHeadArrays(headShapeOf(cfg), rng)));
  const data = clusters(8, DIM, 3, 1);
  const acc = new StepAccumulators();
  const x = tf.tensor2d(data.embed, [8, DIM]);
  const y = tf.tensor1d(data.label, "int32");
  try {
    const copy = await st.snapshot();
    const views = await st.snapshot({ views: true });
    for (const k of HEAD_PARAM_NAMES) assert.ok(same(copy.heads[1][k], views.heads[1][k]), k);
    await sedTrainStep(st, effectiveLoss(cfg), { x, y, active: [1, 2], ref: 1, lr: 0.05, update: true }, acc);
    // the step wrote the host buffers in place: the views see it, the copy does not
    const after = await st.snapshot();
    assert.ok(same(views.heads[1]["head.weight"], after.heads[1]["head.weight"]), "a view must be the live buffer");
    assert.not.ok(same(copy.heads[1]["head.weight"], after.heads[1]["head.weight"]), "a copy must not change with the step");
    assert.ok(same(views.slots[1].momentum["head.weight"], after.slots[1].momentum["head.weight"]));
    // a snapshot's copy is a different buffer from the state's own
    assert.is.not(after.heads[1]["head.weight"].buffer, (await st.snapshot({ views: true })).heads[1]["head.weight"].buffer);
  } finally {
    tf.dispose([x, y]);
    acc.dispose();
    st.dispose();
  }
});

test.run();

