// The ledger state machine: a pure, deterministic core.
//
//   applyBlock(state, block, verifier) -> { state, results }
//
// Raft orders blocks; this function decides what they mean, identically on
// every box. A block whose header is wrong (link, height, time, roots,
// proposer, signature, size) cannot be applied at all: BlockRejectedError.
// Inside a good block every transaction gets a result code; only those with
// ResultCode.ok change the state, except that an authentic transaction in
// sequence always consumes its author's sequence number (so no signed bytes
// can be replayed into acceptance later). The input state is never modified.
// In the first block whose time enters a new market interval, the market's
// step (market/interval.ts: settle the period that ended, close stale
// orders, clear the new interval) runs before the block's transactions.
//
// Invariants (checked by assertions):
//   result.state.height === state.height + 1
//   results.length === block.txs.length
//   a member's lastSeq only grows; a meter's good counters only grow
import { assert, assertNever, bytesEqual } from "./assert.js";
import { type Block, type BlockHeader, HEADER_BYTES_MAX, blockHash, blockSigningMessage } from "./block.js";
import { varintSize } from "./codec.js";
import { BlockRejectedError } from "./errors.js";
import { type Genesis, genesisBlock, rolesMask } from "./genesis.js";
import { type Hash, parseHex, toHex } from "./hash.js";
import { merkleRoot } from "./merkle.js";
import {
  type BreakerRecord,
  GLOBAL_KEY,
  type GlobalRecord,
  MARKET_KEY,
  type MarketRecord,
  breakerKey,
  type MemberRecord,
  type MeterRecord,
  type OrderRecord,
  type StateRecord,
  encodeRecord,
  memberKey,
  meterKey,
  orderKey,
  publicKeyKey,
} from "./records.js";
import { StateTree } from "./state-tree.js";
import { applyProposal, applyVote, changeMembership, currentMarketParams, governanceStep } from "./governance.js";
import { type MarketOutcome, entersInterval, intervalStartOf, intervalStep } from "../market/interval.js";
import {
  AUTHOR_MAX,
  type CancelBody,
  type IslandBody,
  type SwitchBody,
  type MemberBody,
  type OrderBody,
  Quality,
  type ReadingBody,
  Role,
  type SignatureVerifier,
  type SignedTx,
  signatureOf,
  TX_BYTES_MAX_ANY,
  txSignPrefix,
  writeTxSigningMessage,
} from "./tx.js";

/** Everything fixed for the life of a chain. */
export interface Chain {
  readonly genesis: Genesis;
  readonly hash: Hash; // the genesis block hash: the chain's identity
  readonly txSignPrefix: Uint8Array;
}

export function makeChain(genesis: Genesis): Chain {
  const hash = genesisBlock(genesis).hash;
  return { genesis, hash, txSignPrefix: txSignPrefix(hash) };
}

export interface LedgerState {
  readonly chain: Chain;
  readonly height: number; // last applied block
  readonly blockHash: Hash;
  readonly timeMs: number;
  readonly raftTerm: number;
  readonly raftIndex: number;
  readonly tree: StateTree<StateRecord>;
}

import { ResultCode, resultName } from "./results.js";
export { ResultCode, resultName } from "./results.js";

function* stateValues(tree: StateTree<StateRecord>): Generator<StateRecord> {
  for (const e of tree.entries()) yield e.value;
}

export function emptyTree(): StateTree<StateRecord> {
  return StateTree.empty<StateRecord>(encodeRecord);
}

/** The state after the genesis block: its members, nothing else. */
export function genesisState(chain: Chain): LedgerState {
  const g = chain.genesis;
  const changes = new Map<string, StateRecord | null>();
  let activeAdmins = 0;
  let activeBoxes = 0;
  g.members.forEach((m, index) => {
    const publicKey = parseHex(m.publicKey, 32);
    assert(publicKey !== null, "genesis keys were validated");
    const roles = rolesMask(m.roles);
    if ((roles & Role.admin) !== 0) activeAdmins++;
    if ((roles & Role.box) !== 0) activeBoxes++;
    changes.set(memberKey(index), { kind: "member", index, publicKey, roles, active: true, name: m.name, lastSeq: 0, openOrders: 0 });
    changes.set(publicKeyKey(publicKey), { kind: "key", member: index });
  });
  changes.set(GLOBAL_KEY, { kind: "global", memberCount: g.members.length, activeAdmins, activeBoxes, islandedSinceMs: -1, islandedMsInPeriod: 0, islandChangeMs: -1 });
  return { chain, height: 0, blockHash: chain.hash, timeMs: g.genesisTimeMs, raftTerm: 0, raftIndex: 0, tree: emptyTree().withUpdates(changes) };
}

