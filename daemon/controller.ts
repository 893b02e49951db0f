// The microgrid controller: a box with the controller role and switchgear
// (`peergrid start --controller controller.json`). The shell around two pure
// cores:
//   - market/grid-monitor.ts watches this box's meter at the point of common
//     coupling (every checked reading it takes, and a tick each second) and
//     decides connected or islanded; each change is signed and committed as
//     an `island` transaction (the ledger then settles that share of the
//     period at the community's imbalance price). At start the monitor knows
//     nothing, which is unsafe: the controller records an island transition
//     at once unless the ledger already says islanded, and the microgrid
//     reconnects only after the grid has held inside its window for the
//     reconnection delay (300 s by default).
//   - market/dispatch.ts each second: the premises in the community's order
//     (the voted critical-load list first, ledger/governance.ts; then every
//     other configured premise by member number), each one's demand and own
//     generation from its meters' latest readings in the ledger (import and
//     export power, kept from the last reading while its breaker was closed;
//     when there is none fresh, its breaker rating as demand and no
//     generation), the generation behind no dispatched breaker (the export
//     of every other metered member, fresh readings only; not the PCC
//     meter's), the storage in two tiers, and the breakers' read-backs.
//     Storage: without a `storage` section, the configured discharge limit
//     is open to every premise whatever the charge (no reserve). With one,
//     the battery's state of charge is read each second from its holding
//     register (a read that fails or shows more than the capacity is
//     counted and the last good one kept; older than demandFreshMs, the
//     charge is unknown) and market/dispatch.ts storageTiers splits the
//     limit: open to all only above the configured reserve, the rest for
//     the critical premises. Every command goes to the breaker through device/
//     switchgear.ts, which reads the state back; the command and what was
//     read back are signed and committed as a `switch` transaction (who was
//     powered, when, why, on what supply and demand).
// One step at a time: a second whose step has not finished is skipped and
// counted. Errors (a breaker that does not answer, a refused submission)
// are counted and kept in status(); they never stop the loop.
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { Bus, readRegisters } from "../device/bus.js";
import { linkFor, type MeterAddress } from "../device/commission.js";
import { type SwitchPoint, Switch } from "../device/switchgear.js";
import { assert } from "../ledger/assert.js";
import { criticalLoads } from "../ledger/governance.js";
import { ConfigError } from "../ledger/errors.js";
import { GLOBAL_KEY, type GlobalRecord, breakerKey } from "../ledger/records.js";
import type { LatestReading } from "../ledger/store.js";
import type { LedgerState } from "../ledger/state.js";
import { Quality, SWITCH_REASONS, type SwitchReason } from "../ledger/tx.js";
import { type DispatchParams, type DispatchStep, type PremiseInput, type StorageTiers, type SwitchRecord, checkShellDispatchParams, dispatch, powerMaxW, storageTiers } from "../market/dispatch.js";
import { type GridEvent, type GridMonitorConfig, type GridMonitorState, type GridInput, initialGridState, parseGridMonitorConfig, stepGrid } from "../market/grid-monitor.js";
import type { BoxSequence } from "./box-sequence.js";
import type { BoxMeters } from "./meters.js";
import { parseBusAddress } from "./meters.js";
import type { BoxNode, NodeLog } from "./node.js";

const SERIAL_DEFAULTS = { baud: 9_600, parity: "none", dataBits: 8, stopBits: 1 } as const;

const PremiseSchema = Type.Object(
  {
    member: Type.Integer({ minimum: 0, maximum: 2 ** 24 - 1, description: "the premise's member number" }),
    breaker: Type.Integer({ minimum: 0, maximum: 255, description: "the premise's breaker channel (in switch transactions)" }),
    ratingW: Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: "the breaker's rating: the demand assumed when no fresh reading says otherwise" }),
    device: Type.String({ pattern: "^(tcp|serial):.+$", description: "tcp:HOST:PORT or serial:DEVICE[:BAUD[:PARITY]]" }),
    unit: Type.Integer({ minimum: 1, maximum: 247 }),
    coil: Type.Optional(Type.Integer({ minimum: 0, maximum: 65_535, description: "a coil: on = closed" })),
    register: Type.Optional(
      Type.Object({ address: Type.Integer({ minimum: 0, maximum: 65_535 }), closedValue: Type.Integer({ minimum: 0, maximum: 65_535 }), openValue: Type.Integer({ minimum: 0, maximum: 65_535 }) }, { additionalProperties: false }),
    ),
  },
  { additionalProperties: false },
);

