import { test } from "uvu";
import * as assert from "uvu/assert";
import { unpickle, isPyObject } from "../../../src/io/pickle.ts";
import { InputError } from "../../../src/errors.ts";

const hex = (h: string) => new Uint8Array(Buffer.from(h, "hex"));

// Produced by CPython 3.11: pickle.dumps({...}, protocol=2) (see each test for the object).
const P2 =
  "80027d71002858010000006171015d7102284b014740040000000000004e88896558010000006271034b0158010000007871048671055801000000637106635f636f646563730a656e636f64650a7107580300000000c3bf710858060000006c6174696e31710986710a52710b5803000000626967710c8a0900000000000000004058030000006e6567710d4afbffffff58020000006f64710e63636f6c6c656374696f6e730a4f726465726564446963740a710f2952711058010000006b71114b0173752e";
const P4 =
  "80049558000000000000007d94288c0161945d94284b014740040000000000004e8889658c0162944b018c01789486948c016394430200ff948c03626967948a090000000000000000408c036e6567944afbffffff8c0173948f94284b014b0290752e";

test("protocol 2: dict, list, tuple, float, None, bools, bytes via _codecs, long, negative int, OrderedDict", () => {
  // {'a': [1, 2.5, None, True, False], 'b': (1, 'x'), 'c': b'\x00\xff', 'big': 2**70, 'neg': -5, 'od': OrderedDict(k=1)}
  const v = unpickle(hex(P2)) as Record<string, unknown>;
  assert.equal(v.a, [1, 2.5, null, true, false]);
  assert.equal(v.b, [1, "x"]);
  assert.equal(Array.from(v.c as Uint8Array), [0, 255]);
  assert.is(v.big, 2n ** 70n);
  assert.is(v.neg, -5);
  assert.equal(v.od, { k: 1 });
});

test("protocol 4: FRAME, SHORT_BINUNICODE, MEMOIZE, SHORT_BINBYTES, EMPTY_SET/ADDITEMS", () => {
  // same dict with 's': {1, 2} instead of 'od'
  const v = unpickle(hex(P4)) as Record<string, unknown>;
  assert.equal(v.a, [1, 2.5, null, true, false]);
  assert.equal(Array.from(v.c as Uint8Array), [0, 255]);
  assert.is(v.big, 2n ** 70n);
  assert.equal([...(v.s as Set<number>)], [1, 2]);
});

test("protocol 0 text opcodes incl. raw-unicode-escape", () => {
  // pickle.dumps([1, 'é', 3.0, -1], protocol=0)
  const v = unpickle(hex("286c70300a49310a6156e90a70310a6146332e300a61492d310a612e"));
  assert.equal(v, [1, "é", 3, -1]);
});

test("unknown classes become {__class__, args, state}", () => {
  // pickle.dumps(fractions.Fraction(1, 3), protocol=2)
  const v = unpickle(hex("8002636672616374696f6e730a4672616374696f6e0a71004b014b038671015271022e"));
  assert.ok(isPyObject(v));
  assert.is((v as { __class__: string }).__class__, "fractions.Fraction");
  assert.equal((v as { args: unknown[] }).args, [1, 3]);
});

test("call hook gives meaning to a global", () => {
  const v = unpickle(hex("8002636672616374696f6e730a4672616374696f6e0a71004b014b038671015271022e"), {
    call: (name, args) => (name === "fractions.Fraction" ? (args[0] as number) / (args[1] as number) : undefined),
  });
  assert.is(v, 1 / 3);
});

test("errors: truncated data, unknown opcode, persistent id without loader — InputError naming the source", () => {
  const cases: [Uint8Array, RegExp][] = [
    [hex(P2).subarray(0, 40), /x\.pkl: cannot read pickle \(unexpected end of data/],
    [hex("8002ff"), /unknown opcode 0xff/],
    [hex("80024b0151"), /persistent id found but no persistent_load/],
  ];
  for (const [bytes, re] of cases) {
    try {
      unpickle(bytes, { source: "x.pkl" });
      assert.unreachable("should throw");
    } catch (err) {
      assert.instance(err, InputError);
      assert.match((err as Error).message, re);
    }
  }
});

test("MARK-delimited runs of any length: 300k-item APPENDS and TUPLE, nested marks keep the outer stack", () => {
  const n = 300_000;
  const ints = (k: number) => {
    const b = new Uint8Array(2 * k);
    for (let i = 0; i < k; i++) (b[2 * i] = 0x4b), (b[2 * i + 1] = i & 255);
    return b;
  };
  // EMPTY_LIST MARK <n x BININT1> APPENDS STOP
  const list = unpickle(Uint8Array.from([0x5d, 0x28, ...ints(n), 0x65, 0x2e])) as number[];
  assert.is(list.length, n);
  assert.is(list[n - 1], (n - 1) & 255);
  // MARK <n ints> TUPLE STOP
  const tuple = unpickle(Uint8Array.from([0x28, ...ints(n), 0x74, 0x2e])) as number[];
  assert.is(tuple.length, n);
  // 7 MARK 1 MARK 2 TUPLE TUPLE TUPLE2 STOP -> (7, (1, (2,)))
  const nested = unpickle(hex("4b07284b01284b027474862e"));
  assert.equal(nested, [7, [1, [2]]]);
});

test("a '__proto__' dict key stays data", () => {
  // {'__proto__': 1} protocol 2
  const v = unpickle(hex("80027d71005809000000" + Buffer.from("__proto__").toString("hex") + "71014b01732e")) as Record<string, unknown>;
  assert.ok(Object.prototype.hasOwnProperty.call(v, "__proto__"));
  assert.is(Object.getPrototypeOf(v), Object.prototype);
});

test.run();
