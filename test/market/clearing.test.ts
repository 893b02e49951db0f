// The double auction (market/clearing.ts): worked examples of the rules,
// and randomized properties against a reference that clears one watt-hour
// at a time (a different formulation of the same rules, slow and plain).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type ClearingOrder, type ClearingResult, clear, valueMicro } from "../../market/clearing.js";

const id = (n: number): Uint8Array => {
  const b = new Uint8Array(32);
  b[0] = n >> 8;
  b[1] = n & 0xff;
  return b;
};

function order(n: number, side: "buy" | "sell", energyWh: number, price: number, extra: Partial<ClearingOrder> = {}): ClearingOrder {
  return { id: id(n), author: n, side, energyWh, priceMicroPerKWh: price, placedHeight: 1, localRenewableOnly: false, counterparty: null, ...extra };
}

const everyoneRenewable = { rule: "pay-as-clear" as const, isLocalRenewable: () => true };
const pairs = (r: ClearingResult) => r.trades.map((t) => [t.buyer, t.seller, t.energyWh]);

describe("clearing: the rules on worked examples", () => {
  it("pay-as-clear: the marginal pair's midpoint, rounded down; every trade at it; partial fills", () => {
    const orders = [order(1, "buy", 500, 300_000), order(2, "buy", 400, 250_000), order(3, "buy", 300, 150_000), order(4, "sell", 600, 100_000), order(5, "sell", 400, 201_001)];
    const r = clear(orders, everyoneRenewable);
    // 1 buys 500 of 4's 600; 2 buys the remaining 100 of 4, then 300 of 5 at 250,000 >= 201,001: marginal (250,000, 201,001), midpoint 225,500.5 rounded down.
    assert.equal(r.priceMicroPerKWh, 225_500);
    assert.deepEqual(pairs(r), [[1, 4, 500], [2, 4, 100], [2, 5, 300]]);
    assert.equal(r.volumeWh, 900);
    for (const t of r.trades) {
      assert.equal(t.buyerPaysMicro, valueMicro(225_500, t.energyWh));
      assert.equal(t.sellerGetsMicro, t.buyerPaysMicro);
      assert.equal(t.communityGetsMicro, 0);
    }
    assert.equal(r.trades[0]?.buyerPaysMicro, 112_750); // 225,500 micro/kWh x 0.5 kWh
  });

  it("ties: the older order first, then the lower transaction id", () => {
    const orders = [order(1, "sell", 100, 100, { placedHeight: 5 }), order(2, "sell", 100, 100, { placedHeight: 3 }), order(3, "sell", 100, 100, { placedHeight: 3 }), order(9, "buy", 150, 100)];
    assert.deepEqual(pairs(clear(orders, everyoneRenewable)), [[9, 2, 100], [9, 3, 50]]);
  });

  it("only orders that can trade set the price: a buy naming a member who sells nothing, or asking for renewable energy nobody offers, cannot move it", () => {
    const base = [order(2, "buy", 100, 150_000), order(3, "sell", 100, 100_000)];
    assert.equal(clear(base, everyoneRenewable).priceMicroPerKWh, 125_000);
    for (const lure of [order(1, "buy", 100, 2_000_000, { counterparty: 5 }), order(1, "buy", 100, 2_000_000, { localRenewableOnly: true })]) {
      const r = clear([lure, ...base], { rule: "pay-as-clear", isLocalRenewable: () => false });
      assert.equal(r.priceMicroPerKWh, 125_000);
      assert.deepEqual(pairs(r), [[2, 3, 100]]);
    }
  });

  it("ties among buys: the older first, then the lower id", () => {
    const orders = [order(1, "buy", 100, 100, { placedHeight: 5 }), order(3, "buy", 100, 100, { placedHeight: 3 }), order(2, "buy", 100, 100, { placedHeight: 3 }), order(9, "sell", 150, 100)];
    assert.deepEqual(pairs(clear(orders, everyoneRenewable)), [[2, 9, 100], [3, 9, 50]]);
  });

  it("no crossing: no price and no trades", () => {
    const r = clear([order(1, "buy", 100, 99), order(2, "sell", 100, 100)], everyoneRenewable);
    assert.deepEqual(r, { rule: "pay-as-clear", priceMicroPerKWh: null, trades: [], volumeWh: 0 });
  });

  it("preferences: a named counterparty, local renewable only, never one's own order; they lower volume, never the price", () => {
    const orders = [
      order(1, "buy", 100, 300, { counterparty: 5 }),
      order(2, "buy", 100, 300, { localRenewableOnly: true }),
      order(4, "sell", 100, 100), // not renewable
      order(5, "sell", 100, 100),
      order(6, "sell", 100, 100, { author: 2 }), // buyer 2's own
    ];
    const r = clear(orders, { rule: "pay-as-clear", isLocalRenewable: (a) => a === 5 || a === 2 });
    assert.equal(r.priceMicroPerKWh, 200);
    assert.deepEqual(pairs(r), [[1, 5, 100]], "1 takes 5 (named); 2 wants renewable: 5 is taken, 4 is not renewable, 6 is its own");
  });

  it("pay-as-bid: each side at its own limit, the spread to the community", () => {
    const r = clear([order(1, "buy", 1_000, 300_000), order(2, "sell", 400, 100_000), order(3, "sell", 400, 200_000)], { rule: "pay-as-bid", isLocalRenewable: () => true });
    assert.equal(r.priceMicroPerKWh, null);
    assert.deepEqual(
      r.trades.map((t) => [t.seller, t.energyWh, t.buyerPaysMicro, t.sellerGetsMicro, t.communityGetsMicro]),
      [
        [2, 400, 120_000, 40_000, 80_000],
        [3, 400, 120_000, 80_000, 40_000],
      ],
    );
  });

  it("money rounds down to whole micro-units, the same number on both sides", () => {
    assert.equal(valueMicro(1, 999), 0);
    assert.equal(valueMicro(1_999, 1), 1);
    assert.equal(valueMicro(2 ** 40 - 1, 1_000_000), Math.floor(((2 ** 40 - 1) * 1_000_000) / 1_000));
  });
});

