// The loaded pipeline kept between commands (src/pipeline/memo.ts): reused while loading again would
// give the same pipeline, and loaded from the sources (with its config errors) after any change to
// what the load read: pipeline.yaml, a params file, a contract's closure, a stage module or contract
// file appearing or vanishing, a dep nothing produces vanishing; never across builds or profiles.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadPipeline } from "../../../src/pipeline/load.ts";
import { memoFile, memoStats, openPipeline, pipelineData, readMemo } from "../../../src/pipeline/memo.ts";
import { contractStats } from "../../../src/pipeline/contracts.ts";
import type { Pipeline } from "../../../src/pipeline/types.ts";
import { rejection, tempProject } from "./temp-project.ts";

const PIPELINE = `version: 1
default_profile: demo
profiles:
  demo:
    params: params/demo.yaml
  other:
    params: [params/demo.yaml, params/other.yaml]
    immutable: [data/set]
stages:
  a:
    module: stages/a.ts
    foreach: \${items}
    params: {n: "\${n}", item: "\${item}"}
    deps:
      seed: artifacts/seed.txt
    outs:
      out: artifacts/a/\${item.name}.txt
  b:
    module: stages/b.ts
    params: {n: "\${n}"}
    deps:
      x: artifacts/a/x.txt
      y: artifacts/a/y.txt
    outs:
      out: artifacts/b
`;
const PARAMS = "n: 3\nitems:\n  - {name: x}\n  - {name: y}\n";
const CONTRACT = (version: number) => `import { z } from "zod";
export const contract = { name: "b", version: ${version}, params: z.strictObject({ n: z.number().positive() }) };
`;

async function project() {
  const p = await tempProject(
    { "pipeline.yaml": PIPELINE, "params/demo.yaml": PARAMS, "params/other.yaml": "n: 4\n", "stages/b.contract.ts": CONTRACT(1), "artifacts/seed.txt": "seed" },
    ["stages/a.ts", "stages/b.ts"],
    { nodeModules: true },
  );
  return p;
}

const CODE = { code: "build-1" };

/** Everything a Pipeline holds, as plain data (the graph as nodes and edges). */
const plain = (p: Pipeline) => ({ root: p.root, ...pipelineData(p) });

async function counted<T>(fn: () => Promise<T>): Promise<{ value: T; hits: number; loads: number }> {
  const h = memoStats.hits;
  const l = memoStats.loads;
  const value = await fn();
  return { value, hits: memoStats.hits - h, loads: memoStats.loads - l };
}

test("a second open reuses the memo: the same pipeline, graph included, without yaml, zod or the contracts", async () => {
  const p = await project();
  try {
    const fresh = await loadPipeline(p.root);
    const first = await counted(() => openPipeline(p.root, CODE));
    assert.is(first.loads, 1);
    const builds = contractStats.imports;
    const second = await counted(() => openPipeline(p.root, CODE));
    assert.equal([second.hits, second.loads], [1, 0]);
    assert.is(contractStats.imports, builds, "no contract imported");
    assert.equal(plain(second.value), plain(fresh));
    assert.equal(second.value.graph.inNeighbors("b"), fresh.graph.inNeighbors("b"));
    assert.equal(second.value.graph.getEdgeAttribute("a@x", "b", "paths"), ["artifacts/a/x.txt"]);
    assert.equal([...second.value.instances.keys()], [...fresh.instances.keys()], "topological order kept");
    assert.is(second.value.instances.get("b")!.version, 1, "the contract's version is kept");
  } finally {
    await p.cleanup();
  }
});

