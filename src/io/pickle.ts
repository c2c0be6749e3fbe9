// A small Python unpickler (protocols 0-5, the opcodes CPython and torch.save emit) that turns a
// pickle into a plain JS object tree. It never executes anything: globals become resolver calls.
// Owns no torch semantics: src/io/torch-checkpoint.ts supplies persistent_load and the resolvers.
import { InputError } from "../errors.ts";

/** An instance of a Python class this reader does not know: enough to walk `_parameters`/`_modules`. */
export interface PyObject {
  __class__: string;
  /** Constructor / reduce arguments. */
  args: unknown[];
  /** What BUILD (`__setstate__`) received, usually the instance `__dict__`. */
  state: unknown;
  /** Extra items appended or set on the object (list/dict subclasses). */
  items?: unknown[];
}

/** A Python global referenced by the pickle (class or function), not yet called. */
export interface PyGlobal {
  __global__: string;
}

export interface UnpickleOptions {
  /** Resolves a persistent id (BINPERSID / PERSID). Required if the pickle uses them. */
  persistentLoad?: (pid: unknown) => unknown;
  /**
   * Called for REDUCE / NEWOBJ on a global "module.Name". Return `undefined` to fall back to the
   * generic PyObject. Lets callers give meaning to e.g. torch._utils._rebuild_tensor_v2.
   */
  call?: (name: string, args: unknown[]) => unknown;
  /** Names the source in errors. */
  source?: string;
}

export function isPyObject(x: unknown): x is PyObject {
  return typeof x === "object" && x !== null && typeof (x as PyObject).__class__ === "string" && "args" in x;
}

export function isPyGlobal(x: unknown): x is PyGlobal {
  return typeof x === "object" && x !== null && typeof (x as PyGlobal).__global__ === "string";
}

/** Python dict keys become JS string keys (ints as decimal, tuples as JSON). */
function dictKey(k: unknown): string {
  if (typeof k === "string") return k;
  if (typeof k === "number" || typeof k === "bigint" || typeof k === "boolean") return String(k);
  if (k === null) return "None";
  return JSON.stringify(k, (_, v) => (typeof v === "bigint" ? v.toString() : v));
}

function setItem(target: unknown, k: unknown, v: unknown, fail: (m: string) => never): void {
  if (isPyObject(target)) {
    // A dict subclass (OrderedDict is mapped to a plain object; others keep their items here).
    (target.items ??= []).push([k, v]);
    return;
  }
  if (typeof target !== "object" || target === null || Array.isArray(target)) fail("SETITEM on a non-dict");
  // defineProperty: a "__proto__" key must become data, not change the prototype.
  Object.defineProperty(target, dictKey(k), { value: v, enumerable: true, writable: true, configurable: true });
}

