// A metered premise of the neighbourhood, composed from the profile models:
// household or critical-site demand (sim/household.ts), a PV array under
// the site's clear sky and weather (sim/solar.ts, sim/weather.ts), a home
// battery (sim/battery.ts). Pure and deterministic: the same (seed, index,
// kind, site) gives the same premise in any process (the simulator's world
// thread and a test's twin agree; daemon/demo.ts builds its households'
// premises under one shared sky).
//
// API
//   const model = new SiteModel(site, seed)          // one per neighbourhood: weather, sun and PV tables, shared
//   const p = createPremise({ seed, index, kind, site, model })
//   p.netPowerW(timeMs)   -> whole W at the meter, + import / - export. STATEFUL: the battery
//                            runs from the last call to this one, so calls must come in
//                            non-decreasing time (a repeat returns the same value; earlier
//                            throws). Gaps are sub-stepped a minute at a time, at most the
//                            last day of a longer gap (the battery idles before it).
//   p.loadW(timeMs)       -> whole W of demand (pure: any time, any order; the minute's value)
//   p.pvW(timeMs)         -> whole W of PV output (pure; linear within the minute), 0 without PV
//   p.expectedLoadW(t), p.clearSkyPvW(t)   -> what a forecast knows (no appliance runs, no clouds)
//   p.loadDay(localDay)   -> the day's minute table, energy and peak (reports, dispatch fallbacks)
//   p.kind, p.label, p.index, p.pv (array or null), p.battery (HomeBattery or null: socWh,
//   lastW, chargedMJ...), p.household (traits or null), p.role (critical role or null)
//   createNeighbourhood({ seed, site, critical, prosumersWithBattery, prosumers, consumers })
//     -> { model, premises } in that order of indices.
//   For device/sim-meter.ts: SimulatedMeter.start({ map, power: (t) => p.netPowerW(t) }).
//
// Kinds: "consumer" (a household), "prosumer" (a household with PV),
// "prosumer-battery" (PV and a battery), "critical" (a shelter, clinic or
// pharmacy fridge, by index % 3 unless `role` is given; no PV). PV and
// battery sizes are drawn per premise unless given (see drawPv, drawBattery).
//
// Speed: everything slow happens once per local day and is cached: the sun
// and clear sky per site and minute, the PV output per kWp per orientation
// and minute (orientations are drawn on a 5° grid so premises share
// tables), each premise's demand per minute. A call is then a few array
// reads and, with a battery, a few integer operations (scripts/bench-profiles.ts).
import { assert } from "../ledger/assert.js";
import { type BatterySpec, HomeBattery, POWERWALL_2 } from "./battery.js";
import { type CriticalRole, CRITICAL_ROLES, CriticalLoad, DEFAULT_HOUSEHOLD, type HouseholdParams, type HouseholdTraits, HouseholdLoad, type Load, type LoadDay, drawHousehold } from "./household.js";
import { BoundedCache, MS_PER_DAY, MS_PER_MIN, type Site, assertSite, offsetMsOf, rngFor } from "./site.js";
import { type Orientation, PV_DEFAULTS, type PvArray, SAMPLES_PER_DAY, type SunDay, checkPvArray, pvDayWPerKwp, sunDay } from "./solar.js";
import { DEFAULT_WEATHER, Weather, type WeatherParams, interpolate } from "./weather.js";

export type PremiseKind = "consumer" | "prosumer" | "prosumer-battery" | "critical";
export const PREMISE_KINDS: readonly PremiseKind[] = ["consumer", "prosumer", "prosumer-battery", "critical"];

/** Days of sun tables and PV tables (per orientation) kept by a SiteModel. */
export const SUN_DAYS_CACHED_MAX = 4;
export const PV_TABLES_CACHED_MAX = 512;
/** A battery premise sub-steps gaps in steps of at most this, and simulates at most the last CATCH_UP_MS_MAX of a gap. */
export const SUBSTEP_MS = 60_000;
export const CATCH_UP_MS_MAX = MS_PER_DAY;

