// Contract of the download stage: params = {source: one `sources` element}, by kind: `url`,
// `mnist-universe` (the demo's data) or `generated-vit` (the demo's featurizer checkpoint). Light:
// zod and the schema modules only.
import { z } from "zod";
import { defineContract } from "../src/stage-api.ts";
import { checkUniverse, universeFields } from "../src/io/universe/universe-params.ts";
import { vitArchSchema } from "./params-schemas.ts";

export const SOURCE_KINDS = ["url", "mnist-universe", "generated-vit"] as const;

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

const generatedVitSource = z.strictObject({ ...common, kind: z.literal("generated-vit"), seed: z.number().int().default(0), arch: vitArchSchema });

export const sourceSchema = z.discriminatedUnion("kind", [urlSource, universeSource, generatedVitSource]);
export type Source = z.output<typeof sourceSchema>;

export const contract = defineContract({
  name: "download",
  version: 1,
  description: "materialises one entry of `sources` (a URL, the demo's MNIST universe or a seeded ViT checkpoint)",
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
