// Fetches one URL (https, http, file) into a local file: redirects, Google Drive's large-file
// confirmation page, resume with HTTP Range from a kept `.part` file, bounded retries with
// exponential backoff, sha256 verification. Knows nothing about stages or the pipeline.
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, mkdir, readFile, rename, rm, stat, truncate, writeFile } from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { EXIT, InputError, SedPipeError } from "../errors.ts";
import { sha256File } from "./sha256.ts";

/** A download that failed for a reason outside the user's files (network, server, checksum). */
export class DownloadError extends SedPipeError {
  constructor(message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, { ...options, exitCode: EXIT.stageFailed });
  }
}

export interface DownloadProgress {
  /** Bytes of the file present so far (including resumed bytes). */
  done: number;
  total: number | undefined;
  /** Bytes per second over this attempt. */
  rate: number;
  /** Seconds left at the current rate, when the total is known. */
  etaS: number | undefined;
}

export interface DownloadOptions {
  url: string;
  /** Final file; written only after the digest checks out. */
  dest: string;
  /** Where partial data lives between attempts and runs (kept on failure, for resume). */
  partPath: string;
  /** Pinned lowercase hex sha256; a mismatch fails the download and keeps the part file. */
  sha256?: string;
  /** Total tries per download, first one included (default 6). */
  maxAttempts?: number;
  /** First retry delay; doubles each retry, capped at 60 s (default 1000 ms). */
  backoffMs?: number;
  /** A connection idle this long counts as dropped (default 60 s). */
  idleTimeoutMs?: number;
  signal?: AbortSignal;
  /** Called at most every `progressIntervalMs` (default 250 ms) and once at the end. */
  onProgress?: (p: DownloadProgress) => void;
  progressIntervalMs?: number;
  /** One line per notable event (retry, resume, Drive confirmation). */
  onLog?: (line: string) => void;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  sha256: string;
  /** Bytes already present in the part file when this call started. */
  resumedFrom: number;
  attempts: number;
}

const MAX_REDIRECTS = 10;
const DRIVE_HOSTS = new Set(["drive.google.com", "docs.google.com", "drive.usercontent.google.com"]);

/** Turns Drive share links (`/file/d/<id>/view`, `/open?id=`) into a direct download URL. */
export function normalizeDriveUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url;
  }
  if (!DRIVE_HOSTS.has(u.hostname)) return url;
  const m = u.pathname.match(/^\/file\/d\/([-\w]+)/);
  const id = m?.[1] ?? (u.pathname === "/open" ? u.searchParams.get("id") : null);
  if (id) return `https://drive.google.com/uc?id=${id}&export=download`;
  if (u.pathname === "/uc" && u.searchParams.get("id") && !u.searchParams.get("export")) {
    u.searchParams.set("export", "download");
    return u.toString();
  }
  return url;
}

/** Drive hosts, or a Drive-style download endpoint (`/uc?id=`, `/download?id=`) on any host. */
export function isDriveLike(url: string): boolean {
  const u = new URL(url);
  return DRIVE_HOSTS.has(u.hostname) || ((u.pathname === "/uc" || u.pathname === "/download") && u.searchParams.has("id"));
}

const decodeEntities = (s: string): string =>
  s.replace(/&amp;/g, "&").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">");

/**
 * Drive answers a large file with an HTML "virus scan warning" page whose form (id
 * "download-form") holds the real download URL: action + hidden inputs (id, export, confirm,
 * uuid). Older pages carry a `/uc?export=download&confirm=...` link instead. Returns the URL
 * to follow, or throws with Drive's own error text (quota exceeded, no access).
 */
