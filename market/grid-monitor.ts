// Grid-loss detection at the point of common coupling (PCC), as a pure core.
// The shell hands in the PCC meter's readings, the controller's "grid
// available" signal and clock ticks, each with its time; the monitor says
// whether the microgrid stays connected to the utility or islands, when it
// may reconnect, and why (events that become `island` transactions). No
// clock, no I/O: `stepGrid(config, state, input)` returns the next state.
//
// Units, integers only: voltages in deci-volts (0.1 V) per phase, frequency
// in milli-Hz, time in ms since the epoch, per-unit (pu) as parts per
// million of nominal (1 pu = 1,000,000 ppm). A voltage V is compared with a
// limit L ppm exactly as V x 1,000,000 against L x nominal (both below 2^53).
// Frequency limits are offsets from nominal (UF1 = nominal - 1.5 Hz), so the
// IEEE 1547-2018 category II defaults carry from 60 Hz to 50 Hz grids.
//
// Trips (only while connected; each of the 8 settings on its own):
//   - UV trips on the lowest phase strictly below its limit, OV on the
//     highest phase strictly above it, UF/OF on frequency strictly beyond
//     its limit; a value exactly at the limit is inside.
//   - Duration from discrete samples: a good reading stands for the time
//     since the reading before it. So a condition is counted from the last
//     reading at which it was not beyond the limit (the condition may have
//     begun just after it), or, when the run of readings began beyond it,
//     from that run's first reading. It has held for (reading time - that
//     time); it trips at the first reading at which that is >= its clearing
//     time. A reading back inside the limit resets it. With 1 Hz readings a
//     0.16 s setting trips on the first reading beyond, a 10 s setting on
//     the tenth; a clearing time is a most time to trip, so where sampling
//     leaves a doubt the monitor trips early, never waits a sample longer.
//   - A run of readings is broken by a reading that is not good and by a
//     gap longer than stalenessMs; durations never span a break.
//   - Several settings tripping at one reading: the first of TRIP_CODES
//     (the fast, severe ones first) is the reason.
//
// Unknown is unsafe: before the first good reading, after a reading whose
// quality flag is not good (or whose numbers are malformed), and when the
// last good reading is more than stalenessMs old at any input's time (a
// tick finds it without a new reading), the grid is unknown and the
// decision is "islanded", never "connected". The monitor starts islanded
// (reason noReading), so a restarted box reconnects only after a full
// reconnection window.
//
// Reconnection (enter service), only while islanded: the window opens at
// the first good reading inside the reconnection band (every phase within
// [min, max] pu, frequency within [nominal - below, nominal + above], both
// ends included) at which the controller, when configured, last said the
// grid is available. It closes at any reading outside the band, a reading
// not good, staleness, or the controller saying unavailable. The monitor
// reconnects at the first good reading at which the window has been open
// >= reconnectDelayMs (counted from the window's first reading, so never
// sooner than the delay after the last reading outside it). Config
// validation keeps the band inside every trip limit, so a reading inside
// the band never counts towards a trip.
//
// The controller input (only when `controllerInput` is configured; refused
// otherwise): "unavailable" islands at once and closes the window; the
// latest value holds until the next one. Inputs must come in time order:
// an input older than the latest input, or a reading not newer than the
// latest reading, is refused (returned in `refused`, state unchanged).
//
// Events are changes of the decision only: { timeMs, islanded, reason,
// measured }, the fields of ledger/tx.ts's island transaction. `measured`
// is the lowest (UV) or highest (OV) phase in deci-volts, the frequency in
// milli-Hz (UF/OF), the ms since the last good reading (stale), the ms the
// window was open (reconnected); 0 otherwise. It is capped at MEASURED_MAX.
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { assert, assertNever, isSafeUint } from "../ledger/assert.js";
import { ConfigError } from "../ledger/errors.js";
import { TIME_MS_MAX } from "../ledger/tx.js";

