// The `watch` command glue: first cycle runs and prints through the plain sink, status lines go to
// stderr, Ctrl-C (an injected signal) stops it with exit 0; a bad --ui is a usage error.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Command } from "commander";
import { SedPipeError } from "../../../src/errors.ts";
import { registerWatchCommands, type WatchCommandContext } from "../../../src/commands/watch.ts";
import { counts, makeProject, waitFor } from "../../helpers/project.ts";
import { removeDir, withTimeout } from "../../helpers/tmp.ts";

function context(root: string) {
  const s = { out: "", err: "", code: -1, handler: null as null | ((sig: NodeJS.Signals) => void) };
  const ctx: WatchCommandContext = {
    cwd: root,
    env: { NO_COLOR: "1" },
    out: (t) => void (s.out += t),
    err: (t) => void (s.err += t),
    root: () => root,
    setExit: (c) => void (s.code = c),
    onSignal: (h) => {
      s.handler = h;
      return () => void (s.handler = null);
    },
  };
  return { s, ctx };
}

test("watch runs, reports that it watches, and stops cleanly on SIGINT", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        const { s, ctx } = context(root);
        const program = new Command().exitOverride();
        registerWatchCommands(program, ctx, { stdout: { isTTY: false, write: () => true } });
        const done = program.parseAsync(["watch", "make", "--ui", "plain", "-j", "1"], { from: "user" });
        await waitFor(() => /watching \d+ input files/.test(s.err), 60_000, "the watching line");
        assert.match(s.out, /done: 2 ran, 0 restored, 0 fresh, 0 failed, 0 not run/);
        assert.equal((await counts(root)).sort(), ["make@a", "make@b"]);
        s.handler!("SIGINT");
        await done;
        assert.is(s.code, 0);
        assert.match(s.err, /SIGINT: stopping watch/);
        assert.is(s.handler, null, "signal handler removed");
      } finally {
        await removeDir(root);
      }
    })(),
    90_000,
  ));

test("--ui must be auto, ink or plain", async () => {
  const { ctx } = context("/nonexistent");
  const program = new Command().exitOverride();
  registerWatchCommands(program, ctx);
  try {
    await program.parseAsync(["watch", "--ui", "fancy"], { from: "user" });
    assert.unreachable("accepted --ui fancy");
  } catch (err) {
    assert.ok(err instanceof SedPipeError);
    assert.match((err as Error).message, /--ui must be auto, ink or plain/);
  }
});

test.run();
