// Shared data types of the engine: the validated pipeline, fingerprints, the lock and the plan.
// Types only. src/pipeline + src/hash produce these; src/store + src/runner + src/cli consume them.
import type { DirectedGraph } from "graphology";
import type { StageEstimate } from "../stage-api.ts";

/** A position in a YAML file, 1-based. */
export interface SourcePos {
  file: string;
  line: number;
  col: number;
}

/** What an instance asks the machine or the cluster scheduler for (`resources:` in pipeline.yaml). */
export interface Resources {
  cpus: number;
  memoryMb: number | null;
  gpus: number;
  timeMinutes: number | null;
  /** Free-form scheduler options (partition, account, qos, constraint...). */
  options: Record<string, string>;
}

/** One runnable unit: a stage, or one element of its fan-out. */
export interface StageInstance {
  /** "stage" without fan-out, else "stage@<item id>", e.g. "eval@ood_gen/Brightness_1". */
  id: string;
  stage: string;
  /** Project-relative path of the stage module, e.g. "stages/eval.ts". */
  module: string;
  /** Fan-out element (foreach), {axis: element} (matrix), or null. */
  item: unknown;
  /** Resolved `params:` of the stage for this instance. */
  params: Record<string, unknown>;
  /** Dep name -> path (project-relative, or absolute for data outside the project). */
  deps: Record<string, string>;
  /** Out name -> project-relative path (file or directory). */
  outs: Record<string, string>;
  /** Where the stage is declared (for messages). */
  pos: SourcePos;
  /** `cache: false` in pipeline.yaml: do not keep this stage's outputs in the cache store. Absent = true. */
  cache?: boolean;
  /** The stage contract's version (stages/<x>.contract.ts); absent for a stage without a contract. */
  version?: number;
  /** Declared resources (defaults filled in); absent for instances built without them (tests). */
  resources?: Resources;
  /** What it will cost (its contract's `estimate`, from the params file's `inputs:` facts); absent: not estimated. */
  estimate?: StageEstimate;
}

/** One entry of the params file's `inputs:` section (src/pipeline/inputs.ts). */
export interface InputDecl {
  /** Project-relative (or absolute) path, as deps name it. */
  path: string;
  desc?: string;
  how?: string;
  items?: number;
  bytes?: number;
  /** Where it is declared. */
  pos?: SourcePos;
}

export interface StageDecl {
  name: string;
  module: string;
  instanceIds: string[];
  pos: SourcePos;
  /** As declared (`cache:`); absent = true. */
  cache?: boolean;
  /** `desc:` of the stage, for `dag` and help output. */
  desc?: string;
}

/** Node attributes: {instance}; edge attributes: {paths} = the dep paths that created the edge. */
export interface Pipeline {
  /** Absolute path of the folder holding pipeline.yaml. */
  root: string;
  profile: string;
  /** Project-relative params files of the active profile (they are deps of nothing: params are hashed by value). */
  paramsFiles: string[];
  stages: Map<string, StageDecl>;
  /** All instances, in a topological order. */
  instances: Map<string, StageInstance>;
  graph: DirectedGraph<{ instance: StageInstance }, { paths: string[] }>;
  /** Where the profile's instances run by default (pipeline.yaml `profiles.<name>.executor`). */
  executor?: ExecutorSetting;
  /** The params file's `inputs:` section by path (manual inputs and data facts); absent = none declared. */
  inputs?: Map<string, InputDecl>;
  /** Absolute read-only data folders (`profiles.<name>.immutable`): deps inside are trusted while their folders are unchanged. */
  immutable?: string[];
}

export interface ExecutorSetting {
  kind: "local" | "slurm";
  slurm: { node?: string; groupMax?: number; retries?: number };
}

/** What went into a fingerprint, kept in the lock so that `why` can say what changed. */
export interface FingerprintParts {
  /** The instance's resolved params, by value. */
  params: Record<string, unknown>;
  /** object-hash of params. */
  paramsHash: string;
  /** Dep path -> content digest (files: sha256 of bytes; folders: sha256 of a sorted manifest). */
  deps: Record<string, string>;
  /** Project-relative source file (stage module + transitive project imports) -> digest. */
  code: Record<string, string>;
  /** node version, compute backend, versions of packages that change numbers, ... */
  runtime: Record<string, string>;
  /**
   * Declared names -> paths of deps and outs ("classes" -> "artifacts/..."): renaming or re-pointing
   * a declaration changes what the stage sees even when every digest is equal. Optional so older
   * lock entries still read.
   */
  decl?: { deps: Record<string, string>; outs: Record<string, string> };
  /** The stage contract's version; absent for a stage without a contract (and in older lock entries). */
  stageVersion?: number;
}

export interface Fingerprint {
  /** sha256 over the canonical form of parts. */
  digest: string;
  parts: FingerprintParts;
}

export interface OutRecord {
  /** Project-relative path. */
  path: string;
  kind: "file" | "dir";
  /** Content digest (the key of the object in cache/). */
  digest: string;
  size: number;
}

export interface LockEntry {
  fingerprint: string;
  parts: FingerprintParts;
  outs: Record<string, OutRecord>;
  finishedAt: string;
  durationMs: number;
}

export interface LockFile {
  version: 1;
  instances: Record<string, LockEntry>;
}

export type Change =
  | { kind: "new" }
  | { kind: "forced" }
  | { kind: "version"; old?: number; new?: number }
  | { kind: "param"; key: string; old: unknown; new: unknown }
  | { kind: "dep"; path: string; old?: string; new?: string }
  | { kind: "code"; file: string; old?: string; new?: string }
  | { kind: "runtime"; key: string; old?: string; new?: string }
  | { kind: "outputs-missing"; paths: string[] }
  | { kind: "outputs-modified"; paths: string[] }
  | { kind: "upstream"; id: string };

export type PlanAction = "run" | "skip" | "restore";

/** What a plan promises: pending steps are counted apart (they may still turn out fresh). */
export interface PlanCounts {
  run: number;
  restore: number;
  skip: number;
  /** Decided when their upstream is done: fresh if its outputs come out identical, else run. */
  pending: number;
}

export interface PlanStep {
  id: string;
  action: PlanAction;
  /** One line for humans, e.g. "param config.n_models: 5 -> 10". */
  reason: string;
  changes: Change[];
  /**
   * True when the step was planned before its upstream ran ("pending" input, or an upstream that
   * will run or be restored): the runner must re-fingerprint it once the upstream is done and call
   * decideInstance (early cutoff: identical upstream outputs -> skip).
   */
  pending?: boolean;
  /** restore only: from the lock entry's outputs, or from the run cache's record of this fingerprint. */
  restoreFrom?: "lock" | "run-cache";
}
