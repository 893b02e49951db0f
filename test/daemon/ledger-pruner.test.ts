// Retention in a running box (daemon/ledger-pruner.ts): the plan, then real
// boxes on loopback signing readings every second while their pruners
// checkpoint and give up old readings; the chain still verifies and every
// box agrees on it. Then the config file's and command line's refusals.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import Database from "better-sqlite3";
import { NodeVerifier } from "../../ledger/keys.js";
import { LedgerStore } from "../../ledger/store.js";
import { TxType } from "../../ledger/tx.js";
import { verifyChain } from "../../ledger/verify.js";
import { ledgerPath } from "../../ledger/ledger.js";
import { parseConfig } from "../../daemon/config.js";
import { ConfigError } from "../../ledger/errors.js";
import { checkpointEveryFor, retentionOfDays, retentionPlan } from "../../daemon/ledger-pruner.js";
import { SyntheticLoad } from "../../daemon/synthetic-load.js";
import { BoxCluster } from "../helpers/box-cluster.js";
import { runCli } from "../helpers/cli.js";

describe("the retention plan", () => {
  const cp = (height: number, timeMs: number) => ({ height, timeMs, records: 1 });

  test("a first checkpoint at once, then one per period of chain time", () => {
    assert.deepEqual(retentionPlan({ height: 5, timeMs: 5_000 }, [], 0, 60_000, 10_000), { checkpoint: true, pruneTo: null });
    assert.equal(retentionPlan({ height: 0, timeMs: 0 }, [], 0, 60_000, 10_000).checkpoint, false, "nothing to copy at genesis");
    assert.equal(retentionPlan({ height: 14, timeMs: 14_000 }, [cp(5, 5_000)], 0, 60_000, 10_000).checkpoint, false);
    assert.equal(retentionPlan({ height: 15, timeMs: 15_000 }, [cp(5, 5_000)], 0, 60_000, 10_000).checkpoint, true);
  });

  test("prunes to the newest checkpoint a whole window old, once", () => {
    const cps = [cp(10, 10_000), cp(20, 20_000), cp(30, 30_000)];
    assert.equal(retentionPlan({ height: 39, timeMs: 39_000 }, cps, 0, 20_000, 10_000).pruneTo, 10);
    assert.equal(retentionPlan({ height: 50, timeMs: 50_000 }, cps, 0, 20_000, 10_000).pruneTo, 30);
    assert.equal(retentionPlan({ height: 50, timeMs: 50_000 }, cps, 30, 20_000, 10_000).pruneTo, null, "already pruned there");
    assert.equal(retentionPlan({ height: 29, timeMs: 29_000 }, cps, 0, 20_000, 10_000).pruneTo, null, "none is a window old");
  });

  test("windows in days, and how often to checkpoint for them", () => {
    assert.deepEqual(retentionOfDays(30), { keepReadingsMs: 30 * 86_400_000 });
    assert.deepEqual(retentionOfDays(1 / 24), { keepReadingsMs: 3_600_000 });
    for (const bad of [0, -1, 0.01, Number.NaN, Infinity, 40_000]) assert.equal(typeof retentionOfDays(bad), "string", String(bad));
    assert.equal(checkpointEveryFor(4 * 86_400_000), 86_400_000);
    assert.equal(checkpointEveryFor(400 * 86_400_000), 86_400_000, "at most a day apart");
    assert.equal(checkpointEveryFor(3_600_000), 900_000);
    assert.equal(checkpointEveryFor(1_000), 60_000, "at least a minute apart");
  });
});

