// The `cache export|import|push|pull|key` and `gc` commands: CLI glue between the workspace
// (pipeline, hasher, store, lock) and src/store/{remote,transfer,gc,cache-key}.ts. Registered in src/commands/index.ts;
// prints through the context it is given, never reads process.* itself.
import type { CliContext } from "./context.ts";
import { mkdir, readFile, rename, rm, stat } from "node:fs/promises";
import { dirname, join, relative, resolve } from "node:path";
import type { Command } from "commander";
import { EXIT, SedPipeError } from "../errors.ts";
import type { LockEntry, LockFile } from "../pipeline/types.ts";
import { tempPathFor } from "../io/atomic.ts";
import { EXAMPLES, fingerprintBackend, openFor, withRunLock } from "./common.ts";
import type { Remote } from "../store/remote.ts";
import type { PullOutcome, PushReport } from "../store/transfer.ts";

/** The transfer code, loaded when a cache command runs (registering commands must stay cheap). */
async function lib() {
  const [remote, transfer, gc, key, lockFile] = await Promise.all([
    import("../store/remote.ts"),
    import("../store/transfer.ts"),
    import("../store/gc.ts"),
    import("../store/cache-key.ts"),
    import("../store/lock-file.ts"),
  ]);
  return { ...remote, ...transfer, ...gc, ...key, ...lockFile };
}

/** The part of the CLI context these commands use. */
export type CommandContext = Pick<CliContext, "cwd" | "env" | "out" | "err" | "root" | "setExit">;


