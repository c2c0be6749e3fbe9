// The Ink live view of a run: one row per instance (grouped per stage for large fan-outs), progress
// bars with rate/ETA, failures with their log tail, a summary line. Reads only RunnerEvents; never
// reads keys (no raw mode: Ctrl-C stays a SIGINT that src/cli.ts handles), never decides anything.
/** @jsxRuntime automatic */
/** @jsxImportSource react */
// The pragmas above: tsx reads the tsconfig of the *working directory*, and a user's project
// usually has none, which would compile JSX as classic React.createElement without React in scope.
import type { ReactNode } from "react";
import { Box, Text, render, type Instance } from "ink";
import type { EventSink, RunnerEvent } from "../runner/events.ts";
import {
  bar,
  countStates,
  emptyModel,
  expandedRows,
  fitId,
  fitLayout,
  formatDuration,
  idColumnWidth,
  liveCounts,
  progressText,
  reduce,
  type InstanceRow,
  type RowState,
  type StageGroup,
  type TuiModel,
} from "./tui-model.ts";

/** Groups up to this size are listed instance by instance; bigger ones show counts + what is active. */
export const EXPAND_LIMIT = 8;

const STATE_COLOR: Record<RowState, string> = {
  fresh: "gray",
  queued: "gray",
  restoring: "cyan",
  running: "blue",
  done: "green",
  restored: "green",
  skipped: "gray",
  failed: "red",
  blocked: "yellow",
};

const STATE_WORD: Record<RowState, string> = {
  fresh: "fresh",
  queued: "queued",
  restoring: "restoring",
  running: "running",
  done: "done",
  restored: "restored",
  skipped: "skipped",
  failed: "FAILED",
  blocked: "not run",
};

const ORDER: RowState[] = ["running", "restoring", "failed", "queued", "done", "restored", "fresh", "skipped", "blocked"];

export interface TuiViewProps {
  model: TuiModel;
  color: boolean;
  /** Wall-clock now (ms) for live elapsed times; tests pass a fixed value. */
  now: number;
  /** Terminal width in columns. */
  width: number;
  expandLimit?: number;
  /** Terminal rows: the frame is condensed to fit (only active rows, shorter tails). */
  height?: number;
}

function C(props: { color: boolean; c?: string | undefined; dim?: boolean; bold?: boolean; children: ReactNode }) {
  if (!props.color) return <Text>{props.children}</Text>;
  return (
    <Text {...(props.c ? { color: props.c } : {})} dimColor={!!props.dim} bold={!!props.bold}>
      {props.children}
    </Text>
  );
}

function elapsedOf(r: InstanceRow, now: number): number | undefined {
  if (r.durationMs !== undefined && r.state !== "running" && r.state !== "restoring") return r.durationMs;
  if (r.startedAt !== undefined) return Math.max(0, now - r.startedAt);
  return r.elapsedMs;
}

function InstanceLine(props: { r: InstanceRow; color: boolean; now: number; width: number; idWidth: number }) {
  const { r, color, now, width, idWidth } = props;
  const el = elapsedOf(r, now);
  const time = el !== undefined && r.state !== "fresh" && r.state !== "queued" && r.state !== "blocked" ? formatDuration(el) : "";
  const word = r.interrupted ? "stopped" : STATE_WORD[r.state];
  const head = `  ${word.padEnd(9)} ${fitId(r.id, idWidth)}`;
  let detail = "";
  let barText = "";
  if ((r.state === "running" || r.state === "restoring") && r.progress) {
    const p = r.progress;
    if (p.done !== undefined && p.total !== undefined && p.total > 0) barText = `[${bar(p.done / p.total, width >= 110 ? 20 : 10)}] `;
    detail = progressText(p);
  } else if (r.state === "failed") detail = r.error ?? "";
  else if (r.state === "blocked") detail = r.blockedBy ? `upstream ${r.blockedBy} failed` : "run stopped";
  else if (r.state === "queued" || r.state === "running" || r.state === "restoring") detail = r.reason;
  if (r.job && (r.state === "running" || r.state === "queued")) detail = `[${r.job}] ${detail}`;
  const room = Math.max(10, width - head.length - 1 - barText.length - (time ? time.length + 2 : 0));
  if (detail.length > room) detail = detail.slice(0, room - 1) + "…";
  // One Text with nested segments: Ink lays it out as a single line (truncated), never as columns.
  return (
    <Text wrap="truncate-end">
      <C color={color} c={STATE_COLOR[r.state]} bold={r.state === "failed"}>
        {head + " "}
      </C>
      {barText ? (
        <C color={color} c="blue">
          {barText}
        </C>
      ) : null}
      <C color={color} dim={r.state !== "failed"}>
        {detail}
      </C>
      {time ? (
        <C color={color} dim>
          {"  " + time}
        </C>
      ) : null}
    </Text>
  );
}

function FailureDetail(props: { r: InstanceRow; color: boolean; tailLines: number }) {
  const { r, color, tailLines } = props;
  return (
    <Box flexDirection="column" marginLeft={4}>
      {(tailLines > 0 ? r.tail.slice(-tailLines) : []).map((l, i) => (
        <C key={i} color={color} dim>
          {"| " + l}
        </C>
      ))}
      {r.logPath ? <Text>{`full log: ${r.logPath}  (sed-pipe logs ${r.id})`}</Text> : null}
    </Box>
  );
}

