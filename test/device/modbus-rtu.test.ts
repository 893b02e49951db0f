// Modbus RTU on a serial line made with socat (a pseudo-terminal pair):
// against Debian's python3-pymodbus as the meter, and against a hand-rolled
// device on the other end that answers late, sends noise or a bad CRC, so
// that a value can only ever come from the reply to its own request.
// A pseudo-terminal has no wire time; the bus benchmark simulates it.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SerialPort } from "serialport";
import { Bus, ModbusError } from "../../device/bus.js";
import { crc16, encodeRtu } from "../../device/modbus-frame.js";
import { RtuLink } from "../../device/modbus-rtu.js";
import type { Quantity } from "../../device/register-map.js";
import { SDM630_VALUES, imageOf, loadMap, readMeter } from "../helpers/meters.js";
import { type PymodbusServer, type SerialPair, startPymodbus, startSocatPair } from "../helpers/pymodbus.js";

const sdm630 = loadMap("eastron-sdm630");
const sdm120 = loadMap("eastron-sdm120");



const SDM120_VALUES: Partial<Record<Quantity, number>> = { voltageL1: 241.5, currentL1: 7.75, powerL1: 1871.5, powerTotal: 1871.5, frequency: 50.03125, importEnergy: 3_210_250, exportEnergy: 125 };

describe("Modbus RTU against pymodbus on a pseudo-terminal", () => {
  let dir: string;
  let line: SerialPair;
  let meter: PymodbusServer;
  let bus: Bus;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "peergrid-rtu-"));
    line = await startSocatPair(dir);
    meter = await startPymodbus({ 1: imageOf(sdm630, SDM630_VALUES), 2: imageOf(sdm120, SDM120_VALUES) }, 0, { path: line.b, baud: 9600 });
    bus = new Bus(new RtuLink({ path: line.a, baud: 9600, replyDelayMsMax: 50 }), { timeoutMs: 500, retriesMax: 1 });
  });
  after(async () => {
    await bus.close();
    await meter.stop();
    await line.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("decodes every quantity of an SDM630 and an SDM120 exactly", async () => {
    assert.deepEqual(await readMeter(bus, sdm630, 1), SDM630_VALUES);
    assert.deepEqual(await readMeter(bus, sdm120, 2), SDM120_VALUES);
  });

  it("two meters on one line, asked all at once, never mix their values", async () => {
    const rounds = await Promise.all(Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? readMeter(bus, sdm630, 1) : readMeter(bus, sdm120, 2))));
    rounds.forEach((r, i) => assert.deepEqual(r, i % 2 === 0 ? SDM630_VALUES : SDM120_VALUES, `round ${i}`));
  });

  it("an exception reply is an answer", async () => {
    assert.deepEqual(await bus.request({ fn: 4, unit: 1, address: 1_000, count: 2 }), { kind: "exception", code: 2, message: "illegal data address" });
  });

  it("a unit that is not on the line times out, and the next request gets its own answer", async () => {
    await assert.rejects(bus.request({ fn: 4, unit: 9, address: 0, count: 2 }, 150), (err: unknown) => err instanceof ModbusError && err.code === "PG_ERR_MODBUS_TIMEOUT");
    assert.deepEqual(await readMeter(bus, sdm120, 2), SDM120_VALUES);
  });
});

/** A device on the far end of the line that answers as a script says. */
async function handRolledDevice(path: string, answer: (req: Buffer, n: number, port: SerialPort) => void): Promise<SerialPort> {
  const port = new SerialPort({ path, baudRate: 9600, autoOpen: false });
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  let n = 0;
  let buf = Buffer.alloc(0);
  port.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 8) {
      const req = buf.subarray(0, 8); // every request here is an 8-byte read
      buf = buf.subarray(8);
      answer(req, n++, port);
    }
  });
  return port;
}

function registersReply(unit: number, fn: number, values: readonly number[]): Buffer {
  const body = [unit, fn, 2 * values.length, ...values.flatMap((v) => [v >> 8, v & 0xff])];
  const crc = crc16(Uint8Array.from(body));
  return Buffer.from([...body, crc & 0xff, crc >> 8]);
}

