// `sed-pipe cache key`: one string for CI caches (actions/cache) that changes whenever anything a
// fingerprint reads could change: pipeline.yaml, params files, the lock, stage code, runtime.
// Reads files only; the caller lists them (it knows the code closures).
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

export const CACHE_KEY_VERSION = 1;

export interface CacheKeyInput {
  root: string;
  /** Project-relative files whose bytes go into the key (missing ones count as absent). */
  files: string[];
  /** Runtime facts (node, platform, package versions), as in a fingerprint's runtime part. */
  runtime: Record<string, string>;
  platform: string;
  arch: string;
  nodeMajor: number;
}

/** The prefix shared by every key of this platform and node major (for actions/cache restore-keys). */
export function cacheKeyPrefix(i: Pick<CacheKeyInput, "platform" | "arch" | "nodeMajor">): string {
  return `sed-pipe-v${CACHE_KEY_VERSION}-${i.platform}-${i.arch}-node${i.nodeMajor}-`;
}

export async function cacheKey(i: CacheKeyInput): Promise<string> {
  const h = createHash("sha256");
  h.update(`sed-pipe cache key v${CACHE_KEY_VERSION}\n`);
  for (const f of [...new Set(i.files)].sort()) {
    const bytes = await readFile(join(i.root, f)).catch(() => null);
    // Name and length framing: moving bytes between files changes the key.
    h.update(`file ${f} ${bytes ? bytes.length : -1}\n`);
    if (bytes) h.update(bytes);
  }
  for (const k of Object.keys(i.runtime).sort()) h.update(`runtime ${k}=${i.runtime[k]}\n`);
  return cacheKeyPrefix(i) + h.digest("hex").slice(0, 24);
}
