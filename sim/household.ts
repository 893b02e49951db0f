// Electricity demand of households and critical sites, pure and
// deterministic, minute by minute (a query inside a minute holds the
// minute's value: appliances switch, they do not ramp).
//
// Households (sources in sim/README.md, "Where the profiles come from"):
//   - Annual consumption: lognormal, median 2,900 kWh (Ofgem's Typical
//     Domestic Consumption Value for a medium electricity user, Profile
//     Class 1, in force from April 2020; Ofgem uses the median), spread
//     sigma 0.436 in log space, chosen by hand so that Ofgem's "low" (1,800)
//     and "high" (4,300) values fall near the 14th and 82nd percentiles
//     (Ofgem does not say which percentiles they are).
//   - Shape: the German BDEW standard load profile H25 (2025; 62
//     distribution networks' 2018-2019 data), hourly, weekday / Saturday /
//     Sunday-or-holiday, at six dates through the year, interpolated
//     linearly between them (and through the hour midpoints within a day).
//     The numbers were read from a third-party export of H25 dynamised for
//     2025 (github.com/kralo/stromdaten-deutschland-standardlastprofile,
//     data-exported/h25_dyn_2025_stdlich.csv) on dates where that export
//     shows BDEW's day types correctly; August has no holiday there, so its
//     Sunday is June's Sunday scaled hour by hour by August's Saturday over
//     June's (an approximation by hand). Normalised here to exactly 1,000
//     kWh a year. It is the average of many homes: a German shape on a
//     British annual figure, checked against the Elexon Profile Class 1
//     winter weekday in the tests.
//   - Diversity: each household draws its annual consumption, a time shift
//     of its routine (sd 30 min), a base load share, a fridge-freezer
//     cycle, and the share of its activity that comes as discrete appliance
//     runs (kettle, microwave, cooking, washing machine, dishwasher, tumble
//     dryer) started at random minutes weighted by its own activity curve,
//     so that the average of many households keeps the H25 shape and each
//     household keeps its annual energy in expectation. Per-use energies
//     from Ofgem's examples where it gives them (electric oven 2 kWh per 30
//     minutes, tumble dryer 4.5 kWh a cycle, fridge-freezer 1 kWh per 26
//     hours); the other powers, durations and shares are typical ratings
//     chosen by hand.
//   - Some households have an EV (share 10 % by default, a scenario
//     parameter): a 7 kW home charger, charging on about 3 days a week (the
//     Electric Nation trial, WPD 2019: drivers charged about three times a
//     week, plugged in for 12+ hours) from an evening plug-in, 6-20 kWh a
//     session (chosen; about 2,000 kWh a year). Some have an air-source
//     heat pump (5 %): heat = a gas household's heating (Ofgem's medium gas
//     TDCV 12,000 kWh, spread sigma 0.3) x 0.84 (the fossil boiler
//     efficiency the Electrification of Heat demonstration compared with),
//     electricity = heat / 2.8 (EoH's median ASHP seasonal performance
//     factor); 80 % space heating by heating degree-days (base 15.5 °C, the
//     UK convention) from the weather's temperature, 20 % hot water in two
//     daily reheats (the split chosen).
//
// Critical sites are flatter with a higher base, hand-made shapes (said
// where): a clinic, a shelter (a community centre in normal use), a
// pharmacy's medicine fridge; the first two sized from CIBSE TM46 benchmarks.
import { assert } from "../ledger/assert.js";
import { type Rng } from "./rng.js";
import { BoundedCache, MIN_PER_DAY, MS_PER_DAY, MS_PER_MIN, type Site, assertSite, gaussian, offsetMsOf, rngFor, seasonalDoy, uniform, weekdayOf, winterness } from "./site.js";
import { type Weather } from "./weather.js";

// ---- The BDEW H25 shape -------------------------------------------------------

/** 0 weekday, 1 Saturday, 2 Sunday (holidays are not modelled). */
export type DayKind = 0 | 1 | 2;

export function dayKindOf(day: number): DayKind {
  const wd = weekdayOf(day);
  return wd === 6 ? 1 : wd === 0 ? 2 : 0;
}

interface Anchor {
  readonly doy: number;
  readonly hours: readonly [Float64Array, Float64Array, Float64Array];
}

