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
  labels: { min: number; max: number; distinct: number } | null;
}

export async function inspectFeatureFile(path: string): Promise<InspectReport> {
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
  };
  try {
    const r = await openFeatureFile(path);
    try {
      report.rows = r.rows;
      report.dim = r.dim;
      report.passRows = r.passRows;
      report.passes = r.passes;
      report.completeness = { ...r.completion, complete: r.complete };
      if (r.rows > 0) {
        const labels = r.labels();
        let min = Infinity;
        let max = -Infinity;
        const seen = new Set<number>();
        for (const v of labels) {
          if (v < min) min = v;
          if (v > max) max = v;
          seen.add(v);
        }
        report.labels = { min, max, distinct: seen.size };
      }
      report.usable = r.complete;
      if (!r.complete) report.problem = "incomplete (see completeness)";
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
  if (r.labels) lines.push(`labels: ${r.labels.min}..${r.labels.max}, ${r.labels.distinct} distinct`);
  return lines.join("\n");
}
