// THE stat cache: (namespace, path) -> (dev, ino, size, mtimeNs, ctimeNs, digest), one JSON file
// under cache/state/ (src/hash/digest.ts names it). Namespaces keep file digests, code digests and
// import closures apart. Owns staleness rules only; a missing or corrupt file is an empty cache.
import { readFileSync, type BigIntStats } from "node:fs";
import { writeFileAtomic } from "../io/atomic.ts";

interface Entry {
  dev: string;
  ino: string;
  size: string;
  mtimeNs: string;
  ctimeNs: string;
  /** Wall clock (ns) when the read that produced the digest started. */
  hashedAtNs: string;
  digest: string;
}

interface CacheFile {
  version: 1;
  entries: Record<string, Entry>;
}

const MAX_AGE_NS = 90n * 24n * 3600n * 1_000_000_000n;

/**
 * A file changed within the timestamp granularity of its own hashing cannot be told apart from one
 * that did not change ("racy git"): such entries are not trusted. File systems with whole-second
 * mtimes (FAT, some network mounts) get a 2 s window; nanosecond ones a 50 ms window (kernel ticks).
 */
function racyWindowNs(mtimeNs: bigint): bigint {
  return mtimeNs % 1_000_000_000n === 0n ? 2_000_000_000n : 50_000_000n;
}

export function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

export class StatCache {
  private entries: Record<string, Entry>;
  /** Keys stored by this process: only these overwrite what is on disk at save time. */
  private changed = new Set<string>();
  /** Keys this process dropped (their digests moved to a tree record): removed from disk at save time. */
  private dropped = new Set<string>();
  /** Lookups answered from the cache / refused (stale or racy), for tests and benchmarks. */
  hits = 0;
  misses = 0;

  private constructor(
    readonly file: string | null,
    entries: Record<string, Entry>,
  ) {
    this.entries = entries;
  }

  /** The cache persisted at `file` (a missing or damaged file is an empty cache, with a warning if damaged). */
  static async load(file: string, onWarn: (msg: string) => void = () => {}): Promise<StatCache> {
    return new StatCache(file, await readEntries(file, onWarn));
  }

  /** A cache that is never saved. */
  static empty(): StatCache {
    return new StatCache(null, {});
  }

  get size(): number {
    return Object.keys(this.entries).length;
  }

  /** The cached digest if the file is unchanged since it was hashed, else undefined. */
  lookup(ns: string, abs: string, st: BigIntStats): string | undefined {
    const e = this.entries[`${ns}:${abs}`];
    if (
      e &&
      e.dev === String(st.dev) &&
      e.ino === String(st.ino) &&
      e.size === String(st.size) &&
      e.mtimeNs === String(st.mtimeNs) &&
      e.ctimeNs === String(st.ctimeNs) &&
      BigInt(e.hashedAtNs) - st.mtimeNs > racyWindowNs(st.mtimeNs)
    ) {
      this.hits++;
      return e.digest;
    }
    this.misses++;
    return undefined;
  }

  /** Records a digest; `st` must be the stat taken BEFORE the read, startedAtNs the clock then. */
  store(ns: string, abs: string, st: BigIntStats, digest: string, startedAtNs: bigint): void {
    this.entries[`${ns}:${abs}`] = {
      dev: String(st.dev),
      ino: String(st.ino),
      size: String(st.size),
      mtimeNs: String(st.mtimeNs),
      ctimeNs: String(st.ctimeNs),
      hashedAtNs: String(startedAtNs),
      digest,
    };
    this.changed.add(`${ns}:${abs}`);
  }

  /** Drops an entry (a tree record now holds the file's digest); no-op when there is none. */
  forget(ns: string, abs: string): void {
    const k = `${ns}:${abs}`;
    if (!(k in this.entries)) return;
    delete this.entries[k];
    this.changed.delete(k);
    this.dropped.add(k);
  }

  /** After a metadata-only change (chmod, link) of an unchanged file: its entry takes the new ctime. */
  touchCtime(ns: string, abs: string, st: BigIntStats): void {
    const e = this.entries[`${ns}:${abs}`];
    if (!e || e.dev !== String(st.dev) || e.ino !== String(st.ino) || e.size !== String(st.size) || e.mtimeNs !== String(st.mtimeNs)) return;
    if (e.ctimeNs === String(st.ctimeNs)) return;
    e.ctimeNs = String(st.ctimeNs);
    this.changed.add(`${ns}:${abs}`);
  }

  /**
   * Writes the cache atomically, merged over what another process may have saved meanwhile. Entries
   * hashed more than MAX_AGE ago are dropped so the file does not grow forever with deleted files;
   * an unchanged file dropped that way costs one re-hash.
   */
  async save(): Promise<void> {
    if ((this.changed.size === 0 && this.dropped.size === 0) || this.file === null) return;
    const merged = await readEntries(this.file, () => {});
    for (const k of this.dropped) delete merged[k];
    for (const k of this.changed) merged[k] = this.entries[k]!;
    const oldest = nowNs() - MAX_AGE_NS;
    for (const [k, e] of Object.entries(merged)) if (BigInt(e.hashedAtNs) < oldest) delete merged[k];
    const data: CacheFile = { version: 1, entries: merged };
    await writeFileAtomic(this.file, JSON.stringify(data));
    this.changed.clear();
    this.dropped.clear();
  }
}

async function readEntries(file: string, onWarn: (msg: string) => void): Promise<Record<string, Entry>> {
  let text: string;
  try {
    text = readFileSync(file, "utf8"); // at once: one small file, read before any lookup
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") onWarn(`stat cache ${file} unreadable (${(err as Error).message}); starting empty`);
    return {};
  }
  try {
    const data = JSON.parse(text) as Partial<CacheFile>;
    if (data.version !== 1 || !data.entries || typeof data.entries !== "object") throw new Error("unexpected format");
    const ok: Record<string, Entry> = {};
    for (const [k, e] of Object.entries(data.entries)) {
      if (e && typeof e.digest === "string" && typeof e.mtimeNs === "string" && typeof e.hashedAtNs === "string" && /^\d+$/.test(e.hashedAtNs)) ok[k] = e;
    }
    return ok;
  } catch (err) {
    onWarn(`stat cache ${file} is corrupt (${(err as Error).message}); ignoring it, files will be re-hashed`);
    return {};
  }
}
