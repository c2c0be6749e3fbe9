// The workspace's record of the cluster jobs its runs submitted (cache/state/slurm-jobs.json): one
// entry per instance at a fingerprint, written when the job is submitted and dropped once its outcome
// is settled. A run that starts after its engine was killed finds them here and adopts them (waits for
// a running job, takes a finished one's outputs) instead of submitting the work again; `status`
// shows them. Only the engine holding the run lock writes it (status only reads).
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../io/atomic.ts";

export interface JobRecord {
  instanceId: string;
  fingerprint: string;
  /**
   * Slurm's job id; "" while the engine is submitting (recorded before sbatch runs, so that an
   * engine killed between sbatch and this record leaves a trace: see `token`).
   */
  jobId: string;
  /** The job's comment (sbatch --comment): how a run finds a job whose id was never recorded. */
  token?: string;
  /** The instance's folder inside the job's folder: spec.json, outs/, events.ndjson, result.json. */
  dir: string;
  /** The job's folder (job.sh, group.json, the job's output file). */
  jobDir: string;
  /** Where the job writes each declared out (inside `dir`). */
  outs: Record<string, string>;
  submittedAt: string;
  /** Submissions so far for this instance and fingerprint (retries after transient failures). */
  attempt: number;
}

interface StoreFile {
  version: 1;
  jobs: Record<string, JobRecord>;
}

export const SLURM_JOBS_FILE = "state/slurm-jobs.json";

export function recordKey(instanceId: string, fingerprint: string): string {
  return `${instanceId}\u0000${fingerprint}`;
}

export async function readJobRecords(cacheDir: string): Promise<JobRecord[]> {
  try {
    const f = JSON.parse(await readFile(join(cacheDir, SLURM_JOBS_FILE), "utf8")) as Partial<StoreFile>;
    if (f.version !== 1 || !f.jobs || typeof f.jobs !== "object") return [];
    return Object.values(f.jobs).filter((r) => r && typeof r.jobId === "string" && typeof r.instanceId === "string" && typeof r.dir === "string");
  } catch {
    return [];
  }
}

/** The records, held in memory by one engine and written through on every change (serialised). */
export class JobStore {
  private queue: Promise<void> = Promise.resolve();
  private constructor(
    private readonly file: string,
    private readonly jobs: Map<string, JobRecord>,
  ) {}

  static async open(cacheDir: string): Promise<JobStore> {
    const recs = await readJobRecords(cacheDir);
    return new JobStore(join(cacheDir, SLURM_JOBS_FILE), new Map(recs.map((r) => [recordKey(r.instanceId, r.fingerprint), r])));
  }

  get(instanceId: string, fingerprint: string): JobRecord | undefined {
    return this.jobs.get(recordKey(instanceId, fingerprint));
  }

  all(): JobRecord[] {
    return [...this.jobs.values()];
  }

  set(rec: JobRecord): Promise<void> {
    this.jobs.set(recordKey(rec.instanceId, rec.fingerprint), rec);
    return this.flush();
  }

  delete(instanceId: string, fingerprint: string): Promise<void> {
    if (!this.jobs.delete(recordKey(instanceId, fingerprint))) return Promise.resolve();
    return this.flush();
  }

  private flush(): Promise<void> {
    const data: StoreFile = { version: 1, jobs: Object.fromEntries(this.jobs) };
    const text = JSON.stringify(data, null, 1) + "\n";
    const write = this.queue.then(() => writeFileAtomic(this.file, text));
    this.queue = write.catch(() => {});
    return write;
  }
}
