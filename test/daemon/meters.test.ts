// A box's meters end to end: a simulated SDM630 over Modbus TCP, polled
// once a second through the device layer, each reading signed with the
// box's key and submitted through node.submit, committed into the ledger
// with its quality flag.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { buildHttp } from "../../daemon/http.js";
import { BoxSequence } from "../../daemon/box-sequence.js";
import { BoxMeters, type MetersStatus, parseMeterSpec } from "../../daemon/meters.js";
import { fixedLayout } from "../../device/register-map.js";
import { SimulatedMeter } from "../../device/sim-meter.js";
import { meterKey } from "../../ledger/records.js";
import { NodeVerifier } from "../../ledger/keys.js";
import { ledgerPath } from "../../ledger/ledger.js";
import { LedgerStore } from "../../ledger/store.js";
import { verifyChain } from "../../ledger/verify.js";
import type { NodeSigner } from "../../ledger/keys.js";
import { Quality } from "../../ledger/tx.js";
import { BoxCluster } from "../helpers/box-cluster.js";
import { loadMap } from "../helpers/meters.js";

describe("a box's meters", () => {
  it("readings of a simulated meter reach the ledger, signed, good, once a second", async () => {
    const c = new BoxCluster(1);
    const map = loadMap("eastron-sdm630");
    const meter = await SimulatedMeter.start({ map });
    let meters: BoxMeters | null = null;
    try {
      const node = await c.start(0);
      await c.waitFor("a leader", () => c.leader());
      meters = new BoxMeters(node, new BoxSequence(node, c.signers[0] as NodeSigner, node.id), [{ meterId: 2, meter: { layout: fixedLayout(map), unit: 1 }, address: { kind: "tcp", host: "127.0.0.1", port: meter.port } }]);
      meters.start();
      const record = await c.waitFor("three readings of meter 2 in the ledger", () => {
        const r = node.ledger.state.tree.get(meterKey(node.id, 2));
        return r !== undefined && r.kind === "meter" && r.readingCount >= 3 ? r : null;
      });
      assert.equal(record.quality, Quality.good);
      assert.deepEqual(record.voltagesDeciV, [2300, 2300, 2300]);
      assert.ok(record.importWh >= 1_000_000);
      assert.equal(meters.stats.refused, 0, meters.stats.lastRefusal ?? "");
    } finally {
      await meters?.stop();
      await meter.close();
      await c.close();
    }
  });

  it("a meter not there yet: its silence is committed as comms-error readings without voltages; once it answers, good readings; GET /api/v1/meters says so", async () => {
    const c = new BoxCluster(1);
    const map = loadMap("eastron-sdm630");
    const probe = await SimulatedMeter.start({ map });
    const port = probe.port;
    await probe.close();
    let meter: SimulatedMeter | null = null;
    let meters: BoxMeters | null = null;
    try {
      const node = await c.start(0);
      await c.waitFor("a leader", () => c.leader());
      const m = new BoxMeters(node, new BoxSequence(node, c.signers[0] as NodeSigner, node.id), [{ meterId: 4, meter: { layout: fixedLayout(map), unit: 1 }, address: { kind: "tcp", host: "127.0.0.1", port } }]);
      meters = m;
      meters.start();
      const record = () => {
        const r = node.ledger.state.tree.get(meterKey(node.id, 4));
        return r !== undefined && r.kind === "meter" ? r : null;
      };
      const silent = await c.waitFor("a comms-error reading of meter 4 in the ledger", () => (record()?.quality === Quality.commsError ? record() : null));
      assert.deepEqual(silent?.voltagesDeciV, [], "no voltages invented");
      assert.equal(silent?.goodTimeMs, -1, "no good reading yet");
      await c.waitFor("the silent reading on disk", () => node.ledger.store.latestReadings().some((r) => r.meterId === 4));
      const audit = LedgerStore.open(ledgerPath(c.dir(0)), { readonly: true });
      try {
        assert.deepEqual(audit.latestReadings().find((r) => r.meterId === 4)?.voltagesDeciV, [], "stored without phases, read back without phases");
        const report = verifyChain(audit, new NodeVerifier());
        assert.ok(report.ok, JSON.stringify(report.fault));
      } finally {
        audit.close();
      }
      meter = await SimulatedMeter.start({ map, port });
      const good = await c.waitFor("a good reading of meter 4", () => (record()?.quality === Quality.good ? record() : null), 40_000);
      assert.deepEqual(good?.voltagesDeciV, [2300, 2300, 2300]);
      assert.equal(m.stats.refused, 0, m.stats.lastRefusal ?? "");

      const app = buildHttp(node, { meters: () => m });
      try {
        const r = await app.inject({ url: "/api/v1/meters" });
        assert.equal(r.statusCode, 200, r.body);
        const body = r.json() as MetersStatus;
        const [bus] = body.buses;
        assert.equal(bus?.link, `tcp 127.0.0.1:${port}`);
        const [one] = bus?.meters ?? [];
        assert.equal(one?.meterId, 4);
        assert.equal(one?.map, "eastron-sdm630");
        assert.ok((one?.stats.failed ?? 0) >= 1 && (one?.stats.good ?? 0) >= 1, JSON.stringify(one?.stats));
        assert.equal(one?.last?.quality, Quality.good);
        assert.ok(typeof bus?.pollStartMs.p99 === "number" && (bus?.pollStartMs.window ?? 0) >= 2);
        assert.ok(body.submitted.accepted >= 2);
        await app.inject({ url: "/api/v1/meters?resetTimings=true" });
        const after = (await app.inject({ url: "/api/v1/meters" })).json() as MetersStatus;
        assert.ok((after.buses[0]?.pollStartMs.window ?? 9) <= 1, "timings start afresh");
      } finally {
        await app.close();
      }
    } finally {
      await meters?.stop();
      await meter?.close();
      await c.close();
    }
  });

  it("--meter specs: TCP and serial, with and without unit, baud and parity; mistakes refused with the form", () => {
    assert.deepEqual(parseMeterSpec("0=eastron-sdm630@tcp:192.168.1.40:502/3").address, { kind: "tcp", host: "192.168.1.40", port: 502 });
    assert.equal(parseMeterSpec("0=eastron-sdm630@tcp:192.168.1.40:502/3").meter.unit, 3);
    const rtu = parseMeterSpec("7=eastron-sdm120@serial:/dev/ttyUSB0");
    assert.equal(rtu.meterId, 7);
    assert.deepEqual(rtu.address, { kind: "rtu", path: "/dev/ttyUSB0", baud: 2400, parity: "none", dataBits: 8, stopBits: 1 });
    assert.equal(rtu.meter.unit, 1);
    assert.deepEqual(parseMeterSpec("1=carlo-gavazzi-em340@serial:/dev/ttyAMA0:19200:even/12").address, { kind: "rtu", path: "/dev/ttyAMA0", baud: 19200, parity: "even", dataBits: 8, stopBits: 1 });
    const sunspec = parseMeterSpec("3=sunspec@tcp:192.168.1.50:502");
    assert.equal(sunspec.meter.layout.name, "sunspec");
    assert.equal(sunspec.meter.unit, 1);
    for (const bad of ["x=eastron-sdm630@tcp:h:1", "0=eastron-sdm630@udp:h:1", "0=eastron-sdm630@tcp:nohost", "0=eastron-sdm630@tcp:h:502/300", "0=eastron-sdm630@serial:/dev/x:12", "0=eastron-sdm630@serial:/dev/x:9600:mark"]) {
      assert.throws(() => parseMeterSpec(bad), /--meter/, bad);
    }
  });
});