export const PPM_PER_PU = 1_000_000;
export const VOLTAGE_DECIV_MAX = 10_000_000; // 1 MV: any PCC a neighbourhood has; x PPM_PER_PU stays below 2^53
export const FREQUENCY_MILLIHZ_MAX = 1_000_000; // 1 kHz
export const PHASES_MAX = 3;
export const CLEARING_MS_MAX = 3_600_000;
/** The island transaction's `measured` is a signed 32-bit integer. */
export const MEASURED_MAX = 2 ** 31 - 1;

/** Checked in this order; the first that trips is the reason. */
export const TRIP_CODES = ["UV2", "OV2", "UF2", "OF2", "UV1", "OV1", "UF1", "OF1"] as const;
export type TripCode = (typeof TRIP_CODES)[number];
export type GridReason = TripCode | "controller" | "noReading" | "stale" | "badQuality" | "reconnected";
export type Decision = "connected" | "islanded";

const Int = (minimum: number, maximum: number, description: string) => Type.Integer({ minimum, maximum, description });
const UnderPpm = (d: string) => Int(0, PPM_PER_PU, `pu x 1,000,000: ${d}`);
const OverPpm = (d: string) => Int(PPM_PER_PU, 3 * PPM_PER_PU, `pu x 1,000,000: ${d}`);
const OffsetMilliHz = (d: string) => Int(0, FREQUENCY_MILLIHZ_MAX, `milli-Hz from nominal: ${d}`);
const ClearingMs = (code: TripCode) => Int(0, CLEARING_MS_MAX, `how long ${code}'s condition must hold before it trips`);

export const GridMonitorConfigSchema = Type.Object(
  {
    nominalVoltageDeciV: Int(1, VOLTAGE_DECIV_MAX, "nominal phase voltage at the PCC, 0.1 V units (1200 = 120 V, 2300 = 230 V)"),
    nominalFrequencyMilliHz: Int(10_000, 500_000, "nominal frequency (60000 or 50000)"),
    uv1Ppm: UnderPpm("UV1 trips below this"),
    uv1ClearingMs: ClearingMs("UV1"),
    uv2Ppm: UnderPpm("UV2 trips below this"),
    uv2ClearingMs: ClearingMs("UV2"),
    ov1Ppm: OverPpm("OV1 trips above this"),
    ov1ClearingMs: ClearingMs("OV1"),
    ov2Ppm: OverPpm("OV2 trips above this"),
    ov2ClearingMs: ClearingMs("OV2"),
    uf1BelowMilliHz: OffsetMilliHz("UF1 trips below nominal minus this"),
    uf1ClearingMs: ClearingMs("UF1"),
    uf2BelowMilliHz: OffsetMilliHz("UF2 trips below nominal minus this"),
    uf2ClearingMs: ClearingMs("UF2"),
    of1AboveMilliHz: OffsetMilliHz("OF1 trips above nominal plus this"),
    of1ClearingMs: ClearingMs("OF1"),
    of2AboveMilliHz: OffsetMilliHz("OF2 trips above nominal plus this"),
    of2ClearingMs: ClearingMs("OF2"),
    reconnectVoltageMinPpm: UnderPpm("lowest phase voltage of the reconnection band"),
    reconnectVoltageMaxPpm: OverPpm("highest phase voltage of the reconnection band"),
    reconnectBelowMilliHz: OffsetMilliHz("the reconnection band's lowest frequency is nominal minus this"),
    reconnectAboveMilliHz: OffsetMilliHz("the reconnection band's highest frequency is nominal plus this"),
    reconnectDelayMs: Int(0, CLEARING_MS_MAX, "how long the grid must stay in the band before reconnecting"),
    stalenessMs: Int(100, 600_000, "a good reading older than this leaves the grid unknown"),
    controllerInput: Type.Boolean({ description: "a controller 'grid available' signal is wired in: reconnect only while it says available; unavailable islands" }),
  },
  { additionalProperties: false },
);

export type GridMonitorConfig = Static<typeof GridMonitorConfigSchema>;
type NumberField = Exclude<keyof GridMonitorConfig, "controllerInput">;

