// What test/run.mjs starts every test file with (`node --import ./test/helpers/tsx-loader.mjs`):
// tsx for the TypeScript, plus a hook that hands ES modules under node_modules to Node unchanged.
// tsx rewrites every ES module it loads (dynamic imports, with an inline source map) and keeps no
// cache of that for node_modules; for h5wasm's 4 MB hdf5_util.js that alone took ~9 s of a test
// file's 11 s (measured here: test/unit/io/inspect.test.ts 11.1 s -> 1.8 s, CPU 5.9 s -> 1.3 s).
// Packages hold no TypeScript and no imports of it, so nothing of tsx's is lost for them.
import { register } from "node:module";
import "tsx/esm";

register("./tsx-loader-hooks.mjs", import.meta.url);
