// What the workspace's current pipeline refers to in cache/state/ and cache/build/ (for `sed-pipe
// gc`, src/store/gc.ts): the folders any profile's instances name as deps or outs (their tree
// records), the bundles its stage modules would run from now, those of cluster jobs still on record,
// those the contracts index names, and the pipeline memos of its profiles. Reads only; what it cannot
// tell for sure it reports as unknown (null), and gc then removes nothing of that kind.
import { readFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import type { StateKeep } from "../store/gc.ts";
import { readJobRecords } from "./slurm/job-store.ts";
import { stageBundle } from "./stage-bundle.ts";

/** Bundle file names a job script starts (`<cacheDir>/build/<sha256>.mjs`). */
export function bundlesInScript(script: string): string[] {
  return [...script.matchAll(/[\\/]build[\\/]([0-9a-f]{64}\.mjs)/g)].map((m) => m[1]!);
}

export async function currentState(rootIn: string, onWarn: (msg: string) => void): Promise<StateKeep> {
  const root = resolve(rootIn);
  const [{ absPath }, { loadPipeline, profileNames }, { memoFile }] = await Promise.all([import("../pipeline/paths.ts"), import("../pipeline/load.ts"), import("../pipeline/memo.ts")]);
  const cacheDir = join(root, "cache");
  let paths: Set<string> | null = new Set();
  let memos: Set<string> | null = new Set([basename(memoFile(root, null))]);
  const modules = new Set<string>();
  try {
    for (const profile of await profileNames(root)) {
      const p = await loadPipeline(root, { profile, contracts: false });
      for (const inst of p.instances.values()) {
        for (const path of [...Object.values(inst.deps), ...Object.values(inst.outs)]) paths.add(absPath(p, path));
        modules.add(absPath(p, inst.module));
      }
      memos.add(basename(memoFile(root, profile)));
    }
  } catch (err) {
    onWarn(`tree records, stage bundles and pipeline memos are kept: the pipeline does not load (${(err as Error).message.split("\n")[0]})`);
    paths = null;
    memos = null;
  }
  return { paths, bundles: paths === null ? null : await bundlesInUse(root, cacheDir, modules, onWarn), memos };
}

/** The current stages' bundles, the bundles of cluster jobs still on record, the contracts index's; null when unknown. */
async function bundlesInUse(root: string, cacheDir: string, modules: Set<string>, onWarn: (msg: string) => void): Promise<Set<string> | null> {
  const { indexedContractBundles } = await import("../pipeline/contracts.ts");
  const out = await indexedContractBundles(root);
  for (const m of modules) {
    try {
      out.add((await stageBundle(m, cacheDir)).name);
    } catch (err) {
      onWarn(`stage bundles are kept: ${m} does not bundle (${(err as Error).message.split("\n")[0]})`);
      return null;
    }
  }
  for (const rec of await readJobRecords(cacheDir)) {
    let script: string;
    try {
      script = await readFile(join(rec.jobDir, "job.sh"), "utf8");
    } catch {
      onWarn(`stage bundles are kept: the script of the cluster job of ${rec.instanceId} (${rec.jobDir}) cannot be read`);
      return null;
    }
    for (const b of bundlesInScript(script)) out.add(b);
  }
  return out;
}
