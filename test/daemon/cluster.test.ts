// A real cluster: five `peergrid start` processes on loopback, each signing
// synthetic meter readings, plus orders and cancels from users POSTed over
// HTTP to random boxes. The leader is killed with SIGKILL again and again
// (a power cut: no goodbye, no flush beyond what was already fsynced); each
// time a new leader must take over and cut blocks, and the killed box must
// come back and catch up. At the end the load stops (a graceful rolling
// restart without it), every box catches up and stops, and the ledgers on
// disk are compared:
//   - every box's chain is the same block for block, and verifies from genesis;
//   - no acknowledged transaction is missing: whatever a box ever reported
//     committed is in every chain exactly once, at the height reported, and
//     every other acknowledged one is committed too, unless the box that
//     acknowledged it was killed before it could pass it on (then it may be
//     lost, and the test counts it).
// Every wait polls with a generous deadline (a 2-core machine runs six node
// processes here); nothing sleeps a fixed time and then asserts.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { LocalCluster, waitFor as poll } from "../../daemon/local-cluster.js";
import type { NodeStatus } from "../../daemon/node.js";
import { type Hash, toHex } from "../../ledger/hash.js";
import { NodeVerifier, type NodeSigner } from "../../ledger/keys.js";
import { ledgerPath } from "../../ledger/ledger.js";
import { resultName } from "../../ledger/state.js";
import { LedgerStore } from "../../ledger/store.js";
import { type SignedTx, signTx } from "../../ledger/tx.js";
import { verifyChain } from "../../ledger/verify.js";

const BOXES = 5;
const USERS = 6; // members without a box who sign the HTTP transactions
const READINGS_PER_S = 60; // per box
const KILLS = 4;
const POST_EVERY_MS = 100;
const RETRY_SHARE = 0.25; // of acknowledged transactions, sent again to another box, as a client retrying would
const WAIT_MS = 20_000; // the most any one step may take; each is seconds normally
const HEADS_APART_MAX = 2; // blocks between the highest and lowest box once caught up
// Below the kernel's ephemeral range (32768..), so an outgoing connection never holds one of our ports.
const BASE_PORT = 20_000 + (process.pid % 600) * 20;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** Every wait in this test is bounded by WAIT_MS. */
const waitFor = <T>(what: string, probe: () => T | null | undefined | false | Promise<T | null | undefined | false>): Promise<T> => poll(what, probe, WAIT_MS);


/** One transaction POSTed over HTTP, and everything learnt of it afterwards. */
interface Posted {
  readonly id: string;
  readonly box: number;
  readonly life: string; // `${box}/${incarnation}`: the process that answered
  readonly sentMs: number;
  http: number | "no reply";
  retried: { box: number; life: string; http: number | "no reply" } | null; // sent to a second box too
  committed: { height: number; seenAt: number } | null; // as a box reported it
  rejected: string | null;
}

interface UserState {
  readonly index: number;
  readonly signer: NodeSigner;
  seq: number;
  openOrder: Hash | null;
}

class Harness {
  readonly cluster: LocalCluster;
  readonly chainHash: Hash;
  readonly users: UserState[];
  readonly posted: Posted[] = [];
  readonly lives = new Map<number, number>(); // box -> incarnation
  readonly killedAt = new Map<string, number>(); // life -> ms
  readonly lastStatus = new Map<string, NodeStatus>(); // life -> its last status
  readonly failoverMs: number[] = [];
  private stopPosting = false;
  private stopWatching = false;
  private loops: Promise<void>[] = [];

  constructor(readonly dir: string) {
    this.cluster = LocalCluster.create({ dir, boxes: BOXES, users: USERS, basePort: BASE_PORT, chainId: "cluster-test" });
    const store = LedgerStore.open(ledgerPath(this.cluster.dataDir(0)), { readonly: true });
    this.chainHash = store.chain.hash;
    store.close();
    this.users = Array.from({ length: USERS }, (_, k) => ({ index: BOXES + k, signer: this.cluster.signers[BOXES + k] as NodeSigner, seq: 0, openOrder: null }));
  }

  /** An acknowledged transaction may be lost only if every box that acknowledged it was killed before passing it on. */
  mayBeLost(p: Posted): boolean {
    return this.killedAt.has(p.life) && (p.retried === null || !acknowledged(p.retried) || this.killedAt.has(p.retried.life));
  }

  life(box: number): string {
    return `${box}/${this.lives.get(box) ?? 0}`;
  }

