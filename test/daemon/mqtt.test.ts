// The MQTT bridge against real brokers: Debian's mosquitto, started and
// stopped by each test (test/helpers/mosquitto.ts), and the box's embedded
// broker, observed with mosquitto's own client tools (mosquitto_sub,
// mosquitto_pub). The bridge is fed through a test MqttSource, and once
// through sourceOf() on a running box.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { type AddressInfo, createServer } from "node:net";
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
  sourceOf,
} from "../../daemon/mqtt.js";
import { PeergridError } from "../../ledger/errors.js";
import { BoxCluster } from "../helpers/box-cluster.js";
import { type Received, Subscriber, publish, startMosquitto, stopAll } from "../helpers/mosquitto.js";

// A test that fails half-way must not leave a broker running (it would keep the runner alive).
after(stopAll);

const BOX = 3;
const CONFIG = "homeassistant/sensor/peergrid_3";

class TestSource implements MqttSource {
  readonly boxId = BOX;
  readonly boxName = "maple-street box-3";
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

  it("the outbox over its bound while the broker is down drops the oldest events and counts them", { timeout: 40_000 }, async () => {
    const broker = await startMosquitto({ persistence: true });
    const source = new TestSource();
    const bridge = new MqttBridge(source, options({ url: `mqtt://127.0.0.1:${broker.port}`, outboxMax: 5 }));
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

      await broker.start();
      await drained(bridge);
      sub = await Subscriber.start(broker.port, [`peergrid/${BOX}/block`], durable);
      await sub.waitFor((m) => json(m).height === 12, 5_000, "block 12");
      assert.deepEqual(sub.messages.map((m) => json(m).height), [8, 9, 10, 11, 12]);
      assert.equal(bridge.status().dropped, 7);
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
    const bridge = new MqttBridge(source, options({ url: null, embeddedListen: { host: "127.0.0.1", port: 0 } }));
    let sub: Subscriber | null = null;
    let port = 0;
    try {
      await bridge.start();
      const status = bridge.status();
      assert.equal(status.embedded, true);
      port = Number(/^mqtt:\/\/127\.0\.0\.1:(\d+)$/.exec(status.brokerUrl)?.[1]);
      assert.ok(port > 0, status.brokerUrl);
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
    const bridge = new MqttBridge(new TestSource(), options({ url: null, embeddedListen: { host: "127.0.0.1", port: 0 }, username: "ha", password: "s3cret" }));
    try {
      await bridge.start();
      await drained(bridge);
      const port = Number(/:(\d+)$/.exec(bridge.status().brokerUrl)?.[1]);
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
