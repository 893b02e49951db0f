// `peergrid meter simulate`: simulated meters (device/sim-meter.ts) as a
// process of their own, each a Modbus TCP server on its own port, until
// SIGTERM or Ctrl-C. For an installer trying a box with no meter wired yet,
// and for tests and benchmarks that run boxes as processes: a box reads them
// with `--meter ID=MAP@tcp:HOST:PORT`, through exactly the driver path of a
// real meter. (`peergrid demo` hosts its meters in its own process, one per
// household, daemon/demo.ts.) With `--clock` they run on the demo's
// accelerated clock (daemon/sim-clock.ts), as a box with the same --clock.
import type { RegisterMap } from "../device/register-map.js";
import { SimulatedMeter } from "../device/sim-meter.js";
import { jsonLog, onStopSignal } from "./start.js";
import type { PeerAddress } from "./transport.js";

export interface SimulateOptions {
  readonly map: RegisterMap;
  /** The first meter's address; the others take the next ports (or each any free port when the port is 0). */
  readonly listen: PeerAddress;
  readonly count: number;
  readonly unit: number;
  readonly solarPeakW: number;
  readonly loadBaseW: number;
  readonly utcOffsetHours: number;
  /** The clock the profiles and the counters run on (default: the real one). */
  readonly now?: () => number;
}

export async function runSimulatedMeters(o: SimulateOptions, write: (line: string) => void): Promise<number> {
  const log = jsonLog(write);
  const meters: SimulatedMeter[] = [];
  try {
    for (let i = 0; i < o.count; i++) {
      // Households differ a little, so that two simulated meters never show the same values.
      const spread = 1 + 0.1 * i;
      const meter = await SimulatedMeter.start({
        map: o.map,
        unit: o.unit,
        host: o.listen.host,
        port: o.listen.port === 0 ? 0 : o.listen.port + i,
        solar: { peakW: o.solarPeakW * spread, sunriseHour: 6, sunsetHour: 20, utcOffsetHours: o.utcOffsetHours },
        load: { baseW: o.loadBaseW * spread, morningPeakW: 4 * o.loadBaseW, eveningPeakW: 6.5 * o.loadBaseW, utcOffsetHours: o.utcOffsetHours },
        ...(o.now !== undefined && { now: o.now }),
      });
      meters.push(meter);
      log("info", "simulated meter", { meter: i, map: o.map.name, host: o.listen.host, port: meter.port, unit: o.unit });
    }
    log("info", "ready", { meters: meters.length });
    await new Promise<void>((resolve) => onStopSignal(log, resolve));
    return 0;
  } finally {
    await Promise.all(meters.map((m) => m.close()));
  }
}
