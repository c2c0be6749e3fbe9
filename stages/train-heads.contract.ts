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
});
export default contract;
