// The transaction pool: its limits refuse with clear codes, selection is fair
// and in sequence order, committed and stale transactions leave.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { hash, toHex, utf8 } from "../../ledger/hash.js";
import { NodeSigner } from "../../ledger/keys.js";
import { DEFAULT_MEMPOOL_LIMITS, Mempool, MempoolRefusal } from "../../ledger/mempool.js";
import { type SignedTx, signTx } from "../../ledger/tx.js";

const CHAIN = hash(utf8("mempool test chain"));
const signers = [0, 1, 2].map(() => NodeSigner.generate());

function reading(author: number, seq: number, importWh = seq): SignedTx {
  return signTx(
    {
      author,
      seq,
      body: { type: "reading", meterId: 0, timeMs: 1_700_000_000_000 + seq * 1000, importWh, exportWh: 0, powerW: 100, voltagesDeciV: [2300], frequencyMilliHz: 50_000, quality: 0 },
    },
    signers[author] as NodeSigner,
    CHAIN,
  );
}

const seqs = (txs: readonly SignedTx[]) => txs.map((t) => `${t.tx.author}:${t.tx.seq}`);

describe("mempool", () => {
  test("dueForResend: first after firstMs, then with the wait doubling; in sequence order; committed ones never", () => {
    const pool = new Mempool();
    for (const seq of [2, 1]) pool.add(reading(0, seq), 0, 0);
    pool.add(reading(1, 1), 0, 500);
    const due = (now: number) => seqs(pool.dueForResend(now, 1_000));
    assert.deepEqual(due(999), []);
    assert.deepEqual(due(1_000), ["0:1", "0:2"]);
    assert.deepEqual(due(1_400), [], "not again at the next turn");
    assert.deepEqual(due(1_500), ["1:1"]);
    assert.deepEqual(due(2_999), []);
    assert.deepEqual(due(3_000), ["0:1", "0:2"], "then 3 x firstMs after it was added");
    assert.deepEqual(due(3_500), ["1:1"]);
    pool.removeCommitted([reading(0, 1)], () => 1);
    assert.deepEqual(due(7_000), ["0:2"], "then 7 x; a committed one is gone");
    assert.deepEqual(due(7_500), ["1:1"]);
    assert.deepEqual(due(14_999), []);
    assert.deepEqual(due(15_000), ["0:2"]);
    // A new leader gets everything at once, and the schedules start again from then.
    assert.deepEqual(seqs(pool.allForNewLeader(20_000)), ["0:2", "1:1"]);
    assert.deepEqual(due(20_999), []);
    assert.deepEqual(due(21_000), ["0:2", "1:1"]);
  });

  test("admits, counts bytes, refuses duplicates by id and by (author, seq), and stale sequences", () => {
    const pool = new Mempool();
    const a = reading(0, 1);
    assert.deepEqual(pool.add(a, 0, 0), { ok: true });
    assert.equal(pool.size, 1);
    assert.equal(pool.bytes, a.bytes.length);
    assert.ok(pool.has(toHex(a.id)));
    assert.equal((pool.add(a, 0, 0) as { code: string }).code, MempoolRefusal.duplicate);
    assert.equal((pool.add(reading(0, 1, 999), 0, 0) as { code: string }).code, MempoolRefusal.duplicate, "same author and seq, other bytes");
    const stale = pool.add(reading(1, 3), 3, 0);
    assert.equal((stale as { code: string }).code, MempoolRefusal.stale);
    assert.match((stale as { message: string }).message, /sequence 3 is not after member 1's last, 3/);
  });

  test("limits: a full pool and a member's share refuse with a clear code, and admit again once space frees", () => {
    const pool = new Mempool({ ...DEFAULT_MEMPOOL_LIMITS, txsMax: 3, perAuthorMax: 2 });
    assert.ok(pool.add(reading(0, 1), 0, 0).ok);
    assert.ok(pool.add(reading(0, 2), 0, 0).ok);
    assert.equal((pool.add(reading(0, 3), 0, 0) as { code: string }).code, MempoolRefusal.authorFull);
    assert.ok(pool.add(reading(1, 1), 0, 0).ok);
    const full = pool.add(reading(2, 1), 0, 0);
    assert.equal((full as { code: string }).code, MempoolRefusal.full);
    pool.removeCommitted([reading(0, 1)], () => 1);
    assert.ok(pool.add(reading(2, 1), 0, 0).ok);
    const bytes = new Mempool({ ...DEFAULT_MEMPOOL_LIMITS, bytesMax: reading(0, 1).bytes.length + 10 });
    assert.ok(bytes.add(reading(0, 1), 0, 0).ok);
    assert.equal((bytes.add(reading(1, 1), 0, 0) as { code: string }).code, MempoolRefusal.full);
  });

  test("select: authors take turns, each in sequence order, within the count and byte limits", () => {
    const pool = new Mempool();
    for (const seq of [3, 1, 2]) pool.add(reading(0, seq), 0, 0); // arrives out of order
    for (const seq of [1, 2]) pool.add(reading(1, seq), 0, 0);
    pool.add(reading(2, 7), 0, 0);
    const all = pool.select(100, 1_000_000);
    assert.equal(all.length, 6);
    for (const author of [0, 1, 2]) {
      const mine = all.filter((t) => t.tx.author === author).map((t) => t.tx.seq);
      assert.deepEqual(mine, [...mine].sort((x, y) => x - y), `author ${author} in sequence order`);
    }
    const three = pool.select(3, 1_000_000);
    assert.equal(new Set(three.map((t) => t.tx.author)).size, 3, "three slots go to three authors, not to the first one");
    const one = reading(0, 1).bytes.length;
    assert.equal(pool.select(100, one * 2 + 1).length, 2, "the byte limit holds");
    assert.equal(pool.size, 6, "selection does not remove");
  });

  test("the turn rotates, so no author always gets the first slot", () => {
    const pool = new Mempool();
    for (const author of [0, 1, 2]) pool.add(reading(author, 1), 0, 0);
    const firsts = [0, 1, 2].map(() => (pool.select(1, 1_000_000)[0] as SignedTx).tx.author);
    assert.deepEqual([...firsts].sort(), [0, 1, 2]);
  });

  test("removeCommitted drops the block's txs and what the new sequence numbers made stale", () => {
    const pool = new Mempool();
    for (const seq of [1, 2, 3, 4]) pool.add(reading(0, seq), 0, 0);
    pool.add(reading(1, 1), 0, 0);
    // A block carried 0:3 (0:1 and 0:2 were lost in a leader change and will never be valid now).
    pool.removeCommitted([reading(0, 3)], (author) => (author === 0 ? 3 : 0));
    assert.deepEqual(seqs(pool.select(100, 1_000_000)).sort(), ["0:4", "1:1"]);
    assert.equal(pool.bytes, reading(0, 4).bytes.length + reading(1, 1).bytes.length);
  });

  test("expire drops what waited too long, and only that", () => {
    const pool = new Mempool({ ...DEFAULT_MEMPOOL_LIMITS, ageMsMax: 1_000 });
    pool.add(reading(0, 1), 0, 0);
    pool.add(reading(1, 1), 0, 900);
    assert.equal(pool.expire(1_500).length, 1);
    assert.deepEqual(seqs(pool.select(10, 1_000_000)), ["1:1"]);
    assert.equal(pool.expire(5_000).length, 1);
    assert.equal(pool.size, 0);
    assert.equal(pool.bytes, 0);
  });
});
