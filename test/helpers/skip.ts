// Prerequisites of tests that need something outside node_modules (Debian's python3-h5py, the
// native OpenBLAS addon, util-linux `script`). A test whose prerequisite is missing is registered
// as skipped (uvu's test.skip, counted in "Skipped:") and its reason printed on one line that
// test/run.mjs collects and repeats in its summary:
//   SKIP <file> :: <test name> :: <prerequisite>: <reason>
// Every declared prerequisite also prints `PREREQ <name> ok|missing`, so the runner knows the names
// that SED_TEST_REQUIRE may list (CI sets SED_TEST_REQUIRE=all: a skip there is a failure).
import { spawnSync } from "node:child_process";
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import { test as uvuTest, type Test } from "uvu";

const REPO = fileURLToPath(new URL("../..", import.meta.url));

/** The test file being run (node --import tsx <file>), relative to the repository. */
function currentFile(): string {
  const f = process.argv[1] ?? "?";
  return relative(REPO, f) || f;
}

export interface Prerequisite {
  readonly name: string;
  readonly ok: boolean;
  /** Why it is missing ("" when present). */
  readonly reason: string;
  /** Registers `fn` as a test of `suite` (default: uvu's test) when present, else a skip with the reason. */
  test(title: string, fn: () => unknown): void;
  /**
   * For a check that other tests make only when the prerequisite is there (e.g. the same kernel
   * test on a second backend path): when it is missing, registers one skipped test named `title`
   * so the gap is counted and explained; when present, does nothing.
   */
  skipPart(title: string): void;
}

/**
 * Declares a prerequisite: `check` returns true when it is there, or a reason why not (a throw is a
 * reason too). Checked once, at declaration.
 */
export function requires<T>(name: string, check: () => true | string, suite: Test<T> = uvuTest as unknown as Test<T>): Prerequisite {
  let reason = "";
  try {
    const r = check();
    if (r !== true) reason = r || "not available";
  } catch (err) {
    reason = (err as Error)?.message ?? String(err);
  }
  const ok = reason === "";
  reason = reason.replace(/\s+/g, " ").trim();
  console.log(`PREREQ ${name} ${ok ? "ok" : "missing"}`);
  return {
    name,
    ok,
    reason,
    test(title, fn) {
      if (ok) {
        suite(title, fn as never);
        return;
      }
      console.log(`SKIP ${currentFile()} :: ${title} :: ${name}: ${reason}`);
      suite.skip(title, fn as never);
    },
    skipPart(title) {
      if (ok) return;
      console.log(`SKIP ${currentFile()} :: ${title} :: ${name}: ${reason}`);
      suite.skip(title, () => {});
    },
  };
}

/**
 * A Python that imports `module`: Debian's /usr/bin/python3 first (where `apt-get install
 * python3-h5py` puts h5py, what CI installs), then `python3` on PATH (a pyenv or venv Python).
 * Returns the interpreter's path, or a reason.
 */
export function pythonWith(module: string): { python: string } | { reason: string } {
  const tried: string[] = [];
  for (const py of ["/usr/bin/python3", "python3"]) {
    const r = spawnSync(py, ["-c", `import ${module}`], { encoding: "utf8", timeout: 60_000 });
    if (r.status === 0) return { python: py };
    tried.push(r.error ? `${py}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}` : `${py}: no module ${module}`);
  }
  return { reason: `no Python with ${module} (${tried.join("; ")}); on Debian: apt-get install python3-${module}` };
}
