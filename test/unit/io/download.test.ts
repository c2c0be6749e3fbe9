import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, mkdir, rm, writeFile, readFile, stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createServer, type Server, type IncomingMessage, type ServerResponse } from "node:http";
import { createHash, randomBytes } from "node:crypto";
import { pathToFileURL } from "node:url";
import type { AddressInfo } from "node:net";
import {
  downloadFile,
  normalizeDriveUrl,
  driveConfirmationUrl,
  DownloadError,
  type DownloadProgress,
} from "../../../src/io/download.ts";

const BODY = randomBytes(300_000);
const SHA = createHash("sha256").update(BODY).digest("hex");

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
let server: Server;
let base = "";
const routes = new Map<string, Handler>();
const hits: { path: string; range?: string; cookie?: string }[] = [];
let dir = "";

function withTimeout<T>(p: Promise<T>, ms = 20_000): Promise<T> {
  return Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`timed out after ${ms} ms`)), ms).unref())]);
}

/** Serves BODY honouring Range, like a static file server. */
function serveBody(req: IncomingMessage, res: ServerResponse, extra: Record<string, string> = {}): void {
  const m = String(req.headers.range ?? "").match(/bytes=(\d+)-/);
  if (m) {
    const from = Number(m[1]);
    if (from >= BODY.length) {
      res.writeHead(416, { "content-range": `bytes */${BODY.length}` }).end();
      return;
    }
    res.writeHead(206, {
      "content-length": BODY.length - from,
      "content-range": `bytes ${from}-${BODY.length - 1}/${BODY.length}`,
      "content-type": "application/octet-stream",
      ...extra,
    });
    res.end(BODY.subarray(from));
    return;
  }
  res.writeHead(200, { "content-length": BODY.length, "content-type": "application/octet-stream", ...extra });
  res.end(BODY);
}

