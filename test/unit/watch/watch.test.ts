// Watch mode on a temp project with tiny counting stages: a param edit reruns only what it affects,
// a content-identical save reruns nothing, and a change made while a run is going is handled after
// that run (the lock records what the run saw; the next cycle reruns with the new input).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, readFile, rename, rm, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { RunnerEvent } from "../../../src/runner/events.ts";
import { isIgnored, watchLoop, type WatchEvent } from "../../../src/runner/watch.ts";
import { runWatchCycle, watchedInputs } from "../../../src/runner/watch-cycle.ts";
import { openWorkspace } from "../../../src/runner/workspace.ts";
import { resolveTargets } from "../../../src/pipeline/select.ts";
import { PARAMS, STAGES, counts, exists, makeProject, waitFor } from "../../helpers/project.ts";
import { removeDir, tempDir, withTimeout } from "../../helpers/tmp.ts";

const T = 120_000;

interface Harness {
  events: RunnerEvent[];
  watch: WatchEvent[];
  cycles: number;
  /** `slow`'s recorded params.tag in pipeline.lock after each cycle. */
  lockTags: Array<string | undefined>;
  stop(): Promise<void>;
  /** Resolves when `n` cycles have finished and the loop is watching again. */
  idleAfter(n: number): Promise<void>;
}

function startWatch(root: string, targets: string[] = []): Harness {
  const ac = new AbortController();
  const h: Harness = {
    events: [],
    watch: [],
    cycles: 0,
    lockTags: [],
    stop: async () => {
      ac.abort();
      await loop;
    },
    idleAfter: (n) =>
      waitFor(() => h.cycles >= n && h.watch.at(-1)?.type === "watching", 60_000, `watch cycle ${n} to finish`),
  };
  const loop = watchLoop({
    root,
    signal: ac.signal,
    debounceMs: 150,
    onEvent: (e) => h.watch.push(e),
    cycle: async () => {
      try {
        const r = await runWatchCycle({
          root,
          targets,
          backend: "auto",
          fingerprintBackend: "wasm",
          workerEnv: process.env,
          jobs: 2,
          keepGoing: true,
          signal: ac.signal,
          openSink: async () => ({ sink: (e) => void h.events.push(e), close: async () => {} }),
        });
        return r.watch;
      } finally {
        const lock = await readFile(join(root, "pipeline.lock"), "utf8").then(JSON.parse, () => null);
        h.lockTags.push(lock?.instances?.slow?.parts?.params?.tag);
        h.cycles++;
      }
    },
  });
  return h;
}

