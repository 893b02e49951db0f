// Weather for a site and a seed, pure and deterministic: what the clear-sky
// model of sim/solar.ts is multiplied by (the clear-sky index kc = GHI /
// clear-sky GHI), and the air temperature (PV cell temperature, heat pumps).
//
// Two time scales, as in the synthetic irradiance generators the literature
// builds (a daily state, then minute-scale variability inside it):
//   - Each local day is clear, partly cloudy or overcast, from a Markov
//     chain whose stationary shares move with the season (a cosine between
//     the `winter` and `summer` shares) and whose `persistence` is the
//     chance that tomorrow simply repeats today. The shares are tuned so
//     that a south-facing array at London makes what the JRC's PVGIS says a
//     year there makes (about 845-951 kWh per kWp; sim/README.md, the test
//     in test/sim/profiles.test.ts): a calibration, not a climatology.
//   - Inside the day, minute by minute: clear days are flat (kc 0.94-1.02,
//     a per-day haze), overcast days a slow random walk around a low level
//     (0.12-0.45), partly cloudy days alternate clear and cloud-shadowed
//     stretches of a few minutes (cloud passages drawn to the second, then
//     averaged per minute; kc 0.2-0.6 under a cloud, a 12 % cloud-edge
//     enhancement in the minute after one). The ranges are hand-chosen
//     from the usual look of measured 1-minute clear-sky-index series, not
//     fitted to a data set. Between minutes, linear interpolation.
//
// Order independence: everything about day d comes from seeds mixed from
// (seed, d); the day type of d comes from running the chain over the days
// before d from a fresh draw (as many as make the chance of every one of
// them persisting, persistence^n, under one in a million: 18 by default).
// Because a transition that does not persist draws a new state whatever
// the old one was, that agrees with the chain run from any earlier day
// unless all n days persisted. So cloudFactor(t) is a pure function of
// (site, seed, t): the same whatever was asked before, and however often.
// Per-day minute tables are cached (bounded) because the simulator asks
// every second.
import { assert } from "../ledger/assert.js";
import { type Rng } from "./rng.js";
import { BoundedCache, type Climate, LONDON_CLIMATE, MIN_PER_DAY, MS_PER_MIN, type Site, assertSite, gaussian, localDayOf, localDayStartMs, offsetMsOf, rngFor, seasonalDoy, uniform, winterness } from "./site.js";
import { SAMPLES_PER_DAY } from "./solar.js";

export type DayType = "clear" | "partly" | "overcast";
export const DAY_TYPES: readonly DayType[] = ["clear", "partly", "overcast"];

export interface WeatherParams {
  /** Stationary shares of clear, partly cloudy and overcast days at midsummer (sum 1). */
  readonly summer: readonly [number, number, number];
  /** ... and at midwinter; a cosine over the year between them. */
  readonly winter: readonly [number, number, number];
  /** Chance that a day repeats the day before's type outright, 0..0.9. */
  readonly persistence: number;
}

/** Tuned for southern England (see the header). */
export const DEFAULT_WEATHER: WeatherParams = { summer: [0.25, 0.45, 0.3], winter: [0.12, 0.35, 0.53], persistence: 0.45 };

export function checkWeatherParams(p: WeatherParams): string[] {
  const problems: string[] = [];
  for (const k of ["summer", "winter"] as const) {
    const s = p[k];
    if (s.length !== 3 || s.some((x) => !(x >= 0 && x <= 1)) || Math.abs(s[0] + s[1] + s[2] - 1) > 1e-9) problems.push(`${k}: three shares in 0..1 that sum to 1`);
  }
  if (!(p.persistence >= 0 && p.persistence <= 0.9)) problems.push("persistence: 0..0.9");
  return problems;
}

const STREAM_CHAIN_INIT = 0x57e1;
const STREAM_CHAIN_STEP = 0x57e2;
const STREAM_KC = 0x57e3;
const STREAM_TEMP = 0x57e4;
/** Days of minute tables kept per kind (a simulator walks forward; a Modbus reader asks near now). */
export const WEATHER_DAYS_CACHED_MAX = 8;

export class Weather {
  private readonly offsetMs: number;
  /** Days the chain runs before the day asked (see the header); at most 132 (persistence 0.9). */
  private readonly burnInDays: number;
  private readonly rawKc = new BoundedCache<number, Float32Array>(WEATHER_DAYS_CACHED_MAX);
  private readonly kc = new BoundedCache<number, Float32Array>(WEATHER_DAYS_CACHED_MAX);
  private readonly air = new BoundedCache<number, Float32Array>(WEATHER_DAYS_CACHED_MAX);
  private readonly types = new BoundedCache<number, DayType>(64);
  private kcDayIndex = Number.NaN;
  private kcDayTable: Float32Array = new Float32Array(SAMPLES_PER_DAY);

