// pipeline.yaml + profile params -> validated instances -> graphology DAG in topological order.
// Owns every config diagnostic (ConfigError with position and caret). Reads files; never runs stages.
import { readFile, stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { isAbsolute, relative, resolve, posix, sep } from "node:path";
import { DirectedGraph } from "graphology";
import { isMap, isScalar, isSeq, parseDocument, type Document, type Node, type Pair } from "yaml";
import { z } from "zod";
import { ConfigError } from "../errors.ts";
import { configErrorAt, formatAt, posString, SourceText, type Span } from "./diagnostics.ts";
import { MissingKeyError, NO_ITEM, nodeSpan, resolveNode, type InterpContext } from "./interpolate.ts";
import type { Pipeline, SourcePos, StageDecl, StageInstance } from "./types.ts";

const STAGE_KEYS = ["module", "foreach", "matrix", "deps", "params", "outs", "cache", "desc"] as const;

const pathOrPaths = z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]);
const fanSchema = z.union([z.string(), z.array(z.unknown())]);
const StageSchema = z.strictObject({
  module: z.string().min(1),
  foreach: fanSchema.optional(),
  matrix: z.record(z.string(), fanSchema).optional(),
  deps: z.record(z.string(), z.string()).optional(),
  params: z.record(z.string(), z.unknown()).optional(),
  outs: z.record(z.string(), z.string()).optional(),
  cache: z.boolean().optional(),
  desc: z.string().optional(),
});
const PipelineSchema = z.strictObject({
  version: z.literal(1),
  default_profile: z.string().min(1),
  profiles: z.record(z.string(), z.strictObject({ params: pathOrPaths })),
  stages: z.record(z.string(), StageSchema),
});
type PipelineYaml = z.infer<typeof PipelineSchema>;

const STAGE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

/** Project-relative folders whose paths only stages create: a dep there with no producer is an error. */
const PRODUCED_ROOTS = ["artifacts", "cache"];

/** Where, in the sources, each instance's deps/outs were written (for graph-level errors). */
interface InstanceSpans {
  stage: Span;
  deps: Record<string, Span>;
  outs: Record<string, Span>;
}

function toPosix(p: string): string {
  return sep === "/" ? p : p.split(sep).join("/");
}

interface Located {
  key?: Node;
  node?: Node;
}

/** Walks a document along a data path (map keys / seq indexes), keeping the nodes. */
function locate(doc: Document, path: readonly PropertyKey[]): Located {
  let node = doc.contents as Node | null;
  let key: Node | undefined;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg)) as Pair<Node, Node> | undefined;
      if (!pair) return { key, node: undefined };
      key = pair.key ?? undefined;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === "number") {
      key = undefined;
      node = (node.items[seg] as Node | undefined) ?? null;
    } else {
      return { key, node: undefined };
    }
  }
  return { key, node: node ?? undefined };
}

/** The closest existing node on the path: value if present, else the key, else an ancestor. */
function spanFor(doc: Document, src: SourceText, path: readonly PropertyKey[], preferKey = false): Span {
  for (let n = path.length; n >= 0; n--) {
    const { key, node } = locate(doc, path.slice(0, n));
    const pick = preferKey || n < path.length ? (key ?? node) : (node ?? key);
    if (pick?.range) return { src, start: pick.range[0], end: pick.range[1] };
  }
  return { src, start: 0, end: 0 };
}

