// The assessment's dep check (src/runner/assess.ts): missingDeps names the deps not on disk, relative
// to the project or absolute; an assessment's existsMemo asks the file system once per path.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { existsMemo, missingDeps } from "../../../src/runner/assess.ts";
import type { StageInstance } from "../../../src/pipeline/types.ts";
import { removeDir, tempDir } from "../../helpers/tmp.ts";

function instance(deps: Record<string, string>): StageInstance {
  return { id: "s@x", stage: "s", module: "stages/s.ts", item: null, params: {}, deps, outs: {} } as unknown as StageInstance;
}

test("missingDeps: the deps not on disk, project-relative or absolute; a memo answers once per path", async () => {
  const root = await tempDir();
  try {
    await mkdir(join(root, "data"));
    await writeFile(join(root, "data", "a.bin"), "a");
    const outside = join(root, "outside.bin");
    await writeFile(outside, "o");
    const inst = instance({ a: "data/a.bin", folder: "data", gone: "data/gone.bin", abs: outside, absGone: join(root, "nope") });
    assert.equal(await missingDeps(root, inst), ["data/gone.bin", join(root, "nope")]);

    const asked: string[] = [];
    const memo = existsMemo();
    const counting = (abs: string) => (asked.push(abs), memo(abs));
    assert.equal(await missingDeps(root, inst, counting), ["data/gone.bin", join(root, "nope")]);
    // The memo holds for one assessment (nothing writes the workspace meanwhile): a file removed since
    // is still there for it, and a new memo sees it gone.
    await rm(join(root, "data", "a.bin"));
    assert.equal(await missingDeps(root, inst, memo), ["data/gone.bin", join(root, "nope")]);
    assert.equal(await missingDeps(root, inst, existsMemo()), ["data/a.bin", "data/gone.bin", join(root, "nope")]);
    assert.is(asked.length, 5);
  } finally {
    await removeDir(root);
  }
});

test.run();
