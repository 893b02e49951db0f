// The double auction of one delivery interval: a pure, deterministic
// function of the interval's open orders, run by the ledger's state machine
// when block time crosses the interval's start, and by `peergrid market
// clear` for auditors. Integers only: energy in Wh, prices in micro-currency
// per kWh, money in micro-currency.
//
// Priority. Buy orders rank by limit price, highest first; sell orders by
// limit price, lowest first; then, on both sides, the older order first
// (placedHeight, the block that accepted it), then the lower transaction id
// (bytewise). The input's order never matters.
//
// Pay-as-clear (the default): one price for every trade of the interval.
//   1. The price. Match as pay-as-bid does (below): buys in rank order,
//      each at its own limit, taking from the sells that suit it. Of the
//      orders that traded in that walk, the lowest buy limit and the
//      highest sell limit are the marginal pair; the price is the midpoint
//      of their limits, rounded down (to a whole micro-currency per kWh):
//      price = sell + floor((buy - sell) / 2). Nothing trades: no price, no
//      trades. Only orders that can trade set the price: a buy that names
//      a member with no sell, or asks for renewable energy nobody offers,
//      cannot move it. Without preferences (and with no member on both
//      sides) this is the classical crossing of the supply and demand curves.
//   2. The trades. Every buy whose limit is at least the price and every sell
//      whose limit is at most it may trade, at the price. Buys in rank order
//      each take from the sells in rank order that suit both sides: not the
//      buyer's own; the seller if the buy names a counterparty; the buyer if
//      the sell names one; a local renewable seller if the buy asks for
//      that. A buy takes as much as it can from each suitable sell before
//      the next (partial fills on both sides).
//   So no buyer pays above its limit and no seller receives below its limit,
//   by construction. (Where preferences cross the walk's trades, so that its
//   lowest buy limit is below its highest sell limit, the price lies between
//   them and those orders do not trade at it: fewer trade, none at a loss.)
//   Fees (settlement.ts) come on top of the price: limits are before fees.
//
// Pay-as-bid (an option): no common price. Buys in rank order take from the
// sells in rank order that suit them and whose limit is at most the buy's;
// the buyer pays its own limit, the seller receives its own, and the spread
// goes to the community (a fee, settled with the others).
//
// Money. A trade of E Wh at P micro/kWh is worth floor(P x E / 1000)
// micro-currency, computed exactly (integer steps below 2^53, BigInt above). Under pay-as-clear the buyer
// pays and the seller receives that same whole number: the fraction below
// one micro-unit is neither charged nor paid, so nothing is created or lost.
// Under pay-as-bid the buyer pays floor(bid x E / 1000), the seller receives
// floor(ask x E / 1000), and the community receives the difference, which
// is never negative (bid >= ask).
//
// Energy. Each trade moves the same Wh from one seller to one buyer; an
// order never trades more than its energy.
import { assert, compareBytes } from "../ledger/assert.js";
import type { Hash } from "../ledger/hash.js";
import type { TradeTerms } from "../ledger/records.js";
import { ORDER_VALUE_MICRO_MAX } from "../ledger/tx.js";

export type ClearingRule = "pay-as-clear" | "pay-as-bid";

export interface ClearingOrder {
  readonly id: Hash;
  readonly author: number;
  readonly side: "buy" | "sell";
  readonly energyWh: number;
  readonly priceMicroPerKWh: number;
  /** The block that accepted the order: the time in time priority. */
  readonly placedHeight: number;
  /** Buy only from local renewable sellers. */
  readonly localRenewableOnly: boolean;
  /** Trade only with this member, or anyone (null). */
  readonly counterparty: number | null;
}

export interface ClearingOptions {
  readonly rule: ClearingRule;
  /** Which sellers are local renewable generation (for buys that ask for it). */
  readonly isLocalRenewable: (author: number) => boolean;
}

/** A trade: its terms (as the ledger keeps them, ledger/records.ts) and what they come to. */
export interface Trade extends TradeTerms {
  /** What the buyer pays for this trade, micro-currency. */
  readonly buyerPaysMicro: number;
  /** What the seller receives, micro-currency. */
  readonly sellerGetsMicro: number;
  /** What the community receives: the spread under pay-as-bid, 0 under pay-as-clear. */
  readonly communityGetsMicro: number;
}

export interface ClearingResult {
  readonly rule: ClearingRule;
  /** The uniform price under pay-as-clear (null: nothing crossed); null under pay-as-bid. */
  readonly priceMicroPerKWh: number | null;
  readonly trades: readonly Trade[];
  readonly volumeWh: number;
}

