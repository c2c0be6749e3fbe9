// The content-addressed store under cache/: objects/sha256/<2>/<62> (files, and folders kept as a
// manifest object plus their files, like DVC's .dir), and runs/<fingerprint>.json (run records: the
// outputs a fingerprint produced, so identical inputs restore instead of rerun, even without a lock
// entry). Owns put/has/restore/verify; never decides what to run. A restore verifies every digest and
// treats a bad object as a miss.
//
// Artifacts never share bytes with objects by default ("copy": a reflink where the file system has
// them, else a copy): an in-place write to a file under artifacts/ then cannot reach the cache.
// "hardlink" saves the disk and the time of a copy for very large outputs, at that risk.
import { constants } from "node:fs";
import { chmod, copyFile, link, mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { LockEntry, OutRecord } from "../pipeline/types.ts";
import { tempPathFor, writeFileAtomic } from "../io/atomic.ts";
import { mapLimit } from "../io/map-limit.ts";
import { sha256File } from "../io/sha256.ts";
import { canonicalJson } from "../hash/canonical-json.ts";
import { DigestService, hexOf, manifestBytes, parseManifest, type Digest, type TreeEntry } from "../hash/digest.ts";
import { normaliseEntry } from "./lock-file.ts";
import { pathExists, replacePath } from "./place.ts";

const CONCURRENCY = 16;

export type LinkMode = "copy" | "hardlink";

export type RestoreResult =
  | { ok: true; files: number; bytes: number }
  | { ok: false; reason: "missing" | "corrupt"; detail: string };

/** Where a run record came from, so a CI result can be traced to the machine and commit. */
export interface Provenance {
  pushedAt: string;
  host: string;
  /** The commit being built when known (GITHUB_SHA / CI_COMMIT_SHA), else null. */
  commit: string | null;
}

/** A run record: what one fingerprint produced (the lock entry it committed). The remote layout uses it too. */
export interface RunRecord {
  version: 1;
  /** The instance id that produced it (for messages; another instance with equal inputs may reuse it). */
  id: string;
  entry: LockEntry;
  provenance?: Provenance;
}

export class ContentStore {
  readonly objectsDir: string;
  readonly corruptDir: string;
  readonly runsDir: string;
  readonly link: LinkMode;

  constructor(
    readonly cacheDir: string,
    private readonly digests: DigestService = DigestService.inMemory({ pool: null }),
    opts: { link?: LinkMode } = {},
  ) {
    this.objectsDir = join(cacheDir, "objects", "sha256");
    this.corruptDir = join(cacheDir, "objects", "corrupt");
    this.runsDir = join(cacheDir, "runs");
    this.link = opts.link ?? "copy";
  }

  objectPath(digest: Digest): string {
    const hex = hexOf(digest);
    return join(this.objectsDir, hex.slice(0, 2), hex.slice(2));
  }

  /** True when the object (and, for a folder, every file it lists) is present. Does not verify bytes. */
  async has(rec: Pick<OutRecord, "kind" | "digest">): Promise<boolean> {
    if (!(await pathExists(this.objectPath(rec.digest)))) return false;
    if (rec.kind === "file") return true;
    const files = await this.readManifest(rec.digest).catch(() => null);
    if (!files) return false;
    if (files.length > 512) {
      const names = await this.listObjects();
      return files.every((f) => names.has(hexOf(f.digest)));
    }
    const present = await mapLimit(files, CONCURRENCY, (f) => pathExists(this.objectPath(f.digest)));
    return present.every(Boolean);
  }

  /** Stores the file or folder at `abs` (already in its final place) and returns its record. */
  async put(abs: string, relPath: string): Promise<OutRecord> {
    const d = await this.digests.digestPath(abs);
    if (!d) throw new Error(`cannot store ${relPath}: it does not exist`);
    if (d.kind === "file") {
      await this.putFileObject(abs, d.digest);
    } else {
      const files = await this.digests.filesOf(abs, d);
      await mapLimit(files, CONCURRENCY, (f) => this.putFileObject(join(abs, ...f.path.split("/")), f.digest));
      const target = this.objectPath(d.digest);
      if (!(await pathExists(target))) {
        await writeFileAtomic(target, manifestBytes(files));
        await chmod(target, 0o444);
      }
    }
    return { path: relPath, kind: d.kind, digest: d.digest, size: d.size };
  }

  private async putFileObject(abs: string, digest: Digest): Promise<void> {
    const target = this.objectPath(digest);
    // An existing object has the same content by construction (and is verified when restored).
    if (await pathExists(target)) return;
    await this.ensureShard(target);
    if (this.link === "hardlink") {
      // The artifact becomes the object: read-only, and link() names it atomically.
      await chmod(abs, 0o444);
      try {
        await link(abs, target);
        this.digests.noteMetadataChange(abs);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "EEXIST") return;
        if (code !== "EXDEV" && code !== "EPERM" && code !== "EMLINK" && code !== "ENOTSUP") throw err;
      }
    }
    // Straight to the final name (a temp name and a rename would double the syscalls of folders of
    // small files). A copy cut short by a crash leaves a damaged object under its name: every path
    // out of the store (restore, push) re-hashes objects, so it is found and quarantined, never served.
    try {
      await copyFile(abs, target, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "EEXIST") return;
      await rm(target, { force: true });
      throw err;
    }
    await chmod(target, 0o444);
  }

  private shards = new Set<string>();
  private async ensureShard(objectPath: string): Promise<void> {
    const dir = dirname(objectPath);
    if (this.shards.has(dir)) return;
    await mkdir(dir, { recursive: true });
    this.shards.add(dir);
  }

  /** Hex names present in the store, listed shard by shard (cheaper than a stat per file for big folders). */
  private async listObjects(): Promise<Set<string>> {
    const names = new Set<string>();
    const shards = await readdir(this.objectsDir).catch(() => [] as string[]);
    await mapLimit(shards, CONCURRENCY, async (sh) => {
      for (const n of await readdir(join(this.objectsDir, sh)).catch(() => [] as string[])) names.add(sh + n);
    });
    return names;
  }

  /** The files a stored folder manifest lists (its bytes verified against its name). */
  async readManifest(digest: Digest): Promise<TreeEntry[]> {
    return parseManifest(await readFile(this.objectPath(digest), "utf8"), digest);
  }

  /** Moves a damaged object aside so that it can never be served again and a later put can replace it. */
  private async quarantine(digest: Digest): Promise<void> {
    await mkdir(this.corruptDir, { recursive: true });
    await rename(this.objectPath(digest), join(this.corruptDir, `${hexOf(digest)}-${Date.now()}`)).catch(() => {});
  }

  /** Re-reads an object and checks that its bytes still hash to its name. */
  private async verifyObject(digest: Digest): Promise<Extract<RestoreResult, { ok: false }> | null> {
    const p = this.objectPath(digest);
    const short = hexOf(digest).slice(0, 12);
    const st = await stat(p).catch(() => null);
    if (!st) return { ok: false, reason: "missing", detail: `object ${short} is not in the cache` };
    const actual = await sha256File(p, { size: st.size });
    if (actual !== hexOf(digest)) {
      await this.quarantine(digest);
      return {
        ok: false,
        reason: "corrupt",
        detail: `cache object ${short} is corrupt (its content hashes to ${actual.slice(0, 12)}); moved to ${this.corruptDir}`,
      };
    }
    return null;
  }

  /** Materialises one object at `dst` (which must not exist): a copy (reflink where possible), or a link. */
  private async materialise(digest: Digest, dst: string): Promise<void> {
    await mkdir(dirname(dst), { recursive: true });
    const src = this.objectPath(digest);
    if (this.link === "hardlink") {
      try {
        await link(src, dst);
        return;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== "EXDEV" && code !== "EPERM" && code !== "EMLINK" && code !== "ENOTSUP") throw err;
      }
    }
    await copyFile(src, dst, constants.COPYFILE_FICLONE);
    // The copy is the user's to read (and to break, without reaching the cache): not read-only.
    await chmod(dst, 0o644);
  }

  /**
   * Materialises `rec` at `targetAbs` (replacing what is there) after verifying every object.
   * Never leaves a partial output: the result is built beside the target and moved in whole.
   */
  async restore(rec: OutRecord, targetAbs: string): Promise<RestoreResult> {
    const bad = await this.verifyObject(rec.digest);
    if (bad) return bad;
    const tmp = tempPathFor(targetAbs);
    if (rec.kind === "file") {
      await this.materialise(rec.digest, tmp);
      await replacePath(tmp, targetAbs);
      return { ok: true, files: 1, bytes: rec.size };
    }
    let files: TreeEntry[];
    try {
      files = await this.readManifest(rec.digest);
    } catch (err) {
      await this.quarantine(rec.digest);
      return { ok: false, reason: "corrupt", detail: `folder manifest ${hexOf(rec.digest).slice(0, 12)} is unreadable: ${(err as Error).message}` };
    }
    const bads = await mapLimit(files, CONCURRENCY, async (f) => {
      const b = await this.verifyObject(f.digest);
      return b ? { ...b, detail: `${b.detail} (file ${f.path} of ${rec.path})` } : null;
    });
    const firstBad = bads.find((b) => b !== null);
    if (firstBad) return firstBad;
    try {
      await mkdir(tmp, { recursive: true });
      await mapLimit(files, CONCURRENCY, (f) => this.materialise(f.digest, join(tmp, ...f.path.split("/"))));
      await replacePath(tmp, targetAbs);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    return { ok: true, files: files.length, bytes: files.reduce((s, f) => s + f.size, 0) };
  }

  /** Size on disk of one object, or null if absent (for `cache` commands). */
  async objectSize(digest: Digest): Promise<number | null> {
    try {
      return (await stat(this.objectPath(digest))).size;
    } catch {
      return null;
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Run records

  runPath(fingerprint: Digest): string {
    return join(this.runsDir, `${hexOf(fingerprint)}.json`);
  }

  /** Records what `fingerprint` produced. Written after its objects are stored, so a record is never ahead of them. */
  async recordRun(id: string, entry: LockEntry, provenance?: Provenance): Promise<void> {
    const rec: RunRecord = { version: 1, id, entry, ...(provenance ? { provenance } : {}) };
    await writeFileAtomic(this.runPath(entry.fingerprint), canonicalJson(rec) + "\n");
  }

  /** The run record of a fingerprint, or null (absent, or damaged: a damaged record is only a miss). */
  async readRun(fingerprint: Digest): Promise<RunRecord | null> {
    let text: string;
    try {
      text = await readFile(this.runPath(fingerprint), "utf8");
    } catch {
      return null;
    }
    try {
      return parseRunRecord(JSON.parse(text), fingerprint);
    } catch {
      return null;
    }
  }

  /** Fingerprints of every run record (for gc and cache transfer). */
  async listRuns(): Promise<Digest[]> {
    const names = await readdir(this.runsDir).catch(() => [] as string[]);
    return names.filter((n) => /^[0-9a-f]{64}\.json$/.test(n)).map((n) => `sha256:${n.slice(0, 64)}`);
  }

  async removeRun(fingerprint: Digest): Promise<void> {
    await rm(this.runPath(fingerprint), { force: true });
  }
}

/**
 * Validates a run record read from disk or a remote, normalising digests written by older versions.
 * Throws with what is wrong.
 */
export function parseRunRecord(raw: unknown, fingerprint: Digest): RunRecord {
  const r = raw as Partial<RunRecord>;
  if (!r || r.version !== 1 || typeof r.id !== "string" || !r.entry || typeof r.entry !== "object") throw new Error("not a run record");
  const entry = normaliseEntry(r.entry as LockEntry, `run record ${hexOf(fingerprint).slice(0, 12)}`);
  if (entry.fingerprint !== fingerprint) throw new Error(`run record ${hexOf(fingerprint).slice(0, 12)} holds another fingerprint`);
  const p = r.provenance;
  const provenance = p && typeof p.pushedAt === "string" && typeof p.host === "string" ? { pushedAt: p.pushedAt, host: p.host, commit: typeof p.commit === "string" ? p.commit : null } : undefined;
  return { version: 1, id: r.id, entry, ...(provenance ? { provenance } : {}) };
}
