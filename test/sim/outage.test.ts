// The outage scenario (sim/outage.ts, issue 6 point 5): the whole
// neighbourhood's day once (60 prosumers, 500 consumers, 3 critical sites,
// a six-hour outage at dusk), checked at every simulated second, then small
// neighbourhoods over a few hours for the rest: replay from the seed, an
// ample battery, no storage at night, and random scenarios (fast-check).
// The full day runs with calmStepS 10 (the dispatch skipped while connected
// with every breaker closed, where its answer is "all closed, no command")
// to keep this file near 10 s; `npm run sim:outage` runs it every second.
import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import fc from "fast-check";
import { DEFAULT_OUTAGE, type OutageReport, type OutageScenario, type OutageStep, outageWindow, runOutage } from "../../sim/outage.js";

const HOUR_MS = 3_600_000;
const RECONNECT_DELAY_MS = 300_000; // market/grid-monitor.ts GRID_MONITOR_DEFAULTS.reconnectDelayMs
const READING_PERIOD_MS = 1_000;
/** Random scenarios per run; more with PEERGRID_OUTAGE_RUNS=1000. */
const RANDOM_RUNS = Number(process.env.PEERGRID_OUTAGE_RUNS ?? 15);

/** What the per-second checks found: the first failure of each, with its second, so a failure names when. */
class StepChecks {
  readonly failures = new Map<string, string>();
  seconds = 0;
  islandedSeconds = 0;
  /** Connected seconds with a critical site off (held by its min-off) while a household is on: see the todo test below. */
  connectedOrderSeconds = 0;
  readonly islandedAt: boolean[] = [];

  check(name: string, ok: boolean, s: OutageStep, detail: () => string): void {
    if (!ok && !this.failures.has(name)) this.failures.set(name, `second ${s.sec}: ${detail()}`);
  }

  /** The invariants every second must keep. */
  observe = (s: OutageStep): void => {
    this.seconds++;
    this.islandedAt.push(s.islanded);
    const criticalOff = s.closed.slice(0, s.criticalCount).some((c) => !c);
    const nonCriticalOn = s.closed.slice(s.criticalCount).some((c) => c);
    const closedText = () => `closed ${s.closed.map((c) => (c ? 1 : 0)).join("")}`;
    if (!s.islanded && criticalOff && nonCriticalOn) {
      // Connected, the dispatch restores every premise whose min-off has passed, in order, so a critical site
      // shed just before the reconnection can wait out its min-off while households come back (the grid carries
      // them all; nothing is shed for them). Allowed here and counted; only that.
      this.connectedOrderSeconds++;
      const targets = s.step?.targets ?? [];
      const heldByMinOff = s.closed.slice(0, s.criticalCount).every((c, i) => c || targets[i]?.reason === "minOff");
      this.check("connected, a critical site is off while a household is on only when held by its min-off", heldByMinOff, s, closedText);
    } else this.check("no critical premise off while a non-critical one is on", !(criticalOff && nonCriticalOn), s, closedText);
    if (!s.islanded) return;
    this.islandedSeconds++;
    assert.ok(s.step !== null, "the dispatch runs every islanded second");
    const f = s.step.figures;
    this.check("islanded, the dispatch serves at most its supply", f.servedW <= f.supplyW, s, () => `served ${f.servedW} W of ${f.supplyW} W`);
    this.check("islanded, the closed premises draw at most the supply the dispatch was given", s.drawnW <= f.supplyW, s, () => `drew ${s.drawnW} W of ${f.supplyW} W`);
    // What the island really has: the export of the premises still on (a shed prosumer's PV went with it) and the battery's tiers.
    const storageW = s.tiers.openW + (nonCriticalOn ? 0 : s.tiers.reserveW);
    this.check("islanded, no overload: beyond their export the closed premises draw at most the storage tiers they may use (the reserve only while no household is on)", s.drawnW - s.exportW <= storageW, s, () => `drew ${s.drawnW} W, export ${s.exportW} W, storage ${storageW} W`);
    const closedCount = s.closed.filter((c) => c).length;
    this.check("islanded, the premises on are a prefix of the priority order", s.closed.every((c, i) => c === i < closedCount), s, () => `closed ${s.closed.map((c) => (c ? 1 : 0)).join("")}`);
  };

  assertClean(): void {
    assert.deepEqual([...this.failures.entries()].map(([k, v]) => `${k} (first at ${v})`), []);
  }
}

