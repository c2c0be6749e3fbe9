// Contract of the eval stage: params = {model: an eval_models element, dataset: an eval_datasets
// element, eval: the eval section}. The model and dataset schemas are shared with the tables stage,
// which reads the same sections. Light: zod only.
import { z } from "zod";
import { defineContract } from "../src/stage-api.ts";

export const ROLES = ["id", "subset", "covariate", "semantic"] as const;

const name = z.string().min(1);

/** One `eval_models` element: a trained ensemble (sed-pipe folder/file) or a reference pickle. */
export const evalModelSchema = z.strictObject({
  name,
  path: name,
  format: z.enum(["sed-pipe", "reference-pkl"]),
});

/** One `eval_datasets` element. */
export const evalDatasetSchema = z
  .strictObject({
    key: name,
    features: name,
    role: z.enum(ROLES, { error: `must be one of ${ROLES.join(", ")}` }),
    classes_file: name.optional(),
    classes_key: name.optional(),
    corruption: name.optional(),
    severity: z.number().int().min(1).optional(),
    /** Key of the in-distribution set whose scores the AUROCs compare against (in_val). */
    reference: name.optional(),
  })
  .superRefine((d, ctx) => {
    if (d.role === "subset" && !d.classes_key) {
      ctx.addIssue({ code: "custom", path: ["classes_key"], message: `dataset "${d.key}": role subset needs classes_file and classes_key` });
    }
  });

export const evalSettingsSchema = z.strictObject({
  /** Statistics are means of batch means: the batch size is part of their definition. */
  batch_size: z.number().int().positive(),
  reference_quirks: z.boolean(),
});

export const contract = defineContract({
  name: "eval",
  version: 1,
  description: "evaluates one ensemble on one dataset's cached features",
  params: z.strictObject({ model: evalModelSchema, dataset: evalDatasetSchema, eval: evalSettingsSchema }),
  // Work: feature rows times heads (each head runs on every row). Outputs: a small JSON and the
  // per-sample scores (float64 each, a dozen names at most): ~100 B a row.
  estimate: ({ model, dataset }, deps, facts) => {
    const rows = facts(dataset.features)?.items ?? null;
    const heads = facts(model.path)?.items ?? null;
    return {
      unit: "head-rows",
      work: rows === null || heads === null ? null : rows * heads,
      outBytes: rows === null ? null : rows * 100,
      ...(heads === null ? { note: `head count of ${model.path} not known (declare items: in inputs)` } : {}),
    };
  },
});
export default contract;
