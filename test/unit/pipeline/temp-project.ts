// Test helper: a throw-away project folder (pipeline.yaml, params, stage modules) under os.tmpdir().
import { mkdtemp, mkdir, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export interface TempProject {
  root: string;
  write(rel: string, text: string): Promise<void>;
  cleanup(): Promise<void>;
}

export async function tempProject(files: Record<string, string>, modules: string[] = []): Promise<TempProject> {
  const root = await mkdtemp(join(tmpdir(), "sed-pipeline-test-"));
  const write = async (rel: string, text: string) => {
    await mkdir(dirname(join(root, rel)), { recursive: true });
    await writeFile(join(root, rel), text);
  };
  for (const [rel, text] of Object.entries(files)) await write(rel, text);
  for (const m of modules) await write(m, "export async function run() {}\n");
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
