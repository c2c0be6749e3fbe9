// The worker process of one stage instance: forked by the runner as a bundle built by
// stage-bundle.ts (plain node; the stage module is handed over through a global), or, as a fallback,
// with `node --import tsx` importing the stage module itself. It builds the StageContext and calls run(ctx). Talks to the runner only over IPC; never
// touches artifacts/, the cache or pipeline.lock (the runner moves outputs into place).
import { pathToFileURL } from "node:url";
import { isMainThread } from "node:worker_threads";
import type { ProgressEvent, StageContext, StageModule } from "./stage-api.ts";
import type { ToWorker, FromWorker } from "./worker-protocol.ts";

// Same value as stage-bundle.ts's BUNDLED_STAGE_GLOBAL (not imported: that module loads esbuild).
const BUNDLED_STAGE_GLOBAL = "__sedPipeBundledStage";

function send(msg: FromWorker): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(msg, undefined, {}, () => resolve());
  });
}

const controller = new AbortController();
let started = false;

function errorText(err: unknown): { message: string; stack?: string } {
  if (err instanceof Error) return { message: err.message || err.name, stack: err.stack };
  return { message: String(err) };
}

async function start(msg: Extract<ToWorker, { type: "start" }>): Promise<void> {
  const spec = msg.spec;
  let mod: Partial<StageModule>;
  try {
    const bundled = (globalThis as Record<string, unknown>)[BUNDLED_STAGE_GLOBAL];
    mod = (bundled ?? (await import(pathToFileURL(spec.modulePath).href))) as Partial<StageModule>;
  } catch (err) {
    const e = errorText(err);
    await send({ type: "failed", message: `cannot load stage module ${spec.module}: ${e.message}`, stack: e.stack, aborted: false });
    process.exit(1);
  }
  if (typeof mod.run !== "function") {
    await send({ type: "failed", message: `stage module ${spec.module} does not export run(ctx)`, aborted: false });
    process.exit(1);
  }
  const ctx: StageContext = {
    instanceId: spec.instanceId,
    stage: spec.stage,
    root: spec.root,
    profile: spec.profile,
    item: spec.item,
    params: Object.freeze(spec.params),
    deps: Object.freeze(spec.deps),
    outs: Object.freeze(spec.outs),
    scratch: spec.scratch,
    backend: spec.backend,
    settings: Object.freeze({ ...spec.settings }),
    signal: controller.signal,
    progress(event: ProgressEvent) {
      void send({ type: "progress", event });
    },
    log(line: string) {
      void send({ type: "log", line: String(line) });
    },
  };
  try {
    await mod.run(ctx);
    await send({ type: "done" });
    process.exit(0);
  } catch (err) {
    const e = errorText(err);
    await send({ type: "failed", message: e.message, stack: e.stack, aborted: controller.signal.aborted });
    process.exit(1);
  }
}

// A head thread (src/ml/head-thread.ts) loads the stage bundle too: the runtime only runs on the
// process's main thread.
if (isMainThread) {
  process.on("message", (raw: unknown) => {
    const msg = raw as ToWorker;
    if (msg.type === "start" && !started) {
      started = true;
      void start(msg);
    } else if (msg.type === "abort") {
      controller.abort(new Error("interrupted"));
    }
  });

  // If the runner dies, nobody will move our outputs into place: stop rather than compute for nothing.
  process.on("disconnect", () => {
    controller.abort(new Error("runner went away"));
    setTimeout(() => process.exit(1), 2000).unref();
  });

  process.on("unhandledRejection", async (err) => {
    const e = errorText(err);
    await send({ type: "failed", message: `unhandled rejection: ${e.message}`, stack: e.stack, aborted: controller.signal.aborted });
    process.exit(1);
  });

  void send({ type: "ready" });
}
