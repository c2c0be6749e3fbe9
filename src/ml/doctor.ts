// `sed-pipe doctor`: the machine as sed-pipe sees it (Node, OS, cores, memory, packages, OpenBLAS,
// WebGPU adapters, every backend loaded or not and why) and a quick self-check per backend that
// loads: a small ViT forward and a few SED training steps, compared with the cpu backend. Fields of
// the report are stable for scripts (schemaVersion). Loads tfjs: only `doctor` imports this.
import * as tf from "@tensorflow/tfjs-core";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { arch, availableParallelism, cpus, platform, release, totalmem } from "node:os";
import { BACKEND_NAMES, initBackend, predictBackend } from "./backend.ts";
import { createVit, disposeVit, featurizeBatch, type VitArch } from "./vit.ts";
import { seededVitWeights } from "./vit-checkpoint.ts";
import { HEAD_PARAM_NAMES, initHeadArrays } from "./heads.ts";
import { effectiveLoss, headShapeOf, parseTrainConfig } from "./train-config.ts";
import { EnsembleState } from "./ensemble-state.ts";
import { sedTrainStep } from "./single-thread-training.ts";
import { StepAccumulators } from "./epoch-log.ts";
import { loadBlasAddon } from "./wasm-blas.ts";
import { fsListAddon, nativeListingStatus } from "../hash/native-listing.ts";
import { Rng } from "../rng.ts";

export const DOCTOR_SCHEMA_VERSION = 1;

export interface BackendReport {
  name: string;
  loaded: boolean;
  /** Why it loaded (and how: matMul path, adapter) or why not. */
  reason: string;
  /** Largest error relative to the values' scale against the cpu backend; null when not run. */
  selfCheck: { vitMaxRelErr: number; sedMaxRelErr: number; ms: number } | null;
}

export interface DoctorReport {
  schemaVersion: number;
  node: string;
  os: { platform: string; release: string; arch: string };
  cpu: { model: string; cores: number };
  memoryBytes: number;
  packages: Record<string, string | null>;
  openblas: { loaded: boolean; reason: string };
  /** How status checks list big folders: native threads (@sed-pipe/fslist) or JavaScript, and why. */
  folderListing: { native: boolean; reason: string };
  webgpu: { adapters: Array<Record<string, unknown>>; failures: string[] };
  /** What `--backend auto` picks here, and why. */
  auto: { name: string; reason: string };
  backends: BackendReport[];
}

const require = createRequire(import.meta.url);
const PACKAGES = ["@tensorflow/tfjs-core", "@tensorflow/tfjs-backend-cpu", "@tensorflow/tfjs-backend-wasm", "@tensorflow/tfjs-backend-webgpu", "@tensorflow/tfjs-node", "@tensorflow/tfjs-node-gpu", "webgpu", "@sed-pipe/blas", "@sed-pipe/fslist", "h5wasm"];

/** The installed version: the package.json above where the package resolves (exports maps hide it). */
function version(pkg: string): string | null {
  let dir: string;
  try {
    dir = dirname(require.resolve(pkg));
  } catch {
    try {
      // ESM-only packages (h5wasm) resolve only through import conditions.
      dir = dirname(fileURLToPath(import.meta.resolve(pkg)));
    } catch {
      return null;
    }
  }
  for (;;) {
    try {
      const j = JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as { name?: string; version?: string };
      if (j.name === pkg) return j.version ?? null;
    } catch {
      // no package.json here
    }
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}

/** Self-check errors above this (relative to the values' scale) are reported as a mismatch. */
export const SELF_CHECK_TOLERANCE = 1e-4;

export function mismatches(r: DoctorReport): string[] {
  return r.backends.filter((b) => b.selfCheck && Math.max(b.selfCheck.vitMaxRelErr, b.selfCheck.sedMaxRelErr) > SELF_CHECK_TOLERANCE).map((b) => b.name);
}

const ARCH: VitArch = { image_size: 16, patch_size: 4, in_chans: 3, embed_dim: 32, depth: 2, num_heads: 4, mlp_ratio: 2, layerscale_init: 0.1 };

/** The self-check's work on the active backend: ViT features of 4 images, and weights after 3 SED steps. */
async function work(): Promise<{ vit: Float32Array; sed: Float32Array }> {
  const m = createVit(seededVitWeights(ARCH, 7), ARCH);
  let vit: Float32Array;
  try {
    vit = await featurizeBatch(m, Float32Array.from({ length: 4 * 3 * 16 * 16 }, (_, i) => Math.sin(i * 0.37)), 4);
  } finally {
    disposeVit(m);
  }
  const cfg = parseTrainConfig({
    name: "doctor", n_models: 4, random_select: 2, embed_dim: 12, mlp_hidden: 24, num_classes: 5, batch_size: 8, eval_batch_size: 8,
    optimizer: { type: "adamw", lr: 0.01, weight_decay: 0.1 }, lr_scheduler: { type: "cosine", t_max: 10 }, n_epochs: 1,
    freeze_first_epoch: false, lambda: null, patch_diversity_lambda: 0.5, manual_lambda: 5, use_always_labeled: true, smoothing_eps: 0.5,
  });
  const st = new EnsembleState(cfg, Array.from({ length: 4 }, (_, i) => initHeadArrays(headShapeOf(cfg), new Rng(i))));
  const acc = new StepAccumulators();
  const rng = new Rng(11);
  try {
    for (const active of [[0, 1], [2, 3], [1, 2]]) {
      const x = tf.tensor2d(Float32Array.from({ length: 8 * 12 }, () => rng.normal()), [8, 12]);
      const y = tf.tensor1d(Int32Array.from({ length: 8 }, (_, i) => i % 5), "int32");
      await sedTrainStep(st, effectiveLoss(cfg), { x, y, active, ref: 0, lr: 0.05, update: true }, acc);
      tf.dispose([x, y]);
    }
    const snap = await st.snapshot();
    const parts = snap.heads.flatMap((h) => HEAD_PARAM_NAMES.map((k) => h[k]));
    const sed = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) {
      sed.set(p, o);
      o += p.length;
    }
    return { vit, sed };
  } finally {
    st.dispose();
    acc.dispose();
  }
}

