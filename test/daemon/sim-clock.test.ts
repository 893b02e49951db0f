// The demo's accelerated clock (daemon/sim-clock.ts): what `--clock` says,
// what the node's timing becomes on it, and a meter poller on it polling
// once a real period, not once a simulated one. `peergrid start --clock` is
// refused where simulated time has no place.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Bus } from "../../device/bus.js";
import { TcpLink } from "../../device/modbus-tcp.js";
import { MeterPoller } from "../../device/poller.js";
import { DEFAULT_MEMPOOL_LIMITS } from "../../ledger/mempool.js";
import { DEFAULT_TIMING } from "../../daemon/node.js";
import { SPEED_MAX, formatClock, mempoolOnClock, parseClock, simNow, timingOnClock } from "../../daemon/sim-clock.js";
import { runCli } from "../helpers/cli.js";

describe("the demo's simulated clock", () => {
  it("reads back what it writes, and runs speed times real time from its start", () => {
    const c = { simStartMs: Date.UTC(2026, 5, 21, 7, 10), realStartMs: 1_800_000_000_000, speed: 15 };
    assert.deepEqual(parseClock(formatClock(c)), c);
    assert.deepEqual(parseClock("speed=15, real=1800000000000, sim=" + c.simStartMs), c, "any order, spaces");
    let real = c.realStartMs;
    const now = simNow(c, () => real);
    assert.equal(now(), c.simStartMs);
    real += 1_000;
    assert.equal(now(), c.simStartMs + 15_000, "a real second is 15 simulated ones");
    real += 60_000;
    assert.equal(now() - c.simStartMs, 15 * 61_000, "a real minute: a 15-minute interval");
  });

  it("refuses what is not a clock, naming the field", () => {
    for (const [text, expected] of [
      ["15", /is not sim=MS,real=MS,speed=N/],
      ["sim=1,real=2", /speed must be a whole number 1\.\.60, got nothing/],
      ["sim=1,real=2,speed=0", /speed must be a whole number 1\.\.60, got "0"/],
      [`sim=1,real=2,speed=${SPEED_MAX + 1}`, /speed must be/],
      ["sim=-1,real=2,speed=2", /sim must be a whole number/],
      ["sim=1,real=2,speed=2,tz=3", /unknown field "tz"/],
    ] as const) {
      assert.throws(() => parseClock(text), (err: Error) => expected.test(err.message), text);
    }
  });

  it("puts the node's clock-compared durations in simulated ms, and leaves Raft's tick real", () => {
    assert.deepEqual(timingOnClock({ tickMs: 50 }, 1), { tickMs: 50 }, "a real clock: unchanged");
    const t = timingOnClock({ tickMs: 50, blockIntervalMs: 500 }, 15);
    assert.equal(t.tickMs, 50);
    assert.equal(t.electionTicks, undefined, "ticks are ticks");
    assert.equal(t.blockIntervalMs, 7_500, "a block every half real second: 7.5 simulated seconds");
    assert.equal(t.resubmitAfterMs, DEFAULT_TIMING.resubmitAfterMs * 15);
    assert.equal(t.gapWaitMs, DEFAULT_TIMING.gapWaitMs * 15);
    assert.equal(t.clockSkewMaxMs, DEFAULT_TIMING.clockSkewMaxMs * 15);
    assert.deepEqual(mempoolOnClock(15), { ageMsMax: DEFAULT_MEMPOOL_LIMITS.ageMsMax * 15 });
  });

  it("a poller on a clock 50 times fast polls once a real period, with its statistics in real ms", async () => {
    const speed = 50;
    const now = simNow({ simStartMs: 1_000_000_000_000, realStartMs: Date.now(), speed });
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: 1 }));
    // 40 real ms a period: 2 simulated seconds.
    const poller = new MeterPoller(bus, [], () => {}, { periodMs: 40 * speed, now, clockRate: speed });
    try {
      const t0 = Date.now();
      poller.start();
      await new Promise((r) => setTimeout(r, 600));
      poller.stop();
      const periods = (Date.now() - t0) / 40;
      // Without the rate, its timers would wait up to 2,000 ms: not one poll in 600 ms.
      assert.ok(poller.stats.seconds >= periods - 3 && poller.stats.seconds <= periods + 1, `${poller.stats.seconds} polls in ${periods.toFixed(1)} periods`);
      assert.ok(poller.stats.offsetsMs.every((ms) => ms >= -5 && ms < 40), `offsets in real ms: ${poller.stats.offsetsMs.join(", ")}`);
    } finally {
      await bus.close();
    }
  });

  it("peergrid start --clock is refused with a config file, a serial meter, a controller or synthetic readings", async () => {
    const clock = "--clock=sim=1,real=2,speed=15";
    for (const [args, expected] of [
      [["--config", "peergrid.json", clock], /--clock is the demo's simulated time.*not with --config/],
      [["--data-dir", "d", "--key", "k", clock, "--meter", "0=eastron-sdm630@serial:/dev/ttyUSB0"], /--clock \(simulated time\) reads simulated meters only/],
      [["--data-dir", "d", "--key", "k", clock, "--synthetic-readings", "5"], /--clock \(simulated time\) and --synthetic-readings/],
      [["--data-dir", "d", "--key", "k", clock, "--meter", "0=eastron-sdm630@tcp:127.0.0.1:1502", "--controller", "controller.json"], /--clock \(simulated time\) and --controller/],
      [["--data-dir", "d", "--key", "k", "--clock", "speed=15"], /--clock: sim must be a whole number/],
    ] as const) {
      const r = await runCli("start", ...args);
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.out}`);
      assert.match(r.out, expected, args.join(" "));
    }
  });
});
