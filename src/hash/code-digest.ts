// Code part of a fingerprint: a stage module plus every project file it imports (transitively; not
// node_modules), each digested after an esbuild transform that drops comments and whitespace.
// Owns closure discovery and normalisation; the stat cache makes unchanged files free.
import { readFileSync, statSync, type BigIntStats } from "node:fs";
import { readFile } from "node:fs/promises";
import { extname, join } from "node:path";
import { builtinModules, createRequire } from "node:module";
import type * as esbuild from "esbuild";
import { SedPipeError } from "../errors.ts";
import { nowNs, type StatCache } from "./stat-cache.ts";
import { digestOf } from "./digest.ts";

export interface CodeClosure {
  /** Project-relative "/"-separated paths, sorted; the module itself included. */
  files: string[];
  /** Bare package specifiers imported anywhere in the closure (node builtins excluded). */
  imports: Set<string>;
}

const BUILTINS = new Set(builtinModules);

const LOADERS: Record<string, esbuild.Loader> = {
  ".ts": "ts",
  ".mts": "ts",
  ".cts": "ts",
  ".tsx": "tsx",
  ".js": "js",
  ".mjs": "js",
  ".cjs": "js",
  ".jsx": "jsx",
};

let esbuildVersionMemo: string | undefined;

/**
 * The version of the esbuild this module would load, read from its package.json: a warm `status`
 * finds every closure and digest in the stat cache and must not pay esbuild's import to name them.
 */
export function esbuildVersion(): string {
  if (esbuildVersionMemo === undefined) {
    try {
      const pkg = createRequire(import.meta.url).resolve("esbuild/package.json");
      esbuildVersionMemo = (JSON.parse(readFileSync(pkg, "utf8")) as { version: string }).version;
    } catch {
      esbuildVersionMemo = "unknown";
    }
  }
  return esbuildVersionMemo;
}

/** Cache namespace: a new esbuild may print code differently, so its digests are kept apart. */
export function codeNs(): string {
  return `code@esbuild-${esbuildVersion()}`;
}

function esbuildMessage(err: unknown): string {
  const errors = (err as { errors?: esbuild.Message[] }).errors;
  const e = errors?.[0];
  if (!e) return (err as Error).message;
  const where = e.location ? `${e.location.file}:${e.location.line}:${e.location.column + 1}: ` : "";
  return `${where}${e.text}`;
}

/** The static import closure of `module` (project-relative) inside `root`. */
export async function codeClosure(root: string, module: string): Promise<CodeClosure> {
  const { build } = await import("esbuild");
  let result: esbuild.BuildResult<{ metafile: true; write: false }>;
  try {
    result = await build({
      entryPoints: [module],
      absWorkingDir: root,
      bundle: true,
      write: false,
      metafile: true,
      platform: "node",
      format: "esm",
      packages: "external",
      logLevel: "silent",
      outdir: join(root, ".sed-pipe-closure-unused"),
    });
  } catch (err) {
    throw new SedPipeError(`cannot follow the imports of ${module}: ${esbuildMessage(err)}`, {
      hint: "fix the import or syntax error; the stage module must bundle",
    });
  }
  const files: string[] = [];
  const imports = new Set<string>();
  for (const [path, input] of Object.entries(result.metafile.inputs)) {
    if (!path.includes("node_modules/") && !path.includes(":")) files.push(path);
    for (const imp of input.imports) {
      if (!imp.external) continue;
      const spec = imp.path;
      if (spec.startsWith("node:") || BUILTINS.has(spec) || spec.startsWith(".") || spec.startsWith("/")) continue;
      imports.add(spec);
    }
  }
  files.sort();
  return { files, imports };
}

/** The text that is digested: esbuild's whitespace-minified output (comments and types gone). */
export async function normalisedSource(absPath: string): Promise<string | Buffer> {
  const bytes = await readFile(absPath);
  const loader = LOADERS[extname(absPath)];
  if (!loader) return bytes;
  const { transform } = await import("esbuild");
  try {
    const out = await transform(bytes.toString("utf8"), {
      loader,
      minifyWhitespace: true,
      legalComments: "none",
      sourcefile: absPath,
      logLevel: "silent",
    });
    return out.code;
  } catch (err) {
    throw new SedPipeError(`cannot parse ${absPath}: ${esbuildMessage(err)}`, { hint: "fix the syntax error" });
  }
}