  async start(box: number, load: boolean): Promise<void> {
    this.lives.set(box, (this.lives.get(box) ?? -1) + 1);
    await this.cluster.start(box, load ? ["--synthetic-readings", String(READINGS_PER_S)] : []);
  }

  running(): number[] {
    return [...this.cluster.procs.keys()];
  }

  async statuses(): Promise<Map<number, NodeStatus>> {
    const all = await this.cluster.statuses();
    for (const [box, s] of all) if (this.cluster.procs.has(box)) this.lastStatus.set(this.life(box), s);
    return all;
  }

  /** The box that says it leads, if exactly one running box does. */
  async leader(): Promise<number | null> {
    const all = [...(await this.statuses())];
    const leaders = all.filter(([, s]) => s.role === "leader");
    return leaders.length === 1 ? (leaders[0] as [number, NodeStatus])[0] : null;
  }

  startLoops(): void {
    this.loops = [this.postLoop(), this.fateLoop(), this.statusLoop()];
  }

  async stopLoad(): Promise<void> {
    this.stopPosting = true;
    await this.loops[0];
  }

  async stopLoops(): Promise<void> {
    this.stopPosting = true;
    this.stopWatching = true;
    await Promise.all(this.loops);
  }

  /** Users alternate: place an order, cancel it; so no one reaches the open-order limit. */
  private nextTx(u: UserState): SignedTx {
    u.seq++;
    const nowMs = Date.now();
    const intervalMs = 900_000;
    const body =
      u.openOrder === null
        ? { type: "order" as const, side: u.seq % 4 === 1 ? ("sell" as const) : ("buy" as const), energyWh: 100 + u.seq, priceMicroPerKWh: 150_000, intervalStartMs: nowMs - (nowMs % intervalMs) + 2 * intervalMs, expiresAtMs: nowMs + 3_600_000, flags: 0, counterparty: null }
        : { type: "cancel" as const, orderId: u.openOrder };
    const tx = signTx({ author: u.index, seq: u.seq, body }, u.signer, this.chainHash);
    u.openOrder = body.type === "order" ? tx.id : null;
    return tx;
  }

  private async postLoop(): Promise<void> {
    for (let k = 0; !this.stopPosting; k++) {
      const boxes = this.running();
      const box = boxes[Math.floor(Math.random() * boxes.length)];
      if (box !== undefined) {
        const tx = this.nextTx(this.users[k % USERS] as UserState);
        const p: Posted = { id: toHex(tx.id), box, life: this.life(box), sentMs: Date.now(), http: "no reply", retried: null, committed: null, rejected: null };
        this.posted.push(p);
        p.http = await this.post(box, tx.bytes);
        const other = boxes.filter((b) => b !== box)[Math.floor(Math.random() * (boxes.length - 1))];
        if (acknowledged(p) && other !== undefined && Math.random() < RETRY_SHARE) {
          p.retried = { box: other, life: this.life(other), http: "no reply" };
          p.retried.http = await this.post(other, tx.bytes); // whatever it answers, the chain must hold one copy
        }
      }
      await sleep(POST_EVERY_MS);
    }
  }

  private async post(box: number, bytes: Uint8Array): Promise<number | "no reply"> {
    try {
      const r = await fetch(`http://127.0.0.1:${this.cluster.httpPort(box)}/api/v1/tx`, { method: "POST", headers: { "content-type": "application/octet-stream" }, body: bytes, signal: AbortSignal.timeout(5_000) });
      await r.arrayBuffer();
      return r.status;
    } catch {
      return "no reply"; // refused (the box is down) or cut off: not acknowledged
    }
  }

  /** Ask boxes what became of acknowledged transactions, the way a client would. */
  private async fateLoop(): Promise<void> {
    while (!this.stopWatching) {
      const open = this.posted.filter((p) => acknowledged(p) && p.committed === null && p.rejected === null && Date.now() - p.sentMs > 1_000);
      for (const p of open.slice(0, 40)) await this.askFate(p);
      await sleep(300);
    }
  }

