// One watch-mode cycle: open the workspace from disk (pipeline.yaml may have changed), plan, and run
// only if something is stale; then name the inputs to watch (pipeline.yaml, params files, stage code
// closures, deps no instance produces). Emits RunnerEvents through the given sink; never prints.
import { stat } from "node:fs/promises";
import { isAbsolute, relative, resolve } from "node:path";
import { codeClosure } from "../hash/code-digest.ts";
import { resolveTargets } from "../pipeline/select.ts";
import type { Pipeline } from "../pipeline/types.ts";
import { LockStore } from "../store/lock-file.ts";
import { LOCK_FILE_NAME } from "../store/lock-file.ts";
import { acquireRunLock, type RunLockOwner } from "../store/run-lock.ts";
import type { EventSink } from "./events.ts";
import { executeRun, type RunResult } from "./execute.ts";
import { IGNORED_DIRS } from "./watch.ts";
import { openWorkspace, planner, planOnly, PIPELINE_FILE } from "./workspace.ts";
import type { StageSettings } from "../stage-api.ts";

export interface WatchCycleOptions {
  root: string;
  targets: string[];
  profile?: string;
  /** The backend stages are asked for ("auto" or a name). */
  backend: string;
  /** The backend fingerprints record: the one `backend` resolves to here. */
  fingerprintBackend: string;
  /** What the user set of the per-instance settings (src/commands/common.ts settingsFromEnv). */
  settings?: Partial<StageSettings>;
  /** Run stages through tsx instead of bundles. */
  fromSource?: boolean;
  /** Environment of the worker processes. */
  workerEnv: NodeJS.ProcessEnv;
  /** How artifacts and cache objects share bytes. */
  link?: "copy" | "hardlink";
  jobs: number;
  /** GPUs of this machine for stages' resources (--gpus / SED_PIPE_GPUS). */
  gpus?: number;
  keepGoing: boolean;
  signal: AbortSignal;
  killSignal?: AbortSignal;
  graceMs?: number;
  /** A sink for this cycle's run (called only when something will run); closed after run-done. */
  openSink(): Promise<{ sink: EventSink; close(): Promise<void> }>;
  onWarn?(msg: string): void;
  onWaitLock?(owner: RunLockOwner | null): void;
}

export interface WatchCycleResult {
  /** Paths to watch next (project-relative, or absolute outside the project). */
  watch: string[];
  /** Folder deps outside the project that are not watched (see watchedInputs). */
  unwatched: string[];
  /** null when the plan had nothing to run or restore (a touch, a content-identical save). */
  run: RunResult | null;
}

function under(child: string, parent: string): boolean {
  const r = relative(parent, child);
  return r === "" || (!r.startsWith("..") && !isAbsolute(r));
}

/**
 * The inputs of `order` whose change can make an instance stale (see module comment). Folder deps
 * outside the project (data sets such as ImageNet: a million files) are not watched: one watch per
 * file would exhaust inotify, and such data does not change under a running pipeline. They are
 * returned as `unwatched` so the user is told; the next cycle still fingerprints them.
 */
export async function watchedInputs(p: Pipeline, order: string[]): Promise<{ paths: string[]; unwatched: string[] }> {
  const root = p.root;
  const out = new Set<string>([PIPELINE_FILE, ...p.paramsFiles]);
  const unwatched = new Set<string>();
  const modules = new Set<string>();
  const outs: string[] = [];
  for (const inst of p.instances.values()) for (const o of Object.values(inst.outs)) outs.push(resolve(root, o));
  for (const id of order) {
    const inst = p.instances.get(id)!;
    modules.add(inst.module);
    for (const dep of Object.values(inst.deps)) {
      const abs = resolve(root, dep);
      // Produced by an instance (or holding produced outputs): the run itself writes those.
      if (outs.some((o) => under(abs, o) || under(o, abs))) continue;
      const rel = relative(root, abs);
      const outside = rel.startsWith("..") || isAbsolute(rel);
      if (!outside && IGNORED_DIRS.includes(rel.split(/[\\/]/)[0]!)) continue;
      if (outside && (await stat(abs).catch(() => null))?.isDirectory()) {
        unwatched.add(abs);
        continue;
      }
      out.add(outside ? abs : rel);
    }
  }
  for (const m of modules) {
    try {
      for (const f of (await codeClosure(root, m)).files) out.add(f);
    } catch {
      // A module that does not bundle is still watched itself, so fixing it starts a cycle.
      out.add(m);
    }
  }
  out.delete(LOCK_FILE_NAME);
  return { paths: [...out].sort(), unwatched: [...unwatched].sort() };
}

export async function runWatchCycle(o: WatchCycleOptions): Promise<WatchCycleResult> {
  const ws = await openWorkspace(o.root, {
    backend: o.fingerprintBackend,
    blas: o.settings?.blas ?? true,
    ...(o.link ? { link: o.link } : {}),
    ...(o.profile !== undefined ? { profile: o.profile } : {}),
    ...(o.onWarn ? { onWarn: o.onWarn } : {}),
  });
  const order = resolveTargets(ws.pipeline, o.targets);
  const { paths: watch, unwatched } = await watchedInputs(ws.pipeline, order);
  // A quiet check first: a save that changed no content plans to nothing and shows nothing.
  const steps = await planOnly(ws, order);
  if (steps.every((s) => s.action === "skip")) return { watch, unwatched, run: null };

  const lock = await acquireRunLock(ws.cacheDir, {
    wait: true,
    command: "watch",
    signal: o.signal,
    ...(o.onWaitLock ? { onWait: o.onWaitLock } : {}),
  });
  const { sink, close } = await o.openSink();
  try {
    const result = await executeRun({
      pipeline: ws.pipeline,
      order,
      planner,
      fingerprinter: ws.hasher,
      digests: ws.digests,
      store: ws.store,
      lock: await LockStore.open(ws.root),
      cacheDir: ws.cacheDir,
      jobs: o.jobs,
      ...(o.gpus !== undefined ? { gpus: o.gpus } : {}),
      keepGoing: o.keepGoing,
      force: [],
      dryRun: false,
      backend: o.backend,
      ...(o.settings ? { settings: o.settings } : {}),
      ...(o.fromSource ? { fromSource: true } : {}),
      workerEnv: o.workerEnv,
      signal: o.signal,
      emit: sink,
      graceMs: o.graceMs ?? 3000,
      ...(o.killSignal ? { killSignal: o.killSignal } : {}),
    });
    return { watch, unwatched, run: result };
  } finally {
    await close();
    await lock.release();
  }
}
