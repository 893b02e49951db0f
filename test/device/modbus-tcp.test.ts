// The Modbus TCP path against an independent peer: Debian's python3-pymodbus
// serving register images of real meter maps. Our Bus and TcpLink read the
// maps' blocks and decode them; two meters on one bus never mix their
// values; an exception is an answer; a unit that does not answer times out
// without disturbing the next request; a meter that goes away and comes
// back is read again without a restart. Waits are bounded; nothing asserts
// speed.
import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, it } from "node:test";
import { Bus, ModbusError } from "../../device/bus.js";
import { TcpLink } from "../../device/modbus-tcp.js";
import type { Quantity } from "../../device/register-map.js";
import { SDM630_VALUES, imageOf, loadMap, readMeter } from "../helpers/meters.js";
import { type PymodbusServer, startPymodbus } from "../helpers/pymodbus.js";




const sdm630 = loadMap("eastron-sdm630");
const em340 = loadMap("carlo-gavazzi-em340");
const EM_VALUES: Partial<Record<Quantity, number>> = {
  voltageL1: 230.5, voltageL2: 229.9, voltageL3: 231.1, currentL1: 1.234, currentL2: -0.5, currentL3: 12.001,
  powerL1: 284.4, powerL2: -115.3, powerL3: 2773.2, powerTotal: 2942.3, frequency: 49.9, importEnergy: 123_456_700, exportEnergy: 9_876_500,
};

describe("Modbus TCP against pymodbus", () => {
  let server: PymodbusServer;
  let bus: Bus;
  before(async () => {
    server = await startPymodbus({ 1: imageOf(sdm630, SDM630_VALUES), 2: imageOf(em340, EM_VALUES) });
    bus = new Bus(new TcpLink({ host: "127.0.0.1", port: server.port, reconnectDelayMsMin: 50, reconnectDelayMsMax: 200 }), { timeoutMs: 500, retriesMax: 1 });
  });
  after(async () => {
    await bus.close();
    await server.stop();
  });

  it("decodes every quantity of an SDM630 (float32, high word first) and an EM340 (scaled int, low word first) exactly", async () => {
    assert.deepEqual(await readMeter(bus, sdm630, 1), SDM630_VALUES);
    assert.deepEqual(await readMeter(bus, em340, 2), EM_VALUES);
  });

  it("two meters on one bus, asked all at once, never mix their values", async () => {
    const rounds = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? readMeter(bus, sdm630, 1) : readMeter(bus, em340, 2))));
    rounds.forEach((r, i) => assert.deepEqual(r, i % 2 === 0 ? SDM630_VALUES : EM_VALUES, `round ${i}`));
  });

  it("an exception reply is an answer (not retried), and the bus goes on", async () => {
    const before = { ...bus.stats };
    const reply = await bus.request({ fn: 4, unit: 1, address: 1_000, count: 2 });
    assert.deepEqual(reply, { kind: "exception", code: 2, message: "illegal data address" });
    assert.equal(bus.stats.retries, before.retries);
    assert.deepEqual(await readMeter(bus, sdm630, 1), SDM630_VALUES);
  });

  it("a unit that is not there fails (retried once), and the next request gets its own answer", async () => {
    // pymodbus 3.0 drops the connection for an unknown unit; a gateway would time out instead.
    const before = { ...bus.stats };
    await assert.rejects(bus.request({ fn: 4, unit: 9, address: 0, count: 2 }, 200), (err: unknown) => err instanceof ModbusError && ["PG_ERR_MODBUS_TIMEOUT", "PG_ERR_MODBUS_DROPPED"].includes(err.code));
    assert.equal(bus.stats.failed - before.failed, 1);
    assert.equal(bus.stats.retries - before.retries, 1);
    assert.deepEqual(await readMeter(bus, em340, 2), EM_VALUES);
  });

  it("a meter that goes away fails fast with a link error, and is read again once it is back", async () => {
    const port = server.port;
    await server.stop();
    await assert.rejects(readMeter(bus, sdm630, 1), (err: unknown) => err instanceof ModbusError && ["PG_ERR_MODBUS_LINK", "PG_ERR_MODBUS_DROPPED"].includes(err.code));
    server = await startPymodbus({ 1: imageOf(sdm630, SDM630_VALUES), 2: imageOf(em340, EM_VALUES) }, port);
    const deadline = Date.now() + 5_000;
    for (;;) {
      try {
        assert.deepEqual(await readMeter(bus, sdm630, 1), SDM630_VALUES);
        break;
      } catch (err) {
        if (!(err instanceof ModbusError) || Date.now() > deadline) throw err;
        await new Promise((r) => setTimeout(r, 50)); // inside the reconnect backoff
      }
    }
  });

  it("a full queue refuses at once with a clear code", async () => {
    const small = new Bus(new TcpLink({ host: "127.0.0.1", port: server.port }), { queueMax: 2 });
    try {
      const reqs = Array.from({ length: 4 }, () => small.request({ fn: 4, unit: 1, address: 0, count: 2 }).then(() => "ok", (e: ModbusError) => e.code));
      const results = await Promise.all(reqs);
      // One in flight and two waiting: the fourth is refused.
      assert.deepEqual(results, ["ok", "ok", "ok", "PG_ERR_BUS_QUEUE_FULL"]);
    } finally {
      await small.close();
    }
  });
});

describe("TcpLink with a peer that misbehaves", () => {
  it("a peer that never answers: a timeout naming the unit, after the timeout, retried once", async () => {
    const server = net.createServer((s) => s.resume()); // reads, never writes
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: (server.address() as net.AddressInfo).port }), { timeoutMs: 100, retriesMax: 1 });
    try {
      const t0 = Date.now();
      await assert.rejects(bus.request({ fn: 3, unit: 7, address: 0, count: 1 }), (err: unknown) => err instanceof ModbusError && err.code === "PG_ERR_MODBUS_TIMEOUT" && /no reply from unit 7 within 100 ms/.test(err.message));
      assert.ok(Date.now() - t0 >= 200, "two attempts of 100 ms each");
      assert.equal(bus.stats.timeouts, 2);
    } finally {
      await bus.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it("garbage closes the connection and the retry reads from a fresh one; a late reply is stale, not an answer", async () => {
    let connections = 0;
    const server = net.createServer((s) => {
      connections++;
      const n = connections;
      s.on("data", (req: Buffer) => {
        const id = req.readUInt16BE(0);
        if (n === 1) s.write(Buffer.from("this is not modbus")); // first connection: noise
        else {
          // An earlier transaction's reply first (stale), then the right one.
          s.write(Buffer.from([(id - 1) >> 8, (id - 1) & 0xff, 0, 0, 0, 7, 1, 4, 4, 0xde, 0xad, 0xbe, 0xef]));
          s.write(Buffer.from([id >> 8, id & 0xff, 0, 0, 0, 7, 1, 4, 4, 0, 1, 0, 2]));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const link = new TcpLink({ host: "127.0.0.1", port: (server.address() as net.AddressInfo).port });
    const bus = new Bus(link, { timeoutMs: 500, retriesMax: 1 });
    try {
      assert.deepEqual(await bus.request({ fn: 4, unit: 1, address: 0, count: 2 }), { kind: "registers", values: [1, 2] });
      assert.equal(bus.stats.garbage, 1);
      assert.equal(connections, 2);
      assert.equal(link.stale, 1);
    } finally {
      await bus.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
