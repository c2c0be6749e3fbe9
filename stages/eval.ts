// eval stage: one instance per (model, dataset). Reads the ensemble and the dataset's cached features,
// writes the result JSON (accuracies, diversity statistics, AUROCs against in_val) and the per-sample
// OOD scores file. Owns file plumbing (its params are checked by eval.contract.ts); the math lives
// in src/ml.
import { readFile, readdir, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { parseParams, type ParamsOf, type StageContext, type StageModule } from "../src/stage-api.ts";
import { ConfigError, InputError } from "../src/errors.ts";
import { initBackend } from "../src/ml/backend.ts";
import { loadEnsemble, type EnsembleArrays } from "../src/ml/heads.ts";
import { loadReferenceEnsemble } from "../src/ml/reference-ensemble.ts";
import { EnsembleEvaluator, ThreadedEvaluator, forwardRows, type EvalSummary } from "../src/ml/eval.ts";
import { headThreadCount } from "../src/ml/head-pool.ts";
import { subsetIndices } from "../src/ml/metrics.ts";
import { SCORE_NAMES } from "../src/ml/scores.ts";
import { directedAuroc } from "../src/ml/auroc.ts";
import { openFeatureFile } from "../src/io/feature-reader.ts";
import { readScoresFile, writeScoresFile } from "../src/io/scores-file.ts";
import { contract, type ROLES } from "./eval.contract.ts";

export { contract };

export const RESULT_FORMAT = "sed-pipe-eval/1";
type Role = (typeof ROLES)[number];

type EvalStageParams = ParamsOf<typeof contract>;
export type EvalModelParams = EvalStageParams["model"];
export type EvalDatasetParams = EvalStageParams["dataset"];
export type EvalParams = EvalStageParams["eval"];

/** A "mean +- std" pair; std is 0 with one ensemble per model (reference §3.2). */
export interface MeanStd {
  mean: number | null;
  std: number;
}

export interface EvalResult {
  format: typeof RESULT_FORMAT;
  model: string;
  dataset: string;
  role: Role;
  corruption: string | null;
  severity: number | null;
  reference: string | null;
  backend: { name: string; reason: string };
  reference_quirks: boolean;
  batch_size: number;
  counts: { samples: number; batches: number; heads: number; classes: number; label_classes: number; reference_samples: number | null };
  /** Keys as in the reference's results: ensemble, soup, submodel_<i>, best/mean_single_model, diversity stats. */
  metrics: Record<string, MeanStd>;
  /** AUROC per score against the reference (in_val) scores; null for in_val itself. */
  auroc: Record<string, MeanStd> | null;
  notes: string[];
}

/** The instance's params as the contract parsed them (a ConfigError naming every problem otherwise). */
export function checkParams(p: Readonly<Record<string, unknown>>): EvalStageParams {
  return parseParams(contract, p);
}

/** A feature dep is a file, or (ImageNet-C, reference-hash naming) a folder holding exactly one .hdf5 file. */
export async function resolveFeatureFile(dep: string): Promise<string> {
  const st = await stat(dep).catch(() => null);
  if (!st) throw new InputError(`${dep}: feature file or folder does not exist`, { hint: "run the cache-features stage first" });
  if (!st.isDirectory()) return dep;
  const files = (await readdir(dep)).filter((f) => f.endsWith(".hdf5")).sort();
  if (files.length !== 1) {
    throw new InputError(`${dep}: expected exactly one .hdf5 feature file in the folder, found ${files.length}${files.length ? ` (${files.join(", ")})` : ""}`, {
      hint: "remove stray files or re-run cache-features for this dataset",
    });
  }
  return join(dep, files[0]);
}

/** The ensemble of a model dep: a sed-pipe model folder (ensemble.safetensors) or a reference .pkl. */
export async function loadModel(dep: string, format: EvalModelParams["format"]): Promise<EnsembleArrays> {
  if (format === "reference-pkl") return loadReferenceEnsemble(dep);
  const st = await stat(dep).catch(() => null);
  if (!st) throw new InputError(`${dep}: model does not exist`, { hint: "run the train-heads stage first" });
  return loadEnsemble(st.isDirectory() ? join(dep, "ensemble.safetensors") : dep);
}

const ms = (v: number | null): MeanStd => ({ mean: v === null || Number.isNaN(v) ? null : v, std: 0 });

export function metricsOf(s: EvalSummary): Record<string, MeanStd> {
  const m: Record<string, MeanStd> = {
    ensemble: ms(s.accuracy.ensemble),
    best_single_model: ms(s.accuracy.best_single_model),
    mean_single_model: ms(s.accuracy.mean_single_model),
  };
  if (s.accuracy.soup !== null) m.soup = ms(s.accuracy.soup);
  s.accuracy.submodels.forEach((a, i) => (m[`submodel_${i}`] = ms(a)));
  for (const [k, v] of Object.entries(s.diversity)) m[k] = ms(v);
  return m;
}

export async function run(ctx: StageContext): Promise<void> {
  const { model, dataset, eval: ev } = checkParams(ctx.params);
  const notes: string[] = [];
  const backend = await initBackend(ctx.backend, ctx.settings);
  ctx.log(`backend ${backend.name} (${backend.reason})`);

  if (dataset.role !== "id" && !ctx.deps.id_scores) {
    throw new InputError(`eval ${model.name}/${dataset.key}: the in-distribution reference scores (${dataset.reference ?? "in_val"}) of model "${model.name}" are missing`, {
      hint: `give dataset "${dataset.key}" a \`reference: in_val\` entry and make sure in_val is in eval_datasets`,
    });
  }
  if (!ctx.deps.model) throw new ConfigError(`eval ${model.name}/${dataset.key}: no model dep`);
  if (!ctx.deps.features) throw new ConfigError(`eval ${model.name}/${dataset.key}: no features dep`);

  const ensemble = await loadModel(ctx.deps.model, model.format);
  const { dim, classes } = ensemble.shape;
  let subset: Int32Array | null = null;
  if (dataset.role === "subset") {
    const file = ctx.deps.classes;
    if (!file) throw new InputError(`eval ${model.name}/${dataset.key}: role subset needs the class-list file (classes_file)`);
    let json: unknown;
    try {
      json = JSON.parse(await readFile(file, "utf8"));
    } catch (err) {
      throw new InputError(`${file}: cannot read the class-list JSON: ${(err as Error).message}`, { cause: err });
    }
    subset = subsetIndices(file, json, dataset.classes_key!, classes);
  }

  const featurePath = await resolveFeatureFile(ctx.deps.features);
  const reader = await openFeatureFile(featurePath, { dim, requireComplete: true });
  let summary: EvalSummary;
  let labels: Int32Array;
  let evaluator: EnsembleEvaluator | ThreadedEvaluator | null = null;
  try {
    if (reader.rows === 0) throw new InputError(`${featurePath}: the dataset has no rows: nothing to evaluate`, { hint: "re-run cache-features for this dataset" });
    const cfg = { batchSize: ev.batch_size, quirks: ev.reference_quirks, subset, soup: true };
    const chunk = forwardRows(ev.batch_size);
    // Heads and soup split across head threads when the stage has the cores (same bits either way).
    const threads = headThreadCount(ensemble.shape, ensemble.heads.length + 1, Number.POSITIVE_INFINITY, ctx.settings);
    evaluator = threads > 1 ? await ThreadedEvaluator.start(ensemble, reader.rows, cfg, threads, chunk) : new EnsembleEvaluator(ensemble, reader.rows, cfg);
    ctx.log(threads > 1 ? `heads on ${threads} threads` : "heads on the stage's thread");
    labels = new Int32Array(reader.rows);
    let done = 0;
    // Heads run on chunks of several eval batches; statistics stay per eval batch (see EnsembleEvaluator).
    for (const b of reader.sequential(chunk)) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      await evaluator.addBatch(b.embed, b.label, b.count);
      labels.set(b.label.subarray(0, b.count), done);
      done += b.count;
      ctx.progress({ phase: "eval", done, total: reader.rows, unit: "sample" });
    }
    summary = await evaluator.summary();
  } finally {
    reader.close();
    await evaluator?.dispose();
  }

  let auroc: Record<string, MeanStd> | null = null;
  let referenceSamples: number | null = null;
  if (ctx.deps.id_scores) {
    const id = await readScoresFile(ctx.deps.id_scores, SCORE_NAMES);
    referenceSamples = id.rows;
    if (id.attrs.model !== undefined && id.attrs.model !== model.name) {
      throw new InputError(`${ctx.deps.id_scores}: reference scores belong to model "${id.attrs.model}", not "${model.name}"`);
    }
    if (id.attrs.reference_quirks !== undefined && id.attrs.reference_quirks !== String(ev.reference_quirks)) {
      throw new InputError(`${ctx.deps.id_scores}: reference scores were computed with reference_quirks=${id.attrs.reference_quirks}, this run uses ${ev.reference_quirks}`, {
        hint: "re-run the in_val eval instance of this model",
      });
    }
    auroc = {};
    for (const name of SCORE_NAMES) {
      const v = directedAuroc(name, id.scores[name], evaluator!.scores[name]);
      if (Number.isNaN(v)) notes.push(`AUROC of ${name} is undefined: NaN scores (reference_quirks entropy without epsilon?)`);
      auroc[name] = ms(v);
    }
  }

  const result: EvalResult = {
    format: RESULT_FORMAT,
    model: model.name,
    dataset: dataset.key,
    role: dataset.role,
    corruption: dataset.corruption ?? null,
    severity: dataset.severity ?? null,
    reference: dataset.reference ?? null,
    backend: { name: backend.name, reason: backend.reason },
    reference_quirks: ev.reference_quirks,
    batch_size: ev.batch_size,
    counts: { samples: summary.samples, batches: summary.batches, heads: summary.heads, classes, label_classes: summary.label_classes, reference_samples: referenceSamples },
    metrics: metricsOf(summary),
    auroc,
    notes,
  };
  for (const n of notes) ctx.log(n);
  await writeScoresFile(ctx.outs.scores, {
    scores: evaluator!.scores,
    labels: labels!,
    attrs: { model: model.name, dataset: dataset.key, reference_quirks: String(ev.reference_quirks), features: basename(featurePath) },
  });
  await writeFile(ctx.outs.result, JSON.stringify(result, null, 2) + "\n");
  ctx.log(`ensemble accuracy ${(summary.accuracy.ensemble * 100).toFixed(2)}% on ${summary.samples} samples` + (auroc ? `, PDS AUROC ${auroc.div_continous_unique_per_sample.mean?.toFixed(4)}` : ""));
}

const stage: StageModule = { run, contract };
export default stage;
