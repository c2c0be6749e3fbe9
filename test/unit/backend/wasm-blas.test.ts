import { test } from "uvu";
import * as assert from "uvu/assert";
import { Worker } from "node:worker_threads";
import { createRequire } from "node:module";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import "@tensorflow/tfjs-backend-wasm";
import { activeBlasPath, installBlasKernels, loadBlasAddon, uninstallBlasKernels, type BlasPath } from "../../../src/ml/wasm-blas.ts";
import { SedPipeError } from "../../../src/errors.ts";
import { registerCoreGradients } from "../../../src/ml/kernels/core-gradients.ts";
import { Rng } from "../../../src/rng.ts";
import { requires } from "../../helpers/skip.ts";

type Path = BlasPath | "stock";
interface Arr {
  shape: number[];
  data: Float32Array;
}

const loaded = loadBlasAddon();
const withBlas = requires("blas-addon", () => ("blas" in loaded ? true : `@sed-pipe/blas not loaded: ${loaded.error}`));
// Without the addon the kernel tests check wasm-fixed only; the missing path is one counted skip.
const PATHS: Path[] = withBlas.ok ? ["wasm+blas", "wasm-fixed"] : ["wasm-fixed"];
withBlas.skipPart("every BatchMatMul / _FusedMatMul kernel test below, on the wasm+blas path");

const rng = new Rng(20240917);
function rand(shape: number[]): Arr {
  const data = new Float32Array(shape.reduce((p, d) => p * d, 1));
  for (let i = 0; i < data.length; i++) data[i] = rng.uniform(-1, 1);
  return { shape, data };
}
const T = (x: Arr) => tf.tensor(x.data, x.shape, "float32");

async function use(path: Path | "cpu"): Promise<void> {
  if (path === "cpu") {
    await tf.setBackend("cpu");
    return;
  }
  await tf.setBackend("wasm");
  if (path === "stock") {
    uninstallBlasKernels();
    return;
  }
  const r = await installBlasKernels({ prefer: path === "wasm-fixed" ? "fixed" : "auto" });
  assert.is(r.path, path, r.reason);
}

/** Runs f on a backend/path inside tidy; returns every output's values. Checks nothing leaks. */
async function compute(path: Path | "cpu", f: () => tf.Tensor | tf.Tensor[]): Promise<Float32Array[]> {
  await use(path);
  const before = tf.memory().numTensors;
  const ids = tf.backend().numDataIds();
  const out = tf.tidy(() => {
    const r = f();
    return (Array.isArray(r) ? r : [r]).map((t) => t.dataSync() as Float32Array);
  });
  assert.is(tf.memory().numTensors, before, `${path}: tensor count grew`);
  assert.is(tf.backend().numDataIds(), ids, `${path}: backend data ids grew (kernel leaked an intermediate)`);
  return out;
}

function assertClose(got: Float32Array[], ref: Float32Array[], what: string, tol = 1e-5): void {
  assert.is(got.length, ref.length, what);
  for (let o = 0; o < ref.length; o++) {
    assert.is(got[o].length, ref[o].length, `${what}: output ${o} size`);
    let maxRef = 0;
    let maxErr = 0;
    for (let i = 0; i < ref[o].length; i++) {
      maxRef = Math.max(maxRef, Math.abs(ref[o][i]));
      const e = Math.abs(got[o][i] - ref[o][i]);
      maxErr = Number.isNaN(e) ? Infinity : Math.max(maxErr, e);
    }
    const rel = maxErr / Math.max(maxRef, 1e-6);
    assert.ok(rel <= tol, `${what}: output ${o} relative error ${rel.toExponential(2)} > ${tol}`);
  }
}

const stored = (batch: number[], rows: number, cols: number, t: boolean) => (t ? [...batch, cols, rows] : [...batch, rows, cols]);
const COMBOS: [boolean, boolean][] = [[false, false], [true, false], [false, true], [true, true]];

