// The run planner: (order, lock, current fingerprints, output state, cache state) -> run/skip/restore
// per instance, with the reason. Pure: no I/O, no clock; tested on literal inputs.
import type { Change, Fingerprint, FingerprintParts, LockEntry, LockFile, PlanCounts, PlanStep } from "./types.ts";
import { isDeepStrictEqual } from "node:util";

export interface OutputState {
  /** Declared out paths that are not on disk. */
  missing: string[];
  /** Out paths on disk whose digest differs from the lock's. */
  modified: string[];
}

export interface PlanInput {
  /** Instance ids to plan, in topological order. */
  order: string[];
  /** Direct upstream instance ids of each instance. */
  upstream: Record<string, string[]>;
  lock: LockFile | null;
  /** "pending": an upstream will run, so the deps cannot be hashed yet. */
  current: Record<string, Fingerprint | "pending">;
  outputs: Record<string, OutputState>;
  /** Whether the cache holds the outputs recorded in the lock entry. */
  cached: Record<string, boolean>;
  /** Whether the run cache holds a complete run of the current fingerprint. */
  reusable?: Record<string, boolean>;
  force: string[];
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function sameValue(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(a, b);
}

function diffValue(prefix: string, old: unknown, cur: unknown, out: Change[]): void {
  if (isPlainObject(old) && isPlainObject(cur)) {
    const keys = [...Object.keys(old), ...Object.keys(cur).filter((k) => !(k in old))];
    for (const k of keys) diffValue(prefix ? `${prefix}.${k}` : k, old[k], cur[k], out);
    return;
  }
  if (Array.isArray(old) && Array.isArray(cur) && old.length === cur.length) {
    old.forEach((o, i) => diffValue(`${prefix}[${i}]`, o, cur[i], out));
    return;
  }
  if (!sameValue(old, cur) || (old === undefined) !== (cur === undefined)) {
    out.push({ kind: "param", key: prefix, old, new: cur });
  }
}

function diffDigests(old: Record<string, string>, cur: Record<string, string>, make: (k: string, o?: string, n?: string) => Change, out: Change[]): void {
  const keys = [...new Set([...Object.keys(old), ...Object.keys(cur)])].sort();
  for (const k of keys) {
    if (old[k] !== cur[k]) out.push(make(k, old[k], cur[k]));
  }
}

/** What differs between two fingerprints' parts, most telling first: stage version, params, deps, code, runtime. */
export function diffParts(old: FingerprintParts, cur: FingerprintParts): Change[] {
  const out: Change[] = [];
  if (old.stageVersion !== cur.stageVersion) out.push({ kind: "version", old: old.stageVersion, new: cur.stageVersion });
  diffValue("", old.params ?? {}, cur.params ?? {}, out);
  if (old.decl && cur.decl) {
    // Declaration changes are reported as params under "@deps."/"@outs." keys.
    for (const side of ["deps", "outs"] as const) {
      const o = old.decl[side];
      const c = cur.decl[side];
      for (const k of [...new Set([...Object.keys(o), ...Object.keys(c)])].sort()) {
        if (o[k] !== c[k]) out.push({ kind: "param", key: `@${side}.${k}`, old: o[k], new: c[k] });
      }
    }
  }
  diffDigests(old.deps ?? {}, cur.deps ?? {}, (path, o, n) => ({ kind: "dep", path, old: o, new: n }), out);
  diffDigests(old.code ?? {}, cur.code ?? {}, (file, o, n) => ({ kind: "code", file, old: o, new: n }), out);
  diffDigests(old.runtime ?? {}, cur.runtime ?? {}, (key, o, n) => ({ kind: "runtime", key, old: o, new: n }), out);
  return out;
}

function showValue(v: unknown): string {
  if (v === undefined) return "(absent)";
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

function listPaths(paths: string[]): string {
  return paths.length <= 3 ? paths.join(", ") : `${paths.slice(0, 3).join(", ")} (+${paths.length - 3} more)`;
}

/** One human line per change, e.g. "param config.n_models: 5 -> 10". */
export function formatChange(c: Change): string {
  switch (c.kind) {
    case "new":
      return "new: never ran (no lock entry)";
    case "forced":
      return "forced";
    case "version":
      return `stage version ${c.old ?? "(none)"} -> ${c.new ?? "(none)"}`;
    case "param":
      if (c.key.startsWith("@")) return `declared ${c.key.slice(1, 5)} "${c.key.slice(6)}": ${showValue(c.old)} -> ${showValue(c.new)}`;
      return `param ${c.key}: ${showValue(c.old)} -> ${showValue(c.new)}`;
    case "dep":
      return c.old === undefined ? `dep ${c.path} added` : c.new === undefined ? `dep ${c.path} removed` : `dep ${c.path} changed`;
    case "code":
      return c.old === undefined ? `code ${c.file} added` : c.new === undefined ? `code ${c.file} removed` : `code ${c.file} changed`;
    case "runtime":
      return `runtime ${c.key}: ${c.old ?? "(none)"} -> ${c.new ?? "(none)"}`;
    case "outputs-missing":
      return `outputs missing: ${listPaths(c.paths)}`;
    case "outputs-modified":
      return `outputs modified by hand: ${listPaths(c.paths)}`;
    case "upstream":
      return `upstream ${c.id} will run`;
  }
}

function summary(changes: Change[]): string {
  const first = formatChange(changes[0]!);
  return changes.length > 1 ? `${first} (+${changes.length - 1} more)` : first;
}

/** What is known of one instance whose inputs can be hashed. */
export interface InstanceObservation {
  /** Its pipeline.lock entry, if any. */
  entry: LockEntry | undefined;
  current: Fingerprint;
  outputs: OutputState;
  /** The cache holds every output the lock entry records. */
  cached: boolean;
  /** The run cache holds a run of exactly `current` (another time, or another lock) with every output. */
  reusable: boolean;
  forced: boolean;
}

const RUN_CACHE_REASON = "inputs match an earlier run: restoring its outputs from the run cache";

/** The decision for one instance whose inputs are known. */
export function decideInstance(id: string, o: InstanceObservation): PlanStep {
  if (o.forced) return { id, action: "run", reason: "forced", changes: [{ kind: "forced" }] };
  if (!o.entry || o.entry.fingerprint !== o.current.digest) {
    const changes: Change[] = o.entry ? diffParts(o.entry.parts, o.current.parts) : [{ kind: "new" }];
    if (o.reusable) return { id, action: "restore", reason: RUN_CACHE_REASON, changes, restoreFrom: "run-cache" };
    if (changes.length === 0) return { id, action: "run", reason: "fingerprint changed (format of the lock entry differs)", changes };
    return { id, action: "run", reason: summary(changes), changes };
  }
  const changes: Change[] = [];
  if (o.outputs.modified.length) changes.push({ kind: "outputs-modified", paths: o.outputs.modified });
  if (o.outputs.missing.length) changes.push({ kind: "outputs-missing", paths: o.outputs.missing });
  if (changes.length === 0) return { id, action: "skip", reason: "fresh", changes };
  const what = formatChange(changes[0]!);
  // Restoring gives the recorded bytes back, as rerunning would, without the compute.
  if (o.cached) return { id, action: "restore", reason: `${what}: restoring from cache`, changes, restoreFrom: "lock" };
  if (o.reusable) return { id, action: "restore", reason: `${what}: ${RUN_CACHE_REASON}`, changes, restoreFrom: "run-cache" };
  return { id, action: "run", reason: o.outputs.modified.length ? `${what}: rerunning overwrites them` : `${what}, not in cache`, changes };
}

export function planRun(input: PlanInput): PlanStep[] {
  const steps = new Map<string, PlanStep>();
  const forced = new Set(input.force);
  for (const id of input.order) {
    const cur = input.current[id];
    const ups = (input.upstream[id] ?? []).filter((u) => steps.has(u));
    const busy = ups.find((u) => steps.get(u)!.action === "run");
    let step: PlanStep;
    if (forced.has(id)) {
      step = { id, action: "run", reason: "forced", changes: [{ kind: "forced" }] };
    } else if (busy !== undefined || cur === "pending" || cur === undefined) {
      const restoring = ups.find((u) => steps.get(u)!.action === "restore");
      const by = busy ?? restoring;
      const reason =
        busy !== undefined
          ? `upstream ${busy} will run`
          : restoring !== undefined
            ? `upstream ${restoring} will be restored`
            : "inputs not hashable yet (a dep is not on disk)";
      step = { id, action: "run", reason, changes: by === undefined ? [] : [{ kind: "upstream", id: by }], pending: true };
    } else {
      step = decideInstance(id, {
        entry: input.lock?.instances[id],
        current: cur,
        outputs: input.outputs[id] ?? { missing: [], modified: [] },
        cached: input.cached[id] ?? false,
        reusable: input.reusable?.[id] ?? false,
        forced: false,
      });
    }
    steps.set(id, step);
  }
  return input.order.map((id) => steps.get(id)!);
}

export function planCounts(steps: readonly PlanStep[]): PlanCounts {
  const n: PlanCounts = { run: 0, restore: 0, skip: 0, pending: 0 };
  for (const s of steps) {
    if (s.pending) n.pending++;
    else n[s.action]++;
  }
  return n;
}

/** Lines for `sed-pipe why <instance>`: the decision, then every change. */
export function explain(step: PlanStep): string[] {
  const verb = step.action === "skip" ? "skip" : step.action === "restore" ? "restore" : "run";
  const lines = [`${step.id}: ${verb} (${step.reason})`];
  for (const c of step.changes) {
    lines.push(`  - ${formatChange(c)}`);
    if ((c.kind === "dep" || c.kind === "code") && c.old !== undefined && c.new !== undefined) {
      lines.push(`      ${c.old} -> ${c.new}`);
    }
  }
  if (step.pending) lines.push("  (decided again after the upstream finishes: identical upstream outputs -> skip)");
  return lines;
}
