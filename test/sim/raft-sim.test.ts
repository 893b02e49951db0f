// The seeded fault simulation of the Raft core, a few hundred seeds per CI
// run (`npm run sim:faults -- --seeds 10000` runs more). Each seed runs five
// real RaftNodes for 60 simulated seconds through partitions, loss,
// duplication, reordering, crashes losing unsynced Readies, fsync stalls and
// clock drift, then heals; the checkers look for two leaders in a term,
// diverging applied logs, acknowledged proposals lost or doubled, and a
// cluster that does not commit again within 5 s of the heal.
import assert from "node:assert/strict";
import { test } from "node:test";
import { runRaftSim } from "../../sim/raft-sim.js";

const SEEDS = Number(process.env.PEERGRID_SIM_SEEDS ?? 300);

test(`raft fault simulation: ${SEEDS} seeds pass every checker`, () => {
  const failing: string[] = [];
  let crashes = 0;
  let stalls = 0;
  let recoveryMax = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    try {
      const r = runRaftSim(seed);
      crashes += r.crashes;
      stalls += r.stalls;
      recoveryMax = Math.max(recoveryMax, r.recoveryMs ?? Infinity);
      if (!r.ok) failing.push(`seed ${seed}: ${r.failures.join(" | ")}`);
    } catch (err) {
      failing.push(`seed ${seed} threw: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  console.log(`# ${SEEDS} seeds: ${crashes} crashes, ${stalls} fsync stalls, slowest recovery after the heal ${recoveryMax} ms`);
  assert.ok(crashes > SEEDS && stalls > SEEDS, "the faults really happened");
  assert.deepEqual(failing, [], `replay with: npm run sim:faults -- --seed N\n${failing.join("\n")}`);
});

test("the same seed replays the same run", () => {
  assert.deepEqual(runRaftSim(42), runRaftSim(42));
});

test("the recovery checker can fail: demand a commit in 0 ms after the heal", () => {
  const r = runRaftSim(7, { recoveryMsMax: 0 });
  assert.equal(r.ok, false);
  assert.match(r.failures.join(" "), /no new commit within 0 ms/);
});

test("a 2-second fsync stall, on the leader or anywhere, causes no needless election", () => {
  // Only stalls (one fsync in five stalls for 2 s, twice the election timeout), no partitions or loss.
  for (let seed = 1; seed <= 30; seed++) {
    const r = runRaftSim(seed, { partitions: false, lossRate: 0, duplicateRate: 0, stallRate: 0.2, stallMs: 2_000 });
    assert.ok(r.ok, `seed ${seed}: ${r.failures.join(" | ")}`);
    assert.ok(r.stalls > 50, `seed ${seed}: stalls happened (${r.stalls})`);
    assert.equal(r.termsWithLeader, 1, `seed ${seed}: one election at start-up, none after (${r.termsWithLeader} terms had a leader)`);
  }
});
