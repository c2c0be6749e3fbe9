// `resources:` of a stage: what each instance asks the machine (local runs) or the cluster scheduler
// (Slurm jobs) for. Owns the accepted forms of each key, their defaults and the wording of what is
// wrong. Pure: no I/O; positions are found by the caller (check-resources.ts).
import { describeValue } from "../schema-issues.ts";
import type { Resources } from "./types.ts";

export const RESOURCE_KEYS = ["cpus", "memory", "gpus", "time", "options"] as const;

export const DEFAULT_RESOURCES: Readonly<Resources> = Object.freeze({ cpus: 1, memoryMb: null, gpus: 0, timeMinutes: null, options: Object.freeze({}) as Record<string, string> });

/** One thing wrong with a `resources:` value: the key path under `resources` ([] = the map itself). */
export interface ResourceProblem {
  path: (string | number)[];
  text: string;
  /** "key": the key itself is wrong (point at it, not at its value). */
  at?: "key";
}

export type ParsedResources = { ok: true; value: Resources } | { ok: false; problems: ResourceProblem[] };

const UNIT_MB: Record<string, number> = { k: 1 / 1024, m: 1, g: 1024, t: 1024 * 1024 };

/**
 * Megabytes of a memory size. A number is MB; a string is a number (MB) or a number with a unit K, M,
 * G or T (binary, as Slurm reads them: 1G = 1024M), optionally followed by B or iB: "16G", "512M",
 * "1.5GiB". null when the text is not a size.
 */
export function parseMemoryMb(v: unknown): number | null {
  if (typeof v === "number") return Number.isFinite(v) && v > 0 ? v : null;
  if (typeof v !== "string") return null;
  const m = /^\s*(\d+(?:\.\d+)?|\.\d+)\s*(?:([kmgt])(?:i?b)?)?\s*$/i.exec(v);
  if (!m) return null;
  const mb = Number(m[1]) * (m[2] ? UNIT_MB[m[2].toLowerCase()]! : 1);
  return mb > 0 ? mb : null;
}

const UNIT_MIN: Record<string, number> = { d: 1440, h: 60, m: 1, s: 1 / 60 };

/**
 * Minutes of a time limit. A number is minutes; a string is one of: minutes ("90"); units d, h, m, s
 * ("24h", "90m", "1h30m", "2d"); Slurm's clock forms "HH:MM:SS", "D-HH:MM:SS", "D-HH:MM", "D-HH".
 * "A:B" alone is refused (Slurm reads it as minutes:seconds, people as hours:minutes). null when
 * the text is none of these.
 */
export function parseTimeMinutes(v: unknown): number | null {
  if (typeof v === "number") return Number.isFinite(v) && v > 0 ? v : null;
  if (typeof v !== "string") return null;
  const s = v.trim().toLowerCase();
  let min: number | null = null;
  if (/^\d+(\.\d+)?$/.test(s)) min = Number(s);
  else if (/^(\d+(\.\d+)?[dhms])+$/.test(s)) {
    min = 0;
    for (const m of s.matchAll(/(\d+(?:\.\d+)?)([dhms])/g)) min += Number(m[1]) * UNIT_MIN[m[2]!]!;
  } else {
    const clock = /^(?:(\d+)-)?(\d+)(?::([0-5]\d))?(?::([0-5]\d))?$/.exec(s);
    // Without a day part only H:MM:SS is a clock; with one, D-H, D-H:MM and D-H:MM:SS are.
    if (clock && (clock[1] !== undefined || clock[4] !== undefined)) {
      const [, d, h, mm, ss] = clock;
      min = Number(d ?? 0) * 1440 + Number(h) * 60 + Number(mm ?? 0) + Number(ss ?? 0) / 60;
    }
  }
  return min !== null && min > 0 ? min : null;
}

/** An integer >= min, from a number or a string of digits (a `${...}` embedded in text gives a string). */
function parseCount(v: unknown, min: number): number | null {
  const n = typeof v === "number" ? v : typeof v === "string" && /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
  return Number.isInteger(n) && n >= min ? n : null;
}

/** Option names that a key of `resources:` sets: written through `options:` they would contradict it. */
const SET_BY_KEY: Record<string, string> = { "cpus-per-task": "cpus", mem: "memory", "mem-per-cpu": "memory", gres: "gpus", gpus: "gpus", time: "time" };

/**
 * Scheduler options sed-pipe sets on every job itself (it names, places and tracks the job), and
 * the ones a key of `resources:` sets: none may come through `options:` (src/runner/slurm/sbatch.ts
 * checks again at submit time).
 */
export const RESERVED_OPTIONS: ReadonlySet<string> = new Set([
  ...Object.keys(SET_BY_KEY),
  ...["job-name", "output", "error", "chdir", "ntasks", "wrap", "array", "parsable", "requeue", "no-requeue", "dependency", "comment"],
]);

