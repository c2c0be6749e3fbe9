// Test helper: a throw-away project folder (pipeline.yaml, params, stage modules) under os.tmpdir().
import { mkdtemp, mkdir, writeFile, rm, symlink, utimes } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export const REPO = join(import.meta.dirname, "..", "..", "..");

export interface TempProject {
  root: string;
  write(rel: string, text: string): Promise<void>;
  cleanup(): Promise<void>;
}

/**
 * Files are dated a minute back (caches keyed by stat signatures do not trust a file written within
 * their racy window); `opts.nodeModules` links the repository's node_modules in (contracts import zod).
 */
export async function tempProject(files: Record<string, string>, modules: string[] = [], opts: { nodeModules?: boolean } = {}): Promise<TempProject> {
  const root = await mkdtemp(join(tmpdir(), "sed-pipeline-test-"));
  const write = async (rel: string, text: string) => {
    await mkdir(dirname(join(root, rel)), { recursive: true });
    await writeFile(join(root, rel), text);
    const t = new Date(Date.now() - 60_000);
    await utimes(join(root, rel), t, t);
  };
  for (const [rel, text] of Object.entries(files)) await write(rel, text);
  for (const m of modules) await write(m, "export async function run() {}\n");
  if (opts.nodeModules) await symlink(join(REPO, "node_modules"), join(root, "node_modules"), "dir");
  return { root, write, cleanup: () => rm(root, { recursive: true, force: true }) };
}

/** Resolves with the error a promise rejects with; fails if it resolves. */
export async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected a rejection, got a value");
}
