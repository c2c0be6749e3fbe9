// Chooses how a run is shown: the Ink live view on an interactive terminal, plain lines in pipes and
// CI, NDJSON with --json. The decision is a pure function of (TTY, env, flags); only callers pass
// the real process streams.
import type { EventSink } from "../runner/events.ts";
import { createJsonSink } from "./json.ts";
import { createPlainSink } from "./plain.ts";

export type UiKind = "ink" | "plain" | "json";

export interface PickInput {
  /** The stream the run is shown on (process.stdout in the CLI). */
  stdout: { isTTY?: boolean; write(text: string): unknown; columns?: number };
  env: NodeJS.ProcessEnv;
  /** --json: NDJSON events, nothing else on stdout. */
  json?: boolean;
  /** --ui plain|ink|auto: forces a renderer (ink still needs a TTY). */
  ui?: "auto" | "plain" | "ink";
  verbose?: boolean;
  /** Where plain/NDJSON text goes (default: stdout.write). */
  write?: (text: string) => void;
}

export interface PickedSink {
  kind: UiKind;
  color: boolean;
  sink: EventSink;
  /** Flushes the last frame and releases the terminal; call once the run is over (also on errors). */
  close(): Promise<void>;
}

/** CI=true/1/anything non-empty except "false"/"0" counts as CI (GitHub Actions sets CI=true). */
export function isCi(env: NodeJS.ProcessEnv): boolean {
  const v = env.CI;
  return v !== undefined && v !== "" && v !== "0" && v.toLowerCase() !== "false";
}

/** Colour: forced by FORCE_COLOR (not "0"); otherwise a TTY without NO_COLOR and TERM=dumb. */
export function useColor(isTTY: boolean, env: NodeJS.ProcessEnv): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== "0" && env.FORCE_COLOR !== "false";
  return isTTY && env.TERM !== "dumb";
}

export function chooseUi(input: {
  isTTY: boolean;
  env: NodeJS.ProcessEnv;
  json?: boolean;
  ui?: "auto" | "plain" | "ink";
  /** Terminal width; 0 (a pty nobody sized, e.g. `script` in a container) lays Ink out 1 char wide. */
  columns?: number;
}): UiKind {
  if (input.json) return "json";
  if (input.ui === "plain") return "plain";
  // Ink in a pipe prints every frame with erase codes, and a dumb terminal cannot erase: never there.
  if (!input.isTTY || input.env.TERM === "dumb" || input.columns === 0) return "plain";
  if (input.ui === "ink") return "ink";
  return isCi(input.env) ? "plain" : "ink";
}

export async function pickSink(input: PickInput): Promise<PickedSink> {
  const isTTY = !!input.stdout.isTTY;
  const kind = chooseUi({
    isTTY,
    env: input.env,
    columns: isTTY ? (input.stdout.columns ?? 0) : 0,
    ...(input.json ? { json: true } : {}),
    ...(input.ui ? { ui: input.ui } : {}),
  });
  const write = input.write ?? ((t: string) => void input.stdout.write(t));
  const color = kind !== "json" && useColor(isTTY, input.env);
  if (kind === "json") return { kind, color, sink: createJsonSink(write), close: async () => {} };
  if (kind === "plain") return { kind, color, sink: createPlainSink({ write, color, verbose: !!input.verbose }), close: async () => {} };
  // Loaded only here: ink + react + yoga cost start-up time that plain runs should not pay.
  const { createTuiSink } = await import("./tui.tsx");
  const t = createTuiSink({ stdout: input.stdout as NodeJS.WriteStream, color });
  return { kind, color, sink: t.sink, close: t.close };
}
