// Helper process for tui-pty.test.ts (not a test itself): runs instance `slow` of a temp project with
// the sink pickSink chooses for this terminal, stopping on SIGINT the way src/cli.ts does.
import { executeRun } from "../../../src/runner/execute.ts";
import { openWorkspace, planner } from "../../../src/runner/workspace.ts";
import { resolveTargets } from "../../../src/pipeline/select.ts";
import { LockStore } from "../../../src/store/lock-file.ts";
import { pickSink } from "../../../src/ui/pick-sink.ts";

const root = process.argv[2]!;
const ws = await openWorkspace(root, { onWarn: () => {} });
const picked = await pickSink({ stdout: process.stdout, env: process.env });
const ac = new AbortController();
process.on("SIGINT", () => ac.abort());
const result = await executeRun({
  pipeline: ws.pipeline,
  order: resolveTargets(ws.pipeline, ["slow"]),
  planner,
  fingerprinter: ws.hasher,
  store: ws.store,
  digester: ws.digester,
  lock: await LockStore.open(ws.root),
  cacheDir: ws.cacheDir,
  jobs: 1,
  keepGoing: false,
  force: [],
  dryRun: false,
  backend: "auto",
  signal: ac.signal,
  emit: picked.sink,
  graceMs: 2000,
});
await picked.close();
process.stdout.write(`\nKIND=${picked.kind} OUTCOME=${result.outcome}\n`);
process.exitCode = result.outcome === "interrupted" ? 130 : 0;
