import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../../../src/ml/backend.ts";
import { loadReferenceEnsemble } from "../../../src/ml/reference-ensemble.ts";
import { headLogits, headTensorsFromArrays } from "../../../src/ml/heads.ts";
import { InputError } from "../../../src/errors.ts";

const fx = (name: string) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url));

test("a pickled RedneckEnsemble checkpoint gives each head's tensors; logits match torch", async () => {
  await initBackend("cpu");
  const expected = JSON.parse(readFileSync(fx("tiny-redneck.expected.json"), "utf8"));
  const ens = await loadReferenceEnsemble(fx("tiny-redneck.pkl"));
  assert.equal({ dim: ens.shape.dim, hidden: ens.shape.hidden, classes: ens.shape.classes }, expected.shape);
  assert.is(ens.heads.length, expected.heads);
  const before = tf.memory().numTensors;
  const x = tf.tensor2d(expected.x);
  ens.heads.forEach((h, i) => {
    const p = headTensorsFromArrays(h, ens.shape);
    const y = tf.tidy(() => headLogits(p, x, ens.shape));
    const got = y.arraySync() as number[][];
    got.forEach((row, r) => row.forEach((v, c) => assert.ok(Math.abs(v - expected.logits[i][r][c]) < 1e-5, `head ${i} [${r},${c}] ${v} vs ${expected.logits[i][r][c]}`)));
    y.dispose();
    for (const t of Object.values(p)) t.dispose();
  });
  x.dispose();
  assert.is(tf.memory().numTensors, before);
});

test("a checkpoint without submodels is a clear error", async () => {
  try {
    await loadReferenceEnsemble(fileURLToPath(new URL("../../fixtures/checkpoints/known-tensors.pth", import.meta.url)));
    assert.unreachable();
  } catch (e) {
    assert.instance(e, InputError);
    assert.match((e as Error).message, /no "submodels\.<i>\.\*" tensors/);
  }
});

test.run();
