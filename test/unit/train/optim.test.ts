import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { adamwUpdate, sgdUpdate, gradsFinite } from "../../../src/ml/optim.ts";
import { lrAt } from "../../../src/ml/lr-schedule.ts";

await tf.setBackend("cpu");

const close = (got: ArrayLike<number>, want: number[], tol = 1e-6) =>
  want.forEach((w, i) => assert.ok(Math.abs(got[i] - w) <= tol * Math.max(1, Math.abs(w)), `[${i}] got ${got[i]}, want ${w}`));

test("SGD momentum 0.9 + weight decay 0.01 (torch: g += wd p; buf = m buf + g; p -= lr buf)", () => {
  const o = { type: "sgd" as const, lr: 0.1, momentum: 0.9, weight_decay: 0.01, nan_check: false };
  const r = tf.tidy(() => {
    const p0 = tf.tensor1d([1, -2]);
    const s1 = sgdUpdate(p0, tf.tensor1d([0.5, 0.1]), { momentum: tf.zeros([2]) }, o, 0.1);
    const s2 = sgdUpdate(s1.param, tf.tensor1d([0.2, -0.3]), s1.slots, o, 0.1);
    return [s1.param.dataSync(), s1.slots.momentum.dataSync(), s2.param.dataSync(), s2.slots.momentum.dataSync()];
  });
  close(r[0], [0.949, -2.008]); // buf = g + wd p = [0.51, 0.08]
  close(r[1], [0.51, 0.08]);
  close(r[3], [0.9 * 0.51 + 0.2 + 0.01 * 0.949, 0.9 * 0.08 - 0.3 - 0.01 * 2.008]);
  close(r[2], [0.949 - 0.1 * 0.66849, -2.008 + 0.1 * 0.24808]);
});

test("AdamW (decoupled weight decay, bias correction) matches torch's formula", () => {
  const o = { type: "adamw" as const, lr: 0.1, betas: [0.9, 0.999] as [number, number], eps: 1e-8, weight_decay: 0.01 };
  const r = tf.tidy(() => {
    const s1 = adamwUpdate(tf.tensor1d([1]), tf.tensor1d([0.5]), { exp_avg: tf.zeros([1]), exp_avg_sq: tf.zeros([1]) }, o, 0.1, 1);
    const s2 = adamwUpdate(s1.param, tf.tensor1d([-0.2]), s1.slots, o, 0.1, 2);
    return [s1.param.dataSync()[0], s2.param.dataSync()[0], s2.slots.exp_avg.dataSync()[0], s2.slots.exp_avg_sq.dataSync()[0]];
  });
  // step 1: p = 1 * (1 - 0.001) = 0.999; m = 0.05, v = 0.00025; m/(1-b1) = 0.5, sqrt(v/(1-b2)) = 0.5 -> p -= 0.1
  close([r[0]], [0.899]);
  const m = 0.9 * 0.05 + 0.1 * -0.2;
  const v = 0.999 * 0.00025 + 0.001 * 0.04;
  const p = 0.899 * (1 - 0.001) - (0.1 / (1 - 0.81)) * (m / (Math.sqrt(v) / Math.sqrt(1 - 0.999 ** 2) + 1e-8));
  close([r[2], r[3]], [m, v]);
  close([r[1]], [p]);
});

test("NaN detection over all gradients", () => {
  const r = tf.tidy(() => {
    const bad = gradsFinite([tf.tensor1d([1, 2]), tf.tensor1d([NaN, 0])]);
    const good = gradsFinite([tf.tensor1d([1, 2]), tf.tensor1d([Infinity, 0])]);
    return [bad.dataSync()[0], good.dataSync()[0]];
  });
  assert.is(r[0], 0);
  assert.is(r[1], 1);
});

test("cosine T_max 15 factors of the reference (§2.5); no scheduler = constant", () => {
  const want = [1, 0.989074, 0.956773, 0.904508, 0.834565, 0.75, 0.654508, 0.552264, 0.447736, 0.345492];
  want.forEach((f, k) => assert.ok(Math.abs(lrAt(1, { type: "cosine", t_max: 15, eta_min: 0 }, k) - f) < 5e-7, `k=${k}`));
  assert.is(lrAt(0.001, null, 7), 0.001);
});

test.run();
