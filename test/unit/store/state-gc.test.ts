// `sed-pipe gc` for the state folders (src/store/gc.ts, src/runner/current-state.ts): tree records,
// bundles and pipeline memos nothing current refers to are removed, once older than the grace period;
// heads before the entries files they name; names sed-pipe does not write are never touched. Planned
// on literals; then once on a real project (records written by the digest service, bundles by the
// runner's bundler, a cluster job's script) with the real scan and removal.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, readdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { treeKey } from "../../../src/hash/tree-cache.ts";
import { DigestService } from "../../../src/hash/digest.ts";
import { applyStatePlan, planStateGc, scanState, STATE_GRACE_MS, type StateFile, type StateKeep } from "../../../src/store/gc.ts";
import { bundlesInScript, currentState } from "../../../src/runner/current-state.ts";
import { stageBundle } from "../../../src/runner/stage-bundle.ts";
import { memoFile } from "../../../src/pipeline/memo.ts";
import { SLURM_JOBS_FILE } from "../../../src/runner/slurm/job-store.ts";
import { tempProject } from "../pipeline/temp-project.ts";

const NOW = 1_800_000_000_000;
const OLD = NOW - STATE_GRACE_MS - 1;
const YOUNG = NOW - 1000;
const hex = (c: string, n: number) => c.repeat(n);

function head(path: string, entries: string, mtimeMs = OLD): StateFile {
  return { dir: "state/trees", name: `${treeKey(path)}.json`, size: 100, mtimeMs, head: { path, entries } };
}
const entriesOf = (path: string, d: string) => `${treeKey(path)}-${hex(d, 16)}.entries.json`;
const file = (dir: StateFile["dir"], name: string, mtimeMs = OLD, size = 10): StateFile => ({ dir, name, size, mtimeMs });
const keepAll = (o: Partial<StateKeep> = {}): StateKeep => ({ paths: new Set(), bundles: new Set(), memos: new Set(), ...o });
const removed = (files: StateFile[], keep: StateKeep) => planStateGc(files, keep, NOW).remove.map((r) => `${r.dir}/${r.name}`);

test("tree records: a record of a folder some instance names is kept with its entries; others go, head before entries", () => {
  const kept = "/w/artifacts/data";
  const gone = "/w/artifacts/old";
  const files = [
    file("state/trees", entriesOf(gone, "b")),
    file("state/trees", entriesOf(kept, "a")),
    file("state/trees", entriesOf(kept, "0")), // an older entries file of the kept folder, named by nothing
    head(gone, entriesOf(gone, "b")),
    head(kept, entriesOf(kept, "a")),
  ];
  const plan = planStateGc(files, keepAll({ paths: new Set([kept]) }), NOW);
  assert.equal(
    plan.remove.map((r) => r.name),
    [`${treeKey(gone)}.json`, entriesOf(gone, "b"), entriesOf(kept, "0")],
  );
  assert.match(plan.remove[0]!.why, /no instance of any profile names \/w\/artifacts\/old/);
  assert.is(plan.kept, 2);
});

test("grace: nothing younger than the grace period is removed, and a young head keeps its entries", () => {
  const gone = "/w/artifacts/old";
  const files = [head(gone, entriesOf(gone, "b"), YOUNG), file("state/trees", entriesOf(gone, "b")), file("build", `${hex("c", 64)}.mjs`, YOUNG), file("state/trees", `.${treeKey(gone)}.json.tmp-12-ab12`, YOUNG)];
  assert.equal(removed(files, keepAll()), []);
  assert.equal(removed(files.map((f) => ({ ...f, mtimeMs: OLD })), keepAll()), [
    `state/trees/${treeKey(gone)}.json`,
    `state/trees/${entriesOf(gone, "b")}`,
    `build/${hex("c", 64)}.mjs`,
    `state/trees/.${treeKey(gone)}.json.tmp-12-ab12`,
  ]);
});

