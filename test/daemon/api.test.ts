// The HTTP API's routes for the web app, monitoring and admins, through
// fastify.inject() on a real one-box cluster (SQLite on disk, Raft log in
// its worker): the OpenAPI document, health, block pages, meter history,
// the order book, a member's orders, trades and balance, governance, rate
// limits, admin routes and /metrics. The box's clock is the wall clock
// moved (test/helpers/movable-clock.ts), so that a market interval boundary comes at once.
import assert from "node:assert/strict";
import { createServer, type AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { isDeepStrictEqual } from "node:util";
import type { FastifyInstance } from "fastify";
import { BoxSequence } from "../../daemon/box-sequence.js";
import { buildHttp, redactConfig, withMeanPower } from "../../daemon/http.js";
import { BoxMeters, parseMeterSpec } from "../../daemon/meters.js";
import type { BoxNode } from "../../daemon/node.js";
import { toHex } from "../../ledger/hash.js";
import { NodeSigner } from "../../ledger/keys.js";
import { Quality, type SignedTx, type TxBody } from "../../ledger/tx.js";
import { BoxCluster } from "../helpers/box-cluster.js";
import { MovableClock } from "../helpers/movable-clock.js";

const INTERVAL_MS = 60_000;
const ADMIN_TOKEN = "a".repeat(20) + "0123456789abcdef0123";

interface Problem {
  code: string;
  message: string;
}

/** Mismatches between what a handler returned and what the response schema let through. */
const mismatches: string[] = [];

/**
 * Compare each answer's JSON before and after fastify's serialiser: a field
 * the schema does not name is dropped silently, a value of another type is
 * coerced; either is a schema that does not describe the route's answer.
 */
function watchSerialisation(a: FastifyInstance): void {
  const before = new WeakMap<object, string>();
  a.addHook("preSerialization", async (req, _reply, payload) => {
    before.set(req, JSON.stringify(payload));
    return payload;
  });
  a.addHook("onSend", async (req, reply, payload) => {
    const json = before.get(req);
    if (json !== undefined && typeof payload === "string" && !isDeepStrictEqual(JSON.parse(payload), JSON.parse(json))) {
      mismatches.push(`${req.method} ${req.url} ${reply.statusCode}: handler ${json.slice(0, 4000)}\n   sent ${payload.slice(0, 4000)}`);
    }
    return payload;
  });
}

describe("HTTP API v1: the web app's, monitoring's and admins' routes", () => {
  // Box 0 (box, admin); users 1 and 2 trade; user 3 is removed by an admin.
  const c = new BoxCluster(1, { extraMembers: 3, genesis: { market: { intervalMs: INTERVAL_MS }, governance: { votingBlocksMin: 1, votingBlocksMax: 1_000 } } });
  const realMs = Date.now();
  // The box's clock starts 10 s into an interval, so that orders for the next one are in time.
  const clock = new MovableClock(realMs - (realMs % INTERVAL_MS) + INTERVAL_MS + 10_000);
  const now = clock.now;
  let node: BoxNode;
  let app: FastifyInstance;
  let box: BoxSequence; // every transaction member 0 signs goes through this one sequence
  const users: BoxSequence[] = [];

  const submit = async (seq: BoxSequence, body: TxBody): Promise<SignedTx> => {
    const { tx, out } = await seq.submit(body);
    assert.equal(out.ok, true, JSON.stringify(out));
    return tx;
  };
  const committed = async (tx: SignedTx): Promise<void> => {
    const fate = await c.waitFor("the transaction committed", () => {
      const f = node.fate(tx.id);
      return f.status === "committed" ? f : null;
    });
    assert.equal(fate.result, "ok", `${tx.tx.body.type}: ${JSON.stringify(fate)}`);
  };
  const get = async (url: string, a: FastifyInstance = app) => {
    const r = await a.inject({ url });
    return { status: r.statusCode, body: r.json() as Record<string, unknown> & { code?: string; message?: string } };
  };
  /** Each URL answers this status with this stable code, and a message. */
  const answersWith = async (cases: readonly (readonly [string, number, string])[]) => {
    for (const [url, status, code] of cases) {
      const r = await get(url);
      assert.deepEqual([r.status, r.body.code], [status, code], url);
      assert.ok((r.body.message ?? "").length > 10, url);
    }
  };

  before(async () => {
    node = await c.start(0, { now });
    await c.waitFor("leadership and a block", () => node.role === "leader" && node.ledger.state.height >= 1);
    box = new BoxSequence(node, c.signers[0] as NodeSigner, 0);
    for (const i of [1, 2, 3]) users[i] = new BoxSequence(node, c.signers[i] as NodeSigner, i);
    app = buildHttp(node, { now, rateLimits: { exemptLoopback: true } });
    watchSerialisation(app);
  });
  after(async () => {
    await app.close();
    await c.close();
  });

  it("serves an OpenAPI 3.1 document that lists every route, each with a summary, tags and its responses", async () => {
    const fresh = buildHttp(node);
    const routes: { method: string; url: string }[] = [];
    fresh.addHook("onRoute", (r) => {
      for (const m of [r.method].flat()) if (m !== "HEAD") routes.push({ method: m.toLowerCase(), url: r.url.replace(/:([A-Za-z]+)/g, "{$1}") });
    });
    try {
      const { status, body } = await get("/api/v1/openapi.json", fresh);
      assert.equal(status, 200);
      assert.equal(body.openapi, "3.1.0");
      const paths = body.paths as Record<string, Record<string, { summary?: string; tags?: string[]; responses?: Record<string, unknown> }>>;
      assert.ok(routes.length >= 23, `the routes were seen: ${routes.length}`);
      for (const r of routes) {
        const op = paths[r.url]?.[r.method];
        assert.ok(op !== undefined, `${r.method} ${r.url} is in the document`);
        assert.ok((op.summary ?? "").length > 10, `${r.method} ${r.url} has a summary`);
        assert.ok((op.tags ?? []).length > 0, `${r.method} ${r.url} has a tag`);
        assert.ok(op.responses?.["429"] !== undefined, `${r.method} ${r.url} documents 429`);
      }
      assert.equal(Object.values(paths).reduce((n, p) => n + Object.keys(p).length, 0), routes.length, "and nothing else");
      const tx = paths["/api/v1/tx"]?.post as { description: string };
      assert.match(tx.description, /Placing an order and cancelling one are signed transactions/);
      assert.ok(paths["/api/v1/admin/members"]?.post?.responses?.["401"] !== undefined);
    } finally {
      await fresh.close();
    }
  });

  it("GET /api/v1/health is ok on a leading box, and 503 degraded naming a stale head and a failing meter", async () => {
    const ok = await get("/api/v1/health");
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual([ok.body.status, ok.body.problems, ok.body.leader], ["ok", [], 0]);
    // A meter at an address where nothing answers: every poll fails.
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const meters = new BoxMeters(node, box, [parseMeterSpec(`7=eastron-sdm630@tcp:127.0.0.1:${port}/1`)], { now });
    let clockAheadMs = 0;
    const watched = buildHttp(node, { now: () => now() + clockAheadMs, meters: () => meters, health: { meterSilentMs: 1_500 }, mqtt: () => ({ connected: false, outboxDepth: 7 }) });
    watchSerialisation(watched);
    try {
      assert.equal((await get("/api/v1/health", watched)).status, 200, "a meter seen for the first time has its grace");
      meters.start();
      const failing = await c.waitFor("the meter seen failing", async () => {
        const h = await get("/api/v1/health", watched);
        return h.status === 503 ? h.body : null;
      });
      assert.equal(failing.status, "degraded");
      const problems = failing.problems as Problem[];
      assert.deepEqual(problems.map((p) => p.code), ["PG_HEALTH_METER_FAILING"]);
      assert.match(problems[0]?.message ?? "", /meter 7 has had no good poll for \d+ ms/);
      clockAheadMs = 60_000; // no block for a minute, as this box sees it
      const stale = await get("/api/v1/health", watched);
      assert.equal(stale.status, 503);
      assert.ok((stale.body.problems as Problem[]).some((p) => p.code === "PG_HEALTH_HEAD_STALE" && /more than 5 block intervals \(2500 ms\)/.test(p.message)), JSON.stringify(stale.body));
      // The same box's metrics: the meter's failed polls, the MQTT outbox.
      const text = (await watched.inject({ url: "/metrics" })).body;
      assert.match(text, /^peergrid_meter_polls_total\{meter="7",result="failed"\} [1-9]\d*$/m);
      assert.match(text, /^peergrid_meter_polls_total\{meter="7",result="good"\} 0$/m);
      assert.match(text, /^peergrid_mqtt_outbox_depth 7$/m);
      assert.match(text, /^peergrid_mqtt_connected 0$/m);
      const status = await get("/api/v1/meters", watched);
      const bus = (status.body.buses as { meters: { meterId: number; stats: { failed: number; lastProblem: string | null } }[] }[])[0];
      assert.equal(bus?.meters[0]?.meterId, 7);
      assert.ok((bus?.meters[0]?.stats.failed ?? 0) > 0 && bus?.meters[0]?.stats.lastProblem !== null, JSON.stringify(bus));
    } finally {
      await meters.stop();
      await watched.close();
    }
  });

  it("GET /api/v1/blocks pages block headers newest first; bad paging is a 400 with a code", async () => {
    await c.waitFor("five blocks", () => node.ledger.state.height >= 5);
    const first = await get("/api/v1/blocks?limit=3");
    assert.equal(first.status, 200);
    const blocks = first.body.blocks as { height: number; hash: string; parentHash: string }[];
    assert.equal(blocks.length, 3);
    const head = first.body.height as number;
    assert.deepEqual(blocks.map((b) => b.height), [head, head - 1, head - 2]);
    assert.equal(blocks[0]?.parentHash, blocks[1]?.hash, "each names its parent");
    assert.equal(first.body.nextBefore, head - 2);
    const next = await get(`/api/v1/blocks?before=${head - 2}&limit=100`);
    const rest = next.body.blocks as { height: number }[];
    assert.deepEqual(rest.map((b) => b.height), Array.from({ length: head - 2 }, (_, i) => head - 3 - i), "down to genesis");
    assert.equal(next.body.nextBefore, null);
    assert.equal((await get(`/api/v1/blocks/${head - 1}`)).body.hash, blocks[1]?.hash, "the page agrees with the block route");
    for (const q of ["limit=101", "limit=0", "before=-1", "before=x", "limit=2.5"]) {
      const r = await get(`/api/v1/blocks?${q}`);
      assert.equal(r.status, 400, q);
      assert.equal(r.body.code, "PG_ERR_BAD_REQUEST", q);
    }
  });

  const history = { baseMs: 0, member: 0 };

  it("GET /api/v1/readings gives every meter's latest; /readings/:member/:meterId its history, raw or one point per step", async () => {
    // Thirty seconds of two meters of box 0, a reading a second: meter 3 imports 1 Wh a second (3,600 W), meter 4 exports.
    const baseMs = now() - 60_000 - (now() % 1_000);
    history.baseMs = baseMs;
    let last: SignedTx | null = null;
    for (let s = 0; s < 30; s++) {
      const reading = (meterId: number, importWh: number, exportWh: number, powerW: number): TxBody => ({
        type: "reading", meterId, timeMs: baseMs + s * 1_000, importWh, exportWh, powerW, voltagesDeciV: [2300], frequencyMilliHz: 50_000, quality: Quality.good,
      });
      await submit(box, reading(3, 1_000 + s, 0, 3_600));
      last = await submit(box, reading(4, 0, 500 + 2 * s, -7_200));
    }
    await committed(last as SignedTx);
    const latest = await get("/api/v1/readings");
    assert.equal(latest.status, 200);
    const readings = latest.body.readings as { member: number; meterId: number; timeMs: number; importWh: number; exportWh: number }[];
    assert.deepEqual(
      readings.filter((r) => r.member === 0 && (r.meterId === 3 || r.meterId === 4)).map((r) => [r.meterId, r.timeMs, r.importWh, r.exportWh]),
      [
        [3, baseMs + 29_000, 1_029, 0],
        [4, baseMs + 29_000, 0, 558],
      ],
    );
    type Point = { timeMs: number; importWh: number; exportWh: number; meanPowerW: number | null };
    const raw = await get(`/api/v1/readings/0/3?from=${baseMs}&to=${baseMs + 30_000}`);
    assert.equal(raw.status, 200, JSON.stringify(raw.body));
    const points = raw.body.points as Point[];
    assert.equal(points.length, 30, "meter 3's readings only");
    assert.deepEqual(points.map((p) => p.timeMs), Array.from({ length: 30 }, (_, s) => baseMs + s * 1_000));
    assert.equal(points[0]?.meanPowerW, null);
    assert.ok(points.slice(1).every((p) => p.meanPowerW === 3_600), "1 Wh a second is 3,600 W");
    const stepped = await get(`/api/v1/readings/0/4?from=${baseMs}&to=${baseMs + 30_000}&stepMs=10000`);
    assert.equal(stepped.body.stepMs, 10_000);
    assert.deepEqual(
      (stepped.body.points as Point[]).map((p) => [p.timeMs, p.exportWh, p.meanPowerW]),
      [
        [baseMs + 9_000, 518, null],
        [baseMs + 19_000, 538, -7_200],
        [baseMs + 29_000, 558, -7_200],
      ],
      "the last reading of each 10 s bucket; the mean power from the counters (exporting: negative)",
    );
    const partial = await get(`/api/v1/readings/0/3?from=${baseMs + 25_500}&to=${baseMs + 100_000}`);
    assert.deepEqual((partial.body.points as Point[]).map((p) => p.importWh), [1_026, 1_027, 1_028, 1_029]);
  });

  it("history requests that cannot be answered name the fix", async () => {
    const b = history.baseMs;
    const tooMany = await get(`/api/v1/readings/0/3?from=0&to=${b}&stepMs=1000`);
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.body.code, "PG_ERR_TOO_MANY_POINTS");
    const least = Math.ceil(b / 2_000);
    assert.match(tooMany.body.message ?? "", new RegExp(`stepMs=${least} or more`));
    assert.equal((await get(`/api/v1/readings/0/3?from=0&to=${b}&stepMs=${least}`)).status, 200, "the step it names is enough");
    await answersWith([
      [`/api/v1/readings/99/3`, 404, "PG_ERR_MEMBER_NOT_FOUND"],
      [`/api/v1/readings/1/3`, 404, "PG_ERR_METER_NOT_FOUND"],
      [`/api/v1/readings/0/300`, 400, "PG_ERR_BAD_REQUEST"],
      [`/api/v1/readings/0/3?from=${b}&to=${b}`, 400, "PG_ERR_BAD_RANGE"],
      [`/api/v1/readings/0/3?stepMs=0`, 400, "PG_ERR_BAD_REQUEST"],
      [`/api/v1/readings/x/3`, 400, "PG_ERR_BAD_REQUEST"],
    ]);
  });

  it("a history request walks over a bounded number of readings, every meter's, however sparse the meter's own", async () => {
    // [b, b + 30 s) holds 60 readings of box 0 (meters 3 and 4); this box walks over at most 40 a request.
    const b = history.baseMs;
    const small = buildHttp(node, { now, historyEntriesMax: 40 });
    try {
      const cut = await get(`/api/v1/readings/0/3?from=${b}&to=${b + 30_000}`, small);
      assert.deepEqual([cut.status, cut.body.code], [400, "PG_ERR_TOO_MANY_POINTS"], "30 points of its own, but 60 readings to walk over");
      assert.match(cut.body.message ?? "", /than one answer walks over \(40\).*stepMs=15 or more/);
      const within = await get(`/api/v1/readings/0/3?from=${b}&to=${b + 20_000}`, small);
      assert.equal(within.status, 200, "40 readings: within the bound");
      assert.equal((within.body.points as unknown[]).length, 20);
      // Stepped: 3 buckets share 40 / 3 = 13 readings each, enough for both meters' last reading of each bucket...
      const both = (id: number) => get(`/api/v1/readings/0/${id}?from=${b}&to=${b + 30_000}&stepMs=10000`, small);
      assert.deepEqual([(await both(3)).body.points, (await both(4)).body.points].map((p) => (p as unknown[]).length), [3, 3]);
      // ...but with one reading a bucket, each bucket's last reading is one meter's: the other shows no point there.
      const tiny = buildHttp(node, { now, historyEntriesMax: 3 });
      try {
        const [three, four] = await Promise.all([3, 4].map(async (id) => ((await get(`/api/v1/readings/0/${id}?from=${b}&to=${b + 30_000}&stepMs=10000`, tiny)).body.points as unknown[]).length));
        assert.equal((three ?? 0) + (four ?? 0), 3, `one point a bucket in all: ${three} + ${four}`);
      } finally {
        await tiny.close();
      }
    } finally {
      await small.close();
    }
  });

  const market = { s: 0, buy: "", sell: "" };

  it("GET /api/v1/market/book groups open orders by interval, bids high to low and asks low to high, with totals; a cancel leaves it", async () => {
    // 5 s into a fresh interval, so that the orders for the next one are in time however long the tests above took.
    clock.set(now() - (now() % INTERVAL_MS) + INTERVAL_MS + 5_000);
    const s = now() - (now() % INTERVAL_MS) + INTERVAL_MS;
    market.s = s;
    const order = (side: "buy" | "sell", energyWh: number, priceMicroPerKWh: number, intervalStartMs = s): TxBody => ({
      type: "order", side, energyWh, priceMicroPerKWh, intervalStartMs, expiresAtMs: intervalStartMs + INTERVAL_MS, flags: 0, counterparty: null,
    });
    const cheapBuy = await submit(users[1] as BoxSequence, order("buy", 100, 150_000));
    const buy = await submit(users[1] as BoxSequence, order("buy", 200, 170_000));
    const sell = await submit(users[2] as BoxSequence, order("sell", 50, 120_000));
    const dearSell = await submit(users[2] as BoxSequence, order("sell", 30, 400_000));
    const later = await submit(users[2] as BoxSequence, order("sell", 10, 130_000, s + INTERVAL_MS));
    await committed(later);
    market.buy = toHex(buy.id);
    market.sell = toHex(sell.id);
    const all = await get("/api/v1/market/book");
    assert.equal(all.status, 200);
    type Book = { intervalStartMs: number; bids: { id: string; priceMicroPerKWh: number; author: number }[]; asks: { id: string; priceMicroPerKWh: number }[]; bidWh: number; askWh: number; bestBidMicroPerKWh: number | null; bestAskMicroPerKWh: number | null };
    const intervals = all.body.intervals as Book[];
    assert.deepEqual(intervals.map((i) => i.intervalStartMs), [s, s + INTERVAL_MS]);
    const first = intervals[0] as Book;
    assert.deepEqual(first.bids.map((o) => [o.id, o.priceMicroPerKWh, o.author]), [[toHex(buy.id), 170_000, 1], [toHex(cheapBuy.id), 150_000, 1]]);
    assert.deepEqual(first.asks.map((o) => [o.id, o.priceMicroPerKWh]), [[toHex(sell.id), 120_000], [toHex(dearSell.id), 400_000]]);
    assert.deepEqual([first.bidWh, first.askWh, first.bestBidMicroPerKWh, first.bestAskMicroPerKWh], [300, 80, 170_000, 120_000]);
    const one = await get(`/api/v1/market/book?interval=${s + INTERVAL_MS}`);
    assert.deepEqual((one.body.intervals as Book[]).map((i) => [i.intervalStartMs, i.bids.length, i.asks.length, i.bestBidMicroPerKWh]), [[s + INTERVAL_MS, 0, 1, null]]);
    assert.deepEqual((await get(`/api/v1/market/book?interval=${s + 10 * INTERVAL_MS}`)).body.intervals, []);
    const bad = await get(`/api/v1/market/book?interval=${s + 1}`);
    assert.deepEqual([bad.status, bad.body.code], [400, "PG_ERR_BAD_INTERVAL"]);
    assert.match(bad.body.message ?? "", new RegExp(`multiples of ${INTERVAL_MS} ms.*nearest before is ${s}`));
    assert.equal((await get("/api/v1/market/book?interval=soon")).status, 400);
    await committed(await submit(users[1] as BoxSequence, { type: "cancel", orderId: cheapBuy.id }));
    const after = (await get(`/api/v1/market/book?interval=${s}`)).body.intervals as Book[];
    assert.deepEqual(after[0]?.bids.map((o) => o.id), [toHex(buy.id)], "the cancelled order is gone");
    const me = await get("/api/v1/members/1");
    assert.deepEqual((me.body.orders as { id: string }[]).map((o) => o.id), [toHex(buy.id)], "the member's open orders");
  });

  it("GET /api/v1/members/:member shows its record, balance, open orders and its trades once the interval clears", async () => {
    const s = market.s;
    clock.set(s + 500); // the clock reaches S: the block entering it clears the orders for S
    await c.waitFor("interval S cleared", () => node.ledger.store.marketInterval(s));
    const cleared = node.ledger.store.marketInterval(s);
    const price = cleared?.priceMicroPerKWh as number;
    assert.ok(price >= 120_000 && price <= 170_000, `a price between the crossing limits: ${price}`);
    const recorded = await get(`/api/v1/market/intervals/${s}`);
    assert.equal(recorded.status, 200);
    assert.deepEqual(((recorded.body.interval as { trades: { buyOrder: string }[] }).trades).map((t) => t.buyOrder), [market.buy]);
    assert.deepEqual((await get(`/api/v1/market/intervals/${s + 1}`)).body.code, "PG_ERR_INTERVAL_NOT_FOUND");
    const grid = await get("/api/v1/grid");
    assert.deepEqual([grid.status, grid.body.islanded, grid.body.breakers, grid.body.controller], [200, false, [], null]);
    type Trade = { intervalStartMs: number; side: string; order: string; counterparty: number; energyWh: number; priceMicroPerKWh: number; deliveredWh: number | null };
    const buyer = await get("/api/v1/members/1");
    assert.equal(buyer.status, 200);
    const m = buyer.body.member as { index: number; name: string; roles: string[]; active: boolean; publicKey: string };
    assert.deepEqual([m.index, m.name, m.roles, m.active, m.publicKey], [1, "user-1", ["user"], true, toHex((c.signers[1] as NodeSigner).publicKey)]);
    assert.deepEqual(buyer.body.orders, [], "its orders for S closed with the clearing");
    assert.deepEqual(
      (buyer.body.trades as Trade[]).map((t) => [t.intervalStartMs, t.side, t.order, t.counterparty, t.energyWh, t.priceMicroPerKWh]),
      [[s, "buy", market.buy, 2, 50, price]],
    );
    assert.equal(typeof buyer.body.balanceMicro, "number");
    const seller = await get("/api/v1/members/2?tradesLimit=1");
    assert.deepEqual((seller.body.trades as Trade[]).map((t) => [t.side, t.order, t.counterparty]), [["sell", market.sell, 1]]);
    assert.equal(seller.body.nextTradesBefore, null);
    assert.deepEqual((seller.body.orders as { intervalStartMs: number }[]).map((o) => o.intervalStartMs), [s + INTERVAL_MS], "the order for the next interval is still open");
    assert.deepEqual((await get(`/api/v1/members/2?tradesBefore=${s}`)).body.trades, [], "nothing before S");
    const market2 = await get("/api/v1/market");
    const balances = new Map((market2.body.balances as { account: string; balanceMicro: number }[]).map((b) => [b.account, b.balanceMicro]));
    assert.equal(buyer.body.balanceMicro, balances.get("1") ?? 0, "the member's balance is the market's");
    await answersWith([
      ["/api/v1/members/99", 404, "PG_ERR_MEMBER_NOT_FOUND"],
      ["/api/v1/members/-1", 400, "PG_ERR_BAD_REQUEST"],
      ["/api/v1/members/1?tradesLimit=501", 400, "PG_ERR_BAD_REQUEST"],
    ]);
  });

  it("GET /api/v1/governance lists proposals with their tallies; /governance/proposals/:id its votes", async () => {
    const height = node.ledger.state.height;
    const proposal = await submit(users[1] as BoxSequence, { type: "proposal", action: { kind: "criticalLoads", premises: [2, 1] }, votingEndsHeight: height + 500, effectiveHeight: height + 501 });
    await committed(proposal);
    await committed(await submit(users[2] as BoxSequence, { type: "vote", proposal: proposal.id, approve: true }));
    const id = toHex(proposal.id);
    const g = await get("/api/v1/governance?status=open");
    assert.equal(g.status, 200);
    type P = { id: string; author: number; status: string; yes: number; no: number; action: { kind: string; premises: number[] } };
    const listed = (g.body.proposals as P[]).find((p) => p.id === id);
    assert.deepEqual([listed?.author, listed?.status, listed?.yes, listed?.no, listed?.action], [1, "open", 1, 0, { kind: "criticalLoads", premises: [2, 1] }]);
    assert.deepEqual(g.body.criticalLoads, { premises: [], sinceHeight: null });
    assert.equal((g.body.marketParams as { params: { intervalMs: number } }).params.intervalMs, INTERVAL_MS);
    const one = await get(`/api/v1/governance/proposals/${id.toUpperCase()}`);
    assert.equal(one.status, 200);
    assert.deepEqual(one.body.votes, [{ member: 2, approve: true }]);
    assert.deepEqual((await get("/api/v1/governance?status=applied")).body.proposals, []);
    await answersWith([
      [`/api/v1/governance/proposals/${"ab".repeat(32)}`, 404, "PG_ERR_PROPOSAL_NOT_FOUND"],
      ["/api/v1/governance/proposals/nope", 400, "PG_ERR_BAD_REQUEST"],
      ["/api/v1/governance?status=maybe", 400, "PG_ERR_BAD_REQUEST"],
    ]);
  });

  it("requests read the state's records through an index built once per block, never walking them each", async () => {
    const tree = node.ledger.state.tree as { entries: () => Iterable<unknown> };
    const entries = tree.entries;
    let walks = 0;
    tree.entries = function (this: unknown) {
      walks++;
      return entries.call(this);
    };
    try {
      for (const url of ["/api/v1/grid", "/api/v1/grid", "/api/v1/market/book", "/api/v1/market", "/api/v1/members/1", "/api/v1/governance", `/api/v1/readings/0/3`]) {
        assert.equal((await get(url)).status, 200, url);
      }
      assert.ok(walks <= 1, `the records of one state walked ${walks} times`);
    } finally {
      tree.entries = entries;
    }
  });

  it("rate limits each client per class of route: 429 PG_ERR_RATE_LIMITED with Retry-After; loopback exempt unless told", async () => {
    const limited = buildHttp(node, { adminToken: ADMIN_TOKEN, rateLimits: { read: 3, tx: 2, admin: 2, exemptLoopback: false } });
    const exempt = buildHttp(node, { rateLimits: { read: 3 } });
    try {
      for (let i = 0; i < 3; i++) assert.equal((await limited.inject({ url: "/api/v1/status" })).statusCode, 200);
      const refused = await limited.inject({ url: "/api/v1/readings" });
      assert.equal(refused.statusCode, 429);
      assert.equal(refused.json().code, "PG_ERR_RATE_LIMITED");
      assert.match(refused.json().message, /too many read requests from 127\.0\.0\.1: at most 3 per 60 s; retry in/);
      assert.ok(Number(refused.headers["retry-after"]) > 0, "says when to retry");
      assert.equal((await limited.inject({ url: "/api/v1/status", remoteAddress: "192.0.2.7" })).statusCode, 200, "another client has its own allowance");
      // Transactions are a class of their own: the reads used up do not count, and two are allowed.
      const tx = () => limited.inject({ method: "POST", url: "/api/v1/tx", headers: { "content-type": "application/octet-stream" }, payload: Buffer.from([1, 2, 3]) });
      assert.equal((await tx()).statusCode, 400);
      assert.equal((await tx()).statusCode, 400);
      assert.equal((await tx()).json().code, "PG_ERR_RATE_LIMITED");
      // Admin routes are limited before the credential is checked: guessing is slow.
      const guess = () => limited.inject({ url: "/api/v1/admin/config", headers: { authorization: "Bearer guess" } });
      assert.equal((await guess()).statusCode, 401);
      assert.equal((await guess()).statusCode, 401);
      assert.equal((await guess()).statusCode, 429);
      const metrics = await limited.inject({ url: "/metrics" });
      assert.equal(metrics.statusCode, 200, "metrics have their own allowance");
      assert.match(metrics.body, /^peergrid_http_rate_limited_total 3$/m);
      for (let i = 0; i < 10; i++) assert.equal((await exempt.inject({ url: "/api/v1/status" })).statusCode, 200, "the box's own tools on loopback");
      for (let i = 0; i < 3; i++) await exempt.inject({ url: "/api/v1/status", remoteAddress: "192.0.2.8" });
      assert.equal((await exempt.inject({ url: "/api/v1/status", remoteAddress: "192.0.2.8" })).statusCode, 429);
    } finally {
      await limited.close();
      await exempt.close();
    }
  });

  it("admin routes: off without a token (saying how to turn them on), 401 without the right one, and with it the box enrols and removes a member", async () => {
    const newcomer = NodeSigner.generate();
    const enrol = { publicKey: toHex(newcomer.publicKey), name: "flat 4b (browser)", roles: ["user"] };
    const off = await app.inject({ method: "POST", url: "/api/v1/admin/members", payload: enrol });
    assert.equal(off.statusCode, 403);
    assert.equal(off.json().code, "PG_ERR_ADMIN_DISABLED");
    assert.match(off.json().message, /http\.adminTokenFile/);
    const admin = buildHttp(node, { adminToken: ADMIN_TOKEN, sequence: box, config: { dataDir: "/var/lib/peergrid", adminToken: ADMIN_TOKEN, peers: new Map([[1, { host: "10.0.0.2", port: 7400 }]]), mqtt: { broker: "mqtt://box:hunter2@10.0.0.9:1883", password: "hunter2" } } });
    const notAdmin = buildHttp(node, { adminToken: ADMIN_TOKEN, sequence: users[1] as BoxSequence });
    watchSerialisation(admin);
    const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };
    try {
      for (const headers of [{}, { authorization: "Bearer wrong" }, { authorization: `Basic ${ADMIN_TOKEN}` }, { authorization: `Bearer ${ADMIN_TOKEN}x` }]) {
        const r = await admin.inject({ method: "POST", url: "/api/v1/admin/members", payload: enrol, headers });
        assert.equal(r.statusCode, 401, JSON.stringify(headers));
        assert.equal(r.json().code, "PG_ERR_UNAUTHORIZED");
        assert.match(String(r.headers["www-authenticate"]), /^Bearer/);
      }
      for (const [payload, type] of [[{ nonsense: true }, "application/json"], ["{not json", "application/json"], ["<x/>", "application/xml"], ["x".repeat(100_000), "application/json"]] as const) {
        const unauthBad = await admin.inject({ method: "POST", url: "/api/v1/admin/members", payload, headers: { "content-type": type } });
        assert.equal(unauthBad.statusCode, 401, `without the token, not even the body is read: ${type} ${String(payload).slice(0, 20)}: ${unauthBad.body}`);
      }
      for (const payload of [{ ...enrol, roles: ["king"] }, { ...enrol, roles: [] }, { ...enrol, publicKey: "zz" }, { ...enrol, name: "" }, { ...enrol, name: "x".repeat(65) }, { ...enrol, roles: "king" }, { ...enrol, roles: ["user", "user"] }]) {
        const r = await admin.inject({ method: "POST", url: "/api/v1/admin/members", payload, headers: auth });
        assert.equal(r.statusCode, 400, JSON.stringify(payload));
        assert.equal(r.json().code, "PG_ERR_BAD_REQUEST");
      }
      const wide = await admin.inject({ method: "POST", url: "/api/v1/admin/members", payload: { ...enrol, name: "é".repeat(33) }, headers: auth });
      assert.deepEqual([wide.statusCode, wide.json().code], [400, "PG_ERR_BAD_NAME"], "66 UTF-8 bytes");
      const refused = await notAdmin.inject({ method: "POST", url: "/api/v1/admin/members", payload: enrol, headers: auth });
      assert.equal(refused.statusCode, 403);
      assert.equal(refused.json().code, "PG_ERR_NOT_ADMIN");
      assert.match(refused.json().message, /member 1 \(user-1\) is not an active admin.*peergrid propose --enrol/);

      const r = await admin.inject({ method: "POST", url: "/api/v1/admin/members", payload: enrol, headers: auth });
      assert.equal(r.statusCode, 202, r.body);
      const id = r.json().id as string;
      const fate = await c.waitFor("the enrolment committed", async () => {
        const f = (await app.inject({ url: `/api/v1/tx/${id}` })).json() as { status: string; result: string };
        return f.status === "committed" ? f : null;
      });
      assert.equal(fate.result, "ok");
      const enrolled = (await app.inject({ url: `/api/v1/members/by-key/${enrol.publicKey}` })).json() as { member: { index: number; name: string; roles: string[]; active: boolean } };
      assert.deepEqual([enrolled.member.name, enrolled.member.roles, enrolled.member.active], [enrol.name, ["user"], true]);
      const again = await admin.inject({ method: "POST", url: "/api/v1/admin/members", payload: enrol, headers: auth });
      assert.deepEqual([again.statusCode, again.json().code], [409, "PG_ERR_MEMBER_EXISTS"]);

      const removal = await admin.inject({ method: "POST", url: `/api/v1/admin/members/${enrolled.member.index}/remove`, headers: auth });
      assert.equal(removal.statusCode, 202, removal.body);
      await c.waitFor("the removal committed", () => node.fate(Buffer.from(removal.json().id as string, "hex")).status === "committed");
      const gone = await get(`/api/v1/members/${enrolled.member.index}`);
      assert.equal((gone.body.member as { active: boolean }).active, false);
      const twice = await admin.inject({ method: "POST", url: `/api/v1/admin/members/${enrolled.member.index}/remove`, headers: auth });
      assert.deepEqual([twice.statusCode, twice.json().code], [409, "PG_ERR_MEMBER_REMOVED"]);
      const nobody = await admin.inject({ method: "POST", url: "/api/v1/admin/members/999/remove", headers: auth });
      assert.deepEqual([nobody.statusCode, nobody.json().code], [404, "PG_ERR_MEMBER_NOT_FOUND"]);

      const config = await admin.inject({ url: "/api/v1/admin/config", headers: auth });
      assert.equal(config.statusCode, 200);
      assert.deepEqual(config.json(), {
        boxId: 0,
        config: { dataDir: "/var/lib/peergrid", adminToken: "[redacted]", peers: { 1: { host: "10.0.0.2", port: 7400 } }, mqtt: { broker: "mqtt://box:[redacted]@10.0.0.9:1883", password: "[redacted]" } },
      });
      assert.ok(!config.body.includes("hunter2") && !config.body.includes(ADMIN_TOKEN));
    } finally {
      await admin.close();
      await notAdmin.close();
    }
  });

  it("GET /metrics is Prometheus text with the box's series", async () => {
    await app.inject({ url: "/api/v1/status" });
    const r = await app.inject({ url: "/metrics" });
    assert.equal(r.statusCode, 200);
    assert.match(String(r.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
    const sample = /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*")*\})? (-?\d+(\.\d+)?(e[+-]?\d+)?|NaN|[+-]Inf)$/;
    const lines = r.body.trimEnd().split("\n");
    const typed = new Map<string, string>();
    for (const line of lines) {
      const t = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (gauge|counter|histogram|summary|untyped)$/.exec(line);
      if (t !== null) typed.set(t[1] as string, t[2] as string);
      else if (!line.startsWith("# HELP ")) assert.match(line, sample);
    }
    const value = (series: string) => {
      const line = lines.find((l) => l.startsWith(`${series} `));
      assert.ok(line !== undefined, `${series} is there`);
      return Number(line.slice(series.length + 1));
    };
    assert.ok(value("peergrid_block_height") >= 5);
    assert.equal(value('peergrid_raft_role{role="leader"}'), 1);
    assert.equal(value('peergrid_raft_role{role="follower"}'), 0);
    assert.equal(value("peergrid_raft_term"), node.term);
    assert.equal(value("peergrid_peers_connected"), 0);
    const p50 = value('peergrid_commit_latency_seconds{quantile="0.5"}');
    assert.ok(p50 > 0 && p50 < 10, `transactions were submitted here, committed in seconds: ${p50}`);
    const ageSeconds = value("peergrid_head_age_seconds");
    assert.ok(ageSeconds >= 0 && ageSeconds < 60, `the head's age in seconds: ${ageSeconds}`);
    assert.ok(value("peergrid_commit_latency_samples_total") > 60);
    assert.equal(value("peergrid_stream_clients"), 0);
    assert.equal(value("peergrid_stream_dropped_total"), 0);
    const status = 'route="/api/v1/status",method="GET",code="200"';
    const count = value(`peergrid_http_request_duration_seconds_count{${status}}`);
    assert.ok(count >= 1);
    assert.equal(value(`peergrid_http_request_duration_seconds_bucket{${status},le="+Inf"}`), count);
    assert.ok(value(`peergrid_http_request_duration_seconds_bucket{${status},le="10"}`) === count, "every status answer within 10 s: the buckets are seconds");
    assert.ok(value(`peergrid_http_request_duration_seconds_sum{${status}}`) < count * 10);
    // Prometheus's conventions: base units (seconds), counters end in _total, and nothing else does.
    for (const [name, type] of typed) {
      assert.doesNotMatch(name, /_(ms|millis\w*|milliseconds)$/, `${name}: durations in seconds`);
      assert.equal(name.endsWith("_total"), type === "counter", `${name} (${type}): _total if and only if a counter`);
    }
    for (const [name, type] of [
      ["peergrid_block_height", "gauge"],
      ["peergrid_commit_latency_seconds", "gauge"],
      ["peergrid_raft_role", "gauge"],
      ["peergrid_raft_term", "gauge"],
      ["peergrid_peers_connected", "gauge"],
      ["peergrid_meter_polls_total", "counter"],
      ["peergrid_meter_poll_latency_seconds", "gauge"],
      ["peergrid_http_request_duration_seconds", "histogram"],
      ["peergrid_stream_clients", "gauge"],
      ["peergrid_stream_dropped_total", "counter"],
    ]) {
      assert.equal(typed.get(name as string), type, name);
    }
    assert.ok(!typed.has("peergrid_mqtt_outbox_depth"), "no MQTT bridge on this app: no outbox series");
  });

  it("every answer above was what its handler built: the response schemas drop and coerce nothing", () => {
    assert.deepEqual(mismatches, []);
  });

  it("withMeanPower and redactConfig, the pure helpers", () => {
    const p = (timeMs: number, importWh: number, exportWh: number) => ({ height: 1, timeMs, importWh, exportWh, powerW: 0, quality: 0 });
    assert.deepEqual(
      withMeanPower([p(0, 10, 0), p(3_600_000, 1_010, 0), p(3_600_000, 1_020, 0), p(7_200_000, 5, 0), p(10_800_000, 5, 500)]).map((x) => x.meanPowerW),
      [null, 1_000, null, null, -500],
      "W from Wh per hour; no time between, or a counter going back, gives none",
    );
    assert.deepEqual(redactConfig({ a: [{ apiSecret: "s", x: "http://u:p@h/" }], f: () => 1, u: undefined, n: null, b: new Uint8Array(3) }), { a: [{ apiSecret: "[redacted]", x: "http://u:[redacted]@h/" }], n: null, b: "[3 bytes]" });
  });
});
