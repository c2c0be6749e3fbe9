// Checks every instance's resolved params against its stage's contract, before anything runs. Each
// refused value is reported once, at the place in the params file (or pipeline.yaml) it came from,
// with how many instances share it: 72 eval instances reading one bad `eval:` section give one error.
// Pure over the loaded documents and contracts.
import { isMap, type Node } from "yaml";
import { ConfigError } from "../errors.ts";
import { flattenIssues, issueLine, issueText, pathText, valueAt, type SchemaIssue } from "../schema-issues.ts";
import { formatAt, posString, type Span } from "./diagnostics.ts";
import type { LoadedContract } from "./contracts.ts";
import type { ItemOrigin } from "./expand.ts";
import { originOf, type Origin, type ProvenanceEnv } from "./provenance.ts";
import type { StageInstance } from "./types.ts";
import { pairOf } from "./yaml-paths.ts";

/** At most this many distinct errors are printed; the rest are counted. */
export const MAX_PARAM_ERRORS = 20;

export interface ParamsCheckInput {
  env: ProvenanceEnv;
  /** In declaration order. */
  instances: StageInstance[];
  /** Stage name -> its contract (absent or null: the stage's params are not checked). */
  contracts: Map<string, LoadedContract | null>;
  items: Map<string, ItemOrigin>;
  /** Instance id -> the stage's declaration in pipeline.yaml (fallback position). */
  stageSpans: Map<string, Span>;
}

export interface Finding {
  span: Span;
  text: string;
  origin: Origin;
  /** Instance ids whose params hold this value. */
  ids: string[];
  contracts: Set<LoadedContract>;
}

/** The stage's `params:` node in pipeline.yaml. */
function paramsNodeOf(env: ProvenanceEnv, stage: string): Node | null {
  const stages = pairOf(env.pipeline.doc.contents as Node, "stages")?.value ?? null;
  const decl = stages && isMap(stages) ? (pairOf(stages, stage)?.value ?? null) : null;
  return decl && isMap(decl) ? (pairOf(decl, "params")?.value ?? null) : null;
}

/** "eval@a", or "eval@a and 5 other eval instances". */
export function who(ids: string[]): string {
  if (ids.length === 1) return ids[0]!;
  const stages = new Set(ids.map((id) => id.split("@")[0]));
  const kind = stages.size === 1 ? ` ${[...stages][0]} instances` : " instances";
  return `${ids[0]} and ${ids.length - 1} other${kind}`;
}

/** Where an aliased value was anchored, and through which alias the first instance reached it. */
export function aliasNote(origin: Origin, firstId: string): string[] {
  const notes: string[] = [];
  if (origin.alias) {
    const a = origin.alias;
    notes.push(`  (the value of the alias *${a.name}${a.anchor ? `, anchored at ${posString(a.anchor.src.pos(a.anchor.start))}` : ""})`);
  }
  const v = origin.via[origin.via.length - 1];
  if (v) notes.push(`  (inside the value anchored as &${v.name}: ${firstId} reaches it through *${v.name} at ${posString(v.use.src.pos(v.use.start))})`);
  return notes;
}

/** Every distinct problem, in file order; [] when all params pass their contracts. */
export function findParamErrors(inp: ParamsCheckInput): Finding[] {
  const found = new Map<string, Finding>();
  const paramsNodes = new Map<string, Node | null>();
  for (const inst of inp.instances) {
    const loaded = inp.contracts.get(inst.stage);
    if (!loaded) continue;
    const r = loaded.contract.params.safeParse(inst.params);
    if (r.success) continue;
    if (!paramsNodes.has(inst.stage)) paramsNodes.set(inst.stage, paramsNodeOf(inp.env, inst.stage));
    const paramsNode = paramsNodes.get(inst.stage)!;
    const fallback = inp.stageSpans.get(inst.id)!;
    for (const issue of flattenIssues(r.error.issues as unknown as SchemaIssue[])) {
      // One finding per unknown key, at the key.
      const keyed = issue.code === "unrecognized_keys" ? (issue.keys ?? []).map((k) => ({ ...issue, keys: [k] })) : [issue];
      for (const one of keyed) {
        const path = one.code === "unrecognized_keys" ? [...one.path, one.keys![0]!] : one.path;
        const origin = originOf(inp.env, paramsNode, inp.items.get(inst.id) ?? null, path, fallback, one.code === "unrecognized_keys" ? "key" : "value");
        const text = issueText(one, valueAt(inst.params, one.path));
        const key = `${origin.span.src.name}:${origin.span.start}:${origin.span.end}\0${text}`;
        let f = found.get(key);
        if (!f) {
          f = { span: origin.span, text: issueLine(pathText(one.path), text), origin, ids: [], contracts: new Set() };
          found.set(key, f);
        }
        if (!f.ids.includes(inst.id)) f.ids.push(inst.id);
        f.contracts.add(loaded);
      }
    }
  }
  // In file order, as a reader goes through the files.
  return [...found.values()].sort((a, b) => (a.span.src.name < b.span.src.name ? -1 : a.span.src.name > b.span.src.name ? 1 : a.span.start - b.span.start));
}

/** The ConfigError for `findings` (all of them counted, the first MAX_PARAM_ERRORS shown). */
export function paramsError(findings: Finding[]): ConfigError {
  const shown = findings.slice(0, MAX_PARAM_ERRORS);
  const parts = shown.map((f) => [formatAt(f.span, `${f.text} (${who(f.ids)})`), ...aliasNote(f.origin, f.ids[0]!)].join("\n"));
  if (findings.length > shown.length) parts.push(`... and ${findings.length - shown.length} more params errors`);
  const contracts = [...new Set(findings.flatMap((f) => [...f.contracts]))];
  return new ConfigError(parts.join("\n"), {
    hint: `fix the values in the params file (or pipeline.yaml); they are checked against the stage contract${contracts.length > 1 ? "s" : ""} ${contracts.map((c) => `${c.file} (version ${c.contract.version})`).join(", ")}`,
  });
}
