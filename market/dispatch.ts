// Islanding dispatch (issue 6, point 3): when the utility grid is down, who
// gets power. A pure core, fed once a second by the microgrid controller's
// shell: the premises in the community's priority order, the supply and
// the time in; the target state of every breaker, the commands to send and
// the figures out. No clock, no I/O, integers only (W, ms, permille).
//
// Inputs and the choices made about them:
//   - Premises come in the community's priority order, index 0 first, and
//     every critical premise comes before every non-critical one
//     (`checkDispatchInput` says so; `dispatch` asserts it: the order is
//     the community's vote, and the dispatch never reorders it silently).
//   - Demand: a premise's `demandW` is its meter's reading at `demandAtMs`,
//     taken while its breaker was closed (a meter behind an open breaker
//     reads nothing, so the shell keeps the last reading taken while
//     closed). It is used while 0 <= nowMs - demandAtMs <= demandFreshMs.
//     Otherwise (no reading yet, the meter offline, a premise shed for
//     longer than that, a time stamp ahead of nowMs) the premise's
//     `fallbackDemandW` is used. The shell sets that to the premise's
//     recorded peak demand (where it has history: after an outage,
//     thermostatic loads all start together and the demand comes back near
//     the peak, not at the last reading), else to its breaker's rating (the
//     most it can draw). Never the stale reading: a stale figure is not a
//     conservative one.
//   - Supply = generationW + storageDischargeMaxW: the local generation the
//     island has now, plus what its storage can discharge at most (its
//     inverters' continuous limit, zero when the storage is at its reserve;
//     the shell decides). Both are inputs, both whole watts.
//   - A breaker's read-back (closed, open, unknown) and its switch record
//     `lastSwitch` ({ to, atMs }: what this dispatch last switched it to,
//     and when; null when it has not switched it since the box started).
//     The record is the dispatch's own output, fed back by the shell.
//     Decisions follow the record ("believed" state: the record's `to`;
//     with no record, the read-back, unknown counting as closed), so a
//     flaky read-back can neither skip a min-off time nor cause a switch.
//     The read-back decides accounting and repetition: a breaker that may
//     be drawing (read-back closed or unknown) counts as load, and every
//     breaker whose read-back does not show its target (unknown always)
//     is commanded again (`repeat: true`).
//
// The rule, islanded. Walk the premises in priority order:
//   - a premise believed on stays on ("supplied") while the demand of the
//     prefix up to and including it fits the supply; the first that does
//     not fit is shed ("deficit"), with every premise after it (those on:
//     "deficit"; those already off: "order"). Shedding does not wait for
//     min-on: an overloaded island trips its inverters and goes dark for
//     everyone, critical premises included, so protection beats min-on.
//     The result is the longest prefix that the supply carries: shed from
//     the end, as many as needed, and no more.
//   - the first premise believed off is switched on ("restore") only if
//     (a) its min-off time has passed (held: "minOff"), (b) the headroom,
//     supply - served - the demand of every later premise that may still
//     be drawing (worst case), is at least its demand x (1 + hysteresis):
//     headroomW x 1000 >= demandW x (1000 + hysteresisPermille) (held:
//     "headroom"), and (c) this step's close budget is not used up (held:
//     "closeBudget"). Then the next premise is tried the same way. The
//     first that is held stops the walk: everything after it is off
//     ("order"), those on opened now, so the order is kept.
//   - the close budget: at most closesPerStepMax breakers are closed in one
//     step, so inrush (motors, compressors, power supplies charging) does
//     not collapse the island. A premise believed on whose read-back does
//     not show closed counts against it, wherever it stands in the order,
//     because its repeated close may really close it now; it is never held
//     back (it was counted when it was first sent). So the premises
//     switched on in a step are at most closesPerStepMax less those.
//   - when even premise 0 does not fit, it is shed and so is everything:
//     nothing can carry it (keeping it on would overload the island and
//     black it out anyway). The figures say so: criticalServedW is 0 of
//     criticalDemandW. The priority is strict: a premise that does not fit
//     is not skipped for a smaller one after it (that would break the
//     order invariant below; a community that wants small sites powered
//     when a large one cannot be must vote them ahead of it).
// Connected to the utility every breaker should be closed: each premise
// believed off closes ("gridUp") once its min-off time has passed, in
// priority order within the same close budget (a whole neighbourhood's
// cold-load pickup at once can trip the feeder's protection too; the
// stagger costs seconds); nothing is opened. The first premise still
// waiting (min-off, budget) holds every one behind it ("order"), so after
// an outage no household is back before a critical site that is waiting
// out its min-off time (found by the outage simulation, sim/outage.ts).
//
// Invariants (property tested in test/market/dispatch.test.ts):
//   I1 islanded, the premises targeted closed are a prefix of the priority
//      order; hence, critical premises coming first, a critical premise is
//      never targeted open while any non-critical premise is targeted
//      closed.
//   I2 islanded, servedW <= supplyW, always, with no exception: a premise
//      whose demand does not fit is shed even when it is premise 0 and
//      critical (see above).
//   I3 every switch to closed comes at least minOffMs after the premise's
//      last switch to open (none needed when there is no record).
//   I4 in a step that switches anything to closed, at most
//      closesPerStepMax breakers are commanded or switched closed.
//   I5 same inputs, same outputs; the input is never mutated.
// The targets assume commands are obeyed: a breaker that does not open
// when told is commanded again each second and its demand shows in
// unconfirmedW and blocks any restoration behind it, but it does not shed
// more of the prefix (a read-back lost for a second must not cost a
// shelter its min-off time); a breaker stuck closed is the switchgear
// layer's alarm (SwitchError), not the dispatch's.
//
// Chatter bound. Every switch to closed waits minOffMs since the switch to
// open before it (I3), and the switches of one breaker alternate, so in
// any window of H ms a breaker switches at most 2 x ceil(H / (minOffMs +
// stepMs)) times, stepMs being the least gap between two steps (1,000 when
// fed once a second; the bound holds with stepMs = 1 for any steps at
// increasing times). Fed once a second with minOffMs = 300,000 that is 24
// switches an hour; with 60,000, 120. Hysteresis gives the stronger bound
// where the wobble is small: with demands holding still, switching
// premise j off and on again needs the supply to move by more than
// demand_j x hysteresisPermille / 1000 (off below P_j, the demand of the
// prefix to j; on again only at P_j + demand_j x h / 1000 or more), so a
// supply that stays in a band of width B with 1000 x B <= demand_i x
// hysteresisPermille for every premise i up to j switches j at most once.
// Min-on gives no bound: every open under this rule is forced (a deficit,
// or the order behind a premise that is off), and forced opens beat it.
// minOnMs is kept so that such an open is marked `overridesMinOn` in its
// command (and so in the `switch` transaction: "shed 4 s after it was
// restored"), and as the guard for any future open that is not forced
// (rotating load shedding, which this core does not do).
//
// Commands come in the order the shell must carry them out: every open
// before any close (free the supply before loading it), opens from the
// lowest priority up, closes from the highest priority down.
//
// Limits: at most premisesMax premises, every watt figure at most
// powerMaxW, the hysteresis at most hysteresisPermilleMax; input beyond
// them is refused by checkDispatchInput / checkDispatchParams (the shell
// checks its configuration with them; dispatch asserts). Every sum and
// product then stays a safe integer: a sum of demands <= 10^4 x 10^9 =
// 10^13; headroom x 1000 is formed only for 0 <= headroom <= supply <=
// 2 x 10^9; demand x (1000 + hysteresis) <= 10^9 x 11,000 < 2^53.
import { assert, isSafeUint } from "../ledger/assert.js";

