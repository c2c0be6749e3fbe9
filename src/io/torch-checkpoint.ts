// Reads PyTorch `torch.save` files (zip archive: <dir>/data.pkl + <dir>/data/<key> raw storages)
// without Python. Tensors come back lazy and are read by byte range, so a 1 GB checkpoint is never
// loaded whole. Owns no model semantics: key names and shapes are the caller's business.
import { open, type FileHandle } from "node:fs/promises";
import yauzl from "yauzl";
import { InputError } from "../errors.ts";
import { unpickle, isPyObject, type PyObject } from "./pickle.ts";
import { widenHalfFloats } from "./half-float.ts";
import { readFullyAt } from "./read-at.ts";

export type TorchDtype = "float32" | "float64" | "float16" | "bfloat16" | "int64" | "int32" | "int16" | "int8" | "uint8" | "bool";
export type TorchData = Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Int8Array | Uint8Array;

/** A tensor inside a checkpoint; `read()` fetches only the bytes its view covers. */
export interface TorchTensor {
  readonly __tensor__: true;
  readonly dtype: TorchDtype;
  readonly shape: number[];
  readonly stride: number[];
  readonly storageOffset: number;
  readonly requiresGrad: boolean;
  /** The values in row-major (C) order, whatever the strides; float16/bfloat16 widened to float32. */
  read(): Promise<TorchData>;
  /** Same as read(), converted to float32 (int64 through Number). */
  readFloat32(): Promise<Float32Array>;
}

export interface TorchCheckpoint {
  readonly file: string;
  /** The unpickled object: dicts are plain objects, tensors TorchTensor, unknown classes PyObject. */
  readonly root: unknown;
  /** Closes the file; tensors cannot be read afterwards. */
  close(): Promise<void>;
}

const ITEM: Record<TorchDtype, number> = {
  float32: 4, float64: 8, float16: 2, bfloat16: 2, int64: 8, int32: 4, int16: 2, int8: 1, uint8: 1, bool: 1,
};

const STORAGE_DTYPE: Record<string, TorchDtype> = {
  FloatStorage: "float32", DoubleStorage: "float64", HalfStorage: "float16", BFloat16Storage: "bfloat16",
  LongStorage: "int64", IntStorage: "int32", ShortStorage: "int16", CharStorage: "int8", ByteStorage: "uint8",
  BoolStorage: "bool", UntypedStorage: "uint8",
};

const DTYPE_GLOBAL: Record<string, TorchDtype> = {
  float32: "float32", float: "float32", float64: "float64", double: "float64", float16: "float16", half: "float16",
  bfloat16: "bfloat16", int64: "int64", long: "int64", int32: "int32", int: "int32", int16: "int16", short: "int16",
  int8: "int8", uint8: "uint8", bool: "bool",
};

export function isTorchTensor(x: unknown): x is TorchTensor {
  return typeof x === "object" && x !== null && (x as TorchTensor).__tensor__ === true;
}

interface Storage {
  key: string;
  dtype: TorchDtype;
  /** Elements in the storage (bytes for UntypedStorage). */
  numel: number;
}

interface ZipEntryInfo {
  name: string;
  compressionMethod: number;
  compressedSize: number;
  uncompressedSize: number;
  entry: yauzl.Entry;
}

type ZipFileWithHeader = yauzl.ZipFile & {
  readLocalFileHeader(entry: yauzl.Entry, options: { minimal: true }, cb: (err: Error | null, h: { fileDataStart: number }) => void): void;
};

function bad(file: string, why: string, hint?: string): InputError {
  return new InputError(`${file}: ${why}`, {
    hint: hint ?? "expected a PyTorch checkpoint written by torch.save (torch >= 1.6 zip format)",
  });
}

async function readZipDirectory(file: string): Promise<{ zip: ZipFileWithHeader; entries: Map<string, ZipEntryInfo> }> {
  const zip = await new Promise<yauzl.ZipFile>((resolve, reject) =>
    yauzl.open(file, { lazyEntries: true, autoClose: false }, (err, z) => (err ? reject(err) : resolve(z!))),
  ).catch((err: Error) => {
    throw bad(file, `not a readable zip archive (${err.message})`);
  });
  const entries = new Map<string, ZipEntryInfo>();
  await new Promise<void>((resolve, reject) => {
    zip.on("entry", (e: yauzl.Entry) => {
      entries.set(e.fileName, {
        name: e.fileName,
        compressionMethod: e.compressionMethod,
        compressedSize: e.compressedSize,
        uncompressedSize: e.uncompressedSize,
        entry: e,
      });
      zip.readEntry();
    });
    zip.on("end", () => resolve());
    zip.on("error", (err: Error) => reject(bad(file, `corrupt zip archive (${err.message})`)));
    zip.readEntry();
  });
  return { zip: zip as ZipFileWithHeader, entries };
}

