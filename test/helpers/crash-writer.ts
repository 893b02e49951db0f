// The child process of the kill -9 test (test/ledger/crash.test.ts):
//
//   node dist/test/helpers/crash-writer.js <data-dir> <seed> [--create-only]
//
// Creates the ledger in <data-dir> (or reopens it) and appends blocks of
// 300-2000 signed readings as fast as it can, forever, until it is killed.
// It reports on stdout, one line each, written synchronously so that every
// line is in the pipe before the next step starts:
//   creating              about to create the store
//   open <height>         the ledger is open at this head
//   begin <height>        the SQLite transaction for this block starts
//   commit <height>       appendBlock returned: the block is durable (acknowledged)
// With --create-only it exits after "open 0".
//
// The writer trusts its own signatures (a verifier that says yes): it made
// them itself a moment ago, and skipping ~2000 verifications per block puts
// more of its time inside SQLite transactions, where a kill is interesting.
// The parent's verifyChain checks every signature with the real verifier.
import { existsSync, realpathSync, writeSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Ledger, ledgerPath } from "../../ledger/ledger.js";
import type { SignatureVerifier } from "../../ledger/tx.js";
import { Rng } from "../../sim/rng.js";
import { makeFixture, nextBlock } from "./chain-fixture.js";

export const CRASH_FIXTURE_SEED = 42;
export const READINGS_PER_BLOCK_MIN = 300;
export const READINGS_PER_BLOCK_MAX = 2_000;
/** A safety net: an orphaned writer (its parent died) stops by itself. */
const RUN_TIME_MAX_MS = 60_000;

function say(line: string): void {
  writeSync(1, `${line}\n`); // synchronous: in the pipe before we go on (an EPIPE ends us, as it should)
}

function main(argv: readonly string[]): void {
  const [dir, seedText, flag] = argv;
  // `node --test dist/test/` runs every file under test/, this helper too: without arguments it has nothing to do.
  if (argv.length === 0 && process.env.NODE_TEST_CONTEXT !== undefined) return;
  if (dir === undefined || seedText === undefined || !/^\d+$/.test(seedText)) {
    process.stderr.write("usage: crash-writer <data-dir> <seed> [--create-only]\n");
    process.exit(2);
  }
  const fx = makeFixture({ seed: CRASH_FIXTURE_SEED, boxes: 8 });
  const trusting: SignatureVerifier = { verify: () => true };
  let ledger: Ledger;
  if (existsSync(ledgerPath(dir))) {
    ledger = Ledger.open(dir, trusting, { genesis: fx.genesis });
  } else {
    say("creating");
    ledger = Ledger.create(dir, fx.genesis, trusting);
  }
  say(`open ${ledger.state.height}`);
  if (flag === "--create-only") {
    ledger.close();
    return;
  }
  const store = ledger.store;
  const appendBlock = store.appendBlock.bind(store);
  store.appendBlock = (block, ...rest) => {
    say(`begin ${block.header.height}`);
    appendBlock(block, ...rest);
  };
  const rng = new Rng(Number(seedText));
  const startedMs = Date.now();
  while (Date.now() - startedMs < RUN_TIME_MAX_MS) {
    const readings = rng.int(READINGS_PER_BLOCK_MIN, READINGS_PER_BLOCK_MAX);
    ledger.append(nextBlock(ledger, fx, { readings, orders: 3 }));
    say(`commit ${ledger.state.height}`);
  }
  ledger.close();
}

// Run only as a program, so that tests may import the constants above.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) main(process.argv.slice(2));