export const premisesMax = 10_000;
export const powerMaxW = 1_000_000_000; // 1 GW: far above any neighbourhood
export const hysteresisPermilleMax = 10_000; // 10 x the demand

export type BreakerReadBack = "closed" | "open" | "unknown";
export type BreakerTarget = "closed" | "open";

export const DispatchReason = {
  /** Closed: islanded, the supply carries the prefix up to it. */
  supplied: "supplied",
  /** Closed: islanded, switched on this step (headroom with hysteresis, min-off passed, within the close budget). */
  restore: "restore",
  /** Closed: connected to the utility. */
  gridUp: "gridUp",
  /** Open: islanded, the supply cannot carry the prefix up to it (shed now, or on behind the first that is shed). */
  deficit: "deficit",
  /** Open: islanded, the first premise off, and the headroom is below its demand x (1 + hysteresis). */
  headroom: "headroom",
  /** Open: off for less than minOffMs. */
  minOff: "minOff",
  /** Open: this step's closes are used up. */
  closeBudget: "closeBudget",
  /** Open: islanded, a premise ahead of it in the order is off. */
  order: "order",
} as const;
export type DispatchReason = (typeof DispatchReason)[keyof typeof DispatchReason];

export interface DispatchParams {
  /** A premise is switched on only if the headroom is at least its demand x (1000 + this) / 1000. */
  readonly hysteresisPermille: number;
  /** Reported only (see the header): an open before this is marked overridesMinOn. */
  readonly minOnMs: number;
  /** A premise switched off stays off at least this long. */
  readonly minOffMs: number;
  /** At most this many breakers closed per step (inrush). At least 1. */
  readonly closesPerStepMax: number;
  /** A demand reading older than this is stale: the fallback is used. */
  readonly demandFreshMs: number;
}

