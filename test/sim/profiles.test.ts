// The realistic profiles (issue 8, point 3; sim/README.md "Where the
// profiles come from"): the sun against published geometry, the clear-sky
// PV yield and the weathered yield against published PVGIS/JRC figures,
// household demand against Ofgem's typical consumption and the Elexon
// Profile Class 1 shape, diversity, the battery's bounds and energy books,
// and determinism: the same seed the same series, whatever order the
// questions come in. Then the simulated meter's `power` option.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { BATTERY_STEP_MS_MAX, type BatterySpec, HomeBattery, MJ_PER_WH, POWERWALL_2 } from "../../sim/battery.js";
import { APPLIANCES, DEFAULT_HOUSEHOLD, type HouseholdParams, dayKindOf, drawHousehold, h25HourlyW } from "../../sim/household.js";
import { type Premise, type PremiseKind, SiteModel, createNeighbourhood, createPremise } from "../../sim/premise.js";
import { Rng } from "../../sim/rng.js";
import { LONDON, MIN_PER_DAY, MS_PER_DAY, MS_PER_HOUR, MS_PER_MIN, type Site, civilFromDays, dayOfYear, daysFromCivil, localDayOf, utcMs, weekdayOf } from "../../sim/site.js";
import { elevationDeg, equationOfTimeMin, erbsDiffuseFraction, fractionalYearRad, haurwitzGhi, ineichenClearSky, extraterrestrialNormalW, sunVector } from "../../sim/solar.js";
import { type DayType, Weather } from "../../sim/weather.js";
import { SimulatedMeter } from "../../device/sim-meter.js";
import { loadMap } from "../helpers/meters.js";

const NO_EXTRAS: HouseholdParams = { ...DEFAULT_HOUSEHOLD, evShare: 0, heatPumpShare: 0 };
const SOUTH_35 = { tiltDeg: 35, azimuthDeg: 180 };

/** The highest the sun gets over a UTC day at a site, degrees (minute steps). */
function maxElevationDeg(site: Site, dayStartMs: number): number {
  let best = -90;
  for (let t = dayStartMs; t < dayStartMs + MS_PER_DAY; t += MS_PER_MIN) best = Math.max(best, elevationDeg(sunVector(site.latitudeDeg, site.longitudeDeg, t)));
  return best;
}

/** kWh per kWp of one local day's table. */
const dayKWhPerKwp = (table: Float32Array) => table.slice(0, MIN_PER_DAY).reduce((a, w) => a + w, 0) / 60 / 1_000;

function pearson(x: readonly number[], y: readonly number[]): number {
  const mx = x.reduce((a, v) => a + v, 0) / x.length;
  const my = y.reduce((a, v) => a + v, 0) / y.length;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  x.forEach((v, i) => {
    sxy += (v - mx) * ((y[i] as number) - my);
    sxx += (v - mx) ** 2;
    syy += ((y[i] as number) - my) ** 2;
  });
  return sxy / Math.sqrt(sxx * syy);
}

function hourlyMeans(watts: Int32Array): number[] {
  return Array.from({ length: 24 }, (_, h) => watts.slice(h * 60, h * 60 + 60).reduce((a, w) => a + w, 0) / 60);
}

const households = (seed: number, n: number, params = NO_EXTRAS) => createNeighbourhood({ seed, site: LONDON, critical: 0, prosumersWithBattery: 0, prosumers: 0, consumers: n, household: params }).premises;

describe("calendar", () => {
  it("days, civil dates, weekdays and days of year agree with the Gregorian calendar", () => {
    assert.equal(daysFromCivil(1970, 1, 1), 0);
    assert.equal(daysFromCivil(2025, 6, 21), 20_260);
    assert.deepEqual(civilFromDays(20_260), { year: 2025, month: 6, day: 21 });
    assert.equal(weekdayOf(daysFromCivil(2025, 6, 21)), 6); // a Saturday
    assert.equal(dayOfYear(daysFromCivil(2024, 12, 31)), 366);
    for (let d = -800; d < 60_000; d += 37) assert.equal(daysFromCivil(civilFromDays(d).year, civilFromDays(d).month, civilFromDays(d).day), d);
  });
});

