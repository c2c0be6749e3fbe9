// The contract between the engine and a stage module (stages/*.ts), a leaf every layer may import:
// stages and their contracts, the planner (contracts), the runner (which calls `run(ctx)` inside a
// worker process) and src/ml (progress events). Light on purpose (types,
// plus the identity `defineContract` and the params parse): stage contracts import it, and the
// planner loads those without tfjs or h5wasm. No I/O here.
import type { output as ZodOutput, ZodType } from "zod";
import { ConfigError } from "./errors.ts";
import { flattenIssues, issueLine, issueText, pathText, valueAt, type SchemaIssue } from "./schema-issues.ts";

/** A typed progress report. The engine forwards it to the UI sinks unchanged. */
export interface ProgressEvent {
  /** Short phase name, e.g. "download", "features", "epoch 3/10", "eval". */
  phase: string;
  /** Units done so far in this phase (bytes, images, steps, samples). */
  done?: number;
  /** Total units in this phase when known. */
  total?: number;
  /** Unit of done/total: "B", "img", "step", "epoch", "sample", ... */
  unit?: string;
  /** One line for humans. */
  message?: string;
  /** Numbers worth showing live (loss, accuracy, rate). */
  metrics?: Record<string, number>;
}

/**
 * What the engine grants one instance. Stages pass these on to src/ml; nothing below src/cli.ts reads
 * the environment (src/cli.ts maps SED_PIPE_CORES, SED_PIPE_BLAS_THREADS, SED_PIPE_HEAD_THREADS,
 * SED_PIPE_IMAGE_THREADS and SED_PIPE_NO_BLAS onto them).
 */
export interface StageSettings {
  /** Cores this instance may use: its stage's resources.cpus (clamped to the machine on a local run), unless the user set it. */
  readonly cores: number;
  /** OpenBLAS threads for this instance's process (default: cores). */
  readonly blasThreads: number;
  /** Head threads: null = decide by head size, backend and cores; 1 = never; n = force n. */
  readonly headThreads: number | null;
  /** Image threads (cache-features): absent or null = one per core when there are two or more; 0 = the stage's thread; n = n. */
  readonly imageThreads?: number | null;
  /** false: the OpenBLAS kernels are disabled (the pure-wasm path), whether or not the addon loads. */
  readonly blas: boolean;
}

export interface StageContext {
  /** Readable instance id, e.g. "eval@ood_gen/Brightness_1". */
  readonly instanceId: string;
  /** Stage name, e.g. "eval". */
  readonly stage: string;
  /** Absolute path of the workspace (the folder holding pipeline.yaml). */
  readonly root: string;
  /** Active profile name ("demo", "paper", ...). */
  readonly profile: string;
  /** The fan-out item of this instance (foreach: the element; matrix: {axis: element}); null without fan-out. */
  readonly item: unknown;
  /** The stage's `params:` after profile selection and interpolation. */
  readonly params: Readonly<Record<string, unknown>>;
  /** Declared deps: name -> absolute path (file or directory). Read-only for the stage. */
  readonly deps: Readonly<Record<string, string>>;
  /**
   * Declared outs: name -> absolute TEMPORARY path the stage must create (file or directory).
   * The runner moves them into place only after run() resolves; on failure they are deleted.
   */
  readonly outs: Readonly<Record<string, string>>;
  /**
   * A persistent scratch folder for resumable state (checkpoints), keyed by instance id. It survives
   * failures and interruptions; the runner deletes it after the instance succeeds.
   */
  readonly scratch: string;
  /** Requested compute backend: "auto" or a backend name (see src/ml/backend.ts). */
  readonly backend: string;
  /** Cores, threads and kernel switches for this instance. */
  readonly settings: StageSettings;
  /** Aborted on Ctrl-C or engine shutdown: check it once per batch and throw signal.reason. */
  readonly signal: AbortSignal;
  progress(event: ProgressEvent): void;
  /** One line into the instance's log (and the UI's log tail). */
  log(line: string): void;
}

