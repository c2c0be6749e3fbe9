// One measured read for bench/scale.bench.ts, in a fresh process so its peak RSS (VmHWM) is the
// reader's own: `node --import tsx bench/scale-child.ts <reader> <file>` prints one JSON line.
// Readers are the project's real loading paths; add one here and a row in scale.bench.ts.
import { readFileSync } from "node:fs";
import { loadReferenceEnsemble } from "../src/ml/reference-ensemble.ts";
import { readVitWeights } from "../src/ml/vit-checkpoint.ts";
import { DEIT3_BASE_ARCH } from "../src/ml/vit.ts";
import { loadEnsemble } from "../src/ml/heads.ts";
import { readSafetensors } from "../src/io/safetensors.ts";

const READERS: Record<string, (file: string) => Promise<number>> = {
  /** The eval stage's `format: reference-pkl` path; returns float32 values held. */
  "reference-pkl": async (file) => {
    const ens = await loadReferenceEnsemble(file);
    let n = 0;
    for (const h of ens.heads) for (const a of Object.values(h)) n += a.length;
    return n;
  },
  /** The featurizer's checkpoint path (cache-features). */
  "deit-pth": async (file) => {
    const w = await readVitWeights(file, DEIT3_BASE_ARCH);
    let n = 0;
    for (const t of w.values()) n += t.data.length;
    return n;
  },
  /** The eval stage's path for a trained ensemble (train-heads' `ensemble.safetensors`). */
  "ensemble-st": async (file) => {
    const ens = await loadEnsemble(file);
    let n = 0;
    for (const h of ens.heads) for (const a of Object.values(h)) n += a.length;
    return n;
  },
  /** What train-heads' resume (loadCheckpoint) reads: every tensor of a safetensors file. */
  "train-ckpt-st": async (file) => {
    const f = await readSafetensors(file);
    let n = 0;
    for (const t of Object.values(f.tensors)) n += t.data.length;
    return n;
  },
};

const status = (field: string): number => {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync("/proc/self/status", "utf8"));
  return m ? Number(m[1]) * 1024 : NaN;
};

const [reader, file] = process.argv.slice(2);
const run = READERS[reader];
if (!run) throw new Error(`unknown reader ${reader} (have ${Object.keys(READERS).join(", ")})`);
const rssBefore = status("VmRSS");
const t0 = performance.now();
const values = await run(file);
const seconds = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ reader, values, seconds, rssBefore, peakRss: status("VmHWM") }));
