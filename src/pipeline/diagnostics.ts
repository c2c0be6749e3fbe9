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

/** The "file:L:C: message" head plus the offending line and carets. */
export function formatAt(span: Span, message: string): string {
  const { src, start } = span;
  const p = src.pos(start);
  const lineText = src.lines[p.line - 1] ?? "";
  const lineNo = String(p.line);
  const gutter = " ".repeat(lineNo.length);
  // The underline stays on the first line of a multi-line node.
  const endOnLine = Math.min(span.end - start, lineText.length - (p.col - 1));
  const width = Math.max(1, endOnLine);
  return (
    `${p.file}:${p.line}:${p.col}: ${message}\n` +
    ` ${lineNo} | ${lineText}\n` +
    ` ${gutter} | ${" ".repeat(p.col - 1)}${"^".repeat(width)}`
  );
}

export function configErrorAt(span: Span, message: string, hint?: string): ConfigError {
  return new ConfigError(formatAt(span, message), hint === undefined ? {} : { hint });
}

export function posString(p: SourcePos): string {
  return `${p.file}:${p.line}:${p.col}`;
}
