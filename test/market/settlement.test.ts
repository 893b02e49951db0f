// Settlement (market/settlement.ts): worked examples of the rules, and
// randomized properties on trades from clear() and random meter energies.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type ClearingOrder, type Trade, clear } from "../../market/clearing.js";
import { COMMUNITY, type Metered, type SettlementParams, UTILITY, largestRemainder, settle } from "../../market/settlement.js";

const PARAMS: SettlementParams = { utilityImportMicroPerKWh: 300_000, utilityExportMicroPerKWh: 80_000, islandedPermille: 0, imbalanceMicroPerKWh: 400_000, buyerFeeMicroPerKWh: 0, sellerFeeMicroPerKWh: 0 };

function trade(buyer: number, seller: number, energyWh: number, buyerPrice: number, sellerPrice = buyerPrice): Trade {
  const id = new Uint8Array(32);
  return { buyOrder: id, sellOrder: id, buyer, seller, energyWh, buyerPriceMicroPerKWh: buyerPrice, sellerPriceMicroPerKWh: sellerPrice, buyerPaysMicro: 0, sellerGetsMicro: 0, communityGetsMicro: 0 };
}

const sum = (m: ReadonlyMap<unknown, number>) => [...m.values()].reduce((a, x) => a + x, 0);

describe("settlement: the rules on worked examples", () => {
  it("a seller short of what it sold: its export is shared in proportion; payments on delivered energy; the rest against the utility", () => {
    // Seller 9 sold 600 Wh to 1 and 400 Wh to 2 at 200,000/kWh, but exported only 500 Wh.
    const trades = [trade(1, 9, 600, 200_000), trade(2, 9, 400, 200_000)];
    const metered = new Map<number, Metered>([
      [1, { importWh: 700, exportWh: 0 }],
      [2, { importWh: 100, exportWh: 0 }],
      [9, { importWh: 0, exportWh: 500 }],
    ]);
    const r = settle(trades, metered, PARAMS);
    assert.deepEqual(r.deliveries.map((d) => d.deliveredWh), [300, 200]);
    // 1: pays 9 for 300 Wh (60,000), imports the other 400 Wh from the utility (120,000).
    // 2: pays 9 for 200 Wh (40,000); it used only 100 Wh, so 100 Wh bought go back at the export tariff (8,000).
    assert.equal(r.balances.get(1), -60_000 - 120_000);
    assert.equal(r.balances.get(2), -40_000 + 8_000);
    assert.equal(r.balances.get(9), 100_000);
    assert.equal(r.balances.get(UTILITY), 120_000 - 8_000);
    assert.equal(sum(r.balances), 0);
  });

  it("a period islanded for part of its time splits each imbalance: that share with the community, the rest with the utility", () => {
    const metered = new Map<number, Metered>([[1, { importWh: 1_001, exportWh: 0 }]]);
    const r = settle([], metered, { ...PARAMS, islandedPermille: 250 }); // islanded a quarter of the period
    const island = Math.floor((1_001 * 250) / 1_000); // 250 Wh
    assert.equal(r.balances.get(COMMUNITY), Math.floor((400_000 * island) / 1_000));
    assert.equal(r.balances.get(UTILITY), Math.floor((300_000 * (1_001 - island)) / 1_000));
    assert.equal(sum(r.balances), 0);
  });

  it("a seller exporting more than it sold: the rest sold to the utility; pay-as-bid spread and fees to the community", () => {
    const trades = [trade(1, 9, 1_000, 300_000, 100_000)];
    const metered = new Map<number, Metered>([
      [1, { importWh: 1_000, exportWh: 0 }],
      [9, { importWh: 0, exportWh: 1_500 }],
    ]);
    const r = settle(trades, metered, { ...PARAMS, buyerFeeMicroPerKWh: 5_000, sellerFeeMicroPerKWh: 2_000 });
    assert.equal(r.balances.get(1), -300_000 - 5_000);
    assert.equal(r.balances.get(9), 100_000 - 2_000 + 40_000); // 500 Wh to the utility at 80,000
    assert.equal(r.balances.get(COMMUNITY), 200_000 + 5_000 + 2_000);
    assert.equal(r.balances.get(UTILITY), -40_000);
    assert.equal(sum(r.balances), 0);
  });

  it("islanded: no utility; imbalance against the community at its price, both ways", () => {
    const metered = new Map<number, Metered>([
      [1, { importWh: 1_000, exportWh: 0 }],
      [9, { importWh: 0, exportWh: 250 }],
    ]);
    const r = settle([], metered, { ...PARAMS, islandedPermille: 1_000 });
    assert.equal(r.balances.get(1), -400_000);
    assert.equal(r.balances.get(9), 100_000);
    assert.equal(r.balances.get(UTILITY), 0);
    assert.ok(r.transfers.every((t) => t.from !== UTILITY && t.to !== UTILITY));
    assert.equal(sum(r.balances), 0);
  });

  it("largest remainder: whole Wh summing to the total, the leftovers to the largest remainders, ties to the earlier trade", () => {
    assert.deepEqual(largestRemainder(2, [1, 1, 1]), [1, 1, 0]);
    assert.deepEqual(largestRemainder(3, [2, 3, 2]), [1, 1, 1]); // remainders 6/7, 2/7, 6/7: ties to the earlier
    assert.deepEqual(largestRemainder(5, [600, 400]), [3, 2]);
    assert.deepEqual(largestRemainder(0, [5, 5]), [0, 0]);
    assert.deepEqual(largestRemainder(7, [3, 0, 4]), [3, 0, 4]);
  });
});

