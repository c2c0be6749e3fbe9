// Benchmark of src/hash: cold dep hashing throughput (no stat cache; files just written, so they are
// in the page cache: this measures hashing, not the disk) and warm fingerprinting of 200 instances
// through the persisted stat cache, on one thread and on the worker pool. Usage: node --import tsx bench/hash.bench.ts
//   SED_BENCH_GB=5 (total bytes, default 1)  SED_BENCH_FILES=200
import { createHash, randomFillSync } from "node:crypto";
import { mkdtemp, mkdir, open, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir, cpus, loadavg } from "node:os";
import { join } from "node:path";
import { Hasher } from "../src/hash/fingerprint.ts";
import { DigestService } from "../src/hash/digest.ts";
import type { StageInstance } from "../src/pipeline/types.ts";

const GB = Number(process.env.SED_BENCH_GB ?? 1);
const FILES = Number(process.env.SED_BENCH_FILES ?? 200);
const totalBytes = Math.round(GB * 1e9);
const fileBytes = Math.ceil(totalBytes / FILES);

const gbps = (bytes: number, ms: number) => (bytes / 1e9 / (ms / 1000)).toFixed(2);
const rssMb = () => (process.memoryUsage().rss / 1e6).toFixed(0);

const root = await mkdtemp(join(tmpdir(), "sed-hash-bench-"));
try {
  console.log(`hash bench: ${FILES} files x ${(fileBytes / 1e6).toFixed(1)} MB = ${(FILES * fileBytes / 1e9).toFixed(2)} GB in ${root} (${cpus().length} CPUs: ${cpus()[0]?.model ?? "?"})`);
  await mkdir(join(root, "data"));
  await mkdir(join(root, "stages"));
  await mkdir(join(root, "src"));
  await writeFile(join(root, "src", "helper.ts"), "export const helper = (x: number) => x * 2;\n");
  await writeFile(join(root, "stages", "bench.ts"), 'import { helper } from "../src/helper.ts";\nexport async function run() { helper(1); }\n');
  // One random block, each file made distinct by its first bytes (so no digest is shared).
  const block = Buffer.allocUnsafe(Math.min(fileBytes, 64 * 1024 * 1024));
  randomFillSync(block);
  const past = new Date(Date.now() - 3600_000);
  let t = performance.now();
  for (let i = 0; i < FILES; i++) {
    const path = join(root, "data", `f${String(i).padStart(4, "0")}.bin`);
    const fh = await open(path, "w");
    block.writeUInt32LE(i, 0);
    for (let off = 0; off < fileBytes; off += block.length) await fh.write(block, 0, Math.min(block.length, fileBytes - off));
    await fh.close();
    // Dated in the past: the stat cache does not trust files written within its racy window.
    await utimes(path, past, past);
  }
  console.log(`write: ${gbps(FILES * fileBytes, performance.now() - t)} GB/s`);

  // Reference: sha256 of an in-memory buffer on one core (the ceiling of any single-threaded hasher).
  const mem = Buffer.alloc(256 * 1024 * 1024, 7);
  t = performance.now();
  createHash("sha256").update(mem).digest();
  console.log(`sha256 in memory, 1 thread: ${gbps(mem.length, performance.now() - t)} GB/s`);

  const instances: StageInstance[] = Array.from({ length: FILES }, (_, i) => ({
    id: `bench@${i}`,
    stage: "bench",
    module: "stages/bench.ts",
    item: i,
    params: { i, lr: 0.001, name: `instance ${i}` },
    deps: { data: `data/f${String(i).padStart(4, "0")}.bin` },
    outs: { out: `artifacts/bench/${i}` },
    pos: { file: "pipeline.yaml", line: 1, col: 1 },
  }));

  // Cold, one thread: no stat cache; every byte read and hashed on the main thread, one file at a time.
  const inline = new Hasher(root, await DigestService.open(root, { pool: null, statePath: null }));
  t = performance.now();
  for (const inst of instances) await inline.fingerprint(inst);
  const inlineMs = performance.now() - t;
  console.log(`cold fingerprint, 1 thread: ${(inlineMs / 1000).toFixed(2)} s = ${gbps(inline.digests.stats.bytesHashed, inlineMs)} GB/s`);

  // Cold, worker pool (the default): files hashed on up to 4 worker threads, instances concurrently.
  const cold = new Hasher(root, await DigestService.open(root));
  t = performance.now();
  await cold.fingerprintAll(instances);
  const coldMs = performance.now() - t;
  console.log(`cold fingerprint, worker pool: ${(coldMs / 1000).toFixed(2)} s = ${gbps(cold.digests.stats.bytesHashed, coldMs)} GB/s (${cold.digests.stats.filesHashed} files), RSS ${rssMb()} MB`);
  await cold.save();

  // Warm: a new Hasher (a new process in real use) reading the persisted stat cache.
  const warm = new Hasher(root, await DigestService.open(root));
  t = performance.now();
  for (const inst of instances) await warm.fingerprint(inst);
  const warmMs = performance.now() - t;
  console.log(`warm fingerprint of ${FILES} instances (stat cache): ${warmMs.toFixed(0)} ms (${(warmMs / FILES).toFixed(2)} ms/instance), files re-read: ${warm.digests.stats.filesHashed}, cache hits: ${warm.digests.stats.cacheHits}`);
  console.log(`load average while measuring: ${loadavg().map((x) => x.toFixed(1)).join(" ")} (a shared machine: figures vary run to run)`);
} finally {
  await rm(root, { recursive: true, force: true });
  console.log(`removed ${root}`);
}