/**
 * Opens a torch.save checkpoint and unpickles its object tree. Tensors are lazy; call `close()` when
 * done reading them.
 */
export async function openTorchCheckpoint(file: string): Promise<TorchCheckpoint> {
  let fh: FileHandle;
  try {
    fh = await open(file, "r");
  } catch (err) {
    throw new InputError(`${file}: cannot open checkpoint (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  try {
    const magic = Buffer.alloc(4);
    await fh.read(magic, 0, 4, 0);
    if (magic[0] === 0x80) {
      throw bad(file, "legacy (pre-1.6, non-zip) torch.save format is not supported",
        "re-save it with torch >= 1.6: torch.save(torch.load(f), f2)");
    }
    if (magic.toString("latin1") !== "PK\x03\x04") throw bad(file, "not a zip archive (no PK header)");
    const { zip, entries } = await readZipDirectory(file);
    const pkl = [...entries.keys()].find((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (!pkl) {
      zip.close();
      throw bad(file, "no <archive>/data.pkl inside the zip");
    }
    const prefix = pkl.slice(0, -"data.pkl".length);
    const byteorder = entries.get(`${prefix}byteorder`);
    if (byteorder) {
      const bo = Buffer.from(await readEntryBytes(file, fh, zip, byteorder, 0, byteorder.uncompressedSize)).toString("utf8");
      if (bo.trim() !== "little") {
        zip.close();
        throw bad(file, `big-endian checkpoints are not supported (byteorder "${bo.trim()}")`);
      }
    }
    const pklBytes = await readEntryBytes(file, fh, zip, entries.get(pkl)!, 0, entries.get(pkl)!.uncompressedSize);
    let closed = false;
    const storageEntry = (key: string): ZipEntryInfo => {
      const e = entries.get(`${prefix}data/${key}`);
      if (!e) throw bad(file, `storage "${key}" referenced by data.pkl is missing from the archive`);
      return e;
    };
    const readStorageBytes = async (s: Storage, startByte: number, endByte: number): Promise<Uint8Array> => {
      if (closed) throw new Error(`${file}: checkpoint already closed`);
      const e = storageEntry(s.key);
      if (endByte > e.uncompressedSize) {
        throw bad(file, `storage "${s.key}" has ${e.uncompressedSize} bytes, a tensor needs ${endByte}`);
      }
      return readEntryBytes(file, fh, zip, e, startByte, endByte);
    };
    const root = unpickle(pklBytes, {
      source: `${file}:${pkl}`,
      persistentLoad: (pid) => {
        // ('storage', storage_type, key, location, numel)
        if (!Array.isArray(pid) || pid[0] !== "storage") {
          throw bad(file, `unsupported persistent id ${JSON.stringify(pid)}`);
        }
        const typeName = (pid[1] as { __global__?: string })?.__global__ ?? String(pid[1]);
        const short = typeName.split(".").pop()!;
        const dtype = STORAGE_DTYPE[short];
        if (!dtype) throw bad(file, `unsupported storage type ${typeName}`);
        return { key: String(pid[2]), dtype, numel: Number(pid[4]) } satisfies Storage;
      },
      call: (name, args) => rebuild(file, name, args, readStorageBytes),
    });
    return {
      file,
      root,
      close: async () => {
        if (closed) return;
        closed = true;
        zip.close();
        await fh.close();
      },
    };
  } catch (err) {
    await fh.close().catch(() => {});
    throw err;
  }
}

async function readEntryBytes(
  file: string,
  fh: FileHandle,
  zip: ZipFileWithHeader,
  e: ZipEntryInfo,
  start: number,
  end: number,
): Promise<Uint8Array> {
  if (e.compressionMethod === 0) {
    // STORED (torch writes everything stored, 64-byte aligned): read the byte range directly.
    const header = await new Promise<{ fileDataStart: number }>((resolve, reject) =>
      zip.readLocalFileHeader(e.entry, { minimal: true }, (err, h) => (err ? reject(err) : resolve(h))),
    ).catch((err: Error) => {
      throw bad(file, `corrupt zip entry ${e.name} (${err.message})`);
    });
    const out = new Uint8Array(end - start);
    await readFullyAt(fh, out, header.fileDataStart + start, `${file}: zip entry ${e.name}`);
    return out;
  }
  // Compressed entries (not written by torch, but valid zips): inflate as a stream and keep only
  // [start, end), so a read costs its own bytes in memory, not the whole entry twice.
  const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) =>
    zip.openReadStream(e.entry, (err, s) => (err ? reject(err) : resolve(s!))),
  ).catch((err: Error) => {
    throw bad(file, `cannot read zip entry ${e.name} (${err.message})`);
  });
  return sliceStream(stream as AsyncIterable<Uint8Array>, start, end, `${file}: zip entry ${e.name}`);
}

/** Bytes [start, end) of a byte stream, copied once into the result; stops reading at `end`. */
export async function sliceStream(stream: AsyncIterable<Uint8Array>, start: number, end: number, source: string): Promise<Uint8Array> {
  const out = new Uint8Array(end - start);
  let pos = 0; // stream offset of the next chunk
  for await (const c of stream) {
    const from = Math.max(start, pos);
    const to = Math.min(end, pos + c.byteLength);
    if (to > from) out.set(c.subarray(from - pos, to - pos), from - start);
    pos += c.byteLength;
    if (pos >= end) {
      (stream as unknown as { destroy?: () => void }).destroy?.();
      return out;
    }
  }
  if (pos < end) throw new InputError(`${source}: truncated (${end} bytes needed, the entry holds ${pos})`);
  return out;
}

type StorageReader = (s: Storage, start: number, end: number) => Promise<Uint8Array>;

function rebuild(file: string, name: string, args: unknown[], readBytes: StorageReader): unknown {
  switch (name) {
    case "torch._utils._rebuild_tensor_v2":
    case "torch._utils._rebuild_tensor":
    case "torch._utils._rebuild_tensor_v3": {
      // v2: (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      // v3 (torch 2.x, storage dtype given separately): (storage, offset, size, stride, requires_grad, hooks, dtype, ...)
      const [storage, offset, size, stride, requiresGrad] = args as [Storage, number, number[], number[], boolean];
      let dtype = storage.dtype;
      if (name === "torch._utils._rebuild_tensor_v3") {
        const g = (args[6] as { __global__?: string })?.__global__?.split(".").pop();
        if (g && DTYPE_GLOBAL[g]) dtype = DTYPE_GLOBAL[g];
      }
      return makeTensor(file, { ...storage, dtype }, Number(offset), size.map(Number), stride.map(Number), Boolean(requiresGrad), readBytes);
    }
    case "torch._utils._rebuild_parameter":
    case "torch._utils._rebuild_parameter_with_state": {
      const data = args[0];
      if (!isTorchTensor(data)) return undefined;
      return { ...data, requiresGrad: Boolean(args[1]) };
    }
    case "torch._tensor._rebuild_from_type_v2":
    case "torch._tensor._rebuild_from_type": {
      // (func, new_type, func_args, state): the tensor is what func builds.
      const fn = args[0] as { __global__?: string };
      const inner = fn?.__global__ ? rebuild(file, fn.__global__, (args[2] as unknown[]) ?? [], readBytes) : undefined;
      return inner;
    }
    case "torch.Size":
      return Array.isArray(args[0]) ? [...(args[0] as unknown[])] : undefined;
    default:
      return undefined;
  }
}

function makeTensor(
  file: string,
  storage: Storage,
  storageOffset: number,
  shape: number[],
  stride: number[],
  requiresGrad: boolean,
  readBytes: StorageReader,
): TorchTensor {
  const dtype = storage.dtype;
  const item = ITEM[dtype];
  const read = async (): Promise<TorchData> => {
    const numel = shape.reduce((a, b) => a * b, 1);
    if (numel === 0) return allocate(dtype, 0);
    let maxOff = storageOffset;
    for (let d = 0; d < shape.length; d++) maxOff += (shape[d] - 1) * stride[d];
    const minOff = storageOffset; // strides are non-negative in torch
    const raw = await readBytes(storage, minOff * item, (maxOff + 1) * item);
    const src = view(dtype, raw);
    // Contiguous C-order view: the range is exactly the tensor.
    let contiguous = true;
    let expect = 1;
    for (let d = shape.length - 1; d >= 0; d--) {
      if (shape[d] !== 1 && stride[d] !== expect) contiguous = false;
      expect *= shape[d];
    }
    if (contiguous) return src;
    const out = allocate(dtype, numel);
    const idx = new Array(shape.length).fill(0);
    let off = 0; // relative to minOff
    for (let i = 0; i < numel; i++) {
      (out as Float32Array)[i] = (src as Float32Array)[off];
      // odometer over dims, last fastest
      for (let d = shape.length - 1; d >= 0; d--) {
        idx[d]++;
        off += stride[d];
        if (idx[d] < shape[d]) break;
        off -= stride[d] * shape[d];
        idx[d] = 0;
      }
    }
    return out;
  };
  return {
    __tensor__: true,
    dtype,
    shape,
    stride,
    storageOffset,
    requiresGrad,
    read,
    readFloat32: async () => {
      const d = await read();
      if (d instanceof Float32Array) return d;
      const out = new Float32Array(d.length);
      for (let i = 0; i < d.length; i++) out[i] = Number(d[i]);
      return out;
    },
  };
}

function allocate(dtype: TorchDtype, n: number): TorchData {
  switch (dtype) {
    case "float32":
    case "float16":
    case "bfloat16":
      return new Float32Array(n);
    case "float64":
      return new Float64Array(n);
    case "int64":
      return new BigInt64Array(n);
    case "int32":
      return new Int32Array(n);
    case "int16":
      return new Int16Array(n);
    case "int8":
      return new Int8Array(n);
    case "uint8":
    case "bool":
      return new Uint8Array(n);
  }
}

function view(dtype: TorchDtype, raw: Uint8Array): TorchData {
  // raw is a fresh, 0-offset buffer (readEntryBytes allocates), so typed views are aligned.
  const b = raw.byteOffset % 8 === 0 ? raw : raw.slice();
  switch (dtype) {
    case "float32":
      return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    case "float64":
      return new Float64Array(b.buffer, b.byteOffset, b.byteLength / 8);
    case "int64":
      return new BigInt64Array(b.buffer, b.byteOffset, b.byteLength / 8);
    case "int32":
      return new Int32Array(b.buffer, b.byteOffset, b.byteLength / 4);
    case "int16":
      return new Int16Array(b.buffer, b.byteOffset, b.byteLength / 2);
    case "int8":
      return new Int8Array(b.buffer, b.byteOffset, b.byteLength);
    case "uint8":
    case "bool":
      return b;
    case "float16":
    case "bfloat16":
      return widenHalfFloats(b, dtype === "bfloat16" ? "bf16" : "f16");
  }
}


/**
 * Flattens a state dict or a pickled nn.Module into "a.b.c" -> tensor. nn.Module objects contribute
 * their `_parameters` and `_buffers` (None entries skipped) and recurse into `_modules`; plain dicts
 * recurse by key. Anything else is ignored.
 */
export function collectTensors(node: unknown, prefix = "", out = new Map<string, TorchTensor>()): Map<string, TorchTensor> {
  if (isTorchTensor(node)) {
    out.set(prefix, node);
    return out;
  }
  const join = (k: string) => (prefix ? `${prefix}.${k}` : k);
  if (isPyObject(node)) {
    const st = (node as PyObject).state as Record<string, unknown> | undefined;
    if (st && typeof st === "object") {
      for (const field of ["_parameters", "_buffers"]) {
        const d = st[field] as Record<string, unknown> | undefined;
        if (d && typeof d === "object") for (const [k, v] of Object.entries(d)) if (isTorchTensor(v)) out.set(join(k), v);
      }
      const mods = st._modules as Record<string, unknown> | undefined;
      if (mods && typeof mods === "object") for (const [k, v] of Object.entries(mods)) collectTensors(v, join(k), out);
    }
    return out;
  }
  if (typeof node === "object" && node !== null && !Array.isArray(node) && !(node instanceof Uint8Array)) {
    for (const [k, v] of Object.entries(node)) collectTensors(v, join(k), out);
  }
  return out;
}
