import { test } from "uvu";
import * as assert from "uvu/assert";
import { confidences, countCorrect, meanOverHeads, predictRows, subsetIndices, subsetStack, subsetVotes } from "../../../src/ml/metrics.ts";
import { InputError } from "../../../src/errors.ts";

test("prediction: first maximum on ties, all-zero rows predict -1 (always wrong)", () => {
  const p = predictRows(Float32Array.from([1, 3, 3, 0, 0, 0, -1, -2, -0.5]), 3, 3);
  assert.equal(Array.from(p), [1, -1, 2]);
  assert.is(countCorrect(p, [1, 0, 2]), 2);
});

test("ensemble output is the mean of logits", () => {
  const m = meanOverHeads({ heads: 2, rows: 1, classes: 2, kind: "logits", data: Float32Array.from([1, 4, 3, 0]) });
  assert.equal(Array.from(m), [2, 2]);
});

test("masked votes: inside votes one-hot, outside votes all zero", () => {
  // 5 classes, subset = classes 1 and 3
  const v = subsetVotes(Float32Array.from([0, 0, 0, 9, 0, 9, 0, 0, 0, 0, 0, 5, 0, 0, 0]), 3, 5, Int32Array.from([1, 3]));
  assert.equal(Array.from(v), [0, 1, 0, 0, 1, 0]);
});

test("masked vote ensemble: plurality, ties -> lowest index, all outside -> wrong", () => {
  const subset = Int32Array.from([1, 3]);
  // 3 heads, 3 rows, 5 classes
  const rows = [
    [[0, 9, 0, 0, 0], [0, 0, 0, 9, 0], [0, 0, 0, 9, 0]], // votes 1,3,3 -> subset class 1
    [[0, 9, 0, 0, 0], [0, 0, 0, 9, 0], [9, 0, 0, 0, 0]], // votes 1,3,out -> tie -> 0
    [[9, 0, 0, 0, 0], [0, 0, 9, 0, 0], [0, 0, 0, 0, 9]], // all outside -> -1
  ];
  const data = new Float32Array(3 * 3 * 5);
  for (let h = 0; h < 3; h++) for (let i = 0; i < 3; i++) data.set(rows[i][h], h * 15 + i * 5);
  const view = subsetStack({ heads: 3, rows: 3, classes: 5, kind: "logits", data }, subset);
  assert.is(view.kind, "probs");
  assert.is(view.classes, 2);
  const pred = predictRows(meanOverHeads(view), 3, 2);
  assert.equal(Array.from(pred), [1, 0, -1]);
});

test("class subset file: order, mismatched class counts and unknown classes are clear errors", () => {
  const json = { all_wnids: ["a", "b", "c", "d"], subset_wnids: ["d", "b"] };
  assert.equal(Array.from(subsetIndices("f.json", json, "subset_wnids", 4)), [1, 3]);
  assert.throws(() => subsetIndices("f.json", json, "subset_wnids", 5), (e: unknown) => e instanceof InputError && /lists 4 classes but the model predicts 5/.test((e as Error).message));
  assert.throws(() => subsetIndices("f.json", { all_wnids: ["a"], subset_wnids: ["z"] }, "subset_wnids", 1), /not in "all_wnids"/);
  assert.throws(() => subsetIndices("f.json", json, "imagenet_a_wnids", 4), /"imagenet_a_wnids" is missing/);
});

test("confidence: max softmax; quirks mode indexes the last class for an all-zero row", () => {
  const out = Float32Array.from([0, 0, 0, 2, 0, -1]);
  const c = confidences(out, 2, 3, "logits", false);
  assert.ok(Math.abs(c[0] - 1 / 3) < 1e-7);
  const e = Math.exp(2) + 1 + Math.exp(-1);
  assert.ok(Math.abs(c[1] - Math.exp(2) / e) < 1e-6);
  const q = confidences(Float32Array.from([0, 0, 0, 0.5, 0.25, 0.25]), 2, 3, "logits", true);
  // quirks: whole block in [0,1] -> taken as probabilities; row 0 sums to 0 -> prediction -1 -> last column
  assert.equal(Array.from(q), [0, 0.5]);
});

test.run();
