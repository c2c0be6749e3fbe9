// `sed-pipe status` and `sed-pipe why`: read-only planning of the workspace, printed as a table,
// a chain of causes, or JSON.
import type { Command } from "commander";
import type { CliContext } from "./context.ts";
import { EXIT } from "../errors.ts";
import type { PlanStep } from "../pipeline/types.ts";
import { EXAMPLES, JSON_SCHEMA_VERSION, openFor } from "./common.ts";

export function registerStatusCommands(program: Command, cli: CliContext): void {
  program
    .command("status")
    .description("show each instance as fresh / stale / missing, with a one-line reason (reads only)")
    .argument("[targets...]", "limit to these stages or instances and their upstream")
    .option("-p, --profile <name>", "params profile")
    .option("-b, --backend <name>", "compute backend the fingerprints assume", "auto")
    .option("--json", "print {schemaVersion, instances: [...]} on stdout")
    .option("--exit-code", "exit 1 when anything is not fresh (for CI gates)")
    .option("--paranoid", "check deps in the profile's immutable folders file by file too")
    .addHelpText("after", EXAMPLES(["sed-pipe status", "sed-pipe status eval --json | jq '.instances[] | select(.state != \"fresh\")'"]))
    .action(async (targets: string[], opts) => {
      const [{ resolveTargets }, { planOnly, stateOf, needsFor }, { needsLines }] = await Promise.all([
        import("../pipeline/select.ts"),
        import("../runner/workspace.ts"),
        import("../pipeline/needs.ts"),
      ]);
      const ws = await openFor(cli, opts);
      const steps = await planOnly(ws, resolveTargets(ws.pipeline, targets));
      const needs = await needsFor(ws, steps);
      const byId = new Map(steps.map((s) => [s.id, s]));
      // Cluster jobs of a run (running now, or left by an engine that was killed): shown per instance.
      const { listJobs } = await import("../runner/slurm/jobs.ts");
      const jobs = new Map((await listJobs(ws.cacheDir, cli.env)).filter((j) => j.jobId !== "").map((j) => [j.instanceId, j]));
      const rows = steps.map((s) => {
        // A fresh instance's record is a leftover (its engine died after the commit): the next run drops it.
        const j = stateOf(s, byId) === "fresh" ? undefined : jobs.get(s.id);
        const job = j ? { executor: "slurm", jobId: j.jobId, state: j.status?.state ?? "UNKNOWN", nodes: j.status?.nodes ?? "", submittedAt: j.submittedAt } : undefined;
        return { id: s.id, state: stateOf(s, byId), action: s.action, reason: s.reason, changes: s.changes, ...(job ? { job } : {}) };
      });
      if (opts.json) {
        cli.out(JSON.stringify({ schemaVersion: JSON_SCHEMA_VERSION, profile: ws.pipeline.profile, instances: rows, needs }) + "\n");
      } else {
        const width = Math.min(48, Math.max(0, ...rows.map((r) => r.id.length)));
        const paint = (state: string) =>
          !cli.color ? state.padEnd(7) : `\x1b[${state === "fresh" ? 32 : state === "stale" ? 33 : 31}m${state.padEnd(7)}\x1b[0m`;
        for (const r of rows) {
          const job = r.job ? `  [slurm job ${r.job.jobId} ${r.job.state}${r.job.nodes ? ` on ${r.job.nodes}` : ""}]` : "";
          cli.out(`${paint(r.state)} ${r.id.padEnd(width)}${job}${r.state === "fresh" ? "" : `  ${r.reason}`}\n`);
        }
        const n = (st: string) => rows.filter((r) => r.state === st).length;
        const onCluster = rows.filter((r) => r.job).length;
        cli.out(`${n("fresh")} fresh, ${n("stale")} stale, ${n("missing")} missing${onCluster ? `, ${onCluster} with a cluster job (sed-pipe jobs)` : ""} (profile ${ws.pipeline.profile})\n`);
        // What bringing the stale ones up to date needs; nothing to say when everything is fresh.
        if (steps.some((s) => s.action === "run")) for (const l of needsLines(needs)) cli.out(l + "\n");
      }
      cli.setExit(opts.exitCode && rows.some((r) => r.state !== "fresh") ? 1 : EXIT.ok);
    });

  program
    .command("why")
    .description("explain why an instance would run: param old -> new, changed dep, code file, runtime, upstream")
    .argument("<target>", "a stage (all its instances) or one instance; unique prefixes work")
    .option("-p, --profile <name>", "params profile")
    .option("-b, --backend <name>", "compute backend the fingerprints assume", "auto")
    .option("--json", "print the plan steps as JSON")
    .option("--paranoid", "check deps in the profile's immutable folders file by file too")
    .addHelpText("after", EXAMPLES(["sed-pipe why train-heads@ood_gen", "sed-pipe why eval"]))
    .action(async (target: string, opts) => {
      const [{ matchTarget, resolveTargets }, { planOnly }, { explain }] = await Promise.all([import("../pipeline/select.ts"), import("../runner/workspace.ts"), import("../pipeline/plan.ts")]);
      const ws = await openFor(cli, opts);
      const ids = matchTarget(ws.pipeline, target);
      const steps = await planOnly(ws, resolveTargets(ws.pipeline, [target]));
      const byId = new Map(steps.map((s) => [s.id, s]));
      if (opts.json) {
        cli.out(JSON.stringify({ schemaVersion: JSON_SCHEMA_VERSION, steps: ids.map((id) => byId.get(id)) }) + "\n");
        return;
      }
      for (const id of ids) for (const line of whyLines(explain, byId, id, 0, new Set())) cli.out(line + "\n");
    });
}

/** explain() of a step, then the chain of causes through upstream instances that will run. */
export function whyLines(
  explain: (step: PlanStep) => string[],
  byId: Map<string, PlanStep>,
  id: string,
  depth: number,
  seen: Set<string>,
): string[] {
  const step = byId.get(id);
  if (!step || seen.has(id)) return [];
  seen.add(id);
  const pad = "    ".repeat(depth);
  const lines = explain(step).map((l) => pad + l);
  for (const c of step.changes) {
    if (c.kind === "upstream") {
      const up = whyLines(explain, byId, c.id, depth + 1, seen);
      if (up.length) lines.push(`${pad}  because:`, ...up);
    }
  }
  return lines;
}

