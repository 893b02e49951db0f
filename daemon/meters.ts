// A box's meters: one Bus and one MeterPoller per physical bus (meters on
// the same serial port or the same TCP gateway share them), and every
// checked reading signed with the box's key into a `reading` transaction
// and submitted through node.submit, the path every transaction takes.
//
// Sequence numbers: the box signs its readings with consecutive numbers,
// one submission at a time (in order), taking a number only when the node
// accepts the reading; after a refusal for a stale number it resumes from
// the ledger's. Readings refused otherwise (a full pool) are counted and
// dropped: the next second brings the next one.
import { METER_ID_MAX } from "../ledger/tx.js";
import type { BoxSequence } from "./box-sequence.js";
import { Bus, type BusStats } from "../device/bus.js";
import { type MeterAddress, linkFor } from "../device/commission.js";
import { UNIT_ID_MAX, UNIT_ID_MIN } from "../device/modbus-frame.js";
import { type MeterKind, factoryDefaults, layoutSource, loadMeterKind } from "../device/meter-kind.js";
import { PeergridError } from "../ledger/errors.js";
import { type MeterPollStats, MeterPoller, type PolledMeter, type PollerOptions } from "../device/poller.js";
import { type LatencySummary, summarise } from "./latency.js";
import type { CheckedReading, MeterMemory } from "../device/reading-check.js";
import { meterKey } from "../ledger/records.js";
import type { BoxNode } from "./node.js";

/**
 * --meter ID=MAP@tcp:HOST:PORT[/UNIT] or ID=MAP@serial:DEVICE[:BAUD[:PARITY]][/UNIT]:
 * meter channel ID (0..255) of this box, a register map (a shipped name, a
 * map file, or "sunspec": found on the device), where it is, and its unit id
 * (default: the map's factory id).
 */
export function parseMeterSpec(text: string, loadKind: (nameOrPath: string) => MeterKind = loadMeterKind): MeterSpec {
  const usage = `--meter "${text}" is not ID=MAP@tcp:HOST:PORT[/UNIT] or ID=MAP@serial:DEVICE[:BAUD[:PARITY]][/UNIT] (e.g. 0=eastron-sdm630@serial:/dev/ttyUSB0:9600/1)`;
  const m = /^(\d{1,3})=([^@]+)@(tcp|serial):(.+?)(?:\/(\d{1,3}))?$/.exec(text);
  if (m === null) throw new PeergridError("PG_ERR_USAGE", usage);
  const [, id, mapName, via, where, unitText] = m as unknown as [string, string, string, string, string, string | undefined];
  const kind = loadKind(mapName);
  const factory = factoryDefaults(kind);
  const unit = unitText === undefined ? factory.unit : Number(unitText);
  if (unit < UNIT_ID_MIN || unit > UNIT_ID_MAX) throw new PeergridError("PG_ERR_USAGE", `--meter "${text}": unit ${unit} outside ${UNIT_ID_MIN}..${UNIT_ID_MAX}`);
  const address = parseBusAddress(via as "tcp" | "serial", where, factory.serial, `--meter "${text}"`, usage);
  return { meterId: Number(id), meter: { layout: layoutSource(kind), unit }, address };
}

/**
 * Where a Modbus device is: `tcp` with HOST:PORT, or `serial` with DEVICE[:BAUD[:PARITY]] (the
 * serial defaults fill what is left out). `what` names the setting in errors; `usage` is the error
 * for a malformed address.
 */
export function parseBusAddress(
  via: "tcp" | "serial",
  where: string,
  serial: { readonly baud: number; readonly parity: "none" | "even" | "odd"; readonly dataBits: 7 | 8; readonly stopBits: 1 | 2 },
  what: string,
  usage: string,
): MeterAddress {
  if (via === "tcp") {
    const hp = /^(.+):(\d{1,5})$/.exec(where);
    if (hp === null || Number(hp[2]) < 1 || Number(hp[2]) > 65_535) throw new PeergridError("PG_ERR_USAGE", usage);
    return { kind: "tcp", host: hp[1] as string, port: Number(hp[2]) };
  }
  const [path, baudText, parityText] = where.split(":") as [string, string | undefined, string | undefined];
  const baud = baudText === undefined ? serial.baud : Number(baudText);
  if (!Number.isInteger(baud) || baud < 300 || baud > 115_200) throw new PeergridError("PG_ERR_USAGE", `${what}: baud ${baudText} outside 300..115200`);
  const parity = parityText ?? serial.parity;
  if (parity !== "none" && parity !== "even" && parity !== "odd") throw new PeergridError("PG_ERR_USAGE", `${what}: parity is none, even or odd`);
  return { kind: "rtu", path, baud, parity, dataBits: serial.dataBits, stopBits: serial.stopBits };
}

export interface MeterSpec {
  readonly meterId: number;
  readonly meter: Omit<PolledMeter, "meterId">;
  readonly address: MeterAddress;
}

export interface MeterStats {
  readings: number;
  accepted: number;
  refused: number;
  lastRefusal: string | null;
}

/** What GET /api/v1/meters shows: for the installer and the engineer, how each bus and meter is doing. */
export interface MetersStatus {
  readonly submitted: MeterStats;
  readonly buses: readonly {
    readonly link: string;
    readonly seconds: number;
    readonly skipped: number;
    /** When each round started after its second (the poll's jitter), over the last hour. */
    readonly pollStartMs: LatencySummary;
    /** How long a round of all the bus's meters took, over the last hour. */
    readonly roundMs: LatencySummary;
    readonly requests: BusStats;
    readonly meters: readonly {
      readonly meterId: number;
      readonly map: string;
      readonly layout: string | null;
      readonly unit: number;
      readonly stats: MeterPollStats;
      readonly last: CheckedReading | null;
    }[];
  }[];
}

