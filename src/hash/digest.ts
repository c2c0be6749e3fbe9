// THE content digests of sed-pipe: a file's is sha256 of its bytes, a folder's is sha256 of the
// canonical manifest of its files. One digest format ("sha256:<hex>"), one manifest format, one
// symlink rule and one stat cache, for deps and outputs alike: a path has one digest whoever asks.
// Knows nothing of pipelines, plans or the cache store.
import { readdirSync, realpathSync, statSync, lstatSync, type BigIntStats } from "node:fs";
import { rm } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";
import { mapLimit } from "../io/map-limit.ts";
import { sha256File, sha256Hex, sharedHashPool, type HashPool } from "../io/sha256.ts";
import { canonicalJson } from "./canonical-json.ts";
import { nowNs, StatCache } from "./stat-cache.ts";
import { FolderLister } from "./folder-lister.ts";
import { sharedListingHelper, type ListingHelper } from "./listing.ts";
import { fsListAddon, HINT_FILE, Preloaded, type FsListAddon } from "./native-listing.ts";
import { checkDirs, checkFiles, combineSigs, isRacy, TreeLinkError, TreeStore, treeKey, walkTree, type DirSig, type EntryRow, type ListingMemo, type TreeHead, type WalkedFile } from "./tree-cache.ts";

/** "sha256:<64 lowercase hex>". */
export type Digest = string;

export const DIGEST_PREFIX = "sha256:";
const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;

export function isDigest(s: unknown): s is Digest {
  return typeof s === "string" && DIGEST_RE.test(s);
}

/** Digest of bytes or a string (utf-8). */
export function digestOf(data: string | Uint8Array): Digest {
  return DIGEST_PREFIX + sha256Hex(data);
}

/** The 64 hex digits of a digest (cache object names). */
export function hexOf(d: Digest): string {
  if (!isDigest(d)) throw new Error(`not a sha256 digest: ${d}`);
  return d.slice(DIGEST_PREFIX.length);
}

/** A digest from a record written by any sed-pipe version (older ones stored bare hex), else null. */
export function normaliseDigest(s: unknown): Digest | null {
  if (isDigest(s)) return s;
  if (typeof s === "string" && /^[0-9a-f]{64}$/.test(s)) return DIGEST_PREFIX + s;
  return null;
}

/** One file of a folder: "/"-separated path relative to the folder. */
export interface TreeEntry {
  path: string;
  size: number;
  digest: Digest;
}

export const MANIFEST_VERSION = 2;

function byPath(a: { path: string }, b: { path: string }): number {
  return a.path < b.path ? -1 : a.path > b.path ? 1 : 0;
}

/** The canonical bytes of a folder manifest: a folder's digest is the digest of exactly these. */
export function manifestBytes(files: readonly TreeEntry[]): string {
  const sorted = [...files].sort(byPath).map((f) => ({ path: f.path, size: f.size, digest: f.digest }));
  return canonicalJson({ version: MANIFEST_VERSION, files: sorted });
}

export function treeDigest(files: readonly TreeEntry[]): Digest {
  return digestOf(manifestBytes(files));
}

/** A manifest path that stays inside its folder: relative, "/"-separated, no "." or ".." segments. */
function safeRelPath(p: unknown): p is string {
  return typeof p === "string" && p !== "" && !isAbsolute(p) && !p.includes("\\") && p.split("/").every((s) => s !== "" && s !== "." && s !== "..");
}

/**
 * Reads a stored manifest: its bytes must hash to `digest`, its paths must stay inside the folder.
 * Manifests written by older versions (version 1, bare hex digests) read the same way.
 */
export function parseManifest(text: string, digest: Digest): TreeEntry[] {
  const short = hexOf(digest).slice(0, 12);
  if (digestOf(text) !== digest) throw new Error(`folder manifest ${short} is corrupt (its bytes do not hash to its name)`);
  const m = JSON.parse(text) as { version?: number; files?: Array<{ path?: unknown; size?: unknown; digest?: unknown }> };
  if ((m.version !== 1 && m.version !== MANIFEST_VERSION) || !Array.isArray(m.files)) throw new Error(`object ${short} is not a folder manifest`);
  return m.files.map((f) => {
    const d = normaliseDigest(f.digest);
    if (!d || typeof f.size !== "number") throw new Error(`folder manifest ${short} lists a bad entry`);
    if (!safeRelPath(f.path)) throw new Error(`folder manifest ${short} lists an unsafe path ${JSON.stringify(f.path)}`);
    return { path: f.path, size: f.size, digest: d };
  });
}

