// `npm run bench -- executor`: the Slurm executor against the local one, on a real one-node Slurm
// cluster started for the bench (test/helpers/slurm-cluster.ts; Debian's slurmctld, slurmd,
// slurm-client and munge must be installed). The real CLI in a child process, as a user runs it.
//   1. one instance, submit to done: local vs Slurm (median of SED_BENCH_REPEAT runs, default 5)
//   2. a 72-instance fan-out (the demo's eval width) of a small stage: wall time local vs Slurm and
//      the overhead per instance
//   3. the demo itself (`run tables`), local vs Slurm (SED_BENCH_DEMO=0 skips it: ~2.5 min)
//   4. kill -9 trials (SED_BENCH_TRIALS, default 20): a Slurm run of a 12-instance fan-out plus a
//      downstream stage is killed at a random moment (seeded), then run again to the end. Counted:
//      duplicated jobs (an instance's stage code ran in more than one job), lost jobs (a job of the
//      workspace still queued or running after the rerun, a record left behind, or an instance not
//      fresh), and how the kills fell (before any job, with jobs queued/running, after).
import { spawnSync } from "node:child_process";
import { cp, mkdir, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { slurmPrerequisite, startCluster } from "../test/helpers/slurm-cluster.ts";
import { REPO, startCli, type CliResult } from "../test/helpers/project.ts";
import { tempDir, removeDir } from "../test/helpers/tmp.ts";

const REPEAT = Number(process.env.SED_BENCH_REPEAT ?? 5);
const TRIALS = Number(process.env.SED_BENCH_TRIALS ?? 20);
const FAN = 72;

const STAGE = `import { appendFileSync, writeFileSync } from "node:fs";
export async function run(ctx) {
  appendFileSync(ctx.root + "/ledger.txt", ctx.instanceId + " " + (process.env.SLURM_JOB_ID ?? "local") + "\\n");
  const ms = Number(ctx.params.ms ?? 0);
  if (ms > 0) await new Promise((r) => setTimeout(r, ms));
  writeFileSync(ctx.outs.out, JSON.stringify({ item: ctx.params.item ?? null }));
}
`;
const SUM = `import { readFileSync, writeFileSync, appendFileSync } from "node:fs";
export async function run(ctx) {
  appendFileSync(ctx.root + "/ledger.txt", ctx.instanceId + " " + (process.env.SLURM_JOB_ID ?? "local") + "\\n");
  const n = Object.keys(ctx.deps).length;
  writeFileSync(ctx.outs.out, String(n));
}
`;

async function project(items: number, msFor: (i: number) => number): Promise<string> {
  const root = await tempDir("sed-pipe-bench-exec-");
  const ids = Array.from({ length: items }, (_, i) => `e${String(i).padStart(2, "0")}`);
  const deps = ids.map((id) => `      ${id}: artifacts/ev/${id}.json`).join("\n");
  await writeFile(
    join(root, "pipeline.yaml"),
    [
      "version: 1",
      "default_profile: b",
      "profiles:",
      "  b:",
      "    params: params.yaml",
      "stages:",
      "  one:",
      "    module: stages/ev.ts",
      "    params:",
      "      ms: 0",
      "    outs:",
      "      out: artifacts/one.json",
      "  ev:",
      "    module: stages/ev.ts",
      "    foreach: ${items}",
      "    params:",
      "      item: ${item.id}",
      "      ms: ${item.ms}",
      "    outs:",
      "      out: artifacts/ev/${item.id}.json",
      "  sum:",
      "    module: stages/sum.ts",
      "    deps:",
      deps,
      "    outs:",
      "      out: artifacts/sum.txt",
      "",
    ].join("\n"),
  );
  await writeFile(join(root, "params.yaml"), `items:\n${ids.map((id, i) => `  - {key: ${id}, id: ${id}, ms: ${msFor(i)}}`).join("\n")}\n`);
  await mkdir(join(root, "stages"));
  await writeFile(join(root, "stages/ev.ts"), STAGE);
  await writeFile(join(root, "stages/sum.ts"), SUM);
  await symlink(join(REPO, "node_modules"), join(root, "node_modules"), "dir");
  await writeFile(join(root, "package.json"), JSON.stringify({ name: "bench-exec", type: "module", private: true }));
  return root;
}

function check(r: CliResult, what: string): void {
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code ?? r.signal}\n${(r.stdout + r.stderr).slice(-3000)}`);
}

async function timed(root: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const t0 = performance.now();
  check(await startCli(root, args, env).done, args.join(" "));
  return (performance.now() - t0) / 1000;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const f2 = (x: number) => x.toFixed(2);

/** A small seeded generator (mulberry32): the kill moments are the same from run to run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function main(): Promise<void> {
  const pre = slurmPrerequisite();
  if (!pre.ok) {
    console.log(`SKIP executor bench: ${pre.reason}`);
    return;
  }
  const cluster = await startCluster();
  const local: NodeJS.ProcessEnv = { SED_PIPE_EXECUTOR: "local" };
  const slurm: NodeJS.ProcessEnv = { ...cluster.env, SED_PIPE_EXECUTOR: "slurm" };
  try {
    console.log(`one-node Slurm ${cluster.sh("sinfo", ["-V"]).trim()}, ${cluster.sh("sinfo", ["-h", "-o", "%C"]).trim()} CPUs (alloc/idle/other/total)`);

    // 1. One instance, submit to done.
    const root = await project(FAN, () => 0);
    try {
      const times: Record<string, number[]> = { local: [], slurm: [] };
      for (let i = 0; i < REPEAT; i++) {
        for (const [name, env] of [["local", local], ["slurm", slurm]] as const) {
          check(await startCli(root, ["invalidate", "one"], env).done, "invalidate");
          times[name]!.push(await timed(root, ["run", "one"], env));
        }
      }
      const [l, s] = [median(times.local!), median(times.slurm!)];
      console.log(`one instance, whole CLI run (median of ${REPEAT}): local ${f2(l)} s, Slurm ${f2(s)} s, overhead ${f2(s - l)} s`);

      // 2. The 72-instance fan-out.
      const fan: Record<string, number> = {};
      for (const [name, env] of [["local", local], ["slurm", slurm]] as const) {
        check(await startCli(root, ["invalidate", "ev"], env).done, "invalidate");
        const jobsBefore = cluster.sh("squeue", ["-h", "-t", "all", "-o", "%i"]).split("\n").filter(Boolean).length;
        fan[name] = await timed(root, ["run", "ev"], env);
        const jobs = cluster.sh("squeue", ["-h", "-t", "all", "-o", "%i"]).split("\n").filter(Boolean).length - jobsBefore;
        if (name === "slurm") console.log(`${FAN}-instance fan-out on Slurm went as ${jobs} jobs`);
      }
      console.log(`${FAN}-instance fan-out: local ${f2(fan.local!)} s, Slurm ${f2(fan.slurm!)} s, overhead ${f2((fan.slurm! - fan.local!) / FAN)} s per instance`);
    } finally {
      await removeDir(root);
    }

    // 3. The demo.
    if (process.env.SED_BENCH_DEMO !== "0") {
      const demo: Record<string, number> = {};
      for (const [name, env] of [["local", local], ["slurm", slurm]] as const) {
        const dir = await tempDir("sed-pipe-bench-demo-");
        try {
          for (const f of ["bin", "src", "stages", "params", "pipeline.yaml", "package.json", "tsconfig.json"]) await cp(join(REPO, f), join(dir, f), { recursive: true });
          await symlink(join(REPO, "node_modules"), join(dir, "node_modules"), "dir");
          demo[name] = await timed(dir, ["run", "tables"], env);
          if (name === "slurm") {
            const plan = JSON.parse((await startCli(dir, ["status", "--json"], env).done).stdout) as { instances: unknown[] };
            demo.n = plan.instances.length;
          }
        } finally {
          await removeDir(dir);
        }
      }
      console.log(`demo run tables (${demo.n} instances): local ${f2(demo.local!)} s, Slurm ${f2(demo.slurm!)} s, overhead ${f2((demo.slurm! - demo.local!) / demo.n!)} s per instance`);
    }

    // 4. kill -9 trials.
    const rand = rng(13);
    let duplicated = 0;
    let lost = 0;
    const fell = { beforeJobs: 0, jobsLive: 0, afterJobs: 0 };
    let adopted = 0;
    let submitted = 0;
    for (let t = 0; t < TRIALS; t++) {
      const dir = await project(12, (i) => 300 + ((i * 7919) % 1200));
      try {
        const delay = 1000 + rand() * 6000;
        const run = startCli(dir, ["run", "sum"], slurm);
        const exited = await Promise.race([run.done.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), delay))]);
        const live = cluster.sh("squeue", ["-h", "-o", "%i|%Z"]).split("\n").filter((l) => l.endsWith(`|${dir}`)).length;
        if (!exited) run.child.kill("SIGKILL");
        await run.done;
        const recorded = JSON.parse((await startCli(dir, ["jobs", "--json"], slurm).done).stdout).jobs.length as number;
        if (exited || (live === 0 && recorded === 0)) fell[exited || (await readFile(join(dir, "ledger.txt"), "utf8").catch(() => "")) ? "afterJobs" : "beforeJobs"]++;
        else fell.jobsLive++;
        check(await startCli(dir, ["run", "sum"], slurm).done, `trial ${t}: run after kill -9`);
        // What ran where: instance -> the jobs its stage code ran in.
        const ledger = (await readFile(join(dir, "ledger.txt"), "utf8")).split("\n").filter(Boolean);
        const byInstance = new Map<string, Set<string>>();
        for (const l of ledger) {
          const [id, job] = l.split(" ");
          byInstance.set(id!, (byInstance.get(id!) ?? new Set()).add(job!));
        }
        const dups = [...byInstance.values()].reduce((n, s) => n + s.size - 1, 0);
        const ours = cluster.sh("squeue", ["-h", "-t", "all", "-o", "%i|%T|%Z"]).split("\n").filter((l) => l.endsWith(`|${dir}`));
        const active = ours.filter((l) => /\|(PENDING|RUNNING|COMPLETING|CONFIGURING)\|/.test(l)).length;
        const left = JSON.parse((await startCli(dir, ["jobs", "--json"], slurm).done).stdout).jobs.length as number;
        const st = await startCli(dir, ["status", "sum", "--exit-code"], slurm).done;
        const notFresh = st.code === 0 ? 0 : 1;
        const adoptedHere = (await Promise.all((await readdir(join(dir, "cache/logs"))).filter((f) => f.endsWith(".log")).map((f) => readFile(join(dir, "cache/logs", f), "utf8")))).filter((s) => s.includes("# adopted Slurm job")).length;
        adopted += adoptedHere;
        submitted += ours.length;
        duplicated += dups;
        lost += active + left + notFresh + (byInstance.size === 13 ? 0 : 13 - byInstance.size);
        console.log(
          `trial ${String(t + 1).padStart(2)}: kill at ${f2(delay / 1000)} s${exited ? " (run had ended)" : ""}, ${live} jobs live at the kill, ${ours.length} jobs in all, ${adoptedHere} instances adopted, duplicated ${dups}, left active ${active}, records left ${left}, status ${notFresh ? "NOT fresh" : "fresh"}`,
        );
      } finally {
        spawnSync("scancel", ["--me"], { env: { ...process.env, ...cluster.env } });
        await rm(dir, { recursive: true, force: true });
      }
    }
    console.log(
      `kill -9 trials: ${TRIALS}; kills fell before any job ${fell.beforeJobs}, with jobs queued or running ${fell.jobsLive}, after the jobs ${fell.afterJobs}; ${submitted} jobs, ${adopted} instance adoptions; duplicated jobs ${duplicated}, lost jobs ${lost}`,
    );
  } finally {
    await cluster.stop();
  }
}

await main();
