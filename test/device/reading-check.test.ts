// Reading checks (device/reading-check.ts): each problem sets its quality
// bit and says why; a bad reading never moves the meter's memory; and over
// any sequence of samples, the good readings keep the ledger's own rules
// (counters never back, never faster than the power limit), so the ledger
// never rejects a reading this calls good.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type MeterMemory, type Sample, DEFAULT_METER_LIMITS, checkReading } from "../../device/reading-check.js";
import { energyBoundWh } from "../../ledger/state.js";
import { Quality } from "../../ledger/tx.js";

const T0 = 1_800_000_000_000;
const healthy = { voltageL1: 230.4, voltageL2: 229.6, voltageL3: 231.05, currentL1: 5, currentL2: 4, currentL3: 3, powerL1: 1100, powerL2: 900, powerL3: 700, powerTotal: 2700, frequency: 50.012, importEnergy: 1_000_000.9, exportEnergy: 500_000.2 };
const sample = (dtMs: number, over: Partial<typeof healthy> = {}, countersLagMs = 0): Sample => ({ timeMs: T0 + dtMs, values: { ...healthy, ...over }, countersTimeMs: T0 + dtMs - countersLagMs });

describe("checkReading", () => {
  it("a healthy sample is good, converted to the ledger's integers", () => {
    const { reading, memory } = checkReading(sample(0), null);
    assert.deepEqual(reading, { timeMs: T0, importWh: 1_000_000, exportWh: 500_000, powerW: 2700, voltagesDeciV: [2304, 2296, 2311], frequencyMilliHz: 50_012, quality: Quality.good, problems: [] });
    assert.deepEqual(memory, { goodTimeMs: T0, goodImportWh: 1_000_000, goodExportWh: 500_000 });
  });

  it("each problem sets its own bit and says why; the memory stays at the last good reading", () => {
    const memory: MeterMemory = { goodTimeMs: T0, goodImportWh: 1_000_000, goodExportWh: 500_000 };
    const cases: [Sample, number, RegExp][] = [
      [sample(1_000, { voltageL2: 999 }), Quality.outOfRange, /voltageL2 999 outside 0..345/],
      [sample(1_000, { frequency: 0.5 }), Quality.outOfRange, /frequency 0.5 outside 40..70/],
      [sample(1_000, { currentL1: Number.NaN }), Quality.outOfRange, /currentL1 NaN/],
      [sample(1_000, { powerTotal: 1e9 }), Quality.outOfRange, /powerTotal/],
      [{ ...sample(1_000), values: { voltageL1: 230 } }, Quality.outOfRange, /importEnergy missing/],
      [{ ...sample(1_000), values: { powerTotal: 10, frequency: 50, importEnergy: 1_000_001, exportEnergy: 500_000 } }, Quality.outOfRange, /no phase voltage read/],
      [sample(1_000, { importEnergy: 999_000 }), Quality.counterBackwards, /counters went back: import 1000000 -> 999000/],
      [sample(1_000, { exportEnergy: 510_000 }), Quality.counterJump, /advanced more than/],
      [sample(120_000, {}, 90_000), Quality.stale, /counters read 90000 ms before/],
      [{ timeMs: T0 + 1_000, values: null, countersTimeMs: T0 }, Quality.commsError, /did not answer/],
    ];
    for (const [s, bit, why] of cases) {
      const out = checkReading(s, memory);
      assert.equal(out.reading.quality, bit, JSON.stringify(out.reading.problems));
      assert.match(out.reading.problems.join("; "), why);
      assert.equal(out.memory, memory, "a bad reading does not move the memory");
    }
  });

  it("a dead grid (0 V, 0 Hz) is a good reading, not a fault", () => {
    const { reading } = checkReading(sample(0, { voltageL1: 0, voltageL2: 0, voltageL3: 0, frequency: 0, currentL1: 0, currentL2: 0, currentL3: 0, powerL1: 0, powerL2: 0, powerL3: 0, powerTotal: 0 }), null);
    assert.equal(reading.quality, Quality.good, reading.problems.join("; "));
    assert.deepEqual(reading.voltagesDeciV, [0, 0, 0]);
    assert.equal(reading.frequencyMilliHz, 0);
  });

  it("a single-phase meter gives one voltage; a missing total power is the sum of the phases", () => {
    const { reading } = checkReading({ timeMs: T0, countersTimeMs: T0, values: { voltageL1: 240, currentL1: 2, powerL1: 480, frequency: 60, importEnergy: 10, exportEnergy: 0 } }, null, { ...DEFAULT_METER_LIMITS, nominalVoltageV: 240, frequencyMinHz: 55, frequencyMaxHz: 65 });
    assert.equal(reading.quality, Quality.good, reading.problems.join("; "));
    assert.deepEqual(reading.voltagesDeciV, [2400]);
    assert.equal(reading.powerW, 480);
  });

  it("over any sequence, good readings keep the ledger's counter rules, and bad ones are never good", () => {
    const step = fc.record({
      dtMs: fc.integer({ min: 1, max: 5_000 }),
      dImportWh: fc.oneof(fc.integer({ min: 0, max: 30 }), fc.integer({ min: -5_000, max: 50_000 })),
      dExportWh: fc.oneof(fc.integer({ min: 0, max: 30 }), fc.integer({ min: -5_000, max: 50_000 })),
      fails: fc.boolean(),
      volts: fc.oneof(fc.constant(230), fc.double({ min: -10, max: 500, noNaN: true })),
    });
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
        let memory: MeterMemory | null = null;
        let t = T0;
        let imp = 1_000;
        let exp = 1_000;
        let lastGood: { t: number; imp: number; exp: number } | null = null;
        for (const s of steps) {
          t += s.dtMs;
          imp = Math.max(0, imp + s.dImportWh);
          exp = Math.max(0, exp + s.dExportWh);
          const out = checkReading({ timeMs: t, countersTimeMs: t, values: s.fails ? null : { ...healthy, voltageL1: s.volts, importEnergy: imp, exportEnergy: exp } }, memory);
          memory = out.memory;
          const r = out.reading;
          if (s.fails || s.volts < 0 || s.volts > 345) assert.notEqual(r.quality, Quality.good);
          if (r.quality !== Quality.good) continue;
          if (lastGood !== null) {
            const bound = energyBoundWh(t - lastGood.t, DEFAULT_METER_LIMITS.powerMaxW) + 1;
            assert.ok(r.importWh >= lastGood.imp && r.exportWh >= lastGood.exp, "never back");
            assert.ok(r.importWh - lastGood.imp <= bound && r.exportWh - lastGood.exp <= bound, "never faster than the limit");
          }
          lastGood = { t, imp: r.importWh, exp: r.exportWh };
        }
      }),
      { numRuns: 300 },
    );
  });
});
