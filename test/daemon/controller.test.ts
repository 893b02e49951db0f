// The microgrid controller on a real box: a grid outage seen at the PCC
// meter islands the microgrid (an island transaction in the ledger), the
// dispatch sheds what the island cannot carry through real breakers (coils
// on a pymodbus server, read back), every command is a switch transaction,
// and the critical premise stays powered. The battery's state of charge is
// a holding register on the same server: below the reserve the battery is
// offered to the critical premises only.
import assert from "node:assert/strict";
import { type AddressInfo, createServer } from "node:net";
import { after, before, describe, it } from "node:test";
import { Bus } from "../../device/bus.js";
import { linkFor } from "../../device/commission.js";
import type { Request } from "../../device/modbus-frame.js";
import { BoxSequence } from "../../daemon/box-sequence.js";
import { MicrogridController, parseControllerConfig } from "../../daemon/controller.js";
import { buildHttp } from "../../daemon/http.js";
import type { BoxNode } from "../../daemon/node.js";
import { ConfigError } from "../../ledger/errors.js";
import { GLOBAL_KEY, type GlobalRecord, breakerKey } from "../../ledger/records.js";
import { Role, type SignedTx } from "../../ledger/tx.js";
import type { NodeSigner } from "../../ledger/keys.js";
import { BoxCluster } from "../helpers/box-cluster.js";
import { type PymodbusServer, startPymodbus } from "../helpers/pymodbus.js";

