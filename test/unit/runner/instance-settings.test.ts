// Per-instance settings on literals: cores from the declared cpus, local clamping, user overrides.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { instanceSettings } from "../../../src/runner/execute.ts";
import { settingsFromEnv } from "../../../src/commands/common.ts";
import { workerProcessEnv } from "../../../src/runner/worker-pool.ts";
import { EXIT, SedPipeError } from "../../../src/errors.ts";

test("cores = declared cpus; blas threads follow; head threads decided later", () => {
  assert.equal(instanceSettings({}, 1, 2), { cores: 1, blasThreads: 1, headThreads: null, blas: true });
  assert.equal(instanceSettings({}, 4, 16), { cores: 4, blasThreads: 4, headThreads: null, blas: true });
});

test("a local run clamps cpus to the machine's cores; a cluster job (null) gets what it asked for", () => {
  assert.is(instanceSettings({}, 8, 2).cores, 2);
  assert.is(instanceSettings({}, 8, 2).blasThreads, 2);
  assert.is(instanceSettings({}, 8, null).cores, 8);
  assert.is(instanceSettings({}, 0, null).cores, 1, "never below one core");
});

test("what the user set wins (SED_PIPE_CORES, SED_PIPE_BLAS_THREADS, SED_PIPE_HEAD_THREADS, SED_PIPE_NO_BLAS)", () => {
  assert.equal(instanceSettings({ cores: 3 }, 8, 16), { cores: 3, blasThreads: 3, headThreads: null, blas: true });
  assert.equal(instanceSettings({ blasThreads: 1, headThreads: 2, blas: false }, 8, 4), { cores: 4, blasThreads: 1, headThreads: 2, blas: false });
});

test("image threads (SED_PIPE_IMAGE_THREADS): 0 is a value (the stage's thread), unset leaves it to the stage", () => {
  assert.equal(settingsFromEnv({ SED_PIPE_IMAGE_THREADS: "0" }), { imageThreads: 0 });
  assert.equal(settingsFromEnv({ SED_PIPE_IMAGE_THREADS: "3", SED_PIPE_HEAD_THREADS: "2" }), { headThreads: 2, imageThreads: 3 });
  assert.equal(settingsFromEnv({ SED_PIPE_IMAGE_THREADS: "" }), {});
  for (const bad of ["-1", "1.5", "many"]) {
    assert.throws(
      () => settingsFromEnv({ SED_PIPE_IMAGE_THREADS: bad }),
      (e: Error) => e instanceof SedPipeError && e.exitCode === EXIT.usage && /SED_PIPE_IMAGE_THREADS must be a whole number >= 0/.test(e.message),
      bad,
    );
  }
  assert.throws(() => settingsFromEnv({ SED_PIPE_HEAD_THREADS: "0" }), /SED_PIPE_HEAD_THREADS must be a positive integer/);
  assert.is(instanceSettings({ imageThreads: 0 }, 8, 4).imageThreads, 0);
  assert.is(instanceSettings({ imageThreads: 2 }, 1, 4).imageThreads, 2);
  assert.not.ok("imageThreads" in instanceSettings({}, 8, 4), "unset: the stage decides from its cores");
});

test("a worker process gets a libuv pool as large as its cores (JPEG decoding runs there), unless the user sized it", () => {
  assert.is(workerProcessEnv({ PATH: "/bin" }, 8).UV_THREADPOOL_SIZE, "8");
  assert.is(workerProcessEnv({ PATH: "/bin" }, 8).PATH, "/bin");
  assert.is(workerProcessEnv({}, 1).UV_THREADPOOL_SIZE, "4", "never below libuv's default");
  assert.is(workerProcessEnv({ UV_THREADPOOL_SIZE: "2" }, 8).UV_THREADPOOL_SIZE, "2", "the user's value wins");
  const env = { A: "1" };
  workerProcessEnv(env, 16);
  assert.equal(env, { A: "1" }, "the caller's env is not changed");
});

test.run();
