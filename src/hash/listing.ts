// Listing folders: THE listing of one folder and its signature (names, and each file's device,
// inode, size, mtime, ctime), and a helper thread that lists many folders beside this one, each
// folder claimed by whichever thread is free (a warm check of a big tree is mostly stat(2) calls: two
// threads do them in about half the time). No records, no hashing of file bytes.
import { Worker } from "node:worker_threads";

/** The stat fields a record compares (numbers: ms with sub-µs precision is far finer than the racy window). */
export interface StatSig {
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface WalkedFile extends StatSig {
  rel: string;
  abs: string;
}

/**
 * A file modified within the timestamp granularity of the moment it was looked at cannot be told apart
 * from one that did not change ("racy git"): whole-second mtimes get 2 s, finer ones 50 ms.
 * (Self-contained: the listing helper thread runs its source, see HELPER_SOURCE.)
 */
export function racyWindowMs(mtimeMs: number): number {
  return mtimeMs % 1000 === 0 ? 2000 : 50;
}

/** True when a file with this mtime, seen unchanged at `atMs`, may still have changed unseen. */
export function isRacy(mtimeMs: number, atMs: number): boolean {
  return atMs - mtimeMs <= racyWindowMs(mtimeMs);
}

/** A file's line in its folder's listing signature: every compared field. (Self-contained, as racyWindowMs.) */
export function sigLine(name: string, f: StatSig): string {
  return `f\0${name}\0${f.dev}\0${f.ino}\0${f.size}\0${f.mtimeMs}\0${f.ctimeMs}\n`;
}

/** A sub-folder met by a listing: its stat as a DirSig records it. */
export interface SubDir {
  name: string;
  abs: string;
  dev: number;
  ino: number;
  mtimeMs: number;
  ctimeMs: number;
}

/** What a folder's check needs of its listing: the signature, and until when its newest file is racy. */
export interface ListingSig {
  /** sha256 over the entries' lines (files: name and stat; folders: name), in readdir order. */
  sig: string;
  /** max over files of mtime + racy window: the listing is racy for a record made before this. */
  racyUntilMs: number;
}

/** One folder's listing: its files (stat'ed, links followed), its sub-folders, and their signature. */
export interface Listing extends ListingSig {
  files: WalkedFile[];
  subdirs: SubDir[];
}

/** The error code listDirSync gives a dangling link (tree-cache.ts maps it to its TreeLinkError). */
export const LINK_ERROR = "SED_PIPE_TREE_LINK";

/**
 * THE listing of one folder, with the symlink rule of digest.ts: links followed, a dangling link is
 * an error (code LINK_ERROR), special files skipped. Order is what the OS gives: a record made in one
 * order and checked in another only fails its check (a re-walk), it never passes wrongly. `keep`:
 * false when only the signature is wanted (nothing per file is kept). Self-contained on purpose
 * (it fetches its modules itself and calls only racyWindowMs and sigLine): the listing helper thread
 * runs this very function's source, so both threads sign a folder the same way.
 */
export function listDirSync(abs: string, rel: string, keep: boolean): Listing {
  const fs = process.getBuiltinModule("node:fs");
  const crypto = process.getBuiltinModule("node:crypto");
  // `abs` is normalised (resolve/join made it): a child's path is the parent's plus a separator and the
  // name, without path.join's normalising pass (a tenth of a warm listing's time).
  const { sep } = process.getBuiltinModule("node:path");
  const prefix = abs.endsWith(sep) ? abs : abs + sep;
  const h = crypto.createHash("sha256");
  let buf = "";
  const files: WalkedFile[] = [];
  const subdirs: SubDir[] = [];
  let racyUntilMs = -Infinity;
  for (const e of fs.readdirSync(abs, { withFileTypes: true })) {
    if (!e.isDirectory() && !e.isFile() && !e.isSymbolicLink()) continue;
    const childAbs = prefix + e.name;
    const st = fs.statSync(childAbs, { throwIfNoEntry: false });
    if (!st) throw Object.assign(new Error(`dangling symlink ${childAbs}`), { code: "SED_PIPE_TREE_LINK" });
    if (st.isDirectory()) {
      if (keep) subdirs.push({ name: e.name, abs: childAbs, dev: st.dev, ino: st.ino, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs });
      buf += `d\0${e.name}\n`;
    } else if (st.isFile()) {
      if (keep) files.push({ rel: rel ? `${rel}/${e.name}` : e.name, abs: childAbs, dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs, ctimeMs: st.ctimeMs });
      buf += sigLine(e.name, st);
      const until = st.mtimeMs + racyWindowMs(st.mtimeMs);
      if (until > racyUntilMs) racyUntilMs = until;
    } else continue;
    if (buf.length > 65536) {
      h.update(buf);
      buf = "";
    }
  }
  h.update(buf);
  return { files, subdirs, sig: h.digest("hex"), racyUntilMs };
}

/** A folder to list, and the signature its record expects. */
export interface ListJob {
  abs: string;
  rel: string;
  expect: string;
}

/** [index into the jobs, signature or null when the folder could not be listed, racyUntilMs]. */
export type Listed = [number, string | null, number];

/**
 * Lists folders of `jobs` claimed one at a time through `control` ([0]: next index, [1]: stop flag),
 * which every thread listing the same jobs shares; the first folder whose signature is not the one
 * expected, or that cannot be listed, stops them all (the record fails its check whatever the rest
 * say). Self-contained (it calls only listDirSync): the helper thread runs its source.
 */
export function claimListings(jobs: readonly ListJob[], control: Int32Array): Listed[] {
  const out: Listed[] = [];
  while (Atomics.load(control, 1) === 0) {
    const i = Atomics.add(control, 0, 1);
    if (i >= jobs.length) break;
    const j = jobs[i]!;
    try {
      const l = listDirSync(j.abs, j.rel, false);
      out.push([i, l.sig, l.racyUntilMs]);
      if (l.sig !== j.expect) Atomics.store(control, 1, 1);
    } catch {
      out.push([i, null, 0]);
      Atomics.store(control, 1, 1);
    }
  }
  return out;
}

const HELPER_SOURCE = `
const { parentPort } = require("node:worker_threads");
${racyWindowMs.toString()}
${sigLine.toString()}
${listDirSync.toString()}
${claimListings.toString()}
parentPort.on("message", ({ id, jobs, control }) => {
  let listed;
  try {
    listed = claimListings(jobs, new Int32Array(control));
  } catch (e) {
    listed = [];
  }
  parentPort.postMessage({ id, listed });
});
`;

/**
 * Records with at least this many files are checked on two threads. Measured on the project's 2-core
 * machine: no gain at all on the demo's 22,199 files (the thread's start-up, ~40 ms, and its own cold
 * code eat what it shares; it only cost 0.13 s of CPU), twice as fast on 1.28 M files.
 */
export const HELPER_MIN_FILES = 100_000;

/**
 * Folders being listed by both threads: claimed one at a time through `control`; what this thread
 * listed is in `here`, the helper's answer (all it listed) arrives once through `theirs`.
 */
interface Batch {
  jobs: readonly ListJob[];
  control: Int32Array;
  here: Map<number, ListingSig | null>;
  theirs: Promise<Listed[] | null> | null;
  helper: Map<number, ListingSig | null> | null;
}

const toSig = (sig: string | null, racyUntilMs: number): ListingSig | null => (sig === null ? null : { sig, racyUntilMs });

/**
 * One helper thread that lists folders beside the calling thread (claimListings on both). It never
 * keeps the process alive unless the calling thread is waiting for it; a helper that fails to start
 * or dies only makes the calling thread list everything itself.
 */
export class ListingHelper {
  /** Records with at least this many files are worth the thread (default HELPER_MIN_FILES). */
  readonly minFiles: number;
  private worker: Worker | null = null;
  private broken = false;
  private nextId = 0;
  private waiting = new Map<number, (listed: Listed[] | null) => void>();
  /** Awaits in progress on this thread: the worker is ref'ed while there is one. */
  private holds = 0;

