// Status benchmark (issue 14, item 5): wall time of the real `sed-pipe status` process
//  1. on the demo workspace (goal <= 0.3 s warm): SED_BENCH_DEMO=<dir> names one; else this
//     repository when a demo run left a pipeline.lock in it; else a copy of the repository's tracked
//     files kept under $TMPDIR/sed-pipe-status-demo, brought up to date with `run tables` first (about
//     a minute the first time; afterwards only what the sources changed reruns). Printed beside it:
//     `node -e 0` and `sed-pipe --version` (the start-up floor);
//  2. on a temp project whose one dep is a generated ImageNet-train-like tree: SED_BENCH_TREE_FILES
//     (default 1,281,167) small files in 1000 class folders, kept under $TMPDIR/sed-pipe-status-tree-<n>
//     between runs (deterministic; generating it is timed). Cold status (every file hashed), then warm
//     status with the folder declared immutable (goal <= 1 s), without (every file stat'ed), and
//     `--paranoid`. SED_BENCH_REPS (default 5) warm runs each; the median and the range are printed.
// SED_BENCH_BIN=<another checkout>/bin/sed-pipe.js times another version (the demo part: a baseline).
// SED_BENCH_SKIP_DEMO=1 / SED_BENCH_SKIP_TREE=1 skip a part. Where @sed-pipe/fslist is installed,
// the file-by-file cases are timed again with SED_PIPE_NO_FSLIST=1 (folders listed in JavaScript).
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { copyFile, mkdtemp, mkdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(REPO, "bin", "sed-pipe.js");
const FILES = Number(process.env.SED_BENCH_TREE_FILES ?? 1_281_167);
const REPS = Number(process.env.SED_BENCH_REPS ?? 5);
const CLASSES = 1000;

// CPU seconds (user + sys) of the child too, via GNU time when present: on a shared machine the wall
// time mostly measures the neighbours.
const GNU_TIME = existsSync("/usr/bin/time") ? "/usr/bin/time" : null;
const BIN_USED = process.env.SED_BENCH_BIN ?? BIN;

function time(args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): { ms: number; cpuMs: number; out: string } {
  const t0 = performance.now();
  const cmd = GNU_TIME ? [GNU_TIME, "-f", "cpu %U %S", process.execPath, BIN_USED, ...args] : [process.execPath, BIN_USED, ...args];
  const r = spawnSync(cmd[0]!, cmd.slice(1), { cwd, encoding: "utf8", env: { ...process.env, CI: "1", ...env } });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`sed-pipe ${args.join(" ")} exited ${r.status}: ${r.stderr}`);
  const m = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr);
  return { ms, cpuMs: m ? (Number(m[1]) + Number(m[2])) * 1000 : NaN, out: r.stdout.trim().split("\n").at(-1) ?? "" };
}

/** Whether @sed-pipe/fslist is installed (then the JS listing is timed too, with JS_LISTING). */
const NATIVE = existsSync(join(REPO, "node_modules", "@sed-pipe", "fslist", "build", "Release", "sed_fslist.node"));
const JS_LISTING = { SED_PIPE_NO_FSLIST: "1" };

function series(label: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}, run: (args: string[], cwd: string, env: NodeJS.ProcessEnv) => { ms: number; cpuMs: number; out: string } = time): void {
  const ms: number[] = [];
  const cpu: number[] = [];
  let last = "";
  for (let i = 0; i < REPS; i++) {
    const r = run(args, cwd, env);
    ms.push(r.ms);
    cpu.push(r.cpuMs);
    last = r.out;
  }
  ms.sort((a, b) => a - b);
  cpu.sort((a, b) => a - b);
  const s = (x: number) => `${(x / 1000).toFixed(2)} s`;
  console.log(`${label.padEnd(44)} wall median ${s(ms[ms.length >> 1]!)} (min ${s(ms[0]!)}, max ${s(ms.at(-1)!)}), cpu median ${s(cpu[cpu.length >> 1]!)} (min ${s(cpu[0]!)}), ${REPS} runs  -> ${last}`);
}

console.log(`status bench: ${cpus().length} cores, load average ${loadavg().map((x) => x.toFixed(1)).join(" ")} at start, ${new Date().toISOString()}`);

/** `node <args>` timed like time() (the start-up floor: Node itself). */
function timeNode(args: string[], cwd: string): { ms: number; cpuMs: number; out: string } {
  const t0 = performance.now();
  const cmd = GNU_TIME ? [GNU_TIME, "-f", "cpu %U %S", process.execPath, ...args] : [process.execPath, ...args];
  const r = spawnSync(cmd[0]!, cmd.slice(1), { cwd, encoding: "utf8" });
  const ms = performance.now() - t0;
  const m = /cpu ([\d.]+) ([\d.]+)\s*$/.exec(r.stderr);
  return { ms, cpuMs: m ? (Number(m[1]) + Number(m[2])) * 1000 : NaN, out: "" };
}

series("start-up floor: `node -e 0`", ["-e", "0"], REPO, {}, timeNode);
series("start-up: `sed-pipe --version`", ["--version"], REPO);

