// A neighbourhood that gave up old readings still takes in a new box, and
// one that was offline for longer than its neighbours keep readings: real
// boxes on loopback (real SQLite files, the Raft log in its worker, TCP
// links), their Raft logs compacted, their readings pruned to a checkpoint.
// The two boxes catch up by installing a neighbour's checkpoint, checked
// against the chain Raft committed, and then whole blocks. Two of the three
// running boxes (the leader among them) hold a checkpoint that was tampered
// with on disk: the newcomers must refuse it and install the honest one. At
// the end every box holds the same chain, and the newcomers' ledgers verify
// and say what they do not hold.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import Database from "better-sqlite3";
import { buildHttp } from "../../daemon/http.js";
import type { BoxNode, LogLevel } from "../../daemon/node.js";
import { SyntheticLoad } from "../../daemon/synthetic-load.js";
import { toHex } from "../../ledger/hash.js";
import { NodeVerifier } from "../../ledger/keys.js";
import { ledgerPath } from "../../ledger/ledger.js";
import { type MemberRecord, decodeRecord, encodeRecord } from "../../ledger/records.js";
import { LedgerStore } from "../../ledger/store.js";
import { verifyChain } from "../../ledger/verify.js";
import { BoxCluster } from "../helpers/box-cluster.js";

const COMPACTION = { keepEntries: 4, everyEntries: 4 }; // Raft logs hold a few seconds of blocks
const WAIT_MS = 60_000;

/** Rewrite member 1's name in box `dir`'s checkpoint at `height`: still a valid record, another state root. */
function tamperCheckpoint(dir: string, height: number): void {
  const db = new Database(ledgerPath(dir));
  try {
    db.pragma("busy_timeout = 10000"); // the running box writes a block every half second
    const row = db.prepare("SELECT value FROM checkpoint_state WHERE height = ? AND key = 'm/1'").get(height) as { value: Buffer } | undefined;
    assert.ok(row !== undefined, `a checkpoint at ${height}`);
    const m = decodeRecord(new Uint8Array(row.value)) as MemberRecord;
    db.prepare("UPDATE checkpoint_state SET value = ? WHERE height = ? AND key = 'm/1'").run(Buffer.from(encodeRecord({ ...m, name: "mallory" })), height);
  } finally {
    db.close();
  }
}

