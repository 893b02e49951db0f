// State records: what the ledger state machine keeps, under which key, and
// the canonical encoding each leaf of the state tree commits to.
//
//   g                     GlobalRecord   member count, active admins and boxes
//   m/<member>            MemberRecord   key, roles, active, last sequence
//   k/<public key hex>    KeyRecord      public key -> member index
//   r/<member>/<meter>    MeterRecord    latest reading and last good counters
//   o/<order id hex>      OrderRecord    an open order
//   x                     MarketRecord   the last clearing and settlement (hashes of their lists)
//   t/<interval>/<n>      TradeRecord    a trade of the last cleared interval, until it is settled
//   b/<account>           BalanceRecord  a member's (or the utility's, the community's) balance
//   s/<premise>/<breaker> BreakerRecord  a premise's breaker as last switched by the controller
//   p/<proposal id hex>   ProposalRecord a governance proposal, its tally and fate
//   v/<proposal>/<member> VoteRecord     one member's vote
//   gov                   GovernanceRecord the proposals still open or waiting to apply
//   c                     CriticalLoadsRecord the voted critical-load priority list
//   mp                    MarketParamsRecord the market parameters once a vote changed them
import { assertNever } from "./assert.js";
import { Reader, Writer } from "./codec.js";
import { DecodeReason } from "./errors.js";
import { HASH_BYTES, type Hash, HashTag, hashTagged, toHex } from "./hash.js";
import { type MarketParams, decodeMarketParams, encodeMarketParams } from "./genesis.js";
import {
  AUTHOR_MAX,
  BreakerState,
  type BreakerStateName,
  CRITICAL_LOADS_MAX,
  type ProposalAction,
  decodeProposalAction,
  encodeProposalAction,
  ENERGY_WH_MAX,
  MEMBER_NAME_BYTES_MAX,
  ORDER_ENERGY_WH_MAX,
  OrderSide,
  type OrderSideName,
  POWER_W_ABS_MAX,
  PRICE_MICRO_PER_KWH_MAX,
  PUBLIC_KEY_BYTES,
  SEQ_MAX,
  TIME_MS_MAX,
  decodeMeasurement,
  encodeMeasurement,
} from "./tx.js";

export interface GlobalRecord {
  readonly kind: "global";
  readonly memberCount: number; // next member index
  readonly activeAdmins: number;
  readonly activeBoxes: number;
  /** Island state (island transactions): since when the microgrid runs without the utility (-1: connected). */
  readonly islandedSinceMs: number;
  /** Islanded time in the current settlement period before islandedSinceMs (market/interval.ts prorates by it). */
  readonly islandedMsInPeriod: number;
  /** The time of the last island transition (-1: none). */
  readonly islandChangeMs: number;
}

export interface MemberRecord {
  readonly kind: "member";
  readonly index: number;
  readonly publicKey: Uint8Array;
  readonly roles: number;
  readonly active: boolean;
  readonly name: string;
  readonly lastSeq: number; // 0 before the first transaction
  readonly openOrders: number;
}

export interface KeyRecord {
  readonly kind: "key";
  readonly member: number;
}

export interface MeterRecord {
  readonly kind: "meter";
  readonly author: number;
  readonly meterId: number;
  readonly readingCount: number;
  // latest reading, whatever its quality
  readonly timeMs: number;
  readonly importWh: number;
  readonly exportWh: number;
  readonly powerW: number;
  readonly voltagesDeciV: readonly number[];
  readonly frequencyMilliHz: number;
  readonly quality: number;
  // last reading of good quality: the baseline for counter checks (-1 = none yet)
  readonly goodTimeMs: number;
  readonly goodImportWh: number;
  readonly goodExportWh: number;
  // the good counters when the last settlement took this meter's energy (the first good reading's before that)
  readonly settledImportWh: number;
  readonly settledExportWh: number;
}

