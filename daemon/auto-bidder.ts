// Automatic bidding, run by the box for its owner: the shell around the pure
// rule of market/auto-bid.ts (planBids). Each time the box applies the block
// that enters a market interval S (ApplyResult.market !== null), it plans
// the owner's orders for the next interval, S + intervalMs, and signs and
// submits the cancels and the order the rule asks for. Orders for S itself
// are too late by then: S cleared in that very block.
//
// The forecast is persistence: the next interval looks like the period that
// just settled, from this member's metered energy in that block's settlement
// (outcome.settlement.metered): generation = its exportWh, consumption = its
// importWh. Both are net at the connection point (what the meters saw), so
// the surplus is what the owner exported beyond what it imported. A period
// longer than an interval (the ledger stood still) is scaled down to one
// interval; a sell is capped at the genesis orderEnergyMaxWh. No battery
// device exists yet, so batteryWh = batteryMaxFlowWh = 0 and the policy's
// batteryReserveWh has no effect until one does. No plan is made when the
// member has no metered entry yet (no meter of this box has read good), or
// when one of its meters was silent in the period (its energy is not known
// yet; forecasting zero from it would cancel good orders): status() says so.
//
// Where transactions go: node.submit, the path every transaction takes. Any
// box may submit: a follower pools the transaction and forwards it to the
// Raft leader (daemon/node.ts submit), so the bidder runs on every box, for
// that box's own member, whoever leads.
//
// Sequence numbers: the orders are signed by the box's key, as its readings
// are, so they take their numbers from the box's one BoxSequence
// (daemon/box-sequence.ts), which BoxMeters shares: one submission at a
// time, each with the next number, so neither takes the other's.
//
// Cancels go first; the order is placed only once every cancelled order is
// gone from the ledger (waiting at most CANCEL_WAIT_MS, never past the
// target interval's start). A cancel the pool refuses, or one it took but
// that never commits (a leader that fails before its block), leaves the old
// order open, and a new one beside it could sell or buy the same energy
// twice: then nothing is placed, and the run is counted.
//
// Limits: one run at a time; a boundary arriving while a run is in flight
// waits, and a newer boundary replaces a waiting one (counted). A run makes
// at most the member's open orders for one interval in cancels (bounded by
// the genesis openOrdersPerMemberMax) plus one order. Submitted transactions
// are followed to their block for at most PENDING_TXS_MAX at once.
// Boundaries replayed after a restart (the target interval already begun on
// this box's clock) are skipped: the ledger would refuse their orders.
import { type Static, type TInteger, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { assert, isSafeUint } from "../ledger/assert.js";
import { ConfigError } from "../ledger/errors.js";
import type { MarketParams } from "../ledger/genesis.js";
import { type Hash, parseHex, toHex } from "../ledger/hash.js";
import { type LedgerState, ResultCode, resultName } from "../ledger/state.js";
import { ENERGY_WH_MAX, ORDER_ENERGY_WH_MAX, PRICE_MICRO_PER_KWH_MAX, type TxBody } from "../ledger/tx.js";
import { type BiddingPolicy, type BidPlan, type IntervalForecast, type OpenOrder, type PlannedOrder, checkPolicy, planBids } from "../market/auto-bid.js";
import type { MarketOutcome, MeteredMember } from "../market/interval.js";
import type { BoxSequence } from "./box-sequence.js";
import type { BoxNode, NodeLog, SubmitOutcome } from "./node.js";

/** How long a run waits for its cancels to commit before it gives up placing (blocks come every second). */
export const CANCEL_WAIT_MS = 15_000;
/** Submitted transactions followed to their block; the oldest is forgotten beyond this. */
export const PENDING_TXS_MAX = 256;

// ---------------------------------------------------------------- the policy file

const Whole = (minimum: number, maximum: number, description: string) => Type.Integer({ minimum, maximum, description });

/** `--auto-bid <policy.json>`: one schema for the type, the validation and the messages. */
export const BiddingPolicySchema = Type.Object(
  {
    sellFloorMicroPerKWh: Whole(0, PRICE_MICRO_PER_KWH_MAX, "micro-currency per kWh: surplus is offered at this price, never lower"),
    buyCeilingMicroPerKWh: Whole(0, PRICE_MICRO_PER_KWH_MAX, "micro-currency per kWh: shortfall is bid for at this price, never higher"),
    maxBuyWh: Whole(0, ORDER_ENERGY_WH_MAX, "the most Wh bought for one interval (0: never buy)"),
    batteryReserveWh: Type.Optional(Whole(0, ENERGY_WH_MAX, "battery Wh kept for the owner (default 0; no battery is read yet)")),
    minOrderWh: Type.Optional(Whole(1, ORDER_ENERGY_WH_MAX, "orders smaller than this are not placed (default 1)")),
    toleranceWh: Type.Optional(Whole(0, ORDER_ENERGY_WH_MAX, "an open order within this many Wh of the plan is kept (default 0)")),
  },
  { additionalProperties: false },
);

export const POLICY_DEFAULTS = { batteryReserveWh: 0, minOrderWh: 1, toleranceWh: 0 } as const;

const FIELDS = Object.keys(BiddingPolicySchema.properties) as (keyof typeof BiddingPolicySchema.properties)[];

/**
 * Validate a policy file's JSON; `source` names the file in the message. Throws ConfigError
 * (PG_ERR_CONFIG) naming every wrong field and what it wants.
 */
export function parseBiddingPolicy(json: unknown, source: string): BiddingPolicy {
  const what = `auto-bid policy ${source}`;
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ConfigError(what, [`the document: wants an object of policy fields (${FIELDS.join(", ")})`]);
  }
  const given = json as Record<string, unknown>;
  const problems = new Map<string, string>(); // one per field: the first thing wrong with it
  for (const e of Value.Errors(BiddingPolicySchema, json)) {
    const field = e.path.split("/")[1] ?? "";
    if (problems.has(field)) continue;
    const spec = (BiddingPolicySchema.properties as Record<string, TInteger | undefined>)[field];
    if (spec === undefined) {
      problems.set(field, `${field}: not a policy field (the fields: ${FIELDS.join(", ")})`);
      continue;
    }
    const got = field in given ? `got ${JSON.stringify(given[field])}` : "missing";
    problems.set(field, `${field}: ${got}; wants a whole number from ${spec.minimum} to ${spec.maximum}, ${spec.description}`);
  }
  if (problems.size > 0) throw new ConfigError(what, [...problems.values()]);
  const policy: BiddingPolicy = { ...POLICY_DEFAULTS, ...(json as Static<typeof BiddingPolicySchema>) };
  const rules = checkPolicy(policy);
  if (policy.maxBuyWh > 0 && policy.maxBuyWh < policy.minOrderWh) {
    rules.push(`maxBuyWh: ${policy.maxBuyWh} is below minOrderWh ${policy.minOrderWh}, so the box would never buy; set 0 to say so, or raise it`);
  }
  if (rules.length > 0) throw new ConfigError(what, rules);
  return policy;
}

