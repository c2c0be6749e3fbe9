// Hasher: digests of deps (stat-cached), code closures and runtime, combined into an instance's
// Fingerprint. Owns the fingerprint schema; never decides what runs (that is src/pipeline/plan.ts).
import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { stat } from "node:fs/promises";
import { isAbsolute, resolve } from "node:path";
import { SedPipeError } from "../errors.ts";
import { canonicalJson } from "./canonical-json.ts";
import { mapLimit } from "../io/map-limit.ts";
import type { Fingerprint, FingerprintParts, StageInstance } from "../pipeline/types.ts";
import { CodeDigester } from "./code-digest.ts";
import { DIGEST_PREFIX, digestFile, digestManifest, listFolder, type ManifestEntry } from "./file-digest.ts";
import { paramsHash } from "./params-hash.ts";
import { runtimeParts } from "./runtime.ts";
import { nowNs, StatCache } from "./stat-cache.ts";
import { HashPool, sharedHashPool } from "./hash-pool.ts";

/** Bump when what goes into a fingerprint changes: every instance reruns once. */
export const FINGERPRINT_SCHEMA = 1;

const FILE_NS = "file";

/** Files at least this big are hashed on the worker pool; smaller ones cost less inline. */
const POOL_MIN_BYTES = 1024 * 1024;

export interface HasherStats {
  /** Files whose bytes were read and hashed (stat-cache misses). */
  filesHashed: number;
  bytesHashed: number;
  /** Files answered by the stat cache. */
  cacheHits: number;
}

export class Hasher {
  readonly root: string;
  readonly backend: string;
  readonly stats: HasherStats = { filesHashed: 0, bytesHashed: 0, cacheHits: 0 };
  readonly warnings: string[] = [];
  private cache: Promise<StatCache>;
  private code: Promise<CodeDigester>;
  /** Digests of a path are computed once per Hasher even when many instances ask concurrently. */
  private inflight = new Map<string, Promise<string>>();

  private pool: HashPool | undefined;
  private ownPool = false;
  private lanes: number;

  /**
   * parallel: worker threads for hashing big files (default: the shared pool, up to 4 threads;
   * 1 = hash everything on this thread).
   */
  constructor(root: string, opts: { backend?: string; onWarn?: (msg: string) => void; parallel?: number } = {}) {
    this.root = resolve(root);
    this.backend = opts.backend ?? "auto";
    if (opts.parallel === undefined) this.pool = sharedHashPool();
    else if (opts.parallel > 1) {
      this.pool = new HashPool(opts.parallel);
      this.ownPool = true;
    }
    this.lanes = this.pool ? this.pool.size * 2 : 1;
    const onWarn = (msg: string) => {
      this.warnings.push(msg);
      (opts.onWarn ?? ((m: string) => process.stderr.write(`warning: ${m}\n`)))(msg);
    };
    this.cache = StatCache.load(this.root, onWarn);
    this.code = this.cache.then((c) => new CodeDigester(this.root, c));
  }

  private abs(path: string): string {
    return isAbsolute(path) ? path : resolve(this.root, path);
  }

  private async fileDigest(abs: string): Promise<{ digest: string; size: number }> {
    const cache = await this.cache;
    // Synchronous on purpose: warm status stats every dep file, and a promise per file costs more
    // than the stat (22k demo images).
    const st = statSync(abs, { bigint: true });
    const hit = cache.lookup(FILE_NS, abs, st);
    if (hit) {
      this.stats.cacheHits++;
      return { digest: hit, size: Number(st.size) };
    }
    const started = nowNs();
    const digest = this.pool && st.size >= POOL_MIN_BYTES ? await this.pool.digestFile(abs) : await digestFile(abs);
    this.stats.filesHashed++;
    this.stats.bytesHashed += Number(st.size);
    // If the file changed while it was read, the stat no longer matches: do not cache a torn digest.
    const after = await stat(abs, { bigint: true });
    if (after.mtimeNs === st.mtimeNs && after.size === st.size && after.ino === st.ino) cache.store(FILE_NS, abs, st, digest, started);
    return { digest, size: Number(st.size) };
  }

  /**
   * Content digest of a file (sha256 of bytes) or folder (sha256 of the sorted manifest of its files,
   * symlinks followed). Relative paths are project-relative. Throws ENOENT errors unchanged.
   */
  digestPath(path: string): Promise<string> {
    const abs = this.abs(path);
    let p = this.inflight.get(abs);
    if (!p) {
      p = this.digestPathNow(abs);
      this.inflight.set(abs, p);
      // Later calls must see fresh content (outputs are re-hashed after a run): keep only in flight.
      void p.then(
        () => this.inflight.delete(abs),
        () => this.inflight.delete(abs),
      );
    }
    return p;
  }

  private async digestPathNow(abs: string): Promise<string> {
    const st = await stat(abs);
    if (!st.isDirectory()) return (await this.fileDigest(abs)).digest;
    const files = await listFolder(abs);
    const entries: ManifestEntry[] = await mapLimit(files, this.lanes, async (f) => {
      const { digest, size } = await this.fileDigest(f.abs);
      return { path: f.rel, size, digest };
    });
    return digestManifest(entries);
  }

  async fingerprint(inst: StageInstance): Promise<Fingerprint> {
    const named = Object.entries(inst.deps).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const digests = await mapLimit(named, this.lanes, async ([name, path]) => {
      try {
        return await this.digestPath(path);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ENOTDIR") {
          throw new SedPipeError(`dep "${name}" of instance ${inst.id} does not exist: ${path}`, {
            hint: "run the stage that writes it first (sed-pipe run <that stage>), or fix the path in pipeline.yaml / the params file",
          });
        }
        if (err instanceof Error && /symlink/.test(err.message)) {
          throw new SedPipeError(`dep "${name}" of instance ${inst.id} (${path}): ${err.message}`, { hint: "fix or remove the link" });
        }
        throw err;
      }
    });
    const deps: Record<string, string> = {};
    named.forEach(([, path], i) => (deps[path] = digests[i]!));
    const code = await this.code;
    const { code: codeDigests, imports } = await code.digestModule(inst.module);
    const parts: FingerprintParts = {
      params: inst.params,
      paramsHash: paramsHash(inst.params),
      deps,
      code: codeDigests,
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
      r = runtimeParts(this.root, this.backend, imports);
      this.runtimes.set(key, r);
      r.catch(() => this.runtimes.delete(key));
    }
    return r.then((x) => ({ ...x }));
  }

  /** Fingerprints of many instances, their dep hashing spread over the pool. */
  fingerprintAll(insts: StageInstance[]): Promise<Fingerprint[]> {
    return mapLimit(insts, this.lanes, (i) => this.fingerprint(i));
  }

  /** Persists the stat cache (atomic write under cache/state/). */
  async save(): Promise<void> {
    await (await this.cache).save();
  }

  /** Stops a pool this Hasher created (the shared pool's idle workers never hold the process). */
  async close(): Promise<void> {
    if (this.ownPool) await this.pool?.close();
  }
}

/** sha256 of the canonical JSON of {schema, module, parts without the params (hashed in paramsHash)}. */
export function fingerprintDigest(module: string, parts: FingerprintParts): string {
  const { params: _params, ...rest } = parts;
  const text = canonicalJson({ schema: FINGERPRINT_SCHEMA, module, parts: rest });
  return DIGEST_PREFIX + createHash("sha256").update(text).digest("hex");
}
