// Run the Raft fault simulation over many seeds and print every failing seed
// with the command that replays it.
//   npm run sim:faults -- --seeds 10000          seeds 1..10000
//   npm run sim:faults -- --seed 4242 --verbose  one seed, its full report
//   --no-membership, --no-compaction             leave those out (to tell what a failure needs)
//   --strings                                    the old mode: entries are strings, no ledger blocks
import { parseArgs } from "node:util";
import { DEFAULT_RAFT_SIM, runRaftSim } from "../sim/raft-sim.js";

function main(): number {
  const { values } = parseArgs({
    options: {
      seeds: { type: "string", default: "100" },
      from: { type: "string", default: "1" },
      seed: { type: "string" },
      nodes: { type: "string" },
      "duration-ms": { type: "string" },
      verbose: { type: "boolean", default: false },
      "no-membership": { type: "boolean", default: false },
      "no-compaction": { type: "boolean", default: false },
      strings: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) {
    console.log("usage: sim-faults [--seeds N] [--from S] [--seed S] [--nodes N] [--duration-ms MS] [--no-membership] [--no-compaction] [--strings] [--verbose]");
    return 0;
  }
  const int = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new Error(`--${name} must be a whole number`);
    return Number(v);
  };
  const overrides = {
    ...(values.nodes === undefined ? {} : { nodes: int(values.nodes, "nodes") as number }),
    ...(values["duration-ms"] === undefined ? {} : { durationMs: int(values["duration-ms"], "duration-ms") as number }),
    ...(values["no-membership"] ? { membershipChanges: false } : {}),
    ...(values["no-compaction"] ? { compactEveryEntries: 0 } : {}),
    ...(values.strings ? { blocks: false } : {}),
  };
  const single = int(values.seed, "seed");
  const first = single ?? (int(values.from, "from") as number);
  const count = single === undefined ? (int(values.seeds, "seeds") as number) : 1;
  const started = Date.now();
  let failed = 0;
  let recoveryMax = 0;
  const totals = { compactions: 0, snapshotsInstalled: 0, confChangesCommitted: 0, blocks: 0, txsSubmitted: 0, txsAcked: 0, blocksFetched: 0 };
  for (let seed = first; seed < first + count; seed++) {
    let r;
    try {
      r = runRaftSim(seed, overrides);
    } catch (err) {
      // An assertion inside the Raft core is a finding like any other.
      failed++;
      console.log(`FAIL seed ${seed}: threw ${err instanceof Error ? err.message : String(err)}`);
      console.log(`  replay: npm run sim:faults -- --seed ${seed}`);
      continue;
    }
    recoveryMax = Math.max(recoveryMax, r.recoveryMs ?? 0);
    totals.compactions += r.compactions;
    totals.snapshotsInstalled += r.snapshotsInstalled;
    totals.confChangesCommitted += r.confChangesCommitted;
    totals.blocks += r.blocks;
    totals.txsSubmitted += r.txsSubmitted;
    totals.txsAcked += r.txsAcked;
    totals.blocksFetched += r.blocksFetched;
    if (values.verbose || single !== undefined) console.log(JSON.stringify(r));
    if (!r.ok) {
      failed++;
      console.log(`FAIL seed ${seed}: ${r.failures.join(" | ")}`);
      console.log(`  replay: npm run sim:faults -- --seed ${seed}`);
    }
  }
  const seconds = (Date.now() - started) / 1000;
  console.log(
    `${count - failed} passed, ${failed} failed (seeds ${first}..${first + count - 1}, ${overrides.nodes ?? DEFAULT_RAFT_SIM.nodes} voters + ${DEFAULT_RAFT_SIM.spares} spare, ` +
      `${(overrides.durationMs ?? DEFAULT_RAFT_SIM.durationMs) / 1000} s simulated each; slowest recovery after the heal ${recoveryMax} ms; ${seconds.toFixed(1)} s)`,
  );
  console.log(`  ${totals.compactions} compactions, ${totals.snapshotsInstalled} snapshots installed, ${totals.confChangesCommitted} membership changes in effect`);
  if (!values.strings) console.log(`  ${totals.blocks} blocks, ${totals.txsAcked} of ${totals.txsSubmitted} transactions acknowledged committed, ${totals.blocksFetched} blocks fetched after snapshots`);
  return failed === 0 ? 0 : 1;
}

process.exitCode = main();
