// Folder listings on native threads: @sed-pipe/fslist (native/fslist, an optional Node-API addon)
// makes the very text listDirSync signs (names, and each file's device, inode, size, mtime, ctime,
// numbers printed as JavaScript prints them), readdir and one fstatat per entry in C++, on threads
// with no isolate to start; this module hashes it into the same ListingSig. And the preload: for a
// read-only command (status, why, run --dry-run) bin/sed-pipe.js starts listing, before the program's
// modules load, the folders the last such command checked (the hint file below); the first
// assessment takes those listings, once each, and drops the rest when it ends.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import type { ListingSig } from "./listing.ts";

/** What @sed-pipe/fslist exports (version 2). */
export interface FsListAddon {
  /**
   * Starts listing `paths` on `threads` native threads (0: none; finish() lists on the calling thread
   * too). `digest` (only where `digests`): each listing's SHA-256 hex instead of its text.
   */
  begin(paths: string[], threads: number, digest?: boolean): object;
  /** Lists what is left, waits for the threads; per path its listing text (or digest) and racyUntilMs, or null when it could not be listed. */
  finish(handle: object): Array<[string, number] | null>;
  /** String(x) as the listing text prints numbers (tests compare it with JavaScript's). */
  formatNumber(x: number): string;
  /** [size, mtimeMs] per path (links followed), NaN for both where stat fails. */
  statMany(paths: string[]): Float64Array;
  /** Whether begin() can sign listings on its threads (built with OpenSSL's headers). */
  digests: boolean;
  version: number;
}

/** The addon version this code speaks (bin/sed-pipe.js checks the same number). */
export const FSLIST_VERSION = 2;

let addon: FsListAddon | null | undefined;
let whyNot = "";

/** The addon, or null when it is not installed, does not load, or SED_PIPE_NO_FSLIST=1 (see nativeListingStatus). */
export function fsListAddon(): FsListAddon | null {
  if (addon !== undefined) return addon;
  if (process.env.SED_PIPE_NO_FSLIST === "1") {
    whyNot = "SED_PIPE_NO_FSLIST=1 is set";
    return (addon = null);
  }
  try {
    // The launcher's (bin/sed-pipe.js), when it loaded one; else from node_modules.
    const a = ((globalThis as Record<string, unknown>).__sedPipeFsList as FsListAddon | undefined) ?? (createRequire(import.meta.url)("@sed-pipe/fslist") as FsListAddon);
    if (a.version !== FSLIST_VERSION) throw new Error(`version ${String(a.version)}, this sed-pipe needs ${FSLIST_VERSION} (run npm ci)`);
    addon = a;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    whyNot = e.code === "MODULE_NOT_FOUND" && e.message.includes("'@sed-pipe/fslist'") ? "not installed (npm could not build it: a C++17 compiler is needed)" : `failed to load: ${e.message.split("\n")[0]}`;
    addon = null;
  }
  return addon;
}

/** "native (@sed-pipe/fslist)" or why folders are listed in JavaScript (doctor prints it). */
export function nativeListingStatus(): string {
  const a = fsListAddon();
  if (!a) return `JavaScript (@sed-pipe/fslist ${whyNot})`;
  return a.digests ? "native threads (@sed-pipe/fslist), signed there" : "native threads (@sed-pipe/fslist), signed in JavaScript (built without OpenSSL's headers)";
}

/** The signature of a listing's text, as listDirSync hashes the same text. */
export function sigOfText(text: string, racyUntilMs: number): ListingSig {
  return { sig: createHash("sha256").update(text).digest("hex"), racyUntilMs };
}

/** Threads that list beside the calling thread: up to 4 in all, one per core. */
export function extraThreads(): number {
  return Math.max(0, Math.min(4, availableParallelism()) - 1);
}

/** A listing from the addon's finish(): its text, or its digest when begin() was asked for one. */
export function sigOfListing(x: [string, number], digest: boolean): ListingSig {
  return digest ? { sig: x[0], racyUntilMs: x[1] } : sigOfText(x[0], x[1]);
}

/**
 * The listing signature of each folder (null: it could not be listed), made by the addon on `threads`
 * threads plus this one; signed on those threads where the addon can.
 */
export function nativeListings(a: FsListAddon, paths: string[], threads: number): Array<ListingSig | null> {
  const digest = a.digests === true;
  return a.finish(a.begin(paths, threads, digest)).map((x) => (x === null ? null : sigOfListing(x, digest)));
}

/** Under cache/state: the folders the last check listed one by one, which the next read-only command preloads. */
export const HINT_FILE = "listing-hint.json";
/** Records of fewer files are not worth a place in the hint. */
export const HINT_MIN_FILES = 256;
/** At most this many folders are hinted (a dep of 1.28 M files in 1,000 class folders fits). */
export const HINT_MAX_FOLDERS = 20_000;

export interface Hint {
  version: 1;
  folders: string[];
}

/** The hint file's folders, or null when it is missing or not a hint. */
export function readHint(file: string): string[] | null {
  try {
    const h = JSON.parse(readFileSync(file, "utf8")) as Partial<Hint>;
    return h.version === 1 && Array.isArray(h.folders) && h.folders.every((f) => typeof f === "string") ? h.folders : null;
  } catch {
    return null;
  }
}

/** What bin/sed-pipe.js leaves on globalThis when it started a preload. */
export interface LauncherPreload {
  folders: string[];
  /** Whether the listings are digests (begin(..., true)) rather than texts. */
  digests: boolean;
  finish: () => Array<[string, number] | null>;
}

const GLOBAL_KEY = "__sedPipePreload";

/**
 * Listings started before the program loaded: handed out once each, by absolute folder. The first
 * take() waits for the preload's threads (and lists, on this thread, what they have not reached).
 */
export class Preloaded {
  private map: Map<string, ListingSig | null> | null = null;
  private pending: LauncherPreload | null;

  constructor(started: LauncherPreload) {
    this.pending = started;
  }

  /** The launcher's preload, claimed by the first caller in this process (later callers get null). */
  static fromLauncher(): Preloaded | null {
    const g = globalThis as Record<string, unknown>;
    const started = g[GLOBAL_KEY] as LauncherPreload | undefined;
    if (!started) return null;
    delete g[GLOBAL_KEY];
    return new Preloaded(started);
  }

  /** The preloaded listing of `abs` (null: it could not be listed), or undefined when none is left for it. */
  take(abs: string): ListingSig | null | undefined {
    if (this.pending) {
      const { folders, finish, digests } = this.pending;
      this.pending = null;
      let got: Array<[string, number] | null> = [];
      try {
        got = finish();
      } catch {
        got = [];
      }
      this.map = new Map();
      for (let i = 0; i < folders.length && i < got.length; i++) {
        const x = got[i]!;
        this.map.set(folders[i]!, x === null ? null : sigOfListing(x, digests === true));
      }
    }
    const m = this.map;
    if (!m || !m.has(abs)) return undefined;
    const l = m.get(abs)!;
    m.delete(abs);
    return l;
  }

  /** Drops what was not taken (the listings describe the moment the command started). */
  drop(): void {
    this.pending = null;
    this.map = null;
  }
}