const STREAM_PV = 0x5001;
const STREAM_BATTERY = 0x5002;

/** What a neighbourhood's premises share: the site, its weather, and the per-day sun and PV tables. */
export class SiteModel {
  readonly weather: Weather;
  readonly offsetMs: number;
  private readonly suns = new BoundedCache<number, SunDay>(SUN_DAYS_CACHED_MAX);
  private readonly pvTables = new BoundedCache<string, Float32Array>(PV_TABLES_CACHED_MAX);
  private readonly clearTables = new BoundedCache<string, Float32Array>(PV_TABLES_CACHED_MAX);
  private readonly ones = new Float32Array(SAMPLES_PER_DAY).fill(1);

  constructor(
    readonly site: Site,
    readonly seed: number,
    weatherParams: WeatherParams = DEFAULT_WEATHER,
  ) {
    assertSite(site);
    this.weather = new Weather(site, seed, weatherParams);
    this.offsetMs = offsetMsOf(site);
  }

  sunDay(day: number): SunDay {
    return this.suns.get(day, (d) => sunDay(this.site, d));
  }

  /** W per kWp (after temperature and system losses) per minute of a local day under the weather. */
  pvDay(o: Orientation, day: number, losses: Pick<PvArray, "systemLossPermille" | "tempCoeffPerK" | "noctC"> = PV_DEFAULTS): Float32Array {
    return this.pvTables.get(tableKey(o, day, losses), () => pvDayWPerKwp(this.site, this.sunDay(day), this.weather.kcDay(day), this.weather.airDay(day), o, losses));
  }

  /** The same under a clear sky (kc = 1), with the day's air temperature: a forecaster's upper bound. */
  clearSkyPvDay(o: Orientation, day: number, losses: Pick<PvArray, "systemLossPermille" | "tempCoeffPerK" | "noctC"> = PV_DEFAULTS): Float32Array {
    return this.clearTables.get(tableKey(o, day, losses), () => pvDayWPerKwp(this.site, this.sunDay(day), this.ones, this.weather.airDay(day), o, losses));
  }
}

function tableKey(o: Orientation, day: number, l: Pick<PvArray, "systemLossPermille" | "tempCoeffPerK" | "noctC">): string {
  return `${o.tiltDeg}/${o.azimuthDeg}/${day}/${l.systemLossPermille}/${l.tempCoeffPerK}/${l.noctC}`;
}

export interface PremiseSpec {
  readonly seed: number;
  readonly index: number;
  readonly kind: PremiseKind;
  readonly site: Site;
  /** The neighbourhood's shared model; default a private one from (site, seed), which gives the same weather. */
  readonly model?: SiteModel;
  readonly household?: HouseholdParams;
  /** Critical premises: default CRITICAL_ROLES[index % 3]. */
  readonly role?: CriticalRole;
  /** PV premises: default drawn (drawPv). */
  readonly pv?: PvArray;
  /** Battery premises: default drawn (drawBattery). */
  readonly battery?: BatterySpec;
}

/**
 * A prosumer's array, drawn (assumptions, not survey data): 2.5-6.0 kWp;
 * tilt 25-45° (pitched roofs); 70 % facing the equator within 45°, 30 %
 * east or west; an inverter as large as the array (no clipping); PVGIS's
 * default 14 % system losses.
 */
export function drawPv(seed: number, index: number, site: Site): PvArray {
  const rng = rngFor(seed, index, STREAM_PV);
  const kWp = rng.int(25, 60) / 10;
  const tiltDeg = rng.pick([25, 30, 35, 40, 45]);
  const equator = site.latitudeDeg >= 0 ? 180 : 0;
  const turn = rng.next() < 0.7 ? rng.pick([-45, -30, -15, 0, 0, 15, 30, 45]) : rng.pick([-90, 90]);
  return { kWp, tiltDeg, azimuthDeg: (equator + turn + 360) % 360, inverterW: Math.round(kWp * 1_000), ...PV_DEFAULTS };
}