/** A symlink that cannot be followed (dangling, or a cycle): the path's content is undefined. */
export class SymlinkError extends Error {}

interface Listed {
  rel: string;
  abs: string;
  st: BigIntStats;
}

/**
 * The regular files under a folder, sorted by relative path (code-unit order). THE symlink rule:
 * links are FOLLOWED (stages read through them, so what they point at is what a digest must cover);
 * a dangling link or a link cycle is a SymlinkError. Empty folders and special files hold no data and
 * are not listed.
 */
export function listTree(dir: string): Listed[] {
  const out: Listed[] = [];
  const onPath = new Set<string>();
  const walk = (abs: string, rel: string): void => {
    const real = realpathSync(abs);
    if (onPath.has(real)) throw new SymlinkError(`symlink cycle at ${abs}`);
    onPath.add(real);
    for (const e of readdirSync(abs, { withFileTypes: true })) {
      const childAbs = join(abs, e.name);
      const childRel = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        walk(childAbs, childRel);
        continue;
      }
      if (!e.isFile() && !e.isSymbolicLink()) continue;
      const st = statSync(childAbs, { bigint: true, throwIfNoEntry: false });
      if (!st) throw new SymlinkError(`dangling symlink ${childAbs}`);
      if (st.isDirectory()) walk(childAbs, childRel);
      else if (st.isFile()) out.push({ rel: childRel, abs: childAbs, st });
    }
    onPath.delete(real);
  };
  walk(dir, "");
  return out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
}

/** A bigint ns time and a number ms time of one stat agree (to 1 µs: float ms loses the last ns digits). */
function nearMs(ns: bigint, ms: number): boolean {
  return Math.abs(Number(ns) / 1e6 - ms) < 0.001;
}

export interface PathDigest {
  kind: "file" | "dir";
  digest: Digest;
  /** Bytes of the file, or of all files of the folder. */
  size: number;
  /**
   * Folders only: the manifest entries whose canonical bytes `digest` names, when they were in hand
   * (a folder found unchanged by its tree record leaves them on disk: DigestService.filesOf reads them).
   */
  files?: TreeEntry[];
}

export interface DigestPathOptions {
  /**
   * A folder declared immutable (a read-only data set): its tree record is trusted while no folder in
   * it changed (files added, removed or renamed are seen; a file rewritten in place is NOT). Without
   * it, every file of the folder is stat'ed (an in-place edit is seen through its ctime).
   */
  immutable?: boolean;
}

export interface DigestStats {
  /** Files whose bytes were read and hashed (stat-cache misses). */
  filesHashed: number;
  bytesHashed: number;
  /** Files answered by the stat cache or a tree record's entries. */
  cacheHits: number;
  /** Folders answered by their tree record: after a stat of each sub-folder (immutable) / of each file. */
  treesByDirs: number;
  treesByFiles: number;
  /** Folders walked and rebuilt file by file (no record, or something changed). */
  treesRebuilt: number;
}

/** The stat cache's file; `cache/state/outputs.json` was the second one of older versions. */
export const STATE_FILE = "cache/state/stat-cache.json";
const OLD_STATE_FILES = ["cache/state/outputs.json"];
const FILE_NS = "file";
/** Tree records, beside the stat cache's file. */
export const TREES_DIR = "trees";
/** Files of one folder hashed at once (only misses cost: hits are a synchronous stat). */
const LANES = 16;

export interface DigestServiceOptions {
  /** The stat cache's file; null keeps it in memory only. Default: <root>/cache/state/stat-cache.json. */
  statePath?: string | null;
  /** Worker threads for big files: the shared pool by default, null = this thread only. */
  pool?: HashPool | null;
  /** A thread that lists folders of big records beside this one when the native addon is not there: the shared helper by default, null = none. */
  listing?: ListingHelper | null;
  /** @sed-pipe/fslist: folders listed on native threads. Default: the addon when it loads; null = never. */
  native?: FsListAddon | null;
  /** Listings the launcher started before the program loaded. Default: the launcher's, for the first service opened on disk; null = none. */
  preload?: Preloaded | null;
  onWarn?: (msg: string) => void;
}