/** Pending changes of one block, read through to the state before it. */
class Overlay {
  readonly changes = new Map<string, StateRecord | null>();
  constructor(private readonly tree: StateTree<StateRecord>) {}

  get<R extends StateRecord>(key: string, kind: R["kind"]): R | undefined {
    const rec = this.changes.has(key) ? this.changes.get(key) : this.tree.get(key);
    if (rec === undefined || rec === null) return undefined;
    assert(rec.kind === kind, `record ${key} is a ${rec.kind}, expected ${kind}`);
    return rec as R;
  }

  set(key: string, rec: StateRecord | null): void {
    this.changes.set(key, rec);
  }

  /** The record under `key` as this block has it so far, whatever its kind. */
  peek(key: string): StateRecord | undefined {
    const rec = this.changes.has(key) ? this.changes.get(key) : this.tree.get(key);
    return rec ?? undefined;
  }
}

export interface ApplyResult {
  readonly state: LedgerState;
  readonly results: readonly ResultCode[];
  /** The records this block changed (null: deleted); what a store writes. */
  readonly changes: ReadonlyMap<string, StateRecord | null>;
  /** The market's settlement and clearing, in a block that entered a new interval (market/interval.ts). */
  readonly market: MarketOutcome | null;
}

function reject(code: string, block: Block, message: string): never {
  throw new BlockRejectedError(code, block.header.height, message);
}

/** The parent a header must follow: its hash, time and Raft position. */
export type HeaderParent = Pick<LedgerState, "blockHash" | "timeMs" | "raftTerm" | "raftIndex">;

/**
 * What is wrong with how header `h` follows `parent` (its link, time and Raft
 * position), or null: the checks that need no state, shared with the
 * auditor's check of headers whose blocks are pruned (verify.ts).
 */
export function headerLinkProblem(parent: HeaderParent, h: BlockHeader): { readonly code: string; readonly message: string } | null {
  if (!bytesEqual(h.parentHash, parent.blockHash)) return { code: "PG_ERR_BLOCK_PARENT", message: `parent hash ${toHex(h.parentHash)} is not ${toHex(parent.blockHash)}` };
  if (h.timeMs <= parent.timeMs) return { code: "PG_ERR_BLOCK_TIME", message: `time ${h.timeMs} is not after the parent's ${parent.timeMs}` };
  if (h.raftTerm < parent.raftTerm || h.raftIndex <= parent.raftIndex) {
    return { code: "PG_ERR_BLOCK_RAFT", message: `raft term/index ${h.raftTerm}/${h.raftIndex} not after ${parent.raftTerm}/${parent.raftIndex}` };
  }
  return null;
}

/** Header checks: everything about a block except its transactions' verdicts. */
export function checkBlock(state: LedgerState, block: Block, verifier: SignatureVerifier): void {
  const h = block.header;
  const p = state.chain.genesis.ledger;
  if (h.height !== state.height + 1) reject("PG_ERR_BLOCK_HEIGHT", block, `expected height ${state.height + 1}`);
  // The hash becomes the next block's parent: never trust a Block object's own claim.
  if (!bytesEqual(block.hash, blockHash(h))) reject("PG_ERR_BLOCK_HASH", block, "its hash is not the hash of its header");
  const link = headerLinkProblem(state, h);
  if (link !== null) reject(link.code, block, link.message);
  if (h.txCount !== block.txs.length || h.txCount > p.txsPerBlockMax) {
    reject("PG_ERR_BLOCK_SIZE", block, `${block.txs.length} transactions (header says ${h.txCount}, limit ${p.txsPerBlockMax})`);
  }
  let bytes = HEADER_BYTES_MAX;
  for (const t of block.txs) bytes += varintSize(t.bytes.length) + t.bytes.length;
  if (bytes > p.blockBytesMax) reject("PG_ERR_BLOCK_SIZE", block, `about ${bytes} bytes, limit ${p.blockBytesMax}`);
  if (!bytesEqual(h.stateRoot, state.tree.root)) {
    reject("PG_ERR_BLOCK_STATE_ROOT", block, `state root ${toHex(h.stateRoot)} differs from this box's ${toHex(state.tree.root)}`);
  }
  if (!bytesEqual(h.txRoot, merkleRoot(block.txs.map((t) => t.id)))) reject("PG_ERR_BLOCK_TX_ROOT", block, "transaction Merkle root does not match the body");
  const proposer = state.tree.get(memberKey(h.proposer));
  if (proposer === undefined || proposer.kind !== "member" || !proposer.active || (proposer.roles & Role.box) === 0) {
    reject("PG_ERR_BLOCK_PROPOSER", block, `proposer ${h.proposer} is not an active box`);
  }
  if (!verifier.verify(proposer.publicKey, blockSigningMessage(state.chain.hash, h), block.signature)) {
    reject("PG_ERR_BLOCK_SIGNATURE", block, `signature does not verify with proposer ${h.proposer}'s key`);
  }
}