function run(scenario: OutageScenario): { report: OutageReport; checks: StepChecks } {
  const checks = new StepChecks();
  const report = runOutage(scenario, checks.observe);
  return { report, checks };
}

/** A small neighbourhood over three hours from 17:00 with a one-hour outage at 18:00 (times as the script takes them). */
function small(over: Partial<OutageScenario> = {}, outage = "18:00-19:00"): OutageScenario {
  return { ...DEFAULT_OUTAGE, prosumers: 6, consumers: 40, critical: 3, durationMs: 3 * HOUR_MS, batteryWh: 20_000, batteryMaxW: 10_000, calmStepS: 10, ...outageWindow("17:00", outage), ...over };
}

describe("outage scenario: the full neighbourhood's day (60 + 500 + 3, outage 18:00-24:00)", () => {
  let report: OutageReport;
  let checks: StepChecks;
  before(() => {
    ({ report, checks } = run({ ...DEFAULT_OUTAGE, calmStepS: 10 }));
    console.log(`# critical coverage ${report.critical.coverageWhileSupplyAllowedPpm} ppm (${report.critical.whileIslandedCoveragePpm} ppm of the islanded critical demand), shed ${report.shed.energyKWh} kWh, ${report.breakers.operations} breaker operations (max ${report.breakers.maxPerBreaker} on one), prices before/during/after ${report.market.prices.before.meanMicroPerKWh}/${report.market.prices.during.meanMicroPerKWh}/${report.market.prices.after.meanMicroPerKWh}`);
  });

  it("no critical premise is off while any non-critical premise is on, at every second; islanded, served <= supply at every step", () => {
    assert.equal(checks.seconds, DEFAULT_OUTAGE.durationMs / 1_000, "every simulated second was observed");
    assert.ok(checks.islandedSeconds > 6 * 3_600, "the outage really islanded the microgrid");
    checks.assertClean();
    assert.equal(checks.connectedOrderSeconds, 0, "not even while connected");
    assert.equal(report.invariants.orderViolationSeconds, 0);
    assert.equal(report.invariants.servedAboveSupplySteps, 0);
  });

  it("the monitor islands within its clearing time of the outage (UV2) and reconnects only after its window", () => {
    const first = report.island.events[0];
    assert.ok(first !== undefined && first.islanded && first.reason === "UV2", JSON.stringify(report.island.events));
    // UV2 clears in 160 ms; with one reading a second the monitor trips at the first reading beyond, never later.
    assert.ok(report.island.detectionDelayMs !== null && report.island.detectionDelayMs >= 0 && report.island.detectionDelayMs <= READING_PERIOD_MS);
    assert.ok(report.island.reconnectionDelayMs !== null && report.island.reconnectionDelayMs >= RECONNECT_DELAY_MS && report.island.reconnectionDelayMs < RECONNECT_DELAY_MS + READING_PERIOD_MS);
    assert.equal(report.island.events.length, 2, "one island, one reconnection: no flapping");
    // The island seen at every second is the monitor's, from its trip to its reconnection.
    const start = (report.island.startMs as number) - report.scenario.dayStartMs;
    const end = (report.island.endMs as number) - report.scenario.dayStartMs;
    checks.islandedAt.forEach((islanded, sec) => assert.equal(islanded, sec * 1_000 >= start && sec * 1_000 < end, `second ${sec}`));
  });

  it("the critical sites are fully covered (with the critical reserve), the island is never overloaded, and the figures add up", () => {
    assert.equal(report.critical.coverageWhileSupplyAllowedPpm, 1_000_000);
    assert.equal(report.critical.whileIslandedCoveragePpm, 1_000_000, "the reserve carried them to the reconnection");
    assert.equal(report.critical.whileIslandedServedKWh, report.critical.whileIslandedDemandKWh);
    assert.equal(report.invariants.overloadSeconds, 0, "no prosumer's export counted once it was shed");
    assert.equal(report.critical.offWhileSupplyAllowedSeconds, 0);
    assert.equal(report.critical.offWhileSupplyAllowedShare, 0);
    assert.ok(report.shed.nonCriticalKWh > 1_000, "the island could not carry the neighbourhood: households were shed");
    assert.equal(report.shed.criticalKWh, 0);
    assert.ok(report.breakers.maxPerBreaker >= 2 && report.breakers.operations >= 2 * (DEFAULT_OUTAGE.prosumers + DEFAULT_OUTAGE.consumers));
    const { before: b, during: d, after: a } = report.market.prices;
    assert.equal(b.intervals + d.intervals + a.intervals, 96);
    assert.ok(b.meanMicroPerKWh !== null && d.meanMicroPerKWh !== null && a.meanMicroPerKWh !== null);
  });
});

