// Where a neighbourhood is, and the small pure tools its profile models
// share (sim/solar.ts, sim/weather.ts, sim/household.ts, sim/premise.ts):
// the site, the calendar (days since the epoch, civil date, day of year,
// weekday: no Date object, so the models stay pure), a seed mixer so that
// any (seed, index, day) gets its own random stream whatever order things
// are asked in, Gaussian draws, and a bounded cache.
//
// Time: every model takes UTC milliseconds since the epoch. A site's local
// day is [local midnight, next local midnight) with local = UTC +
// utcOffsetHours, a fixed offset: daylight saving is not modelled, so in a
// British summer the households' routines run an hour early against the
// clock on the wall (sim/README.md says so).
import { assert } from "../ledger/assert.js";
import { Rng } from "./rng.js";

export const MS_PER_MIN = 60_000;
export const MS_PER_HOUR = 3_600_000;
export const MS_PER_DAY = 86_400_000;
export const MIN_PER_DAY = 1_440;

/** Typical monthly-mean temperatures of the site, as a cosine over the year and one over the day. */
export interface Climate {
  /** Annual mean air temperature, °C. */
  readonly meanC: number;
  /** Half the difference between the warmest and the coldest month's mean, °C. */
  readonly annualAmplitudeC: number;
  /** Half the mean daily range (day maximum minus night minimum), °C. */
  readonly diurnalAmplitudeC: number;
  /** Day of year of the coldest climatological day (northern hemisphere sites: late January). */
  readonly coldestDoy: number;
}

export interface Site {
  /** + north. */
  readonly latitudeDeg: number;
  /** + east. */
  readonly longitudeDeg: number;
  /** Local clock = UTC + this, for the loads' daily routine (no daylight saving). */
  readonly utcOffsetHours: number;
  /** Height above sea level, m (the clear-sky model's air mass); default 0. */
  readonly altitudeM?: number;
  /** Linke turbidity of the clear sky (Ineichen-Perez); default 3.5. */
  readonly linkeTurbidity?: number;
  /** Ground reflectance for the tilted panels; default 0.2. */
  readonly albedo?: number;
  /** Default: LONDON_CLIMATE. */
  readonly climate?: Climate;
}

/**
 * Round figures for London (Heathrow): monthly means about 5.5 °C in
 * January and 19 °C in July, daily ranges about 6 °C in winter and 9.5 °C
 * in summer. Approximate (read from published Met Office normals
 * summaries, not fitted); they only drive the PV cell temperature and the
 * heat pumps' heating degree-days.
 */
export const LONDON_CLIMATE: Climate = { meanC: 11.5, annualAmplitudeC: 6.8, diurnalAmplitudeC: 3.9, coldestDoy: 20 };

/** Central London, UTC (GMT all year: no daylight saving, see above). */
export const LONDON: Site = { latitudeDeg: 51.5074, longitudeDeg: -0.1278, utcOffsetHours: 0, altitudeM: 20 };

export const SITE_DEFAULTS = { altitudeM: 0, linkeTurbidity: 3.5, albedo: 0.2 } as const;

/** What is wrong with a site; empty when it can be used. */
export function checkSite(s: Site): string[] {
  const p: string[] = [];
  const finite = (x: unknown) => typeof x === "number" && Number.isFinite(x);
  if (!finite(s.latitudeDeg) || Math.abs(s.latitudeDeg) > 66) p.push("latitudeDeg: -66..66 (polar day and night are not modelled)");
  if (!finite(s.longitudeDeg) || Math.abs(s.longitudeDeg) > 180) p.push("longitudeDeg: -180..180");
  if (!finite(s.utcOffsetHours) || Math.abs(s.utcOffsetHours) > 14 || !Number.isInteger(s.utcOffsetHours * 4)) p.push("utcOffsetHours: -14..14 in quarter hours");
  if (s.altitudeM !== undefined && (!finite(s.altitudeM) || s.altitudeM < -500 || s.altitudeM > 5_000)) p.push("altitudeM: -500..5000");
  if (s.linkeTurbidity !== undefined && (!finite(s.linkeTurbidity) || s.linkeTurbidity < 1.5 || s.linkeTurbidity > 8)) p.push("linkeTurbidity: 1.5..8");
  if (s.albedo !== undefined && (!finite(s.albedo) || s.albedo < 0 || s.albedo > 0.9)) p.push("albedo: 0..0.9");
  const c = s.climate;
  if (c !== undefined && (!finite(c.meanC) || !finite(c.annualAmplitudeC) || !finite(c.diurnalAmplitudeC) || !finite(c.coldestDoy) || c.annualAmplitudeC < 0 || c.diurnalAmplitudeC < 0)) p.push("climate: finite, amplitudes >= 0");
  return p;
}

