// The loaded pipeline kept between commands (cache/state/pipelines/<key>.json) with what loading it
// read of the disk (load.ts's LoadTrace). A command reuses it, without loading yaml, zod, the stage
// contracts or graphology-dag, while loading again would give the same pipeline: the same sed-pipe
// build, the same versions of the packages that parse, validate and order, the same bytes of
// pipeline.yaml and every params file, the same answers to every "does this file exist" the load
// asked, and contract import closures unchanged. Anything else, or any doubt, loads from the sources
// (and keeps that). Owns the memo's format and validity rules; decides nothing about instances.
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { writeFileAtomic } from "../io/atomic.ts";
import { closureUnchanged } from "./closure-sigs.ts";
import type { LoadTrace } from "./load.ts";
import type { ExecutorSetting, InputDecl, Pipeline, StageDecl, StageInstance } from "./types.ts";

const MEMO_VERSION = 1;
/** Where memos live, under the workspace's cache/. */
export const MEMO_DIR = join("state", "pipelines");
/** Packages whose behaviour decides what a load gives: YAML parsing, validation (the contracts' too), graph order. */
const LOADER_PACKAGES = ["yaml", "zod", "graphology", "graphology-dag"] as const;

/** Counters for tests: memos used, loads from the sources, memos written, in this process. */
export const memoStats = { hits: 0, loads: 0, writes: 0 };

/** The parts of a Pipeline a memo keeps (the graph as nodes and edges, maps as entry lists). */
interface PipelineData {
  profile: string;
  paramsFiles: string[];
  stages: Array<[string, StageDecl]>;
  /** In the pipeline's (topological) order. */
  instances: StageInstance[];
  /** The graph's nodes and edges, in its own insertion order (neighbour lists keep that order). */
  nodes: string[];
  edges: Array<[source: string, target: string, paths: string[]]>;
  executor?: ExecutorSetting;
  inputs?: Array<[string, InputDecl]>;
  immutable?: string[];
}

interface MemoFile {
  version: typeof MEMO_VERSION;
  /** The sed-pipe build that loaded it (a memo of another build is never used). */
  code: string;
  packages: Record<string, string>;
  root: string;
  /** The profile asked for; null = the pipeline's default_profile. */
  requested: string | null;
  trace: LoadTrace;
  pipeline: PipelineData;
}

export interface MemoOptions {
  profile?: string;
  /**
   * Identity of the running sed-pipe code (the CLI bundle's content hash), or null: without one a
   * memo could outlive a change to the loader itself, so none is read or written.
   */
  code: string | null;
}

/** The memo file of (root, requested profile). */
export function memoFile(root: string, requested: string | null): string {
  const key = createHash("sha256").update(JSON.stringify([root, requested])).digest("hex").slice(0, 16);
  return join(root, "cache", MEMO_DIR, `${key}.json`);
}

const require = createRequire(import.meta.url);

/** The installed version of a package as this module would import it ("absent" when it is not there). */
function packageVersion(pkg: string): string {
  for (const dir of require.resolve.paths(pkg) ?? []) {
    try {
      const v = (JSON.parse(readFileSync(join(dir, pkg, "package.json"), "utf8")) as { version?: unknown }).version;
      return typeof v === "string" ? v : "unknown";
    } catch {
      // not in this node_modules
    }
  }
  return "absent";
}

export function loaderPackages(): Record<string, string> {
  return Object.fromEntries(LOADER_PACKAGES.map((p) => [p, packageVersion(p)]));
}

function sha256File(abs: string): string | null {
  try {
    return createHash("sha256").update(readFileSync(abs)).digest("hex");
  } catch {
    return null;
  }
}

/** True when loading `root` again now would read exactly what `trace` says the load read. */
export function traceHolds(root: string, trace: LoadTrace): boolean {
  for (const [abs, digest] of Object.entries(trace.files)) if (sha256File(abs) !== digest) return false;
  for (const [abs, was] of Object.entries(trace.exists)) if (existsSync(abs) !== was) return false;
  return trace.closures.every((c) => closureUnchanged(root, c));
}