// [batch dims of a, batch dims of b, m, k, n]
const MATMUL_CASES: [number[], number[], number, number, number][] = [
  [[], [], 7, 5, 9],
  [[], [], 1, 33, 1],
  [[], [], 64, 96, 48],
  [[3], [3], 4, 6, 5],
  [[3], [], 4, 6, 5],
  [[], [2], 3, 7, 2],
  [[1], [4], 5, 3, 6],
  [[2, 3], [3], 3, 4, 5],
  [[2, 1], [1, 3], 2, 3, 4], // general broadcast: neither batch divides the other's index pattern
  [[], [], 0, 4, 3],
];

for (const [ba, bb, m, k, n] of MATMUL_CASES) {
  for (const [ta, tb] of COMBOS) {
    const name = `BatchMatMul a[${ba}] b[${bb}] ${m}x${k}x${n} transposeA=${ta} transposeB=${tb}`;
    test(name, async () => {
      const a = rand(stored(ba, m, k, ta));
      const b = rand(stored(bb, k, n, tb));
      const outBatch = tf.broadcast_util.assertAndGetBroadcastShape(ba, bb);
      // Reference: cpu on operands expanded to the full batch, so cpu's own batch rule is not trusted.
      const ref = await compute("cpu", () =>
        tf.matMul(
          tf.broadcastTo(T(a), stored(outBatch, m, k, ta)),
          tf.broadcastTo(T(b), stored(outBatch, k, n, tb)),
          ta,
          tb,
        ),
      );
      for (const path of PATHS) {
        const got = await compute(path, () => tf.matMul(T(a), T(b), ta, tb));
        assertClose(got, ref, `${path} ${name}`);
      }
    });
  }
}

const ACTIVATIONS = ["linear", "relu", "relu6", "elu", "sigmoid", "leakyrelu", "prelu"] as const;
// bias shapes: none, per column, scalar-like, and a full [m, n] one (general broadcast)
const BIASES = (m: number, n: number): (number[] | null)[] => [null, [n], [1], [m, n]];

for (const act of ACTIVATIONS) {
  for (const [ba, bb] of [[[], []], [[3], [3]], [[2], []]] as [number[], number[]][]) {
    test(`_FusedMatMul ${act} a[${ba}] b[${bb}] with each bias shape and transpose`, async () => {
      const m = 6, k = 5, n = 7;
      for (const biasShape of BIASES(m, n)) {
        for (const [ta, tb] of COMBOS) {
          const a = rand(stored(ba, m, k, ta));
          const b = rand(stored(bb, k, n, tb));
          const bias = biasShape ? rand(biasShape) : null;
          const prelu = rand([n]);
          const f = () =>
            tf.fused.matMul({
              a: T(a), b: T(b), transposeA: ta, transposeB: tb,
              bias: bias ? T(bias) : undefined,
              activation: act,
              preluActivationWeights: act === "prelu" ? T(prelu) : undefined,
              leakyreluAlpha: 0.3,
            });
          const what = `${act} bias=[${biasShape ?? "none"}] a[${ba}] b[${bb}] tA=${ta} tB=${tb}`;
          const ref = await compute("cpu", f);
          for (const path of PATHS) assertClose(await compute(path, f), ref, `${path} ${what}`);
        }
      }
    });
  }
}

test("_FusedMatMul prelu with a scalar weight", async () => {
  const a = rand([4, 3]), b = rand([3, 5]), bias = rand([5]);
  const f = () => tf.fused.matMul({ a: T(a), b: T(b), bias: T(bias), activation: "prelu", preluActivationWeights: tf.scalar(0.25) });
  const ref = await compute("cpu", f);
  for (const path of PATHS) assertClose(await compute(path, f), ref, path);
});

