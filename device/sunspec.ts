// SunSpec meters (models 201-204), pure: discovery of the model chain and
// decoding of a meter model's registers with their scale factors. The map
// (device/maps/sunspec-meter.json, sources in maps/SOURCES.md) says where
// each point sits in each model; registers are read by the caller (a Bus)
// through the `read` function handed in.
//
// Discovery: the "SunS" marker (0x5375 0x6E53) at 40000, 50000 or 0 (PDU
// addresses); models follow at base + 2, each an ID and a length L, the
// next at current + 2 + L, until ID 0xFFFF. Bounded: at most MODELS_MAX
// models, never past register 65535.
//
// Decoding: value = raw x 10^sf, raw and sf read in the same poll (a scale
// factor may change between polls). "Not implemented" values (int16
// 0x8000, sunssf 0x8000) give no value; so does a point whose scale factor
// is not implemented.
import { type BlockWords, type MeterLayout, type Quantity, type ReadBlock, RegisterMapError } from "./register-map.js";

export const SUNSPEC_MAP_FORMAT = "peergrid-sunspec-map/1";
export const SUNS_MARKER = [0x5375, 0x6e53] as const;
export const SUNSPEC_BASES = [40_000, 50_000, 0] as const;
const END_MODEL_ID = 0xffff;
const MODELS_MAX = 64;
const NOT_IMPLEMENTED_INT16 = 0x8000;

export interface SunspecPoint {
  readonly offset: number;
  readonly type: "int16" | "uint16" | "acc32";
  readonly sf: string;
}

export interface SunspecModel {
  readonly id: number;
  readonly length: number;
  readonly points: ReadonlyMap<Quantity, SunspecPoint>;
  readonly scaleFactors: ReadonlyMap<string, number>; // name -> offset
}

export interface SunspecMap {
  readonly models: ReadonlyMap<number, SunspecModel>;
}

/** A model found on a device: its ID register's address and its length. */
export interface FoundModel {
  readonly id: number;
  readonly address: number;
  readonly length: number;
}

/** Parse device/maps/sunspec-meter.json (or a user's copy). */
export function parseSunspecMap(json: unknown, source: string): SunspecMap {
  const fail = (key: string, message: string): never => {
    throw new RegisterMapError(source, key, message);
  };
  const o = json as { format?: unknown; models?: Record<string, { length?: unknown; points?: Record<string, { offset?: unknown; type?: unknown; sf?: unknown }>; scaleFactors?: Record<string, { offset?: unknown }> }> };
  if (typeof o !== "object" || o === null || o.format !== SUNSPEC_MAP_FORMAT) fail("format", `expected "${SUNSPEC_MAP_FORMAT}"`);
  const models = new Map<number, SunspecModel>();
  for (const [idText, m] of Object.entries(o.models ?? fail("models", "expected the meter models"))) {
    const id = Number(idText);
    const length = m.length;
    if (!Number.isInteger(id) || id < 1 || id >= END_MODEL_ID) fail(`models.${idText}`, "a model id is a whole number from 1 to 65534");
    if (typeof length !== "number" || !Number.isInteger(length) || length < 1 || length > 125) fail(`models.${idText}.length`, "expected a whole number from 1 to 125 (one read)");
    const len = length as number;
    const scaleFactors = new Map<string, number>();
    for (const [name, sf] of Object.entries(m.scaleFactors ?? {})) {
      if (typeof sf.offset !== "number" || !Number.isInteger(sf.offset) || sf.offset < 0 || sf.offset >= len) fail(`models.${idText}.scaleFactors.${name}.offset`, `expected a whole number from 0 to ${len - 1}`);
      scaleFactors.set(name, sf.offset as number);
    }
    const points = new Map<Quantity, SunspecPoint>();
    for (const [name, p] of Object.entries(m.points ?? {})) {
      const words = p.type === "acc32" ? 2 : 1;
      if (p.type !== "int16" && p.type !== "uint16" && p.type !== "acc32") fail(`models.${idText}.points.${name}.type`, `expected "int16", "uint16" or "acc32"`);
      if (typeof p.offset !== "number" || !Number.isInteger(p.offset) || p.offset < 0 || p.offset + words > len) fail(`models.${idText}.points.${name}.offset`, `expected a whole number inside the model's ${len} registers`);
      if (typeof p.sf !== "string" || !scaleFactors.has(p.sf)) fail(`models.${idText}.points.${name}.sf`, "expected the name of one of the model's scaleFactors");
      points.set(name as Quantity, { offset: p.offset as number, type: p.type as SunspecPoint["type"], sf: p.sf as string });
    }
    models.set(id, { id, length: len, points, scaleFactors });
  }
  return { models };
}

