// Atomic file writes: temp file in the same folder, fsync, rename, fsync the folder. A reader sees
// either the old content or the new, never a half-written file.
import { open, rename, rm, mkdir } from "node:fs/promises";
import { dirname, basename, join } from "node:path";
import { randomBytes } from "node:crypto";

export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

export function tempPathFor(target: string): string {
  return join(dirname(target), `.${basename(target)}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
}

/** A failed write(2) or fsync(2) carries no path; give it the file's, for the user's message. */
function withPath(err: unknown, path: string): unknown {
  const e = err as NodeJS.ErrnoException;
  if (e && typeof e === "object" && typeof e.code === "string" && e.path === undefined) e.path = path;
  return err;
}

/** Largest single write: write(2) moves at most ~2 GiB per call on Linux. */
const WRITE_CHUNK = 1 << 30;

/**
 * Writes `data` to a temporary file next to `target`, fsyncs it, renames it over `target` and fsyncs
 * the folder. `data` may be a list of parts written one after another (views into tensors that are
 * never joined into one buffer: a 3 GB checkpoint costs no second 3 GB).
 */
export async function writeFileAtomic(target: string, data: string | Uint8Array | readonly Uint8Array[]): Promise<void> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = tempPathFor(target);
  const fh = await open(tmp, "w");
  try {
    if (typeof data === "string" || data instanceof Uint8Array) await fh.writeFile(data);
    else {
      for (const part of data) {
        for (let off = 0; off < part.byteLength; ) {
          const { bytesWritten } = await fh.write(part, off, Math.min(WRITE_CHUNK, part.byteLength - off));
          off += bytesWritten;
        }
      }
    }
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw withPath(err, target);
  }
  await fh.close();
  try {
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dirname(target));
}
