// The MQTT bridge against real brokers: Debian's mosquitto, started and
// stopped by each test (test/helpers/mosquitto.ts), and the box's embedded
// broker, observed with mosquitto's own client tools (mosquitto_sub,
// mosquitto_pub). The bridge is fed through a test MqttSource, and once
// through sourceOf() on a running box.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { type AddressInfo, type Server, type Socket, createServer, connect as tcpConnect } from "node:net";
import { after, describe, it } from "node:test";
import { waitFor } from "../../daemon/local-cluster.js";
import {
  DEFAULT_MQTT_OPTIONS,
  MqttBridge,
  type MqttBlock,
  type MqttClearing,
  type MqttIsland,
  type MqttOptions,
  type MqttPrice,
  type MqttReading,
  type MqttSource,
  Outbox,
  TRADES_PER_MESSAGE_MAX,
  mqttOptionProblems,
  sourceOf,
  within,
} from "../../daemon/mqtt.js";
import { CONNECTIONS_MAX, EmbeddedBroker, PACKET_BYTES_MAX, PacketSizeGuard } from "../../daemon/mqtt-broker.js";
import { PeergridError } from "../../ledger/errors.js";
import { BoxCluster } from "../helpers/box-cluster.js";
import { type Received, Subscriber, publish, startMosquitto, stopAll } from "../helpers/mosquitto.js";

// A test that fails half-way must not leave a broker running (it would keep the runner alive).
after(stopAll);

const BOX = 3;
const CONFIG = "homeassistant/sensor/peergrid_3";

class TestSource implements MqttSource {
  constructor(
    readonly boxId = BOX,
    readonly boxName = `maple-street box-${boxId}`,
  ) {}

  islandNow: MqttIsland = { islanded: false, sinceMs: null, changedMs: null };
  price: MqttPrice | null = null;
  private readonly blockListeners = new Set<(block: MqttBlock, clearing: MqttClearing | null) => void>();
  private readonly readingListeners = new Set<(meterId: number, r: MqttReading) => void>();

  onBlock(listener: (block: MqttBlock, clearing: MqttClearing | null) => void): () => void {
    this.blockListeners.add(listener);
    return () => this.blockListeners.delete(listener);
  }

  onReading(listener: (meterId: number, r: MqttReading) => void): () => void {
    this.readingListeners.add(listener);
    return () => this.readingListeners.delete(listener);
  }

  island(): MqttIsland {
    return this.islandNow;
  }

  lastPrice(): MqttPrice | null {
    return this.price;
  }

  block(height: number, clearing: MqttClearing | null = null): void {
    const block = { height, timeMs: 1_782_000_000_000 + height * 1_000, txCount: height % 3, hash: height.toString(16).padStart(64, "0"), proposer: 0 };
    for (const l of this.blockListeners) l(block, clearing);
  }

  reading(meterId: number, r: Partial<MqttReading> = {}): void {
    const reading: MqttReading = { timeMs: 1_782_000_000_000, importWh: 1_000_000, exportWh: 250_000, powerW: -1_520, voltagesDeciV: [2301, 2299, 2310], frequencyMilliHz: 50_010, quality: 0, problems: [], ...r };
    for (const l of this.readingListeners) l(meterId, reading);
  }

  get listeners(): number {
    return this.blockListeners.size + this.readingListeners.size;
  }
}

function options(o: Partial<MqttOptions>): MqttOptions {
  return { ...DEFAULT_MQTT_OPTIONS, reconnectPeriodMs: 200, ...o };
}

function json(m: Received): Record<string, unknown> {
  return JSON.parse(m.payload) as Record<string, unknown>;
}

const onTopic = (topic: string, extra: (m: Received) => boolean = () => true) => (m: Received) => m.topic === topic && extra(m);

/** A bridge with its embedded broker on a free loopback port, started. */
async function embeddedBridge(source: MqttSource, o: Partial<MqttOptions> = {}): Promise<{ readonly bridge: MqttBridge; readonly port: number }> {
  const bridge = new MqttBridge(source, options({ url: null, embeddedListen: { host: "127.0.0.1", port: 0 }, ...o }));
  await bridge.start();
  const port = Number(/^mqtt:\/\/127\.0\.0\.1:(\d+)$/.exec(bridge.status().brokerUrl)?.[1]);
  assert.ok(port > 0, bridge.status().brokerUrl);
  return { bridge, port };
}

/** A raw TCP connection to a broker (from localAddress: another loopback address looks like another host), and when it closed. */
async function rawConnection(port: number, localAddress = "127.0.0.1"): Promise<{ readonly socket: Socket; readonly closed: Promise<void> }> {
  const socket = tcpConnect({ port, host: "127.0.0.1", localAddress });
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  socket.on("error", () => {});
  return { socket, closed: new Promise<void>((resolve) => socket.once("close", () => resolve())) };
}

/** The bridge has everything it was given acknowledged by the broker. */
function drained(bridge: MqttBridge, what = "the bridge to connect and send everything"): Promise<true> {
  return waitFor(what, () => {
    const s = bridge.status();
    return s.connected && s.outboxDepth === 0 && s.inflight === 0;
  }, 10_000, 20);
}

