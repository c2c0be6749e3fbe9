// One instance brought up to date, in named steps:
//   decide   - the planned step, or a new decision once its upstream is done (early cutoff);
//   restore  - outputs from the cache (the lock entry's, or the run cache's record of these inputs);
//   execute  - the stage in the executor, writing to temporary paths;
//   verify   - every declared out was written, and no input changed while the stage ran;
//   commit   - outputs into place and into the store, a run record, then the lock entry (the commit
//              point: an instance is done only once its entry is written).
// Each step returns a value or throws an InstanceFailure; events go through `emit`.
import { mkdir, rm, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { createHash } from "node:crypto";
import { SedPipeError } from "../errors.ts";
import type { Fingerprint, LockEntry, OutRecord, Pipeline, PlanStep, StageInstance } from "../pipeline/types.ts";
import type { LockStore } from "../store/lock-file.ts";
import { replacePath } from "../store/place.ts";
import { absPath, currentFingerprint, missingDeps, observe, reusableRun, type Assessment, type Observer, type Planner } from "./assess.ts";
import type { EventSink, RunCounts } from "./events.ts";
import { InstanceFailure } from "./scheduler.ts";
import type { StageSettings } from "../stage-api.ts";
import type { Executor } from "./worker-pool.ts";

/** A file-name-safe form of an instance id; ids that needed changes get a short hash to stay unique. */
export function safeInstanceId(id: string): string {
  const safe = id.replace(/[^A-Za-z0-9._@=-]+/g, "_");
  if (safe === id) return id;
  return `${safe}-${createHash("sha256").update(id).digest("hex").slice(0, 8)}`;
}

export function logPathFor(cacheDir: string, id: string): string {
  return join(cacheDir, "logs", `${safeInstanceId(id)}.log`);
}

export function scratchPathFor(cacheDir: string, id: string): string {
  return join(cacheDir, "scratch", safeInstanceId(id));
}

/** What every instance of one run shares. */
export interface RunContext {
  pipeline: Pipeline;
  cacheDir: string;
  /** cache/tmp/<run id>: temporary outputs of this run. */
  tmpRoot: string;
  backend: string;
  /** The settings an instance's stage gets (its cores follow its declared cpus). */
  settingsFor(inst: StageInstance): StageSettings;
  graceMs: number;
  planner: Planner;
  observer: Observer;
  lock: LockStore;
  executor: Executor;
  emit: EventSink;
  signal: AbortSignal;
  killSignal?: AbortSignal;
  onWorkerSpawn?: (id: string, pid: number) => void;
  forced: Set<string>;
  /** Instances whose outputs this run rewrote: their downstream must be decided again. */
  executed: Set<string>;
  assessment: Assessment;
  planned: Map<string, PlanStep>;
  counts: RunCounts;
}

const rel = (c: RunContext, abs: string) => relative(c.pipeline.root, abs) || ".";

/** Brings one instance up to date; throws an InstanceFailure when it cannot. */
export async function bringUpToDate(c: RunContext, id: string): Promise<void> {
  const inst = c.pipeline.instances.get(id)!;
  const planned = c.planned.get(id)!;
  const t0 = Date.now();
  try {
    const { step, fp } = await decide(c, inst, planned);
    if (step.action === "skip") {
      c.counts.skipped++;
      const reason = planned.action === "skip" && !planned.pending ? step.reason : "fresh after all: upstream outputs unchanged (early cutoff)";
      c.emit({ type: "instance-done", id, action: "skipped", reason, durationMs: Date.now() - t0 });
      return;
    }
    if (!fp) throw new InstanceFailure("no fingerprint: a dep is missing");
    let reason = step.reason;
    if (step.action === "restore") {
      c.emit({ type: "instance-start", id, action: "restore", reason, logPath: rel(c, logPathFor(c.cacheDir, id)) });
      const miss = await restore(c, inst, fp, step);
      if (!miss) {
        c.counts.restored++;
        c.emit({ type: "instance-done", id, action: "restored", reason, durationMs: Date.now() - t0 });
        return;
      }
      c.emit({ type: "warning", id, message: `cache miss on restore: ${miss}; running the stage instead` });
      reason = `cache miss (${miss})`;
    }
    if (c.signal.aborted) throw new InstanceFailure("interrupted", [], true);
    await runStage(c, inst, fp, reason, t0);
  } catch (err) {
    if (err instanceof InstanceFailure) throw err;
    // A user-facing error (missing dep, bad symlink...) carries a hint, not a stack; anything else is a bug.
    if (err instanceof SedPipeError) {
      throw new InstanceFailure(err.message, err.hint ? [`hint: ${err.hint}`] : [], false, { name: err.name, exitCode: err.exitCode, ...(err.hint ? { hint: err.hint } : {}) });
    }
    throw new InstanceFailure(`${(err as Error)?.message ?? String(err)}`, ((err as Error)?.stack ?? "").split("\n"));
  }
}

/** The planned step, or, when the upstream ran or was restored in this run, a new decision from the real inputs. */
async function decide(c: RunContext, inst: StageInstance, planned: PlanStep): Promise<{ step: PlanStep; fp: Fingerprint | null }> {
  const a = c.assessment;
  const ups = a.upstream[inst.id] ?? [];
  const needs = planned.pending === true || a.current[inst.id] === "pending" || ups.some((u) => c.executed.has(u));
  if (!needs) {
    const cur = a.current[inst.id];
    return { step: planned, fp: cur === "pending" ? null : cur! };
  }
  const missing = await missingDeps(c.pipeline.root, inst);
  if (missing.length > 0) throw new InstanceFailure(`dep ${missing.join(", ")} does not exist (no upstream instance produced it)`);
  const fp = await c.observer.fingerprinter.fingerprint(inst);
  const ob = await observe(c.observer, inst, c.lock.entry(inst.id), fp, c.forced.has(inst.id));
  return { step: c.planner.decideInstance(inst.id, ob), fp };
}

/** Restores every out of the entry the step names; returns why it could not (a miss), or null. */
async function restore(c: RunContext, inst: StageInstance, fp: Fingerprint, step: PlanStep): Promise<string | null> {
  const lockEntry = c.lock.entry(inst.id);
  const entry: LockEntry | undefined = step.restoreFrom === "run-cache" ? await reusableRun(c.observer, inst, fp) : lockEntry;
  if (!entry) return step.restoreFrom === "run-cache" ? "the run cache no longer has this run" : "no lock entry";
  for (const [name, path] of Object.entries(inst.outs)) {
    const rec = entry.outs[name];
    if (!rec) return `the recorded run has no out "${name}"`;
    const target = absPath(c.pipeline.root, path);
    const cur = await c.observer.digests.digestPath(target);
    if (cur && cur.digest === rec.digest) continue;
    const r = await c.observer.store.restore(rec, target);
    if (!r.ok) return r.detail;
  }
  // Outputs of a cached run become this lock's entry (its parts are this fingerprint's, by equality).
  if (entry !== lockEntry) await c.lock.set(inst.id, { ...entry, parts: fp.parts });
  c.executed.add(inst.id);
  return null;
}

/** Temporary out paths under the run's tmp folder, keeping each out's own file name (stages may look at the extension). */
async function prepareOutputs(c: RunContext, inst: StageInstance): Promise<{ dir: string; outs: Record<string, string> }> {
  const dir = join(c.tmpRoot, safeInstanceId(inst.id));
  const outs: Record<string, string> = {};
  for (const [name, path] of Object.entries(inst.outs)) {
    const base = path.split("/").filter(Boolean).pop() ?? name;
    outs[name] = join(dir, name.replace(/[^A-Za-z0-9._-]+/g, "_"), base);
    await mkdir(join(outs[name]!, ".."), { recursive: true });
  }
  return { dir, outs };
}

async function runStage(c: RunContext, inst: StageInstance, fpBefore: Fingerprint, reason: string, t0: number): Promise<void> {
  const logPath = logPathFor(c.cacheDir, inst.id);
  c.emit({ type: "instance-start", id: inst.id, action: "run", reason, logPath: rel(c, logPath) });
  const scratch = scratchPathFor(c.cacheDir, inst.id);
  const tmp = await prepareOutputs(c, inst);
  await mkdir(scratch, { recursive: true });
  let release: (() => Promise<void>) | undefined;
  try {
    release = await execute(c, inst, fpBefore, tmp.outs, scratch, logPath, t0);
    await verify(c, inst, tmp.outs, fpBefore);
    await commit(c, inst, fpBefore, tmp.outs, Date.now() - t0);
    await rm(scratch, { recursive: true, force: true });
    c.executed.add(inst.id);
    c.counts.ran++;
    c.emit({ type: "instance-done", id: inst.id, action: "ran", reason, durationMs: Date.now() - t0 });
  } finally {
    // A record the executor could not drop is dropped by the next run (its outputs are committed, or
    // the instance is stale and runs again): never a reason to mask this instance's own outcome.
    await release?.().catch(() => {});
    await rm(tmp.dir, { recursive: true, force: true });
  }
}

/** Runs the stage on the executor; returns the outcome's `release` (call it after the commit). */
async function execute(c: RunContext, inst: StageInstance, fp: Fingerprint, outs: Record<string, string>, scratch: string, logPath: string, t0: number): Promise<(() => Promise<void>) | undefined> {
  const root = c.pipeline.root;
  const deps: Record<string, string> = {};
  for (const [name, path] of Object.entries(inst.deps)) deps[name] = absPath(root, path);
  const outcome = await c.executor.run(
    {
      instanceId: inst.id,
      stage: inst.stage,
      module: inst.module,
      modulePath: absPath(root, inst.module),
      root,
      profile: c.pipeline.profile,
      item: inst.item,
      params: inst.params,
      deps,
      outs,
      scratch,
      backend: c.backend,
      settings: c.settingsFor(inst),
      fingerprint: fp.digest,
    },
    {
      logPath,
      signal: c.signal,
      graceMs: c.graceMs,
      ...(c.killSignal ? { killSignal: c.killSignal } : {}),
      onProgress: (event) => c.emit({ type: "progress", id: inst.id, elapsedMs: Date.now() - t0, progress: event }),
      onLog: (stream, line) => c.emit({ type: "log", id: inst.id, stream, line }),
      onSpawn: (pid) => c.onWorkerSpawn?.(inst.id, pid),
      onJob: (j) => c.emit({ type: "instance-job", id: inst.id, executor: "slurm", jobId: j.jobId, state: j.state, nodes: j.nodes }),
      ...(inst.resources ? { resources: inst.resources } : {}),
    },
  );
  if (!outcome.ok) {
    const info = outcome.info;
    const tail = info?.hint ? [...outcome.tail, `hint: ${info.hint}`] : outcome.tail;
    throw new InstanceFailure(outcome.error, tail, outcome.aborted, info ? { name: info.name, ...(info.hint ? { hint: info.hint } : {}), ...(info.exitCode !== undefined ? { exitCode: info.exitCode } : {}) } : {});
  }
  if (c.signal.aborted) {
    await outcome.release?.();
    throw new InstanceFailure("interrupted", [], true);
  }
  return outcome.release;
}

/** Every declared out exists, and the inputs are still those hashed before the stage ran. */
async function verify(c: RunContext, inst: StageInstance, outs: Record<string, string>, fpBefore: Fingerprint): Promise<void> {
  for (const [name, tmp] of Object.entries(outs)) {
    if (!(await stat(tmp).catch(() => null))) throw new InstanceFailure(`stage did not write out ${name} (${inst.outs[name]})`);
  }
  // Hash before, verify after: an input edited while the stage ran must not be recorded as the input of these outputs.
  const fpAfter = await currentFingerprint(c.pipeline.root, inst, c.observer.fingerprinter);
  if (fpAfter === "pending" || fpAfter.digest !== fpBefore.digest) {
    const what = fpAfter === "pending" ? ["a dep disappeared"] : describeDiff(c.planner, fpBefore, fpAfter);
    throw new InstanceFailure(`inputs changed while the stage ran (${what.join("; ")}); run again`);
  }
}

/** Outputs into place and into the store, a run record, then the lock entry: the commit point. */
async function commit(c: RunContext, inst: StageInstance, fp: Fingerprint, tmpOuts: Record<string, string>, durationMs: number): Promise<void> {
  const root = c.pipeline.root;
  const outs: Record<string, OutRecord> = {};
  for (const [name, tmp] of Object.entries(tmpOuts)) {
    const relPath = inst.outs[name]!;
    const target = absPath(root, relPath);
    await replacePath(tmp, target);
    outs[name] = inst.cache === false ? await recordOnly(c, target, relPath) : await c.observer.store.put(target, relPath);
  }
  const entry: LockEntry = { fingerprint: fp.digest, parts: fp.parts, outs, finishedAt: new Date().toISOString(), durationMs };
  if (inst.cache !== false) await c.observer.store.recordRun(inst.id, entry);
  await c.lock.set(inst.id, entry);
}

/** The record of an output kept out of the store (`cache: false`): only its digest. */
async function recordOnly(c: RunContext, abs: string, relPath: string): Promise<OutRecord> {
  const d = await c.observer.digests.digestPath(abs);
  if (!d) throw new InstanceFailure(`out ${relPath} vanished after it was moved into place`);
  return { path: relPath, kind: d.kind, digest: d.digest, size: d.size };
}

function describeDiff(planner: Planner, before: Fingerprint, after: Fingerprint): string[] {
  if (planner.diffParts && planner.explain) {
    const changes = planner.diffParts(before.parts, after.parts);
    const lines = planner.explain({ id: "", action: "run", reason: "", changes });
    const items = lines.filter((l) => l.startsWith("  - ")).map((l) => l.slice(4));
    if (items.length > 0) return items;
  }
  return ["fingerprint"];
}
