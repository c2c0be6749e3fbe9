// Test helper for src/hash: temp folders with files whose mtime is set in the past (the stat cache
// does not trust files modified within its racy window).
import { mkdtemp, mkdir, writeFile, utimes, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export async function tempDir(prefix = "sed-hash-test-"): Promise<{ root: string; cleanup(): Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), prefix));
  return { root, cleanup: () => rm(root, { recursive: true, force: true }) };
}

/** Writes a file and dates it `ageS` seconds in the past. */
export async function writeAged(root: string, rel: string, data: string | Uint8Array, ageS = 60): Promise<string> {
  const abs = join(root, rel);
  await mkdir(dirname(abs), { recursive: true });
  await writeFile(abs, data);
  const t = new Date(Date.now() - ageS * 1000);
  await utimes(abs, t, t);
  return abs;
}