// ------------------------------------------------------------------ the reference

// The rules written again, plainly and apart from the code under test.
const lexLess = (x: Uint8Array, y: Uint8Array) => Buffer.compare(Buffer.from(x), Buffer.from(y));
function rank(orders: readonly ClearingOrder[], side: "buy" | "sell"): ClearingOrder[] {
  const better = (a: ClearingOrder, b: ClearingOrder) => (side === "buy" ? b.priceMicroPerKWh - a.priceMicroPerKWh : a.priceMicroPerKWh - b.priceMicroPerKWh);
  return orders.filter((o) => o.side === side).sort((a, b) => better(a, b) || a.placedHeight - b.placedHeight || lexLess(a.id, b.id));
}
function mayTrade(b: ClearingOrder, s: ClearingOrder, isLocalRenewable: (a: number) => boolean): boolean {
  if (b.author === s.author) return false;
  if (b.counterparty !== null && b.counterparty !== s.author) return false;
  if (s.counterparty !== null && s.counterparty !== b.author) return false;
  if (b.localRenewableOnly && !isLocalRenewable(s.author)) return false;
  return true;
}

/** Buy units in rank order each take the first free suitable sell unit within `limit(b)`: [buy, sell] per Wh. */
function unitMatch(orders: readonly ClearingOrder[], isLocalRenewable: (a: number) => boolean, limit: (b: ClearingOrder) => number | null): [ClearingOrder, ClearingOrder][] {
  const units = (side: "buy" | "sell") => rank(orders, side).flatMap((o) => Array.from({ length: o.energyWh }, () => o));
  const su = units("sell");
  const taken = new Array<boolean>(su.length).fill(false);
  const out: [ClearingOrder, ClearingOrder][] = [];
  for (const b of units("buy")) {
    const l = limit(b);
    if (l === null) continue;
    const j = su.findIndex((s, x) => !taken[x] && s.priceMicroPerKWh <= l && mayTrade(b, s, isLocalRenewable));
    if (j < 0) continue;
    taken[j] = true;
    out.push([b, su[j] as ClearingOrder]);
  }
  return out;
}

