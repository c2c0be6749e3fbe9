// The sbatch script of a sed-pipe job: resources as #SBATCH lines, the worker command, nothing else.
// Pure (no I/O, no clock): tested on literals.
import { RESERVED_OPTIONS } from "../../pipeline/resources.ts";

/** What a job asks the scheduler for (src/pipeline's Resources, as the Slurm executor reads them). */
export interface JobResources {
  cpus: number;
  memoryMb: number | null;
  gpus: number;
  timeMinutes: number | null;
  /** Free-form options: partition, account, qos, constraint... become --name=value. */
  options: Record<string, string>;
}

export interface SbatchRequest {
  /** The job name (squeue's NAME column): "sed-pipe:<instance>" or "sed-pipe:<stage>[n]". */
  name: string;
  resources: JobResources;
  /** Where the job's stdout and stderr go (Slurm expands %j to the job id). */
  output: string;
  /** The job's working directory (the workspace root, on the shared file system). */
  chdir: string;
  /** The command, one argument per element; quoted for bash here. */
  command: readonly string[];
  /**
   * Slurm's comment on the job: a token the engine records before it calls sbatch, so that a run
   * after an engine killed between sbatch and its record still finds the job (squeue %k).
   */
  comment?: string;
}

/** Slurm's time format for a limit in minutes: "MM" below an hour would be ambiguous, so H:MM:00 / D-HH:MM:00. */
export function slurmTime(minutes: number): string {
  const m = Math.max(1, Math.ceil(minutes));
  const days = Math.floor(m / 1440);
  const h = Math.floor((m % 1440) / 60);
  const min = m % 60;
  const hm = `${String(h).padStart(2, "0")}:${String(min).padStart(2, "0")}:00`;
  return days > 0 ? `${days}-${hm}` : hm;
}

/** A word bash reads back as exactly itself. */
export function shellQuote(s: string): string {
  if (s !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}


export function sbatchScript(r: SbatchRequest): string {
  const res = r.resources;
  const lines = [
    "#!/bin/bash",
    `#SBATCH --job-name=${shellQuote(r.name)}`,
    `#SBATCH --output=${shellQuote(r.output)}`,
    `#SBATCH --chdir=${shellQuote(r.chdir)}`,
    "#SBATCH --ntasks=1",
    `#SBATCH --cpus-per-task=${res.cpus}`,
    // sed-pipe retries transient failures itself (--retries): Slurm must not rerun a job behind its back.
    "#SBATCH --no-requeue",
  ];
  if (r.comment !== undefined) {
    if (/[\n\r|]/.test(r.comment)) throw new Error(`job comment "${r.comment}" holds a line break or "|"`);
    lines.push(`#SBATCH --comment=${shellQuote(r.comment)}`);
  }
  if (res.memoryMb !== null) lines.push(`#SBATCH --mem=${Math.ceil(res.memoryMb)}M`);
  if (res.gpus > 0) lines.push(`#SBATCH --gres=gpu:${res.gpus}`);
  if (res.timeMinutes !== null) lines.push(`#SBATCH --time=${slurmTime(res.timeMinutes)}`);
  for (const [k, v] of Object.entries(res.options).sort(([a], [b]) => (a < b ? -1 : 1))) {
    if (!/^[a-z][a-z0-9-]*$/.test(k)) throw new Error(`scheduler option "${k}" is not an option name`);
    if (RESERVED_OPTIONS.has(k)) throw new Error(`scheduler option "${k}" is set by sed-pipe itself`);
    if (/[\n\r]/.test(v)) throw new Error(`scheduler option "${k}" holds a line break`);
    lines.push(`#SBATCH --${k}=${shellQuote(v)}`);
  }
  lines.push("", `exec ${r.command.map(shellQuote).join(" ")}`, "");
  return lines.join("\n");
}