describe("MQTT bridge options", () => {
  it("a URL that is not mqtt:// or mqtts://, and every other wrong option, is refused at once, each named", () => {
    assert.throws(() => new MqttBridge(new TestSource(), options({ url: "http://x" })), (err: unknown) => {
      assert.ok(err instanceof PeergridError);
      assert.equal(err.code, "PG_ERR_MQTT_CONFIG");
      assert.match(err.message, /url "http:\/\/x": the scheme is http; wants mqtt:\/\/HOST\[:PORT\] or mqtts:\/\/HOST\[:PORT\]/);
      return true;
    });
    assert.throws(
      () => new MqttBridge(new TestSource(), options({ url: "mqtt://user:secret@broker", topicPrefix: "grid/#", discoveryPrefix: "/ha", outboxMax: 0, currency: "euro", password: "x", embeddedListen: { host: "0.0.0.0", port: 1883 } })),
      (err: unknown) => {
        assert.ok(err instanceof PeergridError);
        for (const what of ["not in the URL", "embeddedListen: only for the embedded broker", 'topicPrefix "grid/#"', 'discoveryPrefix "/ha"', "outboxMax: got 0", 'currency: got "euro"', "password: given without a username"]) {
          assert.ok(err.message.includes(what), `names ${what}: ${err.message}`);
        }
        return true;
      },
    );
    assert.throws(() => new MqttBridge(new TestSource(), options({ url: "not a url" })), /not a URL/);
  });

  it("a prefix a broker would refuse as malformed UTF-8 (control characters, lone surrogates, non-characters) is refused at once", () => {
    // mosquitto closes the connection of a CONNECT whose will topic holds one: the bridge would never connect.
    for (const bad of ["peer\tgrid", "peergrid\n", "peer\u0000grid", "peer\u007fgrid", "peer\u0085grid", "peer\ud800grid", "peer\udc00", "peer\ufffe", "peer\u{1fffe}"]) {
      const problems = mqttOptionProblems(options({ topicPrefix: bad }));
      assert.ok(problems.some((p) => p.startsWith(`topicPrefix ${JSON.stringify(bad)}: may not contain`)), `${JSON.stringify(bad)}: ${problems.join("; ")}`);
      assert.ok(mqttOptionProblems(options({ discoveryPrefix: bad })).some((p) => p.startsWith("discoveryPrefix")), JSON.stringify(bad));
    }
    for (const good of ["peergrid", "home/peer-grid_2", "énergie/ü", "grid/😀"]) assert.deepEqual(mqttOptionProblems(options({ topicPrefix: good })), [], good);
  });

  it("prefixes where one tree lies under the other are refused (Home Assistant's birth topic would be the box's status)", () => {
    for (const [topicPrefix, discoveryPrefix] of [["peergrid", "peergrid/3"], ["homeassistant/peergrid", "homeassistant"], ["ha", "ha"]] as const) {
      assert.ok(mqttOptionProblems(options({ topicPrefix, discoveryPrefix })).some((p) => p.includes("neither may lie under the other")), `${topicPrefix} ${discoveryPrefix}`);
    }
    assert.deepEqual(mqttOptionProblems(options({ topicPrefix: "peergrid", discoveryPrefix: "peergrid-ha" })), []);
  });

  it("the embedded broker with a username wants a non-empty password (a username alone would let nobody in, an empty password anyone)", () => {
    for (const password of [undefined, ""]) {
      const problems = mqttOptionProblems(options({ url: null, username: "ha", ...(password !== undefined && { password }) }));
      assert.ok(problems.some((p) => p.startsWith("password: the embedded broker wants a non-empty password")), problems.join("; "));
    }
    assert.deepEqual(mqttOptionProblems(options({ url: null, username: "ha", password: "s3cret" })), []);
    assert.deepEqual(mqttOptionProblems(options({ url: "mqtt://broker", username: "ha" })), [], "an external broker may take a username alone");
  });

  it("the embedded broker's packet guard: follows fixed headers across any split, and stops a packet announcing more than its bound", () => {
    const connect = Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x00]); // CONNECT, empty client id
    const ping = Buffer.from([0xc0, 0x00]);
    const publish200 = Buffer.concat([Buffer.from([0x30, 0xc8, 0x01]), Buffer.alloc(200)]); // 200 bytes: a 2-byte length
    const stream = Buffer.concat([connect, ping, publish200, ping]);
    for (let split = 1; split <= 7; split++) {
      const g = new PacketSizeGuard(204); // publish200 is 203 bytes in all
      for (let i = 0; i < stream.length; i += split) assert.equal(g.feed(stream.subarray(i, i + split)), true, `split ${split} at ${i}`);
    }
    const tight = new PacketSizeGuard(202);
    assert.equal(tight.feed(Buffer.concat([connect, ping])), true);
    assert.equal(tight.feed(publish200.subarray(0, 2)), true, "the length is not known yet");
    assert.equal(tight.feed(publish200.subarray(2, 3)), false, "over the bound as soon as its header says so");
    const huge = new PacketSizeGuard(PACKET_BYTES_MAX);
    assert.equal(huge.feed(Buffer.from([0x30, 0x80, 0x80, 0x80, 0x01])), false, "a 256 MiB announcement");
    assert.equal(new PacketSizeGuard(PACKET_BYTES_MAX).feed(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f])), false, "a fifth length byte: malformed");
  });

  it("the outbox: retained topics coalesce to their latest value, events drop oldest first at the count and byte bounds", () => {
    const o = new Outbox({ eventsMax: 3, eventsBytesMax: 100, retainedTopicsMax: 4 });
    o.setRetained("s", "online", "status");
    o.setRetained("m/state", "1", "state");
    o.setRetained("cfg", "{}", "config");
    o.setRetained("m/state", "2", "state");
    for (let i = 1; i <= 5; i++) o.pushEvent("b", `${i}`);
    assert.equal(o.dropped, 2);
    assert.equal(o.depth, 3 + 3);
    const taken: string[] = [];
    for (let m = o.take(); m !== undefined; m = o.take()) taken.push(`${m.retain ? "r" : "e"} ${m.topic} ${m.payload}`);
    assert.deepEqual(taken, ["r s online", "r cfg {}", "r m/state 2", "e b 3", "e b 4", "e b 5"]);
    // A new connection sends every retained topic again: status, then configs, then state.
    o.markDirty(null);
    assert.deepEqual([o.take()?.topic, o.take()?.topic, o.take()?.topic, o.take()], ["s", "cfg", "m/state", undefined]);
    o.pushEvent("b", "x".repeat(60));
    o.pushEvent("b", "y".repeat(60)); // 122 bytes together: the older goes
    assert.equal(o.dropped, 3);
    assert.equal(o.take()?.payload, "y".repeat(60));
    o.pushEvent("b", "z".repeat(200)); // alone over the byte bound
    assert.equal(o.dropped, 4);
    assert.equal(o.depth, 0);
    o.setRetained("t5", "", "state");
    assert.throws(() => o.setRetained("t6", "", "state"), /more than 4 retained topics/);
  });
});

