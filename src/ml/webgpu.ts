// WebGPU for TensorFlow.js in Node: Dawn's prebuilt dawn.node from the npm `webgpu` package (an
// optional dependency), set up the way @tensorflow/tfjs-backend-webgpu expects a browser to be: the
// WebGPU globals, `navigator.gpu`, and for Dawn's OpenGL backend (Mesa's llvmpipe on a machine without
// a GPU) the EGL platform and the compatibility feature level. Loaded only by src/ml/backend.ts when
// the webgpu backend is asked for, and by `sed-pipe doctor`.
import { platform } from "node:process";

/** The adapter a stage computes on, as its log and `sed-pipe doctor` name it. */
export interface GpuAdapter {
  /** Dawn's backend: vulkan, opengl, metal, d3d12. */
  api: string;
  vendor: string;
  architecture: string;
  description: string;
  /** A software rasteriser (llvmpipe, lavapipe, SwiftShader): right for tests, never for real work. */
  software: boolean;
  limits: { maxBufferSize: number; maxStorageBufferBindingSize: number; maxComputeWorkgroupStorageSize: number; maxComputeInvocationsPerWorkgroup: number };
  features: string[];
}

/** What was tried and why it was not used, for messages. */
export interface GpuProbe {
  adapters: GpuAdapter[];
  failures: string[];
}

interface WebGpuModule {
  create(flags: string[]): GpuLike;
  globals: Record<string, unknown>;
}

interface GpuLike {
  requestAdapter(o?: Record<string, unknown>): Promise<AdapterLike | null>;
}

interface AdapterLike {
  info?: { vendor?: string; architecture?: string; description?: string; device?: string; isFallbackAdapter?: boolean };
  isFallbackAdapter?: boolean;
  limits: Record<string, number>;
  features: Iterable<string>;
}

const SOFTWARE = /llvmpipe|lavapipe|swiftshader|softpipe|software rasterizer/i;

/** Dawn backends worth trying on this platform, best first. */
function apis(): string[] {
  if (platform === "darwin") return ["metal"];
  if (platform === "win32") return ["d3d12", "vulkan"];
  return ["vulkan", "opengl"];
}

let loaded: Promise<WebGpuModule> | undefined;

async function loadModule(): Promise<WebGpuModule> {
  loaded ??= import("webgpu").then(
    (m) => ((m as { default?: WebGpuModule }).default ?? (m as unknown as WebGpuModule)),
    (err: unknown) => {
      loaded = undefined;
      throw new Error(
        `the optional package "webgpu" (Dawn for Node) is not installed or does not load here (${(err as Error).message.split("\n")[0]}); npm ci installs it on linux-x64/arm64, macOS and Windows`,
      );
    },
  );
  return loaded;
}

function describe(api: string, a: AdapterLike): GpuAdapter {
  const info = a.info ?? {};
  const description = [info.description, info.device].filter(Boolean).join(" ") || "(no description)";
  const lim = (k: string) => Number(a.limits[k] ?? 0);
  return {
    api,
    vendor: info.vendor || "(unknown vendor)",
    architecture: info.architecture || "",
    description,
    software: Boolean(info.isFallbackAdapter ?? a.isFallbackAdapter) || SOFTWARE.test(`${info.vendor} ${description}`),
    limits: {
      maxBufferSize: lim("maxBufferSize"),
      maxStorageBufferBindingSize: lim("maxStorageBufferBindingSize"),
      maxComputeWorkgroupStorageSize: lim("maxComputeWorkgroupStorageSize"),
      maxComputeInvocationsPerWorkgroup: lim("maxComputeInvocationsPerWorkgroup"),
    },
    features: [...a.features].sort(),
  };
}

/** The GPU object of one Dawn backend, with what its adapter requests need. */
function gpuFor(mod: WebGpuModule, api: string): GpuLike {
  if (api === "opengl" && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY && !process.env.EGL_PLATFORM) {
    // No display server: Mesa's EGL must not look for one.
    process.env.EGL_PLATFORM = "surfaceless";
  }
  const gpu = mod.create([`backend=${api}`]);
  if (api !== "opengl") return gpu;
  // Dawn's OpenGL backend offers only the compatibility feature level; tfjs asks for the default.
  const request = gpu.requestAdapter.bind(gpu);
  return { requestAdapter: (o = {}) => request({ featureLevel: "compatibility", ...o }) };
}

/** Every adapter Dawn finds here (one per backend that has one), without installing any. */
export async function probeAdapters(): Promise<GpuProbe> {
  const mod = await loadModule();
  Object.assign(globalThis, mod.globals);
  const adapters: GpuAdapter[] = [];
  const failures: string[] = [];
  for (const api of apis()) {
    try {
      const a = await gpuFor(mod, api).requestAdapter({ powerPreference: "high-performance" });
      if (a) adapters.push(describe(api, a));
      else failures.push(`${api}: no adapter`);
    } catch (err) {
      failures.push(`${api}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  return { adapters, failures };
}

/**
 * Installs `navigator.gpu` for the best adapter (hardware first; a software one only with
 * `allowSoftware`) and returns it. Must run before @tensorflow/tfjs-backend-webgpu is imported: the
 * package registers its backend only where `navigator.gpu` exists.
 */
export async function setupWebGpu(opts: { allowSoftware: boolean }): Promise<GpuAdapter> {
  // One Dawn instance per process: tfjs keeps the device it made from the first, and a second
  // instance's teardown aborts the process (seen with Dawn's OpenGL backend).
  if (installed && (opts.allowSoftware || !installed.software)) return installed;
  if (installed) throw new Error(`only a software WebGPU adapter (${installed.description})`);
  const mod = await loadModule();
  Object.assign(globalThis, mod.globals);
  const failures: string[] = [];
  let software: { api: string; gpu: GpuLike; adapter: GpuAdapter } | null = null;
  for (const api of apis()) {
    let gpu: GpuLike;
    let a: AdapterLike | null;
    try {
      gpu = gpuFor(mod, api);
      a = await gpu.requestAdapter({ powerPreference: "high-performance" });
    } catch (err) {
      failures.push(`${api}: ${(err as Error).message.split("\n")[0]}`);
      continue;
    }
    if (!a) {
      failures.push(`${api}: no adapter`);
      continue;
    }
    const adapter = describe(api, a);
    if (!adapter.software) return install(gpu, adapter);
    software ??= { api, gpu, adapter };
    failures.push(`${api}: only a software adapter (${adapter.description})`);
  }
  if (software && opts.allowSoftware) return install(software.gpu, software.adapter);
  throw new Error(`no ${opts.allowSoftware ? "" : "hardware "}WebGPU adapter (${failures.join("; ") || "nothing tried"})`);
}

let installed: GpuAdapter | undefined;

function install(gpu: GpuLike, adapter: GpuAdapter): GpuAdapter {
  Object.defineProperty(globalThis, "navigator", { value: { gpu }, configurable: true, writable: true });
  installed = adapter;
  return adapter;
}

/** One line for logs: "NVIDIA: 580.159.04 (nvidia, vulkan; max storage binding 2048 MiB)". */
export function describeAdapter(a: GpuAdapter): string {
  const mib = (n: number) => `${Math.round(n / 2 ** 20)} MiB`;
  return `${a.description} (${[a.vendor, a.architecture].filter(Boolean).join(" ")}, ${a.api}${a.software ? ", software" : ""}; max buffer ${mib(a.limits.maxBufferSize)}, max storage binding ${mib(a.limits.maxStorageBufferBindingSize)})`;
}
