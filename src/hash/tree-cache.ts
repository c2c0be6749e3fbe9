// Tree records: for each folder the digest service has digested, its digest and a signature of the
// stats of its files and folders when the digest was made, kept in cache/state/trees/ (one small head
// per folder, plus its per-file entries in a second file read only when something changed). A warm
// check is then one walk with no per-file lookups, no manifest rebuild and no hashing, or, for folders
// declared immutable, a stat of each sub-folder only. Owns the record format and the validity rules;
// never hashes file bytes (src/hash/digest.ts does).
import { createHash } from "node:crypto";
import { readFileSync, realpathSync, statSync, type Stats } from "node:fs";
import { rm } from "node:fs/promises";
import { join, sep } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import { isRacy, LINK_ERROR, listDirSync, type Listing, type ListingSig, type ListJob, type StatSig, type WalkedFile } from "./listing.ts";

export { isRacy, racyWindowMs, sigLine, type Listing, type StatSig, type WalkedFile } from "./listing.ts";

/** A folder of a tree: "" is the tree's own folder; `sig` is its listing's (see listDir). */
export type DirSig = [rel: string, dev: number, ino: number, mtimeMs: number, ctimeMs: number, sig: string];

/** One file of a record: rel, size, digest hex, dev, ino, mtimeMs, ctimeMs, hashedAtMs. */
export type EntryRow = [string, number, string, number, number, number, number, number];

export interface TreeHead {
  version: 2;
  path: string;
  /** "sha256:<hex>" of the folder's manifest. */
  digest: string;
  size: number;
  count: number;
  /** Wall clock (ms) when the walk that produced this record started. */
  madeAtMs: number;
  /** sha256 over the folders' listing signatures, in `dirs` order ("" = void: check fails). */
  statSig: string;
  /** Every folder of the tree (links followed), parents before children. */
  dirs: DirSig[];
  /** The file (beside the head) holding the EntryRows. */
  entries: string;
}

/** A dangling link or a link cycle; digest.ts maps it to its SymlinkError. */
export class TreeLinkError extends Error {}

/** True when `abs` is one of `dirs` or inside one (absolute, normalised paths; no file-system access). */
export function isInsideAny(abs: string, dirs: readonly string[]): boolean {
  return dirs.some((d) => {
    const base = d.length > 1 && d.endsWith(sep) ? d.slice(0, -1) : d;
    return abs === base || abs.startsWith(base === sep ? base : base + sep);
  });
}

export function sameStat(a: StatSig, b: StatSig): boolean {
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs;
}

/** listDirSync keeping every file and sub-folder; a dangling link is a TreeLinkError. */
export function listDir(abs: string, rel: string): Listing {
  try {
    return listDirSync(abs, rel, true);
  } catch (err) {
    if ((err as { code?: unknown }).code === LINK_ERROR) throw new TreeLinkError((err as Error).message);
    throw err;
  }
}


/** Walks the regular files under `dir`, parents' listings before children's; cycles are TreeLinkErrors. */
export function walkTree(dir: string, onFile: (f: WalkedFile) => void, onDir: (d: DirSig) => void): void {
  const onPath = new Set<string>();
  const walk = (abs: string, rel: string, st: Pick<Stats, "dev" | "ino" | "mtimeMs" | "ctimeMs">): void => {
    const real = realpathSync(abs);
    if (onPath.has(real)) throw new TreeLinkError(`symlink cycle at ${abs}`);
    onPath.add(real);
    const l = listDir(abs, rel);
    onDir([rel, st.dev, st.ino, st.mtimeMs, st.ctimeMs, l.sig]);
    for (const f of l.files) onFile(f);
    for (const d of l.subdirs) walk(d.abs, rel ? `${rel}/${d.name}` : d.name, d);
    onPath.delete(real);
  };
  walk(dir, "", statSync(dir));
}

/** The head's statSig from its folders' listing signatures. */
export function combineSigs(dirs: readonly DirSig[]): string {
  const h = createHash("sha256");
  for (const d of dirs) h.update(`${d[0]}\0${d[5]}\n`);
  return h.digest("hex");
}

