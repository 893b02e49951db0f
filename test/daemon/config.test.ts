// `peergrid start --config <file>`: the shipped Raspberry Pi example is a
// valid file; every mistake in a file is named with its key and the fix;
// and a real box started from a config file (a child process, its meter on
// pymodbus) polls its meter, serves its API and stops cleanly on SIGTERM.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import mqtt from "mqtt";
import { ADMIN_TOKEN_CHARS_MIN, loadConfig, parseConfig } from "../../daemon/config.js";
import { LocalCluster, waitFor } from "../../daemon/local-cluster.js";
import { ConfigError } from "../../ledger/errors.js";
import { Ledger } from "../../ledger/ledger.js";
import { NodeVerifier } from "../../ledger/keys.js";
import { runCli } from "../helpers/cli.js";
import { imageOf, loadMap } from "../helpers/meters.js";
import { type PymodbusServer, startPymodbus } from "../helpers/pymodbus.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const EXAMPLE = join(ROOT, "scripts/raspberry-pi/peergrid.json");
const BIN = join(ROOT, "bin/peergrid.js");
const TOKEN = "f".repeat(64);

/** Every problem a ConfigError names, or [] if `f` does not throw one. */
function problemsOf(f: () => unknown): readonly string[] {
  try {
    f();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe("box config file", () => {
  const example = JSON.parse(readFileSync(EXAMPLE, "utf8")) as Record<string, unknown>;

  it("the shipped Raspberry Pi example is valid: one SDM630 on /dev/ttyUSB0, two peers, the admin token, a bidding policy", () => {
    const c = parseConfig(example, "peergrid.json", "/etc/peergrid", () => `${TOKEN}\n`);
    assert.equal(c.dataDir, "/var/lib/peergrid");
    assert.equal(c.keyFile, "/etc/peergrid/box.key");
    assert.deepEqual([...c.peers.keys()], [1, 2]);
    assert.deepEqual(c.raftListen, { host: "0.0.0.0", port: 7400 });
    assert.equal(c.adminToken, TOKEN, "trimmed");
    assert.equal(c.meters.length, 1);
    assert.deepEqual(c.meters[0]?.address, { kind: "rtu", path: "/dev/ttyUSB0", baud: 9600, parity: "none", dataBits: 8, stopBits: 1 });
    assert.equal(c.meters[0]?.meter.unit, 1);
    assert.equal(c.autoBid?.sellFloorMicroPerKWh, 120_000);
    assert.deepEqual([c.mqtt?.url, c.mqtt?.embeddedListen], [null, undefined], "no mqtt section: the embedded broker on its default address");
    assert.equal(parseConfig({ ...example, mqtt: "off" }, "c.json", "/", () => TOKEN).mqtt, null);
    assert.deepEqual(problemsOf(() => parseConfig({ ...example, mqtt: { broker: "http://x", listen: "0.0.0.0:1883" } }, "c.json", "/", () => TOKEN)), [
      '/mqtt/listen: only for the embedded broker (broker "embedded")',
      '/mqtt/broker "http://x": the scheme is http; wants mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (e.g. mqtt://192.168.1.5:1883)',
    ]);
  });

  it("relative paths are taken from the file's directory", () => {
    const c = parseConfig({ dataDir: "data", key: "keys/box.key", raft: { peers: {} }, http: { listen: "off" } }, "c.json", "/srv/box");
    assert.deepEqual([c.dataDir, c.keyFile, c.httpListen], ["/srv/box/data", "/srv/box/keys/box.key", null]);
  });

  it("every mistake is named at once, each with its key and what would be right", () => {
    const bad = {
      ...example,
      raft: { listen: "everywhere", peers: { "1": "192.168.1.21", two: "x:1" } },
      meters: [
        { id: 0, map: "eastron-sdm630", device: "/dev/ttyUSB0" },
        { id: 0, map: "eastron-sdm630", device: "serial:/dev/ttyUSB1:7" },
      ],
      autoBid: { ...(example.autoBid as object), maxBuyWh: "lots" },
      colour: "green",
    };
    const problems = problemsOf(() => parseConfig(bad, "peergrid.json", "/etc/peergrid", () => TOKEN));
    assert.ok(problems.some((p) => p.startsWith("/colour: Unexpected property")), problems.join("\n"));
    // Schema errors first; the rest once the shape is right.
    const shaped = { ...bad } as Record<string, unknown>;
    delete shaped.colour;
    const rest = problemsOf(() => parseConfig(shaped, "peergrid.json", "/etc/peergrid", () => "short"));
    assert.deepEqual(rest, [
      "/raft/listen: everywhere is not HOST:PORT (e.g. 192.168.1.20:7400)",
      "/raft/peers/1: 192.168.1.21 is not HOST:PORT (e.g. 192.168.1.20:7400)",
      '/raft/peers/two: "two" is not a member index; peers are {"<member index>": "HOST:PORT"}, the index being the box\'s place in the genesis members',
      `/http/adminTokenFile: the token is 5 characters; it must be at least ${ADMIN_TOKEN_CHARS_MIN} (make one with: openssl rand -hex 32 > /etc/peergrid/admin.token)`,
      '/meters/0/device: "/dev/ttyUSB0" is not tcp:HOST:PORT or serial:DEVICE[:BAUD[:PARITY]] (e.g. serial:/dev/ttyUSB0:9600:none)',
      "/meters/1/id: meter 0 is listed twice (each meter its own channel id)",
      '/meters/1: --meter "0=eastron-sdm630@serial:/dev/ttyUSB1:7": baud 7 outside 300..115200',
      ...rest.filter((p) => p.startsWith("/autoBid")),
    ]);
    assert.ok(rest.some((p) => p.startsWith("/autoBid") && p.includes("maxBuyWh")), rest.join("\n"));
  });

  it("a controller whose PCC meter is not one of the box's meters, and an unreadable token file, are refused", () => {
    const controller = {
      pccMeterId: 3,
      grid: { nominalVoltageDeciV: 2300, nominalFrequencyMilliHz: 50_000 },
      storageDischargeMaxW: 0,
      dispatch: { hysteresisPermille: 100, minOnMs: 0, minOffMs: 20_000, closesPerStepMax: 2, demandFreshMs: 10_000 },
      premises: [{ member: 1, breaker: 0, ratingW: 5_000, device: "tcp:192.168.1.60:502", unit: 1, coil: 0 }],
    };
    const problems = problemsOf(() =>
      parseConfig({ ...example, controller }, "peergrid.json", "/etc/peergrid", () => {
        throw Object.assign(new Error("no such file"), { code: "ENOENT" });
      }),
    );
    assert.deepEqual(problems, [
      "/http/adminTokenFile: cannot read /etc/peergrid/admin.token (ENOENT)",
      "/controller/pccMeterId: 3 is not one of /meters' ids (0): the controller watches the grid at one of this box's meters",
    ]);
    const inside = problemsOf(() => parseConfig({ ...example, controller: { ...controller, pccMeterId: 0, dispatch: { ...controller.dispatch, minOffMs: 0 } } }, "c.json", "/", () => TOKEN));
    assert.ok(inside.some((p) => p.startsWith("/controller/dispatch/minOffMs: 0 must be above demandFreshMs")), inside.join("\n"));
  });

  it("a file that is not JSON, a missing file, and --config with other options are usage errors (exit 2)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "pg-config-"));
    try {
      writeFileSync(join(dir, "bad.json"), "{ dataDir: /var/lib }");
      assert.ok(problemsOf(() => loadConfig(join(dir, "bad.json")))[0]?.startsWith("/: not valid JSON"));
      const missing = await runCli("start", "--config", join(dir, "nope.json"));
      assert.equal(missing.code, 2);
      assert.match(missing.out, /cannot read the config file .*nope\.json: ENOENT/);
      const both = await runCli("start", "--config", EXAMPLE, "--data-dir", dir);
      assert.equal(both.code, 2);
      assert.match(both.out, /--config holds every setting of the box: drop --data-dir/);
      const neither = await runCli("start");
      assert.equal(neither.code, 2);
      assert.match(neither.out, /give --config <file>, or --data-dir and --key/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a box started from its config file", () => {
  const dir = mkdtempSync(join(tmpdir(), "pg-config-box-"));
  let server: PymodbusServer;
  let child: ChildProcess;
  let exited: Promise<number | null>;
  const lines: string[] = [];
  const httpPort = 18_000 + Math.floor(Math.random() * 2_000);
  const mqttPort = httpPort + 2_000;

  before(async () => {
    const sdm630 = loadMap("eastron-sdm630");
    server = await startPymodbus({ 1: imageOf(sdm630, { voltageL1: 230, voltageL2: 231, voltageL3: 229, frequency: 50, powerTotal: 1_250, importEnergy: 2_000_000, exportEnergy: 10_000 }) });
    LocalCluster.create({ dir, boxes: 1, basePort: 0 });
    writeFileSync(join(dir, "admin.token"), `${TOKEN}\n`);
    // Relative paths: from the config file's directory.
    const config = {
      dataDir: "box-0",
      key: "member-0.key",
      raft: { listen: "127.0.0.1:0", peers: {} },
      http: { listen: `127.0.0.1:${httpPort}`, adminTokenFile: "admin.token" },
      meters: [{ id: 0, map: "eastron-sdm630", device: `tcp:127.0.0.1:${server.port}`, unit: 1 }],
      mqtt: { broker: "embedded", listen: `127.0.0.1:${mqttPort}` },
      timing: { tickMs: 50, electionTicks: 10, blockIntervalMs: 500 },
    };
    writeFileSync(join(dir, "peergrid.json"), JSON.stringify(config, null, 2));
    child = spawn(process.execPath, [BIN, "start", "--config", join(dir, "peergrid.json")], { stdio: ["ignore", "pipe", "pipe"] });
    exited = new Promise((resolve) => child.once("exit", (code) => resolve(code)));
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (l) => lines.push(l));
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (l) => {
        lines.push(l);
        if (l.includes('"msg":"ready"')) resolve();
      });
      void exited.then((code) => reject(new Error(`exited ${code} before ready:\n${lines.join("\n")}`)));
    });
  });
  after(async () => {
    if (child.exitCode === null) child.kill("SIGKILL");
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("polls its meter into the ledger and serves its API", async () => {
    const meters = await waitFor("a good reading accepted", async () => {
      const r = (await (await fetch(`http://127.0.0.1:${httpPort}/api/v1/meters`)).json()) as { submitted: { accepted: number } };
      return r.submitted.accepted >= 2 ? r : null;
    }, 15_000, 200);
    assert.ok(meters.submitted.accepted >= 2);
    const status = (await (await fetch(`http://127.0.0.1:${httpPort}/api/v1/status`)).json()) as { role: string; height: number };
    assert.equal(status.role, "leader");
    const page = await fetch(`http://127.0.0.1:${httpPort}/`);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<html/i, "the web app, served by the box");
  });

  it("runs its embedded MQTT broker: the box's retained status is online, and its meter's state is published", async () => {
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { reconnectPeriod: 0 });
    try {
      const seen = new Map<string, string>();
      client.on("message", (topic, payload) => seen.set(topic, payload.toString()));
      await client.subscribeAsync(["peergrid/0/status", "peergrid/0/meter/0/state"]);
      await waitFor("status and meter state", () => (seen.has("peergrid/0/status") && seen.has("peergrid/0/meter/0/state") ? true : null), 10_000, 50);
      assert.equal(seen.get("peergrid/0/status"), "online");
      assert.equal((JSON.parse(seen.get("peergrid/0/meter/0/state") as string) as { powerW: number }).powerW, 1_250);
    } finally {
      await client.endAsync();
    }
  });

  it("stops cleanly on SIGTERM: exit 0, and the ledger reopens whole", async () => {
    child.kill("SIGTERM");
    assert.equal(await exited, 0, lines.slice(-10).join("\n"));
    assert.ok(lines.some((l) => l.includes('"msg":"shutting down"') && l.includes("SIGTERM")));
    const ledger = Ledger.open(join(dir, "box-0"), new NodeVerifier());
    try {
      assert.ok(ledger.state.height > 0);
      assert.ok(ledger.store.latestReadings().some((r) => r.powerW === 1_250), "the meter's readings, signed and committed");
    } finally {
      ledger.close();
    }
  });
});
