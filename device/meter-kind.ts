// What kind of meter a box talks to, by the name an installer gives: a fixed
// register map (a shipped name such as eastron-sdm630, or a map file), or
// "sunspec", a meter that describes its own registers (SunSpec models
// 201-204), whose layout is found on the device by discovery.
//
// Both end as a MeterLayout (register-map.ts) for the poller and for
// `peergrid meter read`: a fixed map at once, a SunSpec meter once
// discovery over its bus has found its meter model.
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { PeergridError } from "../ledger/errors.js";
import { type Bus, readRegisters } from "./bus.js";
import { type MeterLayout, type RegisterMap, RegisterMapError, type SerialSettings, fixedLayout, parseRegisterMap } from "./register-map.js";
import { type SunspecMap, discoverSunspec, meterModelOf, parseSunspecMap, sunspecLayout } from "./sunspec.js";

export const SUNSPEC = "sunspec";

/** What --map (and --meter's MAP) accepts, for help texts and errors. */
export const SHIPPED_METERS = `eastron-sdm630, eastron-sdm72, eastron-sdm72-v1, eastron-sdm120, carlo-gavazzi-em24, carlo-gavazzi-em340, or ${SUNSPEC} (a SunSpec meter, models 201-204, found on the device)`;

export type MeterKind = { readonly kind: "map"; readonly map: RegisterMap } | { readonly kind: "sunspec"; readonly map: SunspecMap };

/** Where a meter's layout comes from: known already (a fixed map), or found on the device (SunSpec). */
export type LayoutSource = MeterLayout | LayoutFinder;

export interface LayoutFinder {
  readonly name: string;
  /** Find the layout of `unit` over `bus`; throws LayoutNotFound when the device is not what was said, a ModbusError when it does not answer. */
  find(bus: Bus, unit: number): Promise<MeterLayout>;
}

export class LayoutNotFound extends PeergridError {
  constructor(message: string) {
    super("PG_ERR_METER_LAYOUT", message);
    this.name = "LayoutNotFound";
  }
}

/** The factory settings SunSpec leaves to each maker; these are the commonest (unit 1, 9600 8N1). */
const SUNSPEC_DEFAULTS = { unit: 1, serial: { baud: 9_600, parity: "none", dataBits: 8, stopBits: 1 } } as const;

/** "sunspec", a shipped map's name, or a map file. */
export function loadMeterKind(nameOrPath: string): MeterKind {
  return nameOrPath === SUNSPEC ? { kind: "sunspec", map: builtInSunspecMap() } : { kind: "map", map: loadRegisterMap(nameOrPath) };
}

export function kindName(k: MeterKind): string {
  return k.kind === "map" ? k.map.name : SUNSPEC;
}

/** The unit id and serial settings a meter of this kind leaves the factory with. */
export function factoryDefaults(k: MeterKind): { readonly unit: number; readonly serial: SerialSettings } {
  return k.kind === "map" ? { unit: k.map.unitIdDefault, serial: k.map.serialDefault } : SUNSPEC_DEFAULTS;
}

export function layoutSource(k: MeterKind): LayoutSource {
  if (k.kind === "map") return fixedLayout(k.map);
  const map = k.map;
  return { name: SUNSPEC, find: (bus, unit) => findSunspecLayout(map, bus, unit) };
}

export function isFinder(s: LayoutSource): s is LayoutFinder {
  return "find" in s;
}

/** Discover a SunSpec meter on `unit` (holding registers, FC3) and lay out its first meter model the map knows. */
export async function findSunspecLayout(map: SunspecMap, bus: Bus, unit: number): Promise<MeterLayout> {
  const found = await discoverSunspec(async (address, count) => {
    const words = await readRegisters(bus, unit, "holding", address, count);
    return "kind" in words ? null : words; // refused: no SunSpec registers there
  });
  if (found === null) throw new LayoutNotFound(`unit ${unit} answered, but has no SunSpec marker ("SunS") at 40000, 50000 or 0: not a SunSpec device; name its register map instead`);
  const meter = meterModelOf(map, found.models);
  if (meter === null) {
    const ids = found.models.map((m) => m.id).join(", ") || "none";
    throw new LayoutNotFound(`unit ${unit} is a SunSpec device (base ${found.base}) with models ${ids}, but no meter model (201-204) that peergrid reads: is it an inverter rather than a meter?`);
  }
  if (meter.found.address + 2 + meter.model.length > 0x10000) throw new LayoutNotFound(`unit ${unit} announces SunSpec model ${meter.model.id} at ${meter.found.address}, which would run past register 65535: a broken model chain`);
  return sunspecLayout(meter.model, meter.found);
}

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
    throw new RegisterMapError(path, "", `cannot read the map (${(err as NodeJS.ErrnoException).code ?? String(err)}); shipped: ${SHIPPED_METERS}`);
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new RegisterMapError(path, "", `not valid JSON: ${(err as Error).message}`);
  }
}

/** Every map shipped in device/maps/ (SunSpec aside: it is found by discovery, not by fit). */
export function builtInMaps(): RegisterMap[] {
  return readdirSync(BUILT_IN_MAPS_DIR)
    .filter((f) => f.endsWith(".json") && !f.startsWith("sunspec"))
    .sort()
    .map((f) => loadRegisterMap(`${BUILT_IN_MAPS_DIR}${f}`));
}

/** Everything `peergrid meter scan` tries on a unit: every shipped map, then SunSpec discovery. */
export function builtInKinds(): MeterKind[] {
  return [...builtInMaps().map((map) => ({ kind: "map", map }) as const), { kind: "sunspec", map: builtInSunspecMap() }];
}