/**
 * A home battery, drawn: 5.0-13.5 kWh usable in 0.5 kWh steps (up to a
 * Powerwall 2's 13.5); 5 kW from 9.5 kWh up (the Powerwall's continuous
 * rating), else 3.68 kW (16 A single phase, the ENA G98 limit for
 * connecting without prior approval in Great Britain); 90 % round trip
 * (the Powerwall's published figure); 10 % kept as backup reserve
 * (chosen); starts half full.
 */
export function drawBattery(seed: number, index: number): BatterySpec {
  const rng = rngFor(seed, index, STREAM_BATTERY);
  const capacityWh = rng.int(10, 27) * 500;
  const w = capacityWh >= 9_500 ? 5_000 : 3_680;
  return { ...POWERWALL_2, capacityWh, maxChargeW: w, maxDischargeW: w };
}

export class Premise {
  readonly label: string;
  readonly pv: PvArray | null;
  readonly battery: HomeBattery | null;
  readonly household: HouseholdTraits | null;
  readonly role: CriticalRole | null;
  private readonly load: Load;
  private readonly offsetMs: number;
  /** Clouds cross a neighbourhood in a minute or two: each array sees them a little earlier or later. */
  private readonly cloudLagMs: number;
  private pvDayIndex = Number.NaN;
  private pvTable: Float32Array = new Float32Array(SAMPLES_PER_DAY);
  private lastMs: number | null = null;
  private lastGridW = 0;

  constructor(
    readonly model: SiteModel,
    readonly seed: number,
    readonly index: number,
    readonly kind: PremiseKind,
    spec: Pick<PremiseSpec, "household" | "role" | "pv" | "battery"> = {},
  ) {
    assert(Number.isSafeInteger(seed) && seed >= 0 && seed <= 0xffff_ffff, "a seed is a 32-bit unsigned integer");
    assert(Number.isSafeInteger(index) && index >= 0 && index <= 0x7fff_ffff, "a premise index is a whole number");
    assert(PREMISE_KINDS.includes(kind), `a premise kind is one of ${PREMISE_KINDS.join(", ")}`);
    const site = model.site;
    this.offsetMs = model.offsetMs;
    if (kind === "critical") {
      this.role = spec.role ?? (CRITICAL_ROLES[index % CRITICAL_ROLES.length] as CriticalRole);
      this.household = null;
      this.load = new CriticalLoad(site, seed, index, this.role);
      this.label = `${this.role} ${index}`;
    } else {
      this.role = null;
      this.household = drawHousehold(seed, index, spec.household ?? DEFAULT_HOUSEHOLD);
      this.load = new HouseholdLoad(site, model.weather, seed, index, this.household);
      this.label = `${kind} ${index}`;
    }
    this.pv = kind === "prosumer" || kind === "prosumer-battery" ? (spec.pv ?? drawPv(seed, index, site)) : null;
    if (this.pv !== null) {
      const problems = checkPvArray(this.pv);
      assert(problems.length === 0, `bad PV array: ${problems.join("; ")}`);
    }
    this.battery = kind === "prosumer-battery" ? new HomeBattery(spec.battery ?? drawBattery(seed, index)) : null;
    this.cloudLagMs = rngFor(seed, index, STREAM_PV, 1).int(0, 90) * 1_000;
  }

  /** Demand, whole W (the minute's value). */
  loadW(timeMs: number): number {
    return this.load.loadW(timeMs);
  }

  /** PV output, whole W, 0 without an array. */
  pvW(timeMs: number): number {
    const a = this.pv;
    if (a === null) return 0;
    const shifted = timeMs - this.cloudLagMs + this.offsetMs;
    const day = Math.floor(shifted / MS_PER_DAY);
    if (day !== this.pvDayIndex) {
      this.pvTable = this.model.pvDay(a, day, a);
      this.pvDayIndex = day;
    }
    return Math.min(a.inverterW, Math.round(a.kWp * interpolate(this.pvTable, (shifted - day * MS_PER_DAY) / MS_PER_MIN)));
  }

