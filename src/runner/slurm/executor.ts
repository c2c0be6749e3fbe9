// Runs stage instances as Slurm batch jobs on the shared file system: the same worker entry as
// locally (the stage bundle, in job mode), one job per instance or per group of instances of one
// stage with equal resources (so a 72-instance fan-out is a few scheduler entries, not 72). The
// engine stays the only writer of pipeline.lock and the cache: a job writes its outputs into its own
// folder under cache/slurm/, and the engine moves them to the instance's temporary paths once the
// stage reported success; the instance pipeline then verifies and commits them as for a local run.
// Every submitted job is recorded in cache/state/slurm-jobs.json until settled, so a run that starts
// after its engine was killed adopts the jobs (waits for them, or takes their results) instead of
// submitting the work again. Polling: one `squeue` for all jobs per tick, backing off while nothing
// changes. Owns jobs and their folders; never decides what runs.
import { randomUUID } from "node:crypto";
import { createWriteStream, type WriteStream } from "node:fs";
import { copyFile, link, lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile, open } from "node:fs/promises";
import { basename, join, relative } from "node:path";
import { bundleStage } from "../stage-bundle.ts";
import { WORKER_SOURCE } from "../worker-path.ts";
import { JOB_FLAG, type ErrorInfo, type JobEvent, type JobGroup, type JobResult, type WorkerSpec } from "../worker-protocol.ts";
import type { Executor, JobHooks, WorkerOutcome } from "../worker-pool.ts";
import { JobStore, type JobRecord } from "./job-store.ts";
import { findSubmittedJob, slurmCommands } from "./jobs.ts";
import { classifyEnd, describeEnd, isActive, parseSacct, parseSqueue, type JobStatus } from "./queue.ts";
import { sbatchScript, type JobResources } from "./sbatch.ts";

const TAIL_LINES = 20;
const TSX_URL = import.meta.resolve("tsx");

export interface SlurmOptions {
  root: string;
  cacheDir: string;
  runId: string;
  /** Environment of the Slurm commands, exported into the jobs (SLURM_CONF, PATH, ...). */
  env: NodeJS.ProcessEnv;
  /** The node binary jobs run (default: this one; it must be on the shared file system). */
  node?: string;
  /** Resubmissions after a transient failure (NODE_FAIL, BOOT_FAIL, PREEMPTED, DEADLINE). */
  retries?: number;
  /** Most instances in one job (default 16); 1 = one job per instance. */
  groupMax?: number;
  /**
   * A group is split into at least this many jobs, so grouping never serialises work the cluster
   * could spread (default: the cluster's CPUs / the stage's cpus, at most 8).
   */
  minJobs?: number;
  /** How long submissions are held to group instances that become ready together (ms, default 300). */
  groupWindowMs?: number;
  /** First and longest poll interval (ms; default 1000 and 15000). */
  pollMs?: number;
  maxPollMs?: number;
  fromSource?: boolean;
  /**
   * Whether an instance's outputs at a fingerprint are committed (pipeline.lock): records of such
   * jobs (an engine killed between its commit and dropping the record) are dropped at start.
   */
  committed?: (instanceId: string, fingerprint: string) => boolean;
  /** Runs a Slurm command (tests inject fakes); default: execFile with `env`. */
  exec?: (cmd: string, args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;
}

const DEFAULT_RESOURCES: JobResources = { cpus: 1, memoryMb: null, gpus: 0, timeMinutes: null, options: {} };

interface Pending {
  spec: WorkerSpec;
  hooks: JobHooks;
  resources: JobResources;
  fingerprint: string;
  attempt: number;
  log: WriteStream;
  tail: string[];
  /** Set once submitted (or adopted). */
  rec?: JobRecord;
  status?: JobStatus;
  eventsOffset: number;
  aborted: boolean;
  killed: boolean;
  settled: boolean;
  settle(o: WorkerOutcome): void;
}

export class SlurmExecutor implements Executor {
  private store: Promise<JobStore>;
  private readonly exec: NonNullable<SlurmOptions["exec"]>;
  private readonly pending = new Set<Pending>();
  private queued: Pending[] = [];
  private groupTimer: NodeJS.Timeout | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private polling = false;
  private pollAgain: number | undefined;
  private pollMs: number;
  private groups = 0;
  private bundles = new Map<string, Promise<{ entry: string; execArgv: string[] }>>();
  private closed = false;
  /** Job folders of records without a job id, looked up once per engine. */
  private readonly submittedIds = new Map<string, Promise<string | null>>();

