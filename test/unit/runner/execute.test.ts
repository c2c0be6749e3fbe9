import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, readFile, readdir, rm, writeFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import { executeRun, type ExecuteOptions } from "../../../src/runner/execute.ts";
import type { RunnerEvent } from "../../../src/runner/events.ts";
import { ContentStore } from "../../../src/store/cas.ts";
import { OutputDigester } from "../../../src/store/digest.ts";
import { LockStore } from "../../../src/store/lock-file.ts";
import type { Pipeline } from "../../../src/pipeline/types.ts";
import { fakeFingerprinter, fakePlanner, makePipeline } from "../../helpers/fake-engine.ts";
import { tempDir, removeDir, withTimeout } from "../../helpers/tmp.ts";

const STAGES: Record<string, string> = {
  "gen.ts": `import { appendFileSync, writeFileSync } from "node:fs";
export async function run(ctx) {
  appendFileSync(ctx.root + "/counts.txt", ctx.instanceId + "\\n");
  ctx.log("generating " + ctx.params.n);
  ctx.progress({ phase: "gen", done: 1, total: 1 });
  writeFileSync(ctx.outs.out, JSON.stringify({ n: ctx.params.n }));
}`,
  "double.ts": `import { appendFileSync, readFileSync, mkdirSync, writeFileSync } from "node:fs";
export async function run(ctx) {
  appendFileSync(ctx.root + "/counts.txt", ctx.instanceId + "\\n");
  const { n } = JSON.parse(readFileSync(ctx.deps.in, "utf8"));
  mkdirSync(ctx.outs.out);
  writeFileSync(ctx.outs.out + "/value.txt", String(2 * n));
}`,
  "fail.ts": `import { appendFileSync } from "node:fs";
export async function run(ctx) {
  appendFileSync(ctx.root + "/counts.txt", ctx.instanceId + "\\n");
  ctx.log("about to fail");
  throw new Error("boom from stage");
}`,
  "editor.ts": `import { appendFileSync, writeFileSync } from "node:fs";
export async function run(ctx) {
  appendFileSync(ctx.deps.src, "edited while running\\n");
  writeFileSync(ctx.outs.out, "x");
}`,
  "lazy.ts": `export async function run(ctx) { ctx.log("writing nothing"); }`,
  "wait.ts": `import { appendFileSync, writeFileSync } from "node:fs";
export async function run(ctx) {
  appendFileSync(ctx.root + "/counts.txt", ctx.instanceId + "\\n");
  writeFileSync(ctx.outs.out, "partial");
  writeFileSync(ctx.root + "/started", "1");
  await new Promise((resolve, reject) => {
    ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason));
  });
}`,
};

async function project(): Promise<string> {
  const root = await tempDir("sed-pipe-runner-");
  await mkdir(join(root, "stages"));
  for (const [f, src] of Object.entries(STAGES)) await writeFile(join(root, "stages", f), src);
  return root;
}

function chain(root: string, n = 3): Pipeline {
  return makePipeline(root, [
    { id: "gen", module: "stages/gen.ts", params: { n }, deps: {}, outs: { out: "artifacts/gen.json" } },
    { id: "double", module: "stages/double.ts", params: {}, deps: { in: "artifacts/gen.json" }, outs: { out: "artifacts/double" } },
  ]);
}

async function counts(root: string): Promise<string[]> {
  return (await readFile(join(root, "counts.txt"), "utf8").catch(() => "")).split("\n").filter(Boolean);
}

async function run(p: Pipeline, extra: Partial<ExecuteOptions> = {}) {
  const cacheDir = join(p.root, "cache");
  const events: RunnerEvent[] = [];
  const digester = new OutputDigester(join(cacheDir, "state", "outputs.json"));
  const result = await executeRun({
    pipeline: p,
    order: [...p.instances.keys()],
    planner: fakePlanner,
    fingerprinter: fakeFingerprinter(p.root),
    store: new ContentStore(cacheDir, digester),
    digester,
    lock: await LockStore.open(p.root),
    cacheDir,
    jobs: 2,
    keepGoing: false,
    force: [],
    dryRun: false,
    backend: "cpu",
    signal: new AbortController().signal,
    emit: (e) => events.push(e),
    graceMs: 2000,
    ...extra,
  });
  return { result, events };
}