/** IEEE 1547-2018 category II; there is no default nominal voltage or frequency. */
export const GRID_MONITOR_DEFAULTS: Omit<GridMonitorConfig, "nominalVoltageDeciV" | "nominalFrequencyMilliHz"> = {
  uv1Ppm: 700_000, uv1ClearingMs: 10_000,
  uv2Ppm: 450_000, uv2ClearingMs: 160,
  ov1Ppm: 1_100_000, ov1ClearingMs: 2_000,
  ov2Ppm: 1_200_000, ov2ClearingMs: 160,
  uf1BelowMilliHz: 1_500, uf1ClearingMs: 300_000, // 58.5 Hz at 60 Hz
  uf2BelowMilliHz: 3_500, uf2ClearingMs: 160, // 56.5 Hz
  of1AboveMilliHz: 1_200, of1ClearingMs: 300_000, // 61.2 Hz
  of2AboveMilliHz: 2_000, of2ClearingMs: 160, // 62.0 Hz
  reconnectVoltageMinPpm: 917_000, reconnectVoltageMaxPpm: 1_050_000,
  reconnectBelowMilliHz: 500, reconnectAboveMilliHz: 100, // 59.5 to 60.1 Hz
  reconnectDelayMs: 300_000,
  stalenessMs: 3_000,
  controllerInput: false,
};

type TripKind = "UV" | "OV" | "UF" | "OF";
const TRIPS: Readonly<Record<TripCode, { kind: TripKind; limit: NumberField; clearing: NumberField }>> = {
  UV1: { kind: "UV", limit: "uv1Ppm", clearing: "uv1ClearingMs" },
  UV2: { kind: "UV", limit: "uv2Ppm", clearing: "uv2ClearingMs" },
  OV1: { kind: "OV", limit: "ov1Ppm", clearing: "ov1ClearingMs" },
  OV2: { kind: "OV", limit: "ov2Ppm", clearing: "ov2ClearingMs" },
  UF1: { kind: "UF", limit: "uf1BelowMilliHz", clearing: "uf1ClearingMs" },
  UF2: { kind: "UF", limit: "uf2BelowMilliHz", clearing: "uf2ClearingMs" },
  OF1: { kind: "OF", limit: "of1AboveMilliHz", clearing: "of1ClearingMs" },
  OF2: { kind: "OF", limit: "of2AboveMilliHz", clearing: "of2ClearingMs" },
};

/** [a, b, why]: a must not be above b. The last four keep the reconnection band inside every trip limit. */
const NOT_ABOVE: readonly (readonly [NumberField, NumberField, string])[] = [
  ["uv2Ppm", "uv1Ppm", "UV2 is the deeper sag"],
  ["ov1Ppm", "ov2Ppm", "OV2 is the higher swell"],
  ["uf1BelowMilliHz", "uf2BelowMilliHz", "UF2 is the lower frequency"],
  ["of1AboveMilliHz", "of2AboveMilliHz", "OF2 is the higher frequency"],
  ["uv1Ppm", "reconnectVoltageMinPpm", "the reconnection band must lie inside the trip limits"],
  ["reconnectVoltageMaxPpm", "ov1Ppm", "the reconnection band must lie inside the trip limits"],
  ["reconnectBelowMilliHz", "uf1BelowMilliHz", "the reconnection band must lie inside the trip limits"],
  ["reconnectAboveMilliHz", "of1AboveMilliHz", "the reconnection band must lie inside the trip limits"],
];

/**
 * Validate a parsed JSON config. Every field but the two nominal ones may be left out and takes
 * GRID_MONITOR_DEFAULTS. Throws ConfigError naming every wrong field (its JSON path) and why.
 */