// W per hour for 1,000 kWh a year as dynamised for the date (H25 x BDEW's dynamisation factor), hours 00..23.
const H25_ROWS: readonly { readonly doy: number; readonly date: string; readonly w: readonly number[]; readonly sa: readonly number[]; readonly su: readonly number[] | null }[] = [
  {
    doy: 15,
    date: "W 01-15, Sa 01-11, Su 01-01",
    w: [93.3, 80.2, 75.9, 75.3, 78.5, 89.4, 115.6, 125.7, 118.1, 114.1, 115.2, 126.2, 132.0, 130.8, 127.7, 131.9, 150.7, 188.2, 209.3, 207.2, 189.1, 168.9, 149.2, 120.0],
    sa: [102.4, 86.8, 79.3, 76.3, 76.1, 77.5, 90.9, 116.5, 143.5, 160.1, 173.0, 190.3, 189.7, 181.8, 177.0, 177.0, 187.9, 213.1, 221.4, 208.8, 186.5, 168.2, 154.7, 129.0],
    su: [107.7, 92.7, 83.8, 79.2, 77.2, 77.8, 86.5, 105.7, 134.3, 160.8, 183.6, 209.3, 205.2, 190.0, 179.6, 176.5, 185.8, 214.1, 224.0, 211.5, 188.9, 166.3, 146.8, 118.2],
  },
  {
    doy: 127,
    date: "W 05-07, Sa 05-03, Su 05-01",
    w: [76.6, 65.9, 61.9, 61.7, 64.8, 74.6, 93.9, 101.0, 95.2, 92.3, 92.3, 100.6, 105.5, 103.5, 99.8, 100.9, 108.5, 126.2, 145.5, 152.7, 150.0, 143.5, 126.6, 98.9],
    sa: [85.4, 71.8, 66.1, 64.2, 64.9, 66.9, 79.6, 103.5, 124.7, 136.0, 142.1, 152.5, 151.1, 142.2, 137.4, 134.6, 135.3, 143.9, 153.8, 154.0, 149.9, 144.8, 133.3, 110.9],
    su: [89.6, 76.3, 70.1, 67.4, 66.5, 68.0, 77.3, 99.5, 127.1, 146.6, 159.4, 174.9, 167.4, 150.2, 138.6, 131.8, 131.6, 144.4, 157.8, 159.1, 153.7, 145.7, 127.7, 99.7],
  },
  {
    doy: 162,
    date: "W 06-11, Sa 06-07, Su 06-09",
    w: [75.8, 65.3, 61.1, 60.2, 62.1, 69.8, 86.4, 92.3, 88.7, 86.8, 86.6, 94.4, 99.7, 98.0, 95.2, 96.6, 103.4, 118.2, 134.5, 139.9, 136.8, 129.3, 120.3, 96.5],
    sa: [84.0, 71.2, 65.1, 62.9, 62.2, 63.6, 74.6, 94.4, 113.3, 123.9, 130.1, 139.4, 138.2, 130.8, 127.4, 124.7, 125.3, 132.1, 139.6, 138.4, 132.8, 126.6, 123.0, 105.2],
    su: [85.8, 73.5, 66.7, 63.4, 61.5, 61.8, 69.3, 85.9, 108.6, 127.3, 140.6, 156.4, 152.0, 137.8, 128.1, 123.3, 123.8, 133.9, 144.5, 146.0, 140.8, 131.5, 120.1, 95.6],
  },
  {
    doy: 232,
    date: "W 08-20, Sa 08-23, Su derived",
    w: [75.3, 66.1, 61.9, 60.8, 62.9, 71.1, 82.4, 87.1, 85.3, 86.3, 87.9, 96.7, 101.2, 98.2, 94.9, 95.9, 102.8, 117.2, 132.3, 137.3, 137.5, 132.8, 115.1, 92.5],
    sa: [81.7, 71.0, 65.4, 63.1, 63.1, 65.8, 73.3, 90.5, 108.2, 119.1, 126.7, 136.6, 136.4, 129.2, 125.0, 122.4, 122.9, 128.9, 135.4, 134.7, 133.0, 130.0, 117.8, 100.9],
    su: null, // June's Sunday x (August's Saturday / June's Saturday), hour by hour
  },
  {
    doy: 288,
    date: "W 10-15, Sa 10-18, Su 10-03",
    w: [73.8, 63.8, 60.0, 60.1, 64.1, 76.2, 98.4, 105.5, 98.7, 96.6, 97.3, 106.3, 110.8, 107.8, 104.5, 106.1, 115.4, 138.6, 167.3, 179.9, 162.6, 142.1, 121.6, 95.8],
    sa: [83.3, 70.6, 64.9, 63.7, 65.0, 68.9, 81.0, 102.5, 124.1, 136.8, 144.6, 154.4, 152.5, 143.7, 138.2, 136.2, 138.6, 151.9, 174.7, 180.4, 161.1, 143.0, 128.3, 107.7],
    su: [80.6, 68.7, 62.1, 60.2, 60.2, 63.4, 74.9, 95.3, 122.3, 143.0, 158.2, 174.4, 166.4, 150.1, 139.4, 134.1, 136.9, 155.2, 173.3, 177.0, 156.7, 135.7, 114.8, 90.2],
  },
  {
    doy: 351,
    date: "W 12-17, Sa 12-20, Su 12-25",
    w: [89.2, 76.1, 71.9, 71.3, 74.8, 85.6, 112.8, 125.7, 119.4, 114.6, 115.6, 126.0, 130.6, 129.5, 127.9, 134.9, 160.0, 191.7, 205.5, 203.6, 187.3, 167.4, 146.7, 117.3],
    sa: [97.2, 81.6, 74.5, 72.4, 73.0, 75.6, 90.0, 115.2, 140.6, 155.6, 167.4, 181.9, 181.3, 175.0, 172.2, 174.7, 190.5, 210.0, 210.9, 196.9, 177.8, 162.3, 149.8, 126.6],
    su: [104.4, 88.2, 80.0, 76.4, 75.1, 77.0, 88.3, 111.4, 144.0, 172.6, 195.4, 219.2, 211.0, 192.5, 182.2, 179.9, 191.5, 212.2, 216.1, 205.7, 186.9, 166.8, 147.7, 119.8],
  },
];

