// npm install step of @sed-pipe/fslist: builds the addon with node-gyp (../build-addon.cjs). Exits
// non-zero with one clear line when it cannot be built (no C++17 compiler, a platform without it), so
// npm drops this optional package and sed-pipe lists folders in JavaScript; never downloads anything.
"use strict";
const { createHash } = require("node:crypto");
const { mkdtempSync, rmSync, statSync, writeFileSync, mkdirSync } = require("node:fs");
const { tmpdir } = require("node:os");
const path = require("node:path");
const { buildAddon } = require("../build-addon.cjs");

const name = "@sed-pipe/fslist";
const fallback = "sed-pipe will list folders in JavaScript (status checks of big folders are slower)";
if (process.env.SED_PIPE_NO_FSLIST === "1") {
  console.error(`${name}: SED_PIPE_NO_FSLIST=1 is set`);
  console.error(`${name}: skipped; ${fallback}`);
  process.exit(1);
}

buildAddon({
  name,
  dir: __dirname,
  fallback,
  // List a folder of one file and one sub-folder, and print two numbers as JavaScript does.
  selfCheck: (dir) => {
    const fslist = require(path.join(dir, "build", "Release", "sed_fslist.node"));
    const tmp = mkdtempSync(path.join(tmpdir(), "sed-fslist-"));
    try {
      writeFileSync(path.join(tmp, "a"), "x");
      mkdirSync(path.join(tmp, "b"));
      const [got] = fslist.finish(fslist.begin([tmp], 1));
      if (!got || !got[0].startsWith("f\0a\0") || !got[0].endsWith("d\0b\n")) throw new Error(`listing gave ${JSON.stringify(got)}`);
      for (const x of [1733400000000, 1733400000123.4567, 0.1]) {
        if (fslist.formatNumber(x) !== String(x)) throw new Error(`formatNumber(${x}) gave ${fslist.formatNumber(x)}`);
      }
      // Signed on the threads where it was built with OpenSSL's headers: the SHA-256 of the text.
      if (fslist.digests) {
        const [signed] = fslist.finish(fslist.begin([tmp], 1, true));
        const want = createHash("sha256").update(got[0]).digest("hex");
        if (!signed || signed[0] !== want) throw new Error(`digest ${JSON.stringify(signed)}, the text's SHA-256 is ${want}`);
      }
      const st = statSync(path.join(tmp, "a"));
      const [size, mtimeMs] = fslist.statMany([path.join(tmp, "a")]);
      if (size !== st.size || mtimeMs !== st.mtimeMs) throw new Error(`statMany gave ${size}, ${mtimeMs}; fs.statSync ${st.size}, ${st.mtimeMs}`);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    return fslist.digests ? "built" : "built (without OpenSSL's headers: listings are signed in JavaScript)";
  },
});