/** Largest |a - b| over the largest |b|. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let d = 0;
  let m = 1e-12;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return d / m;
}

export async function doctor(opts: { selfCheck: boolean; log?: (line: string) => void }): Promise<DoctorReport> {
  const log = opts.log ?? (() => {});
  const blas = loadBlasAddon();
  let webgpu: DoctorReport["webgpu"] = { adapters: [], failures: [] };
  try {
    const { probeAdapters } = await import("./webgpu.ts");
    const p = await probeAdapters();
    webgpu = { adapters: p.adapters.map((a) => ({ ...a })), failures: p.failures };
  } catch (err) {
    webgpu.failures.push((err as Error).message);
  }
  const backends: BackendReport[] = [];
  let reference: { vit: Float32Array; sed: Float32Array } | null = null;
  // cpu first: it is the reference of every self-check.
  const order = ["cpu", ...BACKEND_NAMES.filter((n) => n !== "cpu")];
  for (const name of order) {
    log(`trying ${name}`);
    let reason: string;
    try {
      reason = (await initBackend(name)).reason.replace(/^forced with --backend(; )?/, "") || "loaded";
    } catch (err) {
      backends.push({ name, loaded: false, reason: (err as Error).message.replace(/^no TensorFlow\.js backend could be loaded \((.*)\)$/, "$1"), selfCheck: null });
      continue;
    }
    let selfCheck: BackendReport["selfCheck"] = null;
    if (opts.selfCheck) {
      const t0 = performance.now();
      const got = await work();
      const ms = performance.now() - t0;
      reference ??= got;
      selfCheck = { vitMaxRelErr: maxRelErr(got.vit, reference.vit), sedMaxRelErr: maxRelErr(got.sed, reference.sed), ms: Math.round(ms) };
    }
    backends.push({ name, loaded: true, reason, selfCheck });
  }
  const auto = predictBackend("auto");
  return {
    schemaVersion: DOCTOR_SCHEMA_VERSION,
    node: process.version,
    os: { platform: platform(), release: release(), arch: arch() },
    cpu: { model: cpus()[0]?.model.trim() ?? "unknown", cores: availableParallelism() },
    memoryBytes: totalmem(),
    packages: Object.fromEntries(PACKAGES.map((p) => [p, version(p)])),
    openblas: "blas" in blas ? { loaded: true, reason: "@sed-pipe/blas loaded" } : { loaded: false, reason: blas.error },
    folderListing: { native: fsListAddon() !== null, reason: nativeListingStatus() },
    webgpu,
    auto: { name: auto.name, reason: auto.reason },
    backends: backends.sort((a, b) => BACKEND_NAMES.indexOf(a.name as never) - BACKEND_NAMES.indexOf(b.name as never)),
  };
}

/** The report as text, for bug reports. */
export function formatDoctor(r: DoctorReport): string {
  const gib = (n: number) => `${(n / 2 ** 30).toFixed(1)} GiB`;
  const lines = [
    `node ${r.node} on ${r.os.platform} ${r.os.release} ${r.os.arch}; ${r.cpu.cores} cores (${r.cpu.model}); ${gib(r.memoryBytes)} memory`,
    `packages: ${Object.entries(r.packages).map(([k, v]) => `${k} ${v ?? "absent"}`).join(", ")}`,
    `OpenBLAS: ${r.openblas.loaded ? "yes" : "no"} (${r.openblas.reason})`,
    `folder listing (status checks): ${r.folderListing.reason}`,
    `WebGPU adapters: ${r.webgpu.adapters.length === 0 ? "none" : r.webgpu.adapters.map((a) => `${a.description} [${a.api}${a.software ? ", software" : ""}]`).join("; ")}${r.webgpu.failures.length ? ` (${r.webgpu.failures.join("; ")})` : ""}`,
    `--backend auto picks: ${r.auto.name} (${r.auto.reason})`,
    "backends:",
  ];
  for (const b of r.backends) {
    const bad = b.selfCheck && Math.max(b.selfCheck.vitMaxRelErr, b.selfCheck.sedMaxRelErr) > SELF_CHECK_TOLERANCE ? ` MISMATCH (over ${SELF_CHECK_TOLERANCE})` : "";
    const check = b.selfCheck ? `; self-check vs cpu: ViT max rel err ${b.selfCheck.vitMaxRelErr.toExponential(1)}, SED steps ${b.selfCheck.sedMaxRelErr.toExponential(1)} (${b.selfCheck.ms} ms)${bad}` : "";
    lines.push(`  ${b.loaded ? "yes" : "no "} ${b.name.padEnd(13)} ${b.reason}${check}`);
  }
  return lines.join("\n") + "\n";
}
