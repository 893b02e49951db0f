// The auditor's check of a whole chain, from genesis: hash links, header
// hashes, Merkle roots, signatures, every transaction re-validated and every
// block re-applied, state roots compared at every height, and the saved state
// compared record by record at the end. It stops at the first fault and says
// where (height, transaction) and what.
//
// A store whose readings were pruned (store.ts: retention) up to block B is
// checked in two parts. Blocks 1..B: every header (hash links, heights, times,
// Raft positions, the proposer's signature) and every kept transaction (its
// row and, if accepted, its author's signature), with keys from the
// checkpoint at B (a member's key never changes and members are never
// deleted); their readings are gone, so their Merkle roots and states cannot
// be recomputed. The checkpoint must hash to the state root recorded for B,
// which block B+1's signed header repeats. Blocks B+1.. are then re-applied in
// full from the checkpoint, as from genesis.
//
// A store that installed a checkpoint (store.ts: a new box, or one offline
// for longer than its neighbours keep readings) holds genesis, its own
// earlier blocks 1..k, block B's header only, and every block after B; it
// never held blocks k+1..B-1. It is checked the same way, as far as it holds
// the chain: its own blocks and B's header by header (links between held
// neighbours, times and Raft positions across the gap, signatures), the
// installed checkpoint against the root block B+1 signs, and B+1.. re-applied.
// The report says which heights were not held (historyGaps, as the store's
// installs recorded them: a block there, or a height without a block
// anywhere else, is a fault) and
// where the held history resumes (historyFrom); the link from block k to block B cannot
// be checked here: the box anchored B to the chain Raft committed when it
// installed it (daemon/node.ts). A settlement re-applied after B whose
// trades were cleared before B is checked against the re-applied trades, as
// the store holds no clearing of that interval.
import { bytesEqual } from "./assert.js";
import { type BlockHeader, blockSigningMessage, decodeHeader } from "./block.js";
import { BlockRejectedError, DecodeError, StoreError } from "./errors.js";
import { genesisBlock } from "./genesis.js";
import { toHex } from "./hash.js";
import { encodeRecord, memberKey, tradesHash } from "./records.js";
import { type MarketOutcome, settlementHash } from "../market/interval.js";
import { type HeaderParent, type LedgerState, ResultCode, applyBlock, genesisState, headerLinkProblem, resultName } from "./state.js";
import { LedgerStore, type RawBlock, type TxColumns } from "./store.js";
import { type SignatureVerifier, type SignedTx, type TxTypeName, decodeTx, signatureOf, txSigningMessage } from "./tx.js";

export interface VerifyFault {
  readonly height: number;
  readonly txIndex: number | null;
  readonly txId: string | null;
  readonly code: string;
  readonly message: string;
}

export interface VerifyReport {
  readonly ok: boolean;
  readonly chainId: string;
  readonly chainHash: string;
  readonly blocks: number; // blocks checked, genesis included
  readonly transactions: number;
  readonly byType: Record<string, number>;
  readonly rejected: Record<string, number>;
  readonly headHeight: number;
  /** Blocks 1..readingsPrunedTo hold no readings any more: checked by header, not re-applied (0: none). */
  readonly readingsPrunedTo: number;
  /** 0: the store holds the chain from genesis. B: it installed a checkpoint at B; block B is held by header only. */
  readonly historyFrom: number;
  /** Heights this store never held (below historyFrom), lowest first: not checked. */
  readonly historyGaps: readonly { readonly from: number; readonly to: number }[];
  readonly headHash: string;
  readonly stateRoot: string;
  readonly stateRecords: number;
  readonly fault: VerifyFault | null;
}

class Fault extends Error {
  constructor(readonly fault: VerifyFault) {
    super(fault.message);
  }
}

function fault(height: number, code: string, message: string, txIndex: number | null = null, txId: string | null = null): never {
  throw new Fault({ height, txIndex, txId, code, message });
}

