// Finds the project root (the folder holding pipeline.yaml) by walking up from a folder, as git and
// npm do. Tiny on purpose: the CLI imports it at start-up.
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { SedPipeError } from "../errors.ts";

export const PIPELINE_FILE = "pipeline.yaml";

export function findRoot(start: string): string {
  let dir = resolve(start);
  for (;;) {
    if (existsSync(join(dir, PIPELINE_FILE))) return dir;
    const up = dirname(dir);
    if (up === dir) {
      throw new SedPipeError(`no ${PIPELINE_FILE} found in ${resolve(start)} or any folder above it`, {
        hint: "run sed-pipe inside a sed-pipe project (the folder holding pipeline.yaml, or below it)",
      });
    }
    dir = up;
  }
}
