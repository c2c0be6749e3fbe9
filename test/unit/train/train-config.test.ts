import { test } from "uvu";
import * as assert from "uvu/assert";
import { parseTrainConfig, effectiveLoss, epochSeed } from "../../../src/ml/train-config.ts";
import { ConfigError } from "../../../src/errors.ts";

const base = {
  name: "ood_det_cov", n_models: 5, random_select: 2, embed_dim: 768, mlp_hidden: 3072, num_classes: 1000,
  batch_size: 32, eval_batch_size: 32, optimizer: { type: "adamw", lr: 0.001, weight_decay: 0.1 },
  lr_scheduler: { type: "cosine", t_max: 15 }, n_epochs: 11, freeze_first_epoch: true, lambda: null,
  patch_diversity_lambda: 0.5, manual_lambda: 5, use_always_labeled: true, smoothing_eps: 0.5, seed: 42,
};

function err(raw: unknown): string {
  try {
    parseTrainConfig(raw, "params/demo.yaml train_configs[1]");
  } catch (e) {
    assert.instance(e, ConfigError);
    return (e as Error).message;
  }
  assert.unreachable("expected a ConfigError");
  return "";
}

test("valid config: defaults (AdamW torch defaults) and effective loss values", () => {
  const c = parseTrainConfig(base);
  assert.equal(c.optimizer, { type: "adamw", lr: 0.001, weight_decay: 0.1, betas: [0.9, 0.999], eps: 1e-8 });
  assert.equal(effectiveLoss(c), { lambda: 0.5, mu: 5, computeRepulsion: true, smoothingEps: 0.5 });
  const sem = parseTrainConfig({ ...base, optimizer: { type: "adamw", lr: 0.0001 } });
  assert.is(sem.optimizer.type === "adamw" && sem.optimizer.weight_decay, 0.01);
  assert.equal([0, 1, 2, 10].map((e) => epochSeed(c, e)), [42, 42, 43, 51]);
});

test("unknown optimizer is named", () => {
  const m = err({ ...base, optimizer: { type: "rmsprop", lr: 0.1 } });
  assert.match(m, "train_configs[1]");
  assert.match(m, '"ood_det_cov"');
  assert.match(m, /optimizer.*unknown optimizer: use type "sgd" or "adamw"/);
});

test("random_select > n_models", () => {
  assert.match(err({ ...base, random_select: 6 }), "random_select: random_select 6 is larger than n_models 5");
});

test("lambda patching rules", () => {
  assert.match(err({ ...base, lambda: 0.5 }), "lambda: must be null when patch_diversity_lambda is set");
  assert.match(err({ ...base, patch_diversity_lambda: null }), "lambda: is null but no patch_diversity_lambda is given");
});

test("unknown keys, wrong types, nan_check only with sgd", () => {
  assert.match(err({ ...base, n_modles: 5 }), 'unknown key(s) "n_modles"');
  assert.match(err({ ...base, batch_size: "32" }), "batch_size:");
  assert.match(err({ ...base, optimizer: { type: "adamw", lr: 0.001, nan_check: true } }), 'unknown key(s) "nan_check"');
});

test.run();
