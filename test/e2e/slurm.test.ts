// End to end on a real one-node Slurm cluster (Debian's slurmctld/slurmd/munge, started by the test
// in a temp folder, see test/helpers/slurm-cluster.ts): the real CLI with `--executor slurm` on the
// small counting project of test/helpers/project.ts. Outputs equal a local run's and a second run
// submits nothing; a failing stage names the Slurm state and the log; an outside scancel reads as
// cancelled and leaves the instance stale; Ctrl-C and SIGTERM cancel every job; kill -9 of the engine
// while its job runs, then `run` again: the job is adopted, never submitted twice.
// (The demo profile on Slurm, byte-identical to the local demo, is in demo.test.ts.)
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFile, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { counts, exists, makeProject, startCli, waitFor, type CliResult } from "../helpers/project.ts";
import { slurmPrerequisite, startCluster, type SlurmCluster } from "../helpers/slurm-cluster.ts";
import { removeDir, withTimeout } from "../helpers/tmp.ts";

const slurm = slurmPrerequisite();
const T = 180_000;
let cluster: SlurmCluster | undefined;

test.before(async () => {
  if (slurm.ok) cluster = await startCluster();
});

test.after(async () => {
  await cluster?.stop();
});

function sed(root: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return startCli(root, args, { ...cluster!.env, SED_PIPE_EXECUTOR: "slurm", ...env });
}

/** Every job the cluster has seen (squeue -t all keeps finished jobs for MinJobAge = 1 h). */
function allJobs(): Array<{ id: string; state: string; name: string }> {
  return cluster!
    .sh("squeue", ["-h", "-t", "all", "-o", "%i|%T|%j"])
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [id, state, name] = l.split("|");
      return { id: id!, state: state!, name: name! };
    });
}

function activeJobs(): string[] {
  return cluster!.sh("squeue", ["-h", "-o", "%i"]).split("\n").filter(Boolean);
}

