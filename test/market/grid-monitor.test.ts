// Grid-loss detection at the PCC (market/grid-monitor.ts): every IEEE 1547
// category II setting trips at its clearing time and not a reading before,
// on 120 V / 60 Hz and 230 V / 50 Hz; rides through short sags; reconnects
// only after a full window; islands whenever the grid is unknown; and, on
// random input sequences, never says "connected" when a dumb reference
// computed from the whole history says it must not.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { ConfigError } from "../../ledger/errors.js";
import {
  type GridEvent, type GridInput, type GridMonitorConfig, type GridMonitorState, type GridStep, type TripCode,
  CLEARING_MS_MAX, GRID_MONITOR_DEFAULTS, PPM_PER_PU, TRIP_CODES, gridStatus, initialGridState, parseGridMonitorConfig, stepGrid,
} from "../../market/grid-monitor.js";

const US = parseGridMonitorConfig({ nominalVoltageDeciV: 1_200, nominalFrequencyMilliHz: 60_000 });
const EU = parseGridMonitorConfig({ nominalVoltageDeciV: 2_300, nominalFrequencyMilliHz: 50_000 });
const NOMINALS = [
  { name: "120 V / 60 Hz", config: US },
  { name: "230 V / 50 Hz", config: EU },
];

/** Drives one monitor and keeps every event, like the shell will. */
class Monitor {
  state: GridMonitorState = initialGridState();
  readonly events: GridEvent[] = [];
  constructor(readonly config: GridMonitorConfig) {}

  step(input: GridInput): GridStep {
    const r = stepGrid(this.config, this.state, input);
    this.state = r.state;
    this.events.push(...r.events);
    return r;
  }

  /** Phases in deci-volts, or in pu x 1e6 (default nominal); frequency as milli-Hz from nominal. */
  read(timeMs: number, opts: { voltagesDeciV?: number[]; phasesPpm?: number[]; offsetMilliHz?: number; good?: boolean } = {}): GridStep {
    const c = this.config;
    const voltagesDeciV = opts.voltagesDeciV ?? (opts.phasesPpm ?? [PPM_PER_PU, PPM_PER_PU, PPM_PER_PU]).map((ppm) => (c.nominalVoltageDeciV * ppm) / PPM_PER_PU);
    assert.ok(voltagesDeciV.every(Number.isInteger), "test levels are whole deci-volts");
    return this.step({ type: "reading", reading: { timeMs, voltagesDeciV, frequencyMilliHz: c.nominalFrequencyMilliHz + (opts.offsetMilliHz ?? 0), good: opts.good ?? true } });
  }

  tick(nowMs: number): GridStep {
    return this.step({ type: "tick", nowMs });
  }

  /** Nominal readings every second from `fromMs` through `toMs`. */
  nominalUntil(fromMs: number, toMs: number): void {
    for (let t = fromMs; t <= toMs; t += 1_000) this.read(t);
  }
}

/** A monitor connected at 300 s after nominal readings from 0 s. */
function connected(config: GridMonitorConfig): Monitor {
  const m = new Monitor(config);
  m.nominalUntil(0, 299_000);
  assert.equal(m.state.decision, "islanded", "not before the full 300 s");
  m.read(300_000);
  assert.equal(m.state.decision, "connected");
  assert.deepEqual(m.events, [{ timeMs: 300_000, islanded: false, reason: "reconnected", measured: 300_000 }]);
  return m;
}

// A level beyond each setting but not beyond the milder one's neighbour; clearing times are IEEE's, written out.
const SETTINGS: { code: TripCode; clearingMs: number; phasesPpm?: number[]; offsetMilliHz?: number }[] = [
  { code: "UV1", clearingMs: 10_000, phasesPpm: [PPM_PER_PU, 600_000, PPM_PER_PU] },
  { code: "UV2", clearingMs: 160, phasesPpm: [400_000, PPM_PER_PU, PPM_PER_PU] },
  { code: "OV1", clearingMs: 2_000, phasesPpm: [PPM_PER_PU, PPM_PER_PU, 1_150_000] },
  { code: "OV2", clearingMs: 160, phasesPpm: [1_250_000, PPM_PER_PU, 900_000] },
  { code: "UF1", clearingMs: 300_000, offsetMilliHz: -2_000 },
  { code: "UF2", clearingMs: 160, offsetMilliHz: -4_000 },
  { code: "OF1", clearingMs: 300_000, offsetMilliHz: 1_500 },
  { code: "OF2", clearingMs: 160, offsetMilliHz: 2_500 },
];

