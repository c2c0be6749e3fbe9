// pipeline.yaml + the profile's params files -> checked config -> instances (expand.ts) -> DAG in
// topological order (graph.ts) -> params checked against the stage contracts (contracts.ts,
// check-params.ts). Owns reading the files and the pipeline.yaml schema diagnostics; never runs stages.
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { relative, resolve } from "node:path";
import { parseDocument, type Document, type Node } from "yaml";
import { z } from "zod";
import { ConfigError } from "../errors.ts";
import { describeValue } from "../schema-issues.ts";
import { configErrorAt, SourceText, type Span } from "./diagnostics.ts";
import { findParamErrors, paramsError } from "./check-params.ts";
import { applyResources } from "./check-resources.ts";
import type { ClosureSigs } from "./closure-sigs.ts";
import { loadContracts, type LoadedContract } from "./contracts.ts";
import { normalizeInputPath, readInputs } from "./inputs.ts";
import type { DataFacts } from "../stage-api.ts";
import { expandStages, type Expanded } from "./expand.ts";
import { buildGraph } from "./graph.ts";
import { nodeSpan } from "./interpolate.ts";
import type { ExecutorSetting } from "./types.ts";
import type { ProvenanceEnv, YamlSource } from "./provenance.ts";
import type { InputDecl, Pipeline, StageInstance } from "./types.ts";
import { spanFor, toPosix } from "./yaml-paths.ts";

const STAGE_KEYS = ["module", "foreach", "matrix", "deps", "params", "outs", "cache", "desc", "resources"] as const;

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
  // A map or a `${...}` naming one; its keys and values are checked after interpolation (check-resources.ts).
  resources: z.unknown().optional(),
});
const PipelineSchema = z.strictObject({
  version: z.literal(1),
  default_profile: z.string().min(1),
  profiles: z.record(
    z.string(),
    z.strictObject({
      params: pathOrPaths,
      // Where this profile's instances run by default (`run --executor` overrides it).
      executor: z.enum(["local", "slurm"]).optional(),
      // Read-only data folders (project-relative or absolute): deps inside them are checked by their
      // folders' stats only, not file by file (README: "Fingerprints and status"; `--paranoid` undoes it).
      immutable: z.array(z.string().min(1)).optional(),
      slurm: z
        .strictObject({
          node: z.string().min(1).optional(),
          group_max: z.number().int().min(1).optional(),
          retries: z.number().int().min(0).optional(),
        })
        .optional(),
    }),
  ),
  stages: z.record(z.string(), StageSchema),
});
type PipelineYaml = z.infer<typeof PipelineSchema>;

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
  if (path[0] === "profiles" && path.length === 2) return ["params", "executor", "slurm", "immutable"];
  if (path[0] === "profiles" && path.length === 3 && path[2] === "slurm") return ["node", "group_max", "retries"];
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

/**
 * What a load read of the disk, and what it found: enough to tell later, without loading again,
 * whether loading again would give the same pipeline (src/pipeline/memo.ts).
 */
export interface LoadTrace {
  /** Absolute path of each YAML file parsed -> sha256 hex of its bytes. */
  files: Record<string, string>;
  /** Absolute path -> whether it existed when asked (stage modules, contract files, deps nothing produces). */
  exists: Record<string, boolean>;
  /** The import closures of the contracts that were loaded (their version, params check and estimates). */
  closures: ClosureSigs[];
}

function newTrace(): LoadTrace {
  return { files: {}, exists: {}, closures: [] };
}

/** existsSync that notes each answer in the trace. */
function tracedExists(trace: LoadTrace): (abs: string) => boolean {
  return (abs) => {
    const yes = existsSync(abs);
    trace.exists[abs] = yes;
    return yes;
  };
}

