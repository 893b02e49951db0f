// The outage scenario (issue 6, point 5): one day of a neighbourhood
// microgrid with a long outage at dusk, run through the real pure cores:
// market/grid-monitor.ts decides islanded or connected from the simulated
// PCC readings, market/dispatch.ts decides who is powered, and the market
// (market/auto-bid.ts planBids, market/clearing.ts clear, market/settlement.ts
// settle) trades every 15 minutes and settles against the simulated metered
// energy. `runOutage(scenario)` is a pure, seeded function: no clock, no
// I/O, the same scenario (seed included) gives the same report.
//
// What is simulated, and each simplification (also in the report's
// `simplifications`, so a reader of the figures sees them):
//   - Time. Everything advances every simulated second: the PCC meter, the
//     monitor, the premises' loads and solar output, the metered energy and
//     (by default, calmStepS = 1) the dispatch, 86,400 steps of 563
//     premises in about 18 s here. `calmStepS` > 1 lets a test skip the
//     dispatch while connected with every breaker closed (its answer is
//     then "all closed, no command"); it still runs every second while the
//     monitor says islanded, the second its decision changes, and while any
//     breaker is open.
//   - The PCC. Three phases at the nominal 230 V within +-3 %, 50 Hz within
//     +-50 mHz, every reading good; during the outage the utility side
//     reads 0-2 V and 0 Hz. The monitor is fed these readings once a second
//     from 310 s before the day (it starts islanded, noReading, and needs
//     its 300 s window), so the day starts connected. Sub-second transients
//     at the moment of islanding (the island's inverters forming the grid)
//     are not modelled.
//   - Premises, in the community's priority order: the critical sites
//     first, then prosumers and consumers interleaved by a seeded shuffle
//     (the vote orders them; nothing in the scenario ranks prosumers ahead).
//     Each premise has one meter at its connection reading its net power,
//     and one breaker. A prosumer's PV is behind its meter and its breaker
//     (as in daemon/controller.ts): shedding it sheds its export too.
//   - Supply given to the dispatch: each premise's own export with its
//     reading (as the controller passes it), no unswitched generation (every
//     array is behind a premise's breaker), and the community battery in the
//     dispatch's two tiers, split by market/dispatch.ts storageTiers as the
//     controller splits them: open to every premise only above the critical
//     reserve (`criticalReserveHours` x the critical sites' peak; 0: none),
//     the rest of the limit for the critical sites. The battery: a capacity,
//     one limit for charge and discharge, its state of charge tracked each
//     second; it starts full, charges from the grid at its limit while
//     connected and from surplus PV while islanded (PV beyond that is
//     curtailed). It never gives more than it holds.
//   - Breakers obey every command at once (a command that does not take is
//     not modelled); the read-back is the true position, except that each
//     read is "unknown" with probability `readBackUnknownPerMillion`.
//   - Demand given to the dispatch: the premise's net import read at this
//     second while its breaker is closed; the last such reading (then the
//     fallback once stale) while it is open; the fallback is the premise's
//     peak gross load over the day (the controller would use the recorded
//     peak or the breaker rating).
//   - The market. Every member's box plans with planBids once per interval,
//     at the second before it starts: a forecast (the premise's smooth load
//     shape at the interval's middle, plus its fridge's mean, and clear-sky
//     PV x 0.925, the cloud factor's mean; consumption and generation 0 if
//     its breaker is open then: its PV is behind it) and a seeded policy
//     around the genesis tariffs. Connected:
//     sellers from 80,000 (the export tariff) to 200,000, buyers up to
//     150,000-300,000 (the import tariff). Islanded at planning time (the
//     monitor's decision): the community pays 250,000 for exports and
//     charges it for imports (the imbalance price), so sellers ask
//     200,000-300,000 and buyers, with power scarce, bid 250,000-500,000
//     (critical sites 1,000,000). These prices are assumptions: the
//     prices the market finds follow from them. No member has a battery,
//     so nothing is offered after sunset.
//   - Loads: see `householdShape` and `criticalShape` below.
import { planBids, type BiddingPolicy } from "../market/auto-bid.js";
import { type ClearingOrder, type ClearingResult, clear } from "../market/clearing.js";
import { type DispatchParams, type DispatchStep, type PremiseInput, type StorageTiers, type SwitchRecord, checkShellDispatchParams, dispatch, energyMaxWh, powerMaxW, storageTiers } from "../market/dispatch.js";
import { type GridEvent, type GridMonitorConfig, type GridMonitorState, initialGridState, parseGridMonitorConfig, stepGrid } from "../market/grid-monitor.js";
import { type Metered, COMMUNITY, UTILITY, settle } from "../market/settlement.js";
import { householdLoadW, solarPowerW } from "../device/profiles.js";
import { assert } from "../ledger/assert.js";
import { DEFAULT_MARKET_PARAMS } from "../ledger/genesis.js";
import { type Premise as ModelPremise, type PremiseKind, SiteModel, createPremise } from "./premise.js";
import { solarW } from "./profiles.js";
import { MS_PER_DAY, MS_PER_HOUR, MS_PER_MIN, type Site, checkSite, localDayOf, offsetMsOf } from "./site.js";
import { Rng } from "./rng.js";

const MS_PER_S = 1_000;
const S_PER_HOUR = 3_600;
/** 2025-06-21T00:00:00Z: the scenario's calendar day (solar profiles are UTC and the same every day). */
export const DAY0_MS = 1_750_464_000_000;
const WARM_UP_S = 310;
const NOMINAL_DECIV = 2_300;
const NOMINAL_MILLIHZ = 50_000;

export interface OutageScenario {
  readonly seed: number;
  readonly prosumers: number;
  readonly consumers: number;
  readonly critical: number;
  /** The simulated window: [dayStartMs, dayStartMs + durationMs), whole seconds, whole market intervals. */
  readonly dayStartMs: number;
  readonly durationMs: number;
  /** The utility is down over [outageStartMs, outageEndMs): whole seconds, inside the window; equal: no outage. */
  readonly outageStartMs: number;
  readonly outageEndMs: number;
  readonly batteryWh: number;
  /** The battery's limit, charge and discharge. */
  readonly batteryMaxW: number;
  /** Keep this many hours of the critical sites' peak in the battery for them; 0: no reserve. */
  readonly criticalReserveHours: number;
  readonly readBackUnknownPerMillion: number;
  readonly dispatch: DispatchParams;
  /** Dispatch period while connected with every breaker closed, s. */
  readonly calmStepS: number;
  /**
   * The realistic profiles (sim/premise.ts: clear-sky PV with weather at the site, households with
   * diversity, home batteries for `batteries` of the prosumers). Absent: the issue 6 shapes below.
   */
  readonly profiles?: { readonly site: Site; readonly batteries: number };
}

export const DEFAULT_DISPATCH: DispatchParams = { hysteresisPermille: 100, minOnMs: 60_000, minOffMs: 120_000, closesPerStepMax: 10, demandFreshMs: 10_000 };

/** The issue's neighbourhood: 60 prosumers, 500 consumers, 3 critical sites; 24 h from 12:00; outage 18:00-24:00. */
export const DEFAULT_OUTAGE: OutageScenario = {
  seed: 1,
  prosumers: 60,
  consumers: 500,
  critical: 3,
  dayStartMs: DAY0_MS + 12 * MS_PER_HOUR,
  durationMs: MS_PER_DAY,
  outageStartMs: DAY0_MS + 18 * MS_PER_HOUR,
  outageEndMs: DAY0_MS + 24 * MS_PER_HOUR,
  batteryWh: 200_000,
  batteryMaxW: 100_000,
  criticalReserveHours: 8,
  readBackUnknownPerMillion: 1_000,
  dispatch: DEFAULT_DISPATCH,
  calmStepS: 1,
};

