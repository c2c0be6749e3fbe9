// Writes cached-feature HDF5 files in the reference layout (feature-layout.ts): buffered appends,
// byte-reproducible output, and a completion marker written last. Never reads features back.
import { mkdir, rm } from "node:fs/promises";
import { dirname } from "node:path";
import { InputError, SedPipeError } from "../errors.ts";
import { closeQuietly, firstLine, loadH5, withFixedClock, type Dataset, type H5File } from "./hdf5.ts";
import { ATTR_COMPLETE, ATTR_FORMAT, ATTR_ROWS, FORMAT_VERSION } from "./feature-layout.ts";

export interface FeatureWriter {
  readonly path: string;
  /** Rows appended so far (including rows still buffered). */
  readonly rows: number;
  append(embed: Float32Array, label: ArrayLike<number>, index: ArrayLike<number>): void;
  /** Flushes, writes the completion attributes, closes. */
  finish(): Promise<void>;
  /** Closes and deletes the file. */
  abort(): Promise<void>;
}

/** Rows per chunk of `embed` so that one chunk is about 512 KiB: big sequential reads, cheap appends. */
export function defaultChunkRows(dim: number): number {
  return Math.max(16, Math.floor((512 * 1024) / (4 * dim)));
}

const SCALAR_CHUNK_ROWS = 16384;
/** Appends are buffered up to this many bytes of embed before a resize + write. */
const WRITE_BUFFER_BYTES = 8 * 1024 * 1024;

interface FeatureDatasets {
  embed: Dataset;
  label: Dataset;
  index: Dataset;
}

export async function createFeatureFile(
  path: string,
  opts: { dim: number; expectedRows?: number },
): Promise<FeatureWriter> {
  const { dim, expectedRows } = opts;
  if (!Number.isInteger(dim) || dim <= 0) throw new SedPipeError(`createFeatureFile(${path}): bad dim ${dim}`);
  if (expectedRows !== undefined && (!Number.isInteger(expectedRows) || expectedRows < 0)) {
    throw new SedPipeError(`createFeatureFile(${path}): bad expectedRows ${expectedRows}`);
  }
  const h5 = await loadH5();
  await mkdir(dirname(path), { recursive: true });
  // Every h5wasm write below runs under withFixedClock: the same features give the same bytes.
  let file: H5File;
  try {
    file = withFixedClock(() => new h5.File(path, "w"));
  } catch (err) {
    throw new InputError(`${path}: cannot create HDF5 file: ${firstLine(err)}`, { cause: err });
  }
  withFixedClock(() => file.create_attribute(ATTR_FORMAT, FORMAT_VERSION));
  return new H5FeatureWriter(path, file, createDatasets(file, dim), dim, expectedRows);
}

/** The three empty, extendable datasets of the reference layout. */
function createDatasets(file: H5File, dim: number): FeatureDatasets {
  const embed = withFixedClock(() => file.create_dataset({
    name: "embed",
    data: new Float32Array(0),
    shape: [0, dim],
    maxshape: [null, dim],
    chunks: [defaultChunkRows(dim), dim],
    dtype: "<f",
  }));
  const scalar = (name: string): Dataset =>
    withFixedClock(() =>
      file.create_dataset({
        name,
        data: new Float32Array(0),
        shape: [0, 1],
        maxshape: [null, 1],
        chunks: [SCALAR_CHUNK_ROWS, 1],
        dtype: "<f",
      }),
    );
  const label = scalar("label");
  const index = scalar("index");
  return { embed, label, index };
}

class H5FeatureWriter implements FeatureWriter {
  private readonly bufRows: number;
  private readonly bufEmbed: Float32Array;
  private readonly bufLabel: Float32Array;
  private readonly bufIndex: Float32Array;
  private buffered = 0;
  private written = 0;
  private state: "open" | "finished" | "aborted" = "open";

  constructor(
    readonly path: string,
    private readonly file: H5File,
    private readonly ds: FeatureDatasets,
    private readonly dim: number,
    private readonly expectedRows: number | undefined,
  ) {
    this.bufRows = Math.max(1, Math.floor(WRITE_BUFFER_BYTES / (4 * dim)));
    this.bufEmbed = new Float32Array(this.bufRows * dim);
    this.bufLabel = new Float32Array(this.bufRows);
    this.bufIndex = new Float32Array(this.bufRows);
  }

  get rows(): number {
    return this.written + this.buffered;
  }

  append(embed: Float32Array, label: ArrayLike<number>, index: ArrayLike<number>): void {
    this.ensureOpen("append");
    const { path, dim } = this;
    const n = label.length;
    if (index.length !== n || embed.length !== n * dim) {
      throw new SedPipeError(
        `${path}: append got ${embed.length} embed values, ${n} labels, ${index.length} indices (dim ${dim})`,
      );
    }
    for (let k = 0; k < n; k++) {
      // float32 holds integers exactly only up to 2^24: beyond that label/index would be rounded.
      const l = label[k];
      const x = index[k];
      if (!Number.isInteger(l) || Math.abs(l) > 16_777_216 || !Number.isInteger(x) || x < 0 || x > 16_777_216) {
        throw new SedPipeError(`${path}: append row ${this.written + this.buffered + k}: label ${l} / index ${x} must be whole numbers below 2^24 (stored as float32)`);
      }
    }
    let i = 0;
    while (i < n) {
      const take = Math.min(n - i, this.bufRows - this.buffered);
      this.bufEmbed.set(embed.subarray(i * dim, (i + take) * dim), this.buffered * dim);
      for (let k = 0; k < take; k++) {
        this.bufLabel[this.buffered + k] = label[i + k];
        this.bufIndex[this.buffered + k] = index[i + k];
      }
      this.buffered += take;
      i += take;
      if (this.buffered === this.bufRows) this.flush();
    }
  }

  async finish(): Promise<void> {
    this.ensureOpen("finish");
    try {
      this.flush();
      if (this.expectedRows !== undefined && this.written !== this.expectedRows) {
        throw new SedPipeError(`${this.path}: wrote ${this.written} rows, expected ${this.expectedRows}`);
      }
      // Rows as a float64 attribute: exact up to 2^53, readable by h5py as a plain number.
      withFixedClock(() => {
        this.file.create_attribute(ATTR_ROWS, this.written);
        this.file.create_attribute(ATTR_COMPLETE, 1);
        this.file.flush();
        this.state = "finished";
        this.file.close();
      });
    } catch (err) {
      if (this.state === "open") {
        this.state = "aborted";
        closeQuietly(this.file);
        await rm(this.path, { force: true });
      }
      throw err;
    }
  }

  async abort(): Promise<void> {
    if (this.state !== "open") return;
    this.state = "aborted";
    closeQuietly(this.file);
    await rm(this.path, { force: true });
  }

  private flush(): void {
    if (this.buffered === 0) return;
    const { dim, ds, written } = this;
    const end = written + this.buffered;
    const n = this.buffered;
    withFixedClock(() => {
      ds.embed.resize([end, dim]);
      ds.label.resize([end, 1]);
      ds.index.resize([end, 1]);
      ds.embed.write_slice([[written, end], [0, dim]], this.bufEmbed.subarray(0, n * dim));
      ds.label.write_slice([[written, end], [0, 1]], this.bufLabel.subarray(0, n));
      ds.index.write_slice([[written, end], [0, 1]], this.bufIndex.subarray(0, n));
    });
    this.written = end;
    this.buffered = 0;
  }

  private ensureOpen(what: string): void {
    if (this.state !== "open") throw new SedPipeError(`${this.path}: ${what} after the feature file was ${this.state}`);
  }
}
