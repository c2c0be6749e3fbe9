// `sed-pipe invalidate`, `dag`, `name` and `logs`: small commands over the workspace's graph, lock
// and logs.
import { readFile } from "node:fs/promises";
import { relative } from "node:path";
import { Option, type Command } from "commander";
import type { CliContext } from "./context.ts";
import { EXIT, SedPipeError } from "../errors.ts";
import type { Pipeline } from "../pipeline/types.ts";
import { EXAMPLES, failIfBusy, intOption, openFor, takeRunLock } from "./common.ts";

function stageEdges(p: Pipeline): Map<string, Set<string>> {
  const ups = new Map<string, Set<string>>([...p.stages.keys()].map((s) => [s, new Set<string>()]));
  p.graph.forEachEdge((_e, _attr, src, dst) => {
    const a = p.instances.get(src)!.stage;
    const b = p.instances.get(dst)!.stage;
    if (a !== b) ups.get(b)!.add(a);
  });
  return ups;
}

export function registerMaintenanceCommands(program: Command, cli: CliContext): void {
  program
    .command("invalidate")
    .description("forget lock entries and cached runs so these instances rerun; cache objects are never deleted")
    .argument("<stage>", "a stage or instance (unique prefixes work)")
    .option("-d, --downstream", "also invalidate everything downstream of it")
    .option("-p, --profile <name>", "params profile")
    .option("--no-wait", "fail at once if a run holds the workspace")
    .addHelpText("after", EXAMPLES(["sed-pipe invalidate train-heads", "sed-pipe invalidate cache-features@in_val --downstream"]))
    .action(async (stage: string, opts) => {
      if (opts.wait === false) await failIfBusy(cli);
      const [{ matchTarget, downstreamOf }, { LockStore: LockStoreClass }] = await Promise.all([import("../pipeline/select.ts"), import("../store/lock-file.ts")]);
      const ws = await openFor(cli, opts);
      let ids = matchTarget(ws.pipeline, stage);
      if (opts.downstream) ids = downstreamOf(ws.pipeline, ids);
      const lock = await takeRunLock(cli, ws.cacheDir, opts.wait !== false, "invalidate");
      try {
        const ls = await LockStoreClass.open(ws.root);
        let removed = 0;
        for (const id of ids) {
          const entry = ls.entry(id);
          if (!entry) continue;
          // The run cache would hand the same outputs back: forget that run too (its objects stay for gc).
          await ws.store.removeRun(entry.fingerprint);
          await ls.set(id, undefined);
          removed++;
          cli.out(`invalidated ${id}\n`);
        }
        cli.out(
          `${removed} lock entr${removed === 1 ? "y" : "ies"} removed (${ids.length - removed} had none); ` +
            "their runs are dropped from the run cache, so they rerun; cache objects are kept (`sed-pipe gc` frees them)\n",
        );
      } finally {
        await lock.release();
      }
    });

  program
    .command("dag")
    .description("print the stage graph (or every instance with --instances)")
    .option("--mermaid", "print a Mermaid flowchart")
    .option("--instances", "one node per instance instead of per stage")
    .option("-p, --profile <name>", "params profile")
    .addHelpText("after", EXAMPLES(["sed-pipe dag", "sed-pipe dag --mermaid > dag.mmd"]))
    .action(async (opts) => {
      const o: { profile?: string } = {};
      if (opts.profile !== undefined) o.profile = opts.profile;
      const ws = await openFor(cli, o);
      const p = ws.pipeline;
      const nodes: Array<{ id: string; label: string; ups: string[] }> = [];
      if (opts.instances) {
        for (const id of p.instances.keys()) nodes.push({ id, label: id, ups: p.graph.inNeighbors(id).sort() });
      } else {
        const ups = stageEdges(p);
        for (const [name, decl] of p.stages) {
          const n = decl.instanceIds.length;
          nodes.push({ id: name, label: n > 1 ? `${name} (${n} instances)` : name, ups: [...ups.get(name)!].sort() });
        }
      }
      if (opts.mermaid) {
        const key = new Map(nodes.map((n, i) => [n.id, `n${i}`]));
        cli.out("flowchart TD\n");
        for (const n of nodes) cli.out(`  ${key.get(n.id)}["${n.label.replace(/"/g, "#quot;")}"]\n`);
        for (const n of nodes) for (const u of n.ups) cli.out(`  ${key.get(u)} --> ${key.get(n.id)}\n`);
      } else {
        for (const n of nodes) cli.out(`${n.label}${n.ups.length ? `  <- ${n.ups.join(", ")}` : ""}\n`);
      }
    });

  program
    .command("name")
    .description("print the reference implementation's cached-feature file name for a dataset and model")
    .requiredOption("--dataset <key>", "dataset key, e.g. \"Gaussian Noise_1\"")
    .requiredOption("--model-path <path>", "the model path exactly as the reference saw it (absolute, normalised)")
    .option("--model-name <name>", "model name", "deit3_21k")
    .addOption(new Option("--epochs <n>", "feature epochs").default(1).argParser(intOption("--epochs", 1)))
    .addOption(new Option("--samples <n>", "samples").default(50000).argParser(intOption("--samples", 1)))
    .addHelpText("after", EXAMPLES(['sed-pipe name --dataset "Brightness_1" --model-path /models/deit3_21k.pth']))
    .action(async (opts) => {
      const { referenceFeatureFileName } = await import("../hash/reference-name.ts");
      cli.out(
        referenceFeatureFileName({
          modelPath: opts.modelPath,
          modelName: opts.modelName,
          datasetKey: opts.dataset,
          epochs: opts.epochs,
          samples: opts.samples,
        }) + "\n",
      );
    });

  program
    .command("logs")
    .description("print the log of an instance's last run")
    .argument("<instance>", "an instance (unique prefixes work)")
    .option("-p, --profile <name>", "params profile")
    .addHelpText("after", EXAMPLES(["sed-pipe logs train-heads@ood_gen"]))
    .action(async (target: string, opts) => {
      const o: { profile?: string } = {};
      if (opts.profile !== undefined) o.profile = opts.profile;
      const [{ matchTarget }, { logPathFor }] = await Promise.all([import("../pipeline/select.ts"), import("../runner/execute.ts")]);
      const ws = await openFor(cli, o);
      const ids = matchTarget(ws.pipeline, target);
      if (ids.length !== 1) {
        throw new SedPipeError(`"${target}" names ${ids.length} instances: ${ids.slice(0, 5).join(", ")}${ids.length > 5 ? ", ..." : ""}`, {
          hint: "logs shows one instance: give its full id, e.g. " + ids[0],
        });
      }
      const path = logPathFor(ws.cacheDir, ids[0]!);
      let text: string;
      try {
        text = await readFile(path, "utf8");
      } catch {
        throw new SedPipeError(`no log for ${ids[0]} yet (${relative(cli.cwd, path)})`, {
          hint: "it has not run in this workspace; logs keep the last run of each instance",
          exitCode: EXIT.usage,
        });
      }
      cli.out(text);
    });
}

