// The one-second reading loop (device/poller.ts) through the real driver
// path: a simulated meter on its own timer, and pymodbus with two meters on
// one bus plus one that is not there. Waits are bounded; nothing asserts
// speed (the bus benchmark measures jitter).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Bus } from "../../device/bus.js";
import { TcpLink } from "../../device/modbus-tcp.js";
import { MeterPoller } from "../../device/poller.js";
import type { CheckedReading } from "../../device/reading-check.js";
import { SimulatedMeter } from "../../device/sim-meter.js";
import { Quality } from "../../ledger/tx.js";
import { fixedLayout } from "../../device/register-map.js";
import { layoutSource, loadMeterKind } from "../../device/meter-kind.js";
import { SDM630_VALUES, SUNSPEC_203_VALUES, imageOf, loadMap, sunspecChain } from "../helpers/meters.js";
import { startPymodbus } from "../helpers/pymodbus.js";

const sdm630 = loadMap("eastron-sdm630");
const em340 = loadMap("carlo-gavazzi-em340");

describe("MeterPoller", () => {
  it("reads a simulated meter every second, aligned to the second, into good readings", async () => {
    const meter = await SimulatedMeter.start({ map: sdm630 });
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: meter.port }), { timeoutMs: 500 });
    const readings: CheckedReading[] = [];
    const poller = new MeterPoller(bus, [{ meterId: 4, layout: fixedLayout(sdm630), unit: 1 }], (id, r) => {
      assert.equal(id, 4);
      readings.push(r);
    });
    try {
      poller.start();
      const deadline = Date.now() + 6_000;
      while (readings.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(readings.length >= 3, `${readings.length} readings`);
      for (const r of readings) assert.equal(r.quality, Quality.good, r.problems.join("; "));
      for (let i = 1; i < readings.length; i++) {
        assert.ok((readings[i] as CheckedReading).timeMs > (readings[i - 1] as CheckedReading).timeMs, "strictly later");
        assert.ok((readings[i] as CheckedReading).importWh >= (readings[i - 1] as CheckedReading).importWh);
      }
      assert.equal(poller.stats.offsetsMs.length, poller.stats.seconds - poller.stats.skipped);
      assert.equal(poller.stats.meters.get(4)?.good, readings.length);
    } finally {
      poller.stop();
      await bus.close();
      await meter.close();
    }
  });

  it("serves each second once, even when its clock reads a hair behind the timers", async () => {
    // The wall clock (now) and the timers (monotonic) disagree a little in real life; here the clock
    // loses 1 ms at every look, so each timer fires when the clock still reads before its second.
    let lag = 0;
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: 1 }));
    const poller = new MeterPoller(bus, [], () => {}, { periodMs: 50, now: () => Date.now() - ++lag });
    try {
      const t0 = Date.now();
      poller.start();
      await new Promise((r) => setTimeout(r, 500));
      poller.stop();
      const periods = (Date.now() - t0) / 50;
      assert.ok(poller.stats.seconds <= periods + 1, `${poller.stats.seconds} ticks in ${periods.toFixed(1)} periods`);
      assert.equal(poller.stats.skipped, 0);
    } finally {
      await bus.close();
    }
  });

  it("goes on polling after the wall clock steps back (NTP), and counts seconds passed over when it steps forward", async () => {
    let step = 0;
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: 1 }));
    const poller = new MeterPoller(bus, [], () => {}, { periodMs: 50, now: () => Date.now() + step });
    try {
      poller.start();
      await new Promise((r) => setTimeout(r, 200));
      step = -10_000;
      const before = poller.stats.seconds;
      await new Promise((r) => setTimeout(r, 400));
      assert.ok(poller.stats.seconds - before >= 5, `${poller.stats.seconds - before} ticks in 8 periods after a 10 s step back`);
      const skippedBefore = poller.stats.skipped;
      step = 0; // forward by 10 s: 200 periods with no poll
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(poller.stats.skipped - skippedBefore >= 190, `${poller.stats.skipped - skippedBefore} periods counted as passed over`);
    } finally {
      poller.stop();
      await bus.close();
    }
  });

  it("two meters on one bus keep their own values; a meter that is not there gives comms-error readings", async () => {
    const EM_VALUES = { voltageL1: 230.5, voltageL2: 229.9, voltageL3: 231.1, currentL1: 1.234, currentL2: 0.5, currentL3: 12.001, powerL1: 284.4, powerL2: -115.3, powerL3: 2773.2, powerTotal: 2942.3, frequency: 49.9, importEnergy: 123_456_700, exportEnergy: 9_876_500 };
    const server = await startPymodbus({ 1: imageOf(sdm630, SDM630_VALUES), 2: imageOf(em340, EM_VALUES) });
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: server.port }), { timeoutMs: 200, retriesMax: 0 });
    const got = new Map<number, CheckedReading[]>();
    const poller = new MeterPoller(
      bus,
      [
        { meterId: 0, layout: fixedLayout(sdm630), unit: 1 },
        { meterId: 1, layout: fixedLayout(em340), unit: 2, energyEveryS: 3 },
        { meterId: 2, layout: fixedLayout(sdm630), unit: 9 },
      ],
      (id, r) => got.set(id, [...(got.get(id) ?? []), r]),
    );
    try {
      for (let second = 0; second < 4; second++) await poller.pollAll(second);
      const sdm = got.get(0) as CheckedReading[];
      const em = got.get(1) as CheckedReading[];
      const absent = got.get(2) as CheckedReading[];
      assert.equal(sdm.length, 4);
      for (const r of sdm) {
        assert.equal(r.quality, Quality.good, r.problems.join("; "));
        assert.equal(r.powerW, 853);
        assert.deepEqual(r.voltagesDeciV, [2295, 2313, 2338]);
        assert.equal(r.importWh, 12_345_500);
      }
      for (const r of em) {
        assert.equal(r.quality, Quality.good, r.problems.join("; "));
        assert.equal(r.powerW, 2942);
        assert.equal(r.exportWh, 9_876_500, "kept counters between energy seconds");
      }
      assert.ok(absent.length === 4 && absent.every((r) => r.quality === Quality.commsError));
      assert.equal(poller.stats.meters.get(2)?.failed, 4);
    } finally {
      await bus.close();
      await server.stop();
    }
  });

  it("polls a SunSpec meter found by discovery at its first poll, with its scale factors", async () => {
    const server = await startPymodbus({ 1: { holding: [[40_000, sunspecChain()]] } });
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: server.port }), { timeoutMs: 500, retriesMax: 0 });
    try {
      const readings: CheckedReading[] = [];
      const poller = new MeterPoller(bus, [{ meterId: 7, layout: layoutSource(loadMeterKind("sunspec")), unit: 1 }], (_id, r) => readings.push(r));
      await poller.pollAll(0);
      assert.equal(poller.stats.meters.get(7)?.layout, "sunspec-203");
      const [r] = readings;
      assert.ok(r !== undefined);
      assert.equal(r.quality, Quality.good, r.problems.join("; "));
      assert.equal(r.powerW, SUNSPEC_203_VALUES.powerTotal);
      assert.deepEqual(r.voltagesDeciV, [2295, 2313, 2338]);
      assert.equal(r.importWh, SUNSPEC_203_VALUES.importEnergy);
      assert.equal(r.frequencyMilliHz, 49_970);
    } finally {
      await bus.close();
      await server.stop();
    }
  });

  it("a device that is not SunSpec: comms-error readings that say so, and discovery tried again only after its wait", async () => {
    const server = await startPymodbus({ 1: { holding: [[0, [1, 2, 3]]] } });
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: server.port }), { timeoutMs: 500, retriesMax: 0 });
    let now = 1_000_000;
    try {
      const readings: CheckedReading[] = [];
      const poller = new MeterPoller(bus, [{ meterId: 3, layout: layoutSource(loadMeterKind("sunspec")), unit: 1 }], (_id, r) => readings.push(r), { now: () => now });
      await poller.pollAll(0);
      const asked = bus.stats.requests;
      assert.ok(asked >= 3, "the marker was looked for at 40000, 50000 and 0");
      assert.equal(readings[0]?.quality, Quality.commsError);
      assert.match(poller.stats.meters.get(3)?.lastProblem ?? "", /no SunSpec marker \("SunS"\) at 40000, 50000 or 0/);
      now += 5_000;
      await poller.pollAll(1);
      assert.equal(bus.stats.requests, asked, "within the wait, the bus is left alone");
      assert.match(poller.stats.meters.get(3)?.lastProblem ?? "", /layout of unit 1 not found yet \(unit 1 answered, but has no SunSpec marker.*next try in 5 s/);
      now += 5_000;
      await poller.pollAll(2);
      assert.ok(bus.stats.requests > asked, "after it, discovery again");
      assert.deepEqual(readings.map((r) => r.quality), [Quality.commsError, Quality.commsError, Quality.commsError]);
    } finally {
      await bus.close();
      await server.stop();
    }
  });
});
