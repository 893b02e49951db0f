// The live stream (GET /api/v1/stream, Server-Sent Events) over real HTTP
// connections to a real box: the events of committed blocks (block,
// reading, clearing, island), topic filters, heartbeats, the bound on
// clients, and a client that stops reading, which is dropped once the bytes
// waiting for it pass the bound while a client that reads gets every event.
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { get as httpGet, type IncomingMessage, type ServerResponse } from "node:http";
import { type AddressInfo, connect } from "node:net";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { BoxSequence } from "../../daemon/box-sequence.js";
import { buildHttp, streamHubOf } from "../../daemon/http.js";
import type { BoxNode } from "../../daemon/node.js";
import { type StreamEvent, StreamHub, type StreamNode, eventsOfBlock, parseTopics, sseFrame } from "../../daemon/stream.js";
import { toHex } from "../../ledger/hash.js";
import { GLOBAL_KEY, type GlobalRecord } from "../../ledger/records.js";
import type { NodeSigner } from "../../ledger/keys.js";
import { Quality, Role, type TxBody } from "../../ledger/tx.js";
import { BoxCluster } from "../helpers/box-cluster.js";
import { MovableClock } from "../helpers/movable-clock.js";

const INTERVAL_MS = 60_000;

interface Received {
  readonly id: number;
  readonly event: string;
  readonly data: Record<string, unknown>;
}

/** An SSE client: every event and comment it received, parsed as a browser's EventSource would. */
class SseClient {
  readonly events: Received[] = [];
  readonly comments: string[] = [];
  ended = false;
  /** Everything received, as text (an error's JSON body). */
  body = "";
  private text = "";

  private constructor(readonly res: IncomingMessage) {
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => this.take(chunk));
    res.on("close", () => (this.ended = true));
  }

  static open(url: string): Promise<SseClient> {
    return new Promise((resolve, reject) => {
      const req = httpGet(url, (res) => resolve(new SseClient(res)));
      req.on("error", reject);
    });
  }

  private take(chunk: string): void {
    this.body += chunk;
    this.text += chunk;
    for (let end = this.text.indexOf("\n\n"); end >= 0; end = this.text.indexOf("\n\n")) {
      const frame = this.text.slice(0, end);
      this.text = this.text.slice(end + 2);
      const fields = new Map<string, string>();
      for (const line of frame.split("\n")) {
        if (line.startsWith(":")) this.comments.push(line.slice(1).trim());
        else {
          const colon = line.indexOf(": ");
          fields.set(line.slice(0, colon), line.slice(colon + 2));
        }
      }
      if (fields.has("event")) this.events.push({ id: Number(fields.get("id")), event: fields.get("event") as string, data: JSON.parse(fields.get("data") as string) as Record<string, unknown> });
    }
  }

  of(event: string): Record<string, unknown>[] {
    return this.events.filter((e) => e.event === event).map((e) => e.data);
  }

  close(): void {
    this.res.destroy();
  }
}