export function driveConfirmationUrl(html: string, pageUrl: string): string {
  const form = html.match(/<form[^>]*id="download-form"[^>]*>([\s\S]*?)<\/form>/i);
  if (form) {
    const action = form[0].match(/action="([^"]+)"/i)?.[1];
    if (action) {
      const target = new URL(decodeEntities(action), pageUrl);
      for (const input of form[1].matchAll(/<input[^>]*>/gi)) {
        const tag = input[0];
        if (!/type="hidden"/i.test(tag)) continue;
        const name = tag.match(/name="([^"]*)"/i)?.[1];
        const value = tag.match(/value="([^"]*)"/i)?.[1] ?? "";
        if (name) target.searchParams.set(decodeEntities(name), decodeEntities(value));
      }
      return target.toString();
    }
  }
  const href = html.match(/href="(\/uc\?export=download[^"]+)"/i)?.[1];
  if (href) return new URL(decodeEntities(href), pageUrl).toString();
  const dl = html.match(/"downloadUrl":"([^"]+)"/)?.[1];
  if (dl) return dl.replace(/\\u003d/g, "=").replace(/\\u0026/g, "&");
  const err = html.match(/<p class="uc-error-subcaption">([\s\S]*?)<\/p>/i)?.[1];
  throw new DownloadError(
    `Google Drive did not hand out the file at ${pageUrl}${err ? `: ${decodeEntities(err.replace(/<[^>]+>/g, ""))}` : ""}`,
    { hint: "the file may be private or over its download quota; try again later or download it by hand into the output path" },
  );
}

interface Response {
  res: http.IncomingMessage;
  url: string;
}

/** Errors worth another attempt: dropped connections, timeouts, 5xx, 429. */
class RetryableError extends Error {}

function request(url: string, headers: Record<string, string>, idleTimeoutMs: number, signal?: AbortSignal): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === "https:" ? https : http;
    const req = lib.get(u, { headers: { "user-agent": "sed-pipe", ...headers }, signal }, resolve);
    req.setTimeout(idleTimeoutMs, () => req.destroy(new RetryableError(`no data for ${idleTimeoutMs / 1000} s`)));
    req.on("error", (err) => {
      if (signal?.aborted) reject(signal.reason ?? err);
      else if ((err as NodeJS.ErrnoException).code === "ENOTFOUND") {
        reject(new DownloadError(`${u.hostname}: host not found`, { hint: "check the URL and the network connection" }));
      } else reject(err instanceof RetryableError ? err : new RetryableError(`${(err as NodeJS.ErrnoException).code ?? ""} ${err.message}`.trim()));
    });
  });
}

class CookieJar {
  private byHost = new Map<string, Map<string, string>>();
  take(url: string, res: http.IncomingMessage): void {
    const host = new URL(url).hostname;
    for (const line of res.headers["set-cookie"] ?? []) {
      const [pair] = line.split(";");
      const eq = pair.indexOf("=");
      if (eq <= 0) continue;
      let jar = this.byHost.get(host);
      if (!jar) this.byHost.set(host, (jar = new Map()));
      jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
  }
  header(url: string): Record<string, string> {
    const jar = this.byHost.get(new URL(url).hostname);
    if (!jar || jar.size === 0) return {};
    return { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; ") };
  }
}

async function readBody(res: http.IncomingMessage, limit = 4 << 20): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of res as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) break;
    chunks.push(c);
  }
  res.destroy();
  return Buffer.concat(chunks).toString("utf8");
}

/**
 * GET with redirects, cookies and the Drive confirmation step; resolves with a response whose
 * body is the file (status 200 or 206) or throws.
 */
async function open(
  startUrl: string,
  range: number,
  idleTimeoutMs: number,
  log: (l: string) => void,
  signal?: AbortSignal,
): Promise<Response> {
  const jar = new CookieJar();
  let url = normalizeDriveUrl(startUrl);
  let confirmations = 0;
  for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
    const headers: Record<string, string> = { ...jar.header(url) };
    if (range > 0) headers.range = `bytes=${range}-`;
    const res = await request(url, headers, idleTimeoutMs, signal);
    jar.take(url, res);
    const status = res.statusCode ?? 0;
    if (status >= 300 && status < 400 && res.headers.location) {
      res.resume();
      url = new URL(res.headers.location, url).toString();
      continue;
    }
    const type = String(res.headers["content-type"] ?? "");
    if ((status === 200 || status === 206) && type.includes("text/html") && !res.headers["content-disposition"] && isDriveLike(url)) {
      const html = await readBody(res);
      if (++confirmations > 3) throw new DownloadError(`${startUrl}: Google Drive kept asking for confirmation`);
      url = driveConfirmationUrl(html, url);
      log(`Google Drive confirmation page: following ${url}`);
      continue;
    }
    return { res, url };
  }
  throw new DownloadError(`${startUrl}: more than ${MAX_REDIRECTS} redirects`);
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return 0;
  }
}