  /** The demand a forecast would expect at timeMs (the household's mean curve and heat pump; no appliance runs or EV), W. */
  expectedLoadW(timeMs: number): number {
    return this.load.expectedW(timeMs);
  }

  /** PV output under a clear sky at timeMs, W (0 without an array). */
  clearSkyPvW(timeMs: number): number {
    const a = this.pv;
    if (a === null) return 0;
    const shifted = timeMs + this.offsetMs;
    const day = Math.floor(shifted / MS_PER_DAY);
    return Math.min(a.inverterW, Math.round(a.kWp * interpolate(this.model.clearSkyPvDay(a, day, a), (shifted - day * MS_PER_DAY) / MS_PER_MIN)));
  }

  /** The local day's demand table. */
  loadDay(localDay: number): LoadDay {
    return this.load.day(localDay);
  }

  /**
   * Net power at the meter, whole W: + import, - export. The battery (if
   * any) runs from the previous call to timeMs (see the header).
   */
  netPowerW(timeMs: number): number {
    assert(Number.isSafeInteger(timeMs), "time: whole ms");
    const last = this.lastMs;
    if (last !== null && timeMs <= last) {
      assert(timeMs === last, `a premise's net power is asked in time order (${timeMs} after ${last})`);
      return this.lastGridW;
    }
    const b = this.battery;
    let grid: number;
    if (b === null) grid = this.loadW(timeMs) - this.pvW(timeMs);
    else if (last === null) grid = b.step(this.loadW(timeMs) - this.pvW(timeMs), 0);
    else {
      let from = Math.max(last, timeMs - CATCH_UP_MS_MAX);
      while (timeMs - from > SUBSTEP_MS) {
        const to = from + SUBSTEP_MS;
        b.step(this.loadW(to) - this.pvW(to), SUBSTEP_MS);
        from = to;
      }
      grid = b.step(this.loadW(timeMs) - this.pvW(timeMs), timeMs - from);
    }
    this.lastMs = timeMs;
    this.lastGridW = grid;
    return grid;
  }
}

export function createPremise(spec: PremiseSpec): Premise {
  const model = spec.model ?? new SiteModel(spec.site, spec.seed);
  assert(model.site === spec.site || JSON.stringify(model.site) === JSON.stringify(spec.site), "a premise's model is of its site");
  return new Premise(model, spec.seed, spec.index, spec.kind, spec);
}

export interface NeighbourhoodSpec {
  readonly seed: number;
  readonly site: Site;
  readonly critical: number;
  readonly prosumersWithBattery: number;
  readonly prosumers: number;
  readonly consumers: number;
  readonly household?: HouseholdParams;
  readonly weather?: WeatherParams;
}

/** Premises indexed 0.. in the order critical, prosumers with battery, prosumers, consumers, sharing one SiteModel. */
export function createNeighbourhood(s: NeighbourhoodSpec): { model: SiteModel; premises: Premise[] } {
  const counts = [s.critical, s.prosumersWithBattery, s.prosumers, s.consumers];
  assert(counts.every((n) => Number.isSafeInteger(n) && n >= 0) && counts.reduce((a, n) => a + n, 0) <= 100_000, "premise counts: whole numbers, at most 100,000 in all");
  const model = new SiteModel(s.site, s.seed, s.weather ?? DEFAULT_WEATHER);
  const kinds: PremiseKind[] = ["critical", "prosumer-battery", "prosumer", "consumer"];
  const premises: Premise[] = [];
  kinds.forEach((kind, k) => {
    for (let n = 0; n < (counts[k] as number); n++) premises.push(new Premise(model, s.seed, premises.length, kind, s.household === undefined ? {} : { household: s.household }));
  });
  return { model, premises };
}