describe("sun and clear sky (sim/solar.ts)", () => {
  it("the noon sun at London stands where the solstices and the equinox put it (within 0.5°)", () => {
    // At a solstice the declination is the obliquity of the ecliptic, 23.44°: noon elevation = 90 - latitude +- 23.44.
    const lat = LONDON.latitudeDeg;
    assert.ok(Math.abs(maxElevationDeg(LONDON, utcMs(2025, 6, 21)) - (90 - lat + 23.44)) < 0.5);
    assert.ok(Math.abs(maxElevationDeg(LONDON, utcMs(2025, 12, 21)) - (90 - lat - 23.44)) < 0.5);
    assert.ok(Math.abs(maxElevationDeg(LONDON, utcMs(2025, 3, 20)) - (90 - lat)) < 0.5); // equinox: 2025-03-20 09:01 UTC
  });

  it("the equation of time reaches its published extremes: about +16.4 min in early November, -14.2 min in mid-February", () => {
    const eot = (m: number, d: number) => equationOfTimeMin(fractionalYearRad(dayOfYear(daysFromCivil(2025, m, d)), 12));
    assert.ok(Math.abs(eot(11, 3) - 16.4) < 0.5, `${eot(11, 3)}`);
    assert.ok(Math.abs(eot(2, 11) + 14.2) < 0.5, `${eot(2, 11)}`);
  });

  it("the sun is down at London's midnight and so are irradiance and every array's output", () => {
    const midnight = utcMs(2025, 6, 21);
    assert.ok(sunVector(LONDON.latitudeDeg, LONDON.longitudeDeg, midnight).up < 0);
    assert.equal(ineichenClearSky(-0.1, 1_361, 3.5, 0).ghi, 0);
    const { premises } = createNeighbourhood({ seed: 4, site: LONDON, critical: 0, prosumersWithBattery: 5, prosumers: 10, consumers: 0 });
    for (const p of premises) for (const h of [0, 1, 2, 23]) assert.equal(p.pvW(utcMs(2025, 6, 21, h)), 0, `${p.label} at ${h}:00`);
  });

  it("Ineichen-Perez agrees with Haurwitz at noon (within 10 %), and Erbs' diffuse fraction is continuous", () => {
    for (const [m, d] of [[6, 21], [3, 20], [12, 21]] as const) {
      const noon = utcMs(2025, m, d, 12);
      const up = sunVector(LONDON.latitudeDeg, LONDON.longitudeDeg, noon).up;
      const ineichen = ineichenClearSky(up, extraterrestrialNormalW(dayOfYear(daysFromCivil(2025, m, d))), 3.5, 20).ghi;
      const haurwitz = haurwitzGhi(up);
      assert.ok(Math.abs(ineichen / haurwitz - 1) < 0.1, `${m}-${d}: Ineichen ${ineichen.toFixed(0)} vs Haurwitz ${haurwitz.toFixed(0)} W/m2`);
    }
    assert.ok(Math.abs(erbsDiffuseFraction(0.2199) - erbsDiffuseFraction(0.2201)) < 0.002);
    assert.ok(Math.abs(erbsDiffuseFraction(0.7999) - erbsDiffuseFraction(0.8001)) < 0.002);
  });

  it("a clear day's yield of a 4 kWp south-facing array at 51.5°N is in the plausible range for June and December", () => {
    // A clear day must beat the month's average: London about 4.5 kWh per kWp a day in June and 1.2 in December
    // (photonik.solar's modelled city table, sim/README.md); a clear June day there gives 5-7.5 kWh/kWp.
    const model = new SiteModel(LONDON, 1);
    const june = 4 * dayKWhPerKwp(model.clearSkyPvDay(SOUTH_35, daysFromCivil(2025, 6, 21)));
    const december = 4 * dayKWhPerKwp(model.clearSkyPvDay(SOUTH_35, daysFromCivil(2025, 12, 21)));
    assert.ok(june >= 20 && june <= 30 && june > 4 * 4.5, `June clear day ${june.toFixed(1)} kWh`);
    assert.ok(december >= 5 && december <= 11 && december > 4 * 1.2, `December clear day ${december.toFixed(1)} kWh`);
  });

  it("with weather, a year's yield at London is within JRC/PVGIS's band for southern England (845-951 kWh/kWp, +-10 %)", () => {
    const first = daysFromCivil(2025, 1, 1);
    const perSeed: number[] = [];
    const june: number[] = [];
    for (const seed of [1, 2, 3]) {
      const model = new SiteModel(LONDON, seed);
      let year = 0;
      for (let d = first; d < first + 365; d++) {
        const kWh = dayKWhPerKwp(model.pvDay(SOUTH_35, d));
        year += kWh;
        if (civilFromDays(d).month === 6) june.push(kWh);
      }
      perSeed.push(year);
    }
    const mean = perSeed.reduce((a, x) => a + x, 0) / perSeed.length;
    assert.ok(mean >= 845 * 0.9 && mean <= 951 * 1.1, `mean annual yield ${mean.toFixed(0)} kWh/kWp (seeds: ${perSeed.map((x) => x.toFixed(0)).join(", ")})`);
    const juneMean = june.reduce((a, x) => a + x, 0) / june.length;
    assert.ok(juneMean > 4.5 * 0.7 && juneMean < 4.5 * 1.3, `June mean ${juneMean.toFixed(2)} kWh/kWp a day`);
  });
});

