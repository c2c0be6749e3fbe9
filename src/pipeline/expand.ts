// Fan-out: each stage of pipeline.yaml -> its instances (foreach / matrix elements), with params,
// deps and outs interpolated and paths normalised. Pure over the parsed documents (it only checks that
// stage modules exist); owns the diagnostics of stage declarations and interpolation.
import { existsSync } from "node:fs";
import { isAbsolute, posix, relative, resolve } from "node:path";
import { isMap, type Document, type Node } from "yaml";
import { configErrorAt, type SourceText, type Span } from "./diagnostics.ts";
import { MissingKeyError, NO_ITEM, resolveNode, type InterpContext } from "./interpolate.ts";
import { describeValue } from "../schema-issues.ts";
import type { SourcePos, StageDecl, StageInstance } from "./types.ts";
import { locate, spanFor, toPosix } from "./yaml-paths.ts";

const STAGE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** One stage as pipeline.yaml declares it (after the schema check in load.ts). */
export interface StageYaml {
  module: string;
  foreach?: string | unknown[];
  matrix?: Record<string, string | unknown[]>;
  deps?: Record<string, string>;
  params?: Record<string, unknown>;
  outs?: Record<string, string>;
  cache?: boolean;
  desc?: string;
  /** Checked after interpolation (check-resources.ts): a map, or a `${...}` naming one. */
  resources?: unknown;
}

/** The fan-out element(s) of an instance: the foreach list node + index, or one per matrix axis. */
export type ItemOrigin = null | { foreach: Node | null; index: number } | { matrix: Record<string, { node: Node | null; index: number }> };

/** Where, in the sources, each instance's deps/outs were written (for graph-level errors). */
export interface InstanceSpans {
  stage: Span;
  deps: Record<string, Span>;
  outs: Record<string, Span>;
}

export interface ExpandInput {
  root: string;
  stages: Record<string, StageYaml>;
  doc: Document;
  src: SourceText;
  /** The active profile's params (files merged, later files win at the top level). */
  params: Record<string, unknown>;
  paramsLabel: string;
  /** Whether a stage module is there (default existsSync; load.ts passes one that records what it was asked). */
  exists?: (abs: string) => boolean;
}

export interface Expanded {
  stages: Map<string, StageDecl>;
  /** Every instance, in declaration order. */
  instances: StageInstance[];
  spans: Map<string, InstanceSpans>;
  /** Which fan-out element(s) each instance came from (for pointing at its params' sources). */
  items: Map<string, ItemOrigin>;
  /** Instance id -> its interpolated `resources:` (only for stages that declare them), not yet checked. */
  resources: Map<string, unknown>;
}

/** Normalises a dep/out path; returns a project-relative posix path or (deps only) an absolute one. */
export function normalisePath(root: string, p: string, kind: "dep" | "out", span: Span, label: string): string {
  if (p.trim() === "") throw configErrorAt(span, `${label} is an empty path`);
  if (isAbsolute(p)) {
    const abs = resolve(p);
    const rel = relative(root, abs);
    if (rel && !rel.startsWith("..") && !isAbsolute(rel)) return toPosix(rel);
    if (kind === "out") throw configErrorAt(span, `${label} "${p}" is outside the project`, "outs must be project-relative paths");
    return abs;
  }
  let n = posix.normalize(p.replace(/\\/g, "/"));
  while (n.length > 1 && n.endsWith("/")) n = n.slice(0, -1);
  if (n === "." || n === "") throw configErrorAt(span, `${label} "${p}" is the project root itself`);
  if (n === ".." || n.startsWith("../")) {
    if (kind === "out") throw configErrorAt(span, `${label} "${p}" escapes the project root`, "outs must stay inside the project");
    return resolve(root, n);
  }
  return n;
}

function elementId(el: unknown): string | undefined {
  if (el !== null && typeof el === "object" && !Array.isArray(el)) {
    const o = el as Record<string, unknown>;
    for (const k of ["key", "name"]) {
      const v = o[k];
      if (typeof v === "string" || typeof v === "number") return String(v);
    }
    return undefined;
  }
  if (typeof el === "string" || typeof el === "number" || typeof el === "boolean") return String(el);
  return undefined;
}

