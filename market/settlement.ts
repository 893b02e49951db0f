// Settlement of one delivery interval from metered energy: a pure,
// deterministic function of the interval's trades (clearing.ts) and what
// each member's meters measured at its grid connection over the interval.
// Integers only: Wh and micro-currency.
//
// 1. Delivery. A seller's metered export is allocated to its buyers in
//    proportion to what each bought from it, never more than was bought:
//    delivered = min(export, sold). The whole-Wh shares are found by the
//    largest-remainder rule: each trade gets floor(delivered x traded /
//    sold), and the Wh left over go one each to the trades with the largest
//    remainders, ties to the earlier trade (clearing order). So the shares
//    sum to exactly what was delivered.
// 2. Local payments, on delivered energy only: the buyer pays floor(its
//    price x delivered / 1000), the seller receives floor(its price x
//    delivered / 1000), and the community receives the difference (the
//    spread under pay-as-bid; 0 under pay-as-clear). Fees per delivered kWh
//    (buyer's and seller's, configurable) go to the community too.
// 3. Imbalance, each member against the grid: metered import beyond what it
//    was delivered locally is bought at the utility's import tariff;
//    metered export beyond what it delivered to buyers is sold at the
//    utility's export tariff; energy a buyer was delivered beyond its
//    metered import (it bought more than it used) is sold back at the
//    export tariff. In island mode there is no utility: the same imbalance
//    settles against the community at its imbalance price (both ways). A
//    period that was islanded for part of its time splits each imbalance:
//    the islanded share (permille of the period, rounded down to whole Wh)
//    with the community, the rest with the utility.
// A member with no metered energy for the interval (its meters silent)
// counts as 0 Wh both ways: a seller delivers nothing and is paid nothing,
// and a buyer's purchase is sold back as surplus. The caller knows which
// members were silent (their readings say commsError) and reports them.
// Fees come on top of the prices: an order's limit is before fees.
//
// Every amount is paid by one account and received by another (a member,
// the utility, the community), the same whole number on both sides, so
// the changes of all accounts sum to exactly zero: nothing is created or
// lost. A shadow market computes the same and owes nothing; that is the
// caller's choice of whether to apply the result.
import { assert, isSafeUint } from "../ledger/assert.js";
import { type AccountName, COMMUNITY_ACCOUNT, UTILITY_ACCOUNT } from "../ledger/records.js";
import { type Trade, appendTo, valueMicro } from "./clearing.js";

export interface Metered {
  /** Energy the member's connection took from the grid over the interval, Wh. */
  readonly importWh: number;
  /** Energy it gave to the grid, Wh. */
  readonly exportWh: number;
}

export interface SettlementParams {
  readonly utilityImportMicroPerKWh: number;
  readonly utilityExportMicroPerKWh: number;
  /**
   * The share of the period the microgrid ran islanded, in permille (0: connected throughout, 1000:
   * islanded throughout). That share of each member's imbalance energy (rounded down) settles against
   * the community at imbalanceMicroPerKWh; the rest against the utility at its tariffs.
   */
  readonly islandedPermille: number;
  readonly imbalanceMicroPerKWh: number;
  readonly buyerFeeMicroPerKWh: number;
  readonly sellerFeeMicroPerKWh: number;
}

/** Accounts that are not members: the ledger's balance records name them the same way. */
export const UTILITY = UTILITY_ACCOUNT;
export const COMMUNITY = COMMUNITY_ACCOUNT;
export type Account = AccountName;

export interface Delivery {
  readonly trade: number; // index in the trades given
  readonly deliveredWh: number;
}

/** What a transfer pays for; a settlement's hash (interval.ts) encodes each by its position here. */
export const TRANSFER_KINDS = ["local energy", "spread", "buyer fee", "seller fee", "import", "export", "surplus purchase"] as const;
export type TransferKind = (typeof TRANSFER_KINDS)[number];

export interface Transfer {
  readonly from: Account;
  readonly to: Account;
  readonly amountMicro: number;
  readonly why: TransferKind;
  /** The trade, for transfers that settle one. */
  readonly trade?: number;
}

export interface SettlementResult {
  readonly deliveries: readonly Delivery[];
  readonly transfers: readonly Transfer[];
  /** Each account's change, micro-currency (members by number, then "utility", "community"); they sum to 0. */
  readonly balances: ReadonlyMap<Account, number>;
}

/** Split `total` Wh over `weights` in proportion, whole Wh, largest remainder first, ties to the lower index. */
export function largestRemainder(total: number, weights: readonly number[]): number[] {
  const sum = weights.reduce((a, w) => a + w, 0);
  assert(total >= 0 && total <= sum, "allocate at most what the weights add up to");
  if (sum === 0) return weights.map(() => 0);
  const exact = weights.map((w) => BigInt(total) * BigInt(w));
  const shares = exact.map((x) => Number(x / BigInt(sum)));
  let left = total - shares.reduce((a, x) => a + x, 0);
  const order = exact.map((x, i) => ({ i, rem: x % BigInt(sum) })).sort((a, b) => (a.rem === b.rem ? a.i - b.i : a.rem > b.rem ? -1 : 1));
  for (const { i } of order) {
    if (left === 0) break;
    shares[i] = (shares[i] as number) + 1;
    left--;
  }
  return shares;
}

