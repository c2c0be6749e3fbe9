// Loader hook (registered after tsx, so it runs first): ES modules under node_modules are read and
// returned as they are; everything else goes on to tsx. See tsx-loader.mjs.
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";

export async function load(url, context, nextLoad) {
  if (context.format === "module" && url.startsWith("file:") && url.includes("/node_modules/") && /\.m?js$/.test(new URL(url).pathname)) {
    return { format: "module", source: await readFile(fileURLToPath(url)), shortCircuit: true };
  }
  return nextLoad(url, context);
}
