// `sed-pipe calibrate`: measures this machine's throughput per stage on a backend (src/ml/calibrate.ts)
// and keeps it in cache/state/calibration.json, where the plan's time estimates read it.
import type { Command } from "commander";
import type { CliContext } from "./context.ts";
import { EXAMPLES, JSON_SCHEMA_VERSION } from "./common.ts";

export function registerCalibrateCommand(program: Command, cli: CliContext): void {
  program
    .command("calibrate")
    .description("measure this machine's throughput per stage (DeiT-B images/s, training samples/s, eval rows/s) for the dry run's time estimates")
    .option("-b, --backend <name>", "compute backend to measure (as for run)", "auto")
    .option("--json", "print the calibration as JSON")
    .addHelpText("after", EXAMPLES(["sed-pipe calibrate", "sed-pipe calibrate --backend wasm", "sed-pipe run tables --profile paper --dry-run"]))
    .action(async (opts) => {
      const [{ calibrate }, { thisMachine, writeCalibration, CALIBRATION_FILE }, { formatDuration }] = await Promise.all([
        import("../ml/calibrate.ts"),
        import("../store/calibration.ts"),
        import("../pipeline/needs.ts"),
      ]);
      const root = cli.root();
      const t = Date.now();
      const log = opts.json ? () => {} : (l: string) => cli.out(l + "\n");
      const r = await calibrate({ backend: opts.backend ?? "auto", log });
      const c = { ...r, machine: thisMachine(), measuredAt: new Date().toISOString() };
      await writeCalibration(root, c);
      if (opts.json) cli.out(JSON.stringify({ schemaVersion: JSON_SCHEMA_VERSION, calibration: c }) + "\n");
      else cli.out(`calibrated ${c.backend} on ${c.machine} in ${formatDuration((Date.now() - t) / 1000)}; saved to ${CALIBRATION_FILE}\n`);
    });
}
