// Where the worker runtime's source file is. When the CLI runs from its esbuild bundle
// (bin/sed-pipe.js -> build/cli.mjs), import.meta.url names the bundle, not src/, so the bundle's
// banner records the source folder in a global; from source, import.meta.url is right as it is.
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const bundledSrcDir = (globalThis as { __sedPipeSrcDir?: string }).__sedPipeSrcDir;

export const WORKER_SOURCE = bundledSrcDir
  ? join(bundledSrcDir, "runner", "worker.ts")
  : fileURLToPath(new URL("./worker.ts", import.meta.url));
