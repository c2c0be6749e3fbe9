// `sed-pipe doctor`: every backend is reported loaded or with its reason; the self-check compares
// each loaded one with the cpu backend (cpu against itself: exactly 0); the text names them all.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { BACKEND_NAMES } from "../../../src/ml/backend.ts";
import { doctor, formatDoctor, maxRelErr, mismatches, DOCTOR_SCHEMA_VERSION, type DoctorReport } from "../../../src/ml/doctor.ts";

test("maxRelErr: relative to the values' scale; unequal lengths never pass", () => {
  assert.is(maxRelErr([1, 2, 4], [1, 2, 4]), 0);
  assert.ok(Math.abs(maxRelErr([1, 2, 4.004], [1, 2, 4]) - 1e-3) < 1e-9);
  assert.is(maxRelErr([1, 2], [1, 2, 3]), Infinity);
});

test("the report: machine facts, every backend loaded or why not, self-checks against cpu", async () => {
  const r = await doctor({ selfCheck: true });
  assert.is(r.schemaVersion, DOCTOR_SCHEMA_VERSION);
  assert.equal(r.backends.map((b) => b.name).sort(), [...BACKEND_NAMES].sort());
  const cpu = r.backends.find((b) => b.name === "cpu")!;
  assert.ok(cpu.loaded && cpu.selfCheck, "cpu always loads");
  assert.equal([cpu.selfCheck!.vitMaxRelErr, cpu.selfCheck!.sedMaxRelErr], [0, 0]);
  const wasm = r.backends.find((b) => b.name === "wasm")!;
  assert.ok(wasm.loaded && wasm.selfCheck && wasm.selfCheck.sedMaxRelErr < 1e-4, JSON.stringify(wasm));
  for (const b of r.backends) if (!b.loaded) assert.ok(b.reason.length > 10, `${b.name} says why it did not load`);
  assert.equal(mismatches(r), []);
  assert.is(r.packages["@tensorflow/tfjs-core"], "4.22.0");
  assert.match(r.packages.h5wasm ?? "", /^\d+\.\d+\.\d+/);
  const text = formatDoctor(r);
  for (const name of BACKEND_NAMES) assert.match(text, new RegExp(`^  (yes|no ) ${name.replace("+", "\\+")} `, "m"));
  // A backend computing other numbers is flagged.
  const bad: DoctorReport = { ...r, backends: [...r.backends, { name: "x", loaded: true, reason: "", selfCheck: { vitMaxRelErr: 0.01, sedMaxRelErr: 0, ms: 1 } }] };
  assert.equal(mismatches(bad), ["x"]);
  assert.match(formatDoctor(bad), /MISMATCH/);
});

test.run();
