// Issue 14, item 2: the paper profile's pipeline at its real shapes. The real CLI runs
// `run tables --profile paper-smoke` (params/paper-smoke.yaml: seeded stand-ins with few rows, a
// DeiT-3 Base featurizer, heads 768 -> 3072 -> 1000, 50 / 5 / 5 / 5 heads, 35 eval sets) in a temp
// copy of the project, then checks that every instance the paper profile would run ran, at the
// paper's shapes, and that the tables have the reference CSVs' rows and columns. Values are not checked.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { cp, readFile, symlink } from "node:fs/promises";
import { join } from "node:path";
import { REPO, cli } from "../helpers/project.ts";
import { removeDir, tempDir, withTimeout } from "../helpers/tmp.ts";
import { openFeatureFile } from "../../src/io/feature-reader.ts";
import { readSafetensorsHeader } from "../../src/io/safetensors.ts";

let root = "";

interface Plan {
  type: "plan";
  counts: Record<string, number>;
  steps: { id: string; action: string }[];
}

function events(stdout: string): Record<string, unknown>[] {
  return stdout
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

function planOf(stdout: string): Plan {
  const p = events(stdout).find((e) => e.type === "plan");
  assert.ok(p, `no plan event in:\n${stdout.slice(-2000)}`);
  return p as unknown as Plan;
}

function runDone(stdout: string): { outcome: string; counts: Record<string, number> } {
  const d = events(stdout).find((e) => e.type === "run-done");
  assert.ok(d, `no run-done event in:\n${stdout.slice(-2000)}`);
  return d as unknown as { outcome: string; counts: Record<string, number> };
}

/** CSV rows, naive (the cells this test compares have no commas inside quotes except tuples). */
function csvRows(text: string): string[][] {
  return text
    .trim()
    .split("\n")
    .map((l) => l.match(/("[^"]*"|[^,]*)(,|$)/g)!.map((c) => c.replace(/,$/, "")).slice(0, -1));
}

test.before(async () => {
  root = await tempDir("sed-pipe-paper-smoke-");
  for (const entry of ["bin", "src", "stages", "params", "pipeline.yaml", "package.json", "tsconfig.json"]) {
    await cp(join(REPO, entry), join(root, entry), { recursive: true });
  }
  await symlink(join(REPO, "node_modules"), join(root, "node_modules"));
});

test.after(async () => {
  if (root) await removeDir(root);
});

let paperIds: string[] = [];

test("the paper profile's plan: the instances the smoke profile must cover", async () => {
  const r = await cli(root, "run", "tables", "--profile", "paper", "--dry-run", "--json");
  const plan = planOf(r.stdout);
  paperIds = plan.steps.map((s) => s.id);
  assert.is(paperIds.length, 184, `paper plan has ${paperIds.length} instances`);
});

test("`run tables --profile paper-smoke` runs every paper instance kind at the paper's shapes", async () => {
  const r = await withTimeout(cli(root, "run", "tables", "--profile", "paper-smoke", "--json"), 30 * 60_000, "paper-smoke run");
  assert.is(r.code, 0, r.stderr.slice(-3000) + r.stdout.slice(-3000));
  const plan = planOf(r.stdout);
  const ids = new Set(plan.steps.map((s) => s.id));
  const missing = paperIds.filter((id) => !ids.has(id));
  assert.equal(missing, [], `paper instances the smoke profile lacks: ${missing.join(", ")}`);
  // The paper's two manual inputs (ImageNet train, the DeiT checkpoint) are generated instead.
  const extra = [...ids].filter((id) => !paperIds.includes(id)).sort();
  assert.equal(extra, ["download@deit3-stand-in", "download@imagenet-train-stand-in"]);
  const done = runDone(r.stdout);
  assert.is(done.outcome, "ok");
  assert.is(done.counts.failed, 0);
  assert.is(done.counts.ran, 186, `ran ${done.counts.ran} of 186`);
});

test("features, ensembles and tables have the paper's shapes", async () => {
  const train = await openFeatureFile(join(root, "artifacts/features/in_train_deit3b_-1_4_epochs.hdf5"), { requireComplete: true });
  try {
    assert.is(train.dim, 768);
    assert.is(train.passes, 4);
    assert.is(train.passRows, 12);
  } finally {
    train.close();
  }
  for (const [model, heads] of [["50_models", 50], ["ood_gen", 5], ["ood_det_cov", 5], ["ood_det_sem", 5]] as const) {
    const h = await readSafetensorsHeader(join(root, "artifacts/models", model, "ensemble.safetensors"));
    const n = new Set(Object.keys(h).map((k) => k.split(".")[1])).size;
    assert.is(n, heads, `${model}: ${n} heads`);
    assert.equal(h["submodels.0.mlp.fc1.weight"].shape, [3072, 768], model);
    assert.equal(h["submodels.0.head.weight"].shape, [1000, 768], model);
    const csv = await readFile(join(root, "artifacts/models", model, "training.csv"), "utf8");
    assert.is(csv.trim().split("\n").length, 1 + 2, `${model}: training.csv should hold 2 epochs`);
  }
  for (const name of ["ood_gen_df", "ood_det_df"]) {
    const ours = csvRows(await readFile(join(root, "artifacts/tables", `${name}.csv`), "utf8"));
    const ref = csvRows(await readFile(join(REPO, "test/fixtures/tables/reference", `filled_${name}.csv`), "utf8"));
    assert.equal(ours[0], ref[0], `${name}: header`);
    assert.equal(ours[1], ref[1], `${name}: metric row`);
    assert.equal(ours.map((r) => r[0]), ref.map((r) => r[0]), `${name}: row labels`);
    for (const [i, row] of ours.entries()) {
      if (i < 2) continue;
      assert.is(row.length, ref[i].length, `${name} row ${row[0]}: ${row.length} cells`);
      row.forEach((cell, j) => {
        if (j === 0) return;
        if (ref[i][j] === "") assert.is(cell, "", `${name} ${row[0]} col ${j}`);
        else assert.ok(cell !== "" && Number.isFinite(Number(cell)), `${name} ${row[0]} col ${ref[0][j]}: ${JSON.stringify(cell)}`);
      });
    }
  }
  const cmp = await readFile(join(root, "artifacts/tables/published_comparison.csv"), "utf8");
  assert.ok(cmp.trim().split("\n").length > 50, "published comparison has few rows");
});

test("a second run executes nothing", async () => {
  const r = await cli(root, "run", "tables", "--profile", "paper-smoke", "--json");
  assert.is(r.code, 0, r.stderr.slice(-2000));
  const done = runDone(r.stdout);
  assert.is(done.counts.ran, 0);
  assert.is(done.counts.failed, 0);
});

test.run();
