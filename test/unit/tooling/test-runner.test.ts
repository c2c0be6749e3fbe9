// test/run.mjs and test/helpers/skip.ts: a missing prerequisite is a skip with its reason, counted
// in the last line; SED_TEST_REQUIRE turns such skips into failures.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
// @ts-expect-error: plain ESM script without types
import { parseOutput, parseRequire, runFile, summarize, summaryText } from "../../run.mjs";

const REPO = fileURLToPath(new URL("../../..", import.meta.url));
const FIXTURE = "test/fixtures/runner/prereq-fixture.ts";

type Parsed = ReturnType<typeof parseOutput> & { file: string };

let cached: Parsed | undefined;
function fixtureResult(): Parsed {
  if (cached) return cached;
  const r = spawnSync(process.execPath, ["--import", "tsx", FIXTURE], { cwd: REPO, encoding: "utf8", env: { ...process.env, FORCE_COLOR: "0" } });
  return (cached = { file: FIXTURE, ...parseOutput(r.stdout + r.stderr, r.status, r.signal) });
}

test("requires(): a missing prerequisite registers a skip and prints its reason; present ones run", () => {
  const r = fixtureResult();
  assert.is(r.passed, 1);
  assert.is(r.failed, 0);
  assert.is(r.skipped, 3);
  assert.is(r.problem, null);
  assert.is(r.unexplainedSkips, 0);
  assert.equal(r.skips, [
    { file: FIXTURE, test: "needs the tool", prereq: "no-such-tool", reason: "not installed here" },
    { file: FIXTURE, test: "the tool's half of the 'runs' test", prereq: "no-such-tool", reason: "not installed here" },
    { file: FIXTURE, test: "needs the broken thing", prereq: "broken-check", reason: "spawn nope ENOENT" },
  ]);
  assert.equal([...r.prereqs], [["always-there", true], ["no-such-tool", false], ["broken-check", false]]);
});

test("the summary lists every skip with its reason; the last line keeps CI's prefix and adds skips", () => {
  const r = fixtureResult();
  const sum = summarize([r], parseRequire(undefined), true);
  assert.equal([sum.passed, sum.failed, sum.skipped], [1, 0, 3]);
  const text = summaryText(sum, "");
  const lines = text.split("\n");
  assert.is(lines[0], "skipped (3):");
  assert.is(lines[1], `  SKIP ${FIXTURE} :: needs the tool :: no-such-tool: not installed here`);
  assert.is(lines.at(-1), "1 passed, 0 failed, 3 skipped");
  assert.match(lines.at(-1)!, /^\d+ passed, \d+ failed/);
});

test("SED_TEST_REQUIRE=all: every skip is a failure; a list fails only its names; unknown names are errors", () => {
  const r = fixtureResult();
  const all = summarize([r], parseRequire("all"), true);
  assert.equal([all.passed, all.failed, all.skipped], [1, 3, 0]);
  const text = summaryText(all, "all");
  assert.match(text, /FAILED: required prerequisites missing \(SED_TEST_REQUIRE=all\), counted as failures \(3\):/);
  assert.match(text.split("\n").at(-1)!, /^1 passed, 3 failed, 0 skipped$/);
  const one = summarize([r], parseRequire("no-such-tool, always-there"), true);
  assert.equal([one.passed, one.failed, one.skipped], [1, 2, 1]);
  const typo = summarize([r], parseRequire("python3-h5pyy"), true);
  assert.is(typo.failed, 1);
  assert.match(typo.errors[0], /SED_TEST_REQUIRE names "python3-h5pyy", which no test declares \(known: always-there, broken-check, no-such-tool\)/);
  // A filtered run cannot know every declared name: no error for it there.
  assert.is(summarize([r], parseRequire("python3-h5pyy"), false).failed, 0);
});

test("parseOutput: a crash, a missing summary and a plain test.skip are visible", () => {
  const ok = "  Total:     2\n  Passed:    2\n  Skipped:   1\n  Duration:  1ms\n";
  const plainSkip = parseOutput(ok, 0, null);
  assert.equal([plainSkip.passed, plainSkip.failed, plainSkip.skipped, plainSkip.unexplainedSkips], [2, 0, 1, 1]);
  assert.match(summaryText(summarize([{ file: "f", ...plainSkip }], parseRequire(""), true), ""), /1 skipped without a reason/);
  assert.is(summarize([{ file: "f", ...plainSkip }], parseRequire("all"), true).failed, 1);
  const noSummary = parseOutput("hello\n", 0, null);
  assert.is(noSummary.failed, 1);
  assert.match(noSummary.problem!, /no uvu summary/);
  const crashed = parseOutput("  Total:     3\n  Passed:    3\n", 1, null);
  assert.is(crashed.failed, 1);
  const killed = parseOutput("", null, "SIGKILL");
  assert.equal([killed.failed, killed.problem], [1, "killed by SIGKILL"]);
  const failing = parseOutput("  Total:     5\n  Passed:    3\n  Skipped:   0\n", 1, null);
  assert.is(failing.failed, 2);
});

test("a file that printed its summary but does not exit is killed soon and counted as a failure", async () => {
  const started = Date.now();
  const r = await runFile(`${REPO}/test/fixtures/runner/linger-fixture.ts`, 120_000, 1500);
  assert.ok(Date.now() - started < 30_000, "killed long before the file timeout");
  assert.is(r.passed, 1);
  assert.is(r.failed, 1);
  assert.is(r.problem, "killed by SIGKILL");
  assert.match(r.output, /printed its summary but did not exit within 1\.5 s/);
});

test.run();
