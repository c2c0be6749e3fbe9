// Moving cache objects and run records between the local store and a remote (src/store/remote.ts):
// push sends a lock entry's objects, verified, then its run record; pull fetches the run recorded for
// an instance's current fingerprint, verifies every object and checks the outputs out. Never decides
// what runs (fingerprints are computed by the caller).
import { chmod, mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname } from "node:path";
import type { LockEntry, OutRecord } from "../pipeline/types.ts";
import { tempPathFor } from "../io/atomic.ts";
import { mapLimit } from "../io/map-limit.ts";
import { sha256File } from "../io/sha256.ts";
import { hexOf, parseManifest, type Digest } from "../hash/digest.ts";
import { parseRunRecord, type ContentStore, type Provenance, type RunRecord } from "./cas.ts";
import { pathExists } from "./place.ts";
import { objectKey, REMOTE_FORMAT, REMOTE_MARKER, runKey, TRANSFER_CONCURRENCY, type Remote } from "./remote.ts";

export type { Provenance } from "./cas.ts";

// ---------------------------------------------------------------------------------------------
// Objects

/** The digests an entry's outputs need: each out, plus every file listed by a folder's manifest. */
export async function entryObjects(store: ContentStore, entry: LockEntry): Promise<{ digests: Digest[]; missing: Digest[] }> {
  const digests: Digest[] = [];
  const missing: Digest[] = [];
  for (const rec of Object.values(entry.outs)) {
    digests.push(rec.digest);
    if (rec.kind === "dir") {
      const files = await store.readManifest(rec.digest).catch(() => null);
      if (!files) missing.push(rec.digest);
      else for (const f of files) digests.push(f.digest);
    }
  }
  return { digests: [...new Set(digests)], missing };
}

/** sha256 of an object file, as a digest. */
async function hashObject(path: string): Promise<Digest> {
  return `sha256:${await sha256File(path)}`;
}

export class CorruptObjectError extends Error {
  constructor(readonly digest: Digest, readonly actual: Digest, readonly where: string) {
    super(`object ${hexOf(digest).slice(0, 12)} from ${where} is corrupt: its bytes hash to ${hexOf(actual).slice(0, 12)}`);
  }
}

/**
 * Fetches one object into the local store unless present there: downloaded beside its final place,
 * hashed, and renamed in only when the digest matches. Returns the bytes fetched (0 if present).
 */
