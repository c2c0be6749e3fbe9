// Runs every test/**/*.test.ts(x) file in its own Node process (uvu + tsx), one more at a time than
// there are cores (at most 4), longest first, and prints every skipped test with its reason, then
// the closing line CI reads:
//   "N passed, N failed, N skipped"
// Exits non-zero if any test failed, a file crashed, timed out or printed no uvu summary, or a
// prerequisite that SED_TEST_REQUIRE names was missing ("all", or a comma list such as
// "python3-h5py,blas-addon"; CI sets "all": there a skip is a failure; locally skips stay skips).
// Usage: node test/run.mjs [substring filter ...]
import { spawn } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { availableParallelism } from "node:os";

const root = fileURLToPath(new URL("..", import.meta.url));
// Per-file durations of the last runs (gitignored build/): the longest files start first, so the
// slowest one (the demo pipeline) never starts last and leaves a core idle.
const TIMES_FILE = join(root, "build", "test-times.json");
// tsx, minus its rewriting of node_modules' ES modules (test/helpers/tsx-loader.mjs says why).
const LOADER = pathToFileURL(join(root, "test", "helpers", "tsx-loader.mjs")).href;

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (/\.test\.tsx?$/.test(name)) out.push(p);
  }
  return out;
}

/** What one test file's output says: counts, skips with reasons, prerequisites declared. */
export function parseOutput(output, code, signal) {
  const num = (label) => {
    const m = output.match(new RegExp(`^\\s*${label}:\\s+(\\d+)`, "m"));
    return m ? Number(m[1]) : undefined;
  };
  const total = num("Total");
  const passed = num("Passed") ?? 0;
  const uvuSkipped = num("Skipped") ?? 0;
  const skips = [];
  for (const m of output.matchAll(/^SKIP (.+?) :: (.+) :: ([\w.+-]+): (.*)$/gm)) {
    skips.push({ file: m[1], test: m[2], prereq: m[3], reason: m[4] });
  }
  const prereqs = new Map();
  for (const m of output.matchAll(/^PREREQ ([\w.+-]+) (ok|missing)$/gm)) prereqs.set(m[1], m[2] === "ok");
  // uvu's Total counts the tests that ran (skipped ones are not in it).
  let failed = total === undefined ? 0 : Math.max(0, total - passed);
  let problem = null;
  if (signal) problem = `killed by ${signal}`;
  else if (code !== 0 && failed === 0) problem = `exited with code ${code}`;
  else if (total === undefined) problem = "printed no uvu summary (no test.run()?)";
  // A crash, a timeout, a non-zero exit or a missing summary with no failing test counted is one failure.
  if (problem && failed === 0) failed = 1;
  return { passed, failed, skipped: uvuSkipped, skips, unexplainedSkips: Math.max(0, uvuSkipped - skips.length), prereqs, problem };
}

/** The prerequisites SED_TEST_REQUIRE asks for: "all", a comma list, or none. */
export function parseRequire(spec) {
  const s = (spec ?? "").trim();
  if (s === "") return { all: false, names: new Set() };
  if (s === "all") return { all: true, names: new Set() };
  return { all: false, names: new Set(s.split(",").map((x) => x.trim()).filter(Boolean)) };
}

/**
 * Totals over the files, with skips of required prerequisites turned into failures. `fullRun`:
 * every test file ran, so a required name that no file declares is an error (a typo would
 * otherwise pass unnoticed).
 */
export function summarize(results, require, fullRun) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  const skips = [];
  const requiredMissing = [];
  const declared = new Set();
  let unexplained = 0;
  const errors = [];
  for (const r of results) {
    passed += r.passed;
    failed += r.failed;
    skipped += r.skipped;
    for (const name of r.prereqs.keys()) declared.add(name);
    for (const s of r.skips) (require.all || require.names.has(s.prereq) ? requiredMissing : skips).push(s);
    if (r.unexplainedSkips > 0) {
      unexplained += r.unexplainedSkips;
      if (require.all) errors.push(`${r.file}: ${r.unexplainedSkips} test(s) skipped without a reason (plain test.skip) while SED_TEST_REQUIRE=all`);
    }
  }
  skipped -= requiredMissing.length;
  failed += requiredMissing.length;
  if (fullRun) {
    for (const name of require.names) {
      if (!declared.has(name)) errors.push(`SED_TEST_REQUIRE names "${name}", which no test declares (known: ${[...declared].sort().join(", ") || "none"})`);
    }
  }
  failed += errors.length;
  return { passed, failed, skipped, skips, requiredMissing, unexplained, errors };
}

