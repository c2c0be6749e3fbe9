import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openTorchCheckpoint, collectTensors, isTorchTensor, type TorchTensor } from "../../../src/io/torch-checkpoint.ts";
import { InputError } from "../../../src/errors.ts";

// Fixtures: test/fixtures/checkpoints/make-fixtures.py (Debian torch 1.13.1).
const FIX = new URL("../../fixtures/checkpoints/", import.meta.url).pathname;

test("known tensors: values, dtypes, shapes; non-contiguous views and storage offsets come back in C order", async () => {
  const ck = await openTorchCheckpoint(join(FIX, "known-tensors.pth"));
  try {
    const root = ck.root as Record<string, unknown>;
    assert.is(root.epoch, 3);
    assert.is(root.name, "fixture");
    assert.equal((root.nested as Record<string, unknown>).list, [1, 2.5, null, true]);
    assert.equal((root.nested as Record<string, unknown>).tuple, [1, "a"]);
    const m = root.model as Record<string, TorchTensor>;
    const vals = async (k: string) => Array.from((await m[k].read()) as ArrayLike<number | bigint>);
    assert.equal(m.plain.shape, [3, 4]);
    assert.equal(await vals("plain"), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    // base.t(): [4,3] with stride (1,4)
    assert.equal(m.transposed.shape, [4, 3]);
    assert.equal(m.transposed.stride, [1, 4]);
    assert.equal(await vals("transposed"), [0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11]);
    // shared[5:11].view(2,3): offset 5 into a 20-element storage
    assert.is(m.sliced.storageOffset, 5);
    assert.equal(await vals("sliced"), [5, 6, 7, 8, 9, 10]);
    assert.equal(await vals("shared_whole"), Array.from({ length: 20 }, (_, i) => i));
    // base[:, 1]: stride 4, offset 1
    assert.equal(await vals("column"), [1, 5, 9]);
    assert.is(m.int64.dtype, "int64");
    assert.equal(await vals("int64"), [-3n, 0n, 2n ** 40n]);
    assert.equal(Array.from(await m.int64.readFloat32()), [-3, 0, 2 ** 40]);
    assert.equal(await vals("float64"), [1.5, -2.25]);
    assert.is(m.float16.dtype, "float16");
    assert.equal(await vals("float16"), [0.5, -1, 65504]);
    assert.equal(m.scalar.shape, []);
    assert.equal(await vals("scalar"), [7]);
  } finally {
    await ck.close();
  }
});

test("compressed (deflated) entries read the same tensors as stored ones", async () => {
  const stored = await openTorchCheckpoint(join(FIX, "known-tensors.pth"));
  const deflated = await openTorchCheckpoint(join(FIX, "known-tensors-deflated.pth"));
  try {
    const a = collectTensors(stored.root);
    const b = collectTensors(deflated.root);
    assert.equal([...b.keys()], [...a.keys()]);
    for (const [k, t] of a) {
      assert.equal(Array.from((await b.get(k)!.read()) as ArrayLike<number | bigint>), Array.from((await t.read()) as ArrayLike<number | bigint>), k);
    }
  } finally {
    await stored.close();
    await deflated.close();
  }
});

test("a tensor read holds only its own bytes (no whole storage, no whole file)", async () => {
  for (const f of ["known-tensors.pth", "known-tensors-deflated.pth"]) {
    const ck = await openTorchCheckpoint(join(FIX, f));
    try {
      const m = (ck.root as Record<string, unknown>).model as Record<string, TorchTensor>;
      // plain: 12 float32 of its own storage; sliced: 6 of a 20-element shared storage.
      assert.is((await m.plain.read()).buffer.byteLength, 48, f);
      assert.is((await m.sliced.read()).buffer.byteLength, 24, f);
    } finally {
      await ck.close();
    }
  }
});

test("a pickled nn.Module (like 50_models.pkl): _parameters/_buffers/_modules flatten to state-dict names", async () => {
  const ck = await openTorchCheckpoint(join(FIX, "module-object.pth"));
  try {
    const root = ck.root as Record<string, unknown>;
    assert.is(root.current_epoch, 10);
    assert.is((root.model as { __class__: string }).__class__, "__main__.TinyEnsemble");
    const got = collectTensors(root.model);
    const expected = JSON.parse(readFileSync(join(FIX, "module-object.expected.json"), "utf8")) as Record<string, { shape: number[]; values: number[] }>;
    assert.equal([...got.keys()].sort(), Object.keys(expected).sort());
    for (const [k, e] of Object.entries(expected)) {
      const t = got.get(k)!;
      assert.equal(t.shape, e.shape, k);
      const v = Array.from(await t.readFloat32());
      assert.equal(v.length, e.values.length);
      for (let i = 0; i < v.length; i++) assert.ok(Math.abs(v[i] - e.values[i]) < 1e-7, `${k}[${i}]`);
    }
    assert.ok(got.get("submodels.0.gamma_2")!.requiresGrad);
  } finally {
    await ck.close();
  }
});

test("collectTensors on a plain state dict keeps dotted keys", async () => {
  const ck = await openTorchCheckpoint(join(FIX, "tiny-vit.pth"));
  try {
    const sd = (ck.root as Record<string, unknown>).model;
    const m = collectTensors(sd);
    assert.ok(m.has("blocks.1.attn.qkv.weight"));
    assert.ok(isTorchTensor(m.get("cls_token")));
    assert.equal(m.get("patch_embed.proj.weight")!.shape, [16, 3, 4, 4]);
  } finally {
    await ck.close();
  }
});

test("reading after close fails loudly", async () => {
  const ck = await openTorchCheckpoint(join(FIX, "known-tensors.pth"));
  await ck.close();
  const t = (ck.root as { model: Record<string, TorchTensor> }).model.plain;
  await t.read().then(
    () => assert.unreachable("should throw"),
    (err: Error) => assert.match(err.message, /closed/),
  );
});

test("bad files: not a zip, legacy format, truncated archive, missing file — InputError naming the file", async () => {
  const dir = await mkdtemp(join(tmpdir(), "sed-torch-"));
  try {
    const cases: [string, Uint8Array, RegExp][] = [
      ["text.pth", new TextEncoder().encode("hello, not a checkpoint"), /text\.pth: not a zip archive/],
      ["legacy.pth", new Uint8Array([0x80, 0x02, 0x8a, 0x0a]), /legacy \(pre-1\.6/],
      ["truncated.pth", readFileSync(join(FIX, "known-tensors.pth")).subarray(0, 900), /truncated\.pth: (not a readable zip|corrupt zip)/],
    ];
    for (const [name, bytes, re] of cases) {
      await writeFile(join(dir, name), bytes);
      await openTorchCheckpoint(join(dir, name)).then(
        () => assert.unreachable(`${name} should fail`),
        (err: Error) => {
          assert.instance(err, InputError);
          assert.match(err.message, re);
        },
      );
    }
    await openTorchCheckpoint(join(dir, "absent.pth")).then(
      () => assert.unreachable("should fail"),
      (err: Error) => assert.match(err.message, /absent\.pth: cannot open checkpoint \(ENOENT\)/),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test.run();
