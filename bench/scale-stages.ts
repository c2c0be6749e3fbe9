// The stage rehearsal of bench/scale.bench.ts (issue 14 items 1 and 4): the paper's train feature
// file, train-heads for the four paper configs and a 50-head eval, at the paper's real shapes
// (768 -> 3072 -> 1000 heads, 1000 classes, batch sizes and optimisers of params/paper.yaml) on a
// documented fraction of the real row counts. Each part runs in its own child process
// (bench/scale-stage-child.ts) so its peak RSS (VmHWM) is its own; every figure that is scaled up to
// the paper's size is printed as an extrapolation.
// Env (defaults finish in ~10 min on 2 cores):
//   SED_SCALE_TRAIN_FRACTION  20     train rows per pass = 1,281,167 / this (1/20: 64,058 rows x 4 passes)
//   SED_SCALE_STEPS           50     training steps per config (then one full validation pass)
//   SED_SCALE_VAL_ROWS        10000  rows of the val file (in_val has 50,000)
//   SED_SCALE_EVAL_ROWS       50000  rows of the eval set (the largest real sets: in_val, each IN-C set)
//   SED_SCALE_CONFIGS         all four: 50_models,ood_gen,ood_det_cov,ood_det_sem
//   SED_SCALE_IMAGES          128    ImageNet-sized JPEGs featurized by cache-features (DeiT-3 Base, in_train's transform)
//   SED_SCALE_BACKEND         wasm
import { spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const PASS_ROWS_REAL = 1_281_167;
const PASSES = 4;
/** Section 11 of the reference: rows of the 35 eval sets (30 of them ImageNet-C, 50,000 each). */
const EVAL_ROWS_REAL = 50_000 + 7_500 + 30_000 + 10_000 + 17_632 + 30 * 50_000;
/** The four result models of params/paper.yaml and their head counts. */
const PAPER_HEADS: Record<string, number> = { "50_models": 50, ood_gen: 5, ood_det_cov: 5, ood_det_sem: 5 };
const EPOCHS = 11;
const IN_VAL_ROWS = 50_000;
const GB = 1e9;
const gb = (b: number): string => `${(b / GB).toFixed(2)} GB`;
const mbs = (b: number): string => `${(b / 1e6).toFixed(0)} MB`;
const hms = (s: number): string => {
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${String(m).padStart(2, "0")} min` : m ? `${m} min ${Math.round(s % 60)} s` : `${s.toFixed(1)} s`;
};

interface ChildResult {
  part: string;
  seconds: number;
  work: number;
  rssBefore: number;
  peakRss: number;
  wrote: number;
  diskBytes: number;
  phases: Record<string, number>;
  extra: Record<string, number | string>;
}

function child(args: string[]): ChildResult | { error: string } {
  const r = spawnSync(process.execPath, ["--import", "tsx", join(here, "scale-stage-child.ts"), ...args], {
    encoding: "utf8",
    maxBuffer: 64 * 2 ** 20,
    env: { ...process.env, SED_SCALE_BACKEND: process.env.SED_SCALE_BACKEND ?? "wasm" },
  });
  if (r.status !== 0) return { error: `exit ${r.status ?? r.signal}: ${(r.stderr || r.stdout).trim().slice(-1500)}` };
  return JSON.parse(r.stdout.trim().split("\n").pop()!) as ChildResult;
}

const num = (name: string, def: number): number => {
  const v = Number(process.env[name] ?? def);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name}=${process.env[name]}: not a positive number`);
  return v;
};

