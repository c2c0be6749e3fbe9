// The paper-smoke profile's seeded stand-ins (src/io/stand-ins.ts), through the download stage's own
// contract and run(): deterministic bytes, the reference's layouts and names, and clear errors.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { createHash } from "node:crypto";
import { run, contract } from "../../../stages/download.ts";
import type { StageContext } from "../../../src/stage-api.ts";
import { openFeatureFile } from "../../../src/io/feature-reader.ts";
import { decodeImage } from "../../../src/io/images.ts";
import { listImages } from "../../../src/io/image-folder.ts";
import { referenceFeatureFileName } from "../../../src/hash/reference-name.ts";
import { standInWnid } from "../../../src/io/stand-ins.ts";
import { TEST_SETTINGS } from "../../helpers/stage-context.ts";
import { removeDir, tempDir } from "../../helpers/tmp.ts";

let dir = "";
test.before(async () => {
  dir = await tempDir("sed-standins-");
});
test.after(async () => {
  await removeDir(dir);
});

let n = 0;
function ctxFor(source: Record<string, unknown>, out: string): StageContext {
  n++;
  return {
    instanceId: `download@${source.name}`,
    stage: "download",
    root: dir,
    profile: "test",
    item: source,
    params: { source },
    deps: {},
    outs: { data: out },
    scratch: join(dir, `scratch-${n}`),
    settings: TEST_SETTINGS,
    backend: "auto",
    signal: new AbortController().signal,
    log: () => undefined,
    progress: () => undefined,
  };
}

async function treeDigest(root: string): Promise<string> {
  const h = createHash("sha256");
  const walk = async (d: string): Promise<void> => {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(d, e.name);
      h.update(p.slice(root.length) + "\0");
      if (e.isDirectory()) await walk(p);
      else h.update(await readFile(p));
    }
  };
  await walk(root);
  return h.digest("hex");
}

const images = { name: "train-stand-in", kind: "generated-images", seed: 3, classes: 2, per_class: 2, sizes: [[500, 375], [375, 500], [333, 500]], quality: 90 };

test("generated-images: an ImageFolder of JPEGs at the given sizes, same seed same bytes", async () => {
  const a = join(dir, "img-a");
  const b = join(dir, "img-b");
  await run(ctxFor({ ...images, out: a }, a));
  await run(ctxFor({ ...images, out: b }, b));
  assert.is(await treeDigest(a), await treeDigest(b));
  const list = await listImages(a, "imagefolder");
  assert.equal(list.classes, [standInWnid(0), standInWnid(1)]);
  assert.equal(list.items.map((i) => i.label), [0, 0, 1, 1]);
  const sizes = [];
  for (const it of list.items) {
    const img = await decodeImage(await readFile(it.file), it.file);
    sizes.push([img.width, img.height]);
    // not a flat colour: a real JPEG's worth of detail
    const px = img.data;
    let min = 255;
    let max = 0;
    for (let i = 0; i < px.length; i += 97) (min = Math.min(min, px[i])), (max = Math.max(max, px[i]));
    assert.ok(max - min > 60, `${it.file}: pixel range ${min}..${max}`);
  }
  assert.equal(sizes, [[500, 375], [375, 500], [333, 500], [500, 375]]);
  const c = join(dir, "img-c");
  await run(ctxFor({ ...images, seed: 4, out: c }, c));
  assert.is.not(await treeDigest(c), await treeDigest(a));
});

const MODEL_PATH = "/mnt/lustre/x/deit_3_base_224_21k.pth";
const features = {
  name: "cached-features",
  kind: "generated-features",
  seed: 0,
  dim: 24,
  reference_model_path: MODEL_PATH,
  files: [
    { path: "cached/in_val_deit3b_-1.hdf5", rows: 37, classes: 10 },
    { path: "cached/in_a_deit3b_-1_.hdf5", rows: 9, classes: 4 },
    { path: "cached/inat_deit3b_-1_.hdf5", rows: 5, classes: 1 },
    { path: "cached/Fog_5", rows: 11, classes: 10 },
  ],
};

