// Contract of the download stage: params = {source: one `sources` element}, by kind: `url`,
// `mnist-universe` (the demo's data), `generated-vit` (a seeded featurizer checkpoint), or the
// paper-smoke profile's seeded stand-ins at the paper's shapes (src/io/stand-ins.ts):
// `generated-images`, `generated-features`, `generated-class-list`. Light: zod and the schema modules only.
import { z } from "zod";
import { defineContract } from "../src/stage-api.ts";
import { checkUniverse, universeFields } from "../src/io/universe/universe-params.ts";
import { vitArchSchema } from "./params-schemas.ts";

export const SOURCE_KINDS = ["url", "mnist-universe", "generated-vit", "generated-images", "generated-features", "generated-class-list"] as const;

const common = {
  name: z.string().min(1),
  /** The stage's `data` out (pipeline.yaml interpolates it); the stage itself reads ctx.outs. */
  out: z.string().min(1),
};

function isUrl(s: string): boolean {
  try {
    new URL(s);
    return true;
  } catch {
    return false;
  }
}

const urlSource = z.strictObject({
  ...common,
  kind: z.literal("url"),
  url: z.string().min(1).refine(isUrl, "must be a URL (https://..., http://... or file:///...)"),
  /** Pinned digest of the downloaded file; absent: logged after the download. */
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, "must be 64 hex digits (a sha256)").nullish(),
  /** Expected size of the downloaded file (as published, may be approximate): for the plan's needs only. */
  bytes: z.number().int().positive().nullish(),
  extract: z.literal("tar.gz", { error: 'must be "tar.gz" or absent' }).nullish(),
  /** Leading path components dropped when extracting. */
  strip: z.number().int().min(0).default(0),
  file_name: z.string().min(1).optional(),
});

const universeSource = z.strictObject({ ...common, kind: z.literal("mnist-universe"), ...universeFields }).superRefine(checkUniverse);

const generatedVitSource = z.strictObject({
  ...common,
  kind: z.literal("generated-vit"),
  seed: z.number().int().default(0),
  arch: vitArchSchema,
  /** safetensors, or pth: a torch.save zip laid out like DeiT-3's release (the paper's format). */
  format: z.enum(["safetensors", "pth"], { error: 'must be "safetensors" or "pth"' }).default("safetensors"),
});

const posInt = z.number().int().positive();
const seed = z.number().int().min(0).default(0);

/** An ImageNet-like ImageFolder of JPEGs (the paper's train images, few of them). */
const generatedImagesSource = z.strictObject({
  ...common,
  kind: z.literal("generated-images"),
  seed,
  classes: posInt,
  per_class: posInt,
  /** [width, height] pairs, used in turn (ImageNet's are mostly 500x375 / 375x500 / 500x333). */
  sizes: z.array(z.tuple([posInt, posInt])).min(1).default([[500, 375]]),
  quality: z.number().int().min(1).max(100).default(90),
});

/** The authors' cached-features tarball as it unpacks, at the real width, few rows per set. */
const generatedFeaturesSource = z
  .strictObject({
    ...common,
    kind: z.literal("generated-features"),
    seed,
    dim: posInt,
    reference_model_path: z.string().min(1),
    files: z
      .array(z.strictObject({ path: z.string().min(1), rows: posInt, classes: posInt }))
      .min(1),
  })
  .superRefine((s, ctx) => {
    const seen = new Set<string>();
    s.files.forEach((f, i) => {
      if (f.path.startsWith("/") || f.path.split("/").includes("..")) {
        ctx.addIssue({ code: "custom", path: ["files", i, "path"], message: `${f.path}: must be a relative path inside the output folder` });
      }
      if (seen.has(f.path)) ctx.addIssue({ code: "custom", path: ["files", i, "path"], message: `${f.path} is listed twice` });
      seen.add(f.path);
    });
  });

/** A DU wnid list: `all_wnids` and a sorted subset under `key`. */
const generatedClassListSource = z
  .strictObject({ ...common, kind: z.literal("generated-class-list"), seed, classes: posInt, subset: posInt, key: z.string().min(1) })
  .refine((s) => s.subset <= s.classes, { path: ["subset"], message: "subset must not be larger than classes" });

export const sourceSchema = z.discriminatedUnion("kind", [
  urlSource,
  universeSource,
  generatedVitSource,
  generatedImagesSource,
  generatedFeaturesSource,
  generatedClassListSource,
]);
export type Source = z.output<typeof sourceSchema>;

export const contract = defineContract({
  name: "download",
  version: 1,
  description: "materialises one entry of `sources` (a URL, the demo's MNIST universe, a seeded ViT checkpoint or a seeded stand-in)",
  params: z.strictObject({ source: sourceSchema }),
  estimate: ({ source }) => {
    if (source.kind !== "url") return { unit: "B", work: null, outBytes: null, note: "built on this machine, no download" };
    const bytes = source.bytes ?? null;
    return {
      unit: "B",
      work: bytes,
      outBytes: bytes,
      fetch: { from: source.url, pinned: typeof source.sha256 === "string" },
      ...(bytes !== null ? { outs: { data: { bytes } } } : {}),
      ...(source.extract && bytes !== null ? { note: "unpacked size taken as the archive's (images and float features compress little)" } : {}),
    };
  },
});
export default contract;
