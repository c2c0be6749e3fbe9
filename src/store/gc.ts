// `sed-pipe gc`: deletes cache objects that no lock entry references (pipeline.lock plus any extra
// lock files named), and the run records of runs no lock names any more (unless they are kept, in
// which case their objects are kept too); and tree records, bundles and pipeline memos nothing current
// refers to (planned by a pure function, planStateGc). Owns only deletion; the caller holds the run
// lock and says what is current.
import { readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { LockEntry, LockFile } from "../pipeline/types.ts";
import { hexOf, type Digest } from "../hash/digest.ts";
import { treeKey } from "../hash/tree-cache.ts";
import type { ContentStore } from "./cas.ts";
import { entryObjects } from "./transfer.ts";

export interface GcReport {
  /** Objects kept because a lock entry (or a kept run record) needs them. */
  kept: number;
  removed: Array<{ digest: string; size: number }>;
  bytes: number;
  /** Run records removed (their runs are named by no lock). */
  runsRemoved: number;
  runsKept: number;
  /** Quarantined (corrupt) objects removed from objects/corrupt. */
  corrupt: number;
  /** Referenced folder manifests missing from the store: their files could not be pinned. */
  unreadableManifests: string[];
}

/** Every digest the entries reference: outputs, and the files of folder outputs. */
export async function referencedObjects(store: ContentStore, entries: LockEntry[]): Promise<{ refs: Set<string>; unreadable: string[] }> {
  const refs = new Set<string>();
  const unreadable: string[] = [];
  for (const entry of entries) {
    const { digests, missing } = await entryObjects(store, entry);
    for (const d of digests) refs.add(hexOf(d));
    unreadable.push(...missing);
  }
  return { refs, unreadable: [...new Set(unreadable)] };
}

export async function collectGarbage(store: ContentStore, locks: LockFile[], opts: { dryRun: boolean; keepRuns?: boolean }): Promise<GcReport> {
  const entries = locks.flatMap((l) => Object.values(l.instances));
  const named = new Set<Digest>(entries.map((e) => e.fingerprint));
  let runsRemoved = 0;
  let runsKept = 0;
  for (const fp of await store.listRuns()) {
    const rec = opts.keepRuns || named.has(fp) ? await store.readRun(fp) : null;
    if (rec) {
      runsKept++;
      entries.push(rec.entry);
      continue;
    }
    runsRemoved++;
    if (!opts.dryRun) await store.removeRun(fp);
  }
  const { refs, unreadable } = await referencedObjects(store, entries);
  const report: GcReport = { kept: 0, removed: [], bytes: 0, runsRemoved, runsKept, corrupt: 0, unreadableManifests: unreadable };
  const shards = await readdir(store.objectsDir).catch(() => [] as string[]);
  for (const shard of shards.sort()) {
    if (!/^[0-9a-f]{2}$/.test(shard)) continue;
    for (const name of (await readdir(join(store.objectsDir, shard))).sort()) {
      const hex = shard + name;
      // Temp files of an interrupted put (".<name>.tmp-...") are garbage too, whatever their name.
      const p = join(store.objectsDir, shard, name);
      if (/^[0-9a-f]{64}$/.test(hex) && refs.has(hex)) {
        report.kept++;
        continue;
      }
      const size = (await stat(p).catch(() => null))?.size ?? 0;
      report.removed.push({ digest: /^[0-9a-f]{64}$/.test(hex) ? `sha256:${hex}` : name, size });
      report.bytes += size;
      if (!opts.dryRun) await rm(p, { force: true, recursive: true });
    }
  }
  for (const name of await readdir(store.corruptDir).catch(() => [] as string[])) {
    const p = join(store.corruptDir, name);
    report.corrupt++;
    report.bytes += (await stat(p).catch(() => null))?.size ?? 0;
    if (!opts.dryRun) await rm(p, { force: true, recursive: true });
  }
  return report;
}

// ---- State kept to make commands fast: tree records, bundles, pipeline memos -----------------------
//
// cache/state/trees/ (a head per digested folder and the entries file it names), cache/build/ (stage
// bundles the runner starts workers from, contract bundles and their index) and cache/state/pipelines/
// (loaded pipelines) only grow: every folder ever digested, every version of every stage ever run.
// gc removes what nothing current refers to. Records and memos are written by commands that do not
// take the run lock (`status`), so nothing younger than GRACE_MS is removed: a file one of them is
// writing now is never taken. Runs hold the run lock, and so does gc: no run is using a bundle gc
// removes, and bundles of cluster jobs still on record (left by an engine that died) are kept.

/** Files younger than this are kept whatever refers to them (a status may be writing them now). */
export const STATE_GRACE_MS = 60 * 60 * 1000;

export type StateDir = "state/trees" | "build" | "state/pipelines";

/** A file of one of the state folders, as gc saw it. */
export interface StateFile {
  dir: StateDir;
  name: string;
  size: number;
  mtimeMs: number;
  /** Tree heads only: the folder the head records and the entries file it names; null when unreadable or foreign. */
  head?: { path: string; entries: string } | null;
}

export interface StateKeep {
  /** Absolute folders that instances of the pipeline's profiles name as deps or outs (null: unknown, prune no records). */
  paths: ReadonlySet<string> | null;
  /** Bundle file names under cache/build/ still referred to (null: unknown, prune no stage bundles). */
  bundles: ReadonlySet<string> | null;
  /** Memo file names of the profiles pipeline.yaml declares, and of the default one (null: unknown). */
  memos: ReadonlySet<string> | null;
}

export interface StateRemoval {
  dir: StateDir;
  name: string;
  size: number;
  why: string;
}

export interface StatePlan {
  remove: StateRemoval[];
  kept: number;
}

const HEAD_NAME = /^[0-9a-f]{32}\.json$/;
const ENTRIES_NAME = /^[0-9a-f]{32}-[0-9a-f]{16}\.entries\.json$/;
const STAGE_BUNDLE = /^[0-9a-f]{64}\.mjs$/;
const CONTRACT_BUNDLE = /^contract-[0-9a-f]{64}\.mjs$/;
const MEMO_NAME = /^[0-9a-f]{16}\.json$/;
/** writeFileAtomic's temp files (".<name>.tmp-<pid>-<hex>"): left by a process killed mid-write. */
const TEMP_NAME = /^\..+\.tmp-\d+-[0-9a-f]+$/;

/**
 * What to remove from the state folders: pure, on what scanState saw. A file is removed when nothing
 * current refers to it and it is older than `graceMs`; names sed-pipe does not write are never touched.
 * Tree heads are listed before the entries files (applyStatePlan removes a head before its entries).
 */
export function planStateGc(files: readonly StateFile[], keep: StateKeep, nowMs: number, graceMs: number = STATE_GRACE_MS): StatePlan {
  const old = (f: StateFile) => nowMs - f.mtimeMs > graceMs;
  const keptEntries = new Set<string>();
  const remove: StateRemoval[] = [];
  let kept = 0;
  const decide = (f: StateFile, why: string | null) => {
    if (why !== null && old(f)) remove.push({ dir: f.dir, name: f.name, size: f.size, why });
    else kept++;
  };
  // Heads first: the entries files the kept heads name are kept with them.
  for (const f of files) {
    if (f.dir !== "state/trees" || !HEAD_NAME.test(f.name)) continue;
    const h = f.head;
    let why: string | null = null;
    if (!h || treeKey(h.path) !== f.name.slice(0, 32)) why = "a damaged or foreign record";
    else if (keep.paths === null) why = null;
    else if (!keep.paths.has(h.path)) why = `no instance of any profile names ${h.path}`;
    if (why === null || !old(f)) {
      if (h) keptEntries.add(h.entries);
    }
    decide(f, why);
  }
  for (const f of files) {
    let why: string | null = null;
    if (TEMP_NAME.test(f.name)) why = "a temp file of an interrupted write";
    else if (f.dir === "state/trees") {
      if (HEAD_NAME.test(f.name)) continue;
      if (!ENTRIES_NAME.test(f.name)) {
        kept++;
        continue;
      }
      if (!keptEntries.has(f.name)) why = "named by no record kept";
    } else if (f.dir === "build") {
      if (STAGE_BUNDLE.test(f.name) || CONTRACT_BUNDLE.test(f.name)) {
        if (keep.bundles !== null && !keep.bundles.has(f.name)) why = CONTRACT_BUNDLE.test(f.name) ? "a contract bundle the index does not name" : "a stage bundle of code no stage has now and no cluster job runs";
      }
    } else if (f.dir === "state/pipelines") {
      if (MEMO_NAME.test(f.name) && keep.memos !== null && !keep.memos.has(f.name)) why = "the memo of a profile pipeline.yaml no longer declares";
    }
    decide(f, why);
  }
  return { remove, kept };
}

/** Every file of the state folders under `cacheDir`; tree heads are read for their folder and entries file. */
export async function scanState(cacheDir: string): Promise<StateFile[]> {
  const out: StateFile[] = [];
  for (const dir of ["state/trees", "build", "state/pipelines"] as const) {
    const abs = join(cacheDir, dir);
    for (const name of (await readdir(abs).catch(() => [] as string[])).sort()) {
      const st = await stat(join(abs, name)).catch(() => null);
      if (!st || !st.isFile()) continue;
      const f: StateFile = { dir, name, size: st.size, mtimeMs: st.mtimeMs };
      if (dir === "state/trees" && HEAD_NAME.test(name)) f.head = await readHeadRef(join(abs, name));
      out.push(f);
    }
  }
  return out;
}

async function readHeadRef(file: string): Promise<{ path: string; entries: string } | null> {
  try {
    const h = JSON.parse(await readFile(file, "utf8")) as { path?: unknown; entries?: unknown };
    return typeof h.path === "string" && typeof h.entries === "string" ? { path: h.path, entries: h.entries } : null;
  } catch {
    return null;
  }
}

/** Removes what the plan says, each file on its own (an unlink is atomic), heads before entries files. */
export async function applyStatePlan(cacheDir: string, plan: StatePlan): Promise<void> {
  for (const r of plan.remove) await rm(join(cacheDir, r.dir, r.name), { force: true });
}