describe("catching up from a pruned neighbourhood", () => {
  test("a new box and a long-offline one install a neighbour's checkpoint (refusing tampered ones), then follow the chain", async (t) => {
    const c = new BoxCluster(5); // five voters; boxes 0-2 make the quorum
    t.after(() => c.close());
    const logs = new Map<number, string[]>();
    const logTo = (id: number) => (level: LogLevel, msg: string, fields?: Record<string, unknown>) => {
      let lines = logs.get(id);
      if (lines === undefined) logs.set(id, (lines = []));
      lines.push(`${level} ${msg} ${JSON.stringify(fields ?? {})}`);
    };
    for (const i of [0, 1, 2, 3]) await c.start(i, { compaction: COMPACTION, log: logTo(i) });
    await c.waitFor("a leader", () => c.leader());
    let running = [0, 1, 2].map((i) => c.nodes.get(i) as BoxNode);
    let loads: SyntheticLoad[] = [];
    const startLoads = () => {
      loads = running.map((n, i) => new SyntheticLoad(n, c.signers[i] as never, 20));
      loads.forEach((l) => l.start());
    };
    startLoads();
    t.after(() => loads.forEach((l) => l.stop()));

    // Box 3 follows the chain for a while, then goes offline.
    const box3 = c.nodes.get(3) as BoxNode;
    await c.waitFor("box 3 holds blocks with readings", () => box3.ledger.state.height >= 6 && loads.every((l) => l.stats.accepted > 20), WAIT_MS);
    await c.stop(3);
    const offlineStore = LedgerStore.open(ledgerPath(c.dir(3)), { readonly: true });
    const k = offlineStore.head().height;
    offlineStore.close();

    // The others go on, checkpoint, and give up the readings up to their checkpoints.
    await c.waitFor("blocks while box 3 is away", () => running.every((n) => n.ledger.state.height >= k + 8), WAIT_MS);
    const checkpoints = running.map((n) => n.ledger.store.checkpoint().height);
    await c.waitFor("blocks after the checkpoints", () => running.every((n, i) => n.ledger.state.height >= (checkpoints[i] as number) + 4), WAIT_MS);
    running.forEach((n, i) => {
      n.ledger.store.pruneReadingsTo(checkpoints[i] as number);
      while (!n.ledger.store.pruneStep(500).done);
    });
    assert.ok(checkpoints.every((b) => b > k + 1), `box 3's head ${k} is below every pruned height ${checkpoints.join(", ")}`);

    // A restart of the three (a power cut in the street): what their links had queued for the absent boxes
    // (Raft appends of every entry since they left, up to 32 MB) is gone, as after a long absence, so the
    // absent boxes will need a snapshot.
    loads.forEach((l) => l.stop());
    for (const i of [0, 1, 2]) await c.stop(i);
    for (const i of [0, 1, 2]) await c.start(i, { compaction: COMPACTION, log: logTo(i) });
    await c.waitFor("a leader after the restart", () => c.leader(), WAIT_MS);
    running = [0, 1, 2].map((i) => c.nodes.get(i) as BoxNode);
    startLoads();
    // Raft compacts past the pruned blocks, so a box that comes back gets a snapshot beyond them.
    const prunedMax = Math.max(...checkpoints);
    await c.waitFor("compaction past the pruned blocks", () => running.every((n) => n.counters.compactions >= 3 && n.ledger.state.height >= prunedMax + 20), WAIT_MS);

    // A second, newer checkpoint on each (not pruned to): a box offers every checkpoint it holds, and the
    // newcomers try the newest below their snapshot's block first. Every newer one is tampered with, and
    // the older one too on every box but one follower (the leader among them).
    const newer = running.map((n) => n.ledger.store.checkpoint().height);
    const compacted = running.map((n) => n.counters.compactions);
    await c.waitFor("compaction past the newer checkpoints", () => running.every((n, i) => n.counters.compactions >= (compacted[i] as number) + 2 && n.ledger.state.height >= Math.max(...newer) + 20), WAIT_MS);
    const leader = await c.waitFor("a leader", () => c.leader());
    const honest = running.find((n) => n.id !== leader.id) as BoxNode;
    for (const n of running) {
      tamperCheckpoint(c.dir(n.id), newer[n.id] as number);
      if (n !== honest) tamperCheckpoint(c.dir(n.id), checkpoints[n.id] as number);
    }

    // Box 3 comes back after its neighbours gave up the readings it lacks; box 4 starts from genesis.
    const back = await c.start(3, { compaction: COMPACTION, log: logTo(3) });
    const fresh = await c.start(4, { compaction: COMPACTION, log: logTo(4) });
    for (const [id, n] of [[3, back], [4, fresh]] as const) {
      await c.waitFor(`box ${id} catches up`, () => n.ledger.store.historyFrom() > 0 && n.ledger.state.height >= honest.ledger.state.height - 2, WAIT_MS).catch((err: Error) => {
        throw new Error(`${err.message} (at ${n.ledger.state.height}, the chain at ${honest.ledger.state.height}; ${JSON.stringify(n.counters)} pruned ${running.map((r) => r.ledger.store.readingsPrunedTo())} k ${k}); its log:\n${(logs.get(id) ?? []).join("\n")}`);
      });
    }
    for (const id of [3, 4]) {
      const n = c.nodes.get(id) as BoxNode;
      assert.ok(n.counters.checkpointsInstalled >= 1, `box ${id} counts the checkpoints it installed`);
      const app = buildHttp(n);
      try {
        const status = await app.inject({ url: "/api/v1/status" });
        assert.equal(status.json().historyFrom, n.ledger.store.historyFrom(), `box ${id}'s status says where its history starts`);
        const notHeld = await app.inject({ url: `/api/v1/blocks/${n.ledger.store.historyGaps()[0]?.from}` });
        assert.equal(notHeld.statusCode, 404);
        assert.equal(notHeld.json().code, "PG_ERR_BLOCK_NOT_HELD", notHeld.body);
      } finally {
        await app.close();
      }
      const lines = logs.get(id) ?? [];
      const installed = lines.filter((l) => l.includes("installed a checkpoint"));
      assert.ok(installed.length >= 1, `box ${id} installed a checkpoint:\n${lines.join("\n")}`);
      assert.ok(lines.some((l) => l.includes("checkpoint was refused") && l.includes("PG_ERR_STORE_CHECKPOINT_ROOT")), `box ${id} refused a tampered checkpoint:\n${lines.join("\n")}`);
      for (const l of installed) {
        const { from, height } = JSON.parse(l.slice(l.indexOf("{"))) as { from: number; height: number };
        assert.ok((from === honest.id && height === checkpoints[honest.id]) || from === 3 || from === 4, `box ${id} installed box ${from}'s checkpoint at ${height}, a tampered one: ${l}`);
      }
      const refusedNewer = lines.filter((l) => l.includes("checkpoint was refused") && newer.some((h) => l.includes(`"height":${h}`)));
      assert.ok(refusedNewer.length >= 1, `box ${id} tried a newest checkpoint first:\n${lines.join("\n")}`);
    }

    // Both go on with the chain: every box holds the same blocks.
    loads.forEach((l) => l.stop());
    const h = honest.ledger.state.height;
    await c.waitFor("every box past the same height", () => [...c.nodes.values()].every((n) => n.ledger.state.height >= h + 2), WAIT_MS);
    const hashes = new Set([...c.nodes.values()].map((n) => toHex(n.ledger.store.header(h)?.hash ?? new Uint8Array())));
    assert.equal(hashes.size, 1, "one chain");
    const historyFrom = new Map([3, 4].map((id) => [id, (c.nodes.get(id) as BoxNode).ledger.store.historyFrom()]));
    for (let i = 0; i < 5; i++) await c.stop(i);

    // The newcomers' ledgers verify as far as they hold the chain, and say what they do not hold.
    const honestHead = (() => {
      const s = LedgerStore.open(ledgerPath(c.dir(honest.id)), { readonly: true });
      try {
        return { height: s.head().height, report: verifyChain(s, new NodeVerifier()) };
      } finally {
        s.close();
      }
    })();
    assert.equal(honestHead.report.ok, true, JSON.stringify(honestHead.report.fault));
    for (const id of [3, 4]) {
      const store = LedgerStore.open(ledgerPath(c.dir(id)), { readonly: true });
      const report = verifyChain(store, new NodeVerifier());
      const at = store.header(h)?.hash;
      store.close();
      const b = historyFrom.get(id) as number;
      assert.equal(report.ok, true, `box ${id}: ${JSON.stringify(report.fault)}`);
      assert.equal(report.historyFrom, b);
      assert.ok(report.readingsPrunedTo >= b);
      // Box 4 may have fetched blocks 1..k whole from box 3, which kept them (boxes that hold blocks whole are asked first).
      assert.equal(report.historyGaps.length, 1, `box ${id}: ${JSON.stringify(report.historyGaps)}`);
      assert.ok(id === 3 ? report.historyGaps[0]?.from === k + 1 : [1, k + 1].includes(report.historyGaps[0]?.from ?? 0), `box ${id}: ${JSON.stringify(report.historyGaps)}`);
      assert.equal(report.historyGaps[0]?.to, b - 1);
      assert.ok(report.blocks >= report.headHeight - b + 2, `box ${id}: genesis, B's header and every block after it checked`);
      assert.equal(toHex(at ?? new Uint8Array()), [...hashes][0]);
    }
  });
});
