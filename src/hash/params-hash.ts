// Canonical hash of an instance's resolved params (key order independent, list order significant).
// Owns the object-hash options; nothing else may hash params another way.
import objectHash from "object-hash";

/** sha256 (object-hash's typed serialisation) of params; `{a, b}` and `{b, a}` hash equal. */
export function paramsHash(params: Record<string, unknown>): string {
  return objectHash(params, {
    algorithm: "sha256",
    encoding: "hex",
    unorderedObjects: true,
    unorderedArrays: false,
    unorderedSets: true,
    respectType: true,
  });
}