export function applyBlock(state: LedgerState, block: Block, verifier: SignatureVerifier): ApplyResult {
  checkBlock(state, block, verifier);
  const overlay = new Overlay(state.tree);
  // The market first: an interval's orders clear as it starts, before this block's transactions
  // (an order or cancel for it in this block comes too late), and the ended period settles.
  // Governance first: a decision taking effect at this height applies to this block's market step too.
  const g = state.chain.genesis;
  governanceStep(overlay, () => stateValues(state.tree), g, block.header.height, resultName);
  let market: MarketOutcome | null = null;
  const params = currentMarketParams(overlay, g);
  if (entersInterval(params, state.timeMs, block.header.timeMs)) {
    const step = intervalStep({ get: (key) => overlay.peek(key), entries: () => state.tree.entries() }, params, g.genesisTimeMs, block.header.timeMs);
    for (const [key, rec] of step.changes) overlay.set(key, rec);
    market = step.outcome;
  }
  const scratch = new Uint8Array(state.chain.txSignPrefix.length + TX_BYTES_MAX_ANY);
  const ctx: TxContext = { state, overlay, verifier, scratch, blockTimeMs: block.header.timeMs, height: block.header.height };
  const results: ResultCode[] = block.txs.map((t) => applyTx(ctx, t));
  const next: LedgerState = {
    chain: state.chain,
    height: block.header.height,
    blockHash: block.hash,
    timeMs: block.header.timeMs,
    raftTerm: block.header.raftTerm,
    raftIndex: block.header.raftIndex,
    tree: state.tree.withUpdates(overlay.changes),
  };
  assert(next.height === state.height + 1 && results.length === block.txs.length, "one result per transaction, one height per block");
  return { state: next, results, changes: overlay.changes, market };
}

interface TxContext {
  readonly state: LedgerState;
  readonly overlay: Overlay;
  readonly verifier: SignatureVerifier;
  readonly scratch: Uint8Array; // for signing messages: see writeTxSigningMessage
  readonly blockTimeMs: number;
  readonly height: number;
}

/** Validate one transaction and, when valid, stage its changes. */
export function applyTx(ctx: TxContext, t: SignedTx): ResultCode {
  const { tx } = t;
  const author = ctx.overlay.get<MemberRecord>(memberKey(tx.author), "member");
  if (author === undefined) return ResultCode.unknownAuthor;
  if (!author.active) return ResultCode.authorRemoved;
  const message = writeTxSigningMessage(ctx.scratch, ctx.state.chain.txSignPrefix, t.bytes);
  if (!ctx.verifier.verify(author.publicKey, message, signatureOf(t.bytes))) return ResultCode.badSignature;
  if (tx.seq <= author.lastSeq) return ResultCode.staleSequence;
  if (tx.seq > author.lastSeq + ctx.state.chain.genesis.ledger.seqGapMax) return ResultCode.sequenceGap;
  const body = tx.body;
  let code: ResultCode;
  switch (body.type) {
    case "reading":
      code = applyReading(ctx, author, body);
      break;
    case "order":
      code = applyOrder(ctx, author, body, t.id);
      break;
    case "cancel":
      code = applyCancel(ctx, author, body);
      break;
    case "member":
      code = applyMember(ctx, author, body);
      break;
    case "island":
      code = applyIsland(ctx, author, body);
      break;
    case "switch":
      code = applySwitch(ctx, author, body);
      break;
    case "proposal":
      code = applyProposal(ctx.overlay, ctx.state.chain.genesis, author, body, t.id, ctx.height);
      break;
    case "vote":
      code = applyVote(ctx.overlay, author, body, ctx.height);
      break;
    default:
      return assertNever(body, "tx body");
  }
  // An authentic, in-sequence transaction consumes its sequence number even
  // when a rule rejects it: otherwise its signed bytes could be replayed later,
  // when the rule would pass (an order for an interval that has come into
  // range, an enrolment once an admin exists...). Nothing else changes.
  // Re-read: the body may have changed the author's record (open orders, roles).
  const current = ctx.overlay.get<MemberRecord>(memberKey(tx.author), "member");
  assert(current !== undefined && current.lastSeq < tx.seq, "sequence numbers only grow");
  ctx.overlay.set(memberKey(tx.author), { ...current, lastSeq: tx.seq });
  return code;
}

