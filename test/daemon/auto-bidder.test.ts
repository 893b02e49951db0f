// Automatic bidding on real boxes: a cluster of three (real SQLite ledgers,
// Raft logs, TCP links), a genesis with one-minute market intervals, and a
// clock the test moves forward so that an interval boundary comes at once
// instead of after a minute. A follower's meter reads a surplus; at the
// boundary its bidder offers the surplus for the next interval, through the
// follower (which forwards to the leader), and the order is in every box's
// ledger. Then the same plan again does nothing, and a changed forecast
// cancels and replaces the order while a reading of the same box is pending
// (the two must not take one sequence number).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { AutoBidder, parseBiddingPolicy, persistenceForecast } from "../../daemon/auto-bidder.js";
import { BoxSequence } from "../../daemon/box-sequence.js";
import { buildHttp } from "../../daemon/http.js";
import { waitFor as waitForMs } from "../../daemon/local-cluster.js";
import { BoxNode } from "../../daemon/node.js";
import type { PeerAddress } from "../../daemon/transport.js";
import { ConfigError } from "../../ledger/errors.js";
import { parseGenesis } from "../../ledger/genesis.js";
import { toHex } from "../../ledger/hash.js";
import { type NodeSigner, NodeVerifier } from "../../ledger/keys.js";
import { Ledger } from "../../ledger/ledger.js";
import type { OrderRecord } from "../../ledger/records.js";
import { meterKey } from "../../ledger/records.js";
import { lastSeqOf } from "../../ledger/state.js";
import { Quality, decodeTx, signTx } from "../../ledger/tx.js";
import type { BiddingPolicy } from "../../market/auto-bid.js";
import type { MarketOutcome } from "../../market/interval.js";
import { FAST_TIMING } from "../helpers/box-cluster.js";
import { runCli } from "../helpers/cli.js";
import { fixtureSigner } from "../helpers/chain-fixture.js";
import { MovableClock } from "../helpers/movable-clock.js";

const INTERVAL_MS = 60_000;
const BOXES = 3;
/** Everything here takes a block or two of 500 ms: fail in seconds, not the helper's 30. */
const waitFor = <T>(what: string, probe: () => T | null | undefined | false): Promise<T> => waitForMs(what, probe, 10_000);
const POLICY: BiddingPolicy = { sellFloorMicroPerKWh: 120_000, buyCeilingMicroPerKWh: 300_000, maxBuyWh: 2_000, batteryReserveWh: 0, minOrderWh: 10, toleranceWh: 5 };

