// Which TensorFlow.js backend a stage would use, decided from what is installed, without loading
// tfjs or any native code: cheap enough for the engine to put in every fingerprint (`status` must
// not pay tfjs-core's ~60 ms import). src/ml/backend.ts does the actual loading.
import { createRequire } from "node:module";
import { SedPipeError } from "../errors.ts";

/**
 * "wasm" uses the fastest matMul path that loads (OpenBLAS kernels, else transpose-first); "wasm+blas"
 * and "wasm-fixed" force one (their float results differ in the last bits, so the name is fingerprinted).
 */
export const BACKEND_NAMES = ["tfjs-node-gpu", "tfjs-node", "webgpu", "wasm", "wasm+blas", "wasm-fixed", "cpu"] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

/**
 * What `auto` tries, in order. `webgpu` is not in it yet: whether a hardware adapter exists is only
 * known by loading Dawn, which the engine's fingerprint of every instance must not pay; it is used
 * when asked for (`--backend webgpu`).
 */
export const AUTO_ORDER: readonly BackendName[] = ["tfjs-node-gpu", "tfjs-node", "wasm", "cpu"];

export interface BackendChoice {
  name: BackendName;
  /** Why this one: e.g. "auto: @tensorflow/tfjs-node-gpu is not installed". */
  reason: string;
}

const require = createRequire(import.meta.url);

function installed(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

/**
 * Which backend `auto` would pick, decided without loading any native code (cheap enough for the
 * engine's fingerprint of every instance).
 */
export function predictBackend(requested: string = "auto"): BackendChoice {
  if (requested !== "auto") {
    if (!(BACKEND_NAMES as readonly string[]).includes(requested)) {
      throw new SedPipeError(`unknown backend "${requested}"`, {
        hint: `use one of: auto, ${BACKEND_NAMES.join(", ")}`,
      });
    }
    return { name: requested as BackendName, reason: "forced with --backend" };
  }
  const skipped: string[] = [];
  for (const name of ["tfjs-node-gpu", "tfjs-node"] as const) {
    if (installed(`@tensorflow/${name}`)) return { name, reason: `auto: @tensorflow/${name} is installed` };
    skipped.push(`@tensorflow/${name} is not installed`);
  }
  return { name: "wasm", reason: `auto: ${skipped.join(", ")}` };
}

