#!/usr/bin/env node
// Entry point installed as `sed-pipe`. Runs src/cli.ts from an esbuild bundle (build/cli-<hash>/,
// beside this folder), rebuilt whenever any of its input files changed: the size and mtime of every
// input are checked at start-up (about 1 ms with @sed-pipe/fslist, 3-7 ms without), so an edited
// source can never run stale. Starting from the bundle avoids compiling TypeScript on every command
// (measured: ~180 ms -> ~60 ms to `--version`).
// If the bundle cannot be built (esbuild missing), it falls back to the tsx loader.
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { availableParallelism } from "node:os";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

/**
 * @sed-pipe/fslist (native/fslist, optional), or null: not installed, not this version (2, as
 * src/hash/native-listing.ts), or SED_PIPE_NO_FSLIST=1. In a checkout, its file is opened directly
 * (process.dlopen: 0.5 ms, against 4 ms for the package resolution and CommonJS loader); installed
 * elsewhere (a hoisted node_modules), through require. Left on globalThis for native-listing.ts,
 * which then does not load it a second time.
 */
function loadFsList() {
  if (process.env.SED_PIPE_NO_FSLIST === "1") return null;
  try {
    const local = join(root, "node_modules", "@sed-pipe", "fslist", "build", "Release", "sed_fslist.node");
    let fslist;
    if (existsSync(local)) {
      const m = { exports: {} };
      process.dlopen(m, local);
      fslist = m.exports;
    } else {
      fslist = createRequire(import.meta.url)("@sed-pipe/fslist");
    }
    if (fslist.version !== 2) return null;
    globalThis.__sedPipeFsList = fslist;
    return fslist;
  } catch {
    return null;
  }
}
const fslist = loadFsList();

/**
 * A read-only command (status, why, run --dry-run) starts listing, on native threads, the folders that
 * the last check listed one by one (cache/state/listing-hint.json, see src/hash/folder-lister.ts), so
 * that their stat(2) calls overlap with loading the program; src/hash/native-listing.ts takes the
 * listings, each once, during the first assessment and drops the rest. Without @sed-pipe/fslist, or
 * without a hint, nothing starts and the check lists as before.
 */
function preloadListings() {
  const [cmd, ...rest] = process.argv.slice(2);
  const readOnly = cmd === "status" || cmd === "why" || (cmd === "run" && rest.some((a) => a === "--dry-run" || a === "-n"));
  if (!readOnly || fslist === null) return;
  try {
    let dir = process.cwd();
    while (!existsSync(join(dir, "pipeline.yaml"))) {
      const up = dirname(dir);
      if (up === dir) return;
      dir = up;
    }
    const hint = JSON.parse(readFileSync(join(dir, "cache", "state", "listing-hint.json"), "utf8"));
    if (hint.version !== 1 || !Array.isArray(hint.folders) || !hint.folders.every((f) => typeof f === "string")) return;
    // One thread per core beside the one loading the program (which joins in when it needs the
    // listings); signed on those threads where the addon can.
    const digests = fslist.digests === true;
    const handle = fslist.begin(hint.folders, Math.max(1, Math.min(3, availableParallelism() - 1)), digests);
    globalThis.__sedPipePreload = { folders: hint.folders, digests, finish: () => fslist.finish(handle) };
  } catch {
    // No preload: the check lists as usual.
  }
}
preloadListings();

const buildDir = join(root, "build");
const metaFile = join(buildDir, "cli.meta.json");

/** [size, mtimeMs] of each file (NaN where it cannot be stat'ed): in one native call where the addon is. */
function statAll(files) {
  if (fslist !== null) return fslist.statMany(files);
  const out = new Float64Array(2 * files.length).fill(NaN);
  files.forEach((f, i) => {
    try {
      const st = statSync(f);
      [out[2 * i], out[2 * i + 1]] = [st.size, st.mtimeMs];
    } catch {
      // NaN: not there
    }
  });
  return out;
}

