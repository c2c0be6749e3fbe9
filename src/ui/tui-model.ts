// The live run view's state: a pure reducer from RunnerEvents to rows (per instance, grouped per
// stage) with progress rates and ETAs. Knows only the event types; no rendering, no clocks.
import type { RunnerEvent, RunCounts, RunDoneEvent } from "../runner/events.ts";
import type { ProgressEvent } from "../stage-api.ts";

export type RowState = "fresh" | "queued" | "restoring" | "running" | "done" | "restored" | "skipped" | "failed" | "blocked";

export interface ProgressView {
  phase: string;
  done?: number;
  total?: number;
  unit?: string;
  message?: string;
  metrics?: Record<string, number>;
  /** Units per second over the current phase, once two samples exist. */
  rate?: number;
  /** Seconds left in the current phase at that rate (needs a total). */
  etaS?: number;
}

export interface InstanceRow {
  id: string;
  stage: string;
  state: RowState;
  /** Planned action: what the plan said before anything ran. */
  planned: "run" | "restore" | "skip";
  reason: string;
  /** ms since the instance started, from its latest event (the runner's clock, not ours). */
  elapsedMs?: number;
  durationMs?: number;
  progress?: ProgressView;
  logPath?: string;
  error?: string;
  /** A failed row that the run's Ctrl-C stopped (shown as "stopped", not "FAILED"). */
  interrupted?: boolean;
  /** Last log lines (kept short: the failure view shows them). */
  tail: string[];
  blockedBy?: string | null;
  /** Wall-clock ms when the sink saw the instance start (only for the live elapsed time). */
  startedAt?: number;
  /** The cluster job running it: "slurm 123 RUNNING on node7". */
  job?: string;
}

export interface StageGroup {
  stage: string;
  ids: string[];
}

export interface TuiModel {
  runId: string | null;
  dryRun: boolean;
  rows: Map<string, InstanceRow>;
  groups: StageGroup[];
  warnings: string[];
  done: RunDoneEvent | null;
  /** Wall-clock ms when the plan arrived (live elapsed time of the run). */
  startedAt?: number;
  /** First sample of the current phase per instance, for rates. */
  phaseStart: Map<string, { phase: string; elapsedMs: number; done: number }>;
}

export const TAIL_LINES = 8;

export function stageOf(id: string): string {
  const at = id.indexOf("@");
  return at < 0 ? id : id.slice(0, at);
}

export function emptyModel(): TuiModel {
  return { runId: null, dryRun: false, rows: new Map(), groups: [], warnings: [], done: null, phaseStart: new Map() };
}

function row(m: TuiModel, id: string): InstanceRow {
  let r = m.rows.get(id);
  if (!r) {
    // Events for an instance the plan did not list (should not happen): show it rather than drop it.
    r = { id, stage: stageOf(id), state: "queued", planned: "run", reason: "", tail: [] };
    m.rows.set(id, r);
    const g = m.groups.find((x) => x.stage === r!.stage);
    if (g) g.ids.push(id);
    else m.groups.push({ stage: r.stage, ids: [id] });
  }
  return r;
}

function progressView(m: TuiModel, id: string, elapsedMs: number, p: ProgressEvent): ProgressView {
  const v: ProgressView = { phase: p.phase };
  if (p.done !== undefined) v.done = p.done;
  if (p.total !== undefined) v.total = p.total;
  if (p.unit !== undefined) v.unit = p.unit;
  if (p.message !== undefined) v.message = p.message;
  if (p.metrics !== undefined) v.metrics = p.metrics;
  if (p.done === undefined) return v;
  const start = m.phaseStart.get(id);
  // A new phase (or a counter that went backwards) restarts the rate measurement.
  if (!start || start.phase !== p.phase || p.done < start.done) {
    m.phaseStart.set(id, { phase: p.phase, elapsedMs, done: p.done });
    return v;
  }
  const dt = (elapsedMs - start.elapsedMs) / 1000;
  if (dt > 0 && p.done > start.done) {
    v.rate = (p.done - start.done) / dt;
    if (p.total !== undefined && p.total >= p.done) v.etaS = (p.total - p.done) / v.rate;
  }
  return v;
}

/**
 * Applies one event (mutates and returns the model; the Ink view re-renders from it). `at` is the
 * wall-clock time the sink received it; it only feeds live elapsed times, never a decision.
 */
