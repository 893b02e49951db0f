// Meter register maps as data (device/maps/*.json, SOURCES.md says where
// each register comes from): parsing with a clear error for every mistake,
// the plan of reads a poll makes, and decoding of the registers read into
// quantities in fixed units. Pure: the drivers (I/O) hand in the words.
//
// A quantity's value = raw x scale, in the map's unit, converted to the
// canonical unit of its kind: volts, amperes, watts, hertz, watt-hours.
// The scale is applied as an integer ratio (0.1 -> 1/10), so a scaled
// integer register decodes to the nearest double of the exact decimal
// (2305 x 0.1 gives 230.5, not 230.50000000000003).
//
// Invariants of a parsed map: every quantity lies wholly inside one of its
// read blocks, of the same register table; every block holds at most
// maxRegistersPerRequest registers; no two blocks of one table overlap.
import { PeergridError } from "../ledger/errors.js";
import { UNIT_ID_MAX, UNIT_ID_MIN } from "./modbus-frame.js";

export const REGISTER_MAP_FORMAT = "peergrid-register-map/1";

export const QUANTITIES = [
  "voltageL1",
  "voltageL2",
  "voltageL3",
  "currentL1",
  "currentL2",
  "currentL3",
  "powerL1",
  "powerL2",
  "powerL3",
  "powerTotal",
  "frequency",
  "importEnergy",
  "exportEnergy",
] as const;
export type Quantity = (typeof QUANTITIES)[number];

/** The unit each quantity is decoded to. */
export const CANONICAL_UNIT = {
  voltageL1: "V",
  voltageL2: "V",
  voltageL3: "V",
  currentL1: "A",
  currentL2: "A",
  currentL3: "A",
  powerL1: "W",
  powerL2: "W",
  powerL3: "W",
  powerTotal: "W",
  frequency: "Hz",
  importEnergy: "Wh",
  exportEnergy: "Wh",
} as const satisfies Record<Quantity, string>;

/** Units a map may state, each as a factor to its canonical unit. */
const UNITS: Record<string, { readonly canonical: string; readonly factor: number }> = {
  V: { canonical: "V", factor: 1 },
  A: { canonical: "A", factor: 1 },
  W: { canonical: "W", factor: 1 },
  kW: { canonical: "W", factor: 1_000 },
  Hz: { canonical: "Hz", factor: 1 },
  Wh: { canonical: "Wh", factor: 1 },
  kWh: { canonical: "Wh", factor: 1_000 },
};

export type RegisterTable = "input" | "holding";
export type ValueType = "float32" | "int16" | "uint16" | "int32" | "uint32" | "int64" | "uint64";
export type WordOrder = "high-first" | "low-first";

const WORDS: Record<ValueType, number> = { float32: 2, int16: 1, uint16: 1, int32: 2, uint32: 2, int64: 4, uint64: 4 };
const REGISTER_ADDRESS_MAX = 0xffff;
/** Modbus allows 125 registers in one read (FC3/FC4); a meter may allow fewer. */
export const MODBUS_READ_REGISTERS_MAX = 125;

export interface QuantitySpec {
  readonly table: RegisterTable;
  readonly address: number;
  readonly type: ValueType;
  readonly wordOrder: WordOrder;
  readonly words: number;
  /** raw x mul / div is the value in the canonical unit. */
  readonly mul: number;
  readonly div: number;
}

export interface ReadBlock {
  readonly table: RegisterTable;
  readonly start: number;
  readonly count: number;
}

export interface SerialSettings {
  readonly baud: number;
  readonly parity: "none" | "even" | "odd";
  readonly dataBits: 7 | 8;
  readonly stopBits: 1 | 2;
}

export interface RegisterMap {
  readonly name: string;
  readonly manufacturer: string;
  readonly model: string;
  readonly description: string;
  readonly maxRegistersPerRequest: number;
  readonly unitIdDefault: number;
  readonly serialDefault: SerialSettings;
  readonly quantities: ReadonlyMap<Quantity, QuantitySpec>;
  readonly blocks: readonly ReadBlock[];
}

export class RegisterMapError extends PeergridError {
  constructor(source: string, key: string, message: string) {
    super("PG_ERR_REGISTER_MAP", `${source}: ${key === "" ? "" : `${key}: `}${message}`);
    this.name = "RegisterMapError";
  }
}

// ---------------------------------------------------------------- parsing

type Json = Record<string, unknown>;

class Checker {
  constructor(readonly source: string) {}

  fail(key: string, message: string): never {
    throw new RegisterMapError(this.source, key, message);
  }