/**
 * Digests files and folders, trusting a cached digest only while (device, inode, size, mtime, ctime)
 * match and the file was not modified within the timestamp granularity of its hashing.
 */
export class DigestService {
  readonly stats: DigestStats = { filesHashed: 0, bytesHashed: 0, cacheHits: 0, treesByDirs: 0, treesByFiles: 0, treesRebuilt: 0 };
  private inflight = new Map<string, Promise<PathDigest | null>>();
  private readonly pool: HashPool | null;
  /** How the folders of a record are listed for its check (and what the next command preloads). */
  private readonly lister: FolderLister;

  private constructor(
    /** The stat cache, shared with the code digester (other namespaces). */
    readonly statCache: StatCache,
    opts: DigestServiceOptions,
    private readonly stateRoot: string | null,
    /** Tree records (beside the stat cache's file, in trees/). */
    readonly trees: TreeStore,
  ) {
    this.pool = opts.pool === undefined ? sharedHashPool() : opts.pool;
    const native = opts.native === undefined ? fsListAddon() : opts.native;
    const preload = opts.preload === undefined ? (stateRoot === null ? null : Preloaded.fromLauncher()) : opts.preload;
    const helper = native ? null : opts.listing === undefined ? sharedListingHelper() : opts.listing;
    this.lister = new FolderLister({ native, helper, preload });
  }

  /** A service over the workspace at `root`, its stat cache loaded from disk. */
  static async open(root: string, opts: DigestServiceOptions = {}): Promise<DigestService> {
    const statePath = opts.statePath === undefined ? join(root, STATE_FILE) : opts.statePath;
    const cache = statePath === null ? StatCache.empty() : await StatCache.load(statePath, opts.onWarn);
    return new DigestService(cache, opts, statePath === null ? null : root, new TreeStore(statePath === null ? null : join(dirname(statePath), TREES_DIR)));
  }

  /** A service with a cache that lives as long as it does (tests, one-off tools). */
  static inMemory(opts: Omit<DigestServiceOptions, "statePath"> = {}): DigestService {
    return new DigestService(StatCache.empty(), opts, null, new TreeStore(null));
  }

  /**
   * Digest of a file or folder at an absolute path; null when nothing is there. Concurrent calls for
   * one path share the work; later calls look again (outputs are re-hashed after a run).
   */
  digestPath(abs: string, opts: DigestPathOptions = {}): Promise<PathDigest | null> {
    const key = opts.immutable ? `immutable:${abs}` : abs;
    const memo = this.memo?.get(key);
    if (memo) return memo;
    let p = this.inflight.get(key);
    if (!p) {
      p = this.digestPathNow(abs, opts.immutable === true);
      this.inflight.set(key, p);
      const drop = () => this.inflight.delete(key);
      p.then(drop, drop);
      this.memo?.set(key, p);
    }
    return p;
  }

  private memo: Map<string, Promise<PathDigest | null>> | null = null;
  /** Other values computed once per session (e.g. a stage module's code digests), by key. */
  private values: Map<string, Promise<unknown>> | null = null;
  /** Folder listings of this session: a folder nested in another dep folder is stat'ed once. */
  private listings: ListingMemo | null = null;
  private sessions = 0;
  /** A session ran: what the lister noted is what an assessment checks (the hint is rewritten from it). */
  private assessed = false;
  /** A session covered the whole pipeline: the hint is what the lister noted; else the old hint is kept and added to. */
  private assessedAll = false;

  /** `make()`, computed once per key while a session is open (outside one: every time). */
  once<T>(key: string, make: () => Promise<T>): Promise<T> {
    if (!this.values) return make();
    let p = this.values.get(key) as Promise<T> | undefined;
    if (!p) {
      p = make();
      this.values.set(key, p);
    }
    return p;
  }

