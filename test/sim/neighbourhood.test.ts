// `peergrid sim`'s engine (sim/neighbourhood.ts): a small neighbourhood for
// two hours through the real Raft core, ledger and market. The shortcuts the
// simulation takes must not change a market, settlement or dispatch result:
// readings every minute settle as readings every second would, and neither
// the number of voters nor the signature scheme moves a price or an amount.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEFAULT_SIM_OPTIONS, type NeighbourhoodReport, type NeighbourhoodScenario, type SimOptions, runNeighbourhood, scenarioFrom } from "../../sim/neighbourhood.js";

const HOUR_MS = 3_600_000;

/** 11:00 to 13:00 (or 12:00), with an outage at 12:00-12:20 (or 11:20-11:40). */
function small(over: Partial<SimOptions> = {}, hours = 2): NeighbourhoodScenario {
  const s = scenarioFrom({ ...DEFAULT_SIM_OPTIONS, prosumers: 3, batteries: 1, consumers: 5, critical: 1, start: "11:00", outage: hours === 2 ? "12:00-12:20" : "11:20-11:40", ...over });
  return { ...s, world: { ...s.world, durationMs: hours * HOUR_MS } };
}

/** What the market and settlement decided: every interval's figures and the money. */
function marketOf(r: NeighbourhoodReport) {
  const { intervals, ...totals } = r.market;
  return { intervals, totals };
}

describe("peergrid sim: a small neighbourhood through the real cores", () => {
  it("runs the day: trades clear and settle, critical sites stay on through the outage, nothing is refused", async () => {
    const r = await runNeighbourhood(small());
    const premises = 1 + 3 + 5;
    assert.equal(r.ledger.rejected && Object.keys(r.ledger.rejected).length, 0, JSON.stringify(r.ledger.rejected));
    assert.equal(r.ledger.txsLost, 0);
    assert.equal(r.ledger.txsRefused, 0);
    assert.equal(r.ledger.leaderChanges, 0);
    // A reading a minute from every premise, and the baseline before the window.
    assert.equal(r.ledger.txsByType["reading"], premises * (2 * 60 + 1));
    assert.ok((r.ledger.txsByType["island"] ?? 0) >= 2, "islanded and reconnected");
    assert.ok((r.ledger.txsByType["order"] ?? 0) > 0);
    assert.ok(r.ledger.blocks >= 2 * 3_600, "a block a second");
    assert.ok(r.market.intervalsCleared >= 2, JSON.stringify(r.market.intervals));
    assert.ok(r.market.deliveredKWh > 0 && r.market.deliveredKWh <= r.market.clearedKWh);
    assert.ok(r.market.priceMinMicroPerKWh !== null && r.market.priceMaxMicroPerKWh !== null && r.market.priceMinMicroPerKWh <= r.market.priceMaxMicroPerKWh);
    assert.equal(r.market.settlements, 8 + 1, "every interval of the window settles, the first against the baseline");
    assert.equal(r.outage.critical.whileIslandedCoveragePpm, 1_000_000);
    assert.equal(r.outage.invariants.orderViolationSeconds, 0);
    assert.ok(r.outage.island.startMs !== null && r.outage.island.endMs !== null);
    const islanded = r.market.intervals.filter((iv) => (iv.islandedPermille ?? 0) > 0).map((iv) => iv.clock);
    assert.deepEqual(islanded, ["12:00", "12:15"], "the outage and the reconnection delay after it (12:25)");
    assert.ok(r.energy.selfSufficiencyPpm > 0 && r.energy.selfSufficiencyPpm <= 1_000_000);
    assert.ok(r.energy.selfConsumptionPpm > 0 && r.energy.selfConsumptionPpm <= 1_000_000);
  });

  it("the same seed gives the same chain, on the world's own thread or this one; another seed another chain", async () => {
    const a = await runNeighbourhood(small({}, 1));
    const b = await runNeighbourhood(small({}, 1), { thread: false });
    const c = await runNeighbourhood(small({ seed: 2 }, 1));
    assert.equal(a.ledger.headHash, b.ledger.headHash);
    assert.equal(a.ledger.stateRoot, b.ledger.stateRoot);
    assert.deepEqual(marketOf(a), marketOf(b));
    assert.notEqual(a.ledger.headHash, c.ledger.headHash);
  });

  it("readings every minute settle every interval exactly as readings every second", async () => {
    const minute = await runNeighbourhood(small({ readingPeriodS: 60 }));
    const second = await runNeighbourhood(small({ readingPeriodS: 1 }));
    assert.equal(second.ledger.txsByType["reading"], 9 * (2 * 3_600 + 1));
    assert.deepEqual(marketOf(minute), marketOf(second));
    assert.deepEqual(minute.outage, second.outage);
  });

  it("three voters or five, the stand-in or Ed25519: the same trades, settlements and dispatch", async () => {
    const base = await runNeighbourhood(small({}, 1));
    const three = await runNeighbourhood(small({ voters: 3 }, 1));
    const ed = await runNeighbourhood({ ...small({}, 1), signatures: "ed25519" });
    assert.deepEqual(marketOf(three), marketOf(base));
    assert.deepEqual(marketOf(ed), marketOf(base));
    assert.deepEqual(ed.outage, base.outage);
    assert.notEqual(ed.ledger.headHash, base.ledger.headHash, "only the signatures differ");
    assert.ok(ed.shortcuts.some((line) => line.startsWith("real Ed25519")));
  });

  it("refuses options it cannot simulate, naming them", () => {
    assert.throws(() => scenarioFrom({ ...DEFAULT_SIM_OPTIONS, batteries: 61 }), /batteries/);
    assert.throws(() => scenarioFrom({ ...DEFAULT_SIM_OPTIONS, outage: "18:00" }), /outage/);
    assert.throws(() => scenarioFrom({ ...DEFAULT_SIM_OPTIONS, outage: "23:00-02:00" }), /ends after the run/);
    assert.throws(() => scenarioFrom({ ...DEFAULT_SIM_OPTIONS, date: "2025-02-30" }), /date/);
    assert.throws(() => scenarioFrom({ ...DEFAULT_SIM_OPTIONS, latitudeDeg: 70 }), /latitude/);
    assert.throws(() => scenarioFrom({ ...DEFAULT_SIM_OPTIONS, voters: 0 }), /voters/);
    assert.doesNotThrow(() => scenarioFrom({ ...DEFAULT_SIM_OPTIONS, days: 2, outage: "23:00-02:00" }));
  });
});
