// Writes float32 state dicts as PyTorch `torch.save` files (the zip format of torch >= 1.6), without
// Python: `<archive>/data.pkl` (pickle protocol 2 of `{"model": OrderedDict(name -> tensor)}`, each
// tensor a `torch._utils._rebuild_tensor_v2` of a persistent `FloatStorage`), `<archive>/data/<k>`
// (raw little-endian storages, 64-byte aligned like torch's writer), `byteorder` and `version`.
// Streamed tensor by tensor; same tensors, same bytes (fixed zip timestamps). For seeded stand-ins of
// the paper's DeiT checkpoint (download `generated-vit`, `format: pth`); `torch.load` reads them.
import { open, rename, rm } from "node:fs/promises";
import { crc32 } from "node:zlib";
import { SedPipeError } from "../errors.ts";
import { tempPathFor } from "./atomic.ts";

export interface TorchTensorIn {
  shape: number[];
  data: Float32Array;
}

// --- pickle protocol 2 ------------------------------------------------------------------------

class Pickler {
  private parts: Buffer[] = [];
  op(...bytes: number[]): this {
    this.parts.push(Buffer.from(bytes));
    return this;
  }
  global(module: string, name: string): this {
    this.parts.push(Buffer.from(`c${module}\n${name}\n`, "latin1"));
    return this;
  }
  str(s: string): this {
    const b = Buffer.from(s, "utf8");
    const h = Buffer.alloc(5);
    h[0] = 0x58; // BINUNICODE
    h.writeUInt32LE(b.length, 1);
    this.parts.push(h, b);
    return this;
  }
  int(n: number): this {
    if (!Number.isInteger(n) || n < 0 || n > 0x7fffffff) throw new SedPipeError(`pickle: int ${n} out of range`);
    if (n < 256) return this.op(0x4b, n); // BININT1
    const h = Buffer.alloc(5);
    h[0] = 0x4a; // BININT
    h.writeInt32LE(n, 1);
    this.parts.push(h);
    return this;
  }
  intTuple(xs: number[]): this {
    this.op(0x28); // MARK
    for (const x of xs) this.int(x);
    return this.op(0x74); // TUPLE
  }
  emptyOrderedDict(): this {
    return this.global("collections", "OrderedDict").op(0x29, 0x52); // EMPTY_TUPLE, REDUCE
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function contiguousStride(shape: number[]): number[] {
  const stride = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i];
  }
  return stride;
}

/** data.pkl of `{"model": OrderedDict(...)}` with tensor k stored as storage key String(k). */
export function statePickle(names: string[], tensors: TorchTensorIn[]): Buffer {
  const p = new Pickler().op(0x80, 2); // PROTO 2
  p.op(0x7d); // EMPTY_DICT (the checkpoint)
  p.str("model").emptyOrderedDict();
  names.forEach((name, k) => {
    const t = tensors[k];
    p.op(0x28); // MARK (SETITEMS below, one pair at a time)
    p.str(name);
    p.global("torch._utils", "_rebuild_tensor_v2").op(0x28);
    // persistent id: ('storage', torch.FloatStorage, key, 'cpu', numel)
    p.op(0x28).str("storage").global("torch", "FloatStorage").str(String(k)).str("cpu").int(t.data.length).op(0x74, 0x51); // TUPLE, BINPERSID
    p.int(0).intTuple(t.shape).intTuple(contiguousStride(t.shape));
    p.op(0x89); // NEWFALSE: requires_grad
    p.emptyOrderedDict(); // backward hooks
    p.op(0x74, 0x52); // TUPLE, REDUCE
    p.op(0x75); // SETITEMS
  });
  p.op(0x73); // SETITEM: checkpoint["model"] = state dict
  p.op(0x2e); // STOP
  return p.bytes();
}

// --- zip (stored, no zip64) -------------------------------------------------------------------

const DOS_DATE = 0x21; // 1980-01-01, time 00:00: fixed, so the same tensors give the same bytes
const ALIGN = 64;
const MAX_ZIP32 = 0xffffffff;

interface Entry {
  name: Buffer;
  crc: number;
  size: number;
  offset: number;
}