const ANCHORS: readonly Anchor[] = (() => {
  const june = H25_ROWS[2] as (typeof H25_ROWS)[number];
  return H25_ROWS.map((r) => {
    assert(r.w.length === 24 && r.sa.length === 24 && (r.su === null || r.su.length === 24), "H25 rows hold 24 hours");
    const su = r.su ?? r.sa.map((x, h) => ((june.su as readonly number[])[h] as number) * (x / (june.sa[h] as number)));
    return { doy: r.doy, hours: [Float64Array.from(r.w), Float64Array.from(r.sa), Float64Array.from(su)] as const };
  });
})();

/** Hourly H25 values (un-normalised) for a seasonal day of year and day kind, into `out` (24). */
function h25Raw(doy: number, kind: DayKind, out: Float64Array): Float64Array {
  const n = ANCHORS.length;
  let i = n - 1; // the anchor at or before doy, cyclically
  for (let k = 0; k < n; k++) if ((ANCHORS[k] as Anchor).doy <= doy) i = k;
  const a = ANCHORS[i] as Anchor;
  const b = ANCHORS[(i + 1) % n] as Anchor;
  const span = (b.doy - a.doy + 365) % 365;
  const f = ((doy - a.doy + 365) % 365) / span;
  const ha = a.hours[kind];
  const hb = b.hours[kind];
  for (let h = 0; h < 24; h++) out[h] = (ha[h] as number) + ((hb[h] as number) - (ha[h] as number)) * f;
  return out;
}

/** Scale so that a year of 5 weekdays, a Saturday and a Sunday a week comes to 1,000 kWh exactly. */
const H25_NORM: number = (() => {
  const h = new Float64Array(24);
  let wh = 0;
  for (let doy = 1; doy <= 365; doy++) {
    for (const [kind, weight] of [[0, 5 / 7], [1, 1 / 7], [2, 1 / 7]] as const) {
      h25Raw(doy, kind, h);
      for (let k = 0; k < 24; k++) wh += (h[k] as number) * weight;
    }
  }
  return 1_000_000 / wh;
})();

/** The H25 shape: W for a household of 1,000 kWh a year, hour by hour (hour k is the mean of [k, k+1)). */
export function h25HourlyW(seasonalDoyValue: number, kind: DayKind, out: Float64Array = new Float64Array(24)): Float64Array {
  h25Raw(seasonalDoyValue, kind, out);
  for (let k = 0; k < 24; k++) out[k] = (out[k] as number) * H25_NORM;
  return out;
}

/** The hourly values as a curve through the hour midpoints at minute m of the day (fractional, within a day either side), periodic over the day. */
function curveAt(hourly: Float64Array, minute: number): number {
  let x = (minute + 0.5) / 60 - 0.5;
  if (x < 0) x += 24; // no modulo: a float % is a slow call, and this runs 1,440 times a premise-day
  else if (x >= 24) x -= 24;
  const k = Math.floor(x);
  const f = x - k;
  return (hourly[k] as number) * (1 - f) + (hourly[k === 23 ? 0 : k + 1] as number) * f;
}

// ---- Households -------------------------------------------------------------------

