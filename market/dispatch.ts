// Islanding dispatch (issue 6, point 3): when the utility grid is down, who
// gets power. A pure core, fed once a second by the microgrid controller's
// shell: the premises in the community's priority order, the supply and
// the time in; the target state of every breaker, the commands to send and
// the figures out. No clock, no I/O, integers only (W, Wh, ms, permille).
//
// Inputs and the choices made about them:
//   - Premises come in the community's priority order, index 0 first, and
//     every critical premise comes before every non-critical one
//     (`checkDispatchInput` says so; `dispatch` asserts it: the order is
//     the community's vote, and the dispatch never reorders it silently).
//   - Readings. A premise's `demandW` and `generationW` are its import and
//     its export power in the last reading of its meter taken while its
//     breaker was closed, at `readingAtMs` (one meter at its connection
//     reads net power, so at most one of them is non-zero; with several
//     meters, their sums). A meter behind an open breaker reads nothing, so
//     the shell keeps the last reading taken while closed. A reading is
//     used while 0 <= nowMs - readingAtMs <= demandFreshMs. Otherwise (no
//     reading yet, the meter offline, a premise shed for longer than that,
//     a time stamp ahead of nowMs) the demand is the premise's
//     `fallbackDemandW` and the generation 0. The shell sets the fallback to
//     the premise's recorded peak demand (where it has history: after an
//     outage, thermostatic loads all start together and the demand comes
//     back near the peak, not at the last reading), else to its breaker's
//     rating (the most it can draw). Never the stale reading: a stale
//     figure is not a conservative one; and never assumed generation.
//   - A premise's own generation sits behind its breaker: shedding the
//     premise sheds its export. It is counted (the premise's "accounted
//     generation") only for a premise believed on (below) whose read-back
//     is not open, with a fresh reading. Not for a premise believed off,
//     which is switched on on its demand alone: once closed, its inverters
//     wait out their reconnection delay (IEEE 1547-2018's enter-service
//     delay, 300 s by default) before they export again. Not for one whose
//     read-back shows open though it is believed on (a close that did not
//     take, a trip): its export is not on the island. An unknown read-back
//     keeps it while the reading is fresh: a fresh export reading is itself
//     evidence that the breaker is closed, and a read-back lost for a
//     second must not shed the neighbours that export carries; the
//     freshness limit bounds how long a reading stands in for a breaker
//     nobody can see. For the same reason a premise believed off whose
//     fresh reading shows export is accounted at its fallback demand: its
//     net reading says nothing of the load its PV was covering, and that
//     PV will not be there when it closes. (A prosumer whose reading shows
//     import also draws more than it when its PV waits; a shell with
//     minOffMs > demandFreshMs, as the outage simulation requires, never
//     switches a premise on on a fresh reading, only on its fallback.)
//   - Supply besides the premises' own generation: `unswitchedGenerationW`,
//     the generation behind no dispatched breaker (a community array, a
//     metered member the dispatch does not switch), and the storage in two
//     tiers: `storageOpenW`, discharge any premise may use, and
//     `storageReserveW`, discharge only critical premises may use (the
//     reserve the community keeps for them). The shell sets the tiers;
//     `storageTiers` below is the policy both shells use (daemon/
//     controller.ts, sim/outage.ts). All whole watts.
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
// Net demand and fit. A premise's net demand is its demand less its
// accounted generation, negative for a premise that exports; the net
// demand of a prefix of the order is the sum over it. A prefix fits when
// its net demand is at most unswitchedGenerationW + storageOpenW, plus
// storageReserveW when every premise in it is critical. The reserve goes
// only with an all-critical prefix because the battery discharges
// whatever the island's net demand needs: with any household on, its
// discharge stays within the open tier only if the whole prefix's net
// demand does. Critical premises come first, so the prefixes that may use
// the reserve are exactly the shorter ones, and the prefix rule holds.
// Net demand is not monotonic along the order (an exporter lowers it), so
// the fit is of the whole prefix, not of each premise as the walk reaches
// it: a household ahead of an exporter may fit only with the export
// behind it, and cutting at the first prefix that does not fit would shed
// the exporter too, with the supply that carried it.
//
// The rule, islanded. Two passes:
//   1. Walk the premises in priority order. A premise believed on is kept
//      (for now). A premise believed off is switched on ("restore") only if
//      (a) its min-off time has passed (held: "minOff"), (b) the headroom
//      is at least its demand x (1 + hysteresis): headroomW x 1000 >=
//      demandW x (1000 + hysteresisPermille) (held: "headroom"), and (c)
//      this step's close budget is not used up (held: "closeBudget"). The
//      headroom is the supply it may use (the reserve tier included only
//      for a critical premise) less the net demand of the walk ahead of it
//      (premises kept count net: they are on and their readings say so;
//      premises switched on this step, their demand) less the demand of
//      every later premise that may still be drawing (worst case, and
//      demand, not net: their generation is behind a breaker this step may
//      be opening, and is never assumed). The first premise held stops the
//      walk: it and everything after it are off ("order" behind it, those
//      on opened now, so the order is kept).
//   2. The premises closed are the longest prefix of the walk (up to where
//      it stopped) that fits. Those kept in pass 1 beyond it are shed
//      ("deficit"), everything else beyond it is "order". A premise
//      switched on in pass 1 is never shed in pass 2: its headroom check
//      implies that the prefix through it fits (its demand x (1 + h) >=
//      its demand, later draws >= 0, its generation counted 0). So a
//      deficit sheds from the end, as many as needed and no more: every
//      longer prefix of the walk does not fit. Shedding does not wait for
//      min-on: an overloaded island trips its inverters and goes dark for
//      everyone, critical premises included, so protection beats min-on.
//   - the close budget: at most closesPerStepMax breakers are closed in one
//     step, so inrush (motors, compressors, power supplies charging) does
//     not collapse the island. A premise believed on whose read-back does
//     not show closed counts against it, wherever it stands in the order,
//     because its repeated close may really close it now; it is never held
//     back (it was counted when it was first sent). So the premises
//     switched on in a step are at most closesPerStepMax less those.
//   - when no prefix but the empty one fits, everything is shed: nothing
//     can carry premise 0 (keeping it on would overload the island and
//     black it out anyway). The figures say so: criticalServedW is 0 of
//     criticalDemandW, criticalOpenCount all of them. The priority is
//     strict: a premise that does not fit is not skipped for a smaller one
//     after it (that would break the order invariant below; a community
//     that wants small sites powered when a large one cannot be must vote
//     them ahead of it).
// Connected to the utility every breaker should be closed: each premise
// believed off closes ("gridUp") once its min-off time has passed, in
// priority order within the same close budget (a whole neighbourhood's
// cold-load pickup at once can trip the feeder's protection too; the
// stagger costs seconds); nothing is opened. The first premise still
// waiting (min-off, budget) holds every one behind it ("order"), so after
// an outage no household is back before a critical site that is waiting
// out its min-off time (found by the outage simulation, sim/outage.ts).
//
// Figures. servedW and shedW are the accounted demand (import) of the
// premises targeted closed and open; generationW the accounted generation
// of those targeted closed; supplyW what those may draw: unswitched
// generation + the open tier + the reserve tier when none of them is
// non-critical + generationW. A prosumer's consumption met by its own PV
// is behind its meter and in no figure (so shedding an exporting
// prosumer sheds 0 W of accounted demand though its house goes dark).
// criticalServedW, criticalDemandW and criticalCoveragePermille are the
// same accounted demand over the critical premises, so a critical site
// whose reading shows export counts 0 W either way: criticalOpenCount
// (critical premises targeted open) says whether every critical site is
// on. unconfirmedW: the demand of premises targeted open whose read-back
// is not open.
//
// Invariants (property tested in test/market/dispatch.test.ts):
//   I1 islanded, the premises targeted closed are a prefix of the priority
//      order; hence, critical premises coming first, a critical premise is
//      never targeted open while any non-critical premise is targeted
//      closed.
//   I2 islanded, servedW <= supplyW, always, with no exception: the demand
//      of the premises targeted closed is at most unswitchedGenerationW +
//      storageOpenW + (storageReserveW when none of them is non-critical)
//      + the accounted generation of the premises targeted closed. A
//      premise whose net demand does not fit is shed even when it is
//      premise 0 and critical (see above).
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
// layer's alarm (SwitchError), not the dispatch's. I2 is about accounted
// figures: a reading that is fresh but no longer true (a cloud since the
// last reading; at most demandFreshMs old) is the shell's freshness
// choice, as for demand.
//
// Chatter bound. Every switch to closed waits minOffMs since the switch to
// open before it (I3), and the switches of one breaker alternate, so in
// any window of H ms a breaker switches at most 2 x ceil(H / (minOffMs +
// stepMs)) times, stepMs being the least gap between two steps (1,000 when
// fed once a second; the bound holds with stepMs = 1 for any steps at
// increasing times). Fed once a second with minOffMs = 300,000 that is 24
// switches an hour; with 60,000, 120. Hysteresis gives the stronger bound
// where the wobble is small. With every premise's readings holding still
// and fresh, let S be the supply besides the premises' own generation
// (with the reserve tier when premise j is critical) and N_j the net
// demand of the premises ahead of j (they stay on while j switches: by
// induction along the order, one that switched would have taken j with
// it for good). j is shed only when no prefix through it fits, so S <
// N_j + demand_j - generation_j; it comes back only when S >= N_j +
// demand_j x (1 + h / 1000). So switching j off and on again, or on and
// off again, needs S to move by more than demand_j x h / 1000 +
// generation_j, and a supply that stays in a band of width B with 1000 x
// B <= demand_i x hysteresisPermille + 1000 x generation_i for every
// premise i switches each breaker at most once.
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
// powerMaxW, every Wh figure at most energyMaxWh, the hysteresis at most
// hysteresisPermilleMax; input beyond them is refused by
// checkDispatchInput / checkDispatchParams (the shell checks its
// configuration with them; dispatch asserts). Every sum and product then
// stays a safe integer: a sum of demands or of generation <= 10^4 x 10^9
// = 10^13, so a net demand is within +-10^13; headroom x 1000 is formed
// only for 0 <= headroom < headroomAlwaysW (1.1 x 10^10, above any demand
// x (1 + h)), so < 1.1 x 10^13; demand x (1000 + hysteresis) <= 10^9 x
// 11,000 < 2^53; in storageTiers, Wh x 3,600,000 <= 3.6 x 10^15 < 2^53.
import { assert, isSafeUint } from "../ledger/assert.js";

