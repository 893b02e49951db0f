// SunSpec meters (device/sunspec.ts) against pymodbus: the "SunS" marker
// found at 40000 or at 0, the model chain walked past a common model to a
// 203 (wye three-phase) meter, its points decoded with their scale factors,
// and "not implemented" values left out.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, describe, it } from "node:test";
import { Bus } from "../../device/bus.js";
import { TcpLink } from "../../device/modbus-tcp.js";
import { decodeSunspec, discoverSunspec, meterModelOf, parseSunspecMap, SUNS_MARKER } from "../../device/sunspec.js";
import { MAPS_DIR } from "../helpers/meters.js";
import { type PymodbusServer, startPymodbus } from "../helpers/pymodbus.js";

const map = parseSunspecMap(JSON.parse(readFileSync(`${MAPS_DIR}sunspec-meter.json`, "utf8")), "sunspec-meter.json");
const u16 = (x: number) => (x < 0 ? x + 0x10000 : x);

/** A model 203 block: V x 10^-1, A x 10^-2, W x 10^0, Hz x 10^-2, Wh x 10^0. */
function model203(): number[] {
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

function chain(): number[] {
  return [...SUNS_MARKER, 1, 66, ...new Array<number>(66).fill(0), 203, 105, ...model203(), 0xffff, 0];
}

const EXPECTED = {
  currentL1: 1.5, currentL2: 2.25, currentL3: 12.5,
  voltageL1: 229.5, voltageL2: 231.3, voltageL3: 233.8,
  frequency: 49.97, powerTotal: 853, powerL1: 341, powerL2: -512,
  importEnergy: 12_345_500, exportEnergy: 6_789_250,
};

describe("SunSpec meters against pymodbus", () => {
  const servers: PymodbusServer[] = [];
  const buses: Bus[] = [];
  after(async () => {
    await Promise.all(buses.map((b) => b.close()));
    await Promise.all(servers.map((s) => s.stop()));
  });
  async function reader(base: number | null) {
    const server = await startPymodbus({ 1: { holding: base === null ? [[0, [1, 2, 3]]] : [[base, chain()]] } });
    servers.push(server);
    const bus = new Bus(new TcpLink({ host: "127.0.0.1", port: server.port }), { timeoutMs: 500, retriesMax: 0 });
    buses.push(bus);
    return async (address: number, count: number) => {
      const r = await bus.request({ fn: 3, unit: 1, address, count });
      return r.kind === "registers" ? r.values : null;
    };
  }

  for (const base of [40_000, 0]) {
    it(`finds the marker at ${base}, walks past the common model, and decodes model 203`, async () => {
      const read = await reader(base);
      const found = await discoverSunspec(read);
      assert.deepEqual(found, { base, models: [{ id: 1, address: base + 2, length: 66 }, { id: 203, address: base + 70, length: 105 }] });
      const meter = meterModelOf(map, found?.models ?? []);
      assert.ok(meter !== null);
      assert.equal(meter.model.id, 203);
      const words = await read(meter.found.address + 2, meter.model.length);
      assert.ok(words !== null);
      assert.deepEqual(decodeSunspec(meter.model, words), EXPECTED, "powerL3 (0x8000) is not implemented: left out");
    });
  }

  it("a device without the marker is not SunSpec", async () => {
    assert.equal(await discoverSunspec(await reader(null)), null);
  });
});

describe("SunSpec decoding", () => {
  it("a scale factor that is not implemented leaves its points out", () => {
    const m = map.models.get(203);
    assert.ok(m !== undefined);
    const d = model203();
    d[13] = 0x8000; // V_SF
    const out = decodeSunspec(m, d);
    assert.equal(out.voltageL1, undefined);
    assert.equal(out.currentL1, 1.5);
  });

  it("a broken map is refused naming the key", () => {
    const json = JSON.parse(readFileSync(`${MAPS_DIR}sunspec-meter.json`, "utf8")) as { models: Record<string, { points: Record<string, { sf: string }> }> };
    (json.models["203"] as { points: Record<string, { sf: string }> }).points.voltageL1 = { ...(json.models["203"]?.points.voltageL1 as { sf: string }), sf: "X_SF" };
    assert.throws(() => parseSunspecMap(json, "s.json"), /s.json: models.203.points.voltageL1.sf: expected the name of one of the model's scaleFactors/);
  });
});