export interface HouseholdParams {
  readonly annualMedianKWh: number;
  readonly annualSigmaLn: number;
  readonly annualMinKWh: number;
  readonly annualMaxKWh: number;
  /** Standard deviation of a household's routine shift, min (clamped to 3 sd). */
  readonly shiftSdMin: number;
  /** Share of households with an EV, 0..1. */
  readonly evShare: number;
  /** Share of households with an air-source heat pump, 0..1. */
  readonly heatPumpShare: number;
}

export const DEFAULT_HOUSEHOLD: HouseholdParams = { annualMedianKWh: 2_900, annualSigmaLn: 0.436, annualMinKWh: 700, annualMaxKWh: 12_000, shiftSdMin: 30, evShare: 0.1, heatPumpShare: 0.05 };

export function checkHouseholdParams(p: HouseholdParams): string[] {
  const problems: string[] = [];
  if (!(p.annualMinKWh > 0 && p.annualMinKWh <= p.annualMedianKWh && p.annualMedianKWh <= p.annualMaxKWh && p.annualMaxKWh <= 100_000)) problems.push("annual: 0 < min <= median <= max <= 100,000 kWh");
  if (!(p.annualSigmaLn >= 0 && p.annualSigmaLn <= 2)) problems.push("annualSigmaLn: 0..2");
  if (!(p.shiftSdMin >= 0 && p.shiftSdMin <= 120)) problems.push("shiftSdMin: 0..120");
  if (!(p.evShare >= 0 && p.evShare <= 1)) problems.push("evShare: 0..1");
  if (!(p.heatPumpShare >= 0 && p.heatPumpShare <= 1)) problems.push("heatPumpShare: 0..1");
  return problems;
}

export interface EvTraits {
  readonly chargerW: number;
  /** Chance of a charging session on a given day. */
  readonly sessionChance: number;
  readonly sessionMinKWh: number;
  readonly sessionMaxKWh: number;
}

export interface HeatPumpTraits {
  /** Electricity a year at the climate's mean weather, kWh. */
  readonly annualKWh: number;
  /** Of which hot water, 0..1. */
  readonly hotWaterShare: number;
}

export interface HouseholdTraits {
  /** What the household's H25-shaped demand comes to in a year, kWh (EV and heat pump come on top). */
  readonly annualKWh: number;
  /** Its routine runs this much later than the average (negative: earlier), min. */
  readonly shiftMin: number;
  /** Its steady base as a share of its lowest hour. */
  readonly baseShare: number;
  /** The share of its activity (demand above the base) that comes as appliance runs. */
  readonly eventShare: number;
  readonly fridgeW: number;
  readonly fridgeDuty: number;
  readonly fridgePeriodS: number;
  readonly fridgePhaseS: number;
  readonly ev: EvTraits | null;
  readonly heatPump: HeatPumpTraits | null;
}

const STREAM_TRAITS = 0x4801;
const STREAM_DAY = 0x4802;
const STREAM_EV = 0x4803;
const STREAM_NOISE = 0x4804;

/** Ofgem's medium gas TDCV (2020), kWh a year; x 0.84 boiler efficiency (EoH) = heat; / 2.8 SPF (EoH median ASHP) = electricity. */
export const HEAT_PUMP_BASIS = { gasMedianKWh: 12_000, gasSigmaLn: 0.3, boilerEfficiency: 0.84, spf: 2.8, hotWaterShare: 0.2, baseTempC: 15.5 } as const;

/** A household's traits, drawn from (seed, index): the same whatever else is drawn. */
export function drawHousehold(seed: number, index: number, p: HouseholdParams = DEFAULT_HOUSEHOLD): HouseholdTraits {
  const problems = checkHouseholdParams(p);
  assert(problems.length === 0, `bad household params: ${problems.join("; ")}`);
  const rng = rngFor(seed, index, STREAM_TRAITS);
  const annualKWh = Math.min(p.annualMaxKWh, Math.max(p.annualMinKWh, p.annualMedianKWh * Math.exp(p.annualSigmaLn * gaussian(rng))));
  const shiftMin = Math.round(Math.max(-3, Math.min(3, gaussian(rng))) * p.shiftSdMin);
  const baseShare = uniform(rng, 0.6, 0.95);
  const eventShare = uniform(rng, 0.35, 0.6);
  const fridgePeriodS = rng.int(1_800, 3_600);
  const fridge = { fridgeW: rng.int(70, 130), fridgeDuty: uniform(rng, 0.3, 0.45), fridgePeriodS, fridgePhaseS: rng.int(0, fridgePeriodS - 1) };
  const hasEv = rng.next() < p.evShare;
  const hasHeatPump = rng.next() < p.heatPumpShare;
  const gas = HEAT_PUMP_BASIS.gasMedianKWh * Math.exp(HEAT_PUMP_BASIS.gasSigmaLn * gaussian(rng));
  const ev: EvTraits | null = hasEv ? { chargerW: 7_000, sessionChance: 3 / 7, sessionMinKWh: 6, sessionMaxKWh: 20 } : null;
  const heatPump: HeatPumpTraits | null = hasHeatPump ? { annualKWh: (gas * HEAT_PUMP_BASIS.boilerEfficiency) / HEAT_PUMP_BASIS.spf, hotWaterShare: HEAT_PUMP_BASIS.hotWaterShare } : null;
  return { annualKWh, shiftMin, baseShare, eventShare, ...fridge, ev, heatPump };
}