export function parseGridMonitorConfig(value: unknown): GridMonitorConfig {
  const given = typeof value === "object" && value !== null && !Array.isArray(value) ? { ...GRID_MONITOR_DEFAULTS, ...value } : value;
  const problems = new Map<string, string>(); // the first problem of each field
  for (const e of Value.Errors(GridMonitorConfigSchema, given)) {
    if (!problems.has(e.path)) problems.set(e.path, `${e.path || "/"}: ${e.message}`);
  }
  if (problems.size > 0) throw new ConfigError("grid monitor config", [...problems.values()]);
  const c = given as GridMonitorConfig;
  const rules: string[] = [];
  for (const [a, b, why] of NOT_ABOVE) {
    if (c[a] > c[b]) rules.push(`/${a}: ${c[a]} is above ${b} (${c[b]}); ${why}`);
  }
  for (const f of ["uf1BelowMilliHz", "uf2BelowMilliHz", "reconnectBelowMilliHz"] as const) {
    if (c[f] >= c.nominalFrequencyMilliHz) rules.push(`/${f}: ${c[f]} is not below nominalFrequencyMilliHz (${c.nominalFrequencyMilliHz})`);
  }
  if (rules.length > 0) throw new ConfigError("grid monitor config", rules);
  return c;
}

export interface PccReading {
  readonly timeMs: number;
  /** One per phase (1 to 3), 0.1 V units. */
  readonly voltagesDeciV: readonly number[];
  readonly frequencyMilliHz: number;
  /** The meter's quality flag; anything but `true` is not good. */
  readonly good: boolean;
}

export type GridInput =
  | { readonly type: "reading"; readonly reading: PccReading }
  | { readonly type: "controller"; readonly timeMs: number; readonly gridAvailable: boolean }
  | { readonly type: "tick"; readonly nowMs: number };

export interface GridEvent {
  readonly timeMs: number;
  readonly islanded: boolean;
  readonly reason: GridReason;
  readonly measured: number;
}

export type RefusalCode = "badTime" | "outOfOrder" | "controllerNotConfigured";
export interface Refusal {
  readonly code: RefusalCode;
  readonly message: string;
}

export interface GridMonitorState {
  readonly decision: Decision;
  /** Why the latest change of decision happened (noReading at the start). */
  readonly reason: GridReason;
  /** The latest accepted input's time. Invariant: never decreases. */
  readonly clockMs: number | null;
  /** The latest accepted reading's time, good or not. Invariant: strictly increases. */
  readonly lastReadingMs: number | null;
  /** The latest good reading of the current run; null: the grid is unknown. */
  readonly lastGoodMs: number | null;
  /** Per setting: the time its condition is counted from; null: not beyond its limit. */
  readonly beyondSinceMs: Readonly<Record<TripCode, number | null>>;
  /** The reconnection window's first reading; null: closed. */
  readonly windowSinceMs: number | null;
  /** The controller's latest word; null: none yet. */
  readonly gridAvailable: boolean | null;
}

export interface GridStep {
  readonly state: GridMonitorState;
  readonly decision: Decision;
  readonly events: readonly GridEvent[];
  readonly refused: Refusal | null;
}

export type GridStatus = "unknown" | "connected" | "abnormal" | "reconnecting";

const NOTHING_BEYOND: Readonly<Record<TripCode, null>> = { UV1: null, UV2: null, OV1: null, OV2: null, UF1: null, UF2: null, OF1: null, OF2: null };

export function initialGridState(): GridMonitorState {
  return { decision: "islanded", reason: "noReading", clockMs: null, lastReadingMs: null, lastGoodMs: null, beyondSinceMs: NOTHING_BEYOND, windowSinceMs: null, gridAvailable: null };
}

/** For display: unknown, connected, islanded on an abnormal grid, or islanded and counting the window. */
export function gridStatus(state: GridMonitorState): GridStatus {
  if (state.decision === "connected") return "connected";
  if (state.lastGoodMs === null) return "unknown";
  return state.windowSinceMs === null ? "abnormal" : "reconnecting";
}

