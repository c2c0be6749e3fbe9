import { test } from "uvu";
import * as assert from "uvu/assert";
import { criticalFirst } from "../../../src/runner/execute.ts";

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

test.run();
