// `sed-pipe jobs [--cancel]`: the cluster jobs this workspace's runs submitted and have not settled
// (running now, or left behind by an engine that was killed), with what Slurm says of them; --cancel
// cancels them (the next run then submits afresh what it still needs).
import type { Command } from "commander";
import type { CliContext } from "./context.ts";
import { EXIT, SedPipeError } from "../errors.ts";
import { EXAMPLES, withRunLock } from "./common.ts";
import { join } from "node:path";

export function registerJobsCommands(program: Command, cli: CliContext): void {
  program
    .command("jobs")
    .description("list the cluster jobs of this workspace that no run has settled yet; --cancel cancels them")
    .option("--cancel", "scancel them all (waits for a run that holds the workspace, then adopts none of them)")
    .option("--json", "print them as JSON")
    .addHelpText("after", EXAMPLES(["sed-pipe jobs", "sed-pipe jobs --cancel"]))
    .action(async (opts: { cancel?: boolean; json?: boolean }) => {
      const { listJobs, cancelJobs } = await import("../runner/slurm/jobs.ts");
      const cacheDir = join(cli.root(), "cache");
      const jobs = await listJobs(cacheDir, cli.env);
      if (opts.json) cli.out(JSON.stringify({ jobs }) + "\n");
      else if (jobs.length === 0) cli.out("no cluster jobs recorded in this workspace\n");
      else {
        for (const j of jobs) {
          if (j.jobId === "") {
            cli.out(`no slurm job  ${j.instanceId}  an engine died while submitting it; sbatch made no job  (${j.submittedAt})\n`);
            continue;
          }
          const st = j.status ? `${j.status.state}${j.status.nodes ? ` on ${j.status.nodes}` : ""}` : "unknown to Slurm now";
          cli.out(`slurm job ${j.jobId}  ${j.instanceId}  ${st}  (submitted ${j.submittedAt})\n`);
        }
      }
      if (!opts.cancel || jobs.length === 0) return;
      // Under the run lock: a run adopting these jobs must not be racing the cancel.
      await withRunLock(cli, cacheDir, "jobs --cancel", true, async () => {
        const r = await cancelJobs([...new Set(jobs.map((j) => j.jobId).filter((id) => id !== ""))], cli.env);
        if (!r.ok) throw new SedPipeError(`scancel failed: ${r.message}`, { hint: "check that SLURM_CONF points at the cluster these jobs ran on", exitCode: EXIT.stageFailed });
        const { JobStore } = await import("../runner/slurm/job-store.ts");
        const store = await JobStore.open(cacheDir);
        for (const j of jobs) await store.delete(j.instanceId, j.fingerprint);
        cli.out(`cancelled ${jobs.length} instance job${jobs.length === 1 ? "" : "s"}; their instances stay stale until run again\n`);
      });
    });
}
