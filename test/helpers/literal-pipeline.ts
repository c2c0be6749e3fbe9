// Pipelines built by hand for runner tests (no pipeline.yaml): instances in a given topological
// order, edges from out paths to dep paths, as src/pipeline/load.ts would make them.
import { DirectedGraph } from "graphology";
import type { Pipeline, StageInstance } from "../../src/pipeline/types.ts";

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
