// The download stage module (stages/download.ts) driven with a hand-made StageContext.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, rm, readFile, readdir, writeFile, stat } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { createHash } from "node:crypto";
import { pathToFileURL } from "node:url";
import { run } from "../../../stages/download.ts";
import type { ProgressEvent, StageContext } from "../../../src/stage-api.ts";
import { ConfigError, InputError } from "../../../src/errors.ts";
import { TEST_SETTINGS } from "../../helpers/stage-context.ts";

let dir = "";
test.before(async () => {
  dir = await mkdtemp(join(tmpdir(), "sed-dlstage-"));
});
test.after(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
function ctxFor(source: unknown): { ctx: StageContext; logs: string[]; events: ProgressEvent[]; out: string; scratch: string } {
  n++;
  const logs: string[] = [];
  const events: ProgressEvent[] = [];
  const out = join(dir, `out-${n}`, "data");
  const scratch = join(dir, `scratch-${n}`);
  const ctx: StageContext = {
    instanceId: `download@${n}`,
    stage: "download",
    root: dir,
    profile: "test",
    item: source,
    params: { source },
    deps: {},
    outs: { data: out },
    scratch,
    backend: "auto",
    settings: TEST_SETTINGS,
    signal: new AbortController().signal,
    progress: (e) => events.push(e),
    log: (l) => logs.push(l),
  };
  return { ctx, logs, events, out, scratch };
}

function tarGz(files: Record<string, string>): Buffer {
  const blocks: Buffer[] = [];
  for (const [path, body] of Object.entries(files)) {
    const data = Buffer.from(body);
    const h = Buffer.alloc(512);
    h.write(path, 0, 100);
    h.write("0000644\0", 100);
    h.write("0000000\0", 108);
    h.write("0000000\0", 116);
    h.write(data.length.toString(8).padStart(11, "0") + "\0", 124);
    h.write("00000000000\0", 136);
    h.write("        ", 148);
    h.write("0", 156);
    h.write("ustar\0", 257);
    h.write("00", 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, "0") + "\0 ", 148);
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

test("url: file download, digest logged, progress in bytes", async () => {
  const src = join(dir, "model.pkl");
  const body = Buffer.alloc(50_000, 7);
  await writeFile(src, body);
  const sha = createHash("sha256").update(body).digest("hex");
  const { ctx, logs, events, out } = ctxFor({ name: "m", kind: "url", url: pathToFileURL(src).href, out: "x/m.pkl" });
  await run(ctx);
  assert.ok((await readFile(out)).equals(body));
  assert.ok(logs.some((l) => l.includes(`sha256 ${sha}`) && l.includes("not pinned")));
  assert.ok(events.some((e) => e.phase === "download" && e.unit === "B" && e.done === body.length));
});

test("url + extract tar.gz with strip; the archive is not left in the output", async () => {
  const archive = join(dir, "imagenet-a.tar.gz");
  await writeFile(archive, tarGz({ "imagenet-a/n01498041/a.jpg": "A", "imagenet-a/n01531178/b.jpg": "BB" }));
  const sha = createHash("sha256").update(await readFile(archive)).digest("hex");
  const { ctx, out, scratch } = ctxFor({ name: "imagenet-a", kind: "url", url: pathToFileURL(archive).href, sha256: sha.toUpperCase(), extract: "tar.gz", strip: 1, out: "x/imagenet-a" });
  await run(ctx);
  assert.equal((await readdir(out)).sort(), ["n01498041", "n01531178"]);
  assert.is(await readFile(join(out, "n01531178/b.jpg"), "utf8"), "BB");
  assert.equal(await readdir(scratch), []);
});

test("url + extract: an unsafe archive is refused and not kept; an interrupted extraction reuses the archive", async () => {
  const bad = join(dir, "bad.tar.gz");
  await writeFile(bad, tarGz({ "ok.txt": "fine", "../escape.txt": "x" }));
  const a = ctxFor({ name: "bad", kind: "url", url: pathToFileURL(bad).href, extract: "tar.gz", out: "x/bad" });
  try {
    await run(a.ctx);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, InputError);
    assert.match((err as Error).message, /refusing to extract: entry \.\.\/escape\.txt/);
  }
  assert.not.ok(existsSync(a.out));
  assert.equal(await readdir(a.scratch), [], "refused archive deleted from scratch");

  // Interrupted extraction: the archive stays in scratch and the next run does not download it again.
  const good = join(dir, "good.tar.gz");
  await writeFile(good, tarGz({ "d/x.txt": "X" }));
  const b = ctxFor({ name: "good", kind: "url", url: pathToFileURL(good).href, extract: "tar.gz", out: "x/good" });
  const ac = new AbortController();
  try {
    await run({
      ...b.ctx,
      signal: ac.signal,
      progress: (e) => {
        if (e.phase === "extract") ac.abort(new Error("interrupted"));
      },
    });
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /interrupted/);
  }
  assert.ok(existsSync(join(b.scratch, "good.tar.gz")));
  await run(b.ctx);
  assert.ok(b.logs.some((l) => /reusing good\.tar\.gz downloaded earlier/.test(l)));
  assert.is(await readFile(join(b.out, "d/x.txt"), "utf8"), "X");
  assert.equal(await readdir(b.scratch), []);
});