describe("grid monitor: IEEE 1547 category II trips", () => {
  for (const { name, config } of NOMINALS) {
    for (const s of SETTINGS) {
      it(`${s.code} trips at its clearing time (${s.clearingMs} ms) and not one reading before, ${name}`, () => {
        const m = connected(config);
        const tripAtMs = 300_000 + Math.ceil(s.clearingMs / 1_000) * 1_000; // counted from the last reading inside (300 s)
        for (let t = 301_000; t < tripAtMs; t += 1_000) {
          assert.equal(m.read(t, s).decision, "connected", `still riding through at ${t}`);
        }
        const r = m.read(tripAtMs, s);
        assert.equal(r.decision, "islanded");
        const expected = s.offsetMilliHz !== undefined
          ? config.nominalFrequencyMilliHz + s.offsetMilliHz
          : (config.nominalVoltageDeciV * (s.code.startsWith("UV") ? Math.min(...s.phasesPpm!) : Math.max(...s.phasesPpm!))) / PPM_PER_PU;
        assert.deepEqual(r.events, [{ timeMs: tripAtMs, islanded: true, reason: s.code, measured: expected }]);
        assert.equal(m.state.reason, s.code);
      });
    }
  }

  it("a value exactly at a limit is inside; one unit beyond is not", () => {
    const m = connected(US);
    const at = (timeMs: number, voltagesDeciV: number[], frequencyMilliHz: number) => m.step({ type: "reading", reading: { timeMs, voltagesDeciV, frequencyMilliHz, good: true } });
    // The fast limits, one reading each with a nominal one between: 0.45 pu, 1.20 pu, 56.5 Hz, 62.0 Hz.
    const fast: [number[], number][] = [[[540, 1_200], 60_000], [[1_200, 1_440], 60_000], [[1_200], 56_500], [[1_200], 62_000]];
    fast.forEach(([v, f], i) => (at(301_000 + 2_000 * i, v, f), at(302_000 + 2_000 * i, [1_200], 60_000)));
    // The slow limits, held past their clearing times: 0.70 pu, 1.10 pu, 58.5 Hz, then 61.2 Hz.
    for (let t = 310_000; t <= 1_000_000; t += 1_000) at(t, [840, 1_320, 1_200], t <= 650_000 ? 58_500 : 61_200);
    assert.equal(m.state.decision, "connected", "no limit trips when met exactly");
    for (let t = 1_001_000; t <= 1_010_000; t += 1_000) at(t, [839, 1_200, 1_200], 60_000);
    assert.deepEqual(m.events.at(-1), { timeMs: 1_010_000, islanded: true, reason: "UV1", measured: 839 });
  });

  it("with 100 ms readings a 160 ms setting trips at the second reading beyond, not the first", () => {
    const m = new Monitor(US);
    for (let t = 0; t <= 300_000; t += 100) m.read(t);
    assert.equal(m.state.decision, "connected");
    assert.equal(m.read(300_100, { offsetMilliHz: 2_500 }).decision, "connected", "held 100 ms");
    assert.equal(m.read(300_200, { offsetMilliHz: 2_500 }).events[0]?.reason, "OF2");
  });

  it("a sag or swell that recovers before its clearing time does not trip, and the count restarts", () => {
    const m = connected(US);
    const sag = { phasesPpm: [600_000, 600_000, 600_000] };
    for (let t = 301_000; t <= 309_000; t += 1_000) m.read(t, sag); // held 9 s at 309 s
    m.read(310_000);
    for (let t = 311_000; t <= 319_000; t += 1_000) m.read(t, sag);
    m.read(320_000);
    m.read(321_000, { phasesPpm: [PPM_PER_PU, 1_150_000, PPM_PER_PU] }); // an OV1 swell of 1 s
    m.read(322_000);
    for (let t = 323_000; t <= 400_000; t += 1_000) m.read(t, { phasesPpm: [1_070_000, 1_070_000, 1_070_000], offsetMilliHz: 800 });
    assert.equal(m.state.decision, "connected", "outside the reconnection band but inside every trip limit: ride through");
    assert.deepEqual(m.events.slice(1), []);
  });
});

