// Low-level HDF5 access through h5wasm: loading the library once, opening files with clear errors,
// and checks h5wasm does not do itself (truncation, filters, dtypes). Knows nothing about features.
import h5wasm from "h5wasm/node";
import type { Dataset, File as H5File, Filter } from "h5wasm/node";
import { open, stat } from "node:fs/promises";
import { InputError } from "../errors.ts";

export type { Dataset, H5File, Filter };

let loaded: Promise<typeof h5wasm> | undefined;

/** The h5wasm module, ready, with HDF5 errors turned into exceptions instead of stderr noise. */
export function loadH5(): Promise<typeof h5wasm> {
  loaded ??= h5wasm.ready.then((mod) => {
    // Without this, HDF5 prints its error stack to stderr and h5wasm carries on (e.g. returning
    // garbage for an unavailable filter); with it, the first HDF5 error becomes a JS exception.
    mod.activate_throwing_error_handler();
    return h5wasm;
  });
  return loaded;
}

/**
 * Runs synchronous h5wasm writes with the clock at the epoch. HDF5 stamps every object header with
 * access/modification/change times (h5wasm cannot turn that off), so two writes of the same data a
 * second apart differed in ~120 bytes: a rerun whose results are identical still changed its outputs'
 * digests and reran everything downstream. h5wasm's C library reads the time through Date.now, which
 * this pins for the duration of `fn` (synchronous, so nothing else runs meanwhile).
 */
export function withFixedClock<T>(fn: () => T): T {
  const now = Date.now;
  Date.now = () => 0;
  try {
    return fn();
  } finally {
    Date.now = now;
  }
}

const SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

export interface ContainerInfo {
  size: number;
  superblockOffset: number;
  superblockVersion: number;
  /** Absolute end-of-file address the superblock records (base address + EOF address). */
  recordedEnd: number;
}

/**
 * Checks that `path` is a whole HDF5 file: the signature is where the format allows it (0, 512,
 * 1024, ...) and the file is at least as long as its superblock's end-of-file address says. A file
 * cut short by an interrupted copy fails here with a clear message instead of inside HDF5.
 */
export async function checkHdf5Container(path: string): Promise<ContainerInfo> {
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new InputError(`${path}: not a regular file`);
    size = st.size;
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`${path}: cannot read the file (${(err as NodeJS.ErrnoException).code ?? String(err)})`, {
      hint: "check the path, or run the stage that produces it",
    });
  }
  const fh = await open(path, "r");
  try {
    for (let off = 0; off + 8 <= size; off = off === 0 ? 512 : off * 2) {
      const head = Buffer.alloc(Math.min(96, size - off));
      await fh.read(head, 0, head.length, off);
      if (!head.subarray(0, 8).equals(SIGNATURE)) continue;
      const version = head[8];
      let sizeOfOffsets: number;
      let addrStart: number;
      if (version === 0 || version === 1) {
        sizeOfOffsets = head[13];
        addrStart = version === 0 ? 24 : 28;
      } else if (version === 2 || version === 3) {
        sizeOfOffsets = head[9];
        addrStart = 12;
      } else {
        throw new InputError(`${path}: unsupported HDF5 superblock version ${version}`);
      }
      if (sizeOfOffsets !== 8 && sizeOfOffsets !== 4) {
        throw new InputError(`${path}: corrupt HDF5 superblock (offset size ${sizeOfOffsets})`);
      }
      const readAddr = (at: number): number => {
        if (at + sizeOfOffsets > head.length) throw new InputError(`${path}: HDF5 superblock cut short`);
        return sizeOfOffsets === 8 ? Number(head.readBigUInt64LE(at)) : head.readUInt32LE(at);
      };
      const base = readAddr(addrStart);
      const eof = readAddr(addrStart + 2 * sizeOfOffsets);
      const recordedEnd = base + eof;
      if (size < recordedEnd) {
        throw new InputError(
          `${path}: truncated HDF5 file: ${size} bytes on disk, but its superblock says it ends at byte ${recordedEnd}`,
          { hint: "the file was cut short (interrupted download or copy, or a writer that crashed); delete it and produce it again" },
        );
      }
      return { size, superblockOffset: off, superblockVersion: version, recordedEnd };
    }
  } finally {
    await fh.close();
  }
  throw new InputError(`${path}: not an HDF5 file (no HDF5 signature found)`, {
    hint: "expected a cached-feature .hdf5 file",
  });
}

/** Opens an existing HDF5 file read-only after checking its container. */
export async function openH5Read(path: string): Promise<H5File> {
  await checkHdf5Container(path);
  const h5 = await loadH5();
  try {
    return new h5.File(path, "r");
  } catch (err) {
    throw new InputError(`${path}: HDF5 library cannot open the file: ${firstLine(err)}`, { cause: err });
  }
}

/** Closes a file that may already be broken (its caller deletes or abandons it next). */
export function closeQuietly(file: H5File): void {
  try {
    file.close();
  } catch {
    // Already broken.
  }
}

/** HDF5 filter ids we can read correctly: deflate (gzip) and byte shuffle. */
export const SUPPORTED_FILTERS: ReadonlyMap<number, string> = new Map([
  [1, "deflate"],
  [2, "shuffle"],
]);

export function unsupportedFilters(ds: Dataset): Filter[] {
  return ds.filters.filter((f) => !SUPPORTED_FILTERS.has(f.id));
}

/** Numeric element type of a dataset, or null if it is not a plain number type. */
export interface NumType {
  kind: "float" | "int" | "uint";
  bytes: number;
  littleEndian: boolean;
}

export function numType(ds: Dataset): NumType | null {
  const m = ds.metadata;
  // H5T_INTEGER = 0, H5T_FLOAT = 1 (h5wasm reports the HDF5 class id).
  if (m.type === 1) return { kind: "float", bytes: m.size, littleEndian: m.littleEndian };
  if (m.type === 0) return { kind: m.signed ? "int" : "uint", bytes: m.size, littleEndian: m.littleEndian };
  return null;
}

export function describeType(t: NumType | null): string {
  if (!t) return "non-numeric";
  const name = t.kind === "float" ? `float${t.bytes * 8}` : `${t.kind}${t.bytes * 8}`;
  return t.littleEndian || t.bytes === 1 ? name : `${name} (big-endian)`;
}

/** h5wasm reports an unlimited dimension as 2^64-1 (rounded to a double); we say null. */
export function maxshapeOf(ds: Dataset): (number | null)[] | null {
  const ms = ds.metadata.maxshape;
  if (!ms) return null;
  return ms.map((d) => (d >= 2 ** 53 ? null : d));
}

export function firstLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  // h5wasm's thrown HDF5 stack: the most useful line is the deepest "minor:" one.
  const minors = lines.filter((l) => l.startsWith("minor:"));
  if (minors.length > 0) return minors[minors.length - 1].replace(/^minor:\s*/, "");
  return lines[0] ?? "unknown error";
}