export interface OrderRecord {
  readonly kind: "order";
  readonly id: Hash;
  readonly author: number;
  readonly side: OrderSideName;
  readonly energyWh: number;
  readonly priceMicroPerKWh: number;
  readonly intervalStartMs: number;
  readonly expiresAtMs: number;
  readonly flags: number;
  readonly counterparty: number | null;
  readonly placedHeight: number;
}

/**
 * The market's latest clearing and settlement (market/interval.ts). Absent until the first interval
 * boundary. The hashes commit to the full lists, which the store keeps (ledger/store.ts market tables).
 */
export interface MarketRecord {
  readonly kind: "market";
  /** The last interval cleared (-1: none yet) and its result. */
  readonly clearedStartMs: number;
  readonly priceMicroPerKWh: number | null; // the uniform price; null when nothing crossed, or pay-as-bid
  readonly volumeWh: number;
  readonly tradeCount: number;
  readonly tradesHash: Hash; // tradesHash() of its trades
  /** The end of the last settled period: metered energy up to here is settled. */
  readonly settledEndMs: number;
  readonly settlementHash: Hash; // settlementHash() of the last settlement
}

/** What one trade of a clearing (market/clearing.ts) agreed: the two orders, who, how much, at what prices. */
export interface TradeTerms {
  readonly buyOrder: Hash;
  readonly sellOrder: Hash;
  readonly buyer: number;
  readonly seller: number;
  readonly energyWh: number;
  /** The price the buyer pays per kWh (the uniform price, or its own limit under pay-as-bid). */
  readonly buyerPriceMicroPerKWh: number;
  /** The price the seller receives per kWh (the uniform price, or its own limit under pay-as-bid). */
  readonly sellerPriceMicroPerKWh: number;
}

/** A trade of the last cleared interval, kept until that interval is settled. */
export interface TradeRecord extends TradeTerms {
  readonly kind: "trade";
  readonly intervalStartMs: number;
  readonly index: number; // clearing order
}

export const UTILITY_ACCOUNT = "utility";
export const COMMUNITY_ACCOUNT = "community";
export type AccountName = number | typeof UTILITY_ACCOUNT | typeof COMMUNITY_ACCOUNT;

/** An account's running balance, micro-currency (+ is owed to the account). */
export interface BalanceRecord {
  readonly kind: "balance";
  readonly account: AccountName;
  readonly balanceMicro: number;
}

/** A premise's breaker as the microgrid controller last switched it (switch transactions). */
export interface BreakerRecord {
  readonly kind: "breaker";
  readonly premise: number;
  readonly breaker: number;
  readonly commandedClose: boolean;
  readonly readback: BreakerStateName;
  readonly changeMs: number; // the last command's time
  readonly operations: number; // commands so far
}

export type ProposalStatus = "open" | "accepted" | "rejected" | "applied" | "failed";
const PROPOSAL_STATUSES: readonly ProposalStatus[] = ["open", "accepted", "rejected", "applied", "failed"];

/** A governance proposal (ledger/governance.ts): what it would do, its votes so far, its fate. */
export interface ProposalRecord {
  readonly kind: "proposal";
  readonly id: Hash;
  readonly author: number;
  readonly action: ProposalAction;
  readonly createdHeight: number;
  readonly votingEndsHeight: number;
  readonly effectiveHeight: number;
  readonly yes: number;
  readonly no: number;
  /** Members entitled to vote when voting closed (0 while open). */
  readonly electorate: number;
  readonly status: ProposalStatus;
  /** Why an accepted proposal failed to apply (a result name), "" otherwise. */
  readonly outcome: string;
}

/** One member's vote on one proposal (one member, one vote). */
export interface VoteRecord {
  readonly kind: "vote";
  readonly proposal: Hash;
  readonly member: number;
  readonly approve: boolean;
}

/** The proposals still to decide or to apply, in the order they were made. */
export interface GovernanceRecord {
  readonly kind: "governance";
  readonly open: readonly Hash[];
}

