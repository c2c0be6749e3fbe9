// Every stage module bundles (src/runner/stage-bundle.ts) into a file that plain `node` loads: all
// its imports resolve from the project's node_modules, JSON imports keep their attributes, and the
// worker runtime inside does nothing without a runner on the other end of IPC.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { bundleStage } from "../../../src/runner/stage-bundle.ts";

const REPO = fileURLToPath(new URL("../../../", import.meta.url));

test("each stage's bundle loads on plain node", async () => {
  // Inside the project, as the runner puts it (cache/build resolves packages from node_modules).
  const cache = await mkdtemp(join(REPO, "cache", "test-bundle-"));
  try {
    const stages = readdirSync(join(REPO, "stages")).filter((f) => f.endsWith(".ts"));
    assert.ok(stages.length >= 5, `stages: ${stages}`);
    for (const f of stages) {
      const file = await bundleStage(join(REPO, "stages", f), cache);
      const r = spawnSync(process.execPath, [file], { cwd: REPO, encoding: "utf8", timeout: 60_000, env: { ...process.env, NODE_OPTIONS: "" } });
      assert.is(r.status, 0, `${f}: exit ${r.status}\n${r.stderr.slice(-2000)}`);
    }
  } finally {
    await rm(cache, { recursive: true, force: true });
  }
});

test.run();
