// Measured throughput per machine and backend (cache/state/calibration.json), written by
// `sed-pipe calibrate` and read by the plan's time estimates (src/pipeline/needs.ts). A missing or
// unreadable file reads as "no calibration": estimates then say so rather than invent numbers.
import { readFile } from "node:fs/promises";
import { arch, availableParallelism, cpus, platform, totalmem } from "node:os";
import { join } from "node:path";
import { writeFileAtomic } from "../io/atomic.ts";
import type { Calibration } from "../pipeline/needs.ts";

export const CALIBRATION_FILE = "cache/state/calibration.json";

interface CalibrationFile {
  version: 1;
  /** `${machine}|${backend}` -> the latest calibration. */
  entries: Record<string, Calibration>;
}

/** This machine, as calibrations are keyed: CPU model, cores, memory, OS. */
export function thisMachine(): string {
  const model = cpus()[0]?.model.trim().replace(/\s+/g, " ") || "unknown CPU";
  return `${model}, ${availableParallelism()} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, ${platform()}-${arch()}`;
}

async function readAll(root: string): Promise<CalibrationFile> {
  try {
    const f = JSON.parse(await readFile(join(root, CALIBRATION_FILE), "utf8")) as CalibrationFile;
    if (f.version === 1 && f.entries && typeof f.entries === "object") return f;
  } catch {
    // none yet, or unreadable: no calibration
  }
  return { version: 1, entries: {} };
}

export async function readCalibration(root: string, machine: string, backend: string): Promise<Calibration | null> {
  return (await readAll(root)).entries[`${machine}|${backend}`] ?? null;
}

export async function writeCalibration(root: string, c: Calibration): Promise<void> {
  const all = await readAll(root);
  all.entries[`${c.machine}|${c.backend}`] = c;
  await writeFileAtomic(join(root, CALIBRATION_FILE), JSON.stringify(all, null, 2) + "\n");
}
