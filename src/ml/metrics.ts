// Prediction, accuracy and confidence rules of reference §3.2/§3.3 on plain arrays: ensemble = mean of
// head logits, first maximum wins, an all-zero row predicts -1, ImageNet-A/R style masked one-hot votes.
// Pure numeric code: no tfjs, no I/O.
import { InputError } from "../errors.ts";
import { argmaxRow, probabilities, type Stack } from "./scores.ts";

/**
 * argmax per row (first maximal index, as torch.argmax); a row whose values sum to exactly 0 gets -1,
 * which never equals a label (the reference's marker for "every head voted outside the subset").
 */
export function predictRows(out: ArrayLike<number>, rows: number, classes: number): Int32Array {
  const pred = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    const off = i * classes;
    let sum = 0;
    for (let k = 0; k < classes; k++) sum += out[off + k];
    pred[i] = sum === 0 ? -1 : argmaxRow(out, off, classes);
  }
  return pred;
}

export function countCorrect(pred: Int32Array, labels: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < pred.length; i++) if (pred[i] === labels[i]) n++;
  return n;
}

/** Arithmetic mean over heads of a stack: the ensemble output [N, C] (weights 1, no softmax). */
export function meanOverHeads(s: Stack): Float32Array {
  const { heads: m, rows: n, classes: c, data } = s;
  const plane = n * c;
  const acc = new Float64Array(plane);
  for (let h = 0; h < m; h++) for (let j = 0; j < plane; j++) acc[j] += data[h * plane + j];
  const out = new Float32Array(plane);
  for (let j = 0; j < plane; j++) out[j] = acc[j] / m;
  return out;
}

/** One head's (or the ensemble's) outputs [N, C] out of a stack. */
export function headSlice(s: Stack, h: number): Float32Array {
  const plane = s.rows * s.classes;
  return s.data.subarray(h * plane, (h + 1) * plane);
}

/**
 * Confidence of each row's prediction ("conf" of the reference's detailed results). Correct mode: the
 * maximal softmax probability. Quirks mode: get_probs' range check on this whole [N, C] block, then the
 * probability at the prediction, where the -1 of an all-zero row indexes the LAST class (Python's
 * negative indexing in the reference).
 */
export function confidences(out: Float32Array, rows: number, classes: number, kind: Stack["kind"], quirks: boolean): Float64Array {
  const p = probabilities(out, classes, kind, quirks);
  const pred = quirks ? predictRows(out, rows, classes) : null;
  const conf = new Float64Array(rows);
  for (let i = 0; i < rows; i++) {
    const off = i * classes;
    if (pred) conf[i] = p[off + (pred[i] < 0 ? classes - 1 : pred[i])];
    else conf[i] = p[off + argmaxRow(p, off, classes)];
  }
  return conf;
}

/**
 * Class subset of an ImageNet-A/R style dataset: the indices (in the model's class order) of the classes
 * listed under `key`, ascending. The file holds `all_wnids` (the model's classes in order) and the subset.
 */
export function subsetIndices(file: string, json: unknown, key: string, modelClasses: number): Int32Array {
  const hint = `the class-list file needs "all_wnids" (the model's ${modelClasses} classes in order) and "${key}" (the subset)`;
  if (typeof json !== "object" || json === null) throw new InputError(`${file}: not a JSON object`, { hint });
  const all = (json as Record<string, unknown>).all_wnids;
  const sub = (json as Record<string, unknown>)[key];
  if (!Array.isArray(all) || !all.every((w) => typeof w === "string")) throw new InputError(`${file}: "all_wnids" is missing or not a list of strings`, { hint });
  if (!Array.isArray(sub) || !sub.every((w) => typeof w === "string")) throw new InputError(`${file}: "${key}" is missing or not a list of strings`, { hint });
  if (all.length !== modelClasses) {
    throw new InputError(`${file}: "all_wnids" lists ${all.length} classes but the model predicts ${modelClasses}`, {
      hint: "the class list and the model come from different setups; re-run download and train-heads with the same profile",
    });
  }
  const wanted = new Set(sub as string[]);
  const idx: number[] = [];
  (all as string[]).forEach((w, i) => {
    if (wanted.has(w)) idx.push(i);
  });
  if (idx.length !== wanted.size) {
    const missing = (sub as string[]).filter((w) => !(all as string[]).includes(w));
    throw new InputError(`${file}: ${missing.length} class(es) of "${key}" are not in "all_wnids" (first: ${missing[0]})`, { hint });
  }
  if (idx.length === 0) throw new InputError(`${file}: "${key}" is empty`, { hint });
  return Int32Array.from(idx);
}

/**
 * ImageNetARMapper of reference §3.3: softmax -> one-hot at the argmax over ALL classes -> keep the
 * subset's columns (in class order). A row whose argmax falls outside the subset becomes all zeros.
 */
export function subsetVotes(logits: Float32Array, rows: number, classes: number, subset: Int32Array): Float32Array {
  const col = new Int32Array(classes).fill(-1);
  subset.forEach((k, s) => (col[k] = s));
  const p = probabilities(logits, classes, "logits", false);
  const out = new Float32Array(rows * subset.length);
  for (let i = 0; i < rows; i++) {
    const s = col[argmaxRow(p, i * classes, classes)];
    if (s >= 0) out[i * subset.length + s] = 1;
  }
  return out;
}

/** subsetVotes applied to every head of a stack: a "probs" stack over the subset's classes. */
export function subsetStack(s: Stack, subset: Int32Array): Stack {
  const plane = s.rows * subset.length;
  const data = new Float32Array(s.heads * plane);
  for (let h = 0; h < s.heads; h++) data.set(subsetVotes(headSlice(s, h), s.rows, s.classes, subset), h * plane);
  return { heads: s.heads, rows: s.rows, classes: subset.length, data, kind: "probs" };
}
