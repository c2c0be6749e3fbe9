// Params checked against stage contracts at load time: positions in the params files (through ${...}
// and YAML aliases), one error per bad value however many instances share it, every distinct error.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { copyFile, cp, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadPipeline } from "../../../src/pipeline/load.ts";
import { MAX_PARAM_ERRORS } from "../../../src/pipeline/check-params.ts";
import { ConfigError } from "../../../src/errors.ts";
import { REPO, rejection, tempProject } from "./temp-project.ts";

const HEAD = `version: 1
default_profile: demo
profiles:
  demo:
    params: params/demo.yaml
stages:
`;

// A train stage fanned out over `configs`, an eval matrix sharing one `eval:` section.
const STAGES = `  train:
    module: stages/train.ts
    foreach: \${configs}
    params:
      config: \${item}
    outs:
      model: artifacts/models/\${item.name}
  eval:
    module: stages/eval.ts
    matrix:
      model: \${configs}
      data: [a, b, c]
    params:
      eval: \${eval}
      transform: \${item.model.transform}
      note: "model \${item.model.name}"
    outs:
      result: artifacts/eval/\${item.model.name}/\${item.data}.json
`;

const PARAMS = `transforms:
  small: &small {size: 8, crop: 8}
configs:
  - {name: one, n_models: 5, optimizer: {type: sgd, lr: 0.1}, transform: *small}
  - {name: two, n_models: 5, optimizer: {type: adamw, lr: 0.01}, transform: *small}
eval:
  batch_size: 32
  quirks: false
`;

const CONTRACTS = {
  "stages/train.contract.ts": `import { z } from "zod";
export const contract = {
  name: "train",
  version: 1,
  params: z.strictObject({
    config: z.strictObject({
      name: z.string(),
      n_models: z.number().int().min(2),
      optimizer: z.discriminatedUnion("type", [
        z.strictObject({ type: z.literal("sgd"), lr: z.number().positive() }),
        z.strictObject({ type: z.literal("adamw"), lr: z.number().positive() }),
      ]),
      transform: z.strictObject({ size: z.number().int().positive(), crop: z.number().int().positive() }),
    }),
  }),
};
`,
  // A default export works too.
  "stages/eval.contract.ts": `import { z } from "zod";
export default {
  name: "eval",
  version: 3,
  params: z.strictObject({
    eval: z.strictObject({ batch_size: z.number().int().positive(), quirks: z.boolean() }),
    transform: z.strictObject({ size: z.number().int().positive(), crop: z.number().int().positive() }),
    note: z.string().max(12),
  }),
};
`,
};

async function project(params: string, stages = STAGES, extra: Record<string, string> = {}) {
  return tempProject({ "pipeline.yaml": HEAD + stages, "params/demo.yaml": params, ...CONTRACTS, ...extra }, ["stages/train.ts", "stages/eval.ts"], { nodeModules: true });
}

async function loadError(params: string, stages = STAGES, extra: Record<string, string> = {}): Promise<ConfigError> {
  const p = await project(params, stages, extra);
  try {
    const err = await rejection(loadPipeline(p.root));
    assert.instance(err, ConfigError, `expected a ConfigError, got ${err.stack}`);
    assert.is((err as ConfigError).exitCode, 2);
    return err as ConfigError;
  } finally {
    await p.cleanup();
  }
}

test("valid params pass; every instance of a stage with a contract gets its version", async () => {
  const p = await project(PARAMS);
  try {
    const pl = await loadPipeline(p.root);
    assert.is(pl.instances.size, 8);
    assert.is(pl.instances.get("train@one")!.version, 1);
    assert.is(pl.instances.get("eval@two/c")!.version, 3);
    // contracts: false skips them.
    assert.is((await loadPipeline(p.root, { contracts: false })).instances.get("train@one")!.version, undefined);
  } finally {
    await p.cleanup();
  }
});

test("a bad value in the params file: its file:line:col, the line, a caret under it, the instance", async () => {
  const e = await loadError(PARAMS.replace("lr: 0.1}", "lr: -1}"));
  assert.is(
    e.message,
    "params/demo.yaml:4:57: config.optimizer.lr must be > 0, got number -1 (train@one)\n" +
      " 4 |   - {name: one, n_models: 5, optimizer: {type: sgd, lr: -1}, transform: *small}\n" +
      "   |                                                         ^^",
  );
  assert.is(e.hint, "fix the values in the params file (or pipeline.yaml); they are checked against the stage contract stages/train.contract.ts (version 1)");
});

