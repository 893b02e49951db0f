// The simulated meter (device/sim-meter.ts) read through the real driver
// path (Bus, TcpLink, the SDM630 map): it shows what its profiles say, its
// counters integrate power (import and export apart, never back), and it
// answers like a meter (exception 2 outside its blocks, silence for
// another unit). Also the device side of the frame codec it uses.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Bus, ModbusError } from "../../device/bus.js";
import { type Request, encodeReplyPdu, encodePdu, parseRequestPdu } from "../../device/modbus-frame.js";
import { TcpLink } from "../../device/modbus-tcp.js";
import { householdLoadW, solarPowerW } from "../../device/profiles.js";
import { loadMap, readMeter } from "../helpers/meters.js";
import { SimulatedMeter } from "../../device/sim-meter.js";

const HOUR = 3_600_000;
const MIDNIGHT = Date.UTC(2026, 5, 21); // a June day, UTC


function close(actual: number | undefined, expected: number, what: string): void {
  assert.ok(actual !== undefined && Math.abs(actual - expected) <= 1e-6 * Math.max(1, Math.abs(expected)), `${what}: ${actual} vs ${expected}`);
}

describe("simulated meter", () => {
  it("an SDM630 image read through Bus and TcpLink shows its profile; counters integrate power", async () => {
    const map = loadMap("eastron-sdm630");
    let now = MIDNIGHT + 2 * HOUR; // night: no sun
    const meter = await SimulatedMeter.start({ map, now: () => now, load: { baseW: 1_000, morningPeakW: 0, eveningPeakW: 0, utcOffsetHours: 0 } });
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: meter.port }), { timeoutMs: 500 });
    try {
      const night = await readMeter(bus, map);
      close(night.powerTotal, 1_000, "power at night");
      close(night.powerL2, 1_000 / 3, "power per phase");
      close(night.currentL3, 1_000 / 3 / 230, "current");
      close(night.voltageL1, 230, "voltage");
      close(night.frequency, 50, "frequency");
      close(night.importEnergy, 1_000_000, "import at start");
      now += HOUR; // an hour at 1 kW
      const later = await readMeter(bus, map);
      close(later.importEnergy, 1_001_000, "import after an hour at 1 kW");
      close(later.exportEnergy, 100_000, "no export at night");
      now = MIDNIGHT + 13 * HOUR; // midday: 4 kW of sun against 1 kW of load
      const noon = await readMeter(bus, map);
      assert.ok((noon.powerTotal as number) < -2_900, `exporting at noon (${noon.powerTotal} W)`);
      assert.ok((noon.exportEnergy as number) > 100_000 && (noon.importEnergy as number) >= (later.importEnergy as number), "export grows, import never goes back");
    } finally {
      await bus.close();
      await meter.close();
    }
  });

  it("answers exception 2 outside its read blocks, and nothing to another unit", async () => {
    const map = loadMap("eastron-sdm630");
    const meter = await SimulatedMeter.start({ map, unit: 3 });
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: meter.port }), { timeoutMs: 150, retriesMax: 0 });
    try {
      assert.deepEqual(await bus.request({ fn: 4, unit: 3, address: 18, count: 2 }), { kind: "exception", code: 2, message: "illegal data address" });
      assert.deepEqual(await bus.request({ fn: 6, unit: 3, address: 0, value: 1 }), { kind: "exception", code: 1, message: "illegal function" });
      await assert.rejects(bus.request({ fn: 4, unit: 1, address: 0, count: 2 }), (e: unknown) => e instanceof ModbusError && e.code === "PG_ERR_MODBUS_TIMEOUT");
    } finally {
      await bus.close();
      await meter.close();
    }
  });

  it("profiles: no sun at night, a peak at solar noon; household load peaks morning and evening", () => {
    const solar = { peakW: 4_000, sunriseHour: 6, sunsetHour: 20, utcOffsetHours: 0 };
    assert.equal(solarPowerW(MIDNIGHT + 3 * HOUR, solar), 0);
    close(solarPowerW(MIDNIGHT + 13 * HOUR, solar), 4_000, "peak at the middle of the day");
    const load = { baseW: 300, morningPeakW: 1_200, eveningPeakW: 2_000, utcOffsetHours: 0 };
    assert.ok(householdLoadW(MIDNIGHT + 19 * HOUR, load) > householdLoadW(MIDNIGHT + 13 * HOUR, load));
    assert.ok(householdLoadW(MIDNIGHT + 7.5 * HOUR, load) > householdLoadW(MIDNIGHT + 3 * HOUR, load));
  });
});

describe("frame codec, device side", () => {
  it("a request the client encodes parses back to itself; replies encode as the client expects", () => {
    const requests: Request[] = [
      { fn: 1, unit: 1, address: 3, count: 10 },
      { fn: 3, unit: 2, address: 40_000, count: 125 },
      { fn: 4, unit: 1, address: 0, count: 1 },
      { fn: 5, unit: 1, address: 7, on: true },
      { fn: 6, unit: 1, address: 9, value: 0xbeef },
      { fn: 16, unit: 1, address: 100, values: [1, 2, 3] },
    ];
    for (const r of requests) assert.deepEqual(parseRequestPdu(r.unit, encodePdu(r)), { request: r });
    assert.deepEqual([...encodeReplyPdu({ fn: 4, unit: 1, address: 0, count: 2 }, { kind: "registers", values: [0x1234, 5] })], [4, 4, 0x12, 0x34, 0, 5]);
    assert.deepEqual([...encodeReplyPdu({ fn: 1, unit: 1, address: 0, count: 9 }, { kind: "coils", values: [true, false, true, false, false, false, false, false, true] })], [1, 2, 0b101, 1]);
    assert.deepEqual([...encodeReplyPdu({ fn: 3, unit: 1, address: 0, count: 1 }, { kind: "exception", code: 2, message: "" })], [0x83, 2]);
  });

  it("a request Modbus does not allow, or a function not served, gets the right exception", () => {
    assert.deepEqual(parseRequestPdu(1, Uint8Array.from([3, 0, 0, 0, 126])), { fn: 3, exception: 3 });
    assert.deepEqual(parseRequestPdu(1, Uint8Array.from([3, 0xff, 0xff, 0, 2])), { fn: 3, exception: 3 });
    assert.deepEqual(parseRequestPdu(1, Uint8Array.from([5, 0, 1, 0x12, 0x34])), { fn: 5, exception: 3 });
    assert.deepEqual(parseRequestPdu(1, Uint8Array.from([16, 0, 0, 0, 2, 3, 0, 1, 0])), { fn: 16, exception: 3 });
    assert.deepEqual(parseRequestPdu(1, Uint8Array.from([43, 14, 1, 0])), { fn: 43, exception: 1 });
  });
});