async function moveInto(from: string, to: string): Promise<void> {
  await mkdir(dirname(to), { recursive: true });
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EXDEV") throw err;
    await copyFile(from, to);
    await rm(from, { force: true });
  }
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        reject(signal.reason);
      },
      { once: true },
    );
  });

function throttled(opts: DownloadOptions): { report: (done: number, total: number | undefined, force?: boolean) => void; reset: (done: number) => void } {
  const interval = opts.progressIntervalMs ?? 250;
  let last = 0;
  let t0 = Date.now();
  let base = 0;
  return {
    reset(done) {
      t0 = Date.now();
      base = done;
    },
    report(done, total, force = false) {
      if (!opts.onProgress) return;
      const now = Date.now();
      if (!force && now - last < interval) return;
      last = now;
      const secs = Math.max(1e-3, (now - t0) / 1000);
      const rate = (done - base) / secs;
      const etaS = total !== undefined && rate > 0 ? Math.max(0, (total - done) / rate) : undefined;
      opts.onProgress({ done, total, rate, etaS });
    },
  };
}

/** Downloads `opts.url` to `opts.dest`; see the module comment for what it handles. */
export async function downloadFile(opts: DownloadOptions): Promise<DownloadResult> {
  const { url, dest, partPath, signal } = opts;
  const log = opts.onLog ?? (() => {});
  if (opts.sha256 !== undefined && !/^[0-9a-f]{64}$/.test(opts.sha256)) {
    throw new InputError(`bad sha256 for ${url}: ${JSON.stringify(opts.sha256)} (want 64 lowercase hex digits)`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InputError(`not a URL: ${JSON.stringify(url)}`, { hint: "use https://..., http://... or file:///..." });
  }
  await mkdir(dirname(partPath), { recursive: true });
  const progress = throttled(opts);
  // The part file's origin is recorded beside it: bytes from another URL must never be resumed.
  const originPath = `${partPath}.origin`;
  const origin = await readFile(originPath, "utf8").catch(() => null);
  if (origin !== url) {
    if (origin !== null || (await sizeOf(partPath)) > 0) log(`discarding partial data from ${origin ?? "an unknown source"}`);
    await rm(partPath, { force: true });
    await writeFile(originPath, url);
  }
  const resumedFrom = await sizeOf(partPath);
  let attempts = 0;

  if (parsed.protocol === "file:") {
    const src = fileURLToPath(parsed);
    let total: number;
    try {
      total = (await stat(src)).size;
    } catch {
      throw new InputError(`${src}: source file not found (from ${url})`);
    }
    attempts = 1;
    let done = 0;
    const out = createWriteStream(partPath);
    try {
      for await (const c of createReadStream(src, { highWaterMark: 4 << 20, signal }) as AsyncIterable<Buffer>) {
        if (!out.write(c)) await new Promise<void>((r) => out.once("drain", () => r()));
        done += c.length;
        progress.report(done, total);
      }
    } catch (err) {
      await closeStream(out);
      throw signal?.aborted ? (signal.reason ?? err) : err;
    }
    await closeStream(out);
    progress.report(done, total, true);
  } else if (parsed.protocol === "http:" || parsed.protocol === "https:") {
    const maxAttempts = opts.maxAttempts ?? 6;
    let delay = opts.backoffMs ?? 1000;
    for (;;) {
      attempts++;
      try {
        await attempt();
        break;
      } catch (err) {
        if (signal?.aborted) throw signal.reason ?? err;
        if (!(err instanceof RetryableError)) throw err;
        if (attempts >= maxAttempts) {
          throw new DownloadError(`${url}: giving up after ${attempts} attempts: ${err.message}`, {
            hint: `partial data is kept in ${partPath}; run again to resume`,
            cause: err,
          });
        }
        log(`attempt ${attempts} failed (${err.message}); retrying in ${(delay / 1000).toFixed(1)} s`);
        await sleep(delay, signal);
        delay = Math.min(60_000, delay * 2);
      }
    }
  } else {
    throw new InputError(`unsupported URL scheme ${parsed.protocol} in ${url}`, { hint: "use https, http or file URLs" });
  }

  async function attempt(): Promise<void> {
    let have = await sizeOf(partPath);
    const { res } = await open(url, have, opts.idleTimeoutMs ?? 60_000, log, signal);
    const status = res.statusCode ?? 0;
    if (status === 416) {
      res.resume();
      // Range past the end: the part file is already whole when the server says so.
      const total = Number(String(res.headers["content-range"] ?? "").match(/\*\/(\d+)/)?.[1]);
      if (Number.isFinite(total) && total === have) return;
      log(`server refused to resume at byte ${have}; starting over`);
      await rm(partPath, { force: true });
      throw new RetryableError("range not satisfiable");
    }
    if (status >= 500 || status === 429 || status === 408) {
      res.resume();
      throw new RetryableError(`HTTP ${status}`);
    }
    if (status !== 200 && status !== 206) {
      res.resume();
      throw new DownloadError(`${url}: HTTP ${status} ${res.statusMessage ?? ""}`.trim(), {
        hint: status === 404 ? "the file is gone or the URL is wrong" : status === 403 ? "access denied: the file may be private" : undefined,
      });
    }
    let total: number | undefined;
    if (status === 206) {
      const m = String(res.headers["content-range"] ?? "").match(/bytes (\d+)-(\d+)\/(\d+|\*)/);
      if (!m || Number(m[1]) !== have) {
        res.resume();
        log(`server resumed at the wrong offset (${res.headers["content-range"]}); starting over`);
        await rm(partPath, { force: true });
        throw new RetryableError("bad Content-Range");
      }
      total = m[3] === "*" ? undefined : Number(m[3]);
      if (have > 0) log(`resuming at byte ${have}${total ? ` of ${total}` : ""}`);
    } else {
      if (have > 0) {
        log(`server does not support resuming; starting over (${have} bytes discarded)`);
        await truncate(partPath, 0);
        have = 0;
      }
      const len = Number(res.headers["content-length"]);
      total = Number.isFinite(len) ? len : undefined;
    }
    progress.reset(have);
    const out = createWriteStream(partPath, { flags: have > 0 ? "a" : "w" });
    let done = have;
    try {
      for await (const c of res as AsyncIterable<Buffer>) {
        if (!out.write(c)) await new Promise<void>((r) => out.once("drain", () => r()));
        done += c.length;
        progress.report(done, total);
      }
    } catch (err) {
      await closeStream(out);
      if (signal?.aborted) throw signal.reason ?? err;
      throw new RetryableError(`connection dropped at byte ${done}${total ? ` of ${total}` : ""}`);
    }
    await closeStream(out);
    // A connection closed cleanly but early (no error event) is still a dropped connection.
    if (total !== undefined && done < total) throw new RetryableError(`connection dropped at byte ${done} of ${total}`);
    if (!res.complete) throw new RetryableError(`connection dropped at byte ${done}`);
    progress.report(done, total, true);
  }

  const bytes = await sizeOf(partPath);
  const digest = await sha256File(partPath, signal ? { signal } : {});
  if (opts.sha256 !== undefined && digest !== opts.sha256) {
    throw new DownloadError(`${url}: sha256 mismatch: got ${digest}, expected ${opts.sha256}`, {
      hint: `the downloaded bytes are kept in ${partPath}; if the pinned sha256 is wrong fix it in the params file, otherwise delete that file to download again`,
    });
  }
  await moveInto(partPath, dest);
  await rm(originPath, { force: true });
  return { path: dest, bytes, sha256: digest, resumedFrom, attempts };
}

function closeStream(out: ReturnType<typeof createWriteStream>): Promise<void> {
  return new Promise((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}