/** "HH:MM" (00:00 to 24:00) as ms after midnight. */
export function clockToMs(text: string): number {
  const m = /^(\d{1,2}):(\d{2})$/.exec(text);
  if (m === null || Number(m[1]) > 24 || Number(m[2]) > 59 || (Number(m[1]) === 24 && Number(m[2]) > 0)) throw new RangeError(`a time of day is HH:MM from 00:00 to 24:00, got ${text}`);
  return Number(m[1]) * MS_PER_HOUR + Number(m[2]) * MS_PER_MIN;
}

/** The window starting at `start` (HH:MM after midnightMs, default DAY0's) and the outage "HH:MM-HH:MM" in it (a time before the start is the next day). */
export function outageWindow(start: string, outage: string, midnightMs = DAY0_MS): Pick<OutageScenario, "dayStartMs" | "outageStartMs" | "outageEndMs"> {
  const parts = outage.split("-");
  if (parts.length !== 2) throw new RangeError(`an outage is HH:MM-HH:MM, got ${outage}`);
  const dayStartMs = midnightMs + clockToMs(start);
  let outageStartMs = midnightMs + clockToMs(parts[0] as string);
  if (outageStartMs < dayStartMs) outageStartMs += MS_PER_DAY;
  let outageEndMs = midnightMs + clockToMs(parts[1] as string);
  while (outageEndMs <= outageStartMs) outageEndMs += MS_PER_DAY;
  return { dayStartMs, outageStartMs, outageEndMs };
}

export function checkScenario(s: OutageScenario): string[] {
  const problems = checkShellDispatchParams(s.dispatch).map((p) => `dispatch.${p}`);
  const whole = (n: number) => Number.isSafeInteger(n) && n >= 0;
  for (const k of ["seed", "prosumers", "consumers", "critical", "batteryWh", "batteryMaxW", "readBackUnknownPerMillion", "criticalReserveHours"] as const) if (!whole(s[k])) problems.push(`${k}: a whole number, at least 0`);
  if (s.critical + s.prosumers + s.consumers < 1) problems.push("premises: at least one");
  if (s.readBackUnknownPerMillion > 1_000_000) problems.push("readBackUnknownPerMillion: at most 1,000,000");
  if (s.batteryWh > energyMaxWh) problems.push(`batteryWh: at most ${energyMaxWh}`);
  if (s.batteryMaxW > powerMaxW) problems.push(`batteryMaxW: at most ${powerMaxW}`);
  if (!whole(s.calmStepS) || s.calmStepS < 1) problems.push("calmStepS: at least 1");
  if (s.dayStartMs % MS_PER_S !== 0 || s.durationMs % DEFAULT_MARKET_PARAMS.intervalMs !== 0 || s.durationMs <= 0) problems.push("window: whole seconds, whole market intervals");
  if (s.outageStartMs % MS_PER_S !== 0 || s.outageEndMs % MS_PER_S !== 0) problems.push("outage: whole seconds");
  if (s.profiles !== undefined) {
    problems.push(...checkSite(s.profiles.site).map((p) => `profiles.site: ${p}`));
    if (!whole(s.profiles.batteries) || s.profiles.batteries > s.prosumers) problems.push("profiles.batteries: a whole number, at most the prosumers");
  }
  const noOutage = s.outageStartMs === s.outageEndMs; // an empty outage: the grid stays up
  if (!noOutage && !(s.dayStartMs < s.outageStartMs && s.outageStartMs < s.outageEndMs && s.outageEndMs <= s.dayStartMs + s.durationMs)) problems.push("outage: inside the window, after its start");
  return problems;
}

// ---- Loads ---------------------------------------------------------------

export type Kind = "critical" | "prosumer" | "consumer";

/** A compressor cycling: on for onS of every periodS, from phaseS. */
interface Cycle {
  readonly w: number;
  readonly onS: number;
  readonly periodS: number;
  readonly phaseS: number;
}

/** A short heavy load (kettle, oven, shower pump) inside one 15-minute slot. */
interface Burst {
  readonly fromS: number;
  readonly toS: number;
  readonly w: number;
}

export interface Premise {
  readonly id: number;
  readonly kind: Kind;
  readonly label: string;
  readonly pvPeakW: number;
  /** With scenario.profiles: the premise's model (its load, PV and battery); the shapes below are then unused. */
  readonly model: ModelPremise | null;
  /** The smooth part of its load by minute of the day, W. */
  readonly smoothW: Float64Array;
  readonly cycle: Cycle;
  /** By slot of the window (900 s each); null: none. */
  readonly bursts: readonly (Burst | null)[];
  /** Its gross load can never exceed this: the dispatch's fallback. */
  readonly peakW: number;
}

const SLOT_S = 900;
const bump = (h: number, centre: number, widthH: number) => Math.exp(-(((h - centre) / widthH) ** 2));

/**
 * A household. The shape is device/profiles.ts's (a base load, a morning
 * hump around 07:30 and an evening one around 19:00: the two humps of
 * every published residential load curve), with diversity: each household
 * draws its own base (150-450 W), humps (300-1,200 W and 600-2,200 W) and
 * timing (its curve shifted by up to an hour either way), a fridge
 * compressor (70-150 W, on 600-1,200 s of every 1,800-3,600 s) and short
 * heavy loads (1.2-3 kW for 1-5 minutes; in a 15-minute slot with
 * probability 0.25 in the evening, 0.15 in the morning, 0.05 otherwise).
 * Magnitudes are chosen so that the neighbourhood's evening peak comes out
 * at 1.5-2 kW a household (1.9 kW with the default seed): the after-
 * diversity maximum demand (ADMD) that UK distribution design uses for
 * houses without electric heating is "normally 2 kW", and the measured
 * demand of the Customer-Led Network Revolution's domestic sample settled
 * at 1.5 kW (CLNR report L217, "After Diversity Maximum Demand (ADMD)
 * Report", 2015, networkrevolution.co.uk). A check of the order of
 * magnitude, not a fitted profile: replace with measured profiles when
 * issue 8 brings them.
 */
function householdShape(rng: Rng, slots: number, dayStartMs: number): Pick<Premise, "smoothW" | "cycle" | "bursts"> {
  const load = { baseW: rng.int(150, 450), morningPeakW: rng.int(300, 1_200), eveningPeakW: rng.int(600, 2_200), utcOffsetHours: (rng.int(0, 120) - 60) / 60 };
  const smoothW = new Float64Array(1_440);
  for (let m = 0; m < 1_440; m++) smoothW[m] = householdLoadW(DAY0_MS + m * MS_PER_MIN, load);
  const periodS = rng.int(1_800, 3_600);
  const cycle = { w: rng.int(70, 150), onS: rng.int(600, 1_200), periodS, phaseS: rng.int(0, periodS - 1) };
  const bursts: (Burst | null)[] = [];
  for (let k = 0; k < slots; k++) {
    const h = hourOf(dayStartMs + k * SLOT_S * MS_PER_S) + load.utcOffsetHours;
    const chance = h >= 17 && h < 21 ? 0.25 : h >= 6 && h < 9 ? 0.15 : 0.05;
    const roll = rng.next();
    const fromS = rng.int(0, SLOT_S - 300);
    const durS = rng.int(60, 300);
    const w = rng.int(1_200, 3_000);
    bursts.push(roll < chance ? { fromS, toS: fromS + durS, w } : null);
  }
  return { smoothW, cycle, bursts };
}