export function verifyChain(store: LedgerStore, verifier: SignatureVerifier, onBlock?: (height: number, head: number) => void): VerifyReport {
  const chain = store.chain;
  const headHeight = store.head().height;
  const byType: Record<string, number> = {};
  const rejected: Record<string, number> = {};
  let transactions = 0;
  let blocks = 0;
  let state: LedgerState = genesisState(chain);
  const readingsPrunedTo = store.readingsPrunedTo();
  const historyFrom = store.historyFrom();
  const historyGaps = store.historyGaps();
  const base = { chainId: chain.genesis.chainId, chainHash: toHex(chain.hash), headHeight, readingsPrunedTo, historyFrom, historyGaps };
  const count = (t: SignedTx, code: number): void => {
    transactions++;
    byType[t.tx.body.type] = (byType[t.tx.body.type] ?? 0) + 1;
    if (code !== ResultCode.ok) rejected[resultName(code)] = (rejected[resultName(code)] ?? 0) + 1;
  };
  try {
    checkGenesis(store, state);
    blocks = 1;
    if (historyFrom > readingsPrunedTo) fault(historyFrom, "PG_ERR_VERIFY_CHECKPOINT", `the store installed a checkpoint at ${historyFrom} but says only blocks 1..${readingsPrunedTo} are pruned`);
    if (readingsPrunedTo > 0) {
      const checkpoint = checkpointOf(store, readingsPrunedTo);
      verifyPrunedBlocks(store, state, checkpoint, historyGaps, verifier, count, (height) => {
        blocks++;
        onBlock?.(height, headHeight);
      });
      state = checkpoint;
    }
    // Clearings before the installed checkpoint are not held: see checkMarketRecords.
    const notHeldBeforeMs = historyFrom === 0 ? -Infinity : (store.header(historyFrom)?.header.timeMs ?? -Infinity);
    for (let height = readingsPrunedTo + 1; height <= headHeight; height++) {
      state = verifyBlock(store, state, height, verifier, count, notHeldBeforeMs);
      blocks++;
      onBlock?.(height, headHeight);
    }
    const stateRecords = compareSavedState(store, state);
    compareLatestReadings(store, state);
    return { ...base, ok: true, blocks, transactions, byType, rejected, headHash: toHex(state.blockHash), stateRoot: toHex(state.tree.root), stateRecords, fault: null };
  } catch (caught) {
    // Anything else (an SQLite read error, a cell of the wrong type) is a fault of the store too.
    const err = caught instanceof Fault ? caught : new Fault({ height: state.height + 1, txIndex: null, txId: null, code: "PG_ERR_VERIFY_UNREADABLE", message: `the store cannot be read past block ${state.height}: ${caught instanceof Error ? caught.message : String(caught)}` });
    return { ...base, ok: false, blocks, transactions, byType, rejected, headHash: toHex(state.blockHash), stateRoot: toHex(state.tree.root), stateRecords: 0, fault: err.fault };
  }
}

function checkGenesis(store: LedgerStore, state: LedgerState): void {
  const raw = store.rawBlock(0);
  if (raw === null) fault(0, "PG_ERR_VERIFY_MISSING", "block 0 (genesis) is missing");
  const expected = genesisBlock(state.chain.genesis);
  const header = decodeStoredHeader(raw.header, 0);
  if (!bytesEqual(header.hash, expected.hash) || !bytesEqual(raw.hash, expected.hash)) {
    fault(0, "PG_ERR_VERIFY_GENESIS", "block 0 is not the genesis block built from the stored genesis document");
  }
  if (!bytesEqual(raw.stateRoot, state.tree.root)) fault(0, "PG_ERR_VERIFY_STATE_ROOT", "recorded state root after genesis differs from the recomputed one");
}

