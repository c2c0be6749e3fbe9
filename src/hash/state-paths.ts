// Where the digest service keeps its state in a workspace. A leaf: read before the service loads
// (src/runner/preload.ts finds the tree records with it).

/** The stat cache's file; `cache/state/outputs.json` was the second one of older versions. */
export const STATE_FILE = "cache/state/stat-cache.json";
/** Tree records, beside the stat cache's file. */
export const TREES_DIR = "trees";
