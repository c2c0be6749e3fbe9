// Instances -> the DAG: output checks (one producer per path, no nesting), edges from outputs consumed
// as deps, cycle detection and the topological order (graphology-dag). Reads the disk only to accept a
// dep under artifacts/ or cache/ that exists without a producer; owns the graph diagnostics.
import { existsSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { DirectedGraph } from "graphology";
import { hasCycle, topologicalGenerations } from "graphology-dag";
import { ConfigError } from "../errors.ts";
import { configErrorAt, formatAt, posString } from "./diagnostics.ts";
import type { InstanceSpans } from "./expand.ts";
import type { Pipeline, StageInstance } from "./types.ts";

type Graph = Pipeline["graph"];

/** Project-relative folders whose paths only stages create: a dep there with no producer is an error. */
const PRODUCED_ROOTS = ["artifacts", "cache"];

function isWithin(inner: string, outer: string): boolean {
  return inner === outer || inner.startsWith(outer + "/");
}

/** Out path -> its producer; no two instances may write the same path or nested paths. */
function producers(all: StageInstance[], spans: Map<string, InstanceSpans>): Map<string, { id: string; name: string }> {
  const producerOf = new Map<string, { id: string; name: string }>();
  for (const inst of all) {
    for (const [name, path] of Object.entries(inst.outs)) {
      const prev = producerOf.get(path);
      if (prev) {
        throw configErrorAt(spans.get(inst.id)!.outs[name]!, `duplicate output "${path}": written by ${prev.id} (out "${prev.name}") and ${inst.id} (out "${name}")`, "every path can have only one producer");
      }
      producerOf.set(path, { id: inst.id, name });
    }
  }
  for (const [path, who] of producerOf) {
    const segs = path.split("/");
    for (let i = 1; i < segs.length; i++) {
      const parent = segs.slice(0, i).join("/");
      const outer = producerOf.get(parent);
      if (outer) {
        throw configErrorAt(spans.get(who.id)!.outs[who.name]!, `duplicate output: "${path}" of ${who.id} lies inside "${parent}" of ${outer.id}`, "outputs of different instances must not be nested");
      }
    }
  }
  return producerOf;
}

/**
 * The DAG of `all` (declaration order) and its instances in a topological order: generation by
 * generation (graphology-dag), declaration order within a generation, so the order is stable.
 */
export function buildGraph(root: string, all: StageInstance[], spans: Map<string, InstanceSpans>, exists: (abs: string) => boolean = existsSync): { graph: Graph; order: StageInstance[] } {
  const producerOf = producers(all, spans);
  // Edges: a dep equal to, inside, or containing an out.
  const graph: Graph = new DirectedGraph({ allowSelfLoops: true });
  for (const inst of all) graph.addNode(inst.id, { instance: inst });
  const outList = [...producerOf.entries()];
  for (const inst of all) {
    for (const [name, dep] of Object.entries(inst.deps)) {
      if (isAbsolute(dep)) continue;
      let found = false;
      for (const [out, who] of outList) {
        if (!isWithin(dep, out) && !isWithin(out, dep)) continue;
        found = true;
        if (graph.hasEdge(who.id, inst.id)) {
          const paths = graph.getEdgeAttribute(who.id, inst.id, "paths");
          if (!paths.includes(dep)) paths.push(dep);
        } else {
          graph.addDirectedEdge(who.id, inst.id, { paths: [dep] });
        }
      }
      if (!found && PRODUCED_ROOTS.includes(dep.split("/")[0]!) && !exists(resolve(root, dep))) {
        throw configErrorAt(spans.get(inst.id)!.deps[name]!, `${inst.id === inst.stage ? `stage "${inst.stage}"` : `stage "${inst.stage}" (instance ${inst.id})`} depends on unknown output "${dep}"`, "no stage declares it in outs and it is not on disk: fix the path or add the producing stage");
      }
    }
  }

  const declIndex = new Map(all.map((inst, i) => [inst.id, i]));
  if (hasCycle(graph)) throw cycleError(graph, spans, declIndex);
  const byDecl = (a: string, b: string) => declIndex.get(a)! - declIndex.get(b)!;
  const order = topologicalGenerations(graph).flatMap((gen) => gen.sort(byDecl));
  return { graph, order: order.map((id) => graph.getNodeAttribute(id, "instance")) };
}

/** One cycle of a graph known to have one (depth-first, following out-edges in declaration order). */
function findCycle(graph: Graph, declIndex: Map<string, number>): string[] {
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (id: string): string[] | null => {
    state.set(id, "open");
    stack.push(id);
    for (const next of graph.outNeighbors(id).sort((a, b) => declIndex.get(a)! - declIndex.get(b)!)) {
      if (state.get(next) === "open") return stack.slice(stack.indexOf(next));
      if (state.get(next) === undefined) {
        const found = visit(next);
        if (found) return found;
      }
    }
    stack.pop();
    state.set(id, "done");
    return null;
  };
  for (const id of declIndex.keys()) {
    if (state.get(id) !== undefined) continue;
    const found = visit(id);
    if (found) return found;
  }
  throw new Error("findCycle: no cycle (hasCycle said there was one)");
}

function cycleError(graph: Graph, spans: Map<string, InstanceSpans>, declIndex: Map<string, number>): ConfigError {
  const ring = findCycle(graph, declIndex);
  // Start the report at the instance declared first, so the text does not depend on the walk.
  const firstDecl = ring.indexOf([...ring].sort((a, b) => declIndex.get(a)! - declIndex.get(b)!)[0]!);
  const cycle = [...ring.slice(firstDecl), ...ring.slice(0, firstDecl)];
  cycle.push(cycle[0]!);
  const lines = cycle.slice(0, -1).map((id, i) => {
    const inst = graph.getNodeAttribute(id, "instance");
    const next = cycle[i + 1]!;
    const via = graph.getEdgeAttribute(id, next, "paths").join(", ");
    return `  ${id} (stage "${inst.stage}" at ${posString(inst.pos)}) writes ${via}, needed by ${next}`;
  });
  const first = spans.get(cycle[0]!)!.stage;
  return new ConfigError(`${formatAt(first, `dependency cycle: ${cycle.join(" -> ")}`)}\n${lines.join("\n")}`, {
    hint: "a stage cannot depend, directly or through others, on its own outputs",
  });
}
