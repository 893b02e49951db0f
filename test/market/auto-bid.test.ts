// Automatic bidding (market/auto-bid.ts): the owner's policy turned into
// orders for the next interval, and back to nothing when already placed.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type BiddingPolicy, type IntervalForecast, type OpenOrder, checkPolicy, netPosition, planBids } from "../../market/auto-bid.js";

const POLICY: BiddingPolicy = { sellFloorMicroPerKWh: 120_000, buyCeilingMicroPerKWh: 280_000, maxBuyWh: 2_000, batteryReserveWh: 3_000, minOrderWh: 50, toleranceWh: 20 };
const F = (generationWh: number, consumptionWh: number, batteryWh = 0, batteryMaxFlowWh = 0): IntervalForecast => ({ generationWh, consumptionWh, batteryWh, batteryMaxFlowWh });

describe("automatic bidding", () => {
  it("sells a surplus at the floor, buys a shortfall at the ceiling (capped), and keeps the battery's reserve", () => {
    assert.deepEqual(planBids(POLICY, F(1_500, 400), []).place, [{ side: "sell", energyWh: 1_100, priceMicroPerKWh: 120_000 }]);
    assert.deepEqual(planBids(POLICY, F(0, 900), []).place, [{ side: "buy", energyWh: 900, priceMicroPerKWh: 280_000 }]);
    assert.deepEqual(planBids(POLICY, F(0, 5_000), []).place, [{ side: "buy", energyWh: 2_000, priceMicroPerKWh: 280_000 }], "never more than maxBuyWh");
    // A battery with 3,500 Wh, reserve 3,000: it covers 500 Wh of a 900 Wh shortfall.
    assert.deepEqual(planBids(POLICY, F(0, 900, 3_500, 2_000), []).place, [{ side: "buy", energyWh: 400, priceMicroPerKWh: 280_000 }]);
    // At its reserve it gives nothing; above it, at most its flow limit, and a surplus sells battery energy above the reserve too.
    assert.equal(netPosition(F(0, 900, 3_000, 2_000), 3_000), -900);
    assert.equal(netPosition(F(1_000, 0, 9_000, 700), 3_000), 1_700);
  });

  it("nothing below the minimum order; a second run with the same forecast does nothing", () => {
    assert.deepEqual(planBids(POLICY, F(430, 400), []), { cancel: [], place: [], wanted: null });
    const first = planBids(POLICY, F(1_500, 400), []);
    const open: OpenOrder[] = first.place.map((o, i) => ({ ...o, id: `0${i}` }));
    assert.deepEqual(planBids(POLICY, F(1_510, 400), open), { cancel: [], place: [], wanted: first.wanted }, "within the tolerance: kept");
  });

  it("replaces an open order that no longer fits, and cancels every other open order of the interval", () => {
    const open: OpenOrder[] = [
      { id: "bb", side: "sell", energyWh: 1_100, priceMicroPerKWh: 120_000 },
      { id: "aa", side: "buy", energyWh: 300, priceMicroPerKWh: 200_000 },
    ];
    const plan = planBids(POLICY, F(500, 400), open); // surplus now 100 Wh
    assert.deepEqual(plan.cancel, ["aa", "bb"]);
    assert.deepEqual(plan.place, [{ side: "sell", energyWh: 100, priceMicroPerKWh: 120_000 }]);
  });

  it("refuses a policy with a negative, fractional or zero-minimum field, naming it", () => {
    assert.deepEqual(checkPolicy({ ...POLICY, maxBuyWh: -1, toleranceWh: 1.5, minOrderWh: 0 }), ["maxBuyWh: a whole number, at least 0", "toleranceWh: a whole number, at least 0", "minOrderWh: at least 1 Wh"]);
  });

  it("never buys above the ceiling, never sells below the floor, never offers what the forecast does not show; idempotent", () => {
    const arbPolicy = fc.record({ sellFloorMicroPerKWh: fc.nat(500_000), buyCeilingMicroPerKWh: fc.nat(500_000), maxBuyWh: fc.nat(10_000), batteryReserveWh: fc.nat(10_000), minOrderWh: fc.integer({ min: 1, max: 500 }), toleranceWh: fc.nat(100) });
    const arbForecast = fc.record({ generationWh: fc.double({ min: 0, max: 20_000, noNaN: true }), consumptionWh: fc.double({ min: 0, max: 20_000, noNaN: true }), batteryWh: fc.nat(20_000), batteryMaxFlowWh: fc.nat(5_000) });
    fc.assert(
      fc.property(arbPolicy, arbForecast, (policy, f) => {
        const plan = planBids(policy, f, []);
        for (const o of plan.place) {
          if (o.side === "buy") assert.ok(o.priceMicroPerKWh <= policy.buyCeilingMicroPerKWh && o.energyWh <= policy.maxBuyWh);
          else {
            assert.ok(o.priceMicroPerKWh >= policy.sellFloorMicroPerKWh);
            const spare = Math.min(f.batteryMaxFlowWh, Math.max(0, f.batteryWh - policy.batteryReserveWh));
            assert.ok(o.energyWh <= f.generationWh - f.consumptionWh + spare, "only forecast surplus and battery above the reserve");
          }
          assert.ok(Number.isSafeInteger(o.energyWh) && o.energyWh >= policy.minOrderWh);
        }
        const open = plan.place.map((o, i) => ({ ...o, id: String(i) }));
        assert.deepEqual(planBids(policy, f, open).place, [], "placed once, nothing more to place");
      }),
      { numRuns: 1_000 },
    );
  });
});
