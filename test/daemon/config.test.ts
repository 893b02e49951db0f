// `peergrid start --config <file>`: the shipped Raspberry Pi example is a
// valid file; every mistake in a file is named with its key and the fix;
// and a real box started from a config file (a child process, its meter on
// pymodbus) polls its meter, serves its API and stops cleanly on SIGTERM.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import mqtt from "mqtt";
import { ADMIN_TOKEN_CHARS_MIN, loadConfig, parseConfig } from "../../daemon/config.js";
import { AUTHOR_MAX } from "../../ledger/tx.js";
import { LocalCluster, waitFor } from "../../daemon/local-cluster.js";
import { ConfigError } from "../../ledger/errors.js";
import { Ledger } from "../../ledger/ledger.js";
import { toHex } from "../../ledger/hash.js";
import { NodeSigner, NodeVerifier, writeKeyFile } from "../../ledger/keys.js";
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
      "/raft/listen: everywhere is not HOST:PORT (e.g. 0.0.0.0:7400)",
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

  it("a schema mistake says what the key wants; an unknown key lists the keys there; a wrong mqtt object names its own key", () => {
    const noDataDir = { ...example } as Record<string, unknown>;
    delete noDataDir.dataDir;
    // One line for the missing key (not a second "Expected string" for the same key), with what it is.
    assert.deepEqual(problemsOf(() => parseConfig(noDataDir, "c.json", "/", () => TOKEN)), ["/dataDir: Expected required property: the box's data directory, made by `peergrid init`"]);
    assert.deepEqual(problemsOf(() => parseConfig({ ...example, timing: { tickMs: 5 } }, "c.json", "/", () => TOKEN)), ["/timing/tickMs: Expected integer to be greater or equal to 10: the Raft tick, whole ms 10..10000 (default 100)"]);
    assert.deepEqual(problemsOf(() => parseConfig({ ...example, timing: { tickms: 50 } }, "c.json", "/", () => TOKEN)), ["/timing/tickms: Unexpected property; the keys here are tickMs, electionTicks, heartbeatTicks, blockIntervalMs"]);
    // Not "Expected union value": the object's own mistake.
    assert.deepEqual(problemsOf(() => parseConfig({ ...example, mqtt: { broker: "embedded", user: "me" } }, "c.json", "/", () => TOKEN)), [
      "/mqtt/user: Unexpected property; the keys here are broker, listen, topicPrefix, discoveryPrefix, username, passwordFile, outboxMax, currency",
    ]);
    const notOff = problemsOf(() => parseConfig({ ...example, mqtt: "on" }, "c.json", "/", () => TOKEN));
    assert.equal(notOff.length, 1);
    assert.match(notOff[0] ?? "", /^\/mqtt: .*"off" for none/);
  });

  it("values that pass the schema but would stop the box later are refused: timing, ports, peers", () => {
    // heartbeatTicks alone, above the default electionTicks: Raft would refuse to start (an assertion, restarted forever).
    assert.deepEqual(problemsOf(() => parseConfig({ ...example, timing: { heartbeatTicks: 20 } }, "c.json", "/", () => TOKEN)), [
      "/timing/heartbeatTicks: 20 must be fewer than electionTicks (10, the default): lower it, or raise electionTicks",
    ]);
    assert.deepEqual(problemsOf(() => parseConfig({ ...example, timing: { electionTicks: 3, heartbeatTicks: 3 } }, "c.json", "/", () => TOKEN)), ["/timing/electionTicks: 3 must be more than heartbeatTicks (3)"]);
    const ports = problemsOf(() =>
      parseConfig(
        {
          ...example,
          raft: { listen: "0.0.0.0:0", peers: { "1": "192.168.1.21:0", "01": "192.168.1.23:7400", [String(AUTHOR_MAX + 1)]: "192.168.1.24:7400", "2": "192.168.1.22:7400", "3": "192.168.1.22:7400" } },
          http: { listen: "0.0.0.0:1883" },
        },
        "c.json",
        "/",
        () => TOKEN,
      ),
    );
    // (In key order as JavaScript keeps it: integer keys first, ascending.)
    assert.deepEqual(ports, [
      "/raft/listen: port 0 lets the system pick a port, which the other boxes could not know; give a fixed one (e.g. 0.0.0.0:7400)",
      "/raft/peers/1: port 0 lets the system pick a port, which that box could not know; give a fixed one (e.g. 192.168.1.20:7400)",
      "/raft/peers/3: 192.168.1.22:7400 is also peer 2's address; each box has its own",
      `/raft/peers/${AUTHOR_MAX + 1}: "${AUTHOR_MAX + 1}" is not a member index; peers are {"<member index>": "HOST:PORT"}, the index being the box's place in the genesis members`,
      '/raft/peers/01: "01" is not a member index; peers are {"<member index>": "HOST:PORT"}, the index being the box\'s place in the genesis members',
      "/http/listen: port 1883 clashes with /mqtt (the embedded broker, on 0.0.0.0:1883 by default): each listener of the box needs its own port",
    ]);
    assert.deepEqual(problemsOf(() => parseConfig({ ...example, http: { listen: "127.0.0.1:7400" }, mqtt: "off" }, "c.json", "/", () => TOKEN)), ["/http/listen: port 7400 clashes with /raft/listen: each listener of the box needs its own port"]);
    assert.deepEqual(problemsOf(() => parseConfig({ ...example, http: { listen: "0.0.0.0:0" }, mqtt: { broker: "embedded", listen: "0.0.0.0:0" } }, "c.json", "/", () => TOKEN)), [
      "/http/listen: port 0 lets the system pick a port, which the neighbours' phones could not know; give a fixed one (e.g. 0.0.0.0:8400)",
      "/mqtt/listen: port 0 lets the system pick a port, which MQTT clients could not know; give a fixed one (e.g. 0.0.0.0:1883)",
    ]);
    // Different hosts may share a port; a box alone may let the system pick its Raft port.
    assert.doesNotThrow(() => parseConfig({ ...example, raft: { listen: "127.0.0.1:0", peers: {} }, http: { listen: "127.0.0.1:1883" }, mqtt: { broker: "embedded", listen: "127.0.0.2:1883" } }, "c.json", "/", () => TOKEN));
  });

  it("the files the config names are checked before the box starts: the key, the data directory, and peers that include the box itself", () => {
    const dir = mkdtempSync(join(tmpdir(), "pg-config-files-"));
    try {
      const config = { dataDir: "data", key: "box.key", raft: { listen: "0.0.0.0:7400", peers: { "0": "192.168.1.20:7400", "1": "192.168.1.21:7400" } }, http: { listen: "off" }, mqtt: "off" };
      // With a mistake in the document too: every one at once.
      writeFileSync(join(dir, "peergrid.json"), JSON.stringify({ ...config, timing: { heartbeatTicks: 20 } }));
      assert.deepEqual(problemsOf(() => loadConfig(join(dir, "peergrid.json"))), [
        "/timing/heartbeatTicks: 20 must be fewer than electionTicks (10, the default): lower it, or raise electionTicks",
        `/key: ${join(dir, "box.key")}: cannot read (ENOENT)`,
        `/dataDir: ${join(dir, "data")} holds no ledger (ledger.sqlite): make it with peergrid init --genesis genesis.json --data-dir ${join(dir, "data")}`,
      ]);
      const signer = NodeSigner.generate();
      writeKeyFile(join(dir, "box.key"), signer);
      mkdirSync(join(dir, "data"));
      writeFileSync(join(dir, "data", "ledger.sqlite"), "");
      // The genesis that init leaves beside the ledger: this key is member 1, which raft.peers lists.
      writeFileSync(join(dir, "data", "genesis.json"), JSON.stringify({ members: [{ publicKey: "ab".repeat(32) }, { publicKey: toHex(signer.publicKey) }] }));
      writeFileSync(join(dir, "peergrid.json"), JSON.stringify(config));
      assert.deepEqual(problemsOf(() => loadConfig(join(dir, "peergrid.json"))), ["/raft/peers/1: member 1 is this box itself (its key is member 1 of the genesis); list only the other boxes"]);
      writeFileSync(join(dir, "peergrid.json"), JSON.stringify({ ...config, raft: { ...config.raft, peers: { "0": "192.168.1.20:7400" } } }));
      assert.equal(loadConfig(join(dir, "peergrid.json")).keyFile, join(dir, "box.key"));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
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