describe("outage scenario: small neighbourhoods", () => {
  it("the per-second checker can fail: a critical site off while a household is on, a draw above the supply", () => {
    const checks = new StepChecks();
    const figures = { supplyW: 1_000, generationW: 0, servedW: 900, shedW: 0, criticalServedW: 0, criticalDemandW: 0, criticalCoveragePermille: 1_000, criticalOpenCount: 0, unconfirmedW: 0 };
    checks.observe({ sec: 7, timeMs: 0, islanded: true, step: { targets: [], commands: [], figures }, closed: [false, true], criticalCount: 1, loadW: new Int32Array(2), pvW: new Int32Array(2), exportShare: 1, events: [], drawnW: 1_200, exportW: 100, tiers: { openW: 900, reserveW: 5_000 } });
    assert.deepEqual([...checks.failures.keys()].sort(), [
      "islanded, no overload: beyond their export the closed premises draw at most the storage tiers they may use (the reserve only while no household is on)",
      "islanded, the closed premises draw at most the supply the dispatch was given",
      "islanded, the premises on are a prefix of the priority order",
      "no critical premise off while a non-critical one is on",
    ]);
  });

  it("the same seed gives the same report; another seed another", () => {
    const a = runOutage(small({ seed: 11 }));
    assert.deepEqual(runOutage(small({ seed: 11 })), a);
    assert.notDeepEqual(runOutage(small({ seed: 12 })).energy, a.energy);
  });

  it("an ample battery covers the critical sites completely, and everyone else too", () => {
    const { report, checks } = run(small({ batteryWh: 1_000_000, batteryMaxW: 500_000 }));
    checks.assertClean();
    assert.ok(checks.islandedSeconds >= 3_600);
    assert.equal(report.critical.coverageWhileSupplyAllowedPpm, 1_000_000);
    assert.equal(report.critical.offSeconds, 0);
    assert.equal(report.critical.servedKWh, report.critical.demandKWh);
    assert.equal(report.shed.energyKWh, 0);
    assert.equal(report.invariants.overloadSeconds, 0);
  });

  it("with no storage at night everything non-critical is shed first, and with storage for the critical sites only they stay on", () => {
    const night = (over: Partial<OutageScenario>) => small({ ...outageWindow("20:00", "21:00-22:00"), ...over });
    let islandingStep: OutageStep | null = null;
    const checks = new StepChecks();
    const dark = runOutage(night({ batteryWh: 0, batteryMaxW: 0 }), (s) => {
      checks.observe(s);
      if (s.islanded && islandingStep === null) islandingStep = s;
    });
    checks.assertClean();
    const first = islandingStep as OutageStep | null;
    assert.ok(first !== null && first.step !== null);
    // No supply at all: nothing fits, not even the first critical site; the opens go from the lowest priority up.
    const opens = first.step.commands.filter((c) => c.action === "open").map((c) => c.id);
    assert.equal(opens.length, first.closed.length, "every breaker opened at the first islanded second");
    const firstCritical = opens.findIndex((id) => id < first.criticalCount);
    assert.ok(opens.slice(firstCritical).every((id) => id < first.criticalCount), `every non-critical premise opened before any critical one: ${opens.join(",")}`);
    assert.equal(dark.invariants.overloadSeconds, 0);
    assert.equal(dark.critical.coverageWhileSupplyAllowedPpm, 1_000_000, "the supply never allowed a critical site");

    // A battery that carries the critical sites and nothing more: every non-critical premise off at every islanded second, every critical one on.
    const criticalPeakW = dark.premises.critical.reduce((a, p) => a + p.peakW, 0);
    const lit = run(night({ batteryWh: 100_000, batteryMaxW: Math.ceil(criticalPeakW * 1.05), criticalReserveHours: 0 }));
    lit.checks.assertClean();
    assert.equal(lit.report.critical.offSeconds, 0);
    assert.equal(lit.report.critical.coverageWhileSupplyAllowedPpm, 1_000_000);
    assert.equal(lit.report.shed.peakPremisesOff, 46, "all 46 households off");
    assert.ok(lit.report.shed.criticalKWh === 0 && lit.report.shed.nonCriticalKWh > 0);
  });

  it("without a reserve households drain the battery and the critical sites go dark: 'supply allowed' still reads 100 %, the islanded share does not", () => {
    const evening = (criticalReserveHours: number) => small({ durationMs: 6 * HOUR_MS, batteryWh: 40_000, batteryMaxW: 20_000, criticalReserveHours, ...outageWindow("18:00", "19:00-23:00") });
    const drained = run(evening(0));
    drained.checks.assertClean();
    assert.equal(drained.report.battery.minWh, 0);
    assert.equal(drained.report.critical.coverageWhileSupplyAllowedPpm, 1_000_000, "at every second the empty battery allowed nothing more");
    assert.ok(drained.report.critical.whileIslandedCoveragePpm < 800_000, `${drained.report.critical.whileIslandedCoveragePpm} ppm of the islanded critical demand`);
    // 4 h of the critical peak kept back: households get the battery only above it, the critical sites all of it to the end.
    const kept = run(evening(4));
    kept.checks.assertClean();
    assert.ok(kept.report.battery.reserveReachedClock !== null && kept.report.battery.minWh > 0);
    assert.equal(kept.report.critical.whileIslandedCoveragePpm, 1_000_000);
    assert.equal(kept.report.critical.offSeconds, 0);
    assert.ok(kept.report.shed.nonCriticalKWh > drained.report.shed.nonCriticalKWh, "the price: households shed earlier");
  });

  it(`${RANDOM_RUNS} random small scenarios keep the invariants at every second (fast-check)`, () => {
    fc.assert(
      fc.property(
        fc.record({
          seed: fc.integer({ min: 1, max: 1_000_000 }),
          startHour: fc.integer({ min: 14, max: 23 }),
          lengthMin: fc.integer({ min: 1, max: 90 }),
          batteryKWh: fc.integer({ min: 0, max: 60 }),
          batteryKW: fc.integer({ min: 0, max: 40 }),
          reserveHours: fc.integer({ min: 0, max: 8 }),
          unknownPerMillion: fc.constantFrom(0, 1_000, 50_000),
        }),
        (g) => {
          const from = `${String(g.startHour).padStart(2, "0")}:00`;
          const endMin = g.startHour * 60 + g.lengthMin;
          const to = `${String(Math.floor(endMin / 60) % 24).padStart(2, "0")}:${String(endMin % 60).padStart(2, "0")}`;
          const scenario = small({ seed: g.seed, prosumers: 4, consumers: 12, durationMs: 3 * HOUR_MS, batteryWh: g.batteryKWh * 1_000, batteryMaxW: g.batteryKW * 1_000, criticalReserveHours: g.reserveHours, readBackUnknownPerMillion: g.unknownPerMillion, ...outageWindow(`${String(g.startHour - 1).padStart(2, "0")}:00`, `${from}-${to}`) });
          const { report, checks } = run(scenario);
          checks.assertClean();
          assert.equal(report.invariants.orderViolationSeconds, checks.connectedOrderSeconds, "islanded, never");
          assert.ok(report.island.detectionDelayMs !== null && report.island.detectionDelayMs <= READING_PERIOD_MS);
          assert.ok(report.island.reconnectionDelayMs !== null && report.island.reconnectionDelayMs >= RECONNECT_DELAY_MS);
        },
      ),
      { numRuns: RANDOM_RUNS },
    );
  });

  // Found by the property above (seed 1, a 1 kWh battery that empties 19 s before the reconnection, so the
  // critical sites are shed then): connected again, market/dispatch.ts planConnected closes every household
  // whose min-off has passed while the critical sites wait out theirs (120 s), so for ~100 s households are
  // on and the clinic is off. The grid carries everyone, so nothing is shed *for* the households, but the
  // issue's rule ("never shed while any non-critical premise is on") is broken as stated. Holding the
  // restoration behind a critical site in min-off (as planIsland does) would close it; dispatch.ts is not
  // this file's to change. Fixed there: the first premise still waiting holds those behind it.
  it("after the reconnection no household is back before the critical sites", () => {
    const { checks } = run(small({ seed: 1, prosumers: 4, consumers: 12, batteryWh: 1_000, batteryMaxW: 7_000, criticalReserveHours: 0, readBackUnknownPerMillion: 0, ...outageWindow("16:00", "17:00-17:05") }));
    assert.equal(checks.connectedOrderSeconds, 0);
  });
});
