// Target resolution on a loaded Pipeline: names/prefixes/instance ids -> upstream closure, and the
// downstream set for invalidation. Pure graph queries: no I/O, never changes the pipeline.
import { ConfigError } from "../errors.ts";
import type { Pipeline } from "./types.ts";

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length]!;
}

function suggest(target: string, candidates: string[]): string {
  const ranked = [...new Set(candidates)]
    .map((c) => ({ c, d: editDistance(target.toLowerCase(), c.toLowerCase()) }))
    .filter((x) => x.d <= Math.max(2, Math.floor(target.length / 3)))
    .sort((a, b) => a.d - b.d || a.c.localeCompare(b.c));
  const best = ranked[0]?.d ?? 0;
  const names = ranked
    .filter((x) => x.d <= best + 1)
    .slice(0, 3)
    .map((x) => x.c);
  return names.length ? `; did you mean ${names.join(", ")}?` : "";
}

function listing(names: string[], max = 8): string {
  return names.length <= max ? names.join(", ") : `${names.slice(0, max).join(", ")}, ... (${names.length} in all)`;
}

/** The groups (`stage@a`, `stage@a/b`, ...) just below the typed prefix that hold the matches. */
function groupsOf(stage: string, items: string[], typed: string): string[] {
  const out = new Set<string>();
  for (const it of items) {
    const slash = it.indexOf("/", typed.length);
    if (slash > 0) out.add(`${stage}@${it.slice(0, slash)}`);
  }
  return [...out];
}

/** The instance ids one target names. */
function resolveOne(p: Pipeline, target: string): string[] {
  const stageNames = [...p.stages.keys()];
  if (p.instances.has(target)) return [target];
  const at = target.indexOf("@");
  if (at < 0) {
    const exact = p.stages.get(target);
    if (exact) return exact.instanceIds;
    const prefixed = stageNames.filter((s) => s.startsWith(target));
    if (prefixed.length === 1) return p.stages.get(prefixed[0]!)!.instanceIds;
    if (prefixed.length > 1) {
      throw new ConfigError(`target "${target}" is ambiguous: it matches stages ${prefixed.join(", ")}`, { hint: "type more of the stage name" });
    }
    throw new ConfigError(`unknown target "${target}"${suggest(target, [...stageNames, ...p.instances.keys()])}`, {
      hint: `stages: ${stageNames.join(", ")}`,
    });
  }
  const stagePart = target.slice(0, at);
  const itemPart = target.slice(at + 1);
  let stage = p.stages.get(stagePart);
  if (!stage) {
    const prefixed = stageNames.filter((s) => s.startsWith(stagePart));
    if (prefixed.length !== 1) {
      const why = prefixed.length ? `is ambiguous (stages ${prefixed.join(", ")})` : `names no stage${suggest(stagePart, stageNames)}`;
      throw new ConfigError(`target "${target}": "${stagePart}" ${why}`, { hint: `stages: ${stageNames.join(", ")}` });
    }
    stage = p.stages.get(prefixed[0]!)!;
  }
  const exact = `${stage.name}@${itemPart}`;
  if (p.instances.has(exact)) return [exact];
  const item = (id: string) => id.slice(stage.name.length + 1);
  // A prefix that ends at a "/" boundary names a whole group: `eval@ood_gen` (or `eval@ood_gen/`)
  // is every `eval@ood_gen/*`, even where `eval@ood_gen_x/*` also starts with the same letters.
  const groupPrefix = itemPart.endsWith("/") ? itemPart : `${itemPart}/`;
  const group = itemPart === "" ? [] : stage.instanceIds.filter((id) => item(id).startsWith(groupPrefix));
  if (group.length > 0) return group;
  const matches = stage.instanceIds.filter((id) => item(id).startsWith(itemPart));
  if (matches.length === 1) return matches;
  if (matches.length > 1) {
    const groups = groupsOf(stage.name, matches.map(item), itemPart);
    throw new ConfigError(`target "${target}" is ambiguous: it matches ${listing(matches)}`, {
      hint: groups.length > 1 ? `type more of the instance id, or name a whole group: ${listing(groups)}` : "type more of the instance id",
    });
  }
  throw new ConfigError(`unknown target "${target}"${suggest(exact, stage.instanceIds)}`, {
    hint: `instances of ${stage.name}: ${listing(stage.instanceIds)}`,
  });
}

/** The targets and everything upstream of them, in the pipeline's topological order; [] = all. */
export function resolveTargets(p: Pipeline, targets: string[]): string[] {
  if (targets.length === 0) return [...p.instances.keys()];
  const wanted = new Set<string>();
  const stack: string[] = [];
  for (const t of targets) for (const id of resolveOne(p, t)) stack.push(id);
  while (stack.length) {
    const id = stack.pop()!;
    if (wanted.has(id)) continue;
    wanted.add(id);
    for (const up of p.graph.inNeighbors(id)) stack.push(up);
  }
  return [...p.instances.keys()].filter((id) => wanted.has(id));
}

/** The given instances and everything downstream of them, in topological order. */
export function downstreamOf(p: Pipeline, ids: string[]): string[] {
  const wanted = new Set<string>();
  const stack: string[] = [];
  for (const id of ids) {
    if (!p.instances.has(id)) {
      throw new ConfigError(`unknown instance "${id}"${suggest(id, [...p.instances.keys()])}`);
    }
    stack.push(id);
  }
  while (stack.length) {
    const id = stack.pop()!;
    if (wanted.has(id)) continue;
    wanted.add(id);
    for (const down of p.graph.outNeighbors(id)) stack.push(down);
  }
  return [...p.instances.keys()].filter((id) => wanted.has(id));
}

/** Instance ids one target names, without closure (for `why`, `invalidate`). */
export function matchTarget(p: Pipeline, target: string): string[] {
  return resolveOne(p, target);
}