  /**
   * Runs `fn` with each path digested at most once (a folder that is one stage's output and another's
   * dep is walked once per status, not twice). For read-only observation only: nothing may write the
   * workspace while a session is open (a run's assessment, before anything executes). `part`: it
   * observes only part of the pipeline (`status <stage>`), so the folders it did not check stay in
   * the hint.
   */
  async session<T>(fn: () => Promise<T>, opts: { part?: boolean } = {}): Promise<T> {
    this.assessed = true;
    if (!opts.part) this.assessedAll = true;
    if (this.sessions++ === 0) {
      this.memo = new Map();
      this.listings = new Map();
      this.values = new Map();
    }
    try {
      return await fn();
    } finally {
      if (--this.sessions === 0) {
        this.lister.endPreload();
        this.memo = null;
        this.listings = null;
        this.values = null;
      }
    }
  }

  private async digestPathNow(abs: string, immutable: boolean): Promise<PathDigest | null> {
    const st = statSync(abs, { bigint: true, throwIfNoEntry: false });
    if (!st) {
      if (lstatSync(abs, { throwIfNoEntry: false })) throw new SymlinkError(`dangling symlink ${abs}`);
      return null;
    }
    if (!st.isDirectory()) {
      const f = await this.digestFile(abs, st);
      return { kind: "file", digest: f.digest, size: f.size };
    }
    try {
      return await this.digestDir(abs, immutable);
    } catch (err) {
      if (err instanceof TreeLinkError) throw new SymlinkError(err.message);
      throw err;
    }
  }

  /**
   * A folder: its tree record when a check passes (immutable: folders only; else every file's stat),
   * otherwise a walk that re-hashes only the files whose stat differs from the record's entries (or,
   * for a folder last digested by an older version, from the stat cache), and a new record.
   */
  private async digestDir(abs: string, immutable: boolean): Promise<PathDigest> {
    const head = await this.trees.head(abs);
    if (head) {
      if (immutable && checkDirs(head).ok) {
        this.stats.treesByDirs++;
        return { kind: "dir", digest: head.digest, size: head.size };
      }
      if ((await checkFiles(head, this.listings ?? undefined, this.lister)).ok) {
        this.stats.treesByFiles++;
        return { kind: "dir", digest: head.digest, size: head.size };
      }
    }
    return this.rebuildDir(abs, head, !immutable);
  }

  /** `hint`: the next read-only command should preload its folders (not for immutable ones: their check lists nothing). */
  private async rebuildDir(abs: string, head: TreeHead | undefined, hint = false): Promise<PathDigest> {
    this.stats.treesRebuilt++;
    const madeAtMs = Date.now();
    const walked: WalkedFile[] = [];
    const dirs: DirSig[] = [];
    walkTree(
      abs,
      (f) => {
        walked.push(f);
      },
      (d) => dirs.push(d),
    );
    if (hint) {
      this.lister.note(
        dirs.map((d) => (d[0] ? join(abs, d[0]) : abs)),
        walked.length,
      );
    }
    const old = new Map((head ? this.trees.rowsSync(head) : undefined)?.map((r) => [r[0], r]));
    let recordable = true;
    const rows = await mapLimit(walked, LANES, async (f): Promise<EntryRow> => {
      const o = old.get(f.rel);
      if (o && o[1] === f.size && o[3] === f.dev && o[4] === f.ino && o[5] === f.mtimeMs && o[6] === f.ctimeMs && !isRacy(f.mtimeMs, o[7])) {
        this.stats.cacheHits++;
        return o;
      }
      const st = statSync(f.abs, { bigint: true });
      // The walk's stat must be the one the digest belongs to, or the record would pair them wrongly.
      if (Number(st.ino) !== f.ino || Number(st.size) !== f.size || !nearMs(st.mtimeNs, f.mtimeMs) || !nearMs(st.ctimeNs, f.ctimeMs)) recordable = false;
      const r = await this.digestFileOnce(f.abs, st, false);
      if (!r.stable) recordable = false;
      return [f.rel, r.size, r.digest.slice(DIGEST_PREFIX.length), f.dev, f.ino, f.mtimeMs, f.ctimeMs, Math.min(madeAtMs, r.hashedAtMs)];
    });
    rows.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const files: TreeEntry[] = rows.map((r) => ({ path: r[0], size: r[1], digest: DIGEST_PREFIX + r[2] }));
    const digest = treeDigest(files);
    const size = files.reduce((s, f) => s + f.size, 0);
    if (recordable) {
      const next: TreeHead = { version: 2, path: abs, digest, size, count: rows.length, madeAtMs, statSig: combineSigs(dirs), dirs, entries: `${treeKey(abs)}-${hexOf(digest).slice(0, 16)}.entries.json` };
      this.trees.put(next, rows, head);
      // Their digests now live in the record: the stat cache's copies would only be loaded for nothing.
      for (const f of walked) this.statCache.forget(FILE_NS, f.abs);
    }
    return { kind: "dir", digest, size, files };
  }