describe("weather (sim/weather.ts)", () => {
  it("cloudFactor gives the same answer whatever order and however often it is asked", () => {
    const rng = new Rng(9);
    const start = utcMs(2025, 4, 1);
    const times = Array.from({ length: 3_000 }, () => start + Math.floor(rng.next() * 60 * MS_PER_DAY)); // 60 days: the 8-day caches evict
    const inOrder = new Weather(LONDON, 5);
    const sorted = [...times].sort((a, b) => a - b);
    const expected = new Map(sorted.map((t) => [t, inOrder.cloudFactor(t)]));
    const shuffled = new Weather(LONDON, 5);
    for (const t of times) assert.equal(shuffled.cloudFactor(t), expected.get(t));
    const backwards = new Weather(LONDON, 5);
    for (const t of [...sorted].reverse()) assert.equal(backwards.cloudFactor(t), expected.get(t));
    for (const t of times.slice(0, 100)) assert.equal(backwards.cloudFactor(t), expected.get(t)); // again
    assert.notDeepEqual(times.slice(0, 50).map((t) => new Weather(LONDON, 6).cloudFactor(t)), times.slice(0, 50).map((t) => expected.get(t)));
  });

  it("day types follow the season and persist from day to day", () => {
    const w = new Weather(LONDON, 11);
    const first = daysFromCivil(2023, 1, 1);
    const types: DayType[] = [];
    const overcast = { winter: 0, winterDays: 0, summer: 0, summerDays: 0 };
    for (let d = first; d < first + 3 * 365; d++) {
      const t = w.dayType(d);
      types.push(t);
      const month = civilFromDays(d).month;
      if (month === 12 || month <= 2) [overcast.winter, overcast.winterDays] = [overcast.winter + (t === "overcast" ? 1 : 0), overcast.winterDays + 1];
      if (month >= 6 && month <= 8) [overcast.summer, overcast.summerDays] = [overcast.summer + (t === "overcast" ? 1 : 0), overcast.summerDays + 1];
    }
    assert.ok(overcast.winter / overcast.winterDays > overcast.summer / overcast.summerDays + 0.1, JSON.stringify(overcast));
    const share = (k: DayType) => types.filter((t) => t === k).length / types.length;
    const independentSame = share("clear") ** 2 + share("partly") ** 2 + share("overcast") ** 2;
    const same = types.slice(1).filter((t, i) => t === types[i]).length / (types.length - 1);
    assert.ok(same > independentSame + 0.15, `repeat ${same.toFixed(2)} vs ${independentSame.toFixed(2)} if independent`);
  });

  it("clear days are bright and steady, overcast days dim, partly cloudy days change minute to minute", () => {
    const w = new Weather(LONDON, 12);
    const first = daysFromCivil(2025, 5, 1);
    const stats = new Map<DayType, { mean: number[]; jump: number[] }>(["clear", "partly", "overcast"].map((k) => [k as DayType, { mean: [], jump: [] }]));
    for (let d = first; d < first + 90; d++) {
      const kc = w.kcDay(d).slice(600, 840); // 10:00-14:00
      const s = stats.get(w.dayType(d)) as { mean: number[]; jump: number[] };
      s.mean.push(kc.reduce((a, x) => a + x, 0) / kc.length);
      let jump = 0;
      for (let m = 1; m < kc.length; m++) jump += Math.abs((kc[m] as number) - (kc[m - 1] as number));
      s.jump.push(jump / (kc.length - 1));
    }
    const avg = (xs: number[]) => xs.reduce((a, x) => a + x, 0) / xs.length;
    const c = stats.get("clear") as { mean: number[]; jump: number[] };
    const p = stats.get("partly") as { mean: number[]; jump: number[] };
    const o = stats.get("overcast") as { mean: number[]; jump: number[] };
    assert.ok(c.mean.length > 0 && p.mean.length > 0 && o.mean.length > 0);
    assert.ok(avg(c.mean) > 0.9 && avg(o.mean) < 0.5 && avg(p.mean) > avg(o.mean) && avg(p.mean) < avg(c.mean));
    assert.ok(avg(p.jump) > 0.03 && avg(c.jump) < 0.01, `minute-to-minute change: partly ${avg(p.jump).toFixed(3)}, clear ${avg(c.jump).toFixed(3)}`);
  });
});