export async function fetchObject(store: ContentStore, remote: Remote, digest: Digest): Promise<{ bytes: number } | "absent"> {
  const target = store.objectPath(digest);
  if (await pathExists(target)) return { bytes: 0 };
  await mkdir(dirname(target), { recursive: true });
  const tmp = tempPathFor(target);
  try {
    if (!(await remote.getFile(objectKey(digest), tmp))) return "absent";
    const actual = await hashObject(tmp);
    if (actual !== digest) throw new CorruptObjectError(digest, actual, remote.where);
    const size = (await stat(tmp)).size;
    await chmod(tmp, 0o444);
    await rename(tmp, target);
    return { bytes: size };
  } finally {
    await rm(tmp, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Push

export interface PushReport {
  entries: number;
  objectsSent: number;
  bytesSent: number;
  objectsPresent: number;
  /** Entries not pushed, with why (objects missing or corrupt locally). */
  skipped: Array<{ id: string; why: string }>;
}

/**
 * Sends each entry's objects (verified locally first), then its run record. The record goes last:
 * a remote never names a run whose objects it lacks, even if a push is interrupted.
 */
export async function pushEntries(
  store: ContentStore,
  remote: Remote,
  entries: Array<{ id: string; entry: LockEntry }>,
  onProgress?: (msg: string) => void,
  provenance?: Provenance,
): Promise<PushReport> {
  const report: PushReport = { entries: 0, objectsSent: 0, bytesSent: 0, objectsPresent: 0, skipped: [] };
  if ((await remote.getText(REMOTE_MARKER)) === null) await remote.putText(REMOTE_MARKER, JSON.stringify(REMOTE_FORMAT) + "\n");
  const checked = new Set<Digest>();
  for (const { id, entry } of entries) {
    const { digests, missing } = await entryObjects(store, entry);
    if (missing.length) {
      report.skipped.push({ id, why: `folder manifest ${hexOf(missing[0]!).slice(0, 12)} is not in the local cache` });
      continue;
    }
    let bad: string | null = null;
    const todo = digests.filter((d) => !checked.has(d));
    await mapLimit(todo, TRANSFER_CONCURRENCY, async (d) => {
      if (bad) return;
      const p = store.objectPath(d);
      if (!(await pathExists(p))) {
        bad ??= `object ${hexOf(d).slice(0, 12)} is not in the local cache`;
        return;
      }
      if (await remote.has(objectKey(d))) {
        report.objectsPresent++;
        checked.add(d);
        return;
      }
      // Never spread a damaged object: hash it before it leaves.
      const actual = await hashObject(p);
      if (actual !== d) {
        bad ??= `local object ${hexOf(d).slice(0, 12)} is corrupt (hashes to ${hexOf(actual).slice(0, 12)})`;
        return;
      }
      await remote.putFile(objectKey(d), p);
      // Awaited first: `report.bytesSent += await ...` reads the sum before the await, so two
      // concurrent transfers would each add to the same old value and one size would be lost.
      const { size } = await stat(p);
      report.objectsSent++;
      report.bytesSent += size;
      checked.add(d);
    });
    if (bad) {
      report.skipped.push({ id, why: bad });
      continue;
    }
    const record: RunRecord = { version: 1, id, entry, ...(provenance ? { provenance } : {}) };
    await remote.putText(runKey(entry.fingerprint), JSON.stringify(record) + "\n");
    report.entries++;
    onProgress?.(`pushed ${id}`);
  }
  return report;
}

// ---------------------------------------------------------------------------------------------
// Pull (fingerprint-guided: only runs whose fingerprint equals the instance's current one)

export interface PullInstance {
  id: string;
  /** Out name -> project-relative path, as declared now. */
  outs: Record<string, string>;
}

export type PullOutcome =
  | { id: string; status: "local" }
  | { id: string; status: "pulled"; objects: number; bytes: number; provenance?: Provenance }
  | { id: string; status: "absent" }
  | { id: string; status: "waiting"; why: string }
  | { id: string; status: "refused"; why: string };

export interface PullDeps {
  root: string;
  store: ContentStore;
  remote: Remote;
  /** The instance's current fingerprint digest, or null when a dep does not exist yet. */
  fingerprint(id: string): Promise<Digest | null>;
  localEntry(id: string): LockEntry | undefined;
  setEntry(id: string, entry: LockEntry): Promise<void>;
  /** Makes the outputs of `entry` present at their paths (from the local store); null or why not. */
  checkout(id: string, entry: LockEntry): Promise<string | null>;
  onOutcome?(o: PullOutcome): void;
}

function sameOuts(inst: PullInstance, entry: LockEntry): boolean {
  const names = Object.keys(inst.outs);
  if (names.length !== Object.keys(entry.outs).length) return false;
  return names.every((n) => entry.outs[n]?.path === inst.outs[n]);
}

/**
 * For each instance in topological order: compute its current fingerprint; if the local lock has a
 * matching entry, check its outputs out; else fetch the remote run record for that fingerprint,
 * fetch and verify its objects, check the outputs out and record the entry in the lock. Upstream
 * outputs are in place before downstream fingerprints are taken, so whole chains come across.
 */
export async function pullInstances(d: PullDeps, instances: PullInstance[]): Promise<PullOutcome[]> {
  const out: PullOutcome[] = [];
  const emit = (o: PullOutcome) => {
    out.push(o);
    d.onOutcome?.(o);
  };
  for (const inst of instances) {
    const fp = await d.fingerprint(inst.id);
    if (fp === null) {
      emit({ id: inst.id, status: "waiting", why: "a dep does not exist (its upstream was not pulled or has never run)" });
      continue;
    }
    const local = d.localEntry(inst.id);
    if (local && local.fingerprint === fp && sameOuts(inst, local)) {
      const { digests, missing } = await entryObjects(d.store, local);
      let present = missing.length === 0;
      for (const dg of digests) if (present && !(await pathExists(d.store.objectPath(dg)))) present = false;
      if (present) {
        const why = await d.checkout(inst.id, local);
        if (!why) {
          emit({ id: inst.id, status: "local" });
          continue;
        }
      }
    }
    const text = await d.remote.getText(runKey(fp));
    if (text === null) {
      emit({ id: inst.id, status: "absent" });
      continue;
    }
    let rec: RunRecord;
    try {
      rec = parseRunRecord(JSON.parse(text), fp);
    } catch (err) {
      emit({ id: inst.id, status: "refused", why: `${d.remote.where} ${runKey(fp)}: ${(err as Error).message}` });
      continue;
    }
    if (!sameOuts(inst, rec.entry)) {
      emit({ id: inst.id, status: "refused", why: "the run record's outputs do not match the outs declared now" });
      continue;
    }
    let objects = 0;
    let bytes = 0;
    let why: string | null = null;
    const fetchAll = async (items: Array<{ digest: Digest; label: string }>) => {
      await mapLimit(items, TRANSFER_CONCURRENCY, async ({ digest, label }) => {
        if (why) return;
        const got = await fetchObject(d.store, d.remote, digest);
        if (got === "absent") {
          why ??= `object ${hexOf(digest).slice(0, 12)} (${label}) is not in ${d.remote.where}`;
          return;
        }
        objects += got.bytes > 0 ? 1 : 0;
        bytes += got.bytes;
      });
    };
    try {
      const outs = Object.values(rec.entry.outs) as OutRecord[];
      // Outputs (files, and folder manifests) first; then the files the manifests list.
      await fetchAll(outs.map((o) => ({ digest: o.digest, label: o.path })));
      for (const o of outs) {
        if (why || o.kind !== "dir") continue;
        const files = parseManifest(await readFile(d.store.objectPath(o.digest), "utf8"), o.digest);
        await fetchAll(files.map((f) => ({ digest: f.digest, label: `${o.path}/${f.path}` })));
      }
    } catch (err) {
      if (err instanceof CorruptObjectError || (err instanceof Error && /manifest/.test(err.message))) why = err.message;
      else throw err;
    }
    if (why) {
      emit({ id: inst.id, status: "refused", why });
      continue;
    }
    const co = await d.checkout(inst.id, rec.entry);
    if (co) {
      emit({ id: inst.id, status: "refused", why: co });
      continue;
    }
    // The run cache and then the lock entry are written last: outputs are in place and verified by now.
    await d.store.recordRun(inst.id, rec.entry, rec.provenance);
    await d.setEntry(inst.id, rec.entry);
    emit({ id: inst.id, status: "pulled", objects, bytes, ...(rec.provenance ? { provenance: rec.provenance } : {}) });
  }
  return out;
}
