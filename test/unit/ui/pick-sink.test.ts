// Which renderer a run gets: Ink on an interactive TTY, plain lines in pipes and CI, NDJSON with --json.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { PassThrough } from "node:stream";
import { chooseUi, isCi, pickSink, useColor } from "../../../src/ui/pick-sink.ts";
import type { RunnerEvent } from "../../../src/runner/events.ts";
import { withTimeout } from "../../helpers/tmp.ts";

test("chooseUi: TTY without CI -> ink; pipes, CI and dumb terminals -> plain; --json wins", () => {
  assert.is(chooseUi({ isTTY: true, env: {} }), "ink");
  assert.is(chooseUi({ isTTY: false, env: {} }), "plain");
  assert.is(chooseUi({ isTTY: true, env: { CI: "true" } }), "plain");
  assert.is(chooseUi({ isTTY: true, env: { CI: "false" } }), "ink");
  assert.is(chooseUi({ isTTY: true, env: { TERM: "dumb" } }), "plain");
  assert.is(chooseUi({ isTTY: true, env: {}, columns: 0 }), "plain", "a pty of width 0 cannot be laid out");
  assert.is(chooseUi({ isTTY: true, env: {}, columns: 80 }), "ink");
  assert.is(chooseUi({ isTTY: true, env: {}, json: true }), "json");
  assert.is(chooseUi({ isTTY: false, env: { CI: "1" }, json: true }), "json");
  assert.is(chooseUi({ isTTY: true, env: {}, ui: "plain" }), "plain");
  assert.is(chooseUi({ isTTY: false, env: {}, ui: "ink" }), "plain", "ink needs a terminal");
  assert.is(chooseUi({ isTTY: true, env: { CI: "true" }, ui: "ink" }), "ink");
  assert.ok(isCi({ CI: "true" }) && isCi({ CI: "woodpecker" }) && !isCi({ CI: "" }) && !isCi({}));
});

test("colour: NO_COLOR always wins; FORCE_COLOR forces; else TTY and not dumb", () => {
  assert.is(useColor(true, {}), true);
  assert.is(useColor(false, {}), false);
  assert.is(useColor(true, { NO_COLOR: "1" }), false);
  assert.is(useColor(true, { NO_COLOR: "1", FORCE_COLOR: "1" }), false);
  assert.is(useColor(false, { FORCE_COLOR: "1" }), true);
  assert.is(useColor(true, { FORCE_COLOR: "0" }), false);
  assert.is(useColor(true, { TERM: "dumb" }), false);
});

const events: RunnerEvent[] = [
  { type: "plan", schemaVersion: 1, runId: "r", dryRun: false, jobs: 1, counts: { run: 1, restore: 0, skip: 0, pending: 0 }, steps: [{ id: "a", action: "run", reason: "new", changes: [] }] },
  { type: "instance-start", id: "a", action: "run", reason: "new", logPath: "cache/logs/a.log" },
  { type: "instance-done", id: "a", action: "ran", reason: "new", durationMs: 12 },
  { type: "run-done", outcome: "ok", counts: { ran: 1, restored: 0, skipped: 0, failed: 0, blocked: 0 }, durationMs: 20 },
];

test("pickSink in a pipe: plain lines, no escape codes", async () => {
  let out = "";
  const s = await pickSink({ stdout: { isTTY: false, write: (t: string) => (out += t) }, env: {} });
  assert.is(s.kind, "plain");
  for (const e of events) s.sink(e);
  await s.close();
  assert.match(out, /ok ran a/);
  assert.match(out, /done: 1 ran/);
  assert.not.match(out, /\x1b/);
});

test("pickSink --json: one event per line, parseable", async () => {
  let out = "";
  const s = await pickSink({ stdout: { isTTY: true, write: (t: string) => (out += t) }, env: {}, json: true });
  for (const e of events) s.sink(e);
  await s.close();
  const lines = out.trim().split("\n").map((l) => JSON.parse(l) as RunnerEvent);
  assert.equal(lines.map((l) => l.type), ["plan", "instance-start", "instance-done", "run-done"]);
});

test("pickSink on a TTY: Ink draws, close() shows the cursor again and leaves the final frame", () =>
  withTimeout(
    (async () => {
      const tty = Object.assign(new PassThrough(), { isTTY: true, columns: 100, rows: 40 });
      let out = "";
      tty.on("data", (d) => (out += d));
      const s = await pickSink({ stdout: tty as unknown as NodeJS.WriteStream, env: { NO_COLOR: "1" } });
      assert.is(s.kind, "ink");
      assert.is(s.color, false);
      for (const e of events) s.sink(e);
      await s.close();
      await s.close();
      assert.match(out, /done: 1 ran, 0 restored, 0 fresh, 0 failed, 0 not run in 20ms/);
      assert.match(out, /\x1b\[\?25h/, "cursor shown at the end");
      assert.not.match(out, /\x1b\[3\dm/, "NO_COLOR: no colour codes");
    })(),
    20_000,
  ));

test.run();
