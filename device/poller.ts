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
// A SunSpec meter's layout is found on the device (meter-kind.ts) at its
// first poll, and found again after the device refuses a read (replaced, or
// its firmware changed); until it is found its readings are comms errors,
// and discovery is tried again no sooner than a doubling wait (10 s .. 5 min)
// so a missing device does not take the bus's time every second.
//
// A second whose poll would start while the last one is still running (a
// bus too slow for its meters) is skipped and counted, never queued: the
// bus queue stays short and readings stay on their seconds.
import { doublingMs } from "../ledger/assert.js";
import { type Bus, readBlocks } from "./bus.js";
import { type CheckedReading, DEFAULT_METER_LIMITS, type MeterLimits, type MeterMemory, checkReading } from "./reading-check.js";
import { type LayoutSource, isFinder } from "./meter-kind.js";
import { type MeterLayout, QUANTITIES, type Quantity, type ReadBlock } from "./register-map.js";

export interface PolledMeter {
  /** The box's meter channel (0..255), as in the ledger's readings. */
  readonly meterId: number;
  /** Where its quantities are: fixedLayout(map), or a finder that discovers them on the device (SunSpec). */
  readonly layout: LayoutSource;
  readonly unit: number;
  readonly limits?: MeterLimits;
  /** Read blocks that hold only energy counters every this many seconds (1: every second). */
  readonly energyEveryS?: number;
  /** The last good counters known (the ledger's, after a restart): checks and failed polls start from them. */
  readonly memory?: MeterMemory | null;
}

export interface PollerOptions {
  /** One poll per this many of `now`'s ms, on its boundaries. */
  readonly periodMs: number;
  readonly now: () => number;
  /**
   * How many of `now`'s ms pass in one real ms (default 1; the demo's accelerated clock, daemon/sim-clock.ts):
   * timers are armed in real ms, and the timing statistics are kept in real ms.
   */
  readonly clockRate: number;
}

export interface MeterPollStats {
  polls: number;
  good: number;
  failed: number; // polls with no answer (commsError)
  flagged: number; // answered, but a value did not pass its checks
  lastProblem: string | null;
  lastLatencyMs: number | null; // from the poll's start to its last reply
  layout: string | null; // the layout in use (a SunSpec meter's once found)
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

const FIND_RETRY_MS_MIN = 10_000;
const FIND_RETRY_MS_MAX = 300_000;

interface MeterState {
  readonly meter: PolledMeter;
  layout: MeterLayout | null; // null: still to be found on the device
  everyBlock: readonly ReadBlock[]; // read every second
  energyOnly: readonly ReadBlock[]; // read every energyEveryS seconds
  findFailures: number;
  findAgainMs: number;
  findProblem: string; // why the last try to find the layout failed
  readsSinceFound: number; // reads the device answered with the layout in use
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
  private lastDueMs = -Infinity;

  constructor(
    private readonly bus: Bus,
    meters: readonly PolledMeter[],
    private readonly onReading: (meterId: number, reading: CheckedReading) => void,
    options: Partial<PollerOptions> = {},
  ) {
    this.options = { periodMs: 1_000, now: Date.now, clockRate: 1, ...options };
    const ids = new Set(meters.map((m) => m.meterId));
    if (ids.size !== meters.length) throw new RangeError("two meters with one meterId on a bus");
    this.states = meters.map((meter) => {
      this.stats.meters.set(meter.meterId, { polls: 0, good: 0, failed: 0, flagged: 0, lastProblem: null, lastLatencyMs: null, layout: null });
      const s: MeterState = { meter, layout: null, everyBlock: [], energyOnly: [], findFailures: 0, findAgainMs: 0, findProblem: "", readsSinceFound: 0, memory: meter.memory ?? null, counters: null };
      if (!isFinder(meter.layout)) this.use(s, meter.layout);
      return s;
    });
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.schedule();
  }

  /** Forget the poll start offsets and round times so far (a benchmark resets after its warm-up). */
  resetTimings(): void {
    this.stats.offsetsMs.length = 0;
    this.stats.roundsMs.length = 0;
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
    // The next second boundary, and never one already served: a timer may fire a hair before its
    // second by the wall clock (timers run on the monotonic clock), and must not serve that second
    // twice. A wall clock stepped back by more than a period (NTP) starts afresh from its new time.
    const next = now - (now % p) + p;
    const dueMs = next <= this.lastDueMs && this.lastDueMs - now <= p ? this.lastDueMs + p : next;
    this.timer = setTimeout(() => {
      this.timer = null;
      // Seconds passed over (an event loop stalled past a whole period, a clock stepped forward) had no poll: count them.
      const passed = Number.isFinite(this.lastDueMs) && dueMs > this.lastDueMs + p ? Math.round((dueMs - this.lastDueMs) / p) - 1 : 0;
      this.stats.seconds += passed;
      this.stats.skipped += passed;
      this.lastDueMs = dueMs;
      this.tick(dueMs);
      this.schedule();
    }, Math.ceil((dueMs - now) / this.options.clockRate));
  }

