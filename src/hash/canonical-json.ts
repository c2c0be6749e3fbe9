// The one canonical JSON of sed-pipe: object keys sorted (code-unit order), undefined members
// dropped, so equal data always gives equal text. Fingerprints, params comparisons and the lock
// file's bytes all go through it. Pure.

/** A JSON object (not null, not an array). */
export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

/** A deep copy of plain JSON data with every object's keys in sorted order. */
export function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) if (v[k] !== undefined) out[k] = sortKeys(v[k]);
    return out;
  }
  return v;
}

/** JSON with sorted keys; `indent` as in JSON.stringify (the lock file is written with 2). */
export function canonicalJson(v: unknown, indent?: number): string {
  return JSON.stringify(sortKeys(v), null, indent) ?? "null";
}