  async askFate(p: Posted, box?: number): Promise<void> {
    const boxes = this.running();
    const at = box ?? (boxes.includes(p.box) ? p.box : boxes[Math.floor(Math.random() * boxes.length)]);
    if (at === undefined) return;
    try {
      const r = await fetch(`http://127.0.0.1:${this.cluster.httpPort(at)}/api/v1/tx/${p.id}`, { signal: AbortSignal.timeout(3_000) });
      const f = (await r.json()) as { status?: string; height?: number; code?: string };
      if (f.status === "committed" && p.committed === null) p.committed = { height: f.height as number, seenAt: at };
      if (f.status === "rejected") p.rejected = f.code ?? "rejected";
    } catch {
      // the box went down meanwhile: ask again later
    }
  }

  private async statusLoop(): Promise<void> {
    while (!this.stopWatching) {
      await this.statuses();
      await sleep(250);
    }
  }
}

function acknowledged(p: { http: number | "no reply" }): boolean {
  return p.http === 202 || p.http === 200;
}

const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/**
 * Kill the leader with SIGKILL; wait for another leader and two blocks of
 * its own; restart the killed box (with its load) and wait until it has
 * caught up. Returns the milliseconds from the kill to the first block the
 * new leader proposed (its header time, so the polling does not add to it).
 */
async function killLeader(h: Harness): Promise<{ killed: number; next: number; failoverMs: number }> {
  const old = await waitFor("one leader", () => h.leader());
  const headAtKill = Math.max(...[...(await h.statuses()).values()].map((s) => s.height));
  h.killedAt.set(h.life(old), Date.now());
  await h.cluster.kill(old, "SIGKILL");
  const killedMs = h.killedAt.get(h.life(old)) as number;
  const next = await waitFor("a new leader", async () => {
    const l = await h.leader();
    return l !== null && l !== old ? l : null;
  });
  const from = await waitFor("the new leader's height", () => h.cluster.status(next));
  await waitFor("two blocks after the election", async () => ((await h.cluster.status(next))?.height ?? 0) >= from.height + 2);
  let failoverMs = Number.NaN;
  for (let height = headAtKill + 1; height <= from.height + 2; height++) {
    const b = (await (await fetch(`http://127.0.0.1:${h.cluster.httpPort(next)}/api/v1/blocks/${height}`)).json()) as { proposer: number; timeMs: number };
    if (b.proposer !== old) {
      failoverMs = b.timeMs - killedMs;
      break;
    }
  }
  await h.start(old, true);
  const target = (await waitFor("the leader's height", () => h.cluster.status(next))).height;
  await waitFor(`box ${old} catching up after its restart`, async () => ((await h.cluster.status(old))?.height ?? 0) >= target);
  return { killed: old, next, failoverMs };
}

/** Every acknowledged transaction committed, unless the box that took it was killed meanwhile. */
async function settle(h: Harness): Promise<void> {
  const open = () => h.posted.filter((p) => acknowledged(p) && p.committed === null && p.rejected === null);
  let waiting: Posted[] = [];
  await poll(
    "every acknowledged transaction committed",
    async () => {
      waiting = open().filter((p) => !h.mayBeLost(p));
      for (const p of waiting.slice(0, 50)) await h.askFate(p);
      return waiting.every((p) => p.committed !== null || p.rejected !== null);
    },
    40_000,
    200,
  ).catch((err: Error) => {
    const t0 = h.posted[0]?.sentMs ?? 0;
    const kills = [...h.killedAt].map(([life, ms]) => `${life} at ${ms - t0} ms`).join(", ");
    throw new Error(`${err.message}; still open: ${JSON.stringify(waiting.slice(0, 10).map((p) => ({ ...p, sentMs: p.sentMs - t0 })))}; killed: ${kills}`);
  });
  for (const p of open()) await h.askFate(p); // those whose box was killed: committed after all, or lost
}

/** Stop the load: restart every box gracefully (SIGTERM, exit 0) without it, the leader last. */
async function restartWithoutLoad(h: Harness): Promise<void> {
  const leader = await waitFor("one leader", () => h.leader());
  for (const box of [...range(BOXES).filter((b) => b !== leader), leader]) {
    const code = await h.cluster.kill(box, "SIGTERM");
    assert.equal(code, 0, `box ${box} exits 0 on SIGTERM`);
    await h.start(box, false);
  }
}

/** Every box up, pools empty, heads together. */
async function caughtUp(h: Harness): Promise<Map<number, NodeStatus>> {
  return poll(
    "every box caught up with an empty pool",
    async () => {
      const s = await h.statuses();
      const all = [...s.values()];
      if (s.size !== BOXES || all.some((x) => x.mempool.txs > 0)) return null;
      const heights = all.map((x) => x.height);
      return Math.max(...heights) - Math.min(...heights) <= 1 ? s : null;
    },
    30_000,
    100,
  );
}