  constructor(
    readonly site: Site,
    readonly seed: number,
    readonly params: WeatherParams = DEFAULT_WEATHER,
  ) {
    assertSite(site);
    assert(Number.isSafeInteger(seed) && seed >= 0 && seed <= 0xffff_ffff, "a seed is a 32-bit unsigned integer");
    const problems = checkWeatherParams(params);
    assert(problems.length === 0, `bad weather params: ${problems.join("; ")}`);
    this.offsetMs = offsetMsOf(site);
    this.burnInDays = params.persistence === 0 ? 1 : Math.max(1, Math.ceil(Math.log(1e-6) / Math.log(params.persistence)));
  }

  /** The clear-sky index at timeMs, linear between the minute values. */
  cloudFactor(timeMs: number): number {
    const day = localDayOf(timeMs, this.offsetMs);
    if (day !== this.kcDayIndex) {
      this.kcDayTable = this.kcDay(day);
      this.kcDayIndex = day;
    }
    return interpolate(this.kcDayTable, (timeMs - localDayStartMs(day, this.offsetMs)) / MS_PER_MIN);
  }

  /** Air temperature at timeMs, °C. */
  ambientC(timeMs: number): number {
    const day = localDayOf(timeMs, this.offsetMs);
    return interpolate(this.airDay(day), (timeMs - localDayStartMs(day, this.offsetMs)) / MS_PER_MIN);
  }

  /** The type of a local day. */
  dayType(day: number): DayType {
    return this.types.get(day, (d) => this.chainState(d));
  }

  /** The clear-sky index per minute of a local day, SAMPLES_PER_DAY long (the last is the next midnight's). */
  kcDay(day: number): Float32Array {
    return this.kc.get(day, (d) => {
      const out = new Float32Array(SAMPLES_PER_DAY);
      out.set(this.rawKcDay(d));
      out[MIN_PER_DAY] = this.rawKcDay(d + 1)[0] as number;
      return out;
    });
  }

  /** Air temperature per minute of a local day, °C, SAMPLES_PER_DAY long. */
  airDay(day: number): Float32Array {
    return this.air.get(day, (d) => {
      const out = new Float32Array(SAMPLES_PER_DAY);
      const around = [this.dayWeatherTemp(d - 1), this.dayWeatherTemp(d), this.dayWeatherTemp(d + 1)] as const;
      for (let m = 0; m <= MIN_PER_DAY; m++) out[m] = this.airAt(d, m, around);
      return out;
    });
  }

  /** The climatological (weatherless) daily mean air temperature of a local day, °C. */
  climateMeanC(day: number): number {
    return seasonalMeanC(this.site.climate ?? LONDON_CLIMATE, seasonalDoy(day, this.site.latitudeDeg));
  }

  /** The day's mean air temperature with its weather, °C (the blend of its anomaly with its neighbours', averaged). */
  dayMeanC(day: number): number {
    const t = this.airDay(day);
    let sum = 0;
    for (let m = 0; m < MIN_PER_DAY; m++) sum += t[m] as number;
    return sum / MIN_PER_DAY;
  }

  // ---- The day-type chain ----

  /** Stationary shares on day d. */
  private shares(day: number): readonly [number, number, number] {
    const w = winterness(seasonalDoy(day, this.site.latitudeDeg));
    const s = this.params.summer;
    const v = this.params.winter;
    return [s[0] + (v[0] - s[0]) * w, s[1] + (v[1] - s[1]) * w, s[2] + (v[2] - s[2]) * w];
  }

  private pick(day: number, u: number): DayType {
    const [c, p] = this.shares(day);
    return u < c ? "clear" : u < c + p ? "partly" : "overcast";
  }

  private chainState(day: number): DayType {
    const burnIn = this.burnInDays;
    let state = this.pick(day - burnIn, rngFor(this.seed, day - burnIn, STREAM_CHAIN_INIT).next());
    const rho = this.params.persistence;
    for (let d = day - burnIn + 1; d <= day; d++) {
      const u = rngFor(this.seed, d, STREAM_CHAIN_STEP).next();
      if (u >= rho) state = this.pick(d, (u - rho) / (1 - rho)); // a fresh draw, whatever the state was: paths meet here
    }
    return state;
  }

  // ---- Minute-scale clear-sky index ----

  private rawKcDay(day: number): Float32Array {
    return this.rawKc.get(day, (d) => {
      const rng = rngFor(this.seed, d, STREAM_KC);
      const type = this.dayType(d);
      const out = new Float32Array(MIN_PER_DAY);
      if (type === "clear") clearDay(rng, out);
      else if (type === "overcast") overcastDay(rng, out);
      else partlyCloudyDay(rng, out);
      return out;
    });
  }

  // ---- Air temperature ----

  /** A day's anomaly from the climate (°C) and its diurnal-range factor: clear days swing more, overcast less. */
  private dayWeatherTemp(day: number): DayTemp {
    const rng = rngFor(this.seed, day, STREAM_TEMP);
    const type = this.dayType(day);
    const w = winterness(seasonalDoy(day, this.site.latitudeDeg));
    const sunBias = 1.5 - 3 * w; // a clear day: warmer in summer, colder (radiative cooling) in winter
    const anomalyC = 2 * gaussian(rng) + (type === "clear" ? sunBias : type === "overcast" ? -0.4 * sunBias : 0);
    return { anomalyC, rangeFactor: type === "clear" ? 1.4 : type === "overcast" ? 0.5 : 1 };
  }

