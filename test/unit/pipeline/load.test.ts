import { test } from "uvu";
import * as assert from "uvu/assert";
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { loadPipeline } from "../../../src/pipeline/load.ts";
import { ConfigError } from "../../../src/errors.ts";
import { rejection, tempProject } from "./temp-project.ts";

const HEAD = `version: 1
default_profile: demo
profiles:
  demo:
    params: params/demo.yaml
stages:
`;
const PARAMS = `lists:
  empty: []
  two: [{key: a, out: artifacts/a}, {key: b, out: artifacts/b}]
n: 5
`;

async function loadError(stages: string, opts: { profile?: string; params?: string; head?: string } = {}): Promise<ConfigError> {
  const p = await tempProject({ "pipeline.yaml": (opts.head ?? HEAD) + stages, "params/demo.yaml": opts.params ?? PARAMS }, ["stages/s.ts"]);
  try {
    const err = await rejection(loadPipeline(p.root, opts.profile === undefined ? {} : { profile: opts.profile }));
    assert.instance(err, ConfigError, `expected a ConfigError, got ${err.stack}`);
    assert.is((err as ConfigError).exitCode, 2);
    return err as ConfigError;
  } finally {
    await p.cleanup();
  }
}

async function load(stages: string, params = PARAMS, modules = ["stages/s.ts"]) {
  const p = await tempProject({ "pipeline.yaml": HEAD + stages, "params/demo.yaml": params }, modules);
  try {
    return await loadPipeline(p.root);
  } finally {
    await p.cleanup();
  }
}

test("unknown key: position, caret and the allowed keys", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    outz: {a: artifacts/a}\n`);
  assert.is(e.message, 'pipeline.yaml:9:5: unknown key "outz" in stage "s"\n 9 |     outz: {a: artifacts/a}\n   |     ^^^^');
  assert.is(e.hint, "allowed keys: module, foreach, matrix, deps, params, outs, cache, desc, resources");
});

test("profiles.<name>.immutable: folders resolved against the project root", async () => {
  const p = await tempProject(
    { "pipeline.yaml": HEAD.replace("params: params/demo.yaml", "params: params/demo.yaml\n    immutable: [data/ImageNet2012, /mnt/datasets]") + `  s:\n    module: stages/s.ts\n`, "params/demo.yaml": PARAMS },
    ["stages/s.ts"],
  );
  try {
    const pl = await loadPipeline(p.root);
    assert.equal(pl.immutable, [join(p.root, "data/ImageNet2012"), "/mnt/datasets"]);
  } finally {
    await p.cleanup();
  }
  assert.is((await load(`  s:\n    module: stages/s.ts\n`)).immutable, undefined);
});

test("unknown top-level key", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\nextra: 1\n`);
  assert.is(e.message, 'pipeline.yaml:9:1: unknown key "extra" in the top level\n 9 | extra: 1\n   | ^^^^^');
});

test("wrong type", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    cache: yes please\n`);
  assert.is(e.message, 'pipeline.yaml:9:12: stage "s" (cache): expected boolean, got the string "yes please"\n 9 |     cache: yes please\n   |            ^^^^^^^^^^');
});

test("wrong version and missing required key", async () => {
  const v = await loadError(`  s:\n    module: stages/s.ts\n`, { head: HEAD.replace("version: 1", "version: 2") });
  assert.is(v.message, "pipeline.yaml:1:10: version: expected 1, got number 2\n 1 | version: 2\n   |          ^");
  const m = await loadError(`  s:\n    deps: {}\n`);
  assert.is(m.message, 'pipeline.yaml:7:3: missing required key "module" in stage "s"\n 7 |   s:\n   |   ^');
});

test("missing module file", async () => {
  const e = await loadError(`  s:\n    module: stages/nope.ts\n`);
  assert.is(e.message, 'pipeline.yaml:8:13: module "stages/nope.ts" of stage "s" not found\n 8 |     module: stages/nope.ts\n   |             ^^^^^^^^^^^^^^');
});

test("foreach and matrix together", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    foreach: \${lists.two}\n    matrix:\n      a: \${lists.two}\n`);
  assert.is(e.message, 'pipeline.yaml:10:5: stage "s" has both foreach and matrix\n 10 |     matrix:\n    |     ^^^^^^');
});

