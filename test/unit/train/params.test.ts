import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { parseTrainConfig, effectiveLoss } from "../../../src/ml/train-config.ts";

const load = (f: string) => parse(readFileSync(new URL(`../../../params/${f}`, import.meta.url), "utf8")) as { train_configs: unknown[] };

test("paper profile: the four reference configurations with the spec's effective loss values (§2.3, §2.6)", () => {
  const cfgs = load("paper.yaml").train_configs.map((c, i) => parseTrainConfig(c, `params/paper.yaml train_configs[${i}]`));
  const by = Object.fromEntries(cfgs.map((c) => [c.name, c]));
  assert.equal(Object.keys(by).sort(), ["50_models", "ood_det_cov", "ood_det_sem", "ood_gen"]);
  assert.equal(effectiveLoss(by["50_models"]), { lambda: 0.5, mu: 0.0002, computeRepulsion: false, smoothingEps: null });
  assert.equal(effectiveLoss(by.ood_gen), { lambda: 0.5, mu: 0, computeRepulsion: true, smoothingEps: 0.5 });
  assert.equal(effectiveLoss(by.ood_det_cov), { lambda: 0.5, mu: 5, computeRepulsion: true, smoothingEps: 0.5 });
  assert.equal(effectiveLoss(by.ood_det_sem), { lambda: 0.5, mu: 0.5, computeRepulsion: true, smoothingEps: null });
  assert.is(by["50_models"].n_models, 50);
  assert.equal(by.ood_det_sem.optimizer, { type: "adamw", lr: 0.0001, betas: [0.9, 0.999], eps: 1e-8, weight_decay: 0.01 });
  assert.equal(by["50_models"].optimizer, { type: "sgd", lr: 0.001, momentum: 0.9, weight_decay: 0.0001, nan_check: true });
  for (const c of cfgs) {
    assert.equal([c.embed_dim, c.mlp_hidden, c.num_classes, c.n_epochs, c.random_select, c.seed], [768, 3072, 1000, 11, 2, 42]);
    assert.is(c.lr_scheduler === null, c.name === "50_models");
  }
  assert.equal(cfgs.map((c) => c.batch_size), [16, 32, 32, 256]);
});

test("demo profile: four valid scaled-down configurations with the same names", () => {
  const cfgs = load("demo.yaml").train_configs.map((c, i) => parseTrainConfig(c, `params/demo.yaml train_configs[${i}]`));
  assert.equal(cfgs.map((c) => c.name), ["50_models", "ood_gen", "ood_det_cov", "ood_det_sem"]);
  for (const c of cfgs) assert.equal([c.embed_dim, c.num_classes], [192, 8]);
});

test.run();
