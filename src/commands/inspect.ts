// `sed-pipe inspect FILE.hdf5 [--json]`: what a cached-feature file holds and whether it is usable
// (src/io/inspect.ts does the reading; this module only wires the command and prints).
import { open, stat } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "commander";
import type { CliContext } from "./context.ts";
import { EXIT, SedPipeError } from "../errors.ts";
import { intOption } from "./common.ts";

/** A path the user typed that names no readable file is a usage error (exit 2), not a bad file. */
async function requireReadableFile(typed: string, abs: string): Promise<void> {
  let isFile: boolean;
  try {
    isFile = (await stat(abs)).isFile();
    if (isFile) await (await open(abs, "r")).close();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" || code === "ENOTDIR" ? "no such file" : code === "EACCES" || code === "EPERM" ? "permission denied" : `cannot read it (${code ?? String(err)})`;
    throw new SedPipeError(`inspect: ${typed}: ${why}`, { exitCode: EXIT.usage, hint: "give the path of a feature .hdf5 file, e.g. artifacts/features/in_val_deit3b_-1.hdf5" });
  }
  if (!isFile) throw new SedPipeError(`inspect: ${typed}: not a file`, { exitCode: EXIT.usage, hint: "give the path of a feature .hdf5 file, not a folder" });
}

export function registerInspectCommands(program: Command, cli: CliContext): void {
  program
    .command("inspect")
    .description("show a feature HDF5 file: datasets, shapes, dtypes, chunks, filters, passes, completeness, labels, non-finite values")
    .argument("<file>", "an .hdf5 file in the reference layout (embed / label / index)")
    .option("--json", "print the report as JSON")
    .option("--classes <n>", "number of classes: labels must be below it", intOption("--classes", 1))
    .option("--check-rows <n>", "check at most this many rows of embed for NaN/Inf, in evenly spaced blocks (default: every row)", intOption("--check-rows", 1))
    .addHelpText(
      "after",
      "\nExamples:\n  $ sed-pipe inspect artifacts/features/in_val_deit3b_-1.hdf5 --classes 1000\n  $ sed-pipe inspect --json data/cached/in_a_deit3b_-1_.hdf5\n" +
        "\nExit codes: 0 usable, 1 not usable (the report says why), 2 no such file or a bad option.\n",
    )
    .action(async (file: string, opts: { json?: boolean; classes?: number; checkRows?: number }) => {
      const abs = resolve(cli.cwd, file);
      await requireReadableFile(file, abs);
      const { inspectFeatureFile, formatInspect } = await import("../io/inspect.ts");
      const report = await inspectFeatureFile(abs, {
        ...(opts.classes !== undefined ? { classes: opts.classes } : {}),
        ...(opts.checkRows !== undefined ? { checkRows: opts.checkRows } : {}),
      });
      cli.out(opts.json ? JSON.stringify(report, null, 2) + "\n" : formatInspect(report) + "\n");
      // A file the pipeline would refuse is reported, and the exit status says so.
      if (!report.usable) cli.setExit(EXIT.stageFailed);
    });
}