/** What this chain's market lets an order be (genesis), against the policy. */
export function policyProblemsOnChain(p: BiddingPolicy, m: MarketParams): string[] {
  const problems: string[] = [];
  const price = (name: "sellFloorMicroPerKWh" | "buyCeilingMicroPerKWh") => {
    if (p[name] < m.priceMinMicroPerKWh || p[name] > m.priceMaxMicroPerKWh) {
      problems.push(`${name}: ${p[name]} is outside this chain's order prices, ${m.priceMinMicroPerKWh} to ${m.priceMaxMicroPerKWh} (genesis market)`);
    }
  };
  price("sellFloorMicroPerKWh");
  if (p.maxBuyWh > 0) price("buyCeilingMicroPerKWh");
  for (const name of ["maxBuyWh", "minOrderWh"] as const) {
    if (p[name] > m.orderEnergyMaxWh) problems.push(`${name}: ${p[name]} is above this chain's largest order, ${m.orderEnergyMaxWh} Wh (genesis orderEnergyMaxWh)`);
  }
  return problems;
}

// ---------------------------------------------------------------- the plan (pure)

/** The next interval like the period that settled: its energy, scaled to one interval, a sell capped at energyMaxWh. */
export function persistenceForecast(m: MeteredMember, periodMs: number, intervalMs: number, energyMaxWh: number): IntervalForecast {
  assert(periodMs > 0 && intervalMs > 0 && isSafeUint(m.importWh) && isSafeUint(m.exportWh), "a settled period's whole Wh");
  const perInterval = (wh: number): number => (periodMs <= intervalMs ? wh : Number((BigInt(wh) * BigInt(intervalMs)) / BigInt(periodMs))); // rounded down
  const consumptionWh = perInterval(m.importWh);
  const generationWh = Math.min(perInterval(m.exportWh), consumptionWh + energyMaxWh);
  assert(generationWh <= m.exportWh && consumptionWh <= m.importWh, "a forecast never shows more than was metered");
  return { generationWh, consumptionWh, batteryWh: 0, batteryMaxFlowWh: 0 };
}

