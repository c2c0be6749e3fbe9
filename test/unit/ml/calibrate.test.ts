// sed-pipe calibrate's measurement (src/ml/calibrate.ts) at its smallest: one DeiT-B image, a few
// training and eval rows. Checks the units the stage contracts' estimates use, positive finite
// rates and no tensor left behind; the figures themselves belong to `sed-pipe calibrate`, not here.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import { calibrate } from "../../../src/ml/calibrate.ts";

test("rates per stage in the estimates' units, positive and finite; no tensors leak", async () => {
  const lines: string[] = [];
  const r = await calibrate({ backend: "auto", images: 1, trainRows: 64, evalRows: 64, log: (l) => lines.push(l) });
  assert.equal(Object.fromEntries(Object.entries(r.rates).map(([k, v]) => [k, v.unit])), { "cache-features": "images", "train-heads": "samples", eval: "head-rows" });
  for (const [k, v] of Object.entries(r.rates)) assert.ok(Number.isFinite(v.perSecond) && v.perSecond > 0, `${k}: ${v.perSecond}`);
  assert.is(tf.memory().numTensors, 0);
  assert.ok(lines[0]!.startsWith(`backend: ${r.backend}`), lines[0]);
});

test.run();