function checkpointOf(store: LedgerStore, height: number): LedgerState {
  try {
    return store.checkpointState(height);
  } catch (err) {
    if (err instanceof StoreError) fault(height, "PG_ERR_VERIFY_CHECKPOINT", `the readings of blocks 1..${height} were pruned, so the check starts from the checkpoint at ${height}: ${err.message}`);
    throw err;
  }
}

/**
 * Blocks whose readings are gone: their headers' links and signatures, and
 * the transactions kept. Heights in `gaps` are not held: the parent link of
 * the block after a gap cannot be checked, its time and Raft position can.
 */
function verifyPrunedBlocks(
  store: LedgerStore,
  genesis: LedgerState,
  checkpoint: LedgerState,
  gaps: readonly { readonly from: number; readonly to: number }[],
  verifier: SignatureVerifier,
  count: (t: SignedTx, code: number) => void,
  done: (height: number) => void,
): void {
  const keyOf = (member: number): Uint8Array | null => {
    const rec = checkpoint.tree.get(memberKey(member));
    return rec !== undefined && rec.kind === "member" ? rec.publicKey : null;
  };
  const chain = genesis.chain;
  let prev: HeaderParent = genesis;
  const gapAt = new Map(gaps.map((g) => [g.from, g.to]));
  let afterGap = false;
  for (let height = 1; height <= checkpoint.height; height++) {
    const gapTo = gapAt.get(height);
    if (gapTo !== undefined) {
      checkNotHeld(store, height, gapTo);
      height = gapTo; // not held: nothing more to check
      afterGap = true;
      continue;
    }
    const { raw, header, signature, hash } = storedBlock(store, height);
    // Across a gap the parent is not held: its hash cannot be checked, but time and Raft position still rise.
    const link = headerLinkProblem(afterGap ? { ...prev, blockHash: header.parentHash } : prev, header);
    if (link !== null) fault(height, link.code, link.message);
    afterGap = false;
    const key = keyOf(header.proposer);
    if (key === null || !verifier.verify(key, blockSigningMessage(chain.hash, header), signature)) {
      fault(height, "PG_ERR_BLOCK_SIGNATURE", `signature does not verify with proposer ${header.proposer}'s key`);
    }
    checkBlockTime(raw, header, height);
    if (raw.txs.length > header.txCount) fault(height, "PG_ERR_VERIFY_COLUMNS", `the store holds ${raw.txs.length} transactions, more than the ${header.txCount} the header commits to`);
    // A block held by header only (an installed checkpoint's) has no transactions here to check.
    for (const row of raw.txs) {
      // The kept rows' places in their block are not known without the readings: faults name no index.
      const t = storedTx(row.raw, height, null);
      checkTxColumns(row.columns, t, height, header.timeMs, null);
      const author = keyOf(t.tx.author);
      if (row.result === ResultCode.ok && (author === null || !verifier.verify(author, txSigningMessage(chain.txSignPrefix, t.bytes, true), signatureOf(t.bytes)))) {
        fault(height, "PG_ERR_VERIFY_TX_TAMPERED", `a kept ${t.tx.body.type as TxTypeName} by member ${t.tx.author}, recorded as accepted, does not verify with that member's key`, null, toHex(t.id));
      }
      count(t, row.result);
    }
    prev = { blockHash: hash, timeMs: header.timeMs, raftTerm: header.raftTerm, raftIndex: header.raftIndex };
    done(height);
  }
  if (!bytesEqual(prev.blockHash, checkpoint.blockHash)) fault(checkpoint.height, "PG_ERR_VERIFY_CHECKPOINT", "the checkpoint is not of the block the headers lead to");
  if (afterGap) fault(checkpoint.height, "PG_ERR_VERIFY_MISSING", `the blocks up to the checkpoint at ${checkpoint.height} are not held`);
}