describe("microgrid controller", () => {
  const c = new BoxCluster(1, { extraMembers: 3 }); // box 0 (admin), users 1-3: the premises
  let node: BoxNode;
  let server: PymodbusServer;
  let controller: MicrogridController;
  let seq: BoxSequence;
  let clockMs = Date.now();
  const listeners: ((meterId: number, r: never) => void)[] = [];
  const CLINIC = 3;
  const SOC_REGISTER = 5; // tens of Wh: 5,000 is 50 kWh, full

  const fileFor = (port: number) => ({
    pccMeterId: 0,
    grid: { nominalVoltageDeciV: 2300, nominalFrequencyMilliHz: 50_000, reconnectDelayMs: 5_000 },
    storageDischargeMaxW: 3_000, // the island's whole supply: no metered export in this test
    storage: { capacityWh: 50_000, reserveWh: 20_000, device: `tcp:127.0.0.1:${port}`, unit: 1, register: SOC_REGISTER, whPerUnit: 10 },
    dispatch: { hysteresisPermille: 100, minOnMs: 0, minOffMs: 3_000, closesPerStepMax: 3, demandFreshMs: 2_000 },
    premises: [1, 2, CLINIC].map((member) => ({ member, breaker: 0, ratingW: 2_000, device: `tcp:127.0.0.1:${port}`, unit: 1, coil: member })),
  });

  before(async () => {
    server = await startPymodbus({ 1: { holding: [[0, [0, 0, 0, 0, 0, 5_000, 0, 0]]] } });
    node = await c.start(0);
    await c.waitFor("leadership", () => node.role === "leader" && node.ledger.state.height >= 1);
    const signer = c.signers[0] as NodeSigner;
    seq = new BoxSequence(node, signer, 0);
    // The box becomes the controller; the community votes nothing yet: no critical list, so order by member.
    const roles = await seq.submit({ type: "member", action: "setRoles", subject: 0, roles: Role.box | Role.admin | Role.controller });
    assert.equal(roles.out.ok, true);
    await c.waitFor("the controller role", () => node.fate(roles.tx.id).status === "committed");
    controller = new MicrogridController(node, seq, parseControllerConfig(fileFor(server.port), "controller.json"), { onReading: (l) => (listeners.push(l as never), () => {}) }, { now: () => clockMs });
  });
  after(async () => {
    await controller?.stop();
    await c.close();
    await server?.stop();
  });

  /** One request to the pymodbus server, on a bus of its own. */
  const ask = async (req: Request) => {
    const bus = new Bus(linkFor({ kind: "tcp", host: "127.0.0.1", port: server.port }));
    try {
      return await bus.request(req);
    } finally {
      await bus.close();
    }
  };
  /** The battery's management system reports a new state of charge (tens of Wh). */
  const setSoc = async (counts: number) => assert.equal((await ask({ fn: 6, unit: 1, address: SOC_REGISTER, value: counts })).kind, "written");
  /** The breakers' coils, members 1 to 3: true is closed. */
  const coils = async () => {
    const reply = await ask({ fn: 1, unit: 1, address: 1, count: 3 });
    assert.ok(reply.kind === "coils");
    return reply.values.slice(0, 3);
  };
  const readbacks = () => [1, 2, CLINIC].map((m) => (node.ledger.state.tree.get(breakerKey(m, 0)) as { readback: string } | undefined)?.readback);
  const pcc = (timeMs: number, volts: number) => controller.feed({ type: "reading", reading: { timeMs, voltagesDeciV: [volts * 10, volts * 10, volts * 10], frequencyMilliHz: 50_000, good: true } });
  const islandTxs = () =>
    node.ledger.store.txsByTypeTime("island", 0, Number.MAX_SAFE_INTEGER, 100).filter((t) => t.result === 0).map((t) => t.signed.tx.body as Extract<SignedTx["tx"]["body"], { type: "island" }>);

  it("at start the grid is unknown, which is unsafe: it records an island transition; a healthy grid for the delay reconnects", async () => {
    await controller.tick();
    await c.waitFor("the first island transaction", () => islandTxs().length === 1);
    assert.deepEqual([islandTxs()[0]?.islanded, islandTxs()[0]?.reason], [true, "noReading"]);
    // Healthy for longer than the reconnection delay (5 s) and the minimum off time of the breakers it opened at start (3 s).
    for (let s = 0; s <= 6; s++) pcc(clockMs + s * 1_000, 230);
    clockMs += 7_000;
    await controller.tick();
    await c.waitFor("reconnected", () => islandTxs().length === 2);
    assert.equal(islandTxs()[1]?.reason, "reconnected");
    assert.equal((node.ledger.state.tree.get(GLOBAL_KEY) as GlobalRecord).islandedSinceMs, -1);
    // Connected: every breaker is closed (gridUp), each a switch transaction with its read-back.
    await c.waitFor("all three breakers closed and recorded", () => [1, 2, CLINIC].every((m) => (node.ledger.state.tree.get(breakerKey(m, 0)) as { readback?: string } | undefined)?.readback === "closed"));
  });

  it("an outage at the PCC islands within its clearing time; the island sheds from the end of the order and keeps the first premises on", async () => {
    const before = islandTxs().length;
    pcc(clockMs + 1_000, 0); // the voltage collapses: UV2 (0.45 pu, 0.16 s) trips on the first sample
    clockMs += 1_000;
    await c.waitFor("islanded on UV2", () => islandTxs().length === before + 1);
    assert.deepEqual([islandTxs()[before]?.islanded, islandTxs()[before]?.reason], [true, "UV2"]);
    await controller.tick(); // 3,000 W of storage, 2,000 W assumed per premise (no readings): one premise fits
    const breakers = await c.waitFor("the shed recorded", () => {
      const states = [1, 2, CLINIC].map((m) => (node.ledger.state.tree.get(breakerKey(m, 0)) as { readback: string; commandedClose: boolean }).readback);
      return states[1] === "open" && states[2] === "open" ? states : null;
    });
    assert.deepEqual(breakers, ["closed", "open", "open"], "the first in the order stays on; the others are shed");
    assert.equal(controller.status().lastFigures?.supplyW, 3_000);
    assert.deepEqual(controller.status().lastStorage, { socWh: 50_000, openW: 3_000, reserveW: 0 }, "30 kWh above the reserve: the whole limit is open");
    assert.equal(controller.status().switchErrors, 0, controller.status().lastError ?? "");
    const app = buildHttp(node, { controller: () => controller });
    try {
      const grid = (await app.inject({ url: "/api/v1/grid" })).json() as {
        islanded: boolean;
        breakers: { premise: number; readback: string }[];
        controller: { decision: string; lastStorage: { socWh: number; openW: number } };
      };
      assert.equal(grid.islanded, true);
      assert.deepEqual([grid.controller.lastStorage.socWh, grid.controller.lastStorage.openW], [50_000, 3_000], "the battery as the controller saw it");
      assert.deepEqual(grid.breakers.map((b) => [b.premise, b.readback]), [[1, "closed"], [2, "open"], [CLINIC, "open"]]);
      assert.equal(grid.controller.decision, "islanded");
    } finally {
      await app.close();
    }
  });

  it("at the reserve the battery is the critical premises' only: with none voted, every premise is shed; above it again, restored", async () => {
    await setSoc(2_000); // 20 kWh: the reserve
    clockMs += 1_000;
    await controller.tick();
    assert.deepEqual(controller.status().lastStorage, { socWh: 20_000, openW: 0, reserveW: 3_000 });
    await c.waitFor("every breaker open", () => (readbacks().every((r) => r === "open") ? true : null));
    await setSoc(2_500); // 25 kWh: 5 kWh above the reserve, 20 kW over 15 minutes, capped at the 3 kW limit
    clockMs += 3_000; // the minimum off time
    await controller.tick();
    assert.deepEqual(controller.status().lastStorage, { socWh: 25_000, openW: 3_000, reserveW: 0 });
    await c.waitFor("the first premise back", () => (readbacks()[0] === "closed" ? true : null));
    assert.deepEqual(readbacks(), ["closed", "open", "open"], "2,000 W x 1.1 fits in 3,000 W; the next would need 2,000 W more");
  });

  it("a state of charge that cannot be right is not taken; once the last good one is stale the charge is unknown: the reserve tier only", async () => {
    const errors = controller.status().storageReadErrors;
    await setSoc(6_000); // 60 kWh of a 50 kWh battery: a wrong scale, or a wrong register
    clockMs += 1_000;
    await controller.tick();
    assert.equal(controller.status().storageReadErrors, errors + 1);
    assert.match(controller.status().lastError ?? "", /reads 60000 Wh, above capacityWh \(50000\)/);
    assert.equal(controller.status().lastStorage?.socWh, 25_000, "the last good reading, 1 s old");
    clockMs += 10_000; // 11 s after the last good reading: stale (demandFreshMs 2 s)
    await controller.tick();
    assert.deepEqual(controller.status().lastStorage, { socWh: null, openW: 0, reserveW: 3_000 });
    // The breakers themselves (the switch transactions of a clock 21 s ahead of the blocks fall outside the ledger's time window).
    assert.deepEqual(await coils(), [false, false, false]);
  });

  it("a bad controller file is refused with every mistake named", () => {
    const file = fileFor(502) as Record<string, unknown>;
    const bad = { ...file, pccMeterId: 300, dispatch: { ...(file.dispatch as object), closesPerStepMax: 0 }, premises: [{ member: 1, breaker: 0, ratingW: 5, device: "ftp:x", unit: 1 }], extra: 1 };
    assert.throws(
      () => parseControllerConfig(bad, "controller.json"),
      (e: unknown) => e instanceof ConfigError && /pccMeterId/.test(e.message) && /closesPerStepMax/.test(e.message) && /device/.test(e.message),
    );
    const neither = { ...file, premises: [{ member: 1, breaker: 0, ratingW: 5, device: "tcp:127.0.0.1:502", unit: 1 }] };
    assert.throws(() => parseControllerConfig(neither, "c.json"), (e: unknown) => e instanceof ConfigError && /give either "coil"/.test(e.message));
    assert.throws(
      () => parseControllerConfig({ ...file, dispatch: { ...(file.dispatch as object), minOffMs: 2_000 } }, "c.json"),
      (e: unknown) => e instanceof ConfigError && /\/dispatch\/minOffMs: 2000 must be above demandFreshMs \(2000\)/.test(e.message),
    );
    const twice = { ...file, premises: [0, 1].map((breaker) => ({ member: 1, breaker, ratingW: 5, device: "tcp:127.0.0.1:502", unit: 1, coil: breaker })) };
    assert.throws(() => parseControllerConfig(twice, "c.json"), (e: unknown) => e instanceof ConfigError && /\/premises\/1: member 1 is listed twice \(one breaker per member\)/.test(e.message));
    const storage = file.storage as Record<string, unknown>;
    const problemsOf = (over: Record<string, unknown>) => {
      try {
        parseControllerConfig({ ...file, storage: { ...storage, ...over } }, "c.json");
      } catch (e) {
        if (e instanceof ConfigError) return e.problems;
      }
      return [];
    };
    assert.deepEqual(problemsOf({ reserveWh: 60_000, whPerUnit: 0.5, device: "serial:/dev/ttyUSB0:99" }), [
      "/storage/reserveWh: 60000 is above capacityWh (50000)",
      "/storage/whPerUnit: the register's 65,535 counts make 32767 Wh, less than capacityWh (50000): it could never show the battery full",
      "/storage/device: baud 99 outside 300..115200",
    ]);
    assert.deepEqual(problemsOf({ scale: 10 }), ["/storage/scale: Unexpected property"]);
    assert.deepEqual(problemsOf({ register: 70_000 }), ["/storage/register: Expected integer to be less or equal to 65535"]);
    // Without a storage section, today's behaviour: the discharge limit offered to every premise whatever the charge.
    const { storage: _, ...without } = file;
    assert.equal(parseControllerConfig(without, "c.json").storage, null);
  });
});