/** The member's open orders for one interval, as the ledger holds them (a walk over every record). */
export function openOrdersOf(state: LedgerState, member: number, intervalStartMs: number): OpenOrder[] {
  const open: OpenOrder[] = [];
  for (const { value: r } of state.tree.entries()) {
    if (r.kind !== "order" || r.author !== member || r.intervalStartMs !== intervalStartMs) continue;
    open.push({ id: toHex(r.id), side: r.side, energyWh: r.energyWh, priceMicroPerKWh: r.priceMicroPerKWh });
  }
  return open;
}

export type IntervalPlan =
  | { readonly kind: "plan"; readonly targetStartMs: number; readonly expiresAtMs: number; readonly forecast: IntervalForecast; readonly plan: BidPlan }
  | { readonly kind: "noMeteredEnergy" | "metersSilent"; readonly targetStartMs: number };

/**
 * What the member should have open for the interval after the boundary `outcome` entered, given the ledger
 * `state`. `open` is the member's open orders for that interval (default: a walk of the state; the
 * simulator, planning for every member at once, walks it once for all).
 */
export function planInterval(state: LedgerState, outcome: MarketOutcome, member: number, policy: BiddingPolicy, open?: readonly OpenOrder[]): IntervalPlan {
  const m = state.chain.genesis.market;
  const targetStartMs = outcome.boundaryMs + m.intervalMs;
  assert(outcome.boundaryMs % m.intervalMs === 0 && outcome.settlement.periodEndMs === outcome.boundaryMs, "a boundary settles the period up to it");
  const metered = outcome.settlement.metered.find((e) => e.member === member);
  if (metered === undefined) return { kind: "noMeteredEnergy", targetStartMs };
  if (metered.silentMeters > 0) return { kind: "metersSilent", targetStartMs };
  const { periodStartMs, periodEndMs } = outcome.settlement;
  const forecast = persistenceForecast(metered, periodEndMs - periodStartMs, m.intervalMs, m.orderEnergyMaxWh);
  const plan = planBids(policy, forecast, open ?? openOrdersOf(state, member, targetStartMs));
  // Valid per the ledger's applyOrder until the target interval clears: it is after the current one, and
  // expires only when the target ends (an order expiring at its start would be closed unmatched).
  return { kind: "plan", targetStartMs, expiresAtMs: targetStartMs + m.intervalMs, forecast, plan };
}

// ---------------------------------------------------------------- the shell

export interface AutoBidCounters {
  /** Boundaries planned for (a plan made, even one with nothing to do). */
  runs: number;
  /** Boundaries with no plan: no metered entry, a silent meter, or too late (replayed). */
  runsSkipped: number;
  /** Boundaries dropped for a newer one while a run was in flight. */
  runsReplaced: number;
  ordersSubmitted: number;
  cancelsSubmitted: number;
  /** Runs that placed nothing because a cancel they submitted did not commit in time. */
  cancelsUnconfirmed: number;
  /** Committed and accepted by the ledger. */
  ordersPlaced: number;
  ordersCancelled: number;
  /** Refused by node.submit (or submit failed). */
  refused: number;
  /** Committed with a result other than ok (the ledger's verdict). */
  failed: number;
}