/** A run the store's installs recorded as never held holds no block (a lost block elsewhere is PG_ERR_VERIFY_MISSING where the walk meets it). */
function checkNotHeld(store: LedgerStore, from: number, to: number): void {
  const run = store.heightsWithoutBlock(to + 1).find((g) => g.from <= from && g.to >= from); // a run ends at a held block
  if (run === undefined || run.to < to) {
    const held = run === undefined ? from : run.to + 1;
    fault(held, "PG_ERR_VERIFY_NOT_HELD", `the store says it never held blocks ${from}..${to} (it caught up from a checkpoint), yet it has a block at ${held}`);
  }
}

function decodeStoredHeader(bytes: Uint8Array, height: number) {
  try {
    return decodeHeader(bytes);
  } catch (err) {
    if (err instanceof DecodeError) fault(height, "PG_ERR_VERIFY_DECODE", `header does not decode: ${err.message}`);
    throw err;
  }
}

/** Block `height`'s rows, with its header decoded and checked against them (height, hash). */
function storedBlock(store: LedgerStore, height: number): { raw: RawBlock; header: BlockHeader; signature: Uint8Array; hash: Uint8Array } {
  const raw = store.rawBlock(height);
  if (raw === null) fault(height, "PG_ERR_VERIFY_MISSING", `block ${height} is missing (the head is ${store.head().height})`);
  const { header, signature, hash } = decodeStoredHeader(raw.header, height);
  if (header.height !== height) fault(height, "PG_ERR_VERIFY_HEIGHT", `stored at height ${height} but its header says ${header.height}`);
  if (!bytesEqual(hash, raw.hash)) fault(height, "PG_ERR_VERIFY_HASH", `recorded hash ${toHex(raw.hash)} is not the header's hash ${toHex(hash)}`);
  return { raw, header, signature, hash };
}

function checkBlockTime(raw: RawBlock, header: BlockHeader, height: number): void {
  if (raw.timeMs !== header.timeMs) fault(height, "PG_ERR_VERIFY_COLUMNS", `blocks.time_ms ${raw.timeMs} is not the header's time ${header.timeMs}`);
}

/** A stored transaction's bytes, decoded; `index`: its place in the block, when known. */
function storedTx(bytes: Uint8Array, height: number, index: number | null): SignedTx {
  try {
    return decodeTx(bytes);
  } catch (err) {
    if (err instanceof DecodeError) fault(height, "PG_ERR_VERIFY_DECODE", `${index === null ? "a kept transaction" : `transaction ${index}`} does not decode: ${err.message}`, index);
    throw err;
  }
}

/** A transaction row's columns must be what its bytes say (else the indexes would find wrong rows). */
function checkTxColumns(columns: TxColumns, t: SignedTx, height: number, blockTimeMs: number, index: number | null): void {
  const expected = LedgerStore.txColumns(t, height, blockTimeMs);
  const wrong = (Object.keys(expected) as (keyof TxColumns)[]).filter((k) => columns[k] !== expected[k]);
  if (wrong.length > 0) {
    fault(height, "PG_ERR_VERIFY_COLUMNS", `${index === null ? "a kept transaction" : `transaction ${index}`}: its row's ${wrong.join(", ")} disagree with its bytes (the indexes would find wrong rows)`, index, toHex(t.id));
  }
}

