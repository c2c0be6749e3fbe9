// End to end: a stage with a contract (stages/sum.contract.ts) in a temp project, through the real
// CLI. A bad param stops run, run --dry-run, status and why before anything runs (exit 2, the params
// file position); the contract's version is part of the fingerprint, and why names a bump.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { PARAMS, cli, counts, makeProject } from "../helpers/project.ts";
import { removeDir, withTimeout } from "../helpers/tmp.ts";

const contract = (version: number) => `import { z } from "zod";
export const contract = { name: "sum", version: ${version}, params: z.strictObject({ scale: z.number().positive() }) };
`;

test("a bad param: every command that plans exits 2 at the params file's line before any stage ran; a version bump reruns the stage and why says so", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        await writeFile(join(root, "stages", "sum.contract.ts"), contract(1));
        await writeFile(join(root, "params", "demo.yaml"), PARAMS({ scale: -1 }));
        const expected =
          "error: params/demo.yaml:4:8: scale must be > 0, got number -1 (sum)\n" +
          " 4 | scale: -1\n" +
          "   |        ^^\n" +
          "hint: fix the values in the params file (or pipeline.yaml); they are checked against the stage contract stages/sum.contract.ts (version 1)\n";
        for (const args of [["run"], ["run", "sum", "--dry-run"], ["status"], ["why", "sum"]]) {
          const r = await cli(root, ...args);
          assert.is(r.code, 2, `${args.join(" ")}: ${r.stdout}${r.stderr}`);
          assert.is(r.stderr, expected, args.join(" "));
        }
        assert.equal(await counts(root), [], "no stage ran");

        await writeFile(join(root, "params", "demo.yaml"), PARAMS());
        const ok = await cli(root, "run", "sum");
        assert.is(ok.code, 0, ok.stdout + ok.stderr);
        assert.equal((await counts(root)).sort(), ["make@a", "make@b", "sum"]);

        await writeFile(join(root, "stages", "sum.contract.ts"), contract(2));
        const st = await cli(root, "status");
        assert.match(st.stdout, /stale\s+sum\s+stage version 1 -> 2/);
        const why = await cli(root, "why", "sum");
        assert.is(why.code, 0, why.stderr);
        assert.match(why.stdout, /^sum: run \(stage version 1 -> 2\)\n {2}- stage version 1 -> 2$/m);
        const again = await cli(root, "run", "sum");
        assert.is(again.code, 0, again.stderr);
        assert.equal((await counts(root)).sort(), ["make@a", "make@b", "sum", "sum"], "only sum reran");
      } finally {
        await removeDir(root);
      }
    })(),
    120_000,
  ));

test.run();
