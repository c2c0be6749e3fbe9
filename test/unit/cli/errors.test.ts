// src/cli.ts's top-level handler: file-system errors become user-facing errors with the path and a
// hint (exit 1 inside a run, 2 otherwise); anything that is not a SedPipeError is a bug (exit 70).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { join } from "node:path";
import { fileSystemError, findFsError, main } from "../../../src/cli.ts";
import { SedPipeError } from "../../../src/errors.ts";
import { removeDir, tempDir } from "../../helpers/tmp.ts";

function errno(code: string, syscall: string, path?: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: fake, ${syscall}${path ? ` '${path}'` : ""}`) as NodeJS.ErrnoException;
  e.code = code;
  e.syscall = syscall;
  if (path !== undefined) e.path = path;
  return e;
}

/** main() where the first step of every command (finding the workspace) throws `thrown`. */
async function callThrowing(argv: string[], cwd: string, thrown: unknown, env: NodeJS.ProcessEnv = {}) {
  let out = "";
  let err = "";
  let calls = 0;
  const root = () => {
    if (calls++ === 0) throw thrown;
    return cwd;
  };
  const code = await main(argv, { cwd, root, out: (t) => void (out += t), err: (t) => void (err += t), color: false, env });
  return { code, out, err };
}

test("ENOSPC inside a run: the path, the free space on its disk, exit 1; outside a run exit 2", async () => {
  const dir = await tempDir();
  try {
    const e = errno("ENOSPC", "write", join(dir, "cache", "run.lock.owner.json"));
    const r = await callThrowing(["run", "tables"], dir, e);
    assert.is(r.code, 1, r.err);
    const lines = r.err.split("\n");
    assert.is(lines[0], "error: cannot write cache/run.lock.owner.json: no space left on the disk");
    assert.match(lines[1], /^hint: free space on the disk holding cache\/ \(\d+(\.\d)? (GB|MB|kB|bytes) free\), then rerun$/);
    assert.not.match(r.err, /bug|at async|\n {4}at /);
    const inv = await callThrowing(["invalidate", "make"], dir, e);
    assert.is(inv.code, 2);
    assert.match(inv.err, /^error: cannot write cache\/run\.lock\.owner\.json: no space left on the disk/);
  } finally {
    await removeDir(dir);
  }
});

test("EROFS in the workspace: 'the workspace is read-only' hint; elsewhere the folder is named", async () => {
  const dir = await tempDir();
  try {
    const r = await callThrowing(["run"], dir, errno("EROFS", "mkdir", join(dir, "cache", "run.lock")));
    assert.is(r.code, 1);
    assert.is(
      r.err,
      "error: cannot create cache/run.lock: read-only file system\n" +
        "hint: the workspace is read-only: run from a writable copy (sed-pipe writes cache/, artifacts/ and pipeline.lock)\n",
    );
    const outside = await fileSystemError(errno("EROFS", "open", "/mnt/ro/x.tar"), { cwd: dir, root: dir, command: "cache" });
    assert.is(outside.message, "cannot open /mnt/ro/x.tar: read-only file system");
    assert.is(outside.hint, "/mnt/ro/ is on a read-only file system: make it writable, or run from a writable copy of the workspace");
    assert.is(outside.exitCode, 2);
  } finally {
    await removeDir(dir);
  }
});

test("EACCES, EPERM, EDQUOT, EMFILE: a message and a hint each; no path: the workspace is named", async () => {
  const o = { cwd: "/w", root: "/w", command: "run" };
  const acc = await fileSystemError(errno("EACCES", "open", "/w/artifacts/x.json"), o);
  assert.is(acc.message, "cannot open artifacts/x.json: permission denied");
  assert.is(acc.hint, "check the owner and permissions of artifacts/ (ls -ld artifacts); sed-pipe must be able to write cache/, artifacts/ and pipeline.lock");
  assert.is((await fileSystemError(errno("EPERM", "rename", "/w/pipeline.lock"), o)).message, "cannot move pipeline.lock: permission denied");
  const quota = await fileSystemError(errno("EDQUOT", "write", "/w/cache/objects/ab"), o);
  assert.is(quota.message, "cannot write cache/objects/ab: disk quota exceeded");
  assert.match(quota.hint!, /^free space within your quota on the disk holding cache\/objects\/ \(.* free\), or ask for a larger quota, then rerun$/);
  const files = await fileSystemError(errno("EMFILE", "open", "/w/cache/state/x"), o);
  assert.is(files.message, "cannot open cache/state/x: too many open files");
  assert.is(files.hint, "raise the open-file limit (ulimit -n 4096), or run fewer instances at once (-j 1)");
  const noPath = await fileSystemError(errno("ENOSPC", "write"), o);
  assert.is(noPath.message, "cannot write: no space left on the disk");
  assert.match(noPath.hint!, /^free space on the disk holding the workspace \(\/w\)/);
  assert.instance(noPath, SedPipeError);
});

test("findFsError looks through causes and ignores other codes", () => {
  const inner = errno("ENOSPC", "write", "/x");
  assert.is(findFsError(new Error("wrapped", { cause: inner })), inner);
  assert.is(findFsError(errno("ENOENT", "open", "/x")), null);
  assert.is(findFsError("a string"), null);
});

test("an error that is not a SedPipeError is a bug: exit 70 and the report hint; SED_PIPE_DEBUG=1 adds the stack", async () => {
  const dir = await tempDir();
  try {
    const r = await callThrowing(["status"], dir, new TypeError("cannot read properties of undefined (reading 'x')"));
    assert.is(r.code, 70);
    assert.is(
      r.err,
      "error: cannot read properties of undefined (reading 'x')\nhint: this is a bug in sed-pipe; rerun with SED_PIPE_DEBUG=1 for the stack trace and report it\n",
    );
    const d = await callThrowing(["status"], dir, new TypeError("boom"), { SED_PIPE_DEBUG: "1" });
    assert.is(d.code, 70);
    assert.match(d.err, /^error: boom\nTypeError: boom\n\s+at /);
    // A user error keeps its own code.
    const u = await callThrowing(["status"], dir, new SedPipeError("bad flag", { hint: "h" }));
    assert.equal([u.code, u.err], [2, "error: bad flag\nhint: h\n"]);
  } finally {
    await removeDir(dir);
  }
});

test("--help lists the exit codes, 70 and 143 included", async () => {
  let out = "";
  const code = await main(["--help"], { out: (t) => void (out += t), err: () => {}, env: {}, color: false });
  assert.is(code, 0);
  assert.match(out, /Exit codes: 0 ok, 1 a stage failed .*2 usage or config error,\n70 internal error \(a bug in sed-pipe\), 130 interrupted \(Ctrl-C\), 143 terminated \(SIGTERM\)\./);
});

test.run();