function verifyBlock(
  store: LedgerStore,
  state: LedgerState,
  height: number,
  verifier: SignatureVerifier,
  count: (t: SignedTx, code: number) => void,
  notHeldBeforeMs: number,
): LedgerState {
  const { raw, header, signature, hash } = storedBlock(store, height);
  // A lost row is a damaged store, not an oversized block: say so before the state machine calls it PG_ERR_BLOCK_SIZE.
  if (raw.txs.length < header.txCount) {
    fault(height, "PG_ERR_VERIFY_MISSING", `the store holds ${raw.txs.length} of the ${header.txCount} transactions the header commits to`);
  }
  const txs: SignedTx[] = raw.txs.map((t, i) => storedTx(t.raw, height, i));
  let result;
  try {
    result = applyBlock(state, { header, signature, hash, txs }, verifier);
  } catch (err) {
    if (!(err instanceof BlockRejectedError)) throw err;
    if (err.code === "PG_ERR_BLOCK_TX_ROOT") blameTransaction(state, txs, height, verifier);
    fault(height, err.code, err.message);
  }
  // The convenience columns are checked after the block itself, whose faults say more.
  checkBlockTime(raw, header, height);
  result.results.forEach((code, i) => {
    const recorded = raw.txs[i]?.result;
    if (recorded !== code) {
      const t = txs[i] as SignedTx;
      fault(height, "PG_ERR_VERIFY_RESULT", `transaction ${i} (${t.tx.body.type} by member ${t.tx.author}) was recorded as ${resultName(recorded ?? -1)} but re-validates as ${resultName(code)}`, i, toHex(t.id));
    }
    const t = txs[i] as SignedTx;
    checkTxColumns((raw.txs[i] as RawBlock["txs"][number]).columns, t, height, header.timeMs, i); // txs was decoded from raw.txs, one for one
    count(t, code);
  });
  if (!bytesEqual(result.state.tree.root, raw.stateRoot)) {
    fault(height, "PG_ERR_VERIFY_STATE_ROOT", `re-applying gives state root ${toHex(result.state.tree.root)}, the store recorded ${toHex(raw.stateRoot)}`);
  }
  if (result.market !== null) checkMarketRecords(store, height, result.market, notHeldBeforeMs);
  return result.state;
}

/**
 * The market tables must hold exactly what re-applying the block computed
 * (their lists hash to the state's commitments). A settlement of trades
 * cleared at or before an installed checkpoint (their interval starts no
 * later than `notHeldBeforeMs`, the checkpoint block's time) is checked with
 * the re-applied trades and deliveries: this store never held that clearing.
 */
function checkMarketRecords(store: LedgerStore, height: number, m: MarketOutcome, notHeldBeforeMs: number): void {
  const c = m.clearing;
  const interval = store.marketInterval(c.intervalStartMs);
  const when = new Date(c.intervalStartMs).toISOString();
  if (interval === null || interval.height !== height) fault(height, "PG_ERR_VERIFY_MARKET", `the clearing of the interval starting ${when} is not recorded at this block`);
  const trades = interval.trades.map((t) => t.trade);
  if (
    !bytesEqual(tradesHash(trades), c.hash) ||
    !bytesEqual(interval.tradesHash, c.hash) ||
    interval.priceMicroPerKWh !== c.priceMicroPerKWh ||
    interval.volumeWh !== c.volumeWh ||
    interval.rule !== c.rule ||
    interval.buyOrders !== c.buyOrders ||
    interval.sellOrders !== c.sellOrders
  ) {
    fault(height, "PG_ERR_VERIFY_MARKET", `the recorded clearing of the interval starting ${when} (price, volume, rule, order counts or trades) differs from the re-applied one`);
  }
  // The orders this block closed (cleared, expired, lapsed, of removed members), whatever interval they were for.
  const closedKey = (o: { id: Uint8Array; reason: string; filledWh: number; author: number }) => `${toHex(o.id)}:${o.reason}:${o.filledWh}:${o.author}`;
  const recordedClosed = store.closedOrdersAt(height).map(closedKey).sort();
  const expectedClosed = m.closedOrders.map(closedKey).sort();
  if (recordedClosed.length !== expectedClosed.length || recordedClosed.some((k, i) => k !== expectedClosed[i])) {
    fault(height, "PG_ERR_VERIFY_MARKET", `the orders recorded as closed at this block differ from the re-applied step (${recordedClosed.length} recorded, ${expectedClosed.length} re-derived)`);
  }
  const s = m.settlement;
  const recorded = store.marketSettlement(s.periodEndMs);
  const settledInterval = s.tradesIntervalStartMs === null ? null : store.marketInterval(s.tradesIntervalStartMs);
  const notHeld = settledInterval === null && s.tradesIntervalStartMs !== null && s.tradesIntervalStartMs <= notHeldBeforeMs;
  const settledTrades = settledInterval?.trades ?? [];
  const delivered = settledTrades.map((t) => t.deliveredWh);
  const hash =
    recorded === null || delivered.some((d) => d === null)
      ? null
      : notHeld
        ? settlementHash({ ...recorded, trades: s.trades, deliveredWh: s.deliveredWh })
        : settlementHash({ ...recorded, trades: settledTrades.map((t) => t.trade), deliveredWh: delivered as number[] });
  if (recorded === null || recorded.height !== height || hash === null || !bytesEqual(hash, s.hash)) {
    fault(height, "PG_ERR_VERIFY_MARKET", `the recorded settlement of the period ending ${new Date(s.periodEndMs).toISOString()} (metered energy, deliveries or transfers) differs from the re-applied one`);
  }
}