/** The entry file of a bundle built from exactly the current sources, or null. */
function freshEntry() {
  try {
    const meta = JSON.parse(readFileSync(metaFile, "utf8"));
    if (meta.root !== root) return null;
    const inputs = Object.entries(meta.inputs);
    const outputs = Object.entries(meta.outputs);
    // root + file, not join(): 220 cold path.join calls cost 5 ms here (root ends with a separator;
    // the names are relative, as esbuild's metafile gives them).
    const st = statAll([...inputs, ...outputs].map(([file]) => root + file));
    for (let i = 0; i < inputs.length; i++) {
      const sig = inputs[i][1];
      if (st[2 * i] !== sig.size || st[2 * i + 1] !== sig.mtimeMs) return null;
    }
    for (let i = 0; i < outputs.length; i++) if (st[2 * (inputs.length + i)] !== outputs[i][1]) return null;
    return join(root, meta.entry);
  } catch {
    return null;
  }
}

/**
 * Packages bundled into the CLI rather than imported from node_modules at run time: small pure-JS
 * CommonJS ones that every command loads. Loaded from node_modules, each costs Node's CommonJS loader
 * plus the ESM wrapper's export scan (measured: commander and object-hash ~7 ms of a warm status).
 * Every other package stays external, so the heavy ones (tfjs, h5wasm, ink...) load only when a
 * command imports them.
 */
const BUNDLED_PACKAGES = new Set(["commander", "object-hash"]);

/** esbuild plugin: bare imports are external unless their package is in BUNDLED_PACKAGES. */
const externalPackages = {
  name: "external-packages",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith("node:")) return { path: args.path, external: true };
      const parts = args.path.split("/");
      const pkg = args.path.startsWith("@") ? parts.slice(0, 2).join("/") : parts[0];
      return BUNDLED_PACKAGES.has(pkg) ? undefined : { path: args.path, external: true };
    });
  },
};

async function rebuild() {
  const esbuild = await import("esbuild");
  const started = Date.now();
  // Code splitting keeps the commands' lazy imports lazy: without it every external package
  // (h5wasm, ink, tfjs...) would load on every command.
  const result = await esbuild.build({
    entryPoints: { cli: join(root, "src", "cli.ts") },
    absWorkingDir: root,
    bundle: true,
    splitting: true,
    write: false,
    metafile: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // Keep `with { type: "json" }` on external JSON imports (e.g. mnist/package.json): esbuild drops
    // it for a node20 target, and Node then refuses to load the JSON.
    supported: { "import-attributes": true },
    plugins: [externalPackages],
    jsx: "automatic",
    // Linked, not inline: inline maps made every chunk three times bigger to read and scan at each
    // start (measured: 7 ms of a warm status). Node reads them only under SED_PIPE_DEBUG=1.
    sourcemap: "linked",
    logLevel: "silent",
    outdir: join(buildDir, "pending"),
    // .mjs: Node knows each chunk is a module from its name, without looking up the package scope's
    // "type" (measured: 5 ms of loading a warm status's 30 chunks).
    outExtension: { ".js": ".mjs" },
    // `require` for the bundled CommonJS packages (they require Node's built-ins).
    banner: { js: `import { createRequire as __sedPipeCreateRequire } from "node:module"; const require = __sedPipeCreateRequire(import.meta.url); globalThis.__sedPipeSrcDir ??= ${JSON.stringify(join(root, "src"))};` },
  });
  const inputs = {};
  // This file too: it holds the build options, so editing it rebuilds.
  const inputFiles = ["bin/sed-pipe.js", ...Object.keys(result.metafile.inputs)];
  // Signed by the function freshEntry checks with, so the two always agree.
  const st = statAll(inputFiles.map((file) => root + file));
  for (let i = 0; i < inputFiles.length; i++) {
    const [size, mtimeMs] = [st[2 * i], st[2 * i + 1]];
    // A file written during the build may not be what esbuild read (or one gone): record nothing, rebuild next time.
    if (Number.isNaN(size) || mtimeMs > started - 2000) return;
    inputs[inputFiles[i]] = { size, mtimeMs };
  }
  const hash = createHash("sha256");
  for (const f of result.outputFiles) hash.update(f.path).update(f.contents);
  const dirName = `cli-${hash.digest("hex").slice(0, 16)}`;
  const dir = join(buildDir, dirName);
  const tmp = `${dir}.${process.pid}.tmp`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const outputs = {};
  for (const f of result.outputFiles) {
    const name = basename(f.path);
    writeFileSync(join(tmp, name), f.contents);
    // The maps are checked by nobody at start-up (only SED_PIPE_DEBUG=1 reads them).
    if (!name.endsWith(".map")) outputs[`build/${dirName}/${name}`] = f.contents.byteLength;
  }
  try {
    renameSync(tmp, dir);
  } catch {
    rmSync(tmp, { recursive: true, force: true }); // the same bundle is there (built before, or by another process just now)
    try {
      const now = new Date();
      utimesSync(dir, now, now); // in use again: dated now for pruneBuilds
    } catch {
      // Not there after all: freshEntry finds its files missing and the tsx loader runs.
    }
  }
  const tmpMeta = `${metaFile}.${process.pid}.tmp`;
  writeFileSync(tmpMeta, JSON.stringify({ root, entry: `build/${dirName}/cli.mjs`, inputs, outputs }));
  renameSync(tmpMeta, metaFile);
  try {
    pruneBuilds(dirName);
  } catch {
    // Old bundles only take disk space.
  }
}

