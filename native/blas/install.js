// npm install step of @sed-pipe/blas: builds the addon with node-gyp against OpenBLAS found by
// pkg-config. Exits non-zero with one clear line when OpenBLAS is absent, so npm drops this
// optional package and sed-pipe falls back to the pure-wasm kernels; never downloads anything.
"use strict";
const { spawnSync } = require("node:child_process");
const { existsSync } = require("node:fs");
const path = require("node:path");

function fail(msg) {
  console.error(`@sed-pipe/blas: ${msg}`);
  console.error("@sed-pipe/blas: skipped; sed-pipe will use the wasm kernels (install libopenblas-dev and run `npm ci` for the fast path)");
  process.exit(1);
}

if (process.env.SED_PIPE_NO_BLAS === "1") fail("SED_PIPE_NO_BLAS=1 is set");

const pc = spawnSync("pkg-config", ["--exists", "--print-errors", "openblas"], { encoding: "utf8" });
if (pc.error) fail(`pkg-config is not available (${pc.error.message})`);
if (pc.status !== 0) fail(`pkg-config cannot find openblas: ${(pc.stderr || "").trim().split("\n")[0]}`);

// Node's own headers: node-gyp would otherwise try to download them, which this project forbids.
const candidates = [path.resolve(path.dirname(process.execPath), ".."), "/usr", "/usr/local"];
const nodedir = candidates.find((d) => existsSync(path.join(d, "include", "node", "node_api.h")));
if (!nodedir) fail(`Node.js headers (include/node/node_api.h) not found under ${candidates.join(", ")}`);

let gyp = process.env.npm_config_node_gyp;
if (!gyp || !existsSync(gyp)) {
  try {
    gyp = require.resolve("node-gyp/bin/node-gyp.js", {
      paths: [path.join(path.dirname(process.execPath), "..", "lib", "node_modules", "npm")],
    });
  } catch {
    fail("node-gyp not found (it ships with npm; set npm_config_node_gyp)");
  }
}

const r = spawnSync(process.execPath, [gyp, "rebuild", `--nodedir=${nodedir}`], {
  cwd: __dirname,
  stdio: "inherit",
  env: { ...process.env, npm_config_offline: "true" },
});
if (r.status !== 0) fail(`node-gyp rebuild failed (exit ${r.status ?? r.signal})`);

// Refuse a half-working build: load it once and run a 1x1 product.
try {
  const blas = require(path.join(__dirname, "build", "Release", "sed_blas.node"));
  const c = new Float32Array(1);
  blas.sgemm(false, false, 1, 1, 1, 1, new Float32Array([2]), 1, new Float32Array([3]), 1, 0, c, 1);
  if (c[0] !== 6) fail(`self-check gave 2*3=${c[0]}`);
  console.log(`@sed-pipe/blas: built against ${blas.config()}`);
} catch (err) {
  fail(`built addon does not load: ${err.message}`);
}
