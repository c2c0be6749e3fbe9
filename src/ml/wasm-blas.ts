// Switches the tfjs wasm backend's BatchMatMul / _FusedMatMul kernels (and Sum over leading axes)
// to OpenBLAS (@sed-pipe/blas) or, without it, to the transpose-first pure-wasm fallback; says which
// and why. Must be called after the wasm backend is active; never selects or initialises a backend.
import { createRequire } from "node:module";
import { isMainThread } from "node:worker_threads";
import * as tf from "@tensorflow/tfjs-core";
import type { KernelConfig } from "@tensorflow/tfjs-core";
import { SedPipeError } from "../errors.ts";
import type { BlasAddon } from "./kernels/blas-addon.ts";
import { blasBatchMatMulConfig, blasFusedMatMulConfig } from "./kernels/blas-mat-mul.ts";
import { leadingSumConfig } from "./kernels/leading-sum.ts";
import { fastTransposeConfig, fastUnpackConfig } from "./kernels/fast-copy.ts";
import { makeFusedOptimizer, type FusedOptimizer } from "./kernels/fused-optim.ts";
import { fixedBatchMatMulConfig, fixedFusedMatMulConfig, type StockMatMulKernels } from "./kernels/fixed-mat-mul.ts";

export type BlasPath = "wasm+blas" | "wasm-fixed";
export type { BlasAddon } from "./kernels/blas-addon.ts";

/**
 * The caller's say over the OpenBLAS kernels (a stage passes ctx.settings, which has these fields).
 * Nothing here reads the environment: src/cli.ts maps SED_PIPE_NO_BLAS and SED_PIPE_BLAS_THREADS.
 */
export interface BlasSettings {
  /** false: the pure-wasm path, whether or not the addon loads. Default true. */
  readonly blas?: boolean;
  /** OpenBLAS threads (process-wide). Default: 1 in a worker thread, else OpenBLAS's own default. */
  readonly blasThreads?: number;
}

export interface InstallBlasOptions extends BlasSettings {
  /** "auto" (default): OpenBLAS when the addon loads, else the fallback. "fixed" forces the fallback. */
  prefer?: "auto" | "fixed";
}

const require = createRequire(import.meta.url);
type Stock = StockMatMulKernels & { sum: KernelConfig; transpose: KernelConfig; unpack: KernelConfig };
let stock: Stock | null = null;
let active: BlasPath | null = null;
let addon: BlasAddon | null = null;

/**
 * Loads @sed-pipe/blas, or says why it cannot be used. Whether to use it is not decided here: code
 * that calls this checks activeBlasPath() (installBlasKernels honours BlasSettings.blas).
 */
export function loadBlasAddon(): { blas: BlasAddon } | { error: string } {
  if (addon) return { blas: addon };
  try {
    addon = require("@sed-pipe/blas") as BlasAddon;
    return { blas: addon };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const msg = e.message.split("\n")[0];
    // MODULE_NOT_FOUND for the package itself: npm dropped it (no OpenBLAS at install time).
    const what = e.code === "MODULE_NOT_FOUND" && msg.includes("'@sed-pipe/blas'") ? "not installed" : "failed to load";
    return { error: `@sed-pipe/blas ${what}: ${msg} (install libopenblas-dev, then run \`npm ci\`)` };
  }
}

function threadsOf(s: BlasSettings): number | null {
  if (s.blasThreads !== undefined) return s.blasThreads;
  // Two stage workers sharing the cores would oversubscribe them with OpenBLAS's default.
  return isMainThread ? null : 1;
}

/** Sets OpenBLAS's thread count (process-wide); no-op on the fallback path. */
export function setBlasThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1) throw new SedPipeError(`BLAS threads must be a positive integer, got ${threads}`);
  if (addon) addon.setNumThreads(threads);
}

function requireWasm(): void {
  if (tf.getBackend() !== "wasm") {
    throw new SedPipeError(`installBlasKernels needs the wasm backend active, but it is "${tf.getBackend()}"`, {
      hint: "call initBackend('wasm') (src/ml/backend.ts) first",
    });
  }
}

