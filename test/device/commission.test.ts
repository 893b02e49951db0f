// `peergrid meter read` (device/commission.ts through the CLI): the values of
// a working meter as JSON, and for each way commissioning goes wrong a
// diagnosis in the installer's terms, with exit code 1 (2 for bad usage).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { main } from "../../daemon/cli.js";
import { SimulatedMeter } from "../../device/sim-meter.js";
import { SDM630_VALUES, imageOf, loadMap } from "../helpers/meters.js";
import { startPymodbus, startSocatPair } from "../helpers/pymodbus.js";

async function run(...args: string[]): Promise<{ code: number; out: string; json: { ok: boolean; diagnosis: string | null; values: Record<string, number> | null } | null }> {
  const lines: string[] = [];
  const code = await main(["node", "peergrid", ...args], (s) => lines.push(s));
  const out = lines.join("\n");
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
