// Shared by the device tests: the shipped maps, a meter's register image for
// chosen values, and one whole read of a meter through a Bus.
import assert from "node:assert/strict";
import { type Bus, readBlocks } from "../../device/bus.js";
import { BUILT_IN_MAPS_DIR, loadRegisterMap } from "../../device/meter-kind.js";
import { type Quantity, type RegisterMap, decodeQuantities, encodeValue, planReads } from "../../device/register-map.js";
import { SUNS_MARKER } from "../../device/sunspec.js";
import type { UnitImage } from "./pymodbus.js";

export const MAPS_DIR = BUILT_IN_MAPS_DIR;

/** A shipped map by name. */
export const loadMap = (name: string): RegisterMap => loadRegisterMap(name);

/** The meter's register image for `values`, as pymodbus input registers. */
export function imageOf(m: RegisterMap, values: Partial<Record<Quantity, number>>): UnitImage {
  const input: [number, number[]][] = [];
  for (const [name, q] of m.quantities) {
    const v = values[name];
    if (v !== undefined) input.push([q.address, encodeValue(q, v)]);
  }
  return { input };
}

/** Every block of the map, read through `bus` from `unit`, decoded. */
export async function readMeter(bus: Bus, m: RegisterMap, unit = 1): Promise<Partial<Record<Quantity, number>>> {
  const r = await readBlocks(bus, unit, planReads(m));
  assert.ok(!("refused" in r), JSON.stringify(r));
  return decodeQuantities(m, r.read);
}

/** Values with a different bit pattern in every register: a shifted offset or swapped words shows. */
export const SDM630_VALUES: Partial<Record<Quantity, number>> = {
  voltageL1: 229.5, voltageL2: 231.25, voltageL3: 233.75, currentL1: 1.5, currentL2: 2.25, currentL3: 3.125,
  powerL1: 340.5, powerL2: -512.25, powerL3: 1024.75, powerTotal: 853, frequency: 49.96875, importEnergy: 12_345_500, exportEnergy: 6_789_250,
};

const u16 = (x: number) => (x < 0 ? x + 0x10000 : x);

/** A model 203 block: V x 10^-1, A x 10^-2, W x 10^0, Hz x 10^-2, Wh x 10^0. */
export function model203(): number[] {
  const d = new Array<number>(105).fill(0);
  [d[1], d[2], d[3], d[4]] = [150, 225, 1_250, u16(-2)]; // A phases, A_SF
  [d[6], d[7], d[8], d[13]] = [2_295, 2_313, 2_338, u16(-1)]; // V phases, V_SF
  [d[14], d[15]] = [4_997, u16(-2)]; // Hz, Hz_SF
  [d[16], d[17], d[18], d[19], d[20]] = [853, 341, u16(-512), 0x8000, 0]; // W, phases (C not implemented), W_SF
  [d[36], d[37]] = [6_789_250 >>> 16, 6_789_250 & 0xffff]; // TotWhExp
  [d[44], d[45]] = [12_345_500 >>> 16, 12_345_500 & 0xffff]; // TotWhImp
  d[52] = 0; // TotWh_SF
  return d;
}

/** A SunSpec device image from the marker: a common model (1), a model 203, the end. */
export function sunspecChain(): number[] {
  return [...SUNS_MARKER, 1, 66, ...new Array<number>(66).fill(0), 203, 105, ...model203(), 0xffff, 0];
}

/** What model203() decodes to (powerL3 is "not implemented"). */
export const SUNSPEC_203_VALUES = {
  currentL1: 1.5, currentL2: 2.25, currentL3: 12.5,
  voltageL1: 229.5, voltageL2: 231.3, voltageL3: 233.8,
  frequency: 49.97, powerTotal: 853, powerL1: 341, powerL2: -512,
  importEnergy: 12_345_500, exportEnergy: 6_789_250,
};
