// Remotes of the cache: a folder (or a tar of one) or a plain HTTP GET/PUT object store, as a
// key-value store of files. Owns the remote layout and the transport (retries, keep-alive); what
// moves and its verification is src/store/transfer.ts.
//
// Remote layout (the same for folders, tars and HTTP; runs/ is the layout of cache/runs/ too):
//   sed-pipe-cache.json             {"format": "sed-pipe-cache", "version": 1}
//   objects/sha256/<2>/<62>         content-addressed objects (files; folder manifests)
//   runs/<fingerprint hex>.json     {"version": 1, "id", "entry": LockEntry} -- written after its objects
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, mkdir, readFile, rename, stat, writeFile } from "node:fs/promises";
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { dirname, join, resolve } from "node:path";
import { pipeline as streamPipeline } from "node:stream/promises";
import { SedPipeError } from "../errors.ts";
import { tempPathFor } from "../io/atomic.ts";
import { hexOf, type Digest } from "../hash/digest.ts";
import { linkOrCopy, pathExists } from "./place.ts";

export const REMOTE_MARKER = "sed-pipe-cache.json";
export const REMOTE_FORMAT = { format: "sed-pipe-cache", version: 1 } as const;

/** A key-value store of files. Keys are "/"-separated relative paths of the layout above. */
export interface Remote {
  /** For messages: the folder or URL. */
  readonly where: string;
  has(key: string): Promise<boolean>;
  /** Downloads `key` to `dest` (a fresh path); false when the remote does not have it. */
  getFile(key: string, dest: string): Promise<boolean>;
  putFile(key: string, src: string): Promise<void>;
  getText(key: string): Promise<string | null>;
  putText(key: string, text: string): Promise<void>;
}

/** Objects in flight at once: remote latency, not bandwidth, dominates folders of many small files. */
export const TRANSFER_CONCURRENCY = 8;

export function objectKey(digest: Digest): string {
  const hex = hexOf(digest);
  return `objects/sha256/${hex.slice(0, 2)}/${hex.slice(2)}`;
}

/** Run records are named by fingerprint ("sha256:<hex>" -> "runs/<hex>.json"). */
export function runKey(fingerprint: Digest): string {
  return `runs/${hexOf(fingerprint)}.json`;
}

// ---------------------------------------------------------------------------------------------
// Folder remote