/** The community's critical premises in priority order (first = most critical), as last voted. */
export interface CriticalLoadsRecord {
  readonly kind: "criticalLoads";
  readonly premises: readonly number[];
  readonly sinceHeight: number;
}

/** The market parameters in force, once a vote has changed the genesis ones. */
export interface MarketParamsRecord {
  readonly kind: "marketParams";
  readonly params: MarketParams;
  readonly sinceHeight: number;
}

export type StateRecord =
  | GlobalRecord
  | MemberRecord
  | KeyRecord
  | MeterRecord
  | OrderRecord
  | MarketRecord
  | TradeRecord
  | BalanceRecord
  | BreakerRecord
  | ProposalRecord
  | VoteRecord
  | GovernanceRecord
  | CriticalLoadsRecord
  | MarketParamsRecord;

export const GLOBAL_KEY = "g";
export const memberKey = (member: number): string => `m/${member}`;
export const publicKeyKey = (publicKey: Uint8Array): string => `k/${toHex(publicKey)}`;
export const meterKey = (author: number, meterId: number): string => `r/${author}/${meterId}`;
export const orderKey = (id: Hash): string => `o/${toHex(id)}`;
export const MARKET_KEY = "x";
export const tradeKey = (intervalStartMs: number, index: number): string => `t/${intervalStartMs}/${index}`;
export const balanceKey = (account: AccountName): string => `b/${account}`;
export const breakerKey = (premise: number, breaker: number): string => `s/${premise}/${breaker}`;
export const proposalKey = (id: Hash): string => `p/${toHex(id)}`;
export const voteKey = (proposal: Hash, member: number): string => `v/${toHex(proposal)}/${member}`;
export const GOVERNANCE_KEY = "gov";
export const CRITICAL_LOADS_KEY = "c";
export const MARKET_PARAMS_KEY = "mp";

const RecordKind = {
  global: 1, member: 2, key: 3, meter: 4, order: 5, market: 6, trade: 7, balance: 8, breaker: 9,
  proposal: 10, vote: 11, governance: 12, criticalLoads: 13, marketParams: 14,
} as const;

/** Accounts on the wire: 0 the utility, 1 the community, member n as n + 2. */
export function accountCode(a: AccountName): number {
  return a === UTILITY_ACCOUNT ? 0 : a === COMMUNITY_ACCOUNT ? 1 : a + 2;
}

function accountOf(code: number): AccountName {
  return code === 0 ? UTILITY_ACCOUNT : code === 1 ? COMMUNITY_ACCOUNT : code - 2;
}

/** The most a balance may hold, either way: what svar encodes exactly. */
export const BALANCE_MICRO_ABS_MAX = 2 ** 51;

