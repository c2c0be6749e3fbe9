// Where a resolved param value came from: the YAML node (file + range) behind a path of an instance's
// params, following `${...}` from pipeline.yaml into the params files (or the fan-out element) and
// YAML aliases to their anchors. Computed lazily, only for values a contract refused. Pure.
import { isAlias, isMap, isScalar, isSeq, type Document, type Node } from "yaml";
import type { SourceText, Span } from "./diagnostics.ts";
import type { ItemOrigin } from "./expand.ts";
import { pairOf } from "./yaml-paths.ts";

export interface YamlSource {
  src: SourceText;
  doc: Document;
}

export interface ProvenanceEnv {
  /** pipeline.yaml: the only file whose strings are interpolated. */
  pipeline: YamlSource;
  /** The profile's params files in order (later files win at the top level). */
  params: YamlSource[];
}

export interface AliasUse {
  /** Anchor name, without the `*`. */
  name: string;
  /** The `*name` in the text. */
  use: Span;
  /** The anchored value. */
  anchor: Span | undefined;
}

export interface Origin {
  /** Where to point. */
  span: Span;
  /** Aliases the path went through on its way to the value (the value lies inside their anchors). */
  via: AliasUse[];
  /** The value itself is an alias: `span` is its use. */
  alias?: AliasUse;
  /** The path ends at a key that is not there: `span` is the map (or its key) that lacks it. */
  missing?: boolean;
}

interface Cursor {
  node: Node | null;
  /** The key the node is the value of, if any (a compact place to point at for a whole map). */
  key?: Node;
  at: YamlSource;
}

const WHOLE = /^\$\{([^}]*)\}$/;

function spanOf(c: Cursor, preferKey = false): Span | undefined {
  const n = preferKey ? (c.key ?? c.node) : (c.node ?? c.key);
  return n?.range ? { src: c.at.src, start: n.range[0], end: n.range[1] } : undefined;
}

class Walker {
  readonly via: AliasUse[] = [];

  constructor(
    private readonly env: ProvenanceEnv,
    private readonly item: ItemOrigin,
  ) {}

  /** Follows a whole `${...}` (pipeline.yaml only) to the node it names. */
  jump(c: Cursor): Cursor | null {
    if (c.at !== this.env.pipeline || !isScalar(c.node) || typeof c.node.value !== "string") return null;
    const m = WHOLE.exec(c.node.value);
    if (!m) return null;
    const segs = m[1]!.trim().split(".");
    if (segs[0] === "item") {
      const it = this.item;
      if (it === null) return null;
      if ("foreach" in it) {
        const el = this.walk({ node: it.foreach, at: this.env.pipeline }, [it.index]);
        return el.rest === 0 ? this.walk(el.cursor, segs.slice(1)).cursorIfComplete : null;
      }
      const axis = it.matrix[segs[1] ?? ""];
      if (!axis) return null;
      const el = this.walk({ node: axis.node, at: this.env.pipeline }, [axis.index]);
      return el.rest === 0 ? this.walk(el.cursor, segs.slice(2)).cursorIfComplete : null;
    }
    for (let i = this.env.params.length - 1; i >= 0; i--) {
      const file = this.env.params[i]!;
      const top = file.doc.contents as Node | null;
      if (top && pairOf(top, segs[0]!)) return this.walk({ node: top, at: file }, segs).cursorIfComplete;
    }
    return null;
  }

  /** Aliases and whole `${...}` lead elsewhere; follow them until the value's own node. */
  deref(c: Cursor, record: boolean): Cursor {
    for (;;) {
      if (isAlias(c.node)) {
        const target = (c.node.resolve(c.at.doc) as Node | undefined) ?? null;
        const use: AliasUse = { name: c.node.source, use: spanOf({ ...c, key: undefined })!, anchor: target?.range ? { src: c.at.src, start: target.range[0], end: target.range[1] } : undefined };
        if (record) this.via.push(use);
        c = { node: target, key: c.key, at: c.at };
        continue;
      }
      const next = this.jump(c);
      if (!next) return c;
      c = { ...next, key: next.key ?? c.key };
    }
  }

  /** Walks `path` from `c`; `rest` > 0 when it stopped early (a key or index that is not there). */
  walk(c: Cursor, path: readonly PropertyKey[]): { cursor: Cursor; rest: number; cursorIfComplete: Cursor | null } {
    let cur = c;
    for (let i = 0; i < path.length; i++) {
      const here = this.deref(cur, true);
      const seg = path[i]!;
      let next: Cursor | null = null;
      if (isMap(here.node)) {
        const pair = pairOf(here.node, seg);
        if (pair) next = { node: pair.value ?? null, key: pair.key ?? undefined, at: here.at };
      } else if (isSeq(here.node) && typeof seg === "number" && seg < here.node.items.length) {
        next = { node: (here.node.items[seg] as Node | undefined) ?? null, at: here.at };
      }
      if (!next) return { cursor: here, rest: path.length - i, cursorIfComplete: null };
      cur = next;
    }
    return { cursor: cur, rest: 0, cursorIfComplete: cur };
  }
}

/**
 * The source of the value at `path` of an instance's params. `paramsNode` is the stage's `params:`
 * node in pipeline.yaml; `fallback` is used when nothing better exists (e.g. the stage has no params);
 * `at: "key"` points at the last key of the path rather than its value.
 */
export function originOf(env: ProvenanceEnv, paramsNode: Node | null, item: ItemOrigin, path: readonly PropertyKey[], fallback: Span, at: "value" | "key" = "value"): Origin {
  const w = new Walker(env, item);
  const { cursor, rest } = w.walk({ node: paramsNode, at: env.pipeline }, path);
  // A key (e.g. an unknown one) is shown as written, wherever its value leads.
  if (rest === 0 && at === "key" && cursor.key) return { span: spanOf(cursor, true)!, via: w.via };
  if (rest > 0) {
    // A missing key: point at the map that lacks it (its key when it has one, else its first character).
    const keySpan = spanOf(cursor, true);
    const span = cursor.key ? keySpan : keySpan && { ...keySpan, end: keySpan.start + 1 };
    return { span: span ?? fallback, via: w.via, missing: rest === 1 };
  }
  // A whole ${...} leads to where the value is written; if that is an alias, the choice was made there.
  let end = cursor;
  for (let next = w.jump(end); next; next = w.jump(end)) end = { ...next, key: next.key ?? end.key };
  if (isAlias(end.node)) {
    const before = w.via.length;
    w.deref(end, true);
    const alias = w.via[before];
    w.via.length = before;
    return { span: spanOf(end) ?? fallback, via: w.via, ...(alias ? { alias } : {}) };
  }
  const value = w.deref(end, true);
  return { span: spanOf(value) ?? spanOf(end) ?? fallback, via: w.via };
}
