// The one-second reading loop of one bus: every configured meter once a
// second, aligned to the wall clock's second, each sample checked
// (reading-check.ts) into a reading with its quality flag, handed to
// `onReading` (the daemon signs it into a `reading` transaction).
//
// Energy counters may be read less often than power (energyEveryS) where a
// slow bus needs it: a block holding only counters is then read every
// energyEveryS seconds, and the readings in between carry the last counters
// with the time they were read (the stale check bounds how old). A block
// that holds power and counters together is read every second anyway.
//
// A second whose poll would start while the last one is still running (a
// bus too slow for its meters) is skipped and counted, never queued: the
// bus queue stays short and readings stay on their seconds.
import { type Bus, readBlocks } from "./bus.js";
import { type CheckedReading, DEFAULT_METER_LIMITS, type MeterLimits, type MeterMemory, checkReading } from "./reading-check.js";
import { type MeterLayout, QUANTITIES, type Quantity, type ReadBlock } from "./register-map.js";

export interface PolledMeter {
  /** The box's meter channel (0..255), as in the ledger's readings. */
  readonly meterId: number;
  /** Where its quantities are: fixedLayout(map), or sunspecLayout(...) after discovery. */
  readonly layout: MeterLayout;
  readonly unit: number;
  readonly limits?: MeterLimits;
  /** Read blocks that hold only energy counters every this many seconds (1: every second). */
  readonly energyEveryS?: number;
}

export interface PollerOptions {
  readonly periodMs: number;
  readonly now: () => number;
}

export interface MeterPollStats {
  polls: number;
  good: number;
  failed: number; // polls with no answer (commsError)
  flagged: number; // answered, but a value did not pass its checks
  lastProblem: string | null;
  lastLatencyMs: number | null; // from the poll's start to its last reply
}

export interface PollerStats {
  seconds: number;
  skipped: number; // seconds whose poll would have overlapped the last
  /** Start of each poll against its second, ms (the newest 3,600). */
  readonly offsetsMs: number[];
  /** How long each round of all meters took, ms (the newest 3,600). */
  readonly roundsMs: number[];
  readonly meters: Map<number, MeterPollStats>;
}

const ENERGY: readonly Quantity[] = ["importEnergy", "exportEnergy"];
const ALL_QUANTITIES: readonly Quantity[] = QUANTITIES;
const OFFSETS_KEPT = 3_600;

interface MeterState {
  readonly meter: PolledMeter;
  readonly everyBlock: readonly ReadBlock[]; // read every second
  readonly energyOnly: readonly ReadBlock[]; // read every energyEveryS seconds
  memory: MeterMemory | null;
  counters: { values: Partial<Record<Quantity, number>>; timeMs: number } | null;
}

export class MeterPoller {
  readonly stats: PollerStats = { seconds: 0, skipped: 0, offsetsMs: [], roundsMs: [], meters: new Map() };
  private readonly states: MeterState[];
  private readonly options: PollerOptions;
  private timer: NodeJS.Timeout | null = null;
  private polling = false;
  private stopped = true;
  private second = 0;

  constructor(
    private readonly bus: Bus,
    meters: readonly PolledMeter[],
    private readonly onReading: (meterId: number, reading: CheckedReading) => void,
    options: Partial<PollerOptions> = {},
  ) {
    this.options = { periodMs: 1_000, now: Date.now, ...options };
    const ids = new Set(meters.map((m) => m.meterId));
    if (ids.size !== meters.length) throw new RangeError("two meters with one meterId on a bus");
    this.states = meters.map((meter) => {
      const every = meter.layout.planReads(ALL_QUANTITIES.filter((q) => !ENERGY.includes(q) && meter.layout.has(q)));
      const all = meter.layout.planReads();
      this.stats.meters.set(meter.meterId, { polls: 0, good: 0, failed: 0, flagged: 0, lastProblem: null, lastLatencyMs: null });
      return { meter, everyBlock: every, energyOnly: all.filter((b) => !every.includes(b)), memory: null, counters: null };
    });
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(): void {
    if (this.stopped) return;
    const p = this.options.periodMs;
    const now = this.options.now();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.tick(now - (now % p) + p);
      this.schedule();
    }, p - (now % p));
  }

  private tick(dueMs: number): void {
    this.stats.seconds++;
    if (this.polling) {
      this.stats.skipped++;
      return;
    }
    const startMs = this.options.now();
    this.stats.offsetsMs.push(startMs - dueMs);
    if (this.stats.offsetsMs.length > OFFSETS_KEPT) this.stats.offsetsMs.shift();
    this.polling = true;
    const second = this.second++;
    void this.pollAll(second).finally(() => {
      this.polling = false;
      this.stats.roundsMs.push(this.options.now() - startMs);
      if (this.stats.roundsMs.length > OFFSETS_KEPT) this.stats.roundsMs.shift();
    });
  }

  /** One round: every meter in turn (they share the bus: the bus orders the requests anyway). */
  async pollAll(second = this.second++): Promise<void> {
    for (const s of this.states) await this.pollOne(s, second);
  }

  private async pollOne(s: MeterState, second: number): Promise<void> {
    const stats = this.stats.meters.get(s.meter.meterId) as MeterPollStats;
    const timeMs = this.options.now();
    const energyDue = s.counters === null || second % Math.max(1, s.meter.energyEveryS ?? 1) === 0;
    const blocks = energyDue ? [...s.everyBlock, ...s.energyOnly] : s.everyBlock;
    stats.polls++;
    let values: Partial<Record<Quantity, number>> | null;
    try {
      const r = await readBlocks(this.bus, s.meter.unit, blocks);
      if ("refused" in r) throw new Error(`unit ${s.meter.unit} answered exception ${r.exception.code} (${r.exception.message}) to a read of ${r.refused.count} registers at ${r.refused.start}`);
      values = s.meter.layout.decode(r.read);
      stats.lastLatencyMs = this.options.now() - timeMs;
    } catch (err) {
      values = null;
      stats.lastProblem = err instanceof Error ? err.message : String(err);
    }
    // Counters read now (an energy second, or a block that holds them with power) replace the kept ones.
    // Otherwise the kept counters stand, all of them, with the time they were read (never a mix of two reads).
    const fresh = values !== null && ENERGY.every((q) => values?.[q] !== undefined || !s.meter.layout.has(q));
    if (fresh) s.counters = { values: pick(values as Partial<Record<Quantity, number>>, ENERGY), timeMs };
    const merged = values === null ? null : { ...values, ...s.counters?.values };
    const { reading, memory } = checkReading({ timeMs, values: merged, countersTimeMs: s.counters?.timeMs ?? timeMs }, s.memory, s.meter.limits ?? DEFAULT_METER_LIMITS);
    s.memory = memory;
    if (values === null) stats.failed++;
    else if (reading.quality !== 0) {
      stats.flagged++;
      stats.lastProblem = reading.problems.join("; ");
    } else stats.good++;
    this.onReading(s.meter.meterId, reading);
  }
}

function pick(values: Partial<Record<Quantity, number>>, names: readonly Quantity[]): Partial<Record<Quantity, number>> {
  const out: Partial<Record<Quantity, number>> = {};
  for (const n of names) if (values[n] !== undefined) out[n] = values[n];
  return out;
}
