import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, readFile, readdir, rm, writeFile, chmod } from "node:fs/promises";
import { join } from "node:path";
import { executeRun, type ExecuteOptions } from "../../../src/runner/execute.ts";
import type { RunnerEvent } from "../../../src/runner/events.ts";
import { ContentStore } from "../../../src/store/cas.ts";
import { LockStore } from "../../../src/store/lock-file.ts";
import { DigestService } from "../../../src/hash/digest.ts";
import { Hasher } from "../../../src/hash/fingerprint.ts";
import { planner } from "../../../src/runner/workspace.ts";
import type { Pipeline, Resources } from "../../../src/pipeline/types.ts";
import { makePipeline } from "../../helpers/literal-pipeline.ts";
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
  "maybe.ts": `import { appendFileSync, writeFileSync } from "node:fs";
let runs = 0;
export async function run(ctx) {
  runs++;
  appendFileSync(ctx.root + "/counts.txt", ctx.instanceId + "\\n");
  if (ctx.params.fail) throw new Error("asked to fail");
  writeFileSync(ctx.outs.out, JSON.stringify({ pid: process.pid, runs }));
}`,
  "listdir.ts": `import { readdirSync, writeFileSync } from "node:fs";
export async function run(ctx) {
  writeFileSync(ctx.outs.out, readdirSync(ctx.deps.in).join(","));
}`,
  "config-error.ts": `export async function run(ctx) {
  const e = new Error("params.lr must be positive (got -1)");
  e.name = "ConfigError";
  e.hint = "fix lr in params/demo.yaml";
  e.exitCode = 2;
  throw e;
}`,
  "res.ts": `import { writeFileSync } from "node:fs";
export async function run(ctx) {
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, 150));
  writeFileSync(ctx.outs.out, JSON.stringify({ cores: ctx.settings.cores, blasThreads: ctx.settings.blasThreads, t0, t1: Date.now() }));
}`,
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
  // The real planner and hasher: the runner is tested against what it runs with.
  const digests = await DigestService.open(p.root);
  const result = await executeRun({
    pipeline: p,
    order: [...p.instances.keys()],
    planner,
    fingerprinter: new Hasher(p.root, digests, { backend: "cpu" }),
    store: new ContentStore(cacheDir, digests),
    digests,
    lock: await LockStore.open(p.root),
    cacheDir,
    jobs: 2,
    keepGoing: false,
    force: [],
    dryRun: false,
    backend: "cpu",
    workerEnv: process.env,
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
            let killed = false;
            // Ticks overlap on a busy machine (each awaits a read): kill once.
            const t = setInterval(async () => {
              if (!killed && (await readFile(join(root, "started")).catch(() => null)) && !killed) {
                killed = true;
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
        assert.match(f?.type === "instance-failed" ? f.error : "", /inputs changed while the stage ran \(dep input.txt changed\); run again/);
        assert.not.ok(await readFile(join(root, "pipeline.lock")).catch(() => null));
        assert.not.ok(await readFile(join(root, "artifacts/ed.txt")).catch(() => null));
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("consecutive instances of a stage share one warm worker; a failure retires it", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        const p = makePipeline(root, [
          { id: "m@1", stage: "m", module: "stages/maybe.ts", params: { fail: false, k: 1 }, deps: {}, outs: { out: "artifacts/m1.json" } },
          { id: "m@2", stage: "m", module: "stages/maybe.ts", params: { fail: false, k: 2 }, deps: {}, outs: { out: "artifacts/m2.json" } },
          { id: "m@3", stage: "m", module: "stages/maybe.ts", params: { fail: true, k: 3 }, deps: {}, outs: { out: "artifacts/m3.json" } },
          { id: "m@4", stage: "m", module: "stages/maybe.ts", params: { fail: false, k: 4 }, deps: {}, outs: { out: "artifacts/m4.json" } },
        ]);
        const pids: Record<string, number> = {};
        const r = await run(p, { jobs: 1, keepGoing: true, onWorkerSpawn: (id, pid) => (pids[id] = pid) });
        assert.equal(r.result.counts, { ran: 3, skipped: 0, restored: 0, failed: 1, blocked: 0 });
        const out = async (n: number) => JSON.parse(await readFile(join(root, `artifacts/m${n}.json`), "utf8"));
        // The module loaded once for m@1..m@3: its module-level counter kept counting.
        assert.equal([(await out(1)).runs, (await out(2)).runs], [1, 2]);
        assert.is(pids["m@1"], pids["m@2"]);
        assert.is(pids["m@3"], pids["m@1"]);
        assert.is.not(pids["m@4"], pids["m@3"], "the worker that ran a failed instance is not reused");
        assert.is((await out(4)).runs, 1);
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("a stage's config error keeps its class, hint and exit code across the worker boundary", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        const p = makePipeline(root, [{ id: "c", module: "stages/config-error.ts", params: {}, deps: {}, outs: { out: "artifacts/c.json" } }]);
        const r = await run(p);
        const f = r.events.find((e) => e.type === "instance-failed");
        assert.ok(f && f.type === "instance-failed");
        if (f?.type === "instance-failed") {
          assert.is(f.error, "params.lr must be positive (got -1)");
          assert.is(f.hint, "fix lr in params/demo.yaml");
          assert.is(f.exitCode, 2);
          assert.ok(f.tail.includes("hint: fix lr in params/demo.yaml"));
        }
        assert.equal(r.result.failures.get("c")?.info, { name: "ConfigError", hint: "fix lr in params/demo.yaml", exitCode: 2 });
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("one digest per path: a producer's recorded output digest is its consumer's recorded dep digest (file and folder)", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        const p = makePipeline(root, [
          { id: "gen", module: "stages/gen.ts", params: { n: 3 }, deps: {}, outs: { out: "artifacts/gen.json" } },
          { id: "double", module: "stages/double.ts", params: {}, deps: { in: "artifacts/gen.json" }, outs: { out: "artifacts/double" } },
          { id: "ls", module: "stages/listdir.ts", params: {}, deps: { in: "artifacts/double" }, outs: { out: "artifacts/ls.txt" } },
        ]);
        await run(p);
        const lock = JSON.parse(await readFile(join(root, "pipeline.lock"), "utf8"));
        assert.match(lock.instances.gen.outs.out.digest, /^sha256:[0-9a-f]{64}$/);
        assert.is(lock.instances.double.parts.deps["artifacts/gen.json"], lock.instances.gen.outs.out.digest);
        assert.is(lock.instances.ls.parts.deps["artifacts/double"], lock.instances.double.outs.out.digest);
        // The file digest is sha256 of the bytes ({"n":3}); computed independently.
        assert.is(lock.instances.gen.outs.out.digest, "sha256:215ddd5567ca2590efd4ea109b4e56cbe591e2676fbf54a9262692c539166da6");
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("run cache: without its lock entry, or with a param switched back, an instance is restored, not rerun", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        await run(chain(root, 3));
        assert.equal(await counts(root), ["gen", "double"]);
        // The lock is gone (deleted, or a fresh clone with the cache): both restore from the run cache.
        await rm(join(root, "pipeline.lock"));
        await rm(join(root, "artifacts"), { recursive: true });
        const r = await run(chain(root, 3));
        assert.equal(r.result.counts, { ran: 0, skipped: 0, restored: 2, failed: 0, blocked: 0 });
        assert.is(r.result.steps[0]!.restoreFrom, "run-cache");
        assert.is(await readFile(join(root, "artifacts/double/value.txt"), "utf8"), "6");
        const lock = JSON.parse(await readFile(join(root, "pipeline.lock"), "utf8"));
        assert.equal(Object.keys(lock.instances).sort(), ["double", "gen"]);
        // n: 3 -> 4 runs both; 4 -> 3 restores the first run's outputs instead of computing them again.
        await run(chain(root, 4));
        assert.is(await readFile(join(root, "artifacts/double/value.txt"), "utf8"), "8");
        const back = await run(chain(root, 3));
        assert.equal(back.result.counts, { ran: 0, skipped: 0, restored: 2, failed: 0, blocked: 0 });
        assert.is(await readFile(join(root, "artifacts/double/value.txt"), "utf8"), "6");
        assert.equal(await counts(root), ["gen", "double", "gen", "double"]);
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("an artifact written in place never reaches the cache: the stored object stays intact", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        await run(chain(root, 3));
        const lock = JSON.parse(await readFile(join(root, "pipeline.lock"), "utf8"));
        const obj = new ContentStore(join(root, "cache")).objectPath(lock.instances.gen.outs.out.digest);
        // What a careless script does (as root, read-only modes would not stop it).
        await chmod(join(root, "artifacts/gen.json"), 0o644);
        await writeFile(join(root, "artifacts/gen.json"), '{"n":"edited"}');
        assert.is(await readFile(obj, "utf8"), '{"n":3}');
        // The edit is seen and undone from the intact cache, without running the stage.
        const r = await run(chain(root, 3));
        assert.equal(r.result.counts, { ran: 0, skipped: 1, restored: 1, failed: 0, blocked: 0 });
        assert.is(await readFile(join(root, "artifacts/gen.json"), "utf8"), '{"n":3}');
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("interrupted while planning: nothing is decided, nothing runs, nothing is reported fresh or blocked", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        const ac = new AbortController();
        ac.abort();
        const r = await run(chain(root, 3), { signal: ac.signal });
        assert.is(r.result.outcome, "interrupted");
        assert.is(r.result.interruptedWhilePlanning, true);
        assert.equal(r.result.counts, { ran: 0, skipped: 0, restored: 0, failed: 0, blocked: 0 });
        assert.equal(r.events.map((e) => e.type), ["run-done"]);
        assert.equal(await counts(root), []);
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("`cache: false` outputs are recorded by digest but never stored", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        const p = chain(root, 3);
        p.instances.get("gen")!.cache = false;
        await run(p);
        const lock = JSON.parse(await readFile(join(root, "pipeline.lock"), "utf8"));
        const store = new ContentStore(join(root, "cache"));
        assert.not.ok(await readFile(store.objectPath(lock.instances.gen.outs.out.digest)).catch(() => null));
        assert.ok(await readFile(store.objectPath(lock.instances.double.outs.out.digest)).catch(() => null));
        await rm(join(root, "artifacts/gen.json"));
        const r = await run(p);
        assert.equal(r.result.counts.ran, 1, "gen reruns: nothing to restore it from");
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test("resources: cores follow declared cpus (clamped to the machine), what does not fit waits, oversized asks warn once per stage", () =>
  withTimeout(
    (async () => {
      const root = await project();
      try {
        const res = (over: Partial<Resources>): Resources => ({ cpus: 1, memoryMb: null, gpus: 0, timeMinutes: null, options: {}, ...over });
        const inst = (id: string, resources: Resources) => ({ id, stage: id.split("@")[0]!, module: "stages/res.ts", params: { id }, deps: {}, outs: { out: `artifacts/${id.replace("@", "-")}.json` }, resources });
        const p = makePipeline(root, [
          inst("a@1", res({ cpus: 2 })),
          inst("a@2", res({ cpus: 2 })),
          inst("big@1", res({ cpus: 8, gpus: 1 })),
          inst("big@2", res({ cpus: 8, gpus: 1 })),
          inst("one", res({})),
        ]);
        const r = await run(p, { jobs: 4, machine: { cores: 2, gpus: 0, memoryMb: 4096 } });
        assert.is(r.result.outcome, "ok");
        const out = async (id: string) => JSON.parse(await readFile(join(root, `artifacts/${id.replace("@", "-")}.json`), "utf8")) as { cores: number; blasThreads: number; t0: number; t1: number };
        const got = Object.fromEntries(await Promise.all(["a@1", "a@2", "big@1", "big@2", "one"].map(async (id) => [id, await out(id)] as const)));
        assert.equal(Object.fromEntries(Object.entries(got).map(([id, o]) => [id, [o.cores, o.blasThreads]])), { "a@1": [2, 2], "a@2": [2, 2], "big@1": [2, 2], "big@2": [2, 2], one: [1, 1] });
        // Every instance but "one" takes both cores: no two of them overlap in time, and "one" overlaps none of them.
        const ids = Object.keys(got);
        for (const x of ids) for (const y of ids) if (x < y) assert.ok(got[x]!.t1 <= got[y]!.t0 || got[y]!.t1 <= got[x]!.t0, `${x} and ${y} ran at the same time`);
        const warnings = r.events.flatMap((e) => (e.type === "warning" ? [`${e.id}: ${e.message}`] : []));
        assert.equal(warnings.sort(), [
          "big@1: asks 1 GPU, this machine has none (set --gpus or SED_PIPE_GPUS if it has some): it runs on a CPU backend (said once for stage big)",
          "big@1: asks 8 cpus, this machine has 2: it gets all 2 and runs alone (said once for stage big)",
        ]);
        // A second run finds everything fresh: nothing waits, nothing warns.
        const again = await run(p, { jobs: 4, machine: { cores: 2, gpus: 0, memoryMb: 4096 } });
        assert.equal(again.result.counts, { ran: 0, skipped: 5, restored: 0, failed: 0, blocked: 0 });
        assert.not.ok(again.events.some((e) => e.type === "warning"));
      } finally {
        await removeDir(root);
      }
    })(),
    60_000,
  ));

test.run();