describe("grid monitor: reconnection", () => {
  for (const { name, config } of NOMINALS) {
    it(`waits the full window after a trip and restarts it when a reading leaves the band, ${name}`, () => {
      const m = connected(config);
      m.read(301_000, { phasesPpm: [400_000, PPM_PER_PU, PPM_PER_PU] });
      assert.equal(m.state.decision, "islanded");
      m.read(302_000, { phasesPpm: [900_000, PPM_PER_PU, PPM_PER_PU] }); // below 0.917 pu: not in the band
      assert.equal(gridStatus(m.state), "abnormal");
      m.nominalUntil(303_000, 502_000);
      assert.equal(gridStatus(m.state), "reconnecting");
      m.read(503_000, { offsetMilliHz: -600 }); // 59.4 / 49.4 Hz: below the band, no trip
      m.nominalUntil(504_000, 803_000);
      assert.equal(m.state.decision, "islanded", "299 s since the window reopened");
      assert.deepEqual(m.read(804_000).events, [{ timeMs: 804_000, islanded: false, reason: "reconnected", measured: 300_000 }]);
    });
  }

  it("the band's edges are inside it: 0.917 and 1.05 pu, nominal -0.5 and +0.1 Hz", () => {
    // At 230 V: 0.917 pu is 210.91 V, so 2110 deci-volts is inside and 2109 outside; 1.05 pu is 2415 exactly.
    const m = new Monitor(EU);
    for (let t = 0; t <= 300_000; t += 1_000) m.read(t, { voltagesDeciV: [2_110, 2_415, 2_300], offsetMilliHz: t % 2_000 === 0 ? -500 : 100 });
    assert.equal(m.state.decision, "connected");
    const low = new Monitor(EU);
    for (let t = 0; t <= 300_000; t += 1_000) low.read(t, { voltagesDeciV: [t === 100_000 ? 2_109 : 2_300] });
    assert.equal(low.state.decision, "islanded", "2109 deci-volts at 100 s left the band");
    const n = new Monitor(EU);
    for (let t = 0; t <= 500_000; t += 1_000) n.read(t, { offsetMilliHz: t === 200_000 ? 101 : 0 });
    assert.deepEqual(n.events, [], "50.101 Hz at 200 s left the band: the window reopened at 201 s");
    assert.equal(n.read(501_000).decision, "connected");
  });

  it("with a controller input: never without its word, islands when it says down, and the window restarts", () => {
    const m = new Monitor({ ...US, controllerInput: true });
    m.nominalUntil(0, 400_000);
    assert.equal(m.state.decision, "islanded", "no word from the controller yet: unknown is unsafe");
    m.step({ type: "controller", timeMs: 400_500, gridAvailable: true });
    m.nominalUntil(401_000, 700_000);
    assert.equal(m.state.decision, "islanded", "the window opened at the first reading after the controller's word");
    m.read(701_000);
    assert.equal(m.state.decision, "connected");
    assert.deepEqual(m.step({ type: "controller", timeMs: 701_500, gridAvailable: false }).events, [{ timeMs: 701_500, islanded: true, reason: "controller", measured: 0 }]);
    m.nominalUntil(702_000, 710_000);
    m.step({ type: "controller", timeMs: 710_500, gridAvailable: true });
    m.nominalUntil(711_000, 1_010_000);
    assert.equal(m.state.decision, "islanded");
    assert.equal(m.read(1_011_000).decision, "connected");
  });
});

