// The kill -9 proof. A child process (test/helpers/crash-writer.ts) appends
// blocks of 300-2000 signed readings to a real SQLite store as fast as it can
// and prints every height it has committed. The parent kills it with SIGKILL
// at a seeded random moment (while it starts, opens, signs, applies, or is
// inside the SQLite transaction), then reopens the store as a restarting box
// would and checks:
//   - open and loadState succeed (the saved state hashes to the head's root);
//   - head >= the last height the child acknowledged, and at most one more
//     (a transaction that was running when the kill came is all or nothing);
//   - blocks verified before are unchanged (no acknowledged block rewritten);
//   - verifyChain re-validates the whole chain from genesis: ok.
// Then the child restarts on the same directory and continues from the head.
//
// PEERGRID_CRASH_ITERATIONS raises the number of kills (default 30),
// PEERGRID_CRASH_SEED replays a run.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { toHex } from "../../ledger/hash.js";
import { NodeVerifier } from "../../ledger/keys.js";
import { ledgerPath } from "../../ledger/ledger.js";
import { LedgerStore } from "../../ledger/store.js";
import { verifyChain } from "../../ledger/verify.js";
import { Rng } from "../../sim/rng.js";
import { makeFixture, tempDir } from "../helpers/chain-fixture.js";
import { CRASH_FIXTURE_SEED } from "../helpers/crash-writer.js";

const WRITER = fileURLToPath(new URL("../helpers/crash-writer.js", import.meta.url));
const ITERATIONS = Number(process.env.PEERGRID_CRASH_ITERATIONS ?? 30);
const SEED = Number(process.env.PEERGRID_CRASH_SEED ?? 20260115);
/**
 * Each check re-verifies the chain from genesis, so its cost grows with the
 * chain; past this many transactions the next kill starts a fresh directory.
 */
const CHAIN_TXS_PER_DIR_MAX = 5_000;
const CHILD_WAIT_MAX_MS = 20_000;

const fx = makeFixture({ seed: CRASH_FIXTURE_SEED, boxes: 8 });
const verifier = new NodeVerifier();

/** When to kill: this many ms after the child spawned or printed a line starting with `anchor`. */
interface KillPlan {
  readonly anchor: "spawn" | "open" | "commit" | "begin" | "creating";
  readonly delayMs: number;
}

interface ChildRun {
  readonly lines: readonly string[];
  readonly stderr: string;
  readonly killed: boolean;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly walBytesAtKill: number | null;
}

function fileSize(path: string): number | null {
  try {
    return statSync(path).size;
  } catch {
    return null;
  }
}

/** Run the writer on `dir` and SIGKILL it as planned (or let it finish with --create-only). */
function runWriter(dir: string, seed: number, plan: KillPlan | null, args: readonly string[] = []): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn(process.execPath, [WRITER, dir, String(seed), ...args], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, NODE_TEST_CONTEXT: undefined }, // the writer is a program, not a test file
    });
    const lines: string[] = [];
    let partial = "";
    let stderr = "";
    let killed = false;
    let walBytesAtKill: number | null = null;
    let timer: NodeJS.Timeout | undefined;
    const kill = () => {
      if (killed) return;
      killed = true;
      walBytesAtKill = fileSize(`${ledgerPath(dir)}-wal`);
      child.kill("SIGKILL");
    };
    const arm = () => {
      if (timer === undefined) timer = setTimeout(kill, plan?.delayMs ?? 0);
    };
    const guard = setTimeout(() => {
      kill();
      reject(new Error(`the writer never reached "${plan?.anchor}" in ${CHILD_WAIT_MAX_MS} ms; output: ${lines.slice(-5).join(" | ")} ${stderr}`));
    }, CHILD_WAIT_MAX_MS);
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) {
        lines.push(line);
        if (plan !== null && line.startsWith(plan.anchor)) arm();
      }
    });
    child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    if (plan?.anchor === "spawn") arm();
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(guard);
      clearTimeout(timer);
      resolve({ lines, stderr, killed, code, signal, walBytesAtKill });
    });
  });
}

function heightsOf(lines: readonly string[], word: string): number[] {
  return lines.filter((l) => l.startsWith(`${word} `)).map((l) => Number(l.slice(word.length + 1)));
}

function planFor(rng: Rng): KillPlan {
  const anchor = rng.pick(["spawn", "open", "commit", "begin", "begin", "begin", "begin"] as const);
  switch (anchor) {
    case "spawn":
      return { anchor, delayMs: rng.int(20, 400) };
    case "open":
      return { anchor, delayMs: rng.int(0, 300) };
    case "commit":
      return { anchor, delayMs: rng.int(20, 400) };
    case "begin":
      // Blocks take 20-80 ms to write: aim inside the SQLite transaction.
      return { anchor, delayMs: rng.int(0, 30) };
  }
}

interface DirState {
  readonly dir: string;
  verifiedHead: number; // -1: nothing verified yet (the store may not exist)
  verifiedHash: string;
  chainTxs: number;
}