/** The pollers' clock options: one poll a real second, whatever the clock's rate. */
function pollerClock(o: { readonly now?: () => number; readonly clockRate?: number }): Partial<PollerOptions> {
  const rate = o.clockRate ?? 1;
  return { ...(o.now !== undefined && { now: o.now }), ...(rate !== 1 && { clockRate: rate, periodMs: 1_000 * rate }) };
}

export class BoxMeters {
  readonly stats: MeterStats = { readings: 0, accepted: 0, refused: 0, lastRefusal: null };
  readonly pollers: MeterPoller[] = [];
  private readonly buses: Bus[] = [];
  private readonly specs: readonly MeterSpec[];
  private readonly last = new Map<number, CheckedReading>();
  private submitting: Promise<void> = Promise.resolve();

  constructor(
    private readonly node: BoxNode,
    private readonly sequence: BoxSequence,
    specs: readonly MeterSpec[],
    /**
     * The box's clock (the node's: a test moves both to cross a market interval at once), and how many of
     * its ms pass in a real ms (the demo's accelerated clock): the meters are still read once a real second.
     */
    options: { readonly now?: () => number; readonly clockRate?: number } = {},
  ) {
    this.specs = specs;
    const ids = new Set(specs.map((s) => s.meterId));
    if (ids.size !== specs.length) throw new RangeError("two meters with one meter id");
    for (const s of specs) if (!Number.isInteger(s.meterId) || s.meterId < 0 || s.meterId > METER_ID_MAX) throw new RangeError(`meter id ${s.meterId} outside 0..${METER_ID_MAX}`);
    const byBus = new Map<string, MeterSpec[]>();
    for (const s of specs) {
      const key = s.address.kind === "tcp" ? `tcp ${s.address.host}:${s.address.port}` : `rtu ${s.address.path}`;
      byBus.set(key, [...(byBus.get(key) ?? []), s]);
    }
    for (const group of byBus.values()) {
      const bus = new Bus(linkFor((group[0] as MeterSpec).address));
      this.buses.push(bus);
      this.pollers.push(new MeterPoller(bus, group.map((s) => ({ ...s.meter, meterId: s.meterId, memory: this.lastGood(s.meterId) })), (meterId, r) => this.submit(meterId, r), pollerClock(options)));
    }
  }

  /** The meter's last good counters in the ledger (a restarted box goes on from them, never from zero). */
  private lastGood(meterId: number): MeterMemory | null {
    const r = this.node.ledger.state.tree.get(meterKey(this.node.id, meterId));
    return r !== undefined && r.kind === "meter" && r.goodTimeMs >= 0 ? { goodTimeMs: r.goodTimeMs, goodImportWh: r.goodImportWh, goodExportWh: r.goodExportWh } : null;
  }

  start(): void {
    for (const p of this.pollers) p.start();
  }

  async stop(): Promise<void> {
    for (const p of this.pollers) p.stop();
    await this.submitting;
    await Promise.all(this.buses.map((b) => b.close()));
  }

  /** Forget the pollers' jitter and round times so far (only statistics). */
  resetTimings(): void {
    for (const p of this.pollers) p.resetTimings();
  }

  status(): MetersStatus {
    return {
      submitted: { ...this.stats },
      buses: this.pollers.map((p, i) => {
        const bus = this.buses[i] as Bus;
        return {
          link: bus.link.label,
          seconds: p.stats.seconds,
          skipped: p.stats.skipped,
          pollStartMs: summarise(p.stats.offsetsMs),
          roundMs: summarise(p.stats.roundsMs),
          requests: { ...bus.stats },
          meters: [...p.stats.meters].map(([meterId, stats]) => {
            const spec = this.specs.find((s) => s.meterId === meterId) as MeterSpec;
            return { meterId, map: spec.meter.layout.name, layout: stats.layout, unit: spec.meter.unit, stats: { ...stats }, last: this.last.get(meterId) ?? null };
          }),
        };
      }),
    };
  }

  private readonly readingListeners = new Set<(meterId: number, r: CheckedReading) => void>();

  /** Be told of every checked reading as it is taken (the microgrid controller watches its PCC meter). */
  onReading(listener: (meterId: number, r: CheckedReading) => void): () => void {
    this.readingListeners.add(listener);
    return () => this.readingListeners.delete(listener);
  }

  private submit(meterId: number, r: CheckedReading): void {
    this.stats.readings++;
    this.last.set(meterId, r);
    for (const l of this.readingListeners) l(meterId, r);
    this.submitting = this.submitting.then(async () => {
      const { out } = await this.sequence.submit({
        type: "reading",
        meterId,
        timeMs: r.timeMs,
        importWh: r.importWh,
        exportWh: r.exportWh,
        powerW: r.powerW,
        voltagesDeciV: r.voltagesDeciV,
        frequencyMilliHz: r.frequencyMilliHz,
        quality: r.quality,
      });
      if (out.ok) {
        this.stats.accepted++;
        return;
      }
      this.stats.refused++;
      this.stats.lastRefusal = `${out.code}: ${out.message}`;
    }).catch((err: unknown) => {
      // Never break the chain of submissions: the next reading must still go.
      this.stats.refused++;
      this.stats.lastRefusal = `submit failed: ${err instanceof Error ? err.message : String(err)}`;
    });
  }
}
