// Content digests of outputs (files: sha256 of bytes; folders: sha256 of a canonical manifest) with a
// stat-keyed cache so that a warm `status` does not reread unchanged outputs. Knows nothing of plans.
import { createHash } from "node:crypto";
import { createReadStream, readdirSync, statSync } from "node:fs";
import { readFile, stat } from "node:fs/promises";
import { join, relative, sep } from "node:path";
import type { Stats } from "node:fs";
import { writeFileAtomic } from "../io/atomic.ts";
import { mapLimit } from "../io/map-limit.ts";

/** A folder's content: sorted project-independent relative paths (with "/") -> file digest + size. */
export interface TreeManifest {
  version: 1;
  files: Array<{ path: string; digest: string; size: number }>;
}

export interface PathDigest {
  kind: "file" | "dir";
  digest: string;
  /** Bytes of the file, or of all files of the folder. */
  size: number;
  /** Only for folders: the manifest whose sha256 is `digest`. */
  manifest?: TreeManifest;
}

export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export async function sha256File(path: string, size?: number): Promise<string> {
  // Small files (most folder outputs: images, json) in one read; a stream costs more than the hashing.
  if (size !== undefined && size <= SMALL_FILE) return createHash("sha256").update(await readFile(path)).digest("hex");
  const h = createHash("sha256");
  // 1 MiB reads: large feature files hash near disk speed without loading them whole.
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) h.update(chunk as Buffer);
  return h.digest("hex");
}