describe("MQTT bridge on mosquitto", () => {
  it("status: retained online; the will's offline when the box's process dies; offline on a clean stop", { timeout: 30_000 }, async () => {
    const broker = await startMosquitto();
    const module = new URL("../../daemon/mqtt.js", import.meta.url).href;
    // A box in its own process, killed with SIGKILL: no chance to say goodbye, so only the broker's will can.
    const child = spawn(
      process.execPath,
      [
        "--input-type=module",
        "-e",
        `const { MqttBridge } = await import(${JSON.stringify(module)});
         const source = { boxId: ${BOX}, boxName: "child", onBlock: () => () => {}, onReading: () => () => {}, island: () => ({ islanded: false, sinceMs: null, changedMs: null }), lastPrice: () => null };
         const bridge = new MqttBridge(source, { url: "mqtt://127.0.0.1:${broker.port}", topicPrefix: "peergrid", discoveryPrefix: "homeassistant", outboxMax: 10 });
         await bridge.start();
         const timer = setInterval(() => { const s = bridge.status(); if (s.connected && s.outboxDepth === 0 && s.inflight === 0) { console.log("ready"); clearInterval(timer); } }, 20);`,
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const exited = new Promise((resolve) => child.once("exit", resolve));
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const subs: Subscriber[] = [];
    let bridge: MqttBridge | null = null;
    try {
      await waitFor("the child's bridge to publish online", () => out.includes("ready") || child.exitCode !== null, 10_000, 20);
      assert.match(out, /ready/, out);
      const sub = await Subscriber.start(broker.port, [`peergrid/${BOX}/status`]);
      subs.push(sub);
      await sub.waitFor((m) => m.payload === "online" && m.retained, 5_000, "the retained online");
      child.kill("SIGKILL");
      await exited;
      await sub.waitFor((m) => m.payload === "offline", 5_000, "the will's offline");
      await waitFor("mosquitto to log an unclean disconnection (hence the will)", () => /Client peergrid_3 closed its connection/.test(broker.log()), 5_000, 20);
      const late = await Subscriber.start(broker.port, [`peergrid/${BOX}/status`]);
      subs.push(late);
      await late.waitFor((m) => m.payload === "offline" && m.retained, 5_000, "offline retained");

      // The box again, in this process: online; then a clean stop publishes offline itself.
      const b = new MqttBridge(new TestSource(), options({ url: `mqtt://127.0.0.1:${broker.port}` }));
      bridge = b;
      await b.start();
      await drained(b);
      await sub.waitFor((m) => m.payload === "online" && sub.messages.indexOf(m) > 1, 5_000, "online again");
      const before = sub.messages.length;
      await b.stop();
      await sub.waitFor((m) => m.payload === "offline" && sub.messages.indexOf(m) >= before, 5_000, "offline on a clean stop");
      await waitFor("mosquitto to log a clean disconnection (the will dropped)", () => /Client peergrid_3 disconnected/.test(broker.log()), 5_000, 20);
      assert.equal(b.status().connected, false);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await bridge?.stop();
      for (const s of subs) await s.stop();
      await broker.close();
    }
  });

  it("a reading, a block and a clearing reach their topics; Home Assistant discovery for the meter's power and energy, the price and the island", { timeout: 30_000 }, async () => {
    const broker = await startMosquitto();
    const source = new TestSource();
    const bridge = new MqttBridge(source, options({ url: `mqtt://127.0.0.1:${broker.port}`, currency: "EUR" }));
    let sub: Subscriber | null = null;
    let late: Subscriber | null = null;
    try {
      await bridge.start();
      await drained(bridge);
      sub = await Subscriber.start(broker.port, ["peergrid/#", "homeassistant/#"]);
      source.reading(0);
      source.islandNow = { islanded: true, sinceMs: 1_782_000_001_000, changedMs: 1_782_000_001_000 };
      const clearing: MqttClearing = {
        intervalStartMs: 1_782_000_000_000,
        rule: "pay-as-clear",
        priceMicroPerKWh: 123_456,
        volumeWh: 1_500,
        tradeCount: 1,
        trades: [{ buyer: 4, seller: 1, energyWh: 1_500, buyerPriceMicroPerKWh: 123_456, sellerPriceMicroPerKWh: 123_456 }],
      };
      source.block(7, clearing);

      const state = json(await sub.waitFor(onTopic(`peergrid/${BOX}/meter/0/state`)));
      assert.deepEqual(state, { timeMs: 1_782_000_000_000, powerW: -1_520, importWh: 1_000_000, exportWh: 250_000, voltagesV: [230.1, 229.9, 231], frequencyHz: 50.01, quality: 0, problems: [] });
      const power = json(await sub.waitFor(onTopic(`${CONFIG}/meter_0_power/config`)));
      assert.equal(power.device_class, "power");
      assert.equal(power.state_class, "measurement");
      assert.equal(power.unit_of_measurement, "W");
      assert.equal(power.state_topic, `peergrid/${BOX}/meter/0/state`);
      assert.equal(power.availability_topic, `peergrid/${BOX}/status`);
      assert.equal(power.unique_id, "peergrid_3_meter_0_power");
      assert.deepEqual(power.device, { identifiers: ["peergrid_3"], name: "maple-street box-3", manufacturer: "peergrid", model: "peergrid box" });
      for (const [side, field] of [["import", "importWh"], ["export", "exportWh"]] as const) {
        const energy = json(await sub.waitFor(onTopic(`${CONFIG}/meter_0_${side}/config`)));
        assert.equal(energy.device_class, "energy");
        assert.equal(energy.state_class, "total_increasing");
        assert.equal(energy.unit_of_measurement, "Wh");
        assert.equal(energy.value_template, `{{ value_json.${field} if value_json.quality == 0 else None }}`);
        assert.equal(energy.unique_id, `peergrid_3_meter_0_${side}`);
      }
      const priceConfig = json(await sub.waitFor(onTopic(`${CONFIG}/price/config`)));
      assert.equal(priceConfig.unit_of_measurement, "EUR/kWh");
      assert.equal(priceConfig.state_topic, `peergrid/${BOX}/market/price`);
      assert.equal(priceConfig.state_class, "measurement");
      const islandConfig = json(await sub.waitFor(onTopic("homeassistant/binary_sensor/peergrid_3/island/config")));
      // Every entity: available exactly while the box's status says so (its will says "offline"), its own unique id.
      const allConfigs = sub.messages.filter((m) => m.topic.endsWith("/config")).map(json);
      assert.equal(allConfigs.length, 3 + 2);
      for (const c of allConfigs) {
        assert.deepEqual([c.availability_topic, c.payload_available, c.payload_not_available], [`peergrid/${BOX}/status`, "online", "offline"], String(c.unique_id));
        assert.deepEqual(c.device, power.device);
      }
      assert.equal(new Set(allConfigs.map((c) => c.unique_id)).size, allConfigs.length);
      assert.equal(power.value_template, "{{ value_json.powerW if value_json.quality == 0 else None }}");
      assert.equal(priceConfig.value_template, "{{ value_json.pricePerKWh }}");
      assert.equal(priceConfig.device_class, undefined, 'no device_class: "monetary" refuses state_class measurement');
      assert.equal(islandConfig.device_class, "problem");
      assert.equal(islandConfig.state_topic, `peergrid/${BOX}/grid/island`);
      assert.deepEqual([islandConfig.payload_on, islandConfig.payload_off], ["ON", "OFF"]);

      const price = json(await sub.waitFor(onTopic(`peergrid/${BOX}/market/price`)));
      assert.deepEqual(price, { intervalStartMs: 1_782_000_000_000, rule: "pay-as-clear", priceMicroPerKWh: 123_456, pricePerKWh: 0.123456, volumeWh: 1_500, tradeCount: 1 });
      const trades = json(await sub.waitFor(onTopic(`peergrid/${BOX}/market/trades`)));
      assert.deepEqual(trades.trades, clearing.trades);
      assert.equal(trades.truncated, false);
      const block = json(await sub.waitFor(onTopic(`peergrid/${BOX}/block`)));
      assert.deepEqual(block, { height: 7, timeMs: 1_782_000_007_000, txCount: 1, hash: "7".padStart(64, "0"), proposer: 0 });
      const island = json(await sub.waitFor(onTopic(`peergrid/${BOX}/grid/island`, (m) => m.payload.includes("true"))));
      assert.deepEqual(island, { islanded: true, sinceMs: 1_782_000_001_000, changedMs: 1_782_000_001_000 });

      // Someone who subscribes later gets the state and the configs (retained), not the events.
      await drained(bridge);
      late = await Subscriber.start(broker.port, ["peergrid/#", "homeassistant/#"]);
      await late.waitFor(onTopic(`${CONFIG}/meter_0_export/config`, (m) => m.retained));
      const retainedTopics = new Set(late.messages.filter((m) => m.retained).map((m) => m.topic));
      for (const t of [`peergrid/${BOX}/status`, `peergrid/${BOX}/meter/0/state`, `peergrid/${BOX}/market/price`, `peergrid/${BOX}/grid/island`, `${CONFIG}/meter_0_power/config`, `${CONFIG}/price/config`]) {
        assert.ok(retainedTopics.has(t), `${t} is retained`);
      }
      assert.ok(!late.messages.some((m) => m.topic.endsWith("/block") || m.topic.endsWith("/trades")), "events are not retained");

      // A reading flagged as not good: the energy sensors' template gives None (unknown), not a backwards counter.
      source.reading(0, { importWh: 999_000, quality: 4, problems: ["import counter went backwards"] });
      const flagged = json(await sub.waitFor(onTopic(`peergrid/${BOX}/meter/0/state`, (m) => m.payload.includes("backwards"))));
      assert.equal(flagged.quality, 4);
      assert.equal(bridge.status().dropped, 0);
    } finally {
      await bridge.stop();
      await sub?.stop();
      await late?.stop();
      await broker.close();
    }
    assert.equal(source.listeners, 0, "stop unsubscribes from the source");
  });

  it("Home Assistant announcing itself online gets every discovery config again", { timeout: 30_000 }, async () => {
    const broker = await startMosquitto();
    const source = new TestSource();
    const bridge = new MqttBridge(source, options({ url: `mqtt://127.0.0.1:${broker.port}` }));
    let sub: Subscriber | null = null;
    try {
      await bridge.start();
      source.reading(0);
      source.reading(5);
      await drained(bridge);
      sub = await Subscriber.start(broker.port, ["homeassistant/#"]);
      await sub.waitFor(onTopic(`${CONFIG}/meter_5_export/config`, (m) => m.retained), 5_000, "the retained configs");
      const configs = (live: boolean) => new Set(sub?.messages.filter((m) => m.topic.endsWith("/config") && m.retained !== live).map((m) => m.topic));
      assert.equal(configs(false).size, 3 * 2 + 2);
      assert.equal(configs(true).size, 0);

      await publish(broker.port, "homeassistant/status", "offline"); // Home Assistant going away asks for nothing
      await publish(broker.port, "homeassistant/status", "online");
      await waitFor("every config published again", () => configs(true).size === 8, 5_000, 20);
      assert.deepEqual(configs(true), configs(false));
      assert.equal(sub.messages.filter((m) => m.topic === "homeassistant/status").length, 2);
    } finally {
      await bridge.stop();
      await sub?.stop();
      await broker.close();
    }
  });

  it("a broker restart: what the box published while mosquitto was down arrives, in order, once it is back", { timeout: 40_000 }, async () => {
    const broker = await startMosquitto({ persistence: true });
    const source = new TestSource();
    const bridge = new MqttBridge(source, options({ url: `mqtt://127.0.0.1:${broker.port}` }));
    // A durable subscriber: mosquitto keeps its session, and what is published to it, while it is away.
    const durable = { clientId: "peergrid-test-durable", persistent: true } as const;
    let sub: Subscriber | null = null;
    try {
      sub = await Subscriber.start(broker.port, [`peergrid/${BOX}/#`], durable);
      await bridge.start();
      source.reading(0, { importWh: 1_000_000 });
      await sub.waitFor(onTopic(`peergrid/${BOX}/meter/0/state`));
      await drained(bridge);
      await sub.stop();
      sub = null;

      await broker.stop();
      await waitFor("the bridge to see the broker gone", () => !bridge.status().connected, 10_000, 20);
      for (let h = 1; h <= 5; h++) {
        source.block(h);
        source.reading(0, { importWh: 1_000_000 + h });
      }
      const down = bridge.status();
      assert.equal(down.connected, false);
      assert.ok(down.outboxDepth >= 5, `blocks and the meter's state wait: ${JSON.stringify(down)}`);
      await waitFor("a connection error noted", () => bridge.status().lastError, 5_000, 20);

      await broker.start();
      await drained(bridge, "the bridge to reconnect and deliver its outbox");
      sub = await Subscriber.start(broker.port, [`peergrid/${BOX}/#`], durable);
      await sub.waitFor(onTopic(`peergrid/${BOX}/block`, (m) => json(m).height === 5), 5_000, "block 5");
      assert.deepEqual(sub.on(`peergrid/${BOX}/block`).map((m) => json(m).height), [1, 2, 3, 4, 5]);
      await sub.waitFor(onTopic(`peergrid/${BOX}/meter/0/state`, (m) => json(m).importWh === 1_000_005), 5_000, "the latest reading");
      assert.equal(bridge.status().dropped, 0);
    } finally {
      await bridge.stop();
      await sub?.stop();
      await broker.close();
    }
  });

  it("a broker restarted without persistence gets the box's retained state and configs again", { timeout: 30_000 }, async () => {
    const broker = await startMosquitto({ persistence: false });
    const source = new TestSource();
    const bridge = new MqttBridge(source, options({ url: `mqtt://127.0.0.1:${broker.port}` }));
    let sub: Subscriber | null = null;
    try {
      await bridge.start();
      source.reading(2);
      await drained(bridge);
      const published = bridge.status().published;
      await broker.stop();
      await waitFor("the bridge to see the broker gone", () => !bridge.status().connected, 10_000, 20);
      await broker.start();
      await waitFor("the bridge to publish again", () => bridge.status().published > published && bridge.status().outboxDepth === 0 && bridge.status().inflight === 0, 10_000, 20);
      sub = await Subscriber.start(broker.port, ["peergrid/#", "homeassistant/#"]);
      await sub.waitFor(onTopic(`peergrid/${BOX}/meter/2/state`, (m) => m.retained), 5_000, "the meter's state");
      for (const t of [`peergrid/${BOX}/status`, `peergrid/${BOX}/grid/island`, `${CONFIG}/meter_2_power/config`, `${CONFIG}/price/config`, "homeassistant/binary_sensor/peergrid_3/island/config"]) {
        await sub.waitFor(onTopic(t, (m) => m.retained), 5_000, t);
      }
      assert.equal(sub.on(`peergrid/${BOX}/status`)[0]?.payload, "online");
    } finally {
      await bridge.stop();
      await sub?.stop();
      await broker.close();
    }
  });

  it("a stop while the broker is away ends at once (nothing to say offline to: the will does), and leaves nothing running", { timeout: 20_000 }, async () => {
    const broker = await startMosquitto();
    const source = new TestSource();
    const bridge = new MqttBridge(source, options({ url: `mqtt://127.0.0.1:${broker.port}` }));
    try {
      await bridge.start();
      await drained(bridge);
      await broker.stop();
      await waitFor("the bridge to see the broker gone", () => !bridge.status().connected, 10_000, 20);
      source.block(1);
      const started = Date.now();
      await bridge.stop();
      assert.ok(Date.now() - started < 3_000, `stopped in ${Date.now() - started} ms`);
      assert.equal(source.listeners, 0);
      await broker.start(); // the bridge, stopped, does not come back
      await new Promise((resolve) => setTimeout(resolve, 500));
      assert.equal(bridge.status().connected, false);
      assert.doesNotMatch(broker.log(), /New client connected .* as peergrid_3/);
    } finally {
      await bridge.stop();
      await broker.close();
    }
  });

  it("the outbox over its bound while the broker is down drops the oldest events, counts them and says so", { timeout: 40_000 }, async () => {
    const broker = await startMosquitto({ persistence: true });
    const source = new TestSource();
    const logged: { level: string; msg: string; fields: Record<string, unknown> }[] = [];
    const bridge = new MqttBridge(source, options({ url: `mqtt://127.0.0.1:${broker.port}`, outboxMax: 5 }), (level, msg, fields = {}) => logged.push({ level, msg, fields }));
    const dropLogs = () => logged.filter((l) => l.msg.startsWith("MQTT outbox full"));
    const durable = { clientId: "peergrid-test-bound", persistent: true } as const;
    let sub: Subscriber | null = null;
    try {
      sub = await Subscriber.start(broker.port, [`peergrid/${BOX}/block`], durable);
      await bridge.start();
      await drained(bridge);
      await sub.stop();
      sub = null;
      await broker.stop();
      await waitFor("the bridge to see the broker gone", () => !bridge.status().connected, 10_000, 20);
      for (let h = 1; h <= 12; h++) source.block(h);
      assert.equal(bridge.status().outboxDepth, 5);
      assert.equal(bridge.status().dropped, 7);
      // The first drop at once; the rest, within the spacing, on the reconnection: no line per event.
      assert.deepEqual(dropLogs().map((l) => [l.level, l.fields.dropped, l.fields.outboxMax]), [["warn", 1, 5]]);

      await broker.start();
      await drained(bridge);
      sub = await Subscriber.start(broker.port, [`peergrid/${BOX}/block`], durable);
      await sub.waitFor((m) => json(m).height === 12, 5_000, "block 12");
      assert.deepEqual(sub.messages.map((m) => json(m).height), [8, 9, 10, 11, 12]);
      assert.equal(bridge.status().dropped, 7);
      assert.deepEqual(dropLogs().map((l) => [l.fields.dropped, l.fields.droppedTotal]), [[1, 1], [6, 7]]);
    } finally {
      await bridge.stop();
      await sub?.stop();
      await broker.close();
    }
  });
});

describe("MQTT bridge with its embedded broker", () => {
  it("a box alone serves MQTT: mosquitto_sub sees its topics; the box's topics are its own; Home Assistant's birth topic is open", { timeout: 30_000 }, async () => {
    const source = new TestSource();
    const { bridge, port } = await embeddedBridge(source);
    let sub: Subscriber | null = null;
    try {
      assert.equal(bridge.status().embedded, true);
      await drained(bridge);
      source.reading(1);
      source.block(1, { intervalStartMs: 1_782_000_000_000, rule: "pay-as-clear", priceMicroPerKWh: 100_000, volumeWh: 0, tradeCount: 0, trades: [] });
      await drained(bridge);

      sub = await Subscriber.start(port, ["peergrid/#", "homeassistant/#"]);
      await sub.waitFor(onTopic(`peergrid/${BOX}/status`, (m) => m.payload === "online" && m.retained));
      await sub.waitFor(onTopic(`peergrid/${BOX}/meter/1/state`, (m) => m.retained));
      await sub.waitFor(onTopic(`${CONFIG}/meter_1_import/config`, (m) => m.retained));
      await sub.waitFor(onTopic(`peergrid/${BOX}/market/price`, (m) => json(m).priceMicroPerKWh === 100_000));

      // A neighbour on the LAN cannot put a price of its own into the box's topics.
      await publish(port, `peergrid/${BOX}/market/price`, '{"pricePerKWh":9}', { retain: true }).catch(() => {}); // refused: the broker closes its connection
      await publish(port, "homeassistant/status", "online");
      await sub.waitFor(onTopic(`${CONFIG}/meter_1_import/config`, (m) => !m.retained), 5_000, "the configs again");
      const check = await Subscriber.start(port, [`peergrid/${BOX}/market/price`]);
      try {
        const price = await check.waitFor(() => true, 5_000, "the retained price");
        assert.equal(json(price).priceMicroPerKWh, 100_000);
      } finally {
        await check.stop();
      }
      assert.ok(!sub.messages.some((m) => m.payload.includes('"pricePerKWh":9')), "the neighbour's price went nowhere");
    } finally {
      await bridge.stop();
      await sub?.stop();
    }
    // Stopped: the embedded broker is gone with it.
    await assert.rejects(Subscriber.start(port, ["#"], { timeoutS: 2 }));
  });

  it("with a username and password, the embedded broker lets in only clients that give them", { timeout: 30_000 }, async () => {
    const { bridge, port } = await embeddedBridge(new TestSource(), { username: "ha", password: "s3cret" });
    try {
      await drained(bridge);
      await assert.rejects(Subscriber.start(port, ["#"], { timeoutS: 2 }), /not authori[sz]ed|Connection Refused|refused/i);
      await assert.rejects(Subscriber.start(port, ["#"], { timeoutS: 2, username: "ha", password: "wrong" }));
      const sub = await Subscriber.start(port, [`peergrid/${BOX}/status`], { username: "ha", password: "s3cret" });
      try {
        await sub.waitFor((m) => m.payload === "online");
      } finally {
        await sub.stop();
      }
    } finally {
      await bridge.stop();
    }
  });

  it("only the box's own topics are protected: another box's, other devices' discovery configs and Home Assistant's birth are open; a will cannot get round it", { timeout: 30_000 }, async () => {
    const source = new TestSource();
    const { bridge, port } = await embeddedBridge(source);
    const subs: Subscriber[] = [];
    try {
      source.block(1, { intervalStartMs: 1_782_000_000_000, rule: "pay-as-clear", priceMicroPerKWh: 100_000, volumeWh: 0, tradeCount: 0, trades: [] });
      await drained(bridge);
      const sub = await Subscriber.start(port, ["peergrid/#", "homeassistant/#", "peergrid-test/will"]);
      subs.push(sub);
      // Zigbee2MQTT or Tasmota on the same broker, and a second box's bridge publishing here (as `peergrid demo`
      // runs its boxes): let through (before, kicked off).
      await publish(port, "homeassistant/sensor/zigbee_0x01/temperature/config", '{"name":"t"}', { retain: true });
      await sub.waitFor(onTopic("homeassistant/sensor/zigbee_0x01/temperature/config"), 5_000, "another device's discovery config");
      const box4 = new MqttBridge(new TestSource(4), options({ url: `mqtt://127.0.0.1:${port}` }));
      try {
        await box4.start();
        await drained(box4, "box 4's bridge to send everything");
        await sub.waitFor(onTopic("peergrid/4/status", (m) => m.payload === "online"), 5_000, "box 4's status");
        await sub.waitFor(onTopic("homeassistant/sensor/peergrid_4/price/config"), 5_000, "box 4's price config");
        assert.equal(box4.status().lastError, null);
      } finally {
        await box4.stop();
      }
      // The box's own discovery config: refused (the broker closes the publisher's connection).
      await publish(port, `${CONFIG}/price/config`, '{"name":"fake"}', { retain: true }).catch(() => {});
      // A will on the box's price, and another on an open topic to know when wills have gone out.
      const fake = await Subscriber.start(port, ["peergrid-test/none"], { will: { topic: `peergrid/${BOX}/market/price`, payload: '{"pricePerKWh":9}', retain: true } });
      const control = await Subscriber.start(port, ["peergrid-test/none"], { will: { topic: "peergrid-test/will", payload: "gone" } });
      await fake.kill();
      await control.kill();
      await sub.waitFor(onTopic("peergrid-test/will"), 5_000, "the open will");
      const check = await Subscriber.start(port, [`peergrid/${BOX}/market/price`, `${CONFIG}/price/config`]);
      subs.push(check);
      const price = await check.waitFor(onTopic(`peergrid/${BOX}/market/price`), 5_000, "the retained price");
      assert.equal(json(price).priceMicroPerKWh, 100_000);
      assert.equal(json(await check.waitFor(onTopic(`${CONFIG}/price/config`), 5_000, "the price config")).name, "Local energy price");
      assert.ok(!sub.messages.some((m) => m.payload.includes("fake") || m.payload.includes('"pricePerKWh":9')), "neither the fake config nor the will reached the box's topics");
    } finally {
      await bridge.stop();
      for (const s of subs) await s.stop();
    }
  });

  it("no session outlives its connection: nothing is queued for a subscriber gone away (it would grow without bound)", { timeout: 30_000 }, async () => {
    const source = new TestSource();
    const { bridge, port } = await embeddedBridge(source);
    const durable = { clientId: "peergrid-test-durable", persistent: true } as const;
    let sub: Subscriber | null = null;
    try {
      await drained(bridge);
      sub = await Subscriber.start(port, [`peergrid/${BOX}/block`], durable);
      await sub.stop();
      for (let h = 1; h <= 3; h++) source.block(h);
      await drained(bridge);
      sub = await Subscriber.start(port, [`peergrid/${BOX}/block`], durable);
      source.block(4);
      await sub.waitFor(onTopic(`peergrid/${BOX}/block`), 5_000, "a block published after the reconnection");
      assert.deepEqual(sub.messages.map((m) => json(m).height), [4], "blocks 1-3 were not kept for the durable subscriber");
    } finally {
      await bridge.stop();
      await sub?.stop();
    }
  });

  it("a packet announcing more than the bound is cut off at its header; a connection that never says CONNECT does not hold up the stop", { timeout: 30_000 }, async () => {
    const source = new TestSource();
    const { bridge, port } = await embeddedBridge(source);
    try {
      const big = await rawConnection(port);
      big.socket.write(Buffer.from([0x10, 0x80, 0x80, 0x40])); // a CONNECT of 1 MiB, unauthenticated, its body never sent
      await within(big.closed, 3_000, "the oversized packet's connection closed");

      // The bridge's largest message, a clearing with the most trades, every number at its widest, gets through.
      const wide = Number.MAX_SAFE_INTEGER;
      const trades = Array.from({ length: TRADES_PER_MESSAGE_MAX + 1 }, () => ({ buyer: wide, seller: wide, energyWh: wide, buyerPriceMicroPerKWh: wide, sellerPriceMicroPerKWh: wide }));
      const sub = await Subscriber.start(port, [`peergrid/${BOX}/market/trades`]);
      try {
        source.block(1, { intervalStartMs: 0, rule: "pay-as-clear", priceMicroPerKWh: wide, volumeWh: wide, tradeCount: trades.length, trades });
        const m = json(await sub.waitFor(() => true, 5_000, "the largest trades message"));
        assert.equal((m.trades as unknown[]).length, TRADES_PER_MESSAGE_MAX);
        assert.equal(m.truncated, true);
      } finally {
        await sub.stop();
      }

      const idle = await rawConnection(port); // says nothing: aedes would wait 30 s for its CONNECT
      const started = Date.now();
      await bridge.stop();
      await within(idle.closed, 1_000, "the idle connection closed by the stop");
      assert.ok(Date.now() - started < 5_000, `stopped in ${Date.now() - started} ms`);
    } finally {
      await bridge.stop();
    }
  });

  it("connections from other hosts are bounded, and cannot keep out the box's own (its bridge, a local tool)", { timeout: 30_000 }, async () => {
    const { bridge, port } = await embeddedBridge(new TestSource());
    const lan: { readonly socket: Socket; readonly closed: Promise<void> }[] = [];
    try {
      await drained(bridge);
      for (let i = 0; i <= CONNECTIONS_MAX; i++) lan.push(await rawConnection(port, "127.0.0.2"));
      const closed = new Set<number>();
      lan.forEach((c, i) => void c.closed.then(() => closed.add(i)));
      await within((lan[CONNECTIONS_MAX] as { closed: Promise<void> }).closed, 3_000, "the connection over the bound closed");
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.deepEqual([...closed], [CONNECTIONS_MAX], "only the one over the bound");
      const local = await Subscriber.start(port, [`peergrid/${BOX}/status`], { timeoutS: 5 }); // from the box itself: let in
      try {
        await local.waitFor((m) => m.payload === "online");
      } finally {
        await local.stop();
      }
    } finally {
      for (const c of lan) c.socket.destroy();
      await bridge.stop();
    }
  });

  it("other clients' retained messages are bounded: a new topic beyond the bound is refused; deleting one makes room", { timeout: 30_000 }, async () => {
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", port: 0, bridgeClientId: "peergrid_3", protectedPrefixes: ["peergrid/3/"], retainedOthersTopicsMax: 2 });
    const subs: Subscriber[] = [];
    try {
      await publish(broker.port, "other/a", "1", { retain: true });
      await publish(broker.port, "other/b", "2", { retain: true });
      await publish(broker.port, "other/a", "1 again", { retain: true }); // a topic held: replaced, not a third
      await assert.rejects(publish(broker.port, "other/c", "3", { retain: true }), "a third topic is refused");
      await publish(broker.port, "other/d", "not retained"); // only retained messages count
      await publish(broker.port, "other/b", "", { retain: true }); // deleted
      await publish(broker.port, "other/c", "3", { retain: true });
      const sub = await Subscriber.start(broker.port, ["other/#"]);
      subs.push(sub);
      await sub.waitFor(onTopic("other/c"), 5_000, "the retained other/c");
      await sub.waitFor(onTopic("other/a"), 5_000, "the retained other/a");
      assert.deepEqual(sub.messages.filter((m) => m.retained).map((m) => `${m.topic}=${m.payload}`).sort(), ["other/a=1 again", "other/c=3"]);
    } finally {
      for (const s of subs) await s.stop();
      await broker.close();
    }
  });

  it("a failure of the broker itself (an accept error, its will sweep) is logged, not thrown through the box", { timeout: 10_000 }, async () => {
    const logged: string[] = [];
    const broker = await EmbeddedBroker.start({ host: "127.0.0.1", port: 0, bridgeClientId: "peergrid_3", protectedPrefixes: [], log: (level, msg, fields) => logged.push(`${level} ${msg} ${String(fields?.error)}`) });
    try {
      const internals = broker as unknown as { server: Server; aedes: { emit(event: string, err: Error): boolean } };
      internals.server.emit("error", Object.assign(new Error("accept EMFILE"), { code: "EMFILE" }));
      internals.aedes.emit("error", new Error("persistence failed"));
      assert.deepEqual(logged, ["error embedded MQTT broker: accepting a connection failed accept EMFILE", "error embedded MQTT broker failed persistence failed"]);
      const sub = await Subscriber.start(broker.port, ["x"]); // and it still serves
      await sub.stop();
    } finally {
      await broker.close();
    }
  });

  it("a stop while the start is under way waits for it: no broker, listener or connection is left behind", { timeout: 10_000 }, async () => {
    const source = new TestSource();
    const bridge = new MqttBridge(source, options({ url: null, embeddedListen: { host: "127.0.0.1", port: 0 } }));
    const started = bridge.start();
    const stopped = bridge.stop();
    try {
      await started;
      await stopped;
      assert.equal(source.listeners, 0);
      assert.equal(bridge.status().connected, false);
      const port = Number(/:(\d+)$/.exec(bridge.status().brokerUrl)?.[1]);
      assert.ok(port > 0);
      await assert.rejects(rawConnection(port), /ECONNREFUSED/, "the embedded broker is closed");
    } finally {
      // Were they left behind, the runner would wait for them for ever: close them here.
      const leftBehind = bridge as unknown as { client: { end(force: boolean): void } | null; broker: EmbeddedBroker | null };
      leftBehind.client?.end(true);
      await leftBehind.broker?.close();
    }
  });

  it("a taken port is a clear error, and nothing is left running", { timeout: 10_000 }, async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    const source = new TestSource();
    try {
      const bridge = new MqttBridge(source, options({ url: null, embeddedListen: { host: "127.0.0.1", port } }));
      await assert.rejects(bridge.start(), (err: unknown) => {
        assert.ok(err instanceof PeergridError);
        assert.equal(err.code, "PG_ERR_MQTT_LISTEN");
        assert.match(err.message, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}.*EADDRINUSE`));
        return true;
      });
      assert.equal(source.listeners, 0);
      await bridge.stop();
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe("MQTT bridge on a running box", () => {
  it("sourceOf: a box's blocks, its first clearing's price and its island state reach mosquitto", { timeout: 40_000 }, async () => {
    // A one-minute market interval and a genesis a minute old: the first block enters a new interval and clears it.
    const c = new BoxCluster(1, { genesis: { market: { intervalMs: 60_000 } } });
    const broker = await startMosquitto();
    let bridge: MqttBridge | null = null;
    let sub: Subscriber | null = null;
    try {
      sub = await Subscriber.start(broker.port, ["peergrid/#", "homeassistant/#"]);
      const node = await c.start(0);
      const b = new MqttBridge(sourceOf(node, null), options({ url: `mqtt://127.0.0.1:${broker.port}` }));
      bridge = b;
      await b.start();
      const block = json(await sub.waitFor(onTopic("peergrid/0/block", (m) => Number(json(m).height) >= 2), 15_000, "a block of the box"));
      assert.match(String(block.hash), /^[0-9a-f]{64}$/);
      assert.equal(block.proposer, 0);
      const price = json(await sub.waitFor(onTopic("peergrid/0/market/price"), 15_000, "the first clearing"));
      assert.equal(price.rule, "pay-as-clear");
      assert.equal(price.priceMicroPerKWh, null); // no orders: nothing crossed
      assert.equal(Number(price.intervalStartMs) % 60_000, 0);
      assert.deepEqual(json(await sub.waitFor(onTopic("peergrid/0/grid/island"))), { islanded: false, sinceMs: null, changedMs: null });
      const device = json(await sub.waitFor(onTopic("homeassistant/sensor/peergrid_0/price/config"))).device as Record<string, unknown>;
      assert.equal(device.name, "test-cluster box-0");
    } finally {
      await bridge?.stop();
      await sub?.stop();
      await c.close();
      await broker.close();
    }
  });
});
