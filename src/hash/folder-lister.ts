// Which way a record's folders are listed for a check: taken from the preload when the launcher made
// them, else on native threads (@sed-pipe/fslist), else, for big records, on the JavaScript helper
// thread beside this one; whatever none of these lists, checkFiles lists here with listDirSync. All
// ways give the one signature (listing.ts). Also keeps what the next command should preload.
import { writeFileAtomic } from "../io/atomic.ts";
import type { ListingHelper, ListingSig, ListJob } from "./listing.ts";
import { extraThreads, HINT_MAX_FOLDERS, HINT_MIN_FILES, nativeListings, readHint, type FsListAddon, type Hint, type Preloaded } from "./native-listing.ts";

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const s = new Set(a);
  return s.size === b.length && b.every((x) => s.has(x));
}

/** Records of fewer files are listed on the calling thread only (a thread's start costs more). */
export const THREADS_MIN_FILES = 2048;

export interface FolderListerOptions {
  native: FsListAddon | null;
  helper: ListingHelper | null;
  preload: Preloaded | null;
}

export class FolderLister {
  /** Folders of records of HINT_MIN_FILES files or more, checked or walked by this process, in order. */
  private readonly wanted = new Set<string>();

  constructor(private readonly opts: FolderListerOptions) {}

  /** Notes folders of a record of `files` files that this process listed or walked: the next read-only command preloads them. */
  note(abs: readonly string[], files: number): void {
    if (files >= HINT_MIN_FILES) for (const a of abs) if (this.wanted.size < HINT_MAX_FOLDERS) this.wanted.add(a);
  }

  /**
   * The signatures of `jobs`' folders, in order, for a record of `files` files: null when a folder
   * could not be listed, undefined when it is left for the caller to list.
   */
  async list(jobs: readonly ListJob[], files: number): Promise<Array<ListingSig | null | undefined>> {
    const out: Array<ListingSig | null | undefined> = new Array(jobs.length).fill(undefined);
    const rest: number[] = [];
    for (let i = 0; i < jobs.length; i++) {
      const p = this.opts.preload?.take(jobs[i]!.abs);
      if (p === undefined) rest.push(i);
      else out[i] = p;
    }
    const { native, helper } = this.opts;
    if (rest.length > 0 && native) {
      const got = nativeListings(
        native,
        rest.map((i) => jobs[i]!.abs),
        files >= THREADS_MIN_FILES ? Math.min(extraThreads(), rest.length - 1) : 0,
      );
      rest.forEach((i, k) => (out[i] = got[k]!));
    } else if (helper && files >= helper.minFiles && rest.length > 1) {
      const got = await helper.list(rest.map((i) => jobs[i]!));
      rest.forEach((i, k) => (out[i] = got[k]));
    }
    // Noted however they were listed (preloaded ones too, or the next hint would leave them out).
    // Folders that could not be listed are not hinted (gone, most likely; the walk that follows notes what is there).
    this.note(
      jobs.flatMap((j, i) => (out[i] === null ? [] : [j.abs])),
      files,
    );
    return out;
  }

  /** The preload is over: what it listed and nobody took is dropped. */
  endPreload(): void {
    this.opts.preload?.drop();
  }

  /**
   * Writes the hint file when what this process listed is not what it says (called after an
   * assessment: folders it no longer checks, e.g. declared immutable since, leave the hint too).
   * `keepOld` (the assessments covered only part of the pipeline): the hint's folders stay, this
   * process's are added, so that `status <stage>` does not shrink the hint to that stage's folders;
   * the next whole assessment drops what it no longer checks. Nothing listed and no hint: nothing
   * written; the same folders in another order: nothing written.
   */
  async saveHint(file: string, keepOld = false): Promise<void> {
    const old = readHint(file);
    const folders = [...this.wanted];
    if (keepOld && old) for (const f of old) if (!this.wanted.has(f) && folders.length < HINT_MAX_FOLDERS) folders.push(f);
    if (old === null ? folders.length === 0 : sameSet(old, folders)) return;
    const hint: Hint = { version: 1, folders };
    await writeFileAtomic(file, JSON.stringify(hint));
  }
}
