// train-heads stage: one instance per train_configs element. Opens the cached train/val features,
// trains the SED ensemble (src/ml/trainer.ts) with per-epoch checkpoints in ctx.scratch, and writes
// the model folder. Its params are checked by its contract (train-heads.contract.ts) before it runs.
// Owns file plumbing only.
import { mkdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseParams, type StageContext } from "../src/stage-api.ts";
import { ConfigError } from "../src/errors.ts";
import { initBackend } from "../src/ml/backend.ts";
import { saveEnsemble } from "../src/ml/heads.ts";
import { effectiveLoss, headShapeOf } from "../src/ml/train-config.ts";
import { trainEnsemble } from "../src/ml/trainer.ts";
import { trainingCsv } from "../src/ml/epoch-log.ts";
import { checkLabels, featureEvalSource, featureTrainSource } from "../src/ml/train-sources.ts";
import { openFeatureFile } from "../src/io/feature-reader.ts";
import { contract } from "./train-heads.contract.ts";

export { contract };

export const MODEL_FILES = { ensemble: "ensemble.safetensors", csv: "training.csv", config: "config.json" } as const;

async function identity(file: string): Promise<string> {
  const s = await stat(file);
  return `${file}:${s.size}:${s.mtimeMs}`;
}

export async function run(ctx: StageContext): Promise<void> {
  for (const k of ["train", "val"]) {
    if (!ctx.deps[k]) throw new ConfigError(`train-heads: dep "${k}" is missing`, { hint: "pipeline.yaml must declare deps train: ${train_features} and val: ${val_features}" });
  }
  if (!ctx.outs.model) throw new ConfigError("train-heads: out \"model\" is missing", { hint: "pipeline.yaml must declare outs: model: artifacts/models/${item.name}" });
  const { config: cfg } = parseParams(contract, ctx.params);
  const backend = await initBackend(ctx.backend, ctx.settings);
  ctx.log(`backend: ${backend.name} (${backend.reason})`);

  const trainReader = await openFeatureFile(ctx.deps.train, { dim: cfg.embed_dim, requireComplete: true });
  const valReader = await openFeatureFile(ctx.deps.val, { dim: cfg.embed_dim, requireComplete: true });
  try {
    checkLabels(trainReader.labels(), cfg.num_classes, ctx.deps.train);
    checkLabels(valReader.labels(), cfg.num_classes, ctx.deps.val);
    const loss = effectiveLoss(cfg);
    ctx.log(
      `${cfg.name}: ${cfg.n_models} heads (${cfg.random_select} active per step), ${cfg.optimizer.type} lr ${cfg.optimizer.lr}, ` +
        `loss (1-${loss.lambda})*task + ${loss.mu}*${loss.lambda}*repulsion${loss.computeRepulsion ? "" : " (repulsion never computed)"}, ` +
        `${trainReader.passRows} rows x ${trainReader.passes} passes, batch ${cfg.batch_size}, ${cfg.n_epochs} epochs` +
        (cfg.freeze_first_epoch ? " (first frozen)" : ""),
    );
    const result = await trainEnsemble(cfg, featureTrainSource(trainReader), featureEvalSource(valReader), {
      signal: ctx.signal,
      log: (l) => ctx.log(l),
      progress: (e) => ctx.progress(e),
      checkpointDir: ctx.scratch,
      settings: ctx.settings,
      dataIdentity: `${await identity(ctx.deps.train)}|${await identity(ctx.deps.val)}`,
    });
    const out = ctx.outs.model;
    await mkdir(out, { recursive: true });
    const configJson = {
      config: cfg,
      effective_loss: loss,
      head_shape: headShapeOf(cfg),
      backend,
      train_features: ctx.deps.train,
      val_features: ctx.deps.val,
      resumed_after_epoch: result.resumedEpochs,
      skipped_nan_steps: result.skippedSteps,
      rng_streams: "per epoch e: seed_e = seed + e - (freeze_first_epoch && e > 0); streams from seed_e: 1 = pair selection, 2 = A2D reference head, 3 = shuffling, 4 = reference head of the val loss; init: Rng(seed), heads in index order",
    };
    await saveEnsemble(join(out, MODEL_FILES.ensemble), {
      shape: headShapeOf(cfg),
      heads: result.heads,
      meta: { config: JSON.stringify(cfg), backend: backend.name },
    });
    await writeFile(join(out, MODEL_FILES.csv), trainingCsv(result.rows));
    await writeFile(join(out, MODEL_FILES.config), JSON.stringify(configJson, null, 2) + "\n");
    const last = result.rows[result.rows.length - 1];
    ctx.log(`${cfg.name}: done; val acc mean ${last.val_acc_mean.toFixed(4)}, ensemble ${last.val_ensemble_acc.toFixed(4)}`);
  } finally {
    trainReader.close();
    valReader.close();
  }
}