const StorageSchema = Type.Object(
  {
    capacityWh: Type.Integer({ minimum: 1, maximum: 1_000_000_000, description: "the battery's usable capacity, Wh" }),
    reserveWh: Type.Integer({ minimum: 0, maximum: 1_000_000_000, description: "the charge kept for the critical premises, Wh: at or below it only they get the battery" }),
    device: Type.String({ pattern: "^(tcp|serial):.+$", description: "where its state of charge is read: tcp:HOST:PORT or serial:DEVICE[:BAUD[:PARITY]]" }),
    unit: Type.Integer({ minimum: 1, maximum: 247 }),
    register: Type.Integer({ minimum: 0, maximum: 65_535, description: "the holding register with the state of charge: one unsigned 16-bit word" }),
    whPerUnit: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000, description: "Wh per count of that register: 10 for tens of Wh, capacityWh / 100 for a percentage" }),
  },
  { additionalProperties: false },
);

const ControllerFileSchema = Type.Object(
  {
    pccMeterId: Type.Integer({ minimum: 0, maximum: 255, description: "this box's meter (--meter ID) at the point of common coupling" }),
    grid: Type.Unknown({ description: "market/grid-monitor.ts settings: nominalVoltageDeciV, nominalFrequencyMilliHz, and any trip or reconnection setting to change" }),
    storageDischargeMaxW: Type.Integer({ minimum: 0, maximum: 1_000_000_000, description: "what the community storage can discharge at most, W (0: none)" }),
    storage: Type.Optional(StorageSchema),
    dispatch: Type.Object(
      {
        hysteresisPermille: Type.Integer({ minimum: 0, maximum: 10_000 }),
        minOnMs: Type.Integer({ minimum: 0, maximum: 86_400_000 }),
        minOffMs: Type.Integer({ minimum: 0, maximum: 86_400_000 }),
        closesPerStepMax: Type.Integer({ minimum: 1, maximum: 10_000 }),
        demandFreshMs: Type.Integer({ minimum: 1_000, maximum: 86_400_000 }),
      },
      { additionalProperties: false },
    ),
    premises: Type.Array(PremiseSchema, { minItems: 1, maxItems: 10_000 }),
  },
  { additionalProperties: false },
);

export interface ControllerPremise {
  readonly member: number;
  readonly breaker: number;
  readonly ratingW: number;
  readonly address: MeterAddress;
  readonly point: SwitchPoint;
}

/** The community battery's charge, read from a holding register; its discharge limit is the file's storageDischargeMaxW. */
export interface ControllerStorage {
  readonly capacityWh: number;
  readonly reserveWh: number;
  readonly address: MeterAddress;
  readonly unit: number;
  readonly register: number;
  readonly whPerUnit: number;
}

export interface ControllerConfig {
  readonly pccMeterId: number;
  readonly grid: GridMonitorConfig;
  readonly storageDischargeMaxW: number;
  /** null: no state of charge; the discharge limit is offered to every premise whatever the charge. */
  readonly storage: ControllerStorage | null;
  readonly dispatch: DispatchParams;
  readonly premises: readonly ControllerPremise[];
}

