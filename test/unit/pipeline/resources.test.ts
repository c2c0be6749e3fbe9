// `resources:` values on literals: sizes, durations, counts, options, unknown keys, defaults.
import { test } from "uvu";
import * as assert from "uvu/assert";
import { DEFAULT_RESOURCES, formatMemory, parseMemoryMb, parseResources, parseTimeMinutes } from "../../../src/pipeline/resources.ts";

test("memory: a number is MB; K, M, G, T are binary units, with or without B / iB", () => {
  assert.is(parseMemoryMb(512), 512);
  assert.is(parseMemoryMb("512"), 512);
  assert.is(parseMemoryMb("512M"), 512);
  assert.is(parseMemoryMb("16G"), 16384);
  assert.is(parseMemoryMb("16g"), 16384);
  assert.is(parseMemoryMb("16GB"), 16384);
  assert.is(parseMemoryMb("1.5GiB"), 1536);
  assert.is(parseMemoryMb("1T"), 1024 * 1024);
  assert.is(parseMemoryMb("2048K"), 2);
  assert.is(parseMemoryMb(" 64G "), 65536);
  for (const bad of ["16 gigs", "G", "", "-1G", "0", 0, -5, "16X", "1e3M", true, [16], {}]) assert.is(parseMemoryMb(bad), null, JSON.stringify(bad));
});

test("time: minutes, unit forms, clock forms; A:B alone is refused as ambiguous", () => {
  assert.is(parseTimeMinutes(90), 90);
  assert.is(parseTimeMinutes("90"), 90);
  assert.is(parseTimeMinutes("24h"), 1440);
  assert.is(parseTimeMinutes("90m"), 90);
  assert.is(parseTimeMinutes("1h30m"), 90);
  assert.is(parseTimeMinutes("2d"), 2880);
  assert.is(parseTimeMinutes("30s"), 0.5);
  assert.is(parseTimeMinutes("1-00:00:00"), 1440);
  assert.is(parseTimeMinutes("02:30:00"), 150);
  assert.is(parseTimeMinutes("1-12"), 2160);
  assert.is(parseTimeMinutes("1-02:30"), 1440 + 150);
  assert.is(parseTimeMinutes("00:00:30"), 0.5);
  for (const bad of ["1:30", "a day", "", "0", "00:00:00", "24 hours", "1:75:00", "h", -3, null, {}]) assert.is(parseTimeMinutes(bad), null, JSON.stringify(bad));
});

test("absent or null resources: the defaults (cpus 1, gpus 0, memory and time null, no options)", () => {
  assert.equal(DEFAULT_RESOURCES, { cpus: 1, memoryMb: null, gpus: 0, timeMinutes: null, options: {} });
  for (const raw of [undefined, null, {}]) assert.equal(parseResources(raw), { ok: true, value: { cpus: 1, memoryMb: null, gpus: 0, timeMinutes: null, options: {} } });
  const r = parseResources({ cpus: 2 });
  assert.ok(r.ok);
  if (r.ok) {
    r.value.options.x = "y";
    assert.equal(DEFAULT_RESOURCES.options, {}, "the defaults are not shared with a parsed value");
  }
});

test("a full declaration; strings that hold numbers (embedded ${...}) count as numbers", () => {
  assert.equal(parseResources({ cpus: 8, memory: "64G", gpus: 1, time: "24h", options: { partition: "gpu", account: 1234 } }), {
    ok: true,
    value: { cpus: 8, memoryMb: 65536, gpus: 1, timeMinutes: 1440, options: { partition: "gpu", account: "1234" } },
  });
  assert.equal(parseResources({ cpus: "4", gpus: "0", memory: "2048" }), { ok: true, value: { cpus: 4, memoryMb: 2048, gpus: 0, timeMinutes: null, options: {} } });
  assert.equal(parseResources({ memory: null, time: null }), { ok: true, value: { cpus: 1, memoryMb: null, gpus: 0, timeMinutes: null, options: {} } });
});

test("every problem is named with its key, what was given and what to write instead", () => {
  const r = parseResources({ cpus: 0, gpus: -1, memory: "16 gigs", time: "1:30", extra: 1 });
  assert.ok(!r.ok);
  if (r.ok) return;
  assert.equal(
    r.problems.map((p) => [p.path.join("."), p.at ?? "value", p.text]),
    [
      ["extra", "key", 'resources: unknown key "extra"; known keys: cpus, memory, gpus, time, options'],
      ["cpus", "value", "resources.cpus: number 0 is not a whole number >= 1; write e.g. cpus: 4"],
      ["gpus", "value", "resources.gpus: number -1 is not a whole number >= 0; write e.g. gpus: 1"],
      ["memory", "value", 'resources.memory: the string "16 gigs" is not a size; write e.g. 16G or 512M (a plain number is MB)'],
      ["time", "value", 'resources.time: the string "1:30" is ambiguous (minutes:seconds or hours:minutes?); write e.g. 24h, 90m, 1-00:00:00 or 02:30:00'],
    ],
  );
  const t = parseResources({ time: "a day", cpus: 2.5 });
  assert.ok(!t.ok && t.problems.some((p) => p.text.startsWith('resources.time: the string "a day" is not a duration;')));
  assert.ok(!t.ok && t.problems.some((p) => p.text.startsWith("resources.cpus: number 2.5 is not a whole number")));
});

test("resources must be a map; options must be a map of scheduler option names to scalars", () => {
  const notMap = parseResources("8 cpus");
  assert.equal(notMap, { ok: false, problems: [{ path: [], text: 'resources: expected a map of cpus, memory, gpus, time, options, got the string "8 cpus"; write e.g. {cpus: 4, memory: 16G}' }] });
  const opts = parseResources({ options: { Partition: "gpu", mem: "4G", output: "/tmp/x.out", qos: ["a"], account: "a\nb", constraint: "a100|h100" } });
  assert.ok(!opts.ok);
  if (opts.ok) return;
  assert.equal(
    opts.problems.map((p) => [p.path.join("."), p.at ?? "value", p.text.split(";")[0]]),
    [
      ["options.Partition", "key", 'resources.options.Partition: "Partition" is not an option name'],
      ["options.mem", "key", "resources.options.mem: set this through resources.memory, not options"],
      ["options.output", "key", "resources.options.output: sed-pipe sets --output on every job itself (it names, places and tracks its jobs)"],
      ["options.qos", "value", "resources.options.qos: expected a string, got a list"],
      ["options.account", "value", "resources.options.account: holds a line break"],
    ],
  );
  assert.ok(!parseResources({ options: "gpu" }).ok);
});

test("memory for messages", () => {
  assert.is(formatMemory(512), "512M");
  assert.is(formatMemory(16384), "16G");
  assert.is(formatMemory(1536), "1.5G");
});

test.run();
