// Resource slots on literal machines and needs, alone and under the real scheduler: no processes.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { fitToMachine, localMachine, memoryBudgetMb, NOTHING, resourceSlots, type Machine, type Need } from "../../../src/runner/resource-slots.ts";
import { schedule } from "../../../src/runner/scheduler.ts";
import type { Resources } from "../../../src/pipeline/types.ts";

const need = (cpus: number, gpus = 0, memoryMb = 0): Need => ({ cpus, gpus, memoryMb });
const res = (over: Partial<Resources> = {}): Resources => ({ cpus: 1, memoryMb: null, gpus: 0, timeMinutes: null, options: {}, ...over });

function slotsFor(machine: Machine, jobs: number, needs: Record<string, Need>, maxBypass?: number) {
  return resourceSlots({ machine, jobs, need: (id) => needs[id] ?? need(1), ...(maxBypass !== undefined ? { maxBypass } : {}) });
}

test("an instance starts when its cpus, GPUs and memory fit in what is free; give returns them", () => {
  const s = slotsFor({ cores: 4, gpus: 1, memoryMb: 8000 }, 10, { a: need(2, 1, 4000), b: need(2, 0, 4000), c: need(1), d: need(1, 1), e: need(1, 0, 4001), f: need(1, 0, 4000) });
  assert.ok(s.tryTake("a"));
  assert.ok(s.tryTake("b"));
  assert.equal(s.free(), { cpus: 0, gpus: 0, memoryMb: 0, jobs: 8 });
  assert.not.ok(s.tryTake("c"), "no cpu left");
  s.give("b");
  assert.equal(s.free(), { cpus: 2, gpus: 0, memoryMb: 4000, jobs: 9 });
  assert.not.ok(s.tryTake("d"), "a cpu is free, but the one GPU is held by a");
  assert.not.ok(s.tryTake("e"), "1 MB more memory than is free");
  assert.ok(s.tryTake("f"), "exactly what is free");
  assert.ok(s.tryTake("c"), "the last cpu");
  s.give("a");
  assert.ok(s.tryTake("d"), "the GPU is back");
  s.give("nobody");
  assert.equal(s.free(), { cpus: 1, gpus: 0, memoryMb: 4000, jobs: 7 }, "giving for an instance that holds nothing changes nothing");
});

test("-j caps the count even when resources are left; a count refusal is not a wait for resources", () => {
  const s = slotsFor({ cores: 8, gpus: 0, memoryMb: 1000 }, 2, {}, 1);
  assert.ok(s.tryTake("a"));
  assert.ok(s.tryTake("b"));
  assert.not.ok(s.tryTake("c"));
  assert.is(s.free().cpus, 6);
  s.give("a");
  assert.ok(s.tryTake("d"), "d may go first: c was only refused for the count, it holds no reservation");
  assert.is(s.reservedFor(), null);
});

test("no head-of-line blocking: smaller instances start past a big one that does not fit", () => {
  const s = slotsFor({ cores: 4, gpus: 0, memoryMb: 1000 }, 10, { big: need(4), s1: need(1), s2: need(1) });
  assert.ok(s.tryTake("x"));
  assert.not.ok(s.tryTake("big"));
  assert.ok(s.tryTake("s1"));
  assert.ok(s.tryTake("s2"));
  assert.is(s.reservedFor(), null, "2 bypasses are below the bound of 4");
});

test("bounded waiting: after maxBypass starts past it, new starts are held until the big one fits", () => {
  const s = slotsFor({ cores: 4, gpus: 0, memoryMb: 1000 }, 10, { big: need(4) }, 2);
  assert.ok(s.tryTake("x"));
  assert.not.ok(s.tryTake("big"));
  assert.ok(s.tryTake("s1"), "bypass 1");
  assert.is(s.reservedFor(), null);
  assert.ok(s.tryTake("s2"), "bypass 2: the bound");
  assert.is(s.reservedFor(), "big");
  s.give("x");
  assert.not.ok(s.tryTake("s3"), "a core is free, but it is kept for big");
  assert.not.ok(s.tryTake("big"), "big needs all 4");
  s.give("s1");
  s.give("s2");
  assert.ok(s.tryTake("big"));
  assert.is(s.reservedFor(), null);
  assert.not.ok(s.tryTake("s3"), "big has the machine");
  s.give("big");
  assert.ok(s.tryTake("s3"));
});