export function reduce(m: TuiModel, e: RunnerEvent, at?: number): TuiModel {
  switch (e.type) {
    case "plan": {
      m.runId = e.runId;
      m.dryRun = e.dryRun;
      m.rows.clear();
      m.groups = [];
      m.phaseStart.clear();
      m.done = null;
      if (at !== undefined) m.startedAt = at;
      for (const s of e.steps) {
        const stage = stageOf(s.id);
        m.rows.set(s.id, {
          id: s.id,
          stage,
          state: s.action === "skip" ? "fresh" : "queued",
          planned: s.action,
          reason: s.reason,
          tail: [],
        });
        const g = m.groups.find((x) => x.stage === stage);
        if (g) g.ids.push(s.id);
        else m.groups.push({ stage, ids: [s.id] });
      }
      break;
    }
    case "instance-start": {
      const r = row(m, e.id);
      r.state = e.action === "run" ? "running" : "restoring";
      r.reason = e.reason;
      r.logPath = e.logPath;
      r.elapsedMs = 0;
      if (at !== undefined) r.startedAt = at;
      delete r.progress;
      m.phaseStart.delete(e.id);
      break;
    }
    case "instance-job": {
      const r = row(m, e.id);
      r.job = `${e.executor} ${e.jobId} ${e.state}${e.nodes ? ` on ${e.nodes}` : ""}`;
      break;
    }
    case "progress": {
      const r = row(m, e.id);
      r.elapsedMs = e.elapsedMs;
      r.progress = progressView(m, e.id, e.elapsedMs, e.progress);
      break;
    }
    case "log": {
      const r = row(m, e.id);
      r.tail.push(e.line);
      if (r.tail.length > TAIL_LINES) r.tail.splice(0, r.tail.length - TAIL_LINES);
      break;
    }
    case "instance-done": {
      const r = row(m, e.id);
      r.state = e.action === "ran" ? "done" : e.action === "restored" ? "restored" : r.state === "fresh" ? "fresh" : "skipped";
      r.durationMs = e.durationMs;
      if (e.action !== "skipped" || e.reason !== "fresh") r.reason = e.reason;
      m.phaseStart.delete(e.id);
      break;
    }
    case "instance-failed": {
      const r = row(m, e.id);
      r.state = "failed";
      r.interrupted = e.interrupted === true;
      r.error = e.error;
      r.logPath = e.logPath;
      r.durationMs = e.durationMs;
      if (e.tail.length) r.tail = e.tail.slice(-TAIL_LINES);
      m.phaseStart.delete(e.id);
      break;
    }
    case "instance-blocked": {
      const r = row(m, e.id);
      r.state = "blocked";
      r.blockedBy = e.because;
      break;
    }
    case "warning":
      m.warnings.push(e.id ? `[${e.id}] ${e.message}` : e.message);
      if (m.warnings.length > 5) m.warnings.splice(0, m.warnings.length - 5);
      break;
    case "run-done":
      m.done = e;
      break;
  }
  return m;
}

export type StateCounts = Record<RowState, number>;

export function countStates(rows: Iterable<InstanceRow>): StateCounts {
  const c: StateCounts = { fresh: 0, queued: 0, restoring: 0, running: 0, done: 0, restored: 0, skipped: 0, failed: 0, blocked: 0 };
  for (const r of rows) c[r.state]++;
  return c;
}

/** Live counts for the summary line while the run is going (run-done carries the final ones). */
export function liveCounts(m: TuiModel): RunCounts & { running: number; queued: number } {
  const c = countStates(m.rows.values());
  return {
    ran: c.done,
    restored: c.restored,
    skipped: c.fresh + c.skipped,
    failed: c.failed,
    blocked: c.blocked,
    running: c.running + c.restoring,
    queued: c.queued,
  };
}

/** Rows shown one per line inside a group: what is running or failed (everything, for small groups). */
export function expandedRows(m: TuiModel, g: StageGroup, limit: number): InstanceRow[] {
  const rows = g.ids.map((id) => m.rows.get(id)!);
  if (rows.length <= limit) return rows;
  return rows.filter((r) => r.state === "running" || r.state === "restoring" || r.state === "failed");
}

/** Lines a frame takes with this expand limit and failure-tail length (groups, rows, tails, summary). */
export function frameLines(m: TuiModel, expandLimit: number, tailLines: number): number {
  let n = 1 + m.warnings.length;
  for (const g of m.groups) {
    n++;
    for (const r of expandedRows(m, g, expandLimit)) {
      n++;
      if (r.state === "failed") n += Math.min(tailLines, r.tail.length) + (r.logPath ? 1 : 0);
    }
  }
  return n;
}

/**
 * The most detail that fits `height` rows: list small groups in full, else only active rows, and
 * shorten failure tails. A frame taller than the terminal cannot be redrawn in place (it scrolls).
 */
