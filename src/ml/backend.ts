// Picks and initialises the TensorFlow.js backend for a stage process. Owns the backend order and
// the reasons; never imported at module load by anything that does not compute.
import * as tf from "@tensorflow/tfjs-core";
import { SedPipeError } from "../errors.ts";
import { AUTO_ORDER, predictBackend, type BackendChoice, type BackendName } from "./backend-choice.ts";
import type { BlasSettings } from "./wasm-blas.ts";

export { AUTO_ORDER, BACKEND_NAMES, predictBackend, type BackendChoice, type BackendName } from "./backend-choice.ts";

/**
 * Loads and activates a backend in this process; returns what is actually in use. `blas` applies to
 * the wasm backends (a stage passes ctx.settings): blas false gives the pure-wasm matMul path.
 */
export async function initBackend(requested: string = "auto", blas: BlasSettings = {}): Promise<BackendChoice> {
  const predicted = predictBackend(requested);
  const order: BackendName[] =
    requested === "auto" ? AUTO_ORDER.slice(AUTO_ORDER.indexOf(predicted.name)) : [predicted.name];
  const failures: string[] = [];
  for (const name of order) {
    try {
      const note = await activate(name, blas);
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
async function activate(name: BackendName, blas: BlasSettings): Promise<string> {
  let note = "";
  switch (name) {
    case "tfjs-node-gpu":
    case "tfjs-node":
      await import(`@tensorflow/${name}`);
      if (!(await tf.setBackend("tensorflow"))) throw new Error("setBackend('tensorflow') returned false");
      break;
    case "wasm":
    case "wasm+blas":
    case "wasm-fixed": {
      await import("@tensorflow/tfjs-backend-wasm");
      if (!(await tf.setBackend("wasm"))) throw new Error("setBackend('wasm') returned false");
      // Stock tfjs-wasm runs every matMul with a transposed operand ~15x slower (stack-notes): the
      // kernels of src/ml/wasm-blas.ts replace them (OpenBLAS, else transpose-first).
      const { installBlasKernels } = await import("./wasm-blas.ts");
      const r = await installBlasKernels({ prefer: name === "wasm-fixed" ? "fixed" : "auto", blas: blas.blas, blasThreads: blas.blasThreads });
      if (name === "wasm+blas" && r.path !== "wasm+blas") throw new Error(`the OpenBLAS kernels are not available (${r.reason})`);
      note = `matMul: ${r.path} (${r.reason})`;
      break;
    }
    case "webgpu": {
      // Asked for by name, so a software adapter (llvmpipe: tests, CI) is accepted; the log says which.
      const { setupWebGpu, describeAdapter } = await import("./webgpu.ts");
      const adapter = await setupWebGpu({ allowSoftware: true });
      await import("@tensorflow/tfjs-backend-webgpu");
      if (!(await tf.setBackend("webgpu"))) throw new Error("setBackend('webgpu') returned false");
      note = `adapter: ${describeAdapter(adapter)}`;
      break;
    }
    case "cpu":
      await import("@tensorflow/tfjs-backend-cpu");
      if (!(await tf.setBackend("cpu"))) throw new Error("setBackend('cpu') returned false");
      break;
  }
  await tf.ready();
  return note;
}