/** The Merkle root says the body changed; find the transaction whose signature no longer holds. */
function blameTransaction(state: LedgerState, txs: readonly SignedTx[], height: number, verifier: SignatureVerifier): void {
  txs.forEach((t, i) => {
    const author = state.tree.get(memberKey(t.tx.author));
    const what = `${t.tx.body.type as TxTypeName} by member ${t.tx.author}`;
    if (author === undefined || author.kind !== "member") return;
    const msg = txSigningMessage(state.chain.txSignPrefix, t.bytes, true);
    if (!verifier.verify(author.publicKey, msg, signatureOf(t.bytes))) {
      fault(height, "PG_ERR_VERIFY_TX_TAMPERED", `transaction ${i} (${what}) is not the one the block committed to: its signature does not verify`, i, toHex(t.id));
    }
  });
}

function compareSavedState(store: LedgerStore, state: LedgerState): number {
  const height = state.height;
  const saved = new Map(store.savedState());
  let n = 0;
  for (const e of state.tree.entries()) {
    const bytes = saved.get(e.key);
    if (bytes === undefined || !bytesEqual(bytes, encodeRecord(e.value))) {
      fault(height, "PG_ERR_VERIFY_SAVED_STATE", `saved state record ${e.key} differs from the re-applied chain`);
    }
    saved.delete(e.key);
    n++;
  }
  const extra = saved.keys().next();
  if (!extra.done) fault(height, "PG_ERR_VERIFY_SAVED_STATE", `saved state has record ${extra.value} that the chain never produced`);
  return n;
}

/** The latest_readings table must be exactly the meter records of the final state. */
function compareLatestReadings(store: LedgerStore, state: LedgerState): void {
  const rows = new Map(store.latestReadings().map((r) => [`${r.author}/${r.meterId}`, r]));
  for (const e of state.tree.entries()) {
    if (e.value.kind !== "meter") continue;
    const m = e.value;
    const row = rows.get(`${m.author}/${m.meterId}`);
    const same =
      row !== undefined &&
      row.timeMs === m.timeMs &&
      row.importWh === m.importWh &&
      row.exportWh === m.exportWh &&
      row.powerW === m.powerW &&
      row.frequencyMilliHz === m.frequencyMilliHz &&
      row.quality === m.quality &&
      row.voltagesDeciV.join(",") === m.voltagesDeciV.join(",");
    if (!same) fault(state.height, "PG_ERR_VERIFY_LATEST_READINGS", `latest_readings row of meter ${m.author}/${m.meterId} differs from the chain's latest reading`);
    rows.delete(`${m.author}/${m.meterId}`);
  }
  const extra = rows.keys().next();
  if (!extra.done) fault(state.height, "PG_ERR_VERIFY_LATEST_READINGS", `latest_readings has meter ${extra.value}, which never sent a reading`);
}
