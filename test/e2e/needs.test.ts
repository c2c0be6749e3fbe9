// What a run needs, through the real CLI in a temp copy of the project: the paper profile's dry run
// names every download that would run (with its source) and every missing manual input with the
// exact path the profile expects; a real run stops before anything starts when one is missing; a
// calibration turns work into time and warns about days; the demo needs nothing from the user.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { cp, mkdir, readdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { REPO, cli, exists } from "../helpers/project.ts";
import { removeDir, tempDir, withTimeout } from "../helpers/tmp.ts";
import { thisMachine, writeCalibration } from "../../src/store/calibration.ts";

let root = "";

test.before(async () => {
  root = await tempDir("sed-pipe-needs-");
  for (const entry of ["bin", "src", "stages", "params", "pipeline.yaml", "package.json", "tsconfig.json"]) await cp(join(REPO, entry), join(root, entry), { recursive: true });
  await symlink(join(REPO, "node_modules"), join(root, "node_modules"));
});
test.after(async () => {
  if (root) await removeDir(root);
});

test("paper dry run: every download that would run, every missing manual input with its path and how; exit 0", () =>
  withTimeout(
    (async () => {
      const r = await cli(root, "run", "tables", "--profile", "paper", "--dry-run", "--backend", "wasm");
      assert.is(r.code, 0, r.stdout + r.stderr);
      const out = r.stdout;
      const runningDownloads = [...out.matchAll(/^ {2}run {5}(download@\S+)/gm)].map((m) => m[1]!);
      assert.equal(runningDownloads, ["download@cached-features", "download@imagenet_a_wnids", "download@imagenet_r_wnids"]);
      assert.match(out, /^needs: downloads \(3, 5\.0 GB \+ 2 of unknown size\)$/m);
      for (const id of runningDownloads) assert.match(out, new RegExp(`^  ${id}  .*, not pinned  https://`, "m"), id);
      assert.match(out, /^missing manual inputs \(2\): the run would fail until each is in place$/m);
      assert.match(out, /^ {2}data\/ImageNet2012\/train: ImageNet-1k \(ILSVRC2012\) train, 1,281,167 images/m);
      assert.match(out, /^ {4}put the ImageNet-1k train folder at data\/ImageNet2012\/train \(torchvision ImageFolder layout/m);
      assert.match(out, /^ {2}models\/deit3\/deit_3_base_224_21k\.pth: /m);
      assert.match(out, /^disk: ~28 GB for outputs/m);
      assert.match(out, /^time on wasm \(no calibration for this machine: run sed-pipe calibrate\):$/m);
      assert.match(out, /^ {2}cache-features {4}36 to run 5,124,668 images: unknown: run sed-pipe calibrate$/m);
      assert.match(out, /a run would stop at once until the missing manual inputs are in place$/m);
      assert.not.ok(await exists(join(root, "artifacts")), "a dry run writes no outputs");

      const json = await cli(root, "run", "tables", "--profile", "paper", "--dry-run", "--backend", "wasm", "--json");
      const plan = JSON.parse(json.stdout.split("\n").find((l) => l.includes('"type":"plan"'))!);
      assert.equal(plan.needs.missingInputs.map((m: { path: string }) => m.path), ["data/ImageNet2012/train", "models/deit3/deit_3_base_224_21k.pth"]);
      assert.equal(plan.needs.downloads.map((d: { id: string }) => d.id), runningDownloads);

      const st = await cli(root, "status", "tables", "--profile", "paper", "--backend", "wasm", "--json");
      assert.equal(JSON.parse(st.stdout).needs.missingInputs.length, 2);
    })(),
    120_000,
  ));

test("paper run with a manual input missing: exit 2 before anything starts, naming it", () =>
  withTimeout(
    (async () => {
      const r = await cli(root, "run", "tables", "--profile", "paper", "--backend", "wasm");
      assert.is(r.code, 2, r.stdout + r.stderr);
      assert.match(r.stderr, /2 manual inputs are missing; nothing was run:\n {2}data\/ImageNet2012\/train: /);
      assert.match(r.stderr, /models\/deit3\/deit_3_base_224_21k\.pth/);
      assert.not.ok(await exists(join(root, "artifacts")), "nothing ran");
      const logs = await readdir(join(root, "cache", "logs")).catch(() => []);
      assert.equal(logs, [], "no stage log");
    })(),
    60_000,
  ));

test("with the inputs in place nothing is missing; a calibration gives times and a warning about days", () =>
  withTimeout(
    (async () => {
      await mkdir(join(root, "data/ImageNet2012/train/n01440764"), { recursive: true });
      await mkdir(join(root, "models/deit3"), { recursive: true });
      await writeFile(join(root, "models/deit3/deit_3_base_224_21k.pth"), "x");
      await writeCalibration(root, {
        backend: "wasm",
        machine: thisMachine(),
        measuredAt: "2026-12-05T08:00:00.000Z",
        rates: { "cache-features": { unit: "images", perSecond: 1.3, what: "t" }, "train-heads": { unit: "samples", perSecond: 130, what: "t" }, eval: { unit: "head-rows", perSecond: 4000, what: "t" } },
      });
      const r = await cli(root, "run", "tables", "--profile", "paper", "--dry-run", "--backend", "wasm");
      assert.is(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^missing manual inputs: none$/m);
      assert.match(r.stdout, /^time on wasm \(calibrated 2026-12-05 on .+\):$/m);
      assert.match(r.stdout, /^ {2}cache-features {4}36 to run 5,124,668 images: ~45\.6 days$/m);
      assert.match(r.stdout, /^WARNING: cache-features would take ~45\.6 days on wasm/m);
      assert.match(r.stdout, /^dry run: nothing was executed$/m);
    })(),
    60_000,
  ));

test("demo dry run on a fresh copy: no downloads from the network, nothing missing", () =>
  withTimeout(
    (async () => {
      const r = await cli(root, "run", "--dry-run");
      assert.is(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^needs: no downloads$/m);
      assert.match(r.stdout, /^missing manual inputs: none$/m);
    })(),
    60_000,
  ));

test.run();
