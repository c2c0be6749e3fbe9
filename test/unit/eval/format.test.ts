import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { csvLine, npMean, npRound, pyRepr, pyRound } from "../../../src/report/format.ts";

const golden = JSON.parse(readFileSync(fileURLToPath(new URL("./fixtures/python-format.json", import.meta.url)), "utf8"));

test("pyRound(x, 9) and pyRepr match CPython on the golden values (incl. exact ties)", () => {
  for (const [v, rounded, repr] of golden.round as [number, string, string][]) {
    assert.is(pyRepr(v), repr, `repr ${v}`);
    assert.is(pyRepr(pyRound(v, 9)), rounded, `round ${v}`);
  }
  assert.is(pyRepr(pyRound(0.0009765625, 9)), "0.000976562");
  assert.is(pyRepr(5), "5.0");
  assert.is(pyRepr(1e-5), "1e-05");
});

test("npMean reproduces numpy's pairwise-summation mean", () => {
  for (const [a, m] of golden.means as [number[], string][]) assert.is(pyRepr(npMean(a)), m, `n=${a.length}`);
});

test("npRound reproduces round(np.float64, 9)", () => {
  let differsFromPython = 0;
  for (const [v, r] of golden.np_round as [number, string][]) {
    assert.is(pyRepr(npRound(v, 9)), r, `np round ${v}`);
    if (npRound(v, 9) !== pyRound(v, 9)) differsFromPython++;
  }
  assert.ok(differsFromPython > 0, "the golden set should contain cases where numpy and Python rounding differ");
});

test("CSV fields are quoted like pandas", () => {
  assert.is(csvLine(["0", "", "('ensemble', 100)", 'a"b']), `0,,"('ensemble', 100)","a""b"`);
});

test.run();
