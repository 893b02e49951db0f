// `peergrid meter read` (device/commission.ts through the CLI): the values of
// a working meter as JSON, and for each way commissioning goes wrong a
// diagnosis in the installer's terms, with exit code 1 (2 for bad usage).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { runCli } from "../helpers/cli.js";
import { SimulatedMeter } from "../../device/sim-meter.js";
import { SDM630_VALUES, SUNSPEC_203_VALUES, imageOf, loadMap, sunspecChain } from "../helpers/meters.js";
import { startPymodbus, startSocatPair } from "../helpers/pymodbus.js";

async function run(...args: string[]): Promise<{ code: number; out: string; json: { ok: boolean; diagnosis: string | null; values: Record<string, number> | null; answering?: { unit: number; fits: string[] }[] } | null }> {
  const { code, out } = await runCli(...args);
  let json = null;
  try {
    json = JSON.parse(out);
  } catch {
    // not JSON: usage errors go to stderr
  }
  return { code, out, json };
}

describe("peergrid meter read", () => {
  it("prints every quantity of a working meter as JSON", async () => {
    const meter = await SimulatedMeter.start({ map: loadMap("eastron-sdm630") });
    try {
      const r = await run("meter", "read", "--map", "eastron-sdm630", "--tcp", `127.0.0.1:${meter.port}`);
      assert.equal(r.code, 0, r.out);
      assert.equal(r.json?.ok, true);
      assert.equal(r.json?.values?.voltageL1, 230);
      assert.equal(Object.keys(r.json?.values ?? {}).length, 13);
    } finally {
      await meter.close();
    }
  });

  it("diagnoses a wrong unit id, a wrong map, nothing listening, and a word order the other way round", async () => {
    const sdm630 = loadMap("eastron-sdm630");
    const em340 = loadMap("carlo-gavazzi-em340");
    const lowFirst = { ...sdm630, quantities: new Map([...sdm630.quantities].map(([k, q]) => [k, { ...q, wordOrder: "low-first" as const }])) };
    const server = await startPymodbus({ 1: imageOf(em340, { voltageL1: 230, importEnergy: 1_000 }), 2: imageOf(lowFirst, SDM630_VALUES) });
    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, "127.0.0.1", () => r()));
    const closedPort = (closed.address() as net.AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    try {
      const at = `127.0.0.1:${server.port}`;
      const cases: [string[], RegExp][] = [
        [["--map", "carlo-gavazzi-em340", "--tcp", at, "--unit", "7", "--timeout-ms", "200"], /unit 7 (did not answer|was asked: it may have no unit 7).*check the unit id/],
        [["--map", "eastron-sdm630", "--tcp", at, "--unit", "1"], /refused .* registers at \d+ \(illegal data address\): this meter is probably not a Eastron SDM630 v2; try another --map/],
        [["--map", "eastron-sdm630", "--tcp", `127.0.0.1:${closedPort}`], /cannot reach 127.0.0.1:\d+: is the meter \(or its gateway\) powered/],
        [["--map", "eastron-sdm630", "--tcp", at, "--unit", "2"], /wordOrder is probably wrong for this meter/],
      ];
      for (const [args, diagnosis] of cases) {
        const r = await run("meter", "read", ...args);
        assert.equal(r.code, 1, r.out);
        assert.equal(r.json?.ok, false);
        assert.match(r.json?.diagnosis ?? "", diagnosis, args.join(" "));
      }
    } finally {
      await server.stop();
    }
  });

  it("--map sunspec: finds the meter model on the device and reads it; says so when a device is not SunSpec", async () => {
    const server = await startPymodbus({ 1: { holding: [[40_000, sunspecChain()]] }, 2: imageOf(loadMap("eastron-sdm630"), SDM630_VALUES) });
    try {
      const ok = await run("meter", "read", "--map", "sunspec", "--tcp", `127.0.0.1:${server.port}`);
      assert.equal(ok.code, 0, ok.out);
      assert.equal((ok.json as { map?: string } | null)?.map, "sunspec-203");
      assert.deepEqual(ok.json?.values, SUNSPEC_203_VALUES);
      const not = await run("meter", "read", "--map", "sunspec", "--tcp", `127.0.0.1:${server.port}`, "--unit", "2");
      assert.equal(not.code, 1, not.out);
      assert.match(not.json?.diagnosis ?? "", /unit 2 answered, but has no SunSpec marker \("SunS"\) at 40000, 50000 or 0: not a SunSpec device; name its register map instead/);
    } finally {
      await server.stop();
    }
  });

  it("on a serial line with no meter: check the unit id, the A and B wires, and the factory baud and parity", async () => {
    const dir = mkdtempSync(join(tmpdir(), "peergrid-meter-read-"));
    const line = await startSocatPair(dir);
    try {
      const r = await run("meter", "read", "--map", "eastron-sdm120", "--serial", line.a, "--timeout-ms", "100");
      assert.equal(r.code, 1, r.out);
      assert.match(r.json?.diagnosis ?? "", /no answer from unit 1 on .*: check the unit id, the A and B wires \(swap them if unsure\), and the baud rate and parity \(this meter leaves the factory at 2400 8N1, unit 1\)/);
    } finally {
      await line.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("refuses bad usage and a bad map file with exit code 2", async () => {
    const dir = mkdtempSync(join(tmpdir(), "peergrid-meter-read-"));
    try {
      writeFileSync(join(dir, "bad.json"), JSON.stringify({ format: "peergrid-register-map/1", name: "bad" }));
      assert.equal((await run("meter", "read", "--map", join(dir, "bad.json"), "--tcp", "127.0.0.1:502")).code, 2);
      assert.equal((await run("meter", "read", "--map", "no-such-meter", "--tcp", "127.0.0.1:502")).code, 2);
      assert.equal((await run("meter", "read", "--map", "eastron-sdm630")).code, 2, "neither --tcp nor --serial");
      assert.equal((await run("meter", "read", "--map", "eastron-sdm630", "--tcp", "nowhere")).code, 2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("peergrid meter scan", () => {
  it("finds the units that answer on a bus and the maps that fit each", async () => {
    const em340 = loadMap("carlo-gavazzi-em340");
    const EM = { voltageL1: 230.5, voltageL2: 229.9, voltageL3: 231.1, currentL1: 1.234, currentL2: 0.5, currentL3: 12.001, powerL1: 284.4, powerL2: -115.3, powerL3: 2773.2, powerTotal: 2942.3, frequency: 49.9, importEnergy: 123_456_700, exportEnergy: 9_876_500 };
    const server = await startPymodbus({ 1: imageOf(loadMap("eastron-sdm630"), SDM630_VALUES), 3: imageOf(em340, EM), 4: { holding: [[40_000, sunspecChain()]] } });
    try {
      const r = await run("meter", "scan", "--tcp", `127.0.0.1:${server.port}`, "--units", "1-5", "--timeout-ms", "150");
      assert.equal(r.code, 0, r.out);
      const answering = r.json?.answering ?? [];
      assert.deepEqual(answering.map((a) => a.unit), [1, 3, 4]);
      const fits = new Map(answering.map((a) => [a.unit, a.fits]));
      assert.ok(fits.get(1)?.includes("eastron-sdm630") && !fits.get(1)?.includes("carlo-gavazzi-em340"), JSON.stringify(fits.get(1)));
      assert.ok(fits.get(3)?.includes("carlo-gavazzi-em340") && !fits.get(3)?.includes("eastron-sdm630"), JSON.stringify(fits.get(3)));
      assert.deepEqual(fits.get(4), ["sunspec-203"], "a SunSpec meter is found by discovery");
      assert.ok(!fits.get(1)?.some((f) => f.startsWith("sunspec")));
    } finally {
      await server.stop();
    }
  });

  it("refuses a unit range outside 1-247", async () => {
    assert.equal((await run("meter", "scan", "--tcp", "127.0.0.1:502", "--units", "0-300")).code, 2);
  });
});
