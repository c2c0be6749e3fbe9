// Prefetch (src/io/prefetch.ts): items in order, never more than `ahead` started beyond the one
// held (so ahead + 1 buffers suffice), errors surface when their item is taken, settle() waits.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Prefetch } from "../../../src/io/prefetch.ts";

/** A producer whose items finish when the test says so, recording what is alive at once. */
function controlled(count: number) {
  const resolvers: ((v: number) => void)[] = [];
  const rejecters: ((e: Error) => void)[] = [];
  const starts: number[] = [];
  const produce = (i: number) => {
    starts.push(i);
    return new Promise<number>((resolve, reject) => {
      resolvers[i] = resolve;
      rejecters[i] = reject;
    });
  };
  return { produce, starts, finish: (i: number) => resolvers[i]!(i * 10), fail: (i: number, e: Error) => rejecters[i]!(e), count };
}

test("in order; while item i is held, items up to i + ahead are started and no more", async () => {
  const c = controlled(6);
  const p = new Prefetch(c.count, 2, c.produce);
  assert.is(p.started, 0, "nothing starts before the first take");
  const t0 = p.take();
  assert.equal(c.starts, [0, 1, 2]);
  c.finish(2);
  c.finish(1);
  c.finish(0);
  assert.is(await t0, 0);
  // Holding item 0: 1 and 2 are ahead; 3 waits for item 0 to be given back (the next take).
  assert.is(p.started, 3);
  const t1 = p.take();
  assert.equal(c.starts, [0, 1, 2, 3], "item 3 reuses item 0's buffer: started only now");
  assert.is(await t1, 10);
  const t2 = p.take();
  assert.is(await t2, 20);
  assert.equal(c.starts, [0, 1, 2, 3, 4]);
  const t3 = p.take();
  assert.equal(c.starts, [0, 1, 2, 3, 4, 5], "never past the count");
  for (const i of [3, 4, 5]) c.finish(i);
  assert.is(await t3, 30);
  assert.is(await p.take(), 40);
  assert.is(await p.take(), 50);
  await p.take().then(() => assert.unreachable(), (e: Error) => assert.match(e.message, /all 6 items were taken/));
});

test("ring of ahead + 1 buffers: the producer never writes the buffer of the item held", async () => {
  const ahead = 2;
  const buffers = Array.from({ length: ahead + 1 }, () => ({ owner: -1 }));
  // Items below `released` were given back by the consumer (it took a later one).
  let released = 0;
  const p = new Prefetch(20, ahead, async (i) => {
    const b = buffers[i % buffers.length]!;
    assert.ok(b.owner < released, `item ${i} would overwrite item ${b.owner}, which the consumer still holds`);
    b.owner = i;
    await new Promise((r) => setTimeout(r, i % 3));
    return i;
  });
  for (let i = 0; i < 20; i++) {
    released = i;
    const got = await p.take();
    assert.is(got, i);
    assert.is(buffers[i % buffers.length]!.owner, i, "the held item's buffer is still its own");
    await new Promise((r) => setTimeout(r, 1));
    assert.is(buffers[i % buffers.length]!.owner, i, "and stays so while it is held");
  }
});

test("a failure surfaces when its item is taken, not before (no unhandled rejection); settle waits for the rest", async () => {
  const c = controlled(5);
  const p = new Prefetch(c.count, 2, c.produce);
  const t0 = p.take();
  c.fail(1, new Error("item 1 is bad"));
  await new Promise((r) => setTimeout(r, 5));
  c.finish(0);
  assert.is(await t0, 0);
  await p.take().then(() => assert.unreachable(), (e: Error) => assert.match(e.message, /item 1 is bad/));
  // Stopping early: items 2 and 3 are in flight; settle resolves once they settle, whatever they do.
  let settled = false;
  const s = p.settle().then(() => (settled = true));
  await new Promise((r) => setTimeout(r, 5));
  assert.not.ok(settled);
  c.finish(2);
  c.fail(3, new Error("ignored"));
  await s;
  assert.ok(settled);
});

test("a producer that throws synchronously is a rejected item; ahead 0 produces one at a time", async () => {
  const p = new Prefetch(2, 0, (i) => {
    if (i === 1) throw new Error("sync throw");
    return Promise.resolve(i);
  });
  assert.is(await p.take(), 0);
  assert.is(p.started, 1);
  await p.take().then(() => assert.unreachable(), (e: Error) => assert.match(e.message, /sync throw/));
  assert.throws(() => new Prefetch(1, -1, () => Promise.resolve(0)), /ahead must be/);
});

test.run();