export interface SwitchRecord {
  readonly to: BreakerTarget;
  readonly atMs: number;
}

export interface PremiseInput {
  /** The member's index number. */
  readonly id: number;
  readonly critical: boolean;
  /** The last reading taken while its breaker was closed. */
  readonly demandW: number;
  /** When that reading was taken; null: none yet. */
  readonly demandAtMs: number | null;
  /** Used when the reading is stale or missing: its recorded peak, else its breaker's rating. */
  readonly fallbackDemandW: number;
  readonly breaker: BreakerReadBack;
  /** What this dispatch last switched it to, and when (null: not since the box started). Fed back from the last step. */
  readonly lastSwitch: SwitchRecord | null;
}

export interface DispatchInput {
  readonly nowMs: number;
  readonly islanded: boolean;
  readonly generationW: number;
  readonly storageDischargeMaxW: number;
  /** In the community's priority order, index 0 first, critical premises first. */
  readonly premises: readonly PremiseInput[];
}

export interface PremiseTarget {
  readonly id: number;
  readonly target: BreakerTarget;
  readonly reason: DispatchReason;
  /** The demand the dispatch accounted for it: the fresh reading or the fallback. */
  readonly demandW: number;
  /** Feed back as the premise's lastSwitch next step. */
  readonly lastSwitch: SwitchRecord | null;
}

export interface DispatchCommand {
  readonly id: number;
  readonly action: "close" | "open";
  readonly reason: DispatchReason;
  /** True: not a switch, the same target again because the read-back does not show it. */
  readonly repeat: boolean;
  /** True: an open of a premise switched on less than minOnMs ago (protection or the order beat min-on). */
  readonly overridesMinOn: boolean;
}

export interface DispatchFigures {
  readonly supplyW: number;
  /** Demand of the premises targeted closed. */
  readonly servedW: number;
  /** Demand of the premises targeted open. */
  readonly shedW: number;
  readonly criticalServedW: number;
  readonly criticalDemandW: number;
  /** floor(criticalServedW x 1000 / criticalDemandW); 1000 when there is no critical demand. */
  readonly criticalCoveragePermille: number;
  /** Demand of the premises targeted open whose read-back is not open: load that may still be drawn. */
  readonly unconfirmedW: number;
}

export interface DispatchStep {
  readonly targets: readonly PremiseTarget[];
  readonly commands: readonly DispatchCommand[];
  readonly figures: DispatchFigures;
}

export function checkDispatchParams(p: DispatchParams): string[] {
  const problems: string[] = [];
  for (const k of ["hysteresisPermille", "minOnMs", "minOffMs", "closesPerStepMax", "demandFreshMs"] as const) {
    if (!isSafeUint(p[k])) problems.push(`${k}: a whole number, at least 0`);
  }
  if (isSafeUint(p.hysteresisPermille) && p.hysteresisPermille > hysteresisPermilleMax) problems.push(`hysteresisPermille: at most ${hysteresisPermilleMax}`);
  if (isSafeUint(p.closesPerStepMax) && (p.closesPerStepMax < 1 || p.closesPerStepMax > premisesMax)) problems.push(`closesPerStepMax: from 1 to ${premisesMax}`);
  return problems;
}

function isWatts(n: unknown): boolean {
  return isSafeUint(n) && n <= powerMaxW;
}

function checkPremise(p: PremiseInput, at: string, problems: string[]): void {
  if (!isSafeUint(p.id)) problems.push(`${at}.id: a whole number, at least 0`);
  if (typeof p.critical !== "boolean") problems.push(`${at}.critical: true or false`);
  if (!isWatts(p.demandW)) problems.push(`${at}.demandW: whole watts from 0 to ${powerMaxW}`);
  if (p.demandAtMs !== null && !isSafeUint(p.demandAtMs)) problems.push(`${at}.demandAtMs: null or a whole number of ms`);
  if (!isWatts(p.fallbackDemandW)) problems.push(`${at}.fallbackDemandW: whole watts from 0 to ${powerMaxW}`);
  if (p.breaker !== "closed" && p.breaker !== "open" && p.breaker !== "unknown") problems.push(`${at}.breaker: closed, open or unknown`);
  const s = p.lastSwitch;
  if (s !== null && ((s.to !== "closed" && s.to !== "open") || !isSafeUint(s.atMs))) problems.push(`${at}.lastSwitch: null or { to: closed or open, atMs: a whole number }`);
}

