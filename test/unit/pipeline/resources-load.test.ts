// `resources:` in pipeline.yaml through the loader: defaults, literal and interpolated values, errors
// at the place the value was written, and resources kept out of fingerprints.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { copyFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { loadPipeline } from "../../../src/pipeline/load.ts";
import { ConfigError } from "../../../src/errors.ts";
import { DigestService } from "../../../src/hash/digest.ts";
import { Hasher } from "../../../src/hash/fingerprint.ts";
import { REPO, rejection, tempProject } from "./temp-project.ts";

const HEAD = `version: 1
default_profile: demo
profiles:
  demo:
    params: params/demo.yaml
stages:
`;
const PARAMS = `n: 4
big: {cpus: 8, gpus: 1, memory: 64G, time: 24h, options: {partition: gpu}}
bad: {cpus: 2, memory: 16 gigs}
list: [{key: a, mem: 1G}, {key: b, mem: 2G}]
`;

async function withProject<T>(stages: string, params: string, fn: (root: string) => Promise<T>): Promise<T> {
  const p = await tempProject({ "pipeline.yaml": HEAD + stages, "params/demo.yaml": params }, ["stages/s.ts"]);
  try {
    return await fn(p.root);
  } finally {
    await p.cleanup();
  }
}
const load = (stages: string, params = PARAMS) => withProject(stages, params, (root) => loadPipeline(root));
async function loadError(stages: string, params = PARAMS): Promise<ConfigError> {
  return withProject(stages, params, async (root) => {
    const err = await rejection(loadPipeline(root));
    assert.instance(err, ConfigError, `expected a ConfigError, got ${err.stack}`);
    assert.is((err as ConfigError).exitCode, 2);
    return err as ConfigError;
  });
}

test("a stage without resources: every instance gets the defaults", async () => {
  const p = await load(`  s:\n    module: stages/s.ts\n    foreach: \${list}\n`);
  for (const id of ["s@a", "s@b"]) assert.equal(p.instances.get(id)!.resources, { cpus: 1, memoryMb: null, gpus: 0, timeMinutes: null, options: {} });
});

test("literal values; per-key interpolation (a number, a string that holds one, the fan-out item)", async () => {
  const p = await load(`  lit:
    module: stages/s.ts
    resources: {cpus: 2, memory: 512M, time: "1-00:00:00", options: {qos: normal}}
  keyed:
    module: stages/s.ts
    foreach: \${list}
    resources:
      cpus: \${n}
      gpus: "\${n}"
      memory: \${item.mem}
      time: \${n}h
`);
  assert.equal(p.instances.get("lit")!.resources, { cpus: 2, memoryMb: 512, gpus: 0, timeMinutes: 1440, options: { qos: "normal" } });
  assert.equal(p.instances.get("keyed@a")!.resources, { cpus: 4, memoryMb: 1024, gpus: 4, timeMinutes: 240, options: {} });
  assert.equal(p.instances.get("keyed@b")!.resources!.memoryMb, 2048);
});

test("the whole map from the profile's params (a whole ${...} keeps its type)", async () => {
  const p = await load(`  s:\n    module: stages/s.ts\n    resources: \${big}\n`);
  assert.equal(p.instances.get("s")!.resources, { cpus: 8, memoryMb: 65536, gpus: 1, timeMinutes: 1440, options: { partition: "gpu" } });
});

test("a bad value written in pipeline.yaml: its position, a caret under it, what to write instead", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    resources:\n      memory: 16 gigs\n`);
  assert.is(
    e.message,
    'pipeline.yaml:10:15: resources.memory: the string "16 gigs" is not a size; write e.g. 16G or 512M (a plain number is MB) (s)\n 10 |       memory: 16 gigs\n    |               ^^^^^^^',
  );
  assert.match(e.hint!, /^resources: takes cpus, memory, gpus, time, options/);
});

test("an unknown key: at the key, with the known keys", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    resources: {cpus: 2, mem: 4G}\n`);
  assert.is(
    e.message,
    'pipeline.yaml:9:26: resources: unknown key "mem"; known keys: cpus, memory, gpus, time, options (s)\n 9 |     resources: {cpus: 2, mem: 4G}\n   |                          ^^^',
  );
});

