// Runs every test/**/*.test.ts file in its own Node process (uvu + tsx), two at a time, and
// prints the closing line CI reads: "N passed, N failed". Exits non-zero if any test failed or a
// file crashed or timed out. Usage: node test/run.mjs [substring filter ...]
import { spawn } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { availableParallelism } from "node:os";

const root = fileURLToPath(new URL("..", import.meta.url));
const filters = process.argv.slice(2);
const FILE_TIMEOUT_MS = Number(process.env.SED_TEST_TIMEOUT_MS ?? 600_000);
const JOBS = Number(process.env.SED_TEST_JOBS ?? Math.min(2, availableParallelism()));

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (/\.test\.tsx?$/.test(name)) out.push(p);
  }
  return out;
}

const files = walk(join(root, "test")).filter(
  (f) => filters.length === 0 || filters.some((s) => relative(root, f).includes(s)),
);

function runFile(file) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ["--import", "tsx", file], {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    child.stdout.on("data", (d) => (output += d));
    child.stderr.on("data", (d) => (output += d));
    const timer = setTimeout(() => {
      output += `\n[test/run] ${relative(root, file)} timed out after ${FILE_TIMEOUT_MS} ms\n`;
      child.kill("SIGKILL");
    }, FILE_TIMEOUT_MS);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const num = (label) => {
        const m = output.match(new RegExp(`${label}:\\s+(\\d+)`));
        return m ? Number(m[1]) : undefined;
      };
      const total = num("Total");
      const passed = num("Passed") ?? 0;
      const skipped = num("Skipped") ?? 0;
      // uvu's Total counts the tests that ran (skipped ones are not in it).
      let failed = total === undefined ? 0 : Math.max(0, total - passed);
      // A crash, a timeout or a non-zero exit with no failing test counted is one failure.
      if ((code !== 0 || signal) && failed === 0) failed = 1;
      resolve({ file, output, passed, failed, skipped, ms: Date.now() - started });
    });
  });
}

const results = [];
let next = 0;
async function worker() {
  while (next < files.length) {
    const file = files[next++];
    const r = await runFile(file);
    results.push(r);
    const status = r.failed ? "FAIL" : "ok  ";
    process.stdout.write(`${status} ${relative(root, file)}  (${r.passed} passed, ${r.failed} failed, ${(r.ms / 1000).toFixed(1)} s)\n`);
    if (r.failed) process.stdout.write(r.output.replace(/^/gm, "    ") + "\n");
  }
}
await Promise.all(Array.from({ length: JOBS }, worker));

const passed = results.reduce((s, r) => s + r.passed, 0);
const failed = results.reduce((s, r) => s + r.failed, 0);
const skipped = results.reduce((s, r) => s + r.skipped, 0);
if (files.length === 0) {
  console.log("no test files matched");
  console.log("0 passed, 1 failed");
  process.exit(1);
}
console.log(`${passed} passed, ${failed} failed` + (skipped ? `, ${skipped} skipped` : ""));
process.exit(failed ? 1 : 0);
