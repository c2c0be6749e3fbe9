// A workspace opened for one command: the loaded pipeline, the digest service (one stat cache), the
// hasher, the cache store, and the read-only planning (`status`, `why`, dry runs). Wires
// src/pipeline + src/hash + src/store together; no argv, no printing.
import { join } from "node:path";
import { openPipeline } from "../pipeline/memo.ts";
import { launchedBuild } from "./build-id.ts";
import { absPath, pathExists } from "../pipeline/paths.ts";
import { manualInputs, needsOf, wouldRun, type Needs } from "../pipeline/needs.ts";
import { readCalibration, thisMachine } from "../store/calibration.ts";
import { decideInstance, diffParts, explain, planRun } from "../pipeline/plan.ts";
import type { LockFile, Pipeline, PlanStep } from "../pipeline/types.ts";
import { DigestService } from "../hash/digest.ts";
import { Hasher } from "../hash/fingerprint.ts";
import { ContentStore, type LinkMode } from "../store/cas.ts";
import { readLock } from "../store/lock-file.ts";
import { assess, type Observer, type Planner } from "./assess.ts";

export { findRoot, PIPELINE_FILE } from "./find-root.ts";
export { launchedBuild } from "./build-id.ts";

export const planner: Planner = { planRun, decideInstance, diffParts, explain };

export interface Workspace {
  root: string;
  cacheDir: string;
  pipeline: Pipeline;
  digests: DigestService;
  hasher: Hasher;
  store: ContentStore;
  warnings: string[];
  /** The backend that would run stages here (fingerprints record it; time estimates are for it). */
  backend: string;
}

export interface OpenOptions {
  profile?: string;
  /** The backend fingerprints record: the one that would run (src/ml/backend-choice.ts), resolved by the caller. */
  backend?: string;
  /** false: fingerprints assume the OpenBLAS kernels are switched off. */
  blas?: boolean;
  /** How outputs and cache objects share bytes (default: copies, reflinked where possible). */
  link?: LinkMode;
  /** true: deps in the profile's immutable folders are checked file by file like any other. */
  paranoid?: boolean;
  onWarn?: (msg: string) => void;
  /**
   * Identity of the running sed-pipe code: with one, the loaded pipeline is kept in
   * cache/state/pipelines/ and reused while what it was loaded from is unchanged (src/pipeline/memo.ts);
   * null loads from the sources every time. Default: the CLI bundle bin/sed-pipe.js started
   * (launchedBuild), none when running from the sources.
   */
  code?: string | null;
}


export async function openWorkspace(root: string, opts: OpenOptions = {}): Promise<Workspace> {
  const code = opts.code === undefined ? launchedBuild() : opts.code;
  const pipeline = await openPipeline(root, opts.profile === undefined ? { code } : { profile: opts.profile, code });
  const cacheDir = join(pipeline.root, "cache");
  const warnings: string[] = [];
  const onWarn = (m: string) => {
    warnings.push(m);
    opts.onWarn?.(m);
  };
  const digests = await DigestService.open(pipeline.root, { onWarn });
  const hasher = new Hasher(pipeline.root, digests, { backend: opts.backend ?? "auto", blas: opts.blas ?? true, immutable: opts.paranoid ? [] : (pipeline.immutable ?? []) });
  const store = new ContentStore(cacheDir, digests, opts.link ? { link: opts.link } : {});
  return { root: pipeline.root, cacheDir, pipeline, digests, hasher, store, warnings, backend: opts.backend ?? "auto" };
}

/**
 * What the plan's instances that would run need (src/pipeline/needs.ts): looks on disk for the
 * manual inputs and reads this machine's calibration for the backend.
 */
export async function needsFor(ws: Workspace, steps: readonly PlanStep[]): Promise<Needs> {
  const p = ws.pipeline;
  const running = wouldRun(steps).flatMap((id) => p.instances.get(id) ?? []);
  const manual = [...manualInputs(running, p.instances).keys()];
  const present = new Set<string>();
  for (const path of manual) if (await pathExists(absPath(p, path))) present.add(path);
  const calibration = await readCalibration(ws.root, thisMachine(), ws.backend);
  return needsOf({ steps, instances: p.instances, inputs: p.inputs ?? new Map(), present, backend: ws.backend, calibration });
}

export function observerOf(ws: Workspace): Observer {
  return { root: ws.root, fingerprinter: ws.hasher, digests: ws.digests, store: ws.store };
}

/** The plan for `order` without executing anything (what `status`, `why` and `--dry-run` show). */
export async function planOnly(ws: Workspace, order: string[], force: string[] = [], lock?: LockFile): Promise<PlanStep[]> {
  const l = lock ?? (await readLock(ws.root));
  const a = await assess(observerOf(ws), ws.pipeline, order, l, force);
  const steps = planRun({ order, upstream: a.upstream, lock: l, current: a.current, outputs: a.outputs, cached: a.cached, reusable: a.reusable, force });
  // Digests computed here make the next status fast; losing them only costs time.
  await ws.digests.save().catch(() => {});
  return steps;
}

export type InstanceState = "fresh" | "stale" | "missing";

/**
 * status words: fresh = nothing to do; missing = outputs gone but restorable, or waiting only on
 * upstream restores; stale = must run. `byId` lets a pending step inherit its upstream's word.
 */
export function stateOf(step: PlanStep, byId?: Map<string, PlanStep>, seen: Set<string> = new Set()): InstanceState {
  if (step.action === "skip") return "fresh";
  if (step.action === "restore") return "missing";
  if (step.changes.length > 0 && step.changes.every((c) => c.kind === "outputs-missing")) return "missing";
  if (step.pending && byId && !seen.has(step.id)) {
    seen.add(step.id);
    const ups = step.changes.filter((c) => c.kind === "upstream").map((c) => byId.get((c as { id: string }).id));
    if (ups.length > 0 && ups.every((u) => u && stateOf(u, byId, seen) === "missing")) return "missing";
  }
  return "stale";
}