/** The same rules, one Wh at a time. */
function reference(orders: readonly ClearingOrder[], rule: "pay-as-clear" | "pay-as-bid", isLocalRenewable: (a: number) => boolean): { price: number | null; energy: Map<string, number> } {
  let price: number | null = null;
  if (rule === "pay-as-clear") {
    const walk = unitMatch(orders, isLocalRenewable, (b) => b.priceMicroPerKWh);
    if (walk.length === 0) return { price: null, energy: new Map() };
    const bid = Math.min(...walk.map(([b]) => b.priceMicroPerKWh));
    const ask = Math.max(...walk.map(([, s]) => s.priceMicroPerKWh));
    price = ask + Math.floor((bid - ask) / 2);
  }
  const p = price;
  const energy = new Map<string, number>();
  for (const [b, s] of unitMatch(orders, isLocalRenewable, (b) => (p === null ? b.priceMicroPerKWh : b.priceMicroPerKWh >= p ? p : null))) {
    const key = `${b.author}:${b.placedHeight}:${b.id[1]}>${s.id[1]}`;
    energy.set(key, (energy.get(key) ?? 0) + 1);
  }
  return { price, energy };
}

const arbOrders = fc
  .array(
    fc.record({
      side: fc.constantFrom("buy" as const, "sell" as const),
      energyWh: fc.integer({ min: 1, max: 40 }),
      priceMicroPerKWh: fc.integer({ min: 0, max: 12 }).map((p) => p * 50_000 + (p % 3)), // odd spreads too, so the rounding shows
      placedHeight: fc.integer({ min: 1, max: 4 }),
      author: fc.integer({ min: 0, max: 7 }),
      localRenewableOnly: fc.boolean(),
      counterparty: fc.option(fc.integer({ min: 0, max: 7 }), { nil: null }),
    }),
    { maxLength: 30 },
  )
  .map((os) => os.map((o, n): ClearingOrder => ({ ...o, id: id(n) })));

const renewable = (a: number) => a % 2 === 0;