test("dep on an unknown output", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    deps:\n      heads: artifacts/heads\n`);
  assert.is(e.message, 'pipeline.yaml:10:14: stage "s" depends on unknown output "artifacts/heads"\n 10 |       heads: artifacts/heads\n    |              ^^^^^^^^^^^^^^^');
});

test("cache and desc are carried to the stage and its instances", async () => {
  const p = await load(`  s:\n    module: stages/s.ts\n    desc: makes things\n    cache: false\n  t:\n    module: stages/s.ts\n`);
  assert.equal([p.stages.get("s")!.cache, p.stages.get("s")!.desc, p.instances.get("s")!.cache], [false, "makes things", false]);
  assert.equal([p.stages.get("t")!.cache, p.stages.get("t")!.desc, p.instances.get("t")!.cache], [true, undefined, true]);
});

test("a dep outside artifacts/ and cache/ is not checked at load time", async () => {
  const p = await load(`  s:\n    module: stages/s.ts\n    deps:\n      raw: data/raw.csv\n`);
  assert.equal(p.instances.get("s")!.deps, { raw: "data/raw.csv" });
});

test("duplicate outputs: equal paths name both instances", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    outs: {x: artifacts/x}\n  t:\n    module: stages/s.ts\n    outs: {y: artifacts/./x/}\n`);
  assert.is(e.message, 'pipeline.yaml:12:15: duplicate output "artifacts/x": written by s (out "x") and t (out "y")\n 12 |     outs: {y: artifacts/./x/}\n    |               ^^^^^^^^^^^^^^');
});

test("duplicate outputs: nested paths", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    outs: {x: artifacts/x}\n  t:\n    module: stages/s.ts\n    outs: {y: artifacts/x/y}\n`);
  assert.is(e.message, 'pipeline.yaml:12:15: duplicate output: "artifacts/x/y" of t lies inside "artifacts/x" of s\n 12 |     outs: {y: artifacts/x/y}\n    |               ^^^^^^^^^^^^^');
});

test("cycle: the path and every stage's position", async () => {
  const e = await loadError(
    `  a:\n    module: stages/s.ts\n    deps: {i: artifacts/b}\n    outs: {o: artifacts/a}\n  b:\n    module: stages/s.ts\n    deps: {i: artifacts/a}\n    outs: {o: artifacts/b}\n`,
  );
  assert.is(
    e.message,
    "pipeline.yaml:7:3: dependency cycle: a -> b -> a\n 7 |   a:\n   |   ^\n" +
      '  a (stage "a" at pipeline.yaml:7:3) writes artifacts/a, needed by b\n' +
      '  b (stage "b" at pipeline.yaml:11:3) writes artifacts/b, needed by a',
  );
});

test("empty fan-out", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    foreach: \${lists.empty}\n`);
  assert.is(e.message, 'pipeline.yaml:9:14: foreach of stage "s" is an empty list: the stage would have no instances\n 9 |     foreach: ${lists.empty}\n   |              ^^^^^^^^^^^^^^');
  const m = await loadError(`  s:\n    module: stages/s.ts\n    matrix:\n      x: \${lists.two}\n      y: \${lists.empty}\n`);
  assert.match(m.message, /^pipeline\.yaml:11:10: matrix axis "y" of stage "s" is an empty list/);
});

test("missing interpolation key: underlines the ${...} and lists the keys there", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    params:\n      n: "n=\${lists.nn}!"\n`);
  assert.is(e.message, 'pipeline.yaml:10:13: cannot resolve ${lists.nn}: "lists" has no key "nn"\n 10 |       n: "n=${lists.nn}!"\n    |             ^^^^^^^^^^^');
  assert.is(e.hint, "keys there: empty, two");
  const top = await loadError(`  s:\n    module: stages/s.ts\n    params:\n      n: \${nope}\n`);
  assert.is(top.message, 'pipeline.yaml:10:10: cannot resolve ${nope}: params (params/demo.yaml) has no key "nope"\n 10 |       n: ${nope}\n    |          ^^^^^^^');
});

test("a list or map cannot be embedded in a string", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    params:\n      n: "x-\${lists}"\n`);
  assert.is(e.message, 'pipeline.yaml:10:13: cannot insert ${lists} into a string: it is a map\n 10 |       n: "x-${lists}"\n    |             ^^^^^^^^');
});

