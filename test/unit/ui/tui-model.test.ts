// The live view's reducer and formatters, on literal event sequences.
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { RunnerEvent } from "../../../src/runner/events.ts";
import { bar, emptyModel, expandedRows, fitId, formatAmount, formatDuration, idColumnWidth, liveCounts, progressText, reduce } from "../../../src/ui/tui-model.ts";

const plan = (ids: Array<[string, "run" | "skip" | "restore"]>): RunnerEvent => ({
  type: "plan",
  schemaVersion: 1,
  runId: "r1",
  dryRun: false,
  jobs: 2,
  counts: { run: ids.filter(([, a]) => a === "run").length, restore: ids.filter(([, a]) => a === "restore").length, skip: ids.filter(([, a]) => a === "skip").length, pending: 0 },
  steps: ids.map(([id, action]) => ({ id, action, reason: action === "skip" ? "fresh" : "new", changes: [] })),
});

test("plan rows start fresh or queued and are grouped by stage in plan order", () => {
  const m = reduce(emptyModel(), plan([["download@a", "skip"], ["download@b", "run"], ["tables", "run"]]));
  assert.equal(m.groups, [
    { stage: "download", ids: ["download@a", "download@b"] },
    { stage: "tables", ids: ["tables"] },
  ]);
  assert.is(m.rows.get("download@a")!.state, "fresh");
  assert.is(m.rows.get("download@b")!.state, "queued");
});

test("progress events give a rate and an ETA from the stage's own clock", () => {
  const m = reduce(emptyModel(), plan([["f@x", "run"]]));
  reduce(m, { type: "instance-start", id: "f@x", action: "run", reason: "new", logPath: "cache/logs/f@x.log" });
  reduce(m, { type: "progress", id: "f@x", elapsedMs: 1000, progress: { phase: "features", done: 10, total: 110, unit: "img" } });
  assert.is(m.rows.get("f@x")!.progress!.rate, undefined, "one sample gives no rate");
  reduce(m, { type: "progress", id: "f@x", elapsedMs: 3000, progress: { phase: "features", done: 30, total: 110, unit: "img" } });
  const p = m.rows.get("f@x")!.progress!;
  assert.is(p.rate, 10);
  assert.is(p.etaS, 8);
  assert.is(progressText(p), "features 30/110 img 27% 10.0 img/s eta 8.0s");
  // A new phase restarts the measurement.
  reduce(m, { type: "progress", id: "f@x", elapsedMs: 4000, progress: { phase: "write", done: 1, total: 2 } });
  assert.is(m.rows.get("f@x")!.progress!.rate, undefined);
});

test("training progress shows steps and the current loss; bytes are scaled", () => {
  assert.is(
    progressText({ phase: "epoch 2/10", done: 150, total: 1000, unit: "step", metrics: { loss: 0.41234567 }, rate: 25, etaS: 34 }),
    "epoch 2/10 150/1000 step 15% loss=0.4123 25.0 step/s eta 34.0s",
  );
  assert.is(progressText({ phase: "download", done: 1_500_000, total: 10_000_000, unit: "B" }), "download 1.50 MB/10.0 MB 15%");
  // The stage's own rate/ETA metrics stand in until two samples exist, and are never repeated.
  assert.is(
    progressText({ phase: "download", done: 2_000_000, total: 8_000_000, unit: "B", message: "2.0 MB of 8.0 MB at 1.0 MB/s", metrics: { rate: 1_000_000, eta_s: 6 } }),
    "download 2.00 MB/8.00 MB 25% 1.00 MB/s eta 6.0s",
  );
  assert.is(
    progressText({ phase: "features", done: 10, total: 20, unit: "img", metrics: { img_per_s: 99, eta_s: 50 }, rate: 5, etaS: 2 }),
    "features 10/20 img 50% 5.00 img/s eta 2.0s",
  );
  assert.is(progressText({ phase: "generate", message: "seeded ViT weights" }), "generate seeded ViT weights");
  assert.is(formatAmount(999, "B"), "999 B");
  assert.is(formatDuration(61_000), "1m01s");
  assert.is(formatDuration(450), "450ms");
  assert.is(bar(0.5, 4), "██  ");
  assert.is(bar(1, 4), "████");
  assert.is(bar(0, 3), "   ");
});

test("done, restored, failed and blocked instances; live counts; log tail kept short", () => {
  const m = reduce(emptyModel(), plan([["a", "run"], ["b", "restore"], ["c", "run"], ["d", "run"], ["e", "skip"]]));
  reduce(m, { type: "instance-start", id: "a", action: "run", reason: "new", logPath: "l/a" });
  for (let i = 0; i < 20; i++) reduce(m, { type: "log", id: "a", stream: "log", line: `line ${i}` });
  assert.is(m.rows.get("a")!.tail.length, 8);
  assert.is(m.rows.get("a")!.tail[7], "line 19");
  reduce(m, { type: "instance-done", id: "a", action: "ran", reason: "new", durationMs: 5 });
  reduce(m, { type: "instance-done", id: "b", action: "restored", reason: "outputs missing", durationMs: 1 });
  reduce(m, { type: "instance-failed", id: "c", error: "boom", logPath: "l/c", tail: ["x", "y"], durationMs: 2 });
  reduce(m, { type: "instance-blocked", id: "d", because: "c" });
  reduce(m, { type: "instance-done", id: "e", action: "skipped", reason: "fresh", durationMs: 0 });
  assert.equal(
    [..."abcde"].map((id) => m.rows.get(id)!.state),
    ["done", "restored", "failed", "blocked", "fresh"],
  );
  assert.equal(m.rows.get("c")!.tail, ["x", "y"]);
  assert.equal(liveCounts(m), { ran: 1, restored: 1, skipped: 1, failed: 1, blocked: 1, running: 0, queued: 0 });
});

test("a big group expands only running and failed instances", () => {
  const ids = Array.from({ length: 30 }, (_, i) => `eval@m/d${i}`);
  const m = reduce(emptyModel(), plan(ids.map((id) => [id, "run"])));
  reduce(m, { type: "instance-start", id: ids[3]!, action: "run", reason: "new", logPath: "x" });
  reduce(m, { type: "instance-failed", id: ids[7]!, error: "bad", logPath: "y", tail: [], durationMs: 1 });
  assert.equal(
    expandedRows(m, m.groups[0]!, 8).map((r) => r.id),
    [ids[3], ids[7]],
  );
  const small = reduce(emptyModel(), plan([["a@1", "run"], ["a@2", "run"]]));
  assert.is(expandedRows(small, small.groups[0]!, 8).length, 2);
});

test("id column: as wide as the longest id shown, capped at 40% of the terminal (16..60)", () => {
  assert.is(idColumnWidth(["a@1", "tables"], 100), 6);
  assert.is(idColumnWidth(["x".repeat(70)], 100), 40);
  assert.is(idColumnWidth(["x".repeat(70)], 200), 60);
  assert.is(idColumnWidth(["x".repeat(70)], 30), 16);
  assert.is(idColumnWidth([], 100), 0);
});

test("fitId pads short ids and shortens long ones in the middle, to exactly the width", () => {
  assert.is(fitId("tables", 10), "tables    ");
  assert.is(fitId("tables", 6), "tables");
  assert.is(fitId("eval@ood_det_sem/imagenet_r", 15), "eval@oo…genet_r");
  assert.is(fitId("eval@ood_det_sem/imagenet_r", 16), "eval@ood…genet_r");
  assert.is(fitId("abcdef", 2), "a…");
  assert.is(fitId("abcdef", 1), "…");
});

test.run();
