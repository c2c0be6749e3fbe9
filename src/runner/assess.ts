// Observes the workspace for planning: current fingerprints (or "pending" when a dep does not exist
// yet), which recorded outputs are missing or modified, what the cache can restore (from the lock
// entry, or from the run cache's record of the current fingerprint). Reads only.
import { existsSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import type { Change, Fingerprint, FingerprintParts, LockEntry, LockFile, Pipeline, PlanStep, StageInstance } from "../pipeline/types.ts";
import type { InstanceObservation } from "../pipeline/plan.ts";
import type { DigestService } from "../hash/digest.ts";
import type { ContentStore } from "../store/cas.ts";

export interface OutputsState {
  missing: string[];
  modified: string[];
}

/** The planning functions of src/pipeline/plan.ts (injected so the runner has no compile-time tie to them). */
export interface Planner {
  planRun(input: {
    order: string[];
    upstream: Record<string, string[]>;
    lock: LockFile;
    current: Record<string, Fingerprint | "pending">;
    outputs: Record<string, OutputsState>;
    cached: Record<string, boolean>;
    reusable?: Record<string, boolean>;
    force: string[];
  }): PlanStep[];
  decideInstance(id: string, o: InstanceObservation): PlanStep;
  diffParts?(old: LockEntry["parts"], cur: Fingerprint["parts"]): Change[];
  explain?(step: PlanStep): string[];
}

export interface Fingerprinter {
  /** `previous`: the parts of the instance's lock entry, when it has one (see Hasher.fingerprint). */
  fingerprint(inst: StageInstance, previous?: FingerprintParts): Promise<Fingerprint>;
  save?(): Promise<void>;
}

/** What the runner reads of the workspace: digests of outputs, and the cache store. */
export interface Observer {
  root: string;
  fingerprinter: Fingerprinter;
  digests: DigestService;
  store: ContentStore;
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

/**
 * The deps of `inst` not on disk. `exists`: existsSync (access(2), without a round trip through the
 * thread pool per dep and instance), or an assessment's memo of it.
 */
export async function missingDeps(root: string, inst: StageInstance, exists: (abs: string) => boolean = existsSync): Promise<string[]> {
  return Object.values(inst.deps).filter((path) => !exists(absPath(root, path)));
}

/** existsSync, asked once per path: for one assessment, while nothing writes the workspace (the demo's 264 deps are 49 paths). */
export function existsMemo(): (abs: string) => boolean {
  const seen = new Map<string, boolean>();
  return (abs) => {
    let e = seen.get(abs);
    if (e === undefined) seen.set(abs, (e = existsSync(abs)));
    return e;
  };
}

/** The fingerprint now, or "pending" when a dep does not exist yet (an upstream will produce it, or the run reports it). */
export async function currentFingerprint(root: string, inst: StageInstance, fp: Fingerprinter, previous?: FingerprintParts, exists?: (abs: string) => boolean): Promise<Fingerprint | "pending"> {
  if ((await missingDeps(root, inst, exists)).length > 0) return "pending";
  return fp.fingerprint(inst, previous);
}

export async function outputsState(o: Observer, inst: StageInstance, entry: LockEntry | undefined): Promise<OutputsState> {
  const missing: string[] = [];
  const modified: string[] = [];
  for (const [name, path] of Object.entries(inst.outs)) {
    const cur = await o.digests.digestPath(absPath(o.root, path));
    if (!cur) {
      missing.push(path);
      continue;
    }
    const rec = entry?.outs[name];
    if (rec && (rec.digest !== cur.digest || rec.path !== path)) modified.push(path);
  }
  return { missing, modified };
}

/** True when the store holds every output an entry records, at the paths the instance declares now. */
export async function entryInStore(entry: LockEntry | undefined, inst: StageInstance, store: ContentStore): Promise<boolean> {
  if (!entry) return false;
  for (const name of Object.keys(inst.outs)) {
    const rec = entry.outs[name];
    if (!rec || rec.path !== inst.outs[name] || !(await store.has(rec))) return false;
  }
  return true;
}

/** The run cache's entry for `fp` when every output it records is in the store. */
export async function reusableRun(o: Observer, inst: StageInstance, fp: Fingerprint): Promise<LockEntry | undefined> {
  const rec = await o.store.readRun(fp.digest);
  return rec && (await entryInStore(rec.entry, inst, o.store)) ? rec.entry : undefined;
}

/** Everything decideInstance needs for one instance whose fingerprint is known. */
export async function observe(o: Observer, inst: StageInstance, entry: LockEntry | undefined, current: Fingerprint, forced: boolean): Promise<InstanceObservation> {
  const outputs = await outputsState(o, inst, entry);
  // The store is asked only when a restore could be the answer (a fresh instance never needs it: for
  // a folder output that would cost a read of its manifest and a listing of the store, every status).
  const damaged = outputs.missing.length > 0 || outputs.modified.length > 0;
  const cached = entry?.fingerprint === current.digest && damaged && !forced && (await entryInStore(entry, inst, o.store));
  // The run cache is asked only when the lock cannot serve: it costs a file read per instance.
  const needRun = !cached && (entry?.fingerprint !== current.digest || outputs.missing.length > 0 || outputs.modified.length > 0);
  const reusable = needRun && !forced && (await reusableRun(o, inst, current)) !== undefined;
  return { entry, current, outputs, cached, reusable, forced };
}

export interface Assessment {
  current: Record<string, Fingerprint | "pending">;
  outputs: Record<string, OutputsState>;
  cached: Record<string, boolean>;
  reusable: Record<string, boolean>;
  upstream: Record<string, string[]>;
}

/**
 * Observes every instance of `order`. Checks `signal` between instances: an interrupted assessment
 * throws the signal's reason (nothing has run, nothing was decided).
 */
export function assess(o: Observer, p: Pipeline, order: string[], lock: LockFile, force: readonly string[] = [], signal?: AbortSignal): Promise<Assessment> {
  // Nothing runs while it looks: a folder that is an output and a dep is digested once. Part of the
  // pipeline (targets): the hint of folders to preload keeps what this assessment did not check.
  return o.digests.session(() => assessNow(o, p, order, lock, force, signal), { part: order.length < p.instances.size });
}

async function assessNow(o: Observer, p: Pipeline, order: string[], lock: LockFile, force: readonly string[], signal?: AbortSignal): Promise<Assessment> {
  const a: Assessment = { current: {}, outputs: {}, cached: {}, reusable: {}, upstream: upstreamOf(p, order) };
  const forced = new Set(force);
  const exists = existsMemo();
  for (const id of order) {
    signal?.throwIfAborted();
    const inst = p.instances.get(id)!;
    const entry = lock.instances[id];
    const cur = await currentFingerprint(o.root, inst, o.fingerprinter, entry?.parts, exists);
    a.current[id] = cur;
    if (cur === "pending") {
      a.outputs[id] = await outputsState(o, inst, entry);
      a.cached[id] = false;
      a.reusable[id] = false;
      continue;
    }
    const ob = await observe(o, inst, entry, cur, forced.has(id));
    a.outputs[id] = ob.outputs;
    a.cached[id] = ob.cached;
    a.reusable[id] = ob.reusable;
  }
  return a;
}
