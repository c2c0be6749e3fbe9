// NDJSON sink for runner events (`--json`): one event object per line, exactly as the runner emits
// them (see src/runner/events.ts for the schema). Nothing else may be written to the same stream.
import type { EventSink, RunnerEvent } from "../runner/events.ts";

export function createJsonSink(write: (text: string) => void): EventSink {
  return (e: RunnerEvent) => write(JSON.stringify(e) + "\n");
}
