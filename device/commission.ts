// Commissioning: `peergrid meter read`, for the installer in the basement.
// One meter, by map, over TCP or a serial line: every quantity as JSON, or,
// when it does not work, a diagnosis in the installer's terms (wrong unit
// id, wrong baud or parity, wiring, wrong map, word order suspected).
import { Bus, type BusLink, ModbusError, ModbusErrorCode, readBlocks } from "./bus.js";
import { TcpLink } from "./modbus-tcp.js";
import { RtuLink } from "./modbus-rtu.js";
import { DEFAULT_METER_LIMITS, type MeterLimits, checkReading } from "./reading-check.js";
import { LayoutNotFound, type MeterKind, factoryDefaults, isFinder, kindName, layoutSource } from "./meter-kind.js";
import { type MeterLayout, type Quantity, type RegisterMap, type SerialSettings, decodeQuantities } from "./register-map.js";

export type MeterAddress = { readonly kind: "tcp"; readonly host: string; readonly port: number } | ({ readonly kind: "rtu"; readonly path: string } & SerialSettings);

export interface MeterReadOptions {
  readonly kind: MeterKind;
  readonly address: MeterAddress;
  readonly unit: number;
  readonly timeoutMs: number;
  readonly limits?: MeterLimits;
}

export interface MeterReadResult {
  readonly ok: boolean;
  /** The map read with (a SunSpec meter's model once found, e.g. sunspec-203). */
  readonly map: string;
  readonly link: string;
  readonly unit: number;
  readonly values: Partial<Record<Quantity, number>> | null;
  /** What is wrong and what to try, when ok is false. */
  readonly diagnosis: string | null;
  readonly problems: readonly string[];
}

export function linkFor(a: MeterAddress): BusLink {
  return a.kind === "tcp" ? new TcpLink({ host: a.host, port: a.port, reconnectDelayMsMin: 1 }) : new RtuLink({ path: a.path, baud: a.baud, parity: a.parity, dataBits: a.dataBits, stopBits: a.stopBits, reopenDelayMsMin: 1 });
}

export async function meterRead(o: MeterReadOptions): Promise<MeterReadResult> {
  const link = linkFor(o.address);
  const bus = new Bus(link, { timeoutMs: o.timeoutMs, retriesMax: 1 });
  let base = { map: kindName(o.kind), link: link.label, unit: o.unit };
  const what = o.kind.kind === "map" ? `a ${o.kind.map.manufacturer} ${o.kind.map.model}` : "a SunSpec meter";
  try {
    const source = layoutSource(o.kind);
    let layout: MeterLayout;
    try {
      layout = isFinder(source) ? await source.find(bus, o.unit) : source;
    } catch (err) {
      if (!(err instanceof LayoutNotFound)) throw err;
      return { ...base, ok: false, values: null, problems: [err.message], diagnosis: err.message };
    }
    base = { ...base, map: layout.name };
    const r = await readBlocks(bus, o.unit, layout.planReads());
    if ("refused" in r) {
      const { refused: block, exception } = r;
      const refusedText = `unit ${o.unit} answered, but refused ${block.count} ${block.table} registers at ${block.start} (${exception.message})`;
      const why =
        exception.code === 10 || exception.code === 11
          ? `the gateway got no answer from unit ${o.unit} on its serial side: check that meter's unit id, wiring and power`
          : o.kind.kind === "sunspec"
            ? `the SunSpec model it announces (${layout.name}) cannot be read: its model chain may be wrong`
            : `this meter is probably not ${what}; try another --map`;
      return { ...base, ok: false, values: null, problems: [exception.message], diagnosis: `${refusedText}: ${why}` };
    }
    const read = r.read;
    const values = layout.decode(read);
    const limits = o.limits ?? DEFAULT_METER_LIMITS;
    const checked = checkReading({ timeMs: 0, values, countersTimeMs: 0 }, null, limits).reading;
    if (checked.quality === 0) return { ...base, ok: true, values, problems: [], diagnosis: null };
    const swapped = o.kind.kind === "map" ? swapWordOrder(o.kind.map) : null; // SunSpec fixes the word order
    const other = swapped === null ? null : decodeQuantities(swapped, read);
    const otherOk = other !== null && checkReading({ timeMs: 0, values: other, countersTimeMs: 0 }, null, limits).reading.quality === 0;
    const diagnosis = otherOk
      ? `the values are implausible as the map reads them, and plausible with the other word order: the map's wordOrder is probably wrong for this meter (values with the other order: ${JSON.stringify(other)})`
      : `the meter answered, but the values are implausible (${checked.problems.join("; ")}): a wrong --map, or a meter not wired to the grid yet`;
    return { ...base, ok: false, values, problems: checked.problems, diagnosis };
  } catch (err) {
    if (!(err instanceof ModbusError)) throw err;
    return { ...base, ok: false, values: null, problems: [err.message], diagnosis: diagnose(err, o) };
  } finally {
    await bus.close();
  }
}