/** The summary printed after the per-file lines; the last line is the one CI reads. */
export function summaryText(sum, requireSpec) {
  const lines = [];
  const show = (s) => `  SKIP ${s.file} :: ${s.test} :: ${s.prereq}: ${s.reason}`;
  if (sum.skips.length > 0 || sum.unexplained > 0) {
    lines.push(`skipped (${sum.skips.length + sum.unexplained}):`);
    for (const s of sum.skips) lines.push(show(s));
    if (sum.unexplained > 0) lines.push(`  ${sum.unexplained} skipped without a reason (plain test.skip)`);
  }
  if (sum.requiredMissing.length > 0) {
    lines.push(`FAILED: required prerequisites missing (SED_TEST_REQUIRE=${requireSpec}), counted as failures (${sum.requiredMissing.length}):`);
    for (const s of sum.requiredMissing) lines.push(show(s));
  }
  for (const e of sum.errors) lines.push(`FAILED: ${e}`);
  lines.push(`${sum.passed} passed, ${sum.failed} failed, ${sum.skipped} skipped`);
  return lines.join("\n");
}

/** Runs one test file in its own process; `lingerMs`: how long it may stay up after its summary. */
export function runFile(file, timeoutMs, lingerMs = 60_000) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, ["--import", LOADER, file], {
      cwd: root,
      env: { ...process.env, FORCE_COLOR: "0" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    // A file whose tests all ended (uvu printed its Duration line) but whose process stays up holds
    // a timer, socket or child open: that is a failure to report now, not a 40-minute hang.
    let linger;
    const onData = (d) => {
      output += d;
      if (!linger && /^\s*Duration:/m.test(output)) {
        linger = setTimeout(() => {
          output += `\n[test/run] ${relative(root, file)} printed its summary but did not exit within ${lingerMs / 1000} s (a timer, socket or child process left open); killed\n`;
          child.kill("SIGKILL");
        }, lingerMs);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    const timer = setTimeout(() => {
      output += `\n[test/run] ${relative(root, file)} timed out after ${timeoutMs} ms\n`;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      clearTimeout(linger);
      resolve({ file: relative(root, file), output, ms: Date.now() - started, ...parseOutput(output, code, signal) });
    });
  });
}

function readTimes() {
  try {
    return JSON.parse(readFileSync(TIMES_FILE, "utf8"));
  } catch {
    return {};
  }
}

async function main() {
  const filters = process.argv.slice(2);
  // Only for hangs: a slow machine is not a failure. The demo file alone allows its runs 30 min
  // (under load average 16 its first run took more than 10 min), so a file gets 40 min.
  const timeoutMs = Number(process.env.SED_TEST_TIMEOUT_MS ?? 2_400_000);
  // One more file than cores: test files wait a good part of their time (process starts, stage
  // workers, file watchers), so a third file on 2 cores keeps both busy. Measured here on 2 cores:
  // 317 s with 2 at a time, 242 s with 3 (the demo file, started first, is then the whole makespan).
  const jobs = Number(process.env.SED_TEST_JOBS ?? Math.min(4, availableParallelism() + 1));
  const requireSpec = process.env.SED_TEST_REQUIRE ?? "";
  const require = parseRequire(requireSpec);
  const all = walk(join(root, "test"));
  const files = all.filter((f) => filters.length === 0 || filters.some((s) => relative(root, f).includes(s)));
  if (files.length === 0) {
    console.log("no test files matched");
    console.log("0 passed, 1 failed, 0 skipped");
    process.exit(1);
  }
  const times = readTimes();
  // Unknown files (never timed) count as slow: e2e first, then the rest.
  const guess = (f) => times[relative(root, f)] ?? (relative(root, f).startsWith("test/e2e/") ? 120_000 : 30_000);
  const queue = [...files].sort((a, b) => guess(b) - guess(a));
  const started = Date.now();
  const results = [];
  let next = 0;
  async function worker() {
    while (next < queue.length) {
      const r = await runFile(queue[next++], timeoutMs);
      results.push(r);
      const required = r.skips.filter((s) => require.all || require.names.has(s.prereq)).length;
      const status = r.failed || required ? "FAIL" : "ok  ";
      const counts = `${r.passed} passed, ${r.failed} failed${r.skipped ? `, ${r.skipped} skipped` : ""}${required ? ` (${required} of a required prerequisite)` : ""}`;
      process.stdout.write(`${status} ${r.file}  (${counts}, ${(r.ms / 1000).toFixed(1)} s)${r.problem ? `  ${r.problem}` : ""}\n`);
      if (r.failed) process.stdout.write(r.output.replace(/^/gm, "    ") + "\n");
    }
  }
  await Promise.all(Array.from({ length: jobs }, worker));
  try {
    mkdirSync(join(root, "build"), { recursive: true });
    writeFileSync(TIMES_FILE, JSON.stringify({ ...times, ...Object.fromEntries(results.map((r) => [r.file, r.ms])) }, null, 1) + "\n");
  } catch {
    // best effort: only the order of the next run depends on it
  }
  results.sort((a, b) => a.file.localeCompare(b.file));
  const sum = summarize(results, require, filters.length === 0);
  console.log(`${files.length} files in ${((Date.now() - started) / 1000).toFixed(1)} s, ${jobs} at a time`);
  console.log(summaryText(sum, requireSpec));
  process.exit(sum.failed ? 1 : 0);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
