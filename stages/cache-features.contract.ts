// Contract of the cache-features stage: params = {dataset: a `datasets` element, featurizer: the
// featurizer section}, with the rules that tie them together (a transform must produce images of
// the ViT's size). Light: zod and the shared schemas only.
import { z } from "zod";
import { defineContract } from "../src/stage-api.ts";
import { evalTransformFields, trainTransformFields, transformSpecSchema, vitArchSchema } from "./params-schemas.ts";

const str = z.string().min(1);
const posInt = z.number().int().positive();

export const datasetSchema = z
  .strictObject({
    key: str,
    /** Image folder to featurize; absent when `prebuilt` supplies the features. */
    images: str.nullish(),
    /** A reference-written feature file (or a folder holding exactly one), e.g. from the authors' tarball. */
    prebuilt: str.nullish(),
    layout: z.enum(["imagefolder", "single-folder"]),
    /** The featurizer's transform of that kind, or the dataset's own (`{kind: eval|train, ...}`). */
    transform: z.union([z.enum(["eval", "train"]), transformSpecSchema], { error: "must be eval, train or a mapping with kind: eval|train" }),
    passes: posInt.default(1),
    naming: z.literal("reference-hash", { error: "must be reference-hash or absent" }).nullish(),
    features: str,
    /** Read by pipeline.yaml (an optional dep of the stage), not by the stage. */
    classes_file: str.optional(),
  })
  .superRefine((d, ctx) => {
    const kind = typeof d.transform === "string" ? d.transform : d.transform.kind;
    if (kind === "eval" && d.passes !== 1) {
      ctx.addIssue({ code: "custom", path: ["passes"], message: `${d.passes} passes of the deterministic eval transform would repeat identical rows (use passes only with transform: train)` });
    }
    if (!d.images && !d.prebuilt) {
      ctx.addIssue({ code: "custom", path: [], message: `datasets[${d.key}]: needs images (a folder to featurize) or prebuilt (a reference feature file)` });
    }
  });

export const featurizerSchema = z
  .strictObject({
    checkpoint: str,
    model_name: z.string().default("deit3_21k"),
    /** The reference hashes the ABSOLUTE checkpoint path into ImageNet-C file names; null = ours. */
    reference_model_path: z.string().nullable().default(null),
    arch: vitArchSchema.refine((a) => a.in_chans === 3, { path: ["in_chans"], message: "images are decoded to RGB, so in_chans must be 3" }),
    eval_transform: z.strictObject(evalTransformFields).optional(),
    train_transform: z.strictObject(trainTransformFields).optional(),
    batch_size: posInt,
    seed: z.number().int().default(42),
    on_bad_image: z.enum(["fail", "skip"]).default("fail"),
  })
  .superRefine((f, ctx) => {
    const size = f.arch.image_size;
    if (f.eval_transform && f.eval_transform.crop !== size) {
      ctx.addIssue({ code: "custom", path: ["eval_transform", "crop"], message: `is ${f.eval_transform.crop} but featurizer.arch.image_size is ${size}` });
    }
    if (f.train_transform && f.train_transform.size !== size) {
      ctx.addIssue({ code: "custom", path: ["train_transform", "size"], message: `is ${f.train_transform.size} but featurizer.arch.image_size is ${size}` });
    }
  });

export const contract = defineContract({
  name: "cache-features",
  version: 1,
  description: "featurizes one dataset's images with the frozen ViT into an HDF5 feature file",
  params: z.strictObject({ dataset: datasetSchema, featurizer: featurizerSchema }).superRefine(({ dataset: d, featurizer: f }, ctx) => {
    // Only a dataset featurized from images uses a transform (prebuilt features are linked in).
    if (d.prebuilt) return;
    if (typeof d.transform === "string") {
      if (!f[`${d.transform}_transform`]) {
        ctx.addIssue({
          code: "custom",
          path: ["dataset", "transform"],
          message: `transform is "${d.transform}" but featurizer.${d.transform}_transform is not set (give the dataset its own transform ({kind: ${d.transform}, ...}) or set featurizer.${d.transform}_transform)`,
        });
      }
      return;
    }
    const [field, value] = d.transform.kind === "eval" ? ["crop", d.transform.crop] : ["size", d.transform.size];
    if (value !== f.arch.image_size) {
      ctx.addIssue({
        code: "custom",
        path: ["dataset", "transform", field],
        message: `is ${value} but featurizer.arch.image_size is ${f.arch.image_size} (the transform must produce images of the size the ViT was built for)`,
      });
    }
  }),
  // Feature file: per row `embed` (embed_dim float32) + `label` + `index` (float32 each), reference section 4.
  estimate: ({ dataset: d, featurizer: f }, deps, facts) => {
    const rowBytes = 4 * (f.arch.embed_dim + 2);
    if (d.images) {
      const images = facts(d.images)?.items ?? null;
      const rows = images === null ? null : images * d.passes;
      return {
        unit: "images",
        work: rows,
        outBytes: rows === null ? null : rows * rowBytes,
        ...(images !== null ? { outs: { features: { items: images, bytes: rows! * rowBytes } } } : {}),
        ...(images === null ? { note: `image count of ${d.images} not declared (inputs: in the params file)` } : d.passes > 1 ? { note: `${d.passes} passes` } : {}),
      };
    }
    const rows = facts(d.prebuilt!)?.items ?? null;
    return {
      unit: "images",
      work: 0,
      outBytes: rows === null ? null : rows * rowBytes,
      ...(rows !== null ? { outs: { features: { items: rows, bytes: rows * rowBytes } } } : {}),
      note: "prebuilt: validated and linked, nothing featurized",
    };
  },
});
export default contract;
