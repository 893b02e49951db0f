// Installing a peer's checkpoint (ledger/store.ts installCheckpoint,
// ledger/checkpoint-fetch.ts): a box whose head is below the height its
// neighbours pruned to takes the state after block B instead of blocks 1..B,
// checked against the chain before anything is written, in one SQLite
// transaction; then it goes on with whole blocks and reaches the same chain.
// What it does not hold is said (historyFrom, historyGaps) and verify checks
// the rest. Real SQLite files; the checkpoint's parts go through the real
// wire codec (daemon/peer-wire.ts) between two real stores.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { describe, test } from "node:test";
import Database from "better-sqlite3";
import { decodeHeader, encodeHeader } from "../../ledger/block.js";
import { AnchorVotes, CatchUpError, CheckpointParts, HeaderWalk, RECORD_OVERHEAD_BYTES } from "../../ledger/checkpoint-fetch.js";
import { StoreError } from "../../ledger/errors.js";
import { toHex } from "../../ledger/hash.js";
import { Ledger } from "../../ledger/ledger.js";
import { type MemberRecord, decodeRecord, encodeRecord } from "../../ledger/records.js";
import { LedgerStore } from "../../ledger/store.js";
import { TxType, signTx } from "../../ledger/tx.js";
import type { VerifyReport } from "../../ledger/verify.js";
import { CHECKPOINT_BYTES_MAX, CHECKPOINT_FULL_PART, CHECKPOINT_PART_BYTES_MAX, CHECKPOINT_PART_RECORDS_MAX, CHECKPOINT_RECORDS_MAX, decodePeerMessage, encodePeerMessage } from "../../daemon/peer-wire.js";
import type { NodeSigner } from "../../ledger/keys.js";
import { lastSeqOf } from "../../ledger/state.js";
import { ReplayError, replayInterval } from "../../market/replay.js";
import { runCli } from "../helpers/cli.js";
import { appendBlocks, blockTimeMs, makeFixture, meterOf, readingFor, tempDir, verifyPath } from "../helpers/chain-fixture.js";

const fx = makeFixture({ boxes: 4 });
const READINGS = 10; // per block
const HEAD = 150; // the source chain: market intervals start at blocks 60, 120 (the fixture's minute)
const B = 100; // its checkpoint, pruned to: the trades cleared at 60 are settled at 120, after it

type T = { after(fn: () => void): void };

/**
 * Blocks up to `to` on the fixture's chain, with orders, across market
 * intervals: the block entering an interval (every 60th) carries readings
 * only, as the fixture's next block would cancel orders that the interval's
 * clearing just closed; the orders placed just before it clear into trades.
 */
function extend(ledger: Ledger, to: number): void {
  while (ledger.state.height < to) {
    const height = ledger.state.height + 1;
    if (height % 60 !== 0) {
      appendBlocks(ledger, fx, 1, { readings: READINGS, orders: 2 });
      continue;
    }
    const txs = Array.from({ length: READINGS }, (_, j) => {
      const { author, meterId } = meterOf(fx, j);
      return { author, body: readingFor(author, meterId, height) };
    });
    const seqs = new Map<number, number>();
    const signed = txs.map(({ author, body }) => {
      const seq = (seqs.get(author) ?? lastSeqOf(ledger.state, author)) + 1;
      seqs.set(author, seq);
      return signTx({ author, seq, body }, fx.signers[author] as NodeSigner, ledger.state.chain.hash);
    });
    const proposer = height % fx.boxes;
    ledger.append(ledger.propose(signed, fx.signers[proposer] as NodeSigner, proposer, blockTimeMs(height), 1, height));
  }
}

/** A box's ledger of HEAD blocks with a checkpoint at B, whose readings up to B are pruned. */
function sourceChain(t: T): Ledger {
  const dir = tempDir(t, "ckpt-source");
  const ledger = Ledger.create(dir, fx.genesis, fx.verifier);
  t.after(() => ledger.close());
  extend(ledger, B);
  ledger.store.checkpoint();
  extend(ledger, HEAD);
  ledger.store.pruneReadingsTo(B);
  while (!ledger.store.pruneStep(1_000).done);
  return ledger;
}

