// Executes a plan over the DAG: up to `jobs` instances at once in worker processes, in dependency
// order, with early cutoff, cache restores, failure isolation and cancellation. Emits RunnerEvents;
// never prints, never reads argv/env, never decides exit codes (src/cli.ts does).
import { mkdir, readdir, rm, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { createHash, randomBytes } from "node:crypto";
import type { Fingerprint, LockEntry, OutRecord, Pipeline, PlanStep, StageInstance } from "../pipeline/types.ts";
import type { ContentStore } from "../store/cas.ts";
import type { OutputDigester } from "../store/digest.ts";
import type { LockStore } from "../store/lock-file.ts";
import { replacePath } from "../store/place.ts";
import { SedPipeError } from "../errors.ts";
import type { EventSink, RunCounts, RunDoneEvent } from "./events.ts";
import { EVENT_SCHEMA_VERSION } from "./events.ts";
import {
  absPath,
  assess,
  currentFingerprint,
  isCached,
  missingDeps,
  outputsState,
  type Fingerprinter,
  type Planner,
} from "./assess.ts";
import { runInWorker } from "./spawn-worker.ts";
import type { StageSettings } from "./stage-api.ts";
import { availableParallelism } from "node:os";

/** The caller holds the workspace run lock (src/store/run-lock.ts) for the whole call, unless dryRun. */
export interface ExecuteOptions {
  pipeline: Pipeline;
  /** Instance ids to consider, in topological order (the target closure). */
  order: string[];
  planner: Planner;
  fingerprinter: Fingerprinter;
  store: ContentStore;
  digester: OutputDigester;
  lock: LockStore;
  cacheDir: string;
  jobs: number;
  keepGoing: boolean;
  /** Instance ids to run even when fresh. */
  force: string[];
  dryRun: boolean;
  backend: string;
  /** What the user set of the per-instance settings; the rest follows from cores and jobs. */
  settings?: Partial<StageSettings>;
  /** Aborted on Ctrl-C: stop scheduling, abort workers, clean temp outputs. */
  signal: AbortSignal;
  emit: EventSink;
  /** ms a stage gets to stop after an abort before its process group is killed (default 3000). */
  graceMs?: number;
  /** Aborted on a second Ctrl-C: kill running stages at once, without the grace period. */
  killSignal?: AbortSignal;
  runId?: string;
  /** Test hook: the pid of each forked worker. */
  onWorkerSpawn?: (id: string, pid: number) => void;
}

export interface RunResult {
  outcome: RunDoneEvent["outcome"];
  counts: RunCounts;
  steps: PlanStep[];
  durationMs: number;
}

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

function newRunId(): string {
  return `${new Date().toISOString().replace(/[:.]/g, "-")}-${randomBytes(3).toString("hex")}`;
}

type State = "waiting" | "running" | "ok" | "failed" | "blocked";

/** Thrown inside one instance's processing: fails that instance with this one-line message. */
class InstanceFailure extends Error {
  constructor(message: string, readonly tail: string[] = [], readonly aborted = false) {
    super(message);
  }
}

export async function executeRun(o: ExecuteOptions): Promise<RunResult> {
  const started = Date.now();
  const p = o.pipeline;
  const root = p.root;
  const runId = o.runId ?? newRunId();
  const graceMs = o.graceMs ?? 3000;
  const counts: RunCounts = { ran: 0, skipped: 0, restored: 0, failed: 0, blocked: 0 };
  const rel = (abs: string) => relative(root, abs) || ".";

  const a = await assess(p, o.order, o.lock.snapshot, o.fingerprinter, o.digester, o.store);
  const steps = o.planner.planRun({
    order: o.order,
    upstream: a.upstream,
    lock: o.lock.snapshot,
    current: a.current,
    outputs: a.outputs,
    cached: a.cached,
    force: o.force,
  });
  const stepOf = new Map(steps.map((s) => [s.id, s]));
  o.emit({ type: "plan", schemaVersion: EVENT_SCHEMA_VERSION, runId, dryRun: o.dryRun, jobs: o.jobs, steps });

  const finish = async (outcome: RunDoneEvent["outcome"]): Promise<RunResult> => {
    await o.digester.save().catch(() => {});
    await o.fingerprinter.save?.().catch(() => {});
    const durationMs = Date.now() - started;
    o.emit({ type: "run-done", outcome, counts: { ...counts }, durationMs });
    return { outcome, counts, steps, durationMs };
  };
  if (o.dryRun) return finish("ok");

  const tmpRoot = join(o.cacheDir, "tmp", runId);
  const settings = instanceSettings(o.settings ?? {}, availableParallelism(), o.jobs);
  const forced = new Set(o.force);
  const state = new Map<string, State>(o.order.map((id) => [id, "waiting"]));
  /** Instances whose outputs this run rewrote: their downstream must be re-decided. */
  const executed = new Set<string>();
  let stopping = false;

  async function decideNow(inst: StageInstance, planned: PlanStep): Promise<{ step: PlanStep; fp: Fingerprint | null }> {
    const ups = a.upstream[inst.id] ?? [];
    // planRun marks steps decided before their upstream ran (run or restore) as pending.
    const needs = planned.pending === true || a.current[inst.id] === "pending" || ups.some((u) => executed.has(u));
    if (!needs) {
      const cur = a.current[inst.id];
      return { step: planned, fp: cur === "pending" ? null : cur };
    }
    // Early cutoff: the upstream instance finished, so the real inputs exist now; decide again.
    const missing = await missingDeps(root, inst);
    if (missing.length > 0) {
      throw new InstanceFailure(`dep ${missing.join(", ")} does not exist (no upstream instance produced it)`);
    }
    const fp = await o.fingerprinter.fingerprint(inst);
    const entry = o.lock.entry(inst.id);
    const outputs = await outputsState(root, inst, entry, o.digester);
    const cached = await isCached(entry, inst, o.store);
    return { step: o.planner.decideInstance(inst.id, entry, fp, outputs, cached, forced.has(inst.id)), fp };
  }

  async function restoreAll(inst: StageInstance, entry: LockEntry): Promise<string | null> {
    for (const [name, path] of Object.entries(inst.outs)) {
      const rec = entry.outs[name]!;
      const target = absPath(root, path);
      const cur = await o.digester.digestPath(target);
      if (cur && cur.digest === rec.digest) continue;
      const r = await o.store.restore(rec, target);
      if (!r.ok) return r.detail;
    }
    return null;
  }

  async function runStage(inst: StageInstance, fpBefore: Fingerprint, reason: string): Promise<void> {
    const t0 = Date.now();
    const logPath = logPathFor(o.cacheDir, inst.id);
    o.emit({ type: "instance-start", id: inst.id, action: "run", reason, logPath: rel(logPath) });
    const tmpDir = join(tmpRoot, safeInstanceId(inst.id));
    const scratch = scratchPathFor(o.cacheDir, inst.id);
    const tmpOuts: Record<string, string> = {};
    for (const [name, path] of Object.entries(inst.outs)) {
      // Keep the out's own file name (stages may look at the extension); one folder per out.
      const base = path.split("/").filter(Boolean).pop() ?? name;
      tmpOuts[name] = join(tmpDir, name.replace(/[^A-Za-z0-9._-]+/g, "_"), base);
      await mkdir(join(tmpOuts[name]!, ".."), { recursive: true });
    }
    await mkdir(scratch, { recursive: true });
    const deps: Record<string, string> = {};
    for (const [name, path] of Object.entries(inst.deps)) deps[name] = absPath(root, path);
    try {
      const outcome = await runInWorker(
        {
          instanceId: inst.id,
          stage: inst.stage,
          module: inst.module,
          modulePath: absPath(root, inst.module),
          root,
          profile: p.profile,
          item: inst.item,
          params: inst.params,
          deps,
          outs: tmpOuts,
          scratch,
          backend: o.backend,
          settings,
        },
        {
          logPath,
          signal: o.signal,
          graceMs,
          // Two workers on two cores each get one BLAS thread instead of fighting over both.
          blasThreads: settings.blasThreads,
          ...(o.killSignal ? { killSignal: o.killSignal } : {}),
          onProgress: (event) => o.emit({ type: "progress", id: inst.id, elapsedMs: Date.now() - t0, progress: event }),
          onLog: (stream, line) => o.emit({ type: "log", id: inst.id, stream, line }),
          onSpawn: (pid) => o.onWorkerSpawn?.(inst.id, pid),
        },
      );
      if (!outcome.ok) throw new InstanceFailure(outcome.error, outcome.tail, outcome.aborted);
      if (o.signal.aborted) throw new InstanceFailure("interrupted", [], true);
      for (const [name, tmp] of Object.entries(tmpOuts)) {
        if (!(await stat(tmp).catch(() => null))) {
          throw new InstanceFailure(`stage did not write out ${name} (${inst.outs[name]})`);
        }
      }
      // Hash before, verify after: an input edited while the stage ran must not be recorded as
      // the input of these outputs.
      const fpAfter = await currentFingerprint(root, inst, o.fingerprinter);
      if (fpAfter === "pending" || fpAfter.digest !== fpBefore.digest) {
        const what = fpAfter === "pending" ? ["a dep disappeared"] : describeDiff(o.planner, fpBefore, fpAfter);
        throw new InstanceFailure(`inputs changed while the stage ran (${what.join("; ")}); run again`);
      }
      const outs: Record<string, OutRecord> = {};
      for (const [name, tmp] of Object.entries(tmpOuts)) {
        const target = absPath(root, inst.outs[name]!);
        await replacePath(tmp, target);
        outs[name] = await o.store.put(target, inst.outs[name]!);
      }
      const durationMs = Date.now() - t0;
      // The commit point: the entry is written only now that every output is in place and stored.
      await o.lock.set(inst.id, {
        fingerprint: fpBefore.digest,
        parts: fpBefore.parts,
        outs,
        finishedAt: new Date().toISOString(),
        durationMs,
      });
      await rm(scratch, { recursive: true, force: true });
      executed.add(inst.id);
      counts.ran++;
      o.emit({ type: "instance-done", id: inst.id, action: "ran", reason, durationMs });
    } finally {
      await rm(tmpDir, { recursive: true, force: true });
    }
  }

  async function processInstance(id: string): Promise<void> {
    const inst = p.instances.get(id)!;
    const t0 = Date.now();
    try {
      const planned = stepOf.get(id)!;
      const { step, fp } = await decideNow(inst, planned);
      if (step.action === "skip") {
        counts.skipped++;
        const reason = planned.action === "skip" ? step.reason : "fresh after all: upstream outputs unchanged (early cutoff)";
        o.emit({ type: "instance-done", id, action: "skipped", reason, durationMs: Date.now() - t0 });
        return;
      }
      if (!fp) throw new InstanceFailure("no fingerprint: a dep is missing");
      let reason = step.reason;
      if (step.action === "restore") {
        const entry = o.lock.entry(id);
        o.emit({ type: "instance-start", id, action: "restore", reason, logPath: rel(logPathFor(o.cacheDir, id)) });
        const miss = entry ? await restoreAll(inst, entry) : "no lock entry";
        if (!miss) {
          counts.restored++;
          o.emit({ type: "instance-done", id, action: "restored", reason, durationMs: Date.now() - t0 });
          return;
        }
        o.emit({ type: "warning", id, message: `cache miss on restore: ${miss}; running the stage instead` });
        reason = `cache miss (${miss})`;
      }
      if (o.signal.aborted || stopping) throw new InstanceFailure("interrupted", [], true);
      await runStage(inst, fp, reason);
    } catch (err) {
      if (err instanceof InstanceFailure) throw err;
      // A user-facing error (missing dep, bad symlink...) carries a hint, not a stack; anything else is a bug.
      if (err instanceof SedPipeError) throw new InstanceFailure(err.message, err.hint ? [`hint: ${err.hint}`] : []);
      throw new InstanceFailure(`${(err as Error)?.message ?? String(err)}`, ((err as Error)?.stack ?? "").split("\n"));
    }
  }

  const running = new Map<string, Promise<void>>();
  const blockedBy = (id: string): string | null | undefined => {
    for (const u of a.upstream[id] ?? []) {
      const s = state.get(u);
      if (s === "failed") return u;
      if (s === "blocked") return blockedSource.get(u) ?? u;
    }
    return undefined;
  };
  const blockedSource = new Map<string, string | null>();
  const schedulingOrder = criticalFirst(o.order, a.upstream);
  const onAbort = () => {
    stopping = true;
  };
  o.signal.addEventListener("abort", onAbort, { once: true });

  try {
    // Only one run holds the workspace at a time (run lock), so any other folder under cache/tmp is
    // the leftover of a run that was killed: its temp outputs can never be committed.
    for (const name of await readdir(join(o.cacheDir, "tmp")).catch(() => [] as string[])) {
      await rm(join(o.cacheDir, "tmp", name), { recursive: true, force: true });
    }
    await mkdir(tmpRoot, { recursive: true });
    for (;;) {
      if (o.signal.aborted) stopping = true;
      // Settle what cannot run: downstream of failures (with --keep-going) or everything (stopping).
      for (const id of o.order) {
        if (state.get(id) !== "waiting") continue;
        const b = blockedBy(id);
        if (b !== undefined) {
          state.set(id, "blocked");
          blockedSource.set(id, b);
          counts.blocked++;
          o.emit({ type: "instance-blocked", id, because: b });
        }
      }
      if (!stopping) {
        for (const id of schedulingOrder) {
          if (running.size >= o.jobs) break;
          if (state.get(id) !== "waiting") continue;
          if (!(a.upstream[id] ?? []).every((u) => state.get(u) === "ok")) continue;
          state.set(id, "running");
          const t0 = Date.now();
          const job = processInstance(id).then(
            () => {
              state.set(id, "ok");
            },
            (err: InstanceFailure) => {
              state.set(id, "failed");
              counts.failed++;
              const logPath = logPathFor(o.cacheDir, id);
              o.emit({
                type: "instance-failed",
                id,
                error: err.message,
                logPath: rel(logPath),
                tail: err.tail.filter((l) => l !== ""),
                durationMs: Date.now() - t0,
                interrupted: err.aborted && o.signal.aborted,
              });
              if (!o.keepGoing) stopping = true;
            },
          );
          running.set(id, job.finally(() => running.delete(id)));
        }
      }
      if (running.size === 0) {
        const left = o.order.filter((id) => state.get(id) === "waiting");
        if (left.length === 0) break;
        if (stopping) {
          for (const id of left) {
            state.set(id, "blocked");
            counts.blocked++;
            o.emit({ type: "instance-blocked", id, because: null });
          }
          break;
        }
        // Nothing runs and nothing can start: only possible if the order is not closed under upstream.
        throw new Error(`runner stuck: ${left.join(", ")} wait for instances outside the run`);
      }
      await Promise.race([...running.values()]);
    }
  } finally {
    o.signal.removeEventListener("abort", onAbort);
    await rm(tmpRoot, { recursive: true, force: true }).catch(() => {});
  }
  const outcome: RunDoneEvent["outcome"] = o.signal.aborted ? "interrupted" : counts.failed > 0 ? "failed" : "ok";
  return finish(outcome);
}

function describeDiff(planner: Planner, before: Fingerprint, after: Fingerprint): string[] {
  if (planner.diffParts && planner.explain) {
    const changes = planner.diffParts(before.parts, after.parts);
    const lines = planner.explain({ id: "", action: "run", reason: "", changes });
    if (lines.length > 0) return lines;
  }
  const out: string[] = [];
  for (const k of new Set([...Object.keys(before.parts.deps), ...Object.keys(after.parts.deps)])) {
    if (before.parts.deps[k] !== after.parts.deps[k]) out.push(`dep ${k}`);
  }
  for (const k of new Set([...Object.keys(before.parts.code), ...Object.keys(after.parts.code)])) {
    if (before.parts.code[k] !== after.parts.code[k]) out.push(`code ${k}`);
  }
  if (before.parts.paramsHash !== after.parts.paramsHash) out.push("params");
  return out.length ? out : ["fingerprint"];
}

/**
 * Ready instances start in this order: most transitive downstream instances first (ties keep the
 * topological order). Training an ensemble unblocks dozens of evals, so it must not queue behind
 * every feature-caching instance just because those come first in topological order.
 */
export function criticalFirst(order: string[], upstream: Record<string, string[]>): string[] {
  const downstream = new Map<string, Set<string>>(order.map((id) => [id, new Set<string>()]));
  for (let i = order.length - 1; i >= 0; i--) {
    const id = order[i];
    const mine = downstream.get(id)!;
    for (const u of upstream[id] ?? []) {
      const theirs = downstream.get(u);
      if (!theirs) continue;
      theirs.add(id);
      for (const d of mine) theirs.add(d);
    }
  }
  const rank = new Map(order.map((id, i) => [id, i]));
  return [...order].sort((x, y) => downstream.get(y)!.size - downstream.get(x)!.size || rank.get(x)! - rank.get(y)!);
}

/** Each instance's share of the machine: cores / parallel jobs, unless the user set a value. */
export function instanceSettings(user: Partial<StageSettings>, machineCores: number, jobs: number): StageSettings {
  const cores = user.cores ?? Math.max(1, Math.floor(machineCores / jobs));
  return { cores, blasThreads: user.blasThreads ?? cores, headThreads: user.headThreads ?? null, blas: user.blas ?? true };
}