export function encodeRecord(rec: StateRecord): Uint8Array {
  const w = new Writer(64);
  w.u8(RecordKind[rec.kind]);
  switch (rec.kind) {
    case "global":
      w.uvar(rec.memberCount).uvar(rec.activeAdmins).uvar(rec.activeBoxes).svar(rec.islandedSinceMs).uvar(rec.islandedMsInPeriod).svar(rec.islandChangeMs);
      break;
    case "member":
      w.uvar(rec.index).fixed(rec.publicKey, PUBLIC_KEY_BYTES).u8(rec.roles).bool(rec.active);
      w.str(rec.name, MEMBER_NAME_BYTES_MAX).uvar(rec.lastSeq).uvar(rec.openOrders);
      break;
    case "key":
      w.uvar(rec.member);
      break;
    case "meter":
      w.uvar(rec.author).uvar(rec.meterId).uvar(rec.readingCount).uvar(rec.timeMs);
      encodeMeasurement(w, rec);
      w.svar(rec.goodTimeMs).uvar(rec.goodImportWh).uvar(rec.goodExportWh).uvar(rec.settledImportWh).uvar(rec.settledExportWh);
      break;
    case "order":
      w.fixed(rec.id, HASH_BYTES).uvar(rec.author).u8(OrderSide[rec.side]).uvar(rec.energyWh);
      w.uvar(rec.priceMicroPerKWh).uvar(rec.intervalStartMs).uvar(rec.expiresAtMs).u8(rec.flags);
      w.uvar(rec.counterparty === null ? 0 : rec.counterparty + 1).uvar(rec.placedHeight);
      break;
    case "market":
      w.svar(rec.clearedStartMs).uvar(rec.priceMicroPerKWh === null ? 0 : rec.priceMicroPerKWh + 1).uvar(rec.volumeWh).uvar(rec.tradeCount);
      w.fixed(rec.tradesHash, HASH_BYTES).uvar(rec.settledEndMs).fixed(rec.settlementHash, HASH_BYTES);
      break;
    case "trade":
      encodeTrade(w, rec);
      break;
    case "balance":
      w.uvar(accountCode(rec.account)).svar(rec.balanceMicro);
      break;
    case "breaker":
      w.uvar(rec.premise).u8(rec.breaker).bool(rec.commandedClose).u8(BreakerState[rec.readback]).uvar(rec.changeMs).uvar(rec.operations);
      break;
    case "proposal":
      w.fixed(rec.id, HASH_BYTES).uvar(rec.author);
      encodeProposalAction(w, rec.action);
      w.uvar(rec.createdHeight).uvar(rec.votingEndsHeight).uvar(rec.effectiveHeight).uvar(rec.yes).uvar(rec.no).uvar(rec.electorate);
      w.u8(PROPOSAL_STATUSES.indexOf(rec.status)).str(rec.outcome, 64);
      break;
    case "vote":
      w.fixed(rec.proposal, HASH_BYTES).uvar(rec.member).bool(rec.approve);
      break;
    case "governance":
      w.uvar(rec.open.length);
      for (const id of rec.open) w.fixed(id, HASH_BYTES);
      break;
    case "criticalLoads":
      w.uvar(rec.premises.length);
      for (const p of rec.premises) w.uvar(p);
      w.uvar(rec.sinceHeight);
      break;
    case "marketParams":
      encodeMarketParams(w, rec.params);
      w.uvar(rec.sinceHeight);
      break;
    default:
      assertNever(rec, "state record");
  }
  return w.finish();
}