export const premisesMax = 10_000;
export const powerMaxW = 1_000_000_000; // 1 GW: far above any neighbourhood
export const energyMaxWh = 1_000_000_000; // 1 GWh: far above any community battery
export const hysteresisPermilleMax = 10_000; // 10 x the demand
/** Any headroom at least this carries any demand x (1 + hysteresis): powerMaxW x (1000 + hysteresisPermilleMax) / 1000. */
const headroomAlwaysW = (powerMaxW / 1_000) * (1_000 + hysteresisPermilleMax);

export type BreakerReadBack = "closed" | "open" | "unknown";
export type BreakerTarget = "closed" | "open";

export const DispatchReason = {
  /** Closed: islanded, on, in the longest prefix that fits. */
  supplied: "supplied",
  /** Closed: islanded, switched on this step (headroom with hysteresis, min-off passed, within the close budget). */
  restore: "restore",
  /** Closed: connected to the utility. */
  gridUp: "gridUp",
  /** Open: islanded, on, beyond the longest prefix that fits (shed now, or on behind the first that is shed). */
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
  /** A reading older than this is stale: the fallback demand and no generation are used. */
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
  /** Import power in the last reading taken while its breaker was closed. */
  readonly demandW: number;
  /** Export power in that reading: its own generation beyond its own load, behind its breaker. */
  readonly generationW: number;
  /** When that reading was taken; null: none yet. */
  readonly readingAtMs: number | null;
  /** Used when the reading is stale or missing: its recorded peak, else its breaker's rating. */
  readonly fallbackDemandW: number;
  readonly breaker: BreakerReadBack;
  /** What this dispatch last switched it to, and when (null: not since the box started). Fed back from the last step. */
  readonly lastSwitch: SwitchRecord | null;
}