/** A new box: its ledger holds the genesis block only. */
function newBox(t: T): Ledger {
  const ledger = Ledger.create(tempDir(t, "ckpt-new"), fx.genesis, fx.verifier);
  t.after(() => ledger.close());
  return ledger;
}

/** The checkpoint at `height` as a peer sends it: parts through the wire codec, collected by CheckpointParts. */
function fetchCheckpoint(source: LedgerStore, height: number, recordsMax = CHECKPOINT_PART_RECORDS_MAX): { records: CheckpointParts["records"]; parts: number } {
  const parts = new CheckpointParts(height, CHECKPOINT_RECORDS_MAX, CHECKPOINT_BYTES_MAX, { ...CHECKPOINT_FULL_PART, records: recordsMax });
  let n = 0;
  while (!parts.done) {
    const part = source.checkpointPart(height, parts.afterKey, recordsMax, CHECKPOINT_PART_BYTES_MAX);
    const wire = decodePeerMessage(encodePeerMessage({ type: "checkpoint", from: 1, to: 2, height, afterKey: parts.afterKey, ...part }));
    assert.ok(wire.type === "checkpoint");
    parts.take(wire);
    n++;
  }
  return { records: parts.records, parts: n };
}

/** Block B's and B+1's headers, walked down from the source's head (the snapshot's block) in chunks of `chunk`. */
function walkHeaders(source: LedgerStore, height: number, chunk = 16): { header: Uint8Array; nextHeader: Uint8Array } {
  const head = source.head();
  const walk = new HeaderWalk({ height: head.height, blockHash: head.hash }, height, chunk);
  for (let want = walk.want(); want !== null; want = walk.want()) walk.take(want.fromHeight, source.rawHeaders(want.fromHeight, want.count));
  return walk.result();
}

/** Every row of the store's tables, to show that a refused install changed nothing. */
function dump(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
    const all = JSON.stringify(tables.map((name) => [name, db.prepare(`SELECT * FROM ${name}`).raw().all()]));
    return `${tables.join(",")} ${createHash("sha256").update(all).digest("hex")}`;
  } finally {
    db.close();
  }
}

/** Append the source's blocks after the target's head (whole: they are above the source's pruned height). */
function followSource(target: Ledger, source: Ledger): void {
  for (let h = target.state.height + 1; h <= source.state.height; h++) {
    const b = source.store.getBlock(h);
    assert.ok(b !== null && !b.readingsPruned, `block ${h} is whole at the source`);
    target.append(b.block);
  }
}

