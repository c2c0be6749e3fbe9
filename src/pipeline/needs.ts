// What a plan needs before it can complete: the downloads it will make, the manual inputs that are
// not on disk, the disk its outputs take, and the compute time per stage on the backend that would
// run it. Pure: (plan steps, instances, declared inputs, which manual inputs exist, calibration) ->
// Needs; the caller does the I/O. Tested on literal inputs.
import type { InputDecl, PlanStep, StageInstance } from "./types.ts";

/** Throughput measured on one machine and backend (`sed-pipe calibrate`, cache/state/calibration.json). */
export interface Calibration {
  backend: string;
  machine: string;
  measuredAt: string;
  /** Stage name -> units of its estimate's `unit` per second, and what was measured. */
  rates: Record<string, { unit: string; perSecond: number; what: string }>;
}

export interface DownloadNeed {
  id: string;
  from: string;
  bytes: number | null;
  pinned: boolean;
}

export interface MissingInput {
  path: string;
  desc?: string;
  how?: string;
  /** Instances that read it. */
  neededBy: string[];
}

export interface StageTime {
  stage: string;
  instances: number;
  unit: string;
  /** Total work, or null when an instance's work is unknown. */
  work: number | null;
  /** Estimated seconds, or null (see `why`). */
  seconds: number | null;
  why?: string;
}

export interface Needs {
  /** Backend the time estimates are for. */
  backend: string;
  downloads: DownloadNeed[];
  missingInputs: MissingInput[];
  /** Bytes the outputs of the instances that would run take (estimated ones), and ids not estimated. */
  disk: { bytes: number; unknown: string[] };
  time: StageTime[];
  /** The calibration the times come from (null: none for this machine and backend). */
  calibration: { machine: string; measuredAt: string } | null;
  warnings: string[];
}

export interface NeedsInput {
  steps: readonly PlanStep[];
  /** Every instance of the pipeline (not only the plan's): what some stage produces is not a manual input. */
  instances: ReadonlyMap<string, StageInstance>;
  inputs: ReadonlyMap<string, InputDecl>;
  /** Manual-input paths (as deps name them) that are on disk. */
  present: ReadonlySet<string>;
  backend: string;
  calibration: Calibration | null;
}

/** A stage whose compute would take longer than this on the backend gets a warning. */
export const SLOW_SECONDS = 24 * 3600;

function norm(p: string): string {
  return p.replace(/^\.\//, "").replace(/\/+$/, "");
}

/** True when `path` is an out of some instance, inside one, or a folder holding one. */
function producedBy(outs: readonly string[], path: string): boolean {
  const p = norm(path);
  return outs.some((o) => o === p || p.startsWith(`${o}/`) || o.startsWith(`${p}/`));
}

/** Dep paths of `instances` that no instance of the pipeline writes: the manual inputs. */
export function manualInputs(instances: Iterable<StageInstance>, all: ReadonlyMap<string, StageInstance>): Map<string, string[]> {
  const outs = [...all.values()].flatMap((i) => Object.values(i.outs).map(norm));
  const found = new Map<string, string[]>();
  for (const inst of instances) {
    for (const dep of Object.values(inst.deps)) {
      if (producedBy(outs, dep)) continue;
      const ids = found.get(dep) ?? [];
      ids.push(inst.id);
      found.set(dep, ids);
    }
  }
  return found;
}

/** Instances that would execute (a restore only copies from the cache; a fresh one does nothing). */
export function wouldRun(steps: readonly PlanStep[]): string[] {
  return steps.filter((s) => s.action === "run").map((s) => s.id);
}

export function needsOf(inp: NeedsInput): Needs {
  const running = wouldRun(inp.steps)
    .map((id) => inp.instances.get(id))
    .filter((i): i is StageInstance => i !== undefined);
  const downloads: DownloadNeed[] = [];
  let diskBytes = 0;
  const diskUnknown: string[] = [];
  const byStage = new Map<string, StageInstance[]>();
  for (const inst of running) {
    const e = inst.estimate;
    if (e?.fetch) downloads.push({ id: inst.id, from: e.fetch.from, bytes: e.work, pinned: e.fetch.pinned });
    if (e && e.outBytes !== null) diskBytes += e.outBytes;
    else diskUnknown.push(inst.id);
    const list = byStage.get(inst.stage) ?? [];
    list.push(inst);
    byStage.set(inst.stage, list);
  }

  const missingInputs: MissingInput[] = [];
  for (const [path, ids] of manualInputs(running, inp.instances)) {
    if (inp.present.has(path)) continue;
    const decl = inp.inputs.get(norm(path));
    missingInputs.push({ path, ...(decl?.desc ? { desc: decl.desc } : {}), ...(decl?.how ? { how: decl.how } : {}), neededBy: ids });
  }

  const time: StageTime[] = [];
  const warnings: string[] = [];
  for (const [stage, insts] of byStage) {
    const est = insts.map((i) => i.estimate);
    const unit = est.find((e) => e)?.unit ?? "";
    const known = est.every((e) => e && e.work !== null && e.unit === unit);
    const work = known ? est.reduce((n, e) => n + e!.work!, 0) : null;
    const rate = inp.calibration?.rates[stage];
    let seconds: number | null = null;
    let why: string | undefined;
    if (est.some((e) => !e)) why = "not estimated (the stage's contract has no estimate)";
    else if (unit === "B") why = est.some((e) => e!.fetch) ? "depends on the network" : "built on this machine (not timed)";
    else if (work === null) why = "unknown: a size is not declared (inputs: in the params file)";
    else if (work === 0) seconds = 0;
    else if (!inp.calibration) why = "unknown: run sed-pipe calibrate";
    else if (!rate || rate.unit !== unit) why = `unknown: the calibration has no ${stage} rate in ${unit}`;
    else seconds = work / rate.perSecond;
    time.push({ stage, instances: insts.length, unit, work, seconds, ...(why ? { why } : {}) });
    if (seconds !== null && seconds > SLOW_SECONDS) {
      warnings.push(`${stage} would take ~${formatDuration(seconds)} on ${inp.backend} (${insts.length} instance${insts.length === 1 ? "" : "s"}); a GPU (--backend webgpu; README: Compute backends) or a cluster (--executor slurm) shortens it`);
    }
  }
  return {
    backend: inp.backend,
    downloads,
    missingInputs,
    disk: { bytes: diskBytes, unknown: diskUnknown },
    time,
    calibration: inp.calibration ? { machine: inp.calibration.machine, measuredAt: inp.calibration.measuredAt } : null,
    warnings,
  };
}

/** "1.3 GB", decimal units as disks are sold. */
export function formatBytes(n: number): string {
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : n < 10 ? 1 : 0)} ${u[i]}`;
}

/** "45 s", "12 min", "3.5 h", "4.2 days". */
export function formatDuration(s: number): string {
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} days`;
}