/**
 * A critical site, steady by nature: a shelter (2 kW, +1.5 kW of lights and
 * cooking in the evening when people come in, a kitchen fridge), a clinic
 * (3.5 kW: lights, computers, ventilation; a 300 W vaccine fridge), a
 * pharmacy's medicine fridge (80 W of controls and a 250 W compressor on
 * half the time). More than three repeat the cycle. Invented round
 * figures of a plausible size, not measurements.
 */
function criticalShape(index: number, rng: Rng, slots: number): Pick<Premise, "smoothW" | "cycle" | "bursts" | "label"> {
  const kind = index % 3;
  const smoothW = new Float64Array(1_440);
  for (let m = 0; m < 1_440; m++) {
    const h = m / 60;
    smoothW[m] = kind === 0 ? 2_000 + 1_500 * bump(h, 20, 2.5) : kind === 1 ? 3_500 : 80;
  }
  const periodS = kind === 2 ? 1_200 : 2_400;
  const cycle = { w: kind === 0 ? 200 : kind === 1 ? 300 : 250, onS: periodS / 2, periodS, phaseS: rng.int(0, periodS - 1) };
  const label = `${["shelter", "clinic", "pharmacy fridge"][kind] as string}${index >= 3 ? ` ${Math.floor(index / 3) + 1}` : ""}`;
  return { smoothW, cycle, bursts: new Array<Burst | null>(slots).fill(null), label };
}

function hourOf(timeMs: number): number {
  return ((((timeMs - DAY0_MS) % MS_PER_DAY) + MS_PER_DAY) % MS_PER_DAY) / MS_PER_HOUR;
}

function peakOf(p: Pick<Premise, "smoothW" | "cycle" | "bursts">): number {
  let smooth = 0;
  for (const w of p.smoothW) smooth = Math.max(smooth, w);
  let burst = 0;
  for (const b of p.bursts) if (b !== null) burst = Math.max(burst, b.w);
  return Math.ceil(smooth) + p.cycle.w + burst;
}

/** The premises in priority order: the critical sites, then the others in a seeded shuffle. */
function makePremises(s: OutageScenario, rng: Rng): Premise[] {
  const slots = s.durationMs / (SLOT_S * MS_PER_S);
  const out: Premise[] = [];
  for (let i = 0; i < s.critical; i++) {
    const shape = criticalShape(i, rng, slots);
    out.push({ id: i, kind: "critical", pvPeakW: 0, model: null, ...shape, peakW: peakOf(shape) });
  }
  const others: Kind[] = [...new Array<Kind>(s.prosumers).fill("prosumer"), ...new Array<Kind>(s.consumers).fill("consumer")];
  for (let i = others.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [others[i], others[j]] = [others[j] as Kind, others[i] as Kind];
  }
  for (const kind of others) {
    const id = out.length;
    const shape = householdShape(rng, slots, s.dayStartMs);
    const pvPeakW = kind === "prosumer" ? rng.int(3_000, 6_000) : 0;
    out.push({ id, kind, label: `${kind} ${id}`, pvPeakW, model: null, ...shape, peakW: peakOf(shape) });
  }
  return out;
}

const NO_SHAPE = { smoothW: new Float64Array(1_440), cycle: { w: 0, onS: 0, periodS: 1, phaseS: 0 }, bursts: [] } as const;

/**
 * The premises from the realistic profiles (sim/premise.ts), in priority order: the critical sites, then
 * the households (with PV and a battery, with PV, without) in a seeded shuffle. Each premise's peak (the
 * dispatch's fallback demand) is the highest minute of its load over the window's first week.
 */
function modelPremises(s: OutageScenario, profiles: NonNullable<OutageScenario["profiles"]>, rng: Rng): Premise[] {
  const model = new SiteModel(profiles.site, s.seed);
  const kinds: PremiseKind[] = [...new Array<PremiseKind>(profiles.batteries).fill("prosumer-battery"), ...new Array<PremiseKind>(s.prosumers - profiles.batteries).fill("prosumer"), ...new Array<PremiseKind>(s.consumers).fill("consumer")];
  for (let i = kinds.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [kinds[i], kinds[j]] = [kinds[j] as PremiseKind, kinds[i] as PremiseKind];
  }
  const offsetMs = offsetMsOf(profiles.site);
  const firstDay = localDayOf(s.dayStartMs, offsetMs);
  const days = Math.min(7, Math.ceil(s.durationMs / MS_PER_DAY) + 1);
  return [...new Array<PremiseKind>(s.critical).fill("critical"), ...kinds].map((kind, id) => {
    const m = createPremise({ seed: s.seed, index: id, kind, site: profiles.site, model });
    let peakW = 0;
    for (let d = 0; d < days; d++) peakW = Math.max(peakW, m.loadDay(firstDay + d).peakW);
    return { id, kind: kind === "prosumer-battery" ? "prosumer" : kind, label: m.label, pvPeakW: m.pv === null ? 0 : Math.round(m.pv.kWp * 1_000), model: m, ...NO_SHAPE, peakW };
  });
}

/** The premise's gross load at second `sec` of the window, whole W. */
function loadAt(p: Premise, sec: number, minuteOfDay0: number): number {
  const minute = (minuteOfDay0 + Math.floor(sec / 60)) % 1_440;
  const c = p.cycle;
  const cycleW = (sec + c.phaseS) % c.periodS < c.onS ? c.w : 0;
  const b = p.bursts[Math.floor(sec / SLOT_S)];
  const within = sec % SLOT_S;
  const burstW = b !== null && b !== undefined && within >= b.fromS && within < b.toS ? b.w : 0;
  return Math.round((p.smoothW[minute] as number) + cycleW + burstW);
}

// ---- The report -----------------------------------------------------------

export type Phase = "before" | "during" | "after";

export interface IntervalReport {
  readonly startMs: number;
  readonly clock: string;
  readonly phase: Phase;
  readonly islandedPermille: number;
  /** Planned islanded: the monitor said islanded at the second before the interval (the outage policies bid). */
  readonly biddingIslanded: boolean;
  readonly buyOrders: number;
  readonly sellOrders: number;
  readonly priceMicroPerKWh: number | null;
  readonly volumeWh: number;
  readonly deliveredWh: number;
  /** Settlement: what the utility and the community account received (negative: paid), micro-currency. */
  readonly utilityMicro: number;
  readonly communityMicro: number;
}

export interface PriceSummary {
  readonly intervals: number;
  readonly intervalsWithPrice: number;
  /** Volume-weighted mean of the clearing prices, rounded down; null: nothing traded. */
  readonly meanMicroPerKWh: number | null;
  readonly minMicroPerKWh: number | null;
  readonly maxMicroPerKWh: number | null;
  readonly volumeWh: number;
  readonly deliveredWh: number;
  readonly utilityMicro: number;
  readonly communityMicro: number;
}