export type LastRun =
  | { readonly kind: "planned"; readonly boundaryMs: number; readonly targetStartMs: number; readonly forecast: IntervalForecast; readonly cancel: number; readonly place: number; readonly wanted: PlannedOrder | null }
  | { readonly kind: "noMeteredEnergy" | "metersSilent" | "late"; readonly boundaryMs: number; readonly targetStartMs: number };

/** What the HTTP API will show. */
export interface AutoBidStatus {
  readonly member: number;
  readonly policy: BiddingPolicy;
  readonly counters: AutoBidCounters;
  readonly lastError: string | null;
  /** null: no interval boundary applied since the box started. */
  readonly lastRun: LastRun | null;
}

/** What the bidder needs of a box's node. */
export type BidderNode = Pick<BoxNode, "ledger" | "onBlock" | "submit">;

export interface AutoBidderOptions {
  /** The wall clock (ms since the epoch); the node's, if a test skews it. */
  readonly now?: () => number;
  readonly log?: NodeLog;
  /** How long a run waits for its cancels to commit (default CANCEL_WAIT_MS). */
  readonly cancelWaitMs?: number;
}

export class AutoBidder {
  readonly member: number;
  readonly counters: AutoBidCounters = { runs: 0, runsSkipped: 0, runsReplaced: 0, ordersSubmitted: 0, cancelsSubmitted: 0, cancelsUnconfirmed: 0, ordersPlaced: 0, ordersCancelled: 0, refused: 0, failed: 0 };
  private lastError: string | null = null;
  private lastRun: LastRun | null = null;
  private readonly pending = new Map<string, "order" | "cancel">(); // hex id -> what it is, until its block
  private running: Promise<void> | null = null;
  private waiting: MarketOutcome | null = null;
  private stopped = false;
  private readonly unsubscribe: () => void;
  private readonly now: () => number;
  private readonly cancelWaitMs: number;
  private readonly log: NodeLog;

  /** Throws ConfigError when the policy asks for orders this chain cannot take, or the signer is no member. */
  constructor(
    private readonly node: BidderNode,
    private readonly sequence: BoxSequence,
    readonly policy: BiddingPolicy,
    options: AutoBidderOptions = {},
  ) {
    const problems = [...checkPolicy(policy), ...policyProblemsOnChain(policy, node.ledger.state.chain.genesis.market)];
    if (problems.length > 0) throw new ConfigError("auto-bid policy", problems);
    this.member = sequence.author;
    this.now = options.now ?? Date.now;
    this.cancelWaitMs = options.cancelWaitMs ?? CANCEL_WAIT_MS;
    this.log = options.log ?? (() => {});
    this.unsubscribe = node.onBlock((block, result) => {
      if (this.pending.size > 0) this.noteCommitted(block.txs.map((t) => toHex(t.id)), result.results);
      if (result.market !== null && !this.stopped) this.schedule(result.market);
    });
  }

  status(): AutoBidStatus {
    return { member: this.member, policy: this.policy, counters: { ...this.counters }, lastError: this.lastError, lastRun: this.lastRun };
  }

  /** Stop taking boundaries; resolves when the run in flight is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe();
    this.waiting = null;
    await this.running;
  }

  /** Called from the node's block listener: must never throw, and never wait there. */
  private schedule(outcome: MarketOutcome): void {
    if (this.running !== null) {
      if (this.waiting !== null) this.counters.runsReplaced++;
      this.waiting = outcome;
      return;
    }
    this.running = this.drain(outcome);
  }

  private async drain(first: MarketOutcome): Promise<void> {
    let next: MarketOutcome | null = first;
    while (next !== null && !this.stopped) {
      try {
        await this.runFor(next);
      } catch (err) {
        this.noteError(`auto-bid run failed: ${err instanceof Error ? err.message : String(err)}`);
      }
      next = this.waiting;
      this.waiting = null;
    }
    this.running = null;
  }