  object(v: unknown, key: string): Json {
    if (typeof v !== "object" || v === null || Array.isArray(v)) this.fail(key, `expected an object, found ${describe(v)}`);
    return v as Json;
  }

  string(o: Json, key: string, path: string, fallback?: string): string {
    const v = o[key] ?? fallback;
    if (typeof v !== "string" || v.length === 0 || v.length > 200) this.fail(join(path, key), `expected a non-empty string of at most 200 characters, found ${describe(v)}`);
    return v;
  }

  int(o: Json, key: string, path: string, min: number, max: number, fallback?: number): number {
    const v = o[key] ?? fallback;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) this.fail(join(path, key), `expected a whole number from ${min} to ${max}, found ${describe(v)}`);
    return v;
  }

  oneOf<T extends string>(o: Json, key: string, path: string, allowed: readonly T[], fallback?: T): T {
    const v = o[key] ?? fallback;
    if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) this.fail(join(path, key), `expected one of ${allowed.map((a) => JSON.stringify(a)).join(", ")}, found ${describe(v)}`);
    return v as T;
  }

  onlyKeys(o: Json, path: string, allowed: readonly string[]): void {
    for (const k of Object.keys(o)) if (!allowed.includes(k)) this.fail(join(path, k), `unknown key (known here: ${allowed.join(", ")})`);
  }
}

const MAP_KEYS = ["format", "name", "manufacturer", "model", "description", "function", "maxRegistersPerRequest", "unitIdDefault", "serialDefault", "quantities", "blocks", "identify"];
const QUANTITY_KEYS = ["address", "function", "type", "wordOrder", "scale", "unit"];

/** Parse and check one map (the JSON value of a map file named `source`). */
export function parseRegisterMap(json: unknown, source: string): RegisterMap {
  const c = new Checker(source);
  const o = c.object(json, "");
  c.onlyKeys(o, "", MAP_KEYS);
  if (o.format !== REGISTER_MAP_FORMAT) c.fail("format", `expected "${REGISTER_MAP_FORMAT}", found ${describe(o.format)}`);
  const name = c.string(o, "name", "");
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) c.fail("name", `use lower-case letters, digits and '-' (found ${JSON.stringify(name)})`);
  const table = c.oneOf<RegisterTable>(o, "function", "", ["input", "holding"]);
  const maxRegistersPerRequest = c.int(o, "maxRegistersPerRequest", "", 1, MODBUS_READ_REGISTERS_MAX);
  const quantities = parseQuantities(c, c.object(o.quantities, "quantities"), table);
  const blocks = parseBlocks(c, o.blocks, table, maxRegistersPerRequest, quantities);
  return {
    name,
    manufacturer: c.string(o, "manufacturer", ""),
    model: c.string(o, "model", ""),
    description: c.string(o, "description", "", name),
    maxRegistersPerRequest,
    unitIdDefault: c.int(o, "unitIdDefault", "", UNIT_ID_MIN, UNIT_ID_MAX, 1),
    serialDefault: parseSerial(c, o.serialDefault ?? { baud: 9600 }),
    quantities,
    blocks,
  };
}

function parseQuantities(c: Checker, o: Json, table: RegisterTable): Map<Quantity, QuantitySpec> {
  const out = new Map<Quantity, QuantitySpec>();
  for (const [name, raw] of Object.entries(o)) {
    const path = `quantities.${name}`;
    if (!(QUANTITIES as readonly string[]).includes(name)) c.fail(path, `unknown quantity (known: ${QUANTITIES.join(", ")})`);
    const q = c.object(raw, path);
    c.onlyKeys(q, path, QUANTITY_KEYS);
    const type = c.oneOf<ValueType>(q, "type", path, Object.keys(WORDS) as ValueType[]);
    const words = WORDS[type];
    const address = c.int(q, "address", path, 0, REGISTER_ADDRESS_MAX + 1 - words);
    if (words === 1 && q.wordOrder !== undefined) c.fail(`${path}.wordOrder`, `a ${type} is one register: remove wordOrder`);
    const wordOrder = words === 1 ? "high-first" : c.oneOf<WordOrder>(q, "wordOrder", path, ["high-first", "low-first"]);
    const unit = c.oneOf(q, "unit", path, Object.keys(UNITS));
    const u = UNITS[unit] as { canonical: string; factor: number };
    const canonical = CANONICAL_UNIT[name as Quantity];
    if (u.canonical !== canonical) c.fail(`${path}.unit`, `${name} is measured in ${canonical} (or a multiple), not ${unit}`);
    const scale = q.scale ?? 1;
    if (typeof scale !== "number" || !Number.isFinite(scale) || scale <= 0) c.fail(`${path}.scale`, `expected a positive number, found ${describe(scale)}`);
    const ratio = decimalRatio(scale * u.factor);
    if (ratio === null) c.fail(`${path}.scale`, `expected a decimal factor with at most 9 places (such as 0.1 or 0.001), found ${scale}`);
    out.set(name as Quantity, { table: c.oneOf<RegisterTable>(q, "function", path, ["input", "holding"], table), address, type, wordOrder, words, ...ratio });
  }
  if (out.size === 0) c.fail("quantities", "a map needs at least one quantity");
  return out;
}

