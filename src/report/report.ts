// Assembles every file of the tables stage's output folder from parsed eval results: the reference
// CSVs, readable Markdown, SVG charts and (paper profile) the comparison with the published numbers.
// Pure: returns file name -> content; the stage writes them.
import { renderSvg, type BarChart } from "./charts.ts";
import { csvLine, pyRepr, pyRound } from "./format.ts";
import { PUBLISHED_SOURCE, publishedValue } from "./published.ts";
import { DEFAULT_ROUND, buildTable, cellValue, modelLabel, renderCsv, renderMarkdown, tableColumns, type DatasetInfo, type LongTable, type ResultLike } from "./tables.ts";
import { SCORE_NAMES } from "../ml/scores.ts";

/** Every per-sample score the eval stage reports an AUROC for (stages/eval.ts, src/ml/scores.ts). */
export const ALL_SCORES: readonly string[] = SCORE_NAMES;

export interface ReportInput {
  models: string[];
  datasets: DatasetInfo[];
  results: ResultLike[];
  published: boolean;
}

const txt = (v: number | null): string => (v === null ? "" : pyRepr(v));

function lookupOf(results: ResultLike[]) {
  const map = new Map(results.map((r) => [`${r.model}\u0000${r.dataset}`, r]));
  return (model: string, dataset: string) => map.get(`${model}\u0000${dataset}`);
}

export interface ComparisonRow {
  table: "ood_gen" | "ood_det";
  model: string;
  metric: string;
  column: string;
  ours: number | null;
  published: number;
  difference: number | null;
}

export function compareWithPublished(tables: LongTable[]): ComparisonRow[] {
  const rows: ComparisonRow[] = [];
  for (const t of tables) {
    for (const r of t.rows) {
      t.groups.forEach((g, gi) =>
        g.forEach((c, ci) => {
          const pub = publishedValue(t.kind, r.label, c.metric, c.name);
          if (pub === undefined) return;
          const ours = r.cells[gi][ci];
          rows.push({ table: t.kind, model: r.label, metric: c.metric, column: c.name, ours, published: pub, difference: ours === null ? null : pyRound(ours - pub, DEFAULT_ROUND) });
        }),
      );
    }
  }
  return rows;
}

function comparisonMarkdown(rows: ComparisonRow[]): string {
  if (rows.length === 0) return `# Comparison with the published numbers\n\nNo cell of these results has a published counterpart (models must be named like the reference's: 50_models, ood_gen, ood_det_cov, ood_det_sem).\n`;
  const lines = [
    "# Comparison with the published numbers",
    "",
    `Published: ${PUBLISHED_SOURCE}. Difference = ours - published (accuracies in percentage points).`,
    "",
    "| Table | Model | Metric | Column | Ours | Published | Difference |",
    "|---|---|---|---|--:|--:|--:|",
    ...rows.map((r) => `| ${r.table} | ${r.model} | ${r.metric} | ${r.column} | ${txt(r.ours)} | ${pyRepr(r.published)} | ${txt(r.difference)} |`),
  ];
  return lines.join("\n") + "\n";
}

function comparisonCsv(rows: ComparisonRow[]): string {
  return [csvLine(["table", "model", "metric", "column", "ours", "published", "difference"]), ...rows.map((r) => csvLine([r.table, r.model, r.metric, r.column, txt(r.ours), pyRepr(r.published), txt(r.difference)]))].join("\n") + "\n";
}

/** AUROC of every score (not only the two of the reference table), same cell arithmetic. */
function allScoresMarkdown(input: ReportInput, lookup: ReturnType<typeof lookupOf>): string {
  const cols = tableColumns("ood_det", input.datasets);
  const models = [...input.models].sort((a, b) => (modelLabel(a) < modelLabel(b) ? -1 : 1));
  const out = ["## OOD detection: AUROC of every score", "", "Directions as in the reference (§3.5): conf, max-logit and MI scores treat ID as the positive class.", ""];
  for (const col of cols) {
    out.push(`### ${col}`, "", `| Score | ${models.map(modelLabel).join(" | ")} |`, `|---|${models.map(() => "--:").join("|")}|`);
    for (const s of ALL_SCORES) out.push(`| ${s} | ${models.map((m) => txt(cellValue(lookup, "ood_det", m, col, s, 1, input.datasets))).join(" | ")} |`);
    out.push("");
  }
  return out.join("\n");
}

