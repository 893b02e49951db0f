// The SQLite store on real files: reopening gives back exactly what was
// written, the indexes answer correctly, and every kind of file that is not
// this chain's intact store is refused with a StoreError naming the problem.
// Each test works in its own temp directory.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, copyFileSync, existsSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import Database from "better-sqlite3";
import type { Block } from "../../ledger/block.js";
import { AssertionError, BlockRejectedError, StoreError } from "../../ledger/errors.js";
import { type Hash, toHex } from "../../ledger/hash.js";
import { Ledger, ledgerPath } from "../../ledger/ledger.js";
import { type MeterRecord, decodeRecord, encodeRecord } from "../../ledger/records.js";
import { type ResultCode as ResultCodeT, ResultCode, applyBlock, genesisState } from "../../ledger/state.js";
import { LedgerStore } from "../../ledger/store.js";
import { type SignedTx, signTx } from "../../ledger/tx.js";
import { verifyChain } from "../../ledger/verify.js";
import { type Fixture, appendBlocks, blockTimeMs, makeFixture, meterOf, nextBlock, readingFor, tempDir } from "../helpers/chain-fixture.js";

const PAGE_BYTES = 4096; // SQLite's default page size, which the store keeps

interface Built {
  readonly ledger: Ledger;
  readonly path: string;
  readonly blocks: Block[]; // blocks[h - 1] is block h
  readonly results: (readonly ResultCodeT[])[];
  readonly roots: Hash[]; // roots[h - 1]: state root after block h
}

/** A ledger in `dir` with one block per entry of `readingsPerBlock`. */
function build(dir: string, fx: Fixture, readingsPerBlock: readonly number[]): Built {
  const ledger = Ledger.create(dir, fx.genesis, fx.verifier);
  const built: Built = { ledger, path: ledgerPath(dir), blocks: [], results: [], roots: [] };
  for (const readings of readingsPerBlock) append(built, nextBlock(ledger, fx, { readings }));
  return built;
}

function append(built: Built, block: Block): void {
  const r = built.ledger.append(block);
  built.blocks.push(block);
  built.results.push(r.results);
  built.roots.push(r.state.tree.root);
}