function parseBlocks(c: Checker, raw: unknown, table: RegisterTable, max: number, quantities: ReadonlyMap<Quantity, QuantitySpec>): ReadBlock[] {
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > 64) c.fail("blocks", `expected a list of 1 to 64 read blocks ({ "start", "count" }), found ${describe(raw)}`);
  const blocks = raw.map((b, i): ReadBlock => {
    const path = `blocks[${i}]`;
    const o = c.object(b, path);
    c.onlyKeys(o, path, ["function", "start", "count"]);
    const start = c.int(o, "start", path, 0, REGISTER_ADDRESS_MAX);
    const count = c.int(o, "count", path, 1, max);
    if (start + count > REGISTER_ADDRESS_MAX + 1) c.fail(path, `runs past register ${REGISTER_ADDRESS_MAX}`);
    return { table: c.oneOf<RegisterTable>(o, "function", path, ["input", "holding"], table), start, count };
  });
  const sorted = [...blocks].sort((a, b) => (a.table === b.table ? a.start - b.start : a.table < b.table ? -1 : 1));
  sorted.forEach((b, i) => {
    const next = sorted[i + 1];
    if (next !== undefined && next.table === b.table && next.start < b.start + b.count) c.fail("blocks", `the ${b.table} blocks at ${b.start} and ${next.start} overlap`);
  });
  for (const [name, q] of quantities) {
    if (blockOf(blocks, q) === undefined) c.fail(`quantities.${name}`, `registers ${q.address}..${q.address + q.words - 1} (${q.table}) are in no read block: add a block that holds them`);
  }
  return sorted;
}

function parseSerial(c: Checker, raw: unknown): SerialSettings {
  const o = c.object(raw, "serialDefault");
  c.onlyKeys(o, "serialDefault", ["baud", "parity", "dataBits", "stopBits"]);
  const baud = c.int(o, "baud", "serialDefault", 300, 115_200);
  const parity = c.oneOf(o, "parity", "serialDefault", ["none", "even", "odd"] as const, "none");
  const dataBits = c.int(o, "dataBits", "serialDefault", 7, 8, 8) as 7 | 8;
  const stopBits = c.int(o, "stopBits", "serialDefault", 1, 2, 1) as 1 | 2;
  return { baud, parity, dataBits, stopBits };
}

/** x as mul / div with div a power of ten up to 10^9, or null. */
export function decimalRatio(x: number): { mul: number; div: number } | null {
  for (let places = 0, div = 1; places <= 9; places++, div *= 10) {
    const mul = Math.round(x * div);
    if (Math.abs(mul - x * div) <= 1e-12 * Math.max(1, Math.abs(x * div)) && Number.isSafeInteger(mul)) return { mul, div };
  }
  return null;
}

function blockOf(blocks: readonly ReadBlock[], q: QuantitySpec): ReadBlock | undefined {
  return blocks.find((b) => b.table === q.table && b.start <= q.address && q.address + q.words <= b.start + b.count);
}

function join(path: string, key: string): string {
  return path === "" ? key : `${path}.${key}`;
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  const s = JSON.stringify(v);
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}

// ---------------------------------------------------------------- reading

/**
 * What a poller needs of a meter's registers, whatever describes them: a
 * fixed map (fixedLayout below) or a SunSpec model found on the device
 * (sunspec.ts sunspecLayout).
 */
export interface MeterLayout {
  readonly name: string;
  has(q: Quantity): boolean;
  /** The reads that fetch `wanted` (all by default). */
  planReads(wanted?: readonly Quantity[]): ReadBlock[];
  decode(read: readonly BlockWords[]): Partial<Record<Quantity, number>>;
}

export function fixedLayout(map: RegisterMap): MeterLayout {
  return {
    name: map.name,
    has: (q) => map.quantities.has(q),
    planReads: (wanted) => planReads(map, wanted),
    decode: (read) => decodeQuantities(map, read),
  };
}

