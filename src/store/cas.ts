// The content-addressed store of outputs under cache/objects/sha256/<2>/<rest>: folders are kept as
// a manifest object plus their files (like DVC's .dir). Owns put/has/restore/verify; never decides
// what to run. Objects are read-only; a restore verifies digests and treats a bad object as a miss.
import { chmod, link, mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { OutRecord } from "../pipeline/types.ts";
import { tempPathFor, writeFileAtomic } from "../io/atomic.ts";
import { OutputDigester, manifestBytes, sha256File, sha256Hex, type TreeManifest } from "./digest.ts";
import { linkOrCopy, pathExists, replacePath } from "./place.ts";
import { mapLimit } from "../io/map-limit.ts";

const CONCURRENCY = 16;

export type RestoreResult =
  | { ok: true; files: number; bytes: number }
  | { ok: false; reason: "missing" | "corrupt"; detail: string };

export class ContentStore {
  readonly objectsDir: string;
  readonly corruptDir: string;

  constructor(readonly cacheDir: string, private readonly digester: OutputDigester = new OutputDigester(null)) {
    this.objectsDir = join(cacheDir, "objects", "sha256");
    this.corruptDir = join(cacheDir, "objects", "corrupt");
  }

  objectPath(digest: string): string {
    if (!/^[0-9a-f]{64}$/.test(digest)) throw new Error(`not a sha256 digest: ${digest}`);
    return join(this.objectsDir, digest.slice(0, 2), digest.slice(2));
  }

  /** True when the object (and, for a folder, every file it lists) is present. Does not verify bytes. */
  async has(rec: Pick<OutRecord, "kind" | "digest">): Promise<boolean> {
    if (!(await pathExists(this.objectPath(rec.digest)))) return false;
    if (rec.kind === "file") return true;
    const m = await this.readManifest(rec.digest).catch(() => null);
    if (!m) return false;
    if (m.files.length > 512) {
      const names = await this.listObjects();
      return m.files.every((f) => names.has(f.digest));
    }
    const present = await mapLimit(m.files, CONCURRENCY, (f) => pathExists(this.objectPath(f.digest)));
    return present.every(Boolean);
  }

  /**
   * Stores the file or folder at `abs` (already in its final place) and returns its record.
   * Files are hard-linked into the store (copied across file systems), then made read-only.
   */
  async put(abs: string, relPath: string): Promise<OutRecord> {
    const d = await this.digester.digestPath(abs);
    if (!d) throw new Error(`cannot store ${relPath}: it does not exist`);
    if (d.kind === "file") {
      await this.putFileObject(abs, d.digest);
      await this.digester.noteMetadataChange(abs);
    } else {
      await mapLimit(d.manifest!.files, CONCURRENCY, async (f) => {
        const p = join(abs, ...f.path.split("/"));
        await this.putFileObject(p, f.digest);
        await this.digester.noteMetadataChange(p);
      });
      const target = this.objectPath(d.digest);
      if (!(await pathExists(target))) {
        await writeFileAtomic(target, manifestBytes(d.manifest!));
        await chmod(target, 0o444);
      }
    }
    return { path: relPath, kind: d.kind, digest: d.digest, size: d.size };
  }

  private async putFileObject(abs: string, digest: string): Promise<void> {
    const target = this.objectPath(digest);
    await this.ensureShard(target);
    // link() creates the name atomically over bytes that are already complete, so no temp name is
    // needed; an existing object (EEXIST) has the same content by construction.
    await chmod(abs, 0o444);
    try {
      await link(abs, target);
      return;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "EEXIST") return;
      if (code !== "EXDEV" && code !== "EPERM" && code !== "EMLINK" && code !== "ENOTSUP") throw err;
    }
    const tmp = tempPathFor(target);
    await linkOrCopy(abs, tmp);
    await chmod(tmp, 0o444);
    await rename(tmp, target);
  }

  private shards = new Set<string>();
  private async ensureShard(objectPath: string): Promise<void> {
    const dir = dirname(objectPath);
    if (this.shards.has(dir)) return;
    await mkdir(dir, { recursive: true });
    this.shards.add(dir);
  }

  /** Names present in the store, listed shard by shard (cheaper than one stat per file for big folders). */
  private async listObjects(): Promise<Set<string>> {
    const names = new Set<string>();
    const shards = await readdir(this.objectsDir).catch(() => [] as string[]);
    await mapLimit(shards, CONCURRENCY, async (sh) => {
      for (const n of await readdir(join(this.objectsDir, sh)).catch(() => [] as string[])) names.add(sh + n);
    });
    return names;
  }

  private async readManifest(digest: string): Promise<TreeManifest> {
    const bytes = await readFile(this.objectPath(digest), "utf8");
    const m = JSON.parse(bytes) as TreeManifest;
    if (m.version !== 1 || !Array.isArray(m.files)) throw new Error("not a folder manifest");
    return m;
  }

  /** Moves a damaged object aside so that it can never be served again and a later put can replace it. */
  private async quarantine(digest: string): Promise<void> {
    await mkdir(this.corruptDir, { recursive: true });
    await rename(this.objectPath(digest), join(this.corruptDir, `${digest}-${Date.now()}`)).catch(() => {});
  }

  /** Re-reads an object and checks that its bytes still hash to its name. */
  private async verifyObject(digest: string): Promise<Extract<RestoreResult, { ok: false }> | null> {
    const p = this.objectPath(digest);
    if (!(await pathExists(p))) return { ok: false, reason: "missing", detail: `object ${digest.slice(0, 12)} is not in the cache` };
    const actual = await sha256File(p, (await stat(p)).size);
    if (actual !== digest) {
      await this.quarantine(digest);
      return {
        ok: false,
        reason: "corrupt",
        detail: `cache object ${digest.slice(0, 12)} is corrupt (its content hashes to ${actual.slice(0, 12)}); moved to ${this.corruptDir}`,
      };
    }
    return null;
  }

  /**
   * Materialises `rec` at `targetAbs` (replacing what is there) after verifying every object.
   * Never leaves a partial output: the result is built beside the target and moved in whole.
   */
  async restore(rec: OutRecord, targetAbs: string): Promise<RestoreResult> {
    if (rec.kind === "file") {
      const bad = await this.verifyObject(rec.digest);
      if (bad) return bad;
      const tmp = tempPathFor(targetAbs);
      await linkOrCopy(this.objectPath(rec.digest), tmp);
      await replacePath(tmp, targetAbs);
      return { ok: true, files: 1, bytes: rec.size };
    }
    const bad = await this.verifyObject(rec.digest);
    if (bad) return bad;
    let m: TreeManifest;
    try {
      m = await this.readManifest(rec.digest);
    } catch (err) {
      await this.quarantine(rec.digest);
      return { ok: false, reason: "corrupt", detail: `folder manifest ${rec.digest.slice(0, 12)} is unreadable: ${(err as Error).message}` };
    }
    if (sha256Hex(manifestBytes(m)) !== rec.digest) {
      await this.quarantine(rec.digest);
      return { ok: false, reason: "corrupt", detail: `folder manifest ${rec.digest.slice(0, 12)} is not canonical` };
    }
    const bads = await mapLimit(m.files, CONCURRENCY, async (f) => {
      const b = await this.verifyObject(f.digest);
      return b ? { ...b, detail: `${b.detail} (file ${f.path} of ${rec.path})` } : null;
    });
    const firstBad = bads.find((b) => b !== null);
    if (firstBad) return firstBad;
    const tmp = tempPathFor(targetAbs);
    try {
      await mkdir(tmp, { recursive: true });
      await mapLimit(m.files, CONCURRENCY, (f) => linkOrCopy(this.objectPath(f.digest), join(tmp, ...f.path.split("/"))));
      await replacePath(tmp, targetAbs);
    } catch (err) {
      await rm(tmp, { recursive: true, force: true });
      throw err;
    }
    return { ok: true, files: m.files.length, bytes: m.files.reduce((s, f) => s + f.size, 0) };
  }

  /** Size on disk of one object, or null if absent (for `cache` commands). */
  async objectSize(digest: string): Promise<number | null> {
    try {
      return (await stat(this.objectPath(digest))).size;
    } catch {
      return null;
    }
  }
}