/** Parse and check a controller file; every mistake named by its path (ConfigError). */
export function parseControllerConfig(value: unknown, source: string): ControllerConfig {
  const problems = [...Value.Errors(ControllerFileSchema, value)].slice(0, 20).map((e) => `${e.path || "/"}: ${e.message}`);
  if (problems.length > 0) throw new ConfigError(`controller file ${source}`, problems);
  const f = value as Static<typeof ControllerFileSchema>;
  let grid: GridMonitorConfig | null = null;
  try {
    grid = parseGridMonitorConfig(f.grid);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems.map((p) => `/grid${p.startsWith("/") ? "" : ": "}${p}`));
  }
  problems.push(...checkShellDispatchParams(f.dispatch).map((p) => `/dispatch/${p}`));
  const premises: ControllerPremise[] = [];
  const seen = new Set<number>();
  f.premises.forEach((p, i) => {
    const at = `/premises/${i}`;
    // The dispatch knows a premise by its member, and a member's meters cannot say which of two breakers its PV is behind.
    if (seen.has(p.member)) problems.push(`${at}: member ${p.member} is listed twice (one breaker per member)`);
    seen.add(p.member);
    if ((p.coil === undefined) === (p.register === undefined)) {
      problems.push(`${at}: give either "coil" (a coil address) or "register" ({address, closedValue, openValue})`);
      return;
    }
    const address = deviceAddress(p.device, `${at}/device`, problems);
    if (address === null) return;
    const point: SwitchPoint = p.coil !== undefined ? { kind: "coil", unit: p.unit, address: p.coil } : { kind: "register", unit: p.unit, ...(p.register as NonNullable<typeof p.register>) };
    premises.push({ member: p.member, breaker: p.breaker, ratingW: p.ratingW, address, point });
  });
  const storage = f.storage === undefined ? null : parseStorage(f.storage, problems);
  if (problems.length > 0 || grid === null) throw new ConfigError(`controller file ${source}`, problems);
  return { pccMeterId: f.pccMeterId, grid, storageDischargeMaxW: f.storageDischargeMaxW, storage, dispatch: f.dispatch, premises };
}

/** tcp:HOST:PORT or serial:DEVICE[:BAUD[:PARITY]]; null, with the problem named at `at`, if it is not. */
function deviceAddress(device: string, at: string, problems: string[]): MeterAddress | null {
  const via = device.startsWith("tcp:") ? "tcp" : "serial";
  try {
    return parseBusAddress(via, device.slice(via.length + 1), SERIAL_DEFAULTS, at, `${at}: "${device}" is not tcp:HOST:PORT or serial:DEVICE[:BAUD[:PARITY]]`);
  } catch (err) {
    problems.push(err instanceof Error ? err.message : String(err));
    return null;
  }
}

function parseStorage(st: Static<typeof StorageSchema>, problems: string[]): ControllerStorage | null {
  const before = problems.length;
  if (st.reserveWh > st.capacityWh) problems.push(`/storage/reserveWh: ${st.reserveWh} is above capacityWh (${st.capacityWh})`);
  if (65_535 * st.whPerUnit < st.capacityWh) problems.push(`/storage/whPerUnit: the register's 65,535 counts make ${Math.floor(65_535 * st.whPerUnit)} Wh, less than capacityWh (${st.capacityWh}): it could never show the battery full`);
  const address = deviceAddress(st.device, "/storage/device", problems);
  if (address === null || problems.length > before) return null;
  return { capacityWh: st.capacityWh, reserveWh: st.reserveWh, address, unit: st.unit, register: st.register, whPerUnit: st.whPerUnit };
}

export interface ControllerStatus {
  readonly decision: "connected" | "islanded";
  readonly steps: number;
  /** Repeats of a command that did not take, held back while its breaker's retry wait runs. */
  readonly retriesHeld: number;
  readonly skipped: number;
  readonly islandTransitions: number;
  readonly commands: number;
  readonly switchErrors: number;
  readonly refusedSubmissions: number;
  /** State-of-charge reads that failed or read beyond the capacity (the last one's message is lastError). */
  readonly storageReadErrors: number;
  readonly lastError: string | null;
  readonly lastFigures: DispatchStep["figures"] | null;
  /** The last step's storage tiers and the charge they came from (null: unknown, or no storage section). */
  readonly lastStorage: { readonly socWh: number | null; readonly openW: number; readonly reserveW: number } | null;
}

/** The premises in the community's order: the voted critical list first, then the rest by member number. */
export function priorityOrder(state: LedgerState, premises: readonly ControllerPremise[]): { readonly premise: ControllerPremise; readonly critical: boolean }[] {
  const critical = criticalLoads({ get: (k) => state.tree.get(k) as never });
  const rank = new Map(critical.map((m, i) => [m, i]));
  return [...premises]
    .map((premise) => ({ premise, critical: rank.has(premise.member) }))
    .sort((a, b) => (rank.get(a.premise.member) ?? Infinity) - (rank.get(b.premise.member) ?? Infinity) || a.premise.member - b.premise.member || a.premise.breaker - b.premise.breaker);
}