interface Census {
  readonly head: number;
  readonly txCount: Map<string, number>; // user transactions: id -> copies in the chain
  readonly txHeight: Map<string, number>;
  readonly readings: Map<number, Map<string, number>>; // box -> verdict -> count
}

function census(store: LedgerStore): Census {
  const txCount = new Map<string, number>();
  const txHeight = new Map<string, number>();
  const readings = new Map<number, Map<string, number>>();
  for (const { block, results } of store.blocksFrom(1)) {
    block.txs.forEach((t, i) => {
      if (t.tx.body.type === "reading") {
        const byVerdict = readings.get(t.tx.author) ?? new Map<string, number>();
        const verdict = resultName(results[i] as number);
        byVerdict.set(verdict, (byVerdict.get(verdict) ?? 0) + 1);
        readings.set(t.tx.author, byVerdict);
        return;
      }
      const id = toHex(t.id);
      txCount.set(id, (txCount.get(id) ?? 0) + 1);
      txHeight.set(id, block.header.height);
    });
  }
  return { head: store.head().height, txCount, txHeight, readings };
}

/** Open every box's ledger: one chain block for block, it verifies, and no acknowledged transaction is missing. */
function checkLedgers(h: Harness, say: (s: string) => void): void {
  const stores = range(BOXES).map((i) => LedgerStore.open(ledgerPath(h.cluster.dataDir(i)), { readonly: true }));
  try {
    const heads = stores.map((s) => s.head().height);
    say(`heads on disk: ${heads.join(", ")}`);
    const low = Math.min(...heads);
    assert.ok(Math.max(...heads) - low <= HEADS_APART_MAX, `heads ${heads.join(", ")} are more than ${HEADS_APART_MAX} blocks apart`);
    for (let height = 1; height <= low; height++) {
      const hashes = new Set(stores.map((s) => toHex((s.rawBlock(height) as NonNullable<ReturnType<LedgerStore["rawBlock"]>>).hash)));
      assert.equal(hashes.size, 1, `the boxes hold different blocks at height ${height}`);
    }
    const report = verifyChain(stores[0] as LedgerStore, new NodeVerifier());
    assert.ok(report.ok, `box 0's chain does not verify: ${JSON.stringify(report.fault)}`);
    say(`box 0's chain verifies: ${report.blocks} blocks, ${report.transactions} transactions ${JSON.stringify(report.byType)}, rejected ${JSON.stringify(report.rejected)}`);
    const chains = stores.map(census);
    checkTransactions(h, chains, say);
    checkReadings(h, chains[0] as Census, say);
  } finally {
    for (const s of stores) s.close();
  }
}

function checkTransactions(h: Harness, chains: readonly Census[], say: (s: string) => void): void {
  const acked = h.posted.filter(acknowledged);
  const reported = acked.filter((p) => p.committed !== null);
  for (const p of reported) {
    chains.forEach((c, box) => {
      assert.equal(c.txCount.get(p.id) ?? 0, 1, `transaction ${p.id} (reported committed by box ${p.committed?.seenAt}) is in box ${box}'s chain ${c.txCount.get(p.id) ?? 0} times`);
      assert.equal(c.txHeight.get(p.id), p.committed?.height, `transaction ${p.id} is at the height reported`);
    });
  }
  const inChain = (p: Posted) => chains.every((c) => c.txCount.get(p.id) === 1);
  const committed = acked.filter(inChain);
  const rejected = acked.filter((p) => !inChain(p) && p.rejected !== null);
  const missing = acked.filter((p) => !inChain(p) && p.rejected === null);
  const mayBeLost = (p: Posted) => h.mayBeLost(p);
  const lost = missing.filter(mayBeLost);
  const unexplained = missing.filter((p) => !mayBeLost(p));
  const unacked = h.posted.filter((p) => !acknowledged(p));
  say(
    `HTTP transactions: ${h.posted.length} posted, ${acked.length} acknowledged (${reported.length} reported committed by a box), ` +
      `${committed.length} committed in every chain (${acked.filter((p) => p.retried !== null).length} were sent to a second box too), ${rejected.length} rejected, ${lost.length} lost with the box killed before passing them on; ` +
      `${unacked.length} not acknowledged (${unacked.filter(inChain).length} of those committed anyway)`,
  );
  for (const p of committed) chains.forEach((c) => assert.equal(c.txCount.get(p.id), 1));
  assert.deepEqual(unexplained.map((p) => `${p.id} via box ${p.box}`), [], "acknowledged by a box that stayed up, and never committed");
  assert.ok(committed.length > acked.length / 2, "most acknowledged transactions are committed");
}

