// Eval throughput: samples/s of EnsembleEvaluator (head forwards + soup + all scores and statistics)
// for a reference-size ensemble (768 -> 3072 -> 768 -> 1000 heads, random weights) on random feature
// rows, on the backend initBackend picks: on this thread, then on head threads (src/ml/head-pool.ts)
// when the machine has the cores. Also times the pure-JS score part alone.
// Env: SED_BENCH_HEADS (50), SED_BENCH_ROWS (2048), SED_BENCH_BATCH (eval batch, 256; heads run on
// chunks of forwardRows(batch) rows), SED_BACKEND (auto), SED_BENCH_HEAD_THREADS (1 = never use head
// threads, n = n of them; default: by head size and cores).
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../src/ml/backend.ts";
import { randomHeadArrays, type EnsembleArrays, type HeadShape } from "../src/ml/heads.ts";
import { EnsembleEvaluator, ThreadedEvaluator, forwardRows } from "../src/ml/eval.ts";
import { headThreadCount } from "../src/ml/head-pool.ts";
import { stackScores, diversityStats } from "../src/ml/scores.ts";
import { Rng } from "../src/rng.ts";

const M = Number(process.env.SED_BENCH_HEADS ?? 50);
const ROWS = Number(process.env.SED_BENCH_ROWS ?? 2048);
const BATCH = Number(process.env.SED_BENCH_BATCH ?? 256);
const shape: HeadShape = { dim: 768, hidden: 3072, classes: 1000 };
const mb = (b: number) => (b / 2 ** 20).toFixed(0);

const backend = await initBackend(process.env.SED_BACKEND ?? "auto");
console.log(`backend: ${backend.name} (${backend.reason})`);
console.log(`ensemble: ${M} heads of ${shape.dim}/${shape.hidden}/${shape.classes}; ${ROWS} rows; batch ${BATCH}`);

const rng = new Rng(0);
const randomHead = () => randomHeadArrays(shape, rng);
const t0 = performance.now();
const ens: EnsembleArrays = { shape, heads: Array.from({ length: M }, randomHead) };
const x = Float32Array.from({ length: ROWS * shape.dim }, () => rng.normal());
const y = Int32Array.from({ length: ROWS }, () => Math.floor(rng.next() * shape.classes));
console.log(`setup ${(performance.now() - t0) / 1000}s`);

const CHUNK = forwardRows(BATCH);
const cfg = { batchSize: BATCH, quirks: false, subset: null, soup: true };
/** samples/s of one full evaluation (upload excluded), on this thread or on head threads. */
async function evalRun(threads: number): Promise<number> {
  const t1 = performance.now();
  const ev = threads > 1 ? await ThreadedEvaluator.start(ens, ROWS, cfg, threads, CHUNK) : new EnsembleEvaluator(ens, ROWS, cfg);
  const upload = performance.now() - t1;
  const t2 = performance.now();
  for (let s = 0; s < ROWS; s += CHUNK) {
    const c = Math.min(CHUNK, ROWS - s);
    await ev.addBatch(x.subarray(s * shape.dim, (s + c) * shape.dim), y.subarray(s, s + c), c);
  }
  const sum = await ev.summary();
  const evalS = (performance.now() - t2) / 1000;
  const rss = process.memoryUsage().rss;
  await ev.dispose();
  const where = threads > 1 ? `${threads} head threads` : "one thread";
  console.log(`eval on ${where}: ${ROWS} samples in ${evalS.toFixed(2)} s = ${(ROWS / evalS).toFixed(1)} samples/s (${sum.batches} batches; weights upload ${(upload / 1000).toFixed(2)} s; rss ${mb(rss)} MiB; tensors left ${tf.memory().numTensors})`);
  return ROWS / evalS;
}
const headThreads = headThreadCount(shape, M + 1, Number.POSITIVE_INFINITY, {
  headThreads: process.env.SED_BENCH_HEAD_THREADS ? Number(process.env.SED_BENCH_HEAD_THREADS) : null,
});
let best = await evalRun(1);
if (headThreads > 1) best = await evalRun(headThreads);
else console.log("head threads: not used here (SED_BENCH_HEAD_THREADS=1, one core, or a backend other than wasm)");

// The pure-JS part alone: scores + diversity of one batch of random logits.
const stack = { heads: M, rows: BATCH, classes: shape.classes, kind: "logits" as const, data: Float32Array.from({ length: M * BATCH * shape.classes }, () => rng.normal() * 3) };
const t3 = performance.now();
const sc = stackScores(stack, { quirks: false });
diversityStats(stack, { quirks: false }, sc);
const scoreS = (performance.now() - t3) / 1000;
console.log(`scores only: ${(BATCH / scoreS).toFixed(0)} samples/s (${scoreS.toFixed(2)} s per batch of ${BATCH})`);

// The same heads, ensemble, soup and softmax scores in PyTorch (Debian python3-torch), when installed.
const threads = process.env.SED_BENCH_TORCH_THREADS ?? "2";
const torch = spawnSync("/usr/bin/python3", [fileURLToPath(new URL("./eval-heads.py", import.meta.url)), ...[shape.dim, shape.hidden, shape.classes, M, ROWS, BATCH].map(String), threads], {
  env: { ...process.env, OMP_WAIT_POLICY: "PASSIVE" },
  encoding: "utf8",
  timeout: 600_000,
});
if (torch.error || torch.status !== 0) {
  const why = torch.error ? torch.error.message : /No module named 'torch'/.test(torch.stderr) ? "python3-torch not installed" : torch.stderr.trim().split("\n").pop();
  console.log(`pytorch: not measured (${why})`);
} else {
  const t = JSON.parse(torch.stdout.trim().split("\n").pop()!) as { samples_per_s: number; torch: string; threads: number };
  console.log(`pytorch ${t.torch} (${t.threads} threads): ${t.samples_per_s.toFixed(1)} samples/s; tfjs/torch speed ratio ${(best / t.samples_per_s).toFixed(3)} (the faster sed-pipe figure above)`);
}
