import { test } from "uvu";
import * as assert from "uvu/assert";
import { codeClosure, CodeDigester, digestSource } from "../../../src/hash/code-digest.ts";
import { StatCache } from "../../../src/hash/stat-cache.ts";
import { STATE_FILE } from "../../../src/hash/digest.ts";
import { SedPipeError } from "../../../src/errors.ts";
import { join } from "node:path";
import { tempDir, writeAged } from "./hash-fixture.ts";

const STAGE = `import objectHash from "object-hash";
import { readFile } from "node:fs/promises";
import { helper } from "../src/helper.ts";
export async function run() { return helper() + objectHash({}).length + String(readFile); }
`;
const HELPER = `// Adds one.
export function helper(): number {
  return 1 + 1;
}
`;

async function project() {
  const t = await tempDir("sed-code-test-");
  await writeAged(t.root, "stages/s.ts", STAGE);
  await writeAged(t.root, "src/helper.ts", HELPER);
  return t;
}

async function digests(root: string) {
  const d = new CodeDigester(root, await StatCache.load(join(root, STATE_FILE)));
  return d.digestModule("stages/s.ts");
}

test("closure: the module and every project file it imports; packages and builtins apart", async () => {
  const t = await project();
  try {
    const c = await codeClosure(t.root, "stages/s.ts");
    assert.equal(c.files, ["src/helper.ts", "stages/s.ts"]);
    assert.equal([...c.imports], ["object-hash"]);
  } finally {
    await t.cleanup();
  }
});

test("comment-only and formatting-only edits keep the digest", async () => {
  const t = await project();
  try {
    const before = await digests(t.root);
    await writeAged(t.root, "src/helper.ts", `/** Adds one (documented better now). */\nexport function helper(): number {\n\n    // still one plus one\n    return 1 + 1;   \n}\n`);
    const after = await digests(t.root);
    assert.equal(after.code, before.code);
  } finally {
    await t.cleanup();
  }
});

test("a code edit in a helper changes that file's digest only", async () => {
  const t = await project();
  try {
    const before = await digests(t.root);
    await writeAged(t.root, "src/helper.ts", HELPER.replace("1 + 1", "1 + 2"));
    const after = await digests(t.root);
    assert.is.not(after.code["src/helper.ts"], before.code["src/helper.ts"]);
    assert.is(after.code["stages/s.ts"], before.code["stages/s.ts"]);
  } finally {
    await t.cleanup();
  }
});

test("a new import adds the file; removing it drops it", async () => {
  const t = await project();
  try {
    await writeAged(t.root, "src/extra.ts", "export const k = 3;\n");
    await writeAged(t.root, "src/helper.ts", `import { k } from "./extra.ts";\n${HELPER.replace("1 + 1", "1 + k")}`);
    const withExtra = await digests(t.root);
    assert.equal(Object.keys(withExtra.code).sort(), ["src/extra.ts", "src/helper.ts", "stages/s.ts"]);
    await writeAged(t.root, "src/helper.ts", HELPER);
    assert.equal(Object.keys((await digests(t.root)).code).sort(), ["src/helper.ts", "stages/s.ts"]);
  } finally {
    await t.cleanup();
  }
});

test("transforms are cached per file by stat", async () => {
  const t = await project();
  try {
    const cache = await StatCache.load(join(t.root, STATE_FILE));
    const d1 = new CodeDigester(t.root, cache);
    await d1.digestModule("stages/s.ts");
    assert.is(d1.transforms, 2);
    await cache.save();
    const d2 = new CodeDigester(t.root, await StatCache.load(join(t.root, STATE_FILE)));
    await d2.digestModule("stages/s.ts");
    assert.is(d2.transforms, 0);
  } finally {
    await t.cleanup();
  }
});

test("closures are cached by the stat of every file in them; an edit anywhere recomputes", async () => {
  const t = await project();
  try {
    const c1 = await StatCache.load(join(t.root, STATE_FILE));
    const d1 = new CodeDigester(t.root, c1);
    await d1.digestModule("stages/s.ts");
    assert.is(d1.closureBuilds, 1);
    await c1.save();
    const c2 = await StatCache.load(join(t.root, STATE_FILE));
    const d2 = new CodeDigester(t.root, c2);
    assert.equal(Object.keys((await d2.digestModule("stages/s.ts")).code).sort(), ["src/helper.ts", "stages/s.ts"]);
    assert.is(d2.closureBuilds, 0, "warm: no esbuild run");
    // The helper (not the stage module) gains an import: the cached closure must not be reused.
    await writeAged(t.root, "src/extra.ts", "export const k = 3;\n");
    await writeAged(t.root, "src/helper.ts", `import { k } from "./extra.ts";\n${HELPER.replace("1 + 1", "1 + k")}`);
    const d3 = new CodeDigester(t.root, await StatCache.load(join(t.root, STATE_FILE)));
    assert.equal(Object.keys((await d3.digestModule("stages/s.ts")).code).sort(), ["src/extra.ts", "src/helper.ts", "stages/s.ts"]);
    assert.is(d3.closureBuilds, 1);
  } finally {
    await t.cleanup();
  }
});

test("syntax errors and broken imports are SedPipeErrors naming the file", async () => {
  const t = await project();
  try {
    await writeAged(t.root, "src/helper.ts", "export function helper( {\n");
    try {
      await codeClosure(t.root, "stages/s.ts");
      assert.unreachable("must fail");
    } catch (err) {
      assert.instance(err, SedPipeError);
      assert.match((err as Error).message, /^cannot follow the imports of stages\/s\.ts: src\/helper\.ts:2:1: Expected identifier but found end of file$/);
    }
    await writeAged(t.root, "src/helper.ts", 'import "./missing.ts";\nexport const helper = () => 1;\n');
    try {
      await codeClosure(t.root, "stages/s.ts");
      assert.unreachable("must fail");
    } catch (err) {
      assert.match((err as Error).message, /^cannot follow the imports of stages\/s\.ts: src\/helper\.ts:1:\d+: Could not resolve "\.\/missing\.ts"/);
    }
    try {
      await digestSource(join(t.root, "src", "nope.ts"));
      assert.unreachable("must fail");
    } catch (err) {
      assert.match((err as NodeJS.ErrnoException).code ?? "", /ENOENT/);
    }
  } finally {
    await t.cleanup();
  }
});

test.run();
