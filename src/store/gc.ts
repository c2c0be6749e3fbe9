// `sed-pipe gc`: deletes cache objects that no lock entry references (pipeline.lock plus any extra
// lock files named), and the run records of runs no lock names any more (unless they are kept, in
// which case their objects are kept too). Owns only deletion; the caller holds the run lock.
import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { LockEntry, LockFile } from "../pipeline/types.ts";
import { hexOf, type Digest } from "../hash/digest.ts";
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