export interface OutageReport {
  readonly scenario: Omit<OutageScenario, "dispatch"> & { readonly dispatch: DispatchParams };
  readonly premises: { readonly critical: readonly { readonly id: number; readonly label: string; readonly peakW: number }[]; readonly householdPeakMeanW: number; readonly neighbourhoodPeakW: number; readonly neighbourhoodPeakClock: string };
  readonly island: {
    readonly events: readonly (GridEvent & { readonly clock: string })[];
    /** The monitor's first island decision in the window and the reconnection after it (null: none). */
    readonly startMs: number | null;
    readonly endMs: number | null;
    readonly detectionDelayMs: number | null;
    readonly reconnectionDelayMs: number | null;
    readonly islandedSeconds: number;
  };
  readonly steps: { readonly seconds: number; readonly dispatchSteps: number; readonly calmStepS: number };
  readonly critical: {
    readonly demandKWh: number;
    readonly servedKWh: number;
    readonly demandWhileSupplyAllowedKWh: number;
    readonly servedWhileSupplyAllowedKWh: number;
    /** floor(served x 1,000,000 / demand) while supply allowed; 1,000,000 with no such demand. */
    readonly coverageWhileSupplyAllowedPpm: number;
    /** Over every islanded second (from the monitor's trip to its reconnection), whatever the supply: a battery that empties shows here. */
    readonly whileIslandedDemandKWh: number;
    readonly whileIslandedServedKWh: number;
    /** floor(served x 1,000,000 / demand) while islanded; 1,000,000 with no islanded critical demand. */
    readonly whileIslandedCoveragePpm: number;
    /** Seconds in which some critical site was off though the supply carried it and every critical site ahead of it. */
    readonly offWhileSupplyAllowedSeconds: number;
    readonly offWhileSupplyAllowedShare: number;
    /** Seconds in which some critical site was off, for any reason. */
    readonly offSeconds: number;
  };
  readonly shed: { readonly energyKWh: number; readonly nonCriticalKWh: number; readonly criticalKWh: number; readonly duringIslandKWh: number; readonly peakPremisesOff: number };
  readonly breakers: { readonly operations: number; readonly opens: number; readonly closes: number; readonly maxPerBreaker: number; readonly maxPerBreakerId: number | null; readonly commands: number; readonly repeats: number; readonly overridesMinOn: number; readonly readBackUnknown: number };
  readonly invariants: {
    /** Seconds with a critical premise off while a non-critical one is on. Must be 0. */
    readonly orderViolationSeconds: number;
    /** Of those, the seconds while connected (a critical site waiting out its min-off while households are restored). */
    readonly orderViolationConnectedSeconds: number;
    /** Islanded seconds in which the dispatch's servedW exceeded its supplyW. Must be 0. */
    readonly servedAboveSupplySteps: number;
    /** Islanded seconds in which the closed premises drew more than their export + the storage tiers they may use (physics.) */
    readonly overloadSeconds: number;
    readonly overloadWorstW: number;
    /** The first overloaded seconds (at most 10). */
    readonly overloadClocks: readonly string[];
  };
  readonly energy: { readonly demandKWh: number; readonly servedKWh: number; readonly pvKWh: number; readonly pvCurtailedKWh: number; readonly gridImportKWh: number; readonly gridExportKWh: number };
  readonly battery: { readonly capacityWh: number; readonly maxW: number; readonly criticalReserveWh: number; readonly startWh: number; readonly minWh: number; readonly minClock: string; readonly endWh: number; readonly reserveReachedClock: string | null; readonly dischargedWh: number };
  readonly market: { readonly intervals: readonly IntervalReport[]; readonly prices: Readonly<Record<Phase, PriceSummary>> };
  readonly simplifications: readonly string[];
}

/** What a test sees each simulated second (only built when asked for). */
export interface OutageStep {
  readonly sec: number;
  readonly timeMs: number;
  readonly islanded: boolean;
  /** The dispatch's step this second; null: it did not run (connected, all closed, not a calm step). */
  readonly step: DispatchStep | null;
  /** Breaker positions after this second's commands, by priority index. */
  readonly closed: readonly boolean[];
  readonly criticalCount: number;
  /** Gross loads and PV output, W (the arrays are reused: copy what you keep). */
  readonly loadW: Int32Array;
  readonly pvW: Int32Array;
  /** The share of the closed premises' export the island took this second (1 connected; the rest was curtailed). */
  readonly exportShare: number;
  /** The monitor's decisions this second. */
  readonly events: readonly GridEvent[];
  /** What the closed premises drew from the island (net imports) and exported to it (net exports). */
  readonly drawnW: number;
  readonly exportW: number;
  /** The battery's tiers this second (both 0 while connected). */
  readonly tiers: StorageTiers;
}

/** The household line when the scenario uses the realistic profiles. */
export const PROFILE_SIMPLIFICATION =
  "premises from sim/premise.ts (see sim/README.md): PV from a clear-sky model with weather at the site, households with BDEW H25 daily shapes scaled to Ofgem's typical consumption and diversity, home batteries run for self-consumption (a shed premise's battery keeps its own schedule; it is not modelled as backup power)";

export const SIMPLIFICATIONS: readonly string[] = [
  "one-second steps: the PCC readings, the monitor, loads, PV, metering and the dispatch (unless calmStepS says otherwise while connected and all closed); the market every 15 minutes",
  "PCC readings once a second, always good; the utility side reads 0-2 V, 0 Hz during the outage; no sub-second transients at islanding",
  "breakers obey every command at once; only their read-back fails (unknown, at the stated rate)",
  "one meter per premise at its connection; a prosumer's PV is behind its breaker, so shedding it sheds its export; it exports again the second its breaker closes (a real inverter waits out its enter-service delay, 300 s by default; the dispatch counts it only from its next reading either way)",
  "community battery: one power limit both ways, no losses, starts full, recharges from the grid at its limit while connected; PV beyond what it can take in the island is curtailed",
  "the battery's tiers are market/dispatch.ts storageTiers, as on the controller: open to every premise only above the critical reserve (tapering to it over 15 minutes), the rest of its limit for the critical sites; beyond that the dispatch serves the longest prefix the supply carries now and does not ration energy over the outage",
  "household loads: device/profiles.ts's two-hump shape with per-household size, timing, a fridge cycle and short heavy loads; critical sites are steady round figures; PV is sim/profiles.ts solarW (06:00-20:00 UTC half-sine, independent cloud noise per second per array)",
  "market: each box bids its forecast with a seeded policy around the genesis tariffs (outage policies when the monitor said islanded at planning); no member has a battery, so nothing is offered after sunset; forecasts ignore shedding except that a box whose breaker is open forecasts no consumption and no generation",
];

// ---- The run ---------------------------------------------------------------

interface BreakerState {
  closed: boolean;
  lastSwitch: SwitchRecord | null;
  /** The last reading taken while closed: net import and net export (one of them 0), and when. */
  readingW: number;
  readingExportW: number;
  readingAtMs: number | null;
  operations: number;
}

export interface Policies {
  readonly connected: BiddingPolicy;
  readonly islanded: BiddingPolicy;
}

/** A premise's seeded bidding policies around the genesis tariffs: one while connected, one while islanded. */
export function policiesFor(p: Pick<Premise, "kind">, rng: Rng): Policies {
  const base = { maxBuyWh: 20_000, batteryReserveWh: 0, minOrderWh: 10, toleranceWh: 0 };
  const step = (lo: number, hi: number) => rng.int(lo / 5_000, hi / 5_000) * 5_000;
  const connected = { ...base, sellFloorMicroPerKWh: step(80_000, 200_000), buyCeilingMicroPerKWh: step(150_000, 300_000) };
  const islanded = { ...base, sellFloorMicroPerKWh: step(200_000, 300_000), buyCeilingMicroPerKWh: p.kind === "critical" ? 1_000_000 : step(250_000, 500_000) };
  return { connected, islanded };
}