export function settle(trades: readonly Trade[], metered: ReadonlyMap<number, Metered>, p: SettlementParams): SettlementResult {
  for (const [m, e] of metered) assert(isSafeUint(e.importWh) && isSafeUint(e.exportWh), `member ${m}'s metered energy is whole Wh, at least 0`);
  for (const t of trades) assert(isSafeUint(t.energyWh) && isSafeUint(t.buyerPriceMicroPerKWh) && isSafeUint(t.sellerPriceMicroPerKWh), "a trade's energy and prices are whole and at least 0");
  assert(Number.isInteger(p.islandedPermille) && p.islandedPermille >= 0 && p.islandedPermille <= 1_000, "islandedPermille is 0..1000");
  for (const k of ["utilityImportMicroPerKWh", "utilityExportMicroPerKWh", "imbalanceMicroPerKWh", "buyerFeeMicroPerKWh", "sellerFeeMicroPerKWh"] as const) assert(isSafeUint(p[k]), `${k} is whole and at least 0 (negative tariffs are not supported yet)`);
  // 1. Delivery, seller by seller.
  const delivered = new Array<number>(trades.length).fill(0);
  const bySeller = new Map<number, number[]>();
  trades.forEach((t, i) => appendTo(bySeller, t.seller, i));
  for (const [seller, idx] of bySeller) {
    const sold = idx.reduce((a, i) => a + (trades[i] as Trade).energyWh, 0);
    const exported = metered.get(seller)?.exportWh ?? 0;
    const shares = largestRemainder(Math.min(sold, exported), idx.map((i) => (trades[i] as Trade).energyWh));
    idx.forEach((i, k) => (delivered[i] = shares[k] as number));
  }

  // 2. Local payments on delivered energy.
  const transfers: Transfer[] = [];
  const pay = (from: Account, to: Account, amountMicro: number, why: Transfer["why"], trade?: number) => {
    if (amountMicro > 0) transfers.push(trade === undefined ? { from, to, amountMicro, why } : { from, to, amountMicro, why, trade });
  };
  const boughtLocally = new Map<number, number>();
  const soldLocally = new Map<number, number>();
  trades.forEach((t, i) => {
    const d = delivered[i] as number;
    boughtLocally.set(t.buyer, (boughtLocally.get(t.buyer) ?? 0) + d);
    soldLocally.set(t.seller, (soldLocally.get(t.seller) ?? 0) + d);
    const buyerPays = valueMicro(t.buyerPriceMicroPerKWh, d);
    const sellerGets = valueMicro(t.sellerPriceMicroPerKWh, d);
    assert(buyerPays >= sellerGets, "a buyer's price is never below its seller's");
    pay(t.buyer, t.seller, sellerGets, "local energy", i);
    pay(t.buyer, COMMUNITY, buyerPays - sellerGets, "spread", i);
    pay(t.buyer, COMMUNITY, valueMicro(p.buyerFeeMicroPerKWh, d), "buyer fee", i);
    pay(t.seller, COMMUNITY, valueMicro(p.sellerFeeMicroPerKWh, d), "seller fee", i);
  });

  // 3. Imbalance against the utility, and for the islanded share of the period against the community.
  const islandShare = (wh: number) => Math.floor((wh * p.islandedPermille) / 1_000); // wh < 2^40: exact
  const imbalance = (from: number, wh: number, why: Transfer["why"], inward: boolean, utilityPrice: number) => {
    const island = islandShare(wh);
    if (inward) {
      pay(from, UTILITY, valueMicro(utilityPrice, wh - island), why);
      pay(from, COMMUNITY, valueMicro(p.imbalanceMicroPerKWh, island), why);
    } else {
      pay(UTILITY, from, valueMicro(utilityPrice, wh - island), why);
      pay(COMMUNITY, from, valueMicro(p.imbalanceMicroPerKWh, island), why);
    }
  };
  const members = [...new Set([...metered.keys(), ...boughtLocally.keys(), ...soldLocally.keys()])].sort((a, b) => a - b);
  for (const m of members) {
    const e = metered.get(m) ?? { importWh: 0, exportWh: 0 };
    const bought = boughtLocally.get(m) ?? 0;
    const sold = soldLocally.get(m) ?? 0;
    imbalance(m, Math.max(0, e.importWh - bought), "import", true, p.utilityImportMicroPerKWh);
    imbalance(m, e.exportWh - sold, "export", false, p.utilityExportMicroPerKWh); // sold <= exported, by delivery
    imbalance(m, Math.max(0, bought - e.importWh), "surplus purchase", false, p.utilityExportMicroPerKWh);
  }

  const balances = new Map<Account, number>();
  for (const m of members) balances.set(m, 0);
  balances.set(UTILITY, 0);
  balances.set(COMMUNITY, 0);
  for (const t of transfers) {
    balances.set(t.from, (balances.get(t.from) ?? 0) - t.amountMicro);
    balances.set(t.to, (balances.get(t.to) ?? 0) + t.amountMicro);
  }
  return { deliveries: delivered.map((deliveredWh, trade) => ({ trade, deliveredWh })), transfers, balances };
}
