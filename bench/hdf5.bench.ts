// Feature-store throughput: writes a multi-pass feature file (default 2 GB, 768-wide, 4 passes) in
// os.tmpdir(), then reads it sequentially and shuffled, printing throughput and peak RSS. Deletes
// the file at the end. Size: SED_BENCH_HDF5_GB=5 (e.g.); dim: SED_BENCH_HDF5_DIM.
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createFeatureFile } from "../src/io/feature-writer.ts";
import { openFeatureFile } from "../src/io/feature-reader.ts";
import { Rng } from "../src/rng.ts";

const GB = Number(process.env.SED_BENCH_HDF5_GB ?? 2);
const DIM = Number(process.env.SED_BENCH_HDF5_DIM ?? 768);
const PASSES = 4;
const passRows = Math.ceil((GB * 1e9) / (DIM * 4 * PASSES));
const rows = passRows * PASSES;

let peakRss = 0;
const sampler = setInterval(() => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
}, 50);
const mb = (b: number): string => `${(b / 1e6).toFixed(0)} MB`;
const sample = (): void => {
  peakRss = Math.max(peakRss, process.memoryUsage().rss);
};

const dir = await mkdtemp(join(tmpdir(), "sed-hdf5-bench-"));
const path = join(dir, "bench.hdf5");
try {
  console.log(`hdf5 bench: ${rows} rows x ${DIM} float32 (${PASSES} passes of ${passRows}), ${mb(rows * DIM * 4)} of embed`);

  // Write: a fixed random block, shifted per batch so rows differ and the last row is non-zero.
  const batch = 4096;
  const block = new Float32Array(batch * DIM);
  const rng = new Rng(1);
  for (let i = 0; i < block.length; i++) block[i] = rng.uniform(-1, 1);
  const labels = new Int32Array(batch);
  const index = new Int32Array(batch);
  let t0 = performance.now();
  const w = await createFeatureFile(path, { dim: DIM, expectedRows: rows });
  for (let p = 0; p < PASSES; p++) {
    for (let s = 0; s < passRows; s += batch) {
      const k = Math.min(batch, passRows - s);
      block[0] = s;
      for (let j = 0; j < k; j++) {
        labels[j] = (s + j) % 1000;
        index[j] = s + j;
      }
      w.append(k === batch ? block : block.subarray(0, k * DIM), labels.subarray(0, k), index.subarray(0, k));
    }
    sample();
  }
  await w.finish();
  let secs = (performance.now() - t0) / 1000;
  const size = (await stat(path)).size;
  console.log(`write:      ${mb(size)} in ${secs.toFixed(1)} s = ${(size / 1e9 / secs).toFixed(2)} GB/s`);

  t0 = performance.now();
  const r = await openFeatureFile(path, { dim: DIM, requireComplete: true });
  console.log(`open:       ${((performance.now() - t0) / 1000).toFixed(2)} s (validation, pass detection: ${r.passes} x ${r.passRows})`);

  // Sequential: every row into 1024-row batches (page cache warm: the file was just written).
  peakRss = 0;
  sample();
  t0 = performance.now();
  let check = 0;
  let seen = 0;
  let verified = 0;
  for (const b of r.sequential(1024)) {
    check += b.embed[0] + b.label[b.count - 1];
    // The first row of every written batch carries its in-pass row number: check it came back
    // (this covers rows past the 4 GiB offset in files > 4 GiB).
    for (let j = 0; j < b.count; j++) {
      const inPass = (b.start + j) % passRows;
      if (inPass % batch !== 0) continue;
      if (b.embed[j * DIM] !== inPass || b.index[j] !== inPass) throw new Error(`row ${b.start + j}: read back ${b.embed[j * DIM]} / ${b.index[j]}, wrote ${inPass}`);
      verified++;
    }
    seen += b.count;
  }
  secs = (performance.now() - t0) / 1000;
  sample();
  console.log(
    `sequential: ${seen} rows in ${secs.toFixed(1)} s = ${((seen * DIM * 4) / 1e9 / secs).toFixed(2)} GB/s ` +
      `(${Math.round(seen / secs)} rows/s, batch 1024), peak RSS ${mb(peakRss)}  [${verified} rows verified]`,
  );

  // Shuffled: one whole pass, default blocks and window.
  peakRss = 0;
  sample();
  t0 = performance.now();
  seen = 0;
  for (const b of r.shuffled({ pass: 1, batchSize: 256, rng: new Rng(7) })) {
    check += b.embed[1];
    seen += b.count;
  }
  secs = (performance.now() - t0) / 1000;
  sample();
  console.log(
    `shuffled:   ${seen} rows (pass 1) in ${secs.toFixed(1)} s = ${Math.round(seen / secs)} rows/s ` +
      `(${((seen * DIM * 4) / 1e9 / secs).toFixed(2)} GB/s, batch 256), peak RSS ${mb(peakRss)}`,
  );
  r.close();
  console.log(`process max RSS: ${mb(process.resourceUsage().maxRSS * 1024)}  [checksum ${check.toFixed(0)}]`);
} finally {
  clearInterval(sampler);
  await rm(dir, { recursive: true, force: true });
}