export async function digestSource(absPath: string): Promise<string> {
  const text = await normalisedSource(absPath);
  return digestOf(Buffer.concat([Buffer.from("sed-pipe code v1\n"), typeof text === "string" ? Buffer.from(text) : text]));
}

/** Cache namespace of import closures (esbuild's resolution decides them). */
function closureNs(): string {
  return `closure@esbuild-${esbuildVersion()}`;
}
const RACY_NS = 2_000_000_000n;

interface ClosureRecord {
  files: string[];
  imports: string[];
  /** file -> "dev:ino:size:mtimeNs:ctimeNs" when the closure was computed. */
  sigs: Record<string, string>;
  startedNs: string;
}

function statOrNull(abs: string): BigIntStats | null {
  try {
    return statSync(abs, { bigint: true, throwIfNoEntry: false }) ?? null;
  } catch {
    return null;
  }
}

function statSig(st: { dev: bigint; ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
}

/** Per-module closure + per-file digests, with the stat cache in front of every transform. */
export class CodeDigester {
  private closures = new Map<string, Promise<CodeClosure>>();
  /** Transforms actually run (cache misses), for tests. */
  transforms = 0;
  /** Closures computed with esbuild (closure cache misses), for tests. */
  closureBuilds = 0;

  constructor(
    readonly root: string,
    private readonly cache: StatCache,
  ) {}

  closure(module: string): Promise<CodeClosure> {
    let c = this.closures.get(module);
    if (!c) {
      c = this.cachedClosure(module);
      this.closures.set(module, c);
      c.catch(() => this.closures.delete(module));
    }
    return c;
  }

  /**
   * A closure is reused from the stat cache while every file in it is unchanged (device, inode,
   * size, mtime, ctime): a new import needs an edit to a file already in the closure, so this is
   * exact, and a warm `status` never starts esbuild. Files touched within 2 s of the computation are
   * not trusted (their edit may have raced esbuild's read).
   */
  private async cachedClosure(module: string): Promise<CodeClosure> {
    const entry = join(this.root, module);
    // Synchronous stats: a warm status stats each closure's files once and hashes nothing, and a
    // thread-pool round trip per file costs more than the stat.
    const entrySt = statSync(entry, { bigint: true });
    const hit = this.cache.lookup(closureNs(), entry, entrySt);
    if (hit) {
      const rec = JSON.parse(hit) as ClosureRecord;
      let valid = true;
      for (const [file, sig] of Object.entries(rec.sigs)) {
        const st = statOrNull(join(this.root, file));
        if (!st || statSig(st) !== sig || st.mtimeNs > BigInt(rec.startedNs) - RACY_NS) {
          valid = false;
          break;
        }
      }
      if (valid) return { files: rec.files, imports: new Set(rec.imports) };
    }
    const startedNs = nowNs();
    this.closureBuilds++;
    const closure = await codeClosure(this.root, module);
    const sigs: Record<string, string> = {};
    for (const file of closure.files) sigs[file] = statSig(statSync(join(this.root, file), { bigint: true }));
    const rec: ClosureRecord = { files: closure.files, imports: [...closure.imports].sort(), sigs, startedNs: String(startedNs) };
    this.cache.store(closureNs(), entry, entrySt, JSON.stringify(rec), startedNs);
    return closure;
  }

  async digestFile(rel: string): Promise<string> {
    const abs = join(this.root, rel);
    const st = statSync(abs, { bigint: true });
    const hit = this.cache.lookup(codeNs(), abs, st);
    if (hit) return hit;
    const started = nowNs();
    const digest = await digestSource(abs);
    this.transforms++;
    this.cache.store(codeNs(), abs, st, digest, started);
    return digest;
  }

  /** file -> digest for the module's closure, and the packages it imports. */
  async digestModule(module: string): Promise<{ code: Record<string, string>; imports: Set<string> }> {
    const { files, imports } = await this.closure(module);
    const code: Record<string, string> = {};
    for (const f of files) code[f] = await this.digestFile(f);
    return { code, imports };
  }

  /** Forget closures (a long-lived process, e.g. watch mode, calls this when sources change). */
  reset(): void {
    this.closures.clear();
  }
}
