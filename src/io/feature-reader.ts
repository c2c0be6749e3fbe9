// Opens and validates cached-feature HDF5 files: completeness, passes, sequential and shuffled
// batches. Never loads a whole pass into memory, never writes; knows no stages, models or tfjs.
import { InputError, SedPipeError } from "../errors.ts";
import type { Rng } from "../rng.ts";
import { closeQuietly, describeType, firstLine, numType, openH5Read, unsupportedFilters, type Dataset, type H5File } from "./hdf5.ts";
import { ATTR_COMPLETE, ATTR_FORMAT, ATTR_ROWS, FEATURE_DATASETS } from "./feature-layout.ts";

export interface FeatureBatch {
  /** count*dim values, row-major. */
  embed: Float32Array;
  label: Int32Array;
  index: Int32Array;
  count: number;
  /** File row of the first row for sequential batches; for shuffled batches the first row of the pass. */
  start: number;
}

export interface FeatureReader {
  readonly path: string;
  readonly rows: number;
  readonly dim: number;
  /** Rows per pass (N): derived from `index`, which restarts at 0 at every pass. */
  readonly passRows: number;
  /** Number of passes (E); rows = passes * passRows for a complete file. */
  readonly passes: number;
  /** Complete by our marker (files we wrote) or by the reference rule (other files). */
  readonly complete: boolean;
  readonly completion: Completion;
  /** Chunk rows of `embed` (null for contiguous storage). */
  readonly chunkRows: number | null;
  /**
   * Rows [range.start, range.end) (default: all) in file order, in batches of `batchSize` (the
   * last one may be smaller). Batches are views into ~8 MiB read blocks: keeping a batch keeps
   * its block alive, so copy what you keep across iterations.
   */
  sequential(batchSize: number, range?: { start: number; end: number }): Iterable<FeatureBatch>;
  /**
   * One pass (`pass mod passes`) in a seeded, memory-bounded random order:
   * 1. the pass is cut into contiguous blocks of `blockRows` rows (last block shorter);
   * 2. the block order is a Fisher-Yates permutation drawn from `rng`;
   * 3. consecutive blocks of that order are grouped into windows of `windowRows / blockRows`
   *    blocks; each window is read (one contiguous read per block) and its rows, together with
   *    the fewer-than-`batchSize` rows left over from the previous window, are permuted by `rng`;
   * 4. full batches are cut from the permuted window; the leftover rows carry into the next window.
   * Every row of the pass appears exactly once; all batches are full except possibly the last.
   * Rows from blocks in different windows never share a batch (unless carried over), so this is
   * a block-local shuffle, not a uniform permutation of the pass: with the defaults one window
   * covers ~87k of 768-wide rows. Memory: about two windows of rows. Same rng state, same order.
   * Batches are fresh arrays.
   */
  shuffled(opts: ShuffleOptions): Iterable<FeatureBatch>;
  /** All labels (rows), read in 1M-row pieces. */
  labels(): Int32Array;
  close(): void;
}

export interface ShuffleOptions {
  /** Training epoch; the pass read is `pass mod passes` (the reference wraps the same way). */
  pass: number;
  batchSize: number;
  rng: Rng;
  /** Rows per contiguous block read (default: a multiple of the chunk rows, >= 1024). */
  blockRows?: number;
  /** Rows held in memory for shuffling at once (default: about 256 MiB of features, >= 4 blocks). */
  windowRows?: number;
}

export interface Completion {
  /** Reference rule: at least one row and the last row of `embed` sums to non-zero. */
  referenceRule: boolean;
  /** Our rule: "complete" when finish() wrote its attributes and the row count matches. */
  marker: "complete" | "incomplete" | "absent" | "row-count-mismatch";
}

