// Picks and initialises the TensorFlow.js backend for a stage process. Owns the backend order and
// the reasons; never imported at module load by anything that does not compute.
import { createRequire } from "node:module";
import * as tf from "@tensorflow/tfjs-core";
import { SedPipeError } from "../errors.ts";

export const BACKEND_NAMES = ["tfjs-node-gpu", "tfjs-node", "wasm", "cpu"] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];

export interface BackendChoice {
  name: BackendName;
  /** Why this one: e.g. "auto: @tensorflow/tfjs-node-gpu is not installed". */
  reason: string;
}

const require = createRequire(import.meta.url);

function installed(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

/**
 * Which backend `auto` would pick, decided without loading any native code (cheap enough for the
 * engine's fingerprint of every instance).
 */
export function predictBackend(requested: string = "auto"): BackendChoice {
  if (requested !== "auto") {
    if (!(BACKEND_NAMES as readonly string[]).includes(requested)) {
      throw new SedPipeError(`unknown backend "${requested}"`, {
        hint: `use one of: auto, ${BACKEND_NAMES.join(", ")}`,
      });
    }
    return { name: requested as BackendName, reason: "forced with --backend" };
  }
  const skipped: string[] = [];
  for (const name of ["tfjs-node-gpu", "tfjs-node"] as const) {
    if (installed(`@tensorflow/${name}`)) return { name, reason: `auto: @tensorflow/${name} is installed` };
    skipped.push(`@tensorflow/${name} is not installed`);
  }
  return { name: "wasm", reason: `auto: ${skipped.join(", ")}` };
}

/** Loads and activates a backend in this process; returns what is actually in use. */
export async function initBackend(requested: string = "auto"): Promise<BackendChoice> {
  const predicted = predictBackend(requested);
  const order: BackendName[] =
    requested === "auto" ? BACKEND_NAMES.slice(BACKEND_NAMES.indexOf(predicted.name)) : [predicted.name];
  const failures: string[] = [];
  for (const name of order) {
    try {
      await activate(name);
      const reason = failures.length ? `${predicted.reason}; ${failures.join("; ")}` : predicted.reason;
      return { name, reason };
    } catch (err) {
      failures.push(`${name} failed to load: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  throw new SedPipeError(`no TensorFlow.js backend could be loaded (${failures.join("; ")})`, {
    hint: "reinstall with `npm ci`; `--backend cpu` needs only @tensorflow/tfjs-backend-cpu",
  });
}

async function activate(name: BackendName): Promise<void> {
  switch (name) {
    case "tfjs-node-gpu":
    case "tfjs-node":
      await import(`@tensorflow/${name}`);
      if (!(await tf.setBackend("tensorflow"))) throw new Error("setBackend('tensorflow') returned false");
      break;
    case "wasm":
      await import("@tensorflow/tfjs-backend-wasm");
      if (!(await tf.setBackend("wasm"))) throw new Error("setBackend('wasm') returned false");
      break;
    case "cpu":
      await import("@tensorflow/tfjs-backend-cpu");
      if (!(await tf.setBackend("cpu"))) throw new Error("setBackend('cpu') returned false");
      break;
  }
  await tf.ready();
}
