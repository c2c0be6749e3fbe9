import { test } from "uvu";
import * as assert from "uvu/assert";
import * as tf from "@tensorflow/tfjs-core";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { initBackend } from "../../../src/ml/backend.ts";
import {
  attention,
  checkVitWeights,
  createVit,
  disposeVit,
  featurizeBatch,
  gelu,
  layerNorm,
  parseVitArch,
  vitParamShapes,
  type NamedArray,
  type VitArch,
} from "../../../src/ml/vit.ts";
import { readVitWeights, seededVitWeights, writeSeededVitCheckpoint } from "../../../src/ml/vit-checkpoint.ts";
import { writeSafetensors, readSafetensors } from "../../../src/io/safetensors.ts";
import { ConfigError, InputError } from "../../../src/errors.ts";

const FIX = new URL("../../fixtures/checkpoints/", import.meta.url).pathname;
const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what = "") => {
  assert.is(a.length, b.length, `${what} length`);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i] - b[i]) <= tol, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
};

const TINY: VitArch = { image_size: 8, patch_size: 4, in_chans: 3, embed_dim: 8, depth: 2, num_heads: 2, mlp_ratio: 2, layerscale_init: 1 };

test.before(async () => {
  await initBackend("auto");
});

test("LayerNorm uses eps 1e-6 and the biased variance", () => {
  const before = tf.memory().numTensors;
  const out = tf.tidy(() => layerNorm(tf.tensor2d([[1, 2, 3, 4], [0, 0.001, 0, 0.001]]), tf.ones([4]), tf.zeros([4])).arraySync() as number[][]);
  const s = 1 / Math.sqrt(1.25 + 1e-6);
  close(out[0], [-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s], 1e-5, "row0");
  // variance 2.5e-7 is below eps: the output is ±0.447, not ±1
  const t = 5e-4 / Math.sqrt(2.5e-7 + 1e-6);
  close(out[1], [-t, t, -t, t], 1e-3, "row1");
  assert.is(tf.memory().numTensors, before);
});

test("GELU is the exact erf form, not the tanh approximation", () => {
  const v = tf.tidy(() => gelu(tf.tensor1d([-1, 0, 1, 2])).dataSync());
  // 0.5·x·(1 + erf(x/√2)); the tanh form gives 0.841192 at x = 1
  close(v, [-0.15865525393145707, 0, 0.8413447460685429, 1.9544997361036416], 2e-6);
});

test("attention with 2 tokens: identity q/k/v/proj, 1 head and 2 heads, against hand-computed softmax", () => {
  const eye = [1, 0, 0, 1];
  // qkvT = [I | I | I] ([D, 3D]), proj = I, zero biases
  const blk = {
    qkvT: tf.tensor2d([1, 0, 1, 0, 1, 0, 0, 1, 0, 1, 0, 1], [2, 6]),
    qkvb: tf.zeros([6]) as tf.Tensor1D,
    projT: tf.tensor2d(eye, [2, 2]),
    projb: tf.zeros([2]) as tf.Tensor1D,
  };
  const x = tf.tensor3d([[[1, 0], [0, 1]]]);
  const one = tf.tidy(() => attention(x, blk, 1).dataSync());
  const a = Math.exp(Math.SQRT1_2) / (Math.exp(Math.SQRT1_2) + 1); // scores q·k/√2 = [1/√2, 0]
  close(one, [a, 1 - a, 1 - a, a], 1e-6, "1 head");
  const two = tf.tidy(() => attention(x, blk, 2).dataSync());
  const b = Math.E / (Math.E + 1); // head 0, token 0: scores [1, 0]; token 1: [0, 0] -> uniform
  close(two, [b, 0.5, 0.5, b], 1e-6, "2 heads");
  tf.dispose([x, ...Object.values(blk)]);
});

test("LayerScale scales the residual branch; the last block's MLP is cut away", async () => {
  const arch: VitArch = { ...TINY, depth: 1 };
  const w = seededVitWeights(arch, 3);
  const img = new Float32Array(3 * 64).map((_, i) => Math.sin(i));
  const run = async (mut: (m: Map<string, NamedArray>) => void) => {
    const copy = new Map([...w].map(([k, v]) => [k, { shape: v.shape, data: v.data.slice() }]));
    mut(copy);
    const m = createVit(copy, arch);
    try {
      return await featurizeBatch(m, img, 1);
    } finally {
      disposeVit(m);
    }
  };
  const cls = w.get("cls_token")!.data;
  const g0 = await run((m) => m.get("blocks.0.gamma_1")!.data.fill(0));
  close(g0, cls, 0, "gamma 0 -> CLS token unchanged");
  const g1 = await run((m) => m.get("blocks.0.gamma_1")!.data.fill(1));
  const g2 = await run((m) => m.get("blocks.0.gamma_1")!.data.fill(2));
  close(Array.from(g2, (v, i) => v - cls[i]), Array.from(g1, (v, i) => 2 * (v - cls[i])), 1e-6, "linear in gamma");
  const mlp = await run((m) => {
    m.get("blocks.0.gamma_1")!.data.fill(1);
    m.get("blocks.0.mlp.fc2.bias")!.data.fill(5);
    m.get("blocks.0.gamma_2")!.data.fill(3);
  });
  close(mlp, g1, 0, "last block MLP ignored");
});

