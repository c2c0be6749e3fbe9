// Picks and initialises the TensorFlow.js backend for a stage process. Owns the backend order and
// the reasons; never imported at module load by anything that does not compute.
import * as tf from "@tensorflow/tfjs-core";
import { SedPipeError } from "../errors.ts";
import { BACKEND_NAMES, predictBackend, type BackendChoice, type BackendName } from "./backend-choice.ts";

export { BACKEND_NAMES, predictBackend, type BackendChoice, type BackendName } from "./backend-choice.ts";

/** Loads and activates a backend in this process; returns what is actually in use. */
export async function initBackend(requested: string = "auto"): Promise<BackendChoice> {
  const predicted = predictBackend(requested);
  const order: BackendName[] =
    requested === "auto" ? BACKEND_NAMES.slice(BACKEND_NAMES.indexOf(predicted.name)) : [predicted.name];
  const failures: string[] = [];
  for (const name of order) {
    try {
      const note = await activate(name);
      const reason = (failures.length ? `${predicted.reason}; ${failures.join("; ")}` : predicted.reason) + (note ? `; ${note}` : "");
      return { name, reason };
    } catch (err) {
      failures.push(`${name} failed to load: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  throw new SedPipeError(`no TensorFlow.js backend could be loaded (${failures.join("; ")})`, {
    hint: "reinstall with `npm ci`; `--backend cpu` needs only @tensorflow/tfjs-backend-cpu",
  });
}

/** Activates a backend; returns a note on how its matMuls run (wasm), for the log. */
async function activate(name: BackendName): Promise<string> {
  let note = "";
  switch (name) {
    case "tfjs-node-gpu":
    case "tfjs-node":
      await import(`@tensorflow/${name}`);
      if (!(await tf.setBackend("tensorflow"))) throw new Error("setBackend('tensorflow') returned false");
      break;
    case "wasm":
      await import("@tensorflow/tfjs-backend-wasm");
      if (!(await tf.setBackend("wasm"))) throw new Error("setBackend('wasm') returned false");
      note = await fastWasmMatMul();
      break;
    case "cpu":
      await import("@tensorflow/tfjs-backend-cpu");
      if (!(await tf.setBackend("cpu"))) throw new Error("setBackend('cpu') returned false");
      break;
  }
  await tf.ready();
  return note;
}

/**
 * Stock tfjs-wasm matMuls with a transposed operand are ~15x slower (stack-notes). Prefer the
 * OpenBLAS kernels of src/ml/wasm-blas.ts (they fall back to transpose-first XNNPACK themselves);
 * if that module cannot be used at all, install the small transpose-first override below.
 */
async function fastWasmMatMul(): Promise<string> {
  try {
    const { installBlasKernels } = await import("./wasm-blas.ts");
    const r = await installBlasKernels();
    return `matMul: ${r.path} (${r.reason})`;
  } catch (err) {
    installWasmMatMulOverride();
    return `matMul: transpose-first override (wasm-blas unavailable: ${(err as Error).message.split("\n")[0]})`;
  }
}

let wasmOverrideInstalled = false;

/**
 * tfjs-wasm hands a matMul to XNNPACK only when neither operand is transposed; otherwise it runs a
 * naive loop ~15x slower (stack-notes). Every backward matMul and every torch-layout Linear has a
 * transposed operand, so this wraps the wasm BatchMatMul kernel: transpose the operand explicitly
 * (wasm Transpose kernel), then call the stock kernel untransposed. The temporary gets a fresh data id,
 * so XNNPACK's packed-weight cache (keyed by id) can never serve stale weights through it.
 */
export function installWasmMatMulOverride(): void {
  if (wasmOverrideInstalled) return;
  const stock = tf.getKernel(tf.BatchMatMul, "wasm");
  const transpose = tf.getKernel(tf.Transpose, "wasm");
  if (!stock || !transpose) return;
  type Info = tf.TensorInfo;
  const swapLast = (rank: number) => {
    const perm = Array.from({ length: rank }, (_, i) => i);
    [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
    return perm;
  };
  const kernelFunc: tf.KernelFunc = (args) => {
    const { inputs, backend, attrs } = args as unknown as {
      inputs: { a: Info; b: Info };
      backend: { disposeData(id: object): void };
      attrs: { transposeA: boolean; transposeB: boolean };
    };
    if (!attrs.transposeA && !attrs.transposeB) return stock.kernelFunc(args);
    const temps: Info[] = [];
    const plain = (x: Info, t: boolean): Info => {
      if (!t) return x;
      const y = transpose.kernelFunc({ inputs: { x }, backend, attrs: { perm: swapLast(x.shape.length) } } as never) as Info;
      temps.push(y);
      return y;
    };
    const a = plain(inputs.a, attrs.transposeA);
    const b = plain(inputs.b, attrs.transposeB);
    try {
      return stock.kernelFunc({ inputs: { a, b }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } } as never);
    } finally {
      for (const t of temps) backend.disposeData(t.dataId);
    }
  };
  tf.unregisterKernel(tf.BatchMatMul, "wasm");
  tf.registerKernel({ ...stock, kernelFunc });
  wasmOverrideInstalled = true;
}