export interface DispatchInput {
  readonly nowMs: number;
  readonly islanded: boolean;
  /** Generation behind none of the dispatched breakers, W. */
  readonly unswitchedGenerationW: number;
  /** Storage discharge every premise may use, W. */
  readonly storageOpenW: number;
  /** Storage discharge only critical premises may use (the reserve tier), W. */
  readonly storageReserveW: number;
  /** In the community's priority order, index 0 first, critical premises first. */
  readonly premises: readonly PremiseInput[];
}

export interface PremiseTarget {
  readonly id: number;
  readonly target: BreakerTarget;
  readonly reason: DispatchReason;
  /** The demand the dispatch accounted for it: the fresh reading or the fallback. */
  readonly demandW: number;
  /** The generation the dispatch accounted for it (see the header: 0 unless on, fresh, read-back not open). */
  readonly generationW: number;
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

/** See the header's "Figures". All whole numbers (the HTTP API serves them as such). */
export interface DispatchFigures {
  /** What the premises targeted closed may draw: unswitched generation + open tier (+ reserve tier when all of them are critical) + generationW. */
  readonly supplyW: number;
  /** Accounted generation of the premises targeted closed. */
  readonly generationW: number;
  /** Accounted demand of the premises targeted closed. */
  readonly servedW: number;
  /** Accounted demand of the premises targeted open. */
  readonly shedW: number;
  readonly criticalServedW: number;
  readonly criticalDemandW: number;
  /** floor(criticalServedW x 1000 / criticalDemandW); 1000 when there is no critical demand. */
  readonly criticalCoveragePermille: number;
  /** Critical premises targeted open, whatever their demand. */
  readonly criticalOpenCount: number;
  /** Demand of the premises targeted open whose read-back is not open: load that may still be drawn. */
  readonly unconfirmedW: number;
}

export interface DispatchStep {
  readonly targets: readonly PremiseTarget[];
  readonly commands: readonly DispatchCommand[];
  readonly figures: DispatchFigures;
}

// ---- Storage tiers ----------------------------------------------------------

/** A battery as the shell offers it to the dispatch. */
export interface StoragePolicy {
  /** Its inverters' continuous discharge limit, W. */
  readonly dischargeMaxW: number;
  /** The charge kept for the critical premises, Wh. */
  readonly reserveWh: number;
}

export interface StorageTiers {
  readonly openW: number;
  readonly reserveW: number;
}

/** The open tier is at most what would bring the charge down to the reserve in this long (one market interval). */
export const storageOpenSustainMs = 900_000;
const MS_PER_HOUR = 3_600_000;
/** A step's length for "what the battery holds": the shells step once a second. */
const STEP_MS = 1_000;

/**
 * The storage tiers for a battery holding `socWh` (null: unknown). The open
 * tier only above the reserve, and at most the energy above it spread over
 * storageOpenSustainMs: so the open tier tapers as the charge nears the
 * reserve, households are shed a few at a time from the end of the order
 * rather than all at once, and a battery that PV recharges around the
 * reserve does not switch its open tier fully on and off each second. The
 * reserve tier is the rest of the discharge limit. Together they never
 * exceed what the battery holds for one step (STEP_MS). An unknown charge
 * offers the reserve tier only: the critical premises keep the battery (an
 * empty one cuts out by itself), households do not get it on a charge
 * nobody can see.
 */
export function storageTiers(policy: StoragePolicy, socWh: number | null): StorageTiers {
  assert(isWatts(policy.dischargeMaxW) && isWattHours(policy.reserveWh), "storage policy: whole W and Wh within the limits");
  assert(socWh === null || isWattHours(socWh), "state of charge: whole Wh within the limit");
  if (socWh === null) return { openW: 0, reserveW: policy.dischargeMaxW };
  const holdsW = Math.min(policy.dischargeMaxW, Math.floor((socWh * MS_PER_HOUR) / STEP_MS));
  const aboveWh = Math.max(0, socWh - policy.reserveWh);
  const openW = Math.min(holdsW, Math.floor((aboveWh * MS_PER_HOUR) / storageOpenSustainMs));
  const tiers = { openW, reserveW: holdsW - openW };
  assert(tiers.reserveW >= 0 && tiers.openW + tiers.reserveW <= policy.dischargeMaxW, "tiers within the discharge limit");
  return tiers;
}

// ---- Checks -------------------------------------------------------------------

export function checkDispatchParams(p: DispatchParams): string[] {
  const problems: string[] = [];
  for (const k of ["hysteresisPermille", "minOnMs", "minOffMs", "closesPerStepMax", "demandFreshMs"] as const) {
    if (!isSafeUint(p[k])) problems.push(`${k}: a whole number, at least 0`);
  }
  if (isSafeUint(p.hysteresisPermille) && p.hysteresisPermille > hysteresisPermilleMax) problems.push(`hysteresisPermille: at most ${hysteresisPermilleMax}`);
  if (isSafeUint(p.closesPerStepMax) && (p.closesPerStepMax < 1 || p.closesPerStepMax > premisesMax)) problems.push(`closesPerStepMax: from 1 to ${premisesMax}`);
  return problems;
}

/**
 * What a shell that feeds real readings needs besides checkDispatchParams: minOffMs above demandFreshMs, so that a
 * premise shed for longer than a reading stays fresh is switched on for its fallback demand, never for a reading
 * taken while its own PV covered part of its load (see "Inputs" above). The pure core does not need it.
 */
export function checkShellDispatchParams(p: DispatchParams): string[] {
  const problems = checkDispatchParams(p);
  if (p.minOffMs <= p.demandFreshMs) problems.push(`minOffMs: ${p.minOffMs} must be above demandFreshMs (${p.demandFreshMs}), so that a shed premise comes back on its fallback demand, not on a reading taken while its PV covered part of its load`);
  return problems;
}

function isWatts(n: unknown): boolean {
  return isSafeUint(n) && n <= powerMaxW;
}

function isWattHours(n: unknown): boolean {
  return isSafeUint(n) && n <= energyMaxWh;
}

/** A premise's problems, named `premises[i].field` (the name is built only for a problem: this runs every step). */
function checkPremise(p: PremiseInput, i: number, problems: string[]): void {
  const bad = (field: string, wants: string) => problems.push(`premises[${i}].${field}: ${wants}`);
  if (!isSafeUint(p.id)) bad("id", "a whole number, at least 0");
  if (typeof p.critical !== "boolean") bad("critical", "true or false");
  if (!isWatts(p.demandW)) bad("demandW", `whole watts from 0 to ${powerMaxW}`);
  if (!isWatts(p.generationW)) bad("generationW", `whole watts from 0 to ${powerMaxW}`);
  if (p.readingAtMs !== null && !isSafeUint(p.readingAtMs)) bad("readingAtMs", "null or a whole number of ms");
  if (!isWatts(p.fallbackDemandW)) bad("fallbackDemandW", `whole watts from 0 to ${powerMaxW}`);
  if (p.breaker !== "closed" && p.breaker !== "open" && p.breaker !== "unknown") bad("breaker", "closed, open or unknown");
  const s = p.lastSwitch;
  if (s !== null && ((s.to !== "closed" && s.to !== "open") || !isSafeUint(s.atMs))) bad("lastSwitch", "null or { to: closed or open, atMs: a whole number }");
}

export function checkDispatchInput(input: DispatchInput): string[] {
  const problems: string[] = [];
  if (!isSafeUint(input.nowMs)) problems.push("nowMs: a whole number, at least 0");
  if (typeof input.islanded !== "boolean") problems.push("islanded: true or false");
  for (const k of ["unswitchedGenerationW", "storageOpenW", "storageReserveW"] as const) if (!isWatts(input[k])) problems.push(`${k}: whole watts from 0 to ${powerMaxW}`);
  if (input.premises.length > premisesMax) problems.push(`premises: at most ${premisesMax}`);
  const ids = new Set<number>();
  let nonCriticalSeen = false;
  input.premises.forEach((p, i) => {
    checkPremise(p, i, problems);
    if (ids.has(p.id)) problems.push(`premises[${i}].id: ${p.id} appears twice`);
    ids.add(p.id);
    if (p.critical && nonCriticalSeen) problems.push(`premises[${i}]: critical, after a non-critical premise (critical premises come first)`);
    nonCriticalSeen ||= !p.critical;
  });
  return problems;
}

// ---- The rule -----------------------------------------------------------------

/** One premise as the rule sees it this step. */
interface View {
  readonly p: PremiseInput;
  readonly demandW: number;
  /** Accounted generation: the fresh reading's export, only while believed on and the read-back is not open. */
  readonly generationW: number;
  readonly believedOn: boolean;
  /** Its demand if it may be drawing (believed on, or the read-back says it may be), else 0. */
  readonly mayDrawW: number;
  readonly minOffPassed: boolean;
}

function viewOf(p: PremiseInput, nowMs: number, params: DispatchParams): View {
  const ageMs = p.readingAtMs === null ? -1 : nowMs - p.readingAtMs;
  const fresh = ageMs >= 0 && ageMs <= params.demandFreshMs;
  const believedOn = p.lastSwitch !== null ? p.lastSwitch.to === "closed" : p.breaker !== "open";
  const demandW = fresh && (believedOn || p.generationW === 0) ? p.demandW : p.fallbackDemandW;
  const generationW = fresh && believedOn && p.breaker !== "open" ? p.generationW : 0;
  const mayDraw = believedOn || p.breaker !== "open";
  // A clock that steps back holds the premise off until it passes again: the safe side.
  const minOffPassed = p.lastSwitch === null || nowMs - p.lastSwitch.atMs >= params.minOffMs;
  return { p, demandW, generationW, believedOn, mayDrawW: mayDraw ? demandW : 0, minOffPassed };
}

/** The supply besides the premises' own generation. */
interface Supply {
  /** Unswitched generation + the open tier: what any premise may use. */
  readonly openW: number;
  /** The reserve tier: only for a prefix of critical premises. */
  readonly reserveW: number;
}

/** What a prefix may draw besides its own generation: the reserve tier only when all of it is critical. */
function usableW(s: Supply, allCritical: boolean): number {
  return s.openW + (allCritical ? s.reserveW : 0);
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

/** Pass 1 (see the header): where the walk stops, and why (null: it went through). */
function walkIsland(views: readonly View[], s: Supply, params: DispatchParams): { readonly stop: number; readonly held: DispatchReason | null } {
  let netW = 0; // the net demand of the walk so far
  let switchOnsLeft = switchOnBudget(views, params);
  let laterMayDrawW = views.reduce((sum, v) => sum + v.mayDrawW, 0);
  for (let i = 0; i < views.length; i++) {
    const v = views[i] as View;
    laterMayDrawW -= v.mayDrawW; // now: the premises after v
    if (!v.believedOn) {
      let held: DispatchReason | null = null;
      if (!v.minOffPassed) held = DispatchReason.minOff;
      else if (!headroomAllows(usableW(s, v.p.critical) - netW - laterMayDrawW, v.demandW, params.hysteresisPermille)) held = DispatchReason.headroom;
      else if (switchOnsLeft === 0) held = DispatchReason.closeBudget;
      if (held !== null) return { stop: i, held };
      switchOnsLeft -= 1;
      assert(v.generationW === 0, "a premise switched on is counted without generation");
    }
    netW += v.demandW - v.generationW;
  }
  return { stop: views.length, held: null };
}

/** Pass 2: the longest prefix [0, k), k <= stop, whose net demand fits. k = 0 always fits (all supplies >= 0). */
function longestFit(views: readonly View[], stop: number, s: Supply): number {
  const netW: number[] = [0];
  for (let i = 0; i < stop; i++) netW.push((netW[i] as number) + (views[i] as View).demandW - (views[i] as View).generationW);
  for (let k = stop; k > 0; k--) {
    if ((netW[k] as number) <= usableW(s, (views[k - 1] as View).p.critical)) return k;
  }
  return 0;
}

/** headroomW x 1000 >= demandW x (1000 + hysteresisPermille), formed only once 0 <= headroomW < headroomAlwaysW. */
function headroomAllows(headroomW: number, demandW: number, hysteresisPermille: number): boolean {
  if (headroomW < 0) return false;
  if (headroomW >= headroomAlwaysW) return true;
  return headroomW * 1000 >= demandW * (1000 + hysteresisPermille);
}

function planIsland(views: readonly View[], s: Supply, params: DispatchParams): Decision[] {
  const { stop, held } = walkIsland(views, s, params);
  const cut = longestFit(views, stop, s);
  const out: Decision[] = [];
  views.forEach((v, i) => {
    if (i < cut) out.push({ target: "closed", reason: v.believedOn ? DispatchReason.supplied : DispatchReason.restore });
    else if (cut < stop) {
      assert(i >= stop || v.believedOn, "pass 2 never sheds a premise pass 1 switched on");
      out.push({ target: "open", reason: v.believedOn ? DispatchReason.deficit : DispatchReason.order });
    } else out.push({ target: "open", reason: i === stop && held !== null ? held : DispatchReason.order });
  });
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

function figuresOf(views: readonly View[], decisions: readonly Decision[], s: Supply): DispatchFigures {
  let servedW = 0, shedW = 0, generationW = 0, criticalServedW = 0, criticalDemandW = 0, criticalOpenCount = 0, unconfirmedW = 0;
  let nonCriticalClosed = false;
  views.forEach((v, i) => {
    const closed = (decisions[i] as Decision).target === "closed";
    if (closed) {
      servedW += v.demandW;
      generationW += v.generationW;
      nonCriticalClosed ||= !v.p.critical;
    } else shedW += v.demandW;
    if (!closed && v.p.breaker !== "open") unconfirmedW += v.demandW;
    if (v.p.critical) {
      criticalDemandW += v.demandW;
      if (closed) criticalServedW += v.demandW;
      else criticalOpenCount += 1;
    }
  });
  const criticalCoveragePermille = criticalDemandW === 0 ? 1000 : Math.floor((criticalServedW * 1000) / criticalDemandW);
  const supplyW = usableW(s, !nonCriticalClosed) + generationW;
  return { supplyW, generationW, servedW, shedW, criticalServedW, criticalDemandW, criticalCoveragePermille, criticalOpenCount, unconfirmedW };
}

/** One step of the dispatch: see the header for the rule. Throws (an assertion) on input that checkDispatchInput refuses. */
export function dispatch(params: DispatchParams, input: DispatchInput): DispatchStep {
  assert(checkDispatchParams(params).length === 0, `dispatch params: ${checkDispatchParams(params).join("; ")}`);
  assert(checkDispatchInput(input).length === 0, `dispatch input: ${checkDispatchInput(input).join("; ")}`);
  const views = input.premises.map((p) => viewOf(p, input.nowMs, params));
  const supply: Supply = { openW: input.unswitchedGenerationW + input.storageOpenW, reserveW: input.storageReserveW };
  const decisions = input.islanded ? planIsland(views, supply, params) : planConnected(views, params);
  assert(decisions.length === views.length, "a decision per premise");
  const targets = views.map((v, i): PremiseTarget => {
    const d = decisions[i] as Decision;
    return { id: v.p.id, target: d.target, reason: d.reason, demandW: v.demandW, generationW: v.generationW, lastSwitch: recordAfter(v, d.target, input.nowMs) };
  });
  const commands: DispatchCommand[] = [];
  views.forEach((v, i) => {
    const c = commandFor(v, decisions[i] as Decision, input.nowMs, params);
    if (c !== null) commands.push(c);
  });
  const opens = commands.filter((c) => c.action === "open").reverse(); // lowest priority first
  const closes = commands.filter((c) => c.action === "close");
  const figures = figuresOf(views, decisions, supply);
  if (input.islanded) {
    assert(figures.servedW <= figures.supplyW, "I2: islanded, served within the supply the closed premises may draw");
    const closedCount = targets.filter((t) => t.target === "closed").length;
    assert(targets.every((t, i) => (t.target === "closed") === i < closedCount), "I1: islanded, the closed premises are a prefix");
  }
  return { targets, commands: [...opens, ...closes], figures };
}