function fanList(v: unknown, span: Span, what: string): unknown[] {
  if (!Array.isArray(v)) throw configErrorAt(span, `${what} must be a list, got ${describeValue(v)}`);
  if (v.length === 0) throw configErrorAt(span, `${what} is an empty list: the stage would have no instances`, "add elements, or remove the stage");
  return v;
}

interface Element {
  /** Instance id suffix; null without fan-out. */
  suffix: string | null;
  item: unknown;
  origin: ItemOrigin;
}

/** The fan-out elements of one stage. */
function elementsOf(inp: ExpandInput, stageName: string, st: StageYaml): Element[] {
  const { doc, src } = inp;
  const base = ["stages", stageName];
  const noItem: InterpContext = { params: inp.params, item: NO_ITEM, paramsLabel: inp.paramsLabel };
  if (st.foreach !== undefined) {
    const fe = locate(doc, [...base, "foreach"]).node ?? null;
    const span = spanFor(doc, src, [...base, "foreach"]);
    const list = fanList(resolveNode(fe, doc, src, noItem), span, `foreach of stage "${stageName}"`);
    return list.map((el, i) => {
      const id = elementId(el);
      if (id === undefined) throw configErrorAt(span, `foreach element #${i} of stage "${stageName}" has no "key" or "name" field (got ${describeValue(el)})`, "give each element a key or name: it becomes the instance id");
      return { suffix: id, item: el, origin: { foreach: fe, index: i } };
    });
  }
  if (st.matrix !== undefined) {
    const mnode = locate(doc, [...base, "matrix"]).node;
    let combos: Array<{ ids: string[]; item: Record<string, unknown>; axes: Record<string, { node: Node | null; index: number }> }> = [{ ids: [], item: {}, axes: {} }];
    const axes = Object.keys(st.matrix);
    if (axes.length === 0) throw configErrorAt(spanFor(doc, src, [...base, "matrix"]), `matrix of stage "${stageName}" has no axes`);
    for (const axis of axes) {
      const span = spanFor(doc, src, [...base, "matrix", axis]);
      const anode = isMap(mnode) ? (locate(doc, [...base, "matrix", axis]).node ?? null) : null;
      const list = fanList(resolveNode(anode, doc, src, noItem), span, `matrix axis "${axis}" of stage "${stageName}"`);
      const next: typeof combos = [];
      for (const c of combos) {
        list.forEach((el, i) => {
          const id = elementId(el);
          if (id === undefined) throw configErrorAt(span, `element #${i} of matrix axis "${axis}" has no "key" or "name" field (got ${describeValue(el)})`, "give each element a key or name: it becomes part of the instance id");
          next.push({ ids: [...c.ids, id], item: { ...c.item, [axis]: el }, axes: { ...c.axes, [axis]: { node: anode, index: i } } });
        });
      }
      combos = next;
    }
    return combos.map((c) => ({ suffix: c.ids.join("/"), item: c.item, origin: { matrix: c.axes } }));
  }
  return [{ suffix: null, item: null, origin: null }];
}

