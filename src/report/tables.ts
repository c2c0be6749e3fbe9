// Builds the reference's two result tables (sed-reference.md §8.1; DU scripts/generate_result_tables.py)
// from per-instance eval results, and renders them as the reference's pandas CSV layout and as Markdown.
// Pure: takes parsed results, returns strings. Owns the C-1/C-5 aggregation and the cell arithmetic.
import { InputError } from "../errors.ts";
import { csvLine, npMean, npRound, pyRepr, pyRound } from "./format.ts";
import { OOD_DET_COLUMNS, OOD_DET_METRICS, OOD_GEN_COLUMNS, OOD_GEN_METRICS } from "./published.ts";

export const DEFAULT_ROUND = 9;

/** What tables need of one eval result (stages/eval.ts writes more). */
export interface ResultLike {
  model: string;
  dataset: string;
  metrics: Record<string, { mean: number | null; std: number }>;
  auroc: Record<string, { mean: number | null; std: number }> | null;
  /** Provenance (optional: only listed in eval_runs.md). */
  counts?: { samples?: number; heads?: number };
  backend?: { name?: string };
  reference_quirks?: boolean;
  batch_size?: number;
}

export interface DatasetInfo {
  key: string;
  role: "id" | "subset" | "covariate" | "semantic";
  corruption?: string;
  severity?: number;
}

export interface TableColumn {
  /** Header text (dataset column name). */
  name: string;
  /** Text of the "0" row: the metric, as the reference prints it. */
  metricLabel: string;
  metric: string;
  multiplier: number;
}

export interface LongTable {
  kind: "ood_gen" | "ood_det";
  groups: TableColumn[][];
  /** Reference row labels (`<model>_`), alphabetical, with cells[group][column]. */
  rows: { label: string; model: string; cells: (number | null)[][] }[];
}

/** The reference's row label of a model: its result-key prefix. */
export const modelLabel = (name: string): string => `${name}_`;

/**
 * Dataset columns of a table: the reference's columns that the profile has (C-k when any covariate
 * dataset has severity k), then any other dataset keys of the allowed roles, in profile order.
 */
export function tableColumns(kind: LongTable["kind"], datasets: DatasetInfo[]): string[] {
  const ref: readonly string[] = kind === "ood_gen" ? OOD_GEN_COLUMNS : OOD_DET_COLUMNS;
  const has = (col: string): boolean => {
    const c = /^C-(\d+)$/.exec(col);
    if (c) return datasets.some((d) => d.role === "covariate" && d.severity === Number(c[1]));
    return datasets.some((d) => d.key === col && d.role !== "covariate");
  };
  const cols = ref.filter(has);
  const extraRoles = kind === "ood_gen" ? ["id", "subset", "semantic"] : ["semantic"];
  for (const d of datasets) if (extraRoles.includes(d.role) && !ref.includes(d.key) && !cols.includes(d.key)) cols.push(d.key);
  return cols;
}

/** Datasets behind a column: C-k merges every covariate set of severity k, sorted by corruption name (the reference's order). */
export function columnDatasets(col: string, datasets: DatasetInfo[]): DatasetInfo[] {
  const c = /^C-(\d+)$/.exec(col);
  if (!c) return datasets.filter((d) => d.key === col && d.role !== "covariate");
  return datasets
    .filter((d) => d.role === "covariate" && d.severity === Number(c[1]))
    .sort((a, b) => ((a.corruption ?? a.key) < (b.corruption ?? b.key) ? -1 : (a.corruption ?? a.key) > (b.corruption ?? b.key) ? 1 : 0));
}

type Lookup = (model: string, dataset: string) => ResultLike | undefined;

