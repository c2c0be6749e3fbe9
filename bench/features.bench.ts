// Featurizer throughput (images/s) on the backend initBackend picks: the demo's tiny ViT (forward
// only, and end to end with PNG decode + eval transform), the input pipeline on ImageNet-sized JPEGs
// (bench/features-input.ts: decode per core, preparation on the stage's thread and on image threads,
// overlap with a forward), and DeiT-3 Base with random weights (a few images).
// Env: SED_BACKEND (auto), SED_BENCH_DEIT_IMAGES (16), SED_BENCH_DEIT_BATCH (8), SED_BENCH_TINY_IMAGES (4096);
// the input pipeline's own in features-input.ts.
import * as tf from "@tensorflow/tfjs-core";
import { PNG } from "pngjs";
import { initBackend } from "../src/ml/backend.ts";
import { createVit, disposeVit, featurizeBatch, DEIT3_BASE_ARCH, type VitArch } from "../src/ml/vit.ts";
import { seededVitWeights } from "../src/ml/vit-checkpoint.ts";
import { decodeImage, evalCrop, normalizeInto } from "../src/io/images.ts";
import { benchInputPipeline } from "./features-input.ts";

const DEIT_IMAGES = Number(process.env.SED_BENCH_DEIT_IMAGES ?? 16);
const DEIT_BATCH = Number(process.env.SED_BENCH_DEIT_BATCH ?? 8);
const TINY_IMAGES = Number(process.env.SED_BENCH_TINY_IMAGES ?? 4096);
const rssMb = () => (process.memoryUsage().rss / 2 ** 20).toFixed(0);
const NORM = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

const backend = await initBackend(process.env.SED_BACKEND ?? "auto");
console.log(`backend: ${backend.name} (${backend.reason})`);

async function forwardRate(arch: VitArch, images: number, batch: number, label: string): Promise<void> {
  let t = performance.now();
  const model = createVit(seededVitWeights(arch, 0), arch);
  const loadMs = performance.now() - t;
  const per = 3 * arch.image_size * arch.image_size;
  const px = new Float32Array(batch * per).map((_, i) => Math.sin(i * 0.001));
  await featurizeBatch(model, px, batch); // warm-up (kernel setup, weight packing)
  t = performance.now();
  let done = 0;
  while (done < images) {
    const b = Math.min(batch, images - done);
    await featurizeBatch(model, px.subarray(0, b * per), b);
    done += b;
  }
  const s = (performance.now() - t) / 1000;
  console.log(`${label}: ${(done / s).toFixed(1)} img/s forward (${done} images, batch ${batch}; weights generated+uploaded in ${(loadMs / 1000).toFixed(1)} s; rss ${rssMb()} MB; tensors ${tf.memory().numTensors})`);
  disposeVit(model);
}

// 1. demo tiny ViT, forward only
const DEMO: VitArch = { image_size: 28, patch_size: 14, in_chans: 3, embed_dim: 192, depth: 2, num_heads: 4, mlp_ratio: 2, layerscale_init: 1 };
await forwardRate(DEMO, TINY_IMAGES, 256, "demo ViT 28/14 d192x2");

// 2. demo end to end: PNG decode + eval transform + forward
{
  const pngs: Buffer[] = [];
  for (let i = 0; i < 256; i++) {
    const p = new PNG({ width: 28, height: 28 });
    for (let j = 0; j < 28 * 28; j++) p.data.set([(i * j) % 256, (i * j) % 256, (i * j) % 256, 255], j * 4);
    pngs.push(PNG.sync.write(p));
  }
  const model = createVit(seededVitWeights(DEMO, 0), DEMO);
  const per = 3 * 28 * 28;
  const t = performance.now();
  let done = 0;
  while (done < TINY_IMAGES) {
    const px = new Float32Array(256 * per);
    for (let k = 0; k < 256; k++) normalizeInto(evalCrop(await decodeImage(pngs[k], "x.png"), { resize: 28, crop: 28, ...NORM }), NORM.mean, NORM.std, px, k * per);
    await featurizeBatch(model, px, 256);
    done += 256;
  }
  console.log(`demo end to end (PNG decode + transform + forward): ${(done / ((performance.now() - t) / 1000)).toFixed(1)} img/s`);
  disposeVit(model);
}

// 3. The input pipeline on ImageNet-sized JPEGs: decode per core, preparation on the stage's thread
//    and on image threads, and the stage's loop overlapping preparation with a forward (features-input.ts).
await benchInputPipeline();

// 4. DeiT-3 Base, random weights
await forwardRate(DEIT3_BASE_ARCH, DEIT_IMAGES, DEIT_BATCH, "DeiT-3 Base 224/16 (random weights)");

// 5. Optional: a DeiT-B-sized torch checkpoint written by
//    `python3 test/fixtures/checkpoints/make-fixtures.py --full-size DIR`: load speed and agreement with torch.
const FIXTURE = process.env.SED_BENCH_DEIT_FIXTURE;
if (FIXTURE) {
  const { readFileSync, statSync } = await import("node:fs");
  const { join } = await import("node:path");
  const { readVitWeights } = await import("../src/ml/vit-checkpoint.ts");
  const exp = JSON.parse(readFileSync(join(FIXTURE, "tiny-vit.expected.json"), "utf8"));
  const file = join(FIXTURE, "tiny-vit.pth");
  let t = performance.now();
  const weights = await readVitWeights(file, exp.arch);
  const s = (performance.now() - t) / 1000;
  console.log(`read ${file}: ${(statSync(file).size / 2 ** 20).toFixed(0)} MB in ${s.toFixed(1)} s (${(statSync(file).size / 2 ** 20 / s).toFixed(0)} MB/s; rss ${rssMb()} MB)`);
  const model = createVit(weights, exp.arch);
  t = performance.now();
  const out = await featurizeBatch(model, new Float32Array(exp.input), exp.input_shape[0]);
  let worst = 0;
  for (let i = 0; i < out.length; i++) worst = Math.max(worst, Math.abs(out[i] - exp.features_float64[i]));
  console.log(`forward of ${exp.input_shape[0]} images: ${((performance.now() - t) / 1000).toFixed(1)} s; max |ours - torch float64| = ${worst.toExponential(2)} (torch ${exp.torch})`);
  disposeVit(model);
}
