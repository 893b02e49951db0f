// A transaction a box acknowledged (202) and that can no longer commit must
// say so: here another transaction of the same author took its sequence
// number first. Before, the box dropped it from its pool silently, its fate
// read "unknown" (404: "never submitted here") and its entry in the box's
// map of pending submissions stayed for ever.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { BoxNode } from "../../daemon/node.js";
import type { NodeSigner } from "../../ledger/keys.js";
import { signTx } from "../../ledger/tx.js";
import { BoxCluster } from "../helpers/box-cluster.js";

describe("the fate of an acknowledged transaction that was overtaken", () => {
  const c = new BoxCluster(3);
  before(async () => {
    await c.startAll();
  });
  after(async () => {
    await c.close();
  });

  it("is rejected with PG_ERR_TX_STALE_SEQUENCE at the box that took it, not unknown", async () => {
    const leader = await c.waitFor("a leader", () => c.leader());
    const follower = [...c.nodes.values()].find((n) => n !== leader) as BoxNode;
    const user = 3;
    const nowMs = Date.now();
    const order = (energyWh: number) =>
      signTx(
        {
          author: user,
          seq: 1,
          body: { type: "order", side: "buy", energyWh, priceMicroPerKWh: 100_000, intervalStartMs: nowMs - (nowMs % 900_000) + 1_800_000, expiresAtMs: nowMs + 3_600_000, flags: 0, counterparty: null },
        },
        c.signers[user] as NodeSigner,
        leader.ledger.state.chain.hash,
      );
    const first = order(100);
    const second = order(200); // the same sequence number: only one of them can ever commit
    assert.equal((await leader.submit(first.bytes)).ok, true);
    const out = await follower.submit(second.bytes);
    assert.equal(out.ok && out.fate.status, "pending", "the follower acknowledges it: it cannot know yet");
    await c.waitFor("the first committed at the follower", () => follower.fate(first.id).status === "committed");
    const fate = follower.fate(second.id);
    assert.equal(fate.status, "rejected", JSON.stringify(fate));
    assert.equal(fate.status === "rejected" && fate.code, "PG_ERR_TX_STALE_SEQUENCE");
  });
});