  constructor(private readonly o: SlurmOptions) {
    this.exec = o.exec ?? slurmCommands(o.env);
    this.store = JobStore.open(o.cacheDir).then(async (store) => {
      for (const r of store.all()) if (o.committed?.(r.instanceId, r.fingerprint)) await this.dropRecord(store, r);
      return store;
    });
    this.pollMs = o.pollMs ?? 1000;
  }

  async run(spec: WorkerSpec, hooks: JobHooks): Promise<WorkerOutcome> {
    const store = await this.store;
    await mkdir(join(hooks.logPath, ".."), { recursive: true });
    const log = createWriteStream(hooks.logPath, { flags: "w" });
    log.write(`# ${spec.instanceId} (${spec.module}) started ${new Date().toISOString()} on Slurm\n`);
    let settle!: (o: WorkerOutcome) => void;
    const done = new Promise<WorkerOutcome>((r) => (settle = r));
    const fingerprint = spec.fingerprint ?? "";
    const p: Pending = {
      spec,
      hooks,
      resources: hooks.resources ?? DEFAULT_RESOURCES,
      fingerprint,
      attempt: 1,
      log,
      tail: [],
      eventsOffset: 0,
      aborted: false,
      killed: false,
      settled: false,
      settle: (out) => {
        if (p.settled) return;
        p.settled = true;
        this.pending.delete(p);
        settle(out);
      },
    };
    this.pending.add(p);
    const onAbort = () => this.abort(p, false);
    const onKill = () => this.abort(p, true);
    hooks.signal.addEventListener("abort", onAbort, { once: true });
    hooks.killSignal?.addEventListener("abort", onKill, { once: true });

    // A job from an earlier engine for exactly these inputs: adopt it, never submit twice.
    let adopted: JobRecord | undefined;
    try {
      adopted = fingerprint ? await this.resolved(store, store.get(spec.instanceId, fingerprint)) : undefined;
      // Jobs for other inputs of this instance are stale: nobody will commit what they write.
      for (const r of store.all()) {
        if (r.instanceId === spec.instanceId && r.fingerprint !== fingerprint) {
          const old = await this.resolved(store, r);
          if (old) await this.exec("scancel", [old.jobId]);
          await store.delete(r.instanceId, r.fingerprint);
        }
      }
    } catch (err) {
      p.settle({ ok: false, error: (err as Error).message, aborted: false, tail: [], info: { name: "SlurmError", message: (err as Error).message, hint: "an earlier engine was killed while it submitted this instance; run again once squeue answers (sed-pipe jobs shows the records)" } });
    }
    if (p.settled) {
      // settled above
    } else if (adopted) {
      p.rec = adopted;
      p.attempt = adopted.attempt;
      this.line(p, "log", `# adopted Slurm job ${adopted.jobId} (submitted ${adopted.submittedAt} by an earlier run)`);
      hooks.onJob?.({ jobId: adopted.jobId, state: "ADOPTED", nodes: "" });
      this.schedulePoll(0);
    } else if (hooks.signal.aborted) {
      p.settle({ ok: false, error: "interrupted", aborted: true, tail: [] });
    } else {
      this.enqueue(p);
    }
    if (hooks.signal.aborted) onAbort();
    try {
      const out = await done;
      this.line(p, "log", `# ended ${new Date().toISOString()} (${out.ok ? "ok" : out.error})`);
      return out;
    } finally {
      hooks.signal.removeEventListener("abort", onAbort);
      hooks.killSignal?.removeEventListener("abort", onKill);
      await new Promise<void>((r) => log.end(r));
    }
  }