/** The needs block of a dry run and of `status`: downloads, missing inputs, disk, time, warnings. */
export function needsLines(n: Needs): string[] {
  const lines: string[] = [];
  const dlBytes = n.downloads.reduce((t, d) => t + (d.bytes ?? 0), 0);
  const dlUnknown = n.downloads.filter((d) => d.bytes === null).length;
  if (n.downloads.length === 0) lines.push("needs: no downloads");
  else {
    lines.push(`needs: downloads (${n.downloads.length}, ${formatBytes(dlBytes)}${dlUnknown ? ` + ${dlUnknown} of unknown size` : ""})`);
    for (const d of n.downloads) lines.push(`  ${d.id}  ${d.bytes === null ? "size unknown" : `~${formatBytes(d.bytes)}`}, ${d.pinned ? "pinned (sha256)" : "not pinned"}  ${d.from}`);
  }
  if (n.missingInputs.length === 0) lines.push("missing manual inputs: none");
  else {
    lines.push(`missing manual inputs (${n.missingInputs.length}): the run would fail until each is in place`);
    for (const m of n.missingInputs) {
      lines.push(`  ${m.path}${m.desc ? `: ${m.desc}` : ""}`);
      lines.push(`    ${m.how ?? "not described in the params file's inputs: section"}`);
      lines.push(`    needed by ${m.neededBy.length === 1 ? m.neededBy[0] : `${m.neededBy[0]} and ${m.neededBy.length - 1} more`}`);
    }
  }
  const unknown = n.disk.unknown.length;
  lines.push(
    `disk: ~${formatBytes(n.disk.bytes)} for outputs${unknown ? ` (+ ${unknown} instance${unknown === 1 ? "" : "s"} not estimated)` : ""}; the cache keeps a copy of each (a reflink where the file system allows, else up to ~${formatBytes(2 * n.disk.bytes)} in all)`,
  );
  const cal = n.calibration ? `calibrated ${n.calibration.measuredAt.slice(0, 10)} on ${n.calibration.machine}` : "no calibration for this machine: run sed-pipe calibrate";
  lines.push(`time on ${n.backend} (${cal}):`);
  for (const t of n.time) {
    const work = !t.work ? "" : t.unit === "B" ? ` ${formatBytes(t.work)}` : ` ${t.work.toLocaleString("en-US")} ${t.unit}`;
    lines.push(`  ${t.stage.padEnd(15)} ${String(t.instances).padStart(4)} to run${work}: ${t.seconds === null ? t.why : `~${formatDuration(t.seconds)}`}`);
  }
  for (const w of n.warnings) lines.push(`WARNING: ${w}`);
  return lines;
}
