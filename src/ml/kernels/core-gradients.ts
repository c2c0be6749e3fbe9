// Registers tfjs-core's gradient configs, which neither the CJS bundle (what Node resolves) nor a
// plain import of dist/register_all_gradients (it fails on a directory import under Node ESM)
// provides. Loads each dist/gradients/*_grad.js file on its own; must not register anything else.
import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import * as tf from "@tensorflow/tfjs-core";

let done: Promise<{ registered: string[]; skipped: string[] }> | null = null;

/**
 * Registers every gradient shipped in @tensorflow/tfjs-core/dist/gradients (once per process).
 * Returns the kernel names registered and the files skipped with why (4.22: Prod_grad.js, which
 * imports the package's base module and hits the same directory-import failure).
 */
export function registerCoreGradients(): Promise<{ registered: string[]; skipped: string[] }> {
  done ??= (async () => {
    const require = createRequire(import.meta.url);
    const dir = join(dirname(require.resolve("@tensorflow/tfjs-core/package.json")), "dist", "gradients");
    const files = readdirSync(dir).filter((f) => f.endsWith("_grad.js"));
    const names: string[] = [];
    const failed: string[] = [];
    await Promise.all(
      files.map(async (f) => {
        try {
          const mod = (await import(pathToFileURL(join(dir, f)).href)) as Record<string, unknown>;
          for (const [key, value] of Object.entries(mod)) {
            if (key.endsWith("GradConfig") && value && typeof value === "object") {
              const cfg = value as tf.GradConfig;
              if (!tf.getGradient(cfg.kernelName)) tf.registerGradient(cfg);
              names.push(cfg.kernelName);
            }
          }
        } catch (err) {
          failed.push(`${f}: ${(err as Error).message.split("\n")[0]}`);
        }
      }),
    );
    return { registered: names.sort(), skipped: failed.sort() };
  })();
  return done;
}