function parseOptions(v: unknown, problems: ResourceProblem[]): Record<string, string> {
  if (v === null || v === undefined) return {};
  if (typeof v !== "object" || Array.isArray(v)) {
    problems.push({ path: ["options"], text: `resources.options: expected a map of option -> value, got ${describeValue(v)}; write e.g. {partition: gpu, account: my-lab}` });
    return {};
  }
  const out: Record<string, string> = {};
  for (const [k, raw] of Object.entries(v as Record<string, unknown>)) {
    const where = `resources.options.${k}`;
    if (!/^[a-z][a-z0-9-]*$/.test(k)) {
      problems.push({ path: ["options", k], at: "key", text: `${where}: "${k}" is not an option name; write it as the scheduler spells it, lower case with dashes (e.g. partition, qos, mail-type)` });
      continue;
    }
    if (SET_BY_KEY[k]) {
      problems.push({ path: ["options", k], at: "key", text: `${where}: set this through resources.${SET_BY_KEY[k]}, not options` });
      continue;
    }
    if (RESERVED_OPTIONS.has(k)) {
      problems.push({ path: ["options", k], at: "key", text: `${where}: sed-pipe sets --${k} on every job itself (it names, places and tracks its jobs); remove this option` });
      continue;
    }
    if (typeof raw !== "string" && typeof raw !== "number") {
      problems.push({ path: ["options", k], text: `${where}: expected a string, got ${describeValue(raw)}` });
      continue;
    }
    const s = String(raw);
    if (s === "" || /[\n\r]/.test(s)) {
      problems.push({ path: ["options", k], text: `${where}: ${s === "" ? "is empty" : "holds a line break"}; write one value on one line, or remove the option` });
      continue;
    }
    out[k] = s;
  }
  return out;
}

/** The resources of one instance from its interpolated `resources:` value (absent: the defaults). */
export function parseResources(raw: unknown): ParsedResources {
  if (raw === undefined || raw === null) return { ok: true, value: { ...DEFAULT_RESOURCES, options: {} } };
  if (typeof raw !== "object" || Array.isArray(raw)) {
    return { ok: false, problems: [{ path: [], text: `resources: expected a map of ${RESOURCE_KEYS.join(", ")}, got ${describeValue(raw)}; write e.g. {cpus: 4, memory: 16G}` }] };
  }
  const r = raw as Record<string, unknown>;
  const problems: ResourceProblem[] = [];
  for (const k of Object.keys(r)) {
    if (!(RESOURCE_KEYS as readonly string[]).includes(k)) problems.push({ path: [k], at: "key", text: `resources: unknown key "${k}"; known keys: ${RESOURCE_KEYS.join(", ")}` });
  }
  const value: Resources = { ...DEFAULT_RESOURCES, options: {} };
  const has = (k: string) => r[k] !== undefined && r[k] !== null;
  if (has("cpus")) {
    const n = parseCount(r.cpus, 1);
    if (n === null) problems.push({ path: ["cpus"], text: `resources.cpus: ${describeValue(r.cpus)} is not a whole number >= 1; write e.g. cpus: 4` });
    else value.cpus = n;
  }
  if (has("gpus")) {
    const n = parseCount(r.gpus, 0);
    if (n === null) problems.push({ path: ["gpus"], text: `resources.gpus: ${describeValue(r.gpus)} is not a whole number >= 0; write e.g. gpus: 1` });
    else value.gpus = n;
  }
  if (has("memory")) {
    const mb = parseMemoryMb(r.memory);
    if (mb === null) problems.push({ path: ["memory"], text: `resources.memory: ${describeValue(r.memory)} is not a size; write e.g. 16G or 512M (a plain number is MB)` });
    else value.memoryMb = mb;
  }
  if (has("time")) {
    const min = parseTimeMinutes(r.time);
    if (min === null) {
      const ambiguous = typeof r.time === "string" && /^\s*\d+:\d+\s*$/.test(r.time);
      problems.push({ path: ["time"], text: `resources.time: ${describeValue(r.time)} is ${ambiguous ? "ambiguous (minutes:seconds or hours:minutes?)" : "not a duration"}; write e.g. 24h, 90m, 1-00:00:00 or 02:30:00` });
    } else value.timeMinutes = min;
  }
  if (has("options")) value.options = parseOptions(r.options, problems);
  return problems.length > 0 ? { ok: false, problems } : { ok: true, value };
}

/** "16G" / "512M" / "1.5G": a memory size for messages. */
export function formatMemory(mb: number): string {
  if (mb >= 1024) return `${Number((mb / 1024).toFixed(1))}G`;
  return `${Math.round(mb)}M`;
}