describe("grid monitor: an unknown grid is unsafe", () => {
  it("no reading yet: islanded, and ticks keep it so", () => {
    const m = new Monitor(US);
    assert.equal(m.state.decision, "islanded");
    assert.equal(m.state.reason, "noReading");
    assert.equal(gridStatus(m.state), "unknown");
    for (let t = 0; t <= 600_000; t += 1_000) assert.equal(m.tick(t).decision, "islanded");
    assert.deepEqual(m.events, []);
  });

  it("a reading whose quality is not good, or whose numbers are malformed, islands at once and restarts the window", () => {
    for (const bad of [
      { voltagesDeciV: [1_200, 1_200, 1_200], frequencyMilliHz: 60_000, good: false },
      { voltagesDeciV: [1_200, Number.NaN, 1_200], frequencyMilliHz: 60_000, good: true },
      { voltagesDeciV: [], frequencyMilliHz: 60_000, good: true },
      { voltagesDeciV: [1_200, 1_200, 1_200, 1_200], frequencyMilliHz: 60_000, good: true },
      { voltagesDeciV: [1_200], frequencyMilliHz: 60_000.5, good: true },
    ]) {
      const m = connected(US);
      assert.deepEqual(m.step({ type: "reading", reading: { timeMs: 301_000, ...bad } }).events, [{ timeMs: 301_000, islanded: true, reason: "badQuality", measured: 0 }], JSON.stringify(bad));
      assert.equal(gridStatus(m.state), "unknown");
      m.nominalUntil(302_000, 601_000);
      assert.equal(m.state.decision, "islanded", "the window restarts at the first good reading after it");
      assert.equal(m.read(602_000).decision, "connected");
    }
  });

  it("stale: a tick more than 3 s after the last reading islands; a late reading islands before it is used", () => {
    const m = connected(US);
    assert.equal(m.tick(303_000).decision, "connected", "3 s is not more than 3 s");
    assert.deepEqual(m.tick(303_001).events, [{ timeMs: 303_001, islanded: true, reason: "stale", measured: 3_001 }]);
    const n = connected(US);
    const r = n.read(305_000);
    assert.deepEqual(r.events, [{ timeMs: 305_000, islanded: true, reason: "stale", measured: 5_000 }]);
    assert.equal(gridStatus(n.state), "reconnecting", "the late reading is good and opens a new window");
  });

  it("a gap longer than the staleness breaks a trip count: it never spans unknown time", () => {
    const m = new Monitor(US);
    m.read(0, { phasesPpm: [600_000] });
    m.read(5_000, { phasesPpm: [600_000] });
    assert.equal(m.state.beyondSinceMs.UV1, 5_000);
  });

  it("refuses inputs out of time order, a bad time, and an unwired controller, and changes nothing", () => {
    const m = connected(US);
    const before = m.state;
    for (const input of [
      { type: "reading", reading: { timeMs: 300_000, voltagesDeciV: [1_200], frequencyMilliHz: 60_000, good: true } },
      { type: "reading", reading: { timeMs: 299_999, voltagesDeciV: [1_200], frequencyMilliHz: 60_000, good: true } },
      { type: "tick", nowMs: 299_000 },
      { type: "tick", nowMs: -1 },
      { type: "tick", nowMs: 300_000.5 },
      { type: "controller", timeMs: 300_500, gridAvailable: false },
    ] as GridInput[]) {
      const r = stepGrid(US, before, input);
      assert.ok(r.refused !== null, JSON.stringify(input));
      assert.equal(r.state, before);
      assert.deepEqual(r.events, []);
    }
    assert.equal(stepGrid(US, before, { type: "tick", nowMs: 300_000 }).refused, null, "a tick at the same time is fine");
  });

  it("never mutates the state it is given", () => {
    const deepFreeze = <T>(o: T): T => {
      if (typeof o === "object" && o !== null) for (const v of Object.values(o)) deepFreeze(v);
      return Object.freeze(o);
    };
    const m = connected(US);
    const frozen = deepFreeze(m.state);
    const r = stepGrid(US, frozen, { type: "reading", reading: { timeMs: 301_000, voltagesDeciV: [400], frequencyMilliHz: 60_000, good: true } });
    assert.equal(r.decision, "islanded");
    assert.equal(frozen.decision, "connected");
  });
});

