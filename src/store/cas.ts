// The content-addressed store of outputs under cache/objects/sha256/<2>/<rest>: folders are kept as
// a manifest object plus their files (like DVC's .dir). Owns put/has/restore/verify; never decides
// what to run. Objects are read-only; a restore verifies digests and treats a bad object as a miss.
import { chmod, mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { OutRecord } from "../pipeline/types.ts";
import { tempPathFor, writeFileAtomic } from "./atomic.ts";
import { OutputDigester, manifestBytes, sha256File, sha256Hex, type TreeManifest } from "./digest.ts";
import { linkOrCopy, pathExists, replacePath } from "./place.ts";

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
    for (const f of m.files) if (!(await pathExists(this.objectPath(f.digest)))) return false;
    return true;
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
    } else {
      for (const f of d.manifest!.files) await this.putFileObject(join(abs, ...f.path.split("/")), f.digest);
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
    if (await pathExists(target)) return;
    await mkdir(dirname(target), { recursive: true });
    const tmp = tempPathFor(target);
    await linkOrCopy(abs, tmp);
    await chmod(tmp, 0o444);
    await rename(tmp, target);
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
    const actual = await sha256File(p);
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
    for (const f of m.files) {
      const b = await this.verifyObject(f.digest);
      if (b) return { ...b, detail: `${b.detail} (file ${f.path} of ${rec.path})` };
    }
    const tmp = tempPathFor(targetAbs);
    try {
      await mkdir(tmp, { recursive: true });
      for (const f of m.files) await linkOrCopy(this.objectPath(f.digest), join(tmp, ...f.path.split("/")));
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
