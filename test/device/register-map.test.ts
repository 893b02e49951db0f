// Register maps as data (device/register-map.ts, device/maps/*.json): every
// shipped map parses and reads within its meter's limits; values chosen so
// that a word-order, offset or scale mistake shows decode exactly; and a
// broken map is refused naming the key and what to write instead.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import fc from "fast-check";
import { BUILT_IN_MAPS_DIR as MAPS_DIR, builtInMaps } from "../../device/meter-kind.js";
import {
  type BlockWords,
  type Quantity,
  QUANTITIES,
  REGISTER_MAP_FORMAT,
  type RegisterMap,
  RegisterMapError,
  decodeQuantities,
  decodeValue,
  encodeValue,
  parseRegisterMap,
  planReads,
} from "../../device/register-map.js";

const shipped = builtInMaps();

function map(name: string): RegisterMap {
  const m = shipped.find((x) => x.name === name);
  assert.ok(m !== undefined, `map ${name} is shipped`);
  return m;
}

/** A register image of `values` as the meter would show them: one word array per block. */
function image(m: RegisterMap, values: Partial<Record<Quantity, number>>): BlockWords[] {
  return planReads(m).map((block) => {
    const words = new Array<number>(block.count).fill(0);
    for (const [name, q] of m.quantities) {
      const v = values[name];
      if (v === undefined || q.table !== block.table || q.address < block.start || q.address + q.words > block.start + block.count) continue;
      encodeValue(q, v).forEach((w, i) => (words[q.address - block.start + i] = w));
    }
    return { block, words };
  });
}

describe("shipped register maps", () => {
  it("all parse, name themselves after their file, and read within the meter's request limit", () => {
    assert.deepEqual(shipped.map((m) => m.name).sort(), ["carlo-gavazzi-em24", "carlo-gavazzi-em340", "eastron-sdm120", "eastron-sdm630", "eastron-sdm72", "eastron-sdm72-v1"]);
    for (const m of shipped) {
      for (const b of planReads(m)) assert.ok(b.count <= m.maxRegistersPerRequest, `${m.name}: block at ${b.start}`);
      assert.ok(m.quantities.has("importEnergy") && m.quantities.has("exportEnergy"), `${m.name} has separate import and export counters`);
    }
  });

  it("SDM630: every quantity from 3 reads of float32, high word first, energy in Wh", () => {
    const m = map("eastron-sdm630");
    assert.deepEqual(planReads(m).map((b) => [b.table, b.start, b.count]), [["input", 0, 18], ["input", 52, 2], ["input", 70, 6]]);
    // Distinct values everywhere: a shifted offset or swapped words would decode to another one (or garbage).
    const values: Partial<Record<Quantity, number>> = {
      voltageL1: 229.5, voltageL2: 231.25, voltageL3: 233.75,
      currentL1: 1.5, currentL2: 2.25, currentL3: 3.125,
      powerL1: 340.5, powerL2: -512.25, powerL3: 1024.75, powerTotal: 853,
      frequency: 49.96875, importEnergy: 12_345_500, exportEnergy: 6_789_250,
    };
    assert.deepEqual(decodeQuantities(m, image(m, values)), values);
    // By hand, not through encodeValue: 229.5 V is float32 0x43658000, high word first.
    const v = m.quantities.get("voltageL1");
    assert.ok(v !== undefined);
    assert.equal(decodeValue(v, [0x4365, 0x8000]), 229.5);
    assert.notEqual(decodeValue(v, [0x8000, 0x4365]), 229.5);
  });

  it("EM340: scaled integers, low word first, decode to the exact decimal", () => {
    const m = map("carlo-gavazzi-em340");
    const v = m.quantities.get("voltageL1");
    const e = m.quantities.get("importEnergy");
    const hz = m.quantities.get("frequency");
    assert.ok(v !== undefined && e !== undefined && hz !== undefined);
    assert.equal(decodeValue(v, [2305, 0]), 230.5); // V x 10, low word first
    assert.equal(decodeValue(e, [0x86a0, 0x0001]), 10_000_000); // 100,000 x 0.1 kWh = 10,000 kWh
    assert.equal(decodeValue(e, [0x0001, 0x86a0]) === 10_000_000, false, "word order matters");
    assert.equal(decodeValue(hz, [500]), 50);
    const values: Partial<Record<Quantity, number>> = {
      voltageL1: 230.5, voltageL2: 229.9, voltageL3: 231.1, currentL1: 1.234, currentL2: -0.5, currentL3: 12.001,
      powerL1: 284.4, powerL2: -115.3, powerL3: 2773.2, powerTotal: 2942.3, frequency: 49.9, importEnergy: 123_456_700, exportEnergy: 9_876_500,
    };
    assert.deepEqual(decodeQuantities(m, image(m, values)), values);
  });

  it("every map: what encodeValue writes, decodeValue reads back (to the register's resolution)", () => {
    for (const m of shipped) {
      for (const [name, q] of m.quantities) {
        fc.assert(
          fc.property(fc.integer({ min: -30_000, max: 30_000 }), (raw) => {
            const signed = q.type.startsWith("int") || q.type === "float32";
            const rawValue = signed ? raw : Math.abs(raw);
            const value = (rawValue * q.mul) / q.div;
            assert.equal(decodeValue(q, encodeValue(q, value)), value, `${m.name} ${name}`);
          }),
          { numRuns: 50 },
        );
      }
    }
  });
});

