// Remotes (folder, HTTP against a server started here), object fetch with digest verification,
// push ordering, fingerprint-guided pull decisions, gc on a literal store, and the CI cache key.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { createServer, type Server } from "node:http";
import { mkdir, readFile, writeFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import type { LockEntry } from "../../../src/pipeline/types.ts";
import { ContentStore } from "../../../src/store/cas.ts";
import { digestOf, hexOf, manifestBytes } from "../../../src/hash/digest.ts";
import { FolderRemote, HttpRemote, objectKey, openRemote, runKey, type Remote } from "../../../src/store/remote.ts";
import { CorruptObjectError, fetchObject, pullInstances, pushEntries, type PullOutcome } from "../../../src/store/transfer.ts";
import { collectGarbage } from "../../../src/store/gc.ts";
import { cacheKey, cacheKeyPrefix } from "../../../src/store/cache-key.ts";
import { removeDir, tempDir, withTimeout } from "../../helpers/tmp.ts";

const FP = (c: string) => "sha256:" + c.repeat(64);

async function serve(handler: (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse, body: Buffer) => void) {
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => handler(req, res, Buffer.concat(chunks)));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/c`, close: () => new Promise<void>((r) => server.close(() => r())) };
}

test("HttpRemote: PUT then GET/HEAD round trip, 404 is absent, 5xx retried, 403 is a clear error", () =>
  withTimeout(
    (async () => {
      const dir = await tempDir();
      const objects = new Map<string, Buffer>();
      let flaky = 2;
      const seen: string[] = [];
      const s = await serve((req, res, body) => {
        seen.push(`${req.method} ${req.url} ${req.headers.authorization ?? ""}`);
        if (req.url === "/c/forbidden") return void res.writeHead(403).end();
        if (req.url === "/c/flaky" && flaky-- > 0) return void res.writeHead(503).end();
        if (req.method === "PUT") {
          objects.set(req.url!, body);
          return void res.writeHead(201).end();
        }
        const b = objects.get(req.url!);
        if (!b) return void res.writeHead(req.url === "/c/flaky" ? 200 : 404).end();
        res.writeHead(200, { "content-length": b.length }).end(req.method === "GET" ? b : undefined);
      });
      try {
        const r = openRemote(s.url, dir, { SED_PIPE_REMOTE_TOKEN: "tok" });
        assert.ok(r instanceof HttpRemote);
        assert.is(await r.has("runs/x.json"), false);
        assert.is(await r.getText("runs/x.json"), null);
        await r.putText("runs/x.json", '{"a":1}');
        assert.is(await r.has("runs/x.json"), true);
        assert.is(await r.getText("runs/x.json"), '{"a":1}');
        const src = join(dir, "blob");
        await writeFile(src, Buffer.alloc(300_000, 7));
        await r.putFile("objects/sha256/aa/bb", src);
        assert.ok(await r.getFile("objects/sha256/aa/bb", join(dir, "back")));
        assert.equal(await readFile(join(dir, "back")), await readFile(src));
        assert.not.ok(await r.getFile("objects/sha256/aa/cc", join(dir, "none")));
        assert.is(await r.getText("flaky"), "", "two 503 answers, then success");
        assert.ok(seen.every((l) => l.endsWith("Bearer tok")), "the token goes with every request");
        try {
          await r.getText("forbidden");
          assert.unreachable("403 must throw");
        } catch (err) {
          assert.match((err as Error).message, /GET forbidden answered HTTP 403/);
        }
        assert.throws(() => openRemote("s3://bucket/x", dir), /unsupported remote/);
        assert.ok(openRemote("some/folder", dir) instanceof FolderRemote);
      } finally {
        await s.close();
        await removeDir(dir);
      }
    })(),
    30_000,
  ));

async function storeWith(dir: string, files: Record<string, string>): Promise<{ store: ContentStore; entry: LockEntry; digests: Record<string, string> }> {
  const store = new ContentStore(join(dir, "cache"));
  const digests: Record<string, string> = {};
  const outs: LockEntry["outs"] = {};
  for (const [name, text] of Object.entries(files)) {
    await mkdir(join(dir, "artifacts"), { recursive: true });
    await writeFile(join(dir, "artifacts", name), text);
    outs[name] = await store.put(join(dir, "artifacts", name), `artifacts/${name}`);
    digests[name] = outs[name]!.digest;
  }
  const entry: LockEntry = {
    fingerprint: FP("a"),
    parts: { params: {}, paramsHash: "x", deps: {}, code: {}, runtime: {} },
    outs,
    finishedAt: "2026-01-01T00:00:00.000Z",
    durationMs: 1,
  };
  return { store, entry, digests };
}

test("fetchObject verifies bytes: a corrupt object never enters the store; a good one does", () =>
  withTimeout(
    (async () => {
      const dir = await tempDir();
      try {
        const remoteDir = join(dir, "remote");
        const remote = new FolderRemote(remoteDir);
        const good = "hello";
        const d = digestOf(good);
        await mkdir(join(remoteDir, "objects/sha256", hexOf(d).slice(0, 2)), { recursive: true });
        await writeFile(join(remoteDir, objectKey(d)), "hellO");
        const store = new ContentStore(join(dir, "cache"));
        try {
          await fetchObject(store, remote, d);
          assert.unreachable("corrupt object accepted");
        } catch (err) {
          assert.ok(err instanceof CorruptObjectError);
          assert.match((err as Error).message, new RegExp(`object ${hexOf(d).slice(0, 12)} .* is corrupt`));
        }
        assert.equal(await readdir(join(dir, "cache/objects/sha256", hexOf(d).slice(0, 2))), [], "no temp file left");
        await writeFile(join(remoteDir, objectKey(d)), good);
        assert.equal(await fetchObject(store, remote, d), { bytes: 5 });
        assert.is(await readFile(store.objectPath(d), "utf8"), good);
        assert.equal(await fetchObject(store, remote, d), { bytes: 0 }, "present: not fetched again");
        assert.is(await fetchObject(store, remote, digestOf("other")), "absent");
      } finally {
        await removeDir(dir);
      }
    })(),
    30_000,
  ));

test("push writes objects before the run record and refuses to spread a corrupt local object", () =>
  withTimeout(
    (async () => {
      const dir = await tempDir();
      try {
        const { store, entry, digests } = await storeWith(dir, { "a.txt": "A", "b.txt": "B" });
        const log: string[] = [];
        const inner = new FolderRemote(join(dir, "remote"));
        const remote: Remote = {
          where: "logged",
          has: (k) => inner.has(k),
          getFile: (k, d) => inner.getFile(k, d),
          getText: (k) => inner.getText(k),
          putFile: (k, s) => (log.push(k), inner.putFile(k, s)),
          putText: (k, t) => (log.push(k), inner.putText(k, t)),
        };
        const r = await pushEntries(store, remote, [{ id: "x", entry }]);
        assert.equal(r, { entries: 1, objectsSent: 2, bytesSent: 2, objectsPresent: 0, skipped: [] });
        // Objects go concurrently (any order among themselves); the marker first, the run record last.
        assert.is(log.length, 4);
        assert.is(log[0], "sed-pipe-cache.json");
        assert.equal(log.slice(1, 3).sort(), [objectKey(digests["a.txt"]!), objectKey(digests["b.txt"]!)].sort());
        assert.is(log[3], runKey(FP("a")));

        // A local object damaged on disk (bypassing read-only bits) is not sent.
        const other = await storeWith(join(dir, "w2"), { "c.txt": "C" });
        const p = other.store.objectPath(other.digests["c.txt"]!);
        const { chmod } = await import("node:fs/promises");
        await chmod(p, 0o644);
        await writeFile(p, "X");
        const r2 = await pushEntries(other.store, remote, [{ id: "y", entry: { ...other.entry, fingerprint: FP("b") } }]);
        assert.is(r2.entries, 0);
        assert.match(r2.skipped[0]!.why, /local object .* is corrupt/);
        assert.is(await inner.getText(runKey(FP("b"))), null);
      } finally {
        await removeDir(dir);
      }
    })(),
    30_000,
  ));

test("pull: only a run with the current fingerprint is taken; mismatched records and outs are refused", () =>
  withTimeout(
    (async () => {
      const dir = await tempDir();
      try {
        const src = await storeWith(join(dir, "src"), { "a.txt": "A" });
        const remote = new FolderRemote(join(dir, "remote"));
        await pushEntries(src.store, remote, [{ id: "x", entry: src.entry }]);
        // A record stored under fingerprint c but naming fingerprint a: refused.
        await remote.putText(runKey(FP("c")), JSON.stringify({ version: 1, id: "x", entry: src.entry }));

        const dst = new ContentStore(join(dir, "dst", "cache"));
        const set: Record<string, LockEntry> = {};
        const run = (fp: string, outs: Record<string, string> = { "a.txt": "artifacts/a.txt" }): Promise<PullOutcome[]> =>
          pullInstances(
            {
              root: join(dir, "dst"),
              store: dst,
              remote,
              fingerprint: async () => fp,
              localEntry: (id) => set[id],
              setEntry: async (id, e) => void (set[id] = e),
              checkout: async () => null,
            },
            [{ id: "x", outs }],
          );
        assert.equal(await run(FP("d")), [{ id: "x", status: "absent" }]);
        const bad = await run(FP("c"));
        assert.is(bad[0]!.status, "refused");
        assert.equal(await run(FP("a"), { "a.txt": "artifacts/renamed.txt" }).then((o) => o[0]!.status), "refused");
        assert.equal(Object.keys(set), []);
        const ok = await run(FP("a"));
        assert.equal(ok, [{ id: "x", status: "pulled", objects: 1, bytes: 1 }]);
        assert.is(set.x!.fingerprint, FP("a"));
        assert.equal(await run(FP("a")), [{ id: "x", status: "local" }], "second time: nothing fetched");
      } finally {
        await removeDir(dir);
      }
    })(),
    30_000,
  ));

test("pull refuses a folder manifest whose paths would escape the output folder", () =>
  withTimeout(
    (async () => {
      const dir = await tempDir();
      try {
        const remote = new FolderRemote(join(dir, "remote"));
        const evil = "owned";
        const evilDigest = digestOf(evil);
        await remote.putText(objectKey(evilDigest), evil);
        const manifest = manifestBytes([{ path: "../../escape.txt", digest: evilDigest, size: evil.length }]);
        const mDigest = digestOf(manifest);
        await remote.putText(objectKey(mDigest), manifest);
        const entry: LockEntry = {
          fingerprint: FP("e"),
          parts: { params: {}, paramsHash: "", deps: {}, code: {}, runtime: {} },
          outs: { d: { path: "artifacts/d", kind: "dir", digest: mDigest, size: evil.length } },
          finishedAt: "",
          durationMs: 0,
        };
        await remote.putText(runKey(FP("e")), JSON.stringify({ version: 1, id: "x", entry }));
        let checkedOut = false;
        const out = await pullInstances(
          {
            root: join(dir, "dst"),
            store: new ContentStore(join(dir, "dst", "cache")),
            remote,
            fingerprint: async () => FP("e"),
            localEntry: () => undefined,
            setEntry: async () => {},
            checkout: async () => ((checkedOut = true), null),
          },
          [{ id: "x", outs: { d: "artifacts/d" } }],
        );
        assert.is(out[0]!.status, "refused");
        assert.match((out[0] as { why: string }).why, /unsafe path "\.\.\/\.\.\/escape\.txt"/);
        assert.not.ok(checkedOut, "nothing is restored from a refused run");
      } finally {
        await removeDir(dir);
      }
    })(),
    30_000,
  ));

test("gc removes exactly the unreferenced objects (folder files included); dry run removes nothing", () =>
  withTimeout(
    (async () => {
      const dir = await tempDir();
      try {
        const store = new ContentStore(join(dir, "cache"));
        await mkdir(join(dir, "artifacts/keep"), { recursive: true });
        await writeFile(join(dir, "artifacts/keep/x.txt"), "kept file");
        await writeFile(join(dir, "artifacts/old.txt"), "old output");
        const kept = await store.put(join(dir, "artifacts/keep"), "artifacts/keep");
        const old = await store.put(join(dir, "artifacts/old.txt"), "artifacts/old.txt");
        const lock = {
          version: 1 as const,
          instances: {
            s: { fingerprint: FP("a"), parts: { params: {}, paramsHash: "", deps: {}, code: {}, runtime: {} }, outs: { o: kept }, finishedAt: "", durationMs: 0 },
          },
        };
        const dry = await collectGarbage(store, [lock], { dryRun: true });
        assert.equal(dry.removed.map((r) => r.digest), [old.digest]);
        assert.is(dry.bytes, "old output".length);
        assert.is(dry.kept, 2, "the folder manifest and its file");
        assert.ok(await store.has(old));
        const real = await collectGarbage(store, [lock], { dryRun: false });
        assert.equal(real.removed.map((r) => r.digest), [old.digest]);
        assert.not.ok(await store.has(old));
        assert.ok(await store.has(kept));
        const r = await store.restore(kept, join(dir, "restored"));
        assert.ok(r.ok);
      } finally {
        await removeDir(dir);
      }
    })(),
    30_000,
  ));

test("cache key: stable, changes with any listed file's bytes or the runtime, shares the prefix", async () => {
  const dir = await tempDir();
  try {
    await writeFile(join(dir, "pipeline.yaml"), "a");
    await writeFile(join(dir, "p.yaml"), "b");
    const base = { root: dir, platform: "linux", arch: "x64", nodeMajor: 20 };
    const k1 = await cacheKey({ ...base, files: ["pipeline.yaml", "p.yaml", "missing.lock"], runtime: { node: "v20.1.0" } });
    assert.is(await cacheKey({ ...base, files: ["p.yaml", "pipeline.yaml", "missing.lock"], runtime: { node: "v20.1.0" } }), k1);
    assert.ok(k1.startsWith(cacheKeyPrefix(base)));
    assert.match(k1, /^sed-pipe-v1-linux-x64-node20-[0-9a-f]{24}$/);
    assert.is.not(await cacheKey({ ...base, files: ["pipeline.yaml", "p.yaml", "missing.lock"], runtime: { node: "v20.2.0" } }), k1);
    await writeFile(join(dir, "missing.lock"), "");
    assert.is.not(await cacheKey({ ...base, files: ["pipeline.yaml", "p.yaml", "missing.lock"], runtime: { node: "v20.1.0" } }), k1, "an empty file differs from no file");
    await writeFile(join(dir, "p.yaml"), "c");
    assert.is.not(await cacheKey({ ...base, files: ["pipeline.yaml", "p.yaml"], runtime: { node: "v20.1.0" } }), k1);
  } finally {
    await removeDir(dir);
  }
});

test.run();