test("one reservation at a time, oldest refusal first; the next one counts the first's start as a bypass", () => {
  const s = slotsFor({ cores: 4, gpus: 0, memoryMb: 1000 }, 10, { b1: need(4), b2: need(3) }, 1);
  assert.ok(s.tryTake("x"));
  assert.ok(s.tryTake("y"));
  assert.not.ok(s.tryTake("b1"));
  assert.not.ok(s.tryTake("b2"));
  assert.ok(s.tryTake("s1"), "one start past both");
  assert.is(s.reservedFor(), "b1");
  s.give("x");
  s.give("y");
  s.give("s1");
  assert.not.ok(s.tryTake("b2"), "b2 would fit, but b1 holds the reservation");
  assert.ok(s.tryTake("b1"));
  assert.is(s.reservedFor(), "b2", "b1's start was a bypass of b2, which is at its bound");
  s.give("b1");
  assert.not.ok(s.tryTake("s2"));
  assert.ok(s.tryTake("b2"));
});

test("while a reservation holds, instances that take nothing still pass if they leave it a count slot", () => {
  const s = slotsFor({ cores: 2, gpus: 0, memoryMb: 1000 }, 3, { big: need(2), fresh1: NOTHING, fresh2: NOTHING }, 0);
  assert.ok(s.tryTake("x"));
  assert.not.ok(s.tryTake("big"));
  assert.is(s.reservedFor(), "big", "maxBypass 0: reserved at the first refusal");
  assert.ok(s.tryTake("fresh1"), "takes nothing, 2 count slots were left");
  assert.not.ok(s.tryTake("fresh2"), "would take the last count slot, which big needs");
  s.give("x");
  assert.ok(s.tryTake("big"));
});

test("needs are clamped to the machine, so an oversized one cannot wait forever", () => {
  const s = slotsFor({ cores: 2, gpus: 1, memoryMb: 1000 }, 10, { huge: need(64, 8, 1e9) });
  assert.ok(s.tryTake("huge"));
  assert.equal(s.free(), { cpus: 0, gpus: 0, memoryMb: 0, jobs: 9 });
});

test("fitToMachine: more than the machine is clamped to all of it, with a note saying so", () => {
  const m: Machine = { cores: 2, gpus: 0, memoryMb: 7168 };
  assert.equal(fitToMachine(res({ cpus: 2, memoryMb: 4096 }), m), { need: { cpus: 2, gpus: 0, memoryMb: 4096 }, notes: [] });
  assert.equal(fitToMachine(res(), m), { need: { cpus: 1, gpus: 0, memoryMb: 0 }, notes: [] }, "memory null takes nothing from the budget");
  assert.equal(fitToMachine(res({ cpus: 8, gpus: 1, memoryMb: 65536 }), m), {
    need: { cpus: 2, gpus: 0, memoryMb: 7168 },
    notes: [
      "asks 8 cpus, this machine has 2: it gets all 2 and runs alone",
      "asks 1 GPU, this machine has none (set --gpus or SED_PIPE_GPUS if it has some): it runs on a CPU backend",
      "asks 64G of memory, this machine has 7G to give: it gets all of it and runs alone",
    ],
  });
  assert.equal(fitToMachine(res({ gpus: 2 }), { ...m, gpus: 1 }), { need: { cpus: 1, gpus: 1, memoryMb: 0 }, notes: ["asks 2 GPUs, this machine has 1: it gets all 1"] });
});

test("memory budget: total less max(1 GiB, 10%); the machine reads cores and takes the GPUs given", () => {
  assert.is(memoryBudgetMb(8 * 1024 ** 3), 7168);
  assert.is(memoryBudgetMb(64 * 1024 ** 3), 58982);
  assert.is(memoryBudgetMb(512 * 1024 ** 2), 256, "a floor for tiny machines");
  const m = localMachine(2);
  assert.is(m.gpus, 2);
  assert.ok(Number.isInteger(m.cores) && m.cores >= 1);
  assert.ok(m.memoryMb >= 256);
});