test("url: wrong pinned sha256 fails and leaves no output", async () => {
  const src = join(dir, "w.bin");
  await writeFile(src, "hello");
  const { ctx, out, scratch } = ctxFor({ name: "w", kind: "url", url: pathToFileURL(src).href, sha256: "1".repeat(64), out: "x/w.bin" });
  try {
    await run(ctx);
    assert.unreachable();
  } catch (err) {
    assert.match((err as Error).message, /sha256 mismatch/);
  }
  assert.not.ok(existsSync(out));
  assert.is((await stat(join(scratch, "w.bin.part"))).size, 5);
});

test("mnist-universe: builds the tree at the output", async () => {
  const { ctx, out, logs } = ctxFor({
    name: "universe",
    kind: "mnist-universe",
    out: "artifacts/data/universe",
    seed: 0,
    id_classes: [0, 1],
    val_fraction: 0.5,
    subset_classes: [1],
    semantic_sets: { inat: [8] },
    corruptions: ["contrast"],
    severities: [1, 5],
    max_per_class: 4,
  });
  await run(ctx);
  assert.equal((await readdir(out)).sort(), ["MANIFEST.json", "imagenet-c", "ood", "subset", "subset_classes.json", "train", "val"]);
  assert.ok(logs.some((l) => /^universe: \d+ files/.test(l)));
});

test("generated-vit: writes a seeded checkpoint", async () => {
  const arch = { image_size: 28, patch_size: 7, in_chans: 3, embed_dim: 16, depth: 1, num_heads: 2, mlp_ratio: 2, layerscale_init: 1.0 };
  const a = ctxFor({ name: "featurizer", kind: "generated-vit", out: "m.safetensors", seed: 5, arch });
  await run(a.ctx);
  const b = ctxFor({ name: "featurizer", kind: "generated-vit", out: "m.safetensors", seed: 5, arch });
  await run(b.ctx);
  const bytes = await readFile(a.out);
  assert.ok(bytes.length > 1000);
  assert.ok(bytes.equals(await readFile(b.out)), "same seed, same bytes");
  const bad = ctxFor({ name: "featurizer", kind: "generated-vit", out: "m.safetensors", seed: 5, arch: { ...arch, embed_dim: "big" } });
  try {
    await run(bad.ctx);
    assert.unreachable();
  } catch (err) {
    assert.instance(err, ConfigError);
    assert.match((err as Error).message, /params\.source\.arch\.embed_dim: expected number/);
  }
});

test("bad sources: clear errors", async () => {
  const cases: [unknown, RegExp][] = [
    [{ name: "x", kind: "ftp", out: "o" }, /params\.source\.kind: expected "url" or "mnist-universe" or "generated-vit" or "generated-images" or "generated-features" or "generated-class-list", got the string "ftp"/],
    [{ name: "x", kind: "url", out: "o" }, /params\.source\.url is required/],
    [{ kind: "url", out: "o", url: "https://e.org/a" }, /params\.source\.name is required/],
    [{ name: "x", kind: "url", out: "o", url: "https://e.org/a", extract: "zip" }, /extract must be "tar.gz"/],
    [{ name: "x", kind: "mnist-universe", out: "o", id_classes: [] }, /id_classes must be a non-empty list/],
    [{ name: "x", kind: "generated-vit", out: "o" }, /params\.source\.arch is required/],
    [{ name: "x", kind: "generated-vit", out: "o", arch: { image_size: 8, patch_size: 4, in_chans: 3, embed_dim: 8, depth: 1, num_heads: 2, mlp_ratio: 2, layerscale_init: 1 }, format: "onnx" }, /format must be "safetensors" or "pth"/],
    ["nope", /params\.source: expected object/],
  ];
  for (const [src, re] of cases) {
    try {
      await run(ctxFor(src).ctx);
      assert.unreachable(String(re));
    } catch (err) {
      assert.ok(err instanceof ConfigError || err instanceof InputError, String(err));
      assert.match((err as Error).message, re);
    }
  }
});

test.run();
