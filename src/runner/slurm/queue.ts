// What Slurm says about jobs, parsed: `squeue -h -t all -o '%i|%T|%r|%N'` lines and
// `sacct --parsable2 --noheader -o JobID,State,ExitCode,NodeList` lines, and what a final state means
// for sed-pipe (done, failed for good, worth a retry, cancelled). Pure: tested on literal outputs.

export interface JobStatus {
  jobId: string;
  /** Slurm's state name, e.g. PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, OUT_OF_MEMORY. */
  state: string;
  /** squeue's reason (e.g. "Resources", "NonZeroExitCode"), or "". */
  reason: string;
  /** The node(s) it runs or ran on, or "". */
  nodes: string;
  /** "code:signal" from sacct, when known. */
  exitCode?: string;
}

/** States in which a job may still start or is running. */
const ACTIVE = new Set(["PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "RESIZING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "SPECIAL_EXIT"]);
/** Final states that say nothing about the stage: the node or the scheduler failed it. */
const TRANSIENT = new Set(["NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "DEADLINE"]);

export type JobEnd = "completed" | "failed" | "timeout" | "oom" | "transient" | "cancelled";

export function isActive(state: string): boolean {
  return ACTIVE.has(baseState(state));
}

/** "CANCELLED by 1000" -> "CANCELLED" (sacct appends who cancelled). */
export function baseState(state: string): string {
  return state.trim().split(/\s+/)[0]!.replace(/\+$/, "");
}

export function classifyEnd(state: string): JobEnd {
  const s = baseState(state);
  if (s === "COMPLETED") return "completed";
  if (s === "TIMEOUT") return "timeout";
  if (s === "OUT_OF_MEMORY") return "oom";
  if (s === "CANCELLED") return "cancelled";
  if (TRANSIENT.has(s)) return "transient";
  return "failed";
}

/** Parses `squeue -h -t all -o '%i|%T|%r|%N'` output; ids of array tasks ("12_3") are kept as they are. */
export function parseSqueue(text: string): Map<string, JobStatus> {
  const out = new Map<string, JobStatus>();
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (!t) continue;
    const [jobId, state, reason = "", nodes = ""] = t.split("|");
    if (!jobId || !state) continue;
    out.set(jobId, { jobId, state, reason: reason === "None" ? "" : reason, nodes: nodes === "(null)" ? "" : nodes });
  }
  return out;
}

/** Parses `sacct --parsable2 --noheader -o JobID,State,ExitCode,NodeList`; job steps ("12.batch") are skipped. */
export function parseSacct(text: string): Map<string, JobStatus> {
  const out = new Map<string, JobStatus>();
  for (const line of text.split("\n")) {
    const t = line.trim();
    if (!t) continue;
    const [jobId, state, exitCode = "", nodes = ""] = t.split("|");
    if (!jobId || !state || jobId.includes(".")) continue;
    out.set(jobId, { jobId, state: baseState(state), reason: "", nodes: nodes === "None assigned" ? "" : nodes, exitCode });
  }
  return out;
}

/** One line for a job that ended without the stage reporting: what Slurm says happened. */
export function describeEnd(s: JobStatus, ctx: { memoryMb?: number | null; timeMinutes?: number | null } = {}): string {
  const where = s.nodes ? ` on ${s.nodes}` : "";
  const code = s.exitCode && s.exitCode !== "0:0" ? ` (exit code ${s.exitCode})` : "";
  switch (classifyEnd(s.state)) {
    case "completed":
      return `Slurm job ${s.jobId} COMPLETED${where} but the stage did not report a result`;
    case "timeout":
      return `Slurm job ${s.jobId} hit its time limit (TIMEOUT${ctx.timeMinutes ? `, --time ${ctx.timeMinutes} min` : ""})${where}`;
    case "oom":
      return `Slurm job ${s.jobId} ran out of memory (OUT_OF_MEMORY${ctx.memoryMb ? `, --mem ${ctx.memoryMb}M` : ""})${where}`;
    case "cancelled":
      return `Slurm job ${s.jobId} was CANCELLED by someone else (scancel outside sed-pipe)${where}`;
    case "transient":
      return `Slurm job ${s.jobId} ended ${baseState(s.state)}${where}: the node or the scheduler failed it, not the stage`;
    case "failed":
      return `Slurm job ${s.jobId} ${baseState(s.state)}${code}${s.reason ? ` (${s.reason})` : ""}${where}`;
  }
}