test("damaged or foreign heads go even when the current paths are unknown; unknown paths keep every good record", () => {
  const p = "/w/a";
  const damaged: StateFile = { ...head(p, entriesOf(p, "a")), head: null };
  const foreign: StateFile = { ...head(p, entriesOf(p, "a")), name: `${hex("e", 32)}.json` };
  const good = head("/w/b", entriesOf("/w/b", "a"));
  const plan = removed([damaged, foreign, good, file("state/trees", entriesOf("/w/b", "a"))], keepAll({ paths: null }));
  assert.equal(plan, [`state/trees/${treeKey(p)}.json`, `state/trees/${hex("e", 32)}.json`]);
});

test("bundles: the current stages', the contracts index's and running jobs' are kept; unknown keeps all; other names are never touched", () => {
  const cur = `${hex("a", 64)}.mjs`;
  const old = `${hex("b", 64)}.mjs`;
  const contract = `contract-${hex("c", 64)}.mjs`;
  const oldContract = `contract-${hex("d", 64)}.mjs`;
  const files = [file("build", cur), file("build", old), file("build", contract), file("build", oldContract), file("build", "contracts.json"), file("build", "notes.txt"), file("build", ".x.mjs.tmp-1-ff")];
  assert.equal(removed(files, keepAll({ bundles: new Set([cur, contract]) })), [`build/${old}`, `build/${oldContract}`, "build/.x.mjs.tmp-1-ff"]);
  assert.equal(removed(files, keepAll({ bundles: null })), ["build/.x.mjs.tmp-1-ff"]);
});

test("pipeline memos: kept for the declared profiles and the default; unknown keeps all", () => {
  const files = [file("state/pipelines", `${hex("1", 16)}.json`), file("state/pipelines", `${hex("2", 16)}.json`), file("state/pipelines", "README")];
  assert.equal(removed(files, keepAll({ memos: new Set([`${hex("1", 16)}.json`]) })), [`state/pipelines/${hex("2", 16)}.json`]);
  assert.equal(removed(files, keepAll({ memos: null })), []);
});

test("a job script's bundles", () => {
  const script = `#!/bin/bash\n#SBATCH --job-name=x\n/usr/bin/node --enable-source-maps /w/cache/build/${hex("f", 64)}.mjs --sed-pipe-job /w/cache/slurm/r-1/group.json\n`;
  assert.equal(bundlesInScript(script), [`${hex("f", 64)}.mjs`]);
  assert.equal(bundlesInScript("node /w/src/runner/worker.ts"), []);
});

const PIPELINE = `version: 1
default_profile: demo
profiles:
  demo:
    params: params/demo.yaml
  wide:
    params: params/wide.yaml
stages:
  make:
    module: stages/make.ts
    foreach: \${items}
    params: {n: "\${item}"}
    outs:
      out: artifacts/make/\${item}
`;

/** Sets a file's mtime beyond the grace period (what `gc` removes must have been there a while). */
async function age(abs: string): Promise<void> {
  const t = new Date(Date.now() - STATE_GRACE_MS - 60_000);
  await utimes(abs, t, t);
}