function ok(r: CliResult, what: string): void {
  assert.is(r.code, 0, `${what}: exit ${r.code}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
}

async function inProject(fn: (root: string) => Promise<void>): Promise<void> {
  const root = await makeProject();
  try {
    await withTimeout(fn(root), T, "slurm e2e test");
  } finally {
    await removeDir(root);
  }
}

slurm.test("run on Slurm: outputs equal a local run's, groups share jobs, a second run submits nothing", () =>
  inProject(async (root) => {
    const before = allJobs().length;
    const r = await sed(root, ["run", "sum"]).done;
    ok(r, "slurm run");
    // make@a and make@b became ready together: at most two jobs for them, one for sum.
    const mine = allJobs().slice(before);
    assert.ok(mine.length >= 2 && mine.length <= 3, `jobs: ${JSON.stringify(mine)}`);
    assert.ok(mine.every((j) => j.state === "COMPLETED" && j.name.startsWith("sed-pipe:")), JSON.stringify(mine));
    assert.match(r.stdout, /slurm job \d+/i);
    assert.equal((await counts(root)).sort(), ["make@a", "make@b", "sum"]);
    const slurmTotal = await readFile(join(root, "artifacts/sum/total.txt"), "utf8");

    const again = await sed(root, ["run", "sum"]).done;
    ok(again, "second slurm run");
    assert.is(allJobs().length, before + mine.length, "the second run submitted nothing");
    assert.equal((await counts(root)).length, 3);

    // The same outputs as a local run in a fresh copy.
    const local = await makeProject();
    try {
      ok(await startCli(local, ["run", "sum"], { SED_PIPE_EXECUTOR: "local" }).done, "local run");
      assert.is(await readFile(join(local, "artifacts/sum/total.txt"), "utf8"), slurmTotal);
      assert.is(await readFile(join(local, "artifacts/data/a.json"), "utf8"), await readFile(join(root, "artifacts/data/a.json"), "utf8"));
    } finally {
      await removeDir(local);
    }
    // Nothing left behind: no job records, no job folders.
    assert.not.ok(await exists(join(root, "cache/slurm")) && (await readdir(join(root, "cache/slurm"))).length > 0, "cache/slurm emptied");
    const jobs = await sed(root, ["jobs", "--json"]).done;
    assert.equal(JSON.parse(jobs.stdout).jobs, []);
  }),
);

slurm.test("a failing stage: exit 1, the stage's error, the Slurm job and its log named", () =>
  inProject(async (root) => {
    await writeFile(join(root, "fail-flaky"), "");
    const r = await sed(root, ["run", "flaky"]).done;
    assert.is(r.code, 1, r.stdout + r.stderr);
    const out = r.stdout + r.stderr;
    assert.match(out, /flaky failed on purpose/);
    assert.ok(/Slurm job \d+ FAILED/.test(out), out);
    const log = /cache\/logs\/slurm\/slurm-\d+\.out/.exec(out)?.[0];
    assert.ok(log, `no job log path in:\n${out}`);
    assert.ok(await exists(join(root, log!)), `${log} exists`);
    assert.match(await readFile(join(root, "cache/logs/flaky.log"), "utf8"), /flaky: about to fail/);
    // `sed-pipe logs` shows the instance's log with the job's lines.
    const logs = await sed(root, ["logs", "flaky"]).done;
    assert.match(logs.stdout, /flaky: about to fail/);
    assert.match(logs.stdout, /Slurm job \d+/);
    assert.match((await sed(root, ["status", "flaky"]).done).stdout, /stale\s+flaky/);
    await rm(join(root, "fail-flaky"));
    ok(await sed(root, ["run", "flaky"]).done, "rerun after the fix");
  }),
);

slurm.test("scancel from outside: reported as cancelled by someone else, the instance stays stale", () =>
  inProject(async (root) => {
    await writeFile(join(root, "hold"), "");
    const run = sed(root, ["run", "slow"]);
    await waitFor(() => exists(join(root, "started-slow")), 60_000, "slow to start on the cluster");
    const job = allJobs().find((j) => j.state === "RUNNING" && j.name.includes("slow"));
    assert.ok(job, JSON.stringify(allJobs()));
    cluster!.sh("scancel", [job!.id]);
    const r = await run.done;
    assert.is(r.code, 1, r.stdout + r.stderr);
    assert.ok(new RegExp(`Slurm job ${job!.id} was CANCELLED by someone else`).test(r.stdout + r.stderr), r.stdout + r.stderr);
    assert.not.ok(await exists(join(root, "artifacts/slow.txt")));
    assert.match((await sed(root, ["status", "slow"]).done).stdout, /stale\s+slow/);
  }),
);

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  slurm.test(`${signal} on the engine cancels every job it submitted and exits ${code}`, () =>
    inProject(async (root) => {
      await writeFile(join(root, "hold"), "");
      // slow holds; flaky and the two makes run beside it: several jobs in flight.
      const run = sed(root, ["run", "slow", "make", "-k"]);
      await waitFor(() => exists(join(root, "started-slow")), 60_000, "slow to start on the cluster");
      const submitted = allJobs().filter((j) => j.name.includes("slow"));
      run.child.kill(signal);
      const r = await run.done;
      assert.is(r.code, code, r.stdout + r.stderr);
      await waitFor(() => activeJobs().length === 0, 20_000, "the cluster's queue to drain");
      for (const j of submitted) assert.ok(allJobs().find((x) => x.id === j.id)?.state === "CANCELLED", JSON.stringify(allJobs()));
      assert.not.ok(await exists(join(root, "artifacts/slow.txt")));
      assert.equal(JSON.parse((await sed(root, ["jobs", "--json"]).done).stdout).jobs, []);
    }),
  );
}

slurm.test("kill -9 of the engine while its job runs: the next run adopts the job, never submits it again", () =>
  inProject(async (root) => {
    await writeFile(join(root, "hold"), "");
    const before = allJobs().length;
    const run = sed(root, ["run", "slow"]);
    await waitFor(() => exists(join(root, "started-slow")), 60_000, "slow to start on the cluster");
    run.child.kill("SIGKILL");
    await run.done;
    // The job runs on without its engine; the workspace remembers it.
    const recorded = JSON.parse((await sed(root, ["jobs", "--json"]).done).stdout).jobs as Array<{ jobId: string; instanceId: string }>;
    assert.equal(recorded.map((j) => j.instanceId), ["slow"]);
    assert.match((await sed(root, ["status", "slow"]).done).stdout, new RegExp(`slurm job ${recorded[0]!.jobId}`, "i"));
    await rm(join(root, "hold"));
    const again = await sed(root, ["run", "slow"]).done;
    ok(again, "run after kill -9");
    assert.match(again.stdout + again.stderr, /adopted/i);
    assert.is(allJobs().length, before + 1, "one job in all");
    assert.equal(await counts(root), ["slow"], "the stage ran once");
    assert.is(await readFile(join(root, "artifacts/slow.txt"), "utf8"), "slow done t1");
    assert.equal(JSON.parse((await sed(root, ["jobs", "--json"]).done).stdout).jobs, []);
  }),
);

slurm.test("kill -9 of the engine, then `jobs --cancel`: the job is cancelled and the next run submits afresh", () =>
  inProject(async (root) => {
    await writeFile(join(root, "hold"), "");
    const run = sed(root, ["run", "slow"]);
    await waitFor(() => exists(join(root, "started-slow")), 60_000, "slow to start on the cluster");
    run.child.kill("SIGKILL");
    await run.done;
    const cancel = await sed(root, ["jobs", "--cancel"]).done;
    ok(cancel, "jobs --cancel");
    assert.match(cancel.stdout, /cancelled 1 instance job/);
    await waitFor(() => activeJobs().length === 0, 20_000, "the cancelled job to leave the queue");
    await rm(join(root, "hold"));
    ok(await sed(root, ["run", "slow"]).done, "run after cancel");
    assert.equal(await counts(root), ["slow", "slow"], "cancelled, so run again");
    assert.is(await readFile(join(root, "artifacts/slow.txt"), "utf8"), "slow done t1");
  }),
);

test.run();
