// The seeded fault simulation of the Raft core and the ledger on it, a few
// hundred seeds per CI run (`npm run sim:faults -- --seeds 10000` runs
// more). Each seed runs five real RaftNodes (and a spare box), each with a
// pure ledger state applying the committed entries as blocks (sim/raft-sim.ts
// block mode), for 60 simulated seconds through
// partitions, loss, duplication, reordering, crashes losing unsynced Readies,
// fsync stalls and clock drift, while every node compacts its log and the
// membership changes (a voter removed and added back, the spare added as a
// learner, promoted, demoted, removed), then heals; the checkers look for two
// leaders in a term, diverging applied states (entries or installed
// snapshots), acknowledged proposals lost or doubled, a configuration that is
// not the committed log's, and a cluster that does not commit again within
// 5 s of the heal; on the ledger: two blocks at one height, state roots that
// differ, a ledger its durable Raft log does not rebuild, acknowledged
// transactions lost or doubled, and no new block within 5 s of the heal.
import assert from "node:assert/strict";
import { test } from "node:test";
import { runRaftSim } from "../../sim/raft-sim.js";

const SEEDS = Number(process.env.PEERGRID_SIM_SEEDS ?? 300);

test(`raft fault simulation: ${SEEDS} seeds pass every checker`, () => {
  const failing: string[] = [];
  let crashes = 0;
  let stalls = 0;
  let installs = 0;
  let changes = 0;
  let recoveryMax = 0;
  let blocks = 0;
  let acked = 0;
  let fetched = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    try {
      const r = runRaftSim(seed);
      crashes += r.crashes;
      stalls += r.stalls;
      installs += r.snapshotsInstalled;
      changes += r.confChangesCommitted;
      blocks += r.blocks;
      acked += r.txsAcked;
      fetched += r.blocksFetched;
      recoveryMax = Math.max(recoveryMax, r.recoveryMs ?? Infinity);
      if (!r.ok) failing.push(`seed ${seed}: ${r.failures.join(" | ")}`);
    } catch (err) {
      failing.push(`seed ${seed} threw: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  console.log(`# ${SEEDS} seeds: ${crashes} crashes, ${stalls} fsync stalls, ${installs} snapshots installed, ${changes} membership changes in effect, ${blocks} blocks, ${acked} txs acknowledged, ${fetched} blocks fetched after snapshots, slowest recovery after the heal ${recoveryMax} ms`);
  assert.ok(crashes > SEEDS && stalls > SEEDS, "the faults really happened");
  assert.ok(installs > SEEDS && changes > 5 * SEEDS, "lagging nodes caught up by snapshot and the membership changed, during the faults");
  assert.ok(blocks > 30 * SEEDS && acked > 50 * SEEDS && fetched > SEEDS, "blocks with transactions were committed, and fetched after snapshots");
  assert.deepEqual(failing, [], `replay with: npm run sim:faults -- --seed N\n${failing.join("\n")}`);
});

test("the same seed replays the same run", () => {
  assert.deepEqual(runRaftSim(42), runRaftSim(42));
});

test("the recovery checker can fail: demand a commit in 0 ms after the heal", () => {
  const r = runRaftSim(7, { recoveryMsMax: 0 });
  assert.equal(r.ok, false);
  assert.match(r.failures.join(" "), /no new block committed within 0 ms/);
  const strings = runRaftSim(7, { recoveryMsMax: 0, blocks: false });
  assert.match(strings.failures.join(" "), /no new commit within 0 ms/);
});

test("a 2-second fsync stall, on the leader or anywhere, causes no needless election", () => {
  // Only stalls (one fsync in five stalls for 2 s, twice the election timeout), no partitions or loss;
  // no membership changes either (removing the leader is a needed election).
  for (let seed = 1; seed <= 30; seed++) {
    const r = runRaftSim(seed, { partitions: false, lossRate: 0, duplicateRate: 0, stallRate: 0.2, stallMs: 2_000, membershipChanges: false });
    assert.ok(r.ok, `seed ${seed}: ${r.failures.join(" | ")}`);
    assert.ok(r.stalls > 50, `seed ${seed}: stalls happened (${r.stalls})`);
    assert.equal(r.termsWithLeader, 1, `seed ${seed}: one election at start-up, none after (${r.termsWithLeader} terms had a leader)`);
  }
});

test("without faults, compaction and membership changes alone keep every checker green, and snapshots are still used", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const r = runRaftSim(seed, { faults: false, compactEveryEntries: 5, compactMarginEntries: 2 });
    assert.ok(r.ok, `seed ${seed}: ${r.failures.join(" | ")}`);
    assert.ok(r.compactions > 50 && r.confChangesCommitted > 20, `seed ${seed}: ${r.compactions} compactions, ${r.confChangesCommitted} changes`);
    assert.ok(r.blocks > 45 && r.txsAcked > 100, `seed ${seed}: ${r.blocks} blocks, ${r.txsAcked} transactions acknowledged`);
  }
});

test("the old string mode (entries are strings, no ledger) still passes", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const r = runRaftSim(seed, { blocks: false, compactEveryEntries: 20, compactMarginEntries: 10 });
    assert.ok(r.ok, `seed ${seed}: ${r.failures.join(" | ")}`);
    assert.ok(r.proposalsAcked > 50, `seed ${seed}: ${r.proposalsAcked} proposals acknowledged`);
  }
});