export function fitLayout(m: TuiModel, height: number | undefined, expandLimit: number): { expandLimit: number; tailLines: number } {
  if (!height || height <= 0) return { expandLimit, tailLines: TAIL_LINES };
  const room = height - 1;
  for (const [limit, tail] of [[expandLimit, TAIL_LINES], [0, TAIL_LINES], [0, 3], [0, 0]] as const) {
    if (frameLines(m, limit, tail) <= room) return { expandLimit: limit, tailLines: tail };
  }
  return { expandLimit: 0, tailLines: 0 };
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers shared by the Ink view (pure; tested on literals).

/**
 * Width of the id column for the ids shown in one frame: the longest of them, capped at 40% of the
 * terminal (16..60 columns) so that progress and reasons keep room. Longer ids are shortened with
 * `fitId`, so every row's columns line up.
 */
export function idColumnWidth(ids: Iterable<string>, termWidth: number): number {
  const cap = Math.min(60, Math.max(16, Math.floor(termWidth * 0.4)));
  let longest = 0;
  for (const id of ids) longest = Math.max(longest, [...id].length);
  return Math.min(cap, longest);
}

/** `id` padded to exactly `width` columns; a longer one keeps its start and end around a "…". */
export function fitId(id: string, width: number): string {
  const chars = [...id];
  if (chars.length <= width) return id + " ".repeat(width - chars.length);
  if (width <= 1) return "…".slice(0, width);
  const tail = Math.floor((width - 1) / 2);
  const head = width - 1 - tail;
  return chars.slice(0, head).join("") + "…" + chars.slice(chars.length - tail).join("");
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.round(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

const BYTE_UNITS = ["B", "KB", "MB", "GB", "TB"];

/** A quantity in its unit: bytes get KB/MB/GB (powers of 1000), others a compact number. */
export function formatAmount(n: number, unit?: string): string {
  if (unit === "B") {
    let v = n;
    let i = 0;
    while (v >= 1000 && i < BYTE_UNITS.length - 1) {
      v /= 1000;
      i++;
    }
    return `${i === 0 ? Math.round(v) : v.toFixed(v < 10 ? 2 : 1)} ${BYTE_UNITS[i]}`;
  }
  const s = Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 2 : 1);
  return unit ? `${s} ${unit}` : s;
}

export function formatRate(rate: number, unit?: string): string {
  if (unit === "B") return `${formatAmount(rate, "B")}/s`;
  const r = rate >= 100 ? rate.toFixed(0) : rate >= 10 ? rate.toFixed(1) : rate.toFixed(2);
  return `${r} ${unit ?? "it"}/s`;
}

/** A text progress bar of `width` cells (full blocks, a partial block, spaces). */
export function bar(fraction: number, width: number): string {
  const f = Math.min(1, Math.max(0, fraction));
  const cells = f * width;
  const full = Math.floor(cells);
  const partials = [" ", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
  const rest = full < width ? partials[Math.floor((cells - full) * 8)]! : "";
  return ("█".repeat(full) + rest).padEnd(width, " ");
}

export function formatMetrics(metrics: Record<string, number> | undefined): string {
  if (!metrics || Object.keys(metrics).length === 0) return "";
  return Object.entries(metrics)
    .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : Math.abs(v) >= 1000 || Math.abs(v) < 0.001 ? v.toExponential(2) : v.toPrecision(4)}`)
    .join(" ");
}

/** Metrics that are rates or ETAs: shown as the rate/ETA parts, not repeated as name=value. */
const RATE_METRIC = /^(rate|eta|eta_s|[a-z0-9]+_per_s)$/;

/**
 * "12/50 img 24% 3.10 img/s eta 12.3s loss=0.4123" (the parts that are known). The rate and ETA are
 * measured from the events; until two samples exist, the stage's own rate/eta_s metrics stand in.
 * The stage's message is shown only for phases without a counter (it usually restates the counter).
 */
export function progressText(p: ProgressView): string {
  const parts: string[] = [p.phase];
  const m = p.metrics ?? {};
  if (p.done !== undefined) {
    if (p.total !== undefined && p.total > 0) {
      parts.push(`${formatAmount(p.done, p.unit === "B" ? "B" : undefined)}/${formatAmount(p.total, p.unit)}`);
      parts.push(`${Math.floor((100 * p.done) / p.total)}%`);
    } else parts.push(formatAmount(p.done, p.unit));
  }
  const stageRate = Object.keys(m).find((k) => k === "rate" || k.endsWith("_per_s"));
  const rate = p.rate ?? (stageRate !== undefined && Number.isFinite(m[stageRate]) ? m[stageRate] : undefined);
  const eta = p.etaS ?? (p.rate === undefined && Number.isFinite(m.eta_s) ? m.eta_s : undefined);
  // Metrics (the current loss) before rate and ETA: a narrow terminal truncates from the end.
  const metrics = formatMetrics(Object.fromEntries(Object.entries(m).filter(([k]) => !RATE_METRIC.test(k))));
  if (metrics) parts.push(metrics);
  if (rate !== undefined && p.done !== undefined) parts.push(formatRate(rate, p.unit));
  if (eta !== undefined && p.done !== undefined) parts.push(`eta ${formatDuration(eta * 1000)}`);
  if (p.message && p.done === undefined) parts.push(p.message);
  return parts.join(" ");
}
