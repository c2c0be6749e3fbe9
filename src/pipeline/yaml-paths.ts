// Finding YAML nodes by data path (map keys / seq indexes) and turning them into spans for messages.
// Pure: works on parsed documents, never reads files.
import { isMap, isScalar, isSeq, type Document, type Node, type Pair } from "yaml";
import { sep } from "node:path";
import type { SourceText, Span } from "./diagnostics.ts";

export interface Located {
  key?: Node;
  node?: Node;
}

export function toPosix(p: string): string {
  return sep === "/" ? p : p.split(sep).join("/");
}

/** The pair of a map whose (scalar) key is `seg`. */
export function pairOf(map: Node, seg: PropertyKey): Pair<Node, Node> | undefined {
  if (!isMap(map)) return undefined;
  return map.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg)) as Pair<Node, Node> | undefined;
}

/** Walks a document along a data path (map keys / seq indexes), keeping the nodes. */
export function locate(doc: Document, path: readonly PropertyKey[]): Located {
  let node = doc.contents as Node | null;
  let key: Node | undefined;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = pairOf(node, seg);
      if (!pair) return { key, node: undefined };
      key = pair.key ?? undefined;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === "number") {
      key = undefined;
      node = (node.items[seg] as Node | undefined) ?? null;
    } else {
      return { key, node: undefined };
    }
  }
  return { key, node: node ?? undefined };
}

/** The closest existing node on the path: value if present, else the key, else an ancestor. */
export function spanFor(doc: Document, src: SourceText, path: readonly PropertyKey[], preferKey = false): Span {
  for (let n = path.length; n >= 0; n--) {
    const { key, node } = locate(doc, path.slice(0, n));
    const pick = preferKey || n < path.length ? (key ?? node) : (node ?? key);
    if (pick?.range) return { src, start: pick.range[0], end: pick.range[1] };
  }
  return { src, start: 0, end: 0 };
}
