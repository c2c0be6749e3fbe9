import { test } from "uvu";
import * as assert from "uvu/assert";
import { Rng } from "../../../src/rng.ts";

test("same seed, same stream; different seed, different stream", () => {
  const a = new Rng(42), b = new Rng(42), c = new Rng(43);
  const xa = Array.from({ length: 8 }, () => a.nextU32());
  const xb = Array.from({ length: 8 }, () => b.nextU32());
  const xc = Array.from({ length: 8 }, () => c.nextU32());
  assert.equal(xa, xb);
  assert.not.equal(xa, xc);
});

test("state round-trips exactly", () => {
  const a = new Rng(7);
  for (let i = 0; i < 5; i++) a.next();
  const b = new Rng(a.state());
  assert.equal(Array.from({ length: 5 }, () => a.next()), Array.from({ length: 5 }, () => b.next()));
});

test("int is in range and roughly uniform; sample is distinct", () => {
  const r = new Rng(1);
  const counts = [0, 0, 0, 0, 0];
  for (let i = 0; i < 50_000; i++) counts[r.int(5)]++;
  for (const c of counts) assert.ok(Math.abs(c - 10_000) < 500, `count ${c}`);
  for (let i = 0; i < 100; i++) {
    const s = r.sample(5, 2);
    assert.is(s.length, 2);
    assert.is.not(s[0], s[1]);
  }
  assert.throws(() => r.int(0), /bad bound/);
});

test("next is in [0,1) and normal has mean ~0, var ~1", () => {
  const r = new Rng(3);
  let sum = 0, sq = 0;
  for (let i = 0; i < 20_000; i++) {
    const u = r.next();
    assert.ok(u >= 0 && u < 1);
    const z = r.normal();
    sum += z;
    sq += z * z;
  }
  assert.ok(Math.abs(sum / 20_000) < 0.05);
  assert.ok(Math.abs(sq / 20_000 - 1) < 0.05);
});

test.run();
