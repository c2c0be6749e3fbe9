// What a plan needs (src/pipeline/needs.ts), on literal instances and steps: manual inputs (not
// produced by any stage, not on disk), downloads with size and pin, output disk, and time per stage
// from a calibration (or "unknown" without one), with a warning when a stage would take days.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { formatBytes, formatDuration, manualInputs, needsLines, needsOf, type Calibration, type NeedsInput } from "../../../src/pipeline/needs.ts";
import type { InputDecl, PlanStep, StageInstance } from "../../../src/pipeline/types.ts";
import type { StageEstimate } from "../../../src/stage-api.ts";

function inst(id: string, deps: Record<string, string>, outs: Record<string, string>, estimate?: StageEstimate): StageInstance {
  return { id, stage: id.split("@")[0]!, module: `stages/${id.split("@")[0]}.ts`, item: null, params: {}, deps, outs, pos: { file: "pipeline.yaml", line: 1, col: 1 }, ...(estimate ? { estimate } : {}) };
}

const GB = 1e9;
const instances = new Map<string, StageInstance>(
  [
    inst("download@feats", {}, { data: "artifacts/downloads/feats" }, { unit: "B", work: 5 * GB, outBytes: 5 * GB, fetch: { from: "https://example.org/feats.tar.gz", pinned: false } }),
    inst("download@wnids", {}, { data: "artifacts/downloads/wnids.json" }, { unit: "B", work: null, outBytes: null, fetch: { from: "https://example.org/wnids.json", pinned: true } }),
    inst("cache-features@in_train", { images: "data/ImageNet2012/train", checkpoint: "models/deit.pth" }, { features: "artifacts/features/train.hdf5" }, { unit: "images", work: 4_000_000, outBytes: 12 * GB }),
    inst("cache-features@in_val", { prebuilt: "artifacts/downloads/feats/cached/val.hdf5", checkpoint: "models/deit.pth" }, { features: "artifacts/features/val.hdf5" }, { unit: "images", work: 0, outBytes: 150e6 }),
    inst("train-heads@a", { train: "artifacts/features/train.hdf5" }, { model: "artifacts/models/a" }, { unit: "samples", work: 1_000_000, outBytes: 100e6 }),
    inst("tables", { eval: "artifacts/eval" }, { tables: "artifacts/tables" }),
    inst("eval@a/val", { model: "artifacts/models/a/ensemble.safetensors", features: "artifacts/features/val.hdf5" }, { result: "artifacts/eval/a/val.json" }, { unit: "head-rows", work: 250_000, outBytes: 5e6 }),
  ].map((i) => [i.id, i]),
);

const step = (id: string, action: PlanStep["action"], pending = false): PlanStep => ({ id, action, reason: "r", changes: [], ...(pending ? { pending } : {}) });
const allRun: PlanStep[] = [...instances.keys()].map((id) => step(id, "run", id !== "download@feats" && id !== "download@wnids"));
const inputs = new Map<string, InputDecl>([
  ["data/ImageNet2012/train", { path: "data/ImageNet2012/train", desc: "ImageNet-1k train", how: "put it at data/ImageNet2012/train (ImageFolder layout)", items: 1_281_167 }],
]);
const calibration: Calibration = {
  backend: "wasm",
  machine: "test machine",
  measuredAt: "2026-12-05T08:00:00.000Z",
  rates: { "cache-features": { unit: "images", perSecond: 2, what: "x" }, "train-heads": { unit: "samples", perSecond: 100, what: "x" }, eval: { unit: "head-rows", perSecond: 1000, what: "x" } },
};
const base: NeedsInput = { steps: allRun, instances, inputs, present: new Set(), backend: "wasm", calibration: null };

test("manual inputs: deps no instance writes, nor a folder holding or inside an out", () => {
  const m = manualInputs(instances.values(), instances);
  assert.equal([...m.keys()], ["data/ImageNet2012/train", "models/deit.pth"]);
  assert.equal(m.get("models/deit.pth"), ["cache-features@in_train", "cache-features@in_val"]);
});

test("needsOf: downloads with size and pin, missing inputs with their declaration, disk of estimated outputs", () => {
  const n = needsOf(base);
  assert.equal(n.downloads, [
    { id: "download@feats", from: "https://example.org/feats.tar.gz", bytes: 5 * GB, pinned: false },
    { id: "download@wnids", from: "https://example.org/wnids.json", bytes: null, pinned: true },
  ]);
  assert.equal(n.missingInputs, [
    { path: "data/ImageNet2012/train", desc: "ImageNet-1k train", how: "put it at data/ImageNet2012/train (ImageFolder layout)", neededBy: ["cache-features@in_train"] },
    { path: "models/deit.pth", neededBy: ["cache-features@in_train", "cache-features@in_val"] },
  ]);
  assert.is(n.disk.bytes, 5 * GB + 12 * GB + 150e6 + 100e6 + 5e6);
  assert.equal(n.disk.unknown, ["download@wnids", "tables"]);
});

