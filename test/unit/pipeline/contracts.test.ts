// Loading stage contracts: bundled once with esbuild into cache/build/, reused while the contract's
// import closure is unchanged (no esbuild on a warm load), rebuilt when any file in it changes.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { copyFile, cp, readdir, readFile, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { loadPipeline } from "../../../src/pipeline/load.ts";
import { contractPathFor, contractStats, loadContracts } from "../../../src/pipeline/contracts.ts";
import { REPO, tempProject } from "./temp-project.ts";

const PIPELINE = `version: 1
default_profile: demo
profiles:
  demo:
    params: params/demo.yaml
stages:
  a:
    module: stages/a.ts
    params: {n: "\${n}"}
  b:
    module: stages/b.ts
    params: {n: "\${n}"}
`;
const schema = (version: number) => `import { z } from "zod";
export const positive = z.number().positive();
export const VERSION = ${version};
`;
const contract = (name: string) => `import { z } from "zod";
import { positive, VERSION } from "./lib/schema.ts";
export const contract = { name: "${name}", version: VERSION, params: z.strictObject({ n: positive }) };
`;

async function project() {
  return tempProject(
    { "pipeline.yaml": PIPELINE, "params/demo.yaml": "n: 3\n", "stages/lib/schema.ts": schema(1), "stages/a.contract.ts": contract("a"), "stages/b.contract.ts": contract("b") },
    ["stages/a.ts", "stages/b.ts"],
    { nodeModules: true },
  );
}

test("the contract beside a stage module", () => {
  assert.is(contractPathFor("stages/eval.ts"), "stages/eval.contract.ts");
  assert.is(contractPathFor("stages/x.mjs"), "stages/x.contract.mjs");
  assert.is(contractPathFor("stages/noext"), "stages/noext.contract.ts");
});

test("bundled once into cache/build/contract-<sha256>.mjs; a second load runs no esbuild", async () => {
  const p = await project();
  try {
    const before = contractStats.builds;
    const first = await loadPipeline(p.root);
    assert.is(contractStats.builds - before, 2);
    assert.is(first.instances.get("a")!.version, 1);
    const files = (await readdir(join(p.root, "cache", "build"))).sort();
    assert.is(files.length, 3);
    assert.match(files[0]!, /^contract-[0-9a-f]{64}\.mjs$/);
    assert.is(files[2], "contracts.json");
    const index = JSON.parse(await readFile(join(p.root, "cache", "build", "contracts.json"), "utf8"));
    assert.equal(Object.keys(index.entries).sort(), ["stages/a.contract.ts", "stages/b.contract.ts"]);
    assert.equal(Object.keys(index.entries["stages/a.contract.ts"].sigs).sort(), ["stages/a.contract.ts", "stages/lib/schema.ts"]);
    assert.equal(index.entries["stages/a.contract.ts"].imports, ["zod"]);

    await loadPipeline(p.root);
    await loadPipeline(p.root, { profile: "demo" });
    assert.is(contractStats.builds - before, 2, "warm loads reuse the bundles");
  } finally {
    await p.cleanup();
  }
});

test("an edit anywhere in a contract's closure rebuilds it (a new version shows)", async () => {
  const p = await project();
  try {
    await loadPipeline(p.root);
    const before = contractStats.builds;
    await p.write("stages/lib/schema.ts", schema(2));
    const pl = await loadPipeline(p.root);
    assert.is(contractStats.builds - before, 2, "both contracts import the edited file");
    assert.is(pl.instances.get("b")!.version, 2);
    await p.write("stages/a.contract.ts", contract("a").replace("positive }", "positive, m: z.number().optional() }"));
    await loadPipeline(p.root);
    assert.is(contractStats.builds - before, 3, "only a is rebuilt");
    await loadPipeline(p.root);
    assert.is(contractStats.builds - before, 3);
  } finally {
    await p.cleanup();
  }
});

test("a file modified just before a build is not trusted: rebuilt until it is older than the racy window", async () => {
  const p = await project();
  try {
    await writeFile(join(p.root, "stages", "a.contract.ts"), contract("a"));
    const before = contractStats.builds;
    await loadPipeline(p.root);
    await loadPipeline(p.root);
    assert.is(contractStats.builds - before, 3, "a (fresh mtime) twice, b once");
    const old = new Date(Date.now() - 60_000);
    await utimes(join(p.root, "stages", "a.contract.ts"), old, old);
    await loadPipeline(p.root);
    await loadPipeline(p.root);
    assert.is(contractStats.builds - before, 4);
  } finally {
    await p.cleanup();
  }
});

test("the five stage contracts are light: their closures import only zod", async () => {
  const p = await tempProject({}, [], { nodeModules: true });
  try {
    for (const d of ["src", "stages"]) await cp(join(REPO, d), join(p.root, d), { recursive: true });
    await copyFile(join(REPO, "pipeline.yaml"), join(p.root, "pipeline.yaml"));
    const modules = ["download", "cache-features", "train-heads", "eval", "tables"].map((s) => `stages/${s}.ts`);
    const loaded = await loadContracts(p.root, new Map(modules.map((m) => [m, { src: null as never, start: 0, end: 0 }])));
    for (const m of modules) {
      const c = loaded.get(m);
      assert.ok(c, `${m} has a contract`);
      assert.equal(c!.imports, ["zod"], `${m}: ${c!.imports.join(", ")}`);
      assert.is(c!.contract.name, m.slice("stages/".length, -3));
      assert.is(c!.contract.version, 1);
    }
  } finally {
    await p.cleanup();
  }
});

test.run();