function localHeader(name: Buffer, crc: number, size: number, extraLen: number): Buffer {
  const h = Buffer.alloc(30);
  h.writeUInt32LE(0x04034b50, 0);
  h.writeUInt16LE(20, 4); // version needed
  h.writeUInt16LE(0, 6); // flags
  h.writeUInt16LE(0, 8); // stored
  h.writeUInt16LE(0, 10); // time
  h.writeUInt16LE(DOS_DATE, 12);
  h.writeUInt32LE(crc, 14);
  h.writeUInt32LE(size, 18);
  h.writeUInt32LE(size, 22);
  h.writeUInt16LE(name.length, 26);
  h.writeUInt16LE(extraLen, 28);
  return h;
}

function centralHeader(e: Entry): Buffer {
  const h = Buffer.alloc(46);
  h.writeUInt32LE(0x02014b50, 0);
  h.writeUInt16LE(20, 4); // made by
  h.writeUInt16LE(20, 6); // needed
  h.writeUInt16LE(0, 8);
  h.writeUInt16LE(0, 10);
  h.writeUInt16LE(0, 12);
  h.writeUInt16LE(DOS_DATE, 14);
  h.writeUInt32LE(e.crc, 16);
  h.writeUInt32LE(e.size, 20);
  h.writeUInt32LE(e.size, 24);
  h.writeUInt16LE(e.name.length, 28);
  // extra, comment, disk, internal attrs, external attrs: 0
  h.writeUInt32LE(e.offset, 42);
  return h;
}

function le32(data: Float32Array): Uint8Array {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new SedPipeError("torch writer: big-endian hosts are not supported");
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Writes `{"model": OrderedDict(tensors)}` as a torch.save zip, atomically (temporary file, then
 * rename). Entries are written one at a time; memory is one tensor at most.
 */
export async function writeTorchStateDict(file: string, tensors: Map<string, TorchTensorIn>, archive = "archive"): Promise<void> {
  const names = [...tensors.keys()];
  const list = names.map((n) => {
    const t = tensors.get(n)!;
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (numel !== t.data.length) throw new SedPipeError(`torch writer: ${n} has ${t.data.length} values for shape [${t.shape}]`);
    return t;
  });
  const tmp = tempPathFor(file);
  const fh = await open(tmp, "w");
  const entries: Entry[] = [];
  let pos = 0;
  const write = async (b: Uint8Array) => {
    await fh.write(b, 0, b.length, pos);
    pos += b.length;
  };
  const add = async (name: string, data: Uint8Array, align: boolean) => {
    const nameBytes = Buffer.from(`${archive}/${name}`, "utf8");
    const crc = crc32(data);
    // torch pads the extra field so that the data starts on a 64-byte boundary (for mmap loads).
    let extra = Buffer.alloc(0);
    if (align) {
      const start = pos + 30 + nameBytes.length;
      const pad = (ALIGN - ((start + 4) % ALIGN)) % ALIGN;
      extra = Buffer.alloc(4 + pad);
      extra.writeUInt16LE(0x4246, 0); // "FB", torch's padding record
      extra.writeUInt16LE(pad, 2);
    }
    if (pos + 30 + nameBytes.length + extra.length + data.length > MAX_ZIP32) {
      throw new SedPipeError(`torch writer: ${file} would pass 4 GiB (zip64 is not written)`);
    }
    entries.push({ name: nameBytes, crc, size: data.length, offset: pos });
    await write(localHeader(nameBytes, crc, data.length, extra.length));
    await write(nameBytes);
    if (extra.length) await write(extra);
    await write(data);
  };
  try {
    await add("data.pkl", statePickle(names, list), false);
    await add("byteorder", Buffer.from("little"), false);
    for (const [k, t] of list.entries()) await add(`data/${k}`, le32(t.data), true);
    await add("version", Buffer.from("3\n"), false);
    const cdStart = pos;
    for (const e of entries) {
      await write(centralHeader(e));
      await write(e.name);
    }
    const end = Buffer.alloc(22);
    end.writeUInt32LE(0x06054b50, 0);
    end.writeUInt16LE(entries.length, 8);
    end.writeUInt16LE(entries.length, 10);
    end.writeUInt32LE(pos - cdStart, 12);
    end.writeUInt32LE(cdStart, 16);
    await write(end);
    await fh.sync();
    await fh.close();
    await rename(tmp, file);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
}
