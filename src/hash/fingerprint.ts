// Hasher: digests of deps (stat-cached), code closures and runtime, combined into an instance's
// Fingerprint. Owns the fingerprint schema; never decides what runs (that is src/pipeline/plan.ts).
import { isAbsolute, resolve } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { SedPipeError } from "../errors.ts";
import type { Fingerprint, FingerprintParts, StageInstance } from "../pipeline/types.ts";
import { mapLimit } from "../io/map-limit.ts";
import { canonicalJson } from "./canonical-json.ts";
import { CodeDigester } from "./code-digest.ts";
import { digestOf, SymlinkError, type DigestService } from "./digest.ts";
import { isInsideAny } from "./tree-cache.ts";
import { paramsHash } from "./params-hash.ts";
import { runtimeParts } from "./runtime.ts";

/** Bump when what goes into a fingerprint changes: every instance reruns once. */
export const FINGERPRINT_SCHEMA = 2;

/** Deps digested at once (their files go through the digest service's own lanes and thread pool). */
const LANES = 8;

export interface HasherOptions {
  /** The compute backend the fingerprints assume ("auto" = what this machine would pick). */
  backend?: string;
  /** false: the OpenBLAS kernels are switched off for stages (they then compute with pure wasm). */
  blas?: boolean;
  /** Absolute folders declared immutable: a dep inside one is checked by its folders' stats only. */
  immutable?: readonly string[];
}

export { isInsideAny } from "./tree-cache.ts";

export class Hasher {
  readonly root: string;
  readonly backend: string;
  readonly blas: boolean;
  readonly code: CodeDigester;
  readonly immutable: readonly string[];

  constructor(root: string, readonly digests: DigestService, opts: HasherOptions = {}) {
    this.root = resolve(root);
    this.backend = opts.backend ?? "auto";
    this.blas = opts.blas ?? true;
    this.immutable = opts.immutable ?? [];
    this.code = new CodeDigester(this.root, digests.statCache);
  }

  private abs(path: string): string {
    return isAbsolute(path) ? path : resolve(this.root, path);
  }

  /** Content digest of a dep (project-relative or absolute); a missing path is a user-facing error. */
  private async depDigest(inst: StageInstance, name: string, path: string): Promise<string> {
    try {
      const abs = this.abs(path);
      const d = await this.digests.digestPath(abs, { immutable: isInsideAny(abs, this.immutable) });
      if (d) return d.digest;
    } catch (err) {
      if (err instanceof SymlinkError) {
        throw new SedPipeError(`dep "${name}" of instance ${inst.id} (${path}): ${err.message}`, { hint: "fix or remove the link" });
      }
      if ((err as NodeJS.ErrnoException).code !== "ENOTDIR") throw err;
    }
    throw new SedPipeError(`dep "${name}" of instance ${inst.id} does not exist: ${path}`, {
      hint: "run the stage that writes it first (sed-pipe run <that stage>), or fix the path in pipeline.yaml / the params file",
    });
  }

  /**
   * The instance's fingerprint now. `previous`: the parts of its last recorded fingerprint (the lock
   * entry's); its paramsHash is reused when its params equal the instance's by value (a hash of equal
   * values is equal: object-hash is the one params hash and is pinned), which spares object-hash's
   * serialisation for every unchanged instance of a warm status.
   */
  async fingerprint(inst: StageInstance, previous?: FingerprintParts): Promise<Fingerprint> {
    const named = Object.entries(inst.deps).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const digests = await mapLimit(named, LANES, ([name, path]) => this.depDigest(inst, name, path));
    const deps: Record<string, string> = {};
    named.forEach(([, path], i) => (deps[path] = digests[i]!));
    // 98 demo instances share 5 modules: within one assessment each closure is stat'ed once.
    const { code: codeDigests, imports } = await this.digests.once(`code:${inst.module}`, () => this.code.digestModule(inst.module));
    const parts: FingerprintParts = {
      params: inst.params,
      paramsHash: previous && typeof previous.paramsHash === "string" && isDeepStrictEqual(previous.params, inst.params) ? previous.paramsHash : paramsHash(inst.params),
      deps,
      code: { ...codeDigests },
      runtime: await this.runtimeFor(imports),
      decl: { deps: { ...inst.deps }, outs: { ...inst.outs } },
      // Stage contract version (absent without a contract: canonical JSON drops undefined members).
      stageVersion: inst.version,
    };
    return { digest: fingerprintDigest(inst.module, parts), parts };
  }

  private runtimes = new Map<string, Promise<Record<string, string>>>();

  /** Runtime part for a closure's package imports (memoised: package.json files do not change mid-run). */
  private runtimeFor(imports: Set<string>): Promise<Record<string, string>> {
    const key = [...imports].sort().join("\n");
    let r = this.runtimes.get(key);
    if (!r) {
      r = runtimeParts(this.root, { backend: this.backend, blas: this.blas }, imports);
      this.runtimes.set(key, r);
      r.catch(() => this.runtimes.delete(key));
    }
    return r.then((x) => ({ ...x }));
  }

  /** Fingerprints of many instances. */
  fingerprintAll(insts: StageInstance[]): Promise<Fingerprint[]> {
    return mapLimit(insts, LANES, (i) => this.fingerprint(i));
  }

  /** Persists the stat cache (file, code and closure digests). */
  async save(): Promise<void> {
    await this.digests.save();
  }
}

/** sha256 of the canonical JSON of {schema, module, parts without the params (hashed in paramsHash)}. */
export function fingerprintDigest(module: string, parts: FingerprintParts): string {
  const { params: _params, ...rest } = parts;
  const text = canonicalJson({ schema: FINGERPRINT_SCHEMA, module, parts: rest });
  return digestOf(text);
}