/** Bundles kept beside the current one: the KEEP_BUILDS - 1 built last, and any built in the last KEEP_BUILD_MS. */
const KEEP_BUILDS = 10;
const KEEP_BUILD_MS = 2 * 86_400_000;

/**
 * Removes old bundles (each source edit makes one of ~2.5 MB). A process still running from a removed
 * bundle would fail at its next lazy import, so only bundles that are both older than two days and
 * not among the ten built last go; leftovers of an interrupted build go after an hour.
 */
function pruneBuilds(current) {
  const now = Date.now();
  const old = [];
  for (const name of readdirSync(buildDir)) {
    const bundle = /^cli-[0-9a-f]{16}$/.test(name);
    if (name === current || !(bundle || /^cli-[0-9a-f]{16}\.\d+\.tmp$/.test(name))) continue;
    const mtimeMs = statSync(join(buildDir, name)).mtimeMs;
    if (bundle) old.push({ name, mtimeMs });
    else if (now - mtimeMs > 3_600_000) rmSync(join(buildDir, name), { recursive: true, force: true });
  }
  old.sort((a, b) => b.mtimeMs - a.mtimeMs);
  for (const { name, mtimeMs } of old.slice(KEEP_BUILDS - 1)) {
    if (now - mtimeMs > KEEP_BUILD_MS) rmSync(join(buildDir, name), { recursive: true, force: true });
  }
}

let entry;
if (process.env.SED_PIPE_NO_BUNDLE !== "1") {
  try {
    let file = freshEntry();
    if (file === null) {
      await rebuild();
      file = freshEntry();
    }
    if (file !== null) {
      entry = pathToFileURL(file).href;
      // Names the code that runs (its folder is named by the bundle's content hash): what the
      // program keeps between commands, e.g. the loaded pipeline, is reused only by the same build.
      globalThis.__sedPipeBuild = basename(join(file, ".."));
    }
  } catch {
    entry = undefined;
  }
}
if (process.env.SED_PIPE_DEBUG === "1") process.setSourceMapsEnabled(true);
if (entry === undefined) {
  const { register } = await import("tsx/esm/api");
  register();
  entry = new URL("../src/cli.ts", import.meta.url).href;
}
const { main } = await import(entry);
process.exitCode = await main(process.argv.slice(2));
