// pipeline.lock: what was observed per instance (fingerprint, its parts, output records). Owns the
// file format (deterministic JSON, sorted keys) and atomic writes; never decides freshness.
//
// Format 2 (written since 2026-12-05; format 1 is still read): each distinct code closure (the
// digests of a stage module and its project imports) is kept once, under "code", by the digest of
// its canonical JSON, and an entry's parts.code names it. In format 1 every entry carried its
// closure: 400 KB of the demo's 0.7 MB lock was the same five closures 98 times, read on every
// status, and a code edit rewrote every entry of the stage in git diffs. In memory, an entry's
// parts.code is the closure itself, as before (entries that share one share the object).
import { isAscii } from "node:buffer";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SedPipeError } from "../errors.ts";
import type { LockEntry, LockFile, OutRecord } from "../pipeline/types.ts";
import { digestOf, normaliseDigest } from "../hash/digest.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { canonicalJson, isPlainObject } from "../hash/canonical-json.ts";

export const LOCK_FILE_NAME = "pipeline.lock";

/** The format this version writes (it reads 1 and 2). */
export const LOCK_FORMAT = 2;

/** Names of code closures by object: a run writes the lock after every instance, with the same closures. */
const codeNames = new WeakMap<object, string>();

/** The name of a code closure in the file: the digest of its canonical JSON. */
function codeName(code: Record<string, string>): string {
  let n = codeNames.get(code);
  if (n === undefined) codeNames.set(code, (n = digestOf(canonicalJson(code))));
  return n;
}

/** The exact bytes written for a lock: sorted keys, two-space indent, trailing newline; each code closure once. */
export function serializeLock(lock: LockFile): string {
  const code: Record<string, Record<string, string>> = {};
  const instances: Record<string, unknown> = {};
  for (const [id, e] of Object.entries(lock.instances)) {
    if (!isPlainObject(e.parts.code)) {
      instances[id] = e; // no closure to share (not written by this version): kept as it is
      continue;
    }
    const name = codeName(e.parts.code);
    code[name] ??= e.parts.code;
    instances[id] = { ...e, parts: { ...e.parts, code: name } };
  }
  return canonicalJson({ version: LOCK_FORMAT, code, instances }, 2) + "\n";
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
  return parseLock(text);
}

/**
 * A lock file's text (format 1 or 2) in memory; `name` starts every error message. A damaged file is
 * an error with a hint (SedPipeError), never an empty lock.
 */
export function parseLock(text: string, name = LOCK_FILE_NAME): LockFile {
  if (text.trim() === "") throw corrupt(name, "the file is empty");
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw corrupt(name, `not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(raw)) throw corrupt(name, "expected an object");
  if (raw.version !== 1 && raw.version !== 2) throw corrupt(name, `unsupported version ${JSON.stringify(raw.version)} (this sed-pipe reads 1 and 2: was it written by a newer one?)`);
  if (!isPlainObject(raw.instances)) throw corrupt(name, `"instances" must be an object`);
  const table = raw.version === 2 ? raw.code : undefined;
  if (raw.version === 2 && !isPlainObject(table)) throw corrupt(name, `"code" must be an object`);
  const instances: Record<string, LockEntry> = {};
  for (const [id, e] of Object.entries(raw.instances)) {
    try {
      if (isPlainObject(table) && isPlainObject(e) && isPlainObject(e.parts) && typeof e.parts.code === "string") {
        // The parsed object is this function's own: the closure goes in place of its name.
        const ref = e.parts.code;
        const code = table[ref];
        if (!isPlainObject(code)) throw new Error(`entry "${id}" names code ${JSON.stringify(ref)}, which "code" does not hold`);
        e.parts.code = code;
      }
      instances[id] = normaliseEntry(e as unknown as LockEntry, `entry "${id}"`);
    } catch (err) {
      throw corrupt(name, (err as Error).message);
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
