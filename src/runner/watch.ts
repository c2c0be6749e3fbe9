// Watch mode's loop: run a cycle, watch the inputs it names (chokidar), wait for a debounced change,
// run again. Changes seen while a cycle runs are handled after it ends (the next cycle re-plans from
// disk, so nothing is recorded as seen that the run did not see). Never prints; never plans itself.
import { relative, resolve, sep } from "node:path";
import { watch, type FSWatcher } from "chokidar";

export type WatchEvent =
  /** The watcher is armed on `files` paths and waits for a change. */
  | { type: "watching"; files: number }
  /** Changed paths (project-relative) that start the next cycle. */
  | { type: "change"; paths: string[] }
  /** A cycle failed before or outside the run (e.g. pipeline.yaml does not parse); watching goes on. */
  | { type: "cycle-error"; error: unknown };

export interface WatchLoopOptions {
  root: string;
  /**
   * One cycle: plan from disk and run what is stale. `changed` is null for the first cycle.
   * Returns the paths (project-relative or absolute) whose changes should start the next cycle.
   */
  cycle(changed: string[] | null): Promise<string[]>;
  /** Quiet time after the last change before a cycle starts (ms; default 300). */
  debounceMs?: number;
  /** Stops the loop once the current cycle ends (the cycle gets it too, to stop its run). */
  signal: AbortSignal;
  onEvent?(e: WatchEvent): void;
  /** Watched when a cycle fails before naming its inputs (default: pipeline.yaml). */
  fallbackPaths?: string[];
  /** Stat polling instead of inotify/FSEvents (network file systems; some containers). */
  usePolling?: boolean;
}

/** Folders whose writes never start a cycle: sed-pipe's own cache, outputs, and installed packages. */
export const IGNORED_DIRS = ["cache", "artifacts", "node_modules", ".git", ".sed-pipe"];

export function isIgnored(root: string, abs: string): boolean {
  const rel = relative(root, abs);
  if (rel === "" || rel.startsWith("..")) return false;
  const first = rel.split(sep)[0]!;
  return IGNORED_DIRS.includes(first);
}

async function startWatcher(root: string, paths: string[], usePolling: boolean, onChange: (abs: string) => void): Promise<FSWatcher> {
  const w = watch(paths, {
    ignoreInitial: true,
    // Editors save by writing a temp file and renaming it over the original: report one change.
    atomic: true,
    usePolling,
    interval: 200,
    ignored: (p: string) => isIgnored(root, resolve(p)),
  });
  await new Promise<void>((r) => w.once("ready", () => r()));
  w.on("all", (_event, p) => onChange(resolve(p)));
  return w;
}

/** Runs until `signal` aborts; resolves after the last cycle has finished and the watcher closed. */
export async function watchLoop(o: WatchLoopOptions): Promise<void> {
  const root = resolve(o.root);
  const debounceMs = o.debounceMs ?? 300;
  const pending = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let waiter: ((paths: string[] | null) => void) | null = null;
  let watcher: FSWatcher | null = null;
  let watchedKey = "";
  let watchedCount = 0;
  let lastPaths: string[] = [];

  const fire = () => {
    timer = undefined;
    if (!waiter || pending.size === 0) return;
    const w = waiter;
    waiter = null;
    const paths = [...pending].map((p) => relative(root, p) || p).sort();
    pending.clear();
    w(paths);
  };
  const arm = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(fire, debounceMs);
  };
  const onChange = (abs: string) => {
    pending.add(abs);
    // During a cycle nobody waits: the change is kept and handled when the cycle ends.
    if (waiter) arm();
  };
  const onAbort = () => {
    if (timer) clearTimeout(timer);
    const w = waiter;
    waiter = null;
    w?.(null);
  };
  o.signal.addEventListener("abort", onAbort, { once: true });

  const nextChange = (): Promise<string[] | null> =>
    new Promise((resolveNext) => {
      if (o.signal.aborted) return resolveNext(null);
      waiter = resolveNext;
      if (pending.size > 0) arm();
    });

  try {
    let changed: string[] | null = null;
    for (;;) {
      let paths: string[] | null = null;
      try {
        paths = await o.cycle(changed);
      } catch (error) {
        o.onEvent?.({ type: "cycle-error", error });
        // Keep watching what we watched, plus the files most likely to hold the fix.
        paths = [...lastPaths, ...(o.fallbackPaths ?? ["pipeline.yaml"])];
      }
      lastPaths = paths;
      if (o.signal.aborted) break;
      {
        const abs = [...new Set(paths.map((p) => resolve(root, p)))].filter((p) => !isIgnored(root, p)).sort();
        const key = abs.join("\n");
        if (key !== watchedKey) {
          // The new watcher is armed before the old one goes, so no change falls between them.
          const next = await startWatcher(root, abs, !!o.usePolling, onChange);
          await watcher?.close();
          watcher = next;
          watchedKey = key;
          watchedCount = abs.length;
        }
      }
      o.onEvent?.({ type: "watching", files: watchedCount });
      const next = await nextChange();
      if (next === null) break;
      o.onEvent?.({ type: "change", paths: next });
      changed = next;
    }
  } finally {
    o.signal.removeEventListener("abort", onAbort);
    if (timer) clearTimeout(timer);
    await watcher?.close();
  }
}
