// `sed-pipe calibrate`: measures this machine's throughput for the paper-sized work of each stage
// on the backend in use, in the units of the stage contracts' estimates (images, samples,
// head-rows), with random weights and random features. Small runs (tens of seconds in all); the
// figures feed the plan's time estimates (src/pipeline/needs.ts). Owns no files.
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "./backend.ts";
import { EnsembleEvaluator } from "./eval.ts";
import { randomHeadArrays, type EnsembleArrays, type HeadShape } from "./heads.ts";
import { trainEnsemble } from "./trainer.ts";
import { parseTrainConfig } from "./train-config.ts";
import { memoryEvalSource, memoryTrainSource } from "./train-sources.ts";
import { createVit, DEIT3_BASE_ARCH, disposeVit, featurizeBatch } from "./vit.ts";
import { seededVitWeights } from "./vit-checkpoint.ts";
import { Rng } from "../rng.ts";
import type { Calibration } from "../pipeline/needs.ts";

export interface CalibrateOptions {
  backend: string;
  /** DeiT-B images to time after one warm-up batch (default 8). */
  images?: number;
  /** Rows per epoch of the training measurement (default 512). */
  trainRows?: number;
  /** Rows of the eval measurement (default 1024). */
  evalRows?: number;
  log?: (line: string) => void;
}

const PAPER: HeadShape = { dim: 768, hidden: 3072, classes: 1000 };

export async function calibrate(o: CalibrateOptions): Promise<Omit<Calibration, "machine" | "measuredAt">> {
  const log = o.log ?? (() => {});
  const backend = await initBackend(o.backend);
  log(`backend: ${backend.name} (${backend.reason})`);
  const rng = new Rng(0);
  const rates: Calibration["rates"] = {};

  // cache-features: DeiT-III Base forward, batch 8, on random pixels (decoding and resizing JPEGs not included).
  {
    const images = o.images ?? 8;
    const batch = Math.min(8, images);
    const arch = DEIT3_BASE_ARCH;
    const model = createVit(seededVitWeights(arch, 0), arch);
    const per = 3 * arch.image_size * arch.image_size;
    const px = Float32Array.from({ length: batch * per }, () => rng.normal());
    await featurizeBatch(model, px, batch); // warm-up: kernel setup, weight packing
    const t = performance.now();
    for (let done = 0; done < images; done += batch) await featurizeBatch(model, px, batch);
    const s = (performance.now() - t) / 1000;
    disposeVit(model);
    const perSecond = images / s;
    rates["cache-features"] = { unit: "images", perSecond, what: `DeiT-III Base forward, ${images} images in batches of ${batch}, random weights; JPEG decode and resize not included` };
    log(`cache-features: ${perSecond.toFixed(2)} images/s`);
  }

  // train-heads: every epoch trained (conservative: the reference's first epoch is frozen), ood_gen sizes.
  {
    const rows = o.trainRows ?? 512;
    const valRows = Math.max(32, Math.round(rows / 25)); // ImageNet val / train ~ 1/25
    const cfg = parseTrainConfig({
      name: "calibration", n_models: 5, random_select: 2, embed_dim: PAPER.dim, mlp_hidden: PAPER.hidden, num_classes: PAPER.classes,
      batch_size: 32, eval_batch_size: 32, optimizer: { type: "adamw", lr: 0.001, weight_decay: 0.1 }, lr_scheduler: { type: "cosine", t_max: 15 },
      n_epochs: 2, freeze_first_epoch: false, lambda: 0.5, manual_lambda: 0, use_always_labeled: true, smoothing_eps: 0.5, seed: 42,
    });
    const x = Float32Array.from({ length: rows * PAPER.dim }, () => rng.normal());
    const y = Int32Array.from({ length: rows }, () => Math.floor(rng.next() * PAPER.classes));
    const vx = x.subarray(0, valRows * PAPER.dim);
    const vy = y.subarray(0, valRows);
    // The rate of the second epoch (its steps and its validation pass): start-up (initialising and
    // placing the heads, seconds at paper sizes, once per instance) and the first epoch's warm-up are
    // not what an 11-epoch run spends its days on. Measured with them, the rate came out ~2.5x low.
    const ends: number[] = [];
    await trainEnsemble(cfg, memoryTrainSource(x, y, PAPER.dim, 1), memoryEvalSource(vx, vy, PAPER.dim), {
      onEpochEnd: () => void ends.push(performance.now()),
    });
    const s = (ends[1] - ends[0]) / 1000;
    const perSecond = rows / s;
    rates["train-heads"] = { unit: "samples", perSecond, what: `ood_gen-sized training (5 heads of 768/3072/1000, 2 active, batch 32, AdamW), the second of 2 trained epochs of ${rows} rows with its validation pass (start-up excluded); other configs differ (50_models: batch 16, 50 heads)` };
    log(`train-heads: ${perSecond.toFixed(1)} samples/s`);
  }

  // eval: 5 paper-sized heads (+ soup) on random features, batch 32: head-rows = rows x heads.
  {
    const rows = o.evalRows ?? 1024;
    const heads = 5;
    const ens: EnsembleArrays = { shape: PAPER, heads: Array.from({ length: heads }, () => randomHeadArrays(PAPER, rng)) };
    const x = Float32Array.from({ length: rows * PAPER.dim }, () => rng.normal());
    const y = Int32Array.from({ length: rows }, () => Math.floor(rng.next() * PAPER.classes));
    const ev = new EnsembleEvaluator(ens, rows, { batchSize: 32, quirks: false, subset: null, soup: true });
    const chunk = 256;
    const t = performance.now();
    for (let s = 0; s < rows; s += chunk) {
      const c = Math.min(chunk, rows - s);
      await ev.addBatch(x.subarray(s * PAPER.dim, (s + c) * PAPER.dim), y.subarray(s, s + c), c);
    }
    ev.summary();
    const s = (performance.now() - t) / 1000;
    ev.dispose();
    const perSecond = (rows * heads) / s;
    rates.eval = { unit: "head-rows", perSecond, what: `${heads} paper-sized heads + soup on ${rows} random feature rows, batch 32, one thread` };
    log(`eval: ${perSecond.toFixed(0)} head-rows/s`);
  }
  log(`tensors left: ${tf.memory().numTensors}`);
  return { backend: backend.name, rates };
}
