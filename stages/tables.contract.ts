// Contract of the tables stage: params = {models: eval_models, datasets: eval_datasets, tables}. It
// checks only the fields tables reads (and lets the rest through): the eval contract checks the same
// sections in full. Light: zod only.
import { z } from "zod";
import { defineContract } from "../src/stage-api.ts";
import { ROLES } from "./eval.contract.ts";

export const contract = defineContract({
  name: "tables",
  version: 1,
  description: "writes the result tables (CSV, Markdown, SVG) from every eval result",
  params: z.strictObject({
    models: z.array(z.looseObject({ name: z.string().min(1) })).min(1),
    datasets: z
      .array(
        z.looseObject({
          key: z.string().min(1),
          role: z.enum(ROLES, { error: `must be one of ${ROLES.join(", ")}` }),
          corruption: z.string().optional(),
          severity: z.number().int().optional(),
        }),
      )
      .min(1),
    tables: z.strictObject({ published: z.boolean() }),
  }),
  // Reads the eval JSONs and writes a few KB of CSV / Markdown: nothing worth timing or counting.
  estimate: () => ({ unit: "tables", work: 0, outBytes: 0 }),
});
export default contract;