describe("installing a checkpoint", () => {
  test("a new box installs a pruned peer's checkpoint, follows on with whole blocks, and reaches the same chain; verify says what it holds", (t) => {
    const source = sourceChain(t);
    const box = newBox(t);
    const { header, nextHeader } = walkHeaders(source.store, B);
    const { records, parts } = fetchCheckpoint(source.store, B, 7);
    assert.ok(parts > 3, `${parts} parts`);
    const installed = box.installCheckpoint(header, nextHeader, records);
    assert.deepEqual(installed, source.store.checkpoints().find((c) => c.height === B));
    assert.equal(box.state.height, B);
    assert.equal(toHex(box.state.blockHash), toHex(source.store.header(B)?.hash ?? new Uint8Array()));
    assert.equal(box.store.historyFrom(), B);
    assert.equal(box.store.readingsPrunedTo(), B);
    assert.deepEqual(box.store.historyGaps(), [{ from: 1, to: B - 1 }]);
    // What is not held reads as not held; block B by header only.
    assert.equal(box.store.header(50), null);
    assert.equal(box.store.getBlock(50), null);
    assert.equal(box.store.rawBlock(50), null);
    assert.equal(box.store.header(B)?.header.height, B);
    assert.equal(box.store.getBlock(B), null);
    assert.equal(box.store.rawBlock(B)?.headerOnly, true);
    assert.deepEqual(box.store.rawHeaders(B - 1, 3), [], "headers from a height not held: none");
    assert.equal(box.store.rawHeaders(B, 3).length, 1);

    followSource(box, source);
    assert.equal(toHex(box.state.blockHash), toHex(source.state.blockHash));
    assert.equal(toHex(box.state.tree.root), toHex(source.state.tree.root));
    assert.deepEqual(box.store.rawHeaders(B, 3).length, 3);
    assert.equal(box.store.getBlock(B + 1)?.block.txs.length, source.store.getBlock(B + 1)?.block.txs.length);
    // The block after the installed one takes rows right after the box's own: chain order.
    const db = new Database(box.store.path, { readonly: true });
    const rows = db.prepare("SELECT height, first_tx, tx_count FROM blocks WHERE height >= ? ORDER BY height").all(B) as { height: number; first_tx: number; tx_count: number }[];
    db.close();
    assert.deepEqual(rows[0], { height: B, first_tx: 1, tx_count: 0 });
    for (let i = 1; i < rows.length; i++) assert.equal(rows[i]?.first_tx, (rows[i - 1]?.first_tx ?? 0) + (rows[i - 1]?.tx_count ?? 0));

    // The settlement at block 120 settles trades cleared at 60, before B: this box never held that clearing.
    const cleared = source.store.marketIntervals(Number.MAX_SAFE_INTEGER, 10).find((i) => i.height === 60);
    assert.ok(cleared !== undefined && cleared.trades.length > 0, "the orders placed before block 60 cleared into trades");
    assert.equal(box.store.marketInterval(cleared.startMs), null);
    // Market replay rebuilds members and books from genesis: on this box it says why it cannot, rather than report a wrong book.
    const later = source.store.marketIntervals(Number.MAX_SAFE_INTEGER, 10).find((i) => i.height > B);
    assert.ok(later !== undefined && box.store.marketInterval(later.startMs) !== null, "an interval cleared after B, recorded on this box");
    assert.equal(replayInterval(source.store, later.startMs).matches, true);
    assert.throws(() => replayInterval(box.store, later.startMs), (e: unknown) => e instanceof ReplayError && /does not hold the history before it/.test(e.message));

    const report = verifyPath(box.store.path, fx);
    assert.equal(report.ok, true, JSON.stringify(report.fault));
    assert.equal(report.historyFrom, B);
    assert.deepEqual(report.historyGaps, [{ from: 1, to: B - 1 }]);
    assert.equal(report.readingsPrunedTo, B);
    assert.equal(report.blocks, 1 + 1 + (HEAD - B), "genesis, B's header, and every block after it");
    assert.equal(report.headHash, toHex(source.state.blockHash));
    const full = verifyPath(source.store.path, fx);
    assert.equal(report.stateRoot, full.stateRoot);

    // Reopened, it has the same state and goes on.
    const path = box.store.path;
    const dir = join(path, "..");
    box.close();
    const again = Ledger.open(dir, fx.verifier);
    t.after(() => again.close());
    assert.equal(toHex(again.state.tree.root), toHex(source.state.tree.root));
    extend(source, HEAD + 2);
    followSource(again, source);
    assert.equal(toHex(again.state.blockHash), toHex(source.state.blockHash));
  });

  test("a box that was offline keeps its own blocks; verify checks them by header, and the gap between them and B is reported", async (t) => {
    // Two boxes on one chain; the second stops at 40, the first goes on and prunes to B.
    const dirA = tempDir(t, "ckpt-a");
    const a = Ledger.create(dirA, fx.genesis, fx.verifier);
    t.after(() => a.close());
    const offline = Ledger.create(tempDir(t, "ckpt-offline"), fx.genesis, fx.verifier);
    t.after(() => offline.close());
    extend(a, 40);
    followSource(offline, a);
    extend(a, B);
    a.store.checkpoint();
    extend(a, HEAD);
    a.store.pruneReadingsTo(B);
    while (!a.store.pruneStep(500).done);

    const { header, nextHeader } = walkHeaders(a.store, B, 33);
    offline.installCheckpoint(header, nextHeader, fetchCheckpoint(a.store, B).records);
    assert.deepEqual(offline.store.historyGaps(), [{ from: 41, to: B - 1 }]);
    assert.equal(offline.store.getBlock(40)?.readingsPruned, true, "its own blocks count as pruned now");
    followSource(offline, a);
    // Its own old readings go with the next pruning steps, like any pruned block's.
    const readings = (path: string) => {
      const db = new Database(path, { readonly: true });
      const n = (db.prepare(`SELECT count(*) AS n FROM txs WHERE type = ${TxType.reading} AND height <= 40`).get() as { n: number }).n;
      db.close();
      return n;
    };
    assert.equal(readings(offline.store.path), 40 * READINGS);
    while (!offline.store.pruneStep(100).done);
    assert.equal(readings(offline.store.path), 0);

    const report = verifyPath(offline.store.path, fx);
    assert.equal(report.ok, true, JSON.stringify(report.fault));
    assert.deepEqual(report.historyGaps, [{ from: 41, to: B - 1 }]);
    assert.equal(report.blocks, 1 + 40 + 1 + (HEAD - B), "genesis, its own 40, B's header, and the blocks after B");
    assert.equal(report.headHash, toHex(a.state.blockHash));
    // `peergrid verify` says so.
    const cli = await runCli("verify", offline.store.path);
    assert.equal(cli.code, 0, cli.out);
    assert.match(cli.out, new RegExp(`history +this box caught up from a peer's checkpoint of the state after block ${B}: blocks 41\\.\\.${B - 1} are not held, block ${B} by header only`));
    assert.match(cli.out, new RegExp(`OK: the headers this box holds, and every block from ${B + 1} to ${HEAD} re-verified`));

    // Tampering with what it holds is still found: its own block 20's header, block B's, or the installed checkpoint.
    const tampered = (sql: (db: Database.Database) => void): VerifyReport => {
      const copy = join(tempDir(t, "ckpt-copy"), "ledger.sqlite");
      offline.close();
      const db = new Database(offline.store.path);
      db.exec(`VACUUM INTO '${copy}'`);
      db.close();
      const c = new Database(copy);
      sql(c);
      c.close();
      return verifyPath(copy, fx);
    };
    const reheader = (db: Database.Database, height: number) => {
      const row = db.prepare("SELECT header FROM blocks WHERE height = ?").get(height) as { header: Buffer };
      const { header: h, signature } = decodeHeader(new Uint8Array(row.header));
      const forged = encodeHeader({ ...h, timeMs: h.timeMs + 1 }, signature);
      db.prepare("UPDATE blocks SET header = ?, hash = ? WHERE height = ?").run(Buffer.from(forged), Buffer.from(decodeHeader(forged).hash), height);
    };
    let r = tampered((db) => reheader(db, 20));
    assert.deepEqual([r.ok, r.fault?.height, r.fault?.code], [false, 20, "PG_ERR_BLOCK_SIGNATURE"]);
    r = tampered((db) => reheader(db, B));
    assert.deepEqual([r.ok, r.fault?.height, r.fault?.code], [false, B, "PG_ERR_BLOCK_SIGNATURE"]);
    r = tampered((db) => db.prepare("UPDATE checkpoint_state SET value = x'00' || value WHERE height = ? AND key = 'm/1'").run(B));
    assert.deepEqual([r.ok, r.fault?.height, r.fault?.code], [false, B, "PG_ERR_VERIFY_CHECKPOINT"]);
    r = tampered((db) => db.prepare("INSERT INTO blocks SELECT 60, hash, header, time_ms, first_tx, tx_count, state_root FROM blocks WHERE height = 40").run());
    assert.deepEqual([r.ok, r.fault?.height, r.fault?.code], [false, 60, "PG_ERR_VERIFY_NOT_HELD"], "a block row in the gap");
    r = tampered((db) => db.prepare("DELETE FROM blocks WHERE height = 30").run());
    assert.deepEqual([r.ok, r.fault?.height, r.fault?.code], [false, 30, "PG_ERR_VERIFY_MISSING"], "one of its own blocks lost is no gap");
    r = tampered((db) => db.prepare("DELETE FROM blocks WHERE height = ?").run(B + 5));
    assert.deepEqual([r.ok, r.fault?.height, r.fault?.code], [false, B + 5, "PG_ERR_VERIFY_MISSING"], "a block after B lost");
  });

  test("a checkpoint whose records do not hash to block B+1's state root is refused, and the store is unchanged", (t) => {
    const source = sourceChain(t);
    const box = newBox(t);
    const { header, nextHeader } = walkHeaders(source.store, B);
    const { records } = fetchCheckpoint(source.store, B);
    let before = dump(box.store.path);
    const refuse = (recs: readonly { key: string; value: Uint8Array }[], code: string, h = header, n = nextHeader): void => {
      const height = box.state.height;
      assert.throws(() => box.installCheckpoint(h, n, recs), (e: unknown) => e instanceof StoreError && e.code === code, code);
      assert.equal(dump(box.store.path), before, `${code}: nothing written`);
      assert.equal(box.state.height, height);
    };
    // One record changed (still a valid record): another state.
    const renamed = records.map((r) => {
      if (r.key !== "m/1") return r;
      const m = decodeRecord(r.value) as MemberRecord;
      return { key: r.key, value: encodeRecord({ ...m, name: `${m.name}x` }) };
    });
    refuse(renamed, "PG_ERR_STORE_CHECKPOINT_ROOT");
    refuse(records.slice(1), "PG_ERR_STORE_CHECKPOINT_ROOT");
    refuse([...records, { key: "zz", value: (records[0] as { value: Uint8Array }).value }], "PG_ERR_STORE_CHECKPOINT_ROOT");
    refuse([...records, records[0] as { key: string; value: Uint8Array }], "PG_ERR_STORE_CHECKPOINT_RECORD");
    refuse(records.map((r, i) => (i === 3 ? { key: r.key, value: new Uint8Array([...r.value, 0]) } : r)), "PG_ERR_STORE_CHECKPOINT_RECORD");
    refuse([{ key: "k".repeat(1025), value: (records[0] as { value: Uint8Array }).value }], "PG_ERR_STORE_CHECKPOINT_RECORD");
    // Headers that are not block B and its child.
    const [, , later] = source.store.rawHeaders(B, 3);
    refuse(records, "PG_ERR_STORE_CHECKPOINT_HEADER", header, later as Uint8Array);
    refuse(records, "PG_ERR_STORE_CHECKPOINT_HEADER", nextHeader, header);
    refuse(records, "PG_ERR_STORE_CHECKPOINT_HEADER", header.subarray(1), nextHeader);
    // And the right ones install.
    box.installCheckpoint(header, nextHeader, records);
    assert.equal(box.state.height, B);
    before = dump(box.store.path);
    refuse(records, "PG_ERR_STORE_CHECKPOINT_BEHIND");
  });

  test("the install is one SQLite transaction: a failure in its last write leaves the old store, whole", (t) => {
    const source = sourceChain(t);
    const box = newBox(t);
    const { header, nextHeader } = walkHeaders(source.store, B);
    const { records } = fetchCheckpoint(source.store, B);
    const before = dump(box.store.path);
    // The meta rows are written last: make SQLite fail there, as a full disk would.
    const other = new Database(box.store.path);
    other.exec("CREATE TRIGGER fail_meta BEFORE INSERT ON meta WHEN NEW.key = 'history_from' BEGIN SELECT RAISE(ABORT, 'disk full'); END");
    assert.throws(() => box.installCheckpoint(header, nextHeader, records), /disk full/);
    other.exec("DROP TRIGGER fail_meta");
    other.close();
    assert.equal(dump(box.store.path), before);
    assert.equal(box.state.height, 0);
    box.installCheckpoint(header, nextHeader, records);
    assert.equal(box.state.height, B);
  });

  test("after pruning to the head, the next block's rows still come after the pruned block's (rowids in chain order)", (t) => {
    const ledger = Ledger.create(tempDir(t, "ckpt-rowids"), fx.genesis, fx.verifier);
    t.after(() => ledger.close());
    appendBlocks(ledger, fx, 3, { readings: 6, orders: 0 }); // readings only: pruning empties the head's row range
    ledger.store.checkpoint();
    ledger.store.pruneReadingsTo(3);
    while (!ledger.store.pruneStep(100).done);
    appendBlocks(ledger, fx, 1, { readings: 6, orders: 0 });
    assert.equal(ledger.store.getBlock(3)?.block.txs.length, 0, "block 3 kept none of the new block's rows");
    assert.equal(ledger.store.getBlock(4)?.block.txs.length, 6);
    const report = verifyPath(ledger.store.path, fx);
    assert.equal(report.ok, true, JSON.stringify(report.fault));
  });
});

