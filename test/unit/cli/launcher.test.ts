// bin/sed-pipe.js, the launcher, on a copy of the repository's bin/ and src/: it runs the esbuild
// bundle of src/cli.ts and rebuilds it when a source or the launcher itself changes (by size or by
// mtime alone), never running stale code; it reuses the bundle otherwise; and after a rebuild it
// removes old bundles, keeping the ten built last and any built in the last two days.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "../../helpers/project.ts";
import { removeDir, tempDir } from "../../helpers/tmp.ts";

/** Sets the mtime (and atime) of every file under `dir` to `whenMs`. */
function dateAll(dir: string, whenMs: number): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) dateAll(p, whenMs);
    else utimesSync(p, whenMs / 1000, whenMs / 1000);
  }
}

test("the launcher rebuilds its bundle when a source or itself changes, reuses it otherwise, and prunes old bundles", async () => {
  const root = await tempDir("sed-pipe-launcher-");
  try {
    for (const f of ["bin", "src", "package.json", "tsconfig.json"]) cpSync(join(REPO, f), join(root, f), { recursive: true });
    symlinkSync(join(REPO, "node_modules"), join(root, "node_modules"));
    // Dated a minute back: the launcher records nothing for a file written during its build.
    dateAll(root, Date.now() - 60_000);
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.SED_PIPE_NO_BUNDLE;
    const version = () => {
      const r = spawnSync(process.execPath, [join(root, "bin", "sed-pipe.js"), "--version"], { cwd: root, encoding: "utf8", env });
      assert.is(r.status, 0, r.stderr);
      return r.stdout.trim();
    };
    const metaFile = join(root, "build", "cli.meta.json");
    const meta = () => JSON.parse(readFileSync(metaFile, "utf8")) as { entry: string; inputs: Record<string, unknown> };

    assert.is(version(), "0.1.0");
    const first = meta();
    assert.ok(existsSync(join(root, first.entry)), "the bundle is built");
    assert.ok("bin/sed-pipe.js" in first.inputs && "src/cli.ts" in first.inputs, "the launcher and the sources are its inputs");
    const builtAt = statSync(metaFile).mtimeMs;
    assert.is(version(), "0.1.0");
    assert.is(statSync(metaFile).mtimeMs, builtAt, "unchanged sources: the bundle is reused, not rebuilt");

    // Old bundles: eleven from three days ago, one from an hour ago; an interrupted build's leftovers,
    // one two hours old and one fresh.
    const build = join(root, "build");
    const fake = (i: number) => `cli-${i.toString(16).padStart(16, "0")}`;
    for (let i = 0; i < 12; i++) {
      mkdirSync(join(build, fake(i)));
      writeFileSync(join(build, fake(i), "cli.mjs"), "");
      const when = i === 11 ? Date.now() - 3_600_000 : Date.now() - 3 * 86_400_000 - i * 60_000;
      utimesSync(join(build, fake(i)), when / 1000, when / 1000);
    }
    mkdirSync(join(build, `${fake(99)}.123.tmp`));
    utimesSync(join(build, `${fake(99)}.123.tmp`), (Date.now() - 7_200_000) / 1000, (Date.now() - 7_200_000) / 1000);
    mkdirSync(join(build, `${fake(98)}.124.tmp`));

    // An edit that keeps the file's size: seen by its mtime alone.
    const cli = join(root, "src", "cli.ts");
    const text = readFileSync(cli, "utf8");
    assert.ok(text.includes('.version("0.1.0")'));
    writeFileSync(cli, text.replace('.version("0.1.0")', '.version("0.2.0")'));
    utimesSync(cli, (Date.now() - 30_000) / 1000, (Date.now() - 30_000) / 1000);
    assert.is(version(), "0.2.0", "an edited source never runs stale");
    const second = meta();
    assert.is.not(second.entry, first.entry);
    const left = readdirSync(build).filter((n) => n.startsWith("cli-")).sort();
    const bundles = left.filter((n) => /^cli-[0-9a-f]{16}$/.test(n));
    assert.is(bundles.length, 10, `the current bundle and the nine built last are kept: ${left.join(" ")}`);
    assert.ok(bundles.includes(first.entry.split("/")[1]!), "the previous bundle is kept (a running process may still import from it)");
    assert.ok(bundles.includes(fake(11)), "a bundle built an hour ago is kept");
    for (const i of [0, 1, 2, 3, 4, 5, 6]) assert.ok(bundles.includes(fake(i)), `the newest of the old ones are kept (${fake(i)})`);
    for (const i of [7, 8, 9, 10]) assert.not.ok(bundles.includes(fake(i)), `old and beyond the ten built last: removed (${fake(i)})`);
    assert.not.ok(left.includes(`${fake(99)}.123.tmp`), "an interrupted build's leftovers, two hours old: removed");
    assert.ok(left.includes(`${fake(98)}.124.tmp`), "a build in progress (fresh): kept");

    // The launcher holds the build options: editing it rebuilds too.
    const launcher = join(root, "bin", "sed-pipe.js");
    writeFileSync(launcher, readFileSync(launcher, "utf8") + "\n// edited\n");
    utimesSync(launcher, (Date.now() - 30_000) / 1000, (Date.now() - 30_000) / 1000);
    const before = statSync(metaFile).mtimeMs;
    assert.is(version(), "0.2.0");
    assert.ok(statSync(metaFile).mtimeMs > before, "an edited launcher rebuilds the bundle");
  } finally {
    await removeDir(root);
  }
});

test.run();
