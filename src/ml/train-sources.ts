// Batch sources for the trainer: the interfaces it reads through, over a feature file or in-memory
// arrays (tests, benchmarks). Owns batching and label checks; no tfjs, no training logic.
import type { FeatureReader } from "../io/feature-reader.ts";
import { InputError } from "../errors.ts";
import type { Rng } from "../rng.ts";

export interface Batch {
  /** count*dim values, row-major. */
  embed: Float32Array;
  label: Int32Array;
  count: number;
}

export interface TrainSource {
  dim: number;
  /** Rows per augmented pass; an epoch is one pass. */
  passRows: number;
  passes: number;
  /** Shuffled batches of pass `epoch mod passes` (drop_last false). */
  batches(epoch: number, batchSize: number, rng: Rng): Iterable<Batch>;
}

export interface EvalSource {
  dim: number;
  rows: number;
  batches(batchSize: number): Iterable<Batch>;
}

/** Training batches of a multi-pass feature file: epoch e reads pass e mod passes, shuffled. */
export function featureTrainSource(r: FeatureReader, blockRows?: number): TrainSource {
  return {
    dim: r.dim,
    passRows: r.passRows,
    passes: r.passes,
    batches: (epoch, batchSize, rng) => r.shuffled({ pass: epoch % r.passes, batchSize, rng, ...(blockRows ? { blockRows } : {}) }),
  };
}

export function featureEvalSource(r: FeatureReader): EvalSource {
  return { dim: r.dim, rows: r.rows, batches: (batchSize) => r.sequential(batchSize) };
}

/** Fails with a clear message when a label is outside [0, classes). */
export function checkLabels(labels: Int32Array, classes: number, file: string): void {
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (!(y >= 0 && y < classes)) {
      throw new InputError(`${file}: row ${i} has label ${y}, outside [0, ${classes})`, {
        hint: `set num_classes of the train config to the number of classes of the features (at least ${y + 1})`,
      });
    }
  }
}

/** In-memory source: `embed` holds passes*passRows rows; pass p = rows [p*passRows, (p+1)*passRows). */
export function memoryTrainSource(embed: Float32Array, label: Int32Array, dim: number, passes = 1): TrainSource {
  const rows = label.length;
  if (embed.length !== rows * dim || rows % passes !== 0) throw new Error(`memoryTrainSource: ${embed.length} values / ${rows} labels do not fit dim ${dim} x ${passes} passes`);
  const passRows = rows / passes;
  return {
    dim,
    passRows,
    passes,
    *batches(epoch: number, batchSize: number, rng: Rng): Iterable<Batch> {
      const base = (epoch % passes) * passRows;
      const order = rng.shuffle(Int32Array.from({ length: passRows }, (_, i) => base + i)) as Int32Array;
      for (let s = 0; s < passRows; s += batchSize) {
        const n = Math.min(batchSize, passRows - s);
        const e = new Float32Array(n * dim);
        const l = new Int32Array(n);
        for (let j = 0; j < n; j++) {
          const r = order[s + j];
          e.set(embed.subarray(r * dim, (r + 1) * dim), j * dim);
          l[j] = label[r];
        }
        yield { embed: e, label: l, count: n };
      }
    },
  };
}

export function memoryEvalSource(embed: Float32Array, label: Int32Array, dim: number): EvalSource {
  return {
    dim,
    rows: label.length,
    *batches(batchSize: number): Iterable<Batch> {
      for (let s = 0; s < label.length; s += batchSize) {
        const n = Math.min(batchSize, label.length - s);
        yield { embed: embed.slice(s * dim, (s + n) * dim), label: label.slice(s, s + n), count: n };
      }
    },
  };
}