test("${item} outside a fan-out stage", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    params: {x: "\${item.a}"}\n`);
  assert.match(e.message, /^pipeline\.yaml:9:18: \$\{item\.a\} used in a stage without foreach or matrix/);
});

test("YAML flow collections: \${...} must be quoted, and the hint says so", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    params: {n: \${n}}\n`);
  assert.is(e.message, "pipeline.yaml:9:18: YAML syntax: Unexpected flow-map-start at node end\n 9 |     params: {n: ${n}}\n   |                  ^");
  assert.is(e.hint, 'inside { } or [ ], quote a value that uses ${...}: {x: "${a.b}"}');
});

test("unknown profile lists the profiles", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n`, { profile: "paper" });
  assert.is(e.message, 'pipeline.yaml:3:1: unknown profile "paper"; profiles: demo\n 3 | profiles:\n   | ^^^^^^^^');
  assert.is(e.hint, "use --profile demo");
});

test("params file errors point into the params file", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n`, { params: "a: 1\na: 2\n" });
  assert.match(e.message, /^params\/demo\.yaml:2:1: YAML syntax: Map keys must be unique\n 2 \| a: 2\n/);
  const missing = await loadError(`  s:\n    module: stages/s.ts\n`, { head: HEAD.replace("params/demo.yaml", "params/none.yaml") });
  assert.is(missing.message, "pipeline.yaml:5:13: params file params/none.yaml cannot be read (no such file)\n 5 |     params: params/none.yaml\n   |             ^^^^^^^^^^^^^^^^");
});

test("pipeline.yaml missing entirely", async () => {
  const p = await tempProject({});
  try {
    const e = await rejection(loadPipeline(p.root));
    assert.instance(e, ConfigError);
    assert.is(e.message, "pipeline.yaml: pipeline file pipeline.yaml cannot be read (no such file)");
  } finally {
    await p.cleanup();
  }
});

test("outs escaping the project root are refused", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    outs: {x: ../elsewhere}\n`);
  assert.is(e.message, 'pipeline.yaml:9:15: out "x" of s "../elsewhere" escapes the project root\n 9 |     outs: {x: ../elsewhere}\n   |               ^^^^^^^^^^^^');
});

test("duplicate instance ids", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    foreach: [x, y, x]\n`);
  assert.is(e.message, 'pipeline.yaml:9:14: two instances of stage "s" have the same id "s@x"\n 9 |     foreach: [x, y, x]\n   |              ^^^^^^^^^');
});

test("foreach ids: key, then name, then the scalar", async () => {
  const p = await load(
    `  a:\n    module: stages/s.ts\n    foreach: \${lists.two}\n    outs: {o: "\${item.out}"}\n` +
      `  b:\n    module: stages/s.ts\n    foreach: [{name: n1, key: k1}, {name: n2}, 7, plain]\n`,
  );
  assert.equal([...p.stages.get("a")!.instanceIds], ["a@a", "a@b"]);
  assert.equal([...p.stages.get("b")!.instanceIds], ["b@k1", "b@n2", "b@7", "b@plain"]);
  assert.equal(p.instances.get("a@b")!.outs, { o: "artifacts/b" });
  assert.equal(p.instances.get("a@b")!.item, { key: "b", out: "artifacts/b" });
});

test("matrix: cartesian product in axis order, ids joined with /", async () => {
  const p = await load(`  m:\n    module: stages/s.ts\n    matrix:\n      x: \${lists.two}\n      y: [1, 2, 3]\n    params: {pair: "\${item.x.key}-\${item.y}"}\n`);
  assert.equal([...p.instances.keys()], ["m@a/1", "m@a/2", "m@a/3", "m@b/1", "m@b/2", "m@b/3"]);
  assert.equal(p.instances.get("m@b/2")!.item, { x: { key: "b", out: "artifacts/b" }, y: 2 });
  assert.equal(p.instances.get("m@b/2")!.params, { pair: "b-2" });
});