test("kill -9 at random moments while appending: nothing acknowledged is lost, the store reopens and verifies", { timeout: 600_000 }, async (t) => {
  const rng = new Rng(SEED);
  const startedMs = Date.now();
  const stats = { kills: 0, midTransaction: 0, midTxCommitted: 0, midTxRolledBack: 0, beforeOpen: 0, dirs: 0, blocks: 0, walAtKill: 0, checkedCopies: 0 };
  const newDir = (): DirState => {
    stats.dirs++;
    return { dir: tempDir(t, "crash"), verifiedHead: -1, verifiedHash: "", chainTxs: 0 };
  };
  let d = newDir();
  for (let i = 0; i < ITERATIONS; i++) {
    if (d.chainTxs > CHAIN_TXS_PER_DIR_MAX) d = newDir();
    const plan = planFor(rng);
    const what = `kill ${i + 1} (seed ${SEED}, ${plan.anchor}+${plan.delayMs} ms, dir ${d.dir})`;
    const run = await runWriter(d.dir, rng.int(1, 1_000_000), plan);
    assert.ok(run.killed && run.signal === "SIGKILL", `${what}: the writer ended by itself (code ${run.code}): ${run.stderr}`);
    stats.kills++;
    const path = ledgerPath(d.dir);
    const opened = heightsOf(run.lines, "open");
    const commits = heightsOf(run.lines, "commit");
    const begins = heightsOf(run.lines, "begin");
    const last = run.lines.at(-1) ?? "";
    if (opened.length === 0) stats.beforeOpen++;
    if (run.walBytesAtKill !== null && run.walBytesAtKill > 0) stats.walAtKill++;
    // The child opened exactly the head the parent verified last time.
    if (opened.length > 0 && d.verifiedHead >= 0) assert.equal(opened[0], d.verifiedHead, `${what}: the writer reopened at a different head`);
    if (d.verifiedHead < 0 && !existsSync(path)) {
      assert.equal(opened.length, 0, `${what}: the writer reported an open store that is not there`);
      continue; // killed before it created anything
    }
    const acked = Math.max(d.verifiedHead, commits.at(-1) ?? -1, opened[0] ?? -1);

    // Check either the crashed files themselves, or (every other time) a copy
    // of them, leaving the original for the restarted writer to recover.
    let checkPath = path;
    if (i % 2 === 1) {
      const copyDir = join(d.dir, `check-${i}`);
      mkdirSync(copyDir);
      for (const f of readdirSync(d.dir)) if (f.startsWith("ledger.sqlite")) copyFileSync(join(d.dir, f), join(copyDir, f));
      checkPath = join(copyDir, "ledger.sqlite");
      stats.checkedCopies++;
    }
    const store = LedgerStore.open(checkPath, { genesis: fx.genesis });
    try {
      const state = store.loadState();
      const head = store.head().height;
      assert.ok(head >= acked, `${what}: head ${head} is behind the acknowledged height ${acked}: an acknowledged block was lost`);
      assert.ok(head <= Math.max(acked + 1, 0), `${what}: head ${head} is more than one past the acknowledged ${acked}`);
      if (last.startsWith("begin ")) {
        const inFlight = begins.at(-1) as number;
        stats.midTransaction++;
        if (head === inFlight) stats.midTxCommitted++;
        else {
          assert.equal(head, inFlight - 1, `${what}: killed while writing block ${inFlight}, the head is ${head}`);
          stats.midTxRolledBack++;
        }
      }
      if (d.verifiedHead >= 0) {
        const earlier = store.getBlock(d.verifiedHead);
        assert.equal(earlier && toHex(earlier.block.hash), d.verifiedHash, `${what}: block ${d.verifiedHead} changed after it was verified`);
      }
      const report = verifyChain(store, verifier);
      assert.ok(report.ok, `${what}: verify found ${report.fault?.code} at block ${report.fault?.height}: ${report.fault?.message}`);
      assert.equal(report.headHeight, head);
      assert.equal(report.stateRoot, toHex(state.tree.root));
      stats.blocks += head - Math.max(d.verifiedHead, 0);
      d.verifiedHead = head;
      d.verifiedHash = report.headHash;
      d.chainTxs = report.transactions;
    } finally {
      store.close();
    }
  }
  const seconds = ((Date.now() - startedMs) / 1000).toFixed(1);
  const summary =
    `${stats.kills} kills in ${seconds} s over ${stats.dirs} directories, ${stats.blocks} blocks committed; ` +
    `${stats.midTransaction} kills landed inside appendBlock's SQLite transaction (${stats.midTxCommitted} had already committed, ` +
    `${stats.midTxRolledBack} rolled back), ${stats.beforeOpen} before the store was open, ${stats.walAtKill} with a non-empty WAL; ` +
    `${stats.checkedCopies} checks on a copy so the writer itself recovered the original`;
  t.diagnostic(summary);
  assert.ok(stats.kills >= ITERATIONS);
  assert.ok(stats.blocks > 0, "the writer committed blocks");
});

test("kill -9 while the store is being created: either no store, or a complete genesis store", { timeout: 120_000 }, async (t) => {
  const rng = new Rng(SEED + 1);
  const outcomes = { noStore: 0, genesisStore: 0 };
  for (let i = 0; i < 10; i++) {
    const dir = tempDir(t, "crash-create");
    const run = await runWriter(dir, 1, { anchor: "creating", delayMs: rng.int(0, 80) }, ["--create-only"]);
    const what = `create kill ${i + 1} (seed ${SEED + 1})`;
    assert.ok(run.lines.includes("creating"), `${what}: ${run.stderr}`);
    if (existsSync(ledgerPath(dir))) {
      const store = LedgerStore.open(ledgerPath(dir), { genesis: fx.genesis });
      try {
        assert.equal(store.head().height, 0, what);
        store.loadState();
      } finally {
        store.close();
      }
      outcomes.genesisStore++;
    } else outcomes.noStore++;
    // Either way the box can start: the writer opens or creates, and appends.
    const again = await runWriter(dir, 2, { anchor: "commit", delayMs: 0 });
    assert.ok(heightsOf(again.lines, "commit").length > 0, `${what}: the writer could not start afterwards: ${again.stderr}`);
  }
  t.diagnostic(`outcomes: ${JSON.stringify(outcomes)}`);
});
