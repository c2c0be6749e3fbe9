// A head start for the stat-heavy part of an assessment (git's core.preloadIndex, for tree records):
// the folders of the big records the pipeline's instances name (outputs, and deps outside the
// profile's immutable folders) are listed on the listing helper thread while the command goes on
// loading its modules and reading the lock. Nothing is decided here: the assessment checks every
// record itself and joins the listing where it stands (src/hash/listing.ts). Without a valid
// pipeline memo nothing is preloaded.
import { statSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { readMemoData } from "../pipeline/memo.ts";
import { HELPER_MIN_FILES, sharedListingHelper, type ListingHelper, type ListJob } from "../hash/listing.ts";
import { isInsideAny, TreeStore } from "../hash/tree-cache.ts";
import { STATE_FILE, TREES_DIR } from "../hash/state-paths.ts";
import { launchedBuild } from "./build-id.ts";

/**
 * Preloads the listings an assessment of the whole pipeline at `rootIn` will check (on `helper`,
 * the process-wide one by default). Returns what forgets them: call it when the command is done.
 */
export function preloadListings(rootIn: string, opts: { profile?: string; paranoid?: boolean; code?: string | null; helper?: ListingHelper } = {}): () => void {
  const helper = opts.helper ?? sharedListingHelper();
  const root = resolve(rootIn);
  const data = readMemoData(root, { ...(opts.profile === undefined ? {} : { profile: opts.profile }), code: opts.code === undefined ? launchedBuild() : opts.code });
  if (!data) return () => {};
  const immutable = opts.paranoid ? [] : (data.immutable ?? []);
  const trees = new TreeStore(join(root, STATE_FILE, "..", TREES_DIR));
  const jobs: ListJob[] = [];
  const seen = new Set<string>();
  const abs = (p: string) => (isAbsolute(p) ? p : join(root, p));
  const paths = new Set<string>();
  for (const inst of data.instances) {
    for (const p of Object.values(inst.outs)) paths.add(abs(p));
    for (const p of Object.values(inst.deps)) if (!isInsideAny(abs(p), immutable)) paths.add(abs(p));
  }
  for (const f of paths) {
    // Only folders have records (a stat is cheaper than a failed read of a record that is not there).
    if (!statSync(f, { throwIfNoEntry: false })?.isDirectory()) continue;
    const head = trees.headSync(f);
    if (!head || head.count < HELPER_MIN_FILES) continue;
    for (const d of head.dirs) {
      const dir = d[0] ? join(head.path, d[0]) : head.path;
      if (seen.has(dir)) continue;
      seen.add(dir);
      jobs.push({ abs: dir, rel: d[0], expect: d[5] });
    }
  }
  helper.preload(jobs);
  return () => helper.dropPreload();
}
