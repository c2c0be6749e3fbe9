// The cluster jobs a workspace's runs submitted and have not settled (cache/state/slurm-jobs.json),
// with what Slurm says of them now: for `status`, `jobs` and `jobs --cancel`. One squeue call.
import { execFile } from "node:child_process";
import { readdir } from "node:fs/promises";
import { readJobRecords, type JobRecord } from "./job-store.ts";
import { parseSqueue, type JobStatus } from "./queue.ts";

export interface JobView extends JobRecord {
  /** Slurm's word now, or null when Slurm does not know the job any more (or did not answer). */
  status: JobStatus | null;
}

export type Exec = (cmd: string, args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;

/** Runs Slurm's client commands with `env` (SLURM_CONF, PATH); never throws: a code, or 127 when the command is missing. */
export function slurmCommands(env: NodeJS.ProcessEnv, timeoutMs = 60_000): Exec {
  return (cmd, args) =>
    new Promise((resolve) => {
      execFile(cmd, args, { env, timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : 127) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) || (err && code === 127 ? (err as Error).message : "") });
      });
    });
}

/**
 * The id of the job behind records whose engine was killed while it submitted them (jobId ""):
 * a job that started has written its output file, slurm-<id>.out, in its folder; a job still
 * queued is found by its comment (squeue %k). Null: sbatch never made the job (nothing to adopt).
 * Throws when Slurm does not answer: guessing "never submitted" could run the work twice.
 */
export async function findSubmittedJob(rec: Pick<JobRecord, "jobDir" | "token">, exec: Exec): Promise<string | null> {
  try {
    for (const f of await readdir(rec.jobDir)) {
      const m = /^slurm-(\d+)\.out$/.exec(f);
      if (m) return m[1]!;
    }
  } catch {
    // no folder: nothing was submitted from it
  }
  if (!rec.token) return null;
  const q = await exec("squeue", ["-h", "--me", "-t", "all", "-o", "%i|%k"]);
  if (q.code !== 0) throw new Error(`squeue did not answer (${(q.stderr || q.stdout).trim() || `exit code ${q.code}`}), so whether a job was submitted for ${rec.jobDir} is unknown`);
  for (const line of q.stdout.split("\n")) {
    const bar = line.indexOf("|");
    if (bar > 0 && line.slice(bar + 1).trim() === rec.token) return line.slice(0, bar).trim();
  }
  return null;
}

export async function listJobs(cacheDir: string, env: NodeJS.ProcessEnv): Promise<JobView[]> {
  const recs = await readJobRecords(cacheDir);
  if (recs.length === 0) return [];
  const exec = slurmCommands(env, 30_000);
  // Records of an engine killed while submitting: name the job if Slurm made one.
  const found = new Map<string, string | null>();
  for (const r of recs) {
    if (r.jobId !== "" || found.has(r.jobDir)) continue;
    found.set(r.jobDir, await findSubmittedJob(r, exec).catch(() => null));
  }
  const resolved = recs.map((r) => (r.jobId === "" ? { ...r, jobId: found.get(r.jobDir) ?? "" } : r));
  const ids = [...new Set(resolved.map((r) => r.jobId).filter((id) => id !== ""))];
  const q = ids.length ? await exec("squeue", ["-h", "-t", "all", "-j", ids.join(","), "-o", "%i|%T|%r|%N"]) : { code: 1, stdout: "", stderr: "" };
  const st = q.code === 0 ? parseSqueue(q.stdout) : new Map<string, JobStatus>();
  return resolved.map((r) => ({ ...r, status: st.get(r.jobId) ?? null }));
}

/** Cancels the jobs (scancel) ; the records are dropped by the next run that meets them. */
export async function cancelJobs(jobIds: string[], env: NodeJS.ProcessEnv): Promise<{ ok: boolean; message: string }> {
  if (jobIds.length === 0) return { ok: true, message: "" };
  const r = await slurmCommands(env, 30_000)("scancel", jobIds);
  return { ok: r.code === 0, message: (r.stderr || r.stdout).trim() };
}