describe("grid monitor: config", () => {
  it("defaults are IEEE 1547-2018 category II, relative to the nominal given", () => {
    assert.deepEqual(
      { ...EU, nominalVoltageDeciV: 0, nominalFrequencyMilliHz: 0 },
      { ...GRID_MONITOR_DEFAULTS, nominalVoltageDeciV: 0, nominalFrequencyMilliHz: 0 },
    );
    assert.deepEqual(
      [US.uv1Ppm, US.uv1ClearingMs, US.uv2Ppm, US.uv2ClearingMs, US.ov1Ppm, US.ov1ClearingMs, US.ov2Ppm, US.ov2ClearingMs],
      [700_000, 10_000, 450_000, 160, 1_100_000, 2_000, 1_200_000, 160],
    );
    const hz = (below: number, above = 0) => US.nominalFrequencyMilliHz - below + above;
    assert.deepEqual([hz(US.uf1BelowMilliHz), hz(US.uf2BelowMilliHz), hz(0, US.of1AboveMilliHz), hz(0, US.of2AboveMilliHz)], [58_500, 56_500, 61_200, 62_000]);
    assert.deepEqual([US.uf1ClearingMs, US.uf2ClearingMs, US.of1ClearingMs, US.of2ClearingMs], [300_000, 160, 300_000, 160]);
    assert.deepEqual([hz(US.reconnectBelowMilliHz), hz(0, US.reconnectAboveMilliHz), US.reconnectVoltageMinPpm, US.reconnectVoltageMaxPpm, US.reconnectDelayMs, US.stalenessMs], [59_500, 60_100, 917_000, 1_050_000, 300_000, 3_000]);
  });

  const problemsOf = (value: unknown): readonly string[] => {
    try {
      parseGridMonitorConfig(value);
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      assert.equal(e.code, "PG_ERR_CONFIG");
      return e.problems;
    }
    assert.fail("the config was accepted");
  };
  const fields = (problems: readonly string[]) => problems.map((p) => p.split(":")[0]);

  it("names every wrong field: missing nominals, wrong types, out of range, unknown", () => {
    assert.deepEqual(fields(problemsOf({})), ["/nominalVoltageDeciV", "/nominalFrequencyMilliHz"]);
    const p = problemsOf({ nominalVoltageDeciV: 2_300, nominalFrequencyMilliHz: 50_000, uv1Ppm: 0.7, stalenessMs: -1, controllerInput: "yes", ov1ClearingMs: CLEARING_MS_MAX + 1, uv3Ppm: 1 });
    assert.deepEqual(fields(p).sort(), ["/controllerInput", "/ov1ClearingMs", "/stalenessMs", "/uv1Ppm", "/uv3Ppm"]);
    assert.deepEqual(fields(problemsOf([])), ["/"]);
  });

  it("names the fields of inconsistent settings: swapped severities, a band outside the trip limits, limits below 0 Hz", () => {
    const base = { nominalVoltageDeciV: 1_200, nominalFrequencyMilliHz: 60_000 };
    assert.deepEqual(fields(problemsOf({ ...base, uv2Ppm: 800_000 })), ["/uv2Ppm"]);
    assert.deepEqual(fields(problemsOf({ ...base, of2AboveMilliHz: 1_000 })), ["/of1AboveMilliHz"]);
    assert.deepEqual(fields(problemsOf({ ...base, reconnectVoltageMinPpm: 600_000 })), ["/uv1Ppm"]);
    assert.deepEqual(fields(problemsOf({ ...base, reconnectVoltageMaxPpm: 1_150_000 })), ["/reconnectVoltageMaxPpm"]);
    assert.deepEqual(fields(problemsOf({ ...base, reconnectAboveMilliHz: 1_300 })), ["/reconnectAboveMilliHz"]);
    assert.deepEqual(fields(problemsOf({ ...base, nominalFrequencyMilliHz: 10_000, uf2BelowMilliHz: 10_000, uf1BelowMilliHz: 9_000 })), ["/uf2BelowMilliHz"]);
  });
});

// ---------------------------------------------------------------------------
// Property: a dumb reference, recomputed from the whole history at every step.

interface Seen { readonly timeMs: number; readonly good: boolean; readonly reading: { voltagesDeciV: number[]; frequencyMilliHz: number } }

/** Mostly `usual` (24 in 25), else `rare`: keeps random runs near a healthy grid, so they do connect. */
const often = <T>(usual: fc.Arbitrary<T> | T, rare: fc.Arbitrary<T> | T) =>
  fc.oneof({ weight: 24, arbitrary: usual instanceof fc.Arbitrary ? usual : fc.constant(usual) }, { weight: 1, arbitrary: rare instanceof fc.Arbitrary ? rare : fc.constant(rare) });