describe("the live stream", () => {
  const c = new BoxCluster(1, { genesis: { market: { intervalMs: INTERVAL_MS } } });
  const realMs = Date.now();
  const clock = new MovableClock(realMs - (realMs % INTERVAL_MS) + INTERVAL_MS + 10_000); // 10 s into an interval
  const now = clock.now;
  let node: BoxNode;
  let app: FastifyInstance;
  let base: string;
  let box: BoxSequence;
  const clients: SseClient[] = [];

  const open = async (path: string, at = base): Promise<SseClient> => {
    const client = await SseClient.open(`${at}${path}`);
    clients.push(client);
    return client;
  };
  const listen = async (a: FastifyInstance): Promise<string> => {
    await a.listen({ host: "127.0.0.1", port: 0 });
    return `http://127.0.0.1:${(a.server.address() as AddressInfo).port}`;
  };
  const submit = async (body: TxBody) => {
    const { tx, out } = await box.submit(body);
    assert.equal(out.ok, true, JSON.stringify(out));
    return tx;
  };

  before(async () => {
    node = await c.start(0, { now });
    await c.waitFor("leadership and a block", () => node.role === "leader" && node.ledger.state.height >= 1);
    box = new BoxSequence(node, c.signers[0] as NodeSigner, 0);
    app = buildHttp(node, { stream: { heartbeatMs: 200, clientsMax: 4, clientsPerAddressMax: 2 } });
    base = await listen(app);
  });
  after(async () => {
    for (const client of clients) client.close();
    await app.close();
    await c.close();
  });

  it("sends block, reading, clearing and island events as blocks commit; ?topics= filters them", async () => {
    const all = await open("/api/v1/stream");
    const blocksOnly = await open("/api/v1/stream?topics=block");
    assert.equal(all.res.statusCode, 200);
    assert.match(String(all.res.headers["content-type"]), /^text\/event-stream/);
    const reading = await submit({ type: "reading", meterId: 5, timeMs: now(), importWh: 4_242, exportWh: 17, powerW: 1_234, voltagesDeciV: [2300], frequencyMilliHz: 50_000, quality: Quality.good });
    const seen = await c.waitFor("the reading event", () => all.of("reading").find((r) => r.meterId === 5));
    const height = seen.height as number;
    assert.deepEqual(seen, { height, member: 0, meterId: 5, timeMs: (reading.tx.body as { timeMs: number }).timeMs, importWh: 4_242, exportWh: 17, powerW: 1_234, quality: 0 });
    assert.equal(node.ledger.store.getTx(reading.id)?.height, height, "the height of the block that holds it");
    const block = await c.waitFor("its block's event", () => all.of("block").find((b) => b.height === height));
    assert.deepEqual(block, { height, timeMs: node.ledger.store.getBlock(height)?.block.header.timeMs, txCount: 1, hash: toHex(node.ledger.store.getBlock(height)?.block.hash as Uint8Array), proposer: 0 });
    const readingIndex = all.events.findIndex((e) => e.event === "reading");
    assert.ok(all.events.findIndex((e) => e.event === "block" && e.data.height === height) < readingIndex, "a block's event comes before its readings'");
    assert.ok(all.events.every((e, i) => i === 0 || e.id > (all.events[i - 1] as Received).id), "ids increase");

    // The box becomes the microgrid controller and records an islanding.
    await submit({ type: "member", action: "setRoles", subject: 0, roles: Role.box | Role.admin | Role.controller });
    const islandAtMs = now();
    await submit({ type: "island", islanded: true, timeMs: islandAtMs, reason: "manual", measured: 0 });
    const island = await c.waitFor("the island event", () => all.of("island")[0]);
    assert.deepEqual([island.islanded, island.sinceMs], [true, islandAtMs]);

    // The clock reaches the next interval: the block entering it clears it.
    const boundary = now() - (now() % INTERVAL_MS) + INTERVAL_MS;
    clock.set(boundary + 300);
    const clearing = await c.waitFor("the clearing event", () => all.of("clearing").find((e) => e.intervalStartMs === boundary));
    assert.deepEqual([clearing.volumeWh, clearing.trades, clearing.priceMicroPerKWh, clearing.rule], [0, 0, null, "pay-as-clear"], "nothing was ordered");

    const last = Math.max(...all.events.filter((e) => e.event !== "block").map((e) => e.data.height as number));
    await c.waitFor("the block-only client past every event", () => blocksOnly.of("block").some((b) => (b.height as number) >= last));
    assert.deepEqual([...new Set(blocksOnly.events.map((e) => e.event))], ["block"], "it asked for blocks only");
    await c.waitFor("a heartbeat", () => blocksOnly.comments.includes("heartbeat"));
    all.close();
    blocksOnly.close();
    await c.waitFor("both gone from the hub", () => streamHubOf(app).clientCount === 0);
  });

  it("refuses unknown topics (400) and a client past clientsMax (503), with codes", async () => {
    const bad = await open("/api/v1/stream?topics=block,weather");
    assert.equal(bad.res.statusCode, 400);
    await c.waitFor("the error's body", () => bad.ended);
    assert.equal((JSON.parse(bad.body) as { code: string }).code, "PG_ERR_BAD_REQUEST");
    const four = await Promise.all([1, 2, 3, 4].map(() => open("/api/v1/stream?topics=island")));
    assert.ok(four.every((s) => s.res.statusCode === 200), "the box's own tools on loopback: not held to clientsPerAddressMax (2)");
    const fifth = await open("/api/v1/stream");
    assert.equal(fifth.res.statusCode, 503);
    await c.waitFor("the error's body", () => fifth.ended);
    assert.equal((JSON.parse(fifth.body) as { code: string }).code, "PG_ERR_STREAM_FULL");
    for (const s of four) s.close();
    await c.waitFor("the four gone", () => streamHubOf(app).clientCount === 0);
    const again = await open("/api/v1/stream?topics=island");
    assert.equal(again.res.statusCode, 200, "room again once they left");
    again.close();
  });

  it("refuses a client a stream past clientsPerAddressMax from its address (429, with a code), and counts it", async () => {
    const counted = buildHttp(node, { stream: { clientsPerAddressMax: 2 }, rateLimits: { exemptLoopback: false } });
    const at = await listen(counted);
    try {
      const two = await Promise.all([1, 2].map(() => open("/api/v1/stream?topics=block", at)));
      assert.ok(two.every((s) => s.res.statusCode === 200));
      const third = await open("/api/v1/stream?topics=block", at);
      assert.equal(third.res.statusCode, 429);
      await c.waitFor("the error's body", () => third.ended);
      const error = JSON.parse(third.body) as { code: string; message: string };
      assert.equal(error.code, "PG_ERR_STREAM_CLIENT_LIMIT");
      assert.match(error.message, /2 streams from 127\.0\.0\.1 are open/);
      assert.equal(streamHubOf(counted).stats.refused, 1);
      (two[0] as SseClient).close();
      await c.waitFor("one gone", () => streamHubOf(counted).clientCount === 1);
      assert.equal((await open("/api/v1/stream?topics=block", at)).res.statusCode, 200, "room again");
    } finally {
      await counted.close();
    }
  });

  it("drops a client that stops reading once its waiting bytes pass the bound; a client that reads gets every event", async () => {
    const BOUND = 64 * 1024;
    const small = buildHttp(node, { stream: { clientBufferBytesMax: BOUND } });
    const at = await listen(small);
    const hub = streamHubOf(small);
    try {
      const fast = await open("/api/v1/stream?topics=reading", at);
      // A client that sends its request and never reads: nothing takes its bytes off the socket.
      const port = Number(new URL(at).port);
      const slow = connect(port, "127.0.0.1");
      slow.write("GET /api/v1/stream?topics=reading HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
      slow.pause();
      const slowClosed = new Promise<void>((resolve) => slow.on("close", () => resolve()));
      slow.on("error", () => {});
      await c.waitFor("both connected", () => hub.clientCount === 2);
      // Events as fast as the hub takes them, a batch per turn of the event loop, until the slow one is dropped.
      const event = (n: number): StreamEvent => ({ type: "reading", data: { height: n, member: 9, meterId: 1, timeMs: n, importWh: n, exportWh: 0, powerW: 1_000, quality: 0 } });
      let published = 0;
      while (hub.stats.dropped === 0 && published < 500_000) {
        for (let i = 0; i < 100; i++) hub.publish(event(published++));
        await new Promise((resolve) => setImmediate(resolve));
      }
      assert.equal(hub.stats.dropped, 1, `dropped after ${published} events`);
      assert.ok(published * sseFrame(published, event(published)).length > BOUND, "more than the bound was sent");
      assert.equal(hub.clientCount, 1, "the reading client stays");
      slow.resume(); // now read: what reached the kernel, then the end
      await slowClosed;
      for (let i = 0; i < 10; i++) hub.publish(event(published++));
      await c.waitFor("every event at the reading client", () => fast.of("reading").length === published, 30_000);
      assert.ok(fast.of("reading").every((d, i) => d.height === i), "in order, none missing");
      const metrics = (await small.inject({ url: "/metrics" })).body;
      assert.match(metrics, /^peergrid_stream_dropped_total 1$/m);
      assert.match(metrics, /^peergrid_stream_clients 1$/m);
      fast.close();
    } finally {
      await small.close();
    }
  });

  it("closing the server ends the streams it serves", async () => {
    const other = buildHttp(node);
    const at = await listen(other);
    const client = await open("/api/v1/stream", at);
    await c.waitFor("connected", () => streamHubOf(other).clientCount === 1);
    await other.close(); // would wait for ever on an open stream
    await c.waitFor("the client sees the end", () => client.ended);
  });

  it("eventsOfBlock, sseFrame and parseTopics: the pure part", () => {
    assert.deepEqual(parseTopics(undefined), new Set(["block", "reading", "clearing", "trade", "island"]));
    assert.deepEqual(parseTopics("reading,block"), new Set(["reading", "block"]));
    assert.equal(parseTopics("block,"), null);
    assert.equal(parseTopics("blocks"), null);
    const frame = sseFrame(7, { type: "island", data: { height: 3, islanded: false, sinceMs: null, changeMs: 12 } });
    assert.equal(frame, 'id: 7\nevent: island\ndata: {"height":3,"islanded":false,"sinceMs":null,"changeMs":12}\n\n');
    const stored = node.ledger.store.getBlock(node.ledger.state.height);
    assert.ok(stored !== null);
    const result = { state: node.ledger.state, results: stored.results, market: null };
    const events = eventsOfBlock(stored.block, result, -1);
    assert.equal(events[0]?.type, "block");
    assert.ok(events.some((e) => e.type === "island"), "the box is islanded (the first test): against 'connected before', an island event");
    const since = (node.ledger.state.tree.get(GLOBAL_KEY) as GlobalRecord).islandedSinceMs;
    assert.ok(!eventsOfBlock(stored.block, result, since).some((e) => e.type === "island"), "no change, no event");
    // A clearing with trades: its event, then one event a trade, in the clearing's order.
    const trade = (index: number) => ({ kind: "trade" as const, intervalStartMs: 120_000, index, buyOrder: new Uint8Array(32).fill(index), sellOrder: new Uint8Array(32).fill(9), buyer: 1, seller: 2, energyWh: 50 + index, buyerPriceMicroPerKWh: 150_000, sellerPriceMicroPerKWh: 140_000 });
    const clearing = { intervalStartMs: 120_000, rule: "pay-as-bid" as const, priceMicroPerKWh: null, volumeWh: 101, buyOrders: 2, sellOrders: 1, trades: [trade(0), trade(1)], hash: new Uint8Array(32) };
    const market = { clearing } as unknown as NonNullable<Parameters<typeof eventsOfBlock>[1]["market"]>;
    const withTrades = eventsOfBlock(stored.block, { ...result, market }, since).filter((e) => e.type === "clearing" || e.type === "trade");
    assert.deepEqual(
      withTrades.map((e) => [e.type, e.type === "trade" ? e.data.index : e.data.trades]),
      [["clearing", 2], ["trade", 0], ["trade", 1]],
    );
    assert.deepEqual(withTrades[1]?.data, {
      height: stored.block.header.height, intervalStartMs: 120_000, index: 0, buyOrder: "00".repeat(32), sellOrder: "09".repeat(32), buyer: 1, seller: 2, energyWh: 50, buyerPriceMicroPerKWh: 150_000, sellerPriceMicroPerKWh: 140_000,
    });
  });
});

/** A response as the hub sees it: what it writes piles up in writableLength until the client "reads" (take()). */
class FakeResponse extends EventEmitter {
  destroyed = false;
  writableEnded = false;
  writableLength = 0;
  status = 0;
  writeHead(status: number): this {
    this.status = status;
    return this;
  }
  write(chunk: string): boolean {
    this.writableLength += Buffer.byteLength(chunk);
    return true;
  }
  take(): void {
    this.writableLength = 0;
  }
  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      this.emit("close");
    }
    return this;
  }
  end(): this {
    this.writableEnded = true;
    return this.destroy();
  }
}

