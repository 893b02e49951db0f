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
//   1. The price. Walk the ranked buys and sells together, as the classical
//      supply and demand curves cross: while the best remaining buy's limit
//      is at least the best remaining sell's, the two trade the smaller of
//      what they have left. The last buy and sell that traded are the
//      marginal pair; the price is the midpoint of their limits, rounded down
//      (to a whole micro-currency per kWh): price = sell + floor((buy -
//      sell) / 2). No pair crosses: no price, no trades. Preferences play no
//      part in the price: it is the price of the neighbourhood's whole
//      supply and demand.
//   2. The trades. Every buy whose limit is at least the price and every sell
//      whose limit is at most it may trade, at the price. Buys in rank order
//      each take from the sells in rank order that suit both sides: not the
//      buyer's own; the seller if the buy names a counterparty; the buyer if
//      the sell names one; a local renewable seller if the buy asks for
//      that. A buy takes as much as it can from each suitable sell before
//      the next (partial fills on both sides).
//   So no buyer pays above its limit and no seller receives below its limit,
//   by construction; preferences can only lower the volume, never a price.
//
// Pay-as-bid (an option): no common price. Buys in rank order take from the
// sells in rank order that suit them and whose limit is at most the buy's;
// the buyer pays its own limit, the seller receives its own, and the spread
// goes to the community (a fee, settled with the others).
//
// Money. A trade of E Wh at P micro/kWh is worth floor(P x E / 1000)
// micro-currency, computed exactly (BigInt). Under pay-as-clear the buyer
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

export interface Trade {
  readonly buyOrder: Hash;
  readonly sellOrder: Hash;
  readonly buyer: number;
  readonly seller: number;
  readonly energyWh: number;
  /** The price the buyer pays per kWh (the uniform price, or its own limit under pay-as-bid). */
  readonly buyerPriceMicroPerKWh: number;
  /** The price the seller receives per kWh (the uniform price, or its own limit under pay-as-bid). */
  readonly sellerPriceMicroPerKWh: number;
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
  return orders
    .filter((o) => o.side === side)
    .sort((a, b) => sign * (a.priceMicroPerKWh - b.priceMicroPerKWh) || a.placedHeight - b.placedHeight || compareBytes(a.id, b.id));
}

/** The marginal pair's midpoint, rounded down; null when the best buy is below the best sell. */
export function uniformPrice(buys: readonly ClearingOrder[], sells: readonly ClearingOrder[]): number | null {
  let i = 0;
  let j = 0;
  let buyLeft = buys[0]?.energyWh ?? 0;
  let sellLeft = sells[0]?.energyWh ?? 0;
  let marginal: [number, number] | null = null;
  while (i < buys.length && j < sells.length) {
    const b = buys[i] as ClearingOrder;
    const s = sells[j] as ClearingOrder;
    if (b.priceMicroPerKWh < s.priceMicroPerKWh) break;
    marginal = [b.priceMicroPerKWh, s.priceMicroPerKWh];
    const q = Math.min(buyLeft, sellLeft);
    buyLeft -= q;
    sellLeft -= q;
    if (buyLeft === 0) buyLeft = buys[++i]?.energyWh ?? 0;
    if (sellLeft === 0) sellLeft = sells[++j]?.energyWh ?? 0;
  }
  if (marginal === null) return null;
  const [bid, ask] = marginal;
  return ask + Math.floor((bid - ask) / 2);
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
  assert(v <= BigInt(Number.MAX_SAFE_INTEGER), "a trade's value fits a safe integer (the genesis bounds order size and price)");
  return Number(v);
}

export function clear(orders: readonly ClearingOrder[], options: ClearingOptions): ClearingResult {
  for (const o of orders) {
    assert(Number.isSafeInteger(o.energyWh) && o.energyWh > 0, "an order's energy is a positive whole number of Wh");
    assert(Number.isSafeInteger(o.priceMicroPerKWh) && o.priceMicroPerKWh >= 0, "an order's price is a whole number");
  }
  const buys = rankOrders(orders, "buy");
  const sells = rankOrders(orders, "sell");
  const price = options.rule === "pay-as-clear" ? uniformPrice(buys, sells) : null;
  if (options.rule === "pay-as-clear" && price === null) return { rule: options.rule, priceMicroPerKWh: null, trades: [], volumeWh: 0 };

  // The matching below is the rule of the header, searched with two shortcuts that skip only sells
  // that could not be taken anyway: those already used up, and, for a buy that names its seller,
  // every other seller's. `live(j)` is the first sell at or after j with energy left (a used-up sell
  // points past itself; the pointers are shortened as they are followed), so no buy walks over
  // what earlier buys used up.
  const left = sells.map((s) => s.energyWh);
  const next = Int32Array.from({ length: sells.length + 1 }, (_, j) => j);
  const live = (j: number): number => {
    let r = j;
    while (next[r] !== r) r = next[r] as number;
    for (let k = j; k !== r; ) {
      const after = next[k] as number;
      next[k] = r;
      k = after;
    }
    return r;
  };
  const sellsOf = new Map<number, number[]>();
  sells.forEach((s, j) => {
    const list = sellsOf.get(s.author);
    if (list === undefined) sellsOf.set(s.author, [j]);
    else list.push(j);
  });
  const trades: Trade[] = [];
  let volumeWh = 0;
  for (const b of buys) {
    if (price !== null && b.priceMicroPerKWh < price) break; // ranked: no later buy reaches the price either
    const limit = price ?? b.priceMicroPerKWh;
    let want = b.energyWh;
    const take = (j: number): boolean => {
      const s = sells[j] as ClearingOrder;
      if (s.priceMicroPerKWh > limit) return false; // ranked: no later sell is cheap enough either
      const have = left[j] as number;
      if (have === 0 || !suits(b, s, options.isLocalRenewable)) return true;
      const q = Math.min(want, have);
      want -= q;
      left[j] = have - q;
      if (have === q) next[j] = j + 1;
      volumeWh += q;
      const sellerPrice = price ?? s.priceMicroPerKWh;
      const pays = valueMicro(limit, q);
      const gets = valueMicro(sellerPrice, q);
      trades.push({ buyOrder: b.id, sellOrder: s.id, buyer: b.author, seller: s.author, energyWh: q, buyerPriceMicroPerKWh: limit, sellerPriceMicroPerKWh: sellerPrice, buyerPaysMicro: pays, sellerGetsMicro: gets, communityGetsMicro: pays - gets });
      return true;
    };
    if (b.counterparty !== null) {
      for (const j of sellsOf.get(b.counterparty) ?? []) if (want === 0 || !take(j)) break;
    } else {
      for (let j = live(0); j < sells.length; j = live(j + 1)) if (want === 0 || !take(j)) break;
    }
  }
  return { rule: options.rule, priceMicroPerKWh: price, trades, volumeWh };
}
