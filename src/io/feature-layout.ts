// The cached-feature file layout writer and reader agree on (the reference's root datasets embed,
// label, index; the root attributes sed-pipe adds). Names and constants only; no I/O.

/**
 * The root datasets of a feature file, in the reference's names: embed N x D, label N x 1, index
 * N x 1 (index restarts at 0 at every pass), all float32, chunked, first axis unlimited.
 */
export const FEATURE_DATASETS = ["embed", "label", "index"] as const;

/** Root attributes we add (h5py readers ignore them; the reference files have none). */
export const ATTR_FORMAT = "sed_pipe_format";
export const ATTR_ROWS = "sed_pipe_rows";
export const ATTR_COMPLETE = "sed_pipe_complete";
export const FORMAT_VERSION = "features/1";