describe("microgrid controller: a breaker that does not answer", () => {
  const c = new BoxCluster(1, { extraMembers: 1 });
  let controller: MicrogridController;
  let clockMs = Date.now();

  before(async () => {
    const node = await c.start(0);
    await c.waitFor("leadership", () => node.role === "leader" && node.ledger.state.height >= 1);
    const seq = new BoxSequence(node, c.signers[0] as NodeSigner, 0);
    const roles = await seq.submit({ type: "member", action: "setRoles", subject: 0, roles: Role.box | Role.admin | Role.controller });
    await c.waitFor("the controller role", () => node.fate(roles.tx.id).status === "committed");
    // Nothing listens on this port: every command fails at once.
    const port = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, "127.0.0.1", () => {
        const p = (s.address() as AddressInfo).port;
        s.close(() => resolve(p));
      });
    });
    const file = {
      pccMeterId: 0,
      grid: { nominalVoltageDeciV: 2300, nominalFrequencyMilliHz: 50_000 },
      storageDischargeMaxW: 0,
      dispatch: { hysteresisPermille: 100, minOnMs: 0, minOffMs: 3_000, closesPerStepMax: 3, demandFreshMs: 2_000 },
      premises: [{ member: 1, breaker: 0, ratingW: 2_000, device: `tcp:127.0.0.1:${port}`, unit: 1, coil: 1 }],
    };
    controller = new MicrogridController(node, seq, parseControllerConfig(file, "controller.json"), { onReading: () => () => {} }, { now: () => clockMs });
  });
  after(async () => {
    await controller?.stop();
    await c.close();
  });

  it("is commanded again after 1, 2, 4, 8 s (up to a minute), not every second: a faulted breaker does not flood the ledger", async () => {
    const start = clockMs;
    for (let s = 0; s < 12; s++) {
      clockMs = start + s * 1_000;
      await controller.tick();
    }
    const st = controller.status();
    assert.deepEqual([st.commands, st.switchErrors, st.retriesHeld], [4, 4, 8], `commands at 0, 1, 3 and 7 s; held at the other eight seconds (${st.lastError})`);
    assert.match(st.lastError ?? "", /member 1 breaker 0/);
  });
});