/** The monitor's one step. Never throws on hostile input: a bad time is refused, malformed numbers are a bad reading. */
export function stepGrid(config: GridMonitorConfig, state: GridMonitorState, input: GridInput): GridStep {
  const timeMs = input.type === "reading" ? input.reading.timeMs : input.type === "controller" ? input.timeMs : input.nowMs;
  const refused = refusalOf(config, state, input, timeMs);
  if (refused !== null) return { state, decision: state.decision, events: [], refused };
  const events: GridEvent[] = [];
  let s: GridMonitorState = { ...state, clockMs: timeMs };
  if (s.lastGoodMs !== null && timeMs - s.lastGoodMs > config.stalenessMs) {
    s = island(forget(s), timeMs, "stale", timeMs - s.lastGoodMs, events);
  }
  switch (input.type) {
    case "tick":
      break;
    case "reading":
      s = onReading(config, s, input.reading, events);
      break;
    case "controller":
      s = { ...s, gridAvailable: input.gridAvailable, windowSinceMs: input.gridAvailable ? s.windowSinceMs : null };
      if (!input.gridAvailable) s = island(s, timeMs, "controller", 0, events);
      break;
    default:
      assertNever(input, "grid monitor input");
  }
  checkInvariants(config, s);
  // Invariant: each event flips the decision (a stale island and, with a zero delay, a reconnection can share a step).
  assert(events.every((e, i) => e.islanded === (i === 0 ? state.decision === "connected" : !events[i - 1]?.islanded)), "events are changes of the decision");
  const last = events.at(-1);
  assert(s.decision === (last === undefined ? state.decision : last.islanded ? "islanded" : "connected"), "the decision is the last event's");
  return { state: s, decision: s.decision, events, refused: null };
}

function refusalOf(config: GridMonitorConfig, state: GridMonitorState, input: GridInput, timeMs: number): Refusal | null {
  if (!isSafeUint(timeMs) || timeMs > TIME_MS_MAX) return { code: "badTime", message: `time ${String(timeMs)} is not a whole number of ms from 0 to ${TIME_MS_MAX}` };
  if (state.clockMs !== null && timeMs < state.clockMs) {
    return { code: "outOfOrder", message: `${input.type} at ${timeMs} is older than the latest input (${state.clockMs})` };
  }
  if (input.type === "reading" && state.lastReadingMs !== null && timeMs <= state.lastReadingMs) {
    return { code: "outOfOrder", message: `reading at ${timeMs} is not newer than the latest reading (${state.lastReadingMs})` };
  }
  if (input.type === "controller" && !config.controllerInput) {
    return { code: "controllerNotConfigured", message: "a controller input came, but the config says none is wired in (controllerInput: false)" };
  }
  return null;
}

function onReading(config: GridMonitorConfig, s: GridMonitorState, r: PccReading, events: GridEvent[]): GridMonitorState {
  const t = r.timeMs;
  if (r.good !== true || !wellFormed(r)) return island(forget({ ...s, lastReadingMs: t }), t, "badQuality", 0, events);
  const countFromMs = s.lastGoodMs ?? t; // the reading before this one in the run, or this one if it starts the run
  const beyondSinceMs = { ...NOTHING_BEYOND } as Record<TripCode, number | null>;
  for (const code of TRIP_CODES) beyondSinceMs[code] = isBeyond(config, code, r) ? (s.beyondSinceMs[code] ?? countFromMs) : null;
  const controllerSaysUp = !config.controllerInput || s.gridAvailable === true;
  const windowSinceMs = controllerSaysUp && inBand(config, r) ? (s.windowSinceMs ?? t) : null;
  const next: GridMonitorState = { ...s, lastReadingMs: t, lastGoodMs: t, beyondSinceMs, windowSinceMs };
  const tripped = trippedCode(config, next);
  if (tripped !== null) return island(next, t, tripped, measuredFor(tripped, r), events);
  if (next.decision === "islanded" && windowSinceMs !== null && t - windowSinceMs >= config.reconnectDelayMs) {
    events.push({ timeMs: t, islanded: false, reason: "reconnected", measured: Math.min(t - windowSinceMs, MEASURED_MAX) });
    return { ...next, decision: "connected", reason: "reconnected" };
  }
  return next;
}

