// Three real boxes in one process: Raft over TCP on loopback, ledgers and
// Raft logs on disk. Blocks every interval, transactions from any box, their
// fate, agreement block for block, and a leader stopped and restarted.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { toHex } from "../../ledger/hash.js";
import type { NodeSigner } from "../../ledger/keys.js";
import type { BoxNode } from "../../daemon/node.js";
import { Quality, signTx } from "../../ledger/tx.js";
import { BoxCluster } from "../helpers/box-cluster.js";

function reading(c: BoxCluster, author: number, seq: number, timeMs: number, importWh: number) {
  return signTx(
    {
      author,
      seq,
      body: { type: "reading", meterId: 1, timeMs, importWh, exportWh: 0, powerW: 500, voltagesDeciV: [2300], frequencyMilliHz: 50_000, quality: Quality.good },
    },
    c.signers[author] as NodeSigner,
    (c.nodes.values().next().value as BoxNode).ledger.state.chain.hash,
  );
}

function heads(c: BoxCluster): Map<number, string> {
  return new Map([...c.nodes].map(([id, n]) => [id, `${n.ledger.state.height}:${toHex(n.ledger.state.blockHash)}`]));
}

/** Every pair of boxes holds the same block at every height both have. */
function assertChainsAgree(c: BoxCluster): number {
  const nodes = [...c.nodes.values()];
  const minHeight = Math.min(...nodes.map((n) => n.ledger.state.height));
  for (let h = 1; h <= minHeight; h++) {
    const hashes = new Set(nodes.map((n) => toHex(n.ledger.store.getBlock(h)?.block.hash ?? new Uint8Array(32))));
    assert.equal(hashes.size, 1, `boxes disagree at height ${h}`);
  }
  return minHeight;
}

