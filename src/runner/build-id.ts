// Which sed-pipe code this process runs: what it keeps between commands (the loaded pipeline) is
// reused only by the same build.

/**
 * The CLI bundle this process runs from, as bin/sed-pipe.js names it (build/cli-<content hash>), or
 * null when it runs from the TypeScript sources (nothing then identifies the code cheaply).
 */
export function launchedBuild(): string | null {
  const b = (globalThis as { __sedPipeBuild?: unknown }).__sedPipeBuild;
  return typeof b === "string" && b !== "" ? b : null;
}