  constructor(opts: { minFiles?: number } = {}) {
    this.minFiles = opts.minFiles ?? HELPER_MIN_FILES;
  }

  /** Starts the thread now (it boots while the caller does other work); idempotent. */
  start(): void {
    if (this.worker || this.broken) return;
    try {
      const w = new Worker(HELPER_SOURCE, { eval: true });
      w.on("message", (m: { id: number; listed: Listed[] }) => this.settle(m.id, m.listed));
      w.on("error", () => this.fail());
      w.on("exit", () => this.fail());
      w.unref();
      this.worker = w;
    } catch {
      this.broken = true;
    }
  }

  private settle(id: number, listed: Listed[] | null): void {
    const done = this.waiting.get(id);
    this.waiting.delete(id);
    done?.(listed);
  }

  private fail(): void {
    this.broken = true;
    this.worker = null;
    for (const id of [...this.waiting.keys()]) this.settle(id, null);
  }

  /** `p`, with the worker keeping the process alive until it settles. */
  private async hold<T>(p: Promise<T>): Promise<T> {
    if (this.holds++ === 0) this.worker?.ref();
    try {
      return await p;
    } finally {
      if (--this.holds === 0) this.worker?.unref();
    }
  }

  /** Posts `jobs` to the helper thread (null when there is none): its folders are then claimed on both sides. */
  private post(jobs: readonly ListJob[]): Batch {
    this.start();
    const control = new Int32Array(new SharedArrayBuffer(8));
    let theirs: Batch["theirs"] = null;
    if (this.worker) {
      const id = this.nextId++;
      theirs = new Promise((resolve) => this.waiting.set(id, resolve));
      this.worker.postMessage({ id, jobs, control: control.buffer });
    }
    return { jobs, control, here: new Map(), theirs, helper: null };
  }