describe("a three-box cluster", () => {
  const c = new BoxCluster(3);
  before(async () => {
    await c.startAll();
  });
  after(async () => {
    await c.close();
  });

  it("elects one leader and cuts blocks every interval, empty ones too", async () => {
    const leader = await c.waitFor("a leader", () => c.leader());
    const h0 = leader.ledger.state.height;
    await c.waitFor("3 more blocks on every box", () => [...c.nodes.values()].every((n) => n.ledger.state.height >= h0 + 3));
    assertChainsAgree(c);
    const b = leader.ledger.store.getBlock(h0 + 2);
    assert.ok(b !== null);
    assert.equal(b.block.header.proposer, leader.id);
    assert.ok(Math.abs(b.block.header.timeMs - Date.now()) < 10_000, "block time close to the wall clock");
  });

  it("takes a transaction at a follower, forwards it, and reports its fate", async () => {
    const leader = await c.waitFor("a leader", () => c.leader());
    const follower = [...c.nodes.values()].find((n) => n !== leader) as BoxNode;
    const userId = 3;
    const tx = reading(c, follower.id, 1, Date.now(), 100);
    const out = await follower.submit(tx.bytes);
    assert.equal(out.ok, true, JSON.stringify(out));
    assert.equal(out.ok && out.fate.status, "pending");
    const fate = await c.waitFor("commit", () => {
      const f = follower.fate(tx.id);
      return f.status === "committed" ? f : null;
    });
    assert.equal(fate.status === "committed" && fate.result, "ok");
    // Every box knows it, at the same height.
    for (const n of c.nodes.values()) {
      const f = await c.waitFor("the block everywhere", () => {
        const x = n.fate(tx.id);
        return x.status === "committed" ? x : null;
      });
      assert.equal(f.status === "committed" && f.height, fate.status === "committed" && fate.height);
    }
    // Every box checked the block's signatures ahead, in its worker: the apply found the verdicts remembered.
    for (const n of c.nodes.values()) assert.ok(n.status().signatureChecks.remembered >= 1, `box ${n.id}: ${JSON.stringify(n.status().signatureChecks)}`);
    // Resubmitting is harmless: the fate, not a second copy.
    const again = await follower.submit(tx.bytes);
    assert.equal(again.ok && again.fate.status, "committed");
    // A user (no box role) may not sign readings: committed, with the rule's verdict.
    const bad = reading(c, userId, 1, Date.now(), 5);
    assert.equal((await follower.submit(bad.bytes)).ok, true);
    const badFate = await c.waitFor("verdict", () => {
      const f = follower.fate(bad.id);
      return f.status === "committed" ? f : null;
    });
    assert.equal(badFate.status === "committed" && badFate.result, "notPermitted");
  });

  it("refuses garbage, a forged signature and a replay with stable codes, and keeps going", async () => {
    const n = c.nodes.get(1) as BoxNode;
    const submittedBefore = n.status().counters.txsSubmitted;
    const junk = await n.submit(new Uint8Array([1, 2, 3]));
    assert.equal(junk.ok, false);
    assert.match(!junk.ok ? junk.code : "", /^PG_ERR_DECODE_/);
    const tx = reading(c, 1, 2, Date.now(), 200);
    const forged = new Uint8Array(tx.bytes);
    forged[forged.length - 1] = (forged[forged.length - 1] as number) ^ 1;
    const f = await n.submit(forged);
    assert.equal(!f.ok && f.code, "PG_ERR_TX_BAD_SIGNATURE");
    // The same transaction twice at once (both wait for the signature check): one pool entry, both told "pending".
    const twice = reading(c, 1, 2, Date.now(), 250);
    const [t1, t2] = await Promise.all([n.submit(twice.bytes), n.submit(twice.bytes)]);
    assert.equal(t1.ok && t1.fate.status, "pending");
    assert.equal(t2.ok && t2.fate.status, "pending");
    assert.equal(n.status().counters.txsSubmitted - submittedBefore, 1);
    const replay = reading(c, 1, 1, Date.now() + 1, 300); // seq 1 was used above by box 1 or another box
    const r = await n.submit(replay.bytes);
    if (!r.ok) assert.match(r.code, /STALE|DUPLICATE/);
    const h = n.ledger.state.height;
    await c.waitFor("blocks go on", () => n.ledger.state.height > h + 1);
  });

  it("survives the leader stopping: a new leader within seconds, and the old one catches up on restart", async () => {
    const leader = await c.waitFor("a leader", () => c.leader());
    const oldId = leader.id;
    await c.stop(oldId);
    const stoppedAt = Date.now();
    const next = await c.waitFor("a new leader", () => c.leader(), 10_000);
    assert.notEqual(next.id, oldId);
    const h = next.ledger.state.height;
    await c.waitFor("a block from the new leader", () => next.ledger.state.height > h);
    const failoverMs = Date.now() - stoppedAt;
    assert.ok(failoverMs < 10_000, `failover took ${failoverMs} ms`);
    const restarted = await c.start(oldId);
    await c.waitFor("the restarted box catches up", () => restarted.ledger.state.height >= next.ledger.state.height - 1);
    await c.waitFor("heads agree", () => new Set(heads(c).values()).size === 1 || null, 10_000);
    assert.ok(assertChainsAgree(c) > 0);
  });
});

describe("a leader whose clock is far behind", () => {
  const c = new BoxCluster(1);
  after(async () => {
    await c.close();
  });

  it("cannot move the chain's time backwards, and the chain goes on", async () => {
    const honest = await c.start(0);
    await c.waitFor("blocks", () => honest.ledger.state.height >= 2);
    await c.stop(0);
    const skewed = await c.start(0, { now: () => Date.now() - 120_000 });
    const h = skewed.ledger.state.height;
    const tHead = skewed.ledger.state.timeMs;
    await c.waitFor("3 more blocks", () => skewed.ledger.state.height >= h + 3);
    let prev = tHead;
    for (let i = h + 1; i <= skewed.ledger.state.height; i++) {
      const t = (skewed.ledger.store.getBlock(i)?.block.header.timeMs) as number;
      assert.ok(t > prev && t - prev < 1_000, `block ${i} at ${t} after ${prev}: forward, by a millisecond, not backwards`);
      prev = t;
    }
    assert.ok(skewed.counters.clockBehindChain >= 3);
  });
});
