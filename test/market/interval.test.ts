// The market's step in the ledger state machine (market/interval.ts): orders
// clear when block time enters their interval, and the ended period settles
// from the meters' counters, identically on every box.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import fc from "fast-check";
import { toHex } from "../../ledger/hash.js";
import { NodeSigner } from "../../ledger/keys.js";
import { Ledger, ledgerPath } from "../../ledger/ledger.js";
import { LedgerStore } from "../../ledger/store.js";
import {
  type BalanceRecord,
  type MarketRecord,
  type MemberRecord,
  type MeterRecord,
  type TradeRecord,
  MARKET_KEY,
  balanceKey,
  memberKey,
  meterKey,
  orderKey,
} from "../../ledger/records.js";
import { type ApplyResult, ResultCode, resultName } from "../../ledger/state.js";
import { type OrderBody, type SignedTx, OrderFlag } from "../../ledger/tx.js";
import { clear } from "../../market/clearing.js";
import { clearingOrderOf, intervalStartOf } from "../../market/interval.js";
import { Harness, type TestMember, order, reading } from "../ledger/fixtures.js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const I = 900_000;
const SOLAR = 0; // box, admin, renewable: sells
const BUYER = 1; // box: buys
const ANN = 2; // user without a meter: buys renewable only
const GAS = 3; // box without the renewable role: sells
const MEMBERS: TestMember[] = [
  { name: "solar box", signer: NodeSigner.generate(), roles: ["box", "admin", "renewable", "controller"] },
  { name: "buyer box", signer: NodeSigner.generate(), roles: ["box"] },
  { name: "Ann", signer: NodeSigner.generate(), roles: ["user"] },
  { name: "generator box", signer: NodeSigner.generate(), roles: ["box"] },
];
const TARIFFS = { utilityImportMicroPerKWh: 300_000, utilityExportMicroPerKWh: 80_000, imbalanceMicroPerKWh: 250_000 };

function harness(market: Record<string, unknown> = {}): Harness {
  return new Harness(MEMBERS, { market: { ...TARIFFS, ...market } });
}

/** Apply a block at timeMs, insisting on the given verdicts (all ok by default). */
function at(h: Harness, timeMs: number, txs: SignedTx[], expect?: number[]): ApplyResult {
  const r = h.apply(txs, { timeMs });
  assert.deepEqual(r.results.map(resultName), (expect ?? txs.map(() => ResultCode.ok)).map(resultName));
  return r;
}

const readingAt = (h: Harness, author: number, timeMs: number, importWh: number, exportWh: number) => h.tx(author, reading(timeMs, importWh, exportWh));
const orderFor = (h: Harness, author: number, startMs: number, extra: Partial<OrderBody>) => h.tx(author, order({ intervalStartMs: startMs, expiresAtMs: startMs + I, ...extra }));
const get = <R>(h: Harness, key: string) => h.state.tree.get(key) as R | undefined;
const balance = (h: Harness, account: number | "utility" | "community") => get<BalanceRecord>(h, balanceKey(account))?.balanceMicro ?? 0;

