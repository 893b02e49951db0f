// The minimal HTTP API, through fastify.inject() (no sockets for API logic)
// on a real one-box cluster: its ledger and Raft log on disk.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildHttp } from "../../daemon/http.js";
import type { BoxNode } from "../../daemon/node.js";
import { toHex } from "../../ledger/hash.js";
import type { NodeSigner } from "../../ledger/keys.js";
import { Quality, signTx } from "../../ledger/tx.js";
import { BoxCluster } from "../helpers/box-cluster.js";

describe("HTTP API v1", () => {
  const c = new BoxCluster(1);
  let node: BoxNode;
  let app: FastifyInstance;
  let seq = 0;
  const reading = (meterId = 3) =>
    signTx(
      {
        author: 0,
        seq: ++seq,
        body: { type: "reading", meterId, timeMs: Date.now(), importWh: 10 + seq, exportWh: 0, powerW: 100, voltagesDeciV: [2300], frequencyMilliHz: 50_000, quality: Quality.good },
      },
      c.signers[0] as NodeSigner,
      node.ledger.state.chain.hash,
    );

  before(async () => {
    node = await c.start(0);
    app = buildHttp(node);
    await c.waitFor("leadership and a block", () => node.role === "leader" && node.ledger.state.height >= 1);
  });
  after(async () => {
    await app.close();
    await c.close();
  });

  it("GET /api/v1/status names the box, its role, term, head and peers", async () => {
    const r = await app.inject({ url: "/api/v1/status" });
    assert.equal(r.statusCode, 200);
    const s = r.json();
    assert.equal(s.boxId, 0);
    assert.equal(s.name, "box-0");
    assert.equal(s.role, "leader");
    assert.ok(s.term >= 1 && s.height >= 1);
    assert.equal(s.lastBlockHash, toHex(node.ledger.store.getBlock(s.height)?.block.hash ?? new Uint8Array()), "the hash of the block at its height");
    assert.deepEqual(s.peers, []);
  });

  it("POST /api/v1/tx takes raw bytes or hex JSON; GET /api/v1/tx/:id follows it to its block", async () => {
    const a = reading();
    const r1 = await app.inject({ method: "POST", url: "/api/v1/tx", headers: { "content-type": "application/octet-stream" }, payload: Buffer.from(a.bytes) });
    assert.equal(r1.statusCode, 202, r1.body);
    assert.equal(r1.json().status, "pending");
    assert.equal(r1.json().id, toHex(a.id));
    const b = reading(4);
    const r2 = await app.inject({ method: "POST", url: "/api/v1/tx", payload: { tx: toHex(b.bytes) } });
    assert.equal(r2.statusCode, 202, r2.body);
    const fate = await c.waitFor("commit", async () => {
      const r = await app.inject({ url: `/api/v1/tx/${toHex(b.id)}` });
      const j = r.json() as { status: string; result: string; height: number };
      return j.status === "committed" ? j : null;
    });
    const f = fate;
    assert.equal(f.result, "ok");
    const block = await app.inject({ url: `/api/v1/blocks/${f.height}` });
    assert.equal(block.statusCode, 200);
    const body = block.json();
    assert.equal(body.height, f.height);
    assert.ok(body.txs.some((t: { id: string; result: string }) => t.id === toHex(b.id) && t.result === "ok"));
    assert.equal(body.proposer, 0);
    // The same bytes again: the fate, not a second copy.
    const r3 = await app.inject({ method: "POST", url: "/api/v1/tx", payload: { tx: toHex(b.bytes) } });
    assert.equal(r3.statusCode, 200);
    assert.equal(r3.json().status, "committed");
  });

  it("answers bad input with a stable code and the right status, and stores nothing", async () => {
    const height = node.ledger.state.height;
    const cases: { payload: string | Buffer | object; type?: string; status: number; code: RegExp }[] = [
      { payload: Buffer.from([9, 9, 9]), type: "application/octet-stream", status: 400, code: /^PG_ERR_DECODE_/ },
      { payload: Buffer.alloc(4096, 1), type: "application/octet-stream", status: 413, code: /^PG_ERR_BODY_TOO_LARGE$/ },
      { payload: { tx: "zz" }, status: 400, code: /^PG_ERR_BAD_REQUEST$/ },
      { payload: { tx: "abc" }, status: 400, code: /^PG_ERR_BAD_REQUEST$/ },
      { payload: { nope: 1 }, status: 400, code: /^PG_ERR_BAD_REQUEST$/ },
      { payload: "{not json", type: "application/json", status: 400, code: /^PG_ERR_|^FST_/ },
      { payload: "hello", type: "text/plain", status: 415, code: /^PG_ERR_UNSUPPORTED_MEDIA_TYPE$/ },
    ];
    for (const t of cases) {
      const r = await app.inject({ method: "POST", url: "/api/v1/tx", payload: t.payload as string, ...(t.type !== undefined && { headers: { "content-type": t.type } }) });
      assert.equal(r.statusCode, t.status, `${JSON.stringify(t.payload).slice(0, 40)}: ${r.body}`);
      assert.match(r.json().code, t.code, r.body);
      assert.equal(typeof r.json().message, "string");
    }
    const forged = reading();
    const bytes = Buffer.from(forged.bytes);
    bytes[bytes.length - 2] = (bytes[bytes.length - 2] as number) ^ 0xff;
    const r = await app.inject({ method: "POST", url: "/api/v1/tx", headers: { "content-type": "application/octet-stream" }, payload: bytes });
    assert.equal(r.statusCode, 422);
    assert.equal(r.json().code, "PG_ERR_TX_BAD_SIGNATURE");
    seq--; // that number was never used
    const replay = await app.inject({ method: "POST", url: "/api/v1/tx", payload: { tx: toHex(signTx({ author: 0, seq: 1, body: { type: "cancel", orderId: new Uint8Array(32) } }, c.signers[0] as NodeSigner, node.ledger.state.chain.hash).bytes) } });
    assert.equal(replay.statusCode, 409, replay.body);
    assert.equal(replay.json().code, "PG_ERR_MEMPOOL_STALE_SEQUENCE");
    // Nothing of the above reached a block.
    await c.waitFor("a block or two", () => node.ledger.state.height > height + 1);
    for (let h = height + 1; h <= node.ledger.state.height; h++) assert.deepEqual(node.ledger.store.getBlock(h)?.block.txs.length, 0);
  });

  it("404s with codes for unknown blocks, transactions and routes; 400 for malformed ids", async () => {
    const r1 = await app.inject({ url: "/api/v1/blocks/999999999" });
    assert.equal(r1.statusCode, 404);
    assert.equal(r1.json().code, "PG_ERR_BLOCK_NOT_FOUND");
    const r2 = await app.inject({ url: `/api/v1/tx/${"ab".repeat(32)}` });
    assert.equal(r2.statusCode, 404);
    assert.equal(r2.json().code, "PG_ERR_TX_NOT_FOUND");
    const r3 = await app.inject({ url: "/api/v1/tx/not-hex" });
    assert.equal(r3.statusCode, 400);
    assert.equal(r3.json().code, "PG_ERR_BAD_REQUEST");
    const r4 = await app.inject({ url: "/api/v1/blocks/-1" });
    assert.equal(r4.statusCode, 400);
    const r5 = await app.inject({ url: "/api/v2/anything" });
    assert.equal(r5.statusCode, 404);
    assert.equal(r5.json().code, "PG_ERR_NO_ROUTE");
  });

  it("GET /api/v1/status?resetLatency=true reports the commit latencies, then forgets them", async () => {
    const before = (await app.inject({ url: "/api/v1/status?resetLatency=true" })).json();
    assert.ok(before.commitLatencyMs.count >= 2, "the transactions committed above were measured");
    const afterReset = (await app.inject({ url: "/api/v1/status" })).json();
    assert.deepEqual(afterReset.commitLatencyMs, { count: 0, window: 0, p50: null, p99: null, max: null });
    assert.equal((await app.inject({ url: "/api/v1/status?resetLatency=maybe" })).statusCode, 400);
  });

  it("only the box itself or an admin resets the statistics: not any client on the LAN", async () => {
    const token = "t".repeat(40);
    const admin = buildHttp(node, { adminToken: token });
    try {
      const r = await app.inject({ method: "POST", url: "/api/v1/tx", payload: { tx: toHex(reading().bytes) } });
      assert.equal(r.statusCode, 202, r.body);
      await c.waitFor("its commit measured", () => node.commitLatency.summary().count > 0);
      for (const url of ["/api/v1/status?resetLatency=true", "/api/v1/meters?resetTimings=true"]) {
        for (const headers of [{}, { authorization: "Bearer wrong" }]) {
          const r = await admin.inject({ url, remoteAddress: "192.0.2.5", headers });
          assert.deepEqual([r.statusCode, r.json().code], [403, "PG_ERR_RESET_FORBIDDEN"], `${url} ${JSON.stringify(headers)}`);
        }
      }
      assert.ok(node.commitLatency.summary().count > 0, "nothing was reset");
      assert.equal((await admin.inject({ url: "/api/v1/status", remoteAddress: "192.0.2.5" })).statusCode, 200, "the status itself is for anyone");
      const reset = await admin.inject({ url: "/api/v1/status?resetLatency=true", remoteAddress: "192.0.2.5", headers: { authorization: `Bearer ${token}` } });
      assert.equal(reset.statusCode, 200, "an admin may");
      assert.equal(node.commitLatency.summary().count, 0);
    } finally {
      await admin.close();
    }
  });
});
