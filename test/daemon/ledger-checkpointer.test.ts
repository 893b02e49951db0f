// A replayable ledger (no fsync per block) becomes durable by checkpoints run
// in a worker thread: after one, the main database file alone (what survives
// when the -wal file is lost) holds every block written before the request.
import assert from "node:assert/strict";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, it } from "node:test";
import { LedgerCheckpointer } from "../../daemon/ledger-checkpointer.js";
import { Ledger } from "../../ledger/ledger.js";
import { LedgerStore } from "../../ledger/store.js";
import { makeFixture, nextBlock } from "../helpers/chain-fixture.js";

const dir = mkdtempSync(join(tmpdir(), "peergrid-ckpt-"));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The height a copy of the main database file alone (no -wal) holds. */
function heightOfMainFileAlone(path: string, name: string): number {
  const copy = join(dir, name);
  copyFileSync(path, copy);
  const s = LedgerStore.open(copy, { readonly: true, skipQuickCheck: true });
  try {
    return s.head().height;
  } finally {
    s.close();
  }
}

it("checkpoints off the main thread and reports how far the ledger is durable", async () => {
  const fx = makeFixture({ boxes: 3 });
  Ledger.create(join(dir, "box"), fx.genesis, fx.verifier).close();
  const ledger = Ledger.open(join(dir, "box"), fx.verifier, { durability: "replayable" });
  const ckpt = new LedgerCheckpointer(ledger.store.path, 0);
  try {
    for (let h = 1; h <= 5; h++) ledger.append(nextBlock(ledger, fx, { readings: 20 }));
    assert.equal(heightOfMainFileAlone(ledger.store.path, "before.sqlite"), 0, "no automatic checkpoint: the blocks are only in the WAL");
    const index = ledger.state.raftIndex;
    ckpt.request(index);
    const until = Date.now() + 10_000;
    while (ckpt.durableRaftIndex < index && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.equal(ckpt.durableRaftIndex, index);
    assert.equal(ckpt.failures, 0, ckpt.lastError ?? "");
    assert.equal(heightOfMainFileAlone(ledger.store.path, "after.sqlite"), 5);
    ckpt.request(index); // nothing new: no request is made
    assert.equal(ckpt.durableRaftIndex, index);
  } finally {
    await ckpt.close();
    ledger.close();
  }
});