/** Read `count` registers at `address` (holding), or null if the device refuses (an exception). */
export type RegisterReader = (address: number, count: number) => Promise<readonly number[] | null>;

/** Find the SunSpec base and walk the model chain; null when no base answers with the marker. */
export async function discoverSunspec(read: RegisterReader): Promise<{ base: number; models: FoundModel[] } | null> {
  for (const base of SUNSPEC_BASES) {
    const marker = await read(base, 2);
    if (marker === null || marker[0] !== SUNS_MARKER[0] || marker[1] !== SUNS_MARKER[1]) continue;
    const models: FoundModel[] = [];
    let address = base + 2;
    while (models.length < MODELS_MAX && address + 1 <= 0xffff) {
      const header = await read(address, 1);
      const id = header?.[0];
      if (id === undefined || id === END_MODEL_ID) break; // some devices give no length after the end marker
      const lengthWords = await read(address + 1, 1);
      const length = lengthWords?.[0];
      if (length === undefined) break;
      models.push({ id, address, length });
      address += 2 + length;
    }
    return { base, models };
  }
  return null;
}

/** The first meter model (201-204) the map knows among those found. */
export function meterModelOf(map: SunspecMap, found: readonly FoundModel[]): { found: FoundModel; model: SunspecModel } | null {
  for (const f of found) {
    const model = map.models.get(f.id);
    if (model !== undefined && f.length >= model.length) return { found: f, model };
  }
  return null;
}

/** A SunSpec meter model found on a device, as a layout for the poller: one read of the model's data registers. */
export function sunspecLayout(model: SunspecModel, found: FoundModel): MeterLayout {
  const block: ReadBlock = { table: "holding", start: found.address + 2, count: model.length };
  return {
    name: `sunspec-${model.id}`,
    has: (q) => model.points.has(q),
    planReads: (wanted) => (wanted === undefined || wanted.some((q) => model.points.has(q)) ? [block] : []),
    decode: (read: readonly BlockWords[]) => {
      const r = read.find((x) => x.block.start === block.start && x.block.table === block.table);
      return r === undefined ? {} : decodeSunspec(model, Array.from(r.words));
    },
  };
}

/** Decode a meter model's data registers (the `model.length` registers after its ID and L), in canonical units. */
export function decodeSunspec(model: SunspecModel, words: readonly number[]): Partial<Record<Quantity, number>> {
  if (words.length < model.length) throw new RangeError(`model ${model.id} has ${model.length} registers, ${words.length} were read`);
  const int16 = (w: number) => (w >= 0x8000 ? w - 0x10000 : w);
  const out: Partial<Record<Quantity, number>> = {};
  for (const [name, p] of model.points) {
    const sfWord = words[model.scaleFactors.get(p.sf) as number] as number;
    if (sfWord === NOT_IMPLEMENTED_INT16) continue;
    const sf = int16(sfWord);
    if (sf < -10 || sf > 10) continue; // outside the specification's range: not a usable scale
    let raw: number;
    if (p.type === "acc32") {
      raw = (words[p.offset] as number) * 0x10000 + (words[p.offset + 1] as number);
    } else {
      const w = words[p.offset] as number;
      if ((p.type === "int16" && w === NOT_IMPLEMENTED_INT16) || (p.type === "uint16" && w === 0xffff)) continue;
      raw = p.type === "int16" ? int16(w) : w;
    }
    out[name] = sf >= 0 ? raw * 10 ** sf : raw / 10 ** -sf; // divide for negative scales: 2305 x 10^-1 is exactly 230.5
  }
  return out;
}
