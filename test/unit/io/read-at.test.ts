import { test } from "uvu";
import * as assert from "uvu/assert";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { readFullyAt } from "../../../src/io/read-at.ts";
import { sliceStream } from "../../../src/io/torch-checkpoint.ts";
import { InputError } from "../../../src/errors.ts";

const bytes = Uint8Array.from({ length: 100 }, (_, i) => i);

async function withFile(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "read-at-"));
  try {
    await writeFile(join(dir, "f"), bytes);
    await fn(join(dir, "f"));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("readFullyAt fills the buffer in bounded chunks from the given offset", async () => {
  await withFile(async (path) => {
    const fh = await open(path, "r");
    try {
      // The real bound is 256 MiB (one fs read moves < 2 GiB); 7 makes the loop go round 9 times.
      for (const chunk of [1, 7, 64, 1 << 20]) {
        const out = new Uint8Array(60);
        await readFullyAt(fh, out, 33, "f", chunk);
        assert.equal(Array.from(out), Array.from(bytes.subarray(33, 93)), `chunk ${chunk}`);
      }
    } finally {
      await fh.close();
    }
  });
});

test("readFullyAt: a file that ends early is an InputError naming the source", async () => {
  await withFile(async (path) => {
    const fh = await open(path, "r");
    try {
      await readFullyAt(fh, new Uint8Array(20), 90, "model.pth: zip entry x", 7);
      assert.unreachable();
    } catch (e) {
      assert.instance(e, InputError);
      assert.match((e as Error).message, /model\.pth: zip entry x: truncated .*after 10/);
    } finally {
      await fh.close();
    }
  });
});

async function* chunks(sizes: number[]): AsyncGenerator<Uint8Array> {
  let p = 0;
  for (const n of sizes) {
    yield bytes.slice(p, p + n);
    p += n;
  }
}

test("sliceStream keeps only [start, end) of a chunked stream, across chunk edges", async () => {
  for (const [start, end] of [[0, 100], [0, 1], [9, 10], [10, 31], [45, 100], [50, 50]]) {
    const got = await sliceStream(chunks([10, 1, 20, 30, 39]), start, end, "s");
    assert.equal(Array.from(got), Array.from(bytes.subarray(start, end)), `[${start}, ${end})`);
  }
});

test("sliceStream stops reading once it has its range; a short stream is an InputError", async () => {
  let pulled = 0;
  async function* counting(): AsyncGenerator<Uint8Array> {
    for (let i = 0; i < 10; i++) {
      pulled++;
      yield bytes.slice(i * 10, i * 10 + 10);
    }
  }
  await sliceStream(counting(), 5, 25, "s");
  assert.is(pulled, 3);
  try {
    await sliceStream(chunks([10, 10]), 5, 30, "entry y");
    assert.unreachable();
  } catch (e) {
    assert.instance(e, InputError);
    assert.match((e as Error).message, /entry y: truncated \(30 bytes needed, the entry holds 20\)/);
  }
});

test.run();