/** Saves like an editor does (temp file + rename): one change event, never a half-written file. */
async function save(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${process.pid}`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

const runDones = (h: Harness) => h.events.filter((e) => e.type === "run-done").length;

test("watched inputs: pipeline.yaml, params, stage code closures; not produced deps, cache/ or artifacts/", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        const ws = await openWorkspace(root, { onWarn: () => {} });
        const { paths: files, unwatched } = await watchedInputs(ws.pipeline, resolveTargets(ws.pipeline, []));
        assert.equal(unwatched, []);
        assert.equal(files, [
          "params/demo.yaml",
          "pipeline.yaml",
          "stages/flaky.ts",
          "stages/lib/fmt.ts",
          "stages/make.ts",
          "stages/slow.ts",
          "stages/sum.ts",
        ]);
        // Deps outside the project: a file is watched by absolute path, a data folder is not.
        const ext = await tempDir("sed-pipe-ext-");
        try {
          await mkdir(join(ext, "images"));
          await writeFile(join(ext, "labels.txt"), "x");
          const yaml = await readFile(join(root, "pipeline.yaml"), "utf8");
          await writeFile(
            join(root, "pipeline.yaml"),
            yaml +
              `  ext:\n    module: stages/make.ts\n    deps:\n      images: ${join(ext, "images")}\n      labels: ${join(ext, "labels.txt")}\n` +
              `    params:\n      item: {name: ext, value: 1}\n    outs:\n      data: artifacts/ext.json\n`,
          );
          const ws2 = await openWorkspace(root, { onWarn: () => {} });
          const w2 = await watchedInputs(ws2.pipeline, resolveTargets(ws2.pipeline, ["ext"]));
          assert.equal(w2.unwatched, [join(ext, "images")]);
          assert.ok(w2.paths.includes(join(ext, "labels.txt")));
          assert.not.ok(w2.paths.includes("stages/sum.ts"), "only the targets' code is watched");
        } finally {
          await removeDir(ext);
        }
        assert.ok(isIgnored(root, join(root, "cache", "objects", "x")));
        assert.ok(isIgnored(root, join(root, "artifacts", "sum")));
        assert.not.ok(isIgnored(root, join(root, "params", "demo.yaml")));
        assert.not.ok(isIgnored(root, "/elsewhere/data"));
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test("a param edit reruns only the affected instances; a content-identical save reruns nothing", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      const h = startWatch(root, ["sum"]);
      try {
        await h.idleAfter(1);
        assert.equal((await counts(root)).sort(), ["make@a", "make@b", "sum"]);
        assert.is(runDones(h), 1);

        await save(join(root, "params/demo.yaml"), PARAMS({ b: 7 }));
        await h.idleAfter(2);
        assert.equal((await counts(root)).slice(3), ["make@b", "sum"]);
        assert.is(await readFile(join(root, "artifacts/sum/total.txt"), "utf8"), "total=16");
        assert.ok(h.watch.some((e) => e.type === "change" && e.paths.includes("params/demo.yaml")));

        // Same bytes written again, and a bare touch: a cycle plans, finds nothing stale, runs nothing.
        const n = (await counts(root)).length;
        await save(join(root, "params/demo.yaml"), PARAMS({ b: 7 }));
        await h.idleAfter(3);
        const later = new Date(Date.now() + 5000);
        await utimes(join(root, "stages/lib/fmt.ts"), later, later);
        await h.idleAfter(4);
        assert.is((await counts(root)).length, n, "nothing executed");
        assert.is(runDones(h), 2, "no run was started for content-identical saves");

        // Writes under artifacts/ and cache/ never start a cycle (checked by a later real change).
        await writeFile(join(root, "artifacts", "scratch.txt"), "x");
        await save(join(root, "stages/lib/fmt.ts"), STAGES["lib/fmt.ts"]!.replace('"total="', '"sum="'));
        await h.idleAfter(5);
        assert.equal((await counts(root)).slice(n), ["sum"], "a helper edit reruns only its stage");
        assert.is(await readFile(join(root, "artifacts/sum/total.txt"), "utf8"), "sum=16");
        const changes = h.watch.filter((e): e is Extract<WatchEvent, { type: "change" }> => e.type === "change");
        assert.not.ok(changes.some((c) => c.paths.some((p) => p.startsWith("artifacts") || p.startsWith("cache"))));
      } finally {
        await h.stop();
        await removeDir(root);
      }
    })(),
    T,
  ));

test("a change made during a run is handled after it: the lock keeps what the run saw, then it reruns", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      const h = startWatch(root, ["slow"]);
      try {
        await h.idleAfter(1);
        assert.equal(await counts(root), ["slow"]);
        // Hold the next run of `slow` open, start it with tag t2, and change the tag while it runs.
        await writeFile(join(root, "hold"), "");
        await rm(join(root, "started-slow"), { force: true });
        await save(join(root, "params/demo.yaml"), PARAMS({ tag: "t2" }));
        await waitFor(() => exists(join(root, "started-slow")), 60_000, "slow to start with t2");
        await save(join(root, "params/demo.yaml"), PARAMS({ tag: "t3" }));
        // Give the watcher time to see the change while the run is still held open.
        await new Promise((r) => setTimeout(r, 600));
        assert.is(h.cycles, 1, "the second cycle is still running");
        await rm(join(root, "hold"));
        await h.idleAfter(3);
        // The t2 run finished and was recorded as a t2 run; then t3 made it stale and it ran again.
        assert.equal(await counts(root), ["slow", "slow", "slow"]);
        assert.is(await readFile(join(root, "artifacts/slow.txt"), "utf8"), "slow done t3");
        const lock = JSON.parse(await readFile(join(root, "pipeline.lock"), "utf8"));
        assert.is(lock.instances.slow.parts.params.tag, "t3");
        assert.equal(h.lockTags, ["t1", "t2", "t3"], "the held run was recorded with the tag it saw");
        assert.is(runDones(h), 3);
      } finally {
        await rm(join(root, "hold"), { force: true });
        await h.stop();
        await removeDir(root);
      }
    })(),
    T,
  ));

test("a broken pipeline.yaml is reported and watched; fixing it runs again", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      const h = startWatch(root, ["make"]);
      try {
        await h.idleAfter(1);
        const good = await readFile(join(root, "pipeline.yaml"), "utf8");
        await save(join(root, "pipeline.yaml"), good.replace("stages:", "stages: [oops"));
        await waitFor(() => h.watch.some((e) => e.type === "cycle-error"), 60_000, "the error to be reported");
        await h.idleAfter(2);
        await save(join(root, "pipeline.yaml"), good.replace("${item.name}.json", "${item.name}.v2.json"));
        await h.idleAfter(3);
        assert.ok(await exists(join(root, "artifacts/data/a.v2.json")));
      } finally {
        await h.stop();
        await removeDir(root);
      }
    })(),
    T,
  ));

test.run();