const fmtClock = (timeMs: number) => {
  const t = (((timeMs - DAY0_MS) % MS_PER_DAY) + MS_PER_DAY) % MS_PER_DAY;
  const hh = Math.floor(t / MS_PER_HOUR);
  const mm = Math.floor((t % MS_PER_HOUR) / MS_PER_MIN);
  const ss = Math.floor((t % MS_PER_MIN) / MS_PER_S);
  return `${String(hh).padStart(2, "0")}:${String(mm).padStart(2, "0")}:${String(ss).padStart(2, "0")}`;
};
export { fmtClock as clockOf };

const kWh = (joules: number) => Math.round(joules / 3_600) / 1_000;

class PccMeter {
  constructor(
    private readonly rng: Rng,
    private readonly s: OutageScenario,
  ) {}

  reading(timeMs: number) {
    const down = timeMs >= this.s.outageStartMs && timeMs < this.s.outageEndMs;
    const phase = () => (down ? this.rng.int(0, 20) : NOMINAL_DECIV + this.rng.int(-69, 69));
    return { timeMs, voltagesDeciV: [phase(), phase(), phase()], frequencyMilliHz: down ? 0 : NOMINAL_MILLIHZ + this.rng.int(-50, 50), good: true };
  }
}

/** Everything the run accumulates; joules (W x s) for energy. */
class Totals {
  criticalDemandJ = 0;
  criticalServedJ = 0;
  criticalIslandDemandJ = 0;
  criticalIslandServedJ = 0;
  criticalAllowedDemandJ = 0;
  criticalAllowedServedJ = 0;
  offAllowedSeconds = 0;
  criticalOffSeconds = 0;
  shedNonCriticalJ = 0;
  shedCriticalJ = 0;
  shedIslandJ = 0;
  peakOff = 0;
  demandJ = 0;
  pvJ = 0;
  curtailedJ = 0;
  gridImportJ = 0;
  gridExportJ = 0;
  dischargedJ = 0;
  opens = 0;
  closes = 0;
  commands = 0;
  repeats = 0;
  overridesMinOn = 0;
  readBackUnknown = 0;
  orderViolations = 0;
  orderViolationsConnected = 0;
  servedAboveSupply = 0;
  overloads = 0;
  overloadWorstW = 0;
  readonly overloadMs: number[] = [];
  islandedSeconds = 0;
  dispatchSteps = 0;
  neighbourhoodPeakW = 0;
  neighbourhoodPeakMs = 0;
}

interface OpenInterval {
  readonly index: number;
  readonly startMs: number;
  readonly biddingIslanded: boolean;
  readonly buyOrders: number;
  readonly sellOrders: number;
  readonly clearing: ClearingResult;
  islandedSeconds: number;
  readonly importJ: Float64Array;
  readonly exportJ: Float64Array;
}

/** Run the scenario. Throws (an assertion) on a scenario checkScenario refuses. `onStep` sees every simulated second. */
export function runOutage(scenario: OutageScenario, onStep?: (s: OutageStep) => void): OutageReport {
  return new OutageRun(scenario, onStep).run();
}

/** One run; sim/neighbourhood.ts drives it with an onStep that mirrors every second into a ledger. */
export class OutageRun {
  /** In the community's priority order (critical sites first). */
  readonly premises: readonly Premise[];
  private readonly breakers: BreakerState[];
  readonly policies: readonly Policies[];
  private readonly gridConfig: GridMonitorConfig;
  private grid: GridMonitorState = initialGridState();
  private readonly events: GridEvent[] = [];
  private readonly pcc: PccMeter;
  private readonly rngPv: Rng;
  private readonly rngReadBack: Rng;
  private readonly t = new Totals();
  private readonly loadW: Int32Array;
  private readonly pvW: Int32Array;
  private readonly minuteOfDay0: number;
  private readonly criticalPeakW: number;
  /** The battery's critical reserve (storageTiers offers the open tier only above it). */
  private readonly reserveWh: number;
  private socJ: number;
  private socMinJ: number;
  private socMinMs: number;
  private reserveReachedMs: number | null = null;
  private allClosed = true;
  private interval: OpenInterval | null = null;
  private readonly intervals: IntervalReport[] = [];
  /** HH:MM:SS of the premises' local time (the profiles' site; UTC for the issue 6 shapes). */
  private readonly clock: (timeMs: number) => string;

  constructor(
    private readonly s: OutageScenario,
    private readonly onStep: ((s: OutageStep) => void) | undefined,
  ) {
    assert(checkScenario(s).length === 0, `outage scenario: ${checkScenario(s).join("; ")}`);
    const rng = new Rng(s.seed);
    // Separate streams, so a change in one (a longer window, another read-back rate) leaves the others as they were.
    const rngPremises = new Rng(rng.nextU32());
    this.rngPv = new Rng(rng.nextU32());
    this.rngReadBack = new Rng(rng.nextU32());
    this.pcc = new PccMeter(new Rng(rng.nextU32()), s);
    const rngPolicies = new Rng(rng.nextU32());
    this.premises = s.profiles === undefined ? makePremises(s, rngPremises) : modelPremises(s, s.profiles, rngPremises);
    this.policies = this.premises.map((p) => policiesFor(p, rngPolicies));
    this.breakers = this.premises.map(() => ({ closed: true, lastSwitch: null, readingW: 0, readingExportW: 0, readingAtMs: null, operations: 0 }));
    this.loadW = new Int32Array(this.premises.length);
    this.pvW = new Int32Array(this.premises.length);
    this.minuteOfDay0 = Math.floor(hourOf(s.dayStartMs) * 60);
    this.gridConfig = parseGridMonitorConfig({ nominalVoltageDeciV: NOMINAL_DECIV, nominalFrequencyMilliHz: NOMINAL_MILLIHZ });
    this.criticalPeakW = this.premises.filter((p) => p.kind === "critical").reduce((a, p) => a + p.peakW, 0);
    this.reserveWh = Math.min(s.batteryWh, this.criticalPeakW * s.criticalReserveHours);
    this.socJ = s.batteryWh * S_PER_HOUR;
    this.socMinJ = this.socJ;
    this.socMinMs = s.dayStartMs;
    const offsetMs = s.profiles === undefined ? 0 : offsetMsOf(s.profiles.site);
    this.clock = (timeMs) => fmtClock(timeMs + offsetMs);
  }

  run(): OutageReport {
    this.warmUp();
    const seconds = this.s.durationMs / MS_PER_S;
    const intervalS = DEFAULT_MARKET_PARAMS.intervalMs / MS_PER_S;
    for (let sec = 0; sec < seconds; sec++) {
      if (sec % intervalS === 0) this.marketBoundary(sec);
      this.second(sec);
    }
    this.settleInterval();
    return this.report(seconds);
  }

  /** The monitor starts islanded (noReading): feed it the grid for its reconnection window before the day. */
  private warmUp(): void {
    for (let sec = -WARM_UP_S; sec < 0; sec++) this.feedMonitor(this.s.dayStartMs + sec * MS_PER_S, false);
    assert(this.grid.decision === "connected", "the monitor reconnected before the day starts");
  }