  /**
   * The manifest entries of a folder digest: `d.files` when present, else the tree record's entries
   * (checked against `d.digest`), else a fresh walk, which must give the same digest.
   */
  async filesOf(abs: string, d: PathDigest): Promise<TreeEntry[]> {
    if (d.files) return d.files;
    const head = await this.trees.head(abs);
    const rows = head && head.digest === d.digest ? this.trees.rowsSync(head) : undefined;
    if (rows) return rows.map((r) => ({ path: r[0], size: r[1], digest: DIGEST_PREFIX + r[2] }));
    const again = await this.rebuildDir(abs, undefined);
    if (again.digest !== d.digest) throw new Error(`folder ${abs} changed while it was being read`);
    return again.files!;
  }

  /** Digest of one regular file; `st` (followed, bigint) when the caller has it. */
  async digestFile(abs: string, st: BigIntStats = statSync(abs, { bigint: true })): Promise<{ digest: Digest; size: number }> {
    const r = await this.digestFileOnce(abs, st, true);
    return { digest: r.digest, size: r.size };
  }

  /**
   * The stat cache, else the bytes. `stable`: the file did not change while it was read (its digest
   * may be recorded against `st`); `remember`: store it in the stat cache (tree records keep their own).
   */
  private async digestFileOnce(abs: string, st: BigIntStats, remember: boolean): Promise<{ digest: Digest; size: number; stable: boolean; hashedAtMs: number }> {
    const size = Number(st.size);
    const hit = this.statCache.lookup(FILE_NS, abs, st);
    if (hit) {
      this.stats.cacheHits++;
      return { digest: hit, size, stable: true, hashedAtMs: Date.now() };
    }
    const started = nowNs();
    const digest = DIGEST_PREFIX + (await sha256File(abs, { size, pool: this.pool }));
    this.stats.filesHashed++;
    this.stats.bytesHashed += size;
    // A file that changed while it was read no longer matches its stat: never cache a torn digest.
    const after = statSync(abs, { bigint: true, throwIfNoEntry: false });
    const stable = !!after && after.mtimeNs === st.mtimeNs && after.ctimeNs === st.ctimeNs && after.size === st.size && after.ino === st.ino;
    if (stable && remember) this.statCache.store(FILE_NS, abs, st, digest, started);
    return { digest, size, stable, hashedAtMs: Number(started / 1_000_000n) };
  }

  /**
   * After a metadata-only change made by sed-pipe itself (chmod, a hard link: both move ctime), keeps
   * the cached digest valid; only ctime may differ, never device, inode, size or mtime.
   */
  noteMetadataChange(abs: string): void {
    const st = statSync(abs, { bigint: true, throwIfNoEntry: false });
    if (st) this.statCache.touchCtime(FILE_NS, abs, st);
    const n = statSync(abs, { throwIfNoEntry: false });
    if (n) this.trees.noteCtime(abs, n);
  }

  /** Persists new tree records, then the stat cache (atomic, merged with what other processes saved meanwhile). */
  async save(): Promise<void> {
    await this.trees.flush();
    await this.statCache.save();
    if (this.trees.dir && this.assessed) await this.lister.saveHint(join(this.trees.dir, "..", HINT_FILE), !this.assessedAll).catch(() => {});
    if (this.stateRoot) {
      const root = this.stateRoot;
      await Promise.all(OLD_STATE_FILES.map((f) => rm(join(root, f), { force: true }).catch(() => {})));
    }
  }
}