describe("a broken map is refused with the key and the fix", () => {
  const good = () => JSON.parse(readFileSync(MAPS_DIR + "carlo-gavazzi-em340.json", "utf8")) as Record<string, unknown>;
  const refused = (edit: (m: Record<string, unknown>) => void, pattern: RegExp) => {
    const m = good();
    edit(m);
    assert.throws(() => parseRegisterMap(m, "my-meter.json"), (err: unknown) => err instanceof RegisterMapError && err.code === "PG_ERR_REGISTER_MAP" && pattern.test(err.message));
  };
  const q = (m: Record<string, unknown>) => m.quantities as Record<string, Record<string, unknown>>;

  it("names what is wrong", () => {
    refused((m) => (m.format = "v0"), new RegExp(`^my-meter.json: format: expected "${REGISTER_MAP_FORMAT}"`));
    refused((m) => (q(m).voltageL1 = { ...q(m).voltageL1, type: "float" }), /quantities\.voltageL1\.type: expected one of "float32"/);
    refused((m) => (q(m).voltageL1 = { ...q(m).voltageL1, unit: "kWh" }), /quantities\.voltageL1\.unit: voltageL1 is measured in V/);
    refused((m) => (q(m).voltageL4 = q(m).voltageL1 as Record<string, unknown>), /quantities\.voltageL4: unknown quantity \(known: voltageL1/);
    refused((m) => (q(m).frequency = { ...q(m).frequency, wordOrder: "low-first" }), /quantities\.frequency\.wordOrder: a int16 is one register: remove wordOrder/);
    refused((m) => delete q(m).voltageL1?.wordOrder, /quantities\.voltageL1\.wordOrder: expected one of "high-first", "low-first", found nothing/);
    refused((m) => (q(m).voltageL1 = { ...q(m).voltageL1, scale: 1 / 3 }), /scale: expected a decimal factor/);
    refused((m) => (q(m).voltageL1 = { ...q(m).voltageL1, address: 65535 }), /address: expected a whole number from 0 to 65534/);
    refused((m) => (q(m).importEnergy = { ...q(m).importEnergy, address: 300 }), /quantities\.importEnergy: registers 300\.\.301 \(input\) are in no read block/);
    refused((m) => (m.blocks = [{ start: 0, count: 21 }]), /blocks\[0\]\.count: expected a whole number from 1 to 20/);
    refused((m) => (m.blocks = [{ start: 0, count: 6 }, { start: 4, count: 6 }]), /blocks: the input blocks at 0 and 4 overlap/);
    refused((m) => (m.maxRegistersPerRequest = 126), /maxRegistersPerRequest: expected a whole number from 1 to 125/);
    refused((m) => (m.colour = "red"), /^my-meter.json: colour: unknown key/);
    refused((m) => (m.serialDefault = { baud: 9600, parity: "mark" }), /serialDefault\.parity: expected one of "none", "even", "odd"/);
  });

  it("a map that is not an object at all", () => {
    assert.throws(() => parseRegisterMap([1, 2], "x.json"), /x.json: expected an object, found \[1,2\]/);
  });
});

describe("reading plan and decoding", () => {
  it("reads only the blocks holding what is wanted, and leaves out what was not read", () => {
    const m = map("eastron-sdm630");
    const plan = planReads(m, ["importEnergy", "exportEnergy"]);
    assert.deepEqual(plan.map((b) => b.start), [70]);
    const values = decodeQuantities(m, image(m, { importEnergy: 1000, exportEnergy: 2000, voltageL1: 230 }).filter((r) => r.block.start === 70));
    assert.deepEqual(Object.keys(values).sort(), ["exportEnergy", "frequency", "importEnergy"]);
  });

  it("a read that returns the wrong number of registers is an error, not a shifted value", () => {
    const m = map("eastron-sdm630");
    const [first] = planReads(m);
    assert.ok(first !== undefined);
    assert.throws(() => decodeQuantities(m, [{ block: first, words: new Array<number>(16).fill(0) }]), /returned 16/);
  });

  it("a float register that holds NaN or infinity gives no value", () => {
    const m = map("eastron-sdm630");
    const [first] = planReads(m);
    assert.ok(first !== undefined);
    const words = new Array<number>(18).fill(0);
    words[0] = 0x7fc0; // NaN in voltageL1
    words[2] = 0x7f80; // +infinity in voltageL2
    const out = decodeQuantities(m, [{ block: first, words }]);
    assert.equal(out.voltageL1, undefined);
    assert.equal(out.voltageL2, undefined);
    assert.equal(out.voltageL3, 0);
  });

  it("QUANTITIES lists each quantity once", () => {
    assert.equal(new Set(QUANTITIES).size, QUANTITIES.length);
  });
});
