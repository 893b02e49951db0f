// Automatic bidding: most prosumers will not trade by hand, so a box trades
// for its owner from a policy set once. A pure core: given the policy, a
// forecast of the next interval at the owner's connection, and the orders
// the owner already has open for that interval, it says which orders to
// cancel and which to place. The box runs it each interval, before the
// interval's orders close, and signs what it says.
//
// The rule:
//   - Surplus = forecast generation - forecast consumption, plus what the
//     battery can give above the owner's reserve (at most its discharge
//     limit for the interval); shortfall the other way round, less what the
//     battery can cover above the reserve. Only one of the two is positive.
//   - A surplus of at least minOrderWh is offered for sale at the policy's
//     floor price; a shortfall of at least minOrderWh is bid for at the
//     policy's ceiling (never above it), capped at maxBuyWh.
//   - An open order that already says the same (same side and price, energy
//     within toleranceWh) is kept; any other open order of the owner for
//     that interval is cancelled, and the new one placed. So a box that
//     runs the rule twice with the same forecast does nothing the second
//     time.
// Wh and micro-currency are integers; the forecast is rounded down to whole
// Wh before it is used (an order never offers energy the forecast did not
// show).
import { assert, isSafeUint } from "../ledger/assert.js";

export interface BiddingPolicy {
  /** Sell surplus, never below this price. */
  readonly sellFloorMicroPerKWh: number;
  /** Buy shortfall, never above this price. */
  readonly buyCeilingMicroPerKWh: number;
  /** The most the box buys for one interval. */
  readonly maxBuyWh: number;
  /** Battery energy the owner keeps for itself (an outage, the evening). */
  readonly batteryReserveWh: number;
  /** Orders smaller than this are not worth a transaction. */
  readonly minOrderWh: number;
  /** An open order within this many Wh of the new plan is kept as it is. */
  readonly toleranceWh: number;
}

export interface IntervalForecast {
  readonly generationWh: number;
  readonly consumptionWh: number;
  /** The battery's charge at the interval's start, Wh (0 without a battery). */
  readonly batteryWh: number;
  /** The most the battery can deliver (or take) within the interval, Wh. */
  readonly batteryMaxFlowWh: number;
}

export interface OpenOrder {
  readonly id: string; // hex
  readonly side: "buy" | "sell";
  readonly energyWh: number;
  readonly priceMicroPerKWh: number;
}

export interface PlannedOrder {
  readonly side: "buy" | "sell";
  readonly energyWh: number;
  readonly priceMicroPerKWh: number;
}

export interface BidPlan {
  readonly cancel: readonly string[];
  readonly place: readonly PlannedOrder[];
  /** What is open for the interval once the plan is carried out: the order kept, or the one placed (null: none). */
  readonly wanted: PlannedOrder | null;
}

export function checkPolicy(p: BiddingPolicy): string[] {
  const problems: string[] = [];
  const whole = (name: keyof BiddingPolicy) => {
    if (!isSafeUint(p[name])) problems.push(`${name}: a whole number, at least 0`);
  };
  for (const k of ["sellFloorMicroPerKWh", "buyCeilingMicroPerKWh", "maxBuyWh", "batteryReserveWh", "minOrderWh", "toleranceWh"] as const) whole(k);
  if (p.minOrderWh < 1) problems.push("minOrderWh: at least 1 Wh");
  return problems;
}

/** What the owner's connection will want from the market next interval: sell (+) or buy (-) Wh, after the battery. */
export function netPosition(f: IntervalForecast, reserveWh: number): number {
  const flow = Math.max(0, Math.floor(f.batteryMaxFlowWh));
  const spare = Math.min(flow, Math.max(0, Math.floor(f.batteryWh) - reserveWh)); // what the battery can give above the reserve
  const net = Math.floor(f.generationWh) - Math.ceil(f.consumptionWh);
  if (net >= 0) return net + spare;
  return Math.min(0, net + spare);
}

export function planBids(policy: BiddingPolicy, forecast: IntervalForecast, open: readonly OpenOrder[]): BidPlan {
  assert(checkPolicy(policy).length === 0, "a checked policy");
  const net = netPosition(forecast, policy.batteryReserveWh);
  let wanted: PlannedOrder | null = null;
  if (net >= policy.minOrderWh) wanted = { side: "sell", energyWh: net, priceMicroPerKWh: policy.sellFloorMicroPerKWh };
  else if (-net >= policy.minOrderWh && policy.maxBuyWh >= policy.minOrderWh) wanted = { side: "buy", energyWh: Math.min(-net, policy.maxBuyWh), priceMicroPerKWh: policy.buyCeilingMicroPerKWh };
  const same = (o: OpenOrder) => wanted !== null && o.side === wanted.side && o.priceMicroPerKWh === wanted.priceMicroPerKWh && Math.abs(o.energyWh - wanted.energyWh) <= policy.toleranceWh;
  const kept = open.find(same);
  const cancel = open.filter((o) => o !== kept).map((o) => o.id).sort();
  const after = kept === undefined ? wanted : { side: kept.side, energyWh: kept.energyWh, priceMicroPerKWh: kept.priceMicroPerKWh };
  return { cancel, place: wanted !== null && kept === undefined ? [wanted] : [], wanted: after };
}
