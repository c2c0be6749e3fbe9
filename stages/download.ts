// Stage download: materialises one entry of `sources` at ctx.outs.data. Kinds: `url` (fetch, verify,
// optionally extract), `mnist-universe` (the demo's data, built locally), `generated-vit` (a seeded
// featurizer checkpoint). Owns dispatch and progress; the work lives in src/io and src/ml.
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import type { StageContext } from "../src/runner/stage-api.ts";
import { ConfigError, InputError } from "../src/errors.ts";
import { downloadFile, type DownloadProgress } from "../src/io/download.ts";
import { extractTarGz } from "../src/io/archive.ts";
import { buildMnistUniverse, parseUniverseParams } from "../src/io/universe/mnist-universe.ts";

export const SOURCE_KINDS = ["url", "mnist-universe", "generated-vit"] as const;

type Source = Record<string, unknown> & { name: string; kind: string; out: string };

function parseSource(v: unknown): Source {
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new ConfigError(`download: params.source must be one entry of \`sources\` (a mapping), got ${JSON.stringify(v)}`);
  }
  const s = v as Record<string, unknown>;
  const where = `sources[${typeof s.name === "string" ? s.name : "?"}]`;
  for (const k of ["name", "kind", "out"] as const) {
    if (typeof s[k] !== "string" || s[k] === "") throw new ConfigError(`${where}: missing or empty \`${k}\``, { hint: "every source needs name, kind and out" });
  }
  if (!(SOURCE_KINDS as readonly string[]).includes(s.kind as string)) {
    throw new ConfigError(`${where}: unknown kind ${JSON.stringify(s.kind)}`, { hint: `known kinds: ${SOURCE_KINDS.join(", ")}` });
  }
  return s as Source;
}

function fmtBytes(n: number): string {
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) {
    n /= 1000;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${u[i]}`;
}

function progressOf(ctx: StageContext, phase: string) {
  return (p: DownloadProgress): void => {
    ctx.progress({
      phase,
      done: p.done,
      total: p.total,
      unit: "B",
      message: `${fmtBytes(p.done)}${p.total ? ` of ${fmtBytes(p.total)}` : ""} at ${fmtBytes(p.rate)}/s${p.etaS !== undefined ? `, ${Math.ceil(p.etaS)} s left` : ""}`,
      metrics: { rate: p.rate, ...(p.etaS !== undefined ? { eta_s: p.etaS } : {}) },
    });
  };
}

async function runUrl(ctx: StageContext, src: Source, out: string): Promise<void> {
  const where = `sources[${src.name}]`;
  if (typeof src.url !== "string" || src.url === "") throw new ConfigError(`${where}: kind url needs \`url\``);
  if (src.sha256 !== undefined && src.sha256 !== null && typeof src.sha256 !== "string") throw new ConfigError(`${where}: sha256 must be a hex string`);
  const sha = typeof src.sha256 === "string" ? src.sha256.toLowerCase() : undefined;
  const extract = src.extract ?? null;
  if (extract !== null && extract !== "tar.gz") throw new ConfigError(`${where}: extract must be "tar.gz" or absent, got ${JSON.stringify(extract)}`);
  const strip = src.strip ?? 0;
  if (!Number.isInteger(strip) || (strip as number) < 0) throw new ConfigError(`${where}: strip must be a whole number`);
  let urlPath: string;
  try {
    urlPath = new URL(src.url).pathname;
  } catch {
    throw new ConfigError(`${where}: not a URL: ${JSON.stringify(src.url)}`, { hint: "use https://..., http://... or file:///..." });
  }
  let fileName = typeof src.file_name === "string" && src.file_name ? src.file_name : basename(urlPath) || src.name;
  if (fileName.includes("/") || fileName === "." || fileName === "..") fileName = src.name;

  // The part file lives in scratch, which survives failures: a re-run resumes it.
  const partPath = join(ctx.scratch, `${fileName}.part`);
  const target = extract ? join(ctx.scratch, fileName) : out;
  // An archive downloaded by an earlier run whose extraction failed is reused (scratch survives
  // failures), but only if it came from the same URL and matches the pin.
  const archiveOrigin = `${target}.origin.json`;
  const prior = extract
    ? await readFile(archiveOrigin, "utf8").then((t) => JSON.parse(t) as { url: string; sha256: string }, () => null)
    : null;
  if (prior && prior.url === src.url && (!sha || prior.sha256 === sha) && (await stat(target).catch(() => null))) {
    ctx.log(`reusing ${fileName} downloaded earlier (sha256 ${prior.sha256})`);
  } else {
    ctx.log(`downloading ${src.url}${sha ? " (pinned sha256)" : ""}`);
    const r = await downloadFile({
      url: src.url,
      dest: target,
      partPath,
      sha256: sha,
      signal: ctx.signal,
      onProgress: progressOf(ctx, "download"),
      onLog: (l) => ctx.log(l),
    });
    // No sidecar file: an undeclared output would escape the engine. The digest goes to the log,
    // and the lock records the output's digest anyway.
    ctx.log(`sha256 ${r.sha256}  ${fmtBytes(r.bytes)}${sha ? " (verified)" : " (not pinned: add `sha256:` to the source to pin it)"}`);
    if (extract) await writeFile(archiveOrigin, JSON.stringify({ url: src.url, sha256: r.sha256 }));
  }
  if (!extract) return;
  ctx.log(`extracting ${fileName}${strip ? ` (strip ${strip})` : ""}`);
  let last = 0;
  let res;
  try {
    res = await extractTarGz(target, out, {
      strip: strip as number,
      signal: ctx.signal,
      onBytes: (done, total) => {
        const now = Date.now();
        if (now - last < 250 && done < total) return;
        last = now;
        ctx.progress({ phase: "extract", done, total, unit: "B" });
      },
    });
  } catch (err) {
    // A damaged or unsafe archive is not worth keeping; after an interruption or a full disk it is.
    if (err instanceof InputError) {
      await rm(target, { force: true });
      await rm(archiveOrigin, { force: true });
    }
    throw err;
  }
  ctx.log(`extracted ${res.files} files, ${res.dirs} folders, ${res.links} links (${fmtBytes(res.bytes)})`);
  if (res.files === 0) throw new InputError(`${src.url}: the archive holds no files`);
  await rm(target, { force: true });
  await rm(archiveOrigin, { force: true });
}