// Levels at and around every limit; the first lists are inside the reconnection band.
const arbLevelPpm = often(fc.constantFrom(917_000, PPM_PER_PU, 1_050_000), fc.constantFrom(400_000, 449_999, 450_000, 600_000, 699_999, 700_000, 916_999, 1_050_001, 1_100_000, 1_100_001, 1_150_000, 1_200_000, 1_200_001, 1_250_000));
const arbOffsetMilliHz = often(fc.constantFrom(-500, 0, 100), fc.constantFrom(-4_000, -3_501, -3_500, -2_000, -1_501, -1_500, -600, -501, 101, 1_200, 1_201, 1_500, 2_000, 2_001, 2_500));
/** Mostly 1 s; sometimes 0 or backwards (refused) or long (stale). */
const arbGapMs = often(fc.constantFrom(1_000, 1_000, 500), fc.integer({ min: -500, max: 5_000 }));

const arbConfig = fc
  .record({
    nominal: fc.constantFrom({ nominalVoltageDeciV: 1_200, nominalFrequencyMilliHz: 60_000 }, { nominalVoltageDeciV: 2_300, nominalFrequencyMilliHz: 50_000 }),
    clearings: fc.array(fc.integer({ min: 0, max: 8_000 }), { minLength: 8, maxLength: 8 }),
    reconnectDelayMs: fc.integer({ min: 0, max: 8_000 }),
    stalenessMs: fc.integer({ min: 1_000, max: 4_000 }),
    controllerInput: fc.boolean(),
  })
  .map(({ nominal, clearings, ...timing }) => {
    const clearing = Object.fromEntries(["uv1", "uv2", "ov1", "ov2", "uf1", "uf2", "of1", "of2"].map((k, i) => [`${k}ClearingMs`, clearings[i]]));
    return parseGridMonitorConfig({ ...nominal, ...clearing, ...timing });
  });

/** Steps with a time gap from the previous (sometimes 0 or backwards: refused), mostly readings near nominal. */
const arbSteps = fc.array(
  fc.oneof(
    { weight: 12, arbitrary: fc.record({ kind: fc.constant("reading" as const), gapMs: arbGapMs, phasesPpm: fc.array(arbLevelPpm, { minLength: 1, maxLength: 3 }), offsetMilliHz: arbOffsetMilliHz, good: often(true, false) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant("tick" as const), gapMs: arbGapMs }) },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant("controller" as const), gapMs: fc.integer({ min: 0, max: 2_000 }), up: often(true, false) }) },
  ),
  { minLength: 30, maxLength: 200, size: "max" },
);

function referenceBeyond(c: GridMonitorConfig, code: TripCode, r: Seen["reading"]): boolean {
  const low = Math.min(...r.voltagesDeciV) / c.nominalVoltageDeciV;
  const high = Math.max(...r.voltagesDeciV) / c.nominalVoltageDeciV;
  const f = r.frequencyMilliHz;
  const n = c.nominalFrequencyMilliHz;
  const table: Record<TripCode, boolean> = {
    UV1: low < c.uv1Ppm / 1e6, UV2: low < c.uv2Ppm / 1e6, OV1: high > c.ov1Ppm / 1e6, OV2: high > c.ov2Ppm / 1e6,
    UF1: f < n - c.uf1BelowMilliHz, UF2: f < n - c.uf2BelowMilliHz, OF1: f > n + c.of1AboveMilliHz, OF2: f > n + c.of2AboveMilliHz,
  };
  return table[code];
}

const CLEARING_OF: Record<TripCode, keyof GridMonitorConfig> = { UV1: "uv1ClearingMs", UV2: "uv2ClearingMs", OV1: "ov1ClearingMs", OV2: "ov2ClearingMs", UF1: "uf1ClearingMs", UF2: "uf2ClearingMs", OF1: "of1ClearingMs", OF2: "of2ClearingMs" };

/** How long `code` has held at the last reading, by the header's rule, from the history alone (-1: not beyond). */
function referenceHeldMs(c: GridMonitorConfig, seen: readonly Seen[], code: TripCode): number {
  const last = seen.at(-1);
  if (last === undefined || !last.good || !referenceBeyond(c, code, last.reading)) return -1;
  let i = seen.length - 1;
  // Walk back while the previous reading is in the same run (good, gap within staleness) and also beyond.
  while (i > 0) {
    const prev = seen[i - 1]!;
    if (!prev.good || seen[i]!.timeMs - prev.timeMs > c.stalenessMs) return last.timeMs - seen[i]!.timeMs;
    if (!referenceBeyond(c, code, prev.reading)) return last.timeMs - prev.timeMs;
    i--;
  }
  return last.timeMs - seen[0]!.timeMs;
}

