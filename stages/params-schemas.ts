// Params schemas shared by several stage contracts: the ViT architecture (download's generated-vit,
// cache-features' featurizer) and the image transforms. Light: zod only (no tfjs), so contracts can
// import it at plan time. Messages are sentences for people; see src/pipeline/issue-text.ts.
import { z } from "zod";

const posInt = z.number().int().positive();
const posNum = z.number().positive();

/** The ViT of the featurizer (same fields and rules as src/ml/vit.ts's parseVitArch). */
export const vitArchSchema = z
  .strictObject({
    image_size: posInt,
    patch_size: posInt,
    in_chans: posInt,
    embed_dim: posInt,
    depth: posInt,
    num_heads: posInt,
    mlp_ratio: posNum,
    /** LayerScale gamma init (1e-4 for DeiT-3 Base); used only when generating weights. */
    layerscale_init: posNum,
  })
  .superRefine((a, ctx) => {
    if (a.image_size % a.patch_size !== 0) {
      ctx.addIssue({ code: "custom", path: ["patch_size"], message: `image_size ${a.image_size} is not divisible by patch_size ${a.patch_size} (pick a patch size that divides the image size: 224/16, 28/7, ...)` });
    }
    if (a.embed_dim % a.num_heads !== 0) {
      ctx.addIssue({ code: "custom", path: ["num_heads"], message: `embed_dim ${a.embed_dim} is not divisible by num_heads ${a.num_heads}` });
    }
    if (!Number.isInteger(a.embed_dim * a.mlp_ratio)) {
      ctx.addIssue({ code: "custom", path: ["mlp_ratio"], message: `embed_dim * mlp_ratio = ${a.embed_dim * a.mlp_ratio} is not an integer` });
    }
  });

const rgb = z.array(z.number()).length(3);
const norm = {
  mean: rgb,
  std: rgb.refine((s) => s.every((v) => v > 0), "every std value must be > 0"),
};

const range = (what: string, ok: (lo: number, hi: number) => boolean, rule: string) =>
  z.tuple([z.number(), z.number()]).refine(([lo, hi]) => ok(lo, hi), `${what}: expected ${rule}`);

/** Resize (shorter side) -> CenterCrop -> normalise (torchvision's eval transform). */
export const evalTransformFields = { resize: posInt, crop: posInt, ...norm };
/** RandomResizedCrop + horizontal flip -> normalise. */
export const trainTransformFields = {
  size: posInt,
  scale: range("scale", (lo, hi) => lo > 0 && lo <= hi && hi <= 1, "0 < lo <= hi <= 1"),
  ratio: range("ratio", (lo, hi) => lo > 0 && lo <= hi, "0 < lo <= hi"),
  hflip: z.number().min(0).max(1),
  ...norm,
};

/** A transform carried by a dataset: `{kind: eval, ...}` or `{kind: train, ...}`. */
export const transformSpecSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("eval"), ...evalTransformFields }),
  z.strictObject({ kind: z.literal("train"), ...trainTransformFields }),
]);
export type TransformSpec = z.output<typeof transformSpecSchema>;
