import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { HashPool } from "../../../src/hash/hash-pool.ts";
import { digestFile } from "../../../src/hash/file-digest.ts";
import { Hasher } from "../../../src/hash/fingerprint.ts";
import { tempDir, writeAged } from "./hash-fixture.ts";

test("pool digests equal inline digests; errors keep their code", async () => {
  const t = await tempDir();
  const pool = new HashPool(2);
  try {
    const files: string[] = [];
    for (let i = 0; i < 6; i++) files.push(await writeAged(t.root, `f${i}.bin`, Buffer.alloc(1024 * 1024 + i * 4099, i + 1)));
    const viaPool = await Promise.all(files.map((f) => pool.digestFile(f)));
    for (let i = 0; i < files.length; i++) assert.is(viaPool[i], await digestFile(files[i]!));
    try {
      await pool.digestFile(join(t.root, "missing.bin"));
      assert.unreachable("must fail");
    } catch (err) {
      assert.is((err as NodeJS.ErrnoException).code, "ENOENT");
    }
  } finally {
    await pool.close();
    await t.cleanup();
  }
});

test("a Hasher with a pool and one without agree on folders of big files", async () => {
  const t = await tempDir();
  try {
    for (let i = 0; i < 5; i++) await writeAged(t.root, `d/sub${i % 2}/f${i}.bin`, Buffer.alloc(1536 * 1024, 100 + i));
    await writeAged(t.root, "d/small.txt", "tiny");
    const pooled = new Hasher(t.root, { onWarn: () => {}, parallel: 2 });
    const inline = new Hasher(t.root, { onWarn: () => {}, parallel: 1 });
    assert.is(await pooled.digestPath("d"), await inline.digestPath("d"));
    assert.is(pooled.stats.filesHashed, 6);
    await pooled.close();
  } finally {
    await t.cleanup();
  }
});

test.run();