/** The first setting whose condition has held for its clearing time at the latest good reading. */
function trippedCode(config: GridMonitorConfig, s: GridMonitorState): TripCode | null {
  assert(s.lastGoodMs !== null, "trips are judged at a good reading");
  for (const code of TRIP_CODES) {
    const since = s.beyondSinceMs[code];
    if (since !== null && s.lastGoodMs - since >= config[TRIPS[code].clearing]) return code;
  }
  return null;
}

/** The grid is unknown: the run is broken, so no duration or window carries across. */
function forget(s: GridMonitorState): GridMonitorState {
  return { ...s, lastGoodMs: null, beyondSinceMs: NOTHING_BEYOND, windowSinceMs: null };
}

function island(s: GridMonitorState, timeMs: number, reason: GridReason, measured: number, events: GridEvent[]): GridMonitorState {
  if (s.decision === "islanded") return s;
  assert(isSafeUint(measured), "measured values are whole and not negative");
  events.push({ timeMs, islanded: true, reason, measured: Math.min(measured, MEASURED_MAX) });
  return { ...s, decision: "islanded", reason };
}

function wellFormed(r: PccReading): boolean {
  const v = r.voltagesDeciV;
  return Array.isArray(v) && v.length >= 1 && v.length <= PHASES_MAX && v.every((x) => isSafeUint(x) && x <= VOLTAGE_DECIV_MAX) && isSafeUint(r.frequencyMilliHz) && r.frequencyMilliHz <= FREQUENCY_MILLIHZ_MAX;
}

function isBeyond(c: GridMonitorConfig, code: TripCode, r: PccReading): boolean {
  const { kind, limit } = TRIPS[code];
  const limitValue = c[limit];
  switch (kind) {
    case "UV":
      return Math.min(...r.voltagesDeciV) * PPM_PER_PU < limitValue * c.nominalVoltageDeciV;
    case "OV":
      return Math.max(...r.voltagesDeciV) * PPM_PER_PU > limitValue * c.nominalVoltageDeciV;
    case "UF":
      return r.frequencyMilliHz < c.nominalFrequencyMilliHz - limitValue;
    case "OF":
      return r.frequencyMilliHz > c.nominalFrequencyMilliHz + limitValue;
    default:
      return assertNever(kind, "trip kind");
  }
}

function measuredFor(code: TripCode, r: PccReading): number {
  const kind = TRIPS[code].kind;
  if (kind === "UV") return Math.min(...r.voltagesDeciV);
  if (kind === "OV") return Math.max(...r.voltagesDeciV);
  return r.frequencyMilliHz;
}

function inBand(c: GridMonitorConfig, r: PccReading): boolean {
  const lowScaled = Math.min(...r.voltagesDeciV) * PPM_PER_PU;
  const highScaled = Math.max(...r.voltagesDeciV) * PPM_PER_PU;
  return (
    lowScaled >= c.reconnectVoltageMinPpm * c.nominalVoltageDeciV &&
    highScaled <= c.reconnectVoltageMaxPpm * c.nominalVoltageDeciV &&
    r.frequencyMilliHz >= c.nominalFrequencyMilliHz - c.reconnectBelowMilliHz &&
    r.frequencyMilliHz <= c.nominalFrequencyMilliHz + c.reconnectAboveMilliHz
  );
}

function checkInvariants(c: GridMonitorConfig, s: GridMonitorState): void {
  if (s.decision !== "connected") return;
  // Invariant: connected only on a known, fresh grid, no setting tripped, the controller (if any) saying available.
  assert(s.lastGoodMs !== null && s.clockMs !== null && s.clockMs - s.lastGoodMs <= c.stalenessMs, "connected on a known, fresh grid");
  assert(trippedCode(c, s) === null, "connected with no trip condition held for its clearing time");
  assert(!c.controllerInput || s.gridAvailable === true, "connected only while the controller says the grid is available");
}
