// Retention of raw readings (ledger/store.ts): checkpoints of the state, the
// readings of old blocks given up batch by batch, and what still holds after:
// the headers, every other transaction, reopening, market replay, and the
// auditor's check (verify.ts), which starts re-applying at the checkpoint and
// still finds tampering on either side of it. Real SQLite files on disk.
import assert from "node:assert/strict";
import { copyFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import Database from "better-sqlite3";
import { encodeHeader, decodeHeader } from "../../ledger/block.js";
import { toHex } from "../../ledger/hash.js";
import { Ledger, ledgerPath } from "../../ledger/ledger.js";
import { LedgerStore } from "../../ledger/store.js";
import { TxType } from "../../ledger/tx.js";
import { type VerifyReport, verifyChain } from "../../ledger/verify.js";
import { appendBlocks, makeFixture, tempDir, verifyPath } from "../helpers/chain-fixture.js";

const fx = makeFixture({ boxes: 4 });
const READINGS = 12; // per block
const ORDERS = 2; // per block (and cancels of the previous block's open ones)

/** A ledger of `head` blocks with checkpoints after the blocks in `at`. */
function chainWithCheckpoints(t: { after(fn: () => void): void }, head: number, at: readonly number[]): { dir: string; ledger: Ledger } {
  const dir = tempDir(t, "retention");
  const ledger = Ledger.create(dir, fx.genesis, fx.verifier);
  t.after(() => ledger.close());
  for (let h = 1; h <= head; h++) {
    appendBlocks(ledger, fx, 1, { readings: READINGS, orders: ORDERS });
    if (at.includes(h)) ledger.store.checkpoint();
  }
  return { dir, ledger };
}

function rowsOf(path: string): { readings: number; others: number } {
  const db = new Database(path, { readonly: true });
  try {
    const n = (sql: string) => (db.prepare(sql).get() as { n: number }).n;
    return { readings: n(`SELECT count(*) AS n FROM txs WHERE type = ${TxType.reading}`), others: n(`SELECT count(*) AS n FROM txs WHERE type <> ${TxType.reading}`) };
  } finally {
    db.close();
  }
}

function pruneAll(store: LedgerStore, batch: number): number {
  let steps = 0;
  for (;;) {
    steps++;
    if (store.pruneStep(batch).done) return steps;
  }
}

describe("retention of raw readings", () => {
  test("pruning gives up the readings of blocks up to a checkpoint, keeps everything else, and the chain still verifies", (t) => {
    const { dir, ledger } = chainWithCheckpoints(t, 30, [10, 20]);
    const store = ledger.store;
    const before = rowsOf(ledgerPath(dir));
    const fullBefore = verifyPath(ledgerPath(dir), fx);
    assert.equal(fullBefore.ok, true, JSON.stringify(fullBefore.fault));
    assert.deepEqual(store.checkpoints().map((c) => c.height), [10, 20]);

    store.pruneReadingsTo(20);
    assert.deepEqual(store.checkpoints().map((c) => c.height), [20], "older checkpoints go at once");
    assert.equal(store.readingsPrunedTo(), 20);
    // Batches of 7 rows: many steps, each deleting at most 7.
    const steps = pruneAll(store, 7);
    assert.ok(steps > 20, `${steps} steps`);
    assert.deepEqual(store.pruneStep(7), { deleted: 0, done: true });

    const after = rowsOf(ledgerPath(dir));
    assert.equal(after.others, before.others, "orders and cancels are kept");
    assert.equal(after.readings, before.readings - 20 * READINGS, "exactly blocks 1..20's readings went");
    const pruned = store.getBlock(15);
    assert.ok(pruned !== null && pruned.readingsPruned);
    assert.ok(pruned.block.txs.every((x) => x.tx.body.type !== "reading") && pruned.block.txs.length > 0);
    assert.ok(pruned.block.header.txCount > pruned.block.txs.length);
    const whole = store.getBlock(21);
    assert.ok(whole !== null && !whole.readingsPruned && whole.block.txs.length === whole.block.header.txCount);
    assert.equal(store.header(15)?.header.height, 15, "headers stay");

    const report = verifyPath(ledgerPath(dir), fx);
    assert.equal(report.ok, true, JSON.stringify(report.fault));
    assert.equal(report.readingsPrunedTo, 20);
    assert.equal(report.blocks, 31);
    assert.equal(report.headHash, fullBefore.headHash);
    assert.equal(report.stateRoot, fullBefore.stateRoot);
    assert.equal(report.transactions, fullBefore.transactions - 20 * READINGS);

    // Reopened, the box has the same state, and goes on appending.
    const root = toHex(ledger.state.tree.root);
    ledger.close();
    const again = Ledger.open(dir, fx.verifier);
    t.after(() => again.close());
    assert.equal(toHex(again.state.tree.root), root);
    assert.equal(again.store.readingsPrunedTo(), 20);
    appendBlocks(again, fx, 3, { readings: READINGS });
    assert.equal(again.store.getBlock(33)?.block.txs.length, again.store.getBlock(33)?.block.header.txCount);
  });

  test("the chain verifies while pruning is half done, and the next open finishes it", (t) => {
    const { dir, ledger } = chainWithCheckpoints(t, 12, [8]);
    ledger.store.pruneReadingsTo(8);
    assert.equal(ledger.store.pruneStep(30).done, false);
    const half = rowsOf(ledgerPath(dir));
    assert.ok(half.readings < 12 * READINGS && half.readings > 4 * READINGS, `${half.readings} readings left`);
    const report = verifyPath(ledgerPath(dir), fx);
    assert.equal(report.ok, true, JSON.stringify(report.fault));
    ledger.close();
    const again = Ledger.open(dir, fx.verifier);
    t.after(() => again.close());
    pruneAll(again.store, 1_000);
    assert.equal(rowsOf(ledgerPath(dir)).readings, 4 * READINGS);
  });

  test("blocks appended after pruning up to the head get rows of their own", (t) => {
    const { ledger } = chainWithCheckpoints(t, 3, []);
    appendBlocks(ledger, fx, 1, { readings: READINGS, orders: 0 }); // block 4 ends with readings: its last rows go
    ledger.store.checkpoint();
    ledger.store.pruneReadingsTo(4);
    pruneAll(ledger.store, 1_000);
    appendBlocks(ledger, fx, 2, { readings: READINGS, orders: ORDERS });
    for (const h of [5, 6]) {
      const b = ledger.store.getBlock(h);
      assert.ok(b !== null && !b.readingsPruned && b.block.txs.length === b.block.header.txCount, `block ${h} reads whole`);
    }
    const pruned = ledger.store.getBlock(4);
    assert.ok(pruned !== null && pruned.block.txs.every((x) => x.tx.body.type !== "reading"), "block 4's range holds none of the new rows");
  });

  test("pruning only moves forward, to a checkpoint", (t) => {
    const { ledger } = chainWithCheckpoints(t, 6, [3]);
    assert.throws(() => ledger.store.pruneReadingsTo(4), /checkpoint/);
    ledger.store.pruneReadingsTo(3);
    assert.throws(() => ledger.store.pruneReadingsTo(3), /forward/);
    assert.equal(ledger.store.checkpoint().height, 6);
    assert.equal(ledger.store.checkpoint().height, 6, "a second checkpoint of one head is the same one");
    assert.deepEqual(ledger.store.checkpoints().map((c) => c.height), [3, 6]);
  });

  describe("the auditor finds tampering on both sides of the checkpoint", () => {
    /** A pruned copy of a 16-block chain (readings of 1..10 gone) with `tamper` applied. */
    function tampered(t: { after(fn: () => void): void }, tamper: (db: Database.Database) => void): VerifyReport {
      const { dir, ledger } = chainWithCheckpoints(t, 16, [10]);
      ledger.store.pruneReadingsTo(10);
      pruneAll(ledger.store, 10_000);
      ledger.close();
      const copy = join(tempDir(t, "retention-copy"), "ledger.sqlite");
      copyFileSync(ledgerPath(dir), copy);
      const db = new Database(copy);
      try {
        tamper(db);
      } finally {
        db.close();
      }
      return verifyPath(copy, fx);
    }

    test("a changed checkpoint record", (t) => {
      const r = tampered(t, (db) => db.prepare("UPDATE checkpoint_state SET value = x'00' || value WHERE key = (SELECT key FROM checkpoint_state WHERE key LIKE 'm/%' LIMIT 1)").run());
      assert.equal(r.ok, false);
      assert.equal(r.fault?.code, "PG_ERR_VERIFY_CHECKPOINT");
      assert.equal(r.fault?.height, 10);
    });

    test("a missing checkpoint", (t) => {
      const r = tampered(t, (db) => db.exec("DELETE FROM checkpoints"));
      assert.equal(r.fault?.code, "PG_ERR_VERIFY_CHECKPOINT");
    });

    test("a pruned block's header with another time (its hash and signature no longer hold)", (t) => {
      const r = tampered(t, (db) => {
        const row = db.prepare("SELECT header FROM blocks WHERE height = 5").get() as { header: Buffer };
        const { header, signature } = decodeHeader(new Uint8Array(row.header));
        const forged = encodeHeader({ ...header, timeMs: header.timeMs + 1 }, signature);
        db.prepare("UPDATE blocks SET header = ? WHERE height = 5").run(Buffer.from(forged));
      });
      assert.equal(r.fault?.code, "PG_ERR_VERIFY_HASH");
      assert.equal(r.fault?.height, 5);
    });

    test("a pruned block whose hash was rewritten with its header (the next block's link breaks, or the signature)", (t) => {
      const r = tampered(t, (db) => {
        const row = db.prepare("SELECT header FROM blocks WHERE height = 5").get() as { header: Buffer };
        const { header, signature } = decodeHeader(new Uint8Array(row.header));
        const forgedHeader = { ...header, timeMs: header.timeMs + 1 };
        const forged = encodeHeader(forgedHeader, signature);
        const { hash } = decodeHeader(forged);
        db.prepare("UPDATE blocks SET header = ?, hash = ? WHERE height = 5").run(Buffer.from(forged), Buffer.from(hash));
      });
      assert.equal(r.fault?.code, "PG_ERR_BLOCK_SIGNATURE");
      assert.equal(r.fault?.height, 5);
    });

    test("a kept order in a pruned block, changed", (t) => {
      const r = tampered(t, (db) => {
        const row = db.prepare(`SELECT rowid, raw FROM txs WHERE height = 4 AND type = ${TxType.order} LIMIT 1`).get() as { rowid: number; raw: Buffer };
        const raw = Buffer.from(row.raw);
        raw[raw.length - 70] = (raw[raw.length - 70] as number) ^ 1; // a body byte, before the signature
        db.prepare("UPDATE txs SET raw = ? WHERE rowid = ?").run(raw, row.rowid);
      });
      assert.equal(r.ok, false);
      assert.ok(["PG_ERR_VERIFY_TX_TAMPERED", "PG_ERR_VERIFY_COLUMNS", "PG_ERR_VERIFY_DECODE"].includes(r.fault?.code ?? ""), JSON.stringify(r.fault));
      assert.equal(r.fault?.height, 4);
    });

    test("a changed reading after the checkpoint is still found by re-applying", (t) => {
      const r = tampered(t, (db) => {
        const row = db.prepare(`SELECT rowid, raw FROM txs WHERE height = 13 AND type = ${TxType.reading} LIMIT 1`).get() as { rowid: number; raw: Buffer };
        const raw = Buffer.from(row.raw);
        raw[raw.length - 70] = (raw[raw.length - 70] as number) ^ 1;
        db.prepare("UPDATE txs SET raw = ? WHERE rowid = ?").run(raw, row.rowid);
      });
      assert.equal(r.ok, false);
      assert.equal(r.fault?.height, 13);
    });
  });

  test("a version-2 file reads as never pruned, and a read-write open adds the checkpoint tables", (t) => {
    const { dir, ledger } = chainWithCheckpoints(t, 3, []);
    ledger.close();
    const db = new Database(ledgerPath(dir));
    db.exec("DROP TABLE checkpoints; DROP TABLE checkpoint_state; PRAGMA user_version = 2;");
    db.close();
    const ro = LedgerStore.open(ledgerPath(dir), { readonly: true });
    assert.equal(ro.readingsPrunedTo(), 0);
    assert.deepEqual(ro.checkpoints(), []);
    assert.equal(verifyChain(ro, fx.verifier).ok, true);
    ro.close();
    const rw = LedgerStore.open(ledgerPath(dir));
    t.after(() => rw.close());
    assert.equal(rw.checkpoint().height, 3);
    const check = new Database(ledgerPath(dir), { readonly: true });
    assert.equal(check.pragma("user_version", { simple: true }), 3);
    check.close();
  });
});