function charts(input: ReportInput, gen: LongTable, lookup: ReturnType<typeof lookupOf>): { accuracy: string; auroc: string } {
  const models = gen.rows.map((r) => r.model);
  const genCols = gen.groups[0]?.map((c) => c.name) ?? [];
  const series = (metric: string, mult: number, kind: "ood_gen" | "ood_det", cols: string[]) =>
    models.map((m) => ({ name: modelLabel(m), values: cols.map((col) => cellValue(lookup, kind, m, col, metric, mult, input.datasets)) }));
  const acc: BarChart[] = [
    { title: "Ensemble accuracy per dataset", yLabel: "accuracy (%)", groups: genCols, series: series("ensemble", 100, "ood_gen", genCols), yMin: 0, yMax: 100 },
    { title: "Mean predictive diversity score (PDS) per dataset", yLabel: "mean PDS", groups: genCols, series: series("div_continous_unique", 1, "ood_gen", genCols), yMin: 0 },
  ];
  const detCols = tableColumns("ood_det", input.datasets);
  const auroc: BarChart[] = detCols.map((col) => ({
    title: `OOD detection AUROC per score: ${col} vs in_val`,
    yLabel: "AUROC",
    groups: ALL_SCORES.map((s) => s.replace(/_per_sample$/, "")),
    series: models.map((m) => ({ name: modelLabel(m), values: ALL_SCORES.map((s) => cellValue(lookup, "ood_det", m, col, s, 1, input.datasets)) })),
    yMin: 0,
    yMax: 1,
    refLine: { value: 0.5, label: "chance" },
  }));
  return { accuracy: renderSvg(acc), auroc: renderSvg(auroc.length ? auroc : [{ title: "OOD detection AUROC: no OOD datasets in this profile", yLabel: "AUROC", groups: [], series: [], yMin: 0, yMax: 1 }]) };
}

/** Which runs the tables come from: samples, heads, backend, batch size, quirks mode per instance. */
function runsMarkdown(input: ReportInput, lookup: ReturnType<typeof lookupOf>): string {
  const out = ["# Eval runs behind these tables", "", "| Model | Dataset | Role | Samples | Heads | Batch | Backend | Reference quirks |", "|---|---|---|--:|--:|--:|---|---|"];
  for (const m of [...input.models].sort()) {
    for (const d of input.datasets) {
      const r = lookup(m, d.key);
      out.push(`| ${m} | ${d.key} | ${d.role} | ${r?.counts?.samples ?? ""} | ${r?.counts?.heads ?? ""} | ${r?.batch_size ?? ""} | ${r?.backend?.name ?? ""} | ${r?.reference_quirks ?? ""} |`);
    }
  }
  return out.join("\n") + "\n";
}

export function buildReport(input: ReportInput): Map<string, string> {
  const lookup = lookupOf(input.results);
  const gen = buildTable("ood_gen", input.models, input.datasets, lookup);
  const det = buildTable("ood_det", input.models, input.datasets, lookup);
  const files = new Map<string, string>();
  files.set("ood_gen_df.csv", renderCsv(gen));
  files.set("ood_det_df.csv", renderCsv(det));
  files.set("ood_gen_df.md", renderMarkdown(gen, "OOD generalization (ood_gen_df)"));
  files.set("ood_det_df.md", renderMarkdown(det, "OOD detection (ood_det_df)"));
  files.set("ood_det_all_scores.md", allScoresMarkdown(input, lookup));
  files.set("eval_runs.md", runsMarkdown(input, lookup));
  const c = charts(input, gen, lookup);
  files.set("ensemble_accuracy.svg", c.accuracy);
  files.set("ood_detection_auroc.svg", c.auroc);
  if (input.published) {
    const rows = compareWithPublished([gen, det]);
    files.set("published_comparison.md", comparisonMarkdown(rows));
    files.set("published_comparison.csv", comparisonCsv(rows));
  }
  return files;
}