/** Buys: highest limit first; sells: lowest first; then older, then lower id. */
export function rankOrders(orders: readonly ClearingOrder[], side: "buy" | "sell"): ClearingOrder[] {
  const sign = side === "buy" ? -1 : 1;
  const cmp = (a: ClearingOrder, b: ClearingOrder) => sign * (a.priceMicroPerKWh - b.priceMicroPerKWh) || a.placedHeight - b.placedHeight || compareBytes(a.id, b.id);
  const ranked = orders.filter((o) => o.side === side).sort(cmp);
  // Two orders that rank equal would keep the input's order, and the input's order must never matter:
  // only two orders with one id rank equal (the ledger never has them; an order file is checked).
  for (let i = 1; i < ranked.length; i++) assert(cmp(ranked[i - 1] as ClearingOrder, ranked[i] as ClearingOrder) !== 0, "two orders with one id");
  return ranked;
}

/** Append `value` to the list of `key` (making it). */
export function appendTo<K, V>(m: Map<K, V[]>, key: K, value: V): void {
  const list = m.get(key);
  if (list === undefined) m.set(key, [value]);
  else list.push(value);
}

/** Whether a buy and a sell may trade with each other, prices aside. */
export function suits(buy: ClearingOrder, sell: ClearingOrder, isLocalRenewable: (author: number) => boolean): boolean {
  if (buy.author === sell.author) return false;
  if (buy.counterparty !== null && buy.counterparty !== sell.author) return false;
  if (sell.counterparty !== null && sell.counterparty !== buy.author) return false;
  return !buy.localRenewableOnly || isLocalRenewable(sell.author);
}

/** floor(price x energy / 1000), exactly. */
export function valueMicro(priceMicroPerKWh: number, energyWh: number): number {
  const x = priceMicroPerKWh * energyWh;
  if (x <= Number.MAX_SAFE_INTEGER) return (x - (x % 1_000)) / 1_000; // exact: every step is on integers below 2^53
  const v = (BigInt(priceMicroPerKWh) * BigInt(energyWh)) / 1000n;
  assert(v <= BigInt(Number.MAX_SAFE_INTEGER), "a trade's value fits a safe integer");
  return Number(v);
}

interface Match {
  readonly buy: ClearingOrder;
  readonly sell: ClearingOrder;
  readonly energyWh: number;
}

/**
 * Sells (their rank indices, ascending) with a way past the used-up ones: `live(k)` is the first
 * position at or after k whose sell has energy left (a used-up position points past itself, and the
 * pointers are shortened as they are followed), so no buy walks over what earlier buys used up.
 */
class Pool {
  private readonly next: Int32Array;

  /** `js`: the pool's sells (rank indices, ascending); `posOf[j]`: sell j's position in it, or -1. */
  constructor(
    readonly js: readonly number[],
    private readonly posOf: Int32Array,
  ) {
    this.next = Int32Array.from({ length: js.length + 1 }, (_, k) => k);
  }

  live(k: number): number {
    const next = this.next;
    let r = k;
    while (next[r] !== r) r = next[r] as number;
    for (let i = k; i !== r; ) {
      const after = next[i] as number;
      next[i] = r;
      i = after;
    }
    return r;
  }

  usedUp(j: number): void {
    const k = this.posOf[j] as number;
    if (k >= 0) this.next[k] = k + 1;
  }
}

/** Where a buy looks for sells, built once per clearing (both matchings of pay-as-clear use it). */
interface SellIndex {
  readonly sellsOf: ReadonlyMap<number, readonly number[]>; // by seller
  readonly namedTo: ReadonlyMap<number, readonly number[]>; // by the buyer they name
  readonly open: readonly number[]; // sells naming nobody
  readonly openPos: Int32Array;
  readonly renewable: readonly number[]; // ... of local renewable sellers
  readonly renewablePos: Int32Array;
}

function indexSells(sells: readonly ClearingOrder[], isLocalRenewable: (author: number) => boolean): SellIndex {
  const sellsOf = new Map<number, number[]>();
  const namedTo = new Map<number, number[]>();
  const open: number[] = [];
  const renewable: number[] = [];
  const openPos = new Int32Array(sells.length).fill(-1);
  const renewablePos = new Int32Array(sells.length).fill(-1);
  sells.forEach((s, j) => {
    appendTo(sellsOf, s.author, j);
    if (s.counterparty !== null) appendTo(namedTo, s.counterparty, j);
    else {
      openPos[j] = open.push(j) - 1;
      if (isLocalRenewable(s.author)) renewablePos[j] = renewable.push(j) - 1;
    }
  });
  return { sellsOf, namedTo, open, openPos, renewable, renewablePos };
}

/**
 * Buys in rank order, each taking from the sells in rank order that suit it, as much as it can from
 * each, up to `price` (a uniform price: only buys at or above it, sells at or below it), or, with no
 * price, up to each buy's own limit.
 *
 * Searched so that a buy looks only at sells that might suit it, in rank order: a buy that names its
 * seller, at that seller's sells; any other buy, at the sells that name nobody (all of them, or only
 * the local renewable ones if it asks for that) merged with the sells that name it. Used-up sells
 * are skipped (Pool). The result is the plain scan's: every sell left out could not have suited.
 */
