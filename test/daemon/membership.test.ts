// Growing and shrinking a running cluster with no restart: a box enrolled on
// the ledger joins Raft (the leader proposes the change), catches up on
// blocks the others already compacted out of their Raft logs (snapshot, then
// verified blocks fetched from peers), and a removed box is dropped.
import assert from "node:assert/strict";
import { after, describe, it } from "node:test";
import { NodeVerifier } from "../../ledger/keys.js";
import { Ledger } from "../../ledger/ledger.js";
import { toHex } from "../../ledger/hash.js";
import type { NodeSigner } from "../../ledger/keys.js";
import { Role, signTx } from "../../ledger/tx.js";
import type { BoxNode } from "../../daemon/node.js";
import { desiredConfiguration, nextConfChange } from "../../daemon/node.js";
import { BoxCluster } from "../helpers/box-cluster.js";

describe("membership follows the ledger", () => {
  // Boxes 0-2 run from the start; member 3 is a user key the admin re-roles as a box later.
  const c = new BoxCluster(3, { extraMembers: 2 });
  const compaction = { keepEntries: 4, everyEntries: 4 };
  let adminSeq = 0;
  const admin = (body: Parameters<typeof signTx>[0]["body"]) =>
    signTx({ author: 0, seq: ++adminSeq, body }, c.signers[0] as NodeSigner, (c.nodes.get(0) as BoxNode).ledger.state.chain.hash);
  after(async () => {
    await c.close();
  });

  it("the next change moves one step towards the ledger's membership", () => {
    assert.deepEqual(nextConfChange({ voters: [0, 1], learners: [] }, { voters: [0, 1, 2], learners: [] }), { type: "addVoter", node: 2 });
    assert.deepEqual(nextConfChange({ voters: [0, 1, 2], learners: [] }, { voters: [0, 1], learners: [] }), { type: "removeVoter", node: 2 });
    assert.deepEqual(nextConfChange({ voters: [0, 1, 2], learners: [] }, { voters: [0, 1], learners: [2] }), { type: "addLearner", node: 2 });
    assert.deepEqual(nextConfChange({ voters: [0], learners: [5] }, { voters: [0], learners: [] }), { type: "removeLearner", node: 5 });
    assert.equal(nextConfChange({ voters: [0], learners: [] }, { voters: [], learners: [] }), null, "never the last voter");
    assert.equal(nextConfChange({ voters: [0, 1], learners: [3] }, { voters: [0, 1], learners: [3] }), null);
  });

  it("a box enrolled while the cluster runs joins, catching up past compacted logs, and a removed one leaves", async () => {
    for (let i = 0; i < 3; i++) await c.start(i, { compaction });
    const leader = await c.waitFor("a leader", () => c.leader());
    await c.waitFor("compaction on every box", () => [...c.nodes.values()].every((n) => n.counters.compactions >= 2), 30_000);
    // Member 3 becomes a box: the admin's transaction; the leader then adds it to Raft.
    const newbie = 3;
    assert.equal((await leader.submit(admin({ type: "member", action: "setRoles", subject: newbie, roles: Role.box }).bytes)).ok, true);
    await c.waitFor("voter 3 in the configuration", () => [...c.nodes.values()].every((n) => n.status().peers.some((p) => p.id === newbie)) || null, 20_000);
    assert.deepEqual(desiredConfiguration(leader.ledger.state).voters, [0, 1, 2, 3]);
    // Its box starts from the genesis only: the others' logs no longer hold the early blocks.
    Ledger.create(c.dir(newbie), c.genesis, new NodeVerifier()).close();
    const box3 = await c.start(newbie, { compaction });
    await c.waitFor("box 3 catches up", () => box3.ledger.state.height >= leader.ledger.state.height - 1 && box3.counters.blocksCaughtUp > 0 || null, 30_000);
    const h = Math.min(box3.ledger.state.height, leader.ledger.state.height);
    assert.equal(toHex(box3.ledger.store.getBlock(h)?.block.hash ?? new Uint8Array()), toHex(leader.ledger.store.getBlock(h)?.block.hash ?? new Uint8Array(1)));
    // Blocks go on with four voters, box 3 applying them too.
    const h3 = box3.ledger.state.height;
    await c.waitFor("box 3 applies new blocks", () => box3.ledger.state.height > h3 + 2);
    // Removing box 2 from the ledger takes it out of Raft; the cluster goes on without it.
    const current = (await c.waitFor("a leader", () => c.leader())) as BoxNode;
    const removeTarget = current.id === 2 ? 1 : 2;
    assert.equal((await current.submit(admin({ type: "member", action: "remove", subject: removeTarget }).bytes)).ok, true);
    await c.waitFor(`box ${removeTarget} out of the configuration`, () => {
      const l = c.leader();
      return l !== null && !l.status().peers.some((p) => p.id === removeTarget) && l.id !== removeTarget ? l : null;
    }, 20_000);
    await c.stop(removeTarget);
    const l = (await c.waitFor("a leader", () => c.leader())) as BoxNode;
    const hl = l.ledger.state.height;
    await c.waitFor("blocks without the removed box", () => l.ledger.state.height > hl + 2);
  });
});