describe("settlement: properties", () => {
  const arbBook = fc
    .array(
      fc.record({ side: fc.constantFrom("buy" as const, "sell" as const), energyWh: fc.integer({ min: 1, max: 3_000 }), price: fc.integer({ min: 50_000, max: 400_000 }), author: fc.integer({ min: 0, max: 11 }) }),
      { maxLength: 40 },
    )
    .map((os) =>
      os.map((o, n): ClearingOrder => {
        const id = new Uint8Array(32);
        id[0] = n;
        return { id, author: o.author, side: o.side, energyWh: o.energyWh, priceMicroPerKWh: o.price, placedHeight: 1, localRenewableOnly: false, counterparty: null };
      }),
    );
  const arbMetered = fc.array(fc.record({ importWh: fc.integer({ min: 0, max: 5_000 }), exportWh: fc.integer({ min: 0, max: 5_000 }) }), { minLength: 12, maxLength: 12 });

  it("money is conserved to the micro-unit; deliveries never exceed trades or exports; buyers never pay above their limits", () => {
    fc.assert(
      fc.property(arbBook, arbMetered, fc.constantFrom("pay-as-clear" as const, "pay-as-bid" as const), fc.constantFrom(0, 1, 333, 999, 1_000), fc.nat({ max: 20_000 }), (book, energies, rule, islandedPermille, fee) => {
        const { trades } = clear(book, { rule, isLocalRenewable: () => true });
        const metered = new Map(energies.map((e, m) => [m, e]));
        const r = settle(trades, metered, { ...PARAMS, islandedPermille, buyerFeeMicroPerKWh: fee, sellerFeeMicroPerKWh: fee >> 1 });
        assert.equal(sum(r.balances), 0, "all accounts' changes sum to zero");
        const perSeller = new Map<number, [number, number]>();
        r.deliveries.forEach(({ trade: i, deliveredWh }) => {
          const t = trades[i] as Trade;
          assert.ok(deliveredWh >= 0 && deliveredWh <= t.energyWh);
          const [d, s] = perSeller.get(t.seller) ?? [0, 0];
          perSeller.set(t.seller, [d + deliveredWh, s + t.energyWh]);
        });
        for (const [seller, [d, s]] of perSeller) assert.equal(d, Math.min(s, metered.get(seller)?.exportWh ?? 0), "a seller delivers min(sold, exported)");
        for (const t of r.transfers) {
          assert.ok(t.amountMicro > 0 && t.from !== t.to);
          if (t.why === "local energy") {
            const tr = trades[t.trade as number] as Trade;
            const d = r.deliveries[t.trade as number]?.deliveredWh ?? 0;
            assert.ok(t.amountMicro * 1_000 <= tr.buyerPriceMicroPerKWh * d && t.amountMicro * 1_000 > tr.sellerPriceMicroPerKWh * d - 1_000);
          }
          if (islandedPermille === 1_000) assert.ok(t.from !== UTILITY && t.to !== UTILITY);
          if (islandedPermille === 0) assert.ok(t.why === "local energy" || t.why.endsWith("fee") || t.why === "spread" || t.from === UTILITY || t.to === UTILITY, "connected: imbalance only with the utility");
        }
      }),
      { numRuns: 400 },
    );
  });

  it("largest remainder sums to the total and keeps each share within one Wh of its exact part", () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 10_000 }), { minLength: 1, maxLength: 30 }), fc.nat(), (weights, t) => {
        const total = weights.reduce((a, w) => a + w, 0);
        const x = total === 0 ? 0 : t % (total + 1);
        const shares = largestRemainder(x, weights);
        assert.equal(shares.reduce((a, s) => a + s, 0), x);
        shares.forEach((s, i) => {
          const exact = total === 0 ? 0 : (x * (weights[i] as number)) / total;
          assert.ok(s >= Math.floor(exact) && s <= Math.ceil(exact), `${s} vs ${exact}`);
        });
      }),
      { numRuns: 1_000 },
    );
  });
});