/**
 * The demo workspace to time: SED_BENCH_DEMO, this repository when a run left its lock here, else a
 * copy of the repository's tracked files (the sources as they are now) under $TMPDIR, kept between
 * runs with its artifacts/, cache/ and pipeline.lock and brought up to date with `run tables`.
 */
async function demoWorkspace(): Promise<string> {
  if (process.env.SED_BENCH_DEMO) return process.env.SED_BENCH_DEMO;
  if (existsSync(join(REPO, "pipeline.lock"))) return REPO;
  const dir = join(tmpdir(), "sed-pipe-status-demo");
  const tracked = execFileSync("git", ["ls-files", "-z"], { cwd: REPO, encoding: "utf8" }).split("\0").filter((f) => f !== "" && !/^(artifacts|cache)\//.test(f));
  for (const f of tracked) {
    if (!existsSync(join(REPO, f))) continue; // deleted in the working tree
    const to = join(dir, f);
    const same = existsSync(to) && (await readFile(to)).equals(await readFile(join(REPO, f)));
    if (same) continue; // an unchanged file keeps its stat: nothing it feeds is re-hashed
    await mkdir(join(to, ".."), { recursive: true });
    await copyFile(join(REPO, f), to);
  }
  if (!existsSync(join(dir, "node_modules"))) await symlink(join(REPO, "node_modules"), join(dir, "node_modules"), "dir");
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [BIN_USED, "run", "tables", "--ui", "plain"], { cwd: dir, encoding: "utf8", env: { ...process.env, CI: "1" } });
  if (r.status !== 0) throw new Error(`run tables in ${dir} exited ${r.status}: ${r.stderr.slice(-2000)}`);
  console.log(`demo: ${dir} brought up to date in ${((performance.now() - t0) / 1000).toFixed(1)} s (${r.stdout.trim().split("\n").at(-1)})`);
  return dir;
}

// 1. The demo workspace.
if (process.env.SED_BENCH_SKIP_DEMO === "1") {
  console.log("demo: skipped (SED_BENCH_SKIP_DEMO=1)");
} else {
  const demo = await demoWorkspace();
  // The first calls build the CLI bundle if sources changed (one started within 2 s of an edit runs
  // from the sources once) and settle the records.
  time(["status"], demo);
  time(["status"], demo);
  series("demo: warm `sed-pipe status` (goal <= 0.3 s)", ["status"], demo);
  series("demo: warm `sed-pipe run tables --dry-run`", ["run", "tables", "--dry-run", "--ui", "plain"], demo);
  if (NATIVE) series("demo: warm status, JS listing (no fslist)", ["status"], demo, JS_LISTING);
}

// 2. A dep tree of FILES files.
if (process.env.SED_BENCH_SKIP_TREE === "1") process.exit(0);
const tree = join(tmpdir(), `sed-pipe-status-tree-${FILES}`);
if (!existsSync(join(tree, ".complete"))) {
  const t0 = performance.now();
  await rm(tree, { recursive: true, force: true });
  for (let c = 0; c < CLASSES; c++) {
    const dir = join(tree, "train", `n${String(c).padStart(8, "0")}`);
    mkdirSync(dir, { recursive: true });
    for (let i = c; i < FILES; i += CLASSES) writeFileSync(join(dir, `img_${String(i).padStart(8, "0")}.JPEG`), `image ${i} of class ${c}\n`);
  }
  writeFileSync(join(tree, ".complete"), "");
  console.log(`tree: generated ${FILES} files in ${CLASSES} folders at ${tree} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
} else {
  console.log(`tree: reusing ${tree} (${FILES} files; delete it to time the generation)`);
}

const root = await mkdtemp(join(tmpdir(), "sed-pipe-status-bench-"));
try {
  const train = join(tree, "train");
  await writeFile(
    join(root, "pipeline.yaml"),
    `version: 1
default_profile: immutable
profiles:
  immutable:
    params: params.yaml
    immutable: [${JSON.stringify(tree)}]
  plain:
    params: params.yaml
stages:
  feats:
    module: stages/feats.ts
    deps:
      images: ${JSON.stringify(train)}
    params:
      n: \${n}
    outs:
      out: artifacts/feats.txt
`,
  );
  await writeFile(join(root, "params.yaml"), "n: 1\n");
  await mkdir(join(root, "stages"));
  await writeFile(join(root, "stages/feats.ts"), "export async function run(ctx) {}\n");
  await symlink(join(REPO, "node_modules"), join(root, "node_modules"), "dir");

  const cold = time(["status"], root);
  console.log(`tree: cold status (${FILES} files hashed, record written)`.padEnd(44), `${(cold.ms / 1000).toFixed(1)} s  -> ${cold.out}`);
  series("tree: warm status, folder immutable", ["status"], root);
  series("tree: warm status, every file stat'ed", ["status", "--profile", "plain"], root);
  series("tree: warm status --paranoid", ["status", "--paranoid"], root);
  if (NATIVE) series("tree: warm status --paranoid, JS listing", ["status", "--paranoid"], root, JS_LISTING);
} finally {
  await rm(root, { recursive: true, force: true });
}
