// `sed-pipe gc`: deletes cache objects that no lock entry references (pipeline.lock plus any extra
// lock files named). Owns only deletion of unreferenced objects; the caller holds the run lock.
import { readdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { LockFile } from "../pipeline/types.ts";
import type { ContentStore } from "./cas.ts";
import { entryObjects } from "./cache-transfer.ts";

export interface GcReport {
  /** Objects kept because a lock entry needs them. */
  kept: number;
  removed: Array<{ digest: string; size: number }>;
  bytes: number;
  /** Quarantined (corrupt) objects removed from objects/corrupt. */
  corrupt: number;
  /** Referenced folder manifests missing from the store: their files could not be pinned. */
  unreadableManifests: string[];
}

/** Every digest the lock files reference: outputs, and the files of folder outputs. */
export async function referencedObjects(store: ContentStore, locks: LockFile[]): Promise<{ refs: Set<string>; unreadable: string[] }> {
  const refs = new Set<string>();
  const unreadable: string[] = [];
  for (const lock of locks) {
    for (const entry of Object.values(lock.instances)) {
      const { digests, missing } = await entryObjects(store, entry);
      for (const d of digests) refs.add(d);
      unreadable.push(...missing);
    }
  }
  return { refs, unreadable: [...new Set(unreadable)] };
}

export async function collectGarbage(store: ContentStore, locks: LockFile[], opts: { dryRun: boolean }): Promise<GcReport> {
  const { refs, unreadable } = await referencedObjects(store, locks);
  const report: GcReport = { kept: 0, removed: [], bytes: 0, corrupt: 0, unreadableManifests: unreadable };
  const shards = await readdir(store.objectsDir).catch(() => [] as string[]);
  for (const shard of shards.sort()) {
    if (!/^[0-9a-f]{2}$/.test(shard)) continue;
    for (const name of (await readdir(join(store.objectsDir, shard))).sort()) {
      const digest = shard + name;
      // Temp files of an interrupted put (".<name>.tmp-...") are garbage too, whatever their name.
      const p = join(store.objectsDir, shard, name);
      if (/^[0-9a-f]{64}$/.test(digest) && refs.has(digest)) {
        report.kept++;
        continue;
      }
      const size = (await stat(p).catch(() => null))?.size ?? 0;
      report.removed.push({ digest: /^[0-9a-f]{64}$/.test(digest) ? digest : name, size });
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