/** An appliance run: phases of [W, minutes]. */
interface Appliance {
  readonly name: string;
  readonly phases: readonly (readonly [number, number])[];
  /** Its share of a household's appliance-run energy. */
  readonly share: number;
}

/** Powers and durations: typical ratings chosen by hand, except where Ofgem gives the energy of a use (see the header). */
export const APPLIANCES: readonly Appliance[] = [
  { name: "kettle", phases: [[2_800, 3]], share: 0.12 },
  { name: "microwave", phases: [[1_200, 4]], share: 0.05 },
  { name: "cooking", phases: [[4_000, 30]], share: 0.33 }, // Ofgem: an electric oven, 2 kWh per 30 minutes
  { name: "washing machine", phases: [[2_000, 15], [250, 55]], share: 0.17 },
  { name: "dishwasher", phases: [[1_900, 30], [100, 60]], share: 0.13 },
  { name: "tumble dryer", phases: [[2_500, 108]], share: 0.2 }, // Ofgem: 4.5 kWh a cycle
];

const APPLIANCE_W_MIN = APPLIANCES.map((a) => a.phases.reduce((s, [w, min]) => s + w * min, 0));
const APPLIANCE_MINUTES = APPLIANCES.map((a) => a.phases.reduce((s, [, min]) => s + min, 0));

/**
 * One day of a load: whole W per minute, and the smooth expectation a
 * forecaster would use (the mean curve, appliance runs as their average,
 * the heat pump; no EV session). Shared with the load's cache: read it,
 * never write it.
 */
export interface LoadDay {
  readonly day: number;
  readonly watts: Int32Array;
  readonly expectedW: Float32Array;
  readonly energyWh: number;
  readonly peakW: number;
}

/** A premise's demand over time. */
export interface Load {
  /** Demand at timeMs, whole W (the minute's value). */
  loadW(timeMs: number): number;
  /** The smooth expectation at timeMs (what a forecast knows), W. */
  expectedW(timeMs: number): number;
  /** The local day's table. */
  day(day: number): LoadDay;
}

/** Days of tables kept per premise: today and one more (a reader a little behind, or a report). */
export const LOAD_DAYS_CACHED_MAX = 2;

/** The shared machinery: per-day tables, a fast path for the current day. */
abstract class DayTableLoad implements Load {
  protected readonly offsetMs: number;
  private readonly days = new BoundedCache<number, LoadDay>(LOAD_DAYS_CACHED_MAX);
  private curDay = Number.NaN;
  private cur: LoadDay | null = null;

  constructor(readonly site: Site) {
    assertSite(site);
    this.offsetMs = offsetMsOf(site);
  }

  loadW(timeMs: number): number {
    const shifted = timeMs + this.offsetMs;
    const day = Math.floor(shifted / MS_PER_DAY);
    if (day !== this.curDay) this.enter(day);
    return (this.cur as LoadDay).watts[Math.floor((shifted - day * MS_PER_DAY) / MS_PER_MIN)] as number;
  }

  expectedW(timeMs: number): number {
    const shifted = timeMs + this.offsetMs;
    const day = Math.floor(shifted / MS_PER_DAY);
    if (day !== this.curDay) this.enter(day);
    return (this.cur as LoadDay).expectedW[Math.floor((shifted - day * MS_PER_DAY) / MS_PER_MIN)] as number;
  }

  day(day: number): LoadDay {
    return this.days.get(day, (d) => this.build(d));
  }

  private enter(day: number): void {
    this.cur = this.day(day);
    this.curDay = day;
  }

  protected abstract build(day: number): LoadDay;
}

function finishDay(day: number, watts: Float64Array, expected: Float64Array): LoadDay {
  const w = new Int32Array(MIN_PER_DAY);
  let sum = 0;
  let peak = 0;
  for (let m = 0; m < MIN_PER_DAY; m++) {
    const v = Math.max(0, Math.round(watts[m] as number));
    w[m] = v;
    sum += v;
    if (v > peak) peak = v;
  }
  return { day, watts: w, expectedW: Float32Array.from(expected), energyWh: sum / 60, peakW: peak };
}

