// Wording of schema (zod) issues for people: "config.optimizer.lr must be > 0, got number -1". Shared
// by the plan-time params check (src/pipeline/check-params.ts, with file positions), the run-time
// parse of a stage's params (src/stage-api.ts) and schema-backed parsers in src/io. Pure and
// light: no zod import, no I/O.

/** The parts of a zod 4 issue this module reads (structural, so any zod 4 copy works). */
export interface SchemaIssue {
  code: string;
  path: PropertyKey[];
  message: string;
  expected?: string;
  values?: unknown[];
  keys?: string[];
  minimum?: number | bigint;
  maximum?: number | bigint;
  inclusive?: boolean;
  exact?: boolean;
  origin?: string;
  format?: string;
  discriminator?: string;
  options?: unknown[];
  errors?: SchemaIssue[][];
  note?: string;
}

export function describeValue(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a map";
  if (typeof v === "string") return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 37) + "..." : v)}`;
  return `${typeof v} ${String(v)}`;
}

/** The value at a data path, or undefined. */
export function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let cur = root;
  for (const seg of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[seg as string];
  }
  return cur;
}

/** "config.optimizer.lr", "datasets[2].key" style path text. */
export function pathText(path: readonly PropertyKey[]): string {
  let s = "";
  for (const seg of path) s += typeof seg === "number" ? `[${seg}]` : s ? `.${String(seg)}` : String(seg);
  return s;
}

// zod's own wording starts like this; anything else was written by a schema author for people.
const ZOD_DEFAULT = /^(Invalid|Too (small|big)|Unrecognized key|Expected)/;

/**
 * Replaces an `invalid_union` by the issues of the one alternative that got past the value's own
 * type (its issues lie deeper than the union itself), when there is exactly one such alternative:
 * `{kind: eval, crop: -1}` against `"eval" | "train" | {kind, crop, ...}` is a bad crop, not a bad union.
 */
export function flattenIssues(issues: readonly SchemaIssue[]): SchemaIssue[] {
  const out: SchemaIssue[] = [];
  for (const issue of issues) {
    if (issue.code === "invalid_union" && issue.errors && issue.errors.length > 0) {
      const deeper = issue.errors.filter((alt) => alt.length > 0 && alt.every((i) => i.path.length > 0));
      if (deeper.length === 1) {
        out.push(...flattenIssues(deeper[0]!.map((i) => ({ ...i, path: [...issue.path, ...i.path] }))));
        continue;
      }
    }
    out.push(issue);
  }
  return out;
}

function bound(issue: SchemaIssue, lower: boolean): string {
  const n = String(lower ? issue.minimum : issue.maximum);
  if (issue.origin === "array" || issue.origin === "set") {
    if (issue.exact) return `must have exactly ${n} item${n === "1" ? "" : "s"}`;
    if (lower && n === "1") return "must not be empty";
    return `must have ${lower ? "at least" : "at most"} ${n} items`;
  }
  if (issue.origin === "string") {
    if (lower && n === "1") return "must not be empty";
    return `must be ${lower ? "at least" : "at most"} ${n} characters long`;
  }
  const op = lower ? (issue.inclusive ? ">=" : ">") : issue.inclusive ? "<=" : "<";
  return `must be ${op} ${n}`;
}

/**
 * One line for one issue, given the value it is about (undefined when the key is missing). A message
 * the schema author wrote is kept (followed by the value it got); zod's own wording is replaced.
 */
export function issueText(issue: SchemaIssue, actual: unknown): string {
  const got = `got ${describeValue(actual)}`;
  if (issue.code === "custom") return issue.message;
  if (issue.code === "unrecognized_keys") {
    const keys = issue.keys ?? [];
    return `unknown key${keys.length > 1 ? "s" : ""} ${keys.map((k) => `"${k}"`).join(", ")}`;
  }
  if (issue.code === "invalid_type" && actual === undefined) return "is required but missing";
  if (!ZOD_DEFAULT.test(issue.message)) return `${issue.message}, ${got}`;
  switch (issue.code) {
    case "invalid_type":
      return `expected ${issue.expected === "int" ? "an integer" : issue.expected}, ${got}`;
    case "too_small":
    case "too_big":
      return `${bound(issue, issue.code === "too_small")}, ${got}`;
    case "invalid_value":
      return `expected ${(issue.values ?? []).map((v) => JSON.stringify(v)).join(" or ")}, ${got}`;
    case "invalid_union":
      if (issue.discriminator !== undefined) return `expected ${(issue.options ?? []).map((v) => JSON.stringify(v)).join(" or ")}, ${got}`;
      return `does not match any allowed form, ${got}`;
    case "invalid_format":
      return `must be ${issue.format === "regex" ? "in the allowed format" : `a valid ${issue.format}`}, ${got}`;
    default:
      return issue.message;
  }
}

/** "lr must be > 0, ..." when the text continues the path, else "subset_classes: digit 5 is ...". */
export function issueLine(where: string, text: string): string {
  if (!where) return text;
  return /^(must|is)\b/.test(text) ? `${where} ${text}` : `${where}: ${text}`;
}