function describeValue(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a map";
  if (typeof v === "string") return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 37) + "..." : v)}`;
  return `${typeof v} ${String(v)}`;
}

function describePath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return "the top level";
  if (path[0] === "stages" && path.length >= 2) {
    const rest = path.slice(2).map(String);
    return `stage "${String(path[1])}"${rest.length ? ` (${rest.join(".")})` : ""}`;
  }
  if (path[0] === "profiles" && path.length >= 2) {
    const rest = path.slice(2).map(String);
    return `profile "${String(path[1])}"${rest.length ? ` (${rest.join(".")})` : ""}`;
  }
  return path.map(String).join(".");
}

function allowedKeys(path: readonly PropertyKey[]): string[] {
  if (path.length === 0) return ["version", "default_profile", "profiles", "stages"];
  if (path[0] === "profiles" && path.length === 2) return ["params"];
  if (path[0] === "stages" && path.length === 2) return [...STAGE_KEYS];
  return [];
}

function schemaError(doc: Document, src: SourceText, raw: unknown, issue: z.core.$ZodIssue): ConfigError {
  const path = issue.path;
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0]!;
    const allowed = allowedKeys(path);
    return configErrorAt(
      spanFor(doc, src, [...path, key], true),
      `unknown key "${key}" in ${describePath(path)}`,
      allowed.length ? `allowed keys: ${allowed.join(", ")}` : undefined,
    );
  }
  let actual: unknown = raw;
  for (const seg of path) actual = actual && typeof actual === "object" ? (actual as Record<PropertyKey, unknown>)[seg as string] : undefined;
  const where = describePath(path);
  if (issue.code === "invalid_type" && actual === undefined) {
    const key = String(path[path.length - 1]);
    return configErrorAt(spanFor(doc, src, path.slice(0, -1), true), `missing required key "${key}" in ${describePath(path.slice(0, -1))}`);
  }
  const span = spanFor(doc, src, path);
  switch (issue.code) {
    case "invalid_type":
      return configErrorAt(span, `${where}: expected ${issue.expected}, got ${describeValue(actual)}`);
    case "invalid_value":
      return configErrorAt(span, `${where}: expected ${issue.values.map((v) => JSON.stringify(v)).join(" or ")}, got ${describeValue(actual)}`);
    case "invalid_union":
      return configErrorAt(span, `${where}: expected ${path[path.length - 1] === "params" ? "a path or a list of paths" : "a list or a ${...} naming one"}, got ${describeValue(actual)}`);
    case "too_small":
      return configErrorAt(span, `${where}: must not be empty`);
    default:
      return configErrorAt(span, `${where}: ${issue.message}`);
  }
}

async function readYaml(root: string, file: string, what: string, from?: Span): Promise<{ src: SourceText; doc: Document }> {
  const abs = resolve(root, file);
  const name = toPosix(relative(root, abs)) || file;
  let text: string;
  try {
    text = await readFile(abs, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const msg = `${what} ${name} cannot be read (${code === "ENOENT" ? "no such file" : code ?? String(err)})`;
    if (from) throw configErrorAt(from, msg, "check the path (relative to the project root)");
    throw new ConfigError(`${name}: ${msg}`, { hint: "run sed-pipe from the project folder, or pass the pipeline file" });
  }
  const src = new SourceText(name, text);
  const doc = parseDocument(text, { lineCounter: src.lineCounter, prettyErrors: false, uniqueKeys: true });
  const err = doc.errors[0];
  if (err) {
    const span = { src, start: err.pos[0], end: Math.max(err.pos[1], err.pos[0] + 1) };
    // `{x: ${a}}` is the classic trap: in flow style `{` after `$` opens a nested map.
    const line = src.lines[src.pos(err.pos[0]).line - 1] ?? "";
    const hint = /flow/.test(err.message) && line.includes("${") ? 'inside { } or [ ], quote a value that uses ${...}: {x: "${a.b}"}' : undefined;
    throw configErrorAt(span, `YAML syntax: ${err.message.split("\n")[0]}`, hint);
  }
  return { src, doc };
}

/** Normalises a dep/out path; returns a project-relative posix path or (deps only) an absolute one. */
function normalisePath(root: string, p: string, kind: "dep" | "out", span: Span, label: string): string {
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

function isWithin(inner: string, outer: string): boolean {
  return inner === outer || inner.startsWith(outer + "/");
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

export async function loadPipeline(rootIn: string, opts: { profile?: string; file?: string } = {}): Promise<Pipeline> {
  const root = resolve(rootIn);
  const { src, doc } = await readYaml(root, opts.file ?? "pipeline.yaml", "pipeline file");
  const raw = doc.toJS({ maxAliasCount: 1000 }) as unknown;
  const parsed = PipelineSchema.safeParse(raw);
  if (!parsed.success) throw schemaError(doc, src, raw, parsed.error.issues[0]!);
  const cfg: PipelineYaml = parsed.data;

  // Profile and its params files.
  const profileName = opts.profile ?? cfg.default_profile;
  const profile = cfg.profiles[profileName];
  const profileNames = Object.keys(cfg.profiles);
  if (!profile) {
    const span = opts.profile === undefined ? spanFor(doc, src, ["default_profile"]) : spanFor(doc, src, ["profiles"], true);
    throw configErrorAt(span, `unknown profile "${profileName}"; profiles: ${profileNames.join(", ") || "(none)"}`, `use --profile ${profileNames[0] ?? "<name>"}`);
  }
  const paramsPaths = typeof profile.params === "string" ? [profile.params] : profile.params;
  const params: Record<string, unknown> = {};
  const paramsFiles: string[] = [];
  for (let i = 0; i < paramsPaths.length; i++) {
    const fromSpan = spanFor(doc, src, typeof profile.params === "string" ? ["profiles", profileName, "params"] : ["profiles", profileName, "params", i]);
    const { src: psrc, doc: pdoc } = await readYaml(root, paramsPaths[i]!, "params file", fromSpan);
    const data = pdoc.toJS({ maxAliasCount: 10000 }) as unknown;
    if (data === null || data === undefined) {
      paramsFiles.push(psrc.name);
      continue;
    }
    if (typeof data !== "object" || Array.isArray(data)) {
      throw configErrorAt(nodeSpan(psrc, pdoc.contents as Node, { src: psrc, start: 0, end: 1 }), `a params file must be a map of sections, got ${describeValue(data)}`);
    }
    Object.assign(params, data);
    paramsFiles.push(psrc.name);
  }
  const paramsLabel = paramsFiles.join(" + ");

  // Instances.
  const stages = new Map<string, StageDecl>();
  const all: StageInstance[] = [];
  const spans = new Map<string, InstanceSpans>();
  const declIndex = new Map<string, number>();
  for (const [stageName, st] of Object.entries(cfg.stages)) {
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
    if (!existsSync(resolve(root, module))) {
      throw configErrorAt(spanFor(doc, src, [...base, "module"]), `module "${st.module}" of stage "${stageName}" not found`, "create it, or fix the path (relative to the project root)");
    }
    const noItem: InterpContext = { params, item: NO_ITEM, paramsLabel };

    // Fan-out elements: [id suffix, item].
    let elements: Array<[string | null, unknown]>;
    if (st.foreach !== undefined) {
      const fe = locate(doc, [...base, "foreach"]).node;
      const span = spanFor(doc, src, [...base, "foreach"]);
      const list = fanList(resolveNode(fe, doc, src, noItem), span, `foreach of stage "${stageName}"`);
      elements = list.map((el, i) => {
        const id = elementId(el);
        if (id === undefined) throw configErrorAt(span, `foreach element #${i} of stage "${stageName}" has no "key" or "name" field (got ${describeValue(el)})`, "give each element a key or name: it becomes the instance id");
        return [id, el];
      });
    } else if (st.matrix !== undefined) {
      const mnode = locate(doc, [...base, "matrix"]).node;
      let combos: Array<[string[], Record<string, unknown>]> = [[[], {}]];
      const axes = Object.keys(st.matrix);
      if (axes.length === 0) throw configErrorAt(spanFor(doc, src, [...base, "matrix"]), `matrix of stage "${stageName}" has no axes`);
      for (const axis of axes) {
        const span = spanFor(doc, src, [...base, "matrix", axis]);
        const anode = isMap(mnode) ? (locate(doc, [...base, "matrix", axis]).node ?? null) : null;
        const list = fanList(resolveNode(anode, doc, src, noItem), span, `matrix axis "${axis}" of stage "${stageName}"`);
        const next: typeof combos = [];
        for (const [ids, item] of combos) {
          list.forEach((el, i) => {
            const id = elementId(el);
            if (id === undefined) throw configErrorAt(span, `element #${i} of matrix axis "${axis}" has no "key" or "name" field (got ${describeValue(el)})`, "give each element a key or name: it becomes part of the instance id");
            next.push([[...ids, id], { ...item, [axis]: el }]);
          });
        }
        combos = next;
      }
      elements = combos.map(([ids, item]) => [ids.join("/"), item]);
    } else {
      elements = [[null, null]];
    }

    const fanSpan = spanFor(doc, src, [...base, st.foreach !== undefined ? "foreach" : "matrix"]);
    const ids: string[] = [];
    const seen = new Map<string, number>();
    for (const [suffix, item] of elements) {
      const id = suffix === null ? stageName : `${stageName}@${suffix}`;
      if (seen.has(id)) {
        throw configErrorAt(fanSpan, `two instances of stage "${stageName}" have the same id "${id}"`, "give each element a unique key or name");
      }
      seen.set(id, ids.length);
      ids.push(id);
      const ctx: InterpContext = { params, item: suffix === null ? NO_ITEM : item, paramsLabel };

      const pval = st.params === undefined ? {} : resolveNode(locate(doc, [...base, "params"]).node, doc, src, ctx);
      const instParams = (pval ?? {}) as Record<string, unknown>;

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

      const inst: StageInstance = { id, stage: stageName, module, item: suffix === null ? null : item, params: instParams, deps, outs, pos, cache: st.cache ?? true };
      declIndex.set(id, all.length);
      all.push(inst);
      spans.set(id, { stage: stageSpan, deps: depSpans, outs: outSpans });
    }
    const decl: StageDecl = { name: stageName, module, instanceIds: ids, pos, cache: st.cache ?? true };
    if (st.desc !== undefined) decl.desc = st.desc;
    stages.set(stageName, decl);
  }

  // Outputs: no two instances may write the same path or nested paths.
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

  // Edges: a dep equal to, inside, or containing an out.
  const graph = new DirectedGraph<{ instance: StageInstance }, { paths: string[] }>({ allowSelfLoops: true });
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
      if (!found && PRODUCED_ROOTS.includes(dep.split("/")[0]!) && !existsSync(resolve(root, dep))) {
        throw configErrorAt(spans.get(inst.id)!.deps[name]!, `${inst.id === inst.stage ? `stage "${inst.stage}"` : `stage "${inst.stage}" (instance ${inst.id})`} depends on unknown output "${dep}"`, "no stage declares it in outs and it is not on disk: fix the path or add the producing stage");
      }
    }
  }

  const order = topoOrder(all, graph, declIndex, spans);
  const instances = new Map<string, StageInstance>(order.map((id) => [id, graph.getNodeAttribute(id, "instance")]));
  return { root, profile: profileName, paramsFiles, stages, instances, graph };
}