test("n_models: 1, a wrong type, an unknown key, a wrong discriminator: each at its place", async () => {
  const bad = PARAMS.replace("{name: one, n_models: 5,", "{name: one, n_models: 1,")
    .replace("{name: two, n_models: 5,", "{name: two, n_models: five, extra: 1,")
    .replace("type: adamw", "type: lion");
  const e = await loadError(bad);
  const heads = e.message.split("\n").filter((l) => /^params\//.test(l));
  assert.equal(heads, [
    "params/demo.yaml:4:27: config.n_models must be >= 2, got number 1 (train@one)",
    'params/demo.yaml:5:27: config.n_models: expected number, got the string "five" (train@two)',
    'params/demo.yaml:5:33: config: unknown key "extra" (train@two)',
    'params/demo.yaml:5:61: config.optimizer.type: expected "sgd" or "adamw", got the string "lion" (train@two)',
  ]);
  // The unknown key is underlined as written.
  assert.match(e.message, /\n 5 \| .*\n {3}\| {33}\^{5}\n/);
});

test("inside an aliased map: points at the anchored value and says which instance reaches it through which alias", async () => {
  const e = await loadError(PARAMS.replace("{size: 8, crop: 8}", "{size: 8, crop: 0}"));
  // train reads it as config.transform, eval as transform (through \${item.model.transform}): one value, one error.
  assert.is(
    e.message,
    "params/demo.yaml:2:33: config.transform.crop must be > 0, got number 0 (train@one and 7 other instances)\n" +
      " 2 |   small: &small {size: 8, crop: 0}\n" +
      "   |                                 ^\n" +
      "  (inside the value anchored as &small: train@one reaches it through *small at params/demo.yaml:4:74)",
  );
});

test("the value is itself an alias: points at the alias use, names the anchor", async () => {
  const params = PARAMS.replace("transforms:\n", "transforms:\n  wrong: &wrong [1, 2]\n").replace("lr: 0.1}, transform: *small}", "lr: 0.1}, transform: *wrong}");
  const e = await loadError(params);
  // train holds the alias as config.transform, eval as transform (through \${item.model.transform}).
  assert.is(
    e.message,
    "params/demo.yaml:5:74: config.transform: expected object, got a list (train@one and 3 other instances)\n" +
      " 5 |   - {name: one, n_models: 5, optimizer: {type: sgd, lr: 0.1}, transform: *wrong}\n" +
      "   |                                                                          ^^^^^^\n" +
      "  (the value of the alias *wrong, anchored at params/demo.yaml:2:17)",
  );
});

test("one error per bad value: 6 eval instances sharing one eval section give one error, counted", async () => {
  const e = await loadError(PARAMS.replace("batch_size: 32", "batch_size: 0").replace("quirks: false", "quirks: no thanks"));
  assert.is(
    e.message,
    "params/demo.yaml:7:15: eval.batch_size must be > 0, got number 0 (eval@one/a and 5 other eval instances)\n" +
      " 7 |   batch_size: 0\n" +
      "   |               ^\n" +
      'params/demo.yaml:8:11: eval.quirks: expected boolean, got the string "no thanks" (eval@one/a and 5 other eval instances)\n' +
      " 8 |   quirks: no thanks\n" +
      "   |           ^^^^^^^^^",
  );
  assert.is(e.hint, "fix the values in the params file (or pipeline.yaml); they are checked against the stage contract stages/eval.contract.ts (version 3)");
});

test("a missing key points at the map that lacks it", async () => {
  const e = await loadError(PARAMS.replace("  quirks: false\n", ""));
  assert.match(e.message, /^params\/demo\.yaml:6:1: eval\.quirks is required but missing \(eval@one\/a and 5 other eval instances\)\n 6 \| eval:\n {3}\| \^{4}$/);
});

test("values written in pipeline.yaml point into pipeline.yaml; embedded interpolation points at the string", async () => {
  const stages = STAGES.replace("eval: ${eval}", "eval: {batch_size: -4, quirks: false}");
  const e = await loadError(PARAMS.replace("{name: two,", "{name: a-rather-long-name,"), stages);
  const heads = e.message.split("\n").filter((l) => /^(params\/|pipeline\.yaml)/.test(l));
  assert.equal(heads, [
    "pipeline.yaml:20:26: eval.batch_size must be > 0, got number -4 (eval@one/a and 5 other eval instances)",
    'pipeline.yaml:22:13: note must be at most 12 characters long, got the string "model a-rather-long-name" (eval@a-rather-long-name/a and 2 other eval instances)',
  ]);
});

test("many distinct errors: all counted, the first ones shown", async () => {
  const configs = Array.from({ length: MAX_PARAM_ERRORS + 5 }, (_, i) => `  - {name: c${i}, n_models: 1, optimizer: {type: sgd, lr: 0.1}, transform: *small}`).join("\n");
  const params = PARAMS.replace(/configs:\n(  - .*\n)+/, `configs:\n${configs}\n`);
  const e = await loadError(params, STAGES.replace(/  eval:[\s\S]*$/, ""));
  assert.is(e.message.split("\n").filter((l) => l.startsWith("params/demo.yaml:")).length, MAX_PARAM_ERRORS);
  assert.match(e.message, /\n\.\.\. and 5 more params errors$/);
});

test("a stage without a contract file is not checked; a contract that exports no contract is an error at the module", async () => {
  const p = await tempProject({ "pipeline.yaml": HEAD + "  s:\n    module: stages/s.ts\n    params: {anything: [1, 2]}\n", "params/demo.yaml": "x: 1\n" }, ["stages/s.ts"]);
  try {
    assert.equal((await loadPipeline(p.root)).instances.get("s")!.params, { anything: [1, 2] });
    await p.write("stages/s.contract.ts", "export const contract = { name: 's' };\n");
    const e = await rejection(loadPipeline(p.root));
    assert.instance(e, ConfigError);
    assert.is(e.message, "pipeline.yaml:8:13: stages/s.contract.ts does not export a stage contract ({name, version, params})\n 8 |     module: stages/s.ts\n   |             ^^^^^^^^^^^");
    await p.write("stages/s.contract.ts", "export const contract = {;\n");
    const syntax = await rejection(loadPipeline(p.root));
    assert.match(syntax.message, /^pipeline\.yaml:8:13: cannot bundle the contract stages\/s\.contract\.ts: stages\/s\.contract\.ts:1:26: Expected identifier but found ";"\n/);
  } finally {
    await p.cleanup();
  }
});

// The real contracts, pipeline.yaml and params files, in a temp copy (contracts import ../src).
async function realProject() {
  const p = await tempProject({}, [], { nodeModules: true });
  for (const d of ["src", "stages", "params"]) await cp(join(REPO, d), join(p.root, d), { recursive: true });
  await copyFile(join(REPO, "pipeline.yaml"), join(p.root, "pipeline.yaml"));
  return p;
}

test("the real pipeline: demo and paper params pass the five stage contracts", async () => {
  const p = await realProject();
  try {
    for (const profile of ["demo", "paper"]) {
      const pl = await loadPipeline(p.root, { profile });
      for (const inst of pl.instances.values()) assert.is(inst.version, 1, inst.id);
    }
  } finally {
    await p.cleanup();
  }
});

test("the real pipeline: lr -1, n_models 1 and a bad eval transform in params/demo.yaml", async () => {
  const p = await realProject();
  try {
    const file = join(p.root, "params", "demo.yaml");
    const text = (await readFile(file, "utf8"))
      .replace("{name: 50_models, n_models: 10,", "{name: 50_models, n_models: 1,")
      .replace("optimizer: {type: adamw, lr: 0.001, weight_decay: 0.1}, lr_scheduler: {type: cosine, t_max: 15}, n_epochs: 4, freeze_first_epoch: true, lambda: 0.5", "optimizer: {type: adamw, lr: -1, weight_decay: 0.1}, lr_scheduler: {type: cosine, t_max: 15}, n_epochs: 4, freeze_first_epoch: true, lambda: 0.5")
      .replace("{kind: eval, resize: 28, crop: 28,", "{kind: eval, resize: 28, crop: 14,");
    await writeFile(file, text);
    const e = await rejection(loadPipeline(p.root));
    assert.instance(e, ConfigError);
    const lines = text.split("\n");
    const at = (needle: string, within: string) => {
      const n = lines.findIndex((l) => l.includes(within));
      return `${n + 1}:${lines[n]!.indexOf(needle) + 1}`;
    };
    const heads = e.message.split("\n").filter((l) => l.startsWith("params/demo.yaml:"));
    assert.equal(heads, [
      // 18 datasets use the anchored eval transform: one error, at the anchor.
      `params/demo.yaml:${at("14", "&eval_transform")}: dataset.transform.crop is 14 but featurizer.arch.image_size is 28 (the transform must produce images of the size the ViT was built for) (cache-features@in_val and 17 other cache-features instances)`,
      `params/demo.yaml:${at("1, random", "{name: 50_models,")}: config.n_models must be >= 2, got number 1 (train-heads@50_models)`,
      `params/demo.yaml:${at("2, keep", "{name: 50_models,")}: config.random_select: random_select 2 is larger than n_models 1 (train-heads@50_models)`,
      `params/demo.yaml:${at("-1", "{name: ood_gen,")}: config.optimizer.lr must be > 0, got number -1 (train-heads@ood_gen)`,
    ]);
    assert.match(e.message, /\n {2}\(inside the value anchored as &eval_transform: cache-features@in_val reaches it through \*eval_transform at params\/demo\.yaml:\d+:\d+\)\n/);
    assert.is((e as ConfigError).hint, "fix the values in the params file (or pipeline.yaml); they are checked against the stage contracts stages/cache-features.contract.ts (version 1), stages/train-heads.contract.ts (version 1)");
  } finally {
    await p.cleanup();
  }
});

test.run();