export async function openFeatureFile(
  path: string,
  opts: { dim?: number; requireComplete?: boolean } = {},
): Promise<FeatureReader> {
  const file = await openH5Read(path);
  try {
    return new H5FeatureReader(file, path, opts);
  } catch (err) {
    closeQuietly(file);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Validation

/** Converts whatever numeric typed array h5wasm returned into row values. */
function toNumbers(data: unknown, path: string, name: string): ArrayLike<number> {
  if (data instanceof Float32Array || data instanceof Float64Array) return data;
  if (ArrayBuffer.isView(data) && !(data instanceof DataView)) {
    if (data instanceof BigInt64Array || data instanceof BigUint64Array) return Float64Array.from(data, Number);
    return data as unknown as ArrayLike<number>;
  }
  throw new InputError(`${path}: dataset "${name}" did not read back as numbers`);
}

function toInt32(values: ArrayLike<number>, path: string, name: string, firstRow: number): Int32Array {
  const out = new Int32Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) {
      throw new InputError(`${path}: "${name}" row ${firstRow + i} holds ${v}, not an integer`, {
        hint: "labels and indices are whole numbers stored as float32; the file is corrupt or not a feature file",
      });
    }
    out[i] = v;
  }
  return out;
}

interface OpenedDatasets {
  embed: Dataset;
  label: Dataset;
  index: Dataset;
  rows: number;
  dim: number;
}

/** The three datasets, present, decodable and of the layout's shapes and types. */
function validateDatasets(file: H5File, path: string, wantDim: number | undefined): OpenedDatasets {
  const keys = new Set(file.keys());
  const got: Partial<Record<(typeof FEATURE_DATASETS)[number], Dataset>> = {};
  for (const name of FEATURE_DATASETS) {
    if (!keys.has(name)) {
      throw new InputError(`${path}: missing dataset "${name}" (found: ${[...keys].join(", ") || "nothing"})`, {
        hint: "a feature file holds root datasets embed, label and index",
      });
    }
    const ds = file.get(name);
    if (!ds || !(ds instanceof Object) || !("shape" in ds) || (ds as Dataset).shape === undefined) {
      throw new InputError(`${path}: "${name}" is not a dataset`);
    }
    got[name] = ds as Dataset;
  }
  const embed = got.embed!;
  const label = got.label!;
  const index = got.index!;
  for (const [name, ds] of [["embed", embed], ["label", label], ["index", index]] as const) {
    const bad = unsupportedFilters(ds);
    if (bad.length > 0) {
      throw new InputError(
        `${path}: dataset "${name}" uses the HDF5 filter ${bad.map((f) => `${f.name || "unknown"} (id ${f.id})`).join(", ")}, which this reader cannot decode`,
        { hint: "rewrite the file without compression or with gzip, e.g. with h5py: f.create_dataset(..., compression='gzip')" },
      );
    }
  }
  const { rows, dim } = checkEmbed(embed, path, wantDim);
  for (const [name, ds] of [["label", label], ["index", index]] as const) checkColumn(ds, name, rows, path);
  return { embed, label, index, rows, dim };
}

/** `embed` is rows x dim little-endian float32, of the wanted width when one is given. */
function checkEmbed(embed: Dataset, path: string, wantDim: number | undefined): { rows: number; dim: number } {
  const eshape = embed.shape;
  if (!eshape || eshape.length !== 2) {
    throw new InputError(`${path}: "embed" must be 2-D (rows x dim), found shape ${JSON.stringify(eshape)}`);
  }
  const et = numType(embed);
  if (!et || et.kind !== "float" || et.bytes !== 4 || !et.littleEndian) {
    throw new InputError(`${path}: "embed" must be little-endian float32, found ${describeType(et)}`);
  }
  const [rows, dim] = eshape;
  if (wantDim !== undefined && dim !== wantDim) {
    throw new InputError(`${path}: "embed" has width ${dim}, expected ${wantDim}`, {
      hint: "the file was cached with a different featurizer; re-run cache-features",
    });
  }
  return { rows, dim };
}

/** `label` / `index`: one little-endian number per row of `embed`. */
function checkColumn(ds: Dataset, name: string, rows: number, path: string): void {
  const s = ds.shape;
  if (!s || !(s.length === 1 || (s.length === 2 && s[1] === 1))) {
    throw new InputError(`${path}: "${name}" must have shape (N, 1) or (N,), found ${JSON.stringify(s)}`);
  }
  const t = numType(ds);
  if (!t || (t.bytes > 1 && !t.littleEndian)) {
    throw new InputError(`${path}: "${name}" must be a little-endian number type, found ${describeType(t)}`);
  }
  if (s[0] !== rows) {
    throw new InputError(`${path}: "${name}" has ${s[0]} rows but "embed" has ${rows}`, {
      hint: "the file was written incompletely or by a broken writer; re-create it",
    });
  }
}

