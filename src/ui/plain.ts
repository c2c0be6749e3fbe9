// Plain-line sink for runner events: one line per meaningful event, no cursor movement, progress
// throttled per instance. For pipes, CI and logs. Knows only the event types (src/runner/events.ts).
import type { PlanCounts, PlanStep } from "../pipeline/types.ts";
import type { EventSink, RunnerEvent } from "../runner/events.ts";
import { needsLines } from "../pipeline/needs.ts";

export interface PlainOptions {
  write(text: string): void;
  /** ANSI colour (callers decide from NO_COLOR / TTY); the status words are there either way. */
  color: boolean;
  /** Also print every stage log line and every skipped instance. */
  verbose?: boolean;
  /** At most one progress line per instance per this many ms (default 2000). */
  progressIntervalMs?: number;
  now?: () => number;
}

const CODES = { red: 31, green: 32, yellow: 33, blue: 34, dim: 2, bold: 1 } as const;
type Style = keyof typeof CODES;

export function seconds(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const m = Math.floor(ms / 60_000);
  return `${m} min ${Math.round((ms % 60_000) / 1000)} s`;
}

function formatProgress(e: Extract<RunnerEvent, { type: "progress" }>): string {
  const p = e.progress;
  const parts = [p.phase];
  if (p.done !== undefined) {
    const unit = p.unit ? ` ${p.unit}` : "";
    if (p.total !== undefined && p.total > 0) {
      parts.push(`${p.done}/${p.total}${unit} (${Math.floor((100 * p.done) / p.total)}%)`);
    } else parts.push(`${p.done}${unit}`);
  }
  if (p.metrics && Object.keys(p.metrics).length) {
    parts.push(
      Object.entries(p.metrics)
        .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toPrecision(4)}`)
        .join(" "),
    );
  }
  if (p.message) parts.push(`- ${p.message}`);
  return parts.join(" ");
}

/** "4 to run, 2 to restore, 90 fresh, 2 to decide after their upstream": what the plan promises, no more. */
export function planSummary(n: PlanCounts): string {
  const parts = [`${n.run} to run`, `${n.restore} to restore`, `${n.skip} fresh`];
  if (n.pending) parts.push(`${n.pending} to decide after their upstream (run, restore or fresh)`);
  return parts.join(", ");
}

/** Lines describing a plan, as printed before a run and by `run --dry-run`. */
export function planLines(steps: PlanStep[], counts: PlanCounts, all: boolean): string[] {
  const lines = [`plan: ${planSummary(counts)} (${steps.length} instances)`];
  const width = Math.min(48, Math.max(0, ...steps.map((s) => s.id.length)));
  for (const s of steps) {
    if (!all && s.action === "skip") continue;
    lines.push(`  ${(s.pending ? "later" : s.action).padEnd(7)} ${s.id.padEnd(width)}  ${s.reason}`);
  }
  return lines;
}

export function createPlainSink(o: PlainOptions): EventSink {
  const interval = o.progressIntervalMs ?? 2000;
  const now = o.now ?? Date.now;
  const lastProgress = new Map<string, number>();
  let dryRun = false;
  const c = (style: Style, s: string) => (o.color ? `\x1b[${CODES[style]}m${s}\x1b[0m` : s);
  const out = (line: string) => o.write(line + "\n");

  return (e: RunnerEvent) => {
    switch (e.type) {
      case "plan":
        dryRun = e.dryRun;
        for (const l of planLines(e.steps, e.counts, e.dryRun || !!o.verbose)) out(l);
        if (e.needs && e.dryRun) for (const l of needsLines(e.needs)) out(l.startsWith("WARNING") || l.startsWith("missing manual inputs (") ? c("yellow", l) : l);
        if (e.dryRun) out(c("dim", e.needs?.missingInputs.length ? "dry run: nothing was executed; a run would stop at once until the missing manual inputs are in place" : "dry run: nothing was executed"));
        break;
      case "instance-start":
        out(`${c("blue", e.action === "run" ? "> run" : "> restore")} ${e.id}${e.reason ? c("dim", `  (${e.reason})`) : ""}`);
        break;
      case "instance-job":
        out(`  [${e.id}] ${e.executor} job ${e.jobId} ${e.state}${e.nodes ? ` on ${e.nodes}` : ""}`);
        break;
      case "progress": {
        const t = now();
        const last = lastProgress.get(e.id);
        if (last !== undefined && t - last < interval) break;
        lastProgress.set(e.id, t);
        out(`  [${e.id}] ${formatProgress(e)} ${c("dim", seconds(e.elapsedMs))}`);
        break;
      }
      case "log":
        if (o.verbose) out(c("dim", `  [${e.id}] ${e.line}`));
        break;
      case "instance-done":
        lastProgress.delete(e.id);
        if (e.action === "skipped") {
          if (o.verbose || e.reason !== "fresh") out(`${c("dim", "= fresh")} ${e.id}${e.reason !== "fresh" ? c("dim", `  (${e.reason})`) : ""}`);
        } else out(`${c("green", e.action === "ran" ? "ok ran" : "ok restored")} ${e.id} ${c("dim", `(${seconds(e.durationMs)})`)}`);
        break;
      case "instance-failed":
        lastProgress.delete(e.id);
        if (e.interrupted) {
          out(`${c("yellow", "STOPPED")} ${e.id} ${c("dim", `(${seconds(e.durationMs)})`)}: interrupted; it stays stale and reruns next time`);
          break;
        }
        out(`${c("red", "FAILED")} ${e.id} ${c("dim", `(${seconds(e.durationMs)})`)}: ${e.error}`);
        for (const l of e.tail.slice(-10)) out(c("dim", `  | ${l}`));
        out(`  log: ${e.logPath}`);
        break;
      case "instance-blocked":
        out(`${c("yellow", "- not run")} ${e.id}${c("dim", e.because ? `  (upstream ${e.because} failed)` : "  (run stopped)")}`);
        break;
      case "warning":
        out(`${c("yellow", "warning:")} ${e.id ? `[${e.id}] ` : ""}${e.message}`);
        break;
      case "run-done": {
        if (dryRun) break;
        const k = e.counts;
        const summary = `${k.ran} ran, ${k.restored} restored, ${k.skipped} fresh, ${k.failed} failed, ${k.blocked} not run`;
        const word = e.outcome === "ok" ? c("green", "done:") : e.outcome === "failed" ? c("red", "failed:") : c("yellow", "interrupted:");
        out(`${word} ${summary} in ${seconds(e.durationMs)}`);
        break;
      }
    }
  };
}
