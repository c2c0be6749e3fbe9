import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, mkdir, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { buildTable, cellValue, renderCsv, type DatasetInfo, type ResultLike } from "../../../src/report/tables.ts";
import { buildReport, compareWithPublished } from "../../../src/report/report.ts";
import { OOD_DET_COLUMNS, OOD_GEN_COLUMNS, PUBLISHED_OOD_DET, PUBLISHED_OOD_GEN } from "../../../src/report/published.ts";
import { run } from "../../../stages/tables.ts";
import type { StageContext } from "../../../src/stage-api.ts";
import { InputError } from "../../../src/errors.ts";
import { TEST_SETTINGS } from "../../helpers/stage-context.ts";

const fixture = (p: string) => readFileSync(fileURLToPath(new URL(`../../fixtures/tables/${p}`, import.meta.url)), "utf8");
const ms = (v: number | null) => ({ mean: v, std: 0 });

/** Eval results that carry the published numbers (one covariate set per severity, so C-k = that set). */
function publishedAsResults(): { models: string[]; datasets: DatasetInfo[]; results: ResultLike[] } {
  const datasets: DatasetInfo[] = [
    { key: "in_val", role: "id" },
    { key: "imagenet_a", role: "subset" },
    { key: "imagenet_r", role: "subset" },
    { key: "Brightness_1", role: "covariate", corruption: "Brightness", severity: 1 },
    { key: "Brightness_5", role: "covariate", corruption: "Brightness", severity: 5 },
    { key: "iNaturalist", role: "semantic" },
    { key: "OpenImages", role: "semantic" },
  ];
  const colOf = (key: string) => (key.startsWith("Brightness_") ? `C-${key.slice(-1)}` : key);
  const results: ResultLike[] = [];
  const models = Object.keys(PUBLISHED_OOD_GEN).map((l) => l.slice(0, -1));
  for (const m of models) {
    for (const d of datasets) {
      const ci = (OOD_GEN_COLUMNS as readonly string[]).indexOf(colOf(d.key));
      const gen = PUBLISHED_OOD_GEN[`${m}_`];
      const metrics: ResultLike["metrics"] = {};
      for (const [metric, row] of Object.entries(gen)) metrics[metric] = ms(["div_different_preds", "div_continous_unique"].includes(metric) ? row[ci] : row[ci] / 100);
      const det = PUBLISHED_OOD_DET[`${m}_`][colOf(d.key) as (typeof OOD_DET_COLUMNS)[number]];
      results.push({ model: m, dataset: d.key, metrics, auroc: det ? { ensemble_conf: ms(det[0]), div_continous_unique_per_sample: ms(det[1]) } : null });
    }
  }
  return { models, datasets, results };
}

test("published numbers through our table code reproduce the reference CSVs byte for byte", () => {
  const { models, datasets, results } = publishedAsResults();
  const lookup = (m: string, d: string) => results.find((r) => r.model === m && r.dataset === d);
  // models passed in a scrambled order: rows must come out alphabetical
  const shuffled = [models[2], models[0], models[3], models[1]];
  assert.fixture(renderCsv(buildTable("ood_gen", shuffled, datasets, lookup)), fixture("reference/filled_ood_gen_df.csv"));
  assert.fixture(renderCsv(buildTable("ood_det", shuffled, datasets, lookup)), fixture("reference/filled_ood_det_df.csv"));
});

test("published comparison: zero difference on the published numbers, per-cell difference otherwise", () => {
  const { models, datasets, results } = publishedAsResults();
  const files = buildReport({ models, datasets, results, published: true });
  const csv = files.get("published_comparison.csv")!;
  const lines = csv.trim().split("\n");
  assert.is(lines.length, 1 + 4 * (5 * 7) + 4 * 8);
  for (const l of lines.slice(1)) assert.ok(l.endsWith(",0.0") || l.endsWith(",-0.0"), l);
  const r = results.find((x) => x.model === "ood_gen" && x.dataset === "in_val")!;
  r.metrics.ensemble = ms(0.86);
  const lookup = (m: string, d: string) => results.find((x) => x.model === m && x.dataset === d);
  const rows = compareWithPublished([buildTable("ood_gen", models, datasets, lookup)]);
  const cell = rows.find((x) => x.model === "ood_gen_" && x.metric === "ensemble" && x.column === "in_val")!;
  assert.is(cell.ours, 86);
  assert.is(cell.difference, 0.722);
});

