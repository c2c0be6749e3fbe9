// tables stage: reads every eval instance's result JSON from the eval folder and writes the result
// tables folder (reference CSVs, Markdown, SVG charts, published comparison). Owns reading and checking
// the input files (its params are checked by tables.contract.ts); table arithmetic and rendering
// live in src/report.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { parseParams, type StageContext, type StageModule } from "../src/stage-api.ts";
import { ConfigError, InputError } from "../src/errors.ts";
import { buildReport } from "../src/report/report.ts";
import { checkComplete, type DatasetInfo, type ResultLike } from "../src/report/tables.ts";
import { contract } from "./tables.contract.ts";

export { contract };

export async function readResults(evalDir: string, models: string[], datasets: DatasetInfo[]): Promise<ResultLike[]> {
  const results: ResultLike[] = [];
  for (const m of models) {
    for (const d of datasets) {
      const file = join(evalDir, m, `${d.key}.json`);
      let text: string;
      try {
        text = await readFile(file, "utf8");
      } catch {
        continue; // reported together by checkComplete
      }
      let r: ResultLike;
      try {
        r = JSON.parse(text);
      } catch (err) {
        throw new InputError(`${file}: not valid JSON (${(err as Error).message})`, { hint: `re-run eval for ${m}/${d.key}` });
      }
      if (r?.model !== m || r?.dataset !== d.key || typeof r.metrics !== "object") {
        throw new InputError(`${file}: is not the eval result of ${m}/${d.key}`, { hint: `re-run eval for ${m}/${d.key}` });
      }
      results.push(r);
    }
  }
  return results;
}

export async function run(ctx: StageContext): Promise<void> {
  const { models, datasets, tables } = parseParams(contract, ctx.params);
  if (!ctx.deps.eval) throw new ConfigError("tables: no `eval` dep (the artifacts/eval folder)");
  const names = models.map((m) => m.name);
  const results = await readResults(ctx.deps.eval, names, datasets);
  checkComplete(names, datasets, (m, d) => results.find((r) => r.model === m && r.dataset === d), ctx.deps.eval);
  const files = buildReport({ models: names, datasets, results, published: tables.published });
  await mkdir(ctx.outs.tables, { recursive: true });
  for (const [name, content] of files) await writeFile(join(ctx.outs.tables, name), content);
  ctx.log(`wrote ${[...files.keys()].join(", ")}`);
}

const stage: StageModule = { run, contract };
export default stage;