test("every input of the load is checked: each change loads again and shows", async () => {
  const p = await project();
  try {
    await openPipeline(p.root, CODE);
    const again = async () => counted(() => openPipeline(p.root, CODE));
    const steps: Array<[string, () => Promise<void>, (pl: Pipeline) => void]> = [
      ["pipeline.yaml", () => p.write("pipeline.yaml", PIPELINE.replace('item: "${item}"}', 'item: "${item}", k: 1}')), (pl) => assert.is(pl.instances.get("a@y")!.params.k, 1)],
      ["a params file", () => p.write("params/demo.yaml", PARAMS.replace("n: 3", "n: 5")), (pl) => assert.is(pl.instances.get("b")!.params.n, 5)],
      ["the contract", () => p.write("stages/b.contract.ts", CONTRACT(2)), (pl) => assert.is(pl.instances.get("b")!.version, 2)],
      ["a contract file removed", () => rm(join(p.root, "stages/b.contract.ts")), (pl) => assert.is(pl.instances.get("b")!.version, undefined)],
      ["a contract file added", () => p.write("stages/b.contract.ts", CONTRACT(3)), (pl) => assert.is(pl.instances.get("b")!.version, 3)],
    ];
    for (const [what, change, check] of steps) {
      await change();
      const r = await again();
      assert.equal([r.hits, r.loads], [0, 1], `${what}: loaded again`);
      check(r.value);
      const warm = await again();
      assert.equal([warm.hits, warm.loads], [1, 0], `${what}: then reused`);
      check(warm.value);
    }
  } finally {
    await p.cleanup();
  }
});

test("what only the load reports is reported again: a stage module or an unproduced dep that vanished", async () => {
  const p = await project();
  try {
    await openPipeline(p.root, CODE);
    await rm(join(p.root, "artifacts/seed.txt"));
    assert.match((await rejection(openPipeline(p.root, CODE))).message, /depends on unknown output "artifacts\/seed.txt"/);
    await p.write("artifacts/seed.txt", "seed");
    await openPipeline(p.root, CODE);
    await rm(join(p.root, "stages/a.ts"));
    assert.match((await rejection(openPipeline(p.root, CODE))).message, /module "stages\/a.ts" of stage "a" not found/);
  } finally {
    await p.cleanup();
  }
});

test("one memo per profile asked for; another build, other package versions or a damaged file read as none", async () => {
  const p = await project();
  try {
    const demo = await openPipeline(p.root, CODE);
    const other = await openPipeline(p.root, { ...CODE, profile: "other" });
    assert.is(other.profile, "other");
    assert.equal(other.immutable, [join(p.root, "data/set")]);
    assert.is((await readMemo(p.root, CODE))!.profile, "demo");
    assert.is((await readMemo(p.root, { ...CODE, profile: "other" }))!.instances.get("b")!.params.n, 4);
    assert.is((await readMemo(p.root, { ...CODE, profile: "demo" })), null, "asking by name is another memo than the default");
    assert.is(await readMemo(p.root, { code: "build-2" }), null, "another build");
    assert.is(await readMemo(p.root, { code: null }), null, "no build identity: never");
    const file = memoFile(p.root, null);
    const memo = JSON.parse(await readFile(file, "utf8"));
    await writeFile(file, JSON.stringify({ ...memo, packages: { ...memo.packages, zod: "0.0.1" } }));
    assert.is(await readMemo(p.root, CODE), null, "another zod");
    await writeFile(file, JSON.stringify({ ...memo, pipeline: { ...memo.pipeline, edges: [["nope", "b", []]] } }));
    assert.is(await readMemo(p.root, CODE), null, "a graph that does not build");
    await writeFile(file, "{ not json");
    assert.is(await readMemo(p.root, CODE), null, "not JSON");
    const r = await counted(() => openPipeline(p.root, CODE));
    assert.equal([r.hits, r.loads], [0, 1]);
    assert.equal(plain(r.value), plain(demo));
  } finally {
    await p.cleanup();
  }
});

test("a pipeline JSON cannot give back exactly (a .inf param) is never kept; without a build identity nothing is", async () => {
  const p = await project();
  try {
    await openPipeline(p.root, { code: null });
    assert.not.ok((await readdir(join(p.root, "cache", "state")).catch(() => [])).length, "nothing kept without a build identity");
    await p.write("pipeline.yaml", PIPELINE.replace('item: "${item}"}', 'item: "${item}", limit: .inf}'));
    const pl = await openPipeline(p.root, CODE);
    assert.is(pl.instances.get("a@x")!.params.limit, Infinity);
    assert.is(await readMemo(p.root, CODE), null);
    const r = await counted(() => openPipeline(p.root, CODE));
    assert.equal([r.hits, r.loads], [0, 1]);
    assert.is(r.value.instances.get("a@x")!.params.limit, Infinity);
  } finally {
    await p.cleanup();
  }
});

test.run();
