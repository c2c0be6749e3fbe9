import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadPipeline } from "../../../src/pipeline/load.ts";
import { downstreamOf, matchTarget, resolveTargets } from "../../../src/pipeline/select.ts";
import { ConfigError } from "../../../src/errors.ts";
import type { Pipeline } from "../../../src/pipeline/types.ts";
import { tempProject } from "./temp-project.ts";

let p: Pipeline;

test.before(async () => {
  const proj = await tempProject(
    {
      "pipeline.yaml": `version: 1
default_profile: demo
profiles:
  demo:
    params: params/demo.yaml
stages:
  download:
    module: stages/s.ts
    outs: {d: artifacts/data}
  train-heads:
    module: stages/s.ts
    foreach: \${models}
    deps: {d: artifacts/data}
    outs: {m: "artifacts/models/\${item}"}
  train-other:
    module: stages/s.ts
    deps: {d: artifacts/data}
    outs: {m: artifacts/other}
  eval:
    module: stages/s.ts
    matrix:
      model: \${models}
      dataset: \${datasets}
    deps: {m: "artifacts/models/\${item.model}"}
    outs: {r: "artifacts/eval/\${item.model}/\${item.dataset}.json"}
  tables:
    module: stages/s.ts
    deps: {e: artifacts/eval}
    outs: {t: artifacts/tables}
`,
      "params/demo.yaml": "models: [ood_gen, ood_det_cov, ood_det_sem]\ndatasets: [in_val, imagenet_a, Brightness_1]\n",
    },
    ["stages/s.ts"],
  );
  p = await loadPipeline(proj.root);
  await proj.cleanup();
});

function errorOf(f: () => unknown): ConfigError {
  try {
    f();
  } catch (err) {
    assert.instance(err, ConfigError);
    return err as ConfigError;
  }
  throw new Error("expected a ConfigError");
}

test("no targets = every instance, in topological order", () => {
  assert.equal(resolveTargets(p, []), [...p.instances.keys()]);
});

test("a stage name selects all its instances and their upstream closure", () => {
  assert.equal(resolveTargets(p, ["train-heads"]), ["download", "train-heads@ood_gen", "train-heads@ood_det_cov", "train-heads@ood_det_sem"]);
});

test("an instance id selects it and its upstream only", () => {
  assert.equal(resolveTargets(p, ["eval@ood_gen/in_val"]), ["download", "train-heads@ood_gen", "eval@ood_gen/in_val"]);
});

test("unique prefixes of stage names and of the item part", () => {
  assert.equal(matchTarget(p, "tab"), ["tables"]);
  assert.equal(matchTarget(p, "eval@ood_gen/B"), ["eval@ood_gen/Brightness_1"]);
  assert.equal(matchTarget(p, "ev@ood_gen/in"), ["eval@ood_gen/in_val"]);
  assert.equal(matchTarget(p, "train-heads@ood_gen"), ["train-heads@ood_gen"]);
});

test("ambiguous stage prefix lists the candidates", () => {
  const e = errorOf(() => resolveTargets(p, ["train"]));
  assert.is(e.message, 'target "train" is ambiguous: it matches stages train-heads, train-other');
});

test("ambiguous instance prefix lists the candidates", () => {
  const e = errorOf(() => resolveTargets(p, ["eval@ood_det"]));
  assert.match(e.message, /^target "eval@ood_det" is ambiguous: it matches eval@ood_det_cov\/in_val, /);
});

test("an instance prefix ending at a / boundary selects the whole group (README: run eval@ood_gen)", () => {
  const group = ["eval@ood_gen/in_val", "eval@ood_gen/imagenet_a", "eval@ood_gen/Brightness_1"];
  assert.equal(matchTarget(p, "eval@ood_gen"), group);
  assert.equal(matchTarget(p, "eval@ood_gen/"), group);
  assert.equal(matchTarget(p, "ev@ood_gen"), group);
  assert.equal(resolveTargets(p, ["eval@ood_gen"]), ["download", "train-heads@ood_gen", ...group]);
  // An id that exists exactly is still just that instance.
  assert.equal(matchTarget(p, "train-heads@ood_gen"), ["train-heads@ood_gen"]);
});

