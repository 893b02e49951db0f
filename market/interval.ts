// The market's step in the ledger state machine: what happens in the first
// block whose time is in a new market interval. A pure, deterministic
// function of the state before that block, its time and its height, run by
// applyBlock (ledger/state.ts) before the block's transactions, so every box
// computes the same trades and balances and the next header's state root
// commits to them.
//
// Entering interval [S, S + I) (S = block time rounded down to the interval):
//
// 1. Settle the period that just ended: [the last settlement's end, S).
//    - Metered energy. Each meter's energy for the period is how far its
//      good counters (ledger/state.ts applyReading) advanced since the last
//      settlement took them; a meter's first good reading is its baseline.
//      A member's energy is the sum over the meters its box reports. The
//      counters are the ones in the ledger at this block: a reading stamped
//      before S that is committed after this block counts in the next
//      period, so about a second of energy can fall on either side of a
//      boundary, but every Wh is counted in exactly one period. A period
//      counts at most METER_PERIOD_WH_MAX per meter each way; more (after a
//      long stop) carries over to the next periods. A meter with
//      no good reading in the period is reported as silent; it contributed
//      no energy (its energy is counted once it reads good again).
//    - The trades of the interval cleared at the previous boundary (kept as
//      trade records until now) are settled against that energy by
//      settle() (settlement.ts): delivery pro rata, payments on delivered
//      energy, fees and spread to the community, imbalance against the
//      utility at the genesis tariffs, or (for the share of the period the
//      microgrid ran islanded) against the community at
//      its imbalance price. Each account's change is added to its balance
//      record. In shadow mode (genesis settlementMode) the same balances are
//      kept and shown, but they are not money owed.
//    If the ledger stopped for longer than an interval, the period spans
//    them all: the metered energy of the whole gap settles here.
// 2. Close orders that can no longer trade: expired ones (expiresAtMs at or
//    before the block time), orders for intervals that passed with no block
//    in them ("lapsed": no clearing ever ran for them), and orders of
//    members removed since they were placed.
// 3. Clear interval S with clear() (clearing.ts) over its open orders, under
//    the genesis clearing rule; a seller is local renewable when its member
//    has the renewable role. Every order of S is then closed (an unfilled
//    remainder does not carry over); its trades are kept as trade records
//    until S is settled at the next boundary.
// The market record (key "x") keeps the price and volume of the last
// clearing and hashes of the trades and the settlement, so a state root
// commits to them; the full lists go to the store (ledger/store.ts) with the
// block and are what `peergrid market replay` checks.
import { assert } from "../ledger/assert.js";
import { Writer } from "../ledger/codec.js";
import type { MarketParams } from "../ledger/genesis.js";
import { type Hash, HashTag, hashTagged } from "../ledger/hash.js";
import {
  BALANCE_MICRO_ABS_MAX,
  type BalanceRecord,
  GLOBAL_KEY,
  type GlobalRecord,
  MARKET_KEY,
  type MarketRecord,
  type MemberRecord,
  type MeterRecord,
  type OrderRecord,
  type StateRecord,
  type TradeRecord,
  accountCode,
  balanceKey,
  memberKey,
  meterKey,
  tradeKey,
  tradesHash,
} from "../ledger/records.js";
import { OrderFlag, Role } from "../ledger/tx.js";
import { type ClearingOrder, type ClearingRule, type Trade, clear, valueMicro } from "./clearing.js";
import { type Metered, TRANSFER_KINDS, type Transfer, settle } from "./settlement.js";

/** Read access to the state before the block. */
export interface StateView {
  get(key: string): StateRecord | undefined;
  entries(): Iterable<{ readonly key: string; readonly value: StateRecord }>;
}

export type CloseReason = "cleared" | "expired" | "lapsed" | "memberRemoved";

export interface ClosedOrder {
  readonly id: Hash;
  readonly author: number;
  readonly side: "buy" | "sell";
  readonly intervalStartMs: number;
  readonly energyWh: number;
  readonly filledWh: number;
  readonly reason: CloseReason;
}

export interface MeteredMember {
  readonly member: number;
  readonly importWh: number;
  readonly exportWh: number;
  readonly meters: number;
  /** Meters with no good reading in the period. */
  readonly silentMeters: number;
}

export interface SettlementOutcome {
  readonly periodStartMs: number;
  readonly periodEndMs: number;
  /** The interval whose trades were settled (null: none was cleared with trades). */
  readonly tradesIntervalStartMs: number | null;
  readonly trades: readonly TradeRecord[];
  /** Per trade (same order): the Wh delivered. */
  readonly deliveredWh: readonly number[];
  readonly metered: readonly MeteredMember[];
  readonly transfers: readonly Transfer[];
  /** The share of the period the microgrid ran islanded, permille. */
  readonly islandedPermille: number;
  readonly shadow: boolean;
  /** The tariffs, imbalance price and fees it was settled at (the genesis ones, or as a vote changed them). */
  readonly tariffs: Tariffs;
  readonly hash: Hash;
}