export function checkDispatchInput(input: DispatchInput): string[] {
  const problems: string[] = [];
  if (!isSafeUint(input.nowMs)) problems.push("nowMs: a whole number, at least 0");
  if (typeof input.islanded !== "boolean") problems.push("islanded: true or false");
  if (!isWatts(input.generationW)) problems.push(`generationW: whole watts from 0 to ${powerMaxW}`);
  if (!isWatts(input.storageDischargeMaxW)) problems.push(`storageDischargeMaxW: whole watts from 0 to ${powerMaxW}`);
  if (input.premises.length > premisesMax) problems.push(`premises: at most ${premisesMax}`);
  const ids = new Set<number>();
  let nonCriticalSeen = false;
  input.premises.forEach((p, i) => {
    checkPremise(p, `premises[${i}]`, problems);
    if (ids.has(p.id)) problems.push(`premises[${i}].id: ${p.id} appears twice`);
    ids.add(p.id);
    if (p.critical && nonCriticalSeen) problems.push(`premises[${i}]: critical, after a non-critical premise (critical premises come first)`);
    nonCriticalSeen ||= !p.critical;
  });
  return problems;
}

/** One premise as the rule sees it this step. */
interface View {
  readonly p: PremiseInput;
  readonly demandW: number;
  readonly believedOn: boolean;
  /** Believed on, or the read-back says it may be drawing. */
  readonly mayDrawW: number;
  readonly minOffPassed: boolean;
}

function viewOf(p: PremiseInput, nowMs: number, params: DispatchParams): View {
  const ageMs = p.demandAtMs === null ? -1 : nowMs - p.demandAtMs;
  const demandW = ageMs >= 0 && ageMs <= params.demandFreshMs ? p.demandW : p.fallbackDemandW;
  const believedOn = p.lastSwitch !== null ? p.lastSwitch.to === "closed" : p.breaker !== "open";
  const mayDraw = believedOn || p.breaker !== "open";
  // A clock that steps back holds the premise off until it passes again: the safe side.
  const minOffPassed = p.lastSwitch === null || nowMs - p.lastSwitch.atMs >= params.minOffMs;
  return { p, demandW, believedOn, mayDrawW: mayDraw ? demandW : 0, minOffPassed };
}

interface Decision {
  readonly target: BreakerTarget;
  readonly reason: DispatchReason;
}

/**
 * How many premises this step may switch on: the close budget less the
 * premises believed on whose read-back does not show closed (their close is
 * repeated, and may really close them now; counted wherever they stand, so
 * that a repeat behind a switch cannot exceed the budget).
 */
function switchOnBudget(views: readonly View[], params: DispatchParams): number {
  const repeats = views.filter((v) => v.believedOn && v.p.breaker !== "closed").length;
  return Math.max(0, params.closesPerStepMax - repeats);
}

function planIsland(views: readonly View[], supplyW: number, params: DispatchParams): Decision[] {
  const out: Decision[] = [];
  let servedW = 0;
  let switchOnsLeft = switchOnBudget(views, params);
  let laterMayDrawW = views.reduce((sum, v) => sum + v.mayDrawW, 0);
  for (const v of views) {
    laterMayDrawW -= v.mayDrawW; // now: the premises after v
    let held: DispatchReason | null = null;
    if (v.believedOn) {
      if (servedW + v.demandW > supplyW) held = DispatchReason.deficit;
    } else if (!v.minOffPassed) held = DispatchReason.minOff;
    else if (!headroomAllows(supplyW - servedW - laterMayDrawW, v.demandW, params.hysteresisPermille)) held = DispatchReason.headroom;
    else if (switchOnsLeft === 0) held = DispatchReason.closeBudget;
    if (held !== null) return stopAt(out, views, held);
    servedW += v.demandW;
    if (!v.believedOn) switchOnsLeft -= 1;
    out.push({ target: "closed", reason: v.believedOn ? DispatchReason.supplied : DispatchReason.restore });
  }
  return out;
}

/** headroomW x 1000 >= demandW x (1000 + hysteresisPermille), compared only once 0 <= headroomW. */
function headroomAllows(headroomW: number, demandW: number, hysteresisPermille: number): boolean {
  if (headroomW < 0) return false;
  return headroomW * 1000 >= demandW * (1000 + hysteresisPermille);
}