describe("market interval step", () => {
  test("an interval by hand: clearing at its start, settlement from the meters at its end", () => {
    const h = harness();
    const N = intervalStartOf(h.state.timeMs, I) + I; // the next interval
    // Baselines: each meter's first good reading; lifetime counters before it are never billed.
    at(h, h.nextTimeMs, [readingAt(h, SOLAR, h.nextTimeMs - 500, 5_000, 90_000), readingAt(h, BUYER, h.nextTimeMs - 500, 70_000, 0)]);
    const sell = orderFor(h, SOLAR, N, { side: "sell", energyWh: 2_000, priceMicroPerKWh: 100_000 });
    const buy = orderFor(h, BUYER, N, { side: "buy", energyWh: 1_500, priceMicroPerKWh: 200_000 });
    const annBuy = orderFor(h, ANN, N, { side: "buy", energyWh: 1_000, priceMicroPerKWh: 150_000, flags: OrderFlag.localRenewableOnly });
    at(h, h.nextTimeMs, [sell, buy, annBuy]);
    assert.equal(get<MemberRecord>(h, memberKey(ANN))?.openOrders, 1);

    // Entering N: the buyer (higher limit) fills first; Ann takes the rest; price = midpoint of 150,000 and 100,000.
    const entered = at(h, N + 300, []);
    assert.ok(entered.market !== null);
    const c = entered.market.clearing;
    assert.deepEqual({ start: c.intervalStartMs, price: c.priceMicroPerKWh, volume: c.volumeWh, buys: c.buyOrders, sells: c.sellOrders }, { start: N, price: 125_000, volume: 2_000, buys: 2, sells: 1 });
    assert.deepEqual(c.trades.map((t) => [t.buyer, t.seller, t.energyWh]), [[BUYER, SOLAR, 1_500], [ANN, SOLAR, 500]]);
    for (const t of [sell, buy, annBuy]) assert.equal(h.state.tree.get(orderKey(t.id)), undefined, "every order of the interval is closed");
    for (const m of [SOLAR, BUYER, ANN]) assert.equal(get<MemberRecord>(h, memberKey(m))?.openOrders, 0);
    assert.deepEqual(entered.market.closedOrders.map((o) => [o.author, o.filledWh, o.reason]).sort(), [[ANN, 500, "cleared"], [BUYER, 1_500, "cleared"], [SOLAR, 2_000, "cleared"]].sort());
    const kept = [...h.state.tree.entries()].filter((e) => e.value.kind === "trade").map((e) => e.value as TradeRecord);
    assert.deepEqual(kept.map((t) => t.energyWh).sort(), [1_500, 500].sort());
    const market = get<MarketRecord>(h, MARKET_KEY);
    assert.deepEqual([market?.clearedStartMs, market?.priceMicroPerKWh, market?.tradeCount], [N, 125_000, 2]);
    assert.equal(toHex(market?.tradesHash ?? new Uint8Array()), toHex(c.hash));

    // During N the solar box exports 1,800 Wh (short of the 2,000 it sold); the buyer imports 2,000.
    at(h, N + 450_000, [readingAt(h, SOLAR, N + 449_500, 5_000, 90_900), readingAt(h, BUYER, N + 449_500, 71_000, 0)]);
    at(h, N + I - 2_000, [readingAt(h, SOLAR, N + I - 2_500, 5_000, 91_800), readingAt(h, BUYER, N + I - 2_500, 72_000, 0)]);
    const settled = at(h, N + I + 200, []);
    assert.ok(settled.market !== null);
    const s = settled.market.settlement;
    assert.equal(s.periodEndMs, N + I);
    assert.equal(s.tradesIntervalStartMs, N);
    assert.deepEqual(s.metered.map((m) => [m.member, m.importWh, m.exportWh, m.silentMeters]), [[SOLAR, 0, 1_800, 0], [BUYER, 2_000, 0, 0]]);
    // 1,800 Wh delivered, shared 1,500 : 500 -> 1,350 and 450.
    assert.deepEqual(s.deliveredWh, [1_350, 450]);
    assert.equal(s.shadow, true, "the default genesis is a shadow market");
    assert.equal(balance(h, SOLAR), 168_750 + 56_250);
    assert.equal(balance(h, BUYER), -168_750 - 195_000); // its 650 Wh beyond the local 1,350 at the import tariff
    assert.equal(balance(h, ANN), -56_250 + 36_000); // no meter: its 450 Wh are sold back at the export tariff
    assert.equal(balance(h, "utility"), 195_000 - 36_000);
    assert.equal(balance(h, "community"), 0);
    assert.equal([SOLAR, BUYER, ANN].reduce((a, m) => a + balance(h, m), 0) + balance(h, "utility") + balance(h, "community"), 0);
    assert.equal([...h.state.tree.entries()].filter((e) => e.value.kind === "trade").length, 0, "settled trades leave the state");
    // The settled counters moved: the next period starts from them.
    assert.equal(get<MeterRecord>(h, meterKey(SOLAR, 0))?.settledExportWh, 91_800);
  });

  test("orders that can no longer trade close: expired, lapsed over a stopped ledger, and a removed member's", () => {
    const h = harness();
    const N = intervalStartOf(h.state.timeMs, I) + I;
    const expiring = orderFor(h, SOLAR, N + I, { side: "sell", expiresAtMs: N + 60_000 });
    const lapsing = orderFor(h, BUYER, N, { side: "buy" });
    const removed = orderFor(h, ANN, N + 2 * I, { side: "buy" });
    at(h, h.nextTimeMs, [expiring, lapsing, removed]);
    at(h, h.nextTimeMs, [h.tx(SOLAR, { type: "member", action: "remove", subject: ANN })]);
    // The ledger stops through the whole of N and comes back in N + I.
    const back = at(h, N + I + 120_000, []);
    assert.ok(back.market !== null);
    assert.equal(back.market.clearing.intervalStartMs, N + I, "one clearing: the interval the block is in");
    assert.deepEqual(back.market.closedOrders.map((o) => [o.author, o.reason]).sort(), [[ANN, "memberRemoved"], [BUYER, "lapsed"], [SOLAR, "expired"]].sort());
    for (const m of [SOLAR, BUYER, ANN]) assert.equal(get<MemberRecord>(h, memberKey(m))?.openOrders, 0);
    assert.equal(back.market.settlement.periodStartMs, intervalStartOf(h.genesis.genesisTimeMs, I), "the period runs from the last settlement over the gap");
  });

  test("an order or a cancel for an interval in the block that starts it comes too late", () => {
    const h = harness();
    const N = intervalStartOf(h.state.timeMs, I) + I;
    const o = orderFor(h, SOLAR, N, { side: "sell" });
    at(h, h.nextTimeMs, [o]);
    at(h, N + 10, [orderFor(h, BUYER, N, { side: "buy" }), h.tx(SOLAR, { type: "cancel", orderId: o.id })], [ResultCode.orderInterval, ResultCode.orderNotFound]);
  });

  test("a meter silent for a whole period is reported; its energy counts once it reads good again", () => {
    const h = harness();
    const N = intervalStartOf(h.state.timeMs, I) + I;
    at(h, h.nextTimeMs, [readingAt(h, BUYER, h.nextTimeMs - 500, 1_000, 0)]);
    at(h, N + 5, []);
    const silent = at(h, N + I + 5, []);
    assert.deepEqual(silent.market?.settlement.metered.map((m) => [m.member, m.importWh, m.silentMeters]), [[BUYER, 0, 1]]);
    at(h, N + I + 400_000, [readingAt(h, BUYER, N + I + 399_000, 1_700, 0)]);
    const back = at(h, N + 2 * I + 5, []);
    assert.deepEqual(back.market?.settlement.metered.map((m) => [m.member, m.importWh, m.silentMeters]), [[BUYER, 700, 0]]);
    assert.equal(balance(h, BUYER), -210_000); // 700 Wh at 300,000 per kWh
  });

  test("an island transaction moves the period's imbalance to the community, prorated by the islanded time", () => {
    const h = harness();
    const N = intervalStartOf(h.state.timeMs, I) + I;
    at(h, h.nextTimeMs, [readingAt(h, BUYER, h.nextTimeMs - 500, 0, 0)]);
    at(h, N + 5, []);
    const island = (islanded: boolean, timeMs: number) => h.tx(SOLAR, { type: "island", islanded, timeMs, reason: islanded ? "UF2" : "reconnected", measured: islanded ? 56_000 : 0 });
    at(h, N + I / 4 + 500, [island(true, N + I / 4)]); // the grid is lost a quarter into the period
    at(h, N + I - 2_000, [readingAt(h, BUYER, N + I - 2_500, 1_000, 0)]);
    const first = at(h, N + I + 5, []).market?.settlement;
    assert.equal(first?.islandedPermille, 750);
    assert.equal(balance(h, "community"), 750 * 250); // 750 Wh at the imbalance price (250,000 per kWh)
    assert.equal(balance(h, "utility"), 250 * 300); // 250 Wh at the import tariff
    // Islanded through the next period, then back half-way through the one after.
    at(h, N + I + 400_000, [readingAt(h, BUYER, N + I + 399_500, 2_000, 0)]);
    assert.equal(at(h, N + 2 * I + 5, []).market?.settlement.islandedPermille, 1_000);
    at(h, N + 2 * I + I / 2 + 500, [island(false, N + 2 * I + I / 2)]);
    assert.equal(at(h, N + 3 * I + 5, []).market?.settlement.islandedPermille, 500);
    assert.equal(at(h, N + 4 * I + 5, []).market?.settlement.islandedPermille, 0);
    assert.equal([SOLAR, BUYER].reduce((a, m) => a + balance(h, m), 0) + balance(h, "utility") + balance(h, "community"), 0);
  });

  test("a reading stamped just before a period but committed in it counts there, and its meter is not called silent", () => {
    const h = harness();
    const N = intervalStartOf(h.state.timeMs, I) + I;
    at(h, h.nextTimeMs, [readingAt(h, BUYER, h.nextTimeMs - 500, 1_000, 0)]);
    at(h, N + 5, [readingAt(h, BUYER, N - 2_000, 1_500, 0)]); // stamped before N, applied after N's settlement
    const s = at(h, N + I + 5, []).market?.settlement;
    assert.deepEqual(s?.metered.map((m) => [m.member, m.importWh, m.silentMeters]), [[BUYER, 500, 0]]);
  });

  test("pay-as-bid, binding settlement and fees come from the genesis", () => {
    const h = harness({ clearingRule: "pay-as-bid", settlementMode: "binding", buyerFeeMicroPerKWh: 10_000, sellerFeeMicroPerKWh: 5_000 });
    const N = intervalStartOf(h.state.timeMs, I) + I;
    at(h, h.nextTimeMs, [readingAt(h, SOLAR, h.nextTimeMs - 500, 0, 0), readingAt(h, BUYER, h.nextTimeMs - 500, 0, 0)]);
    at(h, h.nextTimeMs, [orderFor(h, SOLAR, N, { side: "sell", energyWh: 1_000, priceMicroPerKWh: 100_000 }), orderFor(h, BUYER, N, { side: "buy", energyWh: 1_000, priceMicroPerKWh: 200_000 })]);
    const c = at(h, N + 5, []).market?.clearing;
    assert.deepEqual([c?.rule, c?.priceMicroPerKWh, c?.trades[0]?.buyerPriceMicroPerKWh, c?.trades[0]?.sellerPriceMicroPerKWh], ["pay-as-bid", null, 200_000, 100_000]);
    at(h, N + 600_000, [readingAt(h, SOLAR, N + 599_000, 0, 1_000), readingAt(h, BUYER, N + 599_000, 1_000, 0)]);
    const s = at(h, N + I + 5, []).market?.settlement;
    assert.equal(s?.shadow, false);
    assert.equal(balance(h, SOLAR), 100_000 - 5_000);
    assert.equal(balance(h, BUYER), -200_000 - 10_000);
    assert.equal(balance(h, "community"), 100_000 + 10_000 + 5_000); // the spread and both fees
  });

  test("a renewable-only buy does not trade with a seller without the renewable role", () => {
    const h = harness();
    const N = intervalStartOf(h.state.timeMs, I) + I;
    at(h, h.nextTimeMs, [
      orderFor(h, GAS, N, { side: "sell", energyWh: 1_000, priceMicroPerKWh: 50_000 }),
      orderFor(h, ANN, N, { side: "buy", energyWh: 1_000, priceMicroPerKWh: 200_000, flags: OrderFlag.localRenewableOnly }),
      orderFor(h, BUYER, N, { side: "buy", energyWh: 400, priceMicroPerKWh: 100_000 }),
    ]);
    const c = at(h, N + 5, []).market?.clearing;
    assert.deepEqual(c?.trades.map((t) => [t.buyer, t.seller, t.energyWh]), [[BUYER, GAS, 400]]);
  });

  test("a counter that advanced enormously over a long stop settles at most 2^24 Wh per period and carries the rest; nothing throws", () => {
    const g = new Harness(MEMBERS, { market: { ...TARIFFS, utilityImportMicroPerKWh: 100_000_000 }, ledger: { meterPowerMaxW: 100_000_000 } });
    const N = intervalStartOf(g.state.timeMs, I) + I;
    at(g, g.nextTimeMs, [readingAt(g, BUYER, g.nextTimeMs - 500, 0, 0)]);
    const later = N + 1_000 * 3_600_000; // a thousand hours on
    at(g, later, [readingAt(g, BUYER, later - 500, 95_000_000_000, 0)]); // within 100 MW x 1000 h
    const first = at(g, later + I, []).market?.settlement.metered.find((m) => m.member === BUYER);
    assert.equal(first?.importWh, 2 ** 24);
    assert.equal(get<MeterRecord>(g, meterKey(BUYER, 0))?.settledImportWh, 2 ** 24, "the rest stays on the counter");
    const second = at(g, later + 2 * I, []).market?.settlement.metered.find((m) => m.member === BUYER);
    assert.equal(second?.importWh, 2 ** 24, "and settles in the following periods");
    assert.equal(balance(g, BUYER), -2 * Math.floor((2 ** 24 * 100_000_000) / 1000));
  });

  test("property: the step clears exactly as clear() does on the book, conserves energy and money, and never pays past a limit", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ author: fc.integer({ min: 0, max: 3 }), sell: fc.boolean(), energyWh: fc.integer({ min: 1, max: 5_000 }), price: fc.integer({ min: 0, max: 400_000 }), renewable: fc.boolean() }),
          { maxLength: 24 },
        ),
        fc.array(fc.integer({ min: 0, max: 3_000 }), { minLength: 6, maxLength: 6 }),
        fc.constantFrom("pay-as-clear", "pay-as-bid"),
        (specs, flows, rule) => {
          const h = harness({ clearingRule: rule, buyerFeeMicroPerKWh: 1_000 });
          const N = intervalStartOf(h.state.timeMs, I) + I;
          const boxes = [SOLAR, BUYER, GAS];
          at(h, h.nextTimeMs, boxes.map((b) => readingAt(h, b, h.nextTimeMs - 500, 0, 0)));
          const txs = specs.map((o) =>
            orderFor(h, o.author, N, { side: o.sell ? "sell" : "buy", energyWh: o.energyWh, priceMicroPerKWh: o.price, flags: o.renewable && !o.sell ? OrderFlag.localRenewableOnly : 0 }),
          );
          const placed = at(h, h.nextTimeMs, txs, txs.map((_, i) => (specs.filter((s, j) => j <= i && s.author === specs[i]?.author).length > 32 ? ResultCode.openOrdersLimit : ResultCode.ok)));
          const book = [...h.state.tree.entries()].filter((e) => e.value.kind === "order").map((e) => clearingOrderOf(e.value as never));
          const entered = at(h, N + 5, []);
          const c = entered.market?.clearing;
          assert.ok(c !== undefined && placed.results.length === txs.length);
          const expected = clear(book, { rule, isLocalRenewable: (a) => a === SOLAR });
          assert.deepEqual(c.trades.map((t) => [toHex(t.buyOrder), toHex(t.sellOrder), t.energyWh]), expected.trades.map((t) => [toHex(t.buyOrder), toHex(t.sellOrder), t.energyWh]));
          const limits = new Map(book.map((o) => [toHex(o.id), o.priceMicroPerKWh]));
          for (const t of c.trades) {
            assert.ok(t.buyerPriceMicroPerKWh <= (limits.get(toHex(t.buyOrder)) ?? -1));
            assert.ok(t.sellerPriceMicroPerKWh >= (limits.get(toHex(t.sellOrder)) ?? Infinity));
          }
          boxes.forEach((b, i) => at(h, N + 100_000 + i, [readingAt(h, b, N + 99_000 + i, flows[2 * i] as number, flows[2 * i + 1] as number)]));
          const s = at(h, N + I + 5, []).market?.settlement;
          assert.ok(s !== undefined);
          const sold = new Map<number, number>();
          s.trades.forEach((t, i) => sold.set(t.seller, (sold.get(t.seller) ?? 0) + (s.deliveredWh[i] as number)));
          for (const [seller, wh] of sold) assert.ok(wh <= (s.metered.find((m) => m.member === seller)?.exportWh ?? 0), "never more delivered than exported");
          const total = [0, 1, 2, 3].reduce((a, m) => a + balance(h, m), 0) + balance(h, "utility") + balance(h, "community");
          assert.equal(total, 0, "money is conserved");
        },
      ),
      { numRuns: 60 },
    );
  });

  test("a ledger on disk records the clearing and the settlement, and reopens to the same state", () => {
    const dir = mkdtempSync(join(tmpdir(), "pg-interval-"));
    try {
      const h = harness();
      const ledger = Ledger.create(dir, h.genesis, new (class {
        verify() {
          return true;
        }
      })());
      const N = intervalStartOf(h.state.timeMs, I) + I;
      const go = (timeMs: number, txs: SignedTx[]) => ledger.append(h.block(txs, { timeMs })) && (h.state = ledger.state);
      go(h.nextTimeMs, [readingAt(h, SOLAR, h.nextTimeMs - 500, 0, 0), readingAt(h, BUYER, h.nextTimeMs - 500, 0, 0)]);
      go(h.nextTimeMs, [orderFor(h, SOLAR, N, { side: "sell", energyWh: 1_000, priceMicroPerKWh: 100_000 }), orderFor(h, BUYER, N, { side: "buy", energyWh: 600, priceMicroPerKWh: 120_000 })]);
      go(N + 5, []);
      go(N + 100_000, [readingAt(h, SOLAR, N + 99_000, 0, 500), readingAt(h, BUYER, N + 99_000, 600, 0)]);
      go(N + I + 5, []);
      const interval = ledger.store.marketInterval(N);
      assert.ok(interval !== null);
      assert.deepEqual([interval.priceMicroPerKWh, interval.volumeWh, interval.trades.map((t) => [t.trade.energyWh, t.deliveredWh])], [110_000, 600, [[600, 500]]]);
      assert.deepEqual(interval.closedOrders.map((o) => [o.author, o.filledWh, o.reason]).sort(), [[BUYER, 600, "cleared"], [SOLAR, 600, "cleared"]].sort());
      const settlement = ledger.store.settlementOfInterval(N);
      assert.ok(settlement !== null);
      assert.equal(settlement.periodEndMs, N + I);
      assert.equal(settlement.transfers.reduce((a, t) => a + (t.from === BUYER ? -t.amountMicro : t.to === BUYER ? t.amountMicro : 0), 0), balance(h, BUYER));
      const root = toHex(ledger.state.tree.root);
      ledger.close();
      const again = LedgerStore.open(ledgerPath(dir));
      assert.equal(toHex(again.loadState().tree.root), root);
      again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
