// Extracts .tar.gz archives (via the `tar` package) into a folder, refusing any entry that would
// land outside it: absolute paths, `..` segments, links pointing outside, device files. Never
// extracts partially on refusal: the caller gets an error and the target folder is removed.
import { createReadStream } from "node:fs";
import { mkdir, rm, stat } from "node:fs/promises";
import { posix } from "node:path";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";
import * as tar from "tar";
import { InputError } from "../errors.ts";

export interface ExtractOptions {
  /** Leading path components to drop from every entry (like `tar --strip-components`). */
  strip?: number;
  signal?: AbortSignal;
  /** Called with compressed bytes read so far (throttling is the caller's job). */
  onBytes?: (done: number, total: number) => void;
}

export interface ExtractResult {
  files: number;
  dirs: number;
  links: number;
  bytes: number;
}

const ALLOWED = new Set(["File", "OldFile", "ContiguousFile", "Directory", "SymbolicLink", "Link"]);

/**
 * Why an entry is unsafe, or null. `path` is the entry path as stored (before strip);
 * `linkpath` the link target for links.
 */
export function unsafeEntryReason(type: string, path: string, linkpath: string | undefined, strip = 0): string | null {
  if (!ALLOWED.has(type)) return `entry type ${type} is not allowed`;
  const p = path.replace(/\\/g, "/");
  if (p.startsWith("/") || /^[A-Za-z]:/.test(p)) return "absolute path";
  if (p.split("/").includes("..")) return "path with '..'";
  if (type === "SymbolicLink" || type === "Link") {
    const target = (linkpath ?? "").replace(/\\/g, "/");
    if (!target) return "link without a target";
    if (target.startsWith("/") || /^[A-Za-z]:/.test(target)) return `link to absolute path ${target}`;
    const parts = p.split("/").filter(Boolean).slice(strip);
    // Symlink targets are relative to the link's folder; hard-link targets to the archive root.
    const base = type === "SymbolicLink" ? parts.slice(0, -1).join("/") : "";
    const targetParts = type === "Link" ? target.split("/").filter(Boolean).slice(strip).join("/") : target;
    const resolved = posix.normalize(posix.join(base || ".", targetParts));
    if (resolved === ".." || resolved.startsWith("../")) return `link pointing outside the folder (${target})`;
  }
  return null;
}

/** Extracts `archive` (gzip tar) into `dest` (created). On any refusal or error, `dest` is removed. */
export async function extractTarGz(archive: string, dest: string, opts: ExtractOptions = {}): Promise<ExtractResult> {
  const strip = opts.strip ?? 0;
  const total = (await stat(archive)).size;
  await mkdir(dest, { recursive: true });
  const result: ExtractResult = { files: 0, dirs: 0, links: 0, bytes: 0 };
  let refusal: string | null = null;
  let warning: string | null = null;
  let read = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      read += chunk.length;
      opts.onBytes?.(read, total);
      cb(null, chunk);
    },
  });
  const extractor = tar.x({
    cwd: dest,
    strip,
    strict: true,
    // Ownership and modes from foreign archives are not ours to keep.
    preserveOwner: false,
    filter: (path, entry) => {
      const e = entry as tar.ReadEntry;
      const why = unsafeEntryReason(e.type, path, e.linkpath, strip);
      if (why && refusal === null) refusal = `${path}: ${why}`;
      if (why) return false;
      if (e.type === "Directory") result.dirs++;
      else if (e.type === "SymbolicLink" || e.type === "Link") result.links++;
      else {
        result.files++;
        result.bytes += e.size;
      }
      return true;
    },
    onwarn: (code, message) => {
      warning ??= `${code}: ${message}`;
    },
  });
  try {
    await pipeline(createReadStream(archive), counter, extractor, { signal: opts.signal });
  } catch (err) {
    await rm(dest, { recursive: true, force: true });
    if (opts.signal?.aborted) throw opts.signal.reason ?? err;
    if (refusal) throw refused(archive, refusal);
    throw new InputError(`${archive}: cannot extract: ${(err as Error).message}`, {
      hint: "the archive is damaged or not a gzip-compressed tar; delete it and download again",
      cause: err,
    });
  }
  if (refusal || warning) {
    await rm(dest, { recursive: true, force: true });
    if (refusal) throw refused(archive, refusal);
    throw new InputError(`${archive}: extraction warning treated as an error: ${warning}`);
  }
  return result;
}

function refused(archive: string, what: string): InputError {
  return new InputError(`${archive}: refusing to extract: entry ${what}`, {
    hint: "the archive tries to write outside its target folder; it is not safe to unpack",
  });
}
