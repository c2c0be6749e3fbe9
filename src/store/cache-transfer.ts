// Moving cache objects and run records between this workspace and a remote: a folder (or a tar of
// one) or a plain HTTP GET/PUT object store. Owns the remote layout and digest verification of
// everything received; never decides what runs (fingerprints are computed by the caller).
//
// Remote layout (the same for folders, tars and HTTP):
//   sed-pipe-cache.json             {"format": "sed-pipe-cache", "version": 1}
//   objects/sha256/<2>/<62>         content-addressed objects (files; folder manifests)
//   runs/<fingerprint hex>.json     {"version": 1, "id", "entry": LockEntry} -- written after its objects
import { createReadStream, createWriteStream } from "node:fs";
import { chmod, copyFile, mkdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from "node:http";
import { Agent as HttpsAgent, request as httpsRequest } from "node:https";
import { dirname, join, resolve } from "node:path";
import { pipeline as streamPipeline } from "node:stream/promises";
import { SedPipeError } from "../errors.ts";
import type { LockEntry, OutRecord } from "../pipeline/types.ts";
import { tempPathFor } from "../io/atomic.ts";
import { mapLimit } from "../io/map-limit.ts";
import type { ContentStore } from "./cas.ts";
import { manifestBytes, sha256File, sha256Hex, type TreeManifest } from "./digest.ts";
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

export function objectKey(digest: string): string {
  if (!/^[0-9a-f]{64}$/.test(digest)) throw new Error(`not a sha256 digest: ${digest}`);
  return `objects/sha256/${digest.slice(0, 2)}/${digest.slice(2)}`;
}

/** Run records are named by fingerprint ("sha256:<hex>" -> "runs/<hex>.json"). */
export function runKey(fingerprint: string): string {
  const hex = fingerprint.replace(/^sha256:/, "");
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new Error(`not a fingerprint digest: ${fingerprint}`);
  return `runs/${hex}.json`;
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

// ---------------------------------------------------------------------------------------------
// Run records

/** Where a run record came from, so a CI result can be traced to the machine and commit. */
export interface Provenance {
  pushedAt: string;
  host: string;
  /** The commit being built when known (GITHUB_SHA / CI_COMMIT_SHA), else null. */
  commit: string | null;
}

export interface RunRecord {
  version: 1;
  id: string;
  entry: LockEntry;
  provenance?: Provenance;
}

function parseRunRecord(text: string, where: string): RunRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${where}: not JSON (${(err as Error).message})`);
  }
  const r = raw as Partial<RunRecord>;
  const e = r?.entry as Partial<LockEntry> | undefined;
  if (r?.version !== 1 || typeof r.id !== "string" || !e || typeof e.fingerprint !== "string" || !e.parts || !e.outs) {
    throw new Error(`${where}: not a sed-pipe run record (needs version 1, id, entry with fingerprint, parts, outs)`);
  }
  for (const [name, rec] of Object.entries(e.outs)) {
    if (!rec || typeof rec.digest !== "string" || !/^[0-9a-f]{64}$/.test(rec.digest) || (rec.kind !== "file" && rec.kind !== "dir")) {
      throw new Error(`${where}: out "${name}" has no valid digest/kind`);
    }
  }
  return r as RunRecord;
}

// ---------------------------------------------------------------------------------------------
// Objects

/** The digests an entry's outputs need: each out, plus every file listed by a folder's manifest. */
export async function entryObjects(store: ContentStore, entry: LockEntry): Promise<{ digests: string[]; missing: string[] }> {
  const digests: string[] = [];
  const missing: string[] = [];
  for (const rec of Object.values(entry.outs)) {
    digests.push(rec.digest);
    if (rec.kind === "dir") {
      const m = await readLocalManifest(store, rec.digest);
      if (!m) missing.push(rec.digest);
      else for (const f of m.files) digests.push(f.digest);
    }
  }
  return { digests: [...new Set(digests)], missing };
}

async function readLocalManifest(store: ContentStore, digest: string): Promise<TreeManifest | null> {
  try {
    return parseManifest(await readFile(store.objectPath(digest), "utf8"), digest);
  } catch {
    return null;
  }
}

function parseManifest(text: string, digest: string): TreeManifest {
  const m = JSON.parse(text) as TreeManifest;
  if (m.version !== 1 || !Array.isArray(m.files)) throw new Error(`object ${digest.slice(0, 12)} is not a folder manifest`);
  if (sha256Hex(manifestBytes(m)) !== digest) throw new Error(`folder manifest ${digest.slice(0, 12)} is not canonical`);
  for (const f of m.files) {
    if (!/^[0-9a-f]{64}$/.test(f.digest)) throw new Error(`folder manifest ${digest.slice(0, 12)} lists a bad digest`);
    // A manifest from elsewhere decides where restore writes: only plain relative paths inside the folder.
    const segs = typeof f.path === "string" ? f.path.split("/") : [""];
    if (typeof f.path !== "string" || f.path.includes("\\") || segs.some((x) => x === "" || x === "." || x === "..")) {
      throw new Error(`folder manifest ${digest.slice(0, 12)} lists an unsafe path ${JSON.stringify(f.path)}`);
    }
  }
  return m;
}

/** sha256 of a file: small ones in one read (a 1 MiB stream buffer per tiny object is most of the cost). */
async function hashObjectFile(path: string): Promise<string> {
  const st = await stat(path);
  if (st.size > 4 << 20) return sha256File(path);
  return sha256Hex(await readFile(path));
}

export class CorruptObjectError extends Error {
  constructor(readonly digest: string, readonly actual: string, readonly where: string) {
    super(`object ${digest.slice(0, 12)} from ${where} is corrupt: its bytes hash to ${actual.slice(0, 12)}`);
  }
}

/**
 * Fetches one object into the local store unless present there: downloaded beside its final place,
 * hashed, and renamed in only when the digest matches. Returns the bytes fetched (0 if present).
 */
export async function fetchObject(store: ContentStore, remote: Remote, digest: string): Promise<{ bytes: number } | "absent"> {
  const target = store.objectPath(digest);
  if (await pathExists(target)) return { bytes: 0 };
  await mkdir(dirname(target), { recursive: true });
  const tmp = tempPathFor(target);
  try {
    if (!(await remote.getFile(objectKey(digest), tmp))) return "absent";
    const actual = await hashObjectFile(tmp);
    if (actual !== digest) throw new CorruptObjectError(digest, actual, remote.where);
    const size = (await stat(tmp)).size;
    await chmod(tmp, 0o444);
    await rename(tmp, target);
    return { bytes: size };
  } finally {
    await rm(tmp, { force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Push

export interface PushReport {
  entries: number;
  objectsSent: number;
  bytesSent: number;
  objectsPresent: number;
  /** Entries not pushed, with why (objects missing or corrupt locally). */
  skipped: Array<{ id: string; why: string }>;
}

/**
 * Sends each entry's objects (verified locally first), then its run record. The record goes last:
 * a remote never names a run whose objects it lacks, even if a push is interrupted.
 */
export async function pushEntries(
  store: ContentStore,
  remote: Remote,
  entries: Array<{ id: string; entry: LockEntry }>,
  onProgress?: (msg: string) => void,
  provenance?: Provenance,
): Promise<PushReport> {
  const report: PushReport = { entries: 0, objectsSent: 0, bytesSent: 0, objectsPresent: 0, skipped: [] };
  if ((await remote.getText(REMOTE_MARKER)) === null) await remote.putText(REMOTE_MARKER, JSON.stringify(REMOTE_FORMAT) + "\n");
  const checked = new Set<string>();
  for (const { id, entry } of entries) {
    const { digests, missing } = await entryObjects(store, entry);
    if (missing.length) {
      report.skipped.push({ id, why: `folder manifest ${missing[0]!.slice(0, 12)} is not in the local cache` });
      continue;
    }
    let bad: string | null = null;
    const todo = digests.filter((d) => !checked.has(d));
    await mapLimit(todo, TRANSFER_CONCURRENCY, async (d) => {
      if (bad) return;
      const p = store.objectPath(d);
      if (!(await pathExists(p))) {
        bad ??= `object ${d.slice(0, 12)} is not in the local cache`;
        return;
      }
      if (await remote.has(objectKey(d))) {
        report.objectsPresent++;
        checked.add(d);
        return;
      }
      // Never spread a damaged object: hash it before it leaves.
      const actual = await hashObjectFile(p);
      if (actual !== d) {
        bad ??= `local object ${d.slice(0, 12)} is corrupt (hashes to ${actual.slice(0, 12)})`;
        return;
      }
      await remote.putFile(objectKey(d), p);
      // Awaited first: `report.bytesSent += await ...` reads the sum before the await, so two
      // concurrent transfers would each add to the same old value and one size would be lost.
      const { size } = await stat(p);
      report.objectsSent++;
      report.bytesSent += size;
      checked.add(d);
    });
    if (bad) {
      report.skipped.push({ id, why: bad });
      continue;
    }
    const record: RunRecord = { version: 1, id, entry, ...(provenance ? { provenance } : {}) };
    await remote.putText(runKey(entry.fingerprint), JSON.stringify(record) + "\n");
    report.entries++;
    onProgress?.(`pushed ${id}`);
  }
  return report;
}

// ---------------------------------------------------------------------------------------------
// Pull (fingerprint-guided: only runs whose fingerprint equals the instance's current one)

export interface PullInstance {
  id: string;
  /** Out name -> project-relative path, as declared now. */
  outs: Record<string, string>;
}

export type PullOutcome =
  | { id: string; status: "local" }
  | { id: string; status: "pulled"; objects: number; bytes: number; provenance?: Provenance }
  | { id: string; status: "absent" }
  | { id: string; status: "waiting"; why: string }
  | { id: string; status: "refused"; why: string };

export interface PullDeps {
  root: string;
  store: ContentStore;
  remote: Remote;
  /** The instance's current fingerprint digest, or null when a dep does not exist yet. */
  fingerprint(id: string): Promise<string | null>;
  localEntry(id: string): LockEntry | undefined;
  setEntry(id: string, entry: LockEntry): Promise<void>;
  /** Makes the outputs of `entry` present at their paths (from the local store); null or why not. */
  checkout(id: string, entry: LockEntry): Promise<string | null>;
  onOutcome?(o: PullOutcome): void;
}

function sameOuts(inst: PullInstance, entry: LockEntry): boolean {
  const names = Object.keys(inst.outs);
  if (names.length !== Object.keys(entry.outs).length) return false;
  return names.every((n) => entry.outs[n]?.path === inst.outs[n]);
}

/**
 * For each instance in topological order: compute its current fingerprint; if the local lock has a
 * matching entry, check its outputs out; else fetch the remote run record for that fingerprint,
 * fetch and verify its objects, check the outputs out and record the entry in the lock. Upstream
 * outputs are in place before downstream fingerprints are taken, so whole chains come across.
 */
export async function pullInstances(d: PullDeps, instances: PullInstance[]): Promise<PullOutcome[]> {
  const out: PullOutcome[] = [];
  const emit = (o: PullOutcome) => {
    out.push(o);
    d.onOutcome?.(o);
  };
  for (const inst of instances) {
    const fp = await d.fingerprint(inst.id);
    if (fp === null) {
      emit({ id: inst.id, status: "waiting", why: "a dep does not exist (its upstream was not pulled or has never run)" });
      continue;
    }
    const local = d.localEntry(inst.id);
    if (local && local.fingerprint === fp && sameOuts(inst, local)) {
      const { digests, missing } = await entryObjects(d.store, local);
      let present = missing.length === 0;
      for (const dg of digests) if (present && !(await pathExists(d.store.objectPath(dg)))) present = false;
      if (present) {
        const why = await d.checkout(inst.id, local);
        if (!why) {
          emit({ id: inst.id, status: "local" });
          continue;
        }
      }
    }
    const text = await d.remote.getText(runKey(fp));
    if (text === null) {
      emit({ id: inst.id, status: "absent" });
      continue;
    }
    let rec: RunRecord;
    try {
      rec = parseRunRecord(text, `${d.remote.where} ${runKey(fp)}`);
    } catch (err) {
      emit({ id: inst.id, status: "refused", why: (err as Error).message });
      continue;
    }
    if (rec.entry.fingerprint !== fp) {
      emit({ id: inst.id, status: "refused", why: `run record ${runKey(fp)} names fingerprint ${rec.entry.fingerprint.slice(0, 19)}` });
      continue;
    }
    if (!sameOuts(inst, rec.entry)) {
      emit({ id: inst.id, status: "refused", why: "the run record's outputs do not match the outs declared now" });
      continue;
    }
    let objects = 0;
    let bytes = 0;
    let why: string | null = null;
    const fetchAll = async (items: Array<{ digest: string; label: string }>) => {
      await mapLimit(items, TRANSFER_CONCURRENCY, async ({ digest, label }) => {
        if (why) return;
        const got = await fetchObject(d.store, d.remote, digest);
        if (got === "absent") {
          why ??= `object ${digest.slice(0, 12)} (${label}) is not in ${d.remote.where}`;
          return;
        }
        objects += got.bytes > 0 ? 1 : 0;
        bytes += got.bytes;
      });
    };
    try {
      const outs = Object.values(rec.entry.outs) as OutRecord[];
      // Outputs (files, and folder manifests) first; then the files the manifests list.
      await fetchAll(outs.map((o) => ({ digest: o.digest, label: o.path })));
      for (const o of outs) {
        if (why || o.kind !== "dir") continue;
        const m = parseManifest(await readFile(d.store.objectPath(o.digest), "utf8"), o.digest);
        await fetchAll(m.files.map((f) => ({ digest: f.digest, label: `${o.path}/${f.path}` })));
      }
    } catch (err) {
      if (err instanceof CorruptObjectError || (err instanceof Error && /manifest/.test(err.message))) why = err.message;
      else throw err;
    }
    if (why) {
      emit({ id: inst.id, status: "refused", why });
      continue;
    }
    const co = await d.checkout(inst.id, rec.entry);
    if (co) {
      emit({ id: inst.id, status: "refused", why: co });
      continue;
    }
    // The lock entry is written last: outputs are in place and verified by now.
    await d.setEntry(inst.id, rec.entry);
    emit({ id: inst.id, status: "pulled", objects, bytes, ...(rec.provenance ? { provenance: rec.provenance } : {}) });
  }
  return out;
}
