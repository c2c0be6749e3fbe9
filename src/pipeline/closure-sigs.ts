// Stat signatures of a set of project files (a stage contract's import closure) taken when something
// was built from them, and the rule that says whether they are still the files it was built from.
// Light on purpose: the warm path of src/pipeline/memo.ts uses it without loading esbuild or yaml.
import { statSync } from "node:fs";
import { join } from "node:path";

/** Project-relative file -> "dev:ino:size:mtimeNs:ctimeNs", and the wall clock (ns) of the build that saw them. */
export interface ClosureSigs {
  sigs: Record<string, string>;
  startedNs: string;
}

/** A file modified this close before a build started may not be what the build read: not trusted. */
const RACY_NS = 2_000_000_000n;

export function statSig(st: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/**
 * True while every file is exactly as it was when the build started (device, inode, size, mtime,
 * ctime) and none was modified within the racy window before it (its edit may have raced the read).
 */
export function closureUnchanged(root: string, c: ClosureSigs): boolean {
  let started: bigint;
  try {
    started = BigInt(c.startedNs);
  } catch {
    return false;
  }
  for (const [file, sig] of Object.entries(c.sigs)) {
    let st;
    try {
      st = statSync(join(root, file), { bigint: true, throwIfNoEntry: false });
    } catch {
      return false;
    }
    if (!st || statSig(st) !== sig || st.mtimeNs > started - RACY_NS) return false;
  }
  return true;
}