/** The scheduler over resource slots with scripted tasks: returns the start/finish log. */
function run(order: string[], needs: Record<string, Need>, machine: Machine, jobs: number, maxBypass?: number) {
  const log: string[] = [];
  const pending = new Map<string, () => void>();
  const slots = slotsFor(machine, jobs, needs, maxBypass);
  const done = schedule({
    order,
    upstream: {},
    slots,
    keepGoing: false,
    signal: new AbortController().signal,
    process: (id) =>
      new Promise<void>((resolve) => {
        log.push(`start ${id}`);
        pending.set(id, resolve);
      }),
    onFailed: () => {},
    onBlocked: () => {},
  });
  const tick = async () => {
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  };
  const finish = async (id: string) => {
    const f = pending.get(id);
    assert.ok(f, `${id} is not running (log: ${log.join(", ")})`);
    pending.delete(id);
    log.push(`ok ${id}`);
    f!();
    await tick();
  };
  return { log, pending, done, tick, finish };
}

test("scheduler: a big instance first in order does not hold back smaller ones behind it", async () => {
  // 4 cores; a 1-cpu instance runs; big (4 cpus) comes first in the start order, then small ones.
  const r = run(["warm", "big", "s1", "s2", "s3"], { big: need(4) }, { cores: 4, gpus: 0, memoryMb: 1000 }, 10);
  await r.tick();
  assert.equal([...r.pending.keys()], ["warm", "s1", "s2", "s3"], "big waits; the small ones take the 3 free cores");
  for (const id of ["warm", "s1", "s2", "s3"]) await r.finish(id);
  assert.equal([...r.pending.keys()], ["big"]);
  await r.finish("big");
  const s = await r.done;
  assert.ok([...s.states.values()].every((st) => st === "ok"));
});

test("scheduler: with a stream of small instances, the big one starts after a bounded number of bypasses", async () => {
  const small = Array.from({ length: 12 }, (_, i) => `s${i}`);
  const r = run(["s0", "s1", "big", ...small.slice(2)], { big: need(2) }, { cores: 2, gpus: 0, memoryMb: 1000 }, 10, 3);
  await r.tick();
  assert.equal([...r.pending.keys()], ["s0", "s1"]);
  // Each finish frees one core: a small one takes it past big, until big has been bypassed 3 times.
  await r.finish("s0");
  await r.finish("s1");
  await r.finish("s2");
  assert.equal([...r.pending.keys()], ["s3", "s4"], "3 bypasses: s2, s3, s4");
  await r.finish("s3");
  assert.equal([...r.pending.keys()], ["s4"], "the free core is kept for big");
  await r.finish("s4");
  assert.equal([...r.pending.keys()], ["big"]);
  await r.finish("big");
  assert.equal([...r.pending.keys()], ["s5", "s6"]);
  for (const id of small.slice(5)) {
    await r.tick();
    if (r.pending.has(id)) await r.finish(id);
  }
  await r.done;
  const starts = r.log.filter((l) => l.startsWith("start")).map((l) => l.slice(6));
  assert.is(starts.indexOf("big"), 5, "big started sixth: after s0, s1 (before it came) and 3 bypasses");
});

test("scheduler: GPU instances share the machine's GPUs one at a time while CPU instances run beside them", async () => {
  const r = run(["g1", "g2", "c1", "c2"], { g1: need(1, 1), g2: need(1, 1) }, { cores: 4, gpus: 1, memoryMb: 1000 }, 4);
  await r.tick();
  assert.equal([...r.pending.keys()], ["g1", "c1", "c2"]);
  await r.finish("g1");
  assert.equal([...r.pending.keys()], ["c1", "c2", "g2"]);
  for (const id of ["c1", "c2", "g2"]) await r.finish(id);
  await r.done;
});

test.run();