test("a prefix inside a group name stays ambiguous; the hint names the groups", () => {
  const e = errorOf(() => resolveTargets(p, ["eval@ood_det"]));
  assert.is(
    e.message,
    'target "eval@ood_det" is ambiguous: it matches eval@ood_det_cov/in_val, eval@ood_det_cov/imagenet_a, eval@ood_det_cov/Brightness_1, ' +
      "eval@ood_det_sem/in_val, eval@ood_det_sem/imagenet_a, eval@ood_det_sem/Brightness_1",
  );
  assert.is(e.hint, "type more of the instance id, or name a whole group: eval@ood_det_cov, eval@ood_det_sem");
  const within = errorOf(() => resolveTargets(p, ["eval@ood_gen/i"]));
  assert.is(within.message, 'target "eval@ood_gen/i" is ambiguous: it matches eval@ood_gen/in_val, eval@ood_gen/imagenet_a');
  assert.is(within.hint, "type more of the instance id");
});

test("a group whose name is a prefix of another group's: the boundary decides", async () => {
  const proj = await tempProject(
    {
      "pipeline.yaml": `version: 1
default_profile: demo
profiles:
  demo:
    params: params/demo.yaml
stages:
  eval:
    module: stages/s.ts
    matrix:
      model: \${models}
      dataset: \${datasets}
    outs: {r: "artifacts/eval/\${item.model}/\${item.dataset}.json"}
`,
      "params/demo.yaml": "models: [ood_gen, ood_gen_big]\ndatasets: [a, b]\n",
    },
    ["stages/s.ts"],
  );
  try {
    const q = await loadPipeline(proj.root);
    assert.equal(matchTarget(q, "eval@ood_gen"), ["eval@ood_gen/a", "eval@ood_gen/b"]);
    assert.equal(matchTarget(q, "eval@ood_gen_big"), ["eval@ood_gen_big/a", "eval@ood_gen_big/b"]);
    const e = errorOf(() => matchTarget(q, "eval@ood_ge"));
    assert.is(e.message, 'target "eval@ood_ge" is ambiguous: it matches eval@ood_gen/a, eval@ood_gen/b, eval@ood_gen_big/a, eval@ood_gen_big/b');
    assert.is(e.hint, "type more of the instance id, or name a whole group: eval@ood_gen, eval@ood_gen_big");
  } finally {
    await proj.cleanup();
  }
});

test("unknown target: did you mean", () => {
  const e = errorOf(() => resolveTargets(p, ["tabels"]));
  assert.is(e.message, 'unknown target "tabels"; did you mean tables?');
  assert.is(e.hint, "stages: download, train-heads, train-other, eval, tables");
  const i = errorOf(() => resolveTargets(p, ["eval@ood_gen/Brightnes_1"]));
  assert.is(i.message, 'unknown target "eval@ood_gen/Brightnes_1"; did you mean eval@ood_gen/Brightness_1?');
  const s = errorOf(() => resolveTargets(p, ["evil@x"]));
  assert.is(s.message, 'target "evil@x": "evil" names no stage; did you mean eval?');
});

test("downstreamOf: the ids and everything below them", () => {
  assert.equal(downstreamOf(p, ["train-heads@ood_gen"]), ["train-heads@ood_gen", "eval@ood_gen/in_val", "eval@ood_gen/imagenet_a", "eval@ood_gen/Brightness_1", "tables"]);
  assert.equal(downstreamOf(p, ["tables"]), ["tables"]);
  assert.is(downstreamOf(p, ["download"]).length, p.instances.size);
  const e = errorOf(() => downstreamOf(p, ["tabels"]));
  assert.is(e.message, 'unknown instance "tabels"; did you mean tables?');
});

test.run();