export interface StageModule {
  run(ctx: StageContext): Promise<void>;
  /** The stage's contract, re-exported from its `<x>.contract.ts` (the planner reads that file). */
  contract?: StageContract;
}

/**
 * What a stage promises about its params, in a light module of its own (`stages/<x>.contract.ts` beside
 * `stages/<x>.ts`, exporting `contract`): the planner checks every instance's params against `params`
 * before anything runs, and `version` is part of each instance's fingerprint (bump it when the stage's
 * output changes for the same inputs, e.g. a bug fix in what it computes).
 */
export interface StageContract<S extends ZodType = ZodType> {
  /** The stage's name, for messages (usually the pipeline.yaml stage name). */
  name: string;
  /** A whole number >= 1. */
  version: number;
  /** Schema of the instance's resolved `params:` (a zod object schema). */
  params: S;
  description?: string;
  /**
   * What one instance will cost, from its parsed params and the declared facts of its deps (the
   * params file's `inputs:` section, or an upstream instance's estimate): pure, no I/O. Optional: a
   * stage without it shows "not estimated" in the plan's needs.
   */
  estimate?: (params: ZodOutput<S>, deps: Readonly<Record<string, string>>, facts: (path: string) => DataFacts | undefined) => StageEstimate;
}

/** What is known of a file or folder a stage reads or writes, for estimates (never fingerprinted). */
export interface DataFacts {
  /** Distinct samples in it: images in a folder, rows per pass of a feature file. */
  items?: number;
  /** Its size on disk, when known. */
  bytes?: number;
}

/** A stage instance's cost: the work in its unit (timed by calibration), and what its outputs take. */
export interface StageEstimate {
  /** What `work` counts: throughput is calibrated per stage in this unit ("images", "samples", "rows", "B"). */
  unit: string;
  /** Units of work, or null when a fact it needs is not declared. */
  work: number | null;
  /** Bytes its outputs take on disk, or null when unknown. */
  outBytes: number | null;
  /** Facts of its outputs (by out name) that downstream estimates read. */
  outs?: Record<string, DataFacts>;
  /** One line on what the numbers assume, e.g. "prebuilt: validated and linked, no featurizing". */
  note?: string;
  /** Set when the instance downloads something: where from, and whether a sha256 pins it. */
  fetch?: { from: string; pinned: boolean };
}

/** Typed identity: `export const contract = defineContract({ name, version, params: z.strictObject({...}) })`. */
export function defineContract<S extends ZodType>(contract: StageContract<S>): StageContract<S> {
  return contract;
}

/** The params a stage's `run` sees once they passed its contract (defaults filled in). */
export type ParamsOf<C> = C extends StageContract<infer S> ? ZodOutput<S> : never;

/**
 * The instance's params parsed by the stage's contract. The planner already checked them (with file
 * positions), so under the engine this cannot fail; a stage called directly (tests, other tools) gets
 * a ConfigError listing every problem.
 */
export function parseParams<S extends ZodType>(contract: StageContract<S>, params: Readonly<Record<string, unknown>>): ZodOutput<S> {
  return parseWith(contract.params, params, {
    name: contract.name,
    path: "params",
    hint: `the ${contract.name} stage's contract (version ${contract.version}) does not accept these params`,
  });
}

/** `value` parsed by `schema`, or a ConfigError "<name>: <path>.x must be ...; ..." naming every problem. */
export function parseWith<S extends ZodType>(schema: S, value: unknown, what: { name: string; path: string; hint?: string }): ZodOutput<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data as ZodOutput<S>;
  const lines = flattenIssues(r.error.issues as unknown as SchemaIssue[]).map((i) =>
    issueLine(pathText([what.path, ...i.path]), issueText(i, valueAt(value, i.path))),
  );
  throw new ConfigError(`${what.name}: ${lines.join("; ")}`, what.hint === undefined ? {} : { hint: what.hint });
}
