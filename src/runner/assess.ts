// Observes the workspace for planning: current fingerprints (or "pending" when a dep does not exist
// yet), which recorded outputs are missing or modified, and which are in the cache. Reads only.
import { access } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import type { Fingerprint, LockEntry, LockFile, Pipeline, PlanStep, StageInstance, Change } from "../pipeline/types.ts";
import type { ContentStore } from "../store/cas.ts";
import type { OutputDigester } from "../store/digest.ts";

export interface OutputsState {
  missing: string[];
  modified: string[];
}

/** The planning functions of src/pipeline/plan.ts, injected so the runner can be tested on fakes. */
export interface Planner {
  planRun(input: {
    order: string[];
    upstream: Record<string, string[]>;
    lock: LockFile;
    current: Record<string, Fingerprint | "pending">;
    outputs: Record<string, OutputsState>;
    cached: Record<string, boolean>;
    force: string[];
  }): PlanStep[];
  decideInstance(
    id: string,
    entry: LockEntry | undefined,
    current: Fingerprint,
    outputs: OutputsState,
    cached: boolean,
    forced: boolean,
  ): PlanStep;
  diffParts?(old: LockEntry["parts"], cur: Fingerprint["parts"]): Change[];
  explain?(step: PlanStep): string[];
}

export interface Fingerprinter {
  fingerprint(inst: StageInstance): Promise<Fingerprint>;
  save?(): Promise<void>;
}

export function absPath(root: string, p: string): string {
  return isAbsolute(p) ? p : join(root, p);
}

/** Upstream instance ids of each id, restricted to `order`. */
export function upstreamOf(p: Pipeline, order: string[]): Record<string, string[]> {
  const inOrder = new Set(order);
  const out: Record<string, string[]> = {};
  for (const id of order) out[id] = p.graph.inNeighbors(id).filter((u) => inOrder.has(u)).sort();
  return out;
}

export async function missingDeps(root: string, inst: StageInstance): Promise<string[]> {
  const missing: string[] = [];
  for (const path of Object.values(inst.deps)) {
    try {
      await access(absPath(root, path));
    } catch {
      missing.push(path);
    }
  }
  return missing;
}

export async function currentFingerprint(
  root: string,
  inst: StageInstance,
  fp: Fingerprinter,
): Promise<Fingerprint | "pending"> {
  // A dep that does not exist yet is produced upstream (or is an error the run will report): no
  // digest can be taken, so the decision waits for the upstream instance.
  if ((await missingDeps(root, inst)).length > 0) return "pending";
  return fp.fingerprint(inst);
}

export async function outputsState(
  root: string,
  inst: StageInstance,
  entry: LockEntry | undefined,
  digester: OutputDigester,
): Promise<OutputsState> {
  const missing: string[] = [];
  const modified: string[] = [];
  for (const [name, path] of Object.entries(inst.outs)) {
    const cur = await digester.digestPath(absPath(root, path));
    if (!cur) {
      missing.push(path);
      continue;
    }
    const rec = entry?.outs[name];
    if (rec && (rec.digest !== cur.digest || rec.path !== path)) modified.push(path);
  }
  return { missing, modified };
}

export async function isCached(entry: LockEntry | undefined, inst: StageInstance, store: ContentStore): Promise<boolean> {
  if (!entry) return false;
  for (const name of Object.keys(inst.outs)) {
    const rec = entry.outs[name];
    if (!rec || rec.path !== inst.outs[name] || !(await store.has(rec))) return false;
  }
  return true;
}

export interface Assessment {
  current: Record<string, Fingerprint | "pending">;
  outputs: Record<string, OutputsState>;
  cached: Record<string, boolean>;
  upstream: Record<string, string[]>;
}

export async function assess(
  p: Pipeline,
  order: string[],
  lock: LockFile,
  fp: Fingerprinter,
  digester: OutputDigester,
  store: ContentStore,
): Promise<Assessment> {
  const a: Assessment = { current: {}, outputs: {}, cached: {}, upstream: upstreamOf(p, order) };
  for (const id of order) {
    const inst = p.instances.get(id)!;
    const entry = lock.instances[id];
    a.current[id] = await currentFingerprint(p.root, inst, fp);
    a.outputs[id] = await outputsState(p.root, inst, entry, digester);
    a.cached[id] = await isCached(entry, inst, store);
  }
  return a;
}
