// The README's main job, end to end: the real CLI runs the whole demo profile (MNIST universe ->
// tiny-ViT features -> four SED ensembles -> eval -> tables) in a temp copy of the project, then
// checks the demo's quality bar on the numbers it computed, and that a second run executes nothing.
// Where Debian's Slurm is installed, the same demo then runs as batch jobs on a real one-node cluster
// (test/helpers/slurm-cluster.ts) in a second copy, and must write byte-identical tables.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { cp, readFile, rm, symlink } from "node:fs/promises";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { REPO, cli, startCli } from "../helpers/project.ts";
import { slurmPrerequisite, startCluster } from "../helpers/slurm-cluster.ts";
import { removeDir, tempDir, withTimeout } from "../helpers/tmp.ts";

interface EvalResult {
  metrics: Record<string, { mean: number }>;
  auroc: Record<string, { mean: number } | null> | null;
  counts: { samples: number };
}

const MODELS = ["50_models", "ood_det_cov", "ood_det_sem", "ood_gen"];
let root = "";
const slurm = slurmPrerequisite();

async function copyProject(prefix: string): Promise<string> {
  const dir = await tempDir(prefix);
  for (const entry of ["bin", "src", "stages", "params", "pipeline.yaml", "package.json", "tsconfig.json"]) {
    await cp(join(REPO, entry), join(dir, entry), { recursive: true });
  }
  await symlink(join(REPO, "node_modules"), join(dir, "node_modules"));
  return dir;
}

function runDone(stdout: string): { outcome: string; counts: Record<string, number> } {
  const line = stdout.trim().split("\n").reverse().find((l) => l.includes('"run-done"'));
  assert.ok(line, `no run-done event in:\n${stdout.slice(-2000)}`);
  return JSON.parse(line!);
}

async function result(model: string, dataset: string): Promise<EvalResult> {
  return JSON.parse(await readFile(join(root, "artifacts/eval", model, `${dataset}.json`), "utf8"));
}

test.before(async () => {
  root = await copyProject("sed-pipe-demo-");
});

test.after(async () => {
  if (root) await removeDir(root);
});

test("`sed-pipe run tables` runs the whole demo pipeline and writes the tables", async () => {
  const r = await withTimeout(cli(root, "run", "tables", "--json"), 15 * 60_000, "demo run");
  assert.is(r.code, 0, r.stderr.slice(-3000) + r.stdout.slice(-3000));
  const done = runDone(r.stdout);
  assert.is(done.outcome, "ok");
  assert.is(done.counts.failed, 0);
  assert.ok(done.counts.ran >= 98, `ran ${done.counts.ran}`);
  for (const f of ["ood_gen_df.csv", "ood_det_df.csv", "ood_gen_df.md", "ood_det_df.md", "ensemble_accuracy.svg", "ood_detection_auroc.svg"]) {
    const text = await readFile(join(root, "artifacts/tables", f), "utf8");
    assert.ok(text.length > 100, `${f} is nearly empty`);
  }
  const csv = await readFile(join(root, "artifacts/tables/ood_gen_df.csv"), "utf8");
  for (const m of MODELS) assert.ok(csv.includes(`${m}_`), `${m}_ missing from ood_gen_df.csv`);
});

test("the demo's numbers clear the bar: accurate, degrading under shift, PDS detects novel digits", async () => {
  const corruptions = ["Gaussian Noise", "Shot Noise", "Impulse Noise", "Defocus Blur", "Brightness", "Contrast", "Pixelate"];
  const meanOver = async (model: string, keys: string[], f: (r: EvalResult) => number) =>
    (await Promise.all(keys.map(async (k) => f(await result(model, k))))).reduce((a, b) => a + b, 0) / keys.length;
  const acc = (r: EvalResult) => r.metrics.ensemble.mean;
  const pds = (r: EvalResult) => r.metrics.div_continous_unique.mean;
  const shifted = [...corruptions.map((c) => `${c}_5`), "iNaturalist", "OpenImages"];
  for (const m of MODELS) {
    const inVal = acc(await result(m, "in_val"));
    const c1 = await meanOver(m, corruptions.map((c) => `${c}_1`), acc);
    const c5 = await meanOver(m, corruptions.map((c) => `${c}_5`), acc);
    assert.ok(inVal >= 0.8, `${m}: in_val ensemble accuracy ${inVal} < 0.80`);
    assert.ok(inVal > c1 && c1 > c5, `${m}: accuracy should fall in_val ${inVal} > C-1 ${c1} > C-5 ${c5}`);
  }
  // The diversified configuration disagrees more on shifted data than the non-diversified one.
  const pdsCov = await meanOver("ood_det_cov", shifted, pds);
  const pdsGen = await meanOver("ood_gen", shifted, pds);
  assert.ok(pdsCov > pdsGen, `mean PDS on shifted sets: ood_det_cov ${pdsCov} should exceed ood_gen ${pdsGen}`);
  // PDS separates held-out digits from in_val better than chance, on each semantic-shift set.
  for (const m of MODELS) {
    for (const d of ["iNaturalist", "OpenImages"]) {
      const auc = (await result(m, d)).auroc!.div_continous_unique_per_sample!.mean;
      assert.ok(auc > 0.5, `${m}: PDS AUROC on ${d} ${auc} <= 0.5`);
    }
  }
});

