// The command families and the top-level command names each adds. A module is imported only when
// argv names one of its commands (or for help / an unknown command), so `status` does not pay for
// ink, tar or chokidar at start-up. Each module exports `register(program, cli)`.
import type { Command } from "commander";
import type { CliContext } from "./context.ts";

export type Register = (program: Command, cli: CliContext) => void;

export const COMMANDS: Array<{ names: string[]; load: () => Promise<Register> }> = [
  { names: ["run"], load: async () => (await import("./run.ts")).registerRunCommand },
  { names: ["status", "why"], load: async () => (await import("./status.ts")).registerStatusCommands },
  { names: ["invalidate", "dag", "name", "logs"], load: async () => (await import("./maintenance.ts")).registerMaintenanceCommands },
  { names: ["watch"], load: async () => (await import("./watch.ts")).registerWatchCommands },
  { names: ["cache", "gc"], load: async () => (await import("./cache.ts")).registerCacheCommands },
  { names: ["inspect"], load: async () => (await import("./inspect.ts")).registerInspectCommands },
  { names: ["jobs"], load: async () => (await import("./jobs.ts")).registerJobsCommands },
  { names: ["doctor"], load: async () => (await import("./doctor.ts")).registerDoctorCommand },
  { names: ["calibrate"], load: async () => (await import("./calibrate.ts")).registerCalibrateCommand },
];

/** The registrations argv needs: its command's family, or all of them for help, --version or a typo. */
export async function commandsFor(argv: string[]): Promise<Register[]> {
  const word = argv.find((a) => !a.startsWith("-"));
  const wanted = COMMANDS.filter((e) => word !== undefined && e.names.includes(word));
  if (word === undefined && (argv.includes("-V") || argv.includes("--version"))) return [];
  // No command, `help`, or an unknown word: load them all so help and "did you mean" see every command.
  return Promise.all((wanted.length ? wanted : COMMANDS).map((e) => e.load()));
}
