// The train-heads configuration (one element of `train_configs`): the spec's effective values
// (reference §2.3-2.6) and a parse with a one-message error for src/ml callers. The schema itself lives
// in train-config-schema.ts (light: the train-heads stage contract imports it at plan time). Pure: no
// tfjs, no I/O.
import { ConfigError } from "../errors.ts";
import type { HeadShape } from "./heads.ts";
import { trainConfigSchema, type TrainConfig } from "./train-config-schema.ts";

export { trainConfigSchema, type TrainConfig, type TrainConfigInput } from "./train-config-schema.ts";

/** The values the loss actually uses (reference §2.3 table "Effective loss per run"). */
export interface EffectiveLoss {
  lambda: number;
  mu: number;
  /** false: never computed, logged 0 (use_always_labeled false and no unlabeled data: always so here). */
  computeRepulsion: boolean;
  smoothingEps: number | null;
}

export function effectiveLoss(c: TrainConfig): EffectiveLoss {
  return {
    lambda: (c.patch_diversity_lambda ?? c.lambda) as number,
    mu: c.manual_lambda,
    // No unlabeled / OOD loader exists in any configuration (reference §2.1), so the repulsion term
    // is computed exactly when it is applied to the labelled batch.
    computeRepulsion: c.use_always_labeled,
    smoothingEps: c.smoothing_eps,
  };
}

export function headShapeOf(c: TrainConfig): HeadShape {
  return { dim: c.embed_dim, hidden: c.mlp_hidden, classes: c.num_classes, eps: 1e-6 };
}

/** Validates one train_configs element; `where` names the source for the error message. */
export function parseTrainConfig(raw: unknown, where = "train_configs item"): TrainConfig {
  const r = trainConfigSchema.safeParse(raw);
  if (r.success) return r.data;
  const name = typeof (raw as { name?: unknown })?.name === "string" ? ` "${(raw as { name: string }).name}"` : "";
  const lines = r.error.issues.map((i) => {
    const path = i.path.length ? i.path.join(".") : "(config)";
    let msg = i.message;
    if (i.code === "invalid_union" || (i.code === "invalid_value" && path.startsWith("optimizer"))) {
      msg = `unknown optimizer: use type "sgd" or "adamw" (${msg})`;
    }
    if (i.code === "unrecognized_keys") msg = `unknown key(s) ${(i as { keys: string[] }).keys.map((k) => `"${k}"`).join(", ")}`;
    return `${path}: ${msg}`;
  });
  throw new ConfigError(`${where}${name} is invalid:\n  ${lines.join("\n  ")}`, {
    hint: "fix the train_configs section of the profile's params file (see params/paper.yaml for the reference values)",
  });
}

/** Seed of epoch e (reference §2.5): 42 + e, minus 1 for e > 0 when the first epoch is frozen. */
export function epochSeed(c: TrainConfig, epoch: number): number {
  return c.seed + epoch - (c.freeze_first_epoch && epoch > 0 ? 1 : 0);
}
