// End to end: the real CLI (bin/sed-pipe.js) on a temp project with counting fake stages.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFile, rm, stat, utimes, writeFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { PARAMS, STAGES, cli, counts, exists, makeProject } from "../helpers/project.ts";
import { removeDir, withTimeout } from "../helpers/tmp.ts";

const T = 120_000;

test("first run executes everything once; the second executes nothing", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        const r1 = await cli(root, "run");
        assert.is(r1.code, 0, r1.stdout + r1.stderr);
        assert.equal((await counts(root)).sort(), ["flaky", "make@a", "make@b", "slow", "sum"]);
        assert.is(await readFile(join(root, "artifacts/sum/total.txt"), "utf8"), "total=6");
        assert.match(r1.stdout, /done: 5 ran, 0 restored, 0 fresh, 0 failed, 0 not run/);

        const r2 = await cli(root, "run");
        assert.is(r2.code, 0);
        assert.match(r2.stdout, /plan: 0 to run, 0 to restore, 5 fresh/);
        assert.is((await counts(root)).length, 5);

        const st = await cli(root, "status");
        assert.is(st.code, 0);
        assert.match(st.stdout, /5 fresh, 0 stale, 0 missing/);
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test("a param change reruns only that stage and its downstream; status and why say what changed", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        assert.is((await cli(root, "run")).code, 0);
        await writeFile(join(root, "params/demo.yaml"), PARAMS({ scale: 3 }));
        const st = await cli(root, "status");
        assert.match(st.stdout, /stale\s+sum\s+param scale: 2 -> 3/);
        assert.match(st.stdout, /4 fresh, 1 stale, 0 missing/);
        const why = await cli(root, "why", "sum");
        assert.is(why.code, 0);
        assert.match(why.stdout, /sum: run \(param scale: 2 -> 3\)/);
        assert.match(why.stdout, /- param scale: 2 -> 3/);

        const before = (await counts(root)).length;
        assert.is((await cli(root, "run")).code, 0);
        assert.equal((await counts(root)).slice(before), ["sum"]);
        assert.is(await readFile(join(root, "artifacts/sum/total.txt"), "utf8"), "total=9");

        // An upstream item's param: that instance and its downstream, not its sibling.
        await writeFile(join(root, "params/demo.yaml"), PARAMS({ scale: 3, b: 5 }));
        const why2 = await cli(root, "why", "sum");
        assert.match(why2.stdout, /upstream make@b will run/);
        assert.match(why2.stdout, /because:\n\s+make@b: run \(param item.value: 2 -> 5\)/);
        const n = (await counts(root)).length;
        assert.is((await cli(root, "run", "sum")).code, 0);
        assert.equal((await counts(root)).slice(n), ["make@b", "sum"]);
        assert.is(await readFile(join(root, "artifacts/sum/total.txt"), "utf8"), "total=18");
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test("editing a helper imported by a stage reruns that stage only", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        assert.is((await cli(root, "run")).code, 0);
        await writeFile(join(root, "stages/lib/fmt.ts"), STAGES["lib/fmt.ts"]!.replace('"total="', '"sum="'));
        const st = await cli(root, "status");
        assert.match(st.stdout, /stale\s+sum\s+code stages\/lib\/fmt.ts changed/);
        const n = (await counts(root)).length;
        assert.is((await cli(root, "run")).code, 0);
        assert.equal((await counts(root)).slice(n), ["sum"]);
        assert.is(await readFile(join(root, "artifacts/sum/total.txt"), "utf8"), "sum=6");
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test("deleting artifacts/ restores everything from the cache with zero executions", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        assert.is((await cli(root, "run")).code, 0);
        await rm(join(root, "artifacts"), { recursive: true });
        const st = await cli(root, "status");
        assert.match(st.stdout, /0 fresh, 0 stale, 5 missing/);
        const r = await cli(root, "run");
        assert.is(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /done: 0 ran, 5 restored/);
        assert.is((await counts(root)).length, 5);
        assert.is(await readFile(join(root, "artifacts/sum/total.txt"), "utf8"), "total=6");
        assert.match((await cli(root, "status")).stdout, /5 fresh/);
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test("an output folder's file rewritten in place, same size, old mtime put back: status sees it, run restores it", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        assert.is((await cli(root, "run")).code, 0);
        assert.match((await cli(root, "status")).stdout, /5 fresh/, "warm: answered by the folder's tree record");
        const f = join(root, "artifacts/sum/total.txt");
        const before = await stat(f);
        await writeFile(f, "total=7");
        await utimes(f, before.atime, before.mtime);
        const st = await cli(root, "status");
        assert.match(st.stdout, /sum\s+outputs? modified/, st.stdout);
        assert.match(st.stdout, /4 fresh/);
        const r = await cli(root, "run");
        assert.is(r.code, 0, r.stdout + r.stderr);
        assert.is(await readFile(f, "utf8"), "total=6");
        assert.match((await cli(root, "status")).stdout, /5 fresh/);
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test("the launcher's preload (cache/state/listing-hint.json): an in-place edit is still seen; a hint naming gone folders or not a hint changes nothing", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        assert.is((await cli(root, "run")).code, 0);
        const hint = join(root, "cache/state/listing-hint.json");
        // Written by hand (sed-pipe hints only records of 256+ files): the output folder and one that is not there.
        await writeFile(hint, JSON.stringify({ version: 1, folders: [join(root, "artifacts/sum"), join(root, "artifacts/gone")] }));
        assert.match((await cli(root, "status")).stdout, /5 fresh/);
        const f = join(root, "artifacts/sum/total.txt");
        const before = await stat(f);
        await writeFile(f, "total=7");
        await utimes(f, before.atime, before.mtime);
        const st = await cli(root, "status");
        assert.match(st.stdout, /sum\s+outputs? modified/, st.stdout);
        const dry = await cli(root, "run", "--dry-run");
        assert.match(dry.stdout, /restore sum\s+outputs modified by hand/, dry.stdout);
        for (const bad of ["{not json", JSON.stringify({ version: 2, folders: [] }), JSON.stringify({ version: 1, folders: [7] })]) {
          await writeFile(hint, bad);
          const s = await cli(root, "status");
          assert.is(s.code, 0, s.stderr);
          assert.match(s.stdout, /sum\s+outputs? modified/, s.stdout);
          assert.match(s.stdout, /4 fresh/);
        }
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test("--dry-run runs nothing and prints the plan with reasons", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        const r = await cli(root, "run", "sum", "--dry-run");
        assert.is(r.code, 0);
        assert.match(r.stdout, /plan: 2 to run, 0 to restore, 0 fresh, 1 to decide after their upstream \(run, restore or fresh\) \(3 instances\)/);
        assert.match(r.stdout, /run\s+make@a\s+new: never ran \(no lock entry\)/);
        assert.match(r.stdout, /later\s+sum\s+upstream make@\w will run/);
        assert.match(r.stdout, /dry run: nothing was executed/);
        assert.equal(await counts(root), []);
        assert.not.ok(await exists(join(root, "artifacts")));
        assert.not.ok(await exists(join(root, "pipeline.lock")));
        const j = await cli(root, "run", "--dry-run", "--json");
        const events = j.stdout.trim().split("\n").map((l) => JSON.parse(l));
        assert.equal(events.map((e) => e.type), ["plan", "run-done"]);
        assert.is(events[0].steps.length, 5);
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test("a failing stage: exit 1 with its log tail and log path; others finish with --keep-going", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        await writeFile(join(root, "fail-flaky"), "");
        const r = await cli(root, "run", "--keep-going");
        assert.is(r.code, 1, r.stdout + r.stderr);
        assert.match(r.stdout, /FAILED flaky .*: flaky failed on purpose/);
        assert.match(r.stdout, /\| flaky: about to fail/);
        assert.match(r.stdout, /log: cache\/logs\/flaky.log/);
        assert.match(r.stdout, /done|failed: 4 ran, 0 restored, 0 fresh, 1 failed/);
        assert.not.ok(await exists(join(root, "artifacts/flaky.txt")));
        const logs = await cli(root, "logs", "flaky");
        assert.match(logs.stdout, /flaky: about to fail/);
        assert.match(logs.stdout, /Error: flaky failed on purpose/);
        const st = await cli(root, "status");
        assert.match(st.stdout, /stale\s+flaky\s+new: never ran/);
        assert.match(st.stdout, /4 fresh, 1 stale/);
        await rm(join(root, "fail-flaky"));
        const r2 = await cli(root, "run");
        assert.is(r2.code, 0);
        assert.match(r2.stdout, /done: 1 ran, 0 restored, 4 fresh/);
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test("usage and config errors exit 2 with error + hint and no stack trace", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        const r = await cli(root, "run", "nosuchstage");
        assert.is(r.code, 2);
        assert.match(r.stderr, /^error: unknown target "nosuchstage"/m);
        assert.match(r.stderr, /^hint: /m);
        assert.not.match(r.stderr, /\n\s+at /);
        await writeFile(join(root, "pipeline.lock"), "{ not json");
        const s = await cli(root, "status");
        assert.is(s.code, 2);
        assert.match(s.stderr, /error: pipeline\.lock: not valid JSON/);
        assert.match(s.stderr, /hint: move the damaged file aside \(`mv pipeline\.lock pipeline\.lock\.bad`\) and rerun/);
        const sub = await cli(join(root, "stages"), "dag");
        assert.is(sub.code, 0, "the root is found by walking up from a sub-folder");
        assert.match(sub.stdout, /sum  <- make/);
        const noRoot = await cli("/", "status");
        assert.is(noRoot.code, 2);
        assert.match(noRoot.stderr, /no pipeline\.yaml found/);
        const bad = await cli(root, "run", "-j", "zero");
        assert.is(bad.code, 2);
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test("invalidate removes lock entries (with --downstream), keeps the cache", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        assert.is((await cli(root, "run")).code, 0);
        const objectsBefore = (await readdir(join(root, "cache/objects/sha256"))).length;
        const r = await cli(root, "invalidate", "make@a", "--downstream");
        assert.is(r.code, 0, r.stderr);
        assert.match(r.stdout, /invalidated make@a\ninvalidated sum\n2 lock entries removed/);
        assert.is((await readdir(join(root, "cache/objects/sha256"))).length, objectsBefore);
        const lock = JSON.parse(await readFile(join(root, "pipeline.lock"), "utf8"));
        assert.equal(Object.keys(lock.instances).sort(), ["flaky", "make@b", "slow"]);
        const n = (await counts(root)).length;
        assert.is((await cli(root, "run")).code, 0);
        assert.equal((await counts(root)).slice(n).sort(), ["make@a", "sum"]);
      } finally {
        await removeDir(root);
      }
    })(),
    T,
  ));

test.run();
