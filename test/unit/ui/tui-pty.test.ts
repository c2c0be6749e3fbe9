// Ctrl-C in a real terminal (a pty from util-linux `script`) under the real CLI: `sed-pipe run` picks
// the Ink view, the run stops (exit 130), the final frame says so, the cursor is shown again and the
// terminal is left in cooked mode.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { spawn, spawnSync } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { exists, makeProject, waitFor } from "../../helpers/project.ts";
import { removeDir, withTimeout } from "../../helpers/tmp.ts";
import { requires } from "../../helpers/skip.ts";

const BIN = fileURLToPath(new URL("../../../bin/sed-pipe.js", import.meta.url));
// No pty tool: the pick logic and close() are still covered by pick-sink.test.ts.
const pty = requires("pty-script", () => spawnSync("script", ["--version"]).status === 0 || "util-linux `script` not found (Debian: bsdutils)");

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

pty.test("Ctrl-C under the Ink view: run interrupted, cursor shown, terminal not left raw", () =>
  withTimeout(
    (async () => {
      const root = await makeProject();
      try {
        await writeFile(join(root, "hold"), "");
        const env: NodeJS.ProcessEnv = { ...process.env, TERM: "xterm-256color", COLUMNS: "100", LINES: "30" };
        delete env.CI;
        delete env.NO_COLOR;
        delete env.FORCE_COLOR;
        // The tty sends SIGINT to the whole foreground group, the shell `script` runs included. A
        // non-interactive dash (CI's /bin/sh) dies of it before printing EXIT=; bash waits. A trap
        // with a command keeps either shell alive and is reset to the default in the child.
        const inner = `trap 'true' INT; stty cols 100 rows 30; ${q(process.execPath)} ${q(BIN)} run slow -j 1; echo "EXIT=$?"; stty -a`;
        env.SHELL = "/bin/sh";
        const child = spawn("script", ["-qfec", inner, "/dev/null"], { cwd: root, env, stdio: ["pipe", "pipe", "pipe"] });
        let out = "";
        child.stdout.on("data", (d) => (out += d));
        child.stderr.on("data", (d) => (out += d));
        const closed = new Promise<number | null>((r) => child.on("close", (c) => r(c)));
        await waitFor(() => exists(join(root, "started-slow")), 60_000, "the stage to start");
        await waitFor(() => /running\s+slow/.test(out), 30_000, "the Ink frame showing the running stage");
        child.stdin.write("\x03");
        // `script` keeps its session open until its own stdin ends.
        child.stdin.end();
        let timer: NodeJS.Timeout | undefined;
        const code = await Promise.race([closed, new Promise<"hung">((r) => (timer = setTimeout(() => r("hung"), 40_000)))]);
        clearTimeout(timer);
        if (code === "hung") child.kill("SIGKILL");
        assert.is.not(code, "hung", out);
        assert.match(out, /EXIT=130/, out);
        assert.match(out, /SIGINT: stopping/);
        assert.match(out, /interrupted: 0 ran, 0 restored, 0 fresh, 1 failed/);
        const hide = out.lastIndexOf("\x1b[?25l");
        const show = out.lastIndexOf("\x1b[?25h");
        assert.ok(hide >= 0, "Ink hid the cursor while drawing");
        assert.ok(show > hide, "the cursor is shown again after the last frame");
        // stty -a after the run: canonical mode and echo are on (never left in raw mode).
        assert.match(out, /(^|\s)icanon(\s|$)/m);
        assert.match(out, /(^|\s)echo(\s|$)/m);
      } finally {
        await removeDir(root);
      }
    })(),
    120_000,
  ));

test.run();
