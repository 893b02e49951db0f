// Commissioning: `peergrid meter read`, for the installer in the basement.
// One meter, by map, over TCP or a serial line: every quantity as JSON, or,
// when it does not work, a diagnosis in the installer's terms (wrong unit
// id, wrong baud or parity, wiring, wrong map, word order suspected).
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Bus, type BusLink, ModbusError, ModbusErrorCode, readBlocks } from "./bus.js";
import { TcpLink } from "./modbus-tcp.js";
import { RtuLink } from "./modbus-rtu.js";
import { type SunspecMap, parseSunspecMap } from "./sunspec.js";
import { DEFAULT_METER_LIMITS, type MeterLimits, checkReading } from "./reading-check.js";
import { type Quantity, type RegisterMap, RegisterMapError, type SerialSettings, decodeQuantities, parseRegisterMap, planReads } from "./register-map.js";

/** The maps shipped with peergrid (device/maps/). */
export const BUILT_IN_MAPS_DIR = fileURLToPath(new URL("../../device/maps/", import.meta.url));

/** A map by name (one shipped with peergrid) or by path to a JSON file. */
export function loadRegisterMap(nameOrPath: string): RegisterMap {
  const path = /[/\\]|\.json$/.test(nameOrPath) ? nameOrPath : `${BUILT_IN_MAPS_DIR}${nameOrPath}.json`;
  return parseRegisterMap(readMapJson(path), path);
}

/** The SunSpec meter models shipped with peergrid (maps/sunspec-meter.json). */
export function builtInSunspecMap(): SunspecMap {
  const path = `${BUILT_IN_MAPS_DIR}sunspec-meter.json`;
  return parseSunspecMap(readMapJson(path), path);
}

function readMapJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new RegisterMapError(path, "", `cannot read the map (${(err as NodeJS.ErrnoException).code ?? String(err)}); shipped maps: eastron-sdm630, eastron-sdm72, eastron-sdm72-v1, eastron-sdm120, carlo-gavazzi-em24, carlo-gavazzi-em340`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new RegisterMapError(path, "", `not valid JSON: ${(err as Error).message}`);
  }
}

export type MeterAddress = { readonly kind: "tcp"; readonly host: string; readonly port: number } | ({ readonly kind: "rtu"; readonly path: string } & SerialSettings);

export interface MeterReadOptions {
  readonly map: RegisterMap;
  readonly address: MeterAddress;
  readonly unit: number;
  readonly timeoutMs: number;
  readonly limits?: MeterLimits;
}

export interface MeterReadResult {
  readonly ok: boolean;
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
  const base = { map: o.map.name, link: link.label, unit: o.unit };
  const factory = o.map.serialDefault;
  const factoryText = `${factory.baud} ${factory.dataBits}${factory.parity[0]?.toUpperCase()}${factory.stopBits}, unit ${o.map.unitIdDefault}`;
  try {
    const r = await readBlocks(bus, o.unit, planReads(o.map));
    if ("refused" in r) {
      const { refused: block, exception } = r;
      return { ...base, ok: false, values: null, problems: [exception.message], diagnosis: `unit ${o.unit} answered, but refused ${block.count} ${block.table} registers at ${block.start} (${exception.message}): this meter is probably not a ${o.map.manufacturer} ${o.map.model}; try another --map` };
    }
    const read = r.read;
    const values = decodeQuantities(o.map, read);
    const limits = o.limits ?? DEFAULT_METER_LIMITS;
    const checked = checkReading({ timeMs: 0, values, countersTimeMs: 0 }, null, limits).reading;
    if (checked.quality === 0) return { ...base, ok: true, values, problems: [], diagnosis: null };
    const swapped = swapWordOrder(o.map);
    const other = swapped === null ? null : decodeQuantities(swapped, read);
    const otherOk = other !== null && checkReading({ timeMs: 0, values: other, countersTimeMs: 0 }, null, limits).reading.quality === 0;
    const diagnosis = otherOk
      ? `the values are implausible as the map reads them, and plausible with the other word order: the map's wordOrder is probably wrong for this meter (values with the other order: ${JSON.stringify(other)})`
      : `the meter answered, but the values are implausible (${checked.problems.join("; ")}): a wrong --map, or a meter not wired to the grid yet`;
    return { ...base, ok: false, values, problems: checked.problems, diagnosis };
  } catch (err) {
    if (!(err instanceof ModbusError)) throw err;
    return { ...base, ok: false, values: null, problems: [err.message], diagnosis: diagnose(err, o, factoryText) };
  } finally {
    await bus.close();
  }
}