/** Decode a stored record (used when a box reopens its store). */
export function decodeRecord(bytes: Uint8Array): StateRecord {
  const r: Reader = new Reader(bytes);
  const kind = r.u8("record kind");
  let rec: StateRecord;
  switch (kind) {
    case RecordKind.global:
      rec = {
        kind: "global",
        memberCount: r.uvar("memberCount", AUTHOR_MAX + 1),
        activeAdmins: r.uvar("activeAdmins", AUTHOR_MAX + 1),
        activeBoxes: r.uvar("activeBoxes", AUTHOR_MAX + 1),
        islandedSinceMs: r.svar("islandedSinceMs", TIME_MS_MAX),
        islandedMsInPeriod: r.uvar("islandedMsInPeriod", TIME_MS_MAX),
        islandChangeMs: r.svar("islandChangeMs", TIME_MS_MAX),
      };
      break;
    case RecordKind.member:
      rec = {
        kind: "member",
        index: r.uvar("index", AUTHOR_MAX),
        publicKey: r.copy(PUBLIC_KEY_BYTES, "publicKey"),
        roles: r.u8("roles"),
        active: r.bool("active"),
        name: r.str(MEMBER_NAME_BYTES_MAX, "name"),
        lastSeq: r.uvar("lastSeq", SEQ_MAX),
        openOrders: r.uvar("openOrders"),
      };
      break;
    case RecordKind.key:
      rec = { kind: "key", member: r.uvar("member", AUTHOR_MAX) };
      break;
    case RecordKind.meter: {
      const author = r.uvar("author", AUTHOR_MAX);
      const meterId = r.uvar("meterId");
      const readingCount = r.uvar("readingCount");
      const timeMs = r.uvar("timeMs", TIME_MS_MAX);
      const { importWh, exportWh, powerW, voltagesDeciV, frequencyMilliHz, quality } = decodeMeasurement(r);
      const goodTimeMs = r.svar("goodTimeMs", TIME_MS_MAX);
      const goodImportWh = r.uvar("goodImportWh", ENERGY_WH_MAX);
      const goodExportWh = r.uvar("goodExportWh", ENERGY_WH_MAX);
      const settledImportWh = r.uvar("settledImportWh", ENERGY_WH_MAX);
      const settledExportWh = r.uvar("settledExportWh", ENERGY_WH_MAX);
      rec = { kind: "meter", author, meterId, readingCount, timeMs, importWh, exportWh, powerW, voltagesDeciV, frequencyMilliHz, quality, goodTimeMs, goodImportWh, goodExportWh, settledImportWh, settledExportWh };
      break;
    }
    case RecordKind.order: {
      const id = r.copy(HASH_BYTES, "id");
      const author = r.uvar("author", AUTHOR_MAX);
      const sideCode = r.u8("side");
      // Refuse 2..255 rather than read them as "sell": one record, one encoding.
      if (sideCode > OrderSide.sell) r.fail(DecodeReason.outOfRange, `order side ${sideCode}`);
      const side: OrderSideName = sideCode === OrderSide.buy ? "buy" : "sell";
      const energyWh = r.uvar("energyWh", ORDER_ENERGY_WH_MAX);
      const priceMicroPerKWh = r.uvar("price", PRICE_MICRO_PER_KWH_MAX);
      const intervalStartMs = r.uvar("intervalStartMs", TIME_MS_MAX);
      const expiresAtMs = r.uvar("expiresAtMs", TIME_MS_MAX);
      const flags = r.u8("flags");
      const cp = r.uvar("counterparty", AUTHOR_MAX + 1);
      const placedHeight = r.uvar("placedHeight");
      rec = { kind: "order", id, author, side, energyWh, priceMicroPerKWh, intervalStartMs, expiresAtMs, flags, counterparty: cp === 0 ? null : cp - 1, placedHeight };
      break;
    }
    case RecordKind.market: {
      const clearedStartMs = r.svar("clearedStartMs", TIME_MS_MAX);
      const price = r.uvar("price", PRICE_MICRO_PER_KWH_MAX + 1);
      rec = {
        kind: "market",
        clearedStartMs,
        priceMicroPerKWh: price === 0 ? null : price - 1,
        volumeWh: r.uvar("volumeWh"),
        tradeCount: r.uvar("tradeCount"),
        tradesHash: r.copy(HASH_BYTES, "tradesHash"),
        settledEndMs: r.uvar("settledEndMs", TIME_MS_MAX),
        settlementHash: r.copy(HASH_BYTES, "settlementHash"),
      };
      break;
    }
    case RecordKind.trade:
      rec = decodeTrade(r);
      break;
    case RecordKind.breaker: {
      const premise = r.uvar("premise", AUTHOR_MAX);
      const breaker = r.u8("breaker");
      const commandedClose = r.bool("commandedClose");
      const state = r.u8("readback");
      const readback = (Object.keys(BreakerState) as BreakerStateName[]).find((k) => BreakerState[k] === state);
      if (readback === undefined) r.fail(DecodeReason.outOfRange, `breaker state ${state}`);
      rec = { kind: "breaker", premise, breaker, commandedClose, readback, changeMs: r.uvar("changeMs", TIME_MS_MAX), operations: r.uvar("operations") };
      break;
    }
    case RecordKind.proposal: {
      const id = r.copy(HASH_BYTES, "id");
      const author = r.uvar("author", AUTHOR_MAX);
      const action = decodeProposalAction(r);
      const createdHeight = r.uvar("createdHeight");
      const votingEndsHeight = r.uvar("votingEndsHeight");
      const effectiveHeight = r.uvar("effectiveHeight");
      const yes = r.uvar("yes");
      const no = r.uvar("no");
      const electorate = r.uvar("electorate");
      const code = r.u8("status");
      const status = PROPOSAL_STATUSES[code];
      if (status === undefined) r.fail(DecodeReason.outOfRange, `proposal status ${code}`);
      rec = { kind: "proposal", id, author, action, createdHeight, votingEndsHeight, effectiveHeight, yes, no, electorate, status, outcome: r.str(64, "outcome") };
      break;
    }
    case RecordKind.vote:
      rec = { kind: "vote", proposal: r.copy(HASH_BYTES, "proposal"), member: r.uvar("member", AUTHOR_MAX), approve: r.bool("approve") };
      break;
    case RecordKind.governance: {
      const n = r.uvar("open proposals", 1_024);
      const open: Hash[] = [];
      for (let i = 0; i < n; i++) open.push(r.copy(HASH_BYTES, "proposal"));
      rec = { kind: "governance", open };
      break;
    }
    case RecordKind.criticalLoads: {
      const n = r.uvar("premises", CRITICAL_LOADS_MAX);
      const premises: number[] = [];
      for (let i = 0; i < n; i++) premises.push(r.uvar("premise", AUTHOR_MAX));
      rec = { kind: "criticalLoads", premises, sinceHeight: r.uvar("sinceHeight") };
      break;
    }
    case RecordKind.marketParams:
      rec = { kind: "marketParams", params: decodeMarketParams(r), sinceHeight: r.uvar("sinceHeight") };
      break;
    case RecordKind.balance:
      rec = { kind: "balance", account: accountOf(r.uvar("account", AUTHOR_MAX + 2)), balanceMicro: r.svar("balanceMicro", BALANCE_MICRO_ABS_MAX) };
      break;
    default:
      return r.fail(DecodeReason.unknownType, `unknown state record kind ${kind}`);
  }
  r.done("state record");
  return rec;
}

