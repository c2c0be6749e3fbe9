// Per-sample OOD scores of one (model, dataset) evaluation as HDF5: one float64 dataset per score name
// plus the labels, written by the eval stage and read back as the in-distribution reference by the
// other eval instances of the same model. Knows nothing about how the scores are computed.
import { mkdir, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { InputError } from "../errors.ts";
import { firstLine, loadH5, openH5Read, withFixedClock } from "./hdf5.ts";

export const SCORES_FORMAT = "sed-pipe-scores/1";

export interface ScoresFile {
  rows: number;
  scores: Record<string, Float64Array>;
  labels: Int32Array;
  /** String attributes (model, dataset, quirks, ...) as written. */
  attrs: Record<string, string>;
}

export async function writeScoresFile(
  path: string,
  data: { scores: Record<string, Float64Array>; labels: Int32Array; attrs?: Record<string, string> },
): Promise<void> {
  const rows = data.labels.length;
  for (const [name, v] of Object.entries(data.scores)) {
    if (v.length !== rows) throw new Error(`writeScoresFile(${path}): score "${name}" has ${v.length} rows, labels ${rows}`);
  }
  const h5 = await loadH5();
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.partial`;
  await rm(tmp, { force: true });
  // Same scores, same bytes (no HDF5 timestamps): a rerun that changes nothing cuts off downstream.
  withFixedClock(() => {
    const file = new h5.File(tmp, "w");
    try {
      file.create_attribute("format", SCORES_FORMAT);
      file.create_attribute("rows", String(rows));
      for (const [k, v] of Object.entries(data.attrs ?? {})) file.create_attribute(k, v);
      file.create_dataset({ name: "label", data: data.labels, shape: [rows], dtype: "<i" });
      const g = file.create_group("scores");
      for (const [name, v] of Object.entries(data.scores)) g.create_dataset({ name, data: v, shape: [rows], dtype: "<d" });
    } finally {
      file.close();
    }
  });
  await rename(tmp, path);
}

export async function readScoresFile(path: string, required: readonly string[] = []): Promise<ScoresFile> {
  const hint = "re-run the eval stage of the in_val dataset for this model to re-create it";
  const file = await openH5Read(path);
  try {
    const attrs: Record<string, string> = {};
    for (const [k, a] of Object.entries(file.attrs)) attrs[k] = String(a.value);
    if (attrs.format !== SCORES_FORMAT) {
      throw new InputError(`${path}: not a sed-pipe scores file (format attribute ${JSON.stringify(attrs.format)}, expected "${SCORES_FORMAT}")`, { hint });
    }
    const rows = Number(attrs.rows);
    const labelDs = file.get("label");
    const group = file.get("scores");
    if (!labelDs || !("value" in labelDs) || !group || !("keys" in group)) throw new InputError(`${path}: missing "label" or "scores"`, { hint });
    const labels = Int32Array.from(labelDs.value as ArrayLike<number>);
    if (labels.length !== rows) throw new InputError(`${path}: "label" has ${labels.length} rows, the file says ${rows}`, { hint });
    const scores: Record<string, Float64Array> = {};
    for (const name of group.keys()) {
      const ds = file.get(`scores/${name}`);
      if (!ds || !("value" in ds)) continue;
      const v = Float64Array.from(ds.value as ArrayLike<number>);
      if (v.length !== rows) throw new InputError(`${path}: score "${name}" has ${v.length} rows, expected ${rows}`, { hint });
      scores[name] = v;
    }
    const missing = required.filter((n) => !(n in scores));
    if (missing.length) throw new InputError(`${path}: lacks the score(s) ${missing.join(", ")}`, { hint });
    return { rows, scores, labels, attrs };
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`${path}: cannot read scores: ${firstLine(err)}`, { hint, cause: err });
  } finally {
    file.close();
  }
}