function diagnose(err: ModbusError, o: MeterReadOptions, factoryText: string): string {
  const a = o.address;
  switch (err.code) {
    case ModbusErrorCode.timeout:
      return a.kind === "tcp"
        ? `connected to ${a.host}:${a.port}, but unit ${o.unit} did not answer: check the unit id (a gateway passes it to the serial bus; the meter's factory id is ${o.map.unitIdDefault})`
        : `no answer from unit ${o.unit} on ${a.path}: check the unit id, the A and B wires (swap them if unsure), and the baud rate and parity (this meter leaves the factory at ${factoryText})`;
    case ModbusErrorCode.garbage:
      return a.kind === "tcp"
        ? `${a.host}:${a.port} answered with something that is not a Modbus TCP reply: is it a Modbus TCP device (or a raw serial server that needs RTU framing)?`
        : `bytes arrived on ${a.path}, but not a valid reply: a baud rate or parity mismatch is likely (this meter leaves the factory at ${factoryText}), or two devices share unit ${o.unit}`;
    case ModbusErrorCode.dropped:
      return a.kind === "tcp"
        ? `connected to ${a.host}:${a.port}, but it closed the connection when unit ${o.unit} was asked: it may have no unit ${o.unit} (check the unit id; the meter's factory id is ${o.map.unitIdDefault})`
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
  readonly maps: readonly RegisterMap[];
  readonly limits?: MeterLimits;
}

export interface MeterScanResult {
  readonly link: string;
  /** Units that answered (a reply or an exception), each with the maps whose reads all succeed and decode to plausible values. */
  readonly answering: readonly { readonly unit: number; readonly fits: readonly string[] }[];
}

/**
 * `peergrid meter scan`: which unit ids answer on a bus, and which shipped
 * maps fit them. A unit answers if it replies to a read of two registers at
 * 0 at all (an exception counts: something is there); a map fits if every
 * block it reads comes back and the values pass the reading checks.
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
      for (const map of o.maps) if (await fitsMap(bus, map, unit, o.limits ?? DEFAULT_METER_LIMITS)) fits.push(map.name);
      answering.push({ unit, fits });
    }
    return { link: link.label, answering };
  } finally {
    await bus.close();
  }
}

async function fitsMap(bus: Bus, map: RegisterMap, unit: number, limits: MeterLimits): Promise<boolean> {
  let r: Awaited<ReturnType<typeof readBlocks>>;
  try {
    r = await readBlocks(bus, unit, planReads(map));
  } catch (err) {
    if (err instanceof ModbusError) return false;
    throw err;
  }
  return !("refused" in r) && checkReading({ timeMs: 0, values: decodeQuantities(map, r.read), countersTimeMs: 0 }, null, limits).reading.quality === 0;
}

/** Every map shipped in device/maps/ (SunSpec aside: it is found by discovery, not by fit). */
export function builtInMaps(): RegisterMap[] {
  return readdirSync(BUILT_IN_MAPS_DIR)
    .filter((f) => f.endsWith(".json") && !f.startsWith("sunspec"))
    .sort()
    .map((f) => loadRegisterMap(`${BUILT_IN_MAPS_DIR}${f}`));
}
