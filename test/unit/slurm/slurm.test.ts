// The Slurm executor's pure parts on literals (sbatch scripts, squeue/sacct parsing, what an end
// state means, grouping), and the executor itself against a scripted fake of the Slurm commands:
// grouping into jobs, adoption without a second submission, named failures, retries, cancellation.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { sbatchScript, shellQuote, slurmTime, type JobResources } from "../../../src/runner/slurm/sbatch.ts";
import { classifyEnd, describeEnd, isActive, parseSacct, parseSqueue } from "../../../src/runner/slurm/queue.ts";
import { SlurmExecutor, splitGroup } from "../../../src/runner/slurm/executor.ts";
import { JobStore, type JobRecord } from "../../../src/runner/slurm/job-store.ts";
import type { JobGroup, WorkerSpec } from "../../../src/runner/worker-protocol.ts";
import type { JobHooks, WorkerOutcome } from "../../../src/runner/worker-pool.ts";
import { tempDir, removeDir, withTimeout } from "../../helpers/tmp.ts";

const RES: JobResources = { cpus: 1, memoryMb: null, gpus: 0, timeMinutes: null, options: {} };

test("sbatch script: resources as #SBATCH lines, options sorted, the command quoted for bash", () => {
  const script = sbatchScript({
    name: "sed-pipe:train-heads@ood_gen",
    resources: { cpus: 8, memoryMb: 32768, gpus: 1, timeMinutes: 12 * 60, options: { qos: "normal", partition: "gpu", constraint: "a100|h100" } },
    output: "/shared/ws/cache/slurm/r-1/slurm-%j.out",
    chdir: "/shared/ws",
    command: ["/opt/node/bin/node", "--enable-source-maps", "/shared/ws/cache/build/ab.mjs", "--sed-pipe-job", "/shared/ws/cache/slurm/r-1/group.json"],
    comment: "sed-pipe:0b1e",
  });
  assert.is(
    script,
    [
      "#!/bin/bash",
      "#SBATCH --job-name=sed-pipe:train-heads@ood_gen",
      "#SBATCH --output=/shared/ws/cache/slurm/r-1/slurm-%j.out",
      "#SBATCH --chdir=/shared/ws",
      "#SBATCH --ntasks=1",
      "#SBATCH --cpus-per-task=8",
      "#SBATCH --no-requeue",
      "#SBATCH --comment=sed-pipe:0b1e",
      "#SBATCH --mem=32768M",
      "#SBATCH --gres=gpu:1",
      "#SBATCH --time=12:00:00",
      "#SBATCH --constraint='a100|h100'",
      "#SBATCH --partition=gpu",
      "#SBATCH --qos=normal",
      "",
      "exec /opt/node/bin/node --enable-source-maps /shared/ws/cache/build/ab.mjs --sed-pipe-job /shared/ws/cache/slurm/r-1/group.json",
      "",
    ].join("\n"),
  );
  assert.throws(() => sbatchScript({ name: "x", resources: { ...RES, options: { time: "1" } }, output: "o", chdir: "/", command: ["true"] }), /set by sed-pipe itself/);
  assert.throws(() => sbatchScript({ name: "x", resources: { ...RES, options: { Account: "a" } }, output: "o", chdir: "/", command: ["true"] }), /not an option name/);
  assert.throws(() => sbatchScript({ name: "x", resources: { ...RES, options: { account: "a\nb" } }, output: "o", chdir: "/", command: ["true"] }), /line break/);
  assert.throws(() => sbatchScript({ name: "x", resources: { ...RES, options: { comment: "mine" } }, output: "o", chdir: "/", command: ["true"] }), /set by sed-pipe itself/);
});

test("time limits and quoting", () => {
  assert.is(slurmTime(1), "00:01:00");
  assert.is(slurmTime(90), "01:30:00");
  assert.is(slurmTime(2 * 1440 + 61), "2-01:01:00");
  assert.is(slurmTime(0.2), "00:01:00");
  assert.is(shellQuote("eval@ood_gen/Gaussian Noise_1"), "'eval@ood_gen/Gaussian Noise_1'");
  assert.is(shellQuote("it's"), `'it'\\''s'`);
  assert.is(shellQuote(""), "''");
});

