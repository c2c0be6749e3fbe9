// `sed-pipe inspect FILE`: what a cached-feature HDF5 file holds and whether it is usable
// (datasets, shapes, dtypes, chunking, filters, passes, completeness, labels). Read-only.
import { SedPipeError } from "../errors.ts";
import { openFeatureFile } from "./feature-reader.ts";
import {
  checkHdf5Container,
  loadH5,
  numType,
  describeType,
  maxshapeOf,
  SUPPORTED_FILTERS,
  firstLine,
  type Dataset,
} from "./hdf5.ts";

export interface InspectDataset {
  /** Path inside the file, e.g. "embed" or "group/x". */
  name: string;
  shape: number[] | null;
  /** null entries = unlimited. */
  maxshape: (number | null)[] | null;
  dtype: string;
  /** Chunk shape, or null for contiguous storage. */
  chunks: number[] | null;
  filters: { id: number; name: string; supported: boolean }[];
}

export interface InspectReport {
  path: string;
  sizeBytes: number;
  superblockVersion: number;
  datasets: InspectDataset[];
  /** Root attributes, JSON-compatible values. */
  attributes: Record<string, unknown>;
  /** Whether the file is a usable feature file; `problem` says why not. */
  usable: boolean;
  problem: string | null;
  rows: number | null;
  dim: number | null;
  passRows: number | null;
  passes: number | null;
  completeness: {
    /** Reference rule: last embed row sums to non-zero. */
    referenceRule: boolean;
    /** Our completion marker: complete / incomplete / absent / row-count-mismatch. */
    marker: string;
    /** The verdict readers use. */
    complete: boolean;
  } | null;
  labels: {
    min: number;
    max: number;
    distinct: number;
    /** Labels below 0 (the reference's classes are 0..C-1), and the first row holding one. */
    negative: number;
    firstNegativeRow: number | null;
    /** The class count checked against (from the caller), labels >= it, and the first such row. */
    classes: number | null;
    aboveClasses: number | null;
    firstAboveRow: number | null;
  } | null;
  /** The embed values read and checked for NaN / +-Inf (all rows, or evenly spaced blocks). */
  embedCheck: {
    checkedRows: number;
    totalRows: number;
    /** How many blocks the checked rows came in (1 = every row, in order). */
    blocks: number;
    nonFinite: number;
    firstNonFiniteRow: number | null;
  } | null;
}

export interface InspectOptions {
  /** Number of classes, if known: labels must be below it. */
  classes?: number;
  /** Check at most this many rows of `embed` for non-finite values (evenly spaced blocks); default all. */
  checkRows?: number;
}

/** Blocks spread evenly over the rows (first and last included) covering about `want` rows. */
function sampleRanges(rows: number, want: number, blocks = 8): { start: number; end: number }[] {
  if (want >= rows) return [{ start: 0, end: rows }];
  const n = Math.max(1, Math.min(blocks, want));
  const size = Math.max(1, Math.floor(want / n));
  const out: { start: number; end: number }[] = [];
  for (let b = 0; b < n; b++) {
    const start = n === 1 ? rows - size : Math.round((b * (rows - size)) / (n - 1));
    const prev = out[out.length - 1];
    if (prev && start < prev.end) prev.end = Math.min(rows, start + size);
    else out.push({ start, end: Math.min(rows, start + size) });
  }
  return out;
}

type Reader = Awaited<ReturnType<typeof openFeatureFile>>;

/** Streams `embed` in blocks (memory: one ~8 MiB block) and counts NaN / +-Inf values. */
function checkEmbed(r: Reader, checkRows: number): NonNullable<InspectReport["embedCheck"]> {
  const ranges = sampleRanges(r.rows, checkRows);
  let checkedRows = 0;
  let nonFinite = 0;
  let firstNonFiniteRow: number | null = null;
  for (const range of ranges) {
    for (const b of r.sequential(4096, range)) {
      const e = b.embed;
      for (let i = 0; i < e.length; i++) {
        // x - x is 0 for finite x and NaN for NaN and +-Inf.
        if (e[i] - e[i] !== 0) {
          nonFinite++;
          const row = b.start + Math.floor(i / r.dim);
          if (firstNonFiniteRow === null || row < firstNonFiniteRow) firstNonFiniteRow = row;
        }
      }
      checkedRows += b.count;
    }
  }
  return { checkedRows, totalRows: r.rows, blocks: ranges.length, nonFinite, firstNonFiniteRow };
}

