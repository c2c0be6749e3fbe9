// The worker-thread side of an image pool (image-pool.ts): reads, decodes and transforms images into
// the caller's shared batch buffer with the very functions the stage's thread uses (images.ts), so the
// numbers are the same. Pure preparation: knows nothing of datasets, batches or the bad-image policy.
//
// The pool starts this module as a thread entry: from source under tsx, or as the stage bundle that
// contains it (the bundle's other top-level code does nothing in a thread).
import { isMainThread, parentPort, workerData, type MessagePort } from "node:worker_threads";
import { InputError } from "../errors.ts";
import { prepareInto, readImage, type ImagePrep } from "./images.ts";

/** workerData key that makes a module load serve as an image thread. */
export const IMAGE_THREAD_FLAG = "sedPipeImageThread";

export type ImageThreadRequest =
  | { op: "ping" }
  /** Image `index` of pass `pass`, read from `file`, written into out (SharedArrayBuffer-backed) at offset. */
  | { op: "prepare"; file: string; index: number; pass: number; prep: ImagePrep; out: Float32Array; offset: number }
  /** Ends the thread with `code` without replying, as a crash would (tests of the pool's crash handling). */
  | { op: "exit"; code: number };

/** A bad image (unreadable, undecodable): the InputError's message and hint, for the caller's policy. */
export interface BadImage {
  message: string;
  hint?: string;
}

export type ImageThreadReply =
  | { id: number; ok: true; bad: BadImage | null }
  /** Not a bad image but a bug: the caller fails the run with it. */
  | { id: number; ok: false; message: string; stack?: string };

async function handle(req: ImageThreadRequest): Promise<BadImage | null> {
  switch (req.op) {
    case "ping":
      return null;
    case "exit":
      process.exit(req.code);
    case "prepare": {
      if (!(req.out.buffer instanceof SharedArrayBuffer)) throw new Error("image thread: `out` must be SharedArrayBuffer-backed");
      try {
        const img = await readImage(req.file);
        prepareInto(img, req.prep, req.pass, req.index, req.out, req.offset);
        return null;
      } catch (err) {
        if (!(err instanceof InputError)) throw err;
        return { message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
      }
    }
  }
}

/**
 * Requests run concurrently: each one's file read and JPEG decode wait on libuv's pool while this
 * thread transforms an image already decoded; the transforms themselves run one at a time (one JS
 * thread). The pool bounds how many are in flight.
 */
function serve(port: MessagePort): void {
  port.on("message", (msg: { id: number; req: ImageThreadRequest }) => {
    handle(msg.req).then(
      (bad) => port.postMessage({ id: msg.id, ok: true, bad } satisfies ImageThreadReply),
      (err: unknown) => {
        const e = err as Error;
        port.postMessage({ id: msg.id, ok: false, message: e?.message ?? String(err), stack: e?.stack } satisfies ImageThreadReply);
      },
    );
  });
}

if (!isMainThread && parentPort && (workerData as Record<string, unknown> | null)?.[IMAGE_THREAD_FLAG] === true) serve(parentPort);
