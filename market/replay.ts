// `peergrid market replay <data-dir> --interval <start>`: re-derive one past
// interval from the chain and check it against what the box recorded.
//
// The re-derivation does not use the state the box kept. From the stored
// transactions alone it rebuilds what the market step (interval.ts) saw in
// the block that cleared the interval (height H, time T):
//   - the members and their roles at H: the genesis members, then every
//     accepted member transaction (enrol, remove, setRoles) below H and
//     every membership change a vote carried up to H (the ledger's
//     governance rules run on the proposal and vote transactions);
//   - the book: every accepted order for the interval placed below H, less
//     those cancelled below H, those expired at T and those whose author
//     was removed;
// then runs clear() under the genesis rule and compares the price, the
// volume and every trade with the recorded clearing, and the trades' hash
// with the one the state committed to. When the interval has been settled,
// it also runs settle() again on the recorded trades and metered energy and
// checks every transfer and the settlement's hash.
import type { Genesis } from "../ledger/genesis.js";
import { type StateAccess, applyProposal, applyVote, changeMembership, governanceStep } from "../ledger/governance.js";
import { bytesEqual } from "../ledger/assert.js";
import { PeergridError } from "../ledger/errors.js";
import { toHex } from "../ledger/hash.js";
import { GLOBAL_KEY, type GlobalRecord, type MemberRecord, type OrderRecord, type StateRecord, memberKey, tradesHash } from "../ledger/records.js";
import { resultName } from "../ledger/results.js";
import { ResultCode, genesisState, makeChain } from "../ledger/state.js";
import type { LedgerStore, StoredInterval, StoredSettlement } from "../ledger/store.js";
import { Role } from "../ledger/tx.js";
import { type ClearingResult, clear } from "./clearing.js";
import { clearingOrderOf, intervalStartOf, settlementHash, tradeOf } from "./interval.js";
import { settle } from "./settlement.js";

const ALL = 2 ** 31; // "no limit" for the store's paged queries
const ORDER_INTERVALS_AHEAD_BOUND = 10_000; // the genesis schema's most for orderIntervalsAheadMax

export interface ReplayReport {
  readonly intervalStartMs: number;
  readonly intervalStart: string; // ISO 8601
  readonly clearedAtHeight: number;
  readonly rule: string;
  readonly orders: { readonly buy: number; readonly sell: number };
  readonly recorded: { readonly priceMicroPerKWh: number | null; readonly volumeWh: number; readonly trades: number };
  readonly derived: { readonly priceMicroPerKWh: number | null; readonly volumeWh: number; readonly trades: number };
  readonly settlement: { readonly settledAtHeight: number; readonly periodEndMs: number; readonly transfers: number; readonly shadow: boolean } | null;
  readonly matches: boolean;
  readonly differences: readonly string[];
}

export class ReplayError extends PeergridError {
  constructor(message: string) {
    super("PG_ERR_REPLAY", message);
  }
}

interface MemberState {
  readonly roles: number;
  readonly active: boolean;
}

/**
 * Members and roles as of the block at `height` (before its transactions and after its governance step), from the
 * genesis and the transactions that change membership: member transactions, and proposals carried by a vote. The
 * ledger's own rules (ledger/governance.ts) run on a small replica of the state rebuilt from those transactions
 * alone, block by block: at the start of each block the votes that closed are decided and the proposals due are
 * applied; then the block's accepted member, proposal and vote transactions, in their places.
 */
function membersAt(store: LedgerStore, genesis: Genesis, height: number, timeMs: number): MemberState[] {
  const base = genesisState(makeChain(genesis)).tree;
  const changes = new Map<string, StateRecord | null>();
  const get = (key: string) => (changes.has(key) ? (changes.get(key) ?? undefined) : base.get(key));
  const access: StateAccess = {
    get: <R extends StateRecord>(key: string, kind: R["kind"]) => {
      const r = get(key);
      return r !== undefined && r.kind === kind ? (r as R) : undefined;
    },
    set: (key, rec) => void changes.set(key, rec),
  };
  const memberRecords = (): MemberRecord[] => {
    const count = (access.get<GlobalRecord>(GLOBAL_KEY, "global") as GlobalRecord).memberCount;
    return Array.from({ length: count }, (_, i) => access.get<MemberRecord>(memberKey(i), "member") as MemberRecord);
  };
  // In chain order: the store's time index orders one block's transactions by author, not by position.
  const txs = (["member", "proposal", "vote"] as const)
    .flatMap((type) => store.txsByTypeTime(type, genesis.genesisTimeMs, timeMs + 1, ALL))
    .filter((t) => t.height < height && t.result === ResultCode.ok)
    .sort((a, b) => a.height - b.height || a.index - b.index);
  // The heights whose governance step may decide or apply something: after a vote closes, and at an effective height.
  const steps = [...new Set(txs.flatMap((t) => (t.signed.tx.body.type === "proposal" ? [t.signed.tx.body.votingEndsHeight + 1, t.signed.tx.body.effectiveHeight] : [])))].sort((a, b) => a - b);
  const governanceUntil = (h: number) => {
    while (steps.length > 0 && (steps[0] as number) <= h) {
      const at = steps.shift() as number;
      const before = memberRecords(); // the electorate is the members before the block
      governanceStep(access, () => before, genesis, at, resultName);
    }
  };
  for (const t of txs) {
    governanceUntil(t.height);
    const b = t.signed.tx.body;
    const author = access.get<MemberRecord>(memberKey(t.signed.tx.author), "member");
    if (author === undefined) throw new ReplayError(`a transaction at height ${t.height} is by member ${t.signed.tx.author}, unknown at that point: the chain does not replay`);
    const code =
      b.type === "member"
        ? changeMembership(access, b)
        : b.type === "proposal"
          ? applyProposal(access, genesis, author, b, t.signed.id, t.height)
          : b.type === "vote"
            ? applyVote(access, author, b, t.height)
            : ResultCode.ok;
    if (code !== ResultCode.ok) throw new ReplayError(`the ${b.type} transaction at height ${t.height} was accepted, but replays as ${resultName(code)}: the chain does not replay`);
  }
  governanceUntil(height);
  return memberRecords().map((m) => ({ roles: m.roles, active: m.active }));
}