async function runUniverse(ctx: StageContext, src: Source, out: string): Promise<void> {
  const params = parseUniverseParams(src, `sources[${src.name}]`);
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  const t0 = Date.now();
  const m = await buildMnistUniverse(params, out, {
    signal: ctx.signal,
    onProgress: (done, total) => ctx.progress({ phase: "universe", done, total, unit: "img" }),
  });
  ctx.log(`universe: ${m.files} files (${Object.entries(m.counts).map(([k, v]) => `${k} ${v}`).join(", ")}) in ${((Date.now() - t0) / 1000).toFixed(1)} s, digest ${m.digest.slice(0, 16)}`);
}

async function runGeneratedVit(ctx: StageContext, src: Source, out: string): Promise<void> {
  const where = `sources[${src.name}]`;
  if (typeof src.arch !== "object" || src.arch === null || Array.isArray(src.arch)) throw new ConfigError(`${where}: kind generated-vit needs \`arch\` (a mapping)`);
  const seed = src.seed ?? 0;
  if (!Number.isInteger(seed)) throw new ConfigError(`${where}: seed must be an integer`);
  // Loaded on demand: the ViT modules pull in tfjs, which the other source kinds do not need.
  const { writeSeededVitCheckpoint } = await import("../src/ml/vit-checkpoint.ts");
  const { parseVitArch } = await import("../src/ml/vit.ts");
  const arch = parseVitArch(src.arch, `${where}.arch`);
  ctx.progress({ phase: "generate", message: "seeded ViT weights" });
  await writeSeededVitCheckpoint(arch, seed as number, out);
  ctx.log(`generated seeded ViT checkpoint (seed ${seed as number})`);
}

export async function run(ctx: StageContext): Promise<void> {
  const src = parseSource(ctx.params.source);
  const out = ctx.outs.data;
  if (typeof out !== "string" || !out) throw new ConfigError(`download: the stage declares no \`data\` output`);
  await mkdir(ctx.scratch, { recursive: true });
  switch (src.kind) {
    case "url":
      return runUrl(ctx, src, out);
    case "mnist-universe":
      return runUniverse(ctx, src, out);
    case "generated-vit":
      return runGeneratedVit(ctx, src, out);
  }
}

const stage = { run };
export default stage;
