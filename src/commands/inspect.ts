// `sed-pipe inspect FILE.hdf5 [--json]`: what a cached-feature file holds and whether it is complete
// (src/io/inspect.ts does the reading; this module only wires the command and prints).
import { resolve } from "node:path";
import type { Command } from "commander";
import type { CliContext } from "./context.ts";

export function registerInspectCommands(program: Command, cli: CliContext): void {
  program
    .command("inspect")
    .description("show a feature HDF5 file: datasets, shapes, dtypes, chunks, filters, passes, completeness, label range")
    .argument("<file>", "an .hdf5 file in the reference layout (embed / label / index)")
    .option("--json", "print the report as JSON")
    .addHelpText(
      "after",
      "\nExamples:\n  $ sed-pipe inspect artifacts/features/in_val_deit3b_-1.hdf5\n  $ sed-pipe inspect --json data/cached/in_a_deit3b_-1_.hdf5\n",
    )
    .action(async (file: string, opts: { json?: boolean }) => {
      const { inspectFeatureFile, formatInspect } = await import("../io/inspect.ts");
      const report = await inspectFeatureFile(resolve(cli.cwd, file));
      cli.out(opts.json ? JSON.stringify(report, null, 2) + "\n" : formatInspect(report) + "\n");
      // A file the pipeline would refuse is reported, and the exit status says so.
      if (!report.usable) cli.setExit(1);
    });
}