test("on a real project: records of folders no profile names, old stage bundles and stray memos go; the rest stays and still answers", async () => {
  const p = await tempProject({ "pipeline.yaml": PIPELINE, "params/demo.yaml": "items: [a]\n", "params/wide.yaml": "items: [a, b]\n" }, ["stages/make.ts"], { nodeModules: true });
  try {
    const cacheDir = join(p.root, "cache");
    // Tree records: artifacts/make/a (demo and wide), artifacts/make/b (wide only), artifacts/make/c (no profile).
    for (const item of ["a", "b", "c"]) await p.write(`artifacts/make/${item}/x.txt`, item);
    const ds = await DigestService.open(p.root, { pool: null, listing: null });
    for (const item of ["a", "b", "c"]) await ds.digestPath(join(p.root, "artifacts/make", item));
    await ds.save();
    // Bundles: the current stage's, an old one, one a cluster job on record still runs.
    const current = await stageBundle(join(p.root, "stages/make.ts"), cacheDir);
    const jobBundle = `${hex("9", 64)}.mjs`;
    await mkdir(join(cacheDir, "build"), { recursive: true });
    for (const name of [current.name, `${hex("8", 64)}.mjs`, jobBundle]) await writeFile(join(cacheDir, "build", name), "bundle");
    const jobDir = join(cacheDir, "slurm", "r-1");
    await mkdir(jobDir, { recursive: true });
    await writeFile(join(jobDir, "job.sh"), `#!/bin/bash\nnode ${join(cacheDir, "build", jobBundle)} --sed-pipe-job ${join(jobDir, "group.json")}\n`);
    await writeFile(join(cacheDir, SLURM_JOBS_FILE), JSON.stringify({ version: 1, jobs: { k: { instanceId: "make@a", fingerprint: "f", jobId: "7", dir: join(jobDir, "0"), jobDir, outs: {}, submittedAt: "", attempt: 1 } } }));
    // Memos: the default profile's, one of a profile no longer declared.
    await mkdir(join(cacheDir, "state", "pipelines"), { recursive: true });
    const stray = memoFile(p.root, "gone");
    for (const f of [memoFile(p.root, null), stray]) await writeFile(f, "{}");
    for (const dir of ["state/trees", "build", "state/pipelines"]) for (const name of await readdir(join(cacheDir, dir))) await age(join(cacheDir, dir, name));

    const warnings: string[] = [];
    const keep = await currentState(p.root, (m) => warnings.push(m));
    assert.equal(warnings, []);
    const plan = planStateGc(await scanState(cacheDir), keep, Date.now());
    const names = plan.remove.map((r) => `${r.dir}/${r.name}`).sort();
    const c = join(p.root, "artifacts/make/c");
    assert.equal(names.filter((n) => n.startsWith("state/trees/")).length, 2, names.join("\n"));
    assert.ok(names.includes(`state/trees/${treeKey(c)}.json`), "the head of the folder no profile names");
    assert.ok(names.includes(`build/${hex("8", 64)}.mjs`), "the old stage bundle");
    assert.ok(names.includes(`state/pipelines/${stray.slice(stray.lastIndexOf("/") + 1)}`), "the stray memo");
    assert.is(names.length, 4, names.join("\n"));
    await applyStatePlan(cacheDir, plan);
    assert.equal((await readdir(join(cacheDir, "build"))).sort(), [current.name, jobBundle].sort());
    assert.equal(planStateGc(await scanState(cacheDir), keep, Date.now()).remove, [], "a second gc finds nothing");

    // What stays still answers: the kept records are whole (no re-walk), the removed one is simply gone.
    const after = await DigestService.open(p.root, { pool: null, listing: null });
    for (const item of ["a", "b"]) await after.digestPath(join(p.root, "artifacts/make", item));
    assert.equal([after.stats.treesByFiles, after.stats.treesRebuilt], [2, 0]);
    await after.digestPath(c);
    assert.is(after.stats.treesRebuilt, 1);
  } finally {
    await p.cleanup();
  }
});

test("a pipeline that does not load keeps every record, bundle and memo, and says why", async () => {
  const p = await tempProject({ "pipeline.yaml": PIPELINE.replace("module: stages/make.ts", "module: stages/nope.ts"), "params/demo.yaml": "items: [a]\n", "params/wide.yaml": "items: [a]\n" }, ["stages/make.ts"]);
  try {
    const warnings: string[] = [];
    const keep = await currentState(p.root, (m) => warnings.push(m));
    assert.equal(keep, { paths: null, bundles: null, memos: null });
    assert.is(warnings.length, 1);
    assert.match(warnings[0]!, /tree records, stage bundles and pipeline memos are kept: the pipeline does not load .*stages\/nope\.ts/);
  } finally {
    await p.cleanup();
  }
});

test.run();
