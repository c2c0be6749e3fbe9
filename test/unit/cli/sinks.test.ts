import { test } from "uvu";
import * as assert from "uvu/assert";
import { createPlainSink, planLines } from "../../../src/ui/plain.ts";
import { createJsonSink } from "../../../src/ui/json.ts";
import type { RunnerEvent } from "../../../src/runner/events.ts";

const progress = (id: string, done: number): RunnerEvent => ({
  type: "progress",
  id,
  elapsedMs: 1500,
  progress: { phase: "epoch 1/2", done, total: 10, unit: "step", metrics: { loss: 0.123456 } },
});

test("plain: progress is throttled per instance (one line per 2 s each)", () => {
  let now = 0;
  const lines: string[] = [];
  const sink = createPlainSink({ write: (t) => lines.push(t), color: false, now: () => now });
  sink(progress("a", 1));
  sink(progress("a", 2));
  sink(progress("b", 1));
  now = 1999;
  sink(progress("a", 3));
  now = 2000;
  sink(progress("a", 4));
  assert.equal(lines, [
    "  [a] epoch 1/2 1/10 step (10%) loss=0.1235 1.5 s\n",
    "  [b] epoch 1/2 1/10 step (10%) loss=0.1235 1.5 s\n",
    "  [a] epoch 1/2 4/10 step (40%) loss=0.1235 1.5 s\n",
  ]);
});

test("plain: no escape codes without colour; failures show tail and log path", () => {
  const lines: string[] = [];
  const sink = createPlainSink({ write: (t) => lines.push(t), color: false });
  sink({ type: "instance-failed", id: "x", error: "boom", logPath: "cache/logs/x.log", tail: ["a", "b"], durationMs: 1200 });
  sink({ type: "run-done", outcome: "failed", counts: { ran: 1, skipped: 2, restored: 0, failed: 1, blocked: 1 }, durationMs: 3000 });
  const text = lines.join("");
  assert.not.match(text, /\x1b\[/);
  assert.is(text, "FAILED x (1.2 s): boom\n  | a\n  | b\n  log: cache/logs/x.log\nfailed: 1 ran, 0 restored, 2 fresh, 1 failed, 1 not run in 3.0 s\n");
  const colored: string[] = [];
  createPlainSink({ write: (t) => colored.push(t), color: true })({ type: "warning", id: null, message: "m" });
  assert.match(colored.join(""), /\x1b\[33mwarning:\x1b\[0m m/);
});

test("plain: plan lines list non-fresh steps with reasons (all steps on a dry run)", () => {
  const steps = [
    { id: "a", action: "skip" as const, reason: "fresh", changes: [] },
    { id: "bb", action: "run" as const, reason: "param x: 1 -> 2", changes: [] },
  ];
  assert.equal(planLines(steps, { run: 1, restore: 0, skip: 1, pending: 0 }, false), ["plan: 1 to run, 0 to restore, 1 fresh (2 instances)", "  run     bb  param x: 1 -> 2"]);
  assert.is(planLines(steps, { run: 1, restore: 0, skip: 1, pending: 0 }, true).length, 3);
});

test("json: one parseable event per line, unchanged", () => {
  const out: string[] = [];
  const sink = createJsonSink((t) => out.push(t));
  const e: RunnerEvent = progress("a", 1);
  sink(e);
  sink({ type: "instance-done", id: "a", action: "ran", reason: "new", durationMs: 5 });
  assert.is(out.length, 2);
  assert.ok(out.every((l) => l.endsWith("\n") && !l.slice(0, -1).includes("\n")));
  assert.equal(JSON.parse(out[0]!), e);
});

test("plain: an instance stopped by Ctrl-C reads STOPPED, a real failure FAILED with its tail", () => {
  const lines: string[] = [];
  const sink = createPlainSink({ write: (t) => lines.push(t), color: false });
  const failed = (interrupted: boolean): RunnerEvent => ({
    type: "instance-failed",
    id: "train-heads@ood_gen",
    error: interrupted ? "interrupted" : "boom",
    logPath: "cache/logs/x.log",
    tail: ["last line"],
    durationMs: 2000,
    interrupted,
  });
  sink(failed(true));
  sink(failed(false));
  assert.equal(lines, [
    "STOPPED train-heads@ood_gen (2.0 s): interrupted; it stays stale and reruns next time\n",
    "FAILED train-heads@ood_gen (2.0 s): boom\n",
    "  | last line\n",
    "  log: cache/logs/x.log\n",
  ]);
});

test.run();