export function pipelineData(p: Pipeline): PipelineData {
  const d: PipelineData = {
    profile: p.profile,
    paramsFiles: p.paramsFiles,
    stages: [...p.stages],
    instances: [...p.instances.values()],
    nodes: p.graph.nodes(),
    edges: p.graph.mapEdges((_e, attrs, source, target) => [source, target, attrs.paths] as [string, string, string[]]),
  };
  if (p.executor) d.executor = p.executor;
  if (p.inputs) d.inputs = [...p.inputs];
  if (p.immutable) d.immutable = p.immutable;
  return d;
}

async function pipelineOf(root: string, d: PipelineData): Promise<Pipeline> {
  const { DirectedGraph } = await import("graphology");
  const instances = new Map(d.instances.map((i) => [i.id, i]));
  const graph: Pipeline["graph"] = new DirectedGraph({ allowSelfLoops: true });
  for (const id of d.nodes) {
    const instance = instances.get(id);
    if (!instance) throw new Error(`node ${id} has no instance`);
    graph.addNode(id, { instance });
  }
  for (const [source, target, paths] of d.edges) graph.addDirectedEdge(source, target, { paths });
  const p: Pipeline = { root, profile: d.profile, paramsFiles: d.paramsFiles, stages: new Map(d.stages), instances, graph };
  if (d.executor) p.executor = d.executor;
  if (d.inputs) p.inputs = new Map(d.inputs);
  if (d.immutable) p.immutable = d.immutable;
  return p;
}

/** The memo's pipeline data when the memo is there and still what a load would give, else null. */
function readMemoData(root: string, opts: MemoOptions): PipelineData | null {
  if (opts.code === null) return null;
  const requested = opts.profile ?? null;
  let m: MemoFile;
  try {
    m = JSON.parse(readFileSync(memoFile(root, requested), "utf8")) as MemoFile;
  } catch {
    return null;
  }
  if (!m || m.version !== MEMO_VERSION || m.code !== opts.code || m.root !== root || m.requested !== requested || !m.trace || !m.pipeline) return null;
  if (!isDeepStrictEqual(m.packages, loaderPackages())) return null;
  try {
    return traceHolds(root, m.trace) ? m.pipeline : null;
  } catch {
    // A damaged memo (a field of the wrong type) reads as none.
    return null;
  }
}

/** The memo's pipeline when the memo is there, intact and still what a load would give; else null. */
export async function readMemo(root: string, opts: MemoOptions): Promise<Pipeline | null> {
  const data = readMemoData(root, opts);
  try {
    return data && (await pipelineOf(root, data));
  } catch {
    // A damaged memo (a bad graph) reads as none.
    return null;
  }
}

/**
 * Keeps `p`, loaded with `trace`, for the next command. Written only when JSON gives the pipeline
 * back exactly (a param that JSON cannot hold, such as .inf, is never approximated): returns whether
 * it was written. Atomic; a reader sees the old memo or the new one.
 */
export async function writeMemo(p: Pipeline, trace: LoadTrace, opts: MemoOptions): Promise<boolean> {
  if (opts.code === null) return false;
  const memo: MemoFile = { version: MEMO_VERSION, code: opts.code, packages: loaderPackages(), root: p.root, requested: opts.profile ?? null, trace, pipeline: pipelineData(p) };
  const text = JSON.stringify(memo);
  if (!isDeepStrictEqual(JSON.parse(text), memo)) return false;
  await writeFileAtomic(memoFile(p.root, memo.requested), text);
  memoStats.writes++;
  return true;
}

/**
 * The pipeline of `root` for `opts.profile`: from its memo while that holds, else loaded from the
 * sources (load.ts, which reports every config error) and kept. Losing or failing to write the
 * memo only costs time.
 */
export async function openPipeline(rootIn: string, opts: MemoOptions): Promise<Pipeline> {
  const root = resolve(rootIn);
  const hit = await readMemo(root, opts);
  if (hit) {
    memoStats.hits++;
    return hit;
  }
  memoStats.loads++;
  const { loadPipelineTraced } = await import("./load.ts");
  const { pipeline, trace } = await loadPipelineTraced(root, opts.profile === undefined ? {} : { profile: opts.profile });
  await writeMemo(pipeline, trace, opts).catch(() => false);
  return pipeline;
}
