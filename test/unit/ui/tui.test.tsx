// Frames of the Ink live view (ink-testing-library) for a small plan: running, done, failed, and a
// 30-instance fan-out that stays grouped.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { render } from "ink-testing-library";
import type { RunnerEvent } from "../../../src/runner/events.ts";
import { emptyModel, reduce, type TuiModel } from "../../../src/ui/tui-model.ts";
import { TuiView } from "../../../src/ui/tui.tsx";

const T0 = 1_000_000;

function model(events: Array<[RunnerEvent, number?]>): TuiModel {
  const m = emptyModel();
  for (const [e, at] of events) reduce(m, e, at ?? T0);
  return m;
}

function frame(m: TuiModel, now = T0 + 4200, expandLimit?: number, height?: number): string {
  const r = render(<TuiView model={m} color={false} now={now} width={100} {...(expandLimit ? { expandLimit } : {})} {...(height ? { height } : {})} />);
  const f = r.lastFrame() ?? "";
  r.unmount();
  r.cleanup();
  return f;
}

const PLAN: RunnerEvent = {
  type: "plan",
  schemaVersion: 1,
  runId: "r",
  dryRun: false,
  jobs: 2,
  counts: { run: 0, restore: 0, skip: 0, pending: 0 },
  steps: [
    { id: "download@mnist", action: "skip", reason: "fresh", changes: [] },
    { id: "cache-features@in_val", action: "run", reason: "new", changes: [] },
    { id: "train-heads@ood", action: "run", reason: "param config.lr: 0.1 -> 0.2", changes: [] },
    { id: "tables", action: "run", reason: "upstream runs", changes: [] },
  ],
};

test("running: progress bar with rate and ETA, elapsed time, summary line", () => {
  const m = model([
    [PLAN],
    [{ type: "instance-start", id: "cache-features@in_val", action: "run", reason: "new", logPath: "cache/logs/cf.log" }],
    [{ type: "progress", id: "cache-features@in_val", elapsedMs: 1000, progress: { phase: "features", done: 100, total: 1000, unit: "img" } }],
    [{ type: "progress", id: "cache-features@in_val", elapsedMs: 2000, progress: { phase: "features", done: 500, total: 1000, unit: "img" } }],
    [{ type: "instance-start", id: "train-heads@ood", action: "run", reason: "param", logPath: "cache/logs/th.log" }, T0 + 1000],
    [{ type: "progress", id: "train-heads@ood", elapsedMs: 500, progress: { phase: "epoch 1/3", done: 4, total: 30, unit: "step", metrics: { loss: 1.2345 } } }],
  ]);
  const f = frame(m);
  assert.match(f, /running\s+cache-features@in_val\s+\[█████\s+\] features 500\/1000 img 50% 400 img\/s eta 1\.3s\s+4\.2s/);
  assert.match(f, /running\s+train-heads@ood\s+\[█▎\s+\] epoch 1\/3 4\/30 step 13% loss=1\.234\s+3\.2s/);
  assert.match(f, /fresh\s+download@mnist/);
  assert.match(f, /queued\s+tables\s+upstream runs/);
  assert.match(f, /2 running, 1 queued, 0 ran, 0 restored, 1 fresh, 0 failed {2}4\.2s/);
});

test("done: final summary with the run's own counts and duration", () => {
  const m = model([
    [PLAN],
    [{ type: "instance-done", id: "cache-features@in_val", action: "ran", reason: "new", durationMs: 2500 }],
    [{ type: "instance-done", id: "train-heads@ood", action: "restored", reason: "in cache", durationMs: 40 }],
    [{ type: "instance-done", id: "tables", action: "skipped", reason: "early cutoff: upstream unchanged", durationMs: 3 }],
    [{ type: "run-done", outcome: "ok", counts: { ran: 1, restored: 1, skipped: 2, failed: 0, blocked: 0 }, durationMs: 3100 }],
  ]);
  const f = frame(m);
  assert.match(f, /done\s+cache-features@in_val\s+2\.5s/);
  assert.match(f, /restored\s+train-heads@ood\s+40ms/);
  assert.match(f, /skipped\s+tables/);
  assert.match(f, /done: 1 ran, 1 restored, 2 fresh, 0 failed, 0 not run in 3\.1s/);
});

test("failed: the error, the last log lines and where the full log is; downstream not run", () => {
  const m = model([
    [PLAN],
    [{ type: "instance-start", id: "train-heads@ood", action: "run", reason: "param", logPath: "cache/logs/train-heads@ood.log" }],
    [{ type: "log", id: "train-heads@ood", stream: "log", line: "epoch 1 loss=nan" }],
    [
      {
        type: "instance-failed",
        id: "train-heads@ood",
        error: "loss became NaN at step 12",
        logPath: "cache/logs/train-heads@ood.log",
        tail: ["epoch 1 loss=nan", "Error: loss became NaN at step 12"],
        durationMs: 1200,
      },
    ],
    [{ type: "instance-blocked", id: "tables", because: "train-heads@ood" }],
    [{ type: "run-done", outcome: "failed", counts: { ran: 0, restored: 0, skipped: 1, failed: 1, blocked: 1 }, durationMs: 1300 }],
  ]);
  const f = frame(m);
  assert.match(f, /FAILED\s+train-heads@ood\s+loss became NaN at step 12\s+1\.2s/);
  assert.match(f, /\| epoch 1 loss=nan\n\s+\| Error: loss became NaN at step 12\n\s+full log: cache\/logs\/train-heads@ood\.log  \(sed-pipe logs train-heads@ood\)/);
  assert.match(f, /not run\s+tables\s+upstream train-heads@ood failed/);
  assert.match(f, /failed: 0 ran, 0 restored, 1 fresh, 1 failed, 1 not run in 1\.3s/);
});