test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sed-download-"));
  server = createServer((req, res) => {
    const url = new URL(req.url!, "http://x");
    hits.push({ path: url.pathname + url.search, range: req.headers.range, cookie: req.headers.cookie });
    const h = routes.get(url.pathname);
    if (h) h(req, res);
    else res.writeHead(404).end("not found");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
test.after(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
function paths() {
  n++;
  return { dest: join(dir, `out-${n}/file.bin`), partPath: join(dir, `scratch-${n}/file.bin.part`) };
}
const fast = { backoffMs: 1, progressIntervalMs: 0 };

test("redirect chain, bytes and digest, progress events", async () => {
  hits.length = 0;
  routes.set("/r1", (_q, s) => s.writeHead(302, { location: "/r2" }).end());
  routes.set("/r2", (_q, s) => s.writeHead(301, { location: `${base}/r3` }).end());
  routes.set("/r3", (_q, s) => s.writeHead(307, { location: "/file" }).end());
  routes.set("/file", (q, s) => serveBody(q, s));
  const p = paths();
  const events: DownloadProgress[] = [];
  const r = await withTimeout(downloadFile({ url: `${base}/r1`, ...p, ...fast, onProgress: (e) => events.push(e) }));
  assert.ok((await readFile(p.dest)).equals(BODY));
  assert.is(r.sha256, SHA);
  assert.is(r.bytes, BODY.length);
  assert.is(r.attempts, 1);
  assert.not.ok(existsSync(p.partPath), "part file moved into place");
  assert.equal(hits.map((h) => h.path), ["/r1", "/r2", "/r3", "/file"]);
  const last = events[events.length - 1];
  assert.is(last.done, BODY.length);
  assert.is(last.total, BODY.length);
  assert.is(last.etaS, 0);
});

test("Google Drive confirmation page: follows the form with confirm and uuid", async () => {
  hits.length = 0;
  routes.set("/uc", (_q, s) => {
    s.writeHead(200, { "content-type": "text/html; charset=utf-8", "set-cookie": "NID=abc; Path=/; HttpOnly" });
    s.end(`<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>
<div class="uc-main"><div id="uc-text"><p class="uc-warning-caption">Google Drive can't scan this file for viruses.</p>
<form id="download-form" action="${base}/download" method="get">
<input type="submit" id="uc-download-link" class="goog-inline-block jfk-button jfk-button-action" value="Download anyway"/>
<input type="hidden" name="id" value="1DT3uxqAt2"><input type="hidden" name="export" value="download">
<input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="6f1e-22&amp;x"></form></div></div></body></html>`);
  });
  routes.set("/download", (q, s) => {
    const u = new URL(q.url!, "http://x");
    if (u.searchParams.get("confirm") !== "t" || u.searchParams.get("uuid") !== "6f1e-22&x") {
      s.writeHead(400).end("missing confirmation");
      return;
    }
    serveBody(q, s, { "content-disposition": `attachment; filename="cached.tar.gz"` });
  });
  const p = paths();
  const lines: string[] = [];
  const r = await withTimeout(downloadFile({ url: `${base}/uc?id=1DT3uxqAt2&export=download`, ...p, ...fast, onLog: (l) => lines.push(l) }));
  assert.is(r.sha256, SHA);
  assert.ok((await readFile(p.dest)).equals(BODY));
  assert.is(hits.length, 2);
  assert.match(hits[1].path, /^\/download\?id=1DT3uxqAt2&export=download&confirm=t&uuid=6f1e-22%26x$/);
  assert.is(hits[1].cookie, "NID=abc", "cookies carried to the confirmed request (same host)");
  assert.ok(lines.some((l) => /confirmation page/.test(l)));
});

test("connection dropped mid-file: resumed with Range, bytes identical", async () => {
  hits.length = 0;
  let calls = 0;
  routes.set("/flaky", (q, s) => {
    calls++;
    if (calls === 1) {
      s.writeHead(200, { "content-length": BODY.length, "content-type": "application/octet-stream" });
      s.write(BODY.subarray(0, 100_000), () => setTimeout(() => s.socket?.destroy(), 20));
      return;
    }
    serveBody(q, s);
  });
  const p = paths();
  const lines: string[] = [];
  const r = await withTimeout(downloadFile({ url: `${base}/flaky`, ...p, ...fast, onLog: (l) => lines.push(l) }));
  assert.ok((await readFile(p.dest)).equals(BODY));
  assert.is(r.attempts, 2);
  assert.is(hits[0].range, undefined);
  const resumedAt = Number(hits[1].range!.match(/bytes=(\d+)-/)![1]);
  assert.ok(resumedAt > 0 && resumedAt <= 100_000, `resumed at ${resumedAt}`);
  assert.ok(lines.some((l) => /resuming at byte/.test(l)));
});

test("a part file left by an earlier run is resumed", async () => {
  hits.length = 0;
  routes.set("/file", (q, s) => serveBody(q, s));
  const p = paths();
  await mkdir(join(p.partPath, ".."), { recursive: true });
  await writeFile(p.partPath, BODY.subarray(0, 123_456));
  await writeFile(`${p.partPath}.origin`, `${base}/file`);
  const r = await withTimeout(downloadFile({ url: `${base}/file`, ...p, ...fast, sha256: SHA }));
  assert.is(r.resumedFrom, 123_456);
  assert.is(hits[0].range, "bytes=123456-");
  assert.ok((await readFile(p.dest)).equals(BODY));
  assert.not.ok(existsSync(`${p.partPath}.origin`));
});

test("a part file from another URL (or of unknown origin) is discarded, not resumed", async () => {
  routes.set("/file", (q, s) => serveBody(q, s));
  for (const origin of [`${base}/other`, null]) {
    hits.length = 0;
    const p = paths();
    await mkdir(join(p.partPath, ".."), { recursive: true });
    await writeFile(p.partPath, Buffer.alloc(1000, 9));
    if (origin) await writeFile(`${p.partPath}.origin`, origin);
    const lines: string[] = [];
    const r = await withTimeout(downloadFile({ url: `${base}/file`, ...p, ...fast, sha256: SHA, onLog: (l) => lines.push(l) }));
    assert.is(r.resumedFrom, 0);
    assert.is(hits[0].range, undefined);
    assert.ok(lines.some((l) => /discarding partial data/.test(l)));
    assert.ok((await readFile(p.dest)).equals(BODY));
  }
});

test("a stalled connection times out and is resumed; abort stops a download and keeps the part", async () => {
  let calls = 0;
  routes.set("/stall", (q, s) => {
    calls++;
    if (calls === 1) {
      s.writeHead(200, { "content-length": BODY.length, "content-type": "application/octet-stream" });
      s.write(BODY.subarray(0, 50_000)); // then nothing: the client's idle timer must fire
      return;
    }
    serveBody(q, s);
  });
  const p = paths();
  const r = await withTimeout(downloadFile({ url: `${base}/stall`, ...p, ...fast, idleTimeoutMs: 1000 }));
  // >= 2: on a very busy machine a healthy attempt may also idle past the timer; it then resumes too.
  assert.ok(r.attempts >= 2, `attempts ${r.attempts}`);
  assert.ok((await readFile(p.dest)).equals(BODY));

  routes.set("/slow", (_q, s) => {
    s.writeHead(200, { "content-length": BODY.length, "content-type": "application/octet-stream" });
    s.write(BODY.subarray(0, 64_000));
  });
  const p2 = paths();
  const ac = new AbortController();
  try {
    await withTimeout(
      downloadFile({
        url: `${base}/slow`,
        ...p2,
        ...fast,
        signal: ac.signal,
        onProgress: (e) => {
          if (e.done > 0) ac.abort(new Error("stopped by user"));
        },
      }),
    );
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /stopped by user/);
  }
  assert.not.ok(existsSync(p2.dest));
  assert.ok((await stat(p2.partPath)).size > 0, "partial bytes kept for resume");
});

test("500 then 200: retried", async () => {
  hits.length = 0;
  let calls = 0;
  routes.set("/once500", (q, s) => (++calls === 1 ? s.writeHead(500).end("boom") : serveBody(q, s)));
  const p = paths();
  const r = await withTimeout(downloadFile({ url: `${base}/once500`, ...p, ...fast }));
  assert.is(r.attempts, 2);
  assert.ok((await readFile(p.dest)).equals(BODY));
});

test("always 503: bounded attempts, then a clear error", async () => {
  hits.length = 0;
  routes.set("/down", (_q, s) => s.writeHead(503).end());
  const p = paths();
  try {
    await withTimeout(downloadFile({ url: `${base}/down`, ...p, ...fast, maxAttempts: 3 }));
    assert.unreachable();
  } catch (err) {
    assert.instance(err, DownloadError);
    assert.match((err as Error).message, /giving up after 3 attempts: HTTP 503/);
  }
  assert.is(hits.length, 3);
});

test("404: no retry", async () => {
  hits.length = 0;
  const p = paths();
  try {
    await withTimeout(downloadFile({ url: `${base}/missing`, ...p, ...fast }));
    assert.unreachable();
  } catch (err) {
    assert.instance(err, DownloadError);
    assert.match((err as Error).message, /HTTP 404/);
  }
  assert.is(hits.length, 1);
});

test("wrong checksum: clear error, nothing at dest, part file kept for resume", async () => {
  routes.set("/file", (q, s) => serveBody(q, s));
  const p = paths();
  const wrong = "0".repeat(64);
  try {
    await withTimeout(downloadFile({ url: `${base}/file`, ...p, ...fast, sha256: wrong }));
    assert.unreachable();
  } catch (err) {
    assert.instance(err, DownloadError);
    assert.match((err as Error).message, new RegExp(`sha256 mismatch: got ${SHA}, expected ${wrong}`));
    assert.match((err as DownloadError).hint!, /kept in/);
  }
  assert.not.ok(existsSync(p.dest));
  assert.is((await stat(p.partPath)).size, BODY.length);
  // Fixing the pin finishes from the kept bytes (server answers 416 = already whole).
  hits.length = 0;
  const r = await withTimeout(downloadFile({ url: `${base}/file`, ...p, ...fast, sha256: SHA }));
  assert.is(r.resumedFrom, BODY.length);
  assert.is(hits[0].range, `bytes=${BODY.length}-`);
  assert.ok((await readFile(p.dest)).equals(BODY));
});

test("file:// URLs and bad input", async () => {
  const src = join(dir, "src.bin");
  await writeFile(src, BODY);
  const p = paths();
  const r = await downloadFile({ url: pathToFileURL(src).href, ...p });
  assert.is(r.sha256, SHA);
  assert.ok((await readFile(p.dest)).equals(BODY));
  for (const [url, re] of [
    ["ftp://example.org/x", /unsupported URL scheme ftp:/],
    ["not a url", /not a URL/],
    [pathToFileURL(join(dir, "nope")).href, /source file not found/],
  ] as const) {
    try {
      await downloadFile({ url, ...paths() });
      assert.unreachable(url);
    } catch (err) {
      assert.match((err as Error).message, re);
    }
  }
  try {
    await downloadFile({ url: pathToFileURL(src).href, ...paths(), sha256: "abc" });
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /bad sha256/);
  }
});

test("normalizeDriveUrl and driveConfirmationUrl (pure)", () => {
  assert.is(
    normalizeDriveUrl("https://drive.google.com/file/d/1DT3uxqAt2-tvgYZAW5JIXnAjpiQ1FETq/view?usp=sharing"),
    "https://drive.google.com/uc?id=1DT3uxqAt2-tvgYZAW5JIXnAjpiQ1FETq&export=download",
  );
  assert.is(normalizeDriveUrl("https://drive.google.com/uc?id=1NrqaSV9GFa33c0d-6N0qMxdy_qAqU6_7"), "https://drive.google.com/uc?id=1NrqaSV9GFa33c0d-6N0qMxdy_qAqU6_7&export=download");
  assert.is(normalizeDriveUrl("https://example.org/a.tar.gz"), "https://example.org/a.tar.gz");
  const old = `<a id="uc-download-link" href="/uc?export=download&amp;confirm=AbCd&amp;id=XYZ">Download anyway</a>`;
  assert.is(driveConfirmationUrl(old, "https://docs.google.com/uc?id=XYZ"), "https://docs.google.com/uc?export=download&confirm=AbCd&id=XYZ");
  try {
    driveConfirmationUrl(`<p class="uc-error-subcaption">Too many users have viewed or downloaded this file recently.</p>`, "https://drive.google.com/uc?id=X");
    assert.unreachable();
  } catch (err) {
    assert.instance(err, DownloadError);
    assert.match((err as Error).message, /Too many users/);
  }
});

test.run();
