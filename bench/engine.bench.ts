// Engine benchmark: a generated pipeline of 200 instances over SED_BENCH_GB (default 1) GB of dep
// files in a temp project. Prints cold status (every dep hashed: GB/s), warm status in-process, and
// the wall time of the real `sed-pipe status` process (goal <= 0.3 s), with Node + tsx start-up apart.
import { spawnSync } from "node:child_process";
import { mkdir, open, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { mkdtemp } from "node:fs/promises";
import { openWorkspace, planOnly, stateOf } from "../src/runner/workspace.ts";
import { LockStore } from "../src/store/lock-file.ts";
import type { OutRecord } from "../src/pipeline/types.ts";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(REPO, "bin", "sed-pipe.js");
const GB = Number(process.env.SED_BENCH_GB ?? 1);
const N = Number(process.env.SED_BENCH_INSTANCES ?? 200);
const bytesPerFile = Math.floor((GB * 1e9) / N);

const root = await mkdtemp(join(tmpdir(), "sed-pipe-bench-"));
const mb = (b: number) => `${(b / 1e6).toFixed(0)} MB`;
try {
  console.log(`engine bench: ${N} instances over ${GB} GB of dep files (${mb(bytesPerFile)} each) in ${root}`);
  await writeFile(
    join(root, "pipeline.yaml"),
    `version: 1
default_profile: bench
profiles:
  bench:
    params: params.yaml
stages:
  feat:
    module: stages/feat.ts
    foreach: \${items}
    deps:
      data: data/\${item}.bin
    params:
      item: \${item}
      scale: \${scale}
    outs:
      out: artifacts/feat/\${item}.txt
  merge:
    module: stages/merge.ts
    deps:
      feats: artifacts/feat
    outs:
      out: artifacts/merged.txt
`,
  );
  const items = Array.from({ length: N }, (_, i) => `f${String(i).padStart(3, "0")}`);
  await writeFile(join(root, "params.yaml"), `scale: 1\nitems: [${items.join(", ")}]\n`);
  await mkdir(join(root, "stages"));
  await writeFile(join(root, "stages/feat.ts"), `export async function run(ctx) {}\n`);
  await writeFile(join(root, "stages/merge.ts"), `export async function run(ctx) {}\n`);
  await symlink(join(REPO, "node_modules"), join(root, "node_modules"), "dir");

  // Dep files: a cheap byte pattern, distinct per file.
  await mkdir(join(root, "data"));
  const chunk = Buffer.alloc(4 << 20);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 2654435761) >>> 24;
  const t0 = performance.now();
  for (const [k, item] of items.entries()) {
    const fh = await open(join(root, "data", `${item}.bin`), "w");
    let left = bytesPerFile;
    chunk.writeUInt32LE(k, 0);
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      await fh.write(chunk, 0, n);
      left -= n;
    }
    await fh.close();
  }
  console.log(`wrote ${GB} GB of deps in ${((performance.now() - t0) / 1000).toFixed(1)} s (they sit in the page cache: "cold" below means a cold stat cache, not a cold disk)`);

  // Cold status: empty stat cache, every dep byte hashed.
  let ws = await openWorkspace(root);
  let t = performance.now();
  let steps = await planOnly(ws, [...ws.pipeline.instances.keys()]);
  let s = (performance.now() - t) / 1000;
  const hashed = ws.digests.stats.bytesHashed;
  console.log(`cold status (in-process): ${s.toFixed(2)} s, ${mb(hashed)} hashed -> ${(hashed / 1e9 / s).toFixed(2)} GB/s; ${steps.filter((x) => x.action === "run").length} to run`);

  // Record every instance as done (outputs written, stored, lock entries) without forking 200 workers.
  const lock = await LockStore.open(root);
  await mkdir(join(root, "artifacts/feat"), { recursive: true });
  for (const id of [...ws.pipeline.instances.keys()]) {
    const inst = ws.pipeline.instances.get(id)!;
    const outs: Record<string, OutRecord> = {};
    for (const [name, path] of Object.entries(inst.outs)) {
      await writeFile(join(root, path), `output of ${id}\n`);
      outs[name] = await ws.store.put(join(root, path), path);
    }
    const fp = await ws.hasher.fingerprint(inst);
    await lock.set(id, { fingerprint: fp.digest, parts: fp.parts, outs, finishedAt: new Date().toISOString(), durationMs: 1 });
  }
  await ws.hasher.save();
  await ws.digests.save();
  // Outputs written a moment ago are "racy" for the stat caches (mtime too close to hashing): wait them out.
  await new Promise((r) => setTimeout(r, 2500));
  ws = await openWorkspace(root);
  await planOnly(ws, [...ws.pipeline.instances.keys()]);

  // Warm status, in-process: load + hash (stat cache) + plan.
  const runs: number[] = [];
  for (let i = 0; i < 5; i++) {
    t = performance.now();
    ws = await openWorkspace(root);
    steps = await planOnly(ws, [...ws.pipeline.instances.keys()]);
    runs.push(performance.now() - t);
  }
  const fresh = steps.filter((x) => stateOf(x) === "fresh").length;
  runs.sort((a, b) => a - b);
  console.log(`warm status (in-process: load pipeline, stat-cached digests, plan): median ${runs[2]!.toFixed(0)} ms, min ${runs[0]!.toFixed(0)} ms; ${fresh}/${steps.length} fresh; files hashed ${ws.digests.stats.filesHashed}`);

  // Warm status as the user runs it: a fresh Node process with the tsx loader.
  const wall = (args: string[]) => {
    const ts: number[] = [];
    let out = "";
    for (let i = 0; i < 5; i++) {
      const a = performance.now();
      const r = spawnSync(process.execPath, [BIN, ...args], { cwd: root, encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } });
      ts.push(performance.now() - a);
      out = r.stdout.trim().split("\n").pop() ?? "";
      if (r.status !== 0) throw new Error(`sed-pipe ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
    }
    ts.sort((x, y) => x - y);
    return { median: ts[2]!, min: ts[0]!, out };
  };
  const st = wall(["status"]);
  const ver = wall(["--version"]);
  const bare = (() => {
    const ts: number[] = [];
    for (let i = 0; i < 5; i++) {
      const a = performance.now();
      spawnSync(process.execPath, ["-e", "0"]);
      ts.push(performance.now() - a);
    }
    return ts.sort((x, y) => x - y)[2]!;
  })();
  console.log(`warm \`sed-pipe status\` (real process): median ${st.median.toFixed(0)} ms, min ${st.min.toFixed(0)} ms  [${st.out}]`);
  console.log(`  of which start-up: \`sed-pipe --version\` ${ver.median.toFixed(0)} ms (bare node ${bare.toFixed(0)} ms; the rest is loading the CLI's modules)`);
  console.log(`  goal <= 300 ms: ${st.median <= 300 ? "met" : "NOT met"}; status work beyond start-up ~${(st.median - ver.median).toFixed(0)} ms`);
  console.log(`peak RSS of this bench process: ${mb(process.resourceUsage().maxRSS * 1024)}`);
} finally {
  if (process.env.SED_BENCH_KEEP === "1") console.log(`kept ${root}`);
  else await rm(root, { recursive: true, force: true });
}