  /**
   * A record with its job id: one an engine wrote before sbatch (jobId "") is looked up in Slurm
   * (and updated); undefined when sbatch never made that job (the record is dropped).
   */
  private async resolved(store: JobStore, rec: JobRecord | undefined): Promise<JobRecord | undefined> {
    if (!rec || rec.jobId !== "") return rec;
    let jobId = this.submittedIds.get(rec.jobDir);
    if (jobId === undefined) {
      const found = findSubmittedJob(rec, this.exec);
      this.submittedIds.set(rec.jobDir, found);
      jobId = found;
    }
    const id = await jobId.catch((err: unknown) => {
      this.submittedIds.delete(rec.jobDir);
      throw err;
    });
    if (id === null) {
      await store.delete(rec.instanceId, rec.fingerprint);
      return undefined;
    }
    const full = { ...rec, jobId: id };
    await store.set(full);
    return full;
  }

  private line(p: Pending, stream: "log" | "stdout" | "stderr", text: string): void {
    const prefix = stream === "log" ? "" : `[${stream}] `;
    p.log.write(`${prefix}${text}\n`);
    if (!text.startsWith("# ")) {
      p.tail.push(`${prefix}${text}`);
      if (p.tail.length > TAIL_LINES) p.tail.shift();
      p.hooks.onLog(stream, text);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Submission

  private groupKey(p: Pending, entry: { entry: string; execArgv: string[] }): string {
    return JSON.stringify([entry.entry, entry.execArgv, p.spec.backend, p.spec.settings, p.resources]);
  }

  private enqueue(p: Pending): void {
    this.queued.push(p);
    if (this.queued.length >= (this.o.groupMax ?? 16)) void this.flush();
    else if (!this.groupTimer) this.groupTimer = setTimeout(() => void this.flush(), this.o.groupWindowMs ?? 300);
  }

  private entryFor(spec: WorkerSpec): Promise<{ entry: string; execArgv: string[] }> {
    let b = this.bundles.get(spec.modulePath);
    if (!b) {
      b = (async () => {
        if (this.o.fromSource) return { entry: WORKER_SOURCE, execArgv: ["--import", TSX_URL] };
        try {
          return { entry: await bundleStage(spec.modulePath, this.o.cacheDir), execArgv: ["--enable-source-maps"] };
        } catch {
          return { entry: WORKER_SOURCE, execArgv: ["--import", TSX_URL] };
        }
      })();
      this.bundles.set(spec.modulePath, b);
    }
    return b;
  }

  private async flush(): Promise<void> {
    clearTimeout(this.groupTimer);
    this.groupTimer = undefined;
    const batch = this.queued.filter((p) => !p.settled);
    this.queued = [];
    const groups = new Map<string, { entry: { entry: string; execArgv: string[] }; members: Pending[] }>();
    for (const p of batch) {
      const entry = await this.entryFor(p.spec);
      const key = this.groupKey(p, entry);
      const g = groups.get(key) ?? { entry, members: [] };
      g.members.push(p);
      groups.set(key, g);
    }
    for (const g of groups.values()) {
      const minJobs = this.o.minJobs ?? Math.max(1, Math.min(8, Math.floor((await this.clusterCpus()) / Math.max(1, g.members[0]!.resources.cpus))));
      for (const chunk of splitGroup(g.members, this.o.groupMax ?? 16, minJobs)) await this.submit(chunk, g.entry);
    }
  }

  private cpus: Promise<number> | undefined;
  /** CPUs the cluster has in all (`sinfo %C`: allocated/idle/other/total), asked once; 8 if it does not say. */
  private clusterCpus(): Promise<number> {
    this.cpus ??= this.exec("sinfo", ["-h", "-o", "%C"]).then((r) => {
      const total = Number(r.stdout.trim().split("\n")[0]?.split("/")[3]);
      return r.code === 0 && Number.isFinite(total) && total > 0 ? total : 8;
    });
    return this.cpus;
  }

  private async submit(members: Pending[], entry: { entry: string; execArgv: string[] }): Promise<void> {
    const store = await this.store;
    const jobDir = join(this.o.cacheDir, "slurm", `${this.o.runId}-${++this.groups}`);
    const instances: JobGroup["instances"] = [];
    const outsOf = new Map<Pending, Record<string, string>>();
    for (const [i, p] of members.entries()) {
      const dir = join(jobDir, `${i}-${safeName(p.spec.instanceId)}`);
      const outs: Record<string, string> = {};
      for (const [name, tmp] of Object.entries(p.spec.outs)) {
        outs[name] = join(dir, "outs", name.replace(/[^A-Za-z0-9._-]+/g, "_"), basename(tmp));
        await mkdir(join(outs[name]!, ".."), { recursive: true });
      }
      outsOf.set(p, outs);
      instances.push({ dir, spec: { ...p.spec, outs } });
    }
    const first = members[0]!;
    const res = first.resources;
    const resources: JobResources = { ...res, timeMinutes: res.timeMinutes === null ? null : res.timeMinutes * members.length };
    const name = members.length === 1 ? `sed-pipe:${first.spec.instanceId}` : `sed-pipe:${first.spec.stage}[${members.length}]`;
    const groupFile = join(jobDir, "group.json");
    const token = `sed-pipe:${randomUUID()}`;
    await writeFile(groupFile, JSON.stringify({ version: 1, instances } satisfies JobGroup));
    let script: string;
    try {
      script = sbatchScript({
        name,
        resources,
        output: join(jobDir, "slurm-%j.out"),
        chdir: this.o.root,
        command: [this.o.node ?? process.execPath, ...entry.execArgv, entry.entry, JOB_FLAG, groupFile],
        comment: token,
      });
    } catch (err) {
      for (const p of members) p.settle({ ok: false, error: `cannot submit: ${(err as Error).message}`, aborted: false, tail: [], info: { name: "ConfigError", message: (err as Error).message, exitCode: 2, hint: "fix the stage's resources.options in pipeline.yaml / the params file" } });
      return;
    }
    await writeFile(join(jobDir, "job.sh"), script);
    // Recorded before sbatch runs: an engine killed between sbatch and the record below leaves a
    // trace the next run resolves by the job's comment (never a job nobody knows of).
    const submitted = new Date().toISOString();
    for (const [i, p] of members.entries()) {
      if (p.fingerprint) await store.set({ instanceId: p.spec.instanceId, fingerprint: p.fingerprint, jobId: "", token, dir: instances[i]!.dir, jobDir, outs: outsOf.get(p)!, submittedAt: submitted, attempt: p.attempt });
    }
    const r = await this.exec("sbatch", ["--parsable", join(jobDir, "job.sh")]);
    const jobId = r.stdout.trim().split(";")[0] ?? "";
    if (r.code !== 0 || !/^\d+$/.test(jobId)) {
      for (const p of members) if (p.fingerprint) await store.delete(p.spec.instanceId, p.fingerprint);
      const why = (r.stderr || r.stdout).trim().split("\n").pop() ?? `exit code ${r.code}`;
      for (const p of members) {
        p.settle({ ok: false, error: `sbatch refused the job: ${why}`, aborted: false, tail: [why], info: { name: "SlurmError", message: why, hint: `the job script is ${relative(this.o.root, join(jobDir, "job.sh"))}; check the stage's resources (partition, account, qos, memory, time) against what the cluster allows` } });
      }
      return;
    }
    const now = new Date().toISOString();
    for (const [i, p] of members.entries()) {
      p.rec = { instanceId: p.spec.instanceId, fingerprint: p.fingerprint, jobId, token, dir: instances[i]!.dir, jobDir, outs: outsOf.get(p)!, submittedAt: now, attempt: p.attempt };
      if (p.fingerprint) await store.set(p.rec);
      this.line(p, "log", `# Slurm job ${jobId} (${name}); its output: ${relative(this.o.root, join(jobDir, `slurm-${jobId}.out`))} while it runs, cache/logs/slurm/slurm-${jobId}.out after`);
      p.status = { jobId, state: "PENDING", reason: "", nodes: "" };
      p.hooks.onJob?.({ jobId, state: "PENDING", nodes: "" });
      // An abort that came while sbatch ran: cancel at once.
      if (p.aborted) void this.cancelIfAllAborted(jobId, p.killed);
    }
    this.schedulePoll(this.o.pollMs ?? 1000);
  }

  // ---------------------------------------------------------------------------------------------
  // Polling

  /**
   * One poll at a time: two would both see a finished job and both take its outputs. A poll asked
   * for while one runs (a new submission, an adoption) comes right after it.
   */
  private schedulePoll(ms: number): void {
    if (this.closed) return;
    if (this.polling) {
      this.pollAgain = Math.min(this.pollAgain ?? ms, ms);
      return;
    }
    if (this.pollTimer) return;
    this.pollTimer = setTimeout(() => {
      this.pollTimer = undefined;
      this.polling = true;
      void this.poll()
        .catch((err: unknown) => {
          // Never an unhandled rejection (it would kill the engine and orphan every job): the
          // instances keep waiting and the next poll tries again.
          for (const p of this.pending) p.log.write(`# polling failed: ${(err as Error).message}\n`);
        })
        .finally(() => {
          this.polling = false;
          const again = this.pollAgain;
          this.pollAgain = undefined;
          if (this.pending.size > 0) this.schedulePoll(again ?? this.pollMs);
        });
    }, ms);
  }

  /** One `squeue` for every job; results and events are read from the jobs' folders. */
  private async poll(): Promise<void> {
    const withJob = [...this.pending].filter((p) => p.rec);
    if (withJob.length === 0) return;
    const ids = [...new Set(withJob.map((p) => p.rec!.jobId))];
    const q = await this.exec("squeue", ["-h", "-t", "all", "-j", ids.join(","), "-o", "%i|%T|%r|%N"]);
    const known = q.code === 0 ? parseSqueue(q.stdout) : new Map<string, JobStatus>();
    const unknown = ids.filter((id) => !known.has(id));
    if (q.code !== 0 && !/Invalid job id/.test(q.stderr)) {
      // The controller did not answer: keep what we knew, try again later.
      this.pollMs = Math.min(this.o.maxPollMs ?? 15_000, this.pollMs * 2);
      return;
    }
    if (unknown.length > 0) for (const [id, st] of await this.sacct(unknown)) known.set(id, st);
    let changed = false;
    for (const p of withJob) {
      if (p.settled) continue;
      try {
        if (await this.check(p, known.get(p.rec!.jobId))) changed = true;
      } catch (err) {
        // What went wrong with one instance's files fails that instance, not the engine.
        changed = true;
        const message = `taking the result of Slurm job ${p.rec?.jobId ?? "?"} failed: ${(err as Error).message}`;
        await this.forget(p).catch(() => {});
        p.settle({ ok: false, error: message, aborted: p.aborted, tail: [...p.tail], info: { name: "SlurmError", message, hint: `the job's folder was ${relative(this.o.root, p.rec?.jobDir ?? this.o.cacheDir)}` } });
      }
    }
    this.pollMs = changed ? (this.o.pollMs ?? 1000) : Math.min(this.o.maxPollMs ?? 15_000, Math.ceil(this.pollMs * 1.5));
  }

  /** One instance at one poll: events, result, end state. True when something changed. */
  private async check(p: Pending, st: JobStatus | undefined): Promise<boolean> {
    let changed = false;
    if (st && (!p.status || p.status.state !== st.state || p.status.nodes !== st.nodes)) {
      changed = true;
      p.status = st;
      p.hooks.onJob?.({ jobId: st.jobId, state: st.state, nodes: st.nodes });
    }
    if (await this.readEvents(p)) changed = true;
    const result = await readResult(p.rec!.dir);
    if (result) {
      // A failure is named with the job's end state (FAILED, CANCELLED by someone else, TIMEOUT,
      // PREEMPTED...), so wait for the job to end when nothing else runs in it (a second or so);
      // a failure inside a group that runs on is reported at once.
      const alone = ![...this.pending].some((q) => q !== p && !q.settled && q.rec?.jobId === p.rec!.jobId);
      if (!result.ok && st && isActive(st.state) && (alone || (result.aborted && !p.aborted)) && this.waitForEnd(p)) return changed;
      await this.finish(p, result, st);
      return true;
    }
    if (st && isActive(st.state)) return changed;
    if (!st) {
      // Slurm forgot the job (purged long ago) and it left no result: it died without one.
      await this.finishWithoutResult(p, { jobId: p.rec!.jobId, state: "FAILED", reason: "unknown to Slurm now", nodes: "" });
      return true;
    }
    // Ended: give the stage's last words a chance (files on a shared file system arrive late).
    if (!this.waitForLateResult(p)) {
      await this.finishWithoutResult(p, st);
      return true;
    }
    return changed;
  }

  private async sacct(ids: string[]): Promise<Map<string, JobStatus>> {
    // Clusters with slurmdbd answer plain sacct; without it, -c reads the job completion file.
    for (const extra of [[], ["-c"]]) {
      const r = await this.exec("sacct", [...extra, "-j", ids.join(","), "--parsable2", "--noheader", "-o", "JobID,State,ExitCode,NodeList"]);
      if (r.code === 0) {
        const m = parseSacct(r.stdout);
        if (m.size > 0) return m;
      }
    }
    return new Map();
  }

  private endChecks = new WeakMap<Pending, number>();
  /** True for up to 10 polls after a stage reported a failure while its job still runs. */
  private waitForEnd(p: Pending): boolean {
    const n = this.endChecks.get(p) ?? 0;
    this.endChecks.set(p, n + 1);
    return n < 10;
  }

  private lateChecks = new WeakMap<Pending, number>();
  /** True for the first two polls after a job ended without a result file: look once more. */
  private waitForLateResult(p: Pending): boolean {
    const n = this.lateChecks.get(p) ?? 0;
    this.lateChecks.set(p, n + 1);
    return n < 2;
  }

  private async readEvents(p: Pending): Promise<boolean> {
    const file = join(p.rec!.dir, "events.ndjson");
    const st = await stat(file).catch(() => null);
    if (!st || st.size <= p.eventsOffset) return false;
    const fh = await open(file, "r");
    try {
      const buf = Buffer.alloc(st.size - p.eventsOffset);
      await fh.read(buf, 0, buf.length, p.eventsOffset);
      const text = buf.toString("utf8");
      const end = text.lastIndexOf("\n");
      if (end < 0) return false;
      p.eventsOffset += Buffer.byteLength(text.slice(0, end + 1));
      for (const l of text.slice(0, end).split("\n")) {
        let e: JobEvent;
        try {
          e = JSON.parse(l) as JobEvent;
        } catch {
          continue;
        }
        if (e.t === "log") this.line(p, "log", e.line);
        else if (e.t === "progress") p.hooks.onProgress(e.event);
        else if (e.t === "start") this.line(p, "log", `# started on ${e.host} (pid ${e.pid}) at ${e.at}`);
      }
      return true;
    } finally {
      await fh.close();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Outcomes

  private async finish(p: Pending, r: JobResult, st: JobStatus | undefined): Promise<void> {
    await this.readEvents(p);
    // Stopped by Slurm's signal, not ours (scancel from outside, the time limit, preemption): what
    // Slurm says is the story, and a transient end is retried like a job that died without a word.
    if (!r.ok && r.aborted && !p.aborted && st && !isActive(st.state) && classifyEnd(st.state) !== "completed" && classifyEnd(st.state) !== "failed") {
      return this.finishWithoutResult(p, st);
    }
    if (r.ok) {
      // The stage's outputs reach the instance's temporary paths as hard links (the job's folder
      // keeps them until the record is dropped: an engine killed between here and the commit leaves
      // them for the next one to adopt); the instance pipeline verifies and commits them.
      const missing: string[] = [];
      for (const [name, tmp] of Object.entries(p.spec.outs)) {
        const from = p.rec!.outs[name];
        if (!from || !(await stat(from).catch(() => null))) {
          missing.push(name);
          continue;
        }
        await rm(tmp, { recursive: true, force: true });
        await linkTree(from, tmp);
      }
      if (missing.length > 0 && this.firstResubmit(p)) {
        // The stage said ok but its outputs are gone from the job's folder (an earlier sed-pipe of
        // another version moved them, or someone deleted them): the work is run again.
        this.line(p, "log", `# Slurm job ${p.rec!.jobId} finished but its outputs ${missing.join(", ")} are gone from ${relative(this.o.root, p.rec!.dir)}; running it again`);
        return this.resubmit(p);
      }
      // The record and the job's folder stay until the instance pipeline committed the outputs.
      p.settle({ ok: true, release: () => this.forget(p) });
      return;
    }
    const job = st ?? p.status;
    const where = `cache/logs/slurm/slurm-${p.rec!.jobId}.out`;
    const slurmSays = job && !isActive(job.state) ? describeEnd(job) : `in Slurm job ${p.rec!.jobId}${job?.nodes ? ` on ${job.nodes}` : ""}`;
    const info: ErrorInfo = { ...r.error, hint: `${r.error.hint ? `${r.error.hint}; ` : ""}${slurmSays}; the job's output: ${where}` };
    if (info.stack) p.log.write(info.stack + "\n");
    await this.forget(p);
    p.settle({ ok: false, error: info.message, aborted: r.aborted || p.aborted, tail: [...p.tail], info });
  }

  private async finishWithoutResult(p: Pending, st: JobStatus): Promise<void> {
    await this.readEvents(p);
    const end = classifyEnd(st.state);
    const output = join(p.rec!.jobDir, `slurm-${st.jobId}.out`);
    const outTail = (await readFile(output, "utf8").catch(() => "")).trim().split("\n").filter(Boolean).slice(-8);
    for (const l of outTail) p.log.write(`[job output] ${l}\n`);
    if (p.aborted) {
      await this.forget(p);
      p.settle({ ok: false, error: "interrupted", aborted: true, tail: [...p.tail] });
      return;
    }
    if (end === "transient" && p.attempt <= (this.o.retries ?? 0)) {
      this.line(p, "log", `# ${describeEnd(st)}; resubmitting (attempt ${p.attempt + 1} of ${(this.o.retries ?? 0) + 1})`);
      p.attempt++;
      return this.resubmit(p);
    }
    const what = describeEnd(st, { memoryMb: p.resources.memoryMb, timeMinutes: p.resources.timeMinutes });
    const where = relative(this.o.root, output);
    await this.forget(p);
    p.settle({
      ok: false,
      error: what,
      aborted: false,
      tail: [...p.tail, ...outTail.map((l) => `[job output] ${l}`)],
      info: { name: "SlurmJobError", message: what, hint: `the job's output is ${where}` },
    });
  }

  /** Once per instance: outputs found missing after an ok result send it back to the queue one time only. */
  private resubmitted = new WeakSet<Pending>();
  private firstResubmit(p: Pending): boolean {
    if (this.resubmitted.has(p)) return false;
    this.resubmitted.add(p);
    return true;
  }

  /** Drops the instance's job (record and folder) and queues it for a new one. */
  private async resubmit(p: Pending): Promise<void> {
    await this.forget(p);
    p.rec = undefined;
    p.status = undefined;
    p.eventsOffset = 0;
    this.endChecks.delete(p);
    this.lateChecks.delete(p);
    this.enqueue(p);
  }

  /** Drops the record; removes the instance's folder, and the job's once no instance of it is left. */
  private async forget(p: Pending): Promise<void> {
    const rec = p.rec;
    if (!rec) return;
    const store = await this.store;
    if (p.fingerprint) await store.delete(p.spec.instanceId, p.fingerprint);
    await this.dropFolders(store, rec, p);
  }

  private async dropRecord(store: JobStore, rec: JobRecord): Promise<void> {
    await store.delete(rec.instanceId, rec.fingerprint);
    await this.dropFolders(store, rec);
  }

  private async dropFolders(store: JobStore, rec: JobRecord, p?: Pending): Promise<void> {
    await rm(rec.dir, { recursive: true, force: true });
    const others = [...this.pending].some((q) => q !== p && !q.settled && q.rec?.jobDir === rec.jobDir) || store.all().some((r) => r.jobDir === rec.jobDir);
    if (!others) {
      // Keep the job's output next to the instance logs; the folder goes.
      const logs = join(this.o.cacheDir, "logs", "slurm");
      await mkdir(logs, { recursive: true });
      const outFile = join(rec.jobDir, `slurm-${rec.jobId}.out`);
      await rename(outFile, join(logs, `slurm-${rec.jobId}.out`)).catch(() => {});
      await rm(rec.jobDir, { recursive: true, force: true });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Cancellation

  private abort(p: Pending, kill: boolean): void {
    p.aborted = true;
    if (kill) p.killed = true;
    if (p.settled) return;
    if (!p.rec) {
      // Not submitted yet: it never will be.
      this.queued = this.queued.filter((q) => q !== p);
      p.settle({ ok: false, error: "interrupted", aborted: true, tail: [] });
      return;
    }
    void this.cancelIfAllAborted(p.rec.jobId, kill);
  }

  /** Cancels a job once every unsettled instance in it is aborted (a group runs on for the others). */
  private async cancelIfAllAborted(jobId: string, kill: boolean): Promise<void> {
    const mine = [...this.pending].filter((q) => q.rec?.jobId === jobId && !q.settled);
    if (mine.length === 0 || !mine.every((q) => q.aborted)) return;
    await this.exec("scancel", kill ? ["--signal=KILL", "--full", jobId] : [jobId]);
    this.pollMs = this.o.pollMs ?? 1000;
    this.schedulePoll(200);
  }

  /** Cancels every job this run still waits for (the run is over, e.g. it failed mid-way). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.groupTimer);
    clearTimeout(this.pollTimer);
    const jobs = new Set<string>();
    for (const p of this.pending) if (p.rec) jobs.add(p.rec.jobId);
    if (jobs.size > 0) await this.exec("scancel", [...jobs]);
    for (const p of [...this.pending]) {
      await this.forget(p);
      p.settle({ ok: false, error: "interrupted", aborted: true, tail: [] });
    }
  }
}

/** `from` (a file or a folder) at `to` by hard links, file by file; copies where links cannot be made. */
export async function linkTree(from: string, to: string): Promise<void> {
  const st = await lstat(from);
  if (st.isDirectory()) {
    await mkdir(to, { recursive: true });
    for (const e of await readdir(from)) await linkTree(join(from, e), join(to, e));
    return;
  }
  try {
    await link(from, to);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EXDEV" && code !== "EPERM" && code !== "ENOTSUP" && code !== "EMLINK") throw err;
    await copyFile(from, to);
  }
}

/**
 * Splits instances that could share jobs into jobs: at most `max` per job, and at least `minJobs` jobs
 * (when there are that many instances), sizes as even as possible, order kept. Instances that ask
 * for a GPU or a time limit run alone: they are the long ones a group would serialise.
 */
export function splitGroup<T extends { resources: JobResources }>(members: T[], max: number, minJobs: number): T[][] {
  const solo = members.filter((m) => m.resources.gpus > 0 || m.resources.timeMinutes !== null);
  const rest = members.filter((m) => !solo.includes(m));
  const out: T[][] = solo.map((m) => [m]);
  if (rest.length === 0) return out;
  const jobs = Math.min(rest.length, Math.max(Math.ceil(rest.length / Math.max(1, max)), minJobs));
  const base = Math.floor(rest.length / jobs);
  let extra = rest.length % jobs;
  for (let i = 0; i < rest.length; ) {
    const n = base + (extra-- > 0 ? 1 : 0);
    out.push(rest.slice(i, i + n));
    i += n;
  }
  return out;
}

function safeName(id: string): string {
  return id.replace(/[^A-Za-z0-9._@=-]+/g, "_").slice(0, 80);
}

async function readResult(dir: string): Promise<JobResult | null> {
  try {
    return JSON.parse(await readFile(join(dir, "result.json"), "utf8")) as JobResult;
  } catch {
    return null;
  }
}