test("a whole ${...} keeps its YAML type; embedded scalars are stringified", async () => {
  const params = `v: {list: [1, 2], map: {a: 1}, num: 2.5, nul: null, flag: true, s: text}\n`;
  const p = await load(
    `  s:\n    module: stages/s.ts\n    params:\n      list: \${v.list}\n      map: \${v.map}\n      num: \${v.num}\n      nul: \${v.nul}\n      idx: \${v.list.1}\n      text: "\${v.s}/\${v.num}/\${v.flag}/\${v.nul}"\n      lit: 3\n`,
    params,
  );
  assert.equal(p.instances.get("s")!.params, { list: [1, 2], map: { a: 1 }, num: 2.5, nul: null, idx: 2, text: "text/2.5/true/null", lit: 3 });
});

test("instances do not share mutable params", async () => {
  const p = await load(`  s:\n    module: stages/s.ts\n    foreach: [x, y]\n    params: {l: "\${lists.two}"}\n`);
  const a = p.instances.get("s@x")!.params.l as unknown[];
  const b = p.instances.get("s@y")!.params.l as unknown[];
  assert.equal(a, b);
  assert.is.not(a, b);
});

test("optional deps are dropped on a missing key, and lose their ?", async () => {
  const p = await load(
    `  s:\n    module: stages/s.ts\n    foreach: [{key: a, extra: data/a.txt}, {key: b}]\n    deps:\n      main: data/main.txt\n      extra?: \${item.extra}\n`,
  );
  assert.equal(p.instances.get("s@a")!.deps, { main: "data/main.txt", extra: "data/a.txt" });
  assert.equal(p.instances.get("s@b")!.deps, { main: "data/main.txt" });
});

test("paths: normalised, absolute deps kept, absolute inside the project made relative", async () => {
  const p = await tempProject(
    {
      "pipeline.yaml": HEAD + `  s:\n    module: ./stages//s.ts\n    deps:\n      ext: /data/outside.bin\n      up: ../sibling/x\n      inside: PLACEHOLDER/data/in.txt\n    outs:\n      o: artifacts/x/../y/\n`,
      "params/demo.yaml": PARAMS,
    },
    ["stages/s.ts"],
  );
  try {
    await p.write("pipeline.yaml", (HEAD + `  s:\n    module: ./stages//s.ts\n    deps:\n      ext: /data/outside.bin\n      up: ../sibling/x\n      inside: ${p.root}/data/in.txt\n    outs:\n      o: artifacts/x/../y/\n`));
    const pl = await loadPipeline(p.root);
    const inst = pl.instances.get("s")!;
    assert.is(inst.module, "stages/s.ts");
    assert.equal(inst.deps, { ext: "/data/outside.bin", up: join(p.root, "..", "sibling", "x"), inside: "data/in.txt" });
    assert.equal(inst.outs, { o: "artifacts/y" });
  } finally {
    await p.cleanup();
  }
});

test("edges: equal, inside and containing paths; instances in topological order", async () => {
  const p = await load(
    `  use:\n    module: stages/s.ts\n    deps: {all: artifacts/eval, one: artifacts/eval/a/r.json, prep: artifacts/prep/part}\n    outs: {t: artifacts/tables}\n` +
      `  ev:\n    module: stages/s.ts\n    foreach: [a, b]\n    deps: {p: artifacts/prep}\n    outs: {r: "artifacts/eval/\${item}"}\n` +
      `  prep:\n    module: stages/s.ts\n    outs: {o: artifacts/prep}\n`,
  );
  assert.equal([...p.instances.keys()], ["prep", "ev@a", "ev@b", "use"]);
  assert.equal(p.graph.inNeighbors("use").sort(), ["ev@a", "ev@b", "prep"]);
  assert.equal(p.graph.getEdgeAttribute("ev@a", "use", "paths"), ["artifacts/eval", "artifacts/eval/a/r.json"]);
  assert.equal(p.graph.getEdgeAttribute("prep", "use", "paths"), ["artifacts/prep/part"]);
  assert.equal(p.graph.inNeighbors("ev@b"), ["prep"]);
});

