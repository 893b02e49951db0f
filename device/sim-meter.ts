// A simulated meter: a Modbus TCP server that shows the register image of
// any register map (an Eastron SDM630 by default) for a household with a
// solar array, so the demo and the tests read it through exactly the same
// driver code as a real meter (bus.ts, modbus-tcp.ts, register-map.ts).
//
// Power is the household's load minus the array's output (profiles.ts), or
// whatever the `power` option says (a premise of sim/premise.ts, composed by
// the daemon): + imports from the grid, - exports. It is split evenly over
// the phases the map has; current follows from power and voltage. The energy counters
// integrate the power between reads (trapezoid rule), import and export
// separately, so they only ever grow. A read must lie inside one of the
// map's read blocks, as on the real meter; anything else is answered with
// exception 2 (illegal data address). Requests for another unit id get no
// answer, as on a shared bus.
import type { Reply, Request } from "./modbus-frame.js";
import { type ModbusTcpServer, startModbusTcpServer } from "./modbus-tcp-server.js";
import { type LoadProfile, type SolarProfile, householdLoadW, solarPowerW } from "./profiles.js";
import { type Quantity, type RegisterMap, encodeValue } from "./register-map.js";

export interface SimulatedMeterOptions {
  readonly map: RegisterMap;
  readonly unit: number;
  readonly solar: SolarProfile;
  readonly load: LoadProfile;
  /**
   * The premise's net power at a time, W (+ import, - export); when given it
   * replaces `solar` and `load`. The daemon composes it from sim/premise.ts
   * (device/ does not import sim/). It is asked in non-decreasing time.
   */
  readonly power?: (timeMs: number) => number;
  readonly voltageV: number;
  readonly frequencyHz: number;
  readonly importWh: number; // counters at start
  readonly exportWh: number;
  readonly now: () => number;
  readonly host: string;
  readonly port: number; // 0: any free port
}

const MS_PER_HOUR = 3_600_000;

export class SimulatedMeter {
  private importWh: number;
  private exportWh: number;
  private lastMs: number;
  private lastPowerW: number;
  private server!: ModbusTcpServer;

  private constructor(readonly options: SimulatedMeterOptions) {
    this.importWh = options.importWh;
    this.exportWh = options.exportWh;
    this.lastMs = options.now();
    this.lastPowerW = this.powerW(this.lastMs);
  }

  static async start(options: Pick<SimulatedMeterOptions, "map"> & Partial<SimulatedMeterOptions>): Promise<SimulatedMeter> {
    const o: SimulatedMeterOptions = {
      unit: 1,
      solar: { peakW: 4_000, sunriseHour: 6, sunsetHour: 20, utcOffsetHours: 0 },
      load: { baseW: 300, morningPeakW: 1_200, eveningPeakW: 2_000, utcOffsetHours: 0 },
      voltageV: 230,
      frequencyHz: 50,
      importWh: 1_000_000,
      exportWh: 100_000,
      now: Date.now,
      host: "127.0.0.1",
      port: 0,
      ...options,
    };
    const meter = new SimulatedMeter(o);
    meter.server = await startModbusTcpServer({ serves: (unit) => unit === o.unit, answer: (r) => meter.answer(r) }, o.host, o.port);
    return meter;
  }

  get port(): number {
    return this.server.port;
  }

  /** + importing from the grid, - exporting. */
  powerW(timeMs: number): number {
    const power = this.options.power;
    if (power === undefined) return householdLoadW(timeMs, this.options.load) - solarPowerW(timeMs, this.options.solar);
    const w = power(timeMs);
    if (!Number.isFinite(w)) throw new RangeError(`a simulated meter's power must be a finite number of W, got ${w}`);
    return w;
  }

  /** What the meter shows now, in canonical units; the counters advance to `timeMs`. */
  values(timeMs = this.options.now()): Partial<Record<Quantity, number>> {
    this.advance(timeMs);
    const o = this.options;
    const phases = (["L1", "L2", "L3"] as const).filter((p) => o.map.quantities.has(`voltage${p}`));
    const n = Math.max(1, phases.length);
    const p = this.lastPowerW;
    const out: Partial<Record<Quantity, number>> = { powerTotal: p, frequency: o.frequencyHz, importEnergy: this.importWh, exportEnergy: this.exportWh };
    for (const ph of phases) {
      out[`voltage${ph}`] = o.voltageV;
      out[`power${ph}`] = p / n;
      out[`current${ph}`] = Math.abs(p / n) / o.voltageV;
    }
    return out;
  }

  private advance(timeMs: number): void {
    if (timeMs <= this.lastMs) return;
    const p = this.powerW(timeMs);
    const dtMs = timeMs - this.lastMs;
    // Trapezoid, with the zero crossing split so that import and export each get their part.
    const [a, b] = [this.lastPowerW, p];
    const importWh = (a >= 0 && b >= 0) || (a <= 0 && b <= 0) ? Math.max(0, (a + b) / 2) * dtMs : (Math.max(a, b) ** 2 / (2 * Math.abs(a - b))) * dtMs;
    const exportWh = (a >= 0 && b >= 0) || (a <= 0 && b <= 0) ? Math.max(0, -(a + b) / 2) * dtMs : (Math.min(a, b) ** 2 / (2 * Math.abs(a - b))) * dtMs;
    this.importWh += importWh / MS_PER_HOUR;
    this.exportWh += exportWh / MS_PER_HOUR;
    this.lastMs = timeMs;
    this.lastPowerW = p;
  }

  /** The registers of a read, or null if it is not inside one of the map's blocks. */
  registers(table: "input" | "holding", start: number, count: number): number[] | null {
    const m = this.options.map;
    const block = m.blocks.find((b) => b.table === table && b.start <= start && start + count <= b.start + b.count);
    if (block === undefined) return null;
    const words = new Array<number>(count).fill(0);
    const values = this.values();
    for (const [name, q] of m.quantities) {
      const v = values[name];
      if (v === undefined || q.table !== table || q.address + q.words <= start || q.address >= start + count) continue;
      encodeValue(q, v).forEach((w, i) => {
        const at = q.address + i - start;
        if (at >= 0 && at < count) words[at] = w;
      });
    }
    return words;
  }

  private answer(r: Request): Reply {
    if (r.fn !== 3 && r.fn !== 4) return { kind: "exception", code: 1, message: "illegal function" };
    const words = this.registers(r.fn === 4 ? "input" : "holding", r.address, r.count);
    return words === null ? { kind: "exception", code: 2, message: "illegal data address" } : { kind: "registers", values: words };
  }

  async close(): Promise<void> {
    await this.server.close();
  }
}
