// Checks every instance's interpolated `resources:` (resources.ts says what is accepted) and fills
// StageInstance.resources, before anything runs. A refused value is reported at the place it was
// written (pipeline.yaml, or the params file a `${...}` leads to), once however many instances share it.
// Pure over the loaded documents.
import { isMap, type Node } from "yaml";
import { ConfigError } from "../errors.ts";
import { aliasNote, who } from "./check-params.ts";
import { formatAt, type Span } from "./diagnostics.ts";
import type { ItemOrigin } from "./expand.ts";
import { originOf, type Origin, type ProvenanceEnv } from "./provenance.ts";
import { parseResources, RESOURCE_KEYS } from "./resources.ts";
import type { StageInstance } from "./types.ts";
import { pairOf } from "./yaml-paths.ts";

export const MAX_RESOURCE_ERRORS = 20;

export interface ResourcesCheckInput {
  env: ProvenanceEnv;
  /** In declaration order; each gets its `resources` filled in. */
  instances: StageInstance[];
  /** Instance id -> its interpolated `resources:` value (absent: the stage declares none). */
  raw: Map<string, unknown>;
  items: Map<string, ItemOrigin>;
  /** Instance id -> the stage's declaration in pipeline.yaml (fallback position). */
  stageSpans: Map<string, Span>;
}

interface Finding {
  span: Span;
  text: string;
  origin: Origin;
  ids: string[];
}

/** The stage's `resources:` node in pipeline.yaml. */
function resourcesNodeOf(env: ProvenanceEnv, stage: string): Node | null {
  const stages = pairOf(env.pipeline.doc.contents as Node, "stages")?.value ?? null;
  const decl = stages && isMap(stages) ? (pairOf(stages, stage)?.value ?? null) : null;
  return decl && isMap(decl) ? (pairOf(decl, "resources")?.value ?? null) : null;
}

/** Fills each instance's resources; throws a ConfigError naming every distinct refused value. */
export function applyResources(inp: ResourcesCheckInput): void {
  const found = new Map<string, Finding>();
  const nodes = new Map<string, Node | null>();
  for (const inst of inp.instances) {
    const r = parseResources(inp.raw.get(inst.id));
    if (r.ok) {
      inst.resources = r.value;
      continue;
    }
    if (!nodes.has(inst.stage)) nodes.set(inst.stage, resourcesNodeOf(inp.env, inst.stage));
    const node = nodes.get(inst.stage)!;
    for (const p of r.problems) {
      const origin = originOf(inp.env, node, inp.items.get(inst.id) ?? null, p.path, inp.stageSpans.get(inst.id)!, p.at ?? "value");
      const key = `${origin.span.src.name}:${origin.span.start}:${origin.span.end}\0${p.text}`;
      let f = found.get(key);
      if (!f) found.set(key, (f = { span: origin.span, text: p.text, origin, ids: [] }));
      if (!f.ids.includes(inst.id)) f.ids.push(inst.id);
    }
  }
  if (found.size === 0) return;
  const findings = [...found.values()].sort((a, b) => (a.span.src.name < b.span.src.name ? -1 : a.span.src.name > b.span.src.name ? 1 : a.span.start - b.span.start));
  const shown = findings.slice(0, MAX_RESOURCE_ERRORS);
  const parts = shown.map((f) => [formatAt(f.span, `${f.text} (${who(f.ids)})`), ...aliasNote(f.origin, f.ids[0]!)].join("\n"));
  if (findings.length > shown.length) parts.push(`... and ${findings.length - shown.length} more resources errors`);
  throw new ConfigError(parts.join("\n"), {
    hint: `resources: takes ${RESOURCE_KEYS.join(", ")}: cpus and gpus whole numbers, memory a size (16G, 512M), time a duration (24h, 90m, 1-00:00:00), options a map of scheduler options`,
  });
}