function diagnose(err: ModbusError, o: MeterReadOptions): string {
  const a = o.address;
  const factory = factoryDefaults(o.kind);
  const s = factory.serial;
  const settings = `${s.baud} ${s.dataBits}${s.parity[0]?.toUpperCase()}${s.stopBits}, unit ${factory.unit}`;
  const factoryText = o.kind.kind === "map" ? `this meter leaves the factory at ${settings}` : `SunSpec meters often leave the factory at ${settings}; the meter's manual says`;
  switch (err.code) {
    case ModbusErrorCode.timeout:
      return a.kind === "tcp"
        ? `connected to ${a.host}:${a.port}, but unit ${o.unit} did not answer: check the unit id (a gateway passes it to the serial bus; the meter's factory id is ${factory.unit})`
        : `no answer from unit ${o.unit} on ${a.path}: check the unit id, the A and B wires (swap them if unsure), and the baud rate and parity (${factoryText})`;
    case ModbusErrorCode.garbage:
      return a.kind === "tcp"
        ? `${a.host}:${a.port} answered with something that is not a Modbus TCP reply: is it a Modbus TCP device (or a raw serial server that needs RTU framing)?`
        : `bytes arrived on ${a.path}, but not a valid reply: a baud rate or parity mismatch is likely (${factoryText}), or two devices share unit ${o.unit}`;
    case ModbusErrorCode.dropped:
      return a.kind === "tcp"
        ? `connected to ${a.host}:${a.port}, but it closed the connection when unit ${o.unit} was asked: it may have no unit ${o.unit} (check the unit id; the meter's factory id is ${factory.unit})`
        : `${a.path} went away during the read: is the adapter seated?`;
    default:
      return a.kind === "tcp"
        ? `cannot reach ${a.host}:${a.port}: is the meter (or its gateway) powered, on this network, and is the port right (Modbus TCP is usually 502)?`
        : `cannot use ${a.path}: the adapter may be unplugged, or this user may lack permission (add it to the dialout group)`;
  }
}

/** The map with the word order of every 32/64-bit quantity reversed, or null if it has none. */
function swapWordOrder(m: RegisterMap): RegisterMap | null {
  const quantities = new Map([...m.quantities].map(([k, q]) => [k, q.words > 1 ? { ...q, wordOrder: q.wordOrder === "high-first" ? ("low-first" as const) : ("high-first" as const) } : q]));
  return [...m.quantities.values()].some((q) => q.words > 1) ? { ...m, quantities } : null;
}

export interface MeterScanOptions {
  readonly address: MeterAddress;
  readonly units: readonly number[];
  readonly timeoutMs: number;
  readonly kinds: readonly MeterKind[];
  readonly limits?: MeterLimits;
}

export interface MeterScanResult {
  readonly link: string;
  /** Units that answered (a reply or an exception), each with the maps whose reads all succeed and decode to plausible values (a SunSpec meter's as sunspec-2xx). */
  readonly answering: readonly { readonly unit: number; readonly fits: readonly string[] }[];
}

/**
 * `peergrid meter scan`: which unit ids answer on a bus, and which shipped
 * maps fit them. A unit answers if it replies to a read of two registers at
 * 0 at all (an exception counts: something is there); a map fits if every
 * block it reads comes back and the values pass the reading checks; SunSpec
 * fits if discovery finds a meter model that reads the same way.
 */
export async function meterScan(o: MeterScanOptions): Promise<MeterScanResult> {
  const link = linkFor(o.address);
  const bus = new Bus(link, { timeoutMs: o.timeoutMs, retriesMax: 0, gapMs: 20 });
  const answering: { unit: number; fits: string[] }[] = [];
  try {
    for (const unit of o.units) {
      const present = await bus.request({ fn: 4, unit, address: 0, count: 2 }).then(
        () => true,
        (err: unknown) => {
          if (err instanceof ModbusError) return false;
          throw err;
        },
      );
      if (!present) continue;
      const fits: string[] = [];
      for (const kind of o.kinds) {
        const fit = await fitting(bus, kind, unit, o.limits ?? DEFAULT_METER_LIMITS);
        if (fit !== null) fits.push(fit);
      }
      answering.push({ unit, fits });
    }
    return { link: link.label, answering };
  } finally {
    await bus.close();
  }
}

/** The name of the layout `kind` reads `unit` with, if every read succeeds and the values pass the checks; else null. */
async function fitting(bus: Bus, kind: MeterKind, unit: number, limits: MeterLimits): Promise<string | null> {
  try {
    const source = layoutSource(kind);
    const layout = isFinder(source) ? await source.find(bus, unit) : source;
    const r = await readBlocks(bus, unit, layout.planReads());
    return !("refused" in r) && checkReading({ timeMs: 0, values: layout.decode(r.read), countersTimeMs: 0 }, null, limits).reading.quality === 0 ? layout.name : null;
  } catch (err) {
    if (err instanceof ModbusError || err instanceof LayoutNotFound) return null;
    throw err;
  }
}