/** The last sequence number the ledger took from `author` (0 before its first transaction, or for no such member). */
export function lastSeqOf(state: LedgerState, author: number): number {
  const r = state.tree.get(memberKey(author));
  return r !== undefined && r.kind === "member" ? r.lastSeq : 0;
}

/** The most energy a counter can plausibly advance in dtMs at powerMaxW, rounded up. Integer-safe. */
export function energyBoundWh(dtMs: number, powerMaxW: number): number {
  const MS_PER_HOUR = 3_600_000;
  const hours = Math.floor(dtMs / MS_PER_HOUR);
  const rest = dtMs - hours * MS_PER_HOUR;
  return hours * powerMaxW + Math.ceil((rest * powerMaxW) / MS_PER_HOUR);
}

function applyReading(ctx: TxContext, author: MemberRecord, r: ReadingBody): ResultCode {
  const p = ctx.state.chain.genesis.ledger;
  if ((author.roles & Role.box) === 0) return ResultCode.notPermitted;
  if (r.timeMs > ctx.blockTimeMs + p.readingSkewMaxMs || r.timeMs + p.readingAgeMaxMs < ctx.blockTimeMs) return ResultCode.readingTimeWindow;
  const key = meterKey(author.index, r.meterId);
  const prev = ctx.overlay.get<MeterRecord>(key, "meter");
  if (prev !== undefined && r.timeMs <= prev.timeMs) return ResultCode.readingTimeOrder;
  const good = r.quality === Quality.good;
  const hadGood = prev !== undefined && prev.goodTimeMs >= 0;
  if (good && hadGood) {
    if (r.importWh < prev.goodImportWh || r.exportWh < prev.goodExportWh) return ResultCode.readingCounterBackwards;
    const boundWh = energyBoundWh(r.timeMs - prev.goodTimeMs, p.meterPowerMaxW) + 1; // +1: counters are rounded to whole Wh
    if (r.importWh - prev.goodImportWh > boundWh || r.exportWh - prev.goodExportWh > boundWh) return ResultCode.readingCounterJump;
  }
  const next: MeterRecord = {
    kind: "meter",
    author: author.index,
    meterId: r.meterId,
    readingCount: (prev?.readingCount ?? 0) + 1,
    timeMs: r.timeMs,
    importWh: r.importWh,
    exportWh: r.exportWh,
    powerW: r.powerW,
    voltagesDeciV: r.voltagesDeciV,
    frequencyMilliHz: r.frequencyMilliHz,
    quality: r.quality,
    goodTimeMs: good ? r.timeMs : (prev?.goodTimeMs ?? -1),
    goodImportWh: good ? r.importWh : (prev?.goodImportWh ?? 0),
    goodExportWh: good ? r.exportWh : (prev?.goodExportWh ?? 0),
    // Settlement counts energy from the meter's first good reading on, not its lifetime before it joined.
    settledImportWh: hadGood ? prev.settledImportWh : good ? r.importWh : 0,
    settledExportWh: hadGood ? prev.settledExportWh : good ? r.exportWh : 0,
  };
  ctx.overlay.set(key, next);
  return ResultCode.ok;
}

function applyOrder(ctx: TxContext, author: MemberRecord, o: OrderBody, id: Hash): ResultCode {
  const m = currentMarketParams(ctx.overlay, ctx.state.chain.genesis);
  if ((author.roles & (Role.user | Role.box)) === 0) return ResultCode.notPermitted;
  if (o.energyWh < 1 || o.energyWh > m.orderEnergyMaxWh) return ResultCode.orderEnergy;
  if (o.priceMicroPerKWh < m.priceMinMicroPerKWh || o.priceMicroPerKWh > m.priceMaxMicroPerKWh) return ResultCode.orderPrice;
  const currentStart = ctx.blockTimeMs - (ctx.blockTimeMs % m.intervalMs);
  const latestStart = currentStart + m.orderIntervalsAheadMax * m.intervalMs;
  // Orders are for a future interval: the current one clears when it starts.
  if (o.intervalStartMs % m.intervalMs !== 0 || o.intervalStartMs <= currentStart || o.intervalStartMs > latestStart) {
    return ResultCode.orderInterval;
  }
  if (o.expiresAtMs <= ctx.blockTimeMs) return ResultCode.orderExpired;
  if (o.counterparty !== null) {
    const cp = ctx.overlay.get<MemberRecord>(memberKey(o.counterparty), "member");
    if (cp === undefined || !cp.active || o.counterparty === author.index) return ResultCode.orderCounterparty;
  }
  if (author.openOrders >= m.openOrdersPerMemberMax) return ResultCode.openOrdersLimit;
  const rec: OrderRecord = {
    kind: "order",
    id,
    author: author.index,
    side: o.side,
    energyWh: o.energyWh,
    priceMicroPerKWh: o.priceMicroPerKWh,
    intervalStartMs: o.intervalStartMs,
    expiresAtMs: o.expiresAtMs,
    flags: o.flags,
    counterparty: o.counterparty,
    placedHeight: ctx.height,
  };
  ctx.overlay.set(orderKey(id), rec);
  ctx.overlay.set(memberKey(author.index), { ...author, openOrders: author.openOrders + 1 });
  return ResultCode.ok;
}

