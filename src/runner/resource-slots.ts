// Capacity of a local run by resources: an instance starts when its cpus, GPUs and memory fit in what
// the running instances leave free, and fewer than `jobs` instances run (-j stays a cap on the count).
// Implements the scheduler's Slots; owns the budget arithmetic and the rule against starvation below.
// No processes, no events: the machine is passed in (localMachine reads it), tested on literals.
//
// No head-of-line blocking: the scheduler offers every ready instance in its start order, and one that
// does not fit (refused for resources) does not stop smaller ones behind it from starting.
// Bounded waiting: each start while an instance waits refused counts as one bypass of it. Once an
// instance has been bypassed `maxBypass` times (default MAX_BYPASS), it holds a reservation: no other
// instance starts until it has started (only instances that take no cpus, GPUs or memory, e.g. fresh
// ones that are only checked, still pass while a count slot is left for it). Running instances finish,
// nothing new takes their place, and since every need is clamped to the whole machine it fits at the
// latest when the machine is empty. Reservations go to one instance at a time, oldest refusal first.
import { availableParallelism, totalmem } from "node:os";
import type { Resources } from "../pipeline/types.ts";
import { formatMemory } from "../pipeline/resources.ts";
import type { Slots } from "./scheduler.ts";

/** What a local run may hand out. */
export interface Machine {
  cores: number;
  gpus: number;
  memoryMb: number;
}

/** What one running instance holds. */
export interface Need {
  cpus: number;
  gpus: number;
  memoryMb: number;
}

export const NOTHING: Need = Object.freeze({ cpus: 0, gpus: 0, memoryMb: 0 });

/** Starts past a waiting instance before new starts are held back for it. */
export const MAX_BYPASS = 4;

/** Memory kept back from stages: for the engine, the OS and page cache (max of 1 GiB and 10%). */
export function memoryBudgetMb(totalBytes: number): number {
  const totalMb = totalBytes / (1024 * 1024);
  return Math.max(256, Math.floor(totalMb - Math.max(1024, totalMb * 0.1)));
}

/** This machine: its cores, its memory less a margin, and the GPUs the user said it has. */
export function localMachine(gpus: number): Machine {
  return { cores: Math.max(1, availableParallelism()), gpus: Math.max(0, gpus), memoryMb: memoryBudgetMb(totalmem()) };
}

export interface Fitted {
  need: Need;
  /** Why the need is less than the request (empty when it fits the machine as asked). */
  notes: string[];
}

const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? "" : "s"}`;

/**
 * What an instance takes of the machine: its request, clamped to the whole machine. Asking for more
 * than there is is not refused: the instance gets everything and so runs alone. GPUs on a machine
 * without any: it takes none (its stage computes on a CPU backend).
 */
export function fitToMachine(r: Resources, m: Machine): Fitted {
  const notes: string[] = [];
  const need: Need = { cpus: r.cpus, gpus: r.gpus, memoryMb: r.memoryMb ?? 0 };
  if (r.cpus > m.cores) {
    need.cpus = m.cores;
    notes.push(`asks ${plural(r.cpus, "cpu")}, this machine has ${m.cores}: it gets all ${m.cores} and runs alone`);
  }
  if (r.gpus > 0 && m.gpus === 0) {
    need.gpus = 0;
    notes.push(`asks ${plural(r.gpus, "GPU")}, this machine has none (set --gpus or SED_PIPE_GPUS if it has some): it runs on a CPU backend`);
  } else if (r.gpus > m.gpus) {
    need.gpus = m.gpus;
    notes.push(`asks ${plural(r.gpus, "GPU")}, this machine has ${m.gpus}: it gets all ${m.gpus}`);
  }
  if (r.memoryMb !== null && r.memoryMb > m.memoryMb) {
    need.memoryMb = m.memoryMb;
    notes.push(`asks ${formatMemory(r.memoryMb)} of memory, this machine has ${formatMemory(m.memoryMb)} to give: it gets all of it and runs alone`);
  }
  return { need, notes };
}

export interface ResourceSlotsOptions {
  machine: Machine;
  /** Instances running at once, at most (-j). */
  jobs: number;
  /** What instance `id` takes while it runs (fitToMachine's need, or NOTHING). */
  need(id: string): Need;
  maxBypass?: number;
}

export interface ResourceSlots extends Slots {
  /** The instance new starts are held back for, if any. */
  reservedFor(): string | null;
  /** What is free now. */
  free(): Need & { jobs: number };
}

const isNothing = (n: Need) => n.cpus <= 0 && n.gpus <= 0 && n.memoryMb <= 0;

export function resourceSlots(o: ResourceSlotsOptions): ResourceSlots {
  const m = o.machine;
  const maxBypass = Math.max(0, o.maxBypass ?? MAX_BYPASS);
  const jobs = Math.max(1, o.jobs);
  const free = { cpus: m.cores, gpus: m.gpus, memoryMb: m.memoryMb, jobs };
  const held = new Map<string, Need>();
  /** Instances refused for resources, by first refusal (Map order), with their bypass counts. */
  const waiting = new Map<string, number>();
  let reserved: string | null = null;

  // Clamped again here so that no need can exceed the machine (and wait forever).
  const needOf = (id: string): Need => {
    const n = o.need(id);
    return { cpus: Math.min(Math.max(0, n.cpus), m.cores), gpus: Math.min(Math.max(0, n.gpus), m.gpus), memoryMb: Math.min(Math.max(0, n.memoryMb), m.memoryMb) };
  };
  const fits = (n: Need) => n.cpus <= free.cpus && n.gpus <= free.gpus && n.memoryMb <= free.memoryMb;

  const take = (id: string, n: Need) => {
    held.set(id, n);
    free.cpus -= n.cpus;
    free.gpus -= n.gpus;
    free.memoryMb -= n.memoryMb;
    free.jobs--;
    waiting.delete(id);
    if (reserved === id) reserved = null;
    for (const [w, count] of waiting) {
      waiting.set(w, count + 1);
      if (reserved === null && count + 1 >= maxBypass) reserved = w;
    }
  };

  return {
    tryTake(id) {
      if (held.has(id)) throw new Error(`instance ${id} already holds resources`);
      if (free.jobs <= 0) return false;
      const n = needOf(id);
      if (reserved !== null && reserved !== id) {
        // Held back for the reserved instance; something that takes nothing may pass if it leaves it a count slot.
        if (!(isNothing(n) && free.jobs > 1)) return false;
      }
      if (!fits(n)) {
        if (!waiting.has(id)) waiting.set(id, 0);
        if (reserved === null && maxBypass === 0) reserved = id;
        return false;
      }
      take(id, n);
      return true;
    },
    give(id) {
      const n = held.get(id);
      if (!n) return;
      held.delete(id);
      free.cpus += n.cpus;
      free.gpus += n.gpus;
      free.memoryMb += n.memoryMb;
      free.jobs++;
    },
    reservedFor: () => reserved,
    free: () => ({ ...free }),
  };
}
