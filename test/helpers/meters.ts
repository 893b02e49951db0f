// Shared by the device tests: the shipped maps, a meter's register image for
// chosen values, and one whole read of a meter through a Bus.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Bus } from "../../device/bus.js";
import { type BlockWords, type Quantity, type RegisterMap, decodeQuantities, encodeValue, parseRegisterMap, planReads } from "../../device/register-map.js";
import type { UnitImage } from "./pymodbus.js";

export const MAPS_DIR = fileURLToPath(new URL("../../../device/maps/", import.meta.url));

export function loadMap(name: string): RegisterMap {
  return parseRegisterMap(JSON.parse(readFileSync(`${MAPS_DIR}${name}.json`, "utf8")), `${name}.json`);
}

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
  const read: BlockWords[] = [];
  for (const block of planReads(m)) {
    const reply = await bus.request({ fn: block.table === "input" ? 4 : 3, unit, address: block.start, count: block.count });
    assert.equal(reply.kind, "registers", JSON.stringify(reply));
    read.push({ block, words: reply.kind === "registers" ? reply.values : [] });
  }
  return decodeQuantities(m, read);
}

/** Values with a different bit pattern in every register: a shifted offset or swapped words shows. */
export const SDM630_VALUES: Partial<Record<Quantity, number>> = {
  voltageL1: 229.5, voltageL2: 231.25, voltageL3: 233.75, currentL1: 1.5, currentL2: 2.25, currentL3: 3.125,
  powerL1: 340.5, powerL2: -512.25, powerL3: 1024.75, powerTotal: 853, frequency: 49.96875, importEnergy: 12_345_500, exportEnergy: 6_789_250,
};
