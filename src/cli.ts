// The sed-pipe command line: the only reader of argv, env and TTY, and the only place that turns
// errors and run outcomes into output and exit codes. The commands live in src/commands/.
import { Command, CommanderError } from "commander";
import type { CliContext } from "./commands/context.ts";
import { commandsFor, type Register } from "./commands/index.ts";
import { EXIT, SedPipeError } from "./errors.ts";
import { findRoot } from "./runner/find-root.ts";

export type { CliContext } from "./commands/context.ts";

const EXAMPLES = (lines: string[]) => `\nExamples:\n${lines.map((l) => `  $ ${l}`).join("\n")}\n`;

export function buildProgram(cli: CliContext, commands: Register[] = []): Command {
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
  for (const register of commands) register(program, cli);
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
    await buildProgram(cli, await commandsFor(argv)).parseAsync(argv, { from: "user" });
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