export interface ClearingOutcome {
  readonly intervalStartMs: number;
  readonly rule: ClearingRule;
  readonly priceMicroPerKWh: number | null;
  readonly volumeWh: number;
  readonly buyOrders: number;
  readonly sellOrders: number;
  readonly trades: readonly TradeRecord[];
  readonly hash: Hash;
}

export interface MarketOutcome {
  readonly boundaryMs: number;
  readonly settlement: SettlementOutcome;
  readonly clearing: ClearingOutcome;
  readonly closedOrders: readonly ClosedOrder[];
}

/**
 * The most one meter's energy one period settles, each way: 2^24 Wh (16.7 MWh; a meter at the default
 * 250 kW limit moves 62.5 kWh in 15 minutes). A counter that advanced further (a ledger stopped for
 * months, or a block time pushed far ahead) settles the rest in the following periods: nothing is lost,
 * and with at most 256 meters per member and tariffs, fees and prices within their genesis bounds,
 * every amount of a settlement stays an exact integer, so no valid chain can make the step throw.
 */
export const METER_PERIOD_WH_MAX = 2 ** 24;

export const TARIFF_KEYS = ["utilityImportMicroPerKWh", "utilityExportMicroPerKWh", "imbalanceMicroPerKWh", "buyerFeeMicroPerKWh", "sellerFeeMicroPerKWh"] as const;
export type Tariffs = Readonly<Record<(typeof TARIFF_KEYS)[number], number>>;

export function tariffsOf(m: Tariffs): Tariffs {
  return Object.fromEntries(TARIFF_KEYS.map((k) => [k, m[k]])) as Tariffs;
}

export function intervalStartOf(timeMs: number, intervalMs: number): number {
  return timeMs - (timeMs % intervalMs);
}

/** Whether a block at blockTimeMs, after a parent at parentTimeMs, enters a new market interval. */
export function entersInterval(params: MarketParams, parentTimeMs: number, blockTimeMs: number): boolean {
  return intervalStartOf(blockTimeMs, params.intervalMs) > intervalStartOf(parentTimeMs, params.intervalMs);
}

/** A settlement's canonical encoding, hashed into the market record. */
export function settlementHash(s: Omit<SettlementOutcome, "hash">): Hash {
  const w = new Writer(64 + s.metered.length * 16 + s.transfers.length * 16);
  w.uvar(s.periodStartMs).uvar(s.periodEndMs).uvar(s.islandedPermille).bool(s.shadow);
  for (const k of TARIFF_KEYS) w.uvar(s.tariffs[k]);
  w.fixed(tradesHash(s.trades), 32);
  for (const d of s.deliveredWh) w.uvar(d);
  w.uvar(s.metered.length);
  for (const m of s.metered) w.uvar(m.member).uvar(m.importWh).uvar(m.exportWh).uvar(m.meters).uvar(m.silentMeters);
  w.uvar(s.transfers.length);
  for (const t of s.transfers) {
    w.uvar(accountCode(t.from)).uvar(accountCode(t.to)).uvar(t.amountMicro).u8(TRANSFER_KINDS.indexOf(t.why)).uvar(t.trade === undefined ? 0 : t.trade + 1);
  }
  return hashTagged(HashTag.settlement, w.finish());
}


/** A trade as clear() made it, as the ledger keeps it. */
export function tradeRecord(intervalStartMs: number, index: number, t: Trade): TradeRecord {
  return {
    kind: "trade",
    intervalStartMs,
    index,
    buyOrder: t.buyOrder,
    sellOrder: t.sellOrder,
    buyer: t.buyer,
    seller: t.seller,
    energyWh: t.energyWh,
    buyerPriceMicroPerKWh: t.buyerPriceMicroPerKWh,
    sellerPriceMicroPerKWh: t.sellerPriceMicroPerKWh,
  };
}

/** A kept trade record as settle() takes it (the amounts follow from its energy and prices). */
export function tradeOf(r: TradeRecord): Trade {
  const pays = valueMicro(r.buyerPriceMicroPerKWh, r.energyWh);
  const gets = valueMicro(r.sellerPriceMicroPerKWh, r.energyWh);
  return {
    buyOrder: r.buyOrder,
    sellOrder: r.sellOrder,
    buyer: r.buyer,
    seller: r.seller,
    energyWh: r.energyWh,
    buyerPriceMicroPerKWh: r.buyerPriceMicroPerKWh,
    sellerPriceMicroPerKWh: r.sellerPriceMicroPerKWh,
    buyerPaysMicro: pays,
    sellerGetsMicro: gets,
    communityGetsMicro: pays - gets,
  };
}