  private feedMonitor(timeMs: number, record: boolean): readonly GridEvent[] {
    const r = stepGrid(this.gridConfig, this.grid, { type: "reading", reading: this.pcc.reading(timeMs) });
    assert(r.refused === null, `the monitor refused a reading: ${r.refused?.message ?? ""}`);
    this.grid = r.state;
    if (record) this.events.push(...r.events);
    return r.events;
  }

  private second(sec: number): void {
    const s = this.s;
    const nowMs = s.dayStartMs + sec * MS_PER_S;
    const events = this.feedMonitor(nowMs, true);
    const changed = events.length > 0;
    const islanded = this.grid.decision === "islanded";
    this.sampleLoads(sec, nowMs);
    // Connected, the grid carries everyone and the battery charges: it offers the island nothing.
    const tiers = islanded ? this.batteryTiers(nowMs) : { openW: 0, reserveW: 0 };
    let step: DispatchStep | null = null;
    if (islanded || changed || !this.allClosed || sec % s.calmStepS === 0) step = this.dispatchStep(nowMs, islanded, tiers);
    const { drawnW, exportW, exportShare } = this.physics(nowMs, islanded, tiers);
    if (islanded) {
      this.t.islandedSeconds++;
      if (this.interval !== null) this.interval.islandedSeconds++;
      if (step !== null && step.figures.servedW > step.figures.supplyW) this.t.servedAboveSupply++;
    }
    this.criticalFigures(islanded, tiers);
    if (this.onStep !== undefined) {
      this.onStep({ sec, timeMs: nowMs, islanded, step, closed: this.breakers.map((b) => b.closed), criticalCount: s.critical, loadW: this.loadW, pvW: this.pvW, exportShare, events, drawnW, exportW, tiers });
    }
  }

  private sampleLoads(sec: number, nowMs: number): void {
    let total = 0;
    this.premises.forEach((p, i) => {
      if (p.model !== null) {
        // Behind the meter: PV, and the battery's discharge less its charge (it charges only from surplus PV).
        const w = p.model.loadW(nowMs);
        const supplyW = w - p.model.netPowerW(nowMs);
        assert(supplyW >= 0, "a premise's own supply is never negative");
        this.loadW[i] = w;
        this.pvW[i] = supplyW;
        total += w;
        return;
      }
      const w = loadAt(p, sec, this.minuteOfDay0);
      this.loadW[i] = w;
      total += w;
      // solarW draws cloud only in daylight, so every array's stream advances the same whatever else runs.
      this.pvW[i] = p.pvPeakW > 0 ? solarW(p.pvPeakW, nowMs, this.rngPv) : 0;
    });
    if (total > this.t.neighbourhoodPeakW) {
      this.t.neighbourhoodPeakW = total;
      this.t.neighbourhoodPeakMs = nowMs;
    }
  }

  /** The battery's tiers this second, as the controller splits them (market/dispatch.ts storageTiers on the state of charge). */
  private batteryTiers(nowMs: number): StorageTiers {
    const socWh = Math.floor(this.socJ / S_PER_HOUR);
    if (this.reserveWh > 0 && socWh <= this.reserveWh) this.reserveReachedMs ??= nowMs;
    return storageTiers({ dischargeMaxW: this.s.batteryMaxW, reserveWh: this.reserveWh }, socWh);
  }

  private dispatchStep(nowMs: number, islanded: boolean, tiers: StorageTiers): DispatchStep {
    const unknownBelow = this.s.readBackUnknownPerMillion / 1_000_000;
    const inputs: PremiseInput[] = this.premises.map((p, i) => {
      const b = this.breakers[i] as BreakerState;
      const load = this.loadW[i] as number;
      const pv = this.pvW[i] as number;
      if (b.closed) {
        b.readingW = netImport(load, pv);
        b.readingExportW = Math.max(0, pv - load);
        b.readingAtMs = nowMs;
      }
      const unknown = this.rngReadBack.next() < unknownBelow;
      if (unknown) this.t.readBackUnknown++;
      const breaker = unknown ? "unknown" : b.closed ? "closed" : "open";
      return { id: p.id, critical: p.kind === "critical", demandW: b.readingW, generationW: b.readingExportW, readingAtMs: b.readingAtMs, fallbackDemandW: p.peakW, breaker, lastSwitch: b.lastSwitch };
    });
    // Every array is behind a premise's breaker: no unswitched generation.
    const step = dispatch(this.s.dispatch, { nowMs, islanded, unswitchedGenerationW: 0, storageOpenW: tiers.openW, storageReserveW: tiers.reserveW, premises: inputs });
    this.t.dispatchSteps++;
    this.apply(step);
    return step;
  }

  /** Every command takes at once; the switch records are fed back. */
  private apply(step: DispatchStep): void {
    let allClosed = true;
    step.targets.forEach((target, i) => {
      const b = this.breakers[i] as BreakerState;
      const closed = target.target === "closed";
      if (b.closed !== closed) {
        b.operations++;
        if (closed) this.t.closes++;
        else this.t.opens++;
      }
      b.closed = closed;
      b.lastSwitch = target.lastSwitch;
      allClosed &&= closed;
    });
    this.allClosed = allClosed;
    for (const c of step.commands) {
      this.t.commands++;
      if (c.repeat) this.t.repeats++;
      if (c.overridesMinOn) this.t.overridesMinOn++;
    }
  }

  /**
   * One second of energy: who drew what, from the grid or the island's PV and battery; the meters integrate it.
   * Islanded, an overload is a draw beyond the closed premises' export + the storage tiers they may use (the open
   * tier, + the reserve tier while no household is on): the inverters' limit, or the reserve spent on households.
   */
  private physics(nowMs: number, islanded: boolean, tiers: StorageTiers): { drawnW: number; exportW: number; exportShare: number } {
    let drawnW = 0;
    let exportW = 0;
    let off = 0;
    let householdOn = false;
    const t = this.t;
    this.premises.forEach((p, i) => {
      const load = this.loadW[i] as number;
      t.demandJ += load;
      if ((this.breakers[i] as BreakerState).closed) {
        const pv = this.pvW[i] as number;
        drawnW += netImport(load, pv);
        exportW += Math.max(0, pv - load);
        t.pvJ += pv;
        householdOn ||= p.kind !== "critical";
      } else {
        off++;
        if (p.kind === "critical") t.shedCriticalJ += load;
        else t.shedNonCriticalJ += load;
        if (islanded) t.shedIslandJ += load;
      }
    });
    t.peakOff = Math.max(t.peakOff, off);
    let exportShare = 1; // the share of the closed premises' export that is taken (the rest curtailed)
    const availableW = exportW + tiers.openW + (householdOn ? 0 : tiers.reserveW);
    if (islanded) {
      if (drawnW > availableW) {
        t.overloads++;
        if (t.overloadMs.length < 10) t.overloadMs.push(nowMs);
        t.overloadWorstW = Math.max(t.overloadWorstW, drawnW - availableW);
      }
      const fromBattery = Math.min(Math.max(0, drawnW - exportW), Math.floor(this.socJ));
      const intoBattery = Math.min(Math.max(0, exportW - drawnW), this.s.batteryMaxW, this.s.batteryWh * S_PER_HOUR - this.socJ);
      const curtailed = Math.max(0, exportW - drawnW - intoBattery);
      t.curtailedJ += curtailed;
      if (exportW > 0) exportShare = (exportW - curtailed) / exportW;
      this.socJ += intoBattery - fromBattery;
      t.dischargedJ += fromBattery;
    } else {
      this.socJ += Math.min(this.s.batteryMaxW, this.s.batteryWh * S_PER_HOUR - this.socJ);
      t.gridImportJ += drawnW;
      t.gridExportJ += exportW;
    }
    if (this.socJ < this.socMinJ) {
      this.socMinJ = this.socJ;
      this.socMinMs = nowMs;
    }
    this.meter(exportShare);
    return { drawnW, exportW, exportShare };
  }