export class HouseholdLoad extends DayTableLoad {
  private readonly hddYear: number;

  constructor(
    site: Site,
    private readonly weather: Weather,
    readonly seed: number,
    readonly index: number,
    readonly traits: HouseholdTraits,
  ) {
    super(site);
    let hdd = 0;
    if (traits.heatPump !== null) for (let doy = 1; doy <= 365; doy++) hdd += Math.max(0, HEAT_PUMP_BASIS.baseTempC - weather.climateMeanC(doy - 1)); // days 0..364 of 1970: a year of the climate
    this.hddYear = hdd;
  }

  protected build(day: number): LoadDay {
    const t = this.traits;
    const hourly = h25HourlyW(seasonalDoy(day, this.site.latitudeDeg), dayKindOf(day));
    const scale = t.annualKWh / 1_000;
    const mean = new Float64Array(MIN_PER_DAY);
    let low = Infinity;
    for (let m = 0; m < MIN_PER_DAY; m++) {
      const v = curveAt(hourly, m - t.shiftMin) * scale;
      mean[m] = v;
      if (v < low) low = v;
    }
    const watts = new Float64Array(MIN_PER_DAY);
    const expected = Float64Array.from(mean);
    // Base: steady standby plus the fridge-freezer's cycle, whose mean is part of the base.
    const base = t.baseShare * low;
    const fridgeW = Math.min(t.fridgeW, (0.8 * base) / t.fridgeDuty);
    const steady = base - fridgeW * t.fridgeDuty;
    const onS = t.fridgeDuty * t.fridgePeriodS;
    // Activity: the rest; a share of it as appliance runs started where the activity is.
    const cumulative = new Float64Array(MIN_PER_DAY);
    let activity = 0;
    let cycleS = t.fridgePhaseS; // position in the compressor's cycle: (m x 60 + phase) mod period, kept without a modulo
    for (let m = 0; m < MIN_PER_DAY; m++) {
      const a = (mean[m] as number) - base;
      activity += a;
      cumulative[m] = activity;
      watts[m] = steady + (cycleS < onS ? fridgeW : 0) + (1 - t.eventShare) * a;
      cycleS += 60;
      if (cycleS >= t.fridgePeriodS) cycleS -= t.fridgePeriodS; // period >= 1,800 s > one minute
    }
    const rng = rngFor(this.seed, this.index, day, STREAM_DAY);
    this.appliances(rng, watts, cumulative, t.eventShare * activity);
    if (t.ev !== null) this.evSessions(day, t.ev, watts);
    if (t.heatPump !== null) this.heatPump(day, t.heatPump, watts, expected);
    return finishDay(day, watts, expected);
  }

  /** Appliance runs worth `budgetWMin` in expectation: for each appliance its expected count, drawn as floor + a Bernoulli remainder. */
  private appliances(rng: Rng, watts: Float64Array, cumulative: Float64Array, budgetWMin: number): void {
    const total = cumulative[MIN_PER_DAY - 1] as number;
    if (!(total > 0) || !(budgetWMin > 0)) return;
    APPLIANCES.forEach((a, k) => {
      const expectedCount = (budgetWMin * a.share) / (APPLIANCE_W_MIN[k] as number);
      const count = Math.floor(expectedCount) + (rng.next() < expectedCount - Math.floor(expectedCount) ? 1 : 0);
      const minutes = APPLIANCE_MINUTES[k] as number;
      for (let n = 0; n < count; n++) {
        // The drawn minute is the run's middle, so runs sit where the activity is rather than trail it;
        // a run starts after midnight and ends by the next: the day keeps its energy.
        const start = Math.max(0, Math.min(upperBound(cumulative, rng.next() * total) - Math.floor(minutes / 2), MIN_PER_DAY - minutes));
        let m = start;
        for (const [w, min] of a.phases) for (let i = 0; i < min; i++, m++) watts[m] = (watts[m] as number) + w;
      }
    });
  }

  /** The EV's session of `day` (if any) and the end of the day before's running past midnight. */
  private evSessions(day: number, ev: EvTraits, watts: Float64Array): void {
    for (const d of [day - 1, day]) {
      const s = evSession(this.seed, this.index, d, ev, this.traits.shiftMin);
      if (s === null) continue;
      const from = s.startMin + (d - day) * MIN_PER_DAY;
      for (let m = Math.max(0, from); m < Math.min(MIN_PER_DAY, from + s.minutes); m++) watts[m] = (watts[m] as number) + ev.chargerW;
    }
  }