/** Kahn's algorithm, ties broken by declaration order so the order is stable across runs. */
function topoOrder(
  all: StageInstance[],
  graph: DirectedGraph<{ instance: StageInstance }, { paths: string[] }>,
  declIndex: Map<string, number>,
  spans: Map<string, InstanceSpans>,
): string[] {
  const indeg = new Map<string, number>();
  for (const inst of all) indeg.set(inst.id, graph.inDegree(inst.id));
  const ready = all.filter((i) => indeg.get(i.id) === 0).map((i) => i.id);
  const out: string[] = [];
  const byDecl = (a: string, b: string) => declIndex.get(a)! - declIndex.get(b)!;
  while (ready.length) {
    ready.sort(byDecl);
    const id = ready.shift()!;
    out.push(id);
    for (const next of graph.outNeighbors(id)) {
      const d = indeg.get(next)! - 1;
      indeg.set(next, d);
      if (d === 0) ready.push(next);
    }
  }
  if (out.length === all.length) return out;
  throw cycleError(all.filter((i) => indeg.get(i.id)! > 0).map((i) => i.id), graph, spans, declIndex);
}

function cycleError(
  remaining: string[],
  graph: DirectedGraph<{ instance: StageInstance }, { paths: string[] }>,
  spans: Map<string, InstanceSpans>,
  declIndex: Map<string, number>,
): ConfigError {
  const inSet = new Set(remaining);
  // Every node left over by Kahn has a predecessor left over: walking predecessors must revisit one.
  const path: string[] = [];
  const at = new Map<string, number>();
  let cur = remaining[0]!;
  while (!at.has(cur)) {
    at.set(cur, path.length);
    path.push(cur);
    cur = graph.inNeighbors(cur).find((n) => inSet.has(n))!;
  }
  const ring = path.slice(at.get(cur)!).reverse();
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

/** Absolute path of a dep or out of an instance. */
export function absPath(p: Pipeline, path: string): string {
  return isAbsolute(path) ? path : resolve(p.root, path);
}

/** True when the path exists on disk (used by callers that want the lazy existence check). */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
