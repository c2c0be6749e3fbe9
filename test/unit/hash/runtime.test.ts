import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { backendPackages, runtimeParts } from "../../../src/hash/runtime.ts";
import { tempDir, removeDir } from "../../helpers/tmp.ts";

async function fakeProject(addon: string | null): Promise<string> {
  const root = await tempDir("sed-runtime-");
  const pkg = join(root, "node_modules", "@sed-pipe", "blas");
  await mkdir(join(pkg, "build", "Release"), { recursive: true });
  await writeFile(join(pkg, "package.json"), JSON.stringify({ name: "@sed-pipe/blas", version: "0.1.0" }));
  if (addon !== null) await writeFile(join(pkg, "build", "Release", "sed_blas.node"), addon);
  return root;
}

test("the native addon's build is part of the runtime: a rebuilt kernel changes the fingerprint", async () => {
  const a = await fakeProject("build one");
  const b = await fakeProject("build two");
  const none = await fakeProject(null);
  try {
    const tf = new Set(["@tensorflow/tfjs-core"]);
    const ra = (await runtimeParts(a, {}, tf))["@sed-pipe/blas"];
    const rb = (await runtimeParts(b, {}, tf))["@sed-pipe/blas"];
    assert.match(ra, /^0\.1\.0\+[0-9a-f]{12}$/);
    assert.is.not(ra, rb);
    assert.is((await runtimeParts(none, {}, tf))["@sed-pipe/blas"], "0.1.0");
    // Code that does not import tfjs does not depend on the kernels at all.
    assert.is((await runtimeParts(a, {}, new Set(["yaml"])))["@sed-pipe/blas"], undefined);
  } finally {
    await Promise.all([a, b, none].map(removeDir));
  }
});

test("a computation is identified by its backend's packages: another backend installed or not changes nothing", async () => {
  const without = await fakeProject("same build");
  const withGpu = await fakeProject("same build");
  try {
    for (const [name, version] of [["@tensorflow/tfjs-core", "4.22.0"], ["@tensorflow/tfjs-backend-wasm", "4.22.0"]]) {
      for (const root of [without, withGpu]) {
        await mkdir(join(root, "node_modules", name!), { recursive: true });
        await writeFile(join(root, "node_modules", name!, "package.json"), JSON.stringify({ name, version }));
      }
    }
    // The optional GPU backend installed on one machine only.
    for (const [name, version] of [["@tensorflow/tfjs-backend-webgpu", "4.22.0"], ["webgpu", "0.6.2"]]) {
      await mkdir(join(withGpu, "node_modules", name!), { recursive: true });
      await writeFile(join(withGpu, "node_modules", name!, "package.json"), JSON.stringify({ name, version }));
    }
    const tf = new Set(["@tensorflow/tfjs-core"]);
    const a = await runtimeParts(without, { backend: "wasm" }, tf);
    assert.equal(a, await runtimeParts(withGpu, { backend: "wasm" }, tf));
    assert.is(a["@tensorflow/tfjs-backend-wasm"], "4.22.0");
    assert.is(a["@tensorflow/tfjs-backend-webgpu"], undefined);
    const g = await runtimeParts(withGpu, { backend: "webgpu" }, tf);
    assert.equal([g["@tensorflow/tfjs-backend-webgpu"], g.webgpu, g["@sed-pipe/blas"]], ["4.22.0", "0.6.2", undefined]);
    assert.equal(backendPackages("cpu"), ["@tensorflow/tfjs-backend-cpu", "@tensorflow/tfjs-core"]);
  } finally {
    await Promise.all([without, withGpu].map(removeDir));
  }
});

test.run();
