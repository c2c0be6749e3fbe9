// The scheduler on literal graphs with scripted tasks: no processes, no files.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { countSlots, criticalFirst, InstanceFailure, schedule, type ScheduleInput } from "../../../src/runner/scheduler.ts";

test("instances that unblock more work start first; ties keep topological order", () => {
  // feat-a feeds train (which feeds 3 evals); feat-b and feat-c feed one eval each.
  const order = ["feat-a", "feat-b", "feat-c", "train", "eval-1", "eval-2", "eval-3", "eval-b", "eval-c"];
  const upstream: Record<string, string[]> = {
    train: ["feat-a"],
    "eval-1": ["train"],
    "eval-2": ["train"],
    "eval-3": ["train", "feat-b"],
    "eval-b": ["feat-b"],
    "eval-c": ["feat-c"],
  };
  assert.equal(criticalFirst(order, upstream), ["feat-a", "train", "feat-b", "feat-c", "eval-1", "eval-2", "eval-3", "eval-b", "eval-c"]);
});

test("a diamond counts each downstream instance once", () => {
  const order = ["a", "b", "c", "d"];
  const upstream = { b: ["a"], c: ["a"], d: ["b", "c"] };
  assert.equal(criticalFirst(order, upstream), ["a", "b", "c", "d"]);
});

/** A scripted run: tasks settle when the test says so; the log records starts and settles in order. */
function harness(order: string[], upstream: Record<string, string[]>, jobs: number, over: Partial<ScheduleInput> = {}) {
  const log: string[] = [];
  const pending = new Map<string, { ok: () => void; fail: (msg: string) => void }>();
  const failed: Array<[string, string]> = [];
  const blocked: Array<[string, string | null]> = [];
  let wake: () => void = () => {};
  const started = () => new Promise<void>((r) => (wake = r));
  const input: ScheduleInput = {
    order,
    upstream,
    slots: countSlots(jobs),
    keepGoing: false,
    signal: new AbortController().signal,
    process: (id) =>
      new Promise<void>((resolve, reject) => {
        log.push(`start ${id}`);
        pending.set(id, { ok: () => resolve(), fail: (msg) => reject(new InstanceFailure(msg)) });
        wake();
      }),
    onFailed: (id, err) => failed.push([id, err.message]),
    onBlocked: (id, because) => blocked.push([id, because]),
    ...over,
  };
  const tick = () => new Promise((r) => setImmediate(r));
  const finish = async (id: string, how: "ok" | "fail" = "ok") => {
    const p = pending.get(id);
    assert.ok(p, `${id} is not running (log: ${log.join(", ")})`);
    pending.delete(id);
    log.push(`${how} ${id}`);
    if (how === "ok") p!.ok();
    else p!.fail(`${id} broke`);
    await tick();
    await tick();
  };
  return { input, log, failed, blocked, pending, finish, started, tick };
}

test("never more than `jobs` at once; downstream waits for every upstream", async () => {
  const h = harness(["a", "b", "c", "d"], { c: ["a"], d: ["a", "b"] }, 2);
  const done = schedule(h.input);
  await h.tick();
  assert.equal([...h.pending.keys()], ["a", "b"]);
  await h.finish("a");
  assert.equal([...h.pending.keys()].sort(), ["b", "c"], "c starts once a is done; d still waits for b");
  await h.finish("b");
  await h.finish("c");
  await h.finish("d");
  const r = await done;
  assert.equal([...r.states.values()], ["ok", "ok", "ok", "ok"]);
  assert.equal(h.log, ["start a", "start b", "ok a", "start c", "ok b", "start d", "ok c", "ok d"]);
});

test("a failure stops new starts (no keep-going); running ones finish; the rest are blocked with no culprit", async () => {
  const h = harness(["a", "b", "c", "d"], { d: ["a"] }, 2);
  const done = schedule(h.input);
  await h.tick();
  await h.finish("a", "fail");
  assert.equal([...h.pending.keys()], ["b"], "nothing new started after the failure");
  await h.finish("b");
  const r = await done;
  assert.equal(Object.fromEntries(r.states), { a: "failed", b: "ok", c: "blocked", d: "blocked" });
  assert.equal(h.failed, [["a", "a broke"]]);
  assert.equal(h.blocked, [["d", "a"], ["c", null]]);
});

test("keep-going: only the failure's downstream is blocked, naming the failed instance through a chain", async () => {
  const h = harness(["a", "b", "c", "x"], { b: ["a"], c: ["b"] }, 1, { keepGoing: true });
  const done = schedule(h.input);
  await h.tick();
  await h.finish("a", "fail");
  await h.finish("x");
  const r = await done;
  assert.equal(Object.fromEntries(r.states), { a: "failed", b: "blocked", c: "blocked", x: "ok" });
  assert.equal(h.blocked, [["b", "a"], ["c", "a"]]);
});

test("abort: nothing new starts, what runs is awaited, the rest is blocked", async () => {
  const ac = new AbortController();
  const h = harness(["a", "b", "c"], {}, 1, { signal: ac.signal });
  const done = schedule(h.input);
  await h.tick();
  ac.abort();
  await h.finish("a");
  const r = await done;
  assert.equal(Object.fromEntries(r.states), { a: "ok", b: "blocked", c: "blocked" });
  assert.equal(h.log, ["start a", "ok a"]);
});

test("a task that throws something else than an InstanceFailure still fails only itself", async () => {
  const failed: string[] = [];
  const r = await schedule({
    order: ["a", "b"],
    upstream: {},
    slots: countSlots(2),
    keepGoing: true,
    signal: new AbortController().signal,
    process: async (id) => {
      if (id === "a") throw new TypeError("bug");
    },
    onFailed: (id, err) => failed.push(`${id}: ${err.message}`),
    onBlocked: () => {},
  });
  assert.equal(Object.fromEntries(r.states), { a: "failed", b: "ok" });
  assert.equal(failed, ["a: bug"]);
});

test("an order not closed under upstream is a bug, reported instead of hanging", async () => {
  try {
    await schedule({
      order: ["b"],
      upstream: { b: ["a"] },
      slots: countSlots(1),
      keepGoing: false,
      signal: new AbortController().signal,
      process: async () => {},
      onFailed: () => {},
      onBlocked: () => {},
    });
    assert.unreachable("must throw");
  } catch (err) {
    assert.match((err as Error).message, /runner stuck: b wait for instances outside the run/);
  }
});

test.run();
