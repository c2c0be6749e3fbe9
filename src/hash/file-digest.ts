// Content digests of files and folders: sha256 of file bytes (streamed, large reads) and of a sorted
// folder manifest. Owns the digest format "sha256:<hex>"; knows nothing of caches or pipelines.
import { createHash } from "node:crypto";
import { readdirSync, realpathSync, statSync } from "node:fs";
import { open, stat } from "node:fs/promises";
import { join } from "node:path";

/** 4 MiB reads: large enough that syscalls are noise next to hashing, small enough to stay in cache. */
const CHUNK = 4 * 1024 * 1024;

export const DIGEST_PREFIX = "sha256:";

/**
 * sha256 of a file's bytes. Two buffers: the next read (libuv thread pool) runs while the current
 * chunk is hashed on this thread, so reading and hashing overlap. No whole-file buffering.
 */
export async function digestFile(path: string): Promise<string> {
  const fh = await open(path, "r");
  let pending: Promise<{ bytesRead: number }> | undefined;
  try {
    // Buffers fit the file: a folder of 20k small images must not allocate 8 MiB per file (that
    // was a garbage-collection storm: tens of seconds per demo run). +1 so a grown file is seen.
    const size = (await fh.stat()).size;
    const chunk = Math.min(CHUNK, size + 1);
    const bufs = [Buffer.allocUnsafe(chunk), Buffer.allocUnsafe(chunk)];
    const hash = createHash("sha256");
    let pos = 0;
    let which = 0;
    pending = fh.read(bufs[0]!, 0, chunk, 0);
    for (;;) {
      const { bytesRead } = await pending;
      pending = undefined;
      if (bytesRead === 0) break;
      const cur = bufs[which]!;
      pos += bytesRead;
      which ^= 1;
      pending = fh.read(bufs[which]!, 0, chunk, pos);
      hash.update(bytesRead === chunk ? cur : cur.subarray(0, bytesRead));
    }
    return DIGEST_PREFIX + hash.digest("hex");
  } finally {
    // Never close under an outstanding read.
    if (pending) await pending.catch(() => {});
    await fh.close();
  }
}

export interface ManifestEntry {
  /** Path relative to the folder, "/"-separated. */
  path: string;
  size: number;
  digest: string;
}

/**
 * Files under a folder, sorted by relative path (code-unit order, so it is locale independent).
 * Symlinks are FOLLOWED: a stage reads through them, so what they point at is what the digest must
 * cover. A link cycle (a folder reached twice by its real path) and a dangling link are errors.
 * Empty sub-folders are not recorded: they hold no data.
 */
export async function listFolder(dir: string): Promise<Array<{ rel: string; abs: string }>> {
  const out: Array<{ rel: string; abs: string }> = [];
  const onPath = new Set<string>();
  async function walk(abs: string, rel: string): Promise<void> {
    const real = realpathSync(abs);
    if (onPath.has(real)) throw new Error(`symlink cycle at ${abs}`);
    onPath.add(real);
    const names = readdirSync(abs).sort();
    for (const name of names) {
      const childAbs = join(abs, name);
      const childRel = rel ? `${rel}/${name}` : name;
      let st;
      try {
        st = statSync(childAbs);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new Error(`dangling symlink ${childAbs}`);
        throw err;
      }
      if (st.isDirectory()) await walk(childAbs, childRel);
      else if (st.isFile()) out.push({ rel: childRel, abs: childAbs });
    }
    onPath.delete(real);
  }
  await walk(dir, "");
  out.sort((a, b) => (a.rel < b.rel ? -1 : a.rel > b.rel ? 1 : 0));
  return out;
}

/** Digest of a folder from its manifest (one "path\tsize\tdigest\n" line per file). */
export function digestManifest(entries: ManifestEntry[]): string {
  const hash = createHash("sha256");
  hash.update("sed-pipe dir v1\n");
  for (const e of entries) hash.update(`${e.path}\t${e.size}\t${e.digest}\n`);
  return DIGEST_PREFIX + hash.digest("hex");
}

/** Uncached digest of a file or folder (the Hasher adds the stat cache on top). */
export async function digestPathUncached(path: string): Promise<string> {
  const st = await stat(path);
  if (!st.isDirectory()) return digestFile(path);
  const files = await listFolder(path);
  const entries: ManifestEntry[] = [];
  for (const f of files) entries.push({ path: f.rel, size: (await stat(f.abs)).size, digest: await digestFile(f.abs) });
  return digestManifest(entries);
}
