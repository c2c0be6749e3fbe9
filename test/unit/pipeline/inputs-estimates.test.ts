// The params file's `inputs:` section (src/pipeline/inputs.ts) and the stage contracts' estimates
// as the loader applies them: a refused entry fails at its position; on the paper profile the
// estimates follow the reference's sizes (sections 2.1, 4, 11) through the graph.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { loadPipeline } from "../../../src/pipeline/load.ts";
import { ConfigError } from "../../../src/errors.ts";
import { rejection, REPO, tempProject } from "./temp-project.ts";

const PIPELINE = `version: 1
default_profile: demo
profiles:
  demo:
    params: params/demo.yaml
stages:
  s:
    module: stages/s.ts
    deps:
      images: data/imgs
    outs:
      out: artifacts/out
`;

test("inputs: entries are read by path (a trailing slash or ./ names the same input); positions kept", async () => {
  const p = await tempProject({ "pipeline.yaml": PIPELINE, "params/demo.yaml": "inputs:\n  ./data/imgs/: {desc: some images, how: put them there, items: 12}\n" }, ["stages/s.ts"]);
  try {
    const pl = await loadPipeline(p.root, { contracts: false });
    const e = pl.inputs!.get("data/imgs")!;
    assert.equal({ ...e, pos: undefined }, { path: "data/imgs", desc: "some images", how: "put them there", items: 12, pos: undefined });
    assert.equal(e.pos, { file: "params/demo.yaml", line: 2, col: 3 });
  } finally {
    await p.cleanup();
  }
});

test("inputs: an unknown key or a bad value fails at its place in the params file", async () => {
  for (const [params, msg] of [
    ["inputs:\n  data/imgs: {desc: x, where: y}\n", /^params\/demo\.yaml:2:24: unknown key "where" in inputs/],
    ["inputs:\n  data/imgs: {items: -3}\n", /^params\/demo\.yaml:2:22: inputs\.data\/imgs\.items: /],
  ] as const) {
    const p = await tempProject({ "pipeline.yaml": PIPELINE, "params/demo.yaml": params }, ["stages/s.ts"]);
    try {
      const err = await rejection(loadPipeline(p.root, { contracts: false }));
      assert.instance(err, ConfigError);
      assert.match(err.message, msg);
    } finally {
      await p.cleanup();
    }
  }
});

test("paper profile: estimates from the reference's sizes, carried from cache-features to train-heads and eval", async () => {
  const pl = await loadPipeline(REPO, { profile: "paper" });
  const est = (id: string) => pl.instances.get(id)!.estimate!;
  // ImageNet train: 1,281,167 images x 4 passes; 768 floats + label + index per row (reference 2.1, 4).
  assert.equal(est("cache-features@in_train"), { unit: "images", work: 5_124_668, outBytes: 5_124_668 * 770 * 4, outs: { features: { items: 1_281_167, bytes: 5_124_668 * 770 * 4 } }, note: "4 passes" });
  assert.is(est("cache-features@in_val").work, 0);
  assert.is(est("cache-features@in_val").outBytes, 50_000 * 770 * 4);
  assert.is(est("cache-features@Zoom Blur_5").outBytes, 50_000 * 770 * 4);
  // 11 epochs over one pass each.
  assert.is(est("train-heads@50_models").work, 1_281_167 * 11);
  // eval: rows x heads of the model trained upstream.
  assert.is(est("eval@50_models/imagenet_a").work, 7_500 * 50);
  assert.is(est("eval@ood_gen/OpenImages").work, 17_632 * 5);
  const dl = est("download@cached-features");
  assert.equal({ work: dl.work, fetch: dl.fetch }, { work: 5_000_000_000, fetch: { from: "https://drive.google.com/file/d/1DT3uxqAt2-tvgYZAW5JIXnAjpiQ1FETq/view?usp=sharing", pinned: false } });
  assert.ok(pl.inputs!.get("data/ImageNet2012/train")!.how!.includes("data/ImageNet2012/train"));
});

test.run();