/** Readings: what the boxes said they committed (status counters) against the chain. */
function checkReadings(h: Harness, chain: Census, say: (s: string) => void): void {
  for (const box of range(BOXES)) {
    let ackedCommitted = 0;
    let submitted = 0;
    let httpHere = 0;
    for (const [life, s] of h.lastStatus) {
      if (!life.startsWith(`${box}/`)) continue;
      ackedCommitted += s.commitLatencyMs.count;
      submitted += s.counters.txsSubmitted ?? 0;
      // HTTP transactions (and retries) taken by this life count in its commit latencies too
      httpHere += h.posted.filter((p) => (p.life === life && acknowledged(p)) || (p.retried?.life === life && acknowledged(p.retried))).length;
    }
    const verdicts = chain.readings.get(box) ?? new Map<string, number>();
    const inChain = [...verdicts.values()].reduce((a, b) => a + b, 0);
    say(`box ${box} readings: accepted ${submitted - httpHere}..${submitted}, acknowledged committed ${Math.max(0, ackedCommitted - httpHere)}..${ackedCommitted}, in the chain ${inChain} ${JSON.stringify(Object.fromEntries(verdicts))}`);
    assert.ok(inChain >= ackedCommitted - httpHere, `box ${box}: ${ackedCommitted - httpHere} or more readings acknowledged committed, ${inChain} in the chain`);
    // Around a restart a reading may lose a race with one of the box's previous life still in flight; otherwise they are valid.
    assert.ok((verdicts.get("ok") ?? 0) >= 0.9 * inChain && inChain > 0, `box ${box}: most readings in the chain are accepted by the ledger`);
  }
}

describe("five peergrid processes, the leader killed with SIGKILL again and again under load", () => {
  const dir = mkdtempSync(join(tmpdir(), "peergrid-cluster-test-"));
  let h: Harness | null = null;
  let passed = false;

  after(async () => {
    await h?.stopLoops();
    if (!passed && h !== null) for (const [i, p] of h.cluster.procs) console.error(`box ${i}, last log lines:\n${p.lines.slice(-15).join("\n")}`);
    await h?.cluster.stopAll("SIGKILL");
    if (passed) rmSync(dir, { recursive: true, force: true });
    else console.error(`the cluster's data is kept in ${dir}`);
  });

  it("keeps one chain on every box and loses no transaction it reported committed", { timeout: 180_000 }, async (t) => {
    const t0 = Date.now();
    const say = (s: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s  ${s}`);
    const harness = new Harness(dir);
    h = harness;
    await Promise.all(range(BOXES).map((i) => harness.start(i, true)));
    say(`${BOXES} boxes started on ports ${BASE_PORT}..${BASE_PORT + 2 * BOXES - 1}, ${READINGS_PER_S} readings/s each`);
    await waitFor("a leader and 3 blocks on every box", async () => {
      const s = await harness.statuses();
      return s.size === BOXES && [...s.values()].every((x) => x.height >= 3) && (await harness.leader()) !== null;
    });
    harness.startLoops();
    for (let k = 0; k < KILLS; k++) {
      const r = await killLeader(harness);
      harness.failoverMs.push(r.failoverMs);
      say(`kill ${k + 1}: box ${r.killed} (leader) killed; box ${r.next} leads; its first block ${r.failoverMs} ms after the kill; box ${r.killed} restarted and caught up`);
    }
    await harness.stopLoad();
    await settle(harness);
    say(`HTTP load stopped and settled (${harness.posted.length} posted)`);
    await restartWithoutLoad(harness);
    const final = await caughtUp(harness);
    say(`restarted without load; caught up at heights ${[...final.values()].map((s) => s.height).join(", ")}`);
    await harness.stopLoops();
    const exits = await Promise.all(range(BOXES).map((i) => harness.cluster.kill(i, "SIGTERM")));
    assert.deepEqual(exits, range(BOXES).map(() => 0), "every box exits 0 on SIGTERM");
    checkLedgers(harness, say);
    say(`kill -9 of the leader to the next leader's first block: ${harness.failoverMs.join(", ")} ms (by block time)`);
    say(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    passed = true;
  });
});