describe("clearing: properties on random order books", () => {
  for (const rule of ["pay-as-clear", "pay-as-bid"] as const) {
    it(`${rule}: the same trades as the one-Wh-at-a-time reference, limits kept, energy and money conserved, input order irrelevant`, () => {
      fc.assert(
        fc.property(arbOrders, fc.infiniteStream(fc.nat()), (orders, shuffle) => {
          const r = clear(orders, { rule, isLocalRenewable: renewable });
          const ref = reference(orders, rule, renewable);
          assert.equal(r.priceMicroPerKWh, ref.price);
          const got = new Map<string, number>();
          for (const t of r.trades) {
            const b = orders.find((o) => o.id === t.buyOrder) as ClearingOrder;
            const key = `${b.author}:${b.placedHeight}:${t.buyOrder[1]}>${t.sellOrder[1]}`;
            got.set(key, (got.get(key) ?? 0) + t.energyWh);
          }
          assert.deepEqual(got, ref.energy);

          const byId = new Map(orders.map((o) => [o.id, o]));
          const traded = new Map<Uint8Array, number>();
          let sold = 0;
          let bought = 0;
          for (const t of r.trades) {
            const b = byId.get(t.buyOrder) as ClearingOrder;
            const s = byId.get(t.sellOrder) as ClearingOrder;
            assert.ok(b.side === "buy" && s.side === "sell" && t.energyWh > 0);
            assert.ok(mayTrade(b, s, renewable), "preferences kept, no self-trade");
            // No buyer pays above its limit, no seller receives below its own.
            assert.ok(t.buyerPaysMicro <= valueMicro(b.priceMicroPerKWh, t.energyWh));
            assert.ok(t.sellerGetsMicro >= valueMicro(s.priceMicroPerKWh, t.energyWh));
            // Money: what the buyer pays is what the seller and the community receive.
            assert.equal(t.buyerPaysMicro, t.sellerGetsMicro + t.communityGetsMicro);
            assert.ok(t.communityGetsMicro >= 0);
            if (rule === "pay-as-clear") assert.equal(t.communityGetsMicro, 0);
            traded.set(b.id, (traded.get(b.id) ?? 0) + t.energyWh);
            traded.set(s.id, (traded.get(s.id) ?? 0) + t.energyWh);
            bought += t.energyWh;
            sold += t.energyWh;
          }
          for (const [oid, e] of traded) assert.ok(e <= (byId.get(oid) as ClearingOrder).energyWh, "no order trades more than its energy");
          assert.equal(sold, bought);
          assert.equal(r.volumeWh, sold);

          // Every box computes the same: the input's order never matters.
          const shuffled = [...orders];
          for (let i = shuffled.length - 1; i > 0; i--) {
            const j = (shuffle.next().value as number) % (i + 1);
            [shuffled[i], shuffled[j]] = [shuffled[j] as ClearingOrder, shuffled[i] as ClearingOrder];
          }
          assert.deepEqual(clear(shuffled, { rule, isLocalRenewable: renewable }), r);
        }),
        { numRuns: 500 },
      );
    });
  }

  it("pay-as-clear without preferences trades everything that crosses at the price", () => {
    fc.assert(
      fc.property(arbOrders, (raw) => {
        // Buyers and sellers distinct members, no preferences: nothing but price limits.
        const orders = raw.map((o) => ({ ...o, author: o.side === "buy" ? 100 + o.author : o.author, localRenewableOnly: false, counterparty: null }));
        const r = clear(orders, everyoneRenewable);
        if (r.priceMicroPerKWh === null) return;
        const p = r.priceMicroPerKWh;
        const demand = orders.filter((o) => o.side === "buy" && o.priceMicroPerKWh >= p).reduce((t, o) => t + o.energyWh, 0);
        const supply = orders.filter((o) => o.side === "sell" && o.priceMicroPerKWh <= p).reduce((t, o) => t + o.energyWh, 0);
        assert.equal(r.volumeWh, Math.min(demand, supply));
      }),
      { numRuns: 500 },
    );
  });

  it("on books of hundreds of orders, the same trades as a plain scan of every sell for every buy (the search's shortcuts skip nothing that matters)", () => {
    const plain = (orders: readonly ClearingOrder[], rule: "pay-as-clear" | "pay-as-bid") => {
      const buys = rank(orders, "buy");
      const sells = rank(orders, "sell");
      const price = rule === "pay-as-clear" ? clear(orders, { rule, isLocalRenewable: renewable }).priceMicroPerKWh : null; // the price is checked against the reference elsewhere
      const left = sells.map((x) => x.energyWh);
      const out: [number, number, number][] = [];
      if (rule === "pay-as-clear" && price === null) return out;
      for (const b of buys) {
        if (price !== null && b.priceMicroPerKWh < price) continue;
        let want = b.energyWh;
        sells.forEach((x, j) => {
          const q = Math.min(want, left[j] as number);
          if (q === 0 || x.priceMicroPerKWh > (price ?? b.priceMicroPerKWh) || !mayTrade(b, x, renewable)) return;
          want -= q;
          left[j] = (left[j] as number) - q;
          out.push([b.author, x.author, q]);
        });
      }
      return out;
    };
    const big = fc
      .array(fc.record({ side: fc.constantFrom("buy" as const, "sell" as const), energyWh: fc.integer({ min: 1, max: 500 }), priceMicroPerKWh: fc.integer({ min: 0, max: 40 }), placedHeight: fc.integer({ min: 1, max: 9 }), author: fc.integer({ min: 0, max: 30 }), localRenewableOnly: fc.boolean(), counterparty: fc.option(fc.integer({ min: 0, max: 30 }), { nil: null, freq: 4 }) }), { minLength: 100, maxLength: 400 })
      .map((os) => os.map((o, n): ClearingOrder => ({ ...o, id: id(n) })));
    fc.assert(
      fc.property(big, fc.constantFrom("pay-as-clear" as const, "pay-as-bid" as const), (orders, rule) => {
        assert.deepEqual(pairs(clear(orders, { rule, isLocalRenewable: renewable })), plain(orders, rule));
      }),
      { numRuns: 200 },
    );
  });

  it("a trade's value is floor(price x energy / 1000), exactly, over the whole range", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 - 1 }), fc.integer({ min: 1, max: 2 ** 40 - 1 }), (p, e) => {
        const exact = (BigInt(p) * BigInt(e)) / 1000n;
        if (exact > BigInt(Number.MAX_SAFE_INTEGER)) assert.throws(() => valueMicro(p, e));
        else assert.equal(BigInt(valueMicro(p, e)), exact);
      }),
      { numRuns: 2_000 },
    );
    fc.assert(fc.property(fc.integer({ min: 0, max: 9_000_000 }), fc.integer({ min: 1, max: 1_000_000_000 }), (p, e) => assert.equal(BigInt(valueMicro(p, e)), (BigInt(p) * BigInt(e)) / 1000n)), { numRuns: 2_000 });
  });
});
