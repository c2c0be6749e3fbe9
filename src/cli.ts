// The sed-pipe command line: the only reader of argv, env and TTY, and the only place that turns
// errors and run outcomes into output and exit codes. Everything else is called from here.
import type { CliContext } from "./cli-context.ts";
import { readFile } from "node:fs/promises";
import { relative } from "node:path";
import { availableParallelism } from "node:os";
import { Command, CommanderError, InvalidArgumentError, Option } from "commander";
import { EXIT, SedPipeError } from "./errors.ts";
import type { Pipeline, PlanStep } from "./pipeline/types.ts";
import type { EventSink, RunnerEvent } from "./runner/events.ts";
import type { Workspace } from "./runner/workspace.ts";
import type { LockStore } from "./store/lock-file.ts";
import { findRoot } from "./runner/find-root.ts";
import type { RunLock } from "./store/run-lock.ts";

// The engine is imported when a command needs it, not at start-up: `--help`, `--version` and
// `name` then skip loading yaml/zod/graphology/esbuild (start-up dominates a warm `status`).
const SCHEMA_VERSION = 1;
const lazy = {
  select: () => import("./pipeline/select.ts"),
  plan: () => import("./pipeline/plan.ts"),
  workspace: () => import("./runner/workspace.ts"),
  execute: () => import("./runner/execute.ts"),
  runLock: () => import("./store/run-lock.ts"),
  lockFile: () => import("./store/lock-file.ts"),
  pickSink: () => import("./ui/pick-sink.ts"),
  referenceName: () => import("./hash/reference-name.ts"),
};

export type { CliContext } from "./cli-context.ts";

const EXAMPLES = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;