describe("checking a peer's checkpoint before it is used (checkpoint-fetch.ts)", () => {
  test("the header walk accepts only the chain down from the snapshot's block", (t) => {
    const source = sourceChain(t);
    const head = source.store.head();
    const point = { height: head.height, blockHash: head.hash };
    const fresh = () => new HeaderWalk(point, B, 16);
    // The right headers, in chunks of 16 from the top: 51 headers, 4 requests.
    const w = fresh();
    const asked: number[] = [];
    for (let want = w.want(); want !== null; want = w.want()) {
      asked.push(want.fromHeight);
      w.take(want.fromHeight, source.store.rawHeaders(want.fromHeight, want.count));
    }
    assert.deepEqual(asked, [135, 119, 103, 100]);
    assert.equal(decodeHeader(w.result().nextHeader).header.height, B + 1);
    // A wrong count, a shifted range, a header of another height, a forged header, junk.
    const first = fresh().want();
    assert.ok(first !== null);
    const good = source.store.rawHeaders(first.fromHeight, first.count);
    const refused = (f: (w: HeaderWalk) => void) => assert.throws(() => f(fresh()), (e: unknown) => e instanceof CatchUpError && e.code === "PG_ERR_CATCH_UP_HEADERS");
    refused((x) => x.take(first.fromHeight, good.slice(1)));
    refused((x) => x.take(first.fromHeight - 1, source.store.rawHeaders(first.fromHeight - 1, first.count)));
    refused((x) => x.take(first.fromHeight, [...good.slice(0, -1), good[0] as Uint8Array]));
    const { header: h15, signature } = decodeHeader(good[15] as Uint8Array);
    refused((x) => x.take(first.fromHeight, [...good.slice(0, 15), encodeHeader({ ...h15, timeMs: h15.timeMs + 1 }, signature)]));
    const { header: h3 } = decodeHeader(good[3] as Uint8Array);
    refused((x) => x.take(first.fromHeight, good.map((g, i) => (i === 3 ? encodeHeader({ ...h3, stateRoot: new Uint8Array(32) }, signature) : g))));
    refused((x) => x.take(first.fromHeight, good.map((g, i) => (i === 9 ? g.subarray(2) : g))));
    // Another chain's headers (another genesis) never hash to this chain's.
    const other = makeFixture({ boxes: 4, chainId: "another" });
    const otherLedger = Ledger.create(tempDir(t, "ckpt-other"), other.genesis, other.verifier);
    t.after(() => otherLedger.close());
    appendBlocks(otherLedger, other, HEAD, { readings: 1, orders: 0 });
    refused((x) => x.take(first.fromHeight, otherLedger.store.rawHeaders(first.fromHeight, first.count)));
    assert.throws(() => new HeaderWalk(point, head.height, 16), /below the chain point/);
  });

  test("a chain point is used only once other boxes vouch for it: one dishonest box cannot make one up", (t) => {
    const source = sourceChain(t);
    const head = source.store.head();
    const votes = new AnchorVotes({ height: head.height, blockHash: head.hash }, 2);
    const good = source.store.rawHeaders(head.height, 1);
    const { header, signature } = decodeHeader(good[0] as Uint8Array);
    const forged = [encodeHeader({ ...header, stateRoot: new Uint8Array(32).fill(7) }, signature)];
    assert.equal(votes.take(1, good), "confirmed");
    assert.equal(votes.confirmed, false, "one box's word is not enough");
    assert.equal(votes.take(1, good), "confirmed");
    assert.equal(votes.confirmed, false, "nor the same box twice");
    assert.equal(votes.take(2, []), "none", "a box that holds no block there yet");
    assert.equal(votes.take(2, source.store.rawHeaders(head.height - 1, 1)), "none", "a header of another height");
    assert.equal(votes.take(2, [good[0]!.subarray(3)]), "none", "junk");
    assert.equal(votes.take(3, forged), "denied");
    assert.deepEqual(votes.denials, [3]);
    assert.equal(votes.confirmed, false);
    assert.equal(votes.take(2, good), "confirmed");
    assert.equal(votes.confirmed, true);
    assert.ok(votes.has(1) && votes.has(2) && !votes.has(3));
    assert.throws(() => new AnchorVotes({ height: 1, blockHash: head.hash }, 0), /vouches/);
  });

  test("the parts must follow on from each other and add up to the count announced", (t) => {
    const source = sourceChain(t);
    const all = fetchCheckpoint(source.store, B).records;
    const part = (afterKey: string, records: typeof all, done: boolean, total = all.length) => ({ height: B, afterKey, total, done, records });
    const full = { records: 3, bytes: 1_000_000, slackBytes: 0 }; // a part of 3 records is full
    const refused = (f: (p: CheckpointParts) => void, why: RegExp) => assert.throws(() => f(new CheckpointParts(B, 1_000, 1_000_000, full)), (e: unknown) => e instanceof CatchUpError && why.test(e.message), String(why));
    refused((p) => p.take(part("", [], true, 0)), /holds no checkpoint/);
    refused((p) => p.take(part("x", all.slice(0, 3), false)), /after key/);
    refused((p) => p.take({ ...part("", all.slice(0, 3), false), height: B + 1 }), /at 101/);
    refused((p) => p.take(part("", [], false)), /neither full nor the last/);
    refused((p) => p.take(part("", all.slice(0, 2), false)), /a part of 2 records .* neither full nor the last/); // a trickle
    refused((p) => p.take(part("", all, true, all.length + 1)), /ended after/);
    refused((p) => p.take(part("", all, true, all.length - 1)), /more than/);
    refused((p) => p.take(part("", all, true, 5_000)), /more than this box takes/);
    // Each record counts its key, its value and what holding it costs (RECORD_OVERHEAD_BYTES).
    const small = all.slice(0, 3).reduce((n, r) => n + Buffer.byteLength(r.key) + r.value.length, 0);
    assert.throws(() => new CheckpointParts(B, 1_000, small + 2 * RECORD_OVERHEAD_BYTES, full).take(part("", all.slice(0, 3), false)), (e: unknown) => e instanceof CatchUpError && /over the \d+ bytes/.test(e.message));
    refused((p) => {
      p.take(part("", all.slice(0, 3), false));
      p.take(part((all[2] as { key: string }).key, all.slice(3), true, all.length + 2));
    }, /had \d+ records, now/);
    const p = new CheckpointParts(B, 1_000, 1_000_000, full);
    p.take(part("", all.slice(0, 4), false));
    p.take(part((all[3] as { key: string }).key, all.slice(4), true));
    assert.equal(p.done, true);
    assert.deepEqual(p.records, all);
  });
});