function countsText(rows: InstanceRow[]): string {
  const c = countStates(rows);
  return ORDER.filter((s) => c[s] > 0)
    .map((s) => `${c[s]} ${STATE_WORD[s]}`)
    .join(", ");
}

function Group(props: { m: TuiModel; g: StageGroup; color: boolean; now: number; width: number; idWidth: number; expandLimit: number; tailLines: number }) {
  const { m, g, color, now, width, idWidth, expandLimit, tailLines } = props;
  const rows = g.ids.map((id) => m.rows.get(id)!);
  const shown = expandedRows(m, g, expandLimit);
  const grouped = rows.length > expandLimit;
  return (
    <Box flexDirection="column">
      <Text wrap="truncate-end">
        <C color={color} bold>
          {g.stage}
        </C>
        <C color={color} dim>
          {`  ${grouped ? `${rows.length} instances: ` : ""}${countsText(rows)}`}
        </C>
      </Text>
      {shown.map((r) => (
        <Box key={r.id} flexDirection="column">
          <InstanceLine r={r} color={color} now={now} width={width} idWidth={idWidth} />
          {r.state === "failed" ? <FailureDetail r={r} color={color} tailLines={tailLines} /> : null}
        </Box>
      ))}
    </Box>
  );
}

export function summaryText(m: TuiModel, now: number): string {
  if (m.done) {
    const k = m.done.counts;
    const word = m.done.outcome === "ok" ? "done" : m.done.outcome === "failed" ? "failed" : "interrupted";
    return `${word}: ${k.ran} ran, ${k.restored} restored, ${k.skipped} fresh, ${k.failed} failed, ${k.blocked} not run in ${formatDuration(m.done.durationMs)}`;
  }
  const k = liveCounts(m);
  const el = m.startedAt !== undefined ? `  ${formatDuration(Math.max(0, now - m.startedAt))}` : "";
  return `${k.running} running, ${k.queued} queued, ${k.ran} ran, ${k.restored} restored, ${k.skipped} fresh, ${k.failed} failed${
    k.blocked ? `, ${k.blocked} not run` : ""
  }${el}`;
}

export function TuiView(props: TuiViewProps) {
  const { model: m, color, now, width } = props;
  const { expandLimit, tailLines } = fitLayout(m, props.height, props.expandLimit ?? EXPAND_LIMIT);
  if (m.rows.size === 0 && !m.done) return <Text>planning...</Text>;
  const outcome = m.done?.outcome;
  // One id column for the whole frame, from the ids actually listed: rows of every group line up.
  const idWidth = idColumnWidth(
    m.groups.flatMap((g) => expandedRows(m, g, expandLimit).map((r) => r.id)),
    width,
  );
  return (
    <Box flexDirection="column">
      {m.groups.map((g) => (
        <Group key={g.stage} m={m} g={g} color={color} now={now} width={width} idWidth={idWidth} expandLimit={expandLimit} tailLines={tailLines} />
      ))}
      {m.warnings.map((w, i) => (
        <C key={`w${i}`} color={color} c="yellow">
          {`warning: ${w}`}
        </C>
      ))}
      <C color={color} c={outcome === "ok" ? "green" : outcome === "failed" ? "red" : outcome === "interrupted" ? "yellow" : undefined} bold>
        {m.dryRun ? "dry run: nothing was executed" : summaryText(m, now)}
      </C>
    </Box>
  );
}

export interface TuiSinkOptions {
  stdout: NodeJS.WriteStream;
  color: boolean;
  expandLimit?: number;
  /** Re-render this often for elapsed times while nothing else happens (ms; default 1000). */
  tickMs?: number;
}

export interface ClosableSink {
  sink: EventSink;
  /** Draws the final frame and releases the terminal (cursor shown). Safe to call twice. */
  close(): Promise<void>;
}

/** An EventSink drawing the live view with Ink on a TTY. */
export function createTuiSink(o: TuiSinkOptions): ClosableSink {
  const model = emptyModel();
  const width = () => Math.max(40, o.stdout.columns || 100);
  const view = () => (
    <TuiView
      model={model}
      color={o.color}
      now={Date.now()}
      width={width()}
      {...(o.stdout.rows ? { height: o.stdout.rows } : {})}
      {...(o.expandLimit ? { expandLimit: o.expandLimit } : {})}
    />
  );
  let instance: Instance | null = render(view(), {
    stdout: o.stdout,
    // Ctrl-C must reach src/cli.ts as SIGINT (first: stop gracefully; second: kill), so Ink neither
    // reads stdin nor handles it, and the console is left alone (stages never print to it).
    exitOnCtrlC: false,
    patchConsole: false,
    maxFps: 10,
  });
  const ticker = setInterval(() => instance?.rerender(view()), o.tickMs ?? 1000);
  ticker.unref();
  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    if (closed) return closed;
    clearInterval(ticker);
    const inst = instance;
    instance = null;
    if (!inst) return (closed = Promise.resolve());
    inst.rerender(view());
    inst.unmount();
    closed = inst.waitUntilExit().then(
      () => undefined,
      () => undefined,
    );
    return closed;
  };
  const sink = (e: RunnerEvent) => {
    reduce(model, e, Date.now());
    instance?.rerender(view());
  };
  return { sink, close };
}