function intOption(name: string, min: number) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}`);
    return n;
  };
}

function warnLine(cli: CliContext, msg: string): void {
  cli.err(`warning: ${msg}\n`);
}

async function open(cli: CliContext, opts: { profile?: string; backend?: string }): Promise<Workspace> {
  const o: { profile?: string; backend?: string; onWarn: (m: string) => void } = { onWarn: (m) => warnLine(cli, m) };
  if (opts.profile !== undefined) o.profile = opts.profile;
  if (opts.backend !== undefined) o.backend = opts.backend;
  const { openWorkspace } = await lazy.workspace();
  return openWorkspace(cli.root(), o);
}

async function takeRunLock(cli: CliContext, ws: Workspace, wait: boolean, command: string, signal?: AbortSignal): Promise<RunLock> {
  const { acquireRunLock, describeOwner } = await lazy.runLock();
  const opts: Parameters<typeof acquireRunLock>[1] = {
    wait,
    command,
    onWait: (owner) => cli.err(`waiting for ${describeOwner(owner)} (${relative(cli.cwd, ws.cacheDir) || "."}/run.lock) ...\n`),
  };
  if (signal) opts.signal = signal;
  try {
    return await acquireRunLock(ws.cacheDir, opts);
  } catch (err) {
    if (err instanceof SedPipeError && !wait) {
      throw new SedPipeError(err.message, { hint: "wait for that run to finish, or drop --no-wait to queue behind it", exitCode: EXIT.usage });
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// run

function registerRunCommand(program: Command, cli: CliContext): void {
  program
    .command("run")
    .description("bring targets (default: everything) up to date: run stale instances, restore cached ones")
    .argument("[targets...]", "stages or instances (unique prefixes work); their upstream closure is included")
    .option("-n, --dry-run", "print the plan with a reason per instance; run nothing")
    .option("-f, --force [stage]", "run even if fresh: every target, or only this stage/instance")
    .addOption(new Option("-j, --jobs <n>", "instances run in parallel").argParser(intOption("--jobs", 1)))
    .option("-k, --keep-going", "after a failure, keep running instances that do not depend on it")
    .option("-p, --profile <name>", "params profile from pipeline.yaml (default: default_profile)")
    .option("-b, --backend <name>", "compute backend for stages: auto, tfjs-node-gpu, tfjs-node, wasm (best matMul path), wasm+blas, wasm-fixed, cpu", "auto")
    .option("--json", "print runner events as NDJSON on stdout")
    .option("--no-wait", "fail at once (exit 2) if another run holds the workspace, instead of waiting")
    .option("-v, --verbose", "plain output: also print stage log lines and fresh instances")
    .option("--ui <kind>", "auto (live view on a terminal, plain lines otherwise), ink or plain", "auto")
    .addHelpText(
      "after",
      EXAMPLES(["sed-pipe run tables", "sed-pipe run --dry-run", "sed-pipe run eval -j 2 --keep-going", "sed-pipe run train --force train-heads@ood_gen"]),
    )
    .action(async (targets: string[], opts) => {
      if (!["auto", "ink", "plain"].includes(opts.ui)) throw new SedPipeError(`--ui must be auto, ink or plain (got "${opts.ui}")`);
      const [{ matchTarget, resolveTargets }, { executeRun }, { planner }, { LockStore: LockStoreClass }, { pickSink }] = await Promise.all([
        lazy.select(),
        lazy.execute(),
        lazy.workspace(),
        lazy.lockFile(),
        lazy.pickSink(),
      ]);
      const ws = await open(cli, opts);
      const p = ws.pipeline;
      let order = resolveTargets(p, targets);
      let force: string[] = [];
      if (opts.force === true) force = order;
      else if (typeof opts.force === "string") {
        force = matchTarget(p, opts.force);
        if (targets.length > 0) order = resolveTargets(p, [...targets, opts.force]);
      }
      // Ink live view on an interactive terminal, plain lines in pipes and CI, NDJSON with --json.
      const picked = await pickSink({
        stdout: cli.stdout ?? { isTTY: false, write: (t: string) => cli.out(t) },
        env: cli.env,
        json: !!opts.json,
        ui: opts.ui,
        verbose: !!opts.verbose,
        write: cli.out,
      });
      const sink: EventSink = picked.sink;
      const jobs: number = opts.jobs ?? defaultJobs();
      const ac = new AbortController();
      const killNow = new AbortController();
      let signals = 0;
      const off = cli.onSignal((sig) => {
        signals++;
        if (signals === 1) {
          cli.err(`\n${sig}: stopping; running stages get a few seconds to stop (press Ctrl-C again to kill them now)\n`);
          ac.abort();
        } else {
          cli.err(`${sig}: killing running stages\n`);
          killNow.abort();
        }
      });
      let lock: RunLock | null = null;
      let lockStore: LockStore;
      try {
        if (!opts.dryRun) lock = await takeRunLock(cli, ws, opts.wait !== false, "run", ac.signal);
        lockStore = await LockStoreClass.open(ws.root);
        const result = await executeRun({
          pipeline: p,
          order,
          planner,
          fingerprinter: ws.hasher,
          store: ws.store,
          digester: ws.digester,
          lock: lockStore,
          cacheDir: ws.cacheDir,
          jobs,
          keepGoing: !!opts.keepGoing,
          force,
          dryRun: !!opts.dryRun,
          backend: opts.backend ?? "auto",
          signal: ac.signal,
          emit: sink,
          graceMs: 3000,
          killSignal: killNow.signal,
        });
        cli.setExit(result.outcome === "ok" ? EXIT.ok : result.outcome === "interrupted" ? EXIT.interrupted : EXIT.stageFailed);
      } finally {
        off();
        await picked.close().catch(() => {});
        await lock?.release();
      }
    });
}

function defaultJobs(): number {
  return Math.max(1, availableParallelism());
}

// ---------------------------------------------------------------------------------------------
// status / why

function registerStatusCommands(program: Command, cli: CliContext): void {
  program
    .command("status")
    .description("show each instance as fresh / stale / missing, with a one-line reason (reads only)")
    .argument("[targets...]", "limit to these stages or instances and their upstream")
    .option("-p, --profile <name>", "params profile")
    .option("-b, --backend <name>", "compute backend the fingerprints assume", "auto")
    .option("--json", "print {schemaVersion, instances: [...]} on stdout")
    .option("--exit-code", "exit 1 when anything is not fresh (for CI gates)")
    .addHelpText("after", EXAMPLES(["sed-pipe status", "sed-pipe status eval --json | jq '.instances[] | select(.state != \"fresh\")'"]))
    .action(async (targets: string[], opts) => {
      const [{ resolveTargets }, { planOnly, stateOf }] = await Promise.all([lazy.select(), lazy.workspace()]);
      const ws = await open(cli, opts);
      const steps = await planOnly(ws, resolveTargets(ws.pipeline, targets));
      const byId = new Map(steps.map((s) => [s.id, s]));
      const rows = steps.map((s) => ({ id: s.id, state: stateOf(s, byId), action: s.action, reason: s.reason, changes: s.changes }));
      if (opts.json) {
        cli.out(JSON.stringify({ schemaVersion: SCHEMA_VERSION, profile: ws.pipeline.profile, instances: rows }) + "\n");
      } else {
        const width = Math.min(48, Math.max(0, ...rows.map((r) => r.id.length)));
        const paint = (state: string) =>
          !cli.color ? state.padEnd(7) : `\x1b[${state === "fresh" ? 32 : state === "stale" ? 33 : 31}m${state.padEnd(7)}\x1b[0m`;
        for (const r of rows) cli.out(`${paint(r.state)} ${r.id.padEnd(width)}${r.state === "fresh" ? "" : `  ${r.reason}`}\n`);
        const n = (st: string) => rows.filter((r) => r.state === st).length;
        cli.out(`${n("fresh")} fresh, ${n("stale")} stale, ${n("missing")} missing (profile ${ws.pipeline.profile})\n`);
      }
      cli.setExit(opts.exitCode && rows.some((r) => r.state !== "fresh") ? 1 : EXIT.ok);
    });

  program
    .command("why")
    .description("explain why an instance would run: param old -> new, changed dep, code file, runtime, upstream")
    .argument("<target>", "a stage (all its instances) or one instance; unique prefixes work")
    .option("-p, --profile <name>", "params profile")
    .option("-b, --backend <name>", "compute backend the fingerprints assume", "auto")
    .option("--json", "print the plan steps as JSON")
    .addHelpText("after", EXAMPLES(["sed-pipe why train-heads@ood_gen", "sed-pipe why eval"]))
    .action(async (target: string, opts) => {
      const [{ matchTarget, resolveTargets }, { planOnly }, { explain }] = await Promise.all([lazy.select(), lazy.workspace(), lazy.plan()]);
      const ws = await open(cli, opts);
      const ids = matchTarget(ws.pipeline, target);
      const steps = await planOnly(ws, resolveTargets(ws.pipeline, [target]));
      const byId = new Map(steps.map((s) => [s.id, s]));
      if (opts.json) {
        cli.out(JSON.stringify({ schemaVersion: SCHEMA_VERSION, steps: ids.map((id) => byId.get(id)) }) + "\n");
        return;
      }
      for (const id of ids) for (const line of whyLines(explain, byId, id, 0, new Set())) cli.out(line + "\n");
    });
}

/** explain() of a step, then the chain of causes through upstream instances that will run. */
export function whyLines(
  explain: (step: PlanStep) => string[],
  byId: Map<string, PlanStep>,
  id: string,
  depth: number,
  seen: Set<string>,
): string[] {
  const step = byId.get(id);
  if (!step || seen.has(id)) return [];
  seen.add(id);
  const pad = "    ".repeat(depth);
  const lines = explain(step).map((l) => pad + l);
  for (const c of step.changes) {
    if (c.kind === "upstream") {
      const up = whyLines(explain, byId, c.id, depth + 1, seen);
      if (up.length) lines.push(`${pad}  because:`, ...up);
    }
  }
  return lines;
}

// ---------------------------------------------------------------------------------------------
// invalidate / dag / name / logs

function stageEdges(p: Pipeline): Map<string, Set<string>> {
  const ups = new Map<string, Set<string>>([...p.stages.keys()].map((s) => [s, new Set<string>()]));
  p.graph.forEachEdge((_e, _attr, src, dst) => {
    const a = p.instances.get(src)!.stage;
    const b = p.instances.get(dst)!.stage;
    if (a !== b) ups.get(b)!.add(a);
  });
  return ups;
}

function registerMaintenanceCommands(program: Command, cli: CliContext): void {
  program
    .command("invalidate")
    .description("remove lock entries so these instances rerun; cache objects are never deleted")
    .argument("<stage>", "a stage or instance (unique prefixes work)")
    .option("-d, --downstream", "also invalidate everything downstream of it")
    .option("-p, --profile <name>", "params profile")
    .option("--no-wait", "fail at once if a run holds the workspace")
    .addHelpText("after", EXAMPLES(["sed-pipe invalidate train-heads", "sed-pipe invalidate cache-features@in_val --downstream"]))
    .action(async (stage: string, opts) => {
      const [{ matchTarget, downstreamOf }, { LockStore: LockStoreClass }] = await Promise.all([lazy.select(), lazy.lockFile()]);
      const ws = await open(cli, opts);
      let ids = matchTarget(ws.pipeline, stage);
      if (opts.downstream) ids = downstreamOf(ws.pipeline, ids);
      const lock = await takeRunLock(cli, ws, opts.wait !== false, "invalidate");
      try {
        const ls = await LockStoreClass.open(ws.root);
        let removed = 0;
        for (const id of ids) {
          if (!ls.entry(id)) continue;
          await ls.set(id, undefined);
          removed++;
          cli.out(`invalidated ${id}\n`);
        }
        cli.out(`${removed} lock entr${removed === 1 ? "y" : "ies"} removed (${ids.length - removed} had none); cached outputs are kept\n`);
      } finally {
        await lock.release();
      }
    });

  program
    .command("dag")
    .description("print the stage graph (or every instance with --instances)")
    .option("--mermaid", "print a Mermaid flowchart")
    .option("--instances", "one node per instance instead of per stage")
    .option("-p, --profile <name>", "params profile")
    .addHelpText("after", EXAMPLES(["sed-pipe dag", "sed-pipe dag --mermaid > dag.mmd"]))
    .action(async (opts) => {
      const o: { profile?: string } = {};
      if (opts.profile !== undefined) o.profile = opts.profile;
      const ws = await open(cli, o);
      const p = ws.pipeline;
      const nodes: Array<{ id: string; label: string; ups: string[] }> = [];
      if (opts.instances) {
        for (const id of p.instances.keys()) nodes.push({ id, label: id, ups: p.graph.inNeighbors(id).sort() });
      } else {
        const ups = stageEdges(p);
        for (const [name, decl] of p.stages) {
          const n = decl.instanceIds.length;
          nodes.push({ id: name, label: n > 1 ? `${name} (${n} instances)` : name, ups: [...ups.get(name)!].sort() });
        }
      }
      if (opts.mermaid) {
        const key = new Map(nodes.map((n, i) => [n.id, `n${i}`]));
        cli.out("flowchart TD\n");
        for (const n of nodes) cli.out(`  ${key.get(n.id)}["${n.label.replace(/"/g, "#quot;")}"]\n`);
        for (const n of nodes) for (const u of n.ups) cli.out(`  ${key.get(u)} --> ${key.get(n.id)}\n`);
      } else {
        for (const n of nodes) cli.out(`${n.label}${n.ups.length ? `  <- ${n.ups.join(", ")}` : ""}\n`);
      }
    });

  program
    .command("name")
    .description("print the reference implementation's cached-feature file name for a dataset and model")
    .requiredOption("--dataset <key>", "dataset key, e.g. \"Gaussian Noise_1\"")
    .requiredOption("--model-path <path>", "the model path exactly as the reference saw it (absolute, normalised)")
    .option("--model-name <name>", "model name", "deit3_21k")
    .addOption(new Option("--epochs <n>", "feature epochs").default(1).argParser(intOption("--epochs", 1)))
    .addOption(new Option("--samples <n>", "samples").default(50000).argParser(intOption("--samples", 1)))
    .addHelpText("after", EXAMPLES(['sed-pipe name --dataset "Brightness_1" --model-path /models/deit3_21k.pth']))
    .action(async (opts) => {
      const { referenceFeatureFileName } = await lazy.referenceName();
      cli.out(
        referenceFeatureFileName({
          modelPath: opts.modelPath,
          modelName: opts.modelName,
          datasetKey: opts.dataset,
          epochs: opts.epochs,
          samples: opts.samples,
        }) + "\n",
      );
    });

  program
    .command("logs")
    .description("print the log of an instance's last run")
    .argument("<instance>", "an instance (unique prefixes work)")
    .option("-p, --profile <name>", "params profile")
    .addHelpText("after", EXAMPLES(["sed-pipe logs train-heads@ood_gen"]))
    .action(async (target: string, opts) => {
      const o: { profile?: string } = {};
      if (opts.profile !== undefined) o.profile = opts.profile;
      const [{ matchTarget }, { logPathFor }] = await Promise.all([lazy.select(), lazy.execute()]);
      const ws = await open(cli, o);
      const ids = matchTarget(ws.pipeline, target);
      if (ids.length !== 1) {
        throw new SedPipeError(`"${target}" names ${ids.length} instances: ${ids.slice(0, 5).join(", ")}${ids.length > 5 ? ", ..." : ""}`, {
          hint: "logs shows one instance: give its full id, e.g. " + ids[0],
        });
      }
      const path = logPathFor(ws.cacheDir, ids[0]!);
      let text: string;
      try {
        text = await readFile(path, "utf8");
      } catch {
        throw new SedPipeError(`no log for ${ids[0]} yet (${relative(cli.cwd, path)})`, {
          hint: "it has not run in this workspace; logs keep the last run of each instance",
          exitCode: EXIT.usage,
        });
      }
      cli.out(text);
    });
}