test("a bad value from the params file points into the params file, once for every instance sharing it", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    foreach: \${list}\n    resources: \${bad}\n`);
  assert.is(
    e.message,
    'params/demo.yaml:3:24: resources.memory: the string "16 gigs" is not a size; write e.g. 16G or 512M (a plain number is MB) (s@a and 1 other s instances)\n 3 | bad: {cpus: 2, memory: 16 gigs}\n   |                        ^^^^^^^',
  );
});

test("every distinct problem is listed, in file order", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    resources: {cpus: 0, time: "1:30", gpus: one}\n`);
  const heads = e.message.split("\n").filter((l) => l.startsWith("pipeline.yaml:"));
  assert.equal(heads, [
    "pipeline.yaml:9:23: resources.cpus: number 0 is not a whole number >= 1; write e.g. cpus: 4 (s)",
    'pipeline.yaml:9:32: resources.time: the string "1:30" is ambiguous (minutes:seconds or hours:minutes?); write e.g. 24h, 90m, 1-00:00:00 or 02:30:00 (s)',
    'pipeline.yaml:9:46: resources.gpus: the string "one" is not a whole number >= 0; write e.g. gpus: 1 (s)',
  ]);
});

test("not a map: says what resources takes; a missing interpolation key is the usual error", async () => {
  const e = await loadError(`  s:\n    module: stages/s.ts\n    resources: lots\n`);
  assert.match(e.message, /^pipeline\.yaml:9:16: resources: expected a map of cpus, memory, gpus, time, options, got the string "lots"; write e\.g\. \{cpus: 4, memory: 16G\} \(s\)/);
  const m = await loadError(`  s:\n    module: stages/s.ts\n    resources:\n      cpus: \${nope}\n`);
  assert.match(m.message, /^pipeline\.yaml:10:13: cannot resolve \$\{nope\}: params \(params\/demo\.yaml\) has no key "nope"/);
});

test("resources are not part of the fingerprint: changing cpus, memory or gpus does not make outputs stale", async () => {
  const stages = (res: string) => `  s:\n    module: stages/s.ts\n    params:\n      n: \${n}\n    resources: ${res}\n    outs: {o: artifacts/o}\n`;
  const digest = (res: string) =>
    withProject(stages(res), PARAMS, async (root) => {
      const p = await loadPipeline(root);
      const inst = p.instances.get("s")!;
      const fp = await new Hasher(root, DigestService.inMemory({ pool: null })).fingerprint(inst);
      return { resources: inst.resources, digest: fp.digest, parts: JSON.stringify(fp.parts) };
    });
  const one = await digest("{cpus: 1}");
  const eight = await digest("{cpus: 8, memory: 64G, gpus: 2, time: 24h, options: {partition: gpu}}");
  assert.is.not(one.resources!.cpus, eight.resources!.cpus);
  assert.is(eight.digest, one.digest);
  assert.not.match(eight.parts, /cpus|partition|65536/);
});

test("the real pipeline.yaml: demo asks 1 cpu everywhere and no GPU; paper declares the cluster's sizes", async () => {
  const modules = ["stages/download.ts", "stages/cache-features.ts", "stages/train-heads.ts", "stages/eval.ts", "stages/tables.ts"];
  const p = await tempProject({}, modules);
  try {
    await mkdir(join(p.root, "params"));
    for (const f of ["pipeline.yaml", "params/demo.yaml", "params/paper.yaml"]) await copyFile(join(REPO, f), join(p.root, f));
    const demo = await loadPipeline(p.root, { contracts: false });
    for (const inst of demo.instances.values()) assert.equal(inst.resources, { cpus: 1, memoryMb: null, gpus: 0, timeMinutes: null, options: {} }, inst.id);
    const paper = await loadPipeline(p.root, { profile: "paper", contracts: false });
    const first = (stage: string) => paper.instances.get(paper.stages.get(stage)!.instanceIds[0]!)!.resources;
    assert.equal(first("cache-features"), { cpus: 8, memoryMb: 64 * 1024, gpus: 1, timeMinutes: 24 * 60, options: {} });
    assert.equal(first("train-heads"), { cpus: 8, memoryMb: 32 * 1024, gpus: 1, timeMinutes: 12 * 60, options: {} });
    assert.equal(first("eval"), { cpus: 4, memoryMb: 16 * 1024, gpus: 0, timeMinutes: null, options: {} });
    assert.equal(first("download"), { cpus: 1, memoryMb: null, gpus: 0, timeMinutes: null, options: {} });
    assert.equal(first("tables"), { cpus: 1, memoryMb: null, gpus: 0, timeMinutes: null, options: {} });
  } finally {
    await p.cleanup();
  }
});

test.run();
