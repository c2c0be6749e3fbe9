// The cluster jobs a workspace's runs submitted and have not settled (cache/state/slurm-jobs.json),
// with what Slurm says of them now: for `status`, `jobs` and `jobs --cancel`. One squeue call.
import { execFile } from "node:child_process";
import { readJobRecords, type JobRecord } from "./job-store.ts";
import { parseSqueue, type JobStatus } from "./queue.ts";

export interface JobView extends JobRecord {
  /** Slurm's word now, or null when Slurm does not know the job any more (or did not answer). */
  status: JobStatus | null;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: 30_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 127) : 0, stdout: String(stdout), stderr: String(stderr) }),
    );
  });
}

export async function listJobs(cacheDir: string, env: NodeJS.ProcessEnv): Promise<JobView[]> {
  const recs = await readJobRecords(cacheDir);
  if (recs.length === 0) return [];
  const ids = [...new Set(recs.map((r) => r.jobId))];
  const q = await run("squeue", ["-h", "-t", "all", "-j", ids.join(","), "-o", "%i|%T|%r|%N"], env);
  const st = q.code === 0 ? parseSqueue(q.stdout) : new Map<string, JobStatus>();
  return recs.map((r) => ({ ...r, status: st.get(r.jobId) ?? null }));
}

/** Cancels the jobs (scancel) ; the records are dropped by the next run that meets them. */
export async function cancelJobs(jobIds: string[], env: NodeJS.ProcessEnv): Promise<{ ok: boolean; message: string }> {
  if (jobIds.length === 0) return { ok: true, message: "" };
  const r = await run("scancel", jobIds, env);
  return { ok: r.code === 0, message: (r.stderr || r.stdout).trim() };
}
