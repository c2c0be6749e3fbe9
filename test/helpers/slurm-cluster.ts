// A real one-node Slurm cluster for tests (Debian's slurmctld, slurmd, slurm-client and munge),
// started without systemd in a temp folder, on free ports, with its own munge key: nothing under
// /etc or /run is touched, and two clusters (two test files) can run side by side. `stop()` cancels
// every job first (jobs outlive their daemons otherwise), shuts the daemons down and leaves no process.
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { availableParallelism, totalmem, userInfo } from "node:os";
import { join } from "node:path";
import { requires, type Prerequisite } from "./skip.ts";
import { tempDir, removeDir } from "./tmp.ts";

export interface SlurmCluster {
  dir: string;
  /** Environment for Slurm clients (SLURM_CONF) merged over this process's. */
  env: NodeJS.ProcessEnv;
  /** Runs a Slurm client command against this cluster; returns stdout. */
  sh(cmd: string, args: string[]): string;
  stop(): Promise<void>;
}

const BINARIES = ["munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "scontrol", "sinfo"];

/** The prerequisite: Debian's slurmctld, slurmd, slurm-client and munge (CI installs them). */
export function slurmPrerequisite(): Prerequisite {
  return requires("slurm", () => {
    const missing = BINARIES.filter((b) => spawnSync("sh", ["-c", `command -v ${b} || test -x /usr/sbin/${b}`]).status !== 0);
    return missing.length === 0 ? true : `not installed: ${missing.join(", ")} (apt-get install slurmctld slurmd slurm-client munge)`;
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

const bin = (name: string) => (existsSync(`/usr/sbin/${name}`) ? `/usr/sbin/${name}` : name);

/** Alive and not a zombie (this machine's init reaps orphans late). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.split(") ")[1]?.[0] !== "Z";
  } catch {
    return false;
  }
}

function pidFrom(file: string): number | null {
  try {
    const n = Number(readFileSync(file, "utf8").trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return cond();
}

export async function startCluster(opts: { cpus?: number } = {}): Promise<SlurmCluster> {
  const dir = await tempDir("sed-slurm-");
  // munged wants every folder above its socket to be o+x.
  chmodSync(dir, 0o711);
  for (const d of ["munge", "state", "spool", "log"]) mkdirSync(join(dir, d), { recursive: true });
  chmodSync(join(dir, "munge"), 0o711);
  const key = join(dir, "munge", "munge.key");
  writeFileSync(key, randomBytes(1024), { mode: 0o400 });
  const socket = join(dir, "munge", "munge.socket.2");
  execFileSync(bin("munged"), [`--socket=${socket}`, `--key-file=${key}`, `--pid-file=${join(dir, "munge/munged.pid")}`, `--log-file=${join(dir, "munge/munged.log")}`, `--seed-file=${join(dir, "munge/munged.seed")}`]);
  const [ctld, slurmd] = [await freePort(), await freePort()];
  const user = userInfo().username;
  const cpus = opts.cpus ?? availableParallelism();
  const memMb = Math.floor((totalmem() / 1024 / 1024) * 0.8);
  const conf = join(dir, "slurm.conf");
  writeFileSync(
    conf,
    [
      "ClusterName=sedci",
      "SlurmctldHost=localhost",
      `SlurmUser=${user}`,
      `SlurmdUser=${user}`,
      "AuthType=auth/munge",
      "CredType=cred/munge",
      `AuthInfo=socket=${socket}`,
      `SlurmctldPort=${ctld}`,
      `SlurmdPort=${slurmd}`,
      `StateSaveLocation=${join(dir, "state")}`,
      `SlurmdSpoolDir=${join(dir, "spool")}`,
      `SlurmctldPidFile=${join(dir, "slurmctld.pid")}`,
      `SlurmdPidFile=${join(dir, "slurmd.pid")}`,
      `SlurmctldLogFile=${join(dir, "log/slurmctld.log")}`,
      `SlurmdLogFile=${join(dir, "log/slurmd.log")}`,
      // proctrack/cgroup reports failed launches as COMPLETED in this VM: linuxproc + task/none.
      "ProctrackType=proctrack/linuxproc",
      "TaskPlugin=task/none",
      "SelectType=select/cons_tres",
      "SelectTypeParameters=CR_Core",
      "JobAcctGatherType=jobacct_gather/none",
      "AccountingStorageType=accounting_storage/none",
      "JobCompType=jobcomp/filetxt",
      `JobCompLoc=${join(dir, "log/jobcomp.txt")}`,
      "MpiDefault=none",
      "MailProg=/bin/true",
      "ReturnToService=2",
      "MinJobAge=3600",
      "KillWait=5",
      "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
      `NodeName=localhost CPUs=${cpus} RealMemory=${memMb} State=UNKNOWN`,
      "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
      "",
    ].join("\n"),
  );
  const env = { ...process.env, SLURM_CONF: conf };
  const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { env, encoding: "utf8" });
  const cluster: SlurmCluster = {
    dir,
    env,
    sh,
    async stop() {
      // 1) cancel every job and wait for the queue to drain; 2) shut the daemons down; 3) munged.
      try {
        const ids = sh("squeue", ["-h", "-o", "%i"]).split("\n").filter(Boolean);
        if (ids.length) spawnSync("scancel", ids, { env });
        await waitFor(() => sh("squeue", ["-h", "-o", "%i"]).trim() === "", 15_000);
      } catch {
        // slurmctld is not answering: the pid files below still stop everything.
      }
      spawnSync("scontrol", ["shutdown"], { env });
      const pids = ["slurmctld.pid", "slurmd.pid"].map((f) => pidFrom(join(dir, f))).filter((p): p is number => p !== null);
      if (!(await waitFor(() => pids.every((p) => !alive(p)), 10_000))) for (const p of pids) if (alive(p)) process.kill(p, "SIGKILL");
      const munge = pidFrom(join(dir, "munge/munged.pid"));
      if (munge && alive(munge)) {
        process.kill(munge, "SIGTERM");
        await waitFor(() => !alive(munge), 5_000);
      }
      await removeDir(dir);
    },
  };
  try {
    execFileSync(bin("slurmctld"), ["-f", conf], { env });
    execFileSync(bin("slurmd"), ["-f", conf, "-N", "localhost"], { env });
    const up = await waitFor(() => {
      try {
        return sh("sinfo", ["-h", "-n", "localhost", "-o", "%T"]).trim() === "idle";
      } catch {
        return false;
      }
    }, 30_000);
    if (!up) {
      const logs = ["slurmctld.log", "slurmd.log"].map((f) => readFileSync(join(dir, "log", f), "utf8").split("\n").slice(-15).join("\n"));
      throw new Error(`slurm did not become idle:\n${logs.join("\n")}`);
    }
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}
