// A throw-away sed-pipe project for end-to-end tests: pipeline.yaml, params and small fake stages
// that count their executions (counts.log, outside artifacts/), plus a runner for the real CLI.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, readFile, symlink, writeFile, access } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { tempDir } from "./tmp.ts";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const BIN = join(REPO, "bin", "sed-pipe.js");

export const PIPELINE_YAML = `version: 1
default_profile: demo
profiles:
  demo:
    params: params/demo.yaml

stages:
  make:
    module: stages/make.ts
    foreach: \${items}
    params:
      item: \${item}
    outs:
      data: artifacts/data/\${item.name}.json

  sum:
    module: stages/sum.ts
    deps:
      a: artifacts/data/a.json
      b: artifacts/data/b.json
    params:
      scale: \${scale}
    outs:
      total: artifacts/sum

  slow:
    module: stages/slow.ts
    params:
      tag: \${tag}
    outs:
      out: artifacts/slow.txt

  flaky:
    module: stages/flaky.ts
    params:
      tag: \${tag}
    outs:
      out: artifacts/flaky.txt
`;

export const PARAMS = (o: { scale?: number; b?: number; tag?: string } = {}) => `items:
  - {name: a, value: 1}
  - {name: b, value: ${o.b ?? 2}}
scale: ${o.scale ?? 2}
tag: ${o.tag ?? "t1"}
`;

const COUNT = `appendFileSync(join(ctx.root, "counts.log"), ctx.instanceId + "\\n");`;

export const STAGES: Record<string, string> = {
  "make.ts": `import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
export async function run(ctx) {
  ${COUNT}
  ctx.log("making " + ctx.params.item.name);
  writeFileSync(ctx.outs.data, JSON.stringify({ value: ctx.params.item.value }));
}
`,
  "sum.ts": `import { appendFileSync, readFileSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fmt } from "./lib/fmt.ts";
export async function run(ctx) {
  ${COUNT}
  const a = JSON.parse(readFileSync(ctx.deps.a, "utf8")).value;
  const b = JSON.parse(readFileSync(ctx.deps.b, "utf8")).value;
  ctx.progress({ phase: "sum", done: 1, total: 1, unit: "step" });
  mkdirSync(ctx.outs.total);
  writeFileSync(join(ctx.outs.total, "total.txt"), fmt((a + b) * ctx.params.scale));
}
`,
  "lib/fmt.ts": `export function fmt(x: number): string {
  return "total=" + x;
}
`,
  // Waits while <root>/hold exists; writes its pid to <root>/started-slow first.
  "slow.ts": `import { appendFileSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
export async function run(ctx) {
  ${COUNT}
  writeFileSync(ctx.outs.out, "partial");
  writeFileSync(join(ctx.root, "started-slow"), String(process.pid));
  while (existsSync(join(ctx.root, "hold"))) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    await new Promise((r) => setTimeout(r, 50));
  }
  writeFileSync(ctx.outs.out, "slow done " + ctx.params.tag);
}
`,
  // Fails while <root>/fail-flaky exists.
  "flaky.ts": `import { appendFileSync, existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
export async function run(ctx) {
  ${COUNT}
  ctx.log("flaky: checking the weather");
  if (existsSync(join(ctx.root, "fail-flaky"))) {
    ctx.log("flaky: about to fail");
    throw new Error("flaky failed on purpose");
  }
  writeFileSync(ctx.outs.out, "ok");
}
`,
};

export async function makeProject(): Promise<string> {
  const root = await tempDir("sed-pipe-e2e-");
  await writeFile(join(root, "pipeline.yaml"), PIPELINE_YAML);
  await mkdir(join(root, "params"));
  await writeFile(join(root, "params", "demo.yaml"), PARAMS());
  await mkdir(join(root, "stages", "lib"), { recursive: true });
  for (const [f, src] of Object.entries(STAGES)) await writeFile(join(root, "stages", f), src);
  await symlink(join(REPO, "node_modules"), join(root, "node_modules"), "dir");
  await writeFile(join(root, "package.json"), JSON.stringify({ name: "e2e-project", type: "module", private: true }));
  return root;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts the real CLI (bin/sed-pipe.js) in `cwd`; `done` resolves when it exits. */
export function startCli(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): { child: ChildProcess; done: Promise<CliResult>; output: () => string } {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd,
    env: { ...process.env, NO_COLOR: "1", FORCE_COLOR: undefined, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const done = new Promise<CliResult>((resolve) => child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, done, output: () => stdout + stderr };
}

export function cli(cwd: string, ...args: string[]): Promise<CliResult> {
  return startCli(cwd, args).done;
}

export async function counts(root: string): Promise<string[]> {
  return (await readFile(join(root, "counts.log"), "utf8").catch(() => "")).split("\n").filter(Boolean);
}

export async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

/** Polls until `cond` holds (or throws after `ms`). */
export async function waitFor(cond: () => Promise<boolean> | boolean, ms = 30_000, what = "condition"): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