export function assertSite(s: Site): void {
  const problems = checkSite(s);
  assert(problems.length === 0, `bad site: ${problems.join("; ")}`);
}

/** The site's offset from UTC, ms (whole minutes). */
export function offsetMsOf(s: Site): number {
  return Math.round(s.utcOffsetHours * 60) * MS_PER_MIN;
}

// ---- Calendar (proleptic Gregorian, days since 1970-01-01) ----------------

/** The local day (days since 1970-01-01, local calendar) that timeMs falls in. */
export function localDayOf(timeMs: number, offsetMs: number): number {
  return Math.floor((timeMs + offsetMs) / MS_PER_DAY);
}

/** UTC ms of local midnight starting `day`. */
export function localDayStartMs(day: number, offsetMs: number): number {
  return day * MS_PER_DAY - offsetMs;
}

/** Days since 1970-01-01 of a civil date (H. Hinnant's days_from_civil). */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/** The civil date of a day number (H. Hinnant's civil_from_days). */
export function civilFromDays(days: number): { year: number; month: number; day: number } {
  const z = days + 719_468;
  const era = Math.floor(z / 146_097);
  const doe = z - era * 146_097;
  const yoe = Math.floor((doe - Math.floor(doe / 1_460) + Math.floor(doe / 36_524) - Math.floor(doe / 146_096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  return { year: yoe + era * 400 + (month <= 2 ? 1 : 0), month, day };
}

/** Day of year, 1..366. */
export function dayOfYear(days: number): number {
  return days - daysFromCivil(civilFromDays(days).year, 1, 1) + 1;
}

/** 0 Sunday .. 6 Saturday (1970-01-01 was a Thursday). */
export function weekdayOf(days: number): number {
  return (((days + 4) % 7) + 7) % 7;
}

/** UTC ms of a civil date and time: a convenience for tests and scenarios. */
export function utcMs(year: number, month: number, day: number, hour = 0, minute = 0): number {
  return daysFromCivil(year, month, day) * MS_PER_DAY + hour * MS_PER_HOUR + minute * MS_PER_MIN;
}

/**
 * The day of year as the seasons see it: the calendar's in the northern
 * hemisphere, shifted half a year in the southern (its January is summer).
 * In 1..365.
 */
export function seasonalDoy(days: number, latitudeDeg: number): number {
  const doy = Math.min(dayOfYear(days), 365);
  return latitudeDeg >= 0 ? doy : ((doy - 1 + 182) % 365) + 1;
}

/** 1 at the winter solstice, 0 at the summer solstice, a cosine between (seasonal day of year). */
export function winterness(seasonalDoyValue: number): number {
  return (1 + Math.cos((2 * Math.PI * (seasonalDoyValue - 355)) / 365)) / 2;
}

// ---- Seeds and draws -------------------------------------------------------

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * A 32-bit seed from a few integers (a seed, a premise index, a day, a
 * stream tag): murmur3's finaliser over each in turn. The same parts, the
 * same seed, so a day's random draws do not depend on which days were
 * asked before it.
 */
export function mixSeed(a: number, b = 0, c = 0, d = 0): number {
  let h = fmix32((a | 0) ^ 0x9e3779b9);
  h = fmix32(h ^ Math.imul((b | 0) + 0x7f4a7c15, 0x27d4eb2f));
  h = fmix32(h ^ Math.imul((c | 0) + 0x165667b1, 0x9e3779b1));
  h = fmix32(h ^ Math.imul((d | 0) + 0x61c88647, 0x85ebca77));
  return h;
}

export function rngFor(a: number, b = 0, c = 0, d = 0): Rng {
  return new Rng(mixSeed(a, b, c, d));
}

/** Uniform in [lo, hi). */
export function uniform(rng: Rng, lo: number, hi: number): number {
  return lo + (hi - lo) * rng.next();
}

/** A standard normal draw (Box-Muller). */
export function gaussian(rng: Rng): number {
  const u = 1 - rng.next(); // (0, 1]
  const v = rng.next();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

// ---- A bounded cache -------------------------------------------------------

/**
 * A map that keeps at most `sizeMax` entries, dropping the least recently
 * used: the per-day tables are rebuilt on demand, so dropping one costs
 * time, never correctness.
 */
export class BoundedCache<K, V> {
  private readonly map = new Map<K, V>();

  constructor(readonly sizeMax: number) {
    assert(Number.isSafeInteger(sizeMax) && sizeMax >= 1, "a cache holds at least one entry");
  }

  get(key: K, make: (key: K) => V): V {
    const hit = this.map.get(key);
    if (hit !== undefined) {
      this.map.delete(key);
      this.map.set(key, hit);
      return hit;
    }
    const value = make(key);
    this.map.set(key, value);
    if (this.map.size > this.sizeMax) this.map.delete(this.map.keys().next().value as K);
    return value;
  }

  get size(): number {
    return this.map.size;
  }
}