export class FolderRemote implements Remote {
  readonly dir: string;
  /**
   * link: hard-link objects in instead of copying (for a staging folder on the same disk that is
   * deleted after use; objects are read-only, so sharing inodes is safe).
   */
  constructor(dir: string, private readonly opts: { link?: boolean } = {}) {
    this.dir = resolve(dir);
  }
  get where(): string {
    return this.dir;
  }
  private abs(key: string): string {
    return join(this.dir, ...key.split("/"));
  }
  has(key: string): Promise<boolean> {
    return pathExists(this.abs(key));
  }
  async getFile(key: string, dest: string): Promise<boolean> {
    try {
      if (this.opts.link) await linkOrCopy(this.abs(key), dest);
      else await copyFile(this.abs(key), dest);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return false;
      throw err;
    }
  }
  async putFile(key: string, src: string): Promise<void> {
    const target = this.abs(key);
    await mkdir(dirname(target), { recursive: true });
    const tmp = tempPathFor(target);
    if (this.opts.link) await linkOrCopy(src, tmp);
    else await copyFile(src, tmp);
    await rename(tmp, target);
  }
  async getText(key: string): Promise<string | null> {
    try {
      return await readFile(this.abs(key), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
      throw err;
    }
  }
  async putText(key: string, text: string): Promise<void> {
    const target = this.abs(key);
    await mkdir(dirname(target), { recursive: true });
    const tmp = tempPathFor(target);
    await writeFile(tmp, text);
    await rename(tmp, target);
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP remote: PUT <base>/<key>, GET <base>/<key>, HEAD <base>/<key>; 404 = absent. Works with an
// nginx WebDAV location, a plain object store gateway, or any server speaking those three verbs.

const HTTP_TIMEOUT_MS = 120_000;
const HTTP_TRIES = 3;

type Body = { kind: "none" } | { kind: "text"; text: string } | { kind: "file"; path: string; size: number };

export class HttpRemote implements Remote {
  readonly base: URL;
  /** Kept-alive connections: folders of small files cost one request each, not one handshake each. */
  private readonly agent: HttpAgent;
  constructor(url: string, private readonly headers: Record<string, string> = {}) {
    this.base = new URL(url.endsWith("/") ? url : url + "/");
    if (this.base.protocol !== "http:" && this.base.protocol !== "https:") throw new Error(`not an http(s) URL: ${url}`);
    const opts = { keepAlive: true, maxSockets: TRANSFER_CONCURRENCY };
    this.agent = this.base.protocol === "https:" ? new HttpsAgent(opts) : new HttpAgent(opts);
  }
  get where(): string {
    const u = new URL(this.base);
    u.password = u.password ? "***" : "";
    return u.toString();
  }

  private once(method: string, key: string, body: Body, onResponse: (res: IncomingMessage) => Promise<void>): Promise<number> {
    const url = new URL(key, this.base);
    const req = (url.protocol === "https:" ? httpsRequest : httpRequest)(url, {
      method,
      agent: this.agent,
      headers: {
        ...this.headers,
        ...(body.kind === "text" ? { "content-length": String(Buffer.byteLength(body.text)), "content-type": "application/json" } : {}),
        ...(body.kind === "file" ? { "content-length": String(body.size), "content-type": "application/octet-stream" } : {}),
      },
      timeout: HTTP_TIMEOUT_MS,
    });
    return new Promise<number>((resolveStatus, reject) => {
      req.on("timeout", () => req.destroy(new Error(`no answer from ${this.where} within ${HTTP_TIMEOUT_MS / 1000} s`)));
      req.on("error", reject);
      req.on("response", (res) => {
        onResponse(res).then(() => resolveStatus(res.statusCode ?? 0), reject);
      });
      if (body.kind === "text") req.end(body.text);
      else if (body.kind === "file") createReadStream(body.path).on("error", reject).pipe(req);
      else req.end();
    });
  }

  /** Runs a request with bounded retries on network errors and 5xx answers. */
  private async call(method: string, key: string, body: Body, onOk: (res: IncomingMessage) => Promise<void>): Promise<number> {
    let last: unknown;
    for (let attempt = 1; attempt <= HTTP_TRIES; attempt++) {
      try {
        const status = await this.once(method, key, body, async (res) => {
          if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) await onOk(res);
          else res.resume();
        });
        if (status < 500) return status;
        last = new Error(`${method} ${key}: HTTP ${status}`);
      } catch (err) {
        last = err;
      }
      if (attempt < HTTP_TRIES) await new Promise((r) => setTimeout(r, 200 * attempt));
    }
    throw new SedPipeError(`remote ${this.where}: ${method} ${key} failed: ${(last as Error)?.message ?? last}`, {
      hint: "check that the server is up and accepts GET/PUT/HEAD on that path",
      exitCode: 1,
    });
  }

  private fail(method: string, key: string, status: number): never {
    throw new SedPipeError(`remote ${this.where}: ${method} ${key} answered HTTP ${status}`, {
      hint: status === 401 || status === 403 ? "the server refused the credentials (put user:password in the URL)" : "the remote must accept GET/PUT/HEAD",
      exitCode: 1,
    });
  }

  async has(key: string): Promise<boolean> {
    const status = await this.call("HEAD", key, { kind: "none" }, async () => {});
    if (status === 404) return false;
    if (status >= 200 && status < 300) return true;
    // A server without HEAD: answer "absent" and let the PUT overwrite with identical bytes.
    if (status === 405 || status === 501) return false;
    this.fail("HEAD", key, status);
  }

  async getFile(key: string, dest: string): Promise<boolean> {
    const status = await this.call("GET", key, { kind: "none" }, (res) => streamPipeline(res, createWriteStream(dest)));
    if (status === 404) return false;
    if (status >= 200 && status < 300) return true;
    this.fail("GET", key, status);
  }

  async putFile(key: string, src: string): Promise<void> {
    const size = (await stat(src)).size;
    const status = await this.call("PUT", key, { kind: "file", path: src, size }, async (res) => void res.resume());
    if (status < 200 || status >= 300) this.fail("PUT", key, status);
  }

  async getText(key: string): Promise<string | null> {
    let text = "";
    const status = await this.call("GET", key, { kind: "none" }, async (res) => {
      res.setEncoding("utf8");
      for await (const chunk of res) text += chunk as string;
    });
    if (status === 404) return null;
    if (status >= 200 && status < 300) return text;
    this.fail("GET", key, status);
  }

  async putText(key: string, text: string): Promise<void> {
    const status = await this.call("PUT", key, { kind: "text", text }, async (res) => void res.resume());
    if (status < 200 || status >= 300) this.fail("PUT", key, status);
  }
}

/** A remote from a --remote value: an http(s) URL or a folder path (relative to `cwd`). */
export function openRemote(spec: string, cwd: string, env: NodeJS.ProcessEnv = {}): Remote {
  if (/^https?:\/\//i.test(spec)) {
    const headers: Record<string, string> = {};
    // A bearer token from the environment keeps secrets out of command lines and CI logs.
    if (env.SED_PIPE_REMOTE_TOKEN) headers.authorization = `Bearer ${env.SED_PIPE_REMOTE_TOKEN}`;
    return new HttpRemote(spec, headers);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(spec)) {
    throw new SedPipeError(`unsupported remote ${spec}`, {
      hint: "use a folder path or an http(s):// URL of a GET/PUT object store (e.g. an S3-compatible gateway or nginx WebDAV)",
    });
  }
  return new FolderRemote(resolve(cwd, spec));
}