  /** Minute m (0..1440) of day d; the anomaly and the range factor blend linearly from one day's noon to the next. */
  private airAt(d: number, m: number, around: readonly [DayTemp, DayTemp, DayTemp]): number {
    const [prev, today, next] = around;
    const [a, b, f] = m < 720 ? [prev, today, (m + 720) / MIN_PER_DAY] : [today, next, (m - 720) / MIN_PER_DAY];
    const anomaly = a.anomalyC + (b.anomalyC - a.anomalyC) * f;
    const range = a.rangeFactor + (b.rangeFactor - a.rangeFactor) * f;
    const c = this.site.climate ?? LONDON_CLIMATE;
    const doy = seasonalDoy(m === MIN_PER_DAY ? d + 1 : d, this.site.latitudeDeg);
    return seasonalMeanC(c, doy) + anomaly + range * c.diurnalAmplitudeC * diurnalShape(m / 60);
  }
}

interface DayTemp {
  readonly anomalyC: number;
  readonly rangeFactor: number;
}

/** The climate's daily mean on a seasonal day of year, °C. */
export function seasonalMeanC(c: Climate, seasonalDoyValue: number): number {
  return c.meanC - c.annualAmplitudeC * Math.cos((2 * Math.PI * (seasonalDoyValue - c.coldestDoy)) / 365);
}

/** The daily temperature cycle, -1..1, warmest at 15:00 local. */
function diurnalShape(hourLocal: number): number {
  return Math.cos((2 * Math.PI * (hourLocal - 15)) / 24);
}

/** Linear interpolation in a per-minute table at a fractional minute (clamped to the table). */
export function interpolate(table: Float32Array, minute: number): number {
  const last = table.length - 1;
  if (!(minute > 0)) return table[0] as number;
  if (minute >= last) return table[last] as number;
  const i = Math.floor(minute);
  const a = table[i] as number;
  return a + ((table[i + 1] as number) - a) * (minute - i);
}

// ---- Day generators (per second, averaged per minute) ----

function clearDay(rng: Rng, out: Float32Array): void {
  const level = uniform(rng, 0.94, 1.02);
  let noise = 0;
  for (let m = 0; m < out.length; m++) {
    noise = 0.9 * noise + 0.004 * gaussian(rng);
    out[m] = Math.min(1.05, level + noise);
  }
}

function overcastDay(rng: Rng, out: Float32Array): void {
  const level = uniform(rng, 0.12, 0.45);
  let dev = 0;
  for (let m = 0; m < out.length; m++) {
    dev = 0.95 * dev + 0.019 * gaussian(rng); // stationary sd about 0.06, correlation time about 20 min
    out[m] = Math.max(0.05, Math.min(0.85, level + dev));
  }
}

const S_PER_DAY = MIN_PER_DAY * 60;

function partlyCloudyDay(rng: Rng, out: Float32Array): void {
  const cover = uniform(rng, 0.25, 0.75);
  const cycleS = uniform(rng, 600, 1_800); // one clear stretch and one cloud take 10-30 min on average
  const clearKc = uniform(rng, 0.95, 1.03);
  const sums = new Float64Array(out.length);
  let t = -Math.floor(rng.next() * cycleS); // start anywhere in a cycle
  let cloudy = rng.next() < cover;
  let justCleared = false;
  while (t < S_PER_DAY) {
    const meanS = cloudy ? cover * cycleS : (1 - cover) * cycleS;
    const durS = Math.max(20, Math.round(-meanS * Math.log(1 - rng.next())));
    const kc = cloudy ? uniform(rng, 0.2, 0.6) : clearKc;
    if (!cloudy && justCleared) {
      const edge = Math.min(60, durS); // cloud-edge enhancement: the minute after a cloud, light scattered off its side adds
      addSegment(sums, t, t + edge, Math.min(1.2, kc * 1.12));
      addSegment(sums, t + edge, t + durS, kc);
    } else addSegment(sums, t, t + durS, kc);
    justCleared = cloudy;
    cloudy = !cloudy;
    t += durS;
  }
  for (let m = 0; m < out.length; m++) out[m] = (sums[m] as number) / 60;
}

/** Add value x the overlap (s) of [fromS, toS) with each minute. */
function addSegment(sums: Float64Array, fromS: number, toS: number, value: number): void {
  const a = Math.max(0, fromS);
  const b = Math.min(S_PER_DAY, toS);
  for (let s = a; s < b; ) {
    const m = Math.floor(s / 60);
    const end = Math.min(b, (m + 1) * 60);
    sums[m] = (sums[m] as number) + value * (end - s);
    s = end;
  }
}
