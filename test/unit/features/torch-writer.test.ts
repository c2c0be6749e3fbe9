// The torch.save writer (src/io/torch-writer.ts) behind `generated-vit` with `format: pth`: our own
// reader gets back exactly the seeded weights, and the bytes are the ones torch.load read when the
// fixture was made (test/fixtures/checkpoints/check-torch-writer.py, torch 1.13): same file digest,
// and every tensor's name, dtype, shape, stride and sums as torch saw them.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { seededVitWeights, writeSeededVitCheckpoint, readVitWeights } from "../../../src/ml/vit-checkpoint.ts";
import { openTorchCheckpoint, isTorchTensor, type TorchTensor } from "../../../src/io/torch-checkpoint.ts";
import { writeTorchStateDict } from "../../../src/io/torch-writer.ts";
import { SedPipeError } from "../../../src/errors.ts";
import type { VitArch } from "../../../src/ml/vit.ts";
import { removeDir, tempDir } from "../../helpers/tmp.ts";

const FIX = new URL("../../fixtures/checkpoints/", import.meta.url).pathname;
const ARCH: VitArch = { image_size: 8, patch_size: 4, in_chans: 3, embed_dim: 8, depth: 1, num_heads: 2, mlp_ratio: 2, layerscale_init: 0.0001 };

interface Expected {
  sha256: string;
  top_keys: string[];
  state_dict_type: string;
  tensors: { name: string; dtype: string; shape: number[]; stride: number[]; requires_grad: boolean; sum: number; abs_sum: number; first: number }[];
}
const expected = JSON.parse(readFileSync(join(FIX, "torch-writer.expected.json"), "utf8")) as Expected;

let dir = "";
test.before(async () => {
  dir = await tempDir("sed-torch-writer-");
});
test.after(async () => {
  await removeDir(dir);
});

test("a seeded ViT written as .pth: the bytes torch.load read, and torch's view of every tensor", async () => {
  const file = join(dir, "tiny.pth");
  await writeSeededVitCheckpoint(ARCH, 7, file, "pth");
  const sha = createHash("sha256").update(await readFile(file)).digest("hex");
  assert.is(sha, expected.sha256, "the writer's bytes changed: re-check them with torch (check-torch-writer.py) and update the fixture");
  assert.equal(expected.top_keys, ["model"]);
  assert.is(expected.state_dict_type, "OrderedDict");
  const ck = await openTorchCheckpoint(file);
  try {
    const sd = (ck.root as Record<string, unknown>).model as Record<string, TorchTensor>;
    assert.equal(Object.keys(sd), expected.tensors.map((t) => t.name), "key order");
    for (const want of expected.tensors) {
      const t = sd[want.name];
      assert.ok(isTorchTensor(t), want.name);
      assert.is(`torch.${t.dtype}`, want.dtype);
      assert.equal(t.shape, want.shape, want.name);
      assert.equal(t.stride, want.stride, want.name);
      assert.is(t.requiresGrad, want.requires_grad);
      const v = await t.readFloat32();
      let sum = 0;
      let abs = 0;
      for (const x of v) (sum += x), (abs += Math.abs(x));
      assert.ok(Math.abs(sum - want.sum) <= 1e-9 * Math.max(1, want.abs_sum), `${want.name}: sum ${sum} vs torch ${want.sum}`);
      assert.ok(Math.abs(abs - want.abs_sum) <= 1e-9 * Math.max(1, want.abs_sum), `${want.name}: abs sum`);
      assert.is(v[0], Math.fround(want.first), `${want.name}: first value`);
    }
  } finally {
    await ck.close();
  }
});

test("the featurizer reads the .pth back to exactly the seeded weights (norm and head skipped)", async () => {
  const file = join(dir, "tiny-read.pth");
  await writeSeededVitCheckpoint(ARCH, 11, file, "pth");
  const got = await readVitWeights(file, ARCH);
  const want = seededVitWeights(ARCH, 11);
  assert.equal([...got.keys()].sort(), [...want.keys()].sort());
  for (const [k, w] of want) {
    assert.equal(got.get(k)!.shape, w.shape, k);
    assert.ok(Buffer.from(got.get(k)!.data.buffer, got.get(k)!.data.byteOffset, got.get(k)!.data.byteLength).equals(Buffer.from(w.data.buffer, w.data.byteOffset, w.data.byteLength)), `${k}: values differ`);
  }
  // the same seed gives the same bytes
  const again = join(dir, "tiny-read-2.pth");
  await writeSeededVitCheckpoint(ARCH, 11, again, "pth");
  assert.ok((await readFile(file)).equals(await readFile(again)));
});

test("a tensor whose data does not fill its shape is refused, and nothing is left behind", async () => {
  const file = join(dir, "bad.pth");
  try {
    await writeTorchStateDict(file, new Map([["w", { shape: [2, 3], data: new Float32Array(5) }]]));
    assert.unreachable("should have thrown");
  } catch (err) {
    assert.instance(err, SedPipeError);
    assert.match((err as Error).message, /w has 5 values for shape \[2,3\]/);
  }
  assert.not.ok(await readFile(file).then(() => true, () => false));
});

test.run();
