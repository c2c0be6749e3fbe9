// `${a.b.c}` / `${item...}` interpolation over YAML nodes, keeping positions for errors. Pure: no I/O.
// A scalar that is exactly one `${...}` takes the referenced value with its YAML type.
import { isAlias, isMap, isScalar, isSeq, type Document, type Node } from "yaml";
import { ConfigError } from "../errors.ts";
import { configErrorAt, type SourceText, type Span } from "./diagnostics.ts";

/** No fan-out element: `${item}` is an error. */
export const NO_ITEM: unique symbol = Symbol("no-item");

export interface InterpContext {
  params: Record<string, unknown>;
  item: unknown;
  /** Where the params come from, for messages (e.g. "params/demo.yaml"). */
  paramsLabel: string;
}

/** A `${...}` whose key does not exist; optional deps catch this one and drop the dep. */
export class MissingKeyError extends ConfigError {}

const EXPR = /\$\{([^}]*)\}/g;

export function nodeSpan(src: SourceText, node: Node | null | undefined, fallback: Span): Span {
  if (!node || !node.range) return fallback;
  return { src, start: node.range[0], end: node.range[1] };
}

function exprSpan(src: SourceText, node: Node, expr: string): Span {
  const whole = nodeSpan(src, node, { src, start: 0, end: 0 });
  const raw = src.text.slice(whole.start, whole.end);
  const at = raw.indexOf("${" + expr + "}");
  if (at < 0) return whole;
  return { src, start: whole.start + at, end: whole.start + at + expr.length + 3 };
}

function kindOf(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "a list";
  if (typeof v === "object") return "a map";
  return `a ${typeof v}`;
}

function listKeys(v: unknown): string {
  if (v && typeof v === "object" && !Array.isArray(v)) {
    const keys = Object.keys(v);
    return keys.length ? `keys there: ${keys.slice(0, 12).join(", ")}${keys.length > 12 ? ", ..." : ""}` : "it is an empty map";
  }
  return `it is ${kindOf(v)}`;
}

function lookup(expr: string, ctx: InterpContext, span: Span): unknown {
  const segs = expr.trim().split(".");
  if (segs.some((s) => s === "")) throw configErrorAt(span, `bad interpolation \${${expr}}: empty key segment`);
  let cur: unknown;
  let walked: string[];
  let rest: string[];
  if (segs[0] === "item") {
    if (ctx.item === NO_ITEM) {
      throw configErrorAt(span, `\${${expr}} used in a stage without foreach or matrix`, "only fan-out stages have an item");
    }
    cur = ctx.item;
    walked = ["item"];
    rest = segs.slice(1);
  } else {
    cur = ctx.params;
    walked = [];
    rest = segs;
  }
  for (const seg of rest) {
    let next: unknown = undefined;
    let found = false;
    if (Array.isArray(cur) && /^\d+$/.test(seg)) {
      found = Number(seg) < cur.length;
      next = cur[Number(seg)];
    } else if (cur && typeof cur === "object" && !Array.isArray(cur) && Object.prototype.hasOwnProperty.call(cur, seg)) {
      found = true;
      next = (cur as Record<string, unknown>)[seg];
    }
    if (!found) {
      const where = walked.length ? `"${walked.join(".")}"` : `params (${ctx.paramsLabel})`;
      throw new MissingKeyError(configErrorAt(span, `cannot resolve \${${expr}}: ${where} has no key "${seg}"`).message, {
        hint: listKeys(cur),
      });
    }
    walked.push(seg);
    cur = next;
  }
  return cur;
}

/** Deep copy of plain YAML data, so instances never share mutable params. */
function cloneData<T>(v: T): T {
  return v === undefined ? v : (structuredClone(v) as T);
}

export function interpolateString(value: string, node: Node, src: SourceText, ctx: InterpContext): unknown {
  EXPR.lastIndex = 0;
  const whole = /^\$\{([^}]*)\}$/.exec(value);
  if (whole) return cloneData(lookup(whole[1]!, ctx, exprSpan(src, node, whole[1]!)));
  if (!value.includes("${")) return value;
  return value.replace(EXPR, (_m, expr: string) => {
    const span = exprSpan(src, node, expr);
    const v = lookup(expr, ctx, span);
    if (v !== null && typeof v === "object") {
      throw configErrorAt(
        span,
        `cannot insert \${${expr}} into a string: it is ${kindOf(v)}`,
        "only scalars can be embedded in text; use the whole value `${...}` alone to keep a list or map",
      );
    }
    return String(v);
  });
}

/** Resolves a YAML node to plain data, interpolating every string scalar. */
export function resolveNode(node: Node | null | undefined, doc: Document, src: SourceText, ctx: InterpContext): unknown {
  if (node === null || node === undefined) return null;
  if (isAlias(node)) return resolveNode(node.resolve(doc) as Node | undefined, doc, src, ctx);
  if (isScalar(node)) {
    return typeof node.value === "string" ? interpolateString(node.value, node, src, ctx) : node.value;
  }
  if (isSeq(node)) return node.items.map((n) => resolveNode(n as Node, doc, src, ctx));
  if (isMap(node)) {
    const out: Record<string, unknown> = {};
    for (const pair of node.items) {
      const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
      out[key] = resolveNode(pair.value as Node | null, doc, src, ctx);
    }
    return out;
  }
  return (node as { toJSON?: () => unknown }).toJSON?.() ?? null;
}