// ---------------------------------------------------------------------------------------------
// Extension point: other parts of sed-pipe add their commands here, each as
// `registerXCommands(program: Command, cli: CliContext): void` in its own module, listed below with
// the top-level command names it adds. A module is imported only when argv names one of its commands
// (or for help / an unknown command), so `status` does not pay for ink, tar or chokidar at start-up.
type Register = (program: Command, cli: CliContext) => void;
export const EXTRA_COMMANDS: Array<{ names: string[]; load: () => Promise<Register> }> = [
  { names: ["watch"], load: async () => (await import("./ui/tui-watch-command.ts")).registerWatchCommands },
  { names: ["cache", "gc"], load: async () => (await import("./store/cache-transfer-commands.ts")).registerCacheCommands },
  { names: ["inspect"], load: async () => (await import("./ui/inspect-command.ts")).registerInspectCommands },
];
const BUILTIN_COMMANDS = ["run", "status", "why", "invalidate", "dag", "name", "logs"];

async function extraCommandsFor(argv: string[]): Promise<Register[]> {
  const word = argv.find((a) => !a.startsWith("-"));
  if (word !== undefined && BUILTIN_COMMANDS.includes(word)) return [];
  if (word === undefined && (argv.includes("-V") || argv.includes("--version"))) return [];
  const wanted = EXTRA_COMMANDS.filter((e) => word !== undefined && e.names.includes(word));
  // No command, `help`, or an unknown word: load them all so help and "did you mean" see every command.
  return Promise.all((wanted.length ? wanted : EXTRA_COMMANDS).map((e) => e.load()));
}