/** A trade's canonical encoding: its state record's body, and what tradesHash() hashes. */
export function encodeTrade(w: Writer, t: TradeRecord): void {
  w.uvar(t.intervalStartMs).uvar(t.index).fixed(t.buyOrder, HASH_BYTES).fixed(t.sellOrder, HASH_BYTES);
  w.uvar(t.buyer).uvar(t.seller).uvar(t.energyWh).uvar(t.buyerPriceMicroPerKWh).uvar(t.sellerPriceMicroPerKWh);
}

function decodeTrade(r: Reader): TradeRecord {
  return {
    kind: "trade",
    intervalStartMs: r.uvar("intervalStartMs", TIME_MS_MAX),
    index: r.uvar("index"),
    buyOrder: r.copy(HASH_BYTES, "buyOrder"),
    sellOrder: r.copy(HASH_BYTES, "sellOrder"),
    buyer: r.uvar("buyer", AUTHOR_MAX),
    seller: r.uvar("seller", AUTHOR_MAX),
    energyWh: r.uvar("energyWh", ORDER_ENERGY_WH_MAX),
    buyerPriceMicroPerKWh: r.uvar("buyerPrice", PRICE_MICRO_PER_KWH_MAX),
    sellerPriceMicroPerKWh: r.uvar("sellerPrice", PRICE_MICRO_PER_KWH_MAX),
  };
}

/** The hash an interval's market record keeps of its trades (in clearing order). */
export function tradesHash(trades: readonly TradeRecord[]): Hash {
  const w = new Writer(16 + trades.length * 96);
  w.uvar(trades.length);
  for (const t of trades) encodeTrade(w, t);
  return hashTagged(HashTag.trades, w.finish());
}