async function readYaml(root: string, file: string, what: string, trace: LoadTrace, from?: Span): Promise<{ src: SourceText; doc: Document }> {
  const abs = resolve(root, file);
  const name = toPosix(relative(root, abs)) || file;
  let text: string;
  try {
    const bytes = await readFile(abs);
    trace.files[abs] = createHash("sha256").update(bytes).digest("hex");
    text = bytes.toString("utf8");
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

export interface LoadOptions {
  profile?: string;
  /** The pipeline file, relative to the root (default pipeline.yaml). */
  file?: string;
  /** false: do not load stage contracts (no params check, no contract versions). Default true. */
  contracts?: boolean;
}

/** pipeline.yaml parsed and checked against its schema. */
async function readConfig(root: string, file: string, trace: LoadTrace): Promise<{ src: SourceText; doc: Document; cfg: PipelineYaml }> {
  const { src, doc } = await readYaml(root, file, "pipeline file", trace);
  const raw = doc.toJS({ maxAliasCount: 1000 }) as unknown;
  const parsed = PipelineSchema.safeParse(raw);
  if (!parsed.success) throw schemaError(doc, src, raw, parsed.error.issues[0]!);
  return { src, doc, cfg: parsed.data };
}

/** The profiles pipeline.yaml declares, in its order (`sed-pipe gc` keeps what any profile refers to). */
export async function profileNames(rootIn: string, opts: Pick<LoadOptions, "file"> = {}): Promise<string[]> {
  return Object.keys((await readConfig(resolve(rootIn), opts.file ?? "pipeline.yaml", newTrace())).cfg.profiles);
}

export async function loadPipeline(rootIn: string, opts: LoadOptions = {}): Promise<Pipeline> {
  return (await loadPipelineTraced(rootIn, opts)).pipeline;
}

/** loadPipeline, and what it read of the disk to get there. */
export async function loadPipelineTraced(rootIn: string, opts: LoadOptions = {}): Promise<{ pipeline: Pipeline; trace: LoadTrace }> {
  const root = resolve(rootIn);
  const trace = newTrace();
  const exists = tracedExists(trace);
  const { src, doc, cfg } = await readConfig(root, opts.file ?? "pipeline.yaml", trace);

  const profile = await readProfile(root, cfg, doc, src, opts.profile, trace);
  const expanded = expandStages({ root, stages: cfg.stages, doc, src, params: profile.params, paramsLabel: profile.files.map((f) => f.src.name).join(" + "), exists });
  const stageSpans = new Map([...expanded.spans].map(([id, s]) => [id, s.stage]));
  applyResources({ env: { pipeline: { src, doc }, params: profile.files }, instances: expanded.instances, raw: expanded.resources, items: expanded.items, stageSpans });
  const { graph, order } = buildGraph(root, expanded.instances, expanded.spans, exists);

  const inputs = readInputs(profile.files, profile.params);
  if (opts.contracts !== false) {
    const contracts = await applyContracts(root, expanded, { pipeline: { src, doc }, params: profile.files }, exists);
    for (const c of contracts.values()) if (c) trace.closures.push(c.closure);
    applyEstimates(order, contracts, inputs);
  }

  const instances = new Map<string, StageInstance>(order.map((inst) => [inst.id, inst]));
  const p = cfg.profiles[profile.name]!;
  const executor: ExecutorSetting = { kind: p.executor ?? "local", slurm: { ...(p.slurm?.node ? { node: p.slurm.node } : {}), ...(p.slurm?.group_max !== undefined ? { groupMax: p.slurm.group_max } : {}), ...(p.slurm?.retries !== undefined ? { retries: p.slurm.retries } : {}) } };
  const immutable = (p.immutable ?? []).map((d) => resolve(root, d));
  const pipeline: Pipeline = { root, profile: profile.name, paramsFiles: profile.files.map((f) => f.src.name), stages: expanded.stages, instances, graph, executor, inputs, ...(immutable.length ? { immutable } : {}) };
  return { pipeline, trace };
}

/**
 * Each instance's estimate from its contract, in topological order: an estimate's output facts
 * (rows of a feature file) are what downstream estimates read, before the declared `inputs:`.
 * An estimate that throws is a bug in a contract, not the user's: it is dropped (not estimated).
 */
function applyEstimates(order: StageInstance[], contracts: Map<string, LoadedContract | null>, inputs: Map<string, InputDecl>): void {
  const produced = new Map<string, DataFacts>();
  // A file inside an output folder (an ensemble file in its model folder) has that folder's facts.
  const facts = (path: string): DataFacts | undefined => {
    const p = normalizeInputPath(path);
    const declared = inputs.get(p);
    if (declared) return declared;
    for (let q = p; q.length > 0; q = q.slice(0, Math.max(0, q.lastIndexOf("/")))) {
      const f = produced.get(q);
      if (f) return f;
      if (!q.includes("/")) break;
    }
    return undefined;
  };
  for (const inst of order) {
    const c = contracts.get(inst.stage)?.contract;
    if (!c?.estimate) continue;
    const parsed = c.params.safeParse(inst.params);
    if (!parsed.success) continue;
    try {
      const e = c.estimate(parsed.data, inst.deps, facts);
      inst.estimate = e;
      for (const [name, f] of Object.entries(e.outs ?? {})) if (inst.outs[name] !== undefined) produced.set(normalizeInputPath(inst.outs[name]), f);
    } catch {
      // not estimated
    }
  }
}

/**
 * Loads each stage's contract, stamps its version on the stage's instances and checks their params:
 * a ConfigError listing every refused value, at its source, when any is refused.
 */
async function applyContracts(root: string, expanded: Expanded, env: ProvenanceEnv, exists: (abs: string) => boolean): Promise<Map<string, LoadedContract | null>> {
  const { src, doc } = env.pipeline;
  const decls = [...expanded.stages.values()];
  const byModule = await loadContracts(root, new Map(decls.map((d) => [d.module, spanFor(doc, src, ["stages", d.name, "module"])])), exists);
  const contracts = new Map(decls.map((d) => [d.name, byModule.get(d.module) ?? null]));
  for (const inst of expanded.instances) {
    const c = contracts.get(inst.stage);
    if (c) inst.version = c.contract.version;
  }
  const stageSpans = new Map([...expanded.spans].map(([id, s]) => [id, s.stage]));
  const findings = findParamErrors({ env, instances: expanded.instances, contracts, items: expanded.items, stageSpans });
  if (findings.length > 0) throw paramsError(findings);
  return contracts;
}

/** The active profile and its params files, merged (later files win at the top level). */
async function readProfile(root: string, cfg: PipelineYaml, doc: Document, src: SourceText, requested: string | undefined, trace: LoadTrace): Promise<{ name: string; params: Record<string, unknown>; files: YamlSource[] }> {
  const name = requested ?? cfg.default_profile;
  const profile = cfg.profiles[name];
  const names = Object.keys(cfg.profiles);
  if (!profile) {
    const span = requested === undefined ? spanFor(doc, src, ["default_profile"]) : spanFor(doc, src, ["profiles"], true);
    throw configErrorAt(span, `unknown profile "${name}"; profiles: ${names.join(", ") || "(none)"}`, `use --profile ${names[0] ?? "<name>"}`);
  }
  const paths = typeof profile.params === "string" ? [profile.params] : profile.params;
  const params: Record<string, unknown> = {};
  const files: YamlSource[] = [];
  for (let i = 0; i < paths.length; i++) {
    const fromSpan = spanFor(doc, src, typeof profile.params === "string" ? ["profiles", name, "params"] : ["profiles", name, "params", i]);
    const file = await readYaml(root, paths[i]!, "params file", trace, fromSpan);
    files.push(file);
    const data = file.doc.toJS({ maxAliasCount: 10000 }) as unknown;
    if (data === null || data === undefined) continue;
    if (typeof data !== "object" || Array.isArray(data)) {
      throw configErrorAt(nodeSpan(file.src, file.doc.contents as Node, { src: file.src, start: 0, end: 1 }), `a params file must be a map of sections, got ${describeValue(data)}`);
    }
    Object.assign(params, data);
  }
  return { name, params, files };
}

export { absPath, pathExists } from "./paths.ts";