const inReferenceBand = (c: GridMonitorConfig, r: Seen["reading"]) =>
  r.voltagesDeciV.every((v) => v / c.nominalVoltageDeciV >= c.reconnectVoltageMinPpm / 1e6 && v / c.nominalVoltageDeciV <= c.reconnectVoltageMaxPpm / 1e6) &&
  r.frequencyMilliHz >= c.nominalFrequencyMilliHz - c.reconnectBelowMilliHz && r.frequencyMilliHz <= c.nominalFrequencyMilliHz + c.reconnectAboveMilliHz;

describe("grid monitor: properties against a reference", () => {
  it("never connected on a stale, bad or tripped grid (or against the controller); never reconnects sooner than the delay after the last reason not to", () => {
    let connectedSteps = 0;
    let reconnections = 0;
    let trips = 0;
    fc.assert(
      fc.property(arbConfig, arbSteps, (c, steps) => {
        const m = new Monitor(c);
        const seen: Seen[] = [];
        let clockMs = 0;
        let lastNoMs = 0; // the latest moment that forbids reconnecting: start, bad or out-of-band reading, unknown time, controller down
        let controllerUp = false;
        for (const s of steps) {
          const timeMs = Math.max(0, clockMs + s.gapMs);
          const before = m.state;
          let r: GridStep;
          if (s.kind === "reading") {
            const reading = { voltagesDeciV: s.phasesPpm.map((p) => Math.round((c.nominalVoltageDeciV * p) / PPM_PER_PU)), frequencyMilliHz: c.nominalFrequencyMilliHz + s.offsetMilliHz };
            r = m.step({ type: "reading", reading: { timeMs, ...reading, good: s.good } });
            if (r.refused === null) {
              const prev = seen.at(-1);
              if (prev !== undefined && prev.good && timeMs - prev.timeMs > c.stalenessMs) lastNoMs = Math.max(lastNoMs, prev.timeMs + c.stalenessMs);
              seen.push({ timeMs, good: s.good, reading });
              if (!s.good || !inReferenceBand(c, reading)) lastNoMs = timeMs;
            }
          } else if (s.kind === "tick") {
            r = m.tick(timeMs);
          } else {
            r = m.step({ type: "controller", timeMs, gridAvailable: s.up });
            if (r.refused === null) {
              controllerUp = s.up;
              if (!s.up) lastNoMs = timeMs;
            }
          }
          if (r.refused !== null) {
            assert.equal(r.state, before, "a refused input changes nothing");
            continue;
          }
          clockMs = timeMs;
          for (const e of r.events) {
            if (e.islanded) {
              if ((TRIP_CODES as readonly string[]).includes(e.reason)) trips++;
              continue;
            }
            reconnections++;
            assert.ok(e.timeMs - lastNoMs >= c.reconnectDelayMs, `reconnected at ${e.timeMs}, ${e.timeMs - lastNoMs} ms after the last reason not to`);
            assert.ok(e.timeMs - seen[0]!.timeMs >= c.reconnectDelayMs);
          }
          if (r.decision !== "connected") continue;
          connectedSteps++;
          const last = seen.at(-1);
          assert.ok(last !== undefined && last.good, "connected only after a good reading");
          assert.ok(clockMs - last.timeMs <= c.stalenessMs, "connected only on a fresh reading");
          for (const code of TRIP_CODES) assert.ok(referenceHeldMs(c, seen, code) < (c[CLEARING_OF[code]] as number), `connected while ${code} held for its clearing time`);
          if (c.controllerInput) assert.ok(controllerUp, "connected only while the controller says available");
        }
      }),
      { numRuns: 400, seed: 6_2024 },
    );
    assert.ok(connectedSteps > 2_000 && reconnections > 200 && trips > 100, `the property saw the monitor connected (${connectedSteps} steps, ${reconnections} reconnections, ${trips} trips)`);
  });
});
