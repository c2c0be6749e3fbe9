// The params file's `inputs:` section: what is known of the data the stages read, keyed by path.
// A path that no stage writes is a manual input (ImageNet, a checkpoint): its entry says what it is
// and how to get it. Any entry may give `items` (images in a folder, rows per pass of a feature file)
// and `bytes`, which the stage contracts' estimates read. Checked here, with positions; never
// fingerprinted (describing data does not change what a stage computes).
import { z } from "zod";
import { describeValue } from "../schema-issues.ts";
import { configErrorAt } from "./diagnostics.ts";
import type { YamlSource } from "./provenance.ts";
import type { InputDecl } from "./types.ts";
import { spanFor } from "./yaml-paths.ts";

const count = z.number().int().min(0);
const entrySchema = z.strictObject({
  /** What it is, one line. */
  desc: z.string().min(1).optional(),
  /** Where to get it and the layout the stage expects. */
  how: z.string().min(1).optional(),
  items: count.optional(),
  bytes: count.optional(),
});
const sectionSchema = z.record(z.string().min(1), entrySchema);

/** The `inputs:` section of the params files (the last file that has one wins, as for any section). */
export function readInputs(files: readonly YamlSource[], params: Record<string, unknown>): Map<string, InputDecl> {
  const raw = params.inputs;
  const out = new Map<string, InputDecl>();
  if (raw === undefined || raw === null) return out;
  const file = [...files].reverse().find((f) => f.doc.has("inputs")) ?? files[files.length - 1]!;
  const r = sectionSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const path = ["inputs", ...issue.path] as PropertyKey[];
    if (issue.code === "unrecognized_keys") {
      throw configErrorAt(spanFor(file.doc, file.src, [...path, issue.keys[0]!], true), `unknown key "${issue.keys[0]}" in inputs`, "allowed keys: desc, how, items, bytes");
    }
    let actual: unknown = params;
    for (const seg of path) actual = actual && typeof actual === "object" ? (actual as Record<PropertyKey, unknown>)[seg as string] : undefined;
    const what = issue.code === "invalid_type" ? `expected ${issue.expected}` : issue.message;
    throw configErrorAt(spanFor(file.doc, file.src, path), `${path.map(String).join(".")}: ${what}, got ${describeValue(actual)}`, "inputs: {<path>: {desc, how, items, bytes}}");
  }
  for (const [path, e] of Object.entries(r.data)) {
    const at = file.src.pos(spanFor(file.doc, file.src, ["inputs", path], true).start);
    out.set(normalizeInputPath(path), { path: normalizeInputPath(path), ...e, pos: at });
  }
  return out;
}

/** "data/x/" and "./data/x" name the same input as "data/x". */
export function normalizeInputPath(p: string): string {
  return p.replace(/^\.\//, "").replace(/\/+$/, "");
}