function checkLabels(labels: Int32Array, classes: number | null): NonNullable<InspectReport["labels"]> {
  let min = Infinity;
  let max = -Infinity;
  let negative = 0;
  let firstNegativeRow: number | null = null;
  let above = 0;
  let firstAboveRow: number | null = null;
  const seen = new Set<number>();
  for (let i = 0; i < labels.length; i++) {
    const v = labels[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    seen.add(v);
    if (v < 0) {
      negative++;
      firstNegativeRow ??= i;
    }
    if (classes !== null && v >= classes) {
      above++;
      firstAboveRow ??= i;
    }
  }
  return {
    min,
    max,
    distinct: seen.size,
    negative,
    firstNegativeRow,
    classes,
    aboveClasses: classes === null ? null : above,
    firstAboveRow,
  };
}

export async function inspectFeatureFile(path: string, opts: InspectOptions = {}): Promise<InspectReport> {
  const container = await checkHdf5Container(path);
  const h5 = await loadH5();
  let file;
  try {
    file = new h5.File(path, "r");
  } catch (err) {
    throw new SedPipeError(`${path}: HDF5 library cannot open the file: ${firstLine(err)}`, { cause: err });
  }
  const datasets: InspectDataset[] = [];
  const attributes: Record<string, unknown> = {};
  try {
    for (const [k, a] of Object.entries(file.attrs)) attributes[k] = a.json_value;
    for (const name of file.paths?.() ?? file.keys()) {
      const clean = name.replace(/^\//, "");
      if (!clean) continue;
      const ent = file.get(clean);
      if (!ent || !(ent instanceof h5.Dataset)) continue;
      const ds = ent as Dataset;
      datasets.push({
        name: clean,
        shape: ds.shape,
        maxshape: maxshapeOf(ds),
        dtype: describeType(numType(ds)),
        chunks: ds.metadata.chunks ?? null,
        filters: ds.filters.map((f) => ({ id: f.id, name: f.name, supported: SUPPORTED_FILTERS.has(f.id) })),
      });
    }
  } finally {
    file.close();
  }
  const report: InspectReport = {
    path,
    sizeBytes: container.size,
    superblockVersion: container.superblockVersion,
    datasets,
    attributes,
    usable: false,
    problem: null,
    rows: null,
    dim: null,
    passRows: null,
    passes: null,
    completeness: null,
    labels: null,
    embedCheck: null,
  };
  try {
    const r = await openFeatureFile(path);
    try {
      report.rows = r.rows;
      report.dim = r.dim;
      report.passRows = r.passRows;
      report.passes = r.passes;
      report.completeness = { ...r.completion, complete: r.complete };
      const problems: string[] = [];
      if (!r.complete) problems.push("incomplete (see completeness)");
      if (r.rows > 0) {
        const l = (report.labels = checkLabels(r.labels(), opts.classes ?? null));
        if (l.negative > 0) problems.push(`${l.negative} negative label${l.negative === 1 ? "" : "s"} (first at row ${l.firstNegativeRow})`);
        if (l.aboveClasses) problems.push(`${l.aboveClasses} label${l.aboveClasses === 1 ? "" : "s"} >= ${l.classes} classes (first at row ${l.firstAboveRow})`);
        const e = (report.embedCheck = checkEmbed(r, opts.checkRows ?? Infinity));
        if (e.nonFinite > 0) {
          problems.push(`embed holds ${e.nonFinite} non-finite value${e.nonFinite === 1 ? "" : "s"} (NaN or Inf; first at row ${e.firstNonFiniteRow})`);
        }
      }
      report.usable = problems.length === 0;
      report.problem = problems.length ? problems.join("; ") : null;
    } finally {
      r.close();
    }
  } catch (err) {
    if (!(err instanceof SedPipeError)) throw err;
    report.problem = err.message.startsWith(`${path}: `) ? err.message.slice(path.length + 2) : err.message;
  }
  return report;
}

function fmtShape(s: (number | null)[] | null): string {
  return s ? `(${s.map((d) => (d === null ? "None" : String(d))).join(", ")})` : "scalar";
}

export function formatInspect(r: InspectReport): string {
  const lines: string[] = [];
  lines.push(`${r.path}  ${(r.sizeBytes / 1e6).toFixed(1)} MB, HDF5 superblock v${r.superblockVersion}`);
  lines.push(r.usable ? "usable feature file" : `NOT usable: ${r.problem}`);
  lines.push("datasets:");
  if (r.datasets.length === 0) lines.push("  (none)");
  const w = Math.max(4, ...r.datasets.map((d) => d.name.length));
  for (const d of r.datasets) {
    const filters =
      d.filters.length === 0
        ? "no filters"
        : d.filters.map((f) => `${f.name || "?"}#${f.id}${f.supported ? "" : " (UNSUPPORTED)"}`).join("+");
    lines.push(
      `  ${d.name.padEnd(w)}  shape ${fmtShape(d.shape)}  max ${fmtShape(d.maxshape)}  ${d.dtype}  ` +
        `${d.chunks ? `chunks ${fmtShape(d.chunks)}` : "contiguous"}  ${filters}`,
    );
  }
  const attrs = Object.entries(r.attributes);
  if (attrs.length > 0) lines.push(`attributes: ${attrs.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", ")}`);
  if (r.rows !== null) {
    lines.push(`rows: ${r.rows} x ${r.dim}  passes: ${r.passes} x ${r.passRows} rows`);
  }
  if (r.completeness) {
    const c = r.completeness;
    lines.push(
      `complete: ${c.complete ? "yes" : "NO"}  (reference rule, last row non-zero: ${c.referenceRule ? "yes" : "no"}; ` +
        `sed-pipe marker: ${c.marker})`,
    );
  }
  if (r.labels) {
    const l = r.labels;
    let line = `labels: ${l.min}..${l.max}, ${l.distinct} distinct`;
    if (l.negative > 0) line += `, ${l.negative} NEGATIVE (first at row ${l.firstNegativeRow})`;
    if (l.classes !== null) line += l.aboveClasses ? `, ${l.aboveClasses} >= ${l.classes} classes (first at row ${l.firstAboveRow})` : `, all below ${l.classes} classes`;
    lines.push(line);
  }
  if (r.embedCheck) {
    const e = r.embedCheck;
    const scope =
      e.checkedRows === e.totalRows ? `all ${e.totalRows} rows checked` : `${e.checkedRows} of ${e.totalRows} rows checked, in ${e.blocks} evenly spaced blocks`;
    lines.push(
      e.nonFinite === 0
        ? `embed values: all finite (${scope})`
        : `embed values: ${e.nonFinite} NON-FINITE (NaN or Inf; first at row ${e.firstNonFiniteRow}) (${scope})`,
    );
  }
  return lines.join("\n");
}
