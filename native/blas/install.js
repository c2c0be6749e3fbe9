// npm install step of @sed-pipe/blas: builds the addon with node-gyp against OpenBLAS found by
// pkg-config (../build-addon.cjs). Exits non-zero with one clear line when OpenBLAS is absent, so npm
// drops this optional package and sed-pipe falls back to the pure-wasm kernels; never downloads anything.
"use strict";
const { spawnSync } = require("node:child_process");
const path = require("node:path");
const { buildAddon } = require("../build-addon.cjs");

const name = "@sed-pipe/blas";
const fallback = "sed-pipe will use the wasm kernels (install libopenblas-dev and run `npm ci` for the fast path)";
function fail(msg) {
  console.error(`${name}: ${msg}`);
  console.error(`${name}: skipped; ${fallback}`);
  process.exit(1);
}

if (process.env.SED_PIPE_NO_BLAS === "1") fail("SED_PIPE_NO_BLAS=1 is set");

const pc = spawnSync("pkg-config", ["--exists", "--print-errors", "openblas"], { encoding: "utf8" });
if (pc.error) fail(`pkg-config is not available (${pc.error.message})`);
if (pc.status !== 0) fail(`pkg-config cannot find openblas: ${(pc.stderr || "").trim().split("\n")[0]}`);

buildAddon({
  name,
  dir: __dirname,
  fallback,
  // Load it once and run a 1x1 product.
  selfCheck: (dir) => {
    const blas = require(path.join(dir, "build", "Release", "sed_blas.node"));
    const c = new Float32Array(1);
    blas.sgemm(false, false, 1, 1, 1, 1, new Float32Array([2]), 1, new Float32Array([3]), 1, 0, c, 1);
    if (c[0] !== 6) throw new Error(`self-check gave 2*3=${c[0]}`);
    return `built against ${blas.config()}`;
  },
});
