// Moving finished files and folders into their final place (artifacts/, cache/objects/) so that a
// reader sees the old version or the new one, never a mix. No hashing, no policy.
import { copyFile, cp, link, lstat, mkdir, rename, rm } from "node:fs/promises";
import { constants } from "node:fs";
import { dirname } from "node:path";
import { tempPathFor } from "../io/atomic.ts";

async function exists(p: string): Promise<boolean> {
  try {
    await lstat(p);
    return true;
  } catch {
    return false;
  }
}

/**
 * Moves `src` (file or folder) to `dst`, replacing what is there. A file replaces atomically
 * (rename); a folder is swapped with two renames, and the old one is deleted after.
 * Falls back to copy + delete across file systems (EXDEV).
 */
export async function replacePath(src: string, dst: string): Promise<void> {
  await mkdir(dirname(dst), { recursive: true });
  const srcIsDir = (await lstat(src)).isDirectory();
  let staged = src;
  try {
    if (!srcIsDir) {
      await rename(src, dst);
      return;
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EXDEV") {
      staged = tempPathFor(dst);
      await copyFile(src, staged, constants.COPYFILE_FICLONE);
      await rename(staged, dst);
      await rm(src, { force: true });
      return;
    }
    if (code !== "EISDIR" && code !== "ENOTEMPTY" && code !== "EEXIST" && code !== "ENOTDIR") throw err;
  }
  // Folder (or a file replacing a folder): park the old version, move the new one in, drop the old.
  const old = (await exists(dst)) ? tempPathFor(dst) + ".old" : null;
  if (old) await rename(dst, old);
  try {
    await rename(staged, dst);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") {
      if (old) await rename(old, dst).catch(() => {});
      throw err;
    }
    const copy = tempPathFor(dst);
    await cp(staged, copy, { recursive: true });
    await rename(copy, dst);
    await rm(staged, { recursive: true, force: true });
  }
  if (old) await rm(old, { recursive: true, force: true });
}

/** Hard-links `src` to `dst` (which must not exist), copying when linking is impossible. */
export async function linkOrCopy(src: string, dst: string): Promise<"link" | "copy"> {
  await mkdir(dirname(dst), { recursive: true });
  try {
    await link(src, dst);
    return "link";
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EXDEV" && code !== "EPERM" && code !== "EMLINK" && code !== "ENOTSUP") throw err;
    await copyFile(src, dst, constants.COPYFILE_FICLONE);
    return "copy";
  }
}

export { exists as pathExists };