describe("Modbus RTU with a device that misbehaves", () => {
  let dir: string;
  let line: SerialPair;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "peergrid-rtu-"));
    line = await startSocatPair(dir);
  });
  after(async () => {
    await line.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("a reply that arrives after the timeout dies on the line: the retry's answer is the one taken", async () => {
    const device = await handRolledDevice(line.b, (req, n, port) => {
      const count = req.readUInt16BE(4);
      // The first answer comes late and is wrong; the retry is answered at once, rightly.
      if (n === 0) setTimeout(() => port.write(registersReply(1, 4, new Array<number>(count).fill(0xdead))), 150);
      else port.write(registersReply(1, 4, Array.from({ length: count }, (_, i) => i + 1)));
    });
    const link = new RtuLink({ path: line.a, baud: 9600, replyDelayMsMax: 200 });
    const bus = new Bus(link, { timeoutMs: 100, retriesMax: 1 });
    try {
      assert.deepEqual(await bus.request({ fn: 4, unit: 1, address: 0, count: 3 }), { kind: "registers", values: [1, 2, 3] });
      assert.equal(bus.stats.timeouts, 1);
      assert.ok(link.stats.discardedBytes >= 11, `the late reply was discarded (${link.stats.discardedBytes} bytes)`);
    } finally {
      await bus.close();
      await new Promise<void>((r) => device.close(() => r()));
    }
  });

  it("noise and a bad CRC are garbage, never values; the retry reads cleanly", async () => {
    const device = await handRolledDevice(line.b, (req, n, port) => {
      const count = req.readUInt16BE(4);
      const good = registersReply(1, 4, Array.from({ length: count }, (_, i) => 100 + i));
      if (n === 0) port.write(Buffer.from([0x01, 0xff, 0x13, 0x37, 0x00])); // noise
      else if (n === 1) port.write(Buffer.concat([good.subarray(0, good.length - 1), Buffer.from([(good.at(-1) as number) ^ 0xff])])); // CRC broken
      else port.write(good);
    });
    const bus = new Bus(new RtuLink({ path: line.a, baud: 9600, replyDelayMsMax: 20 }), { timeoutMs: 200, retriesMax: 2 });
    try {
      assert.deepEqual(await bus.request({ fn: 4, unit: 1, address: 0, count: 2 }), { kind: "registers", values: [100, 101] });
      assert.equal(bus.stats.garbage, 2);
    } finally {
      await bus.close();
      await new Promise<void>((r) => device.close(() => r()));
    }
  });

  it("an adapter that is unplugged fails the bus with a link error, and works again once plugged back", async () => {
    const answer = (req: Buffer, _n: number, port: SerialPort) => port.write(registersReply(1, 4, Array.from({ length: req.readUInt16BE(4) }, () => 7)));
    let device = await handRolledDevice(line.b, answer);
    const link = new RtuLink({ path: line.a, baud: 9600, replyDelayMsMax: 20, reopenDelayMsMin: 50, reopenDelayMsMax: 200 });
    const bus = new Bus(link, { timeoutMs: 200, retriesMax: 0 });
    try {
      assert.deepEqual(await bus.request({ fn: 4, unit: 1, address: 0, count: 1 }), { kind: "registers", values: [7] });
      await new Promise<void>((r) => device.close(() => r()));
      await line.stop(); // the pseudo-terminals vanish, as an unplugged USB adapter's device node does
      await assert.rejects(bus.request({ fn: 4, unit: 1, address: 0, count: 1 }), (err: unknown) => err instanceof ModbusError && ["PG_ERR_MODBUS_LINK", "PG_ERR_MODBUS_DROPPED", "PG_ERR_MODBUS_TIMEOUT"].includes(err.code));
      line = await startSocatPair(dir); // plugged back: the same path
      device = await handRolledDevice(line.b, answer);
      const deadline = Date.now() + 5_000;
      for (;;) {
        try {
          assert.deepEqual(await bus.request({ fn: 4, unit: 1, address: 0, count: 1 }), { kind: "registers", values: [7] });
          break;
        } catch (err) {
          if (!(err instanceof ModbusError) || Date.now() > deadline) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      assert.ok(link.stats.opens >= 2, "reopened");
    } finally {
      await bus.close();
      await new Promise<void>((r) => device.close(() => r()));
    }
  });

  it("requests Modbus does not allow are refused before anything is sent", async () => {
    const bus = new Bus(new RtuLink({ path: line.a, baud: 9600 }), { retriesMax: 3 });
    try {
      await assert.rejects(bus.request({ fn: 3, unit: 1, address: 0, count: 200 }), (err: unknown) => err instanceof RangeError && /count 200 outside 1..125/.test(err.message));
      assert.equal(bus.stats.requests, 0, "not queued, not sent, not retried");
    } finally {
      await bus.close();
    }
    assert.equal(encodeRtu({ fn: 3, unit: 1, address: 0, count: 1 }).length, 8);
  });
});