function rawValue(r: ResultLike | undefined, metric: string, kind: LongTable["kind"]): number | null {
  if (!r) return null;
  const src = kind === "ood_gen" ? r.metrics : r.auroc;
  const v = src?.[metric]?.mean;
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

/**
 * One cell as the reference computes it: value * multiplier rounded to 9 decimals per dataset (Python
 * round); a C-k cell is the numpy mean of those rounded values, rounded again (numpy round, as the
 * mean is an np.float64); then abs (format_number).
 */
export function cellValue(lookup: Lookup, kind: LongTable["kind"], model: string, col: string, metric: string, multiplier: number, datasets: DatasetInfo[]): number | null {
  const ds = columnDatasets(col, datasets);
  if (ds.length === 0) return null;
  const vals: number[] = [];
  for (const d of ds) {
    const v = rawValue(lookup(model, d.key), metric, kind);
    if (v === null) return null;
    vals.push(pyRound(v * multiplier, DEFAULT_ROUND));
  }
  const merged = /^C-\d+$/.test(col) ? npRound(npMean(vals), DEFAULT_ROUND) : vals[0];
  return Math.abs(merged);
}

export function buildTable(kind: LongTable["kind"], models: string[], datasets: DatasetInfo[], lookup: Lookup): LongTable {
  const cols = tableColumns(kind, datasets);
  const groups: TableColumn[][] =
    kind === "ood_gen"
      ? OOD_GEN_METRICS.map((metric) => {
          const multiplier = ["best_single_model", "ensemble", "soup"].includes(metric) ? 100 : 1;
          const metricLabel = multiplier === 1 ? metric : `('${metric}', ${multiplier})`;
          return cols.map((name) => ({ name, metric, multiplier, metricLabel }));
        })
      : cols.map((name) => OOD_DET_METRICS.map((metric) => ({ name, metric, multiplier: 1, metricLabel: metric })));
  const sorted = [...models].sort((a, b) => (modelLabel(a) < modelLabel(b) ? -1 : modelLabel(a) > modelLabel(b) ? 1 : 0));
  return {
    kind,
    groups,
    rows: sorted.map((model) => ({
      label: modelLabel(model),
      model,
      cells: groups.map((g) => g.map((c) => cellValue(lookup, kind, model, c.name, c.metric, c.multiplier, datasets))),
    })),
  };
}

const cellText = (v: number | null): string => (v === null ? "" : pyRepr(v));

/**
 * The pandas.concat layout of the reference CSV: an index column, then for each group an empty spacer
 * column named 0, 1, 2, ... followed by the group's columns; row "0" holds each column's metric name.
 */
export function renderCsv(t: LongTable): string {
  const lines = [
    csvLine(["", ...t.groups.flatMap((g, i) => [String(i), ...g.map((c) => c.name)])]),
    csvLine(["0", ...t.groups.flatMap((g) => ["", ...g.map((c) => c.metricLabel)])]),
    ...t.rows.map((r) => csvLine([r.label, ...r.cells.flatMap((g) => ["", ...g.map(cellText)])])),
  ];
  return lines.join("\n") + "\n";
}

const mdEscape = (s: string): string => s.replace(/\|/g, "\\|");

function mdTable(header: string[], rows: string[][]): string {
  return [
    `| ${header.map(mdEscape).join(" | ")} |`,
    `|${header.map((_, i) => (i < 2 ? "---" : "--:")).join("|")}|`,
    ...rows.map((r) => `| ${r.map(mdEscape).join(" | ")} |`),
  ].join("\n");
}

const SHORT: Record<string, string> = { div_continous_unique_per_sample: "PDS", ensemble_conf: "ensemble_conf" };

/** Readable version: ood_gen as Model | Metric | columns; ood_det as Model | <column> <score> ... */
export function renderMarkdown(t: LongTable, title: string): string {
  if (t.kind === "ood_gen") {
    const cols = t.groups[0]?.map((c) => c.name) ?? [];
    const rows: string[][] = [];
    for (const r of t.rows) t.groups.forEach((g, gi) => rows.push([r.label, g[0]?.metric ?? "", ...r.cells[gi].map(cellText)]));
    return `## ${title}\n\nAccuracies in %, diversity statistics as computed (reference §3.4).\n\n${mdTable(["Model", "Metric", ...cols], rows)}\n`;
  }
  const header = ["Model", ...t.groups.flatMap((g) => g.map((c) => `${c.name} ${SHORT[c.metric] ?? c.metric}`))];
  const rows = t.rows.map((r) => [r.label, ...r.cells.flatMap((g) => g.map(cellText))]);
  return `## ${title}\n\nAUROC against in_val (PDS = div_continous_unique_per_sample).\n\n${mdTable(header, rows)}\n`;
}

/** Clear error listing every (model, dataset) pair whose eval result is missing. */
export function checkComplete(models: string[], datasets: DatasetInfo[], lookup: Lookup, where: string): void {
  const missing: string[] = [];
  for (const m of models) for (const d of datasets) if (!lookup(m, d.key)) missing.push(`${m}/${d.key}`);
  if (missing.length) {
    throw new InputError(`${where}: missing eval results for ${missing.length} model/dataset pair(s): ${missing.slice(0, 10).join(", ")}${missing.length > 10 ? ", ..." : ""}`, {
      hint: "run the eval stage for these instances first (sed-pipe run eval)",
    });
  }
}
