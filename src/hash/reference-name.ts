// The reference code's artifact names: CPython repr() of an object, BLAKE2b with a 10-byte digest
// (a parameter, not a truncation) -> 20 hex chars (reference section 5). Pure; no I/O.
import { blake2b } from "@noble/hashes/blake2.js";

/** A number that must print as a Python float even when it is integral (1.0, not 1). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/**
 * Python data. A plain number prints as an int when it is an integer (repr(1) == '1') and as a float
 * otherwise; wrap it in PyFloat to force a float. `{tuple: [...]}` (that single key, an array value)
 * is a tuple; a dict whose only key is 'tuple' must be written as a Map.
 */
export type PyValue =
  | null
  | boolean
  | number
  | string
  | PyValue[]
  | { [k: string]: PyValue }
  | Map<string, PyValue>
  | { tuple: PyValue[] }
  | PyFloat;

/** repr() of a float: shortest round-trip digits, exponent form outside 1e-4 <= |x| < 1e16. */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [mant, expStr] = Math.abs(x).toExponential().split("e") as [string, string];
  const exp = Number(expStr);
  const digits = mant.replace(".", "");
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exp) < 10 ? `0${Math.abs(exp)}` : String(Math.abs(exp));
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${e}`;
  }
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
  const frac = digits.slice(exp + 1);
  return `${sign}${intPart}.${frac || "0"}`;
}

function intRepr(x: number): string {
  if (Object.is(x, -0)) return "0";
  return Number.isSafeInteger(x) ? String(x) : BigInt(x).toString();
}

// CPython's Py_UNICODE_ISPRINTABLE is false for these categories (space excepted).
const NON_PRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Zs}]/u;

function hex(n: number, width: number): string {
  return n.toString(16).padStart(width, "0");
}

/** repr() of a str (CPython unicode_repr). */
export function pythonStrRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === quote || ch === "\\") out += "\\" + ch;
    else if (ch === "\t") out += "\\t";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (cp < 0x20 || cp === 0x7f) out += "\\x" + hex(cp, 2);
    else if (cp < 0x7f) out += ch;
    else if (ch !== " " && NON_PRINTABLE.test(ch)) {
      out += cp <= 0xff ? "\\x" + hex(cp, 2) : cp <= 0xffff ? "\\u" + hex(cp, 4) : "\\U" + hex(cp, 8);
    } else out += ch;
  }
  return out + quote;
}

function isTuple(v: object): v is { tuple: PyValue[] } {
  const keys = Object.keys(v);
  return keys.length === 1 && keys[0] === "tuple" && Array.isArray((v as { tuple: unknown }).tuple);
}

/** Python's repr() of v (dicts in insertion order). */
export function pythonRepr(v: PyValue): string {
  if (v === null) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "number") return Number.isInteger(v) ? intRepr(v) : pythonFloatRepr(v);
  if (typeof v === "string") return pythonStrRepr(v);
  if (v instanceof PyFloat) return pythonFloatRepr(v.value);
  if (Array.isArray(v)) return `[${v.map(pythonRepr).join(", ")}]`;
  if (v instanceof Map) return `{${[...v].map(([k, x]) => `${pythonStrRepr(k)}: ${pythonRepr(x)}`).join(", ")}}`;
  if (isTuple(v)) {
    const items = v.tuple.map(pythonRepr);
    return items.length === 1 ? `(${items[0]},)` : `(${items.join(", ")})`;
  }
  return `{${Object.entries(v).map(([k, x]) => `${pythonStrRepr(k)}: ${pythonRepr(x as PyValue)}`).join(", ")}}`;
}

/** BLAKE2b-80 (dkLen 10) of UTF-8 bytes -> 20 lowercase hex chars. */
export function blake2b80Hex(bytes: Uint8Array): string {
  return Buffer.from(blake2b(bytes, { dkLen: 10 })).toString("hex");
}

/** STAI-tuned get_hash: BLAKE2b-80 of the UTF-8 of repr(v). */
export function referenceHash(v: PyValue): string {
  return blake2b80Hex(new TextEncoder().encode(pythonRepr(v)));
}

/** The model_config + dataset_type object the reference hashes for a cached loader, key order kept. */
export function referenceFeatureObject(o: { modelPath: string; modelName?: string; datasetKey: string; modelType?: string }): PyValue {
  const type = o.modelType ?? "torch_load";
  return new Map<string, PyValue>([
    ["type", type],
    [type, new Map<string, PyValue>([["path", o.modelPath], ["model_name", o.modelName ?? "deit3_21k"]])],
    ["dataset_type", o.datasetKey],
  ]);
}

/**
 * `<hash>_<type>_block_<id>_model_<key>_dataset_<E>_epochs_<N>_samples.hdf5`. The reference hashes the
 * ABSOLUTE normalised model path: pass it as the reference saw it to reproduce published names.
 */
export function referenceFeatureFileName(o: {
  modelPath: string;
  modelName?: string;
  datasetKey: string;
  epochs?: number;
  samples: number;
  modelType?: string;
  blockId?: number;
}): string {
  const hash = referenceHash(referenceFeatureObject(o));
  const type = o.modelType ?? "torch_load";
  return `${hash}_${type}_block_${o.blockId ?? -1}_model_${o.datasetKey}_dataset_${o.epochs ?? 1}_epochs_${o.samples}_samples.hdf5`;
}
