// Paths of a loaded pipeline's deps and outs on disk. Light: no yaml, no zod.
import { stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import type { Pipeline } from "./types.ts";

/** Absolute path of a dep or out of an instance. */
export function absPath(p: Pipeline, path: string): string {
  return isAbsolute(path) ? path : resolve(p.root, path);
}

/** True when the path exists on disk (used by callers that want the lazy existence check). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
