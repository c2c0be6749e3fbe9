import { test } from "uvu";
import * as assert from "uvu/assert";
import { decideInstance, diffParts, explain, planRun, type PlanInput } from "../../../src/pipeline/plan.ts";
import type { Fingerprint, FingerprintParts, LockFile } from "../../../src/pipeline/types.ts";

// Literal graph: features -> train -> eval -> tables, and a lone download.
const order = ["download", "features", "train", "eval", "tables"];
const upstream = { download: [], features: [], train: ["features"], eval: ["train", "features"], tables: ["eval"] };

function parts(over: Partial<FingerprintParts> = {}): FingerprintParts {
  return {
    params: { config: { n_models: 5, lr: 0.001 } },
    paramsHash: "p",
    deps: { "artifacts/features/in_val_deit3b_-1.hdf5": "sha256:aaa" },
    code: { "stages/train-heads.ts": "sha256:c1", "src/ml/heads.ts": "sha256:c2" },
    runtime: { node: "v20.20.2", backend: "wasm" },
    ...over,
  };
}

function fp(digest: string, p: FingerprintParts = parts()): Fingerprint {
  return { digest, parts: p };
}

function lockFor(ids: string[]): LockFile {
  const lock: LockFile = { version: 1, instances: {} };
  for (const id of ids) lock.instances[id] = { fingerprint: `fp-${id}`, parts: parts(), outs: {}, finishedAt: "2026-01-01T00:00:00Z", durationMs: 1 };
  return lock;
}

function input(over: Partial<PlanInput> = {}): PlanInput {
  const current: PlanInput["current"] = {};
  const outputs: PlanInput["outputs"] = {};
  const cached: PlanInput["cached"] = {};
  for (const id of order) {
    current[id] = fp(`fp-${id}`);
    outputs[id] = { missing: [], modified: [] };
    cached[id] = true;
  }
  return { order, upstream, lock: lockFor(order), current, outputs, cached, force: [], ...over };
}

const actions = (steps: { id: string; action: string }[]) => Object.fromEntries(steps.map((s) => [s.id, s.action]));

test("everything fresh: all skip", () => {
  const steps = planRun(input());
  assert.equal(actions(steps), { download: "skip", features: "skip", train: "skip", eval: "skip", tables: "skip" });
  assert.ok(steps.every((s) => s.reason === "fresh" && s.changes.length === 0));
});

test("no lock: everything is new", () => {
  const steps = planRun(input({ lock: null }));
  assert.is(steps[0]!.action, "run");
  assert.is(steps[0]!.reason, "new: never ran (no lock entry)");
  // Downstream of a running instance is pending, even when its fingerprint was computed.
  assert.is(steps[2]!.reason, "upstream features will run");
  assert.is(steps[2]!.pending, true);
});

test("param change: only that instance runs, its downstream is pending, the rest skip", () => {
  const inp = input();
  inp.current.train = fp("fp-train-new", parts({ params: { config: { n_models: 10, lr: 0.001 } } }));
  const steps = planRun(inp);
  assert.equal(actions(steps), { download: "skip", features: "skip", train: "run", eval: "run", tables: "run" });
  const train = steps.find((s) => s.id === "train")!;
  assert.is(train.reason, "param config.n_models: 5 -> 10");
  assert.equal(train.changes, [{ kind: "param", key: "config.n_models", old: 5, new: 10 }]);
  assert.is(train.pending, undefined);
  const ev = steps.find((s) => s.id === "eval")!;
  assert.is(ev.reason, "upstream train will run");
  assert.equal(ev.changes, [{ kind: "upstream", id: "train" }]);
  assert.is(ev.pending, true);
  assert.is(steps.find((s) => s.id === "tables")!.reason, "upstream eval will run");
});

test("'pending' current: run, decided again later", () => {
  const inp = input();
  inp.current.tables = "pending";
  const step = planRun(inp).find((s) => s.id === "tables")!;
  assert.is(step.action, "run");
  assert.is(step.pending, true);
});

test("early cutoff: after the upstream ran with identical outputs, the downstream skips", () => {
  const lock = lockFor(order);
  const again = decideInstance("eval", { entry: lock.instances.eval, current: fp("fp-eval"), outputs: { missing: [], modified: [] }, cached: true, reusable: false, forced: false });
  assert.is(again.action, "skip");
  assert.is(again.reason, "fresh");
});