/** The reads that fetch `wanted` (all the map's quantities by default): the blocks that hold them, in order. */
export function planReads(map: RegisterMap, wanted: readonly Quantity[] = [...map.quantities.keys()]): ReadBlock[] {
  const needed = new Set<ReadBlock>();
  for (const name of wanted) {
    const q = map.quantities.get(name);
    if (q === undefined) continue; // the meter does not measure it
    const b = blockOf(map.blocks, q);
    if (b === undefined) throw new RegisterMapError(map.name, `quantities.${name}`, "in no read block");
    needed.add(b);
  }
  return map.blocks.filter((b) => needed.has(b));
}

/** Registers read for one block: `words[i]` is register block.start + i. */
export interface BlockWords {
  readonly block: ReadBlock;
  readonly words: ArrayLike<number>;
}

/** Decode every quantity whose block was read, in canonical units. A float that is not finite is left out. */
export function decodeQuantities(map: RegisterMap, read: readonly BlockWords[]): Partial<Record<Quantity, number>> {
  const out: Partial<Record<Quantity, number>> = {};
  for (const [name, q] of map.quantities) {
    const r = read.find((x) => x.block.table === q.table && x.block.start <= q.address && q.address + q.words <= x.block.start + x.block.count);
    if (r === undefined) continue;
    if (r.words.length !== r.block.count) throw new RegisterMapError(map.name, "", `a read of ${r.block.count} registers at ${r.block.start} returned ${r.words.length}`);
    const at = q.address - r.block.start;
    const value = decodeValue(q, Array.from({ length: q.words }, (_, i) => r.words[at + i] as number));
    if (Number.isFinite(value)) out[name] = value;
  }
  return out;
}

/** One quantity from its registers (in register order), in its canonical unit. */
export function decodeValue(q: QuantitySpec, words: readonly number[]): number {
  if (words.length !== q.words || words.some((w) => !Number.isInteger(w) || w < 0 || w > 0xffff)) throw new RangeError(`${q.type} needs ${q.words} 16-bit registers`);
  const ordered = q.wordOrder === "high-first" ? words : [...words].reverse(); // most significant first
  const bytes = new DataView(new ArrayBuffer(2 * q.words));
  ordered.forEach((w, i) => bytes.setUint16(2 * i, w));
  switch (q.type) {
    case "float32":
      return (bytes.getFloat32(0) * q.mul) / q.div;
    case "int16":
      return (bytes.getInt16(0) * q.mul) / q.div;
    case "uint16":
      return (bytes.getUint16(0) * q.mul) / q.div;
    case "int32":
      return (bytes.getInt32(0) * q.mul) / q.div;
    case "uint32":
      return (bytes.getUint32(0) * q.mul) / q.div;
    case "int64":
      return (Number(bytes.getBigInt64(0)) * q.mul) / q.div;
    case "uint64":
      return (Number(bytes.getBigUint64(0)) * q.mul) / q.div;
  }
}

/**
 * The registers a meter shows for `value` (canonical unit): the inverse of
 * decodeValue, for simulated meters and tests. Integers are rounded to the
 * nearest raw step; a value out of the type's range throws.
 */
export function encodeValue(q: QuantitySpec, value: number): number[] {
  const bytes = new DataView(new ArrayBuffer(2 * q.words));
  const raw = (value * q.div) / q.mul;
  const int = Math.round(raw);
  const range: Record<ValueType, [number, number]> = {
    float32: [-Infinity, Infinity],
    int16: [-0x8000, 0x7fff],
    uint16: [0, 0xffff],
    int32: [-0x80000000, 0x7fffffff],
    uint32: [0, 0xffffffff],
    int64: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER],
    uint64: [0, Number.MAX_SAFE_INTEGER],
  };
  const [lo, hi] = range[q.type];
  if (q.type !== "float32" && (int < lo || int > hi)) throw new RangeError(`${value} does not fit a ${q.type} register at scale ${q.mul}/${q.div}`);
  switch (q.type) {
    case "float32":
      bytes.setFloat32(0, raw);
      break;
    case "int16":
      bytes.setInt16(0, int);
      break;
    case "uint16":
      bytes.setUint16(0, int);
      break;
    case "int32":
      bytes.setInt32(0, int);
      break;
    case "uint32":
      bytes.setUint32(0, int);
      break;
    case "int64":
      bytes.setBigInt64(0, BigInt(int));
      break;
    case "uint64":
      bytes.setBigUint64(0, BigInt(int));
      break;
  }
  const words = Array.from({ length: q.words }, (_, i) => bytes.getUint16(2 * i));
  return q.wordOrder === "high-first" ? words : words.reverse();
}