/**
 * A member's import power and export power now, from its meters' latest readings (the store's latest_readings
 * table, written with each block: a query of one row per meter, not a walk of the state); fresh good ones only;
 * `skip`: the PCC meter.
 */
function meteredPower(readings: readonly LatestReading[], nowMs: number, freshMs: number, skip: { readonly author: number; readonly meterId: number }): Map<number, { importW: number; exportW: number; atMs: number }> {
  const out = new Map<number, { importW: number; exportW: number; atMs: number }>();
  for (const m of readings) {
    if (m.quality !== Quality.good || nowMs - m.timeMs > freshMs || m.timeMs > nowMs) continue;
    if (m.author === skip.author && m.meterId === skip.meterId) continue;
    const e = out.get(m.author) ?? { importW: 0, exportW: 0, atMs: m.timeMs };
    out.set(m.author, { importW: e.importW + Math.max(0, m.powerW), exportW: e.exportW + Math.max(0, -m.powerW), atMs: Math.min(e.atMs, m.timeMs) });
  }
  return out;
}

/** The longest wait between two repeats of a command that does not take. */
const RETRY_MAX_MS = 60_000;

export class MicrogridController {
  private grid: GridMonitorState = initialGridState();
  private readonly buses = new Map<string, Bus>();
  private readonly switches = new Map<string, Switch>(); // member/breaker -> switch
  private readonly lastSwitch = new Map<string, SwitchRecord>();
  private readonly readBack = new Map<string, "closed" | "open" | "unknown">();
  /** Each member's last reading taken while its breaker was closed. */
  private readonly lastReading = new Map<number, { demandW: number; generationW: number; atMs: number }>();
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  private recordedIslanded: boolean | null = null;
  private readonly counters = { steps: 0, skipped: 0, islandTransitions: 0, commands: 0, retriesHeld: 0, switchErrors: 0, refusedSubmissions: 0, storageReadErrors: 0 };
  /**
   * A breaker whose last command did not take (the device silent, the breaker stuck): its next repeat waits, the wait
   * doubling from 1 s to RETRY_MAX_MS, so that a faulted breaker costs a command and a switch transaction a minute,
   * not one a second. Cleared when a command takes.
   */
  private readonly retry = new Map<string, { readonly delayMs: number; readonly atMs: number }>();
  private readonly storageBus: Bus | null = null;
  /** The last good state-of-charge reading. */
  private soc: { readonly socWh: number; readonly atMs: number } | null = null;
  private lastStorage: ControllerStatus["lastStorage"] = null;
  private lastError: string | null = null;
  private lastFigures: DispatchStep["figures"] | null = null;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly node: Pick<BoxNode, "ledger">,
    private readonly sequence: BoxSequence,
    readonly config: ControllerConfig,
    meters: Pick<BoxMeters, "onReading">,
    private readonly options: { readonly now?: () => number; readonly log?: NodeLog } = {},
  ) {
    for (const p of config.premises) this.switches.set(`${p.member}/${p.breaker}`, new Switch(this.busFor(p.address), p.point, `member ${p.member} breaker ${p.breaker}`));
    if (config.storage !== null) this.storageBus = this.busFor(config.storage.address);
    this.unsubscribe = meters.onReading((meterId, r) => {
      if (meterId === config.pccMeterId) this.feed({ type: "reading", reading: { timeMs: r.timeMs, voltagesDeciV: r.voltagesDeciV, frequencyMilliHz: r.frequencyMilliHz, good: r.quality === Quality.good } });
    });
  }

  /** One Bus per line: breakers and the battery on one gateway or RS-485 line share it. */
  private busFor(address: MeterAddress): Bus {
    const busKey = address.kind === "tcp" ? `tcp ${address.host}:${address.port}` : `rtu ${address.path}`;
    let bus = this.buses.get(busKey);
    if (bus === undefined) this.buses.set(busKey, (bus = new Bus(linkFor(address))));
    return bus;
  }

  private now(): number {
    return (this.options.now ?? Date.now)();
  }

  start(): void {
    this.timer = setInterval(() => void this.tick(), 1_000);
  }

  async stop(): Promise<void> {
    this.unsubscribe();
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    while (this.busy) await new Promise((r) => setTimeout(r, 20));
    await Promise.all([...this.buses.values()].map((b) => b.close()));
  }

  status(): ControllerStatus {
    return { decision: this.grid.decision, ...this.counters, lastError: this.lastError, lastFigures: this.lastFigures, lastStorage: this.lastStorage };
  }

  /** One input to the grid monitor; its events become island transactions. */
  feed(input: GridInput): void {
    const step = stepGrid(this.config.grid, this.grid, input);
    this.grid = step.state;
    for (const e of step.events) void this.recordIsland(e);
  }

  private async recordIsland(e: GridEvent): Promise<void> {
    if (this.recordedIslanded === e.islanded) return;
    this.recordedIslanded = e.islanded;
    this.counters.islandTransitions++;
    const { out } = await this.sequence.submit({ type: "island", islanded: e.islanded, timeMs: e.timeMs, reason: e.reason, measured: e.measured });
    if (!out.ok) this.noteRefused(`island: ${out.code}: ${out.message}`);
    this.options.log?.("info", e.islanded ? "islanded" : "reconnected", { reason: e.reason, measured: e.measured, atMs: e.timeMs });
  }

  /** One second: staleness, the first island record, then dispatch and the breakers. */
  async tick(): Promise<void> {
    if (this.busy) {
      this.counters.skipped++;
      return;
    }
    this.busy = true;
    try {
      const nowMs = this.now();
      this.feed({ type: "tick", nowMs });
      const state = this.node.ledger.state;
      const global = state.tree.get(GLOBAL_KEY) as GlobalRecord;
      if (this.recordedIslanded === null) {
        // The monitor starts unknown (islanded); the ledger may say connected: record where we stand.
        this.recordedIslanded = global.islandedSinceMs >= 0;
        if (this.grid.decision === "islanded" && !this.recordedIslanded) await this.recordIsland({ timeMs: nowMs, islanded: true, reason: this.grid.reason, measured: 0 });
      }
      await this.readStorage(nowMs);
      await this.dispatchStep(state, nowMs);
      this.counters.steps++;
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
    } finally {
      this.busy = false;
    }
  }

  private async dispatchStep(state: LedgerState, nowMs: number): Promise<void> {
    const power = meteredPower(this.node.ledger.store.latestReadings(), nowMs, this.config.dispatch.demandFreshMs, { author: this.sequence.author, meterId: this.config.pccMeterId });
    const ordered = priorityOrder(state, this.config.premises);
    const switched = new Set(this.config.premises.map((p) => p.member));
    let unswitchedGenerationW = 0;
    for (const [member, p] of power) if (!switched.has(member)) unswitchedGenerationW += p.exportW;
    const premises: PremiseInput[] = ordered.map(({ premise, critical }) => {
      const key = `${premise.member}/${premise.breaker}`;
      const recorded = state.tree.get(breakerKey(premise.member, premise.breaker));
      const readBack = this.readBack.get(key) ?? (recorded?.kind === "breaker" ? recorded.readback : "unknown");
      const p = power.get(premise.member);
      if (p !== undefined && readBack === "closed") this.lastReading.set(premise.member, { demandW: Math.min(p.importW, powerMaxW), generationW: Math.min(p.exportW, powerMaxW), atMs: p.atMs });
      const r = this.lastReading.get(premise.member);
      return { id: premise.member, critical, demandW: r?.demandW ?? 0, generationW: r?.generationW ?? 0, readingAtMs: r?.atMs ?? null, fallbackDemandW: premise.ratingW, breaker: readBack, lastSwitch: this.lastSwitch.get(key) ?? null };
    });
    const tiers = this.storageTiersAt(nowMs);
    const step = dispatch(this.config.dispatch, { nowMs, islanded: this.grid.decision === "islanded", unswitchedGenerationW: Math.min(unswitchedGenerationW, powerMaxW), storageOpenW: tiers.openW, storageReserveW: tiers.reserveW, premises });
    this.lastFigures = step.figures;
    // The targets come in the premises' order, one each; a member is listed once (parseControllerConfig).
    const byMember = new Map<number, { premise: ControllerPremise; demandW: number }>();
    step.targets.forEach((t, i) => {
      const premise = (ordered[i] as (typeof ordered)[number]).premise;
      assert(premise.member === t.id, "one target per premise, in order");
      byMember.set(t.id, { premise, demandW: t.demandW });
      if (t.lastSwitch !== null) this.lastSwitch.set(`${premise.member}/${premise.breaker}`, t.lastSwitch);
    });
    for (const c of step.commands) {
      const at = byMember.get(c.id);
      if (at === undefined) continue;
      const held = this.retry.get(`${at.premise.member}/${at.premise.breaker}`);
      if (c.repeat && held !== undefined && nowMs < held.atMs) {
        this.counters.retriesHeld++;
        continue;
      }
      await this.command(at.premise, c.action === "close", c.repeat ? "retry" : (c.reason as SwitchReason), step.figures.supplyW, at.demandW, nowMs);
    }
  }

  /** Read the battery's state of charge (a storage section only); a failed or impossible read keeps the last good one and is counted. */
  private async readStorage(nowMs: number): Promise<void> {
    const st = this.config.storage;
    if (st === null || this.storageBus === null) return;
    try {
      const words = await readRegisters(this.storageBus, st.unit, "holding", st.register, 1);
      if ("kind" in words) throw new Error(`unit ${st.unit} refused the read of holding register ${st.register} (${words.message})`);
      const socWh = Math.floor((words[0] as number) * st.whPerUnit);
      if (socWh > st.capacityWh) throw new Error(`holding register ${st.register} of unit ${st.unit} reads ${socWh} Wh, above capacityWh (${st.capacityWh}): check whPerUnit`);
      this.soc = { socWh, atMs: nowMs };
    } catch (err) {
      this.counters.storageReadErrors++;
      this.lastError = `storage: ${err instanceof Error ? err.message : String(err)}`;
    }
  }

  /**
   * The storage tiers for this second. Without a storage section, today's policy: the discharge limit open to every
   * premise, no reserve. With one, market/dispatch.ts storageTiers (the open tier only above the reserve) on the last
   * good reading if it is at most demandFreshMs old; an older one is an unknown charge (the reserve tier only).
   */
  private storageTiersAt(nowMs: number): StorageTiers {
    const st = this.config.storage;
    if (st === null) return { openW: this.config.storageDischargeMaxW, reserveW: 0 };
    const ageMs = this.soc === null ? -1 : nowMs - this.soc.atMs;
    const socWh = this.soc !== null && ageMs >= 0 && ageMs <= this.config.dispatch.demandFreshMs ? this.soc.socWh : null;
    const tiers = storageTiers({ dischargeMaxW: this.config.storageDischargeMaxW, reserveWh: st.reserveWh }, socWh);
    this.lastStorage = { socWh, ...tiers };
    return tiers;
  }

  /** Switch one breaker, read it back, and record both on the ledger. */
  private async command(p: ControllerPremise, close: boolean, reason: SwitchReason, supplyW: number, demandW: number, nowMs: number): Promise<void> {
    const key = `${p.member}/${p.breaker}`;
    const sw = this.switches.get(key);
    if (sw === undefined) return;
    this.counters.commands++;
    let readback: "closed" | "open" | "unknown";
    try {
      await sw.set(close);
      readback = close ? "closed" : "open";
    } catch (err) {
      this.counters.switchErrors++;
      this.lastError = `${sw.label}: ${err instanceof Error ? err.message : String(err)}`;
      try {
        readback = (await sw.isClosed()) ? "closed" : "open";
      } catch {
        readback = "unknown";
      }
    }
    this.readBack.set(key, readback);
    if (readback === (close ? "closed" : "open")) this.retry.delete(key);
    else {
      const delayMs = Math.min(RETRY_MAX_MS, 2 * (this.retry.get(key)?.delayMs ?? 500));
      this.retry.set(key, { delayMs, atMs: nowMs + delayMs });
    }
    const { out } = await this.sequence.submit({
      type: "switch",
      premise: p.member,
      breaker: p.breaker,
      close,
      readback,
      timeMs: nowMs,
      reason: SWITCH_REASONS.includes(reason) ? reason : "manual",
      supplyW: Math.min(supplyW, 2 ** 31 - 1),
      demandW: Math.min(demandW, 2 ** 31 - 1),
    });
    if (!out.ok) this.noteRefused(`switch: ${out.code}: ${out.message}`);
  }

  private noteRefused(message: string): void {
    this.counters.refusedSubmissions++;
    this.lastError = message;
  }
}