function rowSlice(ds: Dataset, start: number, end: number, path: string, name: string): unknown {
  try {
    return ds.slice([[start, end]]);
  } catch (err) {
    throw new InputError(`${path}: reading "${name}" rows ${start}..${end} failed: ${firstLine(err)}`, { cause: err });
  }
}

function readAttrNumber(file: H5File, name: string): number | undefined {
  const a = file.attrs[name];
  if (!a) return undefined;
  const v = a.value;
  if (typeof v === "number") return v;
  if (typeof v === "bigint") return Number(v);
  if (ArrayBuffer.isView(v) && (v as unknown as ArrayLike<number>).length === 1) return Number((v as unknown as ArrayLike<number>)[0]);
  return undefined;
}

/** Completeness by both rules: the reference's (last embed row non-zero) and our marker. */
function completionOf(file: H5File, ds: OpenedDatasets, path: string): Completion {
  let referenceRule = false;
  if (ds.rows > 0) {
    const last = toNumbers(rowSlice(ds.embed, ds.rows - 1, ds.rows, path, "embed"), path, "embed");
    let sum = 0;
    for (let i = 0; i < last.length; i++) sum += last[i];
    referenceRule = sum !== 0;
  }
  let marker: Completion["marker"] = "absent";
  const attrNames = new Set(Object.keys(file.attrs));
  if (attrNames.has(ATTR_FORMAT)) {
    const done = readAttrNumber(file, ATTR_COMPLETE);
    const markedRows = readAttrNumber(file, ATTR_ROWS);
    if (done !== 1 || markedRows === undefined) marker = "incomplete";
    else marker = markedRows === ds.rows ? "complete" : "row-count-mismatch";
  }
  return { referenceRule, marker };
}

function incompleteError(file: H5File, path: string, rows: number, marker: Completion["marker"]): InputError {
  const why =
    marker === "absent"
      ? rows === 0
        ? "it has no rows"
        : "its last embed row is all zeros (the reference writer's sign of an interrupted run)"
      : marker === "row-count-mismatch"
        ? `its completion marker records ${readAttrNumber(file, ATTR_ROWS)} rows but it holds ${rows}`
        : "its writer never finished (no completion marker)";
  return new InputError(`${path}: incomplete feature file: ${why}`, {
    hint: "delete it and re-run the stage that caches these features",
  });
}

/**
 * Rows per pass and passes: `index` restarts at 0 at the start of every pass. Scans for the first
 * restart, then checks the restart points of the other passes of a complete file (one row each).
 */
function passLayout(index: Dataset, rows: number, complete: boolean, path: string): { passRows: number; passes: number } {
  let passRows = rows;
  const scanBlock = 1 << 20;
  scan: for (let s = 0; s < rows; s += scanBlock) {
    const e = Math.min(rows, s + scanBlock);
    const vals = toNumbers(rowSlice(index, s, e, path, "index"), path, "index");
    for (let i = s === 0 ? 1 : 0; i < vals.length; i++) {
      if (vals[i] === 0) {
        passRows = s + i;
        break scan;
      }
    }
  }
  let passes = rows === 0 ? 0 : Math.floor(rows / passRows);
  if (complete && rows > 0) {
    if (rows % passRows !== 0) {
      throw new InputError(
        `${path}: "index" restarts at row ${passRows}, but ${rows} rows is not a whole number of passes of ${passRows}`,
        { hint: "each pass must hold the same rows with index 0..N-1" },
      );
    }
    for (let p = 1; p < passes; p++) {
      const v = toNumbers(rowSlice(index, p * passRows, p * passRows + 1, path, "index"), path, "index")[0];
      if (v !== 0) {
        throw new InputError(`${path}: pass ${p} (row ${p * passRows}) starts with index ${v}, expected 0`, {
          hint: "each pass must hold the same rows with index 0..N-1",
        });
      }
    }
  } else if (rows > 0 && passes === 0) {
    passes = 1;
  }
  return { passRows, passes };
}

