// The wasm Transpose and Unpack overrides (src/ml/kernels/fast-copy.ts) against the stock tfjs-wasm
// kernels: bit-identical outputs for every permutation of ranks 1-6 (float32 and int32, odd sizes),
// every Unpack axis, other dtypes left to stock, no leaks; and the ViT forward unchanged bit for bit.
// Needs no addon: installBlasKernels installs them on the fallback path too.
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-wasm";
import { installBlasKernels, uninstallBlasKernels } from "../../../src/ml/wasm-blas.ts";
import { transposeInto } from "../../../src/ml/kernels/fast-copy.ts";
import { seededVitWeights } from "../../../src/ml/vit-checkpoint.ts";
import { createVit, disposeVit, vitFeatures, type VitArch } from "../../../src/ml/vit.ts";
import { Rng } from "../../../src/rng.ts";

await tf.setBackend("wasm");
await tf.ready();

function permutations(n: number): number[][] {
  if (n === 1) return [[0]];
  const out: number[][] = [];
  for (const p of permutations(n - 1)) for (let i = 0; i <= p.length; i++) out.push([...p.slice(0, i), n - 1, ...p.slice(i)]);
  return out;
}

const rng = new Rng(11);
const SHAPES = [[7], [3, 5], [2, 3, 4], [2, 3, 1, 5], [2, 1, 3, 2, 3], [2, 2, 1, 3, 2, 2], [3, 0, 2]];

/** Runs f with the stock kernels, then with ours; returns both outputs' bytes. */
async function bothWays(f: () => tf.Tensor | tf.Tensor[]): Promise<[Uint8Array[], Uint8Array[]]> {
  const bytes = async (r: tf.Tensor | tf.Tensor[]) => {
    const ts = Array.isArray(r) ? r : [r];
    const out = await Promise.all(ts.map(async (t) => new Uint8Array(((await t.data()) as Float32Array | Int32Array).slice().buffer)));
    tf.dispose(ts);
    return out;
  };
  uninstallBlasKernels();
  const stock = await bytes(f());
  await installBlasKernels({ prefer: "fixed" });
  const ours = await bytes(f());
  return [stock, ours];
}

test("transposeInto: the plain definition on a small case", () => {
  // [2, 3] -> perm [1, 0] -> [3, 2]
  const out = new Float32Array(6);
  transposeInto(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3], [1, 0], out);
  assert.equal(Array.from(out), [1, 4, 2, 5, 3, 6]);
});

test("Transpose: every permutation of ranks 1-6, float32 and int32, equals the stock kernel bit for bit", async () => {
  let checked = 0;
  for (const shape of SHAPES) {
    const n = shape.reduce((a, b) => a * b, 1);
    const f = new Float32Array(n).map(() => rng.normal());
    f[0] = NaN;
    const i = new Int32Array(n).map(() => rng.int(1 << 30) - (1 << 29));
    for (const perm of permutations(shape.length)) {
      for (const t of [() => tf.tensor(f, shape, "float32"), () => tf.tensor(i, shape, "int32")]) {
        const before = tf.memory().numTensors;
        const x = t();
        const [stock, ours] = await bothWays(() => tf.transpose(x, perm));
        x.dispose();
        assert.equal(ours, stock, `shape [${shape}] perm [${perm}]`);
        assert.is(tf.memory().numTensors, before);
        checked++;
      }
    }
  }
  assert.ok(checked > 1700, `${checked} cases`);
});

test("Unpack: every axis, float32 and int32, equals the stock kernel; bool goes to stock", async () => {
  for (const shape of SHAPES.filter((s) => s.length > 1 && !s.includes(0))) {
    const n = shape.reduce((a, b) => a * b, 1);
    const f = new Float32Array(n).map(() => rng.normal());
    for (let axis = -shape.length; axis < shape.length; axis++) {
      const x = tf.tensor(f, shape);
      const [stock, ours] = await bothWays(() => tf.unstack(x, axis));
      x.dispose();
      assert.equal(ours, stock, `shape [${shape}] axis ${axis}`);
      const xi = tf.tensor(f.map((v) => Math.round(v * 1000)), shape, "int32");
      const [si, oi] = await bothWays(() => tf.unstack(xi, axis));
      xi.dispose();
      assert.equal(oi, si);
    }
  }
  const b = tf.tensor([[true, false], [false, true]], [2, 2], "bool");
  const parts = tf.unstack(b, 1);
  assert.equal(await Promise.all(parts.map((p) => p.array())), [[1, 0], [0, 1]]);
  tf.dispose([b, ...parts]);
});

test("the ViT forward (attention's head split) is bit-identical with and without the copy kernels", async () => {
  const arch: VitArch = { image_size: 32, patch_size: 8, in_chans: 3, embed_dim: 48, depth: 2, num_heads: 4, mlp_ratio: 2, layerscale_init: 0.5 };
  const m = createVit(seededVitWeights(arch, 3), arch);
  const x = tf.randomNormal([3, 3, 32, 32], 0, 1, "float32", 5) as tf.Tensor4D;
  try {
    const [stock, ours] = await bothWays(() => tf.tidy(() => vitFeatures(m, x)));
    assert.equal(ours, stock);
  } finally {
    x.dispose();
    disposeVit(m);
  }
});

test.run();