export function buildProgram(cli: CliContext, extra: Register[] = []): Command {
  const program = new Command("sed-pipe")
    .description("a content-hashed pipeline runner; its first pipeline reproduces SED (arXiv 2409.16797)")
    .version("0.1.0")
    .showSuggestionAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => cli.out(s), writeErr: (s) => cli.err(s) })
    .addHelpText(
      "after",
      EXAMPLES(["sed-pipe run tables", "sed-pipe status", "sed-pipe why eval@ood_gen/Brightness_1", "sed-pipe dag --mermaid"]) +
        "\nExit codes: 0 ok, 1 a stage failed, 2 usage or config error, 130 interrupted.\n",
    );
  registerRunCommand(program, cli);
  registerStatusCommands(program, cli);
  registerMaintenanceCommands(program, cli);
  for (const register of extra) register(program, cli);
  for (const c of program.commands) c.exitOverride().configureOutput({ writeOut: (s) => cli.out(s), writeErr: (s) => cli.err(s) });
  return program;
}

let epipeGuard = false;

function defaultContext(): CliContext {
  const env = process.env;
  if (!epipeGuard) {
    epipeGuard = true;
    // `sed-pipe status | head`: the reader went away; that is not an error worth a stack trace.
    for (const stream of [process.stdout, process.stderr]) {
      stream.on("error", (err: NodeJS.ErrnoException) => {
        if (err.code === "EPIPE") process.exit(process.exitCode ?? 0);
        throw err;
      });
    }
  }
  const color =
    env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0"
      ? true
      : !!process.stdout.isTTY && env.NO_COLOR === undefined && env.TERM !== "dumb";
  return {
    cwd: process.cwd(),
    env,
    out: (t) => void process.stdout.write(t),
    stdout: process.stdout,
    err: (t) => void process.stderr.write(t),
    color,
    root: () => findRoot(process.cwd()),
    setExit: () => {},
    onSignal: (handler) => {
      const h = (sig: NodeJS.Signals) => handler(sig);
      process.on("SIGINT", h);
      process.on("SIGTERM", h);
      return () => {
        process.off("SIGINT", h);
        process.off("SIGTERM", h);
      };
    },
  };
}

