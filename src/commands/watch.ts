// The `watch` command: CLI glue that runs src/runner/watch.ts cycles and shows each run through the
// picked sink (Ink on a TTY, plain lines, NDJSON). Registered by src/cli.ts; prints only through
// the context it is given. Watch status lines go to stderr so `--json` stdout stays pure NDJSON.
import type { CliContext } from "./context.ts";
import { availableParallelism } from "node:os";
import { Option, type Command } from "commander";
import { EXIT, SedPipeError } from "../errors.ts";
import { fingerprintBackend, gpusFrom, intOption, linkModeFromEnv, settingsFromEnv } from "./common.ts";

/** The part of the CLI context this command uses. */
export type WatchCommandContext = Pick<CliContext, "cwd" | "env" | "out" | "err" | "root" | "setExit" | "onSignal" | "stdout">;

/** Overrides the stream the live view draws on (tests pass a non-TTY stand-in). */
export interface WatchDeps {
  stdout?: { isTTY?: boolean; write(text: string): unknown; columns?: number };
}

export function registerWatchCommands(program: Command, cli: WatchCommandContext, deps: WatchDeps = {}): void {
  program
    .command("watch")
    .description("run the targets, then rerun what became stale whenever pipeline.yaml, params, stage code or deps change")
    .argument("[targets...]", "stages or instances (default: everything); their upstream closure is included")
    .addOption(new Option("-j, --jobs <n>", "instances run in parallel, at most (default: the cores); within that, stages' resources decide").argParser(intOption("--jobs", 1)))
    .addOption(new Option("--gpus <n>", "GPUs this machine gives stages that ask for them (default: SED_PIPE_GPUS, else 0)").argParser(intOption("--gpus", 0)))
    .option("-k, --keep-going", "after a failure, keep running instances that do not depend on it")
    .option("-p, --profile <name>", "params profile from pipeline.yaml")
    .option("-b, --backend <name>", "compute backend for stages", "auto")
    .addOption(new Option("--debounce <ms>", "quiet time after the last change before rerunning").default(300).argParser(intOption("--debounce", 0)))
    .option("--poll", "poll file stats instead of OS file events (network drives, some containers)")
    .option("--json", "print runner events as NDJSON on stdout")
    .option("--ui <kind>", "auto, ink or plain", "auto")
    .option("-v, --verbose", "plain output: also print stage log lines")
    .addHelpText("after", "\nExamples:\n  $ sed-pipe watch tables\n  $ sed-pipe watch eval -j 2 --keep-going\n\nCtrl-C stops watching (a run in progress is stopped first).\n")
    .action(async (targets: string[], opts) => {
      if (!["auto", "ink", "plain"].includes(opts.ui)) {
        throw new SedPipeError(`--ui must be auto, ink or plain (got "${opts.ui}")`);
      }
      // Loaded when the command runs: registering commands must not slow every sed-pipe start-up.
      const [{ watchLoop }, { runWatchCycle }, { pickSink }] = await Promise.all([
        import("../runner/watch.ts"),
        import("../runner/watch-cycle.ts"),
        import("../ui/pick-sink.ts"),
      ]);
      const settings = settingsFromEnv(cli.env);
      const gpus = gpusFrom(cli.env, opts.gpus);
      const root = cli.root();
      const stdout = deps.stdout ?? cli.stdout ?? { isTTY: false, write: (t: string) => cli.out(t) };
      const stop = new AbortController();
      const killNow = new AbortController();
      let signals = 0;
      let interrupted = false;
      let firstSignal: NodeJS.Signals | null = null;
      const off = cli.onSignal((sig) => {
        signals++;
        if (signals === 1) {
          firstSignal = sig;
          cli.err(`\n${sig}: stopping watch (a running stage gets a few seconds to stop; Ctrl-C again kills it)\n`);
          stop.abort();
        } else killNow.abort();
      });
      const note = (t: string) => cli.err(t + "\n");
      const toldUnwatched = new Set<string>();
      try {
        await watchLoop({
          root,
          signal: stop.signal,
          debounceMs: opts.debounce,
          usePolling: !!opts.poll,
          onEvent: (e) => {
            if (e.type === "watching") note(`watching ${e.files} input files for changes (Ctrl-C to stop)`);
            else if (e.type === "change") note(`changed: ${e.paths.slice(0, 5).join(", ")}${e.paths.length > 5 ? `, +${e.paths.length - 5} more` : ""}`);
            else {
              const err = e.error;
              if (err instanceof SedPipeError) note(`error: ${err.message}${err.hint ? `\nhint: ${err.hint}` : ""}`);
              else note(`error: ${(err as Error)?.message ?? String(err)}`);
            }
          },
          cycle: async () => {
            const r = await runWatchCycle({
              root,
              targets,
              backend: opts.backend ?? "auto",
              fingerprintBackend: await fingerprintBackend(opts.backend),
              settings,
              fromSource: cli.env.SED_PIPE_NO_BUNDLE === "1",
              link: linkModeFromEnv(cli.env),
              workerEnv: cli.env,
              jobs: opts.jobs ?? Math.max(1, availableParallelism()),
              gpus,
              keepGoing: !!opts.keepGoing,
              signal: stop.signal,
              killSignal: killNow.signal,
              ...(opts.profile !== undefined ? { profile: opts.profile } : {}),
              onWarn: (m) => note(`warning: ${m}`),
              openSink: () =>
                pickSink({
                  stdout,
                  env: cli.env,
                  json: !!opts.json,
                  ui: opts.ui,
                  verbose: !!opts.verbose,
                  write: cli.out,
                }),
            });
            if (!r.run) note("up to date: nothing to run");
            for (const u of r.unwatched) {
              if (toldUnwatched.has(u)) continue;
              toldUnwatched.add(u);
              note(`not watched (a data folder outside the project; its changes show up at the next cycle): ${u}`);
            }
            if (r.run?.outcome === "interrupted") interrupted = true;
            return r.watch;
          },
        });
      } finally {
        off();
      }
      // Ctrl-C is how watch ends: that is success, unless it had to interrupt a run (SIGTERM: 143).
      cli.setExit(!interrupted ? EXIT.ok : firstSignal === "SIGTERM" ? EXIT.terminated : EXIT.interrupted);
    });
}