describe("retention in running boxes", () => {
  test("three boxes signing readings give up those older than the window; the chain still verifies and they agree", async (t) => {
    const cluster = new BoxCluster(3);
    t.after(() => cluster.close());
    // A 4 s window and a checkpoint every 1.5 s of chain time: pruning starts within seconds.
    const retention = { keepReadingsMs: 4_000, checkpointEveryMs: 1_500, batchRows: 50 };
    for (let i = 0; i < 3; i++) await cluster.start(i, { retention });
    await cluster.waitFor("a leader", () => cluster.leader());
    const loads = [0, 1, 2].map((i) => {
      const node = cluster.nodes.get(i);
      assert.ok(node !== undefined);
      const load = new SyntheticLoad(node, cluster.signers[i] as never, 20);
      load.start();
      return load;
    });
    t.after(() => loads.forEach((l) => l.stop()));
    const pruned = await cluster.waitFor(
      "every box prunes and finishes deleting",
      () => {
        const st = [...cluster.nodes.values()].map((n) => n.status().retention);
        return st.every((r) => r !== null && r.readingsPrunedTo > 5 && !r.deleting && r.rowsDeleted > 0) ? st : null;
      },
      40_000,
    );
    for (const r of pruned) assert.ok(r !== null && r.checkpoints.length >= 1 && r.checkpoints[0] === r.readingsPrunedTo, JSON.stringify(r));
    loads.forEach((l) => l.stop());
    assert.ok(loads.every((l) => l.stats.accepted > 50), "readings kept flowing while pruning");
    // Every box's head at the same height has the same hash.
    const height = Math.min(...[...cluster.nodes.values()].map((n) => n.ledger.state.height));
    const hashes = new Set([...cluster.nodes.values()].map((n) => Buffer.from(n.ledger.store.header(height)?.hash ?? []).toString("hex")));
    assert.equal(hashes.size, 1);
    const prunedTo = [...cluster.nodes.values()].map((n) => n.ledger.store.readingsPrunedTo());
    for (let i = 0; i < 3; i++) await cluster.stop(i);
    for (let i = 0; i < 3; i++) {
      const path = ledgerPath(cluster.dir(i));
      const db = new Database(path, { readonly: true });
      const left = (db.prepare(`SELECT count(*) AS n FROM txs WHERE type = ${TxType.reading} AND height <= ?`).get(prunedTo[i]) as { n: number }).n;
      const kept = (db.prepare(`SELECT count(*) AS n FROM txs WHERE type = ${TxType.reading} AND height > ?`).get(prunedTo[i]) as { n: number }).n;
      db.close();
      assert.equal(left, 0, `box ${i}: no reading left in blocks 1..${prunedTo[i]}`);
      assert.ok(kept > 0, `box ${i}: the window's readings are kept`);
      const store = LedgerStore.open(path, { readonly: true });
      const report = verifyChain(store, new NodeVerifier());
      store.close();
      assert.equal(report.ok, true, JSON.stringify(report.fault));
      assert.equal(report.readingsPrunedTo, prunedTo[i]);
    }
  });
});

describe("configuring retention", () => {
  test("ledger.keepReadingsDays in a config file: read, and refused with its key when out of range", () => {
    const load = (ledger: unknown) => parseConfig({ dataDir: "data", key: "box.key", raft: { peers: {} }, mqtt: "off", ledger }, "c.json", "/srv/box");
    assert.deepEqual(load({ keepReadingsDays: 14 }).retention, { keepReadingsMs: 14 * 86_400_000 });
    assert.equal(load({}).retention, undefined);
    assert.throws(() => load({ keepReadingsDays: 0.001 }), (e: unknown) => e instanceof ConfigError && e.problems.some((p) => /^\/ledger\/keepReadingsDays: 0\.001 is not a number of days from 1\/24/.test(p)));
    assert.throws(() => load({ keepReadingsDays: "7" }), (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.startsWith("/ledger/keepReadingsDays")));
    assert.throws(() => load({ keepReadingDays: 7 }), (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.includes("keepReadingDays")));
  });

  test("--keep-readings-days on the command line is checked before anything starts", async () => {
    for (const bad of ["0", "x", ""]) {
      const r = await runCli("start", "--data-dir", "/nonexistent", "--key", "/nonexistent", "--keep-readings-days", bad);
      assert.equal(r.code, 2, r.out);
      assert.match(r.out, /--keep-readings-days: /);
    }
  });
});
