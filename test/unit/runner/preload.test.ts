// The listing preload of `status` (src/runner/preload.ts): from a valid pipeline memo, the folders of
// the big tree records its instances name are handed to the listing helper (outputs, and deps outside
// the immutable folders unless --paranoid); without a memo of this build, nothing; and a status that
// joins the preload still sees an edit made before it.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { DigestService } from "../../../src/hash/digest.ts";
import { HELPER_MIN_FILES, ListingHelper } from "../../../src/hash/listing.ts";
import { openPipeline } from "../../../src/pipeline/memo.ts";
import { preloadListings } from "../../../src/runner/preload.ts";
import { tempProject } from "../pipeline/temp-project.ts";

const PIPELINE = `version: 1
default_profile: plain
profiles:
  plain:
    params: params.yaml
  imm:
    params: params.yaml
    immutable: [data]
stages:
  use:
    module: stages/use.ts
    deps:
      big: data/big
      small: data/small
    outs:
      out: artifacts/out.txt
`;
const DIRS = 16;
const PER = Math.ceil((HELPER_MIN_FILES + 16) / DIRS);

async function project() {
  const p = await tempProject({ "pipeline.yaml": PIPELINE, "params.yaml": "{}\n", "data/small/a.txt": "a" }, ["stages/use.ts"]);
  const old = new Date(Date.now() - 60_000);
  for (let d = 0; d < DIRS; d++) {
    const dir = join(p.root, "data/big", `c${d}`);
    await mkdir(dir, { recursive: true });
    await Promise.all(Array.from({ length: PER }, (_, i) => writeFile(join(dir, `f${i}`), `${d}.${i}`).then(() => utimes(join(dir, `f${i}`), old, old))));
  }
  return p;
}

/** Tree records of data/big and data/small, and memos of both profiles for build "b1". */
async function warm(root: string): Promise<void> {
  const ds = await DigestService.open(root, { pool: null, listing: null });
  await ds.digestPath(join(root, "data/big"));
  await ds.digestPath(join(root, "data/small"));
  await ds.save();
  await openPipeline(root, { code: "b1" });
  await openPipeline(root, { code: "b1", profile: "imm" });
}

test("the big record's folders are preloaded, not the small one's; immutable deps only with --paranoid; no memo, nothing", async () => {
  const p = await project();
  const helper = new ListingHelper();
  try {
    await warm(p.root);
    const count = () => helper.stats.preloaded;
    preloadListings(p.root, { code: "b1", helper })();
    assert.is(count(), DIRS + 1, "data/big and its class folders");
    preloadListings(p.root, { code: "b1", helper, profile: "imm" })();
    assert.is(count(), DIRS + 1, "inside an immutable folder: checked by its folders' stats, nothing to list");
    preloadListings(p.root, { code: "b1", helper, profile: "imm", paranoid: true })();
    assert.is(count(), 2 * (DIRS + 1));
    preloadListings(p.root, { code: "b2", helper })();
    preloadListings(p.root, { code: null, helper })();
    assert.is(count(), 2 * (DIRS + 1), "no memo of this build: nothing");
  } finally {
    await helper.close();
    await p.cleanup();
  }
});

test("a check that joins the preload sees an edit made before the status, and the record answers when nothing changed", async () => {
  const p = await project();
  const helper = new ListingHelper();
  try {
    await warm(p.root);
    const big = join(p.root, "data/big");
    const check = async () => {
      const done = preloadListings(p.root, { code: "b1", helper });
      const ds = await DigestService.open(p.root, { pool: null, listing: helper });
      const d = await ds.session(() => ds.digestPath(big));
      done();
      return { digest: d!.digest, stats: ds.stats };
    };
    const joined = helper.stats.joined;
    const a = await check();
    assert.equal([a.stats.treesByFiles, a.stats.treesRebuilt], [1, 0]);
    assert.ok(helper.stats.joined > joined, "the check joined the preload");
    await writeFile(join(big, "c3", "f1"), "3.X");
    const old = new Date(Date.now() - 60_000);
    await utimes(join(big, "c3", "f1"), old, old);
    const b = await check();
    assert.is.not(b.digest, a.digest);
    assert.equal([b.stats.treesRebuilt, b.stats.filesHashed], [1, 1]);
  } finally {
    await helper.close();
    await p.cleanup();
  }
});

test.run();