test("several params files merge, later files win at the top level", async () => {
  const p = await tempProject(
    {
      "pipeline.yaml": HEAD.replace("params: params/demo.yaml", "params: [params/a.yaml, params/b.yaml]") + `  s:\n    module: stages/s.ts\n    params: {x: "\${x}", y: "\${y}"}\n`,
      "params/a.yaml": "x: {deep: 1, other: 2}\ny: 1\n",
      "params/b.yaml": "x: {deep: 3}\n",
    },
    ["stages/s.ts"],
  );
  try {
    const pl = await loadPipeline(p.root);
    assert.equal(pl.paramsFiles, ["params/a.yaml", "params/b.yaml"]);
    assert.equal(pl.instances.get("s")!.params, { x: { deep: 3 }, y: 1 });
  } finally {
    await p.cleanup();
  }
});

test("the real pipeline.yaml with params/demo.yaml", async () => {
  const repo = join(import.meta.dirname, "..", "..", "..");
  const modules = ["stages/download.ts", "stages/cache-features.ts", "stages/train-heads.ts", "stages/eval.ts", "stages/tables.ts"];
  // A temp copy, so the test works whether or not the stage modules exist yet in the tree.
  const p = await tempProject({}, modules);
  try {
    await mkdir(join(p.root, "params"));
    await copyFile(join(repo, "pipeline.yaml"), join(p.root, "pipeline.yaml"));
    await copyFile(join(repo, "params", "demo.yaml"), join(p.root, "params", "demo.yaml"));
    const pl = await loadPipeline(p.root);
    assert.is(pl.profile, "demo");
    const count = (s: string) => pl.stages.get(s)!.instanceIds.length;
    assert.equal([count("download"), count("cache-features"), count("train-heads"), count("eval"), count("tables")], [2, 19, 4, 72, 1]);
    assert.is(pl.instances.size, 98);
    assert.ok(pl.instances.has("eval@ood_gen/Brightness_1"));
    assert.ok(pl.instances.has("cache-features@Gaussian Noise_5"));
    assert.equal(pl.graph.inNeighbors("eval@ood_gen/Brightness_1").sort(), ["cache-features@Brightness_1", "eval@ood_gen/in_val", "train-heads@ood_gen"]);
    assert.equal(pl.graph.inNeighbors("eval@ood_gen/in_val").sort(), ["cache-features@in_val", "train-heads@ood_gen"]);
    const evals = pl.stages.get("eval")!.instanceIds;
    assert.equal(pl.graph.inNeighbors("tables").sort(), [...evals].sort());
    // Optional deps: imagenet_a has a classes file, in_val has none, in_val has no reference.
    assert.equal(pl.instances.get("cache-features@imagenet_a")!.deps.classes, "artifacts/data/universe/subset_classes.json");
    assert.not.ok("classes" in pl.instances.get("cache-features@in_val")!.deps);
    assert.not.ok("id_scores" in pl.instances.get("eval@ood_gen/in_val")!.deps);
    assert.is(pl.instances.get("eval@ood_gen/Brightness_1")!.deps.id_scores, "artifacts/eval/ood_gen/in_val.scores.hdf5");
    // cache-features depends on both downloads (images and the featurizer checkpoint).
    assert.equal(pl.graph.inNeighbors("cache-features@in_val").sort(), ["download@featurizer", "download@universe"]);
    const order = [...pl.instances.keys()];
    for (const [from, to] of pl.graph.edges().map((e) => [pl.graph.source(e), pl.graph.target(e)])) {
      assert.ok(order.indexOf(from!) < order.indexOf(to!), `${from} before ${to}`);
    }
    assert.is(order[order.length - 1], "tables");
  } finally {
    await p.cleanup();
  }
});

test.run();