  private tick(dueMs: number): void {
    this.stats.seconds++;
    if (this.polling) {
      this.stats.skipped++;
      return;
    }
    const startMs = this.options.now();
    this.stats.offsetsMs.push(this.realMs(startMs - dueMs));
    if (this.stats.offsetsMs.length > OFFSETS_KEPT) this.stats.offsetsMs.shift();
    this.polling = true;
    const second = this.second++;
    void this.pollAll(second).finally(() => {
      this.polling = false;
      this.stats.roundsMs.push(this.realMs(this.options.now() - startMs));
      if (this.stats.roundsMs.length > OFFSETS_KEPT) this.stats.roundsMs.shift();
    });
  }

  /** A duration on the poller's clock in real ms (statistics are about the bus, which runs in real time). */
  private realMs(clockMs: number): number {
    return this.options.clockRate === 1 ? clockMs : Math.round(clockMs / this.options.clockRate);
  }

  /** One round: every meter in turn (they share the bus: the bus orders the requests anyway). */
  async pollAll(second = this.second++): Promise<void> {
    for (const s of this.states) await this.pollOne(s, second);
  }

  private use(s: MeterState, layout: MeterLayout): void {
    s.layout = layout;
    s.everyBlock = layout.planReads(ALL_QUANTITIES.filter((q) => !ENERGY.includes(q) && layout.has(q)));
    s.energyOnly = layout.planReads().filter((b) => !s.everyBlock.includes(b));
    (this.stats.meters.get(s.meter.meterId) as MeterPollStats).layout = layout.name;
  }

  /**
   * A found layout the device refuses to read: it changed under it (replaced, new firmware). Find it again: at
   * once if the layout had served reads, else (found, then refused straight away) after the doubling wait.
   */
  private lose(s: MeterState, timeMs: number): void {
    s.layout = null;
    (this.stats.meters.get(s.meter.meterId) as MeterPollStats).layout = null;
    if (s.readsSinceFound > 0) s.findAgainMs = 0;
    else this.findFailed(s, timeMs, "the layout it found was refused at once");
  }

  private findFailed(s: MeterState, timeMs: number, problem: string): void {
    s.findFailures++;
    s.findAgainMs = timeMs + doublingMs(s.findFailures - 1, FIND_RETRY_MS_MIN, FIND_RETRY_MS_MAX);
    s.findProblem = problem;
  }

  /** The meter's layout, found now if it is still to be found and its wait is over; null if not (yet) known. */
  private async layoutOf(s: MeterState, timeMs: number): Promise<MeterLayout | null> {
    const source = s.meter.layout;
    if (s.layout !== null || !isFinder(source) || timeMs < s.findAgainMs) return s.layout;
    try {
      this.use(s, await source.find(this.bus, s.meter.unit));
      s.readsSinceFound = 0;
    } catch (err) {
      this.findFailed(s, timeMs, err instanceof Error ? err.message : String(err));
      throw err;
    }
    return s.layout;
  }

  private async pollOne(s: MeterState, second: number): Promise<void> {
    const stats = this.stats.meters.get(s.meter.meterId) as MeterPollStats;
    const timeMs = this.options.now();
    stats.polls++;
    let values: Partial<Record<Quantity, number>> | null;
    try {
      const layout = await this.layoutOf(s, timeMs);
      if (layout === null) throw new Error(`${s.meter.layout.name} layout of unit ${s.meter.unit} not found yet (${s.findProblem}); next try in ${Math.ceil((s.findAgainMs - timeMs) / 1_000)} s`);
      const energyDue = s.counters === null || second % Math.max(1, s.meter.energyEveryS ?? 1) === 0;
      const r = await readBlocks(this.bus, s.meter.unit, energyDue ? [...s.everyBlock, ...s.energyOnly] : s.everyBlock);
      if ("refused" in r) {
        // Illegal function, address or value: the device no longer has this layout. Busy, or a gateway
        // that got no answer (5, 6, 10, 11), says nothing about the layout: a failed poll, no more.
        if (isFinder(s.meter.layout) && r.exception.code >= 1 && r.exception.code <= 3) this.lose(s, timeMs);
        throw new Error(`unit ${s.meter.unit} answered exception ${r.exception.code} (${r.exception.message}) to a read of ${r.refused.count} registers at ${r.refused.start}`);
      }
      values = layout.decode(r.read);
      s.readsSinceFound++;
      s.findFailures = 0;
      stats.lastLatencyMs = this.realMs(this.options.now() - timeMs);
    } catch (err) {
      values = null;
      stats.lastProblem = err instanceof Error ? err.message : String(err);
    }
    // Counters read now (an energy second, or a block that holds them with power) replace the kept ones.
    // Otherwise the kept counters stand, all of them, with the time they were read (never a mix of two reads).
    const fresh = values !== null && ENERGY.every((q) => values?.[q] !== undefined || s.layout?.has(q) !== true);
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