/** Runs the rehearsal in `dir` (files deleted as soon as no later part needs them); returns the number of failed parts or missed goals. */
export function runStageRehearsal(dir: string): number {
  const fraction = num("SED_SCALE_TRAIN_FRACTION", 20);
  const steps = num("SED_SCALE_STEPS", 50);
  const valRows = num("SED_SCALE_VAL_ROWS", 10_000);
  const evalRows = num("SED_SCALE_EVAL_ROWS", 50_000);
  const configs = (process.env.SED_SCALE_CONFIGS ?? Object.keys(PAPER_HEADS).join(",")).split(",").filter(Boolean);
  const passRows = Math.round(PASS_ROWS_REAL / fraction);
  const trainFile = join(dir, "in_train_deit3b_-1_4_epochs.hdf5");
  const valFile = join(dir, "in_val_deit3b_-1.hdf5");
  const evalFile = join(dir, "eval_set.hdf5");
  let failed = 0;
  const fail = (what: string, r: { error: string }) => {
    console.log(`${what.padEnd(16)} FAILED ${r.error}`);
    failed++;
  };
  const rss = (r: ChildResult) => `peak RSS ${gb(r.peakRss)} (process at start ${mbs(r.rssBefore)})`;
  const goal = (r: ChildResult, limit: number, what: string) => {
    const ok = r.peakRss <= limit;
    if (!ok) failed++;
    return `goal ${what} <= ${gb(limit)}: ${ok ? "met" : "MISSED"}`;
  };
  console.log(
    `\n--- stage rehearsal at the paper's shapes (768/3072/1000), backend ${process.env.SED_SCALE_BACKEND ?? "wasm"}; ` +
      `train 1/${fraction} of the rows (${passRows} x ${PASSES} passes), ${steps} steps, val ${valRows} rows, eval ${evalRows} rows`,
  );

  // 1. The train feature file (and the val and eval files the later parts read).
  const w = child(["write-features", trainFile, String(passRows), String(PASSES), "1"]);
  if ("error" in w) {
    fail("write train", w);
    return failed;
  }
  const fullRows = PASS_ROWS_REAL * PASSES;
  console.log(
    `write train      ${w.work} rows (${passRows} x ${PASSES}) in ${w.seconds.toFixed(1)} s = ${(w.work / w.seconds).toFixed(0)} rows/s, ` +
      `${(w.diskBytes / 1e6 / w.seconds).toFixed(0)} MB/s; file ${gb(w.diskBytes)}, written ${gb(w.wrote)}; ${rss(w)}`,
  );
  console.log(
    `                 extrapolated to the full file (${fullRows} rows): ${gb((w.diskBytes * fullRows) / w.work)}, ` +
      `${hms((w.seconds * fullRows) / w.work)} of writing (features only; the ViT forward is not in this figure)`,
  );
  for (const [file, rows, seed] of [[valFile, valRows, 2], [evalFile, evalRows, 3]] as const) {
    const v = child(["write-features", file, String(rows), "1", String(seed)]);
    if ("error" in v) fail(`write ${rows} rows`, v);
  }

  // The train reader alone: one shuffled pass, as train-heads reads an epoch.
  const rd = child(["read-train", trainFile, "16"]);
  if ("error" in rd) fail("read train", rd);
  else {
    console.log(
      `train reader     one shuffled pass, ${rd.work} rows in ${rd.seconds.toFixed(1)} s = ${(rd.work / rd.seconds).toFixed(0)} rows/s; ` +
        `${rss(rd)}: the reader held ${gb(rd.peakRss - rd.rssBefore)} above the process; ${goal(rd, 2 * GB, "train reader process")}`,
    );
    console.log(`                 extrapolated to one real pass (${PASS_ROWS_REAL} rows): ${hms((rd.seconds * PASS_ROWS_REAL) / rd.work)} of reading`);
  }

  // 2. train-heads for each paper config.
  for (const name of configs) {
    const out = join(dir, `model-${name}`);
    const t = child(["train", name, trainFile, valFile, String(steps), out]);
    rmSync(out, { recursive: true, force: true });
    if ("error" in t) {
      fail(`train ${name}`, t);
      continue;
    }
    const e = t.extra;
    const heads = Number(e.heads);
    const val = t.phases.validation;
    const sps = t.work / t.phases.steps;
    console.log(
      `train ${name.padEnd(11)} ${heads} heads, batch ${e.batch}: ${e.steps} steps = ${t.work} samples; trainEnsemble ${t.phases.trainEnsemble.toFixed(1)} s ` +
        `(steps ${t.phases.steps.toFixed(1)} s = ${sps.toFixed(0)} samples/s; validation ${val.toFixed(1)} s over ${e.valRows} rows = ` +
        `${((Number(e.valRows) * heads) / val).toFixed(0)} head-rows/s; start-up ${t.phases.startup.toFixed(1)} s; epoch checkpoint + snapshot ${t.phases.checkpointAndSnapshot.toFixed(1)} s); saveEnsemble ${t.phases.save.toFixed(1)} s; ` +
        `part ${t.seconds.toFixed(1)} s; wrote ${gb(t.diskBytes)} (checkpoint + ensemble); readers open at ${mbs(Number(e.rssReadersOpen))}; ${rss(t)}; ${goal(t, 8 * GB, "stage")}`,
    );
    console.log(`                 peak RSS (GB) by the end of each phase: ${e.hwmByPhase}`);
    const epoch = PASS_ROWS_REAL / sps + (val * IN_VAL_ROWS) / Number(e.valRows);
    console.log(`                 extrapolated to the paper's run (${EPOCHS} epochs of ${PASS_ROWS_REAL} rows + in_val ${IN_VAL_ROWS} each): ${hms(epoch)} per epoch, ${hms(epoch * EPOCHS)} in all`);
  }

  // 3. eval: a 50-head ensemble saved as train-heads saves it, then the eval stage's run().
  const ens = join(dir, "ensemble-50.safetensors");
  const mk = child(["make-ensemble", ens, "50"]);
  if ("error" in mk) fail("make ensemble", mk);
  else {
    const out = join(dir, "eval-out");
    const ev = child(["eval", ens, evalFile, out]);
    rmSync(out, { recursive: true, force: true });
    if ("error" in ev) fail("eval 50 heads", ev);
    else {
      const headRows = ev.work * Number(ev.extra.heads);
      const rate = headRows / ev.seconds;
      console.log(
        `eval 50 heads    ${ev.work} rows x ${ev.extra.heads} heads (+ soup, all scores, scores file) in ${ev.seconds.toFixed(1)} s (ensemble load included) = ` +
          `${rate.toFixed(0)} head-rows/s, ${(ev.work / ev.seconds).toFixed(0)} rows/s; wrote ${mbs(ev.diskBytes)}; ${rss(ev)}; ${goal(ev, 8 * GB, "stage")}`,
      );
      const totalHeadRows = EVAL_ROWS_REAL * Object.values(PAPER_HEADS).reduce((a, b) => a + b, 0);
      console.log(
        `                 extrapolated to 4 models x 35 sets (${EVAL_ROWS_REAL} rows per model, ${Object.values(PAPER_HEADS).join("+")} heads = ` +
          `${(totalHeadRows / 1e6).toFixed(1)}M head-rows) at this rate: ${hms(totalHeadRows / rate)} (load time per instance not included)`,
      );
    }
  }
  for (const f of [trainFile, valFile, evalFile, ens]) rmSync(f, { force: true });

  // 4. cache-features: the stage's run() on generated ImageNet-sized JPEGs with a DeiT-3 Base .pth.
  const nImages = num("SED_SCALE_IMAGES", 128);
  const imagesDir = join(dir, "train-images");
  const deit = join(dir, "deit_3_base_stand_in.pth");
  const mi = child(["make-images", imagesDir, "8", String(Math.ceil(nImages / 8))]);
  const md = "error" in mi ? mi : child(["make-deit", deit]);
  if ("error" in mi) fail("make images", mi);
  else if ("error" in md) fail("make DeiT-3 .pth", md);
  else {
    const feat = join(dir, "featurized.hdf5");
    const f = child(["featurize", imagesDir, deit, feat, "1"]);
    if ("error" in f) fail("cache-features", f);
    else {
      // Steady rate: the batches after the first (which also pays for loading the checkpoint).
      const firstRows = Number(f.extra.firstRows);
      const steady = f.work > firstRows ? (f.work - firstRows) / (f.phases.total - f.phases.firstBatch) : f.work / f.seconds;
      const rate = steady;
      console.log(
        `cache-features   ${f.work} JPEGs (ImageNet sizes, ${mbs(mi.diskBytes)}) -> DeiT-3 Base (.pth, ${mbs(md.diskBytes)}) -> 768 features, in_train's train transform, batch 64: ` +
          `${f.seconds.toFixed(1)} s in all; first ${firstRows} rows after ${f.phases.firstBatch.toFixed(1)} s (checkpoint load included), then ${steady.toFixed(2)} img/s` +
          `${f.work > firstRows ? "" : " (one batch only: overall rate)"}; ${rss(f)}; ${goal(f, 8 * GB, "stage")}`,
      );
      const allImages = PASS_ROWS_REAL * PASSES;
      console.log(`                 extrapolated to in_train's 4 passes (${allImages} images) at this rate: ${hms(allImages / rate)} on ${process.env.SED_SCALE_BACKEND ?? "wasm"}`);
    }
    rmSync(feat, { force: true });
  }
  rmSync(imagesDir, { recursive: true, force: true });
  rmSync(deit, { force: true });
  return failed;
}