/** The open orders of the interval as the step saw them in the block at `height`, time `timeMs`. */
function bookAt(store: LedgerStore, genesis: Genesis, startMs: number, height: number, timeMs: number, members: readonly MemberState[]): OrderRecord[] {
  const I = genesis.market.intervalMs;
  // No order for it can be older (a vote may have raised orderIntervalsAheadMax up to the schema's bound).
  const from = Math.max(genesis.genesisTimeMs, startMs - (ORDER_INTERVALS_AHEAD_BOUND + 1) * I);
  const open = new Map<string, OrderRecord>();
  for (const t of store.txsByTypeTime("order", from, startMs, ALL)) {
    const b = t.signed.tx.body;
    if (t.height >= height || t.result !== ResultCode.ok || b.type !== "order" || b.intervalStartMs !== startMs) continue;
    const { type: _type, ...body } = b;
    open.set(toHex(t.signed.id), { kind: "order", id: t.signed.id, author: t.signed.tx.author, ...body, placedHeight: t.height });
  }
  for (const t of store.txsByTypeTime("cancel", from, timeMs + 1, ALL)) {
    const b = t.signed.tx.body;
    if (t.height < height && t.result === ResultCode.ok && b.type === "cancel") open.delete(toHex(b.orderId));
  }
  return [...open.values()].filter((o) => o.expiresAtMs > timeMs && members[o.author]?.active === true);
}

function compareClearing(recorded: StoredInterval, derived: ClearingResult, differences: string[]): void {
  if (recorded.priceMicroPerKWh !== derived.priceMicroPerKWh) differences.push(`price: recorded ${recorded.priceMicroPerKWh}, derived ${derived.priceMicroPerKWh}`);
  if (recorded.volumeWh !== derived.volumeWh) differences.push(`volume: recorded ${recorded.volumeWh} Wh, derived ${derived.volumeWh} Wh`);
  if (recorded.trades.length !== derived.trades.length) differences.push(`trades: recorded ${recorded.trades.length}, derived ${derived.trades.length}`);
  const n = Math.min(recorded.trades.length, derived.trades.length);
  for (let i = 0; i < n; i++) {
    const r = recorded.trades[i]?.trade;
    const d = derived.trades[i];
    if (r === undefined || d === undefined) continue;
    const fields = ["buyer", "seller", "energyWh", "buyerPriceMicroPerKWh", "sellerPriceMicroPerKWh"] as const;
    for (const f of fields) if (r[f] !== d[f]) differences.push(`trade ${i} ${f}: recorded ${r[f]}, derived ${d[f]}`);
    if (!bytesEqual(r.buyOrder, d.buyOrder) || !bytesEqual(r.sellOrder, d.sellOrder)) differences.push(`trade ${i} orders: recorded ${toHex(r.buyOrder)}/${toHex(r.sellOrder)}, derived ${toHex(d.buyOrder)}/${toHex(d.sellOrder)}`);
  }
  const hash = tradesHash(recorded.trades.map((t) => t.trade));
  if (!bytesEqual(hash, recorded.tradesHash)) differences.push(`the recorded trades hash to ${toHex(hash)}, not to the ${toHex(recorded.tradesHash)} the state committed to`);
}

