// `sed-pipe run`: plan the targets' upstream closure and execute it (src/runner/execute.ts) with the
// picked event sink. Maps the run's outcome to an exit code through the context.
import { availableParallelism } from "node:os";
import { Option, type Command } from "commander";
import type { CliContext } from "./context.ts";
import { EXIT, SedPipeError } from "../errors.ts";
import type { EventSink } from "../runner/events.ts";
import type { LockStore } from "../store/lock-file.ts";
import type { RunLock } from "../store/run-lock.ts";
import type { ExecuteOptions, RunResult } from "../runner/execute.ts";
import type { ExecutorSetting } from "../pipeline/types.ts";
import { EXAMPLES, failIfBusy, gpusFrom, intOption, openFor, settingsFromEnv, takeRunLock, warnLine } from "./common.ts";

export function registerRunCommand(program: Command, cli: CliContext): void {
  program
    .command("run")
    .description("bring targets (default: everything) up to date: run stale instances, restore cached ones")
    .argument("[targets...]", "stages or instances (unique prefixes work); their upstream closure is included")
    .option("-n, --dry-run", "print the plan with a reason per instance; run nothing")
    .option("-f, --force [stage]", "run even if fresh: every target, or only this stage/instance")
    .addOption(new Option("-j, --jobs <n>", "instances run in parallel, at most (default: the cores); within that, stages' resources decide").argParser(intOption("--jobs", 1)))
    .addOption(new Option("--gpus <n>", "GPUs this machine gives stages that ask for them (default: SED_PIPE_GPUS, else 0); local runs only").argParser(intOption("--gpus", 0)))
    .option("-k, --keep-going", "after a failure, keep running instances that do not depend on it")
    .option("-p, --profile <name>", "params profile from pipeline.yaml (default: default_profile)")
    .option("-b, --backend <name>", "compute backend for stages: auto, tfjs-node-gpu, tfjs-node, wasm (best matMul path), wasm+blas, wasm-fixed, cpu", "auto")
    .option("--json", "print runner events as NDJSON on stdout")
    .option("--paranoid", "check deps in the profile's immutable folders file by file too")
    .option("--no-wait", "fail at once (exit 2) if another run holds the workspace, instead of waiting")
    .option("-v, --verbose", "plain output: also print stage log lines and fresh instances")
    .option("--ui <kind>", "auto (live view on a terminal, plain lines otherwise), ink or plain", "auto")
    .option("-e, --executor <kind>", "where instances run: local (worker processes here) or slurm (batch jobs); default: the profile's executor, else SED_PIPE_EXECUTOR, else local")
    .addOption(new Option("--retries <n>", "slurm: resubmit an instance whose job failed for the cluster's reasons (NODE_FAIL, PREEMPTED...) up to n times").argParser(intOption("--retries", 0)))
    .addHelpText(
      "after",
      EXAMPLES([
        "sed-pipe run tables",
        "sed-pipe run --dry-run",
        "sed-pipe run eval -j 2 --keep-going",
        "sed-pipe run tables --profile paper --gpus 1",
        "sed-pipe run train --force train-heads@ood_gen",
        "sed-pipe run tables --profile paper --executor slurm --retries 2",
      ]),
    )
    .action(async (targets: string[], opts) => {
      if (!["auto", "ink", "plain"].includes(opts.ui)) throw new SedPipeError(`--ui must be auto, ink or plain (got "${opts.ui}")`);
      const gpus = gpusFrom(cli.env, opts.gpus);
      if (opts.wait === false && !opts.dryRun) await failIfBusy(cli);
      const [{ matchTarget, resolveTargets }, { executeRun }, { planner, needsFor }, { LockStore: LockStoreClass }, { pickSink }] = await Promise.all([
        import("../pipeline/select.ts"),
        import("../runner/execute.ts"),
        import("../runner/workspace.ts"),
        import("../store/lock-file.ts"),
        import("../ui/pick-sink.ts"),
      ]);
      const ws = await openFor(cli, opts);
      const p = ws.pipeline;
      const slurm = slurmOptions(cli, p.executor, opts.executor, opts.retries);
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
        // A dry run has no live progress, only the plan and its needs: text, also on a terminal.
        ui: opts.dryRun && opts.ui === "auto" ? "plain" : opts.ui,
        verbose: !!opts.verbose,
        write: cli.out,
      });
      const sink: EventSink = picked.sink;
      // On a cluster the scheduler decides what runs at once: -j only caps the jobs in flight.
      const jobs: number = opts.jobs ?? (slurm ? 1000 : defaultJobs());
      const settings = settingsFromEnv(cli.env);
      if (slurm && opts.gpus !== undefined) warnLine(cli, "--gpus counts this machine's GPUs for local runs; on Slurm, jobs get the GPUs their stage's resources ask for");
      const ac = new AbortController();
      const killNow = new AbortController();
      let signals = 0;
      let firstSignal: NodeJS.Signals | null = null;
      const off = cli.onSignal((sig) => {
        signals++;
        if (signals === 1) {
          firstSignal = sig;
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
        if (!opts.dryRun) lock = await takeRunLock(cli, ws.cacheDir, opts.wait !== false, "run", ac.signal);
        lockStore = await LockStoreClass.open(ws.root);
        const result = await executeRun({
          pipeline: p,
          order,
          planner,
          fingerprinter: ws.hasher,
          digests: ws.digests,
          store: ws.store,
          lock: lockStore,
          cacheDir: ws.cacheDir,
          jobs,
          gpus,
          keepGoing: !!opts.keepGoing,
          force,
          dryRun: !!opts.dryRun,
          needs: (steps) => needsFor(ws, steps),
          backend: opts.backend ?? "auto",
          settings,
          fromSource: cli.env.SED_PIPE_NO_BUNDLE === "1",
          workerEnv: cli.env,
          ...(slurm ? { slurm } : {}),
          signal: ac.signal,
          emit: sink,
          graceMs: 3000,
          killSignal: killNow.signal,
        });
        if (result.interruptedWhilePlanning) cli.err("interrupted while planning: nothing was decided, nothing ran\n");
        cli.setExit(runExitCode(result, firstSignal));
      } finally {
        off();
        await picked.close().catch(() => {});
        await lock?.release();
      }
    });
}