function expectStoreError(fn: () => unknown, code: string, message?: RegExp): StoreError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof StoreError, `expected a StoreError ${code}, got ${caught instanceof Error ? `${caught.name}: ${caught.message}` : String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (message !== undefined) assert.match(caught.message, message);
  return caught;
}

function digest(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** Every row of every table, hashed in a fixed order: equal iff the stored content is equal. */
function contentDigest(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    const h = createHash("sha256");
    for (const [table, order] of [["meta", "key"], ["blocks", "height"], ["txs", "rowid"], ["latest_readings", "author, meter_id"], ["state", "key"]] as const) {
      for (const row of db.prepare(`SELECT * FROM ${table} ORDER BY ${order}`).iterate() as Iterable<Record<string, unknown>>) {
        h.update(table);
        for (const [k, v] of Object.entries(row)) h.update(`${k}=${Buffer.isBuffer(v) ? v.toString("hex") : String(v)};`);
      }
    }
    return h.digest("hex");
  } finally {
    db.close();
  }
}

function rawUpdate(path: string, sql: string, ...params: unknown[]): number {
  const db = new Database(path);
  try {
    return db.prepare(sql).run(...params).changes;
  } finally {
    db.close();
  }
}

function overwrite(path: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

describe("store: reopening", () => {
  test("a new store reopens at the genesis block with the genesis state", (t) => {
    const fx = makeFixture();
    const dir = tempDir(t, "store");
    LedgerStore.create(ledgerPath(dir), fx.genesis).close();
    const store = LedgerStore.open(ledgerPath(dir), { genesis: fx.genesis });
    t.after(() => store.close());
    const state = store.loadState();
    const expected = genesisState(store.chain);
    assert.equal(store.head().height, 0);
    assert.deepEqual(store.head().hash, expected.blockHash);
    assert.equal(toHex(state.tree.root), toHex(expected.tree.root));
    assert.equal(state.height, 0);
  });

  test("create, append, close, reopen: the same head and state root; the reopened store keeps appending", (t) => {
    const fx = makeFixture();
    const dir = tempDir(t, "store");
    const b = build(dir, fx, [60, 30, 45]);
    const before = b.ledger.state;
    const headBefore = b.ledger.store.head();
    b.ledger.close();

    const store = LedgerStore.open(b.path, { genesis: fx.genesis });
    const head = store.head();
    assert.equal(head.height, 3);
    assert.deepEqual(head, headBefore);
    assert.deepEqual(head.hash, b.blocks[2]?.hash);
    const loaded = store.loadState();
    assert.equal(toHex(loaded.tree.root), toHex(before.tree.root));
    assert.equal(toHex(loaded.tree.root), toHex(b.roots[2] as Hash));
    assert.deepEqual(
      { height: loaded.height, hash: toHex(loaded.blockHash), timeMs: loaded.timeMs, term: loaded.raftTerm, index: loaded.raftIndex },
      { height: before.height, hash: toHex(before.blockHash), timeMs: before.timeMs, term: before.raftTerm, index: before.raftIndex },
    );
    store.close();

    // A box restarting: Ledger.open, then the chain continues from the head.
    const reopened = Ledger.open(dir, fx.verifier, { genesis: fx.genesis });
    assert.equal(reopened.state.height, 3);
    appendBlocks(reopened, fx, 2, { readings: 50 });
    const root5 = reopened.state.tree.root;
    reopened.close();
    const again = LedgerStore.open(b.path, { genesis: fx.genesis });
    t.after(() => again.close());
    assert.equal(again.head().height, 5);
    assert.equal(toHex(again.loadState().tree.root), toHex(root5));
    const report = verifyChain(again, fx.verifier);
    assert.equal(report.ok, true, report.fault?.message);
    assert.equal(report.blocks, 6);
  });
});

describe("store: reads", () => {
  test("getBlock returns each block as appended: header, signature, transactions, results, state root", (t) => {
    const fx = makeFixture();
    const b = build(tempDir(t, "store"), fx, [24, 16, 40, 8]);
    t.after(() => b.ledger.close());
    const store = b.ledger.store;
    b.blocks.forEach((block, i) => {
      const got = store.getBlock(i + 1);
      assert.ok(got !== null, `block ${i + 1}`);
      assert.deepEqual(got.block.header, block.header);
      assert.deepEqual(got.block.signature, block.signature);
      assert.deepEqual(got.block.hash, block.hash);
      assert.equal(got.block.txs.length, block.txs.length);
      got.block.txs.forEach((tx, j) => {
        assert.deepEqual(tx.bytes, block.txs[j]?.bytes, `block ${i + 1} tx ${j} bytes`);
        assert.deepEqual(tx.id, block.txs[j]?.id);
        assert.deepEqual(tx.tx, block.txs[j]?.tx);
      });
      assert.deepEqual(got.results, b.results[i]);
      assert.deepEqual(got.stateRoot, b.roots[i]);
    });
    const g = store.getBlock(0);
    assert.ok(g !== null);
    assert.deepEqual(g.block.hash, store.chain.hash);
    assert.equal(g.block.txs.length, 0);
    assert.equal(store.getBlock(5), null);
    assert.equal(store.getBlock(-1), null);
    assert.deepEqual([...store.blocksFrom(3)].map((s) => s.block.header.height), [3, 4]);
  });

  test("getTx finds a transaction by id with its height, index and result; unknown ids find nothing", (t) => {
    const fx = makeFixture();
    const b = build(tempDir(t, "store"), fx, [20, 20, 20]);
    t.after(() => b.ledger.close());
    // Block 4: a transaction rejected for a stale sequence number (unique id) and a verbatim replay.
    const stale = signTx({ author: 3, seq: 1, body: readingFor(3, 0, 4) }, fx.signers[3]!, b.ledger.state.chain.hash);
    const replayed = b.blocks[1]?.txs[5] as SignedTx;
    const fresh = nextBlock(b.ledger, fx, { readings: 10 });
    append(b, b.ledger.propose([...fresh.txs, stale, replayed], fx.signers[4]!, 4, blockTimeMs(4), 1, 4));
    assert.deepEqual(b.results[3]?.slice(-2), [ResultCode.staleSequence, ResultCode.staleSequence]);

    const store = b.ledger.store;
    for (const [h, idx] of [[1, 0], [2, 7], [3, 21], [4, 0], [4, 12]] as const) {
      const tx = b.blocks[h - 1]?.txs[idx] as SignedTx;
      const got = store.getTx(tx.id);
      assert.ok(got !== null, `tx ${h}/${idx}`);
      assert.equal(got.height, h);
      assert.equal(got.index, idx);
      assert.equal(got.result, ResultCode.ok);
      assert.deepEqual(got.signed.bytes, tx.bytes);
    }
    // A rejected reading is not indexed by id (readings are found by id only when accepted); readingsOf still lists it.
    assert.equal(store.getTx(stale.id), null);
    assert.ok(store.readingsOf(3, 0, Number.MAX_SAFE_INTEGER, 10_000).some((x) => toHex(x.signed.id) === toHex(stale.id) && x.result === ResultCode.staleSequence));
    // The same id twice (a replay): the lookup finds the one that took effect.
    const gotReplay = store.getTx(replayed.id);
    assert.deepEqual(gotReplay && { height: gotReplay.height, index: gotReplay.index, result: gotReplay.result }, { height: 2, index: 5, result: ResultCode.ok });

    assert.equal(store.getTx(new Uint8Array(randomBytes(32))), null);
    // Readings appended after the first lookup (the in-memory id map is live now) are found too.
    const later = nextBlock(b.ledger, fx, { readings: 6 });
    append(b, later);
    const lastReading = later.txs.filter((x) => x.tx.body.type === "reading").at(-1) as SignedTx;
    assert.equal(store.getTx(lastReading.id)?.height, 5);
    // An id sharing the indexed 6-byte prefix of a real one must not match it.
    const lookalike = new Uint8Array(replayed.id);
    lookalike[31] = (lookalike[31] as number) ^ 0xff;
    assert.equal(store.getTx(lookalike), null);
  });

  test("txsByAuthor returns an author's non-reading transactions in sequence order, from a sequence, up to a limit", (t) => {
    const fx = makeFixture({ boxes: 4 });
    const b = build(tempDir(t, "store"), fx, [12, 9, 16, 5]);
    t.after(() => b.ledger.close());
    let checked = 0;
    for (let author = 0; author < fx.boxes; author++) {
      const mine = b.blocks.flatMap((blk) => blk.txs.filter((x) => x.tx.author === author && x.tx.body.type !== "reading"));
      const expected = mine.map((x) => x.tx.seq).sort((p, q) => p - q);
      const got = b.ledger.store.txsByAuthor(author, 0, 1_000);
      assert.deepEqual(got.map((x) => x.signed.tx.seq), expected);
      assert.ok(got.every((x) => x.signed.tx.author === author && x.signed.tx.body.type !== "reading"));
      if (expected.length >= 3) {
        const page = b.ledger.store.txsByAuthor(author, (expected[1] as number), 2);
        assert.deepEqual(page.map((x) => x.signed.tx.seq), expected.slice(1, 3));
        checked++;
      }
    }
    assert.ok(checked > 0, "some author has three or more orders or cancels");
    assert.deepEqual(b.ledger.store.txsByAuthor(99), []);
  });

  test("readingsOf returns one author's readings in a time window, oldest first", (t) => {
    const fx = makeFixture({ boxes: 4 });
    const b = build(tempDir(t, "store"), fx, [12, 9, 16, 5]);
    t.after(() => b.ledger.close());
    for (let author = 0; author < fx.boxes; author++) {
      const expected = b.blocks.flatMap((blk) => blk.txs.filter((x) => x.tx.author === author && x.tx.body.type === "reading"));
      const got = b.ledger.store.readingsOf(author, 0, Number.MAX_SAFE_INTEGER, 10_000);
      assert.deepEqual(got.map((x) => toHex(x.signed.id)).sort(), expected.map((x) => toHex(x.id)).sort());
      const times = got.map((x) => (x.signed.tx.body.type === "reading" ? x.signed.tx.body.timeMs : -1));
      assert.deepEqual(times, [...times].sort((p, q) => p - q));
    }
    assert.deepEqual(b.ledger.store.readingsOf(0, 0, blockTimeMs(1) - 1_000), []);
  });

  test("txsByTypeTime returns one type in a time window, in time order, up to a limit", (t) => {
    const fx = makeFixture({ boxes: 4 });
    const b = build(tempDir(t, "store"), fx, [12, 9, 16, 5]);
    t.after(() => b.ledger.close());
    const store = b.ledger.store;
    // Readings carry their own time (block time - 200 ms): [t2 - 200, t3 - 200) is block 2's readings.
    const readings2 = store.txsByTypeTime("reading", blockTimeMs(2) - 200, blockTimeMs(3) - 200, 1_000);
    assert.deepEqual(readings2.map((x) => toHex(x.signed.id)).sort(), b.blocks[1]!.txs.filter((x) => x.tx.body.type === "reading").map((x) => toHex(x.id)).sort());
    assert.ok(readings2.every((x) => x.height === 2));
    const all = store.txsByTypeTime("reading", 0, blockTimeMs(10), 1_000);
    assert.equal(all.length, 12 + 9 + 16 + 5);
    const times = all.map((x) => (x.signed.tx.body as { timeMs: number }).timeMs);
    assert.deepEqual(times, [...times].sort((p, q) => p - q));
    assert.equal(store.txsByTypeTime("reading", 0, blockTimeMs(10), 7).length, 7);
    // Orders and cancels are filed under their block's time.
    const orders = store.txsByTypeTime("order", blockTimeMs(1), blockTimeMs(4) + 1, 100);
    assert.deepEqual(orders.map((x) => x.height), [1, 1, 2, 2, 3, 3, 4, 4]);
    const cancels = store.txsByTypeTime("cancel", 0, blockTimeMs(10));
    assert.deepEqual(cancels.map((x) => x.height), [2, 2, 3, 3, 4, 4]);
    assert.ok(cancels.every((x) => x.result === ResultCode.ok));
    assert.deepEqual(store.txsByTypeTime("member", 0, blockTimeMs(10)), []);
    assert.deepEqual(store.txsByTypeTime("reading", blockTimeMs(4), blockTimeMs(10)), []);
  });

  test("latestReadings holds one row per meter with its newest accepted reading", (t) => {
    const fx = makeFixture({ boxes: 8 });
    // Meters 0..15 are read in blocks 1-3, 16..23 in 1-2, 24..39 only in block 1.
    const b = build(tempDir(t, "store"), fx, [40, 24, 16]);
    t.after(() => b.ledger.close());
    // Block 4: a rejected reading (stale sequence) for meter (0, 0) must not replace the latest one.
    const rejected = signTx({ author: 0, seq: 1, body: { ...readingFor(0, 0, 4), importWh: 9_999_999 } }, fx.signers[0]!, b.ledger.state.chain.hash);
    append(b, b.ledger.propose([rejected], fx.signers[4]!, 4, blockTimeMs(4), 1, 4));
    assert.deepEqual(b.results[3], [ResultCode.staleSequence]);

    const rows = b.ledger.store.latestReadings();
    assert.equal(rows.length, 40);
    const expected = Array.from({ length: 40 }, (_, j) => {
      const { author, meterId } = meterOf(fx, j);
      const height = j < 16 ? 3 : j < 24 ? 2 : 1;
      const r = readingFor(author, meterId, height);
      return { author, meterId, height, timeMs: r.timeMs, importWh: r.importWh, exportWh: r.exportWh, powerW: r.powerW, voltagesDeciV: r.voltagesDeciV, frequencyMilliHz: r.frequencyMilliHz, quality: r.quality };
    }).sort((p, q) => p.author - q.author || p.meterId - q.meterId);
    assert.deepEqual(rows, expected);
    // And they agree with the meter records of the state.
    for (const row of rows) {
      const rec = b.ledger.state.tree.get(`r/${row.author}/${row.meterId}`) as MeterRecord;
      assert.deepEqual([rec.timeMs, rec.importWh, rec.exportWh], [row.timeMs, row.importWh, row.exportWh]);
    }
  });
});

describe("store: refusing files that are not this chain's intact store", () => {
  test("create refuses an existing path and leaves it untouched", (t) => {
    const fx = makeFixture();
    const dir = tempDir(t, "store");
    const b = build(dir, fx, [10]);
    b.ledger.close();
    const before = digest(b.path);
    expectStoreError(() => LedgerStore.create(b.path, fx.genesis), "PG_ERR_STORE_EXISTS", /already exists/);
    expectStoreError(() => Ledger.create(dir, makeFixture({ seed: 2 }).genesis, fx.verifier), "PG_ERR_STORE_EXISTS");
    assert.equal(digest(b.path), before);
    const text = join(dir, "notes.txt");
    writeFileSync(text, "not a ledger\n");
    expectStoreError(() => LedgerStore.create(text, fx.genesis), "PG_ERR_STORE_EXISTS");
    assert.equal(readFileSync(text, "utf8"), "not a ledger\n");
  });

  test("open refuses a missing file without creating one", (t) => {
    const path = join(tempDir(t, "store"), "ledger.sqlite");
    expectStoreError(() => LedgerStore.open(path), "PG_ERR_STORE_MISSING", /does not exist/);
    expectStoreError(() => LedgerStore.open(path, { readonly: true }), "PG_ERR_STORE_MISSING");
    assert.equal(existsSync(path), false);
  });

  test("open refuses random bytes and text as PG_ERR_STORE_CORRUPT, naming the file, and leaves them untouched", (t) => {
    const dir = tempDir(t, "store");
    const files = {
      random: new Uint8Array(randomBytes(64 * 1024)),
      text: new TextEncoder().encode("# peergrid notes\nthis is a text file, not a ledger\n".repeat(100)),
      // Right magic, garbage after it.
      header: new Uint8Array([...new TextEncoder().encode("SQLite format 3\0"), ...randomBytes(8 * PAGE_BYTES)]),
    };
    for (const [name, bytes] of Object.entries(files)) {
      const path = join(dir, `${name}.sqlite`);
      writeFileSync(path, bytes);
      for (const readonly of [false, true]) {
        const err = expectStoreError(() => LedgerStore.open(path, { readonly }), "PG_ERR_STORE_CORRUPT");
        assert.ok(err.message.includes(path), `${name}: the message names the file: ${err.message}`);
        assert.match(err.message, /not a usable peergrid store|cannot be opened|corrupt/);
      }
      assert.deepEqual(new Uint8Array(readFileSync(path)), bytes, `${name} unchanged`);
    }
  });

  test("open refuses another application's SQLite file as PG_ERR_STORE_FOREIGN and does not modify it", (t) => {
    const path = join(tempDir(t, "store"), "other.sqlite");
    const db = new Database(path);
    db.exec("CREATE TABLE contacts (name TEXT, phone TEXT); INSERT INTO contacts VALUES ('ada', '123');");
    db.close();
    const before = digest(path);
    expectStoreError(() => LedgerStore.open(path), "PG_ERR_STORE_FOREIGN", /not a peergrid ledger/);
    expectStoreError(() => LedgerStore.open(path, { readonly: true }), "PG_ERR_STORE_FOREIGN");
    assert.equal(digest(path), before);
    assert.equal(existsSync(`${path}-wal`), false, "open did not switch the file to WAL");
  });

  test("open with another chain's genesis refuses with PG_ERR_STORE_OTHER_CHAIN naming both chains", (t) => {
    const fx = makeFixture({ seed: 1 });
    const other = makeFixture({ seed: 2 });
    const b = build(tempDir(t, "store"), fx, [5]);
    b.ledger.close();
    const err = expectStoreError(() => LedgerStore.open(b.path, { genesis: other.genesis }), "PG_ERR_STORE_OTHER_CHAIN");
    assert.ok(err.message.includes(`"${fx.genesis.chainId}"`) && err.message.includes(`"${other.genesis.chainId}"`), err.message);
    // Same chain id, different members: still another chain.
    const sameId = makeFixture({ seed: 3, chainId: fx.genesis.chainId });
    expectStoreError(() => LedgerStore.open(b.path, { genesis: sameId.genesis }), "PG_ERR_STORE_OTHER_CHAIN");
    const ok = LedgerStore.open(b.path, { genesis: fx.genesis });
    assert.equal(ok.head().height, 1);
    ok.close();
  });

  test("open refuses a schema version it does not read (PG_ERR_STORE_VERSION)", (t) => {
    const fx = makeFixture();
    const b = build(tempDir(t, "store"), fx, [5]);
    b.ledger.close();
    for (const version of [4, 1, 0]) {
      const db = new Database(b.path);
      db.pragma(`user_version = ${version}`);
      db.close();
      expectStoreError(() => LedgerStore.open(b.path), "PG_ERR_STORE_VERSION", new RegExp(`schema version ${version}`));
    }
  });

  test("open refuses a store whose genesis document no longer hashes to its chain hash", (t) => {
    const fx = makeFixture();
    const b = build(tempDir(t, "store"), fx, [5]);
    b.ledger.close();
    const forged = { ...fx.genesis, members: fx.genesis.members.map((m, i) => (i === 1 ? { ...m, roles: ["box", "user", "admin"] } : m)) };
    assert.equal(rawUpdate(b.path, "UPDATE meta SET value = ? WHERE key = 'genesis'", Buffer.from(JSON.stringify(forged))), 1);
    expectStoreError(() => LedgerStore.open(b.path), "PG_ERR_STORE_CORRUPT", /chain hash/);
  });

  describe("a tampered state table: loadState (and so Ledger.open) refuses with PG_ERR_STORE_CORRUPT", () => {
    const cases: { name: string; tamper: (path: string) => void }[] = [
      {
        name: "a meter record re-encoded with one more Wh",
        tamper: (path) => {
          const db = new Database(path);
          const row = db.prepare("SELECT value FROM state WHERE key = 'r/1/0'").get() as { value: Buffer };
          const rec = decodeRecord(new Uint8Array(row.value)) as MeterRecord;
          db.prepare("UPDATE state SET value = ? WHERE key = 'r/1/0'").run(Buffer.from(encodeRecord({ ...rec, importWh: rec.importWh + 1 })));
          db.close();
        },
      },
      { name: "a record deleted", tamper: (path) => assert.equal(rawUpdate(path, "DELETE FROM state WHERE key = 'm/2'"), 1) },
      {
        name: "a record added",
        tamper: (path) => rawUpdate(path, "INSERT INTO state (key, value) VALUES ('m/77', (SELECT value FROM state WHERE key = 'm/2'))"),
      },
      { name: "a record's bytes that no longer decode", tamper: (path) => assert.equal(rawUpdate(path, "UPDATE state SET value = x'ff0102' WHERE key = 'r/0/1'"), 1) },
      { name: "a record's bytes truncated", tamper: (path) => assert.equal(rawUpdate(path, "UPDATE state SET value = substr(value, 1, 5) WHERE key = 'm/0'"), 1) },
    ];
    for (const c of cases) {
      test(c.name, (t) => {
        const fx = makeFixture({ boxes: 4 });
        const dir = tempDir(t, "store");
        const b = build(dir, fx, [16, 16]);
        b.ledger.close();
        c.tamper(b.path);
        const store = LedgerStore.open(b.path, { genesis: fx.genesis }); // structure is intact; the content is not
        t.after(() => store.close());
        expectStoreError(() => store.loadState(), "PG_ERR_STORE_CORRUPT", /run `peergrid verify`|saved state/);
        expectStoreError(() => Ledger.open(dir, fx.verifier), "PG_ERR_STORE_CORRUPT");
      });
    }
  });

  test("a damaged head block (a transaction row lost or garbled): loadState refuses with PG_ERR_STORE_CORRUPT", (t) => {
    const fx = makeFixture({ boxes: 4 });
    const b = build(tempDir(t, "store"), fx, [16, 16]);
    b.ledger.close();
    const pristine = readFileSync(b.path);
    const tampers = [
      "DELETE FROM txs WHERE rowid = (SELECT first_tx + 3 FROM blocks WHERE height = 2)",
      "UPDATE txs SET raw = x'0102' WHERE rowid = (SELECT first_tx FROM blocks WHERE height = 2)",
      "UPDATE blocks SET header = substr(header, 1, 20) WHERE height = 2",
    ];
    for (const sql of tampers) {
      writeFileSync(b.path, pristine);
      assert.equal(rawUpdate(b.path, sql), 1);
      const store = LedgerStore.open(b.path);
      try {
        expectStoreError(() => store.loadState(), "PG_ERR_STORE_CORRUPT", /head block 2/);
      } finally {
        store.close();
      }
    }
  });

  test("corrupted pages in a closed, checkpointed file: open or loadState throws a StoreError", (t) => {
    const fx = makeFixture({ boxes: 4 });
    const dir = tempDir(t, "store");
    const b = build(dir, fx, [400, 400, 400, 400, 400, 400]);
    b.ledger.close();
    assert.equal(existsSync(`${b.path}-wal`), false, "closing checkpointed the WAL into the file");
    const size = statSync(b.path).size;
    const pages = size / PAGE_BYTES;
    assert.ok(Number.isInteger(pages) && pages > 40, `a file of ${pages} pages`);
    const pristine = readFileSync(b.path);
    // Seeded positions across the middle of the file: 1-3 whole pages each.
    let s = 12345;
    const nextInt = (n: number) => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) % n;
    for (let i = 0; i < 12; i++) {
      const copy = join(dir, `corrupt-${i}.sqlite`);
      writeFileSync(copy, pristine);
      const firstPage = Math.floor(pages / 4) + nextInt(Math.floor(pages / 2));
      const count = 1 + nextInt(3);
      overwrite(copy, firstPage * PAGE_BYTES, new Uint8Array(randomBytes(count * PAGE_BYTES)));
      let store: LedgerStore | null = null;
      try {
        const err = (() => {
          try {
            store = LedgerStore.open(copy);
            store.loadState();
            return null;
          } catch (e) {
            return e;
          }
        })();
        assert.ok(err instanceof StoreError, `pages ${firstPage}..${firstPage + count - 1}: expected a StoreError, got ${err === null ? "a store that loaded" : String(err)}`);
        assert.ok(err.code === "PG_ERR_STORE_CORRUPT", err.message);
        assert.ok(err.message.includes(copy), err.message);
      } finally {
        (store as LedgerStore | null)?.close();
      }
    }
  });

  test("corruption anywhere (unaligned, any size): a StoreError, a verify fault, or the data reads back identical", (t) => {
    const fx = makeFixture({ boxes: 4 });
    const dir = tempDir(t, "store");
    const b = build(dir, fx, [300, 300, 300, 300]);
    const good = b.blocks.map((blk, i) => ({ hash: toHex(blk.hash), txs: blk.txs.map((x) => toHex(x.bytes)), root: toHex(b.roots[i] as Hash) }));
    b.ledger.close();
    const pristine = readFileSync(b.path);
    let s = 777;
    const nextInt = (n: number) => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) >>> 8) % n;
    const outcomes: Record<string, number> = {};
    for (let i = 0; i < 16; i++) {
      const copy = join(dir, `corrupt-${i}.sqlite`);
      writeFileSync(copy, pristine);
      const length = 16 + nextInt(4000);
      const offset = PAGE_BYTES + nextInt(pristine.length - PAGE_BYTES - length);
      overwrite(copy, offset, new Uint8Array(randomBytes(length)));
      let outcome: string;
      let store: LedgerStore | null = null;
      try {
        store = LedgerStore.open(copy);
        store.loadState();
        const report = verifyChain(store, fx.verifier);
        if (report.ok) {
          // Nothing detected: then nothing may differ.
          const read = good.map((_, h) => {
            const blk = store!.getBlock(h + 1)!;
            return { hash: toHex(blk.block.hash), txs: blk.block.txs.map((x) => toHex(x.bytes)), root: toHex(blk.stateRoot) };
          });
          assert.deepEqual(read, good, `corruption at ${offset}+${length} went undetected and changed data`);
          outcome = "harmless";
        } else outcome = "verify fault";
      } catch (err) {
        assert.ok(err instanceof StoreError, `corruption at ${offset}+${length}: expected a StoreError, got ${String(err)}`);
        outcome = err.code;
      } finally {
        (store as LedgerStore | null)?.close();
      }
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
    t.diagnostic(`outcomes: ${JSON.stringify(outcomes)}`);
  });
});

describe("store: appendBlock refuses a block that does not extend the head", () => {
  test("a repeated head, a fork and a gap are refused by assertion and leave the store unchanged", (t) => {
    const fx = makeFixture({ boxes: 4 });
    const a = build(tempDir(t, "store-a"), fx, [10, 10, 10]);
    t.after(() => a.ledger.close());
    // B shares the genesis but diverges at block 2 (another reading count), and runs one block further.
    const bLedger = build(tempDir(t, "store-b"), fx, [10, 6, 10, 10]);
    t.after(() => bLedger.ledger.close());

    const snapshot = () => ({ head: a.ledger.store.head(), root: toHex(a.ledger.store.loadState().tree.root), content: contentDigest(a.path) });
    const before = snapshot();

    // 1. The head block again.
    const headBlock = a.blocks[2] as Block;
    const replay = () => a.ledger.store.appendBlock(headBlock, a.results[2]!, { ...a.ledger.state }, new Map());
    assert.throws(replay, (e: unknown) => e instanceof AssertionError && /extends the stored head/.test(e.message));
    // 2. A block at the right height whose parent is B's block 3, not A's.
    const fork = nextBlock(bLedger.ledger, fx, { readings: 4 }); // B's block 5
    const forkAt4 = (() => {
      // Rebuild B's history to height 3 in memory and make its block 4 there.
      let state = genesisState(a.ledger.state.chain);
      for (const blk of bLedger.blocks.slice(0, 3)) state = applyBlock(state, blk, fx.verifier).state;
      const blk4 = bLedger.blocks[3] as Block;
      return { block: blk4, applied: applyBlock(state, blk4, fx.verifier) };
    })();
    assert.equal(forkAt4.block.header.height, a.ledger.state.height + 1);
    assert.notDeepEqual(forkAt4.block.header.parentHash, a.ledger.state.blockHash);
    assert.throws(
      () => a.ledger.store.appendBlock(forkAt4.block, forkAt4.applied.results, forkAt4.applied.state, forkAt4.applied.changes),
      (e: unknown) => e instanceof AssertionError && /extends the stored head/.test(e.message),
    );
    // 3. A block two ahead of the head.
    const gap = applyBlock(bLedger.ledger.state, fork, fx.verifier);
    assert.throws(() => a.ledger.store.appendBlock(fork, gap.results, gap.state, gap.changes), AssertionError);
    // 4. Through the Ledger: the state machine refuses the fork before the store sees it.
    assert.throws(() => a.ledger.append(forkAt4.block), (e: unknown) => e instanceof BlockRejectedError && e.code === "PG_ERR_BLOCK_PARENT");

    assert.deepEqual(snapshot(), before, "the refused appends changed nothing");
    assert.equal(a.ledger.state.height, 3);
    // And the store still takes the real next block.
    appendBlocks(a.ledger, fx, 1, { readings: 10 });
    assert.equal(a.ledger.store.head().height, 4);
    const report = verifyChain(a.ledger.store, fx.verifier);
    assert.equal(report.ok, true, report.fault?.message);
  });
});
