// pipeline.lock: what was observed per instance (fingerprint, its parts, output records). Owns the
// file format (deterministic JSON, sorted keys) and atomic writes; never decides freshness.
import { isAscii } from "node:buffer";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SedPipeError } from "../errors.ts";
import type { LockEntry, LockFile, OutRecord } from "../pipeline/types.ts";
import { normaliseDigest } from "../hash/digest.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { canonicalJson } from "../hash/canonical-json.ts";

export const LOCK_FILE_NAME = "pipeline.lock";

/** The exact bytes written for a lock: sorted keys, two-space indent, trailing newline. */
export function serializeLock(lock: LockFile): string {
  return canonicalJson({ version: 1, instances: lock.instances }, 2) + "\n";
}

function corrupt(path: string, what: string): SedPipeError {
  return new SedPipeError(`${path}: ${what}`, {
    hint:
      "move the damaged file aside (`mv pipeline.lock pipeline.lock.bad`) and rerun: " +
      "instances whose inputs match a cached run are restored from the cache instead of rerun",
  });
}

/** Reads pipeline.lock; a missing file is an empty lock, a damaged one is an error (never dropped). */
export async function readLock(root: string): Promise<LockFile> {
  const path = join(root, LOCK_FILE_NAME);
  let text: string;
  try {
    // At once: the lock is read whole before anything else can be done (the demo's is 0.7 MB), and
    // fs/promises' readFile of it costs a dozen thread-pool round trips and a chunked decode. An
    // ASCII file (the usual case) becomes a one-byte string without UTF-8 decoding (measured: 7.3 ->
    // 5.5 ms for the demo's lock, read included).
    const bytes = readFileSync(path);
    text = bytes.toString(isAscii(bytes) ? "latin1" : "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { version: 1, instances: {} };
    throw err;
  }
  if (text.trim() === "") throw corrupt(LOCK_FILE_NAME, "the file is empty");
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw corrupt(LOCK_FILE_NAME, `not valid JSON (${(err as Error).message})`);
  }
  const obj = raw as Partial<LockFile>;
  if (!obj || typeof obj !== "object" || Array.isArray(obj)) throw corrupt(LOCK_FILE_NAME, "expected an object");
  if (obj.version !== 1) throw corrupt(LOCK_FILE_NAME, `unsupported version ${JSON.stringify(obj.version)} (expected 1)`);
  if (!obj.instances || typeof obj.instances !== "object" || Array.isArray(obj.instances)) {
    throw corrupt(LOCK_FILE_NAME, `"instances" must be an object`);
  }
  const instances: Record<string, LockEntry> = {};
  for (const [id, e] of Object.entries(obj.instances)) {
    try {
      instances[id] = normaliseEntry(e as LockEntry, `entry "${id}"`);
    } catch (err) {
      throw corrupt(LOCK_FILE_NAME, (err as Error).message);
    }
  }
  return { version: 1, instances };
}

/**
 * A lock entry with its fingerprint and out digests in the current "sha256:<hex>" form (older
 * versions wrote bare hex for outs); throws with what is missing when it is incomplete.
 */
export function normaliseEntry(e: LockEntry, where: string): LockEntry {
  const fp = normaliseDigest(e?.fingerprint);
  if (!e || !fp || !e.parts || !e.outs || typeof e.outs !== "object") throw new Error(`${where} is incomplete (needs fingerprint, parts, outs)`);
  // Copied only where a digest is rewritten: an entry already in the current form is returned as it is.
  let outs: Record<string, OutRecord> | null = null;
  for (const [name, rec] of Object.entries(e.outs)) {
    const d = normaliseDigest(rec?.digest);
    if (!rec || !d || typeof rec.path !== "string" || (rec.kind !== "file" && rec.kind !== "dir")) throw new Error(`${where} out "${name}" is incomplete (needs path, kind, digest)`);
    if (d !== rec.digest) (outs ??= { ...e.outs })[name] = { ...rec, digest: d };
  }
  return fp === e.fingerprint && outs === null ? e : { ...e, fingerprint: fp, outs: outs ?? e.outs };
}


export async function writeLock(root: string, lock: LockFile): Promise<void> {
  await writeFileAtomic(join(root, LOCK_FILE_NAME), serializeLock(lock));
}

/**
 * The lock as held during a run: entries are set/removed one at a time and each change is written
 * through at once (serialised), so an interrupted run keeps every entry it had completed.
 */
export class LockStore {
  private queue: Promise<void> = Promise.resolve();

  private constructor(readonly root: string, private lock: LockFile) {}

  static async open(root: string): Promise<LockStore> {
    return new LockStore(root, await readLock(root));
  }

  get snapshot(): LockFile {
    return this.lock;
  }

  entry(id: string): LockEntry | undefined {
    return this.lock.instances[id];
  }

  /** Sets (entry) or removes (undefined) one instance's entry and writes the file. */
  async set(id: string, entry: LockEntry | undefined): Promise<void> {
    const next = { ...this.lock.instances };
    if (entry) next[id] = entry;
    else delete next[id];
    this.lock = { version: 1, instances: next };
    const snapshot = this.lock;
    const write = this.queue.then(() => writeLock(this.root, snapshot));
    this.queue = write.catch(() => {});
    await write;
  }
}