function human(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = bytes;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

const isTar = (p: string) => /\.(tar|tar\.gz|tgz)$/i.test(p);
const isGz = (p: string) => /\.(tar\.gz|tgz)$/i.test(p);

/** Lock entries of the current pipeline's instances in `order` (what export/push send). */
function entriesFor(lock: LockFile, order: string[]): Array<{ id: string; entry: LockEntry }> {
  return order.filter((id) => lock.instances[id]).map((id) => ({ id, entry: lock.instances[id]! }));
}

function printPush(cli: CommandContext, r: PushReport, where: string): void {
  for (const s of r.skipped) cli.err(`warning: not sent ${s.id}: ${s.why}\n`);
  cli.out(
    `${r.entries} run${r.entries === 1 ? "" : "s"} to ${where}: ${r.objectsSent} objects sent (${human(r.bytesSent)}), ${r.objectsPresent} already there` +
      (r.skipped.length ? `, ${r.skipped.length} skipped` : "") +
      "\n",
  );
}

function printPull(cli: CommandContext, outcomes: PullOutcome[], where: string, verbose: boolean): number {
  let refused = 0;
  let pulled = 0;
  let local = 0;
  let absent = 0;
  let waiting = 0;
  let bytes = 0;
  for (const o of outcomes) {
    if (o.status === "refused") {
      refused++;
      cli.err(`refused ${o.id}: ${o.why}\n`);
    } else if (o.status === "pulled") {
      pulled++;
      bytes += o.bytes;
      const from = o.provenance && verbose ? `; pushed by ${o.provenance.host} at ${o.provenance.pushedAt}${o.provenance.commit ? ` for ${o.provenance.commit.slice(0, 12)}` : ""}` : "";
      cli.out(`pulled ${o.id} (${o.objects} objects, ${human(o.bytes)}${from})\n`);
    } else if (o.status === "local") {
      local++;
      if (verbose) cli.out(`local  ${o.id}\n`);
    } else if (o.status === "absent") {
      absent++;
      if (verbose) cli.out(`absent ${o.id} (no run with its current fingerprint)\n`);
    } else {
      waiting++;
      if (verbose) cli.out(`skip   ${o.id}: ${o.why}\n`);
    }
  }
  cli.out(
    `${pulled} pulled (${human(bytes)}), ${local} already here, ${absent} not in ${where}, ${waiting} waiting on upstream, ${refused} refused\n`,
  );
  return refused;
}

interface SyncOpts {
  profile?: string;
  backend?: string;
  wait?: boolean;
  verbose?: boolean;
}

/** Pulls every instance of `targets` (default all) whose current fingerprint has a run in `remote`. */
async function pullFrom(cli: CommandContext, remote: Remote, targets: string[], opts: SyncOpts): Promise<void> {
  const ws = await openFor(cli, opts);
  const { resolveTargets } = await import("../pipeline/select.ts");
  const { currentFingerprint } = await import("../runner/assess.ts");
  const { LockStore, pullInstances } = await lib();
  const order = resolveTargets(ws.pipeline, targets);
  await withRunLock(cli, ws.cacheDir, "cache pull", opts.wait !== false, async () => {
    const lock = await LockStore.open(ws.root);
    const outcomes = await pullInstances(
      {
        root: ws.root,
        store: ws.store,
        remote,
        fingerprint: async (id) => {
          const fp = await currentFingerprint(ws.root, ws.pipeline.instances.get(id)!, ws.hasher);
          return fp === "pending" ? null : fp.digest;
        },
        localEntry: (id) => lock.entry(id),
        setEntry: (id, entry) => lock.set(id, entry),
        checkout: async (_id, entry) => {
          for (const rec of Object.values(entry.outs)) {
            const target = resolve(ws.root, rec.path);
            const cur = await ws.digests.digestPath(target);
            if (cur && cur.digest === rec.digest) continue;
            const r = await ws.store.restore(rec, target);
            if (!r.ok) return r.detail;
          }
          return null;
        },
      },
      order.map((id) => ({ id, outs: ws.pipeline.instances.get(id)!.outs })),
    );
    await ws.digests.save().catch(() => {});
    const refused = printPull(cli, outcomes, remote.where, !!opts.verbose);
    if (refused > 0) {
      cli.err(`hint: refused runs were not recorded; \`sed-pipe run\` recomputes them (a corrupt object at the source should be deleted there)\n`);
      cli.setExit(EXIT.stageFailed);
    }
  });
}

async function pushTo(cli: CommandContext, remote: Remote, targets: string[], opts: SyncOpts): Promise<PushReport> {
  const ws = await openFor(cli, opts);
  const { resolveTargets } = await import("../pipeline/select.ts");
  const { readLock, pushEntries, LOCK_FILE_NAME } = await lib();
  const order = resolveTargets(ws.pipeline, targets);
  const lock = await readLock(ws.root);
  const entries = entriesFor(lock, order);
  if (entries.length === 0) {
    throw new SedPipeError(`nothing to send: ${LOCK_FILE_NAME} has no entries for ${targets.length ? targets.join(", ") : "this pipeline"}`, {
      hint: "run the pipeline first (sed-pipe run)",
    });
  }
  // An output still in the workspace but gone from cache/ (cache deleted, or another clone's lock)
  // is stored again when its bytes are exactly what the lock says, so it can be sent.
  for (const { entry } of entries) {
    for (const rec of Object.values(entry.outs)) {
      if (await ws.store.has(rec)) continue;
      const cur = await ws.digests.digestPath(resolve(ws.root, rec.path)).catch(() => null);
      if (cur && cur.digest === rec.digest && cur.kind === rec.kind) await ws.store.put(resolve(ws.root, rec.path), rec.path);
    }
  }
  const { hostname } = await import("node:os");
  const provenance = { pushedAt: new Date().toISOString(), host: hostname(), commit: cli.env.GITHUB_SHA ?? cli.env.CI_COMMIT_SHA ?? null };
  const r = await pushEntries(ws.store, remote, entries, opts.verbose ? (m) => cli.out(m + "\n") : undefined, provenance);
  printPush(cli, r, remote.where);
  return r;
}

async function checkMarker(remote: Remote, what: string): Promise<void> {
  const { REMOTE_FORMAT, REMOTE_MARKER } = await lib();
  const text = await remote.getText(REMOTE_MARKER);
  let ok = false;
  try {
    const m = text === null ? null : (JSON.parse(text) as { format?: string; version?: number });
    ok = !!m && m.format === REMOTE_FORMAT.format && m.version === REMOTE_FORMAT.version;
  } catch {
    ok = false;
  }
  if (!ok) {
    throw new SedPipeError(`${what} is not a sed-pipe cache export (no valid ${REMOTE_MARKER})`, {
      hint: "give a folder or tar written by `sed-pipe cache export`",
    });
  }
}

export function registerCacheCommands(program: Command, cli: CommandContext): void {
  const cache = program
    .command("cache")
    .description("move cached outputs and run records to and from a folder, a tar or an HTTP store (for CI)");

  const common = (c: Command) =>
    c
      .option("-p, --profile <name>", "params profile")
      .option("-b, --backend <name>", "compute backend the fingerprints assume (as for run)", "auto")
      .option("-v, --verbose", "one line per instance");

  common(
    cache
      .command("export")
      .description("write the objects and lock entries of the targets to a folder or a .tar/.tar.gz file")
      .argument("<dest>", "a folder, or a file ending in .tar, .tar.gz or .tgz")
      .argument("[targets...]", "stages or instances (default: all); their upstream is included"),
  )
    .addHelpText("after", EXAMPLES(["sed-pipe cache export ci-cache.tar.gz", "sed-pipe cache export /mnt/shared/sed-cache tables"]))
    .action(async (dest: string, targets: string[], opts: SyncOpts) => {
      const abs = resolve(cli.cwd, dest);
      const { FolderRemote, REMOTE_MARKER } = await lib();
      if (!isTar(abs)) {
        await pushTo(cli, new FolderRemote(abs), targets, opts);
        return;
      }
      const root = cli.root();
      const staging = join(root, "cache", "tmp", `export-${process.pid}-${Date.now()}`);
      await mkdir(staging, { recursive: true });
      try {
        await pushTo(cli, new FolderRemote(staging, { link: true }), targets, opts);
        const tmp = tempPathFor(abs);
        await mkdir(dirname(abs), { recursive: true });
        const tar = await import("tar");
        await tar.c({ file: tmp, cwd: staging, gzip: isGz(abs), portable: true }, [REMOTE_MARKER, "objects", "runs"]);
        await rename(tmp, abs);
        cli.out(`wrote ${relative(cli.cwd, abs) || abs} (${human((await stat(abs)).size)})\n`);
      } finally {
        await rm(staging, { recursive: true, force: true });
      }
    });

  common(
    cache
      .command("import")
      .description("bring in what `cache export` wrote: verify every object, record matching runs in pipeline.lock, restore outputs")
      .argument("<src>", "a folder or .tar/.tar.gz/.tgz written by `sed-pipe cache export`")
      .argument("[targets...]", "stages or instances (default: all)")
      .option("--no-wait", "fail at once if a run holds the workspace"),
  )
    .addHelpText("after", EXAMPLES(["sed-pipe cache import ci-cache.tar.gz && sed-pipe status"]))
    .action(async (src: string, targets: string[], opts: SyncOpts) => {
      const abs = resolve(cli.cwd, src);
      const { FolderRemote } = await lib();
      const st = await stat(abs).catch(() => null);
      if (!st) throw new SedPipeError(`${src} does not exist`, { hint: "give the folder or tar written by `sed-pipe cache export`" });
      if (st.isDirectory()) {
        const remote = new FolderRemote(abs);
        await checkMarker(remote, src);
        await pullFrom(cli, remote, targets, opts);
        return;
      }
      if (!isTar(abs)) throw new SedPipeError(`${src} is neither a folder nor a .tar/.tar.gz/.tgz file`, { hint: "give what `sed-pipe cache export` wrote" });
      const root = cli.root();
      const staging = join(root, "cache", "tmp", `import-${process.pid}-${Date.now()}`);
      await mkdir(staging, { recursive: true });
      try {
        try {
          // tar strips absolute paths and refuses ".." entries by default; links are not followed out.
          const tar = await import("tar");
          await tar.x({ file: abs, cwd: staging, strict: true, filter: (_p, entry) => "type" in entry && (entry.type === "File" || entry.type === "Directory") });
        } catch (err) {
          throw new SedPipeError(`${src}: cannot read the archive (${(err as Error).message})`, { hint: "the file is damaged or not a tar; export it again" });
        }
        const remote = new FolderRemote(staging, { link: true });
        await checkMarker(remote, src);
        await pullFrom(cli, remote, targets, opts);
      } finally {
        await rm(staging, { recursive: true, force: true });
      }
    });

  common(
    cache
      .command("push")
      .description("send the objects and run records of the targets to a remote (objects first, records last)")
      .argument("[targets...]", "stages or instances (default: all)")
      .requiredOption("-r, --remote <where>", "a folder, or an http(s) URL answering GET/PUT/HEAD (token: SED_PIPE_REMOTE_TOKEN)"),
  )
    .addHelpText("after", EXAMPLES(["sed-pipe cache push --remote https://cache.example.org/sed", "sed-pipe cache push tables --remote /mnt/sed-cache"]))
    .action(async (targets: string[], opts: SyncOpts & { remote: string }) => {
      const { openRemote } = await lib();
      await pushTo(cli, openRemote(opts.remote, cli.cwd, cli.env), targets, opts);
    });

  common(
    cache
      .command("pull")
      .description("fetch the runs whose fingerprint matches the current inputs; verify every object; restore outputs")
      .argument("[targets...]", "stages or instances (default: all); their upstream is included")
      .requiredOption("-r, --remote <where>", "a folder, or an http(s) URL answering GET/PUT/HEAD (token: SED_PIPE_REMOTE_TOKEN)")
      .option("--no-wait", "fail at once if a run holds the workspace"),
  )
    .addHelpText("after", EXAMPLES(["sed-pipe cache pull tables --remote https://cache.example.org/sed && sed-pipe run tables"]))
    .action(async (targets: string[], opts: SyncOpts & { remote: string }) => {
      const { openRemote } = await lib();
      const remote = openRemote(opts.remote, cli.cwd, cli.env);
      await pullFrom(cli, remote, targets, opts);
    });

  cache
    .command("key")
    .description("print a key for CI caches: a hash of pipeline.yaml, params files, pipeline.lock, stage code and runtime")
    .option("-p, --profile <name>", "params profile")
    .option("-b, --backend <name>", "compute backend", "auto")
    .option("--prefix", "print only the prefix shared by keys of this platform (for restore-keys)")
    .addHelpText("after", EXAMPLES(['echo "key=$(sed-pipe cache key)" >> "$GITHUB_OUTPUT"']))
    .action(async (opts: { profile?: string; backend?: string; prefix?: boolean }) => {
      const { cacheKey, cacheKeyPrefix, LOCK_FILE_NAME } = await lib();
      const base = { platform: process.platform, arch: process.arch, nodeMajor: Number(process.versions.node.split(".")[0]) };
      if (opts.prefix) {
        cli.out(cacheKeyPrefix(base) + "\n");
        return;
      }
      const ws = await openFor(cli, opts);
      const [{ codeClosure }, { runtimeParts }] = await Promise.all([import("../hash/code-digest.ts"), import("../hash/runtime.ts")]);
      const files = new Set<string>(["pipeline.yaml", LOCK_FILE_NAME, "package-lock.json", ...ws.pipeline.paramsFiles]);
      for (const decl of ws.pipeline.stages.values()) for (const f of (await codeClosure(ws.root, decl.module)).files) files.add(f);
      cli.out((await cacheKey({ ...base, root: ws.root, files: [...files], runtime: await runtimeParts(ws.root, { backend: await fingerprintBackend(opts.backend), blas: cli.env.SED_PIPE_NO_BLAS !== "1" }) })) + "\n");
    });

  program
    .command("gc")
    .description("delete cache objects that no pipeline.lock entry references (and quarantined corrupt ones), and tree records, bundles and pipeline memos nothing current refers to")
    .option("-n, --dry-run", "only print what would be freed")
    .option("--keep-lock <files...>", "also keep what these lock files reference (e.g. other branches' pipeline.lock)")
    .option("--keep-runs", "keep every run in the run cache (and its objects), not only the runs a lock names")
    .option("-v, --verbose", "list every object")
    .option("--no-wait", "fail at once if a run holds the workspace")
    .addHelpText("after", EXAMPLES(["sed-pipe gc --dry-run", "git show main:pipeline.lock > /tmp/main.lock && sed-pipe gc --keep-lock /tmp/main.lock"]))
    .action(async (opts: { dryRun?: boolean; keepLock?: string[]; keepRuns?: boolean; verbose?: boolean; wait?: boolean }) => {
      const root = cli.root();
      const { ContentStore } = await import("../store/cas.ts");
      const { applyStatePlan, collectGarbage, planStateGc, readLock, scanState } = await lib();
      const store = new ContentStore(join(root, "cache"));
      await withRunLock(cli, store.cacheDir, "gc", opts.wait !== false, async () => {
        const locks: LockFile[] = [await readLock(root)];
        for (const f of opts.keepLock ?? []) locks.push(await readExtraLock(resolve(cli.cwd, f)));
        const r = await collectGarbage(store, locks, { dryRun: !!opts.dryRun, keepRuns: !!opts.keepRuns });
        for (const m of r.unreadableManifests) cli.err(`warning: folder manifest ${m.replace("sha256:", "").slice(0, 12)} is missing; its files cannot be pinned\n`);
        // Tree records, bundles and pipeline memos: what the current pipeline (any profile) refers to is kept.
        const { currentState } = await import("../runner/current-state.ts");
        const keep = await currentState(root, (m) => cli.err(`warning: ${m}\n`));
        const state = planStateGc(await scanState(store.cacheDir), keep, Date.now());
        if (!opts.dryRun) await applyStatePlan(store.cacheDir, state);
        const verb = opts.dryRun ? "would remove" : "removed";
        if (opts.verbose) {
          for (const o of r.removed) cli.out(`${verb} ${o.digest} (${human(o.size)})\n`);
          for (const o of state.remove) cli.out(`${verb} cache/${o.dir}/${o.name} (${human(o.size)}): ${o.why}\n`);
        }
        const stateBytes = state.remove.reduce((n, o) => n + o.size, 0);
        const count = (dir: string) => state.remove.filter((o) => o.dir === dir).length;
        cli.out(
          `${opts.dryRun ? "would free" : "freed"} ${human(r.bytes + stateBytes)}: ${r.removed.length} unreferenced object${r.removed.length === 1 ? "" : "s"}` +
            `${r.corrupt ? ` and ${r.corrupt} quarantined` : ""}; ${r.kept} kept; ` +
            `run cache: ${r.runsRemoved} run${r.runsRemoved === 1 ? "" : "s"} ${opts.dryRun ? "to drop" : "dropped"}, ${r.runsKept} kept; ` +
            `state: ${count("state/trees")} tree record files, ${count("build")} bundles, ${count("state/pipelines")} pipeline memos ${opts.dryRun ? "to remove" : "removed"} (${human(stateBytes)}), ${state.kept} kept\n`,
        );
      });
    });
}

async function readExtraLock(path: string): Promise<LockFile> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch {
    throw new SedPipeError(`--keep-lock ${path}: cannot read the file`, { hint: "give a pipeline.lock file, e.g. from `git show <ref>:pipeline.lock`" });
  }
  try {
    const { parseLock } = await lib();
    return parseLock(text, path);
  } catch (err) {
    throw new SedPipeError(`--keep-lock ${(err as Error).message}`, { hint: "give a pipeline.lock file written by sed-pipe" });
  }
}
