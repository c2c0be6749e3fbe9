// The npm install step shared by sed-pipe's optional Node-API addons (native/*): node-gyp with the
// local Node headers and npm's own node-gyp, never a download. A package that cannot be built exits 1
// with one clear line, so npm drops that optional package and sed-pipe uses its fallback.
"use strict";
const { spawnSync } = require("node:child_process");
const { existsSync } = require("node:fs");
const path = require("node:path");

/**
 * Builds the addon in `dir` (its binding.gyp) with node-gyp, then runs `selfCheck(dir)`, which
 * throws when the built addon is not usable and returns the line to log when it is.
 * `fallback`: what sed-pipe does without this addon (said when the build is skipped).
 */
function buildAddon({ name, dir, fallback, selfCheck }) {
  const fail = (msg) => {
    console.error(`${name}: ${msg}`);
    console.error(`${name}: skipped; ${fallback}`);
    process.exit(1);
  };
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
    cwd: dir,
    stdio: "inherit",
    env: { ...process.env, npm_config_offline: "true" },
  });
  if (r.status !== 0) fail(`node-gyp rebuild failed (exit ${r.status ?? r.signal})`);
  // Refuse a half-working build.
  try {
    console.log(`${name}: ${selfCheck(dir)}`);
  } catch (err) {
    fail(`built addon does not work: ${err.message}`);
  }
}

module.exports = { buildAddon };
