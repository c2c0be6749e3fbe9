// Per-instance overhead of the runner: SED_BENCH_INSTANCES (default 72, the demo's eval fan-out)
// instances of a stage that loads what the demo's eval stage loads (tfjs-core + the wasm backend +
// h5wasm) and writes a small output, run with -j 2 on warm persistent workers and, for comparison,
// with one worker process per instance (what sed-pipe did before). Overhead = wall time per instance
// minus the time the stage itself reports, per parallel lane.
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { executeRun } from "../src/runner/execute.ts";
import { openWorkspace, planner } from "../src/runner/workspace.ts";
import { LockStore } from "../src/store/lock-file.ts";
import { WorkerPool } from "../src/runner/worker-pool.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const N = Number(process.env.SED_BENCH_INSTANCES ?? 72);
const JOBS = 2;

const STAGE = `import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-wasm";
import h5wasm from "h5wasm/node";
import { appendFileSync, writeFileSync } from "node:fs";
export async function run(ctx) {
  const t0 = performance.now();
  await h5wasm.ready;
  if (tf.getBackend() !== "wasm") { await tf.setBackend("wasm"); await tf.ready(); }
  const s = tf.tidy(() => tf.sum(tf.ones([64, 64])).dataSync()[0]);
  writeFileSync(ctx.outs.out, JSON.stringify({ item: ctx.params.item, s }));
  appendFileSync(ctx.root + "/stage-ms.txt", (performance.now() - t0).toFixed(2) + "\\n");
}
`;

async function project(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "sed-pipe-bench-inst-"));
  const items = Array.from({ length: N }, (_, i) => `e${String(i).padStart(2, "0")}`);
  await writeFile(
    join(root, "pipeline.yaml"),
    `version: 1\ndefault_profile: b\nprofiles:\n  b:\n    params: params.yaml\nstages:\n  ev:\n    module: stages/ev.ts\n    foreach: \${items}\n    params:\n      item: \${item}\n    outs:\n      out: artifacts/ev/\${item}.json\n`,
  );
  await writeFile(join(root, "params.yaml"), `items: [${items.join(", ")}]\n`);
  await mkdir(join(root, "stages"));
  await writeFile(join(root, "stages/ev.ts"), STAGE);
  await symlink(join(REPO, "node_modules"), join(root, "node_modules"), "dir");
  return root;
}

async function measure(label: string, recycleAfter: number): Promise<void> {
  const root = await project();
  try {
    const ws = await openWorkspace(root, { backend: "wasm" });
    const order = [...ws.pipeline.instances.keys()];
    const executor = new WorkerPool({ cacheDir: ws.cacheDir, maxWorkers: JOBS + 1, env: process.env, recycleAfter });
    const t = performance.now();
    const r = await executeRun({
      pipeline: ws.pipeline,
      order,
      planner,
      fingerprinter: ws.hasher,
      digests: ws.digests,
      store: ws.store,
      lock: await LockStore.open(root),
      cacheDir: ws.cacheDir,
      jobs: JOBS,
      keepGoing: false,
      force: [],
      dryRun: false,
      backend: "wasm",
      executor,
      workerEnv: process.env,
      signal: new AbortController().signal,
      emit: () => {},
    });
    const wall = performance.now() - t;
    await executor.close();
    if (r.counts.ran !== N) throw new Error(`${label}: ran ${r.counts.ran} of ${N} (${[...r.failures.values()].map((f) => f.message).join("; ")})`);
    const stageMs = (await readFile(join(root, "stage-ms.txt"), "utf8")).trim().split("\n").map(Number);
    const inStage = stageMs.reduce((a, b) => a + b, 0);
    const perLane = (wall * JOBS) / N;
    console.log(
      `${label.padEnd(36)} ${N} instances, -j ${JOBS}: wall ${(wall / 1000).toFixed(2)} s; per instance ${perLane.toFixed(0)} ms per lane, ` +
        `of which in the stage ${(inStage / N).toFixed(0)} ms, overhead ${(perLane - inStage / N).toFixed(0)} ms`,
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

await measure("warm persistent workers", 100);
await measure("one worker process per instance", 1);
console.log(`load average while measuring: ${loadavg().map((x) => x.toFixed(1)).join(" ")} (a shared machine: figures vary run to run)`);