/** Canonical bytes of a manifest: the digest of a folder is sha256 of exactly these bytes. */
export function manifestBytes(m: TreeManifest): string {
  const files = [...m.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return JSON.stringify({ version: 1, files: files.map((f) => ({ path: f.path, digest: f.digest, size: f.size })) });
}

/** Files up to this size are hashed from one read. */
const SMALL_FILE = 4 << 20;
/** Files in a folder digested at once. */
const CONCURRENCY = 32;

/**
 * A file modified within the timestamp granularity of its own hashing is not trusted ("racy git"):
 * 2 s for whole-second mtimes (FAT, some network mounts), 50 ms for nanosecond ones.
 */
function racyMs(mtimeNs: bigint): number {
  return mtimeNs % 1_000_000_000n === 0n ? 2000 : 50;
}

interface StatEntry {
  ino: number;
  size: number;
  mtimeNs: string;
  ctimeNs: string;
  /** When the read that produced the digest started (ms): a file written in that same instant is not trusted. */
  hashedAtMs: number;
  digest: string;
}

function statKey(st: Stats & { mtimeNs?: bigint }): Omit<StatEntry, "digest" | "hashedAtMs"> {
  const big = st as unknown as { ino: bigint | number; mtimeNs?: bigint; ctimeNs?: bigint };
  return {
    ino: Number(st.ino),
    size: Number(st.size),
    mtimeNs: String(big.mtimeNs ?? BigInt(Math.round(st.mtimeMs * 1e6))),
    ctimeNs: String(big.ctimeNs ?? BigInt(Math.round(st.ctimeMs * 1e6))),
  };
}

/**
 * Digests files and folders, trusting a cached digest only while (inode, size, mtime, ctime) match.
 * mtime is a hint here, never the truth: any change of the stat tuple means a reread.
 */
export class OutputDigester {
  private entries = new Map<string, StatEntry>();
  private dirty = false;
  private loaded = false;

  /** `statePath` is where the stat cache persists (JSON); null keeps it in memory only. */
  constructor(private readonly statePath: string | null) {}

  private async load(): Promise<void> {
    if (this.loaded) return;
    this.loaded = true;
    if (!this.statePath) return;
    try {
      const raw = JSON.parse(await readFile(this.statePath, "utf8")) as { version?: number; entries?: Record<string, StatEntry> };
      if (raw.version === 1 && raw.entries) for (const [k, v] of Object.entries(raw.entries)) this.entries.set(k, v);
    } catch {
      // A missing or damaged stat cache only costs rehashing: it holds no truth of its own.
    }
  }

  async save(): Promise<void> {
    if (!this.statePath || !this.dirty) return;
    const entries: Record<string, StatEntry> = {};
    for (const k of [...this.entries.keys()].sort()) entries[k] = this.entries.get(k)!;
    await writeFileAtomic(this.statePath, JSON.stringify({ version: 1, entries }));
    this.dirty = false;
  }

  /** Digest of one regular file at an absolute path. */
  async digestFile(abs: string, st?: Stats): Promise<{ digest: string; size: number }> {
    await this.load();
    // Synchronous stat: a folder output of 20k files is stat'ed file by file on every status, and a
    // promise round trip per file cost ~4x the stat itself (measured on the demo's 22k images).
    const s = st ?? (statSync(abs, { bigint: true }) as unknown as Stats);
    const key = statKey(s);
    const hit = this.entries.get(abs);
    if (
      hit &&
      hit.ino === key.ino &&
      hit.size === key.size &&
      hit.mtimeNs === key.mtimeNs &&
      hit.ctimeNs === key.ctimeNs &&
      // "Racy" entries (file modified within the timestamp granularity of its hashing) are rehashed.
      hit.hashedAtMs - Number(BigInt(key.mtimeNs) / 1_000_000n) > racyMs(BigInt(key.mtimeNs))
    ) {
      return { digest: hit.digest, size: hit.size };
    }
    const hashedAtMs = Date.now();
    const digest = await sha256File(abs, key.size);
    this.entries.set(abs, { ...key, hashedAtMs, digest });
    this.dirty = true;
    return { digest, size: key.size };
  }

  /**
   * After a metadata-only change we made ourselves (chmod, hard link: both move ctime), keeps the
   * cached digest valid: only ctime may differ from the entry, never inode, size or mtime.
   */
  async noteMetadataChange(abs: string): Promise<void> {
    const hit = this.entries.get(abs);
    if (!hit) return;
    const st = await stat(abs, { bigint: true }).catch(() => null);
    if (!st) return;
    const key = statKey(st as unknown as Stats);
    if (key.ino === hit.ino && key.size === hit.size && key.mtimeNs === hit.mtimeNs) {
      hit.ctimeNs = key.ctimeNs;
      this.dirty = true;
    }
  }

  /** Digest of a file or folder; null when the path does not exist. Symlinks are followed. */
  async digestPath(abs: string): Promise<PathDigest | null> {
    let st: Stats;
    try {
      st = (await stat(abs, { bigint: true })) as unknown as Stats;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
    if (st.isDirectory()) {
      const files: TreeManifest["files"] = await mapLimit(await listFiles(abs), CONCURRENCY, async (rel) => {
        const f = await this.digestFile(join(abs, rel));
        return { path: rel.split(sep).join("/"), digest: f.digest, size: f.size };
      });
      const manifest: TreeManifest = { version: 1, files };
      const bytes = manifestBytes(manifest);
      manifest.files = (JSON.parse(bytes) as TreeManifest).files;
      return { kind: "dir", digest: sha256Hex(bytes), size: files.reduce((s, f) => s + f.size, 0), manifest };
    }
    const f = await this.digestFile(abs, st);
    return { kind: "file", digest: f.digest, size: f.size };
  }
}

/** Relative paths of all regular files below `dir`, sorted; symlinks to files count as files. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string): Promise<void> {
    const entries = readdirSync(d, { withFileTypes: true });
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.push(relative(dir, p));
      else if (e.isSymbolicLink()) {
        const st = statSync(p, { throwIfNoEntry: false });
        if (st?.isDirectory()) await walk(p);
        else if (st?.isFile()) out.push(relative(dir, p));
      }
    }
  }
  await walk(dir);
  return out.sort();
}