test("a 30-instance fan-out stays one group with counts; only running and failed rows are listed", () => {
  const ids = Array.from({ length: 30 }, (_, i) => `eval@deit3/ds_${String(i).padStart(2, "0")}`);
  const events: Array<[RunnerEvent, number?]> = [
    [{ type: "plan", schemaVersion: 1, runId: "r", dryRun: false, jobs: 2, counts: { run: ids.length, restore: 0, skip: 0, pending: 0 }, steps: ids.map((id) => ({ id, action: "run" as const, reason: "new", changes: [] })) }],
  ];
  for (const id of ids.slice(0, 20)) events.push([{ type: "instance-done", id, action: "ran", reason: "new", durationMs: 10 }]);
  events.push([{ type: "instance-failed", id: ids[20]!, error: "features file truncated", logPath: "cache/logs/x.log", tail: ["boom"], durationMs: 5 }]);
  events.push([{ type: "instance-start", id: ids[21]!, action: "run", reason: "new", logPath: "cache/logs/y.log" }]);
  events.push([{ type: "progress", id: ids[21]!, elapsedMs: 100, progress: { phase: "eval", done: 64, total: 256, unit: "sample" } }]);
  const f = frame(model(events));
  assert.match(f, /eval {2}30 instances: 1 running, 1 FAILED, 8 queued, 20 done/);
  const lines = f.split("\n");
  assert.is(lines.filter((l) => l.includes("eval@deit3/") && !l.includes("full log")).length, 2, f);
  assert.match(f, /running\s+eval@deit3\/ds_21\s+\[██▌\s+\] eval 64\/256 sample 25%/);
  assert.match(f, /FAILED\s+eval@deit3\/ds_20\s+features file truncated/);
  assert.ok(lines.length < 12, `frame has ${lines.length} lines`);
});

test("a frame taller than the terminal is condensed: active rows only, shorter failure tails", () => {
  const stages = ["a", "b", "c", "d", "e"];
  const steps = stages.flatMap((st) => Array.from({ length: 6 }, (_, i) => ({ id: `${st}@${i}`, action: "run" as const, reason: "new", changes: [] })));
  const events: Array<[RunnerEvent, number?]> = [[{ type: "plan", schemaVersion: 1, runId: "r", dryRun: false, jobs: 2, counts: { run: steps.length, restore: 0, skip: 0, pending: 0 }, steps }]];
  events.push([{ type: "instance-start", id: "c@2", action: "run", reason: "new", logPath: "l" }]);
  const tail = Array.from({ length: 8 }, (_, i) => `log line ${i}`);
  events.push([{ type: "instance-failed", id: "d@4", error: "boom", logPath: "cache/logs/d@4.log", tail, durationMs: 1 }]);
  const m = model(events);
  const tall = frame(m);
  assert.ok(tall.split("\n").length > 30, "without a height every small group is listed");
  const short = frame(m, T0 + 4200, undefined, 20);
  const lines = short.split("\n");
  assert.ok(lines.length <= 19, `fits 20 rows: ${lines.length}\n${short}`);
  assert.match(short, /running\s+c@2/);
  assert.match(short, /FAILED\s+d@4\s+boom/);
  assert.match(short, /full log: cache\/logs\/d@4\.log/);
  assert.not.match(short, /queued\s+a@0/);
  const tiny = frame(m, T0 + 4200, undefined, 13);
  assert.match(tiny, /FAILED\s+d@4/);
  assert.match(tiny, /\| log line 7/, "the last tail lines are the ones kept");
  assert.not.match(tiny, /\| log line 2/);
});

test("long instance ids: one id column for the frame, long ids shortened in the middle, columns aligned", () => {
  const long = "eval@ood_det_sem/Gaussian_Noise_severity_5_with_a_very_long_dataset_key";
  const steps = ["download@mnist", "eval@ood_gen/in_val", long, "tables"].map((id) => ({ id, action: "run" as const, reason: "new input", changes: [] }));
  const m = model([[{ type: "plan", schemaVersion: 1, runId: "r", dryRun: false, jobs: 2, counts: { run: 4, restore: 0, skip: 0, pending: 0 }, steps }]]);
  const f = frame(m);
  const rows = f.split("\n").filter((l) => l.startsWith("  queued"));
  assert.is(rows.length, 4, f);
  // width 100 -> id column capped at 40; the long id keeps its stage and its end.
  assert.ok(rows.some((l) => l.includes("eval@ood_det_sem/Gau…ry_long_dataset_key new input")), f);
  assert.not.ok(f.includes(long), "the full long id does not push the columns");
  const col = rows.map((l) => l.indexOf("new input"));
  assert.equal(col, [col[0], col[0], col[0], col[0]], f);
  assert.is(col[0], 2 + 9 + 1 + 40 + 1, f);
  // Short ids only: the column is as wide as the longest id shown, in every group.
  const short = frame(model([[PLAN]]));
  const lines = short.split("\n");
  const at = ["new", "param config", "upstream runs"].map((text) => lines.find((l) => l.includes(text))!.indexOf(text));
  assert.equal(at, [34, 34, 34], short); // 12 + "cache-features@in_val".length + 1
});

test("without colour the frame has no escape codes", () => {
  const f = frame(model([[PLAN]]));
  assert.not.match(f, /\x1b\[/);
  assert.match(f, /0 running, 3 queued/);
});

test.run();