/** An order as clear() takes it. */
export function clearingOrderOf(o: OrderRecord): ClearingOrder {
  return {
    id: o.id,
    author: o.author,
    side: o.side,
    energyWh: o.energyWh,
    priceMicroPerKWh: o.priceMicroPerKWh,
    placedHeight: o.placedHeight,
    localRenewableOnly: (o.flags & OrderFlag.localRenewableOnly) !== 0,
    counterparty: o.counterparty,
  };
}

/** Whether a member's sells count as local renewable. */
export function isRenewableMember(m: StateRecord | undefined): boolean {
  return m !== undefined && m.kind === "member" && m.active && (m.roles & Role.renewable) !== 0;
}

/**
 * The market's work in the block at blockTimeMs (which must enter a new interval): the changes to
 * stage before the block's transactions, and what happened.
 */
export function intervalStep(
  view: StateView,
  params: MarketParams,
  genesisTimeMs: number,
  blockTimeMs: number,
): { readonly changes: Map<string, StateRecord | null>; readonly outcome: MarketOutcome } {
  const I = params.intervalMs;
  const boundaryMs = intervalStartOf(blockTimeMs, I);
  const changes = new Map<string, StateRecord | null>();
  const read = (key: string): StateRecord | undefined => (changes.has(key) ? (changes.get(key) ?? undefined) : view.get(key));

  const market = view.get(MARKET_KEY) as MarketRecord | undefined;
  const periodStartMs = market?.settledEndMs ?? intervalStartOf(genesisTimeMs, I);
  assert(boundaryMs > periodStartMs, "each boundary is entered once");

  const orders: { readonly key: string; readonly order: OrderRecord }[] = []; // in the tree's order: the same on every box
  const kept: TradeRecord[] = [];
  const meters: MeterRecord[] = [];
  for (const { key, value } of view.entries()) {
    if (value.kind === "order") orders.push({ key, order: value });
    else if (value.kind === "trade") {
      kept.push(value);
      changes.set(key, null);
    } else if (value.kind === "meter") meters.push(value);
  }

  // 1. Settlement of [periodStartMs, boundaryMs).
  kept.sort((a, b) => a.index - b.index);
  const tradesIntervalStartMs = kept.length > 0 ? (kept[0] as TradeRecord).intervalStartMs : null;
  assert(kept.every((t, i) => t.index === i && t.intervalStartMs === tradesIntervalStartMs), "the kept trades are one interval's, numbered from 0");
  const byMember = new Map<number, { importWh: number; exportWh: number; meters: number; silentMeters: number }>();
  for (const m of meters) {
    const e = byMember.get(m.author) ?? { importWh: 0, exportWh: 0, meters: 0, silentMeters: 0 };
    e.meters++;
    let counted = false;
    if (m.goodTimeMs >= 0) {
      // At most METER_PERIOD_WH_MAX per meter per period; the rest stays on the counter for the next periods.
      const importWh = Math.min(m.goodImportWh - m.settledImportWh, METER_PERIOD_WH_MAX);
      const exportWh = Math.min(m.goodExportWh - m.settledExportWh, METER_PERIOD_WH_MAX);
      assert(importWh >= 0 && exportWh >= 0, "good counters only grow");
      e.importWh += importWh;
      e.exportWh += exportWh;
      counted = importWh > 0 || exportWh > 0;
      if (counted) changes.set(meterKey(m.author, m.meterId), { ...m, settledImportWh: m.settledImportWh + importWh, settledExportWh: m.settledExportWh + exportWh });
    }
    // Silent: no good reading stamped in the period and none counted (a reading stamped just before the
    // period but committed after its start still counts its energy here, and the meter is not silent).
    if (m.goodTimeMs < periodStartMs && !counted) e.silentMeters++;
    byMember.set(m.author, e);
  }
  const metered: MeteredMember[] = [...byMember].sort((a, b) => a[0] - b[0]).map(([member, e]) => ({ member, ...e }));
  const global = view.get(GLOBAL_KEY) as GlobalRecord | undefined;
  assert(global !== undefined, "the global record exists from genesis");
  // The share of the period the microgrid ran islanded (island transactions, ledger/state.ts applyIsland).
  const islandedMs = global.islandedMsInPeriod + (global.islandedSinceMs >= 0 ? boundaryMs - Math.max(global.islandedSinceMs, periodStartMs) : 0);
  const islandedPermille = Math.floor((Math.min(islandedMs, boundaryMs - periodStartMs) * 1_000) / (boundaryMs - periodStartMs));
  changes.set(GLOBAL_KEY, { ...global, islandedMsInPeriod: 0, islandedSinceMs: global.islandedSinceMs >= 0 ? boundaryMs : -1 });
  const settled = settle(
    kept.map(tradeOf),
    new Map<number, Metered>(metered.map((m) => [m.member, m])),
    { ...tariffsOf(params), islandedPermille },
  );
  for (const [account, delta] of settled.balances) {
    if (delta === 0) continue;
    const key = balanceKey(account);
    const before = (read(key) as BalanceRecord | undefined)?.balanceMicro ?? 0;
    const balanceMicro = before + delta;
    assert(Math.abs(balanceMicro) <= BALANCE_MICRO_ABS_MAX, `account ${account}'s balance stays within ${BALANCE_MICRO_ABS_MAX}`);
    changes.set(key, { kind: "balance", account, balanceMicro });
  }
  const settlementBody = {
    periodStartMs,
    periodEndMs: boundaryMs,
    tradesIntervalStartMs,
    trades: kept,
    deliveredWh: settled.deliveries.map((d) => d.deliveredWh),
    metered,
    transfers: settled.transfers,
    islandedPermille,
    shadow: params.settlementMode === "shadow",
    tariffs: tariffsOf(params),
  };
  const settlement: SettlementOutcome = { ...settlementBody, hash: settlementHash(settlementBody) };

  // 2 and 3. Close what can no longer trade; clear interval boundaryMs.
  const closedOrders: ClosedOrder[] = [];
  const closedBy = new Map<number, number>(); // author -> orders closed
  const close = (key: string, o: OrderRecord, reason: CloseReason, filledWh = 0) => {
    closedOrders.push({ id: o.id, author: o.author, side: o.side, intervalStartMs: o.intervalStartMs, energyWh: o.energyWh, filledWh, reason });
    changes.set(key, null);
    closedBy.set(o.author, (closedBy.get(o.author) ?? 0) + 1);
  };
  const book: { readonly key: string; readonly order: OrderRecord }[] = [];
  for (const { key, order: o } of orders) {
    const author = view.get(memberKey(o.author)) as MemberRecord | undefined;
    if (author === undefined || !author.active) close(key, o, "memberRemoved");
    else if (o.intervalStartMs < boundaryMs) close(key, o, "lapsed");
    else if (o.expiresAtMs <= blockTimeMs) close(key, o, "expired");
    else if (o.intervalStartMs === boundaryMs) book.push({ key, order: o });
  }
  const renewable = new Map<number, boolean>();
  const result = clear(book.map((b) => clearingOrderOf(b.order)), {
    rule: params.clearingRule,
    isLocalRenewable: (author) => {
      let r = renewable.get(author);
      if (r === undefined) renewable.set(author, (r = isRenewableMember(view.get(memberKey(author)))));
      return r;
    },
  });
  const trades = result.trades.map((t, i) => tradeRecord(boundaryMs, i, t));
  // A trade names its orders by the very id arrays of the records (clearingOrderOf keeps them): count by identity.
  const filled = new Map<Uint8Array, number>();
  for (const t of trades) {
    changes.set(tradeKey(boundaryMs, t.index), t);
    filled.set(t.buyOrder, (filled.get(t.buyOrder) ?? 0) + t.energyWh);
    filled.set(t.sellOrder, (filled.get(t.sellOrder) ?? 0) + t.energyWh);
  }
  for (const { key, order } of book) close(key, order, "cleared", filled.get(order.id) ?? 0);
  for (const [author, n] of closedBy) {
    const member = read(memberKey(author)) as MemberRecord | undefined;
    assert(member !== undefined && member.openOrders >= n, "an order's author counts it");
    changes.set(memberKey(author), { ...member, openOrders: member.openOrders - n });
  }
  const clearing: ClearingOutcome = {
    intervalStartMs: boundaryMs,
    rule: result.rule,
    priceMicroPerKWh: result.priceMicroPerKWh,
    volumeWh: result.volumeWh,
    buyOrders: book.filter((b) => b.order.side === "buy").length,
    sellOrders: book.filter((b) => b.order.side === "sell").length,
    trades,
    hash: tradesHash(trades),
  };
  const next: MarketRecord = {
    kind: "market",
    clearedStartMs: boundaryMs,
    priceMicroPerKWh: result.priceMicroPerKWh,
    volumeWh: result.volumeWh,
    tradeCount: trades.length,
    tradesHash: clearing.hash,
    settledEndMs: boundaryMs,
    settlementHash: settlement.hash,
  };
  changes.set(MARKET_KEY, next);
  return { changes, outcome: { boundaryMs, settlement, clearing, closedOrders } };
}