  /**
   * Plan for the interval after the boundary `outcome` entered, against the ledger as it is now, and
   * submit what the plan says. Run by the block listener; a test may call it again.
   */
  async runFor(outcome: MarketOutcome): Promise<LastRun> {
    const state = this.node.ledger.state;
    const p = planInterval(state, outcome, this.member, this.policy);
    const at = { boundaryMs: outcome.boundaryMs, targetStartMs: p.targetStartMs };
    if (p.kind !== "plan" || p.targetStartMs <= this.now()) {
      this.counters.runsSkipped++;
      return this.noteRun({ kind: p.kind === "plan" ? "late" : p.kind, ...at });
    }
    this.counters.runs++;
    const { plan } = p;
    let cancelsRefused = 0;
    for (const id of plan.cancel) {
      if (!(await this.submit({ type: "cancel", orderId: parseHex(id, 32) as Hash }))) cancelsRefused++;
    }
    // An order placed beside one that could not be cancelled could sell (or buy) the same energy twice:
    // place only once every cancelled order is gone from the ledger (a cancel the pool took can still be
    // lost, e.g. with a leader that fails before its block).
    const gone = cancelsRefused === 0 && (await this.cancelledGone(plan.cancel, p.targetStartMs));
    if (!gone && cancelsRefused === 0) {
      this.counters.cancelsUnconfirmed++;
      this.noteError(`auto-bid: the cancel of ${plan.cancel.length} order(s) was not committed in time; nothing placed for the interval starting ${new Date(p.targetStartMs).toISOString()}`);
    }
    for (const o of gone ? plan.place : []) {
      const body = { type: "order", side: o.side, energyWh: o.energyWh, priceMicroPerKWh: o.priceMicroPerKWh, intervalStartMs: p.targetStartMs, expiresAtMs: p.expiresAtMs, flags: 0, counterparty: null } as const;
      await this.submit(body);
    }
    const run: LastRun = { kind: "planned", ...at, forecast: p.forecast, cancel: plan.cancel.length, place: plan.place.length, wanted: plan.wanted };
    if (plan.cancel.length + plan.place.length > 0) this.log("info", "auto-bid", { ...run });
    return this.noteRun(run);
  }

  /** Wait (polling the ledger) until none of these orders is open, at most cancelWaitMs and never past the target interval's start. */
  private async cancelledGone(ids: readonly string[], targetStartMs: number): Promise<boolean> {
    const open = () => ids.some((id) => this.node.ledger.state.tree.get(`o/${id}`) !== undefined);
    const deadline = Date.now() + this.cancelWaitMs;
    while (open()) {
      if (Date.now() >= deadline || this.now() >= targetStartMs || this.stopped) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
  }

  private noteRun(run: LastRun): LastRun {
    this.lastRun = run;
    return run;
  }

  /** Sign and submit one transaction with the box's next sequence number. False: refused (counted). */
  private async submit(body: Extract<TxBody, { type: "order" | "cancel" }>): Promise<boolean> {
    let out: SubmitOutcome;
    try {
      out = (await this.sequence.submit(body)).out;
    } catch (err) {
      out = { ok: false, id: "", code: "PG_ERR_SUBMIT", message: err instanceof Error ? err.message : String(err) };
    }
    if (!out.ok) {
      this.counters.refused++;
      this.noteError(`${body.type} refused: ${out.code}: ${out.message}`);
      return false;
    }
    if (body.type === "order") this.counters.ordersSubmitted++;
    else this.counters.cancelsSubmitted++;
    this.pending.set(out.id, body.type);
    if (this.pending.size > PENDING_TXS_MAX) this.pending.delete(this.pending.keys().next().value as string);
    return true;
  }

  private noteCommitted(ids: readonly string[], results: readonly number[]): void {
    ids.forEach((id, i) => {
      const what = this.pending.get(id);
      if (what === undefined) return;
      this.pending.delete(id);
      const code = results[i] as number;
      if (code === ResultCode.ok) {
        if (what === "order") this.counters.ordersPlaced++;
        else this.counters.ordersCancelled++;
        return;
      }
      this.counters.failed++;
      this.noteError(`${what} ${id.slice(0, 16)}… committed as ${resultName(code)}`);
    });
  }

  private noteError(message: string): void {
    this.lastError = message;
    this.log("warn", "auto-bid", { error: message });
  }
}
