// `sed-pipe doctor [--json] [--no-self-check]`: the machine as sed-pipe sees it, for bug reports.
// Exit 1 when a backend's self-check disagrees with the cpu backend.
import type { Command } from "commander";
import type { CliContext } from "./context.ts";
import { EXAMPLES } from "./common.ts";

export function registerDoctorCommand(program: Command, cli: CliContext): void {
  program
    .command("doctor")
    .description("the machine as sed-pipe sees it: Node, OS, cores, memory, packages, OpenBLAS, GPU adapters, every backend (loaded or why not) with a self-check against the cpu backend")
    .option("--json", "print the report as JSON (stable fields: schemaVersion)")
    .option("--no-self-check", "only load the backends; skip the small ViT forward and SED steps")
    .addHelpText("after", EXAMPLES(["sed-pipe doctor", "sed-pipe doctor --json > doctor.json"]))
    .action(async (opts: { json?: boolean; selfCheck: boolean }) => {
      const { doctor, formatDoctor, mismatches } = await import("../ml/doctor.ts");
      const r = await doctor({ selfCheck: opts.selfCheck, log: opts.json ? undefined : (l) => cli.err(`doctor: ${l}\n`) });
      cli.out(opts.json ? JSON.stringify(r) + "\n" : formatDoctor(r));
      // A backend that loads but computes other numbers than the cpu backend is a bug to report.
      if (mismatches(r).length > 0) cli.setExit(1);
    });
}