/**
 * 0 ok; 130 / 143 interrupted by SIGINT / SIGTERM; 2 when every failure was a config or usage error
 * of the stage's own (its params or inputs were wrong, not its computation); else 1.
 */
export function runExitCode(r: Pick<RunResult, "outcome" | "failures">, signal: NodeJS.Signals | null): number {
  if (r.outcome === "ok") return EXIT.ok;
  if (r.outcome === "interrupted") return signal === "SIGTERM" ? EXIT.terminated : EXIT.interrupted;
  const codes = [...r.failures.values()].map((f) => f.info.exitCode ?? EXIT.stageFailed);
  return codes.length > 0 && codes.every((c) => c === EXIT.usage) ? EXIT.usage : EXIT.stageFailed;
}

/**
 * The Slurm executor's options when instances run on Slurm: `--executor`, else the profile's
 * `executor:`, else SED_PIPE_EXECUTOR, else local (null). SED_PIPE_SLURM_NODE names the node binary
 * jobs run (default: this one, which must then be on the shared file system).
 */
export function slurmOptions(
  cli: Pick<CliContext, "env">,
  profile: ExecutorSetting | undefined,
  flag: string | undefined,
  retries: number | undefined,
): NonNullable<ExecuteOptions["slurm"]> | null {
  const kind = flag ?? (profile && profile.kind !== "local" ? profile.kind : undefined) ?? cli.env.SED_PIPE_EXECUTOR ?? "local";
  if (kind !== "local" && kind !== "slurm") {
    throw new SedPipeError(`unknown executor "${kind}"`, { hint: "use --executor local or --executor slurm", exitCode: EXIT.usage });
  }
  if (kind === "local") return null;
  const node = cli.env.SED_PIPE_SLURM_NODE ?? profile?.slurm.node;
  return {
    env: cli.env,
    ...(node ? { node } : {}),
    retries: retries ?? profile?.slurm.retries ?? 0,
    ...(profile?.slurm.groupMax !== undefined ? { groupMax: profile.slurm.groupMax } : {}),
  };
}

function defaultJobs(): number {
  return Math.max(1, availableParallelism());
}

