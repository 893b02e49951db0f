// Switchgear with read-back (device/switchgear.ts): against pymodbus (a
// coil and a holding register that do what they are told), and a
// hand-rolled device that acknowledges a command but does not move, one
// that refuses, and one whose register reads neither closed nor open.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Bus } from "../../device/bus.js";
import { startModbusTcpServer } from "../../device/modbus-tcp-server.js";
import { TcpLink } from "../../device/modbus-tcp.js";
import { SimulatedMeter } from "../../device/sim-meter.js";
import { Switch, SwitchError } from "../../device/switchgear.js";
import { loadMap } from "../helpers/meters.js";
import { startPymodbus } from "../helpers/pymodbus.js";

describe("switchgear", () => {
  it("a coil and a holding register that obey: commanded, read back, agreed", async () => {
    const server = await startPymodbus({ 1: { holding: [[0, new Array<number>(20).fill(0)]] } });
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: server.port }), { timeoutMs: 500 });
    try {
      const relay = new Switch(bus, { kind: "coil", unit: 1, address: 3 }, "relay K3");
      await relay.set(true);
      assert.equal(await relay.isClosed(), true);
      await relay.set(false);
      assert.equal(await relay.isClosed(), false);
      const breaker = new Switch(bus, { kind: "register", unit: 1, address: 10, closedValue: 0x5a01, openValue: 0x5a00 }, "breaker Q1");
      await breaker.set(true);
      assert.equal(await breaker.isClosed(), true);
      await breaker.set(false);
      assert.equal(await breaker.isClosed(), false);
    } finally {
      await bus.close();
      await server.stop();
    }
  });

  it("a device that acknowledges but does not move: a mismatch naming what was asked and what it reports", async () => {
    const device = await startModbusTcpServer({ serves: () => true, answer: (r) => (r.fn === 5 ? { kind: "written" } : { kind: "coils", values: [false] }) }); // acknowledges, does not move
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: device.port }), { timeoutMs: 500 });
    try {
      await assert.rejects(new Switch(bus, { kind: "coil", unit: 1, address: 0 }, "relay K1").set(true), (e: unknown) => e instanceof SwitchError && e.code === "PG_ERR_SWITCH_MISMATCH" && e.asked === true && e.reported === false && /relay K1: asked to close, but unit 1 reports it open after the command/.test(e.message));
    } finally {
      await bus.close();
      await device.close();
    }
  });

  it("a register that reads neither closed nor open, and a device that refuses the command", async () => {
    const device = await startModbusTcpServer({ serves: () => true, answer: (r) => (r.fn === 6 ? { kind: "written" } : { kind: "registers", values: [7] }) });
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: device.port }), { timeoutMs: 500 });
    const meter = await SimulatedMeter.start({ map: loadMap("eastron-sdm630") }); // serves reads only
    const meterBus = new Bus(new TcpLink({ host: "127.0.0.1", port: meter.port }), { timeoutMs: 500 });
    try {
      const q = new Switch(bus, { kind: "register", unit: 1, address: 4, closedValue: 1, openValue: 0 }, "breaker Q2");
      await assert.rejects(q.isClosed(), (e: unknown) => e instanceof SwitchError && e.code === "PG_ERR_SWITCH_UNKNOWN_STATE" && /reads 7, neither closed \(1\) nor open \(0\)/.test(e.message));
      await assert.rejects(q.set(false), (e: unknown) => e instanceof SwitchError && e.code === "PG_ERR_SWITCH_MISMATCH" && e.reported === 7);
      const k = new Switch(meterBus, { kind: "coil", unit: 1, address: 0 }, "relay K9");
      await assert.rejects(k.set(true), (e: unknown) => e instanceof SwitchError && e.code === "PG_ERR_SWITCH_REFUSED" && /refused the command to close \(illegal function\)/.test(e.message));
    } finally {
      await bus.close();
      await meterBus.close();
      await device.close();
      await meter.close();
    }
  });
});