  /** Space heating by the day's degree-days, spread over its colder minutes (less at night); hot water in two reheats. */
  private heatPump(day: number, hp: HeatPumpTraits, watts: Float64Array, expected: Float64Array): void {
    const air = this.weather.airDay(day);
    const dayMean = this.weather.dayMeanC(day);
    const hdd = Math.max(0, HEAT_PUMP_BASIS.baseTempC - dayMean);
    const spaceWMin = this.hddYear > 0 ? (((hp.annualKWh * (1 - hp.hotWaterShare) * hdd) / this.hddYear) * 1_000 * 60) : 0;
    const weights = new Float64Array(MIN_PER_DAY);
    let sum = 0;
    for (let m = 0; m < MIN_PER_DAY; m++) {
      let hour = (m - this.traits.shiftMin) / 60;
      if (hour < 0) hour += 24;
      else if (hour >= 24) hour -= 24;
      const setback = hour >= 23 || hour < 6 ? 0.6 : 1;
      const w = Math.max(0, HEAT_PUMP_BASIS.baseTempC + 2 - (air[m] as number)) * setback;
      weights[m] = w;
      sum += w;
    }
    const hotWaterWMin = ((hp.annualKWh * hp.hotWaterShare) / 365) * 1_000 * 60;
    const reheatW = hotWaterWMin / 120; // two one-hour reheats
    for (let m = 0; m < MIN_PER_DAY; m++) {
      const local = m - this.traits.shiftMin;
      const reheat = (local >= 300 && local < 360) || (local >= 1_020 && local < 1_080) ? reheatW : 0;
      const space = sum > 0 ? (spaceWMin * (weights[m] as number)) / sum : 0;
      watts[m] = (watts[m] as number) + space + reheat;
      expected[m] = (expected[m] as number) + space + reheat;
    }
  }
}

/** The EV's charging session on a local day: plugged in 17:00-21:00 (shifted with the household), charging at once (no smart charging). */
export function evSession(seed: number, index: number, day: number, ev: EvTraits, shiftMin: number): { startMin: number; minutes: number } | null {
  const rng = rngFor(seed, index, day, STREAM_EV);
  if (rng.next() >= ev.sessionChance) return null;
  const startMin = Math.max(0, Math.min(MIN_PER_DAY - 1, rng.int(17 * 60, 21 * 60) + shiftMin));
  const kWh = uniform(rng, ev.sessionMinKWh, ev.sessionMaxKWh);
  return { startMin, minutes: Math.max(1, Math.round((kWh * 60_000) / ev.chargerW)) };
}