/** Runs one sed-pipe command; returns the exit code (bin/sed-pipe.js sets process.exitCode). */
export async function main(argv: string[], ctx?: Partial<CliContext>): Promise<number> {
  let code: number = EXIT.ok;
  const base = { ...defaultContext(), ...ctx };
  let root: string | undefined;
  const cli: CliContext = { ...base, root: ctx?.root ?? (() => (root ??= findRoot(base.cwd))), setExit: (c) => (code = c) };
  const debug = cli.env.SED_PIPE_DEBUG === "1";
  try {
    await buildProgram(cli, await extraCommandsFor(argv)).parseAsync(argv, { from: "user" });
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help") return EXIT.ok;
      // commander has printed "error: ..." already.
      return EXIT.usage;
    }
    if (err instanceof SedPipeError) {
      cli.err(`error: ${err.message}\n`);
      if (err.hint) cli.err(`hint: ${err.hint}\n`);
      if (debug && err.stack) cli.err(err.stack + "\n");
      return err.exitCode;
    }
    const e = err as Error;
    cli.err(`error: ${e?.message ?? String(err)}\n`);
    if (debug && e?.stack) cli.err(e.stack + "\n");
    else cli.err("hint: this is a bug in sed-pipe; rerun with SED_PIPE_DEBUG=1 for the stack trace and report it\n");
    return EXIT.stageFailed;
  }
}

export type { RunnerEvent };