describe("households and critical sites (sim/household.ts)", () => {
  it("the H25 shape comes to 1,000 kWh a year", () => {
    let wh = 0;
    for (let d = daysFromCivil(2025, 1, 1); d < daysFromCivil(2026, 1, 1); d++) wh += h25HourlyW(dayOfYear(d), dayKindOf(d)).reduce((a, x) => a + x, 0);
    assert.ok(Math.abs(wh / 1_000 - 1_000) < 5, `${(wh / 1_000).toFixed(1)} kWh`); // 2025 has 52 weeks and a day
  });

  it("annual consumption matches Ofgem's typical values: median 2,900 kWh, low 1,800 and high 4,300 inside the spread", () => {
    const draws = Array.from({ length: 2_000 }, (_, i) => drawHousehold(21, i).annualKWh).sort((a, b) => a - b);
    const median = draws[draws.length / 2] as number;
    assert.ok(Math.abs(median / 2_900 - 1) < 0.1, `median ${median.toFixed(0)} kWh`);
    const below = draws.filter((x) => x < 1_800).length / draws.length;
    const above = draws.filter((x) => x > 4_300).length / draws.length;
    assert.ok(below > 0.05 && below < 0.3 && above > 0.05 && above < 0.3, `below low ${below}, above high ${above}`);
    // ... and the minute tables deliver each household's figure: 52 days spread over the year and the week.
    const first = daysFromCivil(2025, 1, 1);
    const ps = households(21, 150);
    const ratios = ps.map((p) => {
      let wh = 0;
      for (let k = 0; k < 52; k++) wh += p.loadDay(first + 7 * k + (k % 7)).energyWh;
      return (wh / 52) * 0.365 / (p.household?.annualKWh as number);
    });
    const meanRatio = ratios.reduce((a, x) => a + x, 0) / ratios.length;
    assert.ok(Math.abs(meanRatio - 1) < 0.05, `delivered / drawn ${meanRatio.toFixed(3)}`);
  });

  it("diversity: 100 households' coincident peak is well below the sum of their peaks", () => {
    const day = daysFromCivil(2025, 1, 15); // a Wednesday
    const ps = households(22, 100);
    const total = new Float64Array(MIN_PER_DAY);
    let sumOfPeaks = 0;
    const peakMinutes = new Set<number>();
    for (const p of ps) {
      const t = p.loadDay(day);
      sumOfPeaks += t.peakW;
      peakMinutes.add(t.watts.indexOf(t.peakW));
      t.watts.forEach((w, m) => (total[m] = (total[m] as number) + w));
    }
    const coincidence = Math.max(...total) / sumOfPeaks;
    assert.ok(coincidence < 0.4, `coincidence factor ${coincidence.toFixed(2)}`);
    assert.ok(peakMinutes.size > 50, "households peak at different minutes");
    const annual = ps.map((p) => p.household?.annualKWh as number);
    assert.ok(Math.max(...annual) / Math.min(...annual) > 3, "households differ in size");
  });

  it("the evening peak, winter above summer, weekend midday above weekday midday, and the Elexon PC1 winter weekday shape", () => {
    const ps = households(23, 300);
    const halfHours = (day: number) => {
      const hh = new Array<number>(48).fill(0);
      for (const p of ps) p.loadDay(day).watts.forEach((w, m) => (hh[Math.floor(m / 30)] = (hh[Math.floor(m / 30)] as number) + w / 30 / ps.length / 1_000));
      return hh;
    };
    const winter = halfHours(daysFromCivil(2025, 1, 15)); // Wednesday
    const summer = halfHours(daysFromCivil(2025, 6, 18)); // Wednesday
    const sunday = halfHours(daysFromCivil(2025, 1, 19));
    const peakHour = (hh: number[]) => hh.indexOf(Math.max(...hh)) / 2;
    assert.ok(peakHour(winter) >= 17 && peakHour(winter) <= 20.5, `winter peak at ${peakHour(winter)}`);
    assert.ok(peakHour(summer) >= 17 && peakHour(summer) <= 22, `summer peak at ${peakHour(summer)}`);
    const sum = (xs: number[]) => xs.reduce((a, x) => a + x, 0);
    assert.ok(sum(winter) > 1.2 * sum(summer), "winter days use more (lighting, heating)");
    assert.ok(sum(sunday.slice(22, 28)) > 1.15 * sum(winter.slice(22, 28)), "Sunday 11:00-14:00 above a weekday's");
    // Elexon Ltd (1997), Electricity user load profiles by profile class, UKERC Energy Data Centre:
    // Profile Class 1 (domestic unrestricted), winter weekday, kW per half hour from 00:00.
    const elexonPc1WinterWeekday = [0.33, 0.28, 0.25, 0.23, 0.22, 0.21, 0.21, 0.2, 0.2, 0.21, 0.22, 0.24, 0.31, 0.39, 0.52, 0.63, 0.62, 0.57, 0.52, 0.5, 0.49, 0.48, 0.47, 0.47, 0.49, 0.49, 0.47, 0.45, 0.44, 0.46, 0.47, 0.53, 0.64, 0.78, 0.89, 0.92, 0.92, 0.91, 0.88, 0.84, 0.8, 0.78, 0.77, 0.72, 0.67, 0.59, 0.49, 0.41];
    const r = pearson(winter, elexonPc1WinterWeekday);
    assert.ok(r > 0.8, `correlation with Elexon PC1 winter weekday ${r.toFixed(2)}`);
  });

  it("1-second queries: demand holds within its minute", () => {
    const [p] = households(24, 1) as [Premise];
    const minute = utcMs(2025, 2, 3, 18, 7);
    const w = p.loadW(minute);
    for (let s = 1; s < 60; s++) assert.equal(p.loadW(minute + s * 1_000), w);
    assert.equal(p.loadDay(localDayOf(minute, 0)).watts[18 * 60 + 7], w);
  });

  it("appliance runs, EV sessions and heat pumps show where they should", () => {
    assert.ok(APPLIANCES.every((a) => a.share > 0) && Math.abs(APPLIANCES.reduce((s, a) => s + a.share, 0) - 1) < 1e-9);
    const ps = households(25, 120, { ...DEFAULT_HOUSEHOLD, evShare: 0.5, heatPumpShare: 0.5 });
    const ev = ps.find((p) => p.household?.ev !== null) as Premise;
    const first = daysFromCivil(2025, 3, 3);
    let sessionDays = 0;
    for (let d = first; d < first + 56; d++) if (ev.loadDay(d).peakW >= 7_000) sessionDays++;
    assert.ok(sessionDays >= 12 && sessionDays <= 40, `EV charging days in 8 weeks: ${sessionDays} (about 3 a week)`);
    const hp = ps.find((p) => p.household?.heatPump !== null && p.household?.ev === null) as Premise;
    const plain = ps.find((p) => p.household?.heatPump === null && p.household?.ev === null) as Premise;
    const ratio = (p: Premise) => p.loadDay(daysFromCivil(2025, 1, 15)).energyWh / p.loadDay(daysFromCivil(2025, 7, 16)).energyWh;
    assert.ok(ratio(hp) > ratio(plain) + 0.5, `heat pump winter/summer ${ratio(hp).toFixed(2)} vs ${ratio(plain).toFixed(2)}`);
  });

  it("critical sites are flatter with a higher base, sized as documented", () => {
    const { premises } = createNeighbourhood({ seed: 26, site: LONDON, critical: 3, prosumersWithBattery: 0, prosumers: 0, consumers: 0 });
    const first = daysFromCivil(2025, 1, 1);
    const expectedKWh: Record<string, number> = { shelter: 12_000, clinic: 23_750, pharmacy: 80 * 8.76 + 250 * 0.5 * 8.76 };
    const house = households(26, 1)[0] as Premise;
    for (const p of premises) {
      let wh = 0;
      for (let k = 0; k < 52; k++) wh += p.loadDay(first + 7 * k + (k % 7)).energyWh;
      const annual = (wh / 52) * 0.365;
      assert.ok(Math.abs(annual / (expectedKWh[p.role as string] as number) - 1) < 0.05, `${p.label}: ${annual.toFixed(0)} kWh`);
      const hourly = hourlyMeans(p.loadDay(daysFromCivil(2025, 1, 15)).watts);
      assert.ok(Math.min(...hourly) / Math.max(...hourly) > 0.3, `${p.label}: hourly ${hourly.map((w) => w.toFixed(0)).join(" ")} W`);
    }
    const h = hourlyMeans(house.loadDay(daysFromCivil(2025, 1, 15)).watts);
    assert.ok(Math.min(...h) / Math.max(...h) < 0.3, "a household is peakier");
  });
});