/** The first index whose cumulative value exceeds x (x in [0, total)). */
function upperBound(cumulative: Float64Array, x: number): number {
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((cumulative[mid] as number) > x) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// ---- Critical sites ------------------------------------------------------------------

export type CriticalRole = "shelter" | "clinic" | "pharmacy";
export const CRITICAL_ROLES: readonly CriticalRole[] = ["shelter", "clinic", "pharmacy"];

interface CriticalShape {
  /** Relative level by hour: weekday, Saturday, Sunday. */
  readonly levels: readonly [readonly number[], readonly number[], readonly number[]];
  readonly annualKWh: number;
  /** Winter +x, summer -x on the levels (lighting, circulation pumps). */
  readonly seasonalSwing: number;
  /** Refrigeration compressors: W, duty, period s. */
  readonly compressors: readonly (readonly [number, number, number])[];
}

const hours = (spec: readonly (readonly [number, number])[]): number[] => {
  const out = new Array<number>(24).fill(0);
  for (const [from, level] of spec) for (let h = from; h < 24; h++) out[h] = level;
  return out;
};

/**
 * Hand-made shapes (not measured), sized from CIBSE TM46 (2008) typical
 * electricity benchmarks: the clinic as a 250 m2 building at the "general
 * office" 95 kWh/m2 a year (open weekdays 08:00-18:30 and Saturday
 * mornings; vaccine fridges, IT, ventilation and security lighting the
 * rest of the time), the shelter as a 600 m2 community centre at "public
 * buildings with light usage", 20 kWh/m2 (busy afternoons and evenings),
 * the pharmacy fridge as 80 W of controls and a 250 W compressor on half
 * the time (1.8 MWh a year).
 */
const CRITICAL_SHAPES: Readonly<Record<CriticalRole, CriticalShape>> = {
  clinic: {
    levels: [hours([[0, 0.45], [7, 0.6], [8, 1], [13, 0.95], [14, 1], [18, 0.8], [19, 0.55], [20, 0.45]]), hours([[0, 0.45], [9, 0.8], [12, 0.6], [13, 0.45]]), hours([[0, 0.45]])],
    annualKWh: 250 * 95,
    seasonalSwing: 0.1,
    compressors: [[150, 0.5, 1_500], [150, 0.5, 1_800]],
  },
  shelter: {
    levels: [hours([[0, 0.35], [8, 0.5], [9, 0.8], [17, 1], [21, 0.7], [22, 0.4]]), hours([[0, 0.35], [9, 0.6], [10, 0.9], [22, 0.4]]), hours([[0, 0.35], [10, 0.7], [17, 0.6], [21, 0.4]])],
    annualKWh: 600 * 20,
    seasonalSwing: 0.15,
    compressors: [[200, 0.4, 2_400]],
  },
  pharmacy: {
    levels: [hours([[0, 1]]), hours([[0, 1]]), hours([[0, 1]])],
    annualKWh: (80 * 8_760) / 1_000, // the compressor's share comes on top: 250 W x 0.5 x 8,760 h
    seasonalSwing: 0,
    compressors: [[250, 0.5, 1_200]],
  },
};

export class CriticalLoad extends DayTableLoad {
  private readonly shape: CriticalShape;
  private readonly levelScaleW: number;
  private readonly phasesS: readonly number[];

  constructor(
    site: Site,
    readonly seed: number,
    readonly index: number,
    readonly role: CriticalRole,
  ) {
    super(site);
    this.shape = CRITICAL_SHAPES[role];
    const s = this.shape;
    const compressorKWh = s.compressors.reduce((sum, [w, duty]) => sum + (w * duty * 8_760) / 1_000, 0);
    const levelKWh = role === "pharmacy" ? s.annualKWh : s.annualKWh - compressorKWh;
    const weekMeanLevel = (5 * mean(s.levels[0]) + mean(s.levels[1]) + mean(s.levels[2])) / 7; // the seasonal swing averages out over a year
    this.levelScaleW = (levelKWh * 1_000) / 8_760 / weekMeanLevel;
    const rng = rngFor(seed, index, STREAM_TRAITS);
    this.phasesS = s.compressors.map(([, , period]) => rng.int(0, period - 1));
  }

  /** Its expected demand in a year, kWh (levels and compressors). */
  get annualKWh(): number {
    const s = this.shape;
    return s.annualKWh + (this.role === "pharmacy" ? s.compressors.reduce((sum, [w, duty]) => sum + (w * duty * 8_760) / 1_000, 0) : 0);
  }

  protected build(day: number): LoadDay {
    const s = this.shape;
    const levels = s.levels[dayKindOf(day)];
    const seasonal = 1 + s.seasonalSwing * (2 * winterness(seasonalDoy(day, this.site.latitudeDeg)) - 1);
    const hourly = Float64Array.from(levels, (l) => l * this.levelScaleW * seasonal);
    const rng = rngFor(this.seed, this.index, day, STREAM_NOISE);
    const watts = new Float64Array(MIN_PER_DAY);
    const expected = new Float64Array(MIN_PER_DAY);
    let noise = 0;
    for (let m = 0; m < MIN_PER_DAY; m++) {
      const smooth = stepsWithRamps(hourly, m);
      noise = 0.9 * noise + 0.01 * gaussian(rng); // a few percent of slow wander: people, doors, machines
      let w = smooth * (1 + noise);
      let avg = smooth;
      s.compressors.forEach(([cw, duty, period], i) => {
        const on = (m * 60 + (this.phasesS[i] as number)) % period < duty * period; // integers: a cheap modulo
        if (on) w += cw;
        avg += cw * duty;
      });
      watts[m] = w;
      expected[m] = avg;
    }
    return finishDay(day, watts, expected);
  }
}

function mean(xs: readonly number[]): number {
  return xs.reduce((a, x) => a + x, 0) / xs.length;
}

/** An hourly level with 15-minute ramps between hours (lights and plant switch in groups, not all at once). */
function stepsWithRamps(hourly: Float64Array, minute: number): number {
  const h = Math.floor(minute / 60);
  const within = minute - h * 60;
  const cur = hourly[h] as number;
  if (within >= 7.5 && within < 52.5) return cur;
  const other = within < 7.5 ? (hourly[(h + 23) % 24] as number) : (hourly[(h + 1) % 24] as number);
  const f = within < 7.5 ? 0.5 - within / 15 : (within - 52.5) / 15;
  return cur + (other - cur) * f;
}
