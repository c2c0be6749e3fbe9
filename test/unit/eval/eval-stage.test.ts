import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resolveFeatureFile, run } from "../../../stages/eval.ts";
import type { StageContext } from "../../../src/stage-api.ts";
import { initHeadArrays, saveEnsemble, type HeadShape } from "../../../src/ml/heads.ts";
import { createFeatureFile } from "../../../src/io/feature-writer.ts";
import { readScoresFile } from "../../../src/io/scores-file.ts";
import { directedAuroc } from "../../../src/ml/auroc.ts";
import { SCORE_NAMES } from "../../../src/ml/scores.ts";
import { InputError } from "../../../src/errors.ts";
import { Rng } from "../../../src/rng.ts";
import { TEST_SETTINGS } from "../../helpers/stage-context.ts";

const shape: HeadShape = { dim: 8, hidden: 16, classes: 4 };

async function features(path: string, n: number, seed: number, shift: number, dim = shape.dim): Promise<void> {
  const rng = new Rng(seed);
  const w = await createFeatureFile(path, { dim });
  const embed = Float32Array.from({ length: n * dim }, (_, j) => rng.normal() + (j % dim === 0 ? shift : 0));
  const label = Float32Array.from({ length: n }, (_, i) => i % shape.classes);
  w.append(embed, label, Float32Array.from({ length: n }, (_, i) => i));
  await w.finish();
}

function ctx(dir: string, name: string, params: Record<string, unknown>, deps: Record<string, string>): StageContext & { logs: string[] } {
  const logs: string[] = [];
  return {
    instanceId: `eval@${name}`,
    stage: "eval",
    root: dir,
    profile: "test",
    item: null,
    params,
    deps,
    outs: { result: join(dir, "out", `${name}.json`), scores: join(dir, "out", `${name}.scores.hdf5`) },
    scratch: join(dir, "scratch"),
    backend: "cpu",
    settings: TEST_SETTINGS,
    signal: new AbortController().signal,
    progress: () => {},
    log: (l: string) => logs.push(l),
    logs,
  };
}

const evalParams = { batch_size: 16, reference_quirks: false };
const model = { name: "m", path: "x", format: "sed-pipe" };

test("in_val then a shifted set: result JSON, scores file, AUROCs recomputable from both score files", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sed-eval-"));
  try {
    const rng = new Rng(1);
    await mkdir(join(dir, "model"));
    await saveEnsemble(join(dir, "model", "ensemble.safetensors"), { shape, heads: [0, 1, 2].map(() => initHeadArrays(shape, rng)) });
    await features(join(dir, "in_val.hdf5"), 40, 2, 0);
    await features(join(dir, "ood.hdf5"), 30, 3, 4);
    const c1 = ctx(dir, "in_val", { model, dataset: { key: "in_val", features: "x", role: "id" }, eval: evalParams }, { model: join(dir, "model"), features: join(dir, "in_val.hdf5") });
    await run(c1);
    const r1 = JSON.parse(await readFile(c1.outs.result, "utf8"));
    assert.is(r1.counts.samples, 40);
    assert.is(r1.counts.batches, 3);
    assert.is(r1.auroc, null);
    assert.is(r1.backend.name, "cpu");
    assert.ok(r1.metrics.ensemble.mean >= 0 && r1.metrics.ensemble.mean <= 1);
    assert.is(r1.metrics.ensemble.std, 0);
    for (const k of ["soup", "submodel_2", "best_single_model", "div_continous_unique", "var", "a2d_score"]) assert.ok(k in r1.metrics, k);

    const c2 = ctx(dir, "ood", { model, dataset: { key: "ood", features: "x", role: "semantic", reference: "in_val" }, eval: evalParams }, { model: join(dir, "model"), features: join(dir, "ood.hdf5"), id_scores: c1.outs.scores });
    await run(c2);
    const r2 = JSON.parse(await readFile(c2.outs.result, "utf8"));
    const id = await readScoresFile(c1.outs.scores);
    const ood = await readScoresFile(c2.outs.scores);
    assert.is(ood.rows, 30);
    for (const n of SCORE_NAMES) assert.is(r2.auroc[n].mean, directedAuroc(n, id.scores[n], ood.scores[n]), n);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("bad input: missing in_val reference scores, class-count mismatch, feature dim mismatch, bad role", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sed-eval-"));
  try {
    const rng = new Rng(1);
    await mkdir(join(dir, "model"));
    await saveEnsemble(join(dir, "model", "ensemble.safetensors"), { shape, heads: [initHeadArrays(shape, rng), initHeadArrays(shape, rng)] });
    await features(join(dir, "f.hdf5"), 10, 2, 0);
    await features(join(dir, "wide.hdf5"), 10, 2, 0, 5);
    const deps = { model: join(dir, "model"), features: join(dir, "f.hdf5") };
    const expectErr = async (c: StageContext, re: RegExp) => {
      try {
        await run(c);
        assert.unreachable("should fail");
      } catch (e) {
        assert.ok(e instanceof InputError || (e as Error).name === "ConfigError", String(e));
        assert.match((e as Error).message, re);
      }
    };
    await expectErr(ctx(dir, "a", { model, dataset: { key: "inat", features: "x", role: "semantic", reference: "in_val" }, eval: evalParams }, deps), /in-distribution reference scores \(in_val\) of model "m" are missing/);
    await writeFile(join(dir, "classes.json"), JSON.stringify({ all_wnids: ["a", "b", "c"], subset_wnids: ["a"] }));
    await expectErr(ctx(dir, "b", { model, dataset: { key: "in_val", features: "x", role: "subset", classes_key: "subset_wnids" }, eval: evalParams }, { ...deps, classes: join(dir, "classes.json"), id_scores: join(dir, "never-read.scores.hdf5") }), /lists 3 classes but the model predicts 4/);
    await expectErr(ctx(dir, "c", { model, dataset: { key: "in_val", features: "x", role: "id" }, eval: evalParams }, { ...deps, features: join(dir, "wide.hdf5") }), /5|dim/);
    const w = await createFeatureFile(join(dir, "empty.hdf5"), { dim: shape.dim });
    await w.finish();
    await expectErr(ctx(dir, "e", { model, dataset: { key: "in_val", features: "x", role: "id" }, eval: evalParams }, { ...deps, features: join(dir, "empty.hdf5") }), /no rows|empty|incomplete/);
    await expectErr(ctx(dir, "d", { model, dataset: { key: "in_val", features: "x", role: "train" }, eval: evalParams }, deps), /role must be one of/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("an ImageNet-C feature folder must hold exactly one .hdf5 file", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sed-eval-"));
  try {
    await mkdir(join(dir, "Brightness_1"));
    try {
      await resolveFeatureFile(join(dir, "Brightness_1"));
      assert.unreachable();
    } catch (e) {
      assert.match((e as Error).message, /exactly one \.hdf5 feature file in the folder, found 0/);
    }
    await writeFile(join(dir, "Brightness_1", "abc_x_5_samples.hdf5"), "");
    await writeFile(join(dir, "Brightness_1", "notes.txt"), "");
    assert.is(await resolveFeatureFile(join(dir, "Brightness_1")), join(dir, "Brightness_1", "abc_x_5_samples.hdf5"));
    await writeFile(join(dir, "Brightness_1", "def_x_5_samples.hdf5"), "");
    try {
      await resolveFeatureFile(join(dir, "Brightness_1"));
      assert.unreachable();
    } catch (e) {
      assert.match((e as Error).message, /found 2 \(abc_x_5_samples.hdf5, def_x_5_samples.hdf5\)/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