// ---------------------------------------------------------------------------------------------
// Reader

type Rows = { embed: Float32Array; label: Int32Array; index: Int32Array };

class H5FeatureReader implements FeatureReader {
  readonly rows: number;
  readonly dim: number;
  readonly passRows: number;
  readonly passes: number;
  readonly complete: boolean;
  readonly completion: Completion;
  readonly chunkRows: number | null;
  private readonly ds: OpenedDatasets;
  private closed = false;

  constructor(private readonly file: H5File, readonly path: string, opts: { dim?: number; requireComplete?: boolean }) {
    this.ds = validateDatasets(file, path, opts.dim);
    this.rows = this.ds.rows;
    this.dim = this.ds.dim;
    this.completion = completionOf(file, this.ds, path);
    const { marker, referenceRule } = this.completion;
    this.complete = marker === "absent" ? referenceRule : marker === "complete";
    if (opts.requireComplete && !this.complete) throw incompleteError(file, path, this.rows, marker);
    const chunks = this.ds.embed.metadata.chunks;
    this.chunkRows = chunks && chunks.length === 2 ? chunks[0] : null;
    ({ passRows: this.passRows, passes: this.passes } = passLayout(this.ds.index, this.rows, this.complete, path));
  }

  *sequential(batchSize: number, range?: { start: number; end: number }): Generator<FeatureBatch> {
    this.ensureOpen();
    const { path, rows, dim } = this;
    if (!Number.isInteger(batchSize) || batchSize <= 0) throw new SedPipeError(`sequential: bad batch size ${batchSize}`);
    const start = range?.start ?? 0;
    const end = range?.end ?? rows;
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > rows || start > end) {
      throw new SedPipeError(`${path}: bad row range ${start}..${end} (file has ${rows} rows)`);
    }
    // Reads of a few MiB cut into batches: small batches do not become many small HDF5 reads, and
    // the block stays cache-sized (32 MiB slices measured slower). Blocks are whole batches, so
    // batch boundaries follow the range start.
    const blockRows = batchSize * Math.max(1, Math.floor(Math.floor((8 << 20) / (4 * dim)) / batchSize));
    for (let pos = start; pos < end; pos += blockRows) {
      this.ensureOpen();
      const blockEnd = Math.min(end, pos + blockRows);
      const block = this.readBlock(pos, blockEnd);
      const n = blockEnd - pos;
      for (let off = 0; off < n; off += batchSize) {
        const take = Math.min(batchSize, n - off);
        yield {
          embed: block.embed.subarray(off * dim, (off + take) * dim),
          label: block.label.subarray(off, off + take),
          index: block.index.subarray(off, off + take),
          count: take,
          start: pos + off,
        };
      }
    }
  }

  *shuffled(o: ShuffleOptions): Generator<FeatureBatch> {
    this.ensureOpen();
    const { dim, passes, passRows } = this;
    const { batchSize, rng } = o;
    if (!Number.isInteger(batchSize) || batchSize <= 0) throw new SedPipeError(`shuffled: bad batch size ${batchSize}`);
    if (!Number.isInteger(o.pass) || o.pass < 0) throw new SedPipeError(`shuffled: bad pass ${o.pass}`);
    if (passes === 0) return;
    const passStart = (o.pass % passes) * passRows;
    const blockRows = o.blockRows ?? this.alignedRows(1024);
    if (!Number.isInteger(blockRows) || blockRows <= 0) throw new SedPipeError(`shuffled: bad blockRows ${blockRows}`);
    const windowRows = Math.max(blockRows, o.windowRows ?? Math.max(4 * blockRows, Math.floor((256 << 20) / (4 * dim))));
    const blocksPerWindow = Math.max(1, Math.floor(windowRows / blockRows));
    const nBlocks = Math.ceil(passRows / blockRows);
    const order = new Int32Array(nBlocks);
    for (let i = 0; i < nBlocks; i++) order[i] = i;
    rng.shuffle(order);

    let carry: Rows = { embed: new Float32Array(0), label: new Int32Array(0), index: new Int32Array(0) };
    for (let w = 0; w < nBlocks; w += blocksPerWindow) {
      this.ensureOpen();
      const parts: Rows[] = [carry];
      for (const b of order.subarray(w, Math.min(nBlocks, w + blocksPerWindow))) {
        const s = passStart + b * blockRows;
        parts.push(this.readBlock(s, Math.min(passStart + passRows, s + blockRows)));
      }
      const window = permutedWindow(parts, dim, rng);
      const last = w + blocksPerWindow >= nBlocks;
      let off = 0;
      while (window.total - off >= batchSize || (last && off < window.total)) {
        const take = Math.min(batchSize, window.total - off);
        yield { ...window.gather(off, take), count: take, start: passStart };
        off += take;
      }
      carry = window.gather(off, window.total - off);
    }
  }

  labels(): Int32Array {
    this.ensureOpen();
    const { path, rows } = this;
    const out = new Int32Array(rows);
    const step = 1 << 20;
    for (let s = 0; s < rows; s += step) {
      const e = Math.min(rows, s + step);
      out.set(toInt32(toNumbers(rowSlice(this.ds.label, s, e, path, "label"), path, "label"), path, "label", s), s);
    }
    return out;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closeQuietly(this.file);
  }

  private ensureOpen(): void {
    if (this.closed) throw new SedPipeError(`${this.path}: feature file used after close()`);
  }

  private readBlock(start: number, end: number): Rows {
    const { path, ds } = this;
    const e = rowSlice(ds.embed, start, end, path, "embed");
    if (!(e instanceof Float32Array) || e.length !== (end - start) * this.dim) {
      throw new InputError(`${path}: "embed" rows ${start}..${end} read back with the wrong size`);
    }
    const l = toInt32(toNumbers(rowSlice(ds.label, start, end, path, "label"), path, "label"), path, "label", start);
    const x = toInt32(toNumbers(rowSlice(ds.index, start, end, path, "index"), path, "index"), path, "index", start);
    return { embed: e, label: l, index: x };
  }

  /**
   * Shuffled reads use blocks aligned to the chunk rows: a block then touches whole chunks only
   * (the reference's h5py chunks span few columns, so a misaligned block reads many chunks twice).
   */
  private alignedRows(minRows: number): number {
    const c = this.chunkRows ?? 1;
    return Math.max(c, Math.ceil(minRows / c) * c);
  }
}