test("runs a chain, then a second run executes nothing; deleted artifacts are restored", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        const p = chain(root);
        const r1 = await run(p);
        assert.is(r1.result.outcome, "ok");
        assert.equal(r1.result.counts.ran, 2);
        assert.is(await readFile(join(root, "artifacts/double/value.txt"), "utf8"), "6");
        assert.ok(r1.events.some((e) => e.type === "progress" && e.id === "gen" && e.progress.phase === "gen"));
        assert.ok(r1.events.some((e) => e.type === "log" && e.line === "generating 3"));
        const lock = JSON.parse(await readFile(join(root, "pipeline.lock"), "utf8"));
        assert.equal(Object.keys(lock.instances), ["double", "gen"]);
        assert.is(lock.instances.double.outs.out.kind, "dir");
        assert.match(await readFile(join(root, "cache/logs/gen.log"), "utf8"), /generating 3/);

        const r2 = await run(p);
        assert.equal(r2.result.counts, { ran: 0, skipped: 2, restored: 0, failed: 0, blocked: 0 });

        await rm(join(root, "artifacts"), { recursive: true });
        const r3 = await run(p);
        assert.equal(r3.result.counts, { ran: 0, skipped: 0, restored: 2, failed: 0, blocked: 0 });
        assert.is(await readFile(join(root, "artifacts/double/value.txt"), "utf8"), "6");
        assert.equal(await counts(root), ["gen", "double"]);
        // Temp outputs of the runs are gone.
        assert.equal(await readdir(join(root, "cache/tmp")), []);
        // Leftovers of a killed run are cleared by the next run.
        await mkdir(join(root, "cache/tmp/dead-run/x"), { recursive: true });
        await run(p);
        assert.equal(await readdir(join(root, "cache/tmp")), []);
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("a param change reruns the stage; early cutoff skips a downstream whose input did not change", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        await run(chain(root, 3));
        // A different param that produces identical output bytes: gen reruns, double is cut off.
        const p = chain(root, 3);
        p.instances.get("gen")!.params = { n: 3, note: "cosmetic" };
        await writeFile(join(root, "stages/gen.ts"), STAGES["gen.ts"]!);
        const r = await run(p);
        assert.equal(r.result.steps.map((s) => s.action), ["run", "run"]);
        assert.equal(r.result.counts.ran, 1);
        assert.equal(r.result.counts.skipped, 1);
        assert.ok(r.events.some((e) => e.type === "instance-done" && e.id === "double" && e.action === "skipped" && /early cutoff/.test(e.reason)));
        const r2 = await run(chain(root, 4));
        assert.equal(r2.result.counts.ran, 2);
        assert.is(await readFile(join(root, "artifacts/double/value.txt"), "utf8"), "8");
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("a failing stage fails only itself under --keep-going, with log tail; no lock entry", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        const p = makePipeline(root, [
          { id: "bad", module: "stages/fail.ts", params: {}, deps: {}, outs: { out: "artifacts/bad.json" } },
          { id: "after", module: "stages/double.ts", params: {}, deps: { in: "artifacts/bad.json" }, outs: { out: "artifacts/after" } },
          { id: "gen", module: "stages/gen.ts", params: { n: 1 }, deps: {}, outs: { out: "artifacts/gen.json" } },
        ]);
        const r = await run(p, { keepGoing: true, jobs: 1 });
        assert.is(r.result.outcome, "failed");
        assert.equal(r.result.counts, { ran: 1, skipped: 0, restored: 0, failed: 1, blocked: 1 });
        const failed = r.events.find((e) => e.type === "instance-failed");
        assert.ok(failed && failed.type === "instance-failed");
        if (failed?.type === "instance-failed") {
          assert.is(failed.error, "boom from stage");
          assert.ok(failed.tail.includes("about to fail"));
          assert.is(failed.logPath, "cache/logs/bad.log");
        }
        assert.ok(r.events.some((e) => e.type === "instance-blocked" && e.id === "after" && e.because === "bad"));
        const lock = JSON.parse(await readFile(join(root, "pipeline.lock"), "utf8"));
        assert.equal(Object.keys(lock.instances), ["gen"]);

        // Without --keep-going nothing new starts after the failure.
        await rm(join(root, "counts.txt"));
        await rm(join(root, "pipeline.lock"));
        const r2 = await run(p, { keepGoing: false, jobs: 1 });
        assert.equal(r2.result.counts.ran, 0);
        assert.equal(await counts(root), ["bad"]);
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("a stage that writes no out fails with a clear message", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        const p = makePipeline(root, [{ id: "lazy", module: "stages/lazy.ts", params: {}, deps: {}, outs: { result: "artifacts/r.json" } }]);
        const r = await run(p);
        const f = r.events.find((e) => e.type === "instance-failed");
        assert.is(f?.type === "instance-failed" && f.error, "stage did not write out result (artifacts/r.json)");
        assert.not.ok(await readFile(join(root, "artifacts/r.json")).catch(() => null));
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("abort: the worker is stopped, no partial output, no lock entry, outcome interrupted", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        const p = makePipeline(root, [{ id: "wait", module: "stages/wait.ts", params: {}, deps: {}, outs: { out: "artifacts/w.txt" } }]);
        const ac = new AbortController();
        const timer = setInterval(async () => {
          if (await readFile(join(root, "started")).catch(() => null)) {
            clearInterval(timer);
            ac.abort();
          }
        }, 50);
        const r = await run(p, { signal: ac.signal });
        clearInterval(timer);
        assert.is(r.result.outcome, "interrupted");
        assert.not.ok(await readFile(join(root, "artifacts/w.txt")).catch(() => null));
        assert.not.ok(await readFile(join(root, "pipeline.lock")).catch(() => null));
        assert.equal(await readdir(join(root, "cache/tmp")), []);
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("kill -9 of a worker fails that instance; the next run redoes it", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        const p = makePipeline(root, [{ id: "wait", module: "stages/wait.ts", params: {}, deps: {}, outs: { out: "artifacts/w.txt" } }]);
        const timer = setInterval(() => {}, 1000);
        const r = await run(p, {
          onWorkerSpawn: (_id, pid) => {
            const t = setInterval(async () => {
              if (await readFile(join(root, "started")).catch(() => null)) {
                clearInterval(t);
                process.kill(pid, "SIGKILL");
              }
            }, 50);
          },
        });
        clearInterval(timer);
        assert.is(r.result.outcome, "failed");
        const f = r.events.find((e) => e.type === "instance-failed");
        assert.match(f?.type === "instance-failed" ? f.error : "", /killed by SIGKILL/);
        assert.not.ok(await readFile(join(root, "pipeline.lock")).catch(() => null));
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("a corrupt cache object is never restored: warning, then the stage runs", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        const p = chain(root);
        await run(p);
        const lock = JSON.parse(await readFile(join(root, "pipeline.lock"), "utf8"));
        const store = new ContentStore(join(root, "cache"));
        const obj = store.objectPath(lock.instances.gen.outs.out.digest);
        await rm(join(root, "artifacts"), { recursive: true });
        await chmod(obj, 0o644);
        await writeFile(obj, '{"n":999}');
        const r = await run(p);
        assert.ok(r.events.some((e) => e.type === "warning" && /corrupt/.test(e.message)));
        assert.equal(r.result.counts, { ran: 1, skipped: 0, restored: 1, failed: 0, blocked: 0 });
        assert.is(await readFile(join(root, "artifacts/gen.json"), "utf8"), '{"n":3}');
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("an input edited while the stage ran is not recorded: the instance fails and stays stale", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        await writeFile(join(root, "input.txt"), "v1\n");
        const p = makePipeline(root, [{ id: "ed", module: "stages/editor.ts", params: {}, deps: { src: "input.txt" }, outs: { out: "artifacts/ed.txt" } }]);
        const r = await run(p);
        const f = r.events.find((e) => e.type === "instance-failed");
        assert.match(f?.type === "instance-failed" ? f.error : "", /inputs changed while the stage ran \(dep input.txt\)/);
        assert.not.ok(await readFile(join(root, "pipeline.lock")).catch(() => null));
        assert.not.ok(await readFile(join(root, "artifacts/ed.txt")).catch(() => null));
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test.run();
