// Turns a position in a YAML source into a ConfigError: "file:LINE:COL: message", the source line and
// a caret underline. Owns the error text format only; never reads files itself.
import { LineCounter } from "yaml";
import { ConfigError } from "../errors.ts";
import type { SourcePos } from "./types.ts";

/** A YAML file as read from disk, with what is needed to point into it. */
export class SourceText {
  readonly lineCounter = new LineCounter();
  readonly lines: string[];

  /** name: project-relative path used in messages, e.g. "pipeline.yaml". */
  constructor(
    readonly name: string,
    readonly text: string,
  ) {
    this.lines = text.split(/\r?\n/);
  }

  pos(offset: number): SourcePos {
    const { line, col } = this.lineCounter.linePos(offset);
    return { file: this.name, line, col };
  }
}

/** A [start, end) range of a source (byte offsets into SourceText.text). */
export interface Span {
  src: SourceText;
  start: number;
  end: number;
}

/** Source lines longer than this are shown as a window around the span ("..." marks the cuts). */
const MAX_LINE = 120;

/** The "file:L:C: message" head plus the offending line and carets. */
export function formatAt(span: Span, message: string): string {
  const { src, start } = span;
  const p = src.pos(start);
  let lineText = src.lines[p.line - 1] ?? "";
  const lineNo = String(p.line);
  const gutter = " ".repeat(lineNo.length);
  // The underline stays on the first line of a multi-line node.
  let col = p.col - 1;
  let width = Math.max(1, Math.min(span.end - start, lineText.length - col));
  if (lineText.length > MAX_LINE) {
    // A long line (a flow map in a params file): keep some context before the span, cut the rest.
    const from = Math.max(0, Math.min(col - 40, lineText.length - MAX_LINE));
    const to = Math.min(lineText.length, from + MAX_LINE);
    width = Math.max(1, Math.min(width, to - col));
    lineText = (from > 0 ? "..." : "") + lineText.slice(from, to) + (to < lineText.length ? "..." : "");
    col = col - from + (from > 0 ? 3 : 0);
  }
  return (
    `${p.file}:${p.line}:${p.col}: ${message}\n` +
    ` ${lineNo} | ${lineText}\n` +
    ` ${gutter} | ${" ".repeat(col)}${"^".repeat(width)}`
  );
}

export function configErrorAt(span: Span, message: string, hint?: string): ConfigError {
  return new ConfigError(formatAt(span, message), hint === undefined ? {} : { hint });
}

export function posString(p: SourcePos): string {
  return `${p.file}:${p.line}:${p.col}`;
}