describe("automatic bidding on a cluster of boxes", () => {
  const root = mkdtempSync(join(tmpdir(), "peergrid-auto-bid-"));
  const signers = Array.from({ length: BOXES }, (_, i) => fixtureSigner(11, i));
  // The boxes' clock (MovableClock): it starts 10 s into an interval.
  const realMs = Date.now();
  const s0 = realMs - (realMs % INTERVAL_MS) + INTERVAL_MS; // interval S0, where the chain starts
  const clock = new MovableClock(s0 + 10_000);
  const now = clock.now;
  const nodes: BoxNode[] = [];
  const addresses = new Map<number, PeerAddress>();
  const bidders: AutoBidder[] = [];
  const boundaries: MarketOutcome[] = [];
  let box!: BoxNode; // a follower with a meter and a bidder
  let quiet!: BoxNode; // another box: a bidder, no meter
  let bidder!: AutoBidder;
  let quietBidder!: AutoBidder;
  let boxSequence!: BoxSequence;

  const signerOf = (node: BoxNode): NodeSigner => signers[node.id] as NodeSigner;
  const ordersOf = (node: BoxNode, member: number, intervalStartMs: number): OrderRecord[] =>
    [...node.ledger.state.tree.entries()].map((e) => e.value).filter((r): r is OrderRecord => r.kind === "order" && r.author === member && r.intervalStartMs === intervalStartMs);
  const reading = (seq: number, timeMs: number, importWh: number, exportWh: number) =>
    signTx(
      { author: box.id, seq, body: { type: "reading", meterId: 0, timeMs, importWh, exportWh, powerW: -3_000, voltagesDeciV: [2300], frequencyMilliHz: 50_000, quality: Quality.good } },
      signerOf(box),
      box.ledger.state.chain.hash,
    );

  before(async () => {
    const genesis = parseGenesis({
      chainId: "test-auto-bid",
      genesisTimeMs: s0 + 1_000,
      members: signers.map((s, i) => ({ name: `box-${i}`, publicKey: toHex(s.publicKey), roles: i === 0 ? ["box", "admin"] : ["box"] })),
      market: { intervalMs: INTERVAL_MS },
      ledger: { meterPowerMaxW: 10_000_000 }, // a test meter's counters may move kWh between two readings a second apart
    });
    for (let i = 0; i < BOXES; i++) {
      Ledger.create(join(root, `box-${i}`), genesis, new NodeVerifier()).close();
      const node = await BoxNode.start({ dataDir: join(root, `box-${i}`), signer: signers[i] as NodeSigner, peers: addresses, listenHost: "127.0.0.1", listenPort: 0, timing: FAST_TIMING, now });
      nodes.push(node);
      addresses.set(i, { host: "127.0.0.1", port: node.raftPort });
    }
    const leader = await waitForMs("a leader with a block", () => nodes.find((n) => n.role === "leader" && n.ledger.state.height >= 1), 15_000);
    [box, quiet] = nodes.filter((n) => n !== leader) as [BoxNode, BoxNode];
    box.onBlock((_, r) => {
      if (r.market !== null) boundaries.push(r.market);
    });
  });

  after(async () => {
    for (const b of bidders) await b.stop();
    for (const n of nodes) await n.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it("at an interval boundary, a box with a surplus offers it at its floor, and the order is open in every ledger for the next interval", async () => {
    // The meter's first good reading is its baseline; the second shows 800 Wh out and 100 Wh in: a surplus of 700 Wh.
    const t = now();
    const seq = lastSeqOf(box.ledger.state, box.id);
    for (const tx of [reading(seq + 1, t - 2_000, 1_000, 1_000), reading(seq + 2, t - 1_000, 1_100, 1_800)]) assert.equal((await box.submit(tx.bytes)).ok, true);
    await waitFor("both readings in the ledger", () => {
      const m = box.ledger.state.tree.get(meterKey(box.id, 0));
      return m !== undefined && m.kind === "meter" && m.readingCount === 2;
    });
    boxSequence = new BoxSequence(box, signerOf(box), box.id);
    bidder = new AutoBidder(box, boxSequence, POLICY, { now });
    quietBidder = new AutoBidder(quiet, new BoxSequence(quiet, signerOf(quiet), quiet.id), POLICY, { now });
    bidders.push(bidder, quietBidder);
    assert.equal(bidder.status().lastRun, null, "no boundary yet");

    clock.set(s0 + INTERVAL_MS + 500); // the clock reaches interval S1 = S0 + I
    const s2 = s0 + 2 * INTERVAL_MS;
    const everywhere = await waitFor("the bidder's order in every box's ledger", () => {
      const all = nodes.map((n) => ordersOf(n, box.id, s2));
      return all.every((o) => o.length === 1) ? all : null;
    });
    const order = everywhere[0]?.[0] as OrderRecord;
    assert.equal(order.side, "sell");
    assert.equal(order.energyWh, 700);
    assert.equal(order.priceMicroPerKWh, POLICY.sellFloorMicroPerKWh);
    assert.equal(order.expiresAtMs, s2 + INTERVAL_MS, "open until its interval clears");
    await waitFor("the bidder sees it committed", () => bidder.counters.ordersPlaced === 1);
    const st = bidder.status();
    assert.deepEqual(st.counters, { ...st.counters, runs: 1, ordersSubmitted: 1, cancelsSubmitted: 0, ordersPlaced: 1, refused: 0, failed: 0 }, st.lastError ?? "");
    assert.equal(st.lastRun?.kind, "planned");
    assert.deepEqual(st.lastRun?.kind === "planned" && st.lastRun.forecast, { generationWh: 800, consumptionWh: 100, batteryWh: 0, batteryMaxFlowWh: 0 });
    assert.equal(boundaries.length, 1);
    assert.equal(boundaries[0]?.boundaryMs, s0 + INTERVAL_MS);

    // The box without a meter has nothing to forecast from: it says so and submits nothing.
    await waitFor("the quiet box's bidder saw the boundary", () => quietBidder.status().lastRun);
    assert.equal(quietBidder.status().lastRun?.kind, "noMeteredEnergy");
    assert.equal(quietBidder.counters.ordersSubmitted + quietBidder.counters.cancelsSubmitted, 0);
    assert.deepEqual(ordersOf(quiet, quiet.id, s2), []);
  });

  it("running again with the same forecast places and cancels nothing", async () => {
    const before = { ...bidder.counters };
    const heightBefore = box.ledger.state.height;
    const run = await bidder.runFor(boundaries[0] as MarketOutcome);
    assert.equal(run.kind === "planned" && run.cancel + run.place, 0, JSON.stringify(run));
    await waitFor("two more blocks", () => box.ledger.state.height >= heightBefore + 2);
    assert.deepEqual(bidder.counters, { ...before, runs: before.runs + 1 });
    assert.equal(ordersOf(box, box.id, s0 + 2 * INTERVAL_MS).length, 1);
  });

  it("a changed forecast cancels the open order and places the new one, beside a pending reading of the same box", async () => {
    const s2 = s0 + 2 * INTERVAL_MS;
    const old = ordersOf(box, box.id, s2)[0] as OrderRecord;
    // The period as if the meter had exported 1,600 Wh (a forecast of 1,500 Wh surplus): the same boundary, other energy.
    const first = boundaries[0] as MarketOutcome;
    const changed: MarketOutcome = { ...first, settlement: { ...first.settlement, metered: first.settlement.metered.map((m) => (m.member === box.id ? { ...m, exportWh: 1_600 } : m)) } };
    // A reading of this box, through the box's one sequence as its meters submit, waits in the pool and so do the bidder's:
    // each takes its own number, in order.
    const submitted = boxSequence.submit(reading(0, now(), 1_150, 1_900).tx.body);
    const [run, { tx: pendingReading, out }] = await Promise.all([bidder.runFor(changed), submitted]);
    assert.equal(out.ok, true);
    assert.equal(run.kind === "planned" && `${run.cancel} cancel, ${run.place} place`, "1 cancel, 1 place");
    const replaced = await waitFor("the new order in place of the old", () => {
      const open = ordersOf(box, box.id, s2);
      return open.length === 1 && toHex((open[0] as OrderRecord).id) !== toHex(old.id) ? (open[0] as OrderRecord) : null;
    });
    assert.equal(replaced.side, "sell");
    assert.equal(replaced.energyWh, 1_500);
    await waitFor("the reading committed too", () => box.fate(pendingReading.id).status === "committed");
    assert.equal(box.ledger.store.getTx(pendingReading.id)?.result, 0, "the reading was accepted");
    await waitFor("the bidder sees both committed", () => bidder.counters.ordersCancelled === 1 && bidder.counters.ordersPlaced === 2);
    assert.equal(bidder.counters.refused, 0, bidder.status().lastError ?? "");
    assert.equal(bidder.counters.failed, 0, bidder.status().lastError ?? "");
  });

  it("a cancel the pool took but that never commits leaves the old order alone: nothing is placed beside it", async () => {
    const s2 = s0 + 2 * INTERVAL_MS;
    const open = ordersOf(box, box.id, s2);
    assert.equal(open.length, 1);
    // A box whose cancels are lost after the pool accepted them (a leader failing before its block).
    const losing = {
      ledger: box.ledger,
      onBlock: box.onBlock.bind(box),
      submit: async (bytes: Uint8Array) => {
        const t = decodeTx(bytes);
        return t.tx.body.type === "cancel" ? ({ ok: true, id: toHex(t.id), fate: { status: "pending", id: toHex(t.id), sinceMs: now() } } as const) : box.submit(bytes);
      },
    };
    const lossy = new AutoBidder(losing, new BoxSequence(losing, signerOf(box), box.id), POLICY, { now, cancelWaitMs: 1_500 });
    bidders.push(lossy);
    const first = boundaries[0] as MarketOutcome;
    const changed: MarketOutcome = { ...first, settlement: { ...first.settlement, metered: first.settlement.metered.map((m) => (m.member === box.id ? { ...m, exportWh: 3_000 } : m)) } };
    const run = await lossy.runFor(changed);
    assert.equal(run.kind === "planned" && `${run.cancel} cancel, ${run.place} place`, "1 cancel, 1 place", "the plan replaces the order");
    assert.equal(lossy.counters.cancelsUnconfirmed, 1);
    assert.equal(lossy.counters.ordersSubmitted, 0, "no order beside the one still open");
    assert.match(lossy.status().lastError ?? "", /not committed in time; nothing placed/);
    assert.deepEqual(ordersOf(box, box.id, s2).map((o) => toHex(o.id)), open.map((o) => toHex(o.id)));
  });

  it("a boundary whose next interval has begun on this box's clock (a replay after a restart) is skipped", async () => {
    const first = boundaries[0] as MarketOutcome;
    const stale: MarketOutcome = { ...first, boundaryMs: s0 - INTERVAL_MS, settlement: { ...first.settlement, periodStartMs: s0 - 2 * INTERVAL_MS, periodEndMs: s0 - INTERVAL_MS } };
    const submitted = bidder.counters.ordersSubmitted + bidder.counters.cancelsSubmitted;
    assert.equal((await bidder.runFor(stale)).kind, "late");
    assert.equal(bidder.counters.ordersSubmitted + bidder.counters.cancelsSubmitted, submitted);
  });

  it("at the next boundary the bidder's sell trades with a neighbour's buy; GET /api/v1/market shows the clearing, the settlement and the balances", async () => {
    const s2 = s0 + 2 * INTERVAL_MS;
    const sell = ordersOf(box, box.id, s2)[0] as OrderRecord;
    const buy = await new BoxSequence(quiet, signerOf(quiet), quiet.id).submit({
      type: "order", side: "buy", energyWh: 400, priceMicroPerKWh: POLICY.sellFloorMicroPerKWh + 20_000, intervalStartMs: s2, expiresAtMs: s2 + INTERVAL_MS, flags: 0, counterparty: null,
    });
    assert.equal(buy.out.ok, true);
    await waitFor("the buy in the box's ledger", () => ordersOf(box, quiet.id, s2).length === 1);
    clock.set(s2 + 500); // the clock reaches S2: the block entering it clears both orders
    await waitFor("the boundary S2 applied", () => boundaries.some((b) => b.boundaryMs === s2));
    const app = buildHttp(box);
    try {
      const m = (await app.inject({ url: "/api/v1/market" })).json() as {
        intervalMs: number; settlementMode: string;
        lastCleared: { startMs: number; priceMicroPerKWh: number; trades: { buyer: number; seller: number; energyWh: number; sellOrder: string; deliveredWh: number | null }[] };
        lastSettlement: { periodEndMs: number; shadow: boolean; metered: { member: number; exportWh: number }[] };
        balances: { account: string; balanceMicro: number }[];
      };
      assert.deepEqual([m.intervalMs, m.settlementMode], [INTERVAL_MS, "shadow"]);
      assert.equal(m.lastCleared.startMs, s2);
      assert.equal(m.lastCleared.priceMicroPerKWh, POLICY.sellFloorMicroPerKWh + 10_000, "the midpoint of the two limits");
      assert.deepEqual(m.lastCleared.trades.map((t) => [t.buyer, t.seller, t.energyWh, t.sellOrder, t.deliveredWh]), [[quiet.id, box.id, 400, toHex(sell.id), null]]);
      assert.equal(m.lastSettlement.periodEndMs, s2);
      assert.equal(m.lastSettlement.shadow, true);
      assert.ok(m.lastSettlement.metered.some((e) => e.member === box.id), "the box's meter was settled");
      assert.ok(m.balances.length > 0 && m.balances.reduce((a, b) => a + b.balanceMicro, 0) === 0, "the balances sum to zero");
      const one = await app.inject({ url: `/api/v1/market/intervals/${s2}` });
      assert.equal(one.statusCode, 200);
      assert.equal((one.json() as { interval: { trades: unknown[] } }).interval.trades.length, 1);
      const none = await app.inject({ url: `/api/v1/market/intervals/${s2 + 1}` });
      assert.equal(none.statusCode, 404);
      assert.match((none.json() as { code: string; message: string }).message, /intervals start at multiples of 60000 ms/);
    } finally {
      await app.close();
    }
  });

  it("a policy outside what this chain's orders may be is refused when the bidder starts, naming the field", () => {
    const maxPrice = box.ledger.state.chain.genesis.market.priceMaxMicroPerKWh;
    assert.throws(
      () => new AutoBidder(box, new BoxSequence(box, signerOf(box), box.id), { ...POLICY, sellFloorMicroPerKWh: maxPrice + 1 }),
      (err: unknown) => err instanceof ConfigError && /sellFloorMicroPerKWh: \d+ is outside this chain's order prices/.test(err.message),
    );
  });
});

describe("the auto-bid policy file", () => {
  it("a good file, with the optional fields left out, takes their defaults", () => {
    const p = parseBiddingPolicy({ sellFloorMicroPerKWh: 90_000, buyCeilingMicroPerKWh: 250_000, maxBuyWh: 3_000 }, "policy.json");
    assert.deepEqual(p, { sellFloorMicroPerKWh: 90_000, buyCeilingMicroPerKWh: 250_000, maxBuyWh: 3_000, batteryReserveWh: 0, minOrderWh: 1, toleranceWh: 0 });
  });

  it("every mistake is named by its field, with what it wants", () => {
    let err: unknown;
    try {
      parseBiddingPolicy({ sellFloorMicroPerKWh: -5, maxBuyWh: "lots", sellFlor: 1, minOrderWh: 2.5 }, "policy.json");
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof ConfigError, String(err));
    assert.equal(err.code, "PG_ERR_CONFIG");
    assert.match(err.message, /^auto-bid policy policy\.json is invalid/);
    const problems = [...err.problems].sort();
    assert.equal(problems.length, 5, problems.join("\n"));
    assert.match(problems[0] as string, /^buyCeilingMicroPerKWh: missing; wants a whole number from 0 to \d+, micro-currency per kWh/);
    assert.match(problems[1] as string, /^maxBuyWh: got "lots"; wants a whole number from 0 to \d+/);
    assert.match(problems[2] as string, /^minOrderWh: got 2\.5; wants a whole number from 1 to \d+/);
    assert.match(problems[3] as string, /^sellFloorMicroPerKWh: got -5; wants a whole number from 0 to \d+/);
    assert.match(problems[4] as string, /^sellFlor: not a policy field \(the fields: sellFloorMicroPerKWh, /);
  });

  it("peergrid start --auto-bid refuses a bad policy file (every field named) and a box with no meter to forecast from", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pg-autobid-cli-"));
    try {
      const file = join(dir, "policy.json");
      writeFileSync(file, JSON.stringify({ sellFloorMicroPerKWh: "x", maxBuyWh: 5 }));
      const meter = ["--meter", "0=eastron-sdm630@tcp:127.0.0.1:1502"];
      const bad = await runCli("start", "--data-dir", dir, "--key", join(dir, "none.key"), ...meter, "--auto-bid", file);
      assert.equal(bad.code, 2);
      assert.match(bad.out, /sellFloorMicroPerKWh: got "x"/);
      assert.match(bad.out, /buyCeilingMicroPerKWh: missing/);
      const noMeter = await runCli("start", "--data-dir", dir, "--key", join(dir, "none.key"), "--auto-bid", file);
      assert.equal(noMeter.code, 2);
      assert.match(noMeter.out, /--auto-bid forecasts from this box's meters: give at least one --meter/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("rules across fields, and a document that is not an object, are refused too", () => {
    assert.throws(() => parseBiddingPolicy({ sellFloorMicroPerKWh: 1, buyCeilingMicroPerKWh: 1, maxBuyWh: 5, minOrderWh: 10 }, "p.json"), /maxBuyWh: 5 is below minOrderWh 10, so the box would never buy/);
    assert.throws(() => parseBiddingPolicy([1, 2], "p.json"), /the document: wants an object of policy fields/);
  });
});

describe("the persistence forecast", () => {
  const member = { member: 1, importWh: 300, exportWh: 1_200, meters: 1, silentMeters: 0 };
  it("is the settled period's energy, scaled down to one interval when the period was longer, a sell capped at the largest order", () => {
    assert.deepEqual(persistenceForecast(member, INTERVAL_MS, INTERVAL_MS, 1_000_000), { generationWh: 1_200, consumptionWh: 300, batteryWh: 0, batteryMaxFlowWh: 0 });
    assert.deepEqual(persistenceForecast(member, 3 * INTERVAL_MS, INTERVAL_MS, 1_000_000), { generationWh: 400, consumptionWh: 100, batteryWh: 0, batteryMaxFlowWh: 0 });
    assert.deepEqual(persistenceForecast(member, INTERVAL_MS, INTERVAL_MS, 500), { generationWh: 800, consumptionWh: 300, batteryWh: 0, batteryMaxFlowWh: 0 });
  });
});
