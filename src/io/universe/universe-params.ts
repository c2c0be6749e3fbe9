// Schema of the `mnist-universe` source fields (the demo's data universe). Light: zod and the
// corruption table (pure functions) only, so the download stage contract can import it at plan time.
import { z } from "zod";
import { CORRUPTIONS } from "./corruptions.ts";

const digits = () =>
  z
    .array(z.number(), { error: "must be a non-empty list of digits 0..9" })
    .min(1, "must be a non-empty list of digits 0..9")
    .superRefine((arr, ctx) => {
      for (const d of arr) if (!Number.isInteger(d) || d < 0 || d > 9) ctx.addIssue({ code: "custom", message: `${JSON.stringify(d)} is not a digit 0..9` });
      if (new Set(arr).size !== arr.length) ctx.addIssue({ code: "custom", message: "lists a digit twice" });
    });

const nullableInt = (min: number, what: string) =>
  z
    .number()
    .int(`must be ${what} or null`)
    .min(min, `must be ${what} or null`)
    .nullable()
    .default(null);

/** The fields of a `kind: mnist-universe` source that shape the universe (name/kind/out excluded). */
export const universeFields = {
  seed: z.number().int().default(0),
  id_classes: digits(),
  val_fraction: z.number({ error: "must be a number between 0 and 1 (exclusive)" }).gt(0, "must be a number between 0 and 1 (exclusive)").lt(1, "must be a number between 0 and 1 (exclusive)"),
  subset_classes: digits(),
  semantic_sets: z.record(z.string(), digits()).superRefine((sets, ctx) => {
    for (const name of Object.keys(sets)) {
      if (!/^[A-Za-z0-9_-]+$/.test(name)) ctx.addIssue({ code: "custom", path: [name], message: `bad set name ${JSON.stringify(name)} (letters, digits, _ and - only)` });
    }
  }),
  corruptions: z
    .array(z.string())
    .default([])
    .superRefine((list, ctx) => {
      for (const c of list) if (!CORRUPTIONS.has(c)) ctx.addIssue({ code: "custom", message: `unknown corruption ${JSON.stringify(c)} (known: ${[...CORRUPTIONS.keys()].join(", ")})` });
    }),
  severities: z
    .array(z.number())
    .default([])
    .superRefine((list, ctx) => {
      for (const s of list) if (!Number.isInteger(s) || s < 1 || s > 5) ctx.addIssue({ code: "custom", message: `severity ${JSON.stringify(s)} is not 1..5` });
    }),
  /** Use only the first N samples of each digit (quick runs, tests); null = all. */
  max_per_class: nullableInt(2, "an integer >= 2"),
  /** Val images per class in each corrupted set; null = all. */
  corrupt_per_class: nullableInt(1, "an integer >= 1"),
};

type Fields = { [K in keyof typeof universeFields]: z.output<(typeof universeFields)[K]> };

/** Cross-field rules: subset classes are in-distribution classes, semantic sets are not. */
export function checkUniverse(u: Pick<Fields, "id_classes" | "subset_classes" | "semantic_sets">, ctx: z.RefinementCtx): void {
  for (const d of u.subset_classes) {
    if (!u.id_classes.includes(d)) ctx.addIssue({ code: "custom", path: ["subset_classes"], message: `digit ${d} is not in id_classes` });
  }
  for (const [name, ds] of Object.entries(u.semantic_sets)) {
    for (const d of ds) if (u.id_classes.includes(d)) ctx.addIssue({ code: "custom", path: ["semantic_sets", name], message: `digit ${d} is an in-distribution class` });
  }
}

/** The universe fields alone (what buildMnistUniverse takes), e.g. for tests and tools. */
export const universeParamsSchema = z.object(universeFields).superRefine(checkUniverse);