function checkSettlement(recorded: StoredInterval, s: StoredSettlement, differences: string[]): void {
  const trades = recorded.trades.map((t) => t.trade);
  // At the tariffs the settlement names: verify re-derives those from the chain (a vote may change them).
  const again = settle(trades.map(tradeOf), new Map(s.metered.map((e) => [e.member, e])), { ...s.tariffs, islandedPermille: s.islandedPermille });
  recorded.trades.forEach((t, i) => {
    const d = again.deliveries[i]?.deliveredWh;
    if (t.deliveredWh !== d) differences.push(`trade ${i} delivered: recorded ${t.deliveredWh} Wh, derived ${d} Wh`);
  });
  const same = (a: (typeof again.transfers)[number] | undefined, b: (typeof again.transfers)[number] | undefined) =>
    a !== undefined && b !== undefined && a.from === b.from && a.to === b.to && a.amountMicro === b.amountMicro && a.why === b.why && a.trade === b.trade;
  if (again.transfers.length !== s.transfers.length) differences.push(`settlement transfers: recorded ${s.transfers.length}, derived ${again.transfers.length}`);
  else again.transfers.forEach((t, i) => same(t, s.transfers[i]) || differences.push(`settlement transfer ${i}: recorded ${JSON.stringify(s.transfers[i])}, derived ${JSON.stringify(t)}`));
  const hash = settlementHash({ ...s, trades, deliveredWh: again.deliveries.map((d) => d.deliveredWh), transfers: again.transfers });
  if (!bytesEqual(hash, s.hash)) differences.push(`the settlement hashes to ${toHex(hash)}, not to the recorded ${toHex(s.hash)}`);
}

/** Re-derive the interval starting at startMs from the chain in `store` and compare it with the recorded one. */
export function replayInterval(store: LedgerStore, startMs: number): ReplayReport {
  const genesis = store.chain.genesis;
  const I = genesis.market.intervalMs;
  const from = store.historyFrom();
  if (from > 0) {
    // Replay rebuilds the members and the order book from every transaction since genesis: with a gap it would
    // report a wrong book, or blame the chain, rather than its own missing history.
    throw new ReplayError(`this box caught up from a peer's checkpoint of the state after block ${from} and does not hold the history before it; replay on a box that holds the chain from genesis`);
  }
  if (intervalStartOf(startMs, I) !== startMs) {
    throw new ReplayError(`${new Date(startMs).toISOString()} is not the start of a market interval (intervals are ${I / 60_000} minutes; try ${new Date(intervalStartOf(startMs, I)).toISOString()})`);
  }
  const recorded = store.marketInterval(startMs);
  if (recorded === null) {
    const last = store.marketIntervals(Number.MAX_SAFE_INTEGER, 1)[0];
    throw new ReplayError(
      `no clearing of the interval starting ${new Date(startMs).toISOString()} is recorded on this chain` +
        (last === undefined ? " (no interval has been cleared yet)" : ` (the last cleared interval starts ${new Date(last.startMs).toISOString()})`),
    );
  }
  const block = store.header(recorded.height);
  if (block === null) throw new ReplayError(`the clearing block ${recorded.height} is not in this store`);
  const timeMs = block.header.timeMs;
  const members = membersAt(store, genesis, recorded.height, timeMs);
  const book = bookAt(store, genesis, startMs, recorded.height, timeMs, members);
  const derived = clear(book.map(clearingOrderOf), {
    rule: recorded.rule, // a vote may change the rule; verify re-derives the recorded one from the chain
    isLocalRenewable: (a) => members[a]?.active === true && ((members[a]?.roles ?? 0) & Role.renewable) !== 0,
  });
  const differences: string[] = [];
  compareClearing(recorded, derived, differences);
  const settled = store.settlementOfInterval(startMs);
  if (settled !== null) checkSettlement(recorded, settled, differences);
  return {
    intervalStartMs: startMs,
    intervalStart: new Date(startMs).toISOString(),
    clearedAtHeight: recorded.height,
    rule: recorded.rule,
    orders: { buy: book.filter((o) => o.side === "buy").length, sell: book.filter((o) => o.side === "sell").length },
    recorded: { priceMicroPerKWh: recorded.priceMicroPerKWh, volumeWh: recorded.volumeWh, trades: recorded.trades.length },
    derived: { priceMicroPerKWh: derived.priceMicroPerKWh, volumeWh: derived.volumeWh, trades: derived.trades.length },
    settlement: settled === null ? null : { settledAtHeight: settled.height, periodEndMs: settled.periodEndMs, transfers: settled.transfers.length, shadow: settled.shadow },
    matches: differences.length === 0,
    differences,
  };
}

/** An interval start given as epoch milliseconds or an ISO 8601 time. */
export function parseIntervalStart(text: string): number {
  if (/^\d+$/.test(text)) return Number(text);
  const ms = Date.parse(text);
  if (!/^\d{4}-\d{2}-\d{2}T/.test(text) || Number.isNaN(ms)) throw new ReplayError(`--interval "${text}" is neither epoch milliseconds nor an ISO 8601 time such as 2026-06-21T12:15:00Z`);
  return ms;
}