test("code change names the file; several changes are counted", () => {
  const lock = lockFor(order);
  const cur = fp("x", parts({ code: { "stages/train-heads.ts": "sha256:c1", "src/ml/heads.ts": "sha256:c9", "src/ml/new.ts": "sha256:n" } }));
  const step = decideInstance("train", { entry: lock.instances.train, current: cur, outputs: { missing: [], modified: [] }, cached: true, reusable: false, forced: false });
  assert.is(step.action, "run");
  assert.is(step.reason, "code src/ml/heads.ts changed (+1 more)");
  assert.equal(step.changes, [
    { kind: "code", file: "src/ml/heads.ts", old: "sha256:c2", new: "sha256:c9" },
    { kind: "code", file: "src/ml/new.ts", old: undefined, new: "sha256:n" },
  ]);
  assert.equal(explain(step), [
    "train: run (code src/ml/heads.ts changed (+1 more))",
    "  - code src/ml/heads.ts changed",
    "      sha256:c2 -> sha256:c9",
    "  - code src/ml/new.ts added",
  ]);
});

test("dep and runtime changes", () => {
  const lock = lockFor(order);
  const dep = decideInstance("train", { entry: lock.instances.train, current: fp("x", parts({ deps: { "artifacts/features/in_val_deit3b_-1.hdf5": "sha256:bbb" } })), outputs: { missing: [], modified: [] }, cached: true, reusable: false, forced: false });
  assert.is(dep.reason, "dep artifacts/features/in_val_deit3b_-1.hdf5 changed");
  const rt = decideInstance("train", { entry: lock.instances.train, current: fp("x", parts({ runtime: { node: "v20.20.2", backend: "tfjs-node" } })), outputs: { missing: [], modified: [] }, cached: true, reusable: false, forced: false });
  assert.is(rt.reason, "runtime backend: wasm -> tfjs-node");
});

test("a stage contract version bump is its own change, reported first; absent on both sides is no change", () => {
  const lock = lockFor(order);
  lock.instances.train!.parts = parts({ stageVersion: 1 });
  const cur = fp("x", parts({ stageVersion: 2, params: { config: { n_models: 6, lr: 0.001 } } }));
  const step = decideInstance("train", { entry: lock.instances.train, current: cur, outputs: { missing: [], modified: [] }, cached: true, reusable: false, forced: false });
  assert.is(step.reason, "stage version 1 -> 2 (+1 more)");
  assert.equal(step.changes[0], { kind: "version", old: 1, new: 2 });
  assert.equal(explain(step).slice(0, 2), ["train: run (stage version 1 -> 2 (+1 more))", "  - stage version 1 -> 2"]);
  // A lock entry written before the stage had a contract.
  assert.equal(diffParts(parts(), parts({ stageVersion: 1 })), [{ kind: "version", old: undefined, new: 1 }]);
  const bumped = decideInstance("train", { entry: { ...lock.instances.train!, parts: parts() }, current: fp("y", parts({ stageVersion: 1 })), outputs: { missing: [], modified: [] }, cached: true, reusable: false, forced: false });
  assert.is(explain(bumped)[1], "  - stage version (none) -> 1");
  assert.equal(diffParts(parts(), parts()), []);
});

test("missing outputs: restore when cached, run when not", () => {
  const inp = input();
  inp.outputs.train = { missing: ["artifacts/models/ood_gen"], modified: [] };
  let steps = planRun(inp);
  const train = steps.find((s) => s.id === "train")!;
  assert.is(train.action, "restore");
  assert.is(train.reason, "outputs missing: artifacts/models/ood_gen: restoring from cache");
  // A restored upstream reproduces the recorded outputs: the downstream fingerprint stands.
  assert.is(steps.find((s) => s.id === "eval")!.action, "skip");
  inp.cached.train = false;
  steps = planRun(inp);
  assert.is(steps.find((s) => s.id === "train")!.action, "run");
  assert.is(steps.find((s) => s.id === "train")!.reason, "outputs missing: artifacts/models/ood_gen, not in cache");
  assert.is(steps.find((s) => s.id === "eval")!.action, "run");
});

test("a pending instance below a restore says so", () => {
  const inp = input();
  inp.outputs.features = { missing: ["artifacts/features/x.hdf5"], modified: [] };
  inp.current.train = "pending";
  const train = planRun(inp).find((s) => s.id === "train")!;
  assert.is(train.reason, "upstream features will be restored");
  assert.is(train.pending, true);
});