test("full forward of a tiny DeiT-3 matches torch (fixture), from .pth and .safetensors; no tensor leak", async () => {
  const exp = JSON.parse(readFileSync(join(FIX, "tiny-vit.expected.json"), "utf8"));
  const arch = parseVitArch(exp.arch);
  for (const f of ["tiny-vit.pth", "tiny-vit.safetensors"]) {
    const before = tf.memory().numTensors;
    const model = createVit(await readVitWeights(join(FIX, f), arch), arch);
    const afterLoad = tf.memory().numTensors;
    const out = await featurizeBatch(model, new Float32Array(exp.input), 2);
    await featurizeBatch(model, new Float32Array(exp.input), 2);
    assert.is(tf.memory().numTensors, afterLoad, "featurizeBatch leaks no tensors");
    close(out, exp.features_float64, 2e-5, f);
    close(out, exp.features_float32, 2e-5, f);
    disposeVit(model);
    assert.is(tf.memory().numTensors, before, "disposeVit frees everything");
  }
});

test("batching does not change a row's features", async () => {
  const m = createVit(seededVitWeights(TINY, 1), TINY);
  const imgs = new Float32Array(3 * 3 * 64).map((_, i) => Math.cos(i * 0.37));
  const all = await featurizeBatch(m, imgs, 3);
  const second = await featurizeBatch(m, imgs.subarray(192, 384), 1);
  close(all.subarray(8, 16), second, 1e-5);
  disposeVit(m);
});

test("arch validation: image size not divisible by the patch size, bad heads", () => {
  assert.throws(() => parseVitArch({ ...TINY, image_size: 30, patch_size: 7 }), (e: Error) => e instanceof ConfigError && /image_size 30 is not divisible by patch_size 7/.test(e.message));
  assert.throws(() => parseVitArch({ ...TINY, embed_dim: 10, num_heads: 4 }), /embed_dim 10 is not divisible by num_heads 4/);
  assert.throws(() => parseVitArch({ ...TINY, depth: 0 }), /featurizer\.arch\.depth: expected a positive integer/);
});

test("strict checkpoint checks name missing keys, unexpected keys and wrong shapes", async () => {
  const exp = JSON.parse(readFileSync(join(FIX, "tiny-vit.expected.json"), "utf8"));
  const arch = parseVitArch(exp.arch);
  await readVitWeights(join(FIX, "tiny-vit-missing-key.pth"), arch).then(
    () => assert.unreachable("should fail"),
    (e: Error) => {
      assert.instance(e, InputError);
      assert.match(e.message, /tiny-vit-missing-key\.pth: checkpoint does not match featurizer\.arch: missing keys \(1\): blocks\.1\.gamma_1/);
    },
  );
  await readVitWeights(join(FIX, "tiny-vit-wrong-shape.pth"), arch).then(
    () => assert.unreachable("should fail"),
    (e: Error) => assert.match(e.message, /shape mismatches \(1\): pos_embed: checkpoint \[1,5,16\] vs arch \[1,4,16\]/),
  );
  // A checkpoint for another arch: everything named
  await readVitWeights(join(FIX, "tiny-vit.pth"), { ...arch, depth: 3 }).then(
    () => assert.unreachable("should fail"),
    (e: Error) => assert.match(e.message, /missing keys \(14\): blocks\.2\.gamma_1/),
  );
  const dir = await mkdtemp(join(tmpdir(), "sed-vit-"));
  try {
    const st = await readSafetensors(join(FIX, "tiny-vit.safetensors"));
    st.tensors["blocks.0.extra"] = { dtype: "F32", shape: [1], data: new Float32Array(1) };
    await writeSafetensors(join(dir, "extra.safetensors"), st.tensors);
    await readVitWeights(join(dir, "extra.safetensors"), arch).then(
      () => assert.unreachable("should fail"),
      (e: Error) => assert.match(e.message, /unexpected keys \(1\): blocks\.0\.extra/),
    );
    await readVitWeights(join(dir, "nope.pth"), arch).then(
      () => assert.unreachable("should fail"),
      (e: Error) => assert.match(e.message, /nope\.pth: cannot open checkpoint \(ENOENT\)/),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  assert.equal(checkVitWeights(vitParamShapes(arch), arch), []);
});

test("seeded generated checkpoints: deterministic, DeiT-3 init, readable by the strict loader", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sed-vit-"));
  try {
    const arch: VitArch = { ...TINY, embed_dim: 32, layerscale_init: 0.25 };
    await writeSeededVitCheckpoint(arch, 7, join(dir, "a.safetensors"));
    await writeSeededVitCheckpoint(arch, 7, join(dir, "b.safetensors"));
    await writeSeededVitCheckpoint(arch, 8, join(dir, "c.safetensors"));
    const [a, b, c] = await Promise.all(["a", "b", "c"].map((n) => readFile(join(dir, `${n}.safetensors`))));
    assert.ok(a.equals(b), "same seed, same bytes");
    assert.not.ok(a.equals(c), "other seed, other bytes");
    const w = await readVitWeights(join(dir, "a.safetensors"), arch);
    assert.equal([...w.keys()].sort(), [...vitParamShapes(arch).keys()].sort());
    assert.ok(w.get("blocks.1.gamma_2")!.data.every((v) => v === Math.fround(0.25)));
    assert.ok(w.get("blocks.0.norm1.weight")!.data.every((v) => v === 1));
    assert.ok(w.get("blocks.0.attn.qkv.bias")!.data.every((v) => v === 0));
    const q = w.get("blocks.0.mlp.fc1.weight")!.data;
    const sd = Math.sqrt(q.reduce((s, v) => s + v * v, 0) / q.length);
    assert.ok(sd > 0.017 && sd < 0.023, `trunc normal std ${sd}`);
    const bound = 1 / Math.sqrt(3 * 16);
    assert.ok(w.get("patch_embed.proj.weight")!.data.every((v) => Math.abs(v) <= bound));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
