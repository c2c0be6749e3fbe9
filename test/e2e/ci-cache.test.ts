// The CI cache end to end: run in one checkout, push to an HTTP store (started here on 127.0.0.1) or
// export a tar, then a fresh checkout pulls/imports and finds everything fresh, executing nothing.
// A corrupted object is refused. gc frees only unreferenced objects and state. cache key tracks inputs.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createServer, type Server } from "node:http";
import { readdir, readFile, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { main } from "../../src/cli.ts";
import { PARAMS, cli, counts, exists, makeProject } from "../helpers/project.ts";
import { removeDir, tempDir, withTimeout } from "../helpers/tmp.ts";

const T = 180_000;

interface Res {
  code: number;
  out: string;
  err: string;
}

/** Runs one sed-pipe command in-process through src/cli.ts main() (the same path as bin/sed-pipe.js). */
async function sp(cwd: string, ...args: string[]): Promise<Res> {
  let out = "";
  let err = "";
  const code = await main(args, {
    cwd,
    env: { ...process.env, NO_COLOR: "1", CI: "true" },
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    // Not a terminal, whatever runs the tests: plain lines into `out`.
    stdout: { isTTY: false, write: (t: string) => (out += t) },
    color: false,
    onSignal: () => () => {},
  });
  return { code, out, err };
}

/** A GET/PUT/HEAD object store in memory, like an nginx WebDAV location. */
async function startStore(): Promise<{ url: string; objects: Map<string, Buffer>; requests: string[]; close(): Promise<void> }> {
  const objects = new Map<string, Buffer>();
  const requests: string[] = [];
  const server: Server = createServer((req, res) => {
    const key = decodeURIComponent(new URL(req.url!, "http://x").pathname);
    requests.push(`${req.method} ${key}`);
    if (req.method === "PUT") {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        objects.set(key, Buffer.concat(chunks));
        res.statusCode = 201;
        res.end();
      });
      return;
    }
    const body = objects.get(key);
    if (req.method === "GET" || req.method === "HEAD") {
      if (!body) {
        res.statusCode = 404;
        res.end();
        return;
      }
      res.setHeader("content-length", String(body.length));
      res.statusCode = 200;
      res.end(req.method === "GET" ? body : undefined);
      return;
    }
    res.statusCode = 405;
    res.end();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/sed-cache`,
    objects,
    requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

test("CI scenario over HTTP: run + push; fresh checkout pulls; status all fresh; run executes nothing", () =>
  withTimeout(
    (async () => {
      const store = await startStore();
      const a = await makeProject();
      const b = await makeProject();
      try {
        const r1 = await sp(a, "run");
        assert.is(r1.code, 0, r1.out + r1.err);
        assert.is((await counts(a)).length, 5);

        const push = await sp(a, "cache", "push", "--remote", store.url);
        assert.is(push.code, 0, push.out + push.err);
        assert.match(push.out, /5 runs to http:\/\/127\.0\.0\.1:\d+\/sed-cache\/: \d+ objects sent/);
        const runKeys = [...store.objects.keys()].filter((k) => k.startsWith("/sed-cache/runs/"));
        assert.is(runKeys.length, 5);
        // Every run record was written after the objects it names.
        const firstRun = store.requests.findIndex((r) => r.startsWith("PUT /sed-cache/runs/"));
        const lastObject = store.requests.map((r) => r.startsWith("PUT /sed-cache/objects/")).lastIndexOf(true);
        assert.ok(firstRun > 0 && store.requests.slice(0, firstRun).some((r) => r.startsWith("PUT /sed-cache/objects/")));
        assert.ok(lastObject > 0);

        // A second push sends no object again.
        const push2 = await sp(a, "cache", "push", "--remote", store.url);
        assert.match(push2.out, /5 runs to .*: 0 objects sent \(0 B\)/);

        // The fresh checkout: no pipeline.lock, no cache/, no artifacts.
        assert.not.ok(await exists(join(b, "pipeline.lock")));
        const pull = await sp(b, "cache", "pull", "--remote", store.url);
        assert.is(pull.code, 0, pull.out + pull.err);
        assert.match(pull.out, /5 pulled .*0 refused/);
        const st = await sp(b, "status");
        assert.match(st.out, /5 fresh, 0 stale, 0 missing/, st.out + st.err);
        const run = await sp(b, "run", "sum");
        assert.is(run.code, 0, run.out + run.err);
        assert.match(run.out, /done: 0 ran, 0 restored, 3 fresh/);
        assert.equal(await counts(b), [], "nothing executed in the fresh checkout");
        assert.is(await readFile(join(b, "artifacts/sum/total.txt"), "utf8"), "total=6");

        // A param change in the checkout: only the runs with a matching fingerprint come across.
        const c = await makeProject();
        try {
          await writeFile(join(c, "params/demo.yaml"), PARAMS({ scale: 3 }));
          const pc = await sp(c, "cache", "pull", "--remote", store.url, "-v");
          assert.match(pc.out, /4 pulled .*1 not in/);
          assert.match(pc.out, /absent sum/);
          const rc = await sp(c, "run");
          assert.equal(await counts(c), ["sum"]);
          assert.is(rc.code, 0);
        } finally {
          await removeDir(c);
        }
      } finally {
        await store.close();
        await removeDir(a);
        await removeDir(b);
      }
    })(),
    T,
  ));

test("a corrupted object on the remote is refused and reported; nothing of that run is recorded", () =>
  withTimeout(
    (async () => {
      const store = await startStore();
      const a = await makeProject();
      const b = await makeProject();
      try {
        assert.is((await sp(a, "run", "sum")).code, 0);
        assert.is((await sp(a, "cache", "push", "--remote", store.url)).code, 0);
        const lock = JSON.parse(await readFile(join(a, "pipeline.lock"), "utf8"));
        const digest: string = lock.instances["make@a"].outs.data.digest;
        const key = `/sed-cache/objects/sha256/${digest.slice(7, 9)}/${digest.slice(9)}`;
        assert.ok(store.objects.has(key));
        store.objects.set(key, Buffer.from('{"value": 666}'));

        const pull = await sp(b, "cache", "pull", "--remote", store.url, "-v");
        assert.is(pull.code, 1, "a refused object makes the pull exit 1");
        assert.match(pull.err, new RegExp(`refused make@a: object ${digest.slice(7, 19)} from .* is corrupt: its bytes hash to [0-9a-f]{12}`));
        assert.match(pull.out, /pulled make@b \(1 objects, \d+ B; pushed by .+ at \d{4}-\d\d-\d\dT/);
        assert.match(pull.out, /skip\s+sum: a dep does not exist/);
        const lockB = JSON.parse(await readFile(join(b, "pipeline.lock"), "utf8"));
        assert.equal(Object.keys(lockB.instances).sort(), ["make@b"]);
        assert.not.ok(await exists(join(b, "cache/objects/sha256", digest.slice(7, 9), digest.slice(9))), "the bad object never enters the store");
        assert.not.ok(await exists(join(b, "artifacts/data/a.json")));
        // The run then recomputes only what was refused (and its downstream).
        const run = await sp(b, "run", "sum");
        assert.is(run.code, 0, run.out + run.err);
        assert.equal((await counts(b)).sort(), ["make@a", "sum"]);
      } finally {
        await store.close();
        await removeDir(a);
        await removeDir(b);
      }
    })(),
    T,
  ));

test("export to a .tar.gz and import in a fresh checkout; a damaged object in the tar is refused", () =>
  withTimeout(
    (async () => {
      const a = await makeProject();
      const b = await makeProject();
      const d = await makeProject();
      const out = await tempDir("sed-pipe-export-");
      try {
        assert.is((await sp(a, "run", "sum")).code, 0);
        const tarPath = join(out, "ci-cache.tar.gz");
        const ex = await sp(a, "cache", "export", tarPath);
        assert.is(ex.code, 0, ex.out + ex.err);
        assert.match(ex.out, /3 runs to /);
        const im = await sp(b, "cache", "import", tarPath);
        assert.is(im.code, 0, im.out + im.err);
        assert.match(im.out, /3 pulled/);
        assert.match((await sp(b, "status", "sum")).out, /3 fresh, 0 stale, 0 missing/);
        assert.match((await sp(b, "run", "sum")).out, /done: 0 ran, 0 restored, 3 fresh/);
        assert.equal(await counts(b), []);
        // Not the project's folders: the staging folder is gone.
        assert.equal(await readdir(join(b, "cache/tmp")).catch(() => []), []);

        // cache/ deleted but artifacts/ intact: export stores the outputs again from the workspace.
        await removeDir(join(a, "cache"));
        const again = await sp(a, "cache", "export", join(out, "again.tar"));
        assert.is(again.code, 0, again.out + again.err);
        assert.match(again.out, /3 runs to /);
        assert.not.match(again.err, /not sent/);

        // A folder export, damaged by hand, then imported.
        const dir = join(out, "dir-export");
        assert.is((await sp(a, "cache", "export", dir)).code, 0);
        const lock = JSON.parse(await readFile(join(a, "pipeline.lock"), "utf8"));
        const digest: string = lock.instances["make@b"].outs.data.digest;
        await writeFile(join(dir, "objects/sha256", digest.slice(7, 9), digest.slice(9)), "garbage");
        const im2 = await sp(d, "cache", "import", dir);
        assert.is(im2.code, 1);
        assert.match(im2.err, /refused make@b: object .* is corrupt/);

        // Not an export at all.
        const bad = await sp(d, "cache", "import", out);
        assert.is(bad.code, 2);
        assert.match(bad.err, /is not a sed-pipe cache export/);
      } finally {
        await removeDir(a);
        await removeDir(b);
        await removeDir(d);
        await removeDir(out);
      }
    })(),
    T,
  ));

test("gc frees only objects no lock entry references (dry run first); cache key follows the inputs", () =>
  withTimeout(
    (async () => {
      const a = await makeProject();
      try {
        assert.is((await sp(a, "run", "sum")).code, 0);
        const k1 = (await sp(a, "cache", "key")).out.trim();
        assert.match(k1, /^sed-pipe-v1-[a-z0-9]+-[a-z0-9]+-node\d+-[0-9a-f]{24}$/);
        assert.is((await sp(a, "cache", "key")).out.trim(), k1, "stable");
        const prefix = (await sp(a, "cache", "key", "--prefix")).out.trim();
        assert.ok(k1.startsWith(prefix));

        // The installed entry point (bin/sed-pipe.js) has the commands too.
        const none = await cli(a, "gc", "--dry-run");
        assert.is(none.code, 0, none.stdout + none.stderr);
        assert.match(none.stdout, /would free 0 B: 0 unreferenced objects; \d+ kept/);
        assert.is((await cli(a, "cache", "key")).stdout.trim(), k1);

        await writeFile(join(a, "params/demo.yaml"), PARAMS({ scale: 3 }));
        const k2 = (await sp(a, "cache", "key")).out.trim();
        assert.is.not(k2, k1, "a params edit changes the key");
        assert.is((await sp(a, "run", "sum")).code, 0);
        // The old sum output (a folder: its manifest + total.txt "total=6") is now unreferenced.
        const dry = await sp(a, "gc", "--dry-run", "-v");
        assert.match(dry.out, /would free \d+ B: 2 unreferenced objects; \d+ kept/, dry.out);
        assert.is((dry.out.match(/would remove/g) ?? []).length, 2);
        const really = await sp(a, "gc");
        assert.match(really.out, /freed \d+ B: 2 unreferenced objects/);
        assert.match((await sp(a, "gc", "--dry-run")).out, /0 unreferenced/);
        // Everything still referenced is intact: deleting artifacts restores without running.
        await removeDir(join(a, "artifacts"));
        const before = (await counts(a)).length;
        const r = await sp(a, "run", "sum");
        assert.match(r.out, /done: 0 ran, 3 restored/);
        assert.is((await counts(a)).length, before);
      } finally {
        await removeDir(a);
      }
    })(),
    T,
  ));

test("gc removes the tree record of a folder no instance names any more (once old enough); status still finds everything fresh", () =>
  withTimeout(
    (async () => {
      const a = await makeProject();
      try {
        assert.is((await sp(a, "run", "sum")).code, 0);
        const yaml = await readFile(join(a, "pipeline.yaml"), "utf8");
        await writeFile(join(a, "pipeline.yaml"), yaml.replace("total: artifacts/sum", "total: artifacts/sum2"));
        assert.is((await sp(a, "run", "sum")).code, 0);
        // Young state is never removed (a status may be writing it): nothing yet.
        assert.match((await sp(a, "gc", "--dry-run")).out, /state: 0 tree record files, 0 bundles, 0 pipeline memos to remove/);
        const old = new Date(Date.now() - 2 * 3600_000);
        for (const dir of ["cache/state/trees", "cache/build", "cache/state/pipelines"]) {
          for (const name of await readdir(join(a, dir)).catch(() => [] as string[])) await utimes(join(a, dir, name), old, old);
        }
        const dry = await sp(a, "gc", "--dry-run", "-v");
        assert.is(dry.code, 0, dry.err);
        const lines = dry.out.split("\n").filter((l) => l.startsWith("would remove cache/state/trees/"));
        assert.is(lines.length, 2, dry.out);
        assert.match(lines[0]!, new RegExp(`no instance of any profile names ${join(a, "artifacts", "sum")}$`));
        assert.match(dry.out, /state: 2 tree record files, 0 bundles, 0 pipeline memos to remove/);
        const before = (await readdir(join(a, "cache/state/trees"))).length;
        const really = await sp(a, "gc");
        assert.match(really.out, /state: 2 tree record files, 0 bundles, 0 pipeline memos removed/);
        assert.is((await readdir(join(a, "cache/state/trees"))).length, before - 2);
        const st = await sp(a, "status", "sum");
        assert.match(st.out, /3 fresh, 0 stale, 0 missing/, st.out);
      } finally {
        await removeDir(a);
      }
    })(),
    T,
  ));

test.run();