function saveStock(): Stock {
  if (stock) return stock;
  const batchMatMul = tf.getKernel("BatchMatMul", "wasm");
  const fusedMatMul = tf.getKernel("_FusedMatMul", "wasm");
  const sum = tf.getKernel("Sum", "wasm");
  const transpose = tf.getKernel("Transpose", "wasm");
  const unpack = tf.getKernel("Unpack", "wasm");
  if (!batchMatMul || !fusedMatMul || !sum || !transpose || !unpack) {
    throw new SedPipeError("tfjs-backend-wasm has no BatchMatMul/_FusedMatMul/Sum/Transpose/Unpack kernel registered");
  }
  stock = { batchMatMul, fusedMatMul, sum, transpose, unpack };
  return stock;
}

/** Transpose and Unpack as strided heap copies (kernels/fast-copy.ts), on both paths. */
function copyKernels(s: Stock): KernelConfig[] {
  return [fastTransposeConfig(s.transpose), fastUnpackConfig(s.unpack)];
}

function register(configs: KernelConfig[]): void {
  for (const c of configs) {
    tf.unregisterKernel(c.kernelName, "wasm");
    tf.registerKernel(c);
  }
}

/** Why the fallback is used without trying the addon, or null to try it. */
function fallbackWanted(options: InstallBlasOptions): string | null {
  if (options.prefer === "fixed") return "fallback requested (prefer: fixed)";
  if (options.blas === false) return "OpenBLAS kernels turned off (blas: false, e.g. SED_PIPE_NO_BLAS=1)";
  return null;
}

/**
 * Overrides the wasm matMul kernels. Idempotent; a second call re-decides (e.g. with other options).
 * Returns the active path and the reason, for logs and stage fingerprints.
 */
export async function installBlasKernels(
  options: InstallBlasOptions = {},
): Promise<{ path: BlasPath; reason: string }> {
  requireWasm();
  const s = saveStock();
  const wanted = fallbackWanted(options);
  const loaded = wanted !== null ? { error: wanted } : loadBlasAddon();
  if ("blas" in loaded) {
    const threads = threadsOf(options);
    if (threads !== null) setBlasThreads(threads);
    register([blasBatchMatMulConfig(loaded.blas), blasFusedMatMulConfig(loaded.blas), leadingSumConfig(loaded.blas, s.sum), ...copyKernels(s)]);
    active = "wasm+blas";
    return { path: active, reason: `@sed-pipe/blas: ${loaded.blas.config()}, ${loaded.blas.numThreads()} thread(s)` };
  }
  register([fixedBatchMatMulConfig(s), fixedFusedMatMulConfig(s), s.sum, ...copyKernels(s)]);
  active = "wasm-fixed";
  return { path: active, reason: `${loaded.error}; transposed matMuls rewritten for the XNNPACK path` };
}

/** Puts the stock tfjs-wasm matMul kernels back (benchmarks and tests compare against them). */
export function uninstallBlasKernels(): void {
  if (!stock) return;
  register([stock.batchMatMul, stock.fusedMatMul, stock.sum, stock.transpose, stock.unpack]);
  active = null;
}

/** Which override is registered now, or null for the stock kernels. */
export function activeBlasPath(): BlasPath | null {
  return active;
}


/**
 * One-pass AdamW / SGD updates (drop-ins for src/ml/optim.ts's) when @sed-pipe/blas loads and the
 * wasm backend is active; null otherwise, so the caller keeps the tensor-op versions.
 */
export function fusedOptimizer(): FusedOptimizer | null {
  // `--backend wasm-fixed` and blas: false (both install the fallback) ask for no native code at all.
  if (tf.getBackend() !== "wasm" || activeBlasPath() === "wasm-fixed") return null;
  const loaded = loadBlasAddon();
  return "blas" in loaded ? makeFusedOptimizer(loaded.blas) : null;
}
