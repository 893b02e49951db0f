// The Raft transport with real sockets on 127.0.0.1 (ephemeral ports).
// Waits are bounded (waitFor fails after a few seconds); nothing asserts speed.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import net from "node:net";
import { afterEach, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import {
  FrameDecoder,
  LinkRole,
  SendQueue,
  backoffDelayMs,
  encodeHello,
  frame,
  frameToSeal,
  memberKeysOf,
  newEphemeralKey,
} from "../../daemon/transport.js";
import { DecodeError } from "../../ledger/errors.js";
import { NodeSigner } from "../../ledger/keys.js";
import type { Entry, Message } from "../../ledger/raft/raft.js";
import { encodeMessage } from "../../ledger/raft/wire.js";
import { Harness, keyFor } from "../ledger/fixtures.js";
import { CHAIN, Cluster, HOST, type HandRolledLink, closed, connect, freePort, handshake, heartbeat, waitFor } from "../helpers/transport-peers.js";

let cluster: Cluster;
afterEach(async () => {
  await cluster.closeAll();
});

describe("transport: pure parts", () => {
  cluster = new Cluster();

  test("FrameDecoder joins frames split anywhere and refuses zero or oversized lengths", () => {
    const payloads = [Uint8Array.from([1]), new Uint8Array(300).fill(2), Uint8Array.from([3, 4])];
    const stream = Buffer.concat(payloads.map(frame));
    for (const cut of [1, 2, 3, 5, 7, 100, stream.length]) {
      const d = new FrameDecoder(1000);
      const got: Buffer[] = [];
      for (let i = 0; i < stream.length; i += cut) {
        d.push(stream.subarray(i, i + cut));
        for (let f = d.next(); f !== null; f = d.next()) got.push(f);
      }
      assert.deepEqual(got.map((b) => [...b]), payloads.map((p) => [...p]));
      assert.equal(d.bufferedBytes, 0);
    }
    const decoderWith = (bytes: number[], max = 1000) => {
      const d = new FrameDecoder(max);
      d.push(Buffer.from(bytes));
      return d;
    };
    assert.throws(() => decoderWith([0, 0, 0, 0]).next(), DecodeError);
    assert.throws(() => decoderWith([0, 0, 3, 233]).next(), DecodeError); // 1001
    // A limit raised between two frames applies to the next header, though both arrived together.
    const d = decoderWith([0, 0, 0, 1, 9, 0, 0, 0, 200, ...new Array<number>(200).fill(1)], 100);
    assert.deepEqual([...(d.next() as Buffer)], [9]);
    d.frameBytesMax = 1000;
    assert.equal(d.next()?.length, 200);
  });

  test("SendQueue drops the oldest at its byte budget and never exceeds it", () => {
    const q = new SendQueue(10);
    assert.equal(q.push(Buffer.alloc(4, 1)), 0);
    assert.equal(q.push(Buffer.alloc(4, 2)), 0);
    assert.equal(q.push(Buffer.alloc(4, 3)), 1); // the 1s go
    assert.equal(q.bytes, 8);
    assert.equal(q.shift()?.[0], 2);
    assert.equal(q.push(Buffer.alloc(11)), 1); // larger than the whole budget: itself dropped
    assert.equal(q.length, 1);
  });

  test("backoff doubles from the minimum, caps at the maximum, and jitters within [base/2, base)", () => {
    assert.equal(backoffDelayMs(0, 100, 10_000, () => 0), 50);
    assert.equal(backoffDelayMs(3, 100, 10_000, () => 0), 400);
    assert.equal(backoffDelayMs(50, 100, 10_000, () => 0), 5_000);
    assert.ok(backoffDelayMs(50, 100, 10_000, () => 0.999999) < 10_000);
  });
});

test("memberKeysOf: only active members with the box or auditor role have a key", () => {
  const h = new Harness([
    { name: "box", signer: keyFor("box"), roles: ["box", "admin"] },
    { name: "user", signer: keyFor("user"), roles: ["user"] },
    { name: "auditor", signer: keyFor("auditor"), roles: ["auditor"] },
  ]);
  const members = memberKeysOf(() => h.state);
  assert.deepEqual(members(0), keyFor("box").publicKey);
  assert.equal(members(1), null, "a user does not run Raft");
  assert.deepEqual(members(2), keyFor("auditor").publicKey);
  assert.equal(members(3), null);
  assert.equal(members(-1), null);
});

describe("transport: sockets", () => {
  test("two nodes exchange messages, entries included", async () => {
    cluster = new Cluster();
    cluster.enrol(1, 2);
    const a = await cluster.start(1);
    const b = await cluster.start(2);
    const entries: Entry[] = [
      { term: 1, index: 1, kind: 0, data: new Uint8Array(0) },
      { term: 1, index: 2, kind: 0, data: new Uint8Array(5000).fill(9) },
    ];
    const append: Message = { type: "append", from: 1, to: 2, term: 1, prevIndex: 0, prevTerm: 0, commit: 0, entries };
    a.send(append);
    b.send({ type: "appendResp", from: 2, to: 1, term: 1, reject: false, index: 2, hintIndex: 0, hintTerm: 0 });
    await waitFor(() => cluster.received(1).length === 1 && cluster.received(2).length === 1, "both messages");
    assert.deepEqual(cluster.received(2)[0], { from: 1, m: append });
    assert.equal(cluster.received(1)[0]?.m.type, "appendResp");
    assert.equal(a.counters.authenticated + b.counters.authenticated, 4, "two links, each authenticated at both ends");
    // Order is kept on a link.
    for (let i = 1; i <= 50; i++) a.send(heartbeat(1, 2, i));
    await waitFor(() => cluster.received(2).length === 51, "50 heartbeats");
    assert.deepEqual(cluster.received(2).slice(1).map((r) => (r.m as { commit: number }).commit), Array.from({ length: 50 }, (_, i) => i + 1));
  });

  test("three nodes: everyone reaches everyone", async () => {
    cluster = new Cluster();
    cluster.enrol(1, 2, 3);
    const ts = [await cluster.start(1), await cluster.start(2), await cluster.start(3)];
    for (const from of [1, 2, 3]) for (const to of [1, 2, 3]) if (from !== to) ts[from - 1]?.send(heartbeat(from, to));
    await waitFor(() => [1, 2, 3].every((id) => cluster.received(id).length === 2), "two messages at each node");
    for (const id of [1, 2, 3]) {
      assert.deepEqual(cluster.received(id).map((r) => r.from).sort(), [1, 2, 3].filter((x) => x !== id));
    }
  });

  test("a non-member key and an impostor's key are refused and counted", async () => {
    cluster = new Cluster();
    cluster.enrol(1, 2);
    const a = await cluster.start(1);
    const outsider = await cluster.start(3); // not enrolled with a
    outsider.send(heartbeat(3, 1)); // 3 knows 1 as a member ... but not vice versa
    await waitFor(() => a.counters.refusedUnauthenticated >= 1, "outsider refused");
    const impostor = await cluster.start(2, { signer: NodeSigner.generate() }); // claims 2 with another key
    impostor.send(heartbeat(2, 1));
    await waitFor(() => a.counters.refusedUnauthenticated >= 2, "impostor refused");
    assert.equal(cluster.received(1).length, 0, "nothing delivered from either");
    assert.equal(a.connectedInbound().length, 0);
  });

  test("a node refuses a peer from another chain, and a peer claiming to be itself", async () => {
    cluster = new Cluster();
    cluster.enrol(1, 2);
    const a = await cluster.start(1);
    for (const [chain, index] of [[new Uint8Array(32).fill(8), 2], [CHAIN, 1]] as const) {
      const s = await connect(a.port);
      s.on("error", () => {});
      s.write(frame(encodeHello({ chainHash: chain, nonce: new Uint8Array(32), ephemeral: newEphemeralKey().publicKey, index })));
      await closed(s);
    }
    assert.equal(a.counters.refusedUnauthenticated, 2);
  });

  test("a connection that never completes the handshake is closed at the timeout; inbound connections are capped", async () => {
    cluster = new Cluster();
    cluster.enrol(1);
    const a = await cluster.start(1, { limits: { handshakeTimeoutMs: 300, inboundConnectionsMax: 2 } });
    const silent = [await connect(a.port), await connect(a.port), await connect(a.port)];
    for (const s of silent) s.on("error", () => {});
    await Promise.all(silent.map((s) => closed(s)));
    assert.equal(a.counters.refusedInboundLimit, 1, "the third is refused at once");
    assert.equal(a.counters.refusedUnauthenticated, 2, "the first two time out");
  });

  test("a removed member is disconnected on refreshMembership() and refused afterwards", async () => {
    cluster = new Cluster();
    cluster.enrol(1, 2);
    const a = await cluster.start(1);
    const b = await cluster.start(2);
    a.send(heartbeat(1, 2));
    b.send(heartbeat(2, 1));
    await waitFor(() => cluster.received(1).length === 1 && cluster.received(2).length === 1, "both linked");
    assert.equal(a.peerStats(2).connected, true);
    cluster.members.delete(2);
    a.refreshMembership();
    assert.equal(a.counters.removedMembers, 2, "both the inbound and the outbound link");
    assert.equal(a.peerStats(2).connected, false);
    a.send(heartbeat(1, 2));
    assert.equal(a.counters.droppedNotMember, 1, "nothing is queued for a removed member");
    b.send(heartbeat(2, 1)); // b redials; a's handshake asks the lookup again
    await waitFor(() => a.counters.refusedUnauthenticated >= 1, "removed member refused at handshake");
    assert.equal(cluster.received(1).length, 1);
  });

  test("a garbled frame and an oversized length close the connection; the next good one works", async () => {
    cluster = new Cluster();
    cluster.enrol(1, 2, 5);
    const a = await cluster.start(1);
    // Before authentication: garbage where a hello belongs, then a 4 GiB length prefix.
    for (const bytes of [frame(Uint8Array.from([1, 2, 3, 4, 5])), Buffer.from([0xff, 0xff, 0xff, 0xff, 0])]) {
      const s = await connect(a.port);
      s.on("error", () => {});
      s.write(bytes);
      await closed(s);
    }
    assert.equal(a.counters.refusedBadFrame, 2);
    // After authentication (a hand-rolled member 5, its frames MACed): a payload that is not a
    // message, then one claiming to come from someone else, then a length above the limit.
    const bad: ((l: HandRolledLink) => Buffer)[] = [(l) => l.seal(Uint8Array.from([1, 99, 0])), (l) => l.seal(encodeMessage(heartbeat(2, 1))), () => Buffer.from([0x02, 0, 0, 0])];
    for (const bytes of bad) {
      const s = await connect(a.port);
      const link = await handshake(s, LinkRole.dialer, 5, cluster.key(5));
      s.write(bytes(link));
      await closed(s);
    }
    assert.equal(a.counters.refusedBadFrame, 4);
    assert.equal(a.counters.refusedWrongSender, 1);
    assert.equal(a.counters.refusedBadMac, 0);
    const b = await cluster.start(2);
    b.send(heartbeat(2, 1));
    await waitFor(() => cluster.received(1).length === 1, "a good peer's message");
  });

  test("after the handshake, a frame injected, altered, replayed, reordered or missing closes the link; nothing of it is delivered", async () => {
    cluster = new Cluster();
    cluster.enrol(1, 5);
    const a = await cluster.start(1);
    // A member's good frame, then what someone on the wire could do to the stream.
    const attacks: [string, (l: HandRolledLink) => Buffer[]][] = [
      ["an unMACed frame", () => [frame(encodeMessage(heartbeat(5, 1, 10)))]],
      ["a MAC under another key", () => [frameToSeal(encodeMessage(heartbeat(5, 1, 11)))]],
      ["one byte altered", (l) => {
        const f = l.seal(encodeMessage(heartbeat(5, 1, 12)));
        f[6] = (f[6] as number) ^ 1;
        return [f];
      }],
      ["a frame replayed", (l) => {
        const f = l.seal(encodeMessage(heartbeat(5, 1, 13)));
        return [f, Buffer.from(f)];
      }],
      ["two frames swapped", (l) => {
        const first = l.seal(encodeMessage(heartbeat(5, 1, 14)));
        const second = l.seal(encodeMessage(heartbeat(5, 1, 15)));
        return [second, first];
      }],
      ["a frame missing", (l) => {
        l.next++; // frame 0 never arrives
        return [l.seal(encodeMessage(heartbeat(5, 1, 16)))];
      }],
    ];
    for (const [what, frames] of attacks) {
      const s = await connect(a.port);
      const link = await handshake(s, LinkRole.dialer, 5, cluster.key(5));
      s.write(Buffer.concat(frames(link)));
      await closed(s);
      assert.equal(a.counters.refusedBadMac, attacks.indexOf(attacks.find(([w]) => w === what) as (typeof attacks)[number]) + 1, `${what}: refused`);
    }
    // Of all that, only the replayed frame's original arrived (once); a swap delivers nothing,
    // since the first frame on the wire is out of turn.
    assert.deepEqual(cluster.received(1).map((r) => (r.m as { commit: number }).commit), [13]);
    // An honest member's link works, even when its first frames (one larger than a handshake
    // frame) arrive in the same read as its PROOF.
    const big: Message = { type: "append", from: 5, to: 1, term: 1, prevIndex: 0, prevTerm: 0, commit: 0, entries: [{ term: 1, index: 1, kind: 0, data: new Uint8Array(300).fill(3) }] };
    const s = await connect(a.port);
    const link = await handshake(s, LinkRole.dialer, 5, cluster.key(5), (l) => [l.seal(encodeMessage(big)), l.seal(encodeMessage(heartbeat(5, 1, 20)))]);
    s.write(link.seal(encodeMessage(heartbeat(5, 1, 21))));
    await waitFor(() => cluster.received(1).length === 4, "the honest frames");
    assert.deepEqual(cluster.received(1).map((r) => (r.m as { commit?: number }).commit), [13, 0, 20, 21]);
    assert.equal(a.counters.refusedBadFrame, 0);
    s.destroy();
  });

  test("a peer that is down is redialled with backoff and gets the queued message once it is up", async () => {
    cluster = new Cluster();
    cluster.enrol(1, 2);
    const port = await freePort();
    const a = await cluster.start(1);
    cluster.addresses.set(2, { host: HOST, port });
    a.send(heartbeat(1, 2, 77));
    await waitFor(() => a.counters.reconnects >= 3, "several redials");
    assert.equal(a.peerStats(2).queuedMessages, 1, "held while the peer is down");
    await cluster.start(2, { port });
    await waitFor(() => cluster.received(2).length === 1, "delivery after the peer came up");
    assert.equal((cluster.received(2)[0]?.m as { commit: number }).commit, 77);
    // Restart the peer: the link is lost, redialled, and traffic flows again.
    await cluster.nodes.get(2)?.close();
    cluster.nodes.delete(2);
    await cluster.start(2, { port });
    // A message written before a noticed the old link was gone is lost with it, as TCP
    // allows; Raft's heartbeats repeat, so the test repeats too.
    await waitFor(() => {
      a.send(heartbeat(1, 2, 78));
      return cluster.received(2).some((r) => (r.m as { commit: number }).commit === 78);
    }, "delivery after a restart");
  });

  test("a peer that never reads: the send queue stays within its byte limit and drops the oldest", async () => {
    cluster = new Cluster();
    cluster.enrol(1, 2);
    const queueMax = 256 * 1024;
    const a = await cluster.start(1, { limits: { sendQueueBytesMax: queueMax } });
    // Member 2 is a hand-rolled peer: it authenticates, then stops reading.
    const sockets: net.Socket[] = [];
    const sink = net.createServer((s) => {
      sockets.push(s);
      void handshake(s, LinkRole.acceptor, 2, cluster.key(2)).then(() => s.pause(), () => {});
    });
    await new Promise<void>((r) => sink.listen(0, HOST, () => r()));
    cluster.addresses.set(2, { host: HOST, port: (sink.address() as net.AddressInfo).port });
    const data = new Uint8Array(64 * 1024).fill(1);
    const frameBytes = data.length + 64;
    let maxQueued = 0;
    let maxSocket = 0;
    try {
      a.send(heartbeat(1, 2));
      await waitFor(() => a.peerStats(2).connected, "link up");
      for (let i = 0; i < 2000 && a.counters.droppedQueueFull < 10; i++) {
        a.send({ type: "append", from: 1, to: 2, term: 1, prevIndex: i, prevTerm: 1, commit: 0, entries: [{ term: 1, index: i + 1, kind: 0, data }] });
        const st = a.peerStats(2);
        maxQueued = Math.max(maxQueued, st.queuedBytes);
        maxSocket = Math.max(maxSocket, st.socketBufferedBytes);
        if (i % 20 === 0) await new Promise((r) => setImmediate(r)); // let the socket move what the kernel accepts
      }
      assert.ok(a.counters.droppedQueueFull >= 10, `oldest dropped (${a.counters.droppedQueueFull})`);
      assert.ok(maxQueued <= queueMax, `queue ${maxQueued} within ${queueMax}`);
      // The socket holds at most its highWaterMark (16 KiB) plus one frame: we stop writing when it is full.
      assert.ok(maxSocket <= 16 * 1024 + 2 * frameBytes, `socket buffer ${maxSocket}`);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => sink.close(() => r()));
    }
  });

  test("close() leaves no open handles: a process that used transports exits by itself", async () => {
    cluster = new Cluster();
    const script = fileURLToPath(new URL("../helpers/transport-child.js", import.meta.url));
    const child = spawn(process.execPath, [script], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | string>((resolve) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve("did not exit within 8 s: something was left open");
      }, 8_000);
      child.once("exit", (c) => {
        clearTimeout(timer);
        resolve(c ?? -1);
      });
    });
    assert.equal(code, 0, err);
    assert.equal(out, "closed\n");
  });
});
