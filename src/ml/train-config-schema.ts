// Schema of one `train_configs` element (the train-heads configuration, reference §2.3-2.6): field
// types, ranges, torch defaults and the cross-field rules. Light: zod only, so the train-heads stage
// contract (and with it the planner) can import it without loading tfjs.
import { z } from "zod";

const sgd = z
  .object({
    type: z.literal("sgd"),
    lr: z.number().positive(),
    momentum: z.number().min(0).max(1).default(0),
    weight_decay: z.number().min(0).default(0),
    /** The reference wraps SGD in a NaN check that skips a step whose gradients hold any NaN. */
    nan_check: z.boolean().default(false),
  })
  .strict();

const adamw = z
  .object({
    type: z.literal("adamw"),
    lr: z.number().positive(),
    // torch.optim.AdamW defaults: what the reference gets when the config gives no kwargs.
    betas: z.tuple([z.number().min(0).lt(1), z.number().min(0).lt(1)]).default([0.9, 0.999]),
    eps: z.number().positive().default(1e-8),
    weight_decay: z.number().min(0).default(0.01),
  })
  .strict();

const cosine = z
  .object({ type: z.literal("cosine"), t_max: z.number().int().positive(), eta_min: z.number().min(0).default(0) })
  .strict();

export const trainConfigSchema = z
  .object({
    name: z.string().regex(/^[A-Za-z0-9_.-]+$/, "use letters, digits, _ . - only (it names a folder)"),
    n_models: z.number().int().min(2),
    random_select: z.number().int().min(2),
    keep_inactive_on_cpu: z.boolean().default(false),
    embed_dim: z.number().int().positive(),
    mlp_hidden: z.number().int().positive(),
    num_classes: z.number().int().min(2),
    batch_size: z.number().int().positive(),
    eval_batch_size: z.number().int().positive(),
    optimizer: z.discriminatedUnion("type", [sgd, adamw]),
    lr_scheduler: cosine.nullable().default(null),
    n_epochs: z.number().int().positive(),
    freeze_first_epoch: z.boolean(),
    /** criterion.divdis.lambda; must be null when patch_diversity_lambda is given (reference §2.3). */
    lambda: z.number().min(0).max(1).nullable(),
    /** patch.diversity_lambda: replaces a null `lambda`. */
    patch_diversity_lambda: z.number().min(0).max(1).nullable().default(null),
    manual_lambda: z.number().min(0),
    use_always_labeled: z.boolean(),
    smoothing_eps: z.number().gt(0).lt(1).nullable().default(null),
    seed: z.number().int().min(0).default(42),
    /** Progress/loss host reads: every this many steps (0 = about 10 per epoch, like the reference's log). */
    log_every: z.number().int().min(0).default(0),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.random_select > c.n_models) {
      ctx.addIssue({ code: "custom", path: ["random_select"], message: `random_select ${c.random_select} is larger than n_models ${c.n_models}` });
    }
    if (c.patch_diversity_lambda !== null && c.lambda !== null) {
      ctx.addIssue({ code: "custom", path: ["lambda"], message: "must be null when patch_diversity_lambda is set (the reference asserts this before patching)" });
    }
    if (c.patch_diversity_lambda === null && c.lambda === null) {
      ctx.addIssue({ code: "custom", path: ["lambda"], message: "is null but no patch_diversity_lambda is given" });
    }
    if (c.freeze_first_epoch && c.n_epochs < 2) {
      ctx.addIssue({ code: "custom", path: ["n_epochs"], message: "must be >= 2 when freeze_first_epoch is true (epoch 0 never updates)" });
    }
  });

export type TrainConfigInput = z.input<typeof trainConfigSchema>;
export type TrainConfig = z.output<typeof trainConfigSchema>;

