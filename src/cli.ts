// The sed-pipe command line: the only reader of argv, env and TTY, and the only place that turns
// errors and run outcomes into output and exit codes. The commands live in src/commands/.
import { statfs } from "node:fs/promises";
import { dirname, isAbsolute, relative, resolve, sep } from "node:path";
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
        "\nExit codes: 0 ok, 1 a stage failed (or the run could not write: disk full, read-only), 2 usage or config error,\n" +
        "70 internal error (a bug in sed-pipe), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).\n",
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

// ---------------------------------------------------------------------------------------------
// File-system errors that are not bugs: a full or read-only disk, permissions, too many open files.

const FS_CODES = new Set(["EROFS", "ENOSPC", "EDQUOT", "EACCES", "EPERM", "EMFILE", "ENFILE"]);

/** The first error in err's cause chain with one of FS_CODES, if any. */
export function findFsError(err: unknown): NodeJS.ErrnoException | null {
  for (let e: unknown = err, depth = 0; e && typeof e === "object" && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === "string" && FS_CODES.has(code)) return e as NodeJS.ErrnoException;
  }
  return null;
}

const VERBS: Record<string, string> = {
  mkdir: "create",
  open: "open",
  write: "write",
  rename: "move",
  unlink: "remove",
  rmdir: "remove",
  rm: "remove",
  copyfile: "copy",
  symlink: "link",
  link: "link",
  utime: "touch",
  futime: "touch",
  chmod: "change the mode of",
  scandir: "list",
  read: "read",
  stat: "read",
};

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} bytes`;
}

/** Free bytes for an unprivileged writer on the disk holding `path` (its nearest existing folder). */
async function freeBytes(path: string): Promise<number | null> {
  for (let p = path, i = 0; i < 64; p = dirname(p), i++) {
    try {
      const s = await statfs(p);
      return Number(s.bavail) * Number(s.bsize);
    } catch {
      if (dirname(p) === p) return null;
    }
  }
  return null;
}

/**
 * A user-facing error for a file-system failure: what could not be done to which path, and what
 * to do about it. Exit 1 when it stopped a run (`run`, `watch`), else 2. `root`: the workspace, when
 * known (names the disk when the error has no path, e.g. a failed write(2)).
 */
export async function fileSystemError(e: NodeJS.ErrnoException, o: { cwd: string; root: string | null; command: string | undefined }): Promise<SedPipeError> {
  const exitCode = o.command === "run" || o.command === "watch" ? EXIT.stageFailed : EXIT.usage;
  const abs = e.path ? resolve(o.cwd, e.path) : null;
  const show = (p: string) => {
    const r = relative(o.cwd, p);
    return r && !r.startsWith("..") && !isAbsolute(r) ? r : p;
  };
  const inRoot = (p: string) => o.root !== null && (p === o.root || p.startsWith(o.root.endsWith(sep) ? o.root : o.root + sep));
  const verb = VERBS[e.syscall ?? ""] ?? "write";
  const what = abs ? `cannot ${verb} ${show(abs)}` : `cannot ${verb}`;
  // The folder the hint talks about: the path's folder, else the workspace.
  const where = abs ?? o.root ?? o.cwd;
  const folder = abs ? dirname(abs) : where;
  const folderText = abs ? `${show(folder)}${show(folder).endsWith(sep) ? "" : sep}` : o.root ? `the workspace (${o.root})` : o.cwd;
  switch (e.code) {
    case "ENOSPC":
    case "EDQUOT": {
      const free = await freeBytes(where);
      const freeText = free === null ? "" : ` (${formatBytes(free)} free)`;
      return e.code === "ENOSPC"
        ? new SedPipeError(`${what}: no space left on the disk`, { exitCode, hint: `free space on the disk holding ${folderText}${freeText}, then rerun`, cause: e })
        : new SedPipeError(`${what}: disk quota exceeded`, {
            exitCode,
            hint: `free space within your quota on the disk holding ${folderText}${freeText}, or ask for a larger quota, then rerun`,
            cause: e,
          });
    }
    case "EROFS":
      return new SedPipeError(`${what}: read-only file system`, {
        exitCode,
        hint: inRoot(where)
          ? "the workspace is read-only: run from a writable copy (sed-pipe writes cache/, artifacts/ and pipeline.lock)"
          : `${folderText} is on a read-only file system: make it writable, or run from a writable copy of the workspace`,
        cause: e,
      });
    case "EACCES":
    case "EPERM":
      return new SedPipeError(`${what}: permission denied`, {
        exitCode,
        hint: `check the owner and permissions of ${folderText} (ls -ld ${show(folder)}); sed-pipe must be able to write cache/, artifacts/ and pipeline.lock`,
        cause: e,
      });
    default: // EMFILE, ENFILE
      return new SedPipeError(`${what}: too many open files`, {
        exitCode,
        hint: "raise the open-file limit (ulimit -n 4096), or run fewer instances at once (-j 1)",
        cause: e,
      });
  }
}

/** The command word of argv ("run", "cache", ...), skipping leading options. */
function commandOf(argv: string[]): string | undefined {
  return argv.find((a) => !a.startsWith("-"));
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
    let shown = err;
    if (!(err instanceof SedPipeError)) {
      const fsErr = findFsError(err);
      if (fsErr) {
        let known: string | null = null;
        try {
          known = cli.root();
        } catch {
          known = null;
        }
        shown = await fileSystemError(fsErr, { cwd: cli.cwd, root: known, command: commandOf(argv) });
      }
    }
    if (shown instanceof SedPipeError) {
      cli.err(`error: ${shown.message}\n`);
      if (shown.hint) cli.err(`hint: ${shown.hint}\n`);
      if (debug && (err as Error).stack) cli.err((err as Error).stack + "\n");
      return shown.exitCode;
    }
    // Anything else is a bug (EX_SOFTWARE).
    const e = err as Error;
    cli.err(`error: ${e?.message ?? String(err)}\n`);
    if (debug && e?.stack) cli.err(e.stack + "\n");
    else cli.err("hint: this is a bug in sed-pipe; rerun with SED_PIPE_DEBUG=1 for the stack trace and report it\n");
    return EXIT.internal;
  }
}