test("generated-features: the tarball's layout, reference IN-C names, complete files with the declared rows and labels", async () => {
  const out = join(dir, "feat-a");
  await run(ctxFor({ ...features, out }, out));
  assert.equal((await readdir(join(out, "cached"))).sort(), ["Fog_5", "in_a_deit3b_-1_.hdf5", "in_val_deit3b_-1.hdf5", "inat_deit3b_-1_.hdf5"]);
  const incName = referenceFeatureFileName({ modelPath: MODEL_PATH, datasetKey: "Fog_5", samples: 11 });
  assert.equal(await readdir(join(out, "cached/Fog_5")), [incName]);
  assert.match(incName, /^[0-9a-f]{20}_torch_load_block_-1_model_Fog_5_dataset_1_epochs_11_samples\.hdf5$/);
  const expect: [string, number, number][] = [
    ["cached/in_val_deit3b_-1.hdf5", 37, 10],
    ["cached/in_a_deit3b_-1_.hdf5", 9, 4],
    ["cached/inat_deit3b_-1_.hdf5", 5, 1],
    [`cached/Fog_5/${incName}`, 11, 10],
  ];
  for (const [rel, rows, classes] of expect) {
    const r = await openFeatureFile(join(out, rel), { dim: 24, requireComplete: true });
    try {
      assert.is(r.rows, rows, rel);
      assert.is(r.passes, 1);
      const labels = [...r.labels()];
      assert.ok(labels.every((l) => Number.isInteger(l) && l >= 0 && l < classes), `${rel}: labels ${labels}`);
      if (classes === 1) assert.ok(labels.every((l) => l === 0));
      else assert.ok(new Set(labels).size > 1, `${rel}: one label only`);
    } finally {
      r.close();
    }
  }
  const again = join(dir, "feat-b");
  await run(ctxFor({ ...features, out: again }, again));
  assert.is(await treeDigest(again), await treeDigest(out));
});

test("generated-class-list: all_wnids and a sorted subset of them under the key", async () => {
  const out = join(dir, "json/imagenet_a_wnids.json");
  await run(ctxFor({ name: "imagenet_a_wnids", kind: "generated-class-list", seed: 1, classes: 1000, subset: 200, key: "imagenet_a_wnids", out }, out));
  const j = JSON.parse(await readFile(out, "utf8")) as Record<string, string[]>;
  assert.equal(Object.keys(j), ["all_wnids", "imagenet_a_wnids"]);
  assert.is(j.all_wnids.length, 1000);
  assert.equal([...j.all_wnids].sort(), j.all_wnids);
  assert.ok(j.all_wnids.every((w) => /^n\d{8}$/.test(w)));
  const sub = j.imagenet_a_wnids;
  assert.is(new Set(sub).size, 200);
  assert.equal([...sub].sort(), sub);
  assert.ok(sub.every((w) => j.all_wnids.includes(w)));
});

test("stand-in sources with bad fields are refused with the field and the rule", () => {
  const bad = (source: Record<string, unknown>, what: RegExp) => {
    const r = contract.params.safeParse({ source: { out: "x", ...source } });
    assert.not.ok(r.success, JSON.stringify(source));
    assert.match(JSON.stringify(r.error!.issues), what);
  };
  bad({ ...features, files: [{ path: "../up.hdf5", rows: 1, classes: 1 }] }, /relative path inside the output folder/);
  bad({ ...features, files: [features.files[0], features.files[0]] }, /listed twice/);
  bad({ ...features, dim: 0 }, /dim/);
  bad({ name: "w", kind: "generated-class-list", classes: 10, subset: 20, key: "k" }, /subset must not be larger than classes/);
  bad({ ...images, sizes: [[500]] }, /sizes/);
  bad({ ...images, quality: 101 }, /quality/);
});

test.run();
