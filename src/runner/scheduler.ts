// The scheduling loop of a run: which instance starts when. Knows instances only as ids with upstream
// edges and a `process(id)` task; owns their states (waiting, running, ok, failed, blocked), the
// capacity (slots), the start order (most downstream work first), stopping after a failure
// (unless keepGoing) or on abort. No processes, files or events of its own: tested on literals.

/** Thrown by a task: fails that instance with this one-line message. */
export class InstanceFailure extends Error {
  constructor(
    message: string,
    readonly tail: string[] = [],
    /** The run was interrupted and stopped the instance: not the stage's fault. */
    readonly aborted = false,
    /** What the stage's own error said: its class, hint and exit code (2 for a config error). */
    readonly info: { name?: string; hint?: string; exitCode?: number } = {},
  ) {
    super(message);
  }
}

/**
 * Capacity: how many instances may run at once (countSlots), or what they take of the machine
 * (resource-slots.ts). Each scheduling pass offers every ready instance in start order: a refusal
 * does not end the pass, so a smaller instance behind a refused one may still start (a Slots that
 * needs an instance to go first refuses the others). An instance refused once is offered again on
 * every pass until it starts or the run stops.
 */
export interface Slots {
  /** Takes capacity for `id` if there is enough; false leaves it waiting. */
  tryTake(id: string): boolean;
  give(id: string): void;
}

export function countSlots(n: number): Slots {
  let free = Math.max(1, n);
  return {
    tryTake: () => (free > 0 ? (free--, true) : false),
    give: () => void free++,
  };
}

export type InstanceState = "waiting" | "running" | "ok" | "failed" | "blocked";

export interface ScheduleInput {
  /** Instance ids in topological order (the target closure: closed under upstream). */
  order: string[];
  upstream: Record<string, string[]>;
  slots: Slots;
  keepGoing: boolean;
  signal: AbortSignal;
  /** Brings one instance up to date; throws an InstanceFailure (anything else is wrapped into one). */
  process(id: string): Promise<void>;
  onFailed(id: string, err: InstanceFailure, durationMs: number): void;
  /** `because`: the failed upstream instance, or null when the run stopped scheduling. */
  onBlocked(id: string, because: string | null): void;
}

export interface ScheduleResult {
  states: Map<string, InstanceState>;
}

/**
 * Ready instances start in this order: most transitive downstream instances first (ties keep the
 * topological order). Training an ensemble unblocks dozens of evals, so it must not queue behind
 * every feature-caching instance just because those come first in topological order.
 */
export function criticalFirst(order: string[], upstream: Record<string, string[]>): string[] {
  const downstream = new Map<string, Set<string>>(order.map((id) => [id, new Set<string>()]));
  for (let i = order.length - 1; i >= 0; i--) {
    const id = order[i]!;
    const mine = downstream.get(id)!;
    for (const u of upstream[id] ?? []) {
      const theirs = downstream.get(u);
      if (!theirs) continue;
      theirs.add(id);
      for (const d of mine) theirs.add(d);
    }
  }
  const rank = new Map(order.map((id, i) => [id, i]));
  return [...order].sort((x, y) => downstream.get(y)!.size - downstream.get(x)!.size || rank.get(x)! - rank.get(y)!);
}

function asFailure(err: unknown): InstanceFailure {
  if (err instanceof InstanceFailure) return err;
  const e = err as Error;
  return new InstanceFailure(e?.message ?? String(err), (e?.stack ?? "").split("\n"));
}

export async function schedule(s: ScheduleInput): Promise<ScheduleResult> {
  const state = new Map<string, InstanceState>(s.order.map((id) => [id, "waiting"]));
  const blockedSource = new Map<string, string | null>();
  const running = new Map<string, Promise<void>>();
  const startOrder = criticalFirst(s.order, s.upstream);
  let stopping = false;

  const blockedBy = (id: string): string | null | undefined => {
    for (const u of s.upstream[id] ?? []) {
      const st = state.get(u);
      if (st === "failed") return u;
      if (st === "blocked") return blockedSource.get(u) ?? u;
    }
    return undefined;
  };
  const block = (id: string, because: string | null) => {
    state.set(id, "blocked");
    blockedSource.set(id, because);
    s.onBlocked(id, because);
  };
  const start = (id: string) => {
    state.set(id, "running");
    const t0 = Date.now();
    const job = s.process(id).then(
      () => void state.set(id, "ok"),
      (err: unknown) => {
        state.set(id, "failed");
        s.onFailed(id, asFailure(err), Date.now() - t0);
        if (!s.keepGoing) stopping = true;
      },
    );
    running.set(
      id,
      job.finally(() => {
        running.delete(id);
        s.slots.give(id);
      }),
    );
  };

  for (;;) {
    if (s.signal.aborted) stopping = true;
    // Settle what can never run: downstream of failures (with keepGoing).
    for (const id of s.order) {
      if (state.get(id) !== "waiting") continue;
      const b = blockedBy(id);
      if (b !== undefined) block(id, b);
    }
    if (!stopping) {
      for (const id of startOrder) {
        if (state.get(id) !== "waiting") continue;
        if (!(s.upstream[id] ?? []).every((u) => state.get(u) === "ok")) continue;
        if (s.slots.tryTake(id)) start(id);
      }
    }
    if (running.size === 0) {
      const left = s.order.filter((id) => state.get(id) === "waiting");
      if (left.length === 0) break;
      if (stopping) {
        for (const id of left) block(id, null);
        break;
      }
      // Nothing runs and nothing can start: only possible if the order is not closed under upstream.
      throw new Error(`runner stuck: ${left.join(", ")} wait for instances outside the run`);
    }
    await Promise.race(running.values());
  }
  return { states: state };
}