test("squeue and sacct output parsed; end states named", () => {
  const q = parseSqueue("12|RUNNING|None|node7\n13|PENDING|Resources|\n14_2|FAILED|NonZeroExitCode|node3\n\n");
  assert.equal([...q.keys()], ["12", "13", "14_2"]);
  assert.equal(q.get("12"), { jobId: "12", state: "RUNNING", reason: "", nodes: "node7" });
  assert.equal(q.get("13"), { jobId: "13", state: "PENDING", reason: "Resources", nodes: "" });
  const a = parseSacct("20|CANCELLED by 1000|0:15|node1\n20.batch|CANCELLED|0:15|node1\n21|OUT_OF_MEMORY|0:125|node2\n22|PENDING|0:0|None assigned\n");
  assert.equal([...a.keys()], ["20", "21", "22"]);
  assert.is(a.get("20")!.state, "CANCELLED");
  assert.is(a.get("22")!.nodes, "");
  assert.ok(isActive("PENDING") && isActive("RUNNING") && isActive("COMPLETING"));
  assert.not.ok(isActive("COMPLETED") || isActive("FAILED") || isActive("CANCELLED by 0"));
  assert.equal(["COMPLETED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "CANCELLED by 1000"].map(classifyEnd), ["completed", "failed", "timeout", "oom", "transient", "transient", "transient", "cancelled"]);
  assert.is(describeEnd({ jobId: "7", state: "FAILED", reason: "NonZeroExitCode", nodes: "n1", exitCode: "3:0" }), "Slurm job 7 FAILED (exit code 3:0) (NonZeroExitCode) on n1");
  assert.is(describeEnd({ jobId: "8", state: "TIMEOUT", reason: "", nodes: "" }, { timeMinutes: 60 }), "Slurm job 8 hit its time limit (TIMEOUT, --time 60 min)");
  assert.is(describeEnd({ jobId: "9", state: "OUT_OF_MEMORY", reason: "", nodes: "n2" }, { memoryMb: 4096 }), "Slurm job 9 ran out of memory (OUT_OF_MEMORY, --mem 4096M) on n2");
  assert.match(describeEnd({ jobId: "10", state: "CANCELLED", reason: "", nodes: "" }), /CANCELLED by someone else/);
  assert.match(describeEnd({ jobId: "11", state: "NODE_FAIL", reason: "", nodes: "n4" }), /the node or the scheduler failed it, not the stage/);
});

test("grouping: at most `max` per job, at least `minJobs` jobs, GPU and time-limited instances alone", () => {
  const m = (n: number, over: Partial<JobResources> = {}) => Array.from({ length: n }, (_, i) => ({ i, resources: { ...RES, ...over } }));
  const sizes = (g: unknown[][]) => g.map((x) => x.length);
  assert.equal(sizes(splitGroup(m(72), 16, 2)), [15, 15, 14, 14, 14]);
  assert.equal(sizes(splitGroup(m(19), 16, 8)), [3, 3, 3, 2, 2, 2, 2, 2]);
  assert.equal(sizes(splitGroup(m(3), 16, 8)), [1, 1, 1]);
  assert.equal(sizes(splitGroup(m(5), 1, 1)), [1, 1, 1, 1, 1]);
  assert.equal(sizes(splitGroup([...m(2, { gpus: 1 }), ...m(4)], 16, 1)), [1, 1, 4]);
  // Order is kept inside jobs.
  assert.equal(splitGroup(m(5), 16, 2).map((g) => g.map((x) => x.i)), [[0, 1, 2], [3, 4]]);
});

// ---------------------------------------------------------------------------------------------
// The executor against a scripted Slurm: sbatch hands out ids, squeue answers from a table the test
// sets, "jobs" are completed by the test writing their result files.

interface Fake {
  calls: string[][];
  states: Map<string, string>;
  /** Job id -> the job's comment (read from its script, as sbatch would). */
  comments: Map<string, string>;
  exec(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

function fakeSlurm(): Fake {
  let next = 100;
  const f: Fake = {
    calls: [],
    states: new Map(),
    comments: new Map(),
    async exec(cmd, args) {
      f.calls.push([cmd, ...args]);
      if (cmd === "sbatch") {
        const id = String(next++);
        const comment = /^#SBATCH --comment=(.*)$/m.exec(await readFile(args[args.length - 1]!, "utf8"))?.[1];
        if (comment) f.comments.set(id, comment);
        f.states.set(id, "PENDING");
        return { code: 0, stdout: `${id}\n`, stderr: "" };
      }
      if (cmd === "squeue" && args.includes("--me")) {
        return { code: 0, stdout: [...f.states.keys()].map((id) => `${id}|${f.comments.get(id) ?? "(null)"}\n`).join(""), stderr: "" };
      }
      if (cmd === "squeue") {
        const ids = args[args.indexOf("-j") + 1]!.split(",");
        const lines = ids.filter((id) => f.states.has(id)).map((id) => `${id}|${f.states.get(id)}|None|node1`);
        return lines.length ? { code: 0, stdout: lines.join("\n") + "\n", stderr: "" } : { code: 1, stdout: "", stderr: "slurm_load_jobs error: Invalid job id specified" };
      }
      if (cmd === "scancel") {
        for (const id of args.filter((a) => /^\d+$/.test(a))) f.states.set(id, "CANCELLED");
        return { code: 0, stdout: "", stderr: "" };
      }
      if (cmd === "sinfo") return { code: 0, stdout: "0/2/0/2\n", stderr: "" };
      return { code: 1, stdout: "", stderr: `${cmd}: not faked` };
    },
  };
  return f;
}

function spec(root: string, id: string, outs: Record<string, string> = { out: join(root, "cache/tmp/r/" + id.replace(/\W/g, "_") + "/out/o.txt") }): WorkerSpec {
  return {
    instanceId: id,
    stage: id.split("@")[0]!,
    module: "stages/s.ts",
    modulePath: join(root, "stages/s.ts"),
    root,
    profile: "p",
    item: null,
    params: {},
    deps: {},
    outs,
    scratch: join(root, "cache/scratch", id),
    backend: "cpu",
    settings: { cores: 1, blasThreads: 1, headThreads: null, blas: true },
    fingerprint: "sha256:" + "f".repeat(64),
  };
}

function hooks(root: string, id: string, signal = new AbortController().signal, over: Partial<JobHooks> = {}): JobHooks & { jobs: string[] } {
  const jobs: string[] = [];
  return { logPath: join(root, "cache/logs", id.replace(/\W/g, "_") + ".log"), signal, graceMs: 100, onProgress: () => {}, onLog: () => {}, onJob: (j) => jobs.push(`${j.jobId} ${j.state}`), jobs, ...over };
}

async function project(): Promise<string> {
  const root = await tempDir("sed-slurm-unit-");
  await mkdir(join(root, "stages"), { recursive: true });
  await writeFile(join(root, "stages/s.ts"), "export async function run() {}\n");
  return root;
}

/** What the job would do: write each instance's output and result (ok, or a failure for the ids in `fail`). */
async function completeJob(root: string, f: Fake, jobId: string, fail: string[] = []): Promise<void> {
  // The engine records the job id just after sbatch answers: wait for that record.
  let recs: JobRecord[] = [];
  for (let i = 0; i < 1000 && recs.length === 0; i++) {
    recs = (await JobStore.open(join(root, "cache"))).all().filter((r) => r.jobId === jobId);
    if (recs.length === 0) await new Promise((r) => setTimeout(r, 10));
  }
  if (recs.length === 0) throw new Error(`no record of job ${jobId} after 10 s`);
  const group = JSON.parse(await readFile(join(recs[0]!.jobDir, "group.json"), "utf8")) as JobGroup;
  for (const inst of group.instances) {
    for (const out of Object.values(inst.spec.outs)) await writeFile(out, `made by ${inst.spec.instanceId}`);
    const r = !fail.includes(inst.spec.instanceId) ? { ok: true, rss: 1, host: "node1" } : { ok: false, error: { name: "Error", message: "boom" }, aborted: false, host: "node1" };
    await writeFile(join(inst.dir, "result.json"), JSON.stringify(r));
  }
  f.states.set(jobId, "COMPLETED");
}

const opts = (root: string, f: Fake, over: Record<string, unknown> = {}) => ({ root, cacheDir: join(root, "cache"), runId: "r", env: {}, exec: f.exec, pollMs: 20, maxPollMs: 50, groupWindowMs: 30, ...over });

async function settleSoon(p: Promise<WorkerOutcome>): Promise<WorkerOutcome> {
  return withTimeout(p, 10_000, "executor outcome");
}

async function waitUntil(cond: () => boolean | Promise<boolean>, what = "the condition"): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`waited 10 s for ${what}`);
}

/** Executors a test made: closed after each test, passed or failed (an open one keeps polling). */
const live: SlurmExecutor[] = [];
function executor(o: ConstructorParameters<typeof SlurmExecutor>[0]): SlurmExecutor {
  const ex = new SlurmExecutor(o);
  live.push(ex);
  return ex;
}
test.after.each(async () => {
  for (const ex of live.splice(0)) await withTimeout(ex.close(), 10_000, "closing an executor");
});

test("instances that become ready together share one job; outputs reach the instances' paths; records cleared", async () => {
  const root = await project();
  try {
    const f = fakeSlurm();
    const ex = executor(opts(root, f, { minJobs: 1 }));
    const ids = ["ev@a", "ev@b", "ev@c"];
    for (const id of ids) await mkdir(join(spec(root, id).outs.out!, ".."), { recursive: true });
    const runs = ids.map((id) => ex.run(spec(root, id), hooks(root, id)));
    await waitUntil(() => f.calls.some((c) => c[0] === "sbatch"));
    assert.is(f.calls.filter((c) => c[0] === "sbatch").length, 1, "one job for the three");
    const script = await readFile(f.calls.find((c) => c[0] === "sbatch")![2]!, "utf8");
    assert.match(script, /--job-name='sed-pipe:ev\[3\]'/);
    await waitUntil(() => f.calls.some((c) => c[0] === "squeue"));
    await completeJob(root, f, "100", ["ev@b"]);
    const outs = await Promise.all(runs.map(settleSoon));
    assert.equal(outs.map((o) => o.ok || o.error), [true, "boom", true]);
    assert.is(!outs[1]!.ok && outs[1]!.error, "boom");
    assert.is(await readFile(spec(root, "ev@a").outs.out!, "utf8"), "made by ev@a");
    // Records stay until the outputs are committed: an engine killed before that adopts again.
    assert.equal((await JobStore.open(join(root, "cache"))).all().map((r) => r.instanceId).sort(), ["ev@a", "ev@c"]);
    for (const o of outs) if (o.ok) await o.release?.();
    assert.equal((await JobStore.open(join(root, "cache"))).all(), []);
    await ex.close();
  } finally {
    await removeDir(root);
  }
});

test("a job recorded by an earlier engine is adopted, never submitted again", async () => {
  const root = await project();
  try {
    const f = fakeSlurm();
    // The first engine "dies" when `dead` is set: its Slurm commands never answer again, so it
    // neither polls nor touches the job's files (a killed process would not either).
    let dead = false;
    const first = new SlurmExecutor(opts(root, f, { exec: (cmd: string, args: string[]) => (dead ? new Promise<never>(() => {}) : f.exec(cmd, args)) }));
    await mkdir(join(spec(root, "ev@a").outs.out!, ".."), { recursive: true });
    void first.run(spec(root, "ev@a"), hooks(root, "ev@a")).catch(() => {});
    await waitUntil(() => f.calls.some((c) => c[0] === "sbatch"));
    await new Promise((r) => setTimeout(r, 100));
    dead = true;
    // A new engine asks for the same instance and inputs.
    f.states.set("100", "RUNNING");
    const second = executor(opts(root, f, { runId: "r2" }));
    const h = hooks(root, "ev@a");
    const outcome = second.run(spec(root, "ev@a"), h);
    await new Promise((r) => setTimeout(r, 100));
    await completeJob(root, f, "100");
    assert.ok((await settleSoon(outcome)).ok);
    assert.is(f.calls.filter((c) => c[0] === "sbatch").length, 1, "no second sbatch");
    assert.ok(h.jobs.includes("100 ADOPTED"));
    await second.close();
  } finally {
    await removeDir(root);
  }
});

test("a finished group adopted by a new engine: every instance takes its own outputs once (polls never overlap)", async () => {
  const root = await project();
  try {
    const f = fakeSlurm();
    let dead = false;
    const first = new SlurmExecutor(opts(root, f, { minJobs: 1, exec: (cmd: string, args: string[]) => (dead ? new Promise<never>(() => {}) : f.exec(cmd, args)) }));
    const ids = ["ev@a", "ev@b", "ev@c", "ev@d"];
    for (const id of ids) await mkdir(join(spec(root, id).outs.out!, ".."), { recursive: true });
    for (const id of ids) void first.run(spec(root, id), hooks(root, id)).catch(() => {});
    await waitUntil(() => f.calls.some((c) => c[0] === "sbatch"), "sbatch");
    await completeJob(root, f, "100");
    dead = true;
    // The new engine asks for the four one after another, each adoption asking for a poll at once.
    // A slow controller keeps each poll in flight while the next adoption comes.
    let inFlight = 0;
    let most = 0;
    const slow = async (cmd: string, args: string[]) => {
      // Polls only (squeue -j): looking up a record's job by its comment is not a poll.
      if (cmd !== "squeue" || !args.includes("-j")) return f.exec(cmd, args);
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setTimeout(r, 40));
      inFlight--;
      return f.exec(cmd, args);
    };
    const second = executor(opts(root, f, { runId: "r2", pollMs: 1, exec: slow }));
    const runs: Promise<WorkerOutcome>[] = [];
    for (const id of ids) {
      runs.push(settleSoon(second.run(spec(root, id), hooks(root, id))));
      await new Promise((r) => setTimeout(r, 15));
    }
    const outs = await Promise.all(runs);
    assert.equal(outs.map((o) => o.ok || o.error), [true, true, true, true]);
    assert.is(most, 1, "one squeue at a time");
    for (const id of ids) assert.is(await readFile(spec(root, id).outs.out!, "utf8"), `made by ${id}`);
    assert.is(f.calls.filter((c) => c[0] === "sbatch").length, 1);
    for (const o of outs) if (o.ok) await o.release?.();
    assert.equal((await JobStore.open(join(root, "cache"))).all(), []);
  } finally {
    await removeDir(root);
  }
});

test("records of jobs whose outputs were committed (engine killed before it dropped them) are dropped at start", async () => {
  const root = await project();
  try {
    const f = fakeSlurm();
    const store = await JobStore.open(join(root, "cache"));
    const jobDir = join(root, "cache/slurm/old-1");
    await mkdir(join(jobDir, "0-ev_a"), { recursive: true });
    await mkdir(join(jobDir, "1-ev_b"), { recursive: true });
    await writeFile(join(jobDir, "slurm-7.out"), "done\n");
    const rec = { instanceId: "ev@a", fingerprint: "sha256:aa", jobId: "7", dir: join(jobDir, "0-ev_a"), jobDir, outs: {}, submittedAt: "t", attempt: 1 };
    await store.set(rec);
    await store.set({ ...rec, instanceId: "ev@b", fingerprint: "sha256:bb", dir: join(jobDir, "1-ev_b") });
    const ex = executor(opts(root, f, { committed: (id: string, fp: string) => id === "ev@a" && fp === "sha256:aa" }));
    await mkdir(join(spec(root, "z@a").outs.out!, ".."), { recursive: true });
    // Any call opens the records; a refused sbatch settles at once.
    void ex.run(spec(root, "z@a"), { ...hooks(root, "z@a"), signal: AbortSignal.abort() });
    await waitUntil(async () => (await JobStore.open(join(root, "cache"))).all().length === 1, "the committed record dropped");
    assert.equal((await JobStore.open(join(root, "cache"))).all().map((r) => r.instanceId), ["ev@b"]);
    assert.not.ok(await stat(join(jobDir, "0-ev_a")).catch(() => null), "the committed instance's folder is gone");
    assert.ok(await stat(join(jobDir, "1-ev_b")).catch(() => null), "the job's folder stays for the other instance");
  } finally {
    await removeDir(root);
  }
});

test("an engine killed between sbatch and its record: the next finds the job by its comment or its output file, or submits afresh", async () => {
  const root = await project();
  try {
    const f = fakeSlurm();
    // The first engine dies inside sbatch: Slurm makes the job, the engine never hears its id.
    let sbatched = false;
    const first = new SlurmExecutor(opts(root, f, { exec: async (cmd: string, args: string[]) => {
      if (sbatched) return new Promise<never>(() => {});
      const r = await f.exec(cmd, args);
      if (cmd === "sbatch") {
        sbatched = true;
        return new Promise<never>(() => {});
      }
      return r;
    } }));
    await mkdir(join(spec(root, "ev@a").outs.out!, ".."), { recursive: true });
    void first.run(spec(root, "ev@a"), hooks(root, "ev@a")).catch(() => {});
    await waitUntil(() => sbatched, "sbatch");
    const rec = (await JobStore.open(join(root, "cache"))).all();
    assert.equal(rec.map((r) => [r.instanceId, r.jobId]), [["ev@a", ""]], "recorded before sbatch, without an id");
    assert.match(rec[0]!.token ?? "", /^sed-pipe:[0-9a-f-]{36}$/);

    // Still queued: found by its comment, adopted, no second sbatch.
    const second = executor(opts(root, f, { runId: "r2" }));
    const h = hooks(root, "ev@a");
    const outcome = second.run(spec(root, "ev@a"), h);
    await waitUntil(() => h.jobs.includes("100 ADOPTED"), "adoption");
    await completeJob(root, f, "100");
    const o = await settleSoon(outcome);
    assert.ok(o.ok);
    assert.is(f.calls.filter((c) => c[0] === "sbatch").length, 1, "no second sbatch");
    if (o.ok) await o.release?.();
    assert.equal((await JobStore.open(join(root, "cache"))).all(), []);

    // A job that started (its output file names it), running without the comment: found by the file.
    f.states.set("777", "RUNNING");
    const store = await JobStore.open(join(root, "cache"));
    const jobDir = join(root, "cache/slurm/old-1");
    await mkdir(jobDir, { recursive: true });
    await writeFile(join(jobDir, "slurm-777.out"), "");
    await store.set({ ...rec[0]!, instanceId: "ev@b", jobDir, token: "sed-pipe:gone" });
    // And one sbatch never made: no file, no comment in squeue: dropped and submitted afresh.
    await store.set({ ...rec[0]!, instanceId: "ev@c", jobDir: join(root, "cache/slurm/old-2"), token: "sed-pipe:never" });
    const third = executor(opts(root, f, { runId: "r3", minJobs: 1 }));
    const hb = hooks(root, "ev@b");
    const hc = hooks(root, "ev@c");
    void third.run({ ...spec(root, "ev@b"), fingerprint: rec[0]!.fingerprint }, hb);
    void third.run({ ...spec(root, "ev@c"), fingerprint: rec[0]!.fingerprint }, hc);
    await waitUntil(() => hb.jobs.includes("777 ADOPTED") && f.calls.filter((c) => c[0] === "sbatch").length === 2, "adoption of 777 and one new sbatch");
    assert.not.ok(hc.jobs.some((j) => j.endsWith("ADOPTED")));
    await waitUntil(async () => (await JobStore.open(join(root, "cache"))).all().every((r) => r.jobId !== ""), "the new job's record");
    assert.equal((await JobStore.open(join(root, "cache"))).all().map((r) => [r.instanceId, r.jobId]).sort(), [["ev@b", "777"], ["ev@c", "101"]]);
  } finally {
    await removeDir(root);
  }
});

test("end states without a result are named; transient ones are retried with --retries", async () => {
  const root = await project();
  try {
    const f = fakeSlurm();
    const ex = executor(opts(root, f, { retries: 1 }));
    for (const id of ["t@a", "n@a"]) await mkdir(join(spec(root, id).outs.out!, ".."), { recursive: true });
    const timeout = ex.run(spec(root, "t@a"), { ...hooks(root, "t@a"), resources: { ...RES, timeMinutes: 30 } });
    await waitUntil(() => f.states.size === 1);
    f.states.set("100", "TIMEOUT");
    const o = await settleSoon(timeout);
    assert.is(!o.ok && o.error, "Slurm job 100 hit its time limit (TIMEOUT, --time 30 min) on node1");
    assert.match(!o.ok ? (o.info?.hint ?? "") : "", /the job's output is cache\/slurm\/r-1\/slurm-100\.out/);

    const node = ex.run(spec(root, "n@a"), hooks(root, "n@a"));
    await waitUntil(() => f.states.size === 2);
    f.states.set("101", "NODE_FAIL");
    await waitUntil(() => f.states.size === 3);
    assert.is(f.calls.filter((c) => c[0] === "sbatch").length, 3, "resubmitted once");
    await completeJob(root, f, "102");
    assert.ok((await settleSoon(node)).ok);
    await ex.close();
  } finally {
    await removeDir(root);
  }
});

test("a job cancelled from outside is reported as such; an abort cancels the job and reads as interrupted", async () => {
  const root = await project();
  try {
    const f = fakeSlurm();
    const ex = executor(opts(root, f));
    for (const id of ["x@a", "y@a"]) await mkdir(join(spec(root, id).outs.out!, ".."), { recursive: true });
    const outside = ex.run(spec(root, "x@a"), hooks(root, "x@a"));
    await waitUntil(() => f.states.size === 1);
    f.states.set("100", "CANCELLED");
    const o = await settleSoon(outside);
    assert.is(!o.ok && o.error, "Slurm job 100 was CANCELLED by someone else (scancel outside sed-pipe) on node1");
    assert.is(!o.ok && o.aborted, false);

    const ac = new AbortController();
    const mine = ex.run(spec(root, "y@a"), hooks(root, "y@a", ac.signal));
    await waitUntil(() => f.states.size === 2);
    ac.abort();
    const o2 = await settleSoon(mine);
    assert.ok(f.calls.some((c) => c[0] === "scancel" && c.includes("101")));
    assert.equal(!o2.ok && [o2.error, o2.aborted], ["interrupted", true]);
    await ex.close();
  } finally {
    await removeDir(root);
  }
});

test("sbatch refusing a job fails its instances with sbatch's words and a hint", async () => {
  const root = await project();
  try {
    const f = fakeSlurm();
    const ex = executor({ ...opts(root, f), exec: async (cmd: string, args: string[]) => (cmd === "sbatch" ? { code: 1, stdout: "", stderr: "sbatch: error: Batch job submission failed: Invalid partition name specified" } : f.exec(cmd, args)) });
    await mkdir(join(spec(root, "z@a").outs.out!, ".."), { recursive: true });
    const o = await settleSoon(ex.run(spec(root, "z@a"), hooks(root, "z@a")));
    assert.is(!o.ok && o.error, "sbatch refused the job: sbatch: error: Batch job submission failed: Invalid partition name specified");
    assert.match(!o.ok ? (o.info?.hint ?? "") : "", /partition, account, qos/);
    await ex.close();
  } finally {
    await removeDir(root);
  }
});

test.run();