// Small fixture: 2 models, in_val, two corruptions at severity 1 and 5, one semantic set.
function small(): { models: string[]; datasets: DatasetInfo[]; results: ResultLike[] } {
  const datasets: DatasetInfo[] = [
    { key: "in_val", role: "id" },
    { key: "Noise_1", role: "covariate", corruption: "Noise", severity: 1 },
    { key: "Blur_1", role: "covariate", corruption: "Blur", severity: 1 },
    { key: "Noise_5", role: "covariate", corruption: "Noise", severity: 5 },
    { key: "Blur_5", role: "covariate", corruption: "Blur", severity: 5 },
    { key: "iNaturalist", role: "semantic" },
  ];
  const acc: Record<string, number> = { in_val: 0.9, Noise_1: 0.5, Blur_1: 0.25, Noise_5: 0.1, Blur_5: 1 / 3, iNaturalist: 0.125 };
  const results: ResultLike[] = [];
  for (const [mi, m] of ["zeta", "alpha"].entries()) {
    for (const d of datasets) {
      const a = acc[d.key] - mi * 0.01;
      results.push({
        model: m,
        dataset: d.key,
        metrics: { ensemble: ms(a), best_single_model: ms(a - 0.05), soup: ms(d.key === "iNaturalist" ? null : a + 0.01), div_different_preds: ms(1 + a), div_continous_unique: ms(1.5 + a) },
        auroc: d.role === "id" ? null : { ensemble_conf: ms(0.6 + a / 10), div_continous_unique_per_sample: ms(0.7 + a / 10), a2d_score_per_sample: ms(0.55) },
      });
    }
  }
  return { models: ["zeta", "alpha"], datasets, results };
}

test("C-k aggregation: mean over the corruptions of that severity, rounded like the reference", () => {
  const { datasets, results } = small();
  const lookup = (m: string, d: string) => results.find((r) => r.model === m && r.dataset === d);
  assert.is(cellValue(lookup, "ood_gen", "zeta", "C-1", "ensemble", 100, datasets), 37.5);
  assert.is(cellValue(lookup, "ood_gen", "zeta", "C-5", "ensemble", 100, datasets), 21.666666666);
  assert.is(cellValue(lookup, "ood_det", "alpha", "C-1", "div_continous_unique_per_sample", 1, datasets), 0.7365);
  // a missing value in any merged set leaves the cell empty rather than averaging fewer sets
  assert.is(cellValue(lookup, "ood_gen", "zeta", "iNaturalist", "soup", 100, datasets), null);
});

test("small fixture: exact CSV and Markdown text (golden files)", () => {
  const { models, datasets, results } = small();
  const files = buildReport({ models, datasets, results, published: false });
  for (const f of ["ood_gen_df.csv", "ood_det_df.csv", "ood_gen_df.md", "ood_det_df.md"]) assert.fixture(files.get(f)!, fixture(`small/${f}`), f);
  assert.not.ok(files.has("published_comparison.md"));
  for (const f of ["ensemble_accuracy.svg", "ood_detection_auroc.svg"]) {
    const svg = files.get(f)!;
    assert.ok(svg.startsWith("<?xml") && svg.includes("<svg") && svg.trimEnd().endsWith("</svg>"), f);
    assert.ok(svg.includes("alpha_") && svg.includes("zeta_"), f);
  }
});

function ctx(dir: string, params: Record<string, unknown>): StageContext {
  return {
    instanceId: "tables", stage: "tables", root: dir, profile: "test", item: null, params,
    deps: { eval: join(dir, "eval") }, outs: { tables: join(dir, "out", "tables") }, scratch: join(dir, "scratch"),
    backend: "cpu", settings: TEST_SETTINGS, signal: new AbortController().signal, progress: () => {}, log: () => {},
  };
}

test("stage: writes the folder; a missing eval result is an error naming model/dataset", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sed-tables-"));
  try {
    const { models, datasets, results } = small();
    for (const r of results) {
      await mkdir(join(dir, "eval", r.model), { recursive: true });
      await writeFile(join(dir, "eval", r.model, `${r.dataset}.json`), JSON.stringify(r));
    }
    const params = { models: models.map((name) => ({ name })), datasets, tables: { published: true } };
    await run(ctx(dir, params));
    const out = (await readdir(join(dir, "out", "tables"))).sort();
    assert.equal(out, ["ensemble_accuracy.svg", "eval_runs.md", "ood_det_all_scores.md", "ood_det_df.csv", "ood_det_df.md", "ood_detection_auroc.svg", "ood_gen_df.csv", "ood_gen_df.md", "published_comparison.csv", "published_comparison.md"]);
    assert.is(await readFile(join(dir, "out", "tables", "ood_gen_df.csv"), "utf8"), fixture("small/ood_gen_df.csv"));
    await rm(join(dir, "eval", "alpha", "Blur_5.json"));
    await rm(join(dir, "out"), { recursive: true });
    try {
      await run(ctx(dir, params));
      assert.unreachable();
    } catch (e) {
      assert.instance(e, InputError);
      assert.match((e as Error).message, /missing eval results for 1 model\/dataset pair\(s\): alpha\/Blur_5/);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
