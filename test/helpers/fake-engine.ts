// Stand-ins for src/pipeline (plan) and src/hash (fingerprint) so runner tests build Pipelines by
// hand: a tiny but honest planner and a fingerprint over params, dep bytes and module bytes.
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { DirectedGraph } from "graphology";
import type { Fingerprint, LockEntry, Pipeline, PlanStep, StageInstance } from "../../src/pipeline/types.ts";
import type { Fingerprinter, OutputsState, Planner } from "../../src/runner/assess.ts";
import { absPath } from "../../src/runner/assess.ts";
import { OutputDigester } from "../../src/store/digest.ts";

export function fakeDecide(
  id: string,
  entry: LockEntry | undefined,
  cur: Fingerprint,
  outputs: OutputsState,
  cached: boolean,
  forced: boolean,
): PlanStep {
  if (forced) return { id, action: "run", reason: "forced", changes: [{ kind: "forced" }] };
  if (!entry) return { id, action: "run", reason: "new", changes: [{ kind: "new" }] };
  if (entry.fingerprint !== cur.digest) return { id, action: "run", reason: "fingerprint changed", changes: [] };
  if (outputs.modified.length) return { id, action: "run", reason: "outputs modified", changes: [{ kind: "outputs-modified", paths: outputs.modified }] };
  if (outputs.missing.length) {
    return cached
      ? { id, action: "restore", reason: "outputs missing, in cache", changes: [{ kind: "outputs-missing", paths: outputs.missing }] }
      : { id, action: "run", reason: "outputs missing", changes: [{ kind: "outputs-missing", paths: outputs.missing }] };
  }
  return { id, action: "skip", reason: "fresh", changes: [] };
}

export const fakePlanner: Planner = {
  decideInstance: fakeDecide,
  planRun({ order, upstream, lock, current, outputs, cached, force }) {
    const steps = new Map<string, PlanStep>();
    for (const id of order) {
      const up = (upstream[id] ?? []).find((u) => steps.get(u)?.action === "run");
      const cur = current[id]!;
      if (up && !force.includes(id)) steps.set(id, { id, action: "run", reason: `upstream ${up} runs`, changes: [{ kind: "upstream", id: up }] });
      else if (cur === "pending") steps.set(id, { id, action: "run", reason: "deps pending", changes: [] });
      else steps.set(id, fakeDecide(id, lock.instances[id], cur, outputs[id]!, cached[id]!, force.includes(id)));
    }
    return order.map((id) => steps.get(id)!);
  },
};

export function fakeFingerprinter(root: string): Fingerprinter {
  const d = new OutputDigester(null);
  return {
    async fingerprint(inst: StageInstance): Promise<Fingerprint> {
      const deps: Record<string, string> = {};
      for (const path of Object.values(inst.deps)) deps[path] = (await d.digestPath(absPath(root, path)))!.digest;
      const code = { [inst.module]: createHash("sha256").update(await readFile(absPath(root, inst.module))).digest("hex") };
      const paramsHash = createHash("sha256").update(JSON.stringify(inst.params)).digest("hex");
      const parts = { params: inst.params, paramsHash, deps, code, runtime: { node: process.version } };
      return { digest: createHash("sha256").update(JSON.stringify(parts)).digest("hex"), parts };
    },
  };
}

/** A Pipeline literal: instances in the given (topological) order; edges from out paths to dep paths. */
export function makePipeline(root: string, instances: Array<Omit<StageInstance, "pos" | "item" | "stage"> & { stage?: string }>): Pipeline {
  const graph = new DirectedGraph<{ instance: StageInstance }, { paths: string[] }>();
  const map = new Map<string, StageInstance>();
  for (const i of instances) {
    const inst: StageInstance = { stage: i.stage ?? i.id.split("@")[0]!, item: null, pos: { file: "pipeline.yaml", line: 1, col: 1 }, ...i };
    map.set(inst.id, inst);
    graph.addNode(inst.id, { instance: inst });
  }
  for (const a of map.values()) {
    for (const b of map.values()) {
      const paths = Object.values(b.deps).filter((dep) => Object.values(a.outs).some((o) => dep === o || dep.startsWith(o + "/") || o.startsWith(dep + "/")));
      if (paths.length) graph.addEdge(a.id, b.id, { paths });
    }
  }
  const stages = new Map<string, { name: string; module: string; instanceIds: string[]; pos: { file: string; line: number; col: number } }>();
  for (const inst of map.values()) {
    const s = stages.get(inst.stage) ?? { name: inst.stage, module: inst.module, instanceIds: [], pos: inst.pos };
    s.instanceIds.push(inst.id);
    stages.set(inst.stage, s);
  }
  return { root, profile: "test", paramsFiles: [], stages, instances: map, graph };
}