export type CheckResult = { ok: true } | { ok: false; why: "dirs-changed" | "files-changed" | "racy" };

/**
 * The immutable check: every folder of the record is still there with the same stat, and none was
 * modified within the racy window of the record. Detects files added, removed or renamed (each moves
 * its folder's mtime); does NOT detect a file rewritten in place (that moves only the file's own
 * mtime/ctime). Cost: one stat per folder.
 */
export function checkDirs(head: TreeHead): CheckResult {
  for (const [rel, dev, ino, mtimeMs, ctimeMs] of head.dirs) {
    const st = statSync(rel ? join(head.path, rel) : head.path, { throwIfNoEntry: false });
    if (!st || !st.isDirectory() || st.dev !== dev || st.ino !== ino || st.mtimeMs !== mtimeMs || st.ctimeMs !== ctimeMs) return { ok: false, why: "dirs-changed" };
    if (isRacy(mtimeMs, head.madeAtMs)) return { ok: false, why: "racy" };
  }
  return { ok: true };
}

/** Listings already made by this process, by absolute folder (one assessment: see DigestService.session). */
export type ListingMemo = Map<string, ListingSig>;

/** Lists a record's folders another way than listDirSync here (see FolderLister); undefined = left to the caller. */
export interface RecordLister {
  list(jobs: readonly ListJob[], files: number): Promise<Array<ListingSig | null | undefined>>;
}

/**
 * The full check: each folder of the record is listed again and every file in it stat'ed; the
 * listing signatures (names, and each file's device, inode, size, mtime, ctime) must be the record's,
 * and no file may have been modified within the racy window of the record. Any write to a file moves
 * its ctime, which no user tool can set back, so an in-place edit is seen even with size and mtime
 * restored; a file or folder added, removed or renamed changes a listing. Cost: one stat per file,
 * paid once per assessment for folders nested in others (`memo`); `lister` lists the folders it can
 * (preloaded, native threads, a helper thread), this thread the rest.
 */
export async function checkFiles(head: TreeHead, memo: ListingMemo = new Map(), lister: RecordLister | null = null): Promise<CheckResult> {
  if (head.statSig === "" || combineSigs(head.dirs) !== head.statSig) return { ok: false, why: "files-changed" };
  const absOf = (d: DirSig) => (d[0] ? join(head.path, d[0]) : head.path);
  if (lister) {
    const todo = head.dirs.filter((d) => !memo.has(absOf(d)));
    if (todo.length > 0) {
      const got = await lister.list(
        todo.map((d) => ({ abs: absOf(d), rel: d[0], expect: d[5] })),
        head.count,
      );
      for (let i = 0; i < todo.length; i++) {
        const l = got[i];
        if (l === null) return { ok: false, why: "files-changed" };
        if (l !== undefined) memo.set(absOf(todo[i]!), l);
      }
    }
  }
  let racy = false;
  for (const d of head.dirs) {
    const abs = absOf(d);
    let l = memo.get(abs);
    if (!l) {
      try {
        const x = listDirSync(abs, d[0], false);
        l = { sig: x.sig, racyUntilMs: x.racyUntilMs };
      } catch {
        return { ok: false, why: "files-changed" };
      }
      memo.set(abs, l);
    }
    if (l.sig !== d[5]) return { ok: false, why: "files-changed" };
    if (head.madeAtMs <= l.racyUntilMs) racy = true;
  }
  return racy ? { ok: false, why: "racy" } : { ok: true };
}

const HEAD_RE = /^[0-9a-f]{32}\.json$/;

export function treeKey(abs: string): string {
  return createHash("sha256").update(abs).digest("hex").slice(0, 32);
}

function validHead(h: unknown, abs: string): h is TreeHead {
  const x = h as Partial<TreeHead>;
  return (
    !!x &&
    x.version === 2 &&
    x.path === abs &&
    typeof x.digest === "string" &&
    typeof x.size === "number" &&
    typeof x.count === "number" &&
    typeof x.madeAtMs === "number" &&
    typeof x.statSig === "string" &&
    Array.isArray(x.dirs) &&
    typeof x.entries === "string" &&
    /^[0-9a-f]{32}-[0-9a-f]{16}\.entries\.json$/.test(x.entries)
  );
}

