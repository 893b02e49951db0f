// What `peergrid demo`'s simulated meters show (daemon/demo.ts): the
// premises of sim/premise.ts on the demo's fixed day, a sunny Sunday 21 June
// 2026 in London on British Summer Time, not device/profiles.ts's half-sine
// sun and two-hump load. The day must let the market trade from its first
// interval whatever --boxes is: every prosumer without a battery exports and
// every consumer imports, interval after interval. And the meters must be
// the realistic ones: London's midsummer sun (up before 06:00 and after
// 20:00, the toy curve's sunrise and sunset; its noon near 13:00 BST),
// appliances switching (kilowatt steps from one minute to the next, where
// the toy load is smooth), a battery soaking up its household's surplus.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { DEMO_DATE, DEMO_SITE, demoPremises, demoTimeMs, siteClockText, startHouseholdMeter } from "../../daemon/demo.js";
import { utcMs } from "../../sim/site.js";

const MIN = 60_000;
const INTERVAL_MS = 15 * MIN;
const BOXES_MAX = 10;
/** The auto-bidders' minOrderWh: a smaller surplus or shortfall places no order. */
const MIN_ORDER_WH = 10;

const at = (hour: number, minute = 0) => demoTimeMs(hour * 60 + minute);

/** A premise's net energy over [fromMs, fromMs + INTERVAL_MS), Wh (+ import), sampled every stepMs as a meter polled that often. */
function intervalWh(netPowerW: (t: number) => number, fromMs: number, stepMs: number): number {
  let wh = 0;
  for (let t = fromMs; t < fromMs + INTERVAL_MS; t += stepMs) wh += (netPowerW(t) * stepMs) / 3_600_000;
  return wh;
}

describe("the demo's meters", () => {
  it("run on 21 June 2026 in London, on British Summer Time: --start-at 09:10 is 08:10 UTC, printed as 09:10", () => {
    assert.deepEqual(DEMO_DATE, { year: 2026, month: 6, day: 21 });
    assert.equal(DEMO_SITE.utcOffsetHours, 1);
    assert.ok(Math.abs(DEMO_SITE.latitudeDeg - 51.5) < 0.1 && Math.abs(DEMO_SITE.longitudeDeg) < 0.2, "London");
    assert.equal(at(9, 10), Date.UTC(2026, 5, 21, 8, 10));
    assert.equal(siteClockText(at(9, 10)), "09:10");
    assert.equal(siteClockText(utcMs(2026, 6, 21, 23, 5)), "00:05", "past midnight at the site");
  });

  it("on that day every prosumer without a battery sells and every consumer buys, in every interval from 09:00 to 17:00", () => {
    const premises = demoPremises(BOXES_MAX);
    assert.deepEqual(premises.map((p) => p.kind), ["prosumer", "consumer", "prosumer", "consumer", "prosumer-battery", "consumer", "prosumer", "consumer", "prosumer", "consumer"]);
    // 15 s: the default speed's poll (a real second); the test's demo at 60x polls every simulated minute.
    for (const stepMs of [15_000, MIN]) {
      for (const p of demoPremises(BOXES_MAX).filter((q) => q.kind !== "prosumer-battery")) {
        for (let t = at(9); t < at(17); t += INTERVAL_MS) {
          const wh = intervalWh((x) => p.netPowerW(x), t, stepMs);
          const when = `${p.label}, ${siteClockText(t)}, polled every ${stepMs / 1_000} s`;
          if (p.kind === "consumer") assert.ok(wh >= MIN_ORDER_WH, `${when}: imports ${wh.toFixed(0)} Wh`);
          else assert.ok(wh <= -250, `${when}: exports ${(-wh).toFixed(0)} Wh`);
        }
      }
    }
  });

  it("show London's midsummer sun: up before 06:00 and after 20:00 BST, strongest near 13:00 BST, on south-facing roofs of the households' kWp", () => {
    for (const p of demoPremises(BOXES_MAX).filter((q) => q.pv !== null)) {
      const pv = p.pv as NonNullable<typeof p.pv>;
      assert.ok(pv.azimuthDeg === 180 && pv.tiltDeg >= 25 && pv.tiltDeg <= 45 && pv.inverterW === pv.kWp * 1_000, JSON.stringify(pv));
      assert.equal(p.clearSkyPvW(at(4, 30)), 0, `${p.label}: night at 04:30`);
      assert.equal(p.clearSkyPvW(at(21, 30)), 0, `${p.label}: night at 21:30`);
      assert.ok(p.pvW(at(5, 30)) > 0 && p.pvW(at(20, 30)) > 0, `${p.label}: the sun is up at 05:30 and 20:30`);
      let peakMs = 0;
      for (let t = at(9); t <= at(17); t += MIN) if (p.clearSkyPvW(t) > p.clearSkyPvW(peakMs)) peakMs = t;
      assert.ok(peakMs >= at(12, 30) && peakMs <= at(13, 30), `${p.label}: solar noon near 13:00 BST, not ${siteClockText(peakMs)}`);
      const noonPerKWp = p.pvW(at(13)) / pv.kWp;
      assert.ok(noonPerKWp > 600 && noonPerKWp < 900, `${p.label}: ${noonPerKWp.toFixed(0)} W per kWp at 13:00 on a clear day`);
    }
  });

  it("show households switching appliances: kilowatt steps from one minute to the next", () => {
    for (const p of demoPremises(BOXES_MAX).filter((q) => q.kind === "consumer")) {
      let stepW = 0;
      for (let t = at(7) + MIN; t < at(22); t += MIN) stepW = Math.max(stepW, Math.abs(p.loadW(t) - p.loadW(t - MIN)));
      assert.ok(stepW >= 1_000, `${p.label}: the largest minute-to-minute step 07:00-22:00 is ${stepW} W`);
    }
  });

  it("show eva's battery storing her surplus before she exports any", () => {
    const eva = demoPremises(5)[4];
    assert.ok(eva !== undefined && eva.battery !== null);
    const t0 = at(9, 10); // the demo's start: the battery starts half full
    for (let t = t0; t <= at(9, 45); t += MIN) {
      assert.ok(eva.pvW(t) - eva.loadW(t) > 1_000, "a surplus of over a kW");
      assert.equal(eva.netPowerW(t), 0, `nothing exported at ${siteClockText(t)}: it goes into the battery`);
    }
    let t = at(9, 45);
    while (eva.netPowerW(t) === 0 && t < at(12)) t += MIN;
    assert.ok(t < at(12) && eva.netPowerW(t) < -1_000, `exporting once the battery is full (${siteClockText(t)})`);
  });

  it("household i's meter, as the demo starts it, shows premise i's net power", async () => {
    const boxes = 5;
    const premises = demoPremises(boxes);
    const twins = demoPremises(boxes); // the same premises, asked the same times
    let now = at(9, 10);
    const meters = await Promise.all(premises.map((p, i) => startHouseholdMeter(i, p, () => now, 0)));
    try {
      for (; now <= at(13); now += 7 * MIN + 13_000) {
        meters.forEach((m, i) => assert.equal(m.values(now).powerTotal, twins[i]?.netPowerW(now), `household ${i} at ${siteClockText(now)}`));
      }
    } finally {
      await Promise.all(meters.map((m) => m.close()));
    }
  });
});