test("needsOf: an input on disk is not missing; fresh and restored instances need nothing", () => {
  const present = needsOf({ ...base, present: new Set(["data/ImageNet2012/train", "models/deit.pth"]) });
  assert.equal(present.missingInputs, []);
  const onlyEval = needsOf({ ...base, steps: allRun.map((s) => (s.id.startsWith("eval") ? s : step(s.id, s.id === "download@feats" ? "restore" : "skip"))) });
  assert.equal(onlyEval.missingInputs, []);
  assert.equal(onlyEval.downloads, []);
  assert.equal(onlyEval.time.map((t) => t.stage), ["eval"]);
});

test("needsOf: without a calibration the time is unknown and says how to get one", () => {
  const n = needsOf(base);
  const by = Object.fromEntries(n.time.map((t) => [t.stage, t]));
  assert.is(by["cache-features"]!.seconds, null);
  assert.is(by["cache-features"]!.why, "unknown: run sed-pipe calibrate");
  assert.is(by["cache-features"]!.work, 4_000_000);
  assert.is(by.download!.why, "depends on the network");
  assert.is(by.tables!.why, "not estimated (the stage's contract has no estimate)");
  assert.equal(n.warnings, []);
  assert.is(n.calibration, null);
});

test("needsOf: with a calibration, seconds = work / rate; over a day gives a warning naming the backend", () => {
  const n = needsOf({ ...base, calibration });
  const by = Object.fromEntries(n.time.map((t) => [t.stage, t]));
  assert.is(by["cache-features"]!.seconds, 2_000_000);
  assert.is(by["train-heads"]!.seconds, 10_000);
  assert.is(by.eval!.seconds, 250);
  assert.is(n.warnings.length, 1);
  assert.match(n.warnings[0]!, /^cache-features would take ~23\.1 days on wasm \(2 instances\)/);
  const wrongUnit = needsOf({ ...base, calibration: { ...calibration, rates: { ...calibration.rates, eval: { unit: "rows", perSecond: 1, what: "x" } } } });
  assert.is(wrongUnit.time.find((t) => t.stage === "eval")!.why, "unknown: the calibration has no eval rate in head-rows");
});

test("needsLines: the block a dry run prints", () => {
  const lines = needsLines(needsOf({ ...base, calibration }));
  const text = lines.join("\n");
  assert.match(text, /^needs: downloads \(2, 5\.0 GB \+ 1 of unknown size\)/);
  assert.match(text, /download@feats  ~5\.0 GB, not pinned  https:\/\/example\.org\/feats\.tar\.gz/);
  assert.match(text, /download@wnids  size unknown, pinned \(sha256\)/);
  assert.match(text, /missing manual inputs \(2\): the run would fail until each is in place\n  data\/ImageNet2012\/train: ImageNet-1k train\n    put it at data\/ImageNet2012\/train \(ImageFolder layout\)\n    needed by cache-features@in_train/);
  assert.match(text, /models\/deit\.pth\n    not described in the params file's inputs: section\n    needed by cache-features@in_train and 1 more/);
  assert.match(text, /disk: ~17 GB for outputs \(\+ 2 instances not estimated\)/);
  assert.match(text, /time on wasm \(calibrated 2026-12-05 on test machine\):/);
  assert.match(text, /cache-features     2 to run 4,000,000 images: ~23\.1 days/);
  assert.match(text, /WARNING: cache-features would take/);
  const none = needsLines(needsOf({ ...base, steps: allRun.map((s) => step(s.id, "skip")) }));
  assert.equal(none.slice(0, 3), ["needs: no downloads", "missing manual inputs: none", "disk: ~0 B for outputs; the cache keeps a copy of each (a reflink where the file system allows, else up to ~0 B in all)"]);
});

test("formatBytes and formatDuration", () => {
  assert.equal([0, 999, 1500, 15.7e9, 1.2e12].map(formatBytes), ["0 B", "999 B", "1.5 KB", "16 GB", "1.2 TB"]);
  assert.equal([12, 600, 5400, 86400 * 45.4].map(formatDuration), ["12 s", "10 min", "1.5 h", "45.4 days"]);
});

test.run();