/** The walk stopped at premise out.length for `reason`: it and everything after it open. */
function stopAt(out: Decision[], views: readonly View[], reason: DispatchReason): Decision[] {
  const first = out.length;
  out.push({ target: "open", reason });
  for (let i = first + 1; i < views.length; i++) {
    const on = (views[i] as View).believedOn;
    out.push({ target: "open", reason: reason === DispatchReason.deficit && on ? DispatchReason.deficit : DispatchReason.order });
  }
  return out;
}

function planConnected(views: readonly View[], params: DispatchParams): Decision[] {
  let switchOnsLeft = switchOnBudget(views, params);
  let held = false; // a premise ahead is waiting (min-off, close budget): none behind it closes before it
  return views.map((v): Decision => {
    if (v.believedOn) return { target: "closed", reason: DispatchReason.gridUp };
    if (held) return { target: "open", reason: DispatchReason.order };
    held = true;
    if (!v.minOffPassed) return { target: "open", reason: DispatchReason.minOff };
    if (switchOnsLeft === 0) return { target: "open", reason: DispatchReason.closeBudget };
    switchOnsLeft -= 1;
    held = false;
    return { target: "closed", reason: DispatchReason.gridUp };
  });
}

/** The premise's switch record after this step: a new one when the target differs from what it is believed to be. */
function recordAfter(v: View, target: BreakerTarget, nowMs: number): SwitchRecord | null {
  return v.believedOn === (target === "closed") ? v.p.lastSwitch : { to: target, atMs: nowMs };
}

function commandFor(v: View, d: Decision, nowMs: number, params: DispatchParams): DispatchCommand | null {
  if (v.p.breaker === d.target) return null;
  const repeat = v.believedOn === (d.target === "closed");
  const s = v.p.lastSwitch;
  const overridesMinOn = d.target === "open" && !repeat && s !== null && s.to === "closed" && nowMs - s.atMs < params.minOnMs;
  return { id: v.p.id, action: d.target === "closed" ? "close" : "open", reason: d.reason, repeat, overridesMinOn };
}

function figuresOf(views: readonly View[], decisions: readonly Decision[], supplyW: number): DispatchFigures {
  let servedW = 0, shedW = 0, criticalServedW = 0, criticalDemandW = 0, unconfirmedW = 0;
  views.forEach((v, i) => {
    const closed = (decisions[i] as Decision).target === "closed";
    if (closed) servedW += v.demandW;
    else shedW += v.demandW;
    if (!closed && v.p.breaker !== "open") unconfirmedW += v.demandW;
    if (v.p.critical) {
      criticalDemandW += v.demandW;
      if (closed) criticalServedW += v.demandW;
    }
  });
  const criticalCoveragePermille = criticalDemandW === 0 ? 1000 : Math.floor((criticalServedW * 1000) / criticalDemandW);
  return { supplyW, servedW, shedW, criticalServedW, criticalDemandW, criticalCoveragePermille, unconfirmedW };
}

/** One step of the dispatch: see the header for the rule. Throws (an assertion) on input that checkDispatchInput refuses. */
export function dispatch(params: DispatchParams, input: DispatchInput): DispatchStep {
  assert(checkDispatchParams(params).length === 0, `dispatch params: ${checkDispatchParams(params).join("; ")}`);
  assert(checkDispatchInput(input).length === 0, `dispatch input: ${checkDispatchInput(input).join("; ")}`);
  const views = input.premises.map((p) => viewOf(p, input.nowMs, params));
  const supplyW = input.generationW + input.storageDischargeMaxW;
  const decisions = input.islanded ? planIsland(views, supplyW, params) : planConnected(views, params);
  assert(decisions.length === views.length, "a decision per premise");
  const targets = views.map((v, i): PremiseTarget => {
    const d = decisions[i] as Decision;
    return { id: v.p.id, target: d.target, reason: d.reason, demandW: v.demandW, lastSwitch: recordAfter(v, d.target, input.nowMs) };
  });
  const commands: DispatchCommand[] = [];
  views.forEach((v, i) => {
    const c = commandFor(v, decisions[i] as Decision, input.nowMs, params);
    if (c !== null) commands.push(c);
  });
  const opens = commands.filter((c) => c.action === "open").reverse(); // lowest priority first
  const closes = commands.filter((c) => c.action === "close");
  const figures = figuresOf(views, decisions, supplyW);
  if (input.islanded) {
    assert(figures.servedW <= supplyW, "I2: islanded, served within supply");
    const closedCount = targets.filter((t) => t.target === "closed").length;
    assert(targets.every((t, i) => (t.target === "closed") === i < closedCount), "I1: islanded, the closed premises are a prefix");
  }
  return { targets, commands: [...opens, ...closes], figures };
}