/**
 * Where records live: a folder (cache/state/trees) or memory. A missing, damaged or foreign record
 * reads as none (the folder is then walked and hashed as if cold). Writes are atomic: the entries
 * file first, then the head that names it, so a head never names entries that are not complete.
 */
export class TreeStore {
  private mem = new Map<string, { head: TreeHead; rows: EntryRow[] }>();
  // Records made by this process, written at flush().
  private pending = new Map<string, { head: TreeHead; rows: EntryRow[]; old?: string }>();

  constructor(readonly dir: string | null) {}

  /** The record of `abs`, or undefined. */
  async head(abs: string): Promise<TreeHead | undefined> {
    return this.headSync(abs);
  }

  /** head(), at once: a head is a few KB, and a warm status reads one per folder dep or output. */
  headSync(abs: string): TreeHead | undefined {
    const p = this.pending.get(abs) ?? this.mem.get(abs);
    if (p) return p.head;
    if (this.dir === null) return undefined;
    try {
      const h = JSON.parse(readFileSync(join(this.dir, `${treeKey(abs)}.json`), "utf8")) as unknown;
      return validHead(h, abs) ? h : undefined;
    } catch {
      return undefined;
    }
  }

  /** The entries a head names (sorted by path), or undefined when missing or not the head's. */
  rowsSync(head: TreeHead): EntryRow[] | undefined {
    const p = this.pending.get(head.path) ?? this.mem.get(head.path);
    if (p && p.head === head) return p.rows;
    if (this.dir === null) return undefined;
    try {
      const data = JSON.parse(readFileSync(join(this.dir, head.entries), "utf8")) as { version?: number; digest?: string; rows?: EntryRow[] };
      if (data.version !== 1 || data.digest !== head.digest || !Array.isArray(data.rows)) return undefined;
      return data.rows;
    } catch {
      return undefined;
    }
  }

  /** Keeps a new record for `abs` (written by flush()). */
  put(head: TreeHead, rows: EntryRow[], previous?: TreeHead): void {
    if (this.dir === null) {
      this.mem.set(head.path, { head, rows });
      return;
    }
    const old = previous && previous.entries !== head.entries ? previous.entries : undefined;
    this.pending.set(head.path, { head, rows, ...(old ? { old } : {}) });
  }

  /**
   * A file of a record not yet written had a metadata-only change made by sed-pipe (chmod, a hard
   * link): its entry takes the new ctime, and the head's signature is voided, so the next check
   * re-walks the folder once but re-reads none of its files. Returns false when no record held it.
   */
  noteCtime(abs: string, st: StatSig): boolean {
    for (const rec of [...this.pending.values(), ...this.mem.values()]) {
      const { head, rows } = rec;
      if (!abs.startsWith(head.path + "/")) continue;
      const rel = abs.slice(head.path.length + 1);
      let lo = 0;
      let hi = rows.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const r = rows[mid]!;
        if (r[0] === rel) {
          if (r[1] !== st.size || r[3] !== st.dev || r[4] !== st.ino || r[5] !== st.mtimeMs) return false;
          r[6] = st.ctimeMs;
          rec.head = { ...head, statSig: "" };
          return true;
        }
        if (r[0] < rel) lo = mid + 1;
        else hi = mid - 1;
      }
    }
    return false;
  }

  /** Writes the records made since the last flush; nothing when none was. */
  async flush(): Promise<void> {
    if (this.dir === null) return;
    const dir = this.dir;
    const batch = [...this.pending.values()];
    this.pending.clear();
    for (const { head, rows, old } of batch) {
      await writeFileAtomic(join(dir, head.entries), JSON.stringify({ version: 1, digest: head.digest, rows }));
      await writeFileAtomic(join(dir, `${treeKey(head.path)}.json`), JSON.stringify(head));
      if (old && HEAD_RE.test(`${old.slice(0, 32)}.json`)) await rm(join(dir, old), { force: true }).catch(() => {});
    }
  }
}
