// Stage download: materialises one entry of `sources` at ctx.outs.data. Kinds: `url` (fetch, verify,
// optionally extract), `mnist-universe` (the demo's data, built locally), `generated-vit` (a seeded
// featurizer checkpoint), `generated-images` / `generated-features` / `generated-class-list` (seeded
// stand-ins at the paper's shapes, src/io/stand-ins.ts). Owns dispatch and progress (its params are
// checked by download.contract.ts); the work lives in src/io and src/ml.
import { mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { parseParams, type StageContext } from "../src/stage-api.ts";
import { ConfigError, InputError } from "../src/errors.ts";
import { downloadFile, type DownloadProgress } from "../src/io/download.ts";
import { extractTarGz } from "../src/io/archive.ts";
import { buildMnistUniverse, universeParamsOf } from "../src/io/universe/mnist-universe.ts";
import { writeFileAtomic } from "../src/io/atomic.ts";
import { classListStandIn, writeCachedFeaturesStandIn, writeImageFolderStandIn } from "../src/io/stand-ins.ts";
import { contract, SOURCE_KINDS, type Source } from "./download.contract.ts";

export { contract, SOURCE_KINDS };

type SourceOf<K extends Source["kind"]> = Extract<Source, { kind: K }>;

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

async function runUrl(ctx: StageContext, src: SourceOf<"url">, out: string): Promise<void> {
  const sha = typeof src.sha256 === "string" ? src.sha256.toLowerCase() : undefined;
  const extract = src.extract ?? null;
  const strip = src.strip;
  const urlPath = new URL(src.url).pathname;
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
      strip,
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

async function runUniverse(ctx: StageContext, src: SourceOf<"mnist-universe">, out: string): Promise<void> {
  const params = universeParamsOf(src);
  await rm(out, { recursive: true, force: true });
  await mkdir(out, { recursive: true });
  const t0 = Date.now();
  const m = await buildMnistUniverse(params, out, {
    signal: ctx.signal,
    onProgress: (done, total) => ctx.progress({ phase: "universe", done, total, unit: "img" }),
  });
  ctx.log(`universe: ${m.files} files (${Object.entries(m.counts).map(([k, v]) => `${k} ${v}`).join(", ")}) in ${((Date.now() - t0) / 1000).toFixed(1)} s, digest ${m.digest.slice(0, 16)}`);
}

async function runGeneratedVit(ctx: StageContext, src: SourceOf<"generated-vit">, out: string): Promise<void> {
  const { seed, arch, format } = src;
  // Loaded on demand: the ViT modules pull in tfjs, which the other source kinds do not need.
  const { writeSeededVitCheckpoint } = await import("../src/ml/vit-checkpoint.ts");
  ctx.progress({ phase: "generate", message: "seeded ViT weights" });
  await writeSeededVitCheckpoint(arch, seed, out, format);
  ctx.log(`generated seeded ViT checkpoint (seed ${seed}, ${format})`);
}

async function runGeneratedImages(ctx: StageContext, src: SourceOf<"generated-images">, out: string): Promise<void> {
  const t0 = Date.now();
  const n = await writeImageFolderStandIn(src, out, {
    signal: ctx.signal,
    onProgress: (done, total) => ctx.progress({ phase: "generate", done, total, unit: "img" }),
  });
  ctx.log(`generated ${n} JPEGs in ${src.classes} class folders (seed ${src.seed}) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

async function runGeneratedFeatures(ctx: StageContext, src: SourceOf<"generated-features">, out: string): Promise<void> {
  const files = await writeCachedFeaturesStandIn(src, out, {
    signal: ctx.signal,
    onProgress: (done, total) => ctx.progress({ phase: "generate", done, total, unit: "files" }),
  });
  const rows = src.files.reduce((a, f) => a + f.rows, 0);
  ctx.log(`generated ${files.length} feature files (${rows} rows of ${src.dim}, seed ${src.seed})`);
}

async function runGeneratedClassList(ctx: StageContext, src: SourceOf<"generated-class-list">, out: string): Promise<void> {
  await writeFileAtomic(out, JSON.stringify(classListStandIn(src)) + "\n");
  ctx.log(`generated class list: ${src.classes} wnids, ${src.subset} under "${src.key}" (seed ${src.seed})`);
}

export async function run(ctx: StageContext): Promise<void> {
  const { source: src } = parseParams(contract, ctx.params);
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
    case "generated-images":
      return runGeneratedImages(ctx, src, out);
    case "generated-features":
      return runGeneratedFeatures(ctx, src, out);
    case "generated-class-list":
      return runGeneratedClassList(ctx, src, out);
  }
}

const stage = { run, contract };
export default stage;