// [shape, axis, keepDims]: leading-axes reductions take the native path, the rest the stock kernel.
const SUM_CASES: [number[], number | number[] | undefined, boolean][] = [
  [[256, 37], 0, false],
  [[4, 5, 6], [0, 1], false],
  [[4, 5, 6], [1, 0], true],
  [[4, 5, 6], -3, true],
  [[0, 5], 0, false],
  [[4, 5, 6], 1, false],
  [[4, 5, 6], [0, 2], false],
  [[4, 5, 6], undefined, false],
  [[7], 0, false],
];
for (const [shape, axis, keepDims] of SUM_CASES) {
  test(`Sum shape [${shape}] axis ${JSON.stringify(axis)} keepDims=${keepDims}`, async () => {
    const x = rand(shape);
    const f = () => tf.sum(T(x), axis, keepDims);
    const ref = await compute("cpu", f);
    for (const path of PATHS) {
      await use(path);
      const got = tf.tidy(() => f().shape);
      assert.equal(got, tf.tidy(() => f().shape));
      assertClose(await compute(path, f), ref, `${path} Sum`);
    }
    // int32 sums keep the stock kernel and its dtype (not on empty input: the stock int32 Sum of
    // zero rows returns uninitialised memory)
    if (x.data.length === 0) return;
    const xi = tf.tidy(() => tf.cast(tf.mul(T(x), 10), "int32"));
    const refI = await (async () => { await use("stock"); return tf.tidy(() => Array.from(tf.sum(xi, axis, keepDims).dataSync())); })();
    for (const path of PATHS) {
      await use(path);
      const r = tf.tidy(() => tf.sum(xi, axis, keepDims));
      assert.is(r.dtype, "int32");
      assert.equal(Array.from(r.dataSync()), refI);
      r.dispose();
    }
    xi.dispose();
  });
}

const grads = await registerCoreGradients();
test("tfjs-core gradients needed by training are registered", () => {
  for (const k of ["BatchMatMul", "Add", "Relu", "Reshape", "Multiply", "Mean", "Sub", "Square", "Sum", "Softmax", "LogSoftmax"]) {
    assert.ok(grads.registered.includes(k), `no gradient for ${k} (skipped: ${grads.skipped.join("; ")})`);
  }
});

/** A two-layer head with the SED head's layer pattern (dense-relu-dense), small, squared error. */
function headGrads(x: Arr, w1: Arr, b1: Arr, w2: Arr, b2: Arr, y: Arr): tf.Tensor[] {
  const loss = (W1: tf.Tensor, B1: tf.Tensor, W2: tf.Tensor, B2: tf.Tensor) => {
    const h = tf.relu(tf.add(tf.matMul(T(x), W1), B1));
    const logits = tf.fused.matMul({ a: h, b: W2 as tf.Tensor2D, bias: B2 });
    // a batched product with a transposed operand, as attention-style code would do
    const g = tf.matMul(tf.reshape(h, [2, 4, 16]), tf.reshape(h, [2, 4, 16]), false, true);
    return tf.add(tf.mean(tf.square(tf.sub(logits, T(y)))), tf.mul(0.01, tf.mean(g)));
  };
  const { value, grads } = tf.valueAndGrads(loss as never)([T(w1), T(b1), T(w2), T(b2)]);
  return [value, ...grads];
}

test("gradients of a small head match cpu and stock wasm", async () => {
  const x = rand([8, 12]), w1 = rand([12, 16]), b1 = rand([16]), w2 = rand([16, 5]), b2 = rand([5]);
  const y: Arr = { shape: [8, 5], data: new Float32Array(40) };
  for (let i = 0; i < 8; i++) y.data[i * 5 + (i % 5)] = 1;
  const f = () => headGrads(x, w1, b1, w2, b2, y);
  const ref = await compute("cpu", f);
  const stock = await compute("stock", f);
  assertClose(stock, ref, "stock wasm vs cpu", 1e-5);
  for (const path of PATHS) {
    const got = await compute(path, f);
    assertClose(got, ref, `${path} grads vs cpu`);
    assertClose(got, stock, `${path} grads vs stock wasm`);
  }
});