/** Decodes a pickle. Throws InputError (naming `source`) on malformed or unsupported data. */
export function unpickle(buf: Uint8Array, options: UnpickleOptions = {}): unknown {
  const source = options.source ?? "<pickle>";
  const fail = (why: string): never => {
    throw new InputError(`${source}: cannot read pickle (${why} at byte ${pos})`, {
      hint: "the file may be truncated or not a Python pickle / PyTorch checkpoint",
    });
  };
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dec = new TextDecoder("utf-8");
  let pos = 0;
  // MARK saves the stack by reference and starts an empty one; popping the mark swaps back. No
  // copying, no spread (a spread of 300k items overflows the call stack).
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const need = (n: number) => {
    if (pos + n > buf.byteLength) fail("unexpected end of data");
  };
  const u8 = () => (need(1), buf[pos++]);
  const u16 = () => (need(2), (pos += 2), dv.getUint16(pos - 2, true));
  const u32 = () => (need(4), (pos += 4), dv.getUint32(pos - 4, true));
  const i32 = () => (need(4), (pos += 4), dv.getInt32(pos - 4, true));
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail("8-byte length too large");
    return Number(v);
  };
  const bytes = (n: number) => {
    need(n);
    pos += n;
    return buf.subarray(pos - n, pos);
  };
  const line = () => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) fail("unterminated text line");
    const s = dec.decode(buf.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = () => {
    if (stack.length === 0) fail("stack underflow");
    return stack.pop();
  };
  const top = () => {
    if (stack.length === 0) fail("stack underflow");
    return stack[stack.length - 1];
  };
  // Not `stack.push(popMark())`: that evaluates `stack` (the marked one) before popMark swaps it.
  const push = (v: unknown): void => {
    stack.push(v);
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (!prev) fail("MARK missing");
    stack = prev!;
    return items;
  };
  const decodeLong = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const latin1 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1");
  const callGlobal = (fn: unknown, args: unknown[]): unknown => {
    if (!isPyGlobal(fn)) {
      // Calling a class object that was itself produced by a call: keep it generic.
      return { __class__: "<callable>", args: [fn, ...args], state: undefined } satisfies PyObject;
    }
    const name = fn.__global__;
    const builtin = builtinCall(name, args);
    if (builtin !== undefined) return builtin;
    const custom = options.call?.(name, args);
    if (custom !== undefined) return custom;
    return { __class__: name, args, state: undefined } satisfies PyObject;
  };
  const makeGlobal = (module: string, name: string): PyGlobal => ({ __global__: `${module}.${name}` });

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        u8();
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      // --- constants and numbers
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(decodeLong(bytes(u8())));
        break;
      case 0x8b: // LONG4
        stack.push(decodeLong(bytes(i32())));
        break;
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x49: {
        // INT (text); "01"/"00" are True/False in protocol 0
        const s = line();
        stack.push(s === "01" ? true : s === "00" ? false : Number(s));
        break;
      }
      case 0x4c: {
        // LONG (text, trailing L)
        const s = line().replace(/L$/, "");
        const v = BigInt(s);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x46: // FLOAT (text)
        stack.push(Number(line()));
        break;
      // --- strings and bytes
      case 0x58: // BINUNICODE
        stack.push(dec.decode(bytes(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(dec.decode(bytes(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(dec.decode(bytes(u64())));
        break;
      case 0x56: {
        // UNICODE: raw-unicode-escape = latin-1 bytes with \uXXXX / \UXXXXXXXX escapes
        const end = buf.indexOf(0x0a, pos);
        if (end < 0) fail("unterminated text line");
        const raw = latin1(buf.subarray(pos, end));
        pos = end + 1;
        stack.push(raw.replace(/\\u([0-9a-fA-F]{4})|\\U([0-9a-fA-F]{8})/g, (_, a: string, b: string) => String.fromCodePoint(parseInt(a ?? b, 16))));
        break;
      }
      case 0x54: // BINSTRING (py2 str: latin1)
        stack.push(latin1(bytes(i32())));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1(bytes(u8())));
        break;
      case 0x53: {
        // STRING (quoted repr)
        const s = line();
        stack.push(s.slice(1, -1));
        break;
      }
      case 0x42: // BINBYTES
        stack.push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(bytes(u64()).slice());
        break;
      case 0x96: // BYTEARRAY8
        stack.push(bytes(u64()).slice());
        break;
      // --- containers
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        const a = pop();
        stack.push([a, b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        const a = pop();
        stack.push([a, b, c]);
        break;
      }
      case 0x74: // TUPLE
        push(popMark());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        appendTo(top(), [v], fail);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        appendTo(top(), items, fail);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push({});
        break;
      case 0x64: {
        // DICT
        const items = popMark();
        const d = {};
        for (let i = 0; i + 1 < items.length; i += 2) setItem(d, items[i], items[i + 1], fail);
        stack.push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItem(top(), k, v, fail);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        const d = top();
        for (let i = 0; i + 1 < items.length; i += 2) setItem(d, items[i], items[i + 1], fail);
        break;
      }
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail("ADDITEMS on a non-set");
        for (const it of items) (s as Set<unknown>).add(it);
        break;
      }
      case 0x91: // FROZENSET
        push(new Set(popMark()));
        break;
      // --- memo
      case 0x70: // PUT
        memo.set(Number(line()), top());
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x67: {
        // GET
        const k = Number(line());
        if (!memo.has(k)) fail(`memo key ${k} missing`);
        stack.push(memo.get(k));
        break;
      }
      case 0x68: {
        // BINGET
        const k = u8();
        if (!memo.has(k)) fail(`memo key ${k} missing`);
        stack.push(memo.get(k));
        break;
      }
      case 0x6a: {
        // LONG_BINGET
        const k = u32();
        if (!memo.has(k)) fail(`memo key ${k} missing`);
        stack.push(memo.get(k));
        break;
      }
      // --- objects
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        const name = line();
        stack.push(makeGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof name !== "string" || typeof module !== "string") fail("STACK_GLOBAL needs two strings");
        stack.push(makeGlobal(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        stack.push(callGlobal(fn, Array.isArray(args) ? args : [args]));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = pop();
        stack.push(callGlobal(cls, Array.isArray(args) ? args : [args]));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        const obj = callGlobal(cls, Array.isArray(args) ? args : [args]);
        if (isPyObject(obj) && kwargs && Object.keys(kwargs as object).length) obj.args.push(kwargs);
        stack.push(obj);
        break;
      }
      case 0x69: {
        // INST (protocol 0)
        const module = line();
        const name = line();
        push(callGlobal(makeGlobal(module, name), popMark()));
        break;
      }
      case 0x6f: {
        // OBJ (protocol 1)
        const items = popMark();
        stack.push(callGlobal(items[0], items.slice(1)));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        if (isPyObject(obj)) obj.state = state;
        else if (typeof obj === "object" && obj !== null && !Array.isArray(obj) && state && typeof state === "object") {
          // A known object given state (e.g. a tensor subclass's __dict__): keep it beside.
          Object.defineProperty(obj, "__state__", { value: state, enumerable: false, writable: true, configurable: true });
        }
        break;
      }
      case 0x51: // BINPERSID
        if (!options.persistentLoad) fail("persistent id found but no persistent_load given");
        stack.push(options.persistentLoad!(pop()));
        break;
      case 0x50: // PERSID
        if (!options.persistentLoad) fail("persistent id found but no persistent_load given");
        stack.push(options.persistentLoad!(line()));
        break;
      case 0x82: // EXT1
      case 0x83: // EXT2
      case 0x84: // EXT4
        fail("copyreg extension codes are not supported");
        break;
      case 0x97: // NEXT_BUFFER
      case 0x98: // READONLY_BUFFER
        fail("out-of-band buffers (protocol 5) are not supported");
        break;
      default:
        fail(`unknown opcode 0x${op.toString(16).padStart(2, "0")}`);
    }
  }
}

function appendTo(target: unknown, items: unknown[], fail: (m: string) => never): void {
  let dest: unknown[];
  if (Array.isArray(target)) dest = target;
  else if (isPyObject(target)) dest = target.items ??= [];
  else fail("APPEND on a non-list");
  for (const it of items) dest!.push(it);
}

/** Python builtins whose meaning is fixed; undefined = not a builtin this reader maps. */
function builtinCall(name: string, args: unknown[]): unknown {
  switch (name) {
    case "collections.OrderedDict":
    case "builtins.dict":
    case "__builtin__.dict": {
      const d: Record<string, unknown> = {};
      // OrderedDict(list_of_pairs) form
      if (Array.isArray(args[0])) for (const kv of args[0] as unknown[][]) d[dictKey(kv[0])] = kv[1];
      return d;
    }
    case "builtins.list":
    case "__builtin__.list":
      return Array.isArray(args[0]) ? [...(args[0] as unknown[])] : [];
    case "builtins.tuple":
    case "__builtin__.tuple":
      return Array.isArray(args[0]) ? [...(args[0] as unknown[])] : [];
    case "builtins.set":
    case "builtins.frozenset":
    case "__builtin__.set":
      return new Set(Array.isArray(args[0]) ? (args[0] as unknown[]) : []);
    case "_codecs.encode":
      // protocol-2 pickles of `bytes`: _codecs.encode(text, "latin1")
      if (typeof args[0] === "string") return new Uint8Array(Buffer.from(args[0], "latin1"));
      return undefined;
    case "builtins.bytearray":
    case "__builtin__.bytearray":
      if (args[0] instanceof Uint8Array) return args[0];
      if (args.length === 0) return new Uint8Array(0);
      return undefined;
    case "builtins.slice":
      return { __class__: "builtins.slice", args, state: undefined };
    default:
      return undefined;
  }
}
