// The context every CLI command gets instead of touching process.* (tests call main() with their own).
// Its own module so that command modules elsewhere (src/store, src/ui) can name it without importing
// src/cli.ts, which nothing imports. Types only.

/** What commands get instead of touching process.*: tests call main() with their own cwd/env. */
export interface CliContext {
  cwd: string;
  env: NodeJS.ProcessEnv;
  out(text: string): void;
  err(text: string): void;
  /** Colour on stdout: a TTY, and neither NO_COLOR nor TERM=dumb (FORCE_COLOR forces it). */
  color: boolean;
  /** The terminal stream a live view draws on (its isTTY decides Ink vs plain lines); absent = not a TTY. */
  stdout?: { isTTY?: boolean; write(text: string): unknown; columns?: number };
  /** The project root (folder holding pipeline.yaml), found by walking up from cwd. */
  root(): string;
  setExit(code: number): void;
  /** Process signals, injectable so an interrupted run can be tested in-process. */
  onSignal(handler: (sig: NodeJS.Signals) => void): () => void;
}
