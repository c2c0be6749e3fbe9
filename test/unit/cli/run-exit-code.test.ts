// The run command's exit code from a run's outcome: literal results, no processes.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { runExitCode } from "../../../src/commands/run.ts";
import { InstanceFailure } from "../../../src/runner/scheduler.ts";

const failures = (...codes: Array<number | undefined>) =>
  new Map(codes.map((c, i) => [`i${i}`, new InstanceFailure("x", [], false, c === undefined ? {} : { exitCode: c })]));

test("ok 0; interrupted 130 by SIGINT, 143 by SIGTERM", () => {
  assert.is(runExitCode({ outcome: "ok", failures: new Map() }, null), 0);
  assert.is(runExitCode({ outcome: "interrupted", failures: new Map() }, "SIGINT"), 130);
  assert.is(runExitCode({ outcome: "interrupted", failures: new Map() }, "SIGTERM"), 143);
});

test("2 when every failure is a config/usage error of the stage, else 1", () => {
  assert.is(runExitCode({ outcome: "failed", failures: failures(2) }, null), 2);
  assert.is(runExitCode({ outcome: "failed", failures: failures(2, 2) }, null), 2);
  assert.is(runExitCode({ outcome: "failed", failures: failures(2, undefined) }, null), 1);
  assert.is(runExitCode({ outcome: "failed", failures: failures(1) }, null), 1);
  assert.is(runExitCode({ outcome: "failed", failures: failures() }, null), 1);
});

test.run();