/** One instance of a stage: params, deps and outs interpolated for its element. */
function instanceOf(inp: ExpandInput, stageName: string, st: StageYaml, id: string, el: Element, module: string, pos: SourcePos): { inst: StageInstance; deps: Record<string, Span>; outs: Record<string, Span>; resources: unknown } {
  const { root, doc, src } = inp;
  const base = ["stages", stageName];
  const ctx: InterpContext = { params: inp.params, item: el.suffix === null ? NO_ITEM : el.item, paramsLabel: inp.paramsLabel };

  const pval = st.params === undefined ? {} : resolveNode(locate(doc, [...base, "params"]).node, doc, src, ctx);
  const params = (pval ?? {}) as Record<string, unknown>;

  const deps: Record<string, string> = {};
  const depSpans: Record<string, Span> = {};
  for (const rawName of Object.keys(st.deps ?? {})) {
    const optional = rawName.endsWith("?");
    const name = optional ? rawName.slice(0, -1) : rawName;
    const span = spanFor(doc, src, [...base, "deps", rawName]);
    if (name === "") throw configErrorAt(spanFor(doc, src, [...base, "deps", rawName], true), `empty dep name in stage "${stageName}"`);
    let v: unknown;
    try {
      v = resolveNode(locate(doc, [...base, "deps", rawName]).node, doc, src, ctx);
    } catch (err) {
      if (optional && err instanceof MissingKeyError) continue;
      throw err;
    }
    if (typeof v !== "string") throw configErrorAt(span, `dep "${name}" of ${id} must be a path, got ${describeValue(v)}`);
    if (name in deps) throw configErrorAt(spanFor(doc, src, [...base, "deps", rawName], true), `dep "${name}" declared twice in stage "${stageName}"`);
    deps[name] = normalisePath(root, v, "dep", span, `dep "${name}" of ${id}`);
    depSpans[name] = span;
  }

  const outs: Record<string, string> = {};
  const outSpans: Record<string, Span> = {};
  for (const name of Object.keys(st.outs ?? {})) {
    const span = spanFor(doc, src, [...base, "outs", name]);
    if (name.endsWith("?")) throw configErrorAt(spanFor(doc, src, [...base, "outs", name], true), `out "${name}" of stage "${stageName}": outs cannot be optional`);
    const v = resolveNode(locate(doc, [...base, "outs", name]).node, doc, src, ctx);
    if (typeof v !== "string") throw configErrorAt(span, `out "${name}" of ${id} must be a path, got ${describeValue(v)}`);
    outs[name] = normalisePath(root, v, "out", span, `out "${name}" of ${id}`);
    outSpans[name] = span;
  }

  // Interpolated like params (a value may come from the profile or the item); checked in check-resources.ts.
  const resources = st.resources === undefined ? undefined : resolveNode(locate(doc, [...base, "resources"]).node, doc, src, ctx);

  const inst: StageInstance = { id, stage: stageName, module, item: el.suffix === null ? null : el.item, params, deps, outs, pos, cache: st.cache ?? true };
  return { inst, deps: depSpans, outs: outSpans, resources };
}

/** Every stage's instances, in declaration order. */
export function expandStages(inp: ExpandInput): Expanded {
  const { root, doc, src } = inp;
  const stages = new Map<string, StageDecl>();
  const instances: StageInstance[] = [];
  const spans = new Map<string, InstanceSpans>();
  const items = new Map<string, ItemOrigin>();
  const resources = new Map<string, unknown>();
  for (const [stageName, st] of Object.entries(inp.stages)) {
    const base = ["stages", stageName];
    const stageSpan = spanFor(doc, src, base, true);
    const pos: SourcePos = src.pos(stageSpan.start);
    if (!STAGE_NAME.test(stageName)) {
      throw configErrorAt(stageSpan, `bad stage name "${stageName}"`, "use letters, digits, '_', '-', '.' (no '@' or '/')");
    }
    if (st.foreach !== undefined && st.matrix !== undefined) {
      throw configErrorAt(spanFor(doc, src, [...base, "matrix"], true), `stage "${stageName}" has both foreach and matrix`, "use one of them");
    }
    const module = normalisePath(root, st.module, "out", spanFor(doc, src, [...base, "module"]), `module of stage "${stageName}"`);
    if (!(inp.exists ?? existsSync)(resolve(root, module))) {
      throw configErrorAt(spanFor(doc, src, [...base, "module"]), `module "${st.module}" of stage "${stageName}" not found`, "create it, or fix the path (relative to the project root)");
    }

    const fanSpan = spanFor(doc, src, [...base, st.foreach !== undefined ? "foreach" : "matrix"]);
    const ids: string[] = [];
    const seen = new Set<string>();
    for (const el of elementsOf(inp, stageName, st)) {
      const id = el.suffix === null ? stageName : `${stageName}@${el.suffix}`;
      if (seen.has(id)) {
        throw configErrorAt(fanSpan, `two instances of stage "${stageName}" have the same id "${id}"`, "give each element a unique key or name");
      }
      seen.add(id);
      ids.push(id);
      const { inst, deps, outs, resources: raw } = instanceOf(inp, stageName, st, id, el, module, pos);
      instances.push(inst);
      if (raw !== undefined) resources.set(id, raw);
      spans.set(id, { stage: stageSpan, deps, outs });
      items.set(id, el.origin);
    }
    const decl: StageDecl = { name: stageName, module, instanceIds: ids, pos, cache: st.cache ?? true };
    if (st.desc !== undefined) decl.desc = st.desc;
    stages.set(stageName, decl);
  }
  return { stages, instances, spans, items, resources };
}