describe("home battery (sim/battery.ts)", () => {
  const spec: BatterySpec = { ...POWERWALL_2, capacityWh: 5_000, maxChargeW: 3_000, maxDischargeW: 2_500 };

  it("stays within its bounds and limits, never charges from nor exports to the grid, and books every mJ", () => {
    fc.assert(
      fc.property(fc.array(fc.record({ netW: fc.integer({ min: -20_000, max: 20_000 }), dtMs: fc.integer({ min: 0, max: BATTERY_STEP_MS_MAX }) }), { maxLength: 200 }), fc.integer({ min: 0, max: 1_000 }), (steps, initial) => {
        const b = new HomeBattery({ ...spec, initialSocPermille: initial });
        for (const { netW, dtMs } of steps) {
          const grid = b.step(netW, dtMs);
          assert.ok(b.minMJ <= b.socMilliJ && b.socMilliJ <= b.maxMJ);
          assert.ok(b.lastW <= spec.maxChargeW && -b.lastW <= spec.maxDischargeW);
          if (netW >= 0) assert.ok(b.lastW <= 0 && grid >= 0 && grid <= netW, "only discharges to cover an import, never exports");
          if (netW <= 0) assert.ok(b.lastW >= 0 && grid <= 0 && grid >= netW, "only charges from a surplus, never imports for it");
          assert.equal(b.socMilliJ - b.initialMJ, b.chargedMJ - b.dischargedMJ - b.lossMJ);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("gives back its round-trip efficiency: 90 % of what went in", () => {
    const b = new HomeBattery({ ...spec, initialSocPermille: spec.socMinPermille }); // starts at its reserve
    for (let s = 0; s < 4 * 3_600; s++) b.step(-3_000, 1_000); // fills, then stops
    assert.ok(b.maxMJ - b.socMilliJ < 1_000, "full, to the last watt-second"); // less than 1 W for a step cannot go in
    assert.equal(b.step(-1_000, 1_000), -1_000, "full: the surplus goes to the grid");
    for (let s = 0; s < 4 * 3_600; s++) b.step(2_000, 1_000); // empties to the reserve
    assert.ok(b.socMilliJ - b.minMJ < 2_000 * 1_000 * 2, "down to the reserve");
    assert.equal(b.step(1_000, 1_000), 1_000, "at the reserve: the import goes to the grid");
    const roundTrip = b.dischargedMJ / b.chargedMJ;
    assert.ok(Math.abs(roundTrip - 0.9) < 0.005, `out / in ${roundTrip.toFixed(4)}`);
    assert.equal(b.socMilliJ - b.initialMJ, b.chargedMJ - b.dischargedMJ - b.lossMJ);
    assert.equal(MJ_PER_WH, 3_600_000);
  });
});

describe("premises (sim/premise.ts)", () => {
  const mix = { critical: 3, prosumersWithBattery: 3, prosumers: 3, consumers: 3 };

  it("the same seed gives the same series, in any process; another seed another", () => {
    const a = createNeighbourhood({ seed: 31, site: LONDON, ...mix }).premises;
    const b = createNeighbourhood({ seed: 31, site: LONDON, ...mix }).premises;
    const c = createNeighbourhood({ seed: 32, site: LONDON, ...mix }).premises;
    const start = utcMs(2025, 5, 10, 6);
    let differs = 0;
    for (let s = 0; s < 4 * 3_600; s += 7) {
      const t = start + s * 1_000;
      a.forEach((p, i) => {
        const v = p.netPowerW(t);
        assert.equal(v, (b[i] as Premise).netPowerW(t));
        if (v !== (c[i] as Premise).netPowerW(t)) differs++;
      });
    }
    assert.ok(differs > 1_000);
    // A premise built alone (its own SiteModel) sees the same sky as one built with its neighbourhood.
    const alone = createPremise({ seed: 31, index: 7, kind: "prosumer", site: LONDON });
    for (let s = 0; s < 200; s++) assert.equal(alone.pvW(start + s * 61_000), (a[7] as Premise).pvW(start + s * 61_000));
  });

  it("load and PV are pure: any order gives the same values", () => {
    const { premises } = createNeighbourhood({ seed: 33, site: LONDON, ...mix });
    const rng = new Rng(3);
    const times = Array.from({ length: 500 }, () => utcMs(2025, 7, 1) + Math.floor(rng.next() * 20 * MS_PER_DAY));
    const fresh = createNeighbourhood({ seed: 33, site: LONDON, ...mix }).premises;
    const sorted = [...times].sort((x, y) => x - y);
    const want = new Map(sorted.map((t) => [t, premises.map((p) => [p.loadW(t), p.pvW(t)])]));
    for (const t of times) assert.deepEqual(fresh.map((p) => [p.loadW(t), p.pvW(t)]), want.get(t));
  });

  it("PV interpolates within the minute; net power is load minus PV; the battery shaves import and export", () => {
    const day = utcMs(2025, 6, 14);
    const pv = createPremise({ seed: 34, index: 1, kind: "prosumer", site: LONDON });
    const noon = day + 12 * MS_PER_HOUR;
    const [a, b] = [pv.pvW(noon), pv.pvW(noon + MS_PER_MIN)];
    const mid = pv.pvW(noon + 30_000);
    assert.ok(mid >= Math.min(a, b) - 1 && mid <= Math.max(a, b) + 1);
    for (let s = 0; s < 600; s++) assert.equal(pv.netPowerW(noon + s * 1_000), pv.loadW(noon + s * 1_000) - pv.pvW(noon + s * 1_000));

    const batteryPremise = (kind: PremiseKind) => createPremise({ seed: 34, index: 2, kind, site: LONDON, pv: { kWp: 5, tiltDeg: 35, azimuthDeg: 180, inverterW: 5_000, systemLossPermille: 140, tempCoeffPerK: -0.0035, noctC: 45 }, battery: { ...POWERWALL_2, capacityWh: 10_000 } });
    const withBattery = batteryPremise("prosumer-battery");
    const without = batteryPremise("prosumer");
    let [importWith, importWithout, exportWith, exportWithout] = [0, 0, 0, 0];
    for (let s = 0; s < 2 * 86_400; s += 10) {
      const t = day + s * 1_000;
      const g = withBattery.netPowerW(t);
      const h = without.netPowerW(t);
      [importWith, exportWith] = [importWith + Math.max(0, g), exportWith + Math.max(0, -g)];
      [importWithout, exportWithout] = [importWithout + Math.max(0, h), exportWithout + Math.max(0, -h)];
    }
    assert.ok(importWith < 0.8 * importWithout && exportWith < exportWithout, `import ${importWith} vs ${importWithout}, export ${exportWith} vs ${exportWithout}`);
    const battery = withBattery.battery as HomeBattery;
    assert.ok(battery.chargedMJ > 0 && battery.dischargedMJ > 0);
  });

  it("net power is asked in time order: a repeat returns the same value, an earlier time throws, a long gap is caught up", () => {
    const p = createPremise({ seed: 35, index: 4, kind: "prosumer-battery", site: LONDON });
    const t = utcMs(2025, 8, 1, 9);
    const v = p.netPowerW(t);
    assert.equal(p.netPowerW(t), v);
    assert.throws(() => p.netPowerW(t - 1_000));
    const later = p.netPowerW(t + 3 * MS_PER_DAY + 17_000); // three days on: sub-stepped over the last one
    assert.ok(Number.isSafeInteger(later));
    const b = p.battery as HomeBattery;
    assert.ok(b.minMJ <= b.socMilliJ && b.socMilliJ <= b.maxMJ);
  });
});

describe("the simulated meter's power option (device/sim-meter.ts)", () => {
  it("a premise's net power drives the meter instead of the stand-in profiles", async () => {
    let now = utcMs(2025, 6, 14, 12);
    const p = createPremise({ seed: 36, index: 3, kind: "prosumer", site: LONDON });
    const meter = await SimulatedMeter.start({ map: loadMap("eastron-sdm630"), now: () => now, power: (t) => p.netPowerW(t) });
    try {
      assert.equal(meter.values(now).powerTotal, p.netPowerW(now));
      now += 60_000;
      assert.equal(meter.values(now).powerTotal, p.netPowerW(now));
      assert.equal(meter.powerW(now), p.netPowerW(now));
    } finally {
      await meter.close();
    }
  });
});
