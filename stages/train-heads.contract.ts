// Contract of the train-heads stage: params = {config: one `train_configs` element}. Light (zod and
// the schema module only): the planner loads it to check params before anything runs.
import { z } from "zod";
import { defineContract } from "../src/stage-api.ts";
import { trainConfigSchema } from "../src/ml/train-config-schema.ts";

export const contract = defineContract({
  name: "train-heads",
  version: 1,
  description: "trains one SED ensemble of heads on cached features",
  params: z.strictObject({ config: trainConfigSchema }),
  // Work: training samples over all epochs (each epoch reads one pass of the train features, reference
  // 2.1). Output: the ensemble's float32 head parameters (src/ml/heads.ts HEAD_PARAM_NAMES).
  estimate: ({ config: c }, deps, facts) => {
    const d = c.embed_dim;
    const h = c.mlp_hidden;
    const perHead = 2 * h * d + h + c.num_classes * d + c.num_classes + 6 * d;
    const rows = deps.train === undefined ? null : (facts(deps.train)?.items ?? null);
    return {
      unit: "samples",
      work: rows === null ? null : rows * c.n_epochs,
      outBytes: 4 * perHead * c.n_models,
      outs: { model: { items: c.n_models, bytes: 4 * perHead * c.n_models } },
      note: `${c.n_epochs} epochs, ${c.n_models} heads, batch ${c.batch_size}`,
    };
  },
});
export default contract;