withBlas.test("wasm+blas reads the weights' current bytes (no packed-weight cache)", async () => {
  await use("wasm+blas");
  const x = tf.tensor2d([[1, 2, 3]]);
  const w = tf.variable(tf.tensor2d([[1], [1], [1]]));
  const y1 = tf.matMul(x, w);
  // Overwrite w in place on the wasm heap, as a fused native optimizer would.
  const be = tf.backend() as unknown as { dataIdMap: { get(id: object): { memoryOffset: number } }; wasm: { HEAPU8: Uint8Array } };
  const off = be.dataIdMap.get(w.dataId as object).memoryOffset;
  new Float32Array(be.wasm.HEAPU8.buffer, off, 3).set([2, 0, 1]);
  const y2 = tf.matMul(x, w);
  assert.equal(Array.from(y1.dataSync()), [6]);
  assert.equal(Array.from(y2.dataSync()), [5]);
  tf.dispose([x, w, y1, y2]);
});

test("blas: false forces the fallback and says so", async () => {
  await tf.setBackend("wasm");
  const r = await installBlasKernels({ blas: false });
  assert.is(r.path, "wasm-fixed");
  assert.match(r.reason, /OpenBLAS kernels turned off \(blas: false/);
  assert.is(activeBlasPath(), "wasm-fixed");
  const got = await compute("wasm-fixed", () => tf.matMul(tf.tensor2d([[1, 2]]), tf.tensor2d([[3, 4]]), false, true));
  assert.equal(Array.from(got[0]), [11]);
});

test("installBlasKernels refuses a backend other than wasm", async () => {
  await tf.setBackend("cpu");
  try {
    await installBlasKernels();
    assert.unreachable("should throw");
  } catch (err) {
    assert.instance(err, SedPipeError);
    assert.match((err as Error).message, /needs the wasm backend active, but it is "cpu"/);
  }
});

withBlas.test("the addon refuses views that are too small or detached", () => {
  if (!("blas" in loaded)) throw new Error("unreachable: registered only with the addon");
  const blas = loaded.blas;
  const c = new Float32Array(4);
  assert.throws(() => blas.sgemm(false, false, 2, 2, 2, 1, new Float32Array(3), 2, new Float32Array(4), 2, 0, c, 2), /does not fit/);
  assert.throws(() => blas.batchMatMul(new Float32Array(8), new Float32Array(4), c, 2, 1, 2, 2, 2, false, false), /does not fit/);
  assert.throws(() => blas.sgemm(false, false, 1, 1, 1, 1, new Int32Array(1) as never, 1, new Float32Array(1), 1, 0, c, 1), /Float32Array/);
  // The project's lib settings have no WebAssembly types; the runtime has the API.
  type Mem = { buffer: ArrayBuffer; grow(pages: number): number };
  const WA = (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => Mem } }).WebAssembly;
  const mem = new WA.Memory({ initial: 1, maximum: 4 });
  const view = new Float32Array(mem.buffer, 0, 4);
  mem.grow(1);
  assert.throws(() => blas.sgemm(false, false, 1, 1, 1, 1, view, 1, new Float32Array(1), 1, 0, c, 1));
  assert.throws(() => blas.biasActivation(c, 3, null, 0, 0, null), /multiple of N/);
});

withBlas.test("the addon loads and computes in a worker thread", async () => {
  const require = createRequire(import.meta.url);
  const addonPath = require.resolve("@sed-pipe/blas");
  const code = `
    const { parentPort } = require("node:worker_threads");
    const blas = require(${JSON.stringify(addonPath)});
    blas.setNumThreads(1);
    const c = new Float32Array(1);
    blas.sgemm(false, true, 1, 1, 2, 1, new Float32Array([1, 2]), 2, new Float32Array([3, 4]), 2, 0, c, 1);
    parentPort.postMessage([c[0], blas.numThreads()]);`;
  const result = await new Promise<number[]>((resolve, reject) => {
    const w = new Worker(code, { eval: true });
    const timer = setTimeout(() => {
      void w.terminate();
      reject(new Error("worker timed out"));
    }, 20_000);
    w.once("message", (m) => {
      clearTimeout(timer);
      void w.terminate();
      resolve(m as number[]);
    });
    w.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
  assert.equal(result, [11, 1]);
});

test.run();