function match(buys: readonly ClearingOrder[], sells: readonly ClearingOrder[], index: SellIndex, isLocalRenewable: (author: number) => boolean, price: number | null): Match[] {
  const left = sells.map((s) => s.energyWh);
  const open = new Pool(index.open, index.openPos);
  const renewable = new Pool(index.renewable, index.renewablePos);
  const { sellsOf, namedTo } = index;
  const out: Match[] = [];
  for (const b of buys) {
    if (price !== null && b.priceMicroPerKWh < price) break; // ranked: no later buy reaches the price either
    const limit = price ?? b.priceMicroPerKWh;
    let want = b.energyWh;
    const take = (j: number): boolean => {
      const s = sells[j] as ClearingOrder;
      if (s.priceMicroPerKWh > limit) return false; // ranked: no later sell is cheap enough either
      const have = left[j] as number;
      if (have === 0 || !suits(b, s, isLocalRenewable)) return true;
      const q = Math.min(want, have);
      want -= q;
      left[j] = have - q;
      if (have === q) {
        open.usedUp(j);
        renewable.usedUp(j);
      }
      out.push({ buy: b, sell: s, energyWh: q });
      return true;
    };
    if (b.counterparty !== null) {
      for (const j of sellsOf.get(b.counterparty) ?? []) if (want === 0 || !take(j)) break;
      continue;
    }
    const pool = b.localRenewableOnly ? renewable : open;
    const named = namedTo.get(b.author) ?? [];
    let k = pool.live(0);
    let n = 0;
    while (want > 0) {
      const jp = k < pool.js.length ? (pool.js[k] as number) : Infinity;
      const jn = n < named.length ? (named[n] as number) : Infinity;
      if (jp === Infinity && jn === Infinity) break;
      if (jp < jn) {
        if (!take(jp)) break;
        k = pool.live(k + 1);
      } else {
        if (!take(jn)) break;
        n++;
      }
    }
  }
  return out;
}

export function clear(orders: readonly ClearingOrder[], options: ClearingOptions): ClearingResult {
  for (const o of orders) {
    assert(Number.isSafeInteger(o.energyWh) && o.energyWh > 0, "an order's energy is a positive whole number of Wh");
    assert(Number.isSafeInteger(o.priceMicroPerKWh) && o.priceMicroPerKWh >= 0, "an order's price is a whole number");
    assert(o.priceMicroPerKWh * o.energyWh <= ORDER_VALUE_MICRO_MAX * 1_000, "an order is worth at most ORDER_VALUE_MICRO_MAX (the genesis bounds price and size; an order file is checked)");
  }
  const buys = rankOrders(orders, "buy");
  const sells = rankOrders(orders, "sell");
  const index = indexSells(sells, options.isLocalRenewable);
  // Pay-as-clear: first the walk that finds the price (each buy at its own limit), then the trades at it.
  let price: number | null = null;
  if (options.rule === "pay-as-clear") {
    const walk = match(buys, sells, index, options.isLocalRenewable, null);
    if (walk.length === 0) return { rule: options.rule, priceMicroPerKWh: null, trades: [], volumeWh: 0 };
    // A loop, not Math.min(...spread): a spread of 100,000+ arguments overflows the stack, at a depth
    // that depends on the caller, and boxes must never differ on whether a clearing throws.
    let bid = Infinity;
    let ask = -Infinity;
    for (const m of walk) {
      if (m.buy.priceMicroPerKWh < bid) bid = m.buy.priceMicroPerKWh;
      if (m.sell.priceMicroPerKWh > ask) ask = m.sell.priceMicroPerKWh;
    }
    price = ask + Math.floor((bid - ask) / 2); // bid < ask only if preferences crossed: then fewer trade at it
  }
  const trades: Trade[] = [];
  let volumeWh = 0;
  for (const { buy: b, sell: s, energyWh: q } of match(buys, sells, index, options.isLocalRenewable, price)) {
    const buyerPrice = price ?? b.priceMicroPerKWh;
    const sellerPrice = price ?? s.priceMicroPerKWh;
    const pays = valueMicro(buyerPrice, q);
    const gets = valueMicro(sellerPrice, q);
    volumeWh += q;
    trades.push({ buyOrder: b.id, sellOrder: s.id, buyer: b.author, seller: s.author, energyWh: q, buyerPriceMicroPerKWh: buyerPrice, sellerPriceMicroPerKWh: sellerPrice, buyerPaysMicro: pays, sellerGetsMicro: gets, communityGetsMicro: pays - gets });
  }
  assert(Number.isSafeInteger(volumeWh), "the interval's volume fits a safe integer");
  return { rule: options.rule, priceMicroPerKWh: price, trades, volumeWh };
}
