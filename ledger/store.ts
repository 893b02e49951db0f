// The ledger store: one SQLite file per box (better-sqlite3, WAL mode,
// synchronous=FULL). Everything a block changes (the block, its transactions
// and their results, the state records it touched, the latest reading of each
// meter) is written in ONE SQLite transaction, so a power cut or `kill -9`
// at any moment leaves the file at the last fully written block.
//
// On open the store refuses, with a clear StoreError, a file that is not a
// peergrid store, has a newer schema, fails SQLite's quick_check, belongs to
// another chain, or whose saved state does not hash to the root recorded for
// its last block.
//
// Tables
//   meta            key -> value: chain hash, genesis document
//   blocks          height -> hash, signed header, time, first tx row, tx count,
//                   state root AFTER the block (checked on reopen). Tx count 0
//                   for a block held by header only (installCheckpoint).
//   txs             one row per transaction (raw bytes, result, author, seq,
//                   type, time), rowid in chain order. Indexed by (type, time,
//                   author) for everything, and by id prefix and (author, seq)
//                   for everything but readings (see recentReadings for why).
//                   The 32-byte id is not stored: it is the hash of `raw`, and
//                   a 48-bit prefix finds the row (~56 bytes saved per reading).
//   latest_readings (author, meter) -> the newest reading
//   state           key -> encoded StateRecord (the state after the head block)
//   market_*        what the market step (market/interval.ts) computed in the
//                   block that entered each interval: the clearing (intervals,
//                   trades, closed orders) and the settlement (settlements,
//                   metered, transfers; a trade's delivered Wh once settled).
//                   The state keeps only hashes of these lists (record "x"):
//                   they are derived data, re-derivable from the chain
//                   (`peergrid market replay`).
//   checkpoints, checkpoint_state
//                   copies of the state table at some heights: where an
//                   auditor (verify) starts re-applying blocks once the raw
//                   readings before them are gone.
//
// Retention (DESIGN.md: Storage). Readings are nearly all of the ledger's
// bytes; everything else (headers, orders, votes, membership, islanding,
// switching, the market tables with each period's metered energy per member)
// is kept for ever. `pruneReadingsTo(B)` drops the reading rows of blocks
// 1..B, where B is a checkpoint: blocks.header keeps each block's Merkle root
// over all its transactions, so an archive of the dropped readings can still
// be checked against the chain, and the checkpoint (whose root the header of
// block B+1 signs) is where re-applying starts. The rows are deleted a batch at
// a time (pruneStep) so that a box never stalls its one-second blocks; meta
// "readings_pruned_to" says which blocks no longer hold their readings, and
// "prune_cursor" how far the deletion has got.
//
// Installing a checkpoint (a new box, or one offline for longer than its
// neighbours keep readings). Once the neighbours have pruned blocks 1..B, no
// box can send them whole, so a box whose head is below B installs a copy of
// the state after B instead (installCheckpoint; daemon/node.ts fetches it
// from a peer and first anchors block B's header to the chain Raft
// committed). In ONE SQLite transaction it writes block B's header (not its
// transactions), the state records (refused unless they hash to the root
// that block B+1's header signs), the latest readings they hold, the
// checkpoint at B, meta "readings_pruned_to" = B and "history_from" = B.
// The box keeps its genesis block and whatever blocks it had (1..k, now
// counted as pruned); blocks k+1..B-1 it never holds ("history before B not
// held"): meta "history_gaps" lists such runs (historyGaps()), so that an
// auditor tells them from blocks lost. Block B is held by header only: its row has
// tx_count 0 (its header's txCount says how many it had), so the rowids of
// later blocks follow on in chain order. (A box that falls behind again
// and installs a later checkpoint keeps the earlier one's block, by header
// only, among its own.) header(h), getBlock(h) and rawBlock(h) are null for
// a height not held; getBlock also for a block held by header only
// (rawBlock says `headerOnly`). The market tables hold nothing of the
// intervals cleared before B: they are derived data (`peergrid market
// replay` on a box that holds that history), and the latest_readings rows
// name B as their block (the one they came in is not held).
import Database from "better-sqlite3";
import { configureDurable, configureReplayable, fsyncDir } from "./sqlite-files.js";
import { existsSync, renameSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import { assert, bytesEqual } from "./assert.js";
import { type Block, type BlockHeader, decodeHeader, encodeHeader } from "./block.js";
import { DecodeError, StoreError } from "./errors.js";
import { type Genesis, genesisBlock, parseGenesis } from "./genesis.js";
import { type Hash, toHex } from "./hash.js";
import {
  type AccountName,
  COMMUNITY_ACCOUNT,
  type MeterRecord,
  type StateRecord,
  type TradeRecord,
  UTILITY_ACCOUNT,
  decodeRecord,
  encodeRecord,
  meterKey,
} from "./records.js";
import type { ClearingRule } from "../market/clearing.js";
import type { ClosedOrder, CloseReason, MarketOutcome, SettlementOutcome, Tariffs } from "../market/interval.js";
import type { Transfer } from "../market/settlement.js";
import { type Chain, type LedgerState, ResultCode, emptyTree, genesisState, makeChain } from "./state.js";
import { KEY_BYTES_MAX } from "./state-tree.js";
import { type SignedTx, TxType, decodeTx, txId } from "./tx.js";

const APPLICATION_ID = 0x50475244; // "PGRD"
const SCHEMA_VERSION = 3; // 2: market tables, market/trade/balance records; 3: checkpoints (read-write open upgrades 2)
const ID_PREFIX_BYTES = 6;
const RECENT_READING_IDS_MAX = 262_144; // ~73 minutes of 60 meters at 1 Hz; ~10 MB

const CHECKPOINT_SCHEMA = `
CREATE TABLE IF NOT EXISTS checkpoints (height INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, records INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint_state (height INTEGER NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, PRIMARY KEY (height, key)) WITHOUT ROWID;
`;

const SCHEMA = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE blocks (
  height INTEGER PRIMARY KEY,
  hash BLOB NOT NULL,
  header BLOB NOT NULL,
  time_ms INTEGER NOT NULL,
  first_tx INTEGER NOT NULL,
  tx_count INTEGER NOT NULL,
  state_root BLOB NOT NULL
);
CREATE TABLE txs (
  rowid INTEGER PRIMARY KEY,
  id_prefix INTEGER NOT NULL,
  height INTEGER NOT NULL,
  author INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  type INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  result INTEGER NOT NULL,
  raw BLOB NOT NULL
);
CREATE INDEX txs_by_id ON txs(id_prefix) WHERE type <> ${TxType.reading};
CREATE INDEX txs_by_author ON txs(author, seq) WHERE type <> ${TxType.reading};
CREATE INDEX txs_by_type_time ON txs(type, time_ms, author);
CREATE TABLE latest_readings (
  author INTEGER NOT NULL,
  meter_id INTEGER NOT NULL,
  height INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  import_wh INTEGER NOT NULL,
  export_wh INTEGER NOT NULL,
  power_w INTEGER NOT NULL,
  voltages_deci_v TEXT NOT NULL,
  frequency_milli_hz INTEGER NOT NULL,
  quality INTEGER NOT NULL,
  PRIMARY KEY (author, meter_id)
) WITHOUT ROWID;
CREATE TABLE state (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE market_intervals (
  start_ms INTEGER PRIMARY KEY,
  height INTEGER NOT NULL,
  rule TEXT NOT NULL,
  price_micro_per_kwh INTEGER,
  volume_wh INTEGER NOT NULL,
  buy_orders INTEGER NOT NULL,
  sell_orders INTEGER NOT NULL,
  trade_count INTEGER NOT NULL,
  trades_hash BLOB NOT NULL
);
CREATE TABLE market_trades (
  interval_start_ms INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  buy_order BLOB NOT NULL,
  sell_order BLOB NOT NULL,
  buyer INTEGER NOT NULL,
  seller INTEGER NOT NULL,
  energy_wh INTEGER NOT NULL,
  buyer_price_micro_per_kwh INTEGER NOT NULL,
  seller_price_micro_per_kwh INTEGER NOT NULL,
  delivered_wh INTEGER,
  PRIMARY KEY (interval_start_ms, idx)
) WITHOUT ROWID;
CREATE INDEX market_trades_by_buyer ON market_trades(buyer, interval_start_ms);
CREATE INDEX market_trades_by_seller ON market_trades(seller, interval_start_ms);
CREATE TABLE market_closed_orders (
  id BLOB PRIMARY KEY,
  height INTEGER NOT NULL,
  author INTEGER NOT NULL,
  side TEXT NOT NULL,
  interval_start_ms INTEGER NOT NULL,
  energy_wh INTEGER NOT NULL,
  filled_wh INTEGER NOT NULL,
  reason TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX market_closed_orders_by_interval ON market_closed_orders(interval_start_ms);
CREATE TABLE market_settlements (
  period_end_ms INTEGER PRIMARY KEY,
  period_start_ms INTEGER NOT NULL,
  height INTEGER NOT NULL,
  trades_interval_start_ms INTEGER,
  islanded_permille INTEGER NOT NULL,
  shadow INTEGER NOT NULL,
  tariffs TEXT NOT NULL,
  hash BLOB NOT NULL
);
CREATE TABLE market_metered (
  period_end_ms INTEGER NOT NULL,
  member INTEGER NOT NULL,
  import_wh INTEGER NOT NULL,
  export_wh INTEGER NOT NULL,
  meters INTEGER NOT NULL,
  silent_meters INTEGER NOT NULL,
  PRIMARY KEY (period_end_ms, member)
) WITHOUT ROWID;
${CHECKPOINT_SCHEMA}
CREATE TABLE market_transfers (
  period_end_ms INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  from_account TEXT NOT NULL,
  to_account TEXT NOT NULL,
  amount_micro INTEGER NOT NULL,
  why TEXT NOT NULL,
  trade_idx INTEGER,
  PRIMARY KEY (period_end_ms, idx)
) WITHOUT ROWID;
`;

/** A recorded clearing (market_intervals and its trades and closed orders). */
export interface StoredInterval {
  readonly startMs: number;
  readonly height: number; // the block that cleared it
  readonly rule: ClearingRule;
  readonly priceMicroPerKWh: number | null;
  readonly volumeWh: number;
  readonly buyOrders: number;
  readonly sellOrders: number;
  readonly tradesHash: Hash;
  /** In clearing order; deliveredWh is null until the interval is settled. */
  readonly trades: readonly { readonly trade: TradeRecord; readonly deliveredWh: number | null }[];
  readonly closedOrders: readonly (ClosedOrder & { readonly height: number })[];
}

/** A recorded settlement (market_settlements with its metered energy and transfers). */
export interface StoredSettlement extends Omit<SettlementOutcome, "trades" | "deliveredWh"> {
  readonly height: number; // the block that settled it
}

function closedOrderOf(o: Row): ClosedOrder & { readonly height: number } {
  return {
    id: new Uint8Array(o.id as Buffer),
    height: o.height as number,
    author: o.author as number,
    side: o.side as "buy" | "sell",
    intervalStartMs: o.interval_start_ms as number,
    energyWh: o.energy_wh as number,
    filledWh: o.filled_wh as number,
    reason: o.reason as CloseReason,
  };
}

/** A market_trades row as its trade record. */
function tradeOfRow(t: Row): TradeRecord {
  return {
    kind: "trade",
    intervalStartMs: t.interval_start_ms as number,
    index: t.idx as number,
    buyOrder: new Uint8Array(t.buy_order as Buffer),
    sellOrder: new Uint8Array(t.sell_order as Buffer),
    buyer: t.buyer as number,
    seller: t.seller as number,
    energyWh: t.energy_wh as number,
    buyerPriceMicroPerKWh: t.buyer_price_micro_per_kwh as number,
    sellerPriceMicroPerKWh: t.seller_price_micro_per_kwh as number,
  };
}

/** A copy of the state after block `height` (table checkpoint_state). */
export interface Checkpoint {
  readonly height: number;
  readonly timeMs: number;
  readonly records: number;
}

/** A block's header as stored, without its transactions. */
export interface StoredHeader {
  readonly header: BlockHeader;
  readonly hash: Hash;
  readonly stateRoot: Hash; // after this block
}

/** One reading of one meter, as a history point. */
export interface MeterPoint {
  readonly height: number;
  readonly timeMs: number;
  readonly importWh: number;
  readonly exportWh: number;
  readonly powerW: number;
  readonly quality: number;
}

/** The reading in a (height, raw) txs row when it is meter `meterId`'s, else null. */
function meterPointOf(row: Row, meterId: number): MeterPoint | null {
  const body = decodeTx(new Uint8Array(row.raw as Buffer)).tx.body;
  assert(body.type === "reading", "a reading row holds a reading");
  if (body.meterId !== meterId) return null;
  return { height: row.height as number, timeMs: body.timeMs, importWh: body.importWh, exportWh: body.exportWh, powerW: body.powerW, quality: body.quality };
}

export interface StoredTx {
  readonly signed: SignedTx;
  readonly height: number;
  readonly index: number; // position in its block
  readonly result: ResultCode;
}

export interface StoredBlock {
  /** When readingsPruned, `txs` are the transactions kept (all but the readings) and header.txCount says how many there were. */
  readonly block: Block;
  readonly results: readonly ResultCode[];
  readonly stateRoot: Hash; // after this block
  readonly readingsPruned: boolean;
}

/** The newest reading of one meter, as the latest_readings table keeps it. */
export type LatestReading = Pick<
  MeterRecord,
  "author" | "meterId" | "timeMs" | "importWh" | "exportWh" | "powerW" | "voltagesDeciV" | "frequencyMilliHz" | "quality"
> & { readonly height: number };

export interface TxColumns {
  readonly idPrefix: number;
  readonly height: number;
  readonly author: number;
  readonly seq: number;
  readonly type: number;
  readonly timeMs: number;
}

export interface RawBlock {
  readonly hash: Uint8Array;
  readonly header: Uint8Array;
  readonly timeMs: number; // the blocks.time_ms column
  readonly stateRoot: Uint8Array;
  readonly txs: readonly { readonly raw: Uint8Array; readonly result: number; readonly columns: TxColumns }[];
  /** Its readings were given up (retention): `txs` lacks them. */
  readonly readingsPruned: boolean;
  /** Held by header only (an installed checkpoint's block, see the head of this file): `txs` is empty. */
  readonly headerOnly: boolean;
}

export interface OpenOptions {
  /** Refuse a store of any other chain. */
  readonly genesis?: Genesis;
  readonly readonly?: boolean;
  /** Skip SQLite's quick_check on open (only for tools that check everything anyway). */
  readonly skipQuickCheck?: boolean;
  /**
   * "full" (default): every block fsynced before appendBlock returns.
   * "replayable": no fsync per block and no automatic checkpoint; the caller
   * replays lost blocks from its Raft log and checkpoints off the main
   * thread (daemon/ledger-checkpointer.ts). See sqlite-files.ts.
   */
  readonly durability?: "full" | "replayable";
}

function idPrefix(id: Hash): number {
  let n = 0;
  for (let i = 0; i < ID_PREFIX_BYTES; i++) n = n * 256 + (id[i] as number);
  return n;
}

function sqliteMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

type Row = Record<string, unknown>;

export class LedgerStore {
  readonly chain: Chain;
  private readonly stmts: ReturnType<LedgerStore["prepare"]>;

  private constructor(
    private readonly db: Database.Database,
    readonly path: string,
    chain: Chain,
  ) {
    this.chain = chain;
    this.stmts = this.prepare();
  }

  /**
   * Create a new store holding the genesis block. Refuses an existing file.
   * The store is built under a temporary name and renamed into place only
   * when complete: a crash during create leaves no store (and a stale
   * temporary file, removed by the next create), never a half-made file that
   * open would refuse and create would refuse to replace.
   */
  static create(path: string, genesis: Genesis): LedgerStore {
    if (existsSync(path)) throw new StoreError("PG_ERR_STORE_EXISTS", `${path} already exists; refusing to overwrite a ledger`);
    const tmp = `${path}.creating`;
    for (const f of [tmp, `${tmp}-journal`, `${tmp}-wal`, `${tmp}-shm`]) rmSync(f, { force: true });
    const db = new Database(tmp);
    try {
      // Rollback journal while creating (no -wal file to carry across the rename); open switches to WAL.
      db.pragma("synchronous = FULL");
      const chain = makeChain(genesis);
      const g = genesisBlock(genesis);
      const state0 = genesisState(chain);
      db.transaction(() => {
        db.exec(SCHEMA);
        db.pragma(`application_id = ${APPLICATION_ID}`);
        db.pragma(`user_version = ${SCHEMA_VERSION}`);
        const meta = db.prepare("INSERT INTO meta (key, value) VALUES (?, ?)");
        meta.run("chain_hash", Buffer.from(chain.hash));
        meta.run("chain_id", Buffer.from(genesis.chainId));
        meta.run("genesis", Buffer.from(JSON.stringify(genesis)));
        db.prepare("INSERT INTO blocks (height, hash, header, time_ms, first_tx, tx_count, state_root) VALUES (0, ?, ?, ?, 1, 0, ?)").run(
          Buffer.from(g.hash),
          Buffer.from(encodeHeader(g.header, g.signature)),
          g.header.timeMs,
          Buffer.from(state0.tree.root),
        );
        const put = db.prepare("INSERT INTO state (key, value) VALUES (?, ?)");
        for (const e of state0.tree.entries()) put.run(e.key, Buffer.from(encodeRecord(e.value)));
      })();
    } catch (err) {
      db.close();
      rmSync(tmp, { force: true });
      throw err;
    }
    db.close();
    renameSync(tmp, path);
    fsyncDir(dirname(path));
    return LedgerStore.open(path, { genesis });
  }

  static open(path: string, options: OpenOptions = {}): LedgerStore {
    if (!existsSync(path)) throw new StoreError("PG_ERR_STORE_MISSING", `${path} does not exist; create it with \`peergrid init\``);
    let db: Database.Database;
    try {
      db = new Database(path, { readonly: options.readonly ?? false, fileMustExist: true });
    } catch (err) {
      throw new StoreError("PG_ERR_STORE_CORRUPT", `${path} cannot be opened as SQLite: ${sqliteMessage(err)}`, { cause: err });
    }
    try {
      const chain = checkFile(db, path, options);
      if (!options.readonly) (options.durability === "replayable" ? configureReplayable : configureDurable)(db);
      return new LedgerStore(db, path, chain);
    } catch (err) {
      db.close();
      if (err instanceof StoreError) throw err;
      throw new StoreError("PG_ERR_STORE_CORRUPT", `${path} is not a usable peergrid store: ${sqliteMessage(err)}`, { cause: err });
    }
  }

  private prepare() {
    const db = this.db;
    return {
      head: db.prepare("SELECT height, hash, time_ms, state_root FROM blocks ORDER BY height DESC LIMIT 1"),
      block: db.prepare("SELECT * FROM blocks WHERE height = ?"),
      insertBlock: db.prepare("INSERT INTO blocks (height, hash, header, time_ms, first_tx, tx_count, state_root) VALUES (?, ?, ?, ?, ?, ?, ?)"),
      maxTxRow: db.prepare("SELECT COALESCE(MAX(rowid), 0) AS n FROM txs"),
      insertTx: db.prepare("INSERT INTO txs (rowid, id_prefix, height, author, seq, type, time_ms, result, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"),
      txRange: db.prepare("SELECT rowid, id_prefix, height, author, seq, type, time_ms, result, raw FROM txs WHERE rowid >= ? AND rowid < ? ORDER BY rowid"),
      // A replayed tx has the same id as its original: the copy that took effect first.
      txById: db.prepare(`SELECT t.rowid AS rowid, t.height AS height, t.raw AS raw, t.result AS result, t.rowid - b.first_tx AS idx FROM txs t JOIN blocks b ON b.height = t.height WHERE t.id_prefix = ? AND t.type <> ${TxType.reading} ORDER BY t.result = 0 DESC, t.rowid`),
      txByRow: db.prepare(`SELECT t.rowid AS rowid, t.height AS height, t.raw AS raw, t.result AS result, t.rowid - b.first_tx AS idx FROM txs t JOIN blocks b ON b.height = t.height WHERE t.rowid = ?`),
      recentReadingRows: db.prepare(`SELECT rowid, raw FROM txs WHERE type = ${TxType.reading} AND result = 0 ORDER BY rowid DESC LIMIT ?`),
      txsByAuthor: db.prepare(`SELECT t.rowid AS rowid, t.height AS height, t.raw AS raw, t.result AS result, t.rowid - b.first_tx AS idx FROM txs t JOIN blocks b ON b.height = t.height WHERE t.author = ? AND t.type <> ${TxType.reading} AND t.seq >= ? ORDER BY t.seq LIMIT ?`),
      readingsOf: db.prepare(`SELECT t.rowid AS rowid, t.height AS height, t.raw AS raw, t.result AS result, t.rowid - b.first_tx AS idx FROM txs t JOIN blocks b ON b.height = t.height WHERE t.type = ${TxType.reading} AND t.time_ms >= ? AND t.time_ms < ? AND t.author = ? ORDER BY t.time_ms LIMIT ?`),
      txsByTypeTime: db.prepare(`SELECT t.rowid AS rowid, t.height AS height, t.raw AS raw, t.result AS result, t.rowid - b.first_tx AS idx FROM txs t JOIN blocks b ON b.height = t.height WHERE t.type = ? AND t.time_ms >= ? AND t.time_ms < ? ORDER BY t.time_ms LIMIT ?`),
      upsertState: db.prepare("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"),
      deleteState: db.prepare("DELETE FROM state WHERE key = ?"),
      allState: db.prepare("SELECT key, value FROM state ORDER BY key"),
      upsertReading: db.prepare(
        `INSERT INTO latest_readings (author, meter_id, height, time_ms, import_wh, export_wh, power_w, voltages_deci_v, frequency_milli_hz, quality)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT(author, meter_id) DO UPDATE SET height = excluded.height, time_ms = excluded.time_ms, import_wh = excluded.import_wh,
           export_wh = excluded.export_wh, power_w = excluded.power_w, voltages_deci_v = excluded.voltages_deci_v,
           frequency_milli_hz = excluded.frequency_milli_hz, quality = excluded.quality`,
      ),
      latestReadings: db.prepare("SELECT * FROM latest_readings ORDER BY author, meter_id"),
      insertInterval: db.prepare(
        "INSERT INTO market_intervals (start_ms, height, rule, price_micro_per_kwh, volume_wh, buy_orders, sell_orders, trade_count, trades_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      insertTrade: db.prepare(
        "INSERT INTO market_trades (interval_start_ms, idx, buy_order, sell_order, buyer, seller, energy_wh, buyer_price_micro_per_kwh, seller_price_micro_per_kwh, delivered_wh) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
      ),
      setDelivered: db.prepare("UPDATE market_trades SET delivered_wh = ? WHERE interval_start_ms = ? AND idx = ?"),
      insertClosedOrder: db.prepare(
        "INSERT INTO market_closed_orders (id, height, author, side, interval_start_ms, energy_wh, filled_wh, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      insertSettlement: db.prepare(
        "INSERT INTO market_settlements (period_end_ms, period_start_ms, height, trades_interval_start_ms, islanded_permille, shadow, tariffs, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
      ),
      insertMetered: db.prepare("INSERT INTO market_metered (period_end_ms, member, import_wh, export_wh, meters, silent_meters) VALUES (?, ?, ?, ?, ?, ?)"),
      insertTransfer: db.prepare(
        "INSERT INTO market_transfers (period_end_ms, idx, from_account, to_account, amount_micro, why, trade_idx) VALUES (?, ?, ?, ?, ?, ?, ?)",
      ),
      interval: db.prepare("SELECT * FROM market_intervals WHERE start_ms = ?"),
      intervalsBefore: db.prepare("SELECT * FROM market_intervals WHERE start_ms < ? ORDER BY start_ms DESC LIMIT ?"),
      tradesOf: db.prepare("SELECT * FROM market_trades WHERE interval_start_ms = ? ORDER BY idx"),
      closedOrdersOf: db.prepare("SELECT * FROM market_closed_orders WHERE interval_start_ms = ? ORDER BY id"),
      closedOrdersAt: db.prepare("SELECT * FROM market_closed_orders WHERE height = ? ORDER BY id"),
      settlement: db.prepare("SELECT * FROM market_settlements WHERE period_end_ms = ?"),
      settlementOfTrades: db.prepare("SELECT * FROM market_settlements WHERE trades_interval_start_ms = ?"),
      meteredOf: db.prepare("SELECT * FROM market_metered WHERE period_end_ms = ? ORDER BY member"),
      transfersOf: db.prepare("SELECT * FROM market_transfers WHERE period_end_ms = ? ORDER BY idx"),
      // Read-only queries of the HTTP API (daemon/http.ts).
      headersBefore: db.prepare("SELECT height, hash, header, tx_count, state_root FROM blocks WHERE height < ? ORDER BY height DESC LIMIT ?"),
      headerRows: db.prepare("SELECT height, header FROM blocks WHERE height >= ? AND height < ? ORDER BY height"),
      // Runs of heights up to `?` with no blocks row: each between two rows (genesis is always held).
      gaps: db.prepare("SELECT prev + 1 AS gap_from, height - 1 AS gap_to FROM (SELECT height, LAG(height) OVER (ORDER BY height) AS prev FROM blocks WHERE height <= ?) WHERE height - prev > 1 ORDER BY height"),
      // One author's accepted readings among the first @entries entries of the (type, time, author) index in
      // [@fromMs, @toMs), every author's: the index is not by author, so without that bound a walk for a meter that
      // is silent (or an author with few readings) would pass over every other meter's readings in the range.
      // The walk is a co-routine in index order (CROSS JOIN keeps it the outer loop): a caller that stops early stops it.
      readingWalkAsc: db.prepare(
        `SELECT t.height, t.raw FROM (SELECT rowid AS r, author AS a FROM txs WHERE type = ${TxType.reading} AND time_ms >= @fromMs AND time_ms < @toMs ORDER BY time_ms LIMIT @entries) AS s
         CROSS JOIN txs AS t ON t.rowid = s.r WHERE s.a = @author AND t.result = 0`,
      ),
      readingWalkDesc: db.prepare(
        `SELECT t.height, t.raw FROM (SELECT rowid AS r, author AS a FROM txs WHERE type = ${TxType.reading} AND time_ms >= @fromMs AND time_ms < @toMs ORDER BY time_ms DESC LIMIT @entries) AS s
         CROSS JOIN txs AS t ON t.rowid = s.r WHERE s.a = @author AND t.result = 0`,
      ),
      // Whether [?, ?) holds more than ? readings (of any author): whether a walk bounded by that many was cut.
      readingEntryBeyond: db.prepare(`SELECT 1 AS beyond FROM txs WHERE type = ${TxType.reading} AND time_ms >= ? AND time_ms < ? ORDER BY time_ms LIMIT 1 OFFSET ?`),
      // Each branch walks its own index newest interval first and stops at the limit (no sort of all the member's
      // trades; the last interval of a page may be cut, which the caller handles); a self-trade is listed once.
      tradesOfMember: db.prepare(
        `SELECT * FROM (SELECT * FROM market_trades WHERE buyer = @member AND interval_start_ms < @beforeMs ORDER BY interval_start_ms DESC LIMIT @limit)
         UNION ALL
         SELECT * FROM (SELECT * FROM market_trades WHERE seller = @member AND buyer <> @member AND interval_start_ms < @beforeMs ORDER BY interval_start_ms DESC LIMIT @limit)
         ORDER BY interval_start_ms DESC, idx DESC LIMIT @limit`,
      ),
    };
  }

  head(): { height: number; hash: Hash; timeMs: number; stateRoot: Hash } {
    const row = this.stmts.head.get() as Row | undefined;
    assert(row !== undefined, "a store always holds the genesis block");
    return { height: row.height as number, hash: new Uint8Array(row.hash as Buffer), timeMs: row.time_ms as number, stateRoot: new Uint8Array(row.state_root as Buffer) };
  }

  /**
   * The ledger state after the head block, rebuilt from the state table and
   * checked against the root recorded with that block.
   */
  loadState(): LedgerState {
    const head = this.head();
    try {
      this.getBlock(head.height); // the head block must read whole (or, pruned, its kept transactions must; held by header only, its header)
    } catch (err) {
      // Rows read from disk are input: a damaged head block is a corrupt store, not a broken invariant of this process.
      throw new StoreError("PG_ERR_STORE_CORRUPT", `${this.path}: head block ${head.height} is unreadable (${sqliteMessage(err)}); run \`peergrid verify\``, { cause: err });
    }
    return this.stateFrom(head.height, this.stmts.allState.iterate() as Iterable<Row>, "saved state");
  }

  /**
   * The state after block `height`, rebuilt from (key, value) rows and checked
   * against the root the store recorded with that block.
   */
  private stateFrom(height: number, rows: Iterable<Row>, what: string): LedgerState {
    let block: StoredHeader | null;
    try {
      block = this.header(height);
    } catch (err) {
      // Rows read from disk are input: a damaged block row is a corrupt store, not a broken invariant of this process.
      throw new StoreError("PG_ERR_STORE_CORRUPT", `${this.path}: block ${height} is unreadable (${sqliteMessage(err)}); run \`peergrid verify\``, { cause: err });
    }
    if (block === null) throw new StoreError("PG_ERR_STORE_CORRUPT", `${this.path}: block ${height} is missing; run \`peergrid verify\``);
    const changes = new Map<string, StateRecord | null>();
    for (const row of rows) {
      let rec: StateRecord;
      try {
        rec = decodeRecord(new Uint8Array(row.value as Buffer));
      } catch (err) {
        // Bytes that do not decode are a damaged store, not bad input: the same StoreError as a wrong root.
        throw new StoreError("PG_ERR_STORE_CORRUPT", `${this.path}: ${what} record ${String(row.key)} does not decode (${sqliteMessage(err)}); run \`peergrid verify\``, { cause: err });
      }
      changes.set(row.key as string, rec);
    }
    const tree = emptyTree().withUpdates(changes);
    if (!bytesEqual(tree.root, block.stateRoot)) {
      throw new StoreError(
        "PG_ERR_STORE_CORRUPT",
        `${this.path}: the ${what} hashes to ${toHex(tree.root)}, not to the root ${toHex(block.stateRoot)} recorded for block ${height}; run \`peergrid verify\``,
      );
    }
    // Height, hash and time come from the decoded header (checked against the row's hash), never from the convenience columns.
    const { header, hash } = block;
    return { chain: this.chain, height: header.height, blockHash: hash, timeMs: header.timeMs, raftTerm: header.raftTerm, raftIndex: header.raftIndex, tree };
  }

  /**
   * Append an applied block: the block, its transactions with their results,
   * the changed state records and latest readings, in one SQLite transaction.
   * `state` is the state after the block, `changes` what the block changed.
   */
  appendBlock(
    block: Block,
    results: readonly ResultCode[],
    state: LedgerState,
    changes: ReadonlyMap<string, StateRecord | null>,
    market: MarketOutcome | null = null,
  ): void {
    const h = block.header;
    assert(results.length === block.txs.length, "one result per transaction");
    assert(state.height === h.height && bytesEqual(state.blockHash, block.hash), "state is the state after this block");
    let firstRow = 0;
    const run = this.db.transaction(() => {
      const head = this.head();
      assert(h.height === head.height + 1 && bytesEqual(h.parentHash, head.hash), `block ${h.height} extends the stored head ${head.height}`);
      firstRow = this.nextTxRow(head.height);
      this.stmts.insertBlock.run(h.height, Buffer.from(block.hash), Buffer.from(encodeHeader(h, block.signature)), h.timeMs, firstRow, block.txs.length, Buffer.from(state.tree.root));
      block.txs.forEach((t, i) => {
        const c = LedgerStore.txColumns(t, h.height, h.timeMs);
        this.stmts.insertTx.run(firstRow + i, c.idPrefix, c.height, c.author, c.seq, c.type, c.timeMs, results[i] as number, Buffer.from(t.bytes));
      });
      // The market step also rewrites meter records (their settled counters): only a reading moves latest_readings.
      const read = new Set<string>();
      block.txs.forEach((t, i) => {
        if (t.tx.body.type === "reading" && results[i] === ResultCode.ok) read.add(meterKey(t.tx.author, t.tx.body.meterId));
      });
      for (const [key, rec] of changes) {
        if (rec === null) this.stmts.deleteState.run(key);
        else this.stmts.upsertState.run(key, Buffer.from(encodeRecord(rec)));
        if (rec !== null && rec.kind === "meter" && read.has(key)) {
          this.upsertLatestReading(rec, h.height);
        }
      }
      if (market !== null) this.writeMarket(h.height, market);
    });
    run.immediate();
    // Only once the block is durable: remember its readings' ids (see recentReadings).
    if (this.recentReadings !== null) {
      block.txs.forEach((t, i) => {
        if (t.tx.body.type === "reading" && results[i] === ResultCode.ok) this.rememberReading(idPrefix(t.id), firstRow + i);
      });
    }
  }

  private writeMarket(height: number, m: MarketOutcome): void {
    const s = m.settlement;
    this.stmts.insertSettlement.run(s.periodEndMs, s.periodStartMs, height, s.tradesIntervalStartMs, s.islandedPermille, s.shadow ? 1 : 0, JSON.stringify(s.tariffs), Buffer.from(s.hash));
    s.trades.forEach((t, i) => this.stmts.setDelivered.run(s.deliveredWh[i] as number, t.intervalStartMs, t.index));
    for (const e of s.metered) this.stmts.insertMetered.run(s.periodEndMs, e.member, e.importWh, e.exportWh, e.meters, e.silentMeters);
    s.transfers.forEach((t, i) => this.stmts.insertTransfer.run(s.periodEndMs, i, String(t.from), String(t.to), t.amountMicro, t.why, t.trade ?? null));
    const c = m.clearing;
    this.stmts.insertInterval.run(c.intervalStartMs, height, c.rule, c.priceMicroPerKWh, c.volumeWh, c.buyOrders, c.sellOrders, c.trades.length, Buffer.from(c.hash));
    for (const t of c.trades) {
      this.stmts.insertTrade.run(t.intervalStartMs, t.index, Buffer.from(t.buyOrder), Buffer.from(t.sellOrder), t.buyer, t.seller, t.energyWh, t.buyerPriceMicroPerKWh, t.sellerPriceMicroPerKWh);
    }
    for (const o of m.closedOrders) this.stmts.insertClosedOrder.run(Buffer.from(o.id), height, o.author, o.side, o.intervalStartMs, o.energyWh, o.filledWh, o.reason);
  }

  /** The recorded clearing of the interval starting at startMs (null: none recorded), with its trades. */
  marketInterval(startMs: number): StoredInterval | null {
    const row = this.stmts.interval.get(startMs) as Row | undefined;
    return row === undefined ? null : this.intervalFromRow(row);
  }

  /** The recorded clearings before `beforeMs`, newest first. */
  marketIntervals(beforeMs: number, limit: number): StoredInterval[] {
    return (this.stmts.intervalsBefore.all(beforeMs, limit) as Row[]).map((r) => this.intervalFromRow(r));
  }

  private intervalFromRow(row: Row): StoredInterval {
    const startMs = row.start_ms as number;
    const trades = (this.stmts.tradesOf.all(startMs) as Row[]).map((t) => ({ trade: tradeOfRow(t), deliveredWh: t.delivered_wh as number | null }));
    return {
      startMs,
      height: row.height as number,
      rule: row.rule as ClearingRule,
      priceMicroPerKWh: row.price_micro_per_kwh as number | null,
      volumeWh: row.volume_wh as number,
      buyOrders: row.buy_orders as number,
      sellOrders: row.sell_orders as number,
      tradesHash: new Uint8Array(row.trades_hash as Buffer),
      trades,
      closedOrders: (this.stmts.closedOrdersOf.all(startMs) as Row[]).map(closedOrderOf),
    };
  }

  /** The orders the block at `height` closed (its market step), whatever interval they were for. */
  closedOrdersAt(height: number): (ClosedOrder & { readonly height: number })[] {
    return (this.stmts.closedOrdersAt.all(height) as Row[]).map(closedOrderOf);
  }

  /** The recorded settlement of the period ending at periodEndMs (null: none), with its metered energy and transfers. */
  marketSettlement(periodEndMs: number): StoredSettlement | null {
    const row = this.stmts.settlement.get(periodEndMs) as Row | undefined;
    return row === undefined ? null : this.settlementFromRow(row);
  }

  /** The recorded settlement of the trades of the interval starting at startMs (null: not settled yet). */
  settlementOfInterval(startMs: number): StoredSettlement | null {
    const row = this.stmts.settlementOfTrades.get(startMs) as Row | undefined;
    return row === undefined ? null : this.settlementFromRow(row);
  }

  private settlementFromRow(row: Row): StoredSettlement {
    const periodEndMs = row.period_end_ms as number;
    const account = (text: string): AccountName => (text === UTILITY_ACCOUNT || text === COMMUNITY_ACCOUNT ? text : Number(text));
    return {
      periodStartMs: row.period_start_ms as number,
      periodEndMs,
      height: row.height as number,
      tradesIntervalStartMs: row.trades_interval_start_ms as number | null,
      islandedPermille: row.islanded_permille as number,
      shadow: row.shadow === 1,
      tariffs: JSON.parse(row.tariffs as string) as Tariffs,
      hash: new Uint8Array(row.hash as Buffer),
      metered: (this.stmts.meteredOf.all(periodEndMs) as Row[]).map((e) => ({
        member: e.member as number,
        importWh: e.import_wh as number,
        exportWh: e.export_wh as number,
        meters: e.meters as number,
        silentMeters: e.silent_meters as number,
      })),
      transfers: (this.stmts.transfersOf.all(periodEndMs) as Row[]).map((t) => {
        const base = { from: account(t.from_account as string), to: account(t.to_account as string), amountMicro: t.amount_micro as number, why: t.why as Transfer["why"] };
        return t.trade_idx === null ? base : { ...base, trade: t.trade_idx as number };
      }),
    };
  }

  /**
   * Readings are most of the ledger (one a second per meter) and their ids
   * are random: a B-tree index on them rewrites a random page per reading, so
   * an SD card would see megabytes written per block. Readings are therefore
   * indexed on disk only by (type, time, author); the ids of the most recent
   * RECENT_READING_IDS_MAX readings (over an hour at the design load, what a
   * submitter asks about) are kept in memory, rebuilt from the newest rows on
   * first use after opening. Older readings are found by meter and time.
   */
  private recentReadings: Map<number, number> | null = null; // id prefix -> rowid of an accepted reading

  private rememberReading(prefix: number, rowid: number): void {
    const map = this.recentReadings;
    assert(map !== null, "recent readings are loaded");
    if (map.has(prefix)) return; // a replay of an accepted reading is always rejected: keep the original
    map.set(prefix, rowid);
    if (map.size > RECENT_READING_IDS_MAX) map.delete(map.keys().next().value as number);
  }

  private loadRecentReadings(): Map<number, number> {
    if (this.recentReadings === null) {
      this.recentReadings = new Map();
      const rows = this.stmts.recentReadingRows.all(RECENT_READING_IDS_MAX) as Row[];
      for (let i = rows.length - 1; i >= 0; i--) {
        const row = rows[i] as Row;
        this.rememberReading(idPrefix(txId(new Uint8Array(row.raw as Buffer))), row.rowid as number);
      }
    }
    return this.recentReadings;
  }

  /** Block `height` with its transactions (null: not held, or held by header only). */
  getBlock(height: number): StoredBlock | null {
    const raw = this.rawBlock(height);
    return raw === null || raw.headerOnly ? null : blockOf(raw, height);
  }

  *blocksFrom(height: number): Generator<StoredBlock> {
    // Read block by block so that a long chain is never held in memory at once.
    for (let h = height; ; h++) {
      const b = this.getBlock(h);
      if (b === null) return;
      yield b;
    }
  }

  /** Raw rows of one block, for auditors who must re-check bytes before trusting them (null: not held). */
  rawBlock(height: number): RawBlock | null {
    const row = this.stmts.block.get(height) as Row | undefined;
    if (row === undefined) return null;
    const first = row.first_tx as number;
    const txs = (this.stmts.txRange.all(first, first + (row.tx_count as number)) as Row[]).map((r) => ({
      raw: new Uint8Array(r.raw as Buffer),
      result: r.result as number,
      columns: { idPrefix: r.id_prefix as number, height: r.height as number, author: r.author as number, seq: r.seq as number, type: r.type as number, timeMs: r.time_ms as number },
    }));
    const readingsPruned = height > 0 && height <= this.readingsPrunedTo();
    const base = { hash: new Uint8Array(row.hash as Buffer), header: new Uint8Array(row.header as Buffer), timeMs: row.time_ms as number, stateRoot: new Uint8Array(row.state_root as Buffer) };
    return { ...base, txs, readingsPruned, headerOnly: headerOnly(row) };
  }

  /** The columns a transaction's row would have: what the indexes and queries read. */
  static txColumns(t: SignedTx, height: number, blockTimeMs: number): TxColumns {
    const body = t.tx.body;
    return { idPrefix: idPrefix(t.id), height, author: t.tx.author, seq: t.tx.seq, type: TxType[body.type], timeMs: body.type === "reading" ? body.timeMs : blockTimeMs };
  }

  /**
   * A transaction by id: any non-reading (the accepted copy when it was
   * replayed), and the most recent accepted readings (see recentReadings).
   */
  getTx(id: Hash): StoredTx | null {
    const prefix = idPrefix(id);
    for (const row of this.stmts.txById.all(prefix) as Row[]) {
      const found = rowTxIf(row, id);
      if (found !== null) return found;
    }
    const rowid = this.loadRecentReadings().get(prefix);
    const row = rowid === undefined ? undefined : (this.stmts.txByRow.get(rowid) as Row | undefined);
    return row === undefined ? null : rowTxIf(row, id); // a 48-bit prefix can be shared: the full id decides
  }

  /** An author's transactions other than readings (orders, cancels, membership), by sequence. */
  txsByAuthor(author: number, fromSeq = 0, limit = 100): StoredTx[] {
    return (this.stmts.txsByAuthor.all(author, fromSeq, limit) as Row[]).map((r) => rowTx(r));
  }

  /** One author's readings in [fromMs, toMs), oldest first. */
  readingsOf(author: number, fromMs: number, toMs: number, limit = 1000): StoredTx[] {
    return (this.stmts.readingsOf.all(fromMs, toMs, author, limit) as Row[]).map((r) => rowTx(r));
  }

  txsByTypeTime(type: keyof typeof TxType, fromMs: number, toMs: number, limit = 100): StoredTx[] {
    return (this.stmts.txsByTypeTime.all(TxType[type], fromMs, toMs, limit) as Row[]).map((r) => rowTx(r));
  }


  latestReadings(): LatestReading[] {
    return (this.stmts.latestReadings.all() as Row[]).map((r) => ({
      author: r.author as number,
      meterId: r.meter_id as number,
      height: r.height as number,
      timeMs: r.time_ms as number,
      importWh: r.import_wh as number,
      exportWh: r.export_wh as number,
      powerW: r.power_w as number,
      voltagesDeciV: r.voltages_deci_v === "" ? [] : (r.voltages_deci_v as string).split(",").map(Number), // a reading without phases: []
      frequencyMilliHz: r.frequency_milli_hz as number,
      quality: r.quality as number,
    }));
  }

  /** Block headers below `beforeHeight`, newest first (the stored hash checked against each header). */
  headersBefore(beforeHeight: number, limit: number): StoredHeader[] {
    assert(Number.isSafeInteger(beforeHeight) && Number.isSafeInteger(limit) && limit >= 0, "a height and a count");
    return (this.stmts.headersBefore.all(beforeHeight, limit) as Row[]).map((row) => {
      const { header, hash } = decodeHeader(new Uint8Array(row.header as Buffer));
      assert(bytesEqual(hash, new Uint8Array(row.hash as Buffer)), `stored hash of block ${String(row.height)} matches its header`);
      // tx_count 0 with a header that has transactions: a block held by header only (installCheckpoint).
      assert(header.height === row.height && (header.txCount === row.tx_count || row.tx_count === 0), "a header agrees with its row");
      return { header, hash, stateRoot: new Uint8Array(row.state_root as Buffer) };
    });
  }

  /** The header of block `height` (null: no such block). Kept for every block, pruned or not. */
  header(height: number): StoredHeader | null {
    const h = this.headersBefore(height + 1, 1)[0];
    return h !== undefined && h.header.height === height ? h : null;
  }

  // ---------------------------------------------------------------- retention (see the head of this file)

  private retentionStmts: ReturnType<LedgerStore["prepareRetention"]> | null = null;

  /** Null for a version-2 file opened read-only: it has no checkpoint tables, and nothing was pruned. */
  private retention(): ReturnType<LedgerStore["prepareRetention"]> | null {
    if (this.retentionStmts === null) {
      const has = this.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoint_state'").get() !== undefined;
      if (!has) return null;
      this.retentionStmts = this.prepareRetention();
    }
    return this.retentionStmts;
  }

  private prepareRetention() {
    const db = this.db;
    return {
      meta: db.prepare("SELECT value FROM meta WHERE key = ?"),
      setMeta: db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"),
      checkpoints: db.prepare("SELECT height, time_ms, records FROM checkpoints ORDER BY height"),
      insertCheckpoint: db.prepare("INSERT INTO checkpoints (height, time_ms, records) VALUES (?, ?, ?)"),
      copyState: db.prepare("INSERT INTO checkpoint_state (height, key, value) SELECT ?, key, value FROM state"),
      checkpointState: db.prepare("SELECT key, value FROM checkpoint_state WHERE height = ? ORDER BY key"),
      dropCheckpoints: db.prepare("DELETE FROM checkpoints WHERE height < ?"),
      dropCheckpointState: db.prepare("DELETE FROM checkpoint_state WHERE height < ?"),
      deleteReadings: db.prepare(`DELETE FROM txs WHERE rowid >= ? AND rowid < ? AND type = ${TxType.reading}`),
      checkpointPart: db.prepare("SELECT key, value FROM checkpoint_state WHERE height = ? AND key > ? ORDER BY key"),
      clearState: db.prepare("DELETE FROM state"),
      insertState: db.prepare("INSERT INTO state (key, value) VALUES (?, ?)"),
      clearLatestReadings: db.prepare("DELETE FROM latest_readings"),
    };
  }

  private metaNumber(key: string): number {
    const row = this.retention()?.meta.get(key) as Row | undefined;
    if (row === undefined) return 0;
    const n = Number((row.value as Buffer).toString("utf8"));
    if (!Number.isSafeInteger(n) || n < 0) throw new StoreError("PG_ERR_STORE_CORRUPT", `${this.path}: meta ${key} is not a count`);
    return n;
  }

  /** Blocks 1..readingsPrunedTo() hold no readings any more (0: none pruned). */
  readingsPrunedTo(): number {
    return this.metaNumber("readings_pruned_to");
  }

  /**
   * 0: this store holds the chain from genesis. B > 0: it installed a
   * checkpoint of the state after block B (see the head of this file); it
   * holds block B by header only and not the heights historyGaps() lists.
   */
  historyFrom(): number {
    return this.metaNumber("history_from");
  }

  /**
   * The runs of heights this store never held, lowest first, as each install
   * recorded them (meta "history_gaps"; none when it holds the whole chain).
   */
  historyGaps(): { readonly from: number; readonly to: number }[] {
    const row = this.retention()?.meta.get("history_gaps") as Row | undefined;
    if (row === undefined) return [];
    const text = (row.value as Buffer).toString("utf8");
    const gaps = text === "" ? [] : text.split(",").map((run) => run.split("-").map(Number));
    if (!gaps.every((g) => g.length === 2 && g.every((n) => Number.isSafeInteger(n) && n >= 1) && (g[0] as number) <= (g[1] as number))) {
      throw new StoreError("PG_ERR_STORE_CORRUPT", `${this.path}: meta history_gaps is not a list of height runs`);
    }
    return gaps.map(([from, to]) => ({ from: from as number, to: to as number }));
  }

  /** The runs of heights without a blocks row that end below a row at or below `height`, lowest first (an auditor compares them with historyGaps()). */
  heightsWithoutBlock(height: number): { readonly from: number; readonly to: number }[] {
    return (this.stmts.gaps.all(height) as Row[]).map((g) => ({ from: g.gap_from as number, to: g.gap_to as number }));
  }

  /** The state copies kept, oldest first. */
  checkpoints(): Checkpoint[] {
    const r = this.retention();
    if (r === null) return [];
    return (r.checkpoints.all() as Row[]).map((row) => ({ height: row.height as number, timeMs: row.time_ms as number, records: row.records as number }));
  }

  /** Copy the state after the head block (a no-op when that copy exists). */
  checkpoint(): Checkpoint {
    const r = this.retention();
    if (r === null) throw new StoreError("PG_ERR_STORE_READONLY", `${this.path} is open read-only`);
    const head = this.head();
    const existing = this.checkpoints().find((c) => c.height === head.height);
    if (existing !== undefined) return existing;
    let records = 0;
    this.db.transaction(() => {
      records = r.copyState.run(head.height).changes;
      r.insertCheckpoint.run(head.height, head.timeMs, records);
    }).immediate();
    return { height: head.height, timeMs: head.timeMs, records };
  }

  /** The state after block `height` as its checkpoint holds it, checked against the root recorded for that block. */
  checkpointState(height: number): LedgerState {
    const r = this.retention();
    const found = this.checkpoints().find((c) => c.height === height);
    if (r === null || found === undefined) throw new StoreError("PG_ERR_STORE_CORRUPT", `${this.path}: no checkpoint of the state after block ${height}`);
    return this.stateFrom(height, r.checkpointState.iterate(height) as Iterable<Row>, `checkpoint ${height}`);
  }

  /**
   * Give up the readings of blocks 1..height (a checkpoint, at or below the
   * head, above what is already pruned). Older checkpoints go at once; the
   * rows go batch by batch in pruneStep. Readers treat blocks 1..height as
   * pruned from now on, whether or not their rows are gone yet.
   */
  pruneReadingsTo(height: number): void {
    const r = this.retention();
    if (r === null) throw new StoreError("PG_ERR_STORE_READONLY", `${this.path} is open read-only`);
    assert(height > this.readingsPrunedTo() && height <= this.head().height, "pruning moves forward, within the chain");
    assert(this.checkpoints().some((c) => c.height === height), "pruning stops at a checkpoint");
    this.db.transaction(() => {
      r.setMeta.run("readings_pruned_to", Buffer.from(String(height)));
      r.dropCheckpointState.run(height);
      r.dropCheckpoints.run(height);
    }).immediate();
  }

  /**
   * The records of the checkpoint at `height` whose keys come after
   * `afterKey` (byte order), in key order: at most `recordsMax` of them and,
   * beyond the first, at most `bytesMax` bytes of keys and values. `total`
   * is the checkpoint's record count (0: no checkpoint at that height);
   * `done`: no record is left after these. For a peer fetching it (node.ts).
   */
  checkpointPart(height: number, afterKey: string, recordsMax: number, bytesMax: number): { total: number; done: boolean; records: { key: string; value: Uint8Array }[] } {
    assert(recordsMax >= 1 && bytesMax >= 1, "a part holds something");
    const r = this.retention();
    const found = this.checkpoints().find((c) => c.height === height);
    if (r === null || found === undefined) return { total: 0, done: true, records: [] };
    const records: { key: string; value: Uint8Array }[] = [];
    let bytes = 0;
    for (const row of r.checkpointPart.iterate(height, afterKey) as Iterable<Row>) {
      const key = row.key as string;
      const value = new Uint8Array(row.value as Buffer);
      const size = Buffer.byteLength(key) + value.length;
      if (records.length >= recordsMax || (records.length > 0 && bytes + size > bytesMax)) return { total: found.records, done: false, records };
      records.push({ key, value });
      bytes += size;
    }
    return { total: found.records, done: true, records };
  }

  /** The signed headers of blocks fromHeight.. (at most `count`), as stored, up to the first height not held. */
  rawHeaders(fromHeight: number, count: number): Uint8Array[] {
    assert(Number.isSafeInteger(fromHeight) && fromHeight >= 0 && Number.isSafeInteger(count) && count >= 0, "a height and a count");
    const out: Uint8Array[] = [];
    for (const row of this.stmts.headerRows.iterate(fromHeight, fromHeight + count) as Iterable<Row>) {
      if (row.height !== fromHeight + out.length) break;
      out.push(new Uint8Array(row.header as Buffer));
    }
    return out;
  }

  /**
   * Install a checkpoint of the state after block B (see the head of this
   * file): `header` is block B's signed header, `nextHeader` block B+1's,
   * whose stateRoot is the root of the state after B and whose parent is
   * B. The records must hash to that root; the store's head must be below
   * B. Nothing is written unless everything checks (a StoreError says
   * what did not); then everything is written in one SQLite transaction.
   * Authenticity is the caller's: that B+1's header is the chain's (node.ts
   * walks the headers down to it from a Raft snapshot's block hash).
   */
  installCheckpoint(header: Uint8Array, nextHeader: Uint8Array, records: Iterable<{ readonly key: string; readonly value: Uint8Array }>): Checkpoint {
    const r = this.retention();
    if (r === null) throw new StoreError("PG_ERR_STORE_READONLY", `${this.path} is open read-only`);
    const b = decodeCheckpointHeader(header, "block");
    const next = decodeCheckpointHeader(nextHeader, "next block");
    const height = b.header.height;
    if (height < 1 || next.header.height !== height + 1 || !bytesEqual(next.header.parentHash, b.hash)) {
      throw new StoreError("PG_ERR_STORE_CHECKPOINT_HEADER", `block ${next.header.height}'s header is not the child of block ${height}'s`);
    }
    const head = this.head();
    if (head.height >= height) throw new StoreError("PG_ERR_STORE_CHECKPOINT_BEHIND", `${this.path} holds blocks up to ${head.height}: a checkpoint at ${height} would go back`);
    const headHeader = this.header(head.height);
    assert(headHeader !== null, "the head block's header is held");
    if (b.header.timeMs <= head.timeMs || b.header.raftIndex <= headHeader.header.raftIndex || (head.height === height - 1 && !bytesEqual(b.header.parentHash, head.hash))) {
      throw new StoreError("PG_ERR_STORE_CHECKPOINT_HEADER", `block ${height}'s header does not follow this store's head ${head.height} (time, Raft index or parent hash)`);
    }
    const gaps = head.height + 1 <= height - 1 ? [...this.historyGaps(), { from: head.height + 1, to: height - 1 }] : this.historyGaps();
    const tree = checkpointTree(records);
    if (!bytesEqual(tree.root, next.header.stateRoot)) {
      throw new StoreError("PG_ERR_STORE_CHECKPOINT_ROOT", `the checkpoint's ${tree.size} records hash to ${toHex(tree.root)}, not to the state root ${toHex(next.header.stateRoot)} that block ${height + 1}'s header names`);
    }
    this.db.transaction(() => {
      assert(this.head().height === head.height, "no block was appended meanwhile");
      const firstRow = this.nextTxRow(head.height);
      this.stmts.insertBlock.run(height, Buffer.from(b.hash), Buffer.from(encodeHeader(b.header, b.signature)), b.header.timeMs, firstRow, 0, Buffer.from(tree.root));
      r.clearState.run();
      r.clearLatestReadings.run();
      for (const e of tree.entries()) {
        r.insertState.run(e.key, Buffer.from(e.bytes));
        const m = e.value;
        // The block a reading came in is in the history not held: B is an upper bound.
        if (m.kind === "meter") this.upsertLatestReading(m, height);
      }
      r.copyState.run(height);
      r.insertCheckpoint.run(height, b.header.timeMs, tree.size);
      r.dropCheckpointState.run(height);
      r.dropCheckpoints.run(height);
      r.setMeta.run("readings_pruned_to", Buffer.from(String(height)));
      r.setMeta.run("history_from", Buffer.from(String(height)));
      r.setMeta.run("history_gaps", Buffer.from(gaps.map((g) => `${g.from}-${g.to}`).join(",")));
    }).immediate();
    this.recentReadings = null; // rebuilt from the rows on next use
    return { height, timeMs: b.header.timeMs, records: tree.size };
  }

  /** The row number after block `height`'s own range of transaction rows. */
  private rowsEnd(height: number): number {
    const row = this.stmts.block.get(height) as Row;
    return (row.first_tx as number) + (row.tx_count as number);
  }

  /**
   * The first row of a block appended after the head: after the head's own
   * range (with its readings pruned, the largest row left may lie inside it)
   * and after every row there is, so that rowids stay in chain order.
   */
  private nextTxRow(headHeight: number): number {
    return Math.max((this.stmts.maxTxRow.get() as { n: number }).n + 1, this.rowsEnd(headHeight));
  }

  /** latest_readings' row for a meter record, stored with the block it is of. */
  private upsertLatestReading(m: MeterRecord, height: number): void {
    this.stmts.upsertReading.run(m.author, m.meterId, height, m.timeMs, m.importWh, m.exportWh, m.powerW, m.voltagesDeciV.join(","), m.frequencyMilliHz, m.quality);
  }

  /**
   * Delete the next at most `rowsMax` rows' worth of pruned readings (by row
   * number, so each step costs about the same). `done`: no pruned reading is left.
   */
  pruneStep(rowsMax: number): { deleted: number; done: boolean } {
    assert(Number.isSafeInteger(rowsMax) && rowsMax >= 1, "a batch size");
    const r = this.retention();
    const to = this.readingsPrunedTo();
    if (r === null || to === 0) return { deleted: 0, done: true };
    const end = this.rowsEnd(to); // the first row after block `to`
    const cursor = Math.max(1, this.metaNumber("prune_cursor"));
    if (cursor >= end) return { deleted: 0, done: true };
    const next = Math.min(end, cursor + rowsMax);
    let deleted = 0;
    this.db.transaction(() => {
      deleted = r.deleteReadings.run(cursor, next).changes;
      r.setMeta.run("prune_cursor", Buffer.from(String(next)));
    }).immediate();
    return { deleted, done: next >= end };
  }

  /**
   * One meter's accepted readings in [fromMs, toMs), oldest first, at most
   * `pointsMax`. Readings are indexed by (type, time, author), not by meter
   * nor first by author: the walk passes over at most `bounds.entriesMax`
   * index entries (every author's readings) and decodes at most
   * `bounds.authorRowsMax` of the author's rows to pick the meter's (the
   * caller sizes it by the author's meter count). `complete` is false when
   * either bound stopped the walk before the range's end or pointsMax: there
   * may be more points than returned.
   */
  meterReadings(author: number, meterId: number, fromMs: number, toMs: number, pointsMax: number, bounds: { readonly authorRowsMax: number; readonly entriesMax: number }): { points: MeterPoint[]; complete: boolean } {
    assert(pointsMax >= 1 && bounds.authorRowsMax >= 1 && bounds.entriesMax >= 1 && toMs >= fromMs, "bounds and a range");
    const points: MeterPoint[] = [];
    let decoded = 0;
    for (const row of this.stmts.readingWalkAsc.iterate({ fromMs, toMs, author, entries: bounds.entriesMax }) as Iterable<Row>) {
      if (decoded++ >= bounds.authorRowsMax) return { points, complete: false };
      const p = meterPointOf(row, meterId);
      if (p !== null) points.push(p);
      if (points.length >= pointsMax) return { points, complete: true };
    }
    return { points, complete: this.stmts.readingEntryBeyond.get(fromMs, toMs, bounds.entriesMax) === undefined };
  }

  /**
   * One point per bucket [fromMs + k stepMs, + stepMs) of [fromMs, toMs): the
   * meter's last accepted reading in the bucket (none: no point), oldest
   * first. Each bucket is one walk of the (type, time, author) index back
   * from its end, stopping at the meter's first row, after
   * `bounds.authorRowsPerBucketMax` of the author's rows, or after
   * `bounds.entriesPerBucketMax` index entries of any author (a bucket whose
   * last that many readings hold none of the meter's shows no point). Cost:
   * the number of buckets times those bounds at the most, not the readings.
   */
  meterSamples(author: number, meterId: number, fromMs: number, toMs: number, stepMs: number, bounds: { readonly authorRowsPerBucketMax: number; readonly entriesPerBucketMax: number }): MeterPoint[] {
    assert(stepMs >= 1 && toMs >= fromMs && bounds.authorRowsPerBucketMax >= 1 && bounds.entriesPerBucketMax >= 1, "a bucket width, a range and bounds");
    const out: MeterPoint[] = [];
    for (let start = fromMs; start < toMs; start += stepMs) {
      const walk = { fromMs: start, toMs: Math.min(start + stepMs, toMs), author, entries: bounds.entriesPerBucketMax };
      let decoded = 0;
      for (const row of this.stmts.readingWalkDesc.iterate(walk) as Iterable<Row>) {
        if (decoded++ >= bounds.authorRowsPerBucketMax) break;
        const p = meterPointOf(row, meterId);
        if (p === null) continue;
        out.push(p);
        break;
      }
    }
    return out;
  }

  /**
   * A member's trades (as buyer or seller) from intervals before `beforeMs`, newest interval first (and
   * in one interval by index, last first), at most `limit`. When the limit cuts an interval, which of its
   * trades are left out is not defined: ask again for that interval alone to have all of them.
   */
  tradesOfMember(member: number, beforeMs: number, limit: number): { readonly trade: TradeRecord; readonly deliveredWh: number | null }[] {
    return (this.stmts.tradesOfMember.all({ member, beforeMs, limit }) as Row[]).map((t) => ({ trade: tradeOfRow(t), deliveredWh: t.delivered_wh as number | null }));
  }

  /** Every saved state record, in key order (for auditors comparing states). */
  *savedState(): Generator<[string, Uint8Array]> {
    for (const row of this.stmts.allState.iterate() as Iterable<Row>) yield [row.key as string, new Uint8Array(row.value as Buffer)];
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}


/**
 * A blocks row of a block held by header only (installCheckpoint): no
 * transaction rows although its header has transactions. (A block that had
 * none is whole with tx_count 0 too; only then is the header decoded.)
 */
function headerOnly(row: Row): boolean {
  return (row.tx_count as number) === 0 && decodeHeader(new Uint8Array(row.header as Buffer)).header.txCount > 0;
}

/** A header handed to installCheckpoint: one that does not decode is refused with a StoreError. */
function decodeCheckpointHeader(bytes: Uint8Array, what: string): ReturnType<typeof decodeHeader> {
  try {
    return decodeHeader(bytes);
  } catch (err) {
    if (err instanceof DecodeError) throw new StoreError("PG_ERR_STORE_CHECKPOINT_HEADER", `the checkpoint's ${what} header does not decode: ${err.message}`, { cause: err });
    throw err;
  }
}

/** The state tree of a checkpoint's records, each decoded (the root is over their re-encoded bytes), keys unique. */
function checkpointTree(records: Iterable<{ readonly key: string; readonly value: Uint8Array }>): ReturnType<typeof emptyTree> {
  const changes = new Map<string, StateRecord>();
  for (const { key, value } of records) {
    if (Buffer.byteLength(key) > KEY_BYTES_MAX) throw new StoreError("PG_ERR_STORE_CHECKPOINT_RECORD", `the checkpoint holds a key of ${Buffer.byteLength(key)} bytes, limit ${KEY_BYTES_MAX}`);
    if (changes.has(key)) throw new StoreError("PG_ERR_STORE_CHECKPOINT_RECORD", `the checkpoint holds key ${key} twice`);
    try {
      changes.set(key, decodeRecord(value));
    } catch (err) {
      if (err instanceof DecodeError) throw new StoreError("PG_ERR_STORE_CHECKPOINT_RECORD", `the checkpoint's record ${key} does not decode: ${err.message}`, { cause: err });
      throw err;
    }
  }
  return emptyTree().withUpdates(changes);
}

/** A block decoded from its stored rows, with the stored hash checked against the header. */
function blockOf(raw: RawBlock, height: number): StoredBlock {
  const { header, signature, hash } = decodeHeader(raw.header);
  assert(bytesEqual(hash, raw.hash), `stored hash of block ${height} matches its header`);
  const txs = raw.txs.map((t) => decodeTx(t.raw));
  assert(raw.readingsPruned ? txs.length <= header.txCount : txs.length === header.txCount, `block ${height} has the ${header.txCount} transactions its header names`);
  return { block: { header, signature, hash, txs }, results: raw.txs.map((t) => t.result as ResultCode), stateRoot: raw.stateRoot, readingsPruned: raw.readingsPruned };
}

/** A transaction row (selected with its index in the block, `idx`). */
function rowTx(row: Row, signed: SignedTx = decodeTx(new Uint8Array(row.raw as Buffer))): StoredTx {
  return { signed, height: row.height as number, index: row.idx as number, result: row.result as ResultCode };
}

/** The row's transaction when its full id is `id`, else null. */
function rowTxIf(row: Row, id: Hash): StoredTx | null {
  const signed = decodeTx(new Uint8Array(row.raw as Buffer));
  return bytesEqual(signed.id, id) ? rowTx(row, signed) : null;
}

function checkFile(db: Database.Database, path: string, options: OpenOptions): Chain {
  const appId = db.pragma("application_id", { simple: true }) as number;
  if (appId !== APPLICATION_ID) {
    throw new StoreError("PG_ERR_STORE_FOREIGN", `${path} is an SQLite file but not a peergrid ledger (application_id ${appId})`);
  }
  const version = db.pragma("user_version", { simple: true }) as number;
  if (version !== SCHEMA_VERSION && version !== 2) {
    throw new StoreError("PG_ERR_STORE_VERSION", `${path} has schema version ${version}; this peergrid reads versions 2 and ${SCHEMA_VERSION}`);
  }
  // Version 2 lacks only the checkpoint tables: a read-write open adds them; a read-only one reads it as never pruned.
  if (version === 2 && !options.readonly) {
    db.transaction(() => {
      db.exec(CHECKPOINT_SCHEMA);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    })();
  }
  if (!options.skipQuickCheck) {
    const rows = db.pragma("quick_check(5)") as { quick_check: string }[];
    const problems = rows.map((r) => r.quick_check).filter((m) => m !== "ok");
    if (problems.length > 0) throw new StoreError("PG_ERR_STORE_CORRUPT", `${path} is corrupt (SQLite quick_check: ${problems.join("; ")}); restore it from a backup or resync from the neighbours`);
  }
  const meta = new Map((db.prepare("SELECT key, value FROM meta").all() as Row[]).map((r) => [r.key as string, r.value as Buffer]));
  const storedHash = meta.get("chain_hash");
  const genesisText = meta.get("genesis");
  if (storedHash === undefined || genesisText === undefined) throw new StoreError("PG_ERR_STORE_CORRUPT", `${path} has no chain identity in its meta table`);
  let genesis: Genesis;
  try {
    genesis = parseGenesis(JSON.parse(genesisText.toString("utf8")));
  } catch (err) {
    throw new StoreError("PG_ERR_STORE_CORRUPT", `${path}: its saved genesis document is unreadable: ${sqliteMessage(err)}`, { cause: err });
  }
  const chain = makeChain(genesis);
  if (!bytesEqual(chain.hash, storedHash)) {
    throw new StoreError("PG_ERR_STORE_CORRUPT", `${path}: its genesis document hashes to ${toHex(chain.hash)}, not to the chain hash ${toHex(storedHash)} it records`);
  }
  if (options.genesis !== undefined) {
    const expected = makeChain(options.genesis);
    if (!bytesEqual(expected.hash, chain.hash)) {
      throw new StoreError(
        "PG_ERR_STORE_OTHER_CHAIN",
        `${path} belongs to chain "${genesis.chainId}" (${toHex(chain.hash).slice(0, 16)}…), but this box is configured for chain "${options.genesis.chainId}" (${toHex(expected.hash).slice(0, 16)}…); use another data directory`,
      );
    }
  }
  const g0 = db.prepare("SELECT hash FROM blocks WHERE height = 0").get() as Row | undefined;
  if (g0 === undefined || !bytesEqual(new Uint8Array(g0.hash as Buffer), chain.hash)) {
    throw new StoreError("PG_ERR_STORE_CORRUPT", `${path}: block 0 is missing or is not this chain's genesis block`);
  }
  return chain;
}