describe("the stream hub's bounds (responses that only count what waits)", () => {
  const fakeNode = { onBlock: () => () => {}, ledger: { state: { tree: { get: () => undefined } } } } as unknown as StreamNode;
  const hubs: StreamHub[] = [];
  const hubOf = (limits: ConstructorParameters<typeof StreamHub>[1]) => {
    const hub = new StreamHub(fakeNode, limits);
    hubs.push(hub);
    return hub;
  };
  const attach = (hub: StreamHub, address: string | null = null) => {
    const res = new FakeResponse();
    return { res, attached: hub.attach(res as unknown as ServerResponse, new Set(["reading"] as const), address) };
  };
  const reading = (n: number): StreamEvent => ({ type: "reading", data: { height: n, member: 1, meterId: 1, timeMs: n, importWh: n, exportWh: 0, powerW: 0, quality: 0 } });
  after(() => {
    for (const hub of hubs) hub.close();
  });

  it("shares buffersBytesMax among the clients: a slow one is dropped at its share, not at the per-client bound", () => {
    const hub = hubOf({ clientBufferBytesMax: 100_000, buffersBytesMax: 20_000 });
    const fast = attach(hub);
    const slow = attach(hub);
    assert.equal(hub.clientBoundBytes(), 10_000, "two clients: half of 20,000 each");
    let n = 0;
    while (hub.stats.dropped === 0 && n < 10_000) {
      hub.publish(reading(n++));
      fast.res.take();
    }
    assert.equal(hub.stats.dropped, 1);
    assert.ok(slow.res.destroyed && !fast.res.destroyed, "the one that did not read");
    assert.ok(slow.res.writableLength > 10_000 && slow.res.writableLength < 11_000, `dropped once past its share: ${slow.res.writableLength} bytes waiting`);
    assert.equal(hub.clientBoundBytes(), 20_000, "alone, the reader may have all of it");
  });

  it("counts clients by address, and frees the place when one leaves; null addresses are not counted", () => {
    const hub = hubOf({ clientsPerAddressMax: 2, clientsMax: 5 });
    const a = [attach(hub, "192.0.2.1"), attach(hub, "192.0.2.1")];
    assert.ok(a.every((x) => x.attached));
    assert.equal(hub.refusal("192.0.2.1"), "address");
    assert.equal(attach(hub, "192.0.2.1").attached, false);
    assert.equal(hub.refusal("192.0.2.2"), null, "another address has its own");
    assert.equal(hub.refusal(null), null);
    a[0]?.res.destroy();
    a[0]?.res.destroy(); // a second close counts once
    assert.equal(hub.refusal("192.0.2.1"), null, "room again once one left");
    assert.ok(attach(hub, null).attached && attach(hub, null).attached);
    assert.equal(hub.clientCount, 3);
    assert.ok(attach(hub, "192.0.2.3").attached && attach(hub, "192.0.2.5").attached);
    assert.equal(hub.refusal(null), "full", "clientsMax counts every client");
    assert.equal(attach(hub, null).attached, false);
  });

  it("does not attach a response whose connection closed already, and a broken connection's error does not throw", () => {
    const hub = hubOf({});
    const gone = new FakeResponse();
    gone.destroy();
    assert.equal(hub.attach(gone as unknown as ServerResponse, new Set(["block"] as const)), false);
    assert.equal(hub.clientCount, 0, "it would hold a place for ever: its close has been and gone");
    const broken = attach(hub, "192.0.2.4");
    assert.doesNotThrow(() => broken.res.emit("error", Object.assign(new Error("write EPIPE"), { code: "EPIPE" })));
    assert.equal(hub.clientCount, 0);
    assert.equal(hub.refusal("192.0.2.4"), null);
    hub.publish(reading(1)); // nothing is written to it any more
    assert.equal(hub.stats.frames, 0);
  });
});