  /**
   * The listing signature of each job's folder, in order: null when it could not be listed,
   * undefined when it was not listed because another folder already failed its expectation.
   * Folders are claimed one at a time by this thread and the helper's (`here: false`: the helper's only).
   */
  async list(jobs: readonly ListJob[], opts: { here?: boolean } = {}): Promise<Array<ListingSig | null | undefined>> {
    const b = this.post(jobs);
    return this.collect(b, jobs.map((_, i) => i), opts.here !== false);
  }

  /** The results of `want` (indices into b.jobs): claims what is left on this thread, waits for the helper's when needed. */
  private async collect(b: Batch, want: number[], here: boolean): Promise<Array<ListingSig | null | undefined>> {
    if (here || !b.theirs) for (const [i, sig, r] of claimListings(b.jobs, b.control)) b.here.set(i, toSig(sig, r));
    // The helper's folders are those claimed and not listed here: none when this thread took them all
    // (a helper still starting), and then its answer is not waited for.
    const claimed = Math.min(b.jobs.length, Atomics.load(b.control, 0));
    const fromHelper = (i: number) => i < claimed && !b.here.has(i);
    if (b.theirs && !b.helper && (!here || want.some(fromHelper))) {
      b.helper = new Map(((await this.hold(b.theirs)) ?? []).map(([i, sig, r]) => [i, toSig(sig, r)]));
    }
    const out = want.map((i) => (b.here.has(i) ? b.here.get(i) : b.helper?.get(i)));
    // Folders left unlisted while none of these failed its expectation (the helper died with them in hand): here.
    const failed = out.some((x, k) => x === null || (x !== undefined && x.sig !== b.jobs[want[k]!]!.expect));
    if (!failed) {
      const rest = want.flatMap((i, k) => (out[k] === undefined ? [{ ...b.jobs[i]!, k }] : []));
      for (const [r, sig, until] of claimListings(rest, new Int32Array(new SharedArrayBuffer(8)))) out[rest[r]!.k] = toSig(sig, until);
    }
    return out;
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = null;
    this.broken = true;
    if (w) await w.terminate();
  }
}

let shared: ListingHelper | undefined;

/** The process-wide helper (its thread starts on first use). */
export function sharedListingHelper(): ListingHelper {
  shared ??= new ListingHelper();
  return shared;
}