test("outputs modified by hand: restored from the cache when it has them, else rerun; says so", () => {
  const inp = input();
  inp.outputs.tables = { missing: [], modified: ["artifacts/tables"] };
  let step = planRun(inp).find((s) => s.id === "tables")!;
  assert.is(step.action, "restore");
  assert.is(step.restoreFrom, "lock");
  assert.is(step.reason, "outputs modified by hand: artifacts/tables: restoring from cache");
  inp.cached.tables = false;
  step = planRun(inp).find((s) => s.id === "tables")!;
  assert.is(step.action, "run");
  assert.is(step.reason, "outputs modified by hand: artifacts/tables: rerunning overwrites them");
});

test("run cache: inputs that match a recorded run restore it, with or without a lock entry; --force runs", () => {
  const outputs = { missing: ["artifacts/models/a"], modified: [] };
  const noEntry = decideInstance("train", { entry: undefined, current: fp("fp-x"), outputs, cached: false, reusable: true, forced: false });
  assert.equal(noEntry, {
    id: "train",
    action: "restore",
    reason: "inputs match an earlier run: restoring its outputs from the run cache",
    changes: [{ kind: "new" }],
    restoreFrom: "run-cache",
  });
  // A param switched back to a value of an earlier run: the change is listed, the outputs restored.
  const lock = lockFor(order);
  const back = decideInstance("train", { entry: lock.instances.train, current: fp("fp-old", parts({ params: { config: { n_models: 3, lr: 0.001 } } })), outputs: { missing: [], modified: [] }, cached: false, reusable: true, forced: false });
  assert.is(back.action, "restore");
  assert.is(back.restoreFrom, "run-cache");
  assert.equal(back.changes, [{ kind: "param", key: "config.n_models", old: 5, new: 3 }]);
  assert.is(decideInstance("train", { entry: undefined, current: fp("fp-x"), outputs, cached: false, reusable: true, forced: true }).action, "run");
  // planRun passes `reusable` through.
  const inp = input({ lock: null });
  inp.reusable = Object.fromEntries(order.map((id) => [id, true]));
  assert.equal(actions(planRun(inp)), { download: "restore", features: "restore", train: "restore", eval: "restore", tables: "restore" });
});

test("forced: runs even when fresh; its downstream is pending", () => {
  const steps = planRun(input({ force: ["features"] }));
  assert.equal(actions(steps), { download: "skip", features: "run", train: "run", eval: "run", tables: "run" });
  assert.is(steps[1]!.reason, "forced");
  assert.equal(steps[1]!.changes, [{ kind: "forced" }]);
  assert.is(steps[1]!.pending, undefined);
});

test("diffParts: nested params, lists, added and removed keys, declarations", () => {
  const old = parts({ params: { a: { b: [1, 2, 3], c: "x" }, gone: 1, l: [1] }, decl: { deps: { train: "a.h5" }, outs: { m: "m" } } });
  const cur = parts({ params: { a: { b: [1, 5, 3], c: "x" }, added: true, l: [1, 2] }, decl: { deps: { train: "b.h5" }, outs: { m: "m" } } });
  assert.equal(diffParts(old, cur), [
    { kind: "param", key: "a.b[1]", old: 2, new: 5 },
    { kind: "param", key: "gone", old: 1, new: undefined },
    { kind: "param", key: "l", old: [1], new: [1, 2] },
    { kind: "param", key: "added", old: undefined, new: true },
    { kind: "param", key: "@deps.train", old: "a.h5", new: "b.h5" },
  ]);
  const step = decideInstance("x", { entry: { fingerprint: "o", parts: old, outs: {}, finishedAt: "", durationMs: 0 }, current: fp("n", cur), outputs: { missing: [], modified: [] }, cached: false, reusable: false, forced: false });
  assert.equal(explain(step).slice(1), [
    "  - param a.b[1]: 2 -> 5",
    "  - param gone: 1 -> (absent)",
    "  - param l: [1] -> [1,2]",
    "  - param added: (absent) -> true",
    '  - declared deps "train": a.h5 -> b.h5',
  ]);
  // Key order is not a change.
  assert.equal(diffParts(parts({ params: { x: 1, y: 2 } }), parts({ params: { y: 2, x: 1 } })), []);
});

test.run();