test("a second run executes nothing; deleted outputs come back from the cache", async () => {
  const again = runDone((await withTimeout(cli(root, "run", "tables", "--json"), 5 * 60_000, "second run")).stdout);
  assert.is(again.counts.ran, 0);
  assert.is(again.counts.restored, 0);
  await rm(join(root, "artifacts/tables"), { recursive: true });
  const restored = runDone((await withTimeout(cli(root, "run", "tables", "--json"), 5 * 60_000, "restore run")).stdout);
  assert.is(restored.counts.ran, 0);
  assert.is(restored.counts.restored, 1);
  assert.ok((await readFile(join(root, "artifacts/tables/ood_det_df.csv"), "utf8")).includes("ood_det_sem_"));
});

test("retraining on two head threads (the stage bundle's worker threads) rewrites identical ensembles, so no eval reruns", async () => {
  const digest = async (m: string) => createHash("sha256").update(await readFile(join(root, "artifacts/models", m, "ensemble.safetensors"))).digest("hex");
  const before = await Promise.all(MODELS.map(digest));
  const r = await withTimeout(startCli(root, ["run", "tables", "--force", "train-heads", "--json"], { SED_PIPE_HEAD_THREADS: "2" }).done, 5 * 60_000, "threaded retrain");
  assert.is(r.code, 0, r.stderr.slice(-3000) + r.stdout.slice(-3000));
  const done = runDone(r.stdout);
  assert.is(done.counts.ran, 4, "only the four train-heads instances ran");
  assert.is(done.counts.failed, 0);
  assert.equal(await Promise.all(MODELS.map(digest)), before, "byte-identical ensembles");
  for (const m of MODELS) {
    const log = await readFile(join(root, "cache/logs", `train-heads@${m}.log`), "utf8");
    assert.match(log, /2 head threads/, `${m} trained on head threads`);
  }
});

slurm.test("the demo on a one-node Slurm cluster (`--executor slurm`): byte-identical tables; a second run submits nothing", async () => {
  const cluster = await startCluster();
  const other = await copyProject("sed-pipe-demo-slurm-");
  try {
    const env = { ...cluster.env, SED_PIPE_EXECUTOR: "slurm" };
    const jobs = () => cluster.sh("squeue", ["-h", "-t", "all", "-o", "%i|%T"]).split("\n").filter(Boolean);
    const r = await withTimeout(startCli(other, ["run", "tables", "--json"], env).done, 15 * 60_000, "demo on Slurm");
    assert.is(r.code, 0, r.stderr.slice(-3000) + r.stdout.slice(-3000));
    const done = runDone(r.stdout);
    assert.is(done.outcome, "ok");
    assert.ok(done.counts.ran >= 98, `ran ${done.counts.ran}`);
    const submitted = jobs();
    assert.ok(submitted.every((j) => j.endsWith("|COMPLETED")), submitted.join(" "));
    // Grouping: fan-outs that become ready together share jobs (98 instances, far fewer jobs).
    assert.ok(submitted.length < done.counts.ran, `${submitted.length} jobs for ${done.counts.ran} instances`);
    for (const f of ["ood_gen_df.csv", "ood_det_df.csv", "ood_gen_df.md", "ood_det_df.md", "ensemble_accuracy.svg", "ood_detection_auroc.svg"]) {
      assert.ok((await readFile(join(other, "artifacts/tables", f))).equals(await readFile(join(root, "artifacts/tables", f))), `${f} differs from the local run's`);
    }
    const again = await withTimeout(startCli(other, ["run", "tables", "--json"], env).done, 5 * 60_000, "second run on Slurm");
    assert.is(runDone(again.stdout).counts.ran, 0);
    assert.is(jobs().length, submitted.length, "the second run submitted nothing");
  } finally {
    await cluster.stop();
    await removeDir(other);
  }
});

test.run();