/**
 * A shuffle window gathered straight from the parts as read (no window-sized copy): window row r is
 * row rowIdx[r] of part rowPart[r], parts = [carry, block, block, ...]. Row order in the window
 * (carry first, then blocks in the shuffled order) is what the permutation drawn from rng acts on.
 */
function permutedWindow(parts: Rows[], dim: number, rng: Rng): { total: number; gather(from: number, take: number): Rows } {
  let total = 0;
  for (const part of parts) total += part.label.length;
  const rowPart = new Int32Array(total);
  const rowIdx = new Int32Array(total);
  for (let q = 0, r = 0; q < parts.length; q++) {
    for (let i = 0; i < parts[q].label.length; i++, r++) {
      rowPart[r] = q;
      rowIdx[r] = i;
    }
  }
  const perm = new Int32Array(total);
  for (let i = 0; i < total; i++) perm[i] = i;
  rng.shuffle(perm);
  const gather = (from: number, take: number): Rows => {
    const out: Rows = { embed: new Float32Array(take * dim), label: new Int32Array(take), index: new Int32Array(take) };
    for (let k = 0; k < take; k++) {
      const r = perm[from + k];
      const part = parts[rowPart[r]];
      const i = rowIdx[r];
      out.embed.set(part.embed.subarray(i * dim, (i + 1) * dim), k * dim);
      out.label[k] = part.label[i];
      out.index[k] = part.index[i];
    }
    return out;
  };
  return { total, gather };
}
