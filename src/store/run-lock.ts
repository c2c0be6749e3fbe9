// One writer per workspace: `cache/run.lock` (a proper-lockfile lock with heartbeat) plus an owner
// note (pid, host, start time) so a waiting run can say who holds it and break a lock whose owner
// died on this host. Never touches pipeline.lock or outputs.
import { hostname } from "node:os";
import { mkdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import lockfile from "proper-lockfile";
import { SedPipeError } from "../errors.ts";
import { writeFileAtomic } from "../io/atomic.ts";

export interface RunLockOwner {
  pid: number;
  host: string;
  startedAt: string;
  command: string;
}

export interface AcquireOptions {
  /** Wait for the holder (true) or fail at once (false). */
  wait: boolean;
  /** Called once when the lock is taken by someone else and we start waiting. */
  onWait?: (owner: RunLockOwner | null) => void;
  /** What this process is doing, for the owner note (e.g. "run", "invalidate"). */
  command?: string;
  /** Heartbeat staleness: a lock not refreshed for this long is taken over (ms, >= 2000; default 30 s). */
  staleMs?: number;
  pollMs?: number;
  signal?: AbortSignal;
}

export interface RunLock {
  owner: RunLockOwner;
  release(): Promise<void>;
}

export function runLockPaths(cacheDir: string): { lock: string; owner: string } {
  return { lock: join(cacheDir, "run.lock"), owner: join(cacheDir, "run.lock.owner.json") };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

export async function readOwner(cacheDir: string): Promise<RunLockOwner | null> {
  try {
    return JSON.parse(await readFile(runLockPaths(cacheDir).owner, "utf8")) as RunLockOwner;
  } catch {
    return null;
  }
}

/** "the run started by pid 123 at 2026-...". */
export function describeOwner(o: RunLockOwner | null): string {
  if (!o) return "another sed-pipe process";
  return `the ${o.command || "run"} started by pid ${o.pid}${o.host !== hostname() ? ` on ${o.host}` : ""} at ${o.startedAt}`;
}

/** Waits `ms` or until `signal` aborts; the abort listener is removed either way (a wait polls
 *  every 250 ms for as long as another run holds the lock, and a listener per poll would pile up). */
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });

/** The error a `--no-wait` caller gets when the workspace is busy (one message for every path). */
export function busyError(owner: RunLockOwner | null, lockPath: string): SedPipeError {
  return new SedPipeError(`the workspace is busy: ${describeOwner(owner)} holds ${lockPath}`, {
    hint: "wait for it to finish, or run without --no-wait to wait for it",
  });
}

/**
 * Who holds the run lock now, when that is certain without taking it: the lock exists, was
 * refreshed within `staleMs`, and its owner note names a live process on this host (or a process on
 * another host). Cheap (two stats and a read), so `--no-wait` can fail before a command loads
 * anything heavy; null means "maybe free" (acquireRunLock decides).
 */
export async function liveHolder(cacheDir: string, staleMs = 30_000): Promise<RunLockOwner | null> {
  const paths = runLockPaths(cacheDir);
  const st = await stat(paths.lock).catch(() => null);
  if (!st || Date.now() - st.mtimeMs > Math.max(2000, staleMs)) return null;
  const owner = await readOwner(cacheDir);
  if (!owner || (owner.host === hostname() && !alive(owner.pid))) return null;
  return owner;
}

/**
 * Takes the workspace run lock. A lock whose owner process is dead (same host) is broken at once;
 * any other holder that stops refreshing the lock for `staleMs` is taken over by proper-lockfile.
 */
export async function acquireRunLock(cacheDir: string, opts: AcquireOptions): Promise<RunLock> {
  await mkdir(cacheDir, { recursive: true });
  const paths = runLockPaths(cacheDir);
  // Generous: a busy machine must not make a live run look dead (a dead owner on this host is
  // detected by pid at once, so this only matters for other hosts sharing the folder).
  const staleMs = Math.max(2000, opts.staleMs ?? 30_000);
  let announced = false;
  for (;;) {
    try {
      const release = await lockfile.lock(cacheDir, {
        lockfilePath: paths.lock,
        realpath: false,
        stale: staleMs,
        retries: 0,
        onCompromised: (err) => {
          // The heartbeat failed (e.g. cache/ deleted under us): keep going, the run's own writes are atomic.
          process.emitWarning(`sed-pipe run lock compromised: ${err.message}`);
        },
      });
      const owner: RunLockOwner = {
        pid: process.pid,
        host: hostname(),
        startedAt: new Date().toISOString(),
        command: opts.command ?? "run",
      };
      try {
        await writeFileAtomic(paths.owner, JSON.stringify(owner, null, 2) + "\n");
      } catch (err) {
        // No owner note (e.g. the disk is full): do not leave a lock that looks held for staleMs.
        await release().catch(() => {});
        throw err;
      }
      let released = false;
      return {
        owner,
        release: async () => {
          if (released) return;
          released = true;
          const cur = await readOwner(cacheDir);
          if (cur && cur.pid === owner.pid && cur.startedAt === owner.startedAt) await rm(paths.owner, { force: true });
          await release().catch(() => {});
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ELOCKED") throw err;
    }
    const owner = await readOwner(cacheDir);
    if (owner && owner.host === hostname() && !alive(owner.pid)) {
      // Guard against breaking a lock just re-taken by a third process: only a lock untouched for
      // a moment (a live holder refreshes it and writes its own owner note at once) is broken.
      const st = await stat(paths.lock).catch(() => null);
      if (st && Date.now() - st.mtimeMs > 1500) {
        const again = await readOwner(cacheDir);
        if (again && again.pid === owner.pid && again.startedAt === owner.startedAt) {
          await rm(paths.lock, { recursive: true, force: true });
          await rm(paths.owner, { force: true });
          continue;
        }
      }
    }
    if (!opts.wait) throw busyError(owner, paths.lock);
    if (!announced) {
      announced = true;
      opts.onWait?.(owner);
    }
    if (opts.signal?.aborted) throw new SedPipeError("interrupted while waiting for the run lock", { exitCode: 130 });
    await sleep(opts.pollMs ?? 250, opts.signal);
    if (opts.signal?.aborted) throw new SedPipeError("interrupted while waiting for the run lock", { exitCode: 130 });
  }
}