  private meter(exportShare: number): void {
    const iv = this.interval;
    if (iv === null) return;
    this.premises.forEach((_, i) => {
      if (!(this.breakers[i] as BreakerState).closed) return;
      const net = (this.loadW[i] as number) - (this.pvW[i] as number);
      if (net >= 0) iv.importJ[i] = (iv.importJ[i] as number) + net;
      else iv.exportJ[i] = (iv.exportJ[i] as number) - net * exportShare;
    });
  }

  /** Critical demand, served, and whether the supply carried each critical site (with the ones ahead of it: storage, both tiers, and their own export). */
  private criticalFigures(islanded: boolean, tiers: StorageTiers): void {
    const t = this.t;
    const supplyW = islanded ? tiers.openW + tiers.reserveW : Infinity;
    let prefixW = 0;
    let offAllowed = false;
    let criticalOff = false;
    let nonCriticalOn = false;
    this.premises.forEach((p, i) => {
      const closed = (this.breakers[i] as BreakerState).closed;
      if (p.kind !== "critical") {
        nonCriticalOn ||= closed;
        return;
      }
      const load = this.loadW[i] as number;
      prefixW += load - (this.pvW[i] as number); // net, as the dispatch counts a prefix
      t.criticalDemandJ += load;
      if (closed) t.criticalServedJ += load;
      else criticalOff = true;
      if (islanded) {
        t.criticalIslandDemandJ += load;
        if (closed) t.criticalIslandServedJ += load;
      }
      if (prefixW <= supplyW) {
        t.criticalAllowedDemandJ += load;
        if (closed) t.criticalAllowedServedJ += load;
        else offAllowed = true;
      }
    });
    if (offAllowed) t.offAllowedSeconds++;
    if (criticalOff) t.criticalOffSeconds++;
    if (criticalOff && nonCriticalOn) {
      t.orderViolations++;
      if (!islanded) t.orderViolationsConnected++;
    }
  }

  // ---- Market ----

  private marketBoundary(sec: number): void {
    this.settleInterval();
    const startMs = this.s.dayStartMs + sec * MS_PER_S;
    const biddingIslanded = this.grid.decision === "islanded"; // the monitor's decision at the second before
    const orders: ClearingOrder[] = [];
    const index = this.intervals.length;
    this.premises.forEach((p, i) => {
      const policy = (this.policies[i] as Policies)[biddingIslanded ? "islanded" : "connected"];
      const plan = planBids(policy, this.forecast(p, i, startMs), []);
      for (const o of plan.place) orders.push({ id: orderId(index, p.id), author: p.id, side: o.side, energyWh: o.energyWh, priceMicroPerKWh: o.priceMicroPerKWh, placedHeight: index * 1_000 + (i % 1_000), localRenewableOnly: false, counterparty: null });
    });
    const isRenewable = new Set(this.premises.filter((p) => p.pvPeakW > 0).map((p) => p.id));
    const clearing = clear(orders, { rule: DEFAULT_MARKET_PARAMS.clearingRule, isLocalRenewable: (a) => isRenewable.has(a) });
    const n = this.premises.length;
    this.interval = { index, startMs, biddingIslanded, buyOrders: orders.filter((o) => o.side === "buy").length, sellOrders: orders.filter((o) => o.side === "sell").length, clearing, islandedSeconds: 0, importJ: new Float64Array(n), exportJ: new Float64Array(n) };
  }

  /** The box's forecast for [startMs, startMs + interval): its smooth shape and fridge mean, clear-sky PV x the mean cloud factor; nothing if its breaker is open. */
  private forecast(p: Premise, i: number, startMs: number) {
    const hours = DEFAULT_MARKET_PARAMS.intervalMs / MS_PER_HOUR;
    const midMs = startMs + DEFAULT_MARKET_PARAMS.intervalMs / 2;
    const minute = Math.floor(hourOf(midMs) * 60) % 1_440;
    const open = !(this.breakers[i] as BreakerState).closed;
    if (p.model !== null) {
      const cloudMean = 0.75; // a forecast knows the clear sky, not the clouds: about the weather's mean clear-sky index
      const loadW = open ? 0 : p.model.expectedLoadW(midMs);
      const pvW = open ? 0 : cloudMean * p.model.clearSkyPvW(midMs);
      return { generationWh: pvW * hours, consumptionWh: loadW * hours, batteryWh: 0, batteryMaxFlowWh: 0 };
    }
    const loadW = open ? 0 : (p.smoothW[minute] as number) + (p.cycle.w * p.cycle.onS) / p.cycle.periodS;
    // Its PV is behind its breaker: shed, it has nothing to sell.
    const pvW = p.pvPeakW > 0 && !open ? 0.925 * solarPowerW(midMs, { peakW: p.pvPeakW, sunriseHour: 6, sunsetHour: 20, utcOffsetHours: 0 }) : 0;
    return { generationWh: pvW * hours, consumptionWh: loadW * hours, batteryWh: 0, batteryMaxFlowWh: 0 };
  }

  private settleInterval(): void {
    const iv = this.interval;
    if (iv === null) return;
    this.interval = null;
    const intervalMs = DEFAULT_MARKET_PARAMS.intervalMs;
    const metered = new Map<number, Metered>();
    this.premises.forEach((p, i) => metered.set(p.id, { importWh: Math.floor((iv.importJ[i] as number) / 3_600), exportWh: Math.floor((iv.exportJ[i] as number) / 3_600) }));
    // As market/interval.ts computes it from the island transactions: floor(islanded ms x 1000 / period ms).
    const islandedPermille = Math.floor((iv.islandedSeconds * MS_PER_S * 1_000) / intervalMs);
    const m = DEFAULT_MARKET_PARAMS;
    const result = settle(iv.clearing.trades, metered, {
      utilityImportMicroPerKWh: m.utilityImportMicroPerKWh,
      utilityExportMicroPerKWh: m.utilityExportMicroPerKWh,
      imbalanceMicroPerKWh: m.imbalanceMicroPerKWh,
      buyerFeeMicroPerKWh: m.buyerFeeMicroPerKWh,
      sellerFeeMicroPerKWh: m.sellerFeeMicroPerKWh,
      islandedPermille,
    });
    let sum = 0;
    for (const v of result.balances.values()) sum += v;
    assert(sum === 0, "settlement creates and loses nothing");
    this.intervals.push({
      startMs: iv.startMs,
      clock: this.clock(iv.startMs).slice(0, 5),
      phase: "before", // set in report(), once the island's times are known
      islandedPermille,
      biddingIslanded: iv.biddingIslanded,
      buyOrders: iv.buyOrders,
      sellOrders: iv.sellOrders,
      priceMicroPerKWh: iv.clearing.priceMicroPerKWh,
      volumeWh: iv.clearing.volumeWh,
      deliveredWh: result.deliveries.reduce((a, d) => a + d.deliveredWh, 0),
      utilityMicro: result.balances.get(UTILITY) ?? 0,
      communityMicro: result.balances.get(COMMUNITY) ?? 0,
    });
  }