function applyCancel(ctx: TxContext, author: MemberRecord, c: CancelBody): ResultCode {
  const key = orderKey(c.orderId);
  const order = ctx.overlay.get<OrderRecord>(key, "order");
  if (order === undefined) return ResultCode.orderNotFound;
  if (order.author !== author.index) return ResultCode.notOrderAuthor;
  assert(author.openOrders > 0, "an author with an open order counts it");
  ctx.overlay.set(key, null);
  ctx.overlay.set(memberKey(author.index), { ...author, openOrders: author.openOrders - 1 });
  return ResultCode.ok;
}

/** An event a controller stamps (island, switch) must be as recent as a reading would have to be. */
function outsideTimeWindow(ctx: TxContext, timeMs: number): boolean {
  const p = ctx.state.chain.genesis.ledger;
  return timeMs > ctx.blockTimeMs + p.readingSkewMaxMs || timeMs + p.readingAgeMaxMs < ctx.blockTimeMs;
}

/**
 * The microgrid islands or reconnects. The islanded time is kept per settlement period (the market
 * step prorates the period's imbalance by it): a transition stamped before the current period began
 * counts from the period's start.
 */
function applyIsland(ctx: TxContext, author: MemberRecord, b: IslandBody): ResultCode {
  if ((author.roles & Role.controller) === 0) return ResultCode.notPermitted;
  if (outsideTimeWindow(ctx, b.timeMs)) return ResultCode.eventTimeWindow;
  const global = ctx.overlay.get<GlobalRecord>(GLOBAL_KEY, "global");
  assert(global !== undefined, "the global record exists from genesis");
  if (b.islanded === global.islandedSinceMs >= 0) return ResultCode.islandUnchanged;
  if (b.timeMs < global.islandChangeMs) return ResultCode.islandTimeOrder;
  const g = ctx.state.chain.genesis;
  const periodStartMs = ctx.overlay.get<MarketRecord>(MARKET_KEY, "market")?.settledEndMs ?? intervalStartOf(g.genesisTimeMs, g.market.intervalMs);
  const atMs = Math.max(b.timeMs, periodStartMs);
  if (b.islanded) {
    ctx.overlay.set(GLOBAL_KEY, { ...global, islandedSinceMs: atMs, islandChangeMs: b.timeMs });
  } else {
    assert(atMs >= global.islandedSinceMs, "an island period ends after it began");
    ctx.overlay.set(GLOBAL_KEY, { ...global, islandedSinceMs: -1, islandedMsInPeriod: global.islandedMsInPeriod + (atMs - global.islandedSinceMs), islandChangeMs: b.timeMs });
  }
  return ResultCode.ok;
}

/** A breaker command and its read-back, recorded for the audit trail (who was powered, when, why). */
function applySwitch(ctx: TxContext, author: MemberRecord, b: SwitchBody): ResultCode {
  if ((author.roles & Role.controller) === 0) return ResultCode.notPermitted;
  if (outsideTimeWindow(ctx, b.timeMs)) return ResultCode.eventTimeWindow;
  if (ctx.overlay.get<MemberRecord>(memberKey(b.premise), "member") === undefined) return ResultCode.unknownPremise;
  const key = breakerKey(b.premise, b.breaker);
  const prev = ctx.overlay.get<BreakerRecord>(key, "breaker");
  if (prev !== undefined && b.timeMs < prev.changeMs) return ResultCode.switchTimeOrder;
  ctx.overlay.set(key, { kind: "breaker", premise: b.premise, breaker: b.breaker, commandedClose: b.close, readback: b.readback, changeMs: b.timeMs, operations: (prev?.operations ?? 0) + 1 });
  return ResultCode.ok;
}

function applyMember(ctx: TxContext, author: MemberRecord, b: MemberBody): ResultCode {
  if ((author.roles & Role.admin) === 0) return ResultCode.notPermitted;
  return changeMembership(ctx.overlay, b);
}