  // ---- Report ----

  private report(seconds: number): OutageReport {
    const t = this.t;
    const first = this.events.find((e) => e.islanded);
    const back = first === undefined ? undefined : this.events.find((e) => !e.islanded && e.timeMs > first.timeMs);
    const startMs = first?.timeMs ?? null;
    const endMs = back?.timeMs ?? null;
    const phaseOf = (iv: IntervalReport): Phase => (iv.islandedPermille > 0 ? "during" : startMs === null || iv.startMs < startMs ? "before" : "after");
    const intervals = this.intervals.map((iv) => ({ ...iv, phase: phaseOf(iv) }));
    const households = this.premises.filter((p) => p.kind !== "critical");
    const ops = this.breakers.map((b) => b.operations);
    const maxOps = ops.reduce((a, x) => Math.max(a, x), 0);
    const allowedPpm = t.criticalAllowedDemandJ === 0 ? 1_000_000 : Math.floor((t.criticalAllowedServedJ * 1_000_000) / t.criticalAllowedDemandJ);
    return {
      scenario: { ...this.s },
      premises: {
        critical: this.premises.filter((p) => p.kind === "critical").map((p) => ({ id: p.id, label: p.label, peakW: p.peakW })),
        householdPeakMeanW: households.length === 0 ? 0 : Math.round(households.reduce((a, p) => a + p.peakW, 0) / households.length),
        neighbourhoodPeakW: t.neighbourhoodPeakW,
        neighbourhoodPeakClock: this.clock(t.neighbourhoodPeakMs),
      },
      island: {
        events: this.events.map((e) => ({ ...e, clock: this.clock(e.timeMs) })),
        startMs,
        endMs,
        detectionDelayMs: startMs === null ? null : startMs - this.s.outageStartMs,
        reconnectionDelayMs: endMs === null ? null : endMs - this.s.outageEndMs,
        islandedSeconds: t.islandedSeconds,
      },
      steps: { seconds, dispatchSteps: t.dispatchSteps, calmStepS: this.s.calmStepS },
      critical: {
        demandKWh: kWh(t.criticalDemandJ),
        servedKWh: kWh(t.criticalServedJ),
        demandWhileSupplyAllowedKWh: kWh(t.criticalAllowedDemandJ),
        servedWhileSupplyAllowedKWh: kWh(t.criticalAllowedServedJ),
        coverageWhileSupplyAllowedPpm: allowedPpm,
        whileIslandedDemandKWh: kWh(t.criticalIslandDemandJ),
        whileIslandedServedKWh: kWh(t.criticalIslandServedJ),
        whileIslandedCoveragePpm: t.criticalIslandDemandJ === 0 ? 1_000_000 : Math.floor((t.criticalIslandServedJ * 1_000_000) / t.criticalIslandDemandJ),
        offWhileSupplyAllowedSeconds: t.offAllowedSeconds,
        offWhileSupplyAllowedShare: t.offAllowedSeconds / seconds,
        offSeconds: t.criticalOffSeconds,
      },
      shed: { energyKWh: kWh(t.shedCriticalJ + t.shedNonCriticalJ), nonCriticalKWh: kWh(t.shedNonCriticalJ), criticalKWh: kWh(t.shedCriticalJ), duringIslandKWh: kWh(t.shedIslandJ), peakPremisesOff: t.peakOff },
      breakers: {
        operations: t.opens + t.closes,
        opens: t.opens,
        closes: t.closes,
        maxPerBreaker: maxOps,
        maxPerBreakerId: maxOps === 0 ? null : ops.indexOf(maxOps),
        commands: t.commands,
        repeats: t.repeats,
        overridesMinOn: t.overridesMinOn,
        readBackUnknown: t.readBackUnknown,
      },
      invariants: { orderViolationSeconds: t.orderViolations, orderViolationConnectedSeconds: t.orderViolationsConnected, servedAboveSupplySteps: t.servedAboveSupply, overloadSeconds: t.overloads, overloadWorstW: t.overloadWorstW, overloadClocks: t.overloadMs.map((ms) => this.clock(ms)) },
      energy: { demandKWh: kWh(t.demandJ), servedKWh: kWh(t.demandJ - t.shedCriticalJ - t.shedNonCriticalJ), pvKWh: kWh(t.pvJ), pvCurtailedKWh: kWh(t.curtailedJ), gridImportKWh: kWh(t.gridImportJ), gridExportKWh: kWh(t.gridExportJ) },
      battery: {
        capacityWh: this.s.batteryWh,
        maxW: this.s.batteryMaxW,
        criticalReserveWh: this.reserveWh,
        startWh: this.s.batteryWh,
        minWh: Math.floor(this.socMinJ / S_PER_HOUR),
        minClock: this.clock(this.socMinMs),
        endWh: Math.floor(this.socJ / S_PER_HOUR),
        reserveReachedClock: this.reserveReachedMs === null ? null : this.clock(this.reserveReachedMs),
        dischargedWh: Math.floor(t.dischargedJ / S_PER_HOUR),
      },
      market: { intervals, prices: { before: summary(intervals, "before"), during: summary(intervals, "during"), after: summary(intervals, "after") } },
      simplifications: this.s.profiles === undefined ? SIMPLIFICATIONS : SIMPLIFICATIONS.map((line) => (line.startsWith("household loads:") ? PROFILE_SIMPLIFICATION : line.startsWith("market: ") ? line.replace("no member has a battery, so nothing is offered after sunset", "members with a battery bid without it (no battery in the forecast)") : line)),
    };
  }
}

function netImport(loadW: number, pvW: number): number {
  return Math.max(0, loadW - pvW);
}

/** 32 bytes: the interval's index and the author, so ids are unique and fixed by the seed. */
function orderId(interval: number, author: number): Uint8Array {
  const id = new Uint8Array(32);
  const v = new DataView(id.buffer);
  v.setUint32(0, interval);
  v.setUint32(4, author);
  return id;
}

function summary(intervals: readonly IntervalReport[], phase: Phase): PriceSummary {
  const mine = intervals.filter((iv) => iv.phase === phase);
  const priced = mine.filter((iv) => iv.priceMicroPerKWh !== null && iv.volumeWh > 0);
  const volumeWh = priced.reduce((a, iv) => a + iv.volumeWh, 0);
  const weighted = priced.reduce((a, iv) => a + (iv.priceMicroPerKWh as number) * iv.volumeWh, 0);
  const prices = priced.map((iv) => iv.priceMicroPerKWh as number);
  return {
    intervals: mine.length,
    intervalsWithPrice: priced.length,
    meanMicroPerKWh: volumeWh === 0 ? null : Math.floor(weighted / volumeWh),
    minMicroPerKWh: prices.length === 0 ? null : Math.min(...prices),
    maxMicroPerKWh: prices.length === 0 ? null : Math.max(...prices),
    volumeWh,
    deliveredWh: mine.reduce((a, iv) => a + iv.deliveredWh, 0),
    utilityMicro: mine.reduce((a, iv) => a + iv.utilityMicro, 0),
    communityMicro: mine.reduce((a, iv) => a + iv.communityMicro, 0),
  };
}
