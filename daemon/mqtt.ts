// The MQTT bridge: a box's readings, blocks, prices, trades and island state
// published to an MQTT broker, with Home Assistant MQTT discovery, so that a
// household's Home Assistant shows the box's meters, the local price and the
// island state with no configuration.
//
// Broker. By default (url null) the box runs its own, embedded broker
// (daemon/mqtt-broker.ts: aedes, in-process) on 0.0.0.0:1883, so a box alone
// needs nothing else: Home Assistant's MQTT integration is pointed at the
// box. It lets anyone in unless username and password are set (then every
// client but the bridge must give them); only the bridge may publish to the
// box's own topics (Topics.own). With a url (mqtt://HOST[:PORT] or
// mqtts://…) the box publishes to an external broker (mosquitto, or Home
// Assistant's add-on) instead. Either way the bridge is an ordinary MQTT 3.1.1
// client (MQTT.js), QoS 1 throughout.
//
// Topic tree. P = topicPrefix (default "peergrid"), B = the box's member
// number, M = a meter channel (0-255), D = discoveryPrefix (default
// "homeassistant"), N = P with every character outside [A-Za-z0-9_-] made
// "_", then "_B" (e.g. "peergrid_3"). Retained topics hold the latest value
// (a subscriber gets it at once); events are not retained.
//
//   P/B/status                retained  "online" | "offline". The connection's will is a retained
//                                       "offline": the broker publishes it when the box vanishes
//                                       (crash, power cut, network); a clean stop publishes it itself.
//   P/B/meter/M/state         retained  every checked reading of meter M (about once a second):
//                                       {"timeMs","powerW","importWh","exportWh","voltagesV":[per phase],
//                                        "frequencyHz","quality","problems":[...]}
//                                       powerW: + importing, - exporting; importWh/exportWh: the meter's
//                                       counters; quality 0 = good, else the ledger's Quality bits
//                                       (ledger/tx.ts) with `problems` saying why.
//   P/B/block                 event     each block the box applies: {"height","timeMs","txCount","hash","proposer"}
//   P/B/market/price          retained  the last clearing: {"intervalStartMs","rule","priceMicroPerKWh",
//                                       "pricePerKWh","volumeWh","tradeCount"}; the price is null when
//                                       nothing crossed, and under pay-as-bid (no single price).
//   P/B/market/trades         event     each clearing: {"intervalStartMs","rule","priceMicroPerKWh","volumeWh",
//                                       "tradeCount","trades":[{"buyer","seller","energyWh",
//                                       "buyerPriceMicroPerKWh","sellerPriceMicroPerKWh"}],"truncated"}
//                                       (at most TRADES_PER_MESSAGE_MAX trades; GET /api/v1/market has all)
//   P/B/grid/island           retained  {"islanded","sinceMs","changedMs"} (times null when none)
//   D/sensor/N/meter_M_power/config          retained  Home Assistant discovery: power, W, measurement
//   D/sensor/N/meter_M_import/config         retained  import energy, Wh, device_class energy, total_increasing
//   D/sensor/N/meter_M_export/config         retained  export energy, Wh, device_class energy, total_increasing
//   D/sensor/N/price/config                  retained  local price, CURRENCY/kWh, measurement
//   D/binary_sensor/N/island/config          retained  islanded, device_class problem (on = islanded)
//   D/status                  subscribed: Home Assistant's birth message; on "online" every
//                                       discovery config is published again.
// Market and island topics sit under the box, not under P alone: with several
// boxes on one broker, a box catching up on old blocks would otherwise
// overwrite the retained price with an old one, and each entity's availability
// must be one box's status topic.
//
// Home Assistant. One device per box (identifiers [N], manufacturer
// "peergrid"); every entity's availability is P/B/status; unique ids are
// "N_<object>". A meter's three entities appear on its first reading. The
// energy sensors read the counters only from good readings, the power sensor
// too (a reading flagged as not good renders "None", which Home Assistant
// shows as unknown): a counter that went backwards must not reach a
// total_increasing sensor, which would take it for a meter reset. Within a
// run, good readings never go backwards: device/reading-check.ts flags a
// counter below the last good one (the bridge publishes a reading as the
// poller checked it, before the ledger's verdict, so one the ledger refuses
// changes nothing here). A restarted box resumes from the ledger's last good
// counters (daemon/meters.ts), never from zero; they may trail the last
// published by the readings not yet committed, so only a meter that itself
// went back within those seconds could show Home Assistant a dip (which it
// logs, and takes for a reset only below 90 % of the last value). The price
// has no device_class: Home Assistant's "monetary" is for amounts of money
// and refuses state_class measurement.
//
// Outbox (bounded; STYLE.md "a limit on everything"). Nothing is handed to
// MQTT.js while disconnected: its own offline queue is unbounded.
//   - Retained topics are coalesced by topic: the outbox holds the latest
//     payload of each (at most RETAINED_TOPICS_MAX topics: 4 per meter and a
//     few more), and which of them the broker may not have yet. On every
//     connection all of them are sent again (status first, then discovery
//     configs, then state), because a broker restarted without persistence
//     has lost them; so retained state is never dropped.
//   - Events (blocks, trades) wait in order, at most outboxMax messages and
//     outboxBytesMax bytes; beyond either the oldest event is dropped and
//     counted (status().dropped). An event that failed to publish is counted
//     there too; nothing is lost silently. The log says so: at the first drop,
//     then at most once a DROP_LOG_SPACING_MS, and on reconnection.
//   - On a connection, retained topics go first, then events oldest first,
//     at most INFLIGHT_MAX unacknowledged at once. A message in flight when
//     the connection drops stays in MQTT.js's store (so at most INFLIGHT_MAX
//     there) and is sent again on reconnection, before anything newer.
//   - The client reconnects every reconnectPeriodMs for as long as the box runs.
//   The outbox is in memory: events waiting when the box itself stops are lost
//   (retained state is published again by the next start).
//
// The MQTT client id is N, stable across restarts: a box that restarts after a
// crash takes over its old, half-open session at once (the broker then
// publishes the old session's will before the new "online"), rather than
// seeing its will published a keepalive later, over its new "online".
//
// Wiring: the bridge reads a MqttSource (below), not the daemon's classes.
// sourceOf(node, meters) adapts a BoxNode and its BoxMeters; `peergrid start`
// does: `const bridge = new MqttBridge(sourceOf(node, meters), options, log);
// await bridge.start(); … await bridge.stop();` (stop before the node stops).
import { type IClientOptions, type MqttClient, connect } from "mqtt";
import { assert } from "../ledger/assert.js";
import type { Block } from "../ledger/block.js";
import { PeergridError } from "../ledger/errors.js";
import { toHex } from "../ledger/hash.js";
import { GLOBAL_KEY, MARKET_KEY, type StateRecord, type TradeTerms } from "../ledger/records.js";
import { METER_ID_MAX } from "../ledger/tx.js";
import type { ClearingOutcome } from "../market/interval.js";
import type { CheckedReading } from "../device/reading-check.js";
import type { BoxMeters } from "./meters.js";
import { BRIDGE_USERNAME, EmbeddedBroker } from "./mqtt-broker.js";
import type { BoxNode, NodeLog } from "./node.js";

// ---------------------------------------------------------------- the source: what the bridge publishes

/** What the bridge publishes of a reading: the meter's checked reading, as the poller hands it over. */
export type MqttReading = CheckedReading;

export interface MqttBlock {
  readonly height: number;
  readonly timeMs: number;
  readonly txCount: number;
  /** Hex. */
  readonly hash: string;
  readonly proposer: number;
}

export interface MqttPrice {
  readonly intervalStartMs: number;
  readonly rule: string;
  /** null: nothing crossed, or pay-as-bid. */
  readonly priceMicroPerKWh: number | null;
  readonly volumeWh: number;
  readonly tradeCount: number;
}

/** A trade as published: the ledger's terms of it, less the two order hashes. */
export type MqttTrade = Pick<TradeTerms, "buyer" | "seller" | "energyWh" | "buyerPriceMicroPerKWh" | "sellerPriceMicroPerKWh">;

export interface MqttClearing extends MqttPrice {
  readonly trades: readonly MqttTrade[];
}

export interface MqttIsland {
  readonly islanded: boolean;
  /** Islanded since (null: connected to the utility grid). */
  readonly sinceMs: number | null;
  /** The last islanding or reconnection (null: none yet). */
  readonly changedMs: number | null;
}

/**
 * What the bridge publishes, as plain data. The daemon's is sourceOf(node, meters); a test feeds its own.
 * Listeners are called on the box's event loop; an unsubscribe function is returned.
 */
export interface MqttSource {
  /** The box's member number: its topics are P/<boxId>/…. */
  readonly boxId: number;
  /** Home Assistant's device name. */
  readonly boxName: string;
  /** Every block the box applies, with the clearing when the block entered a new market interval. */
  onBlock(listener: (block: MqttBlock, clearing: MqttClearing | null) => void): () => void;
  /** Every checked reading of the box's meters. */
  onReading(listener: (meterId: number, reading: MqttReading) => void): () => void;
  /** The island state now (read at start and after every block). */
  island(): MqttIsland;
  /** The last clearing (read at start; null: none yet). */
  lastPrice(): MqttPrice | null;
}

/**
 * The daemon's source: blocks from the node (a clearing from result.market), readings from the meters
 * (none without), the island state from the ledger's global record, the last price from its market record.
 */
export function sourceOf(node: BoxNode, meters: BoxMeters | null): MqttSource {
  const genesis = node.ledger.state.chain.genesis;
  const memberName = genesis.members[node.id]?.name ?? `box-${node.id}`;
  return {
    boxId: node.id,
    boxName: `${genesis.chainId} ${memberName}`,
    onBlock: (listener) => node.onBlock((block, result) => listener(blockOf(block), result.market === null ? null : clearingOf(result.market.clearing))),
    onReading: (listener) => (meters === null ? () => {} : meters.onReading(listener)),
    island: () => islandOf(node.ledger.state.tree.get(GLOBAL_KEY)),
    lastPrice: () => priceOf(node.ledger.state.tree.get(MARKET_KEY), genesis.market.clearingRule),
  };
}

export function blockOf(block: Block): MqttBlock {
  const h = block.header;
  return { height: h.height, timeMs: h.timeMs, txCount: h.txCount, hash: toHex(block.hash), proposer: h.proposer };
}

export function clearingOf(c: ClearingOutcome): MqttClearing {
  return {
    intervalStartMs: c.intervalStartMs,
    rule: c.rule,
    priceMicroPerKWh: c.priceMicroPerKWh,
    volumeWh: c.volumeWh,
    tradeCount: c.trades.length,
    trades: c.trades.map((t) => ({ buyer: t.buyer, seller: t.seller, energyWh: t.energyWh, buyerPriceMicroPerKWh: t.buyerPriceMicroPerKWh, sellerPriceMicroPerKWh: t.sellerPriceMicroPerKWh })),
  };
}

export function islandOf(g: StateRecord | undefined): MqttIsland {
  assert(g !== undefined && g.kind === "global", "the ledger has its global record");
  return { islanded: g.islandedSinceMs >= 0, sinceMs: g.islandedSinceMs >= 0 ? g.islandedSinceMs : null, changedMs: g.islandChangeMs >= 0 ? g.islandChangeMs : null };
}

export function priceOf(m: StateRecord | undefined, rule: string): MqttPrice | null {
  if (m === undefined) return null;
  assert(m.kind === "market", "the market key holds the market record");
  if (m.clearedStartMs < 0) return null;
  return { intervalStartMs: m.clearedStartMs, rule, priceMicroPerKWh: m.priceMicroPerKWh, volumeWh: m.volumeWh, tradeCount: m.tradeCount };
}

// ---------------------------------------------------------------- options

export interface MqttOptions {
  /** An external broker, mqtt://HOST[:PORT] or mqtts://HOST[:PORT]; null: the embedded broker. */
  readonly url: string | null;
  /** The embedded broker's listen address (url null only; default 0.0.0.0:1883; port 0: any free one). */
  readonly embeddedListen?: { readonly host: string; readonly port: number };
  readonly topicPrefix: string;
  readonly discoveryPrefix: string;
  /** The external broker's credentials; with the embedded broker, the ones its clients must give. */
  readonly username?: string;
  readonly password?: string;
  /** The most events (blocks, trades) held while the broker is unreachable. */
  readonly outboxMax: number;
  /** The most bytes of events held (default OUTBOX_BYTES_MAX_DEFAULT). */
  readonly outboxBytesMax?: number;
  /** The currency of prices (ISO 4217; the ledger counts micro-units of it). Default "EUR". */
  readonly currency?: string;
  /** The wait between connection attempts (default 2000 ms). */
  readonly reconnectPeriodMs?: number;
}

export const DEFAULT_MQTT_OPTIONS: MqttOptions = { url: null, topicPrefix: "peergrid", discoveryPrefix: "homeassistant", outboxMax: 1_000 };
export const DEFAULT_EMBEDDED_LISTEN = { host: "0.0.0.0", port: 1883 } as const;
export const OUTBOX_BYTES_MAX_DEFAULT = 4 * 1024 * 1024;
const OUTBOX_MAX_LIMIT = 1_000_000;
const OUTBOX_BYTES_LIMIT = 256 * 1024 * 1024;
const RECONNECT_PERIOD_MS_DEFAULT = 2_000;
const PREFIX_BYTES_MAX = 128;
/** Unacknowledged publications at once (what MQTT.js's own store holds at most). */
export const INFLIGHT_MAX = 16;
/** 4 per meter (state and 3 configs), 256 meters, and the box's few others, with room. */
export const RETAINED_TOPICS_MAX = 2_048;
export const TRADES_PER_MESSAGE_MAX = 1_000;
/** Dropped events are logged at most this often (the first at once). */
const DROP_LOG_SPACING_MS = 60_000;
/** Home Assistant's "online" more often than this gets one re-publication at the end of the spacing. */
const CONFIG_REPUBLISH_SPACING_MS = 5_000;
const KEEPALIVE_S = 15;
const CONNECT_TIMEOUT_MS = 10_000;
/** stop(): how long to wait for the outbox to drain, for "offline" to be acknowledged, and for the disconnection. */
const STOP_STEP_MS = 2_000;

/**
 * What no topic may hold: MQTT's wildcards, and what brokers refuse as malformed UTF-8 (mosquitto closes
 * the connection of a CONNECT or PUBLISH naming such a topic, so a bridge with it would never connect):
 * NUL and the other control characters, lone surrogates, and Unicode's non-characters.
 */
const TOPIC_CHARACTER_BAD = /[+#\p{Cc}\p{Cs}\p{Noncharacter_Code_Point}]/u;

function prefixProblems(what: string, p: unknown): string[] {
  if (typeof p !== "string" || p.length === 0) return [`${what}: wants a topic prefix such as "peergrid"`];
  const problems: string[] = [];
  if (Buffer.byteLength(p) > PREFIX_BYTES_MAX) problems.push(`${what}: longer than ${PREFIX_BYTES_MAX} bytes`);
  if (TOPIC_CHARACTER_BAD.test(p)) problems.push(`${what} ${JSON.stringify(p)}: may not contain +, #, control characters (NUL, tab, newline…), lone surrogates or non-characters`);
  if (p.startsWith("/") || p.endsWith("/") || p.includes("//")) problems.push(`${what} "${p}": no empty topic levels (no leading, trailing or double /)`);
  if (p.startsWith("$")) problems.push(`${what} "${p}": topics starting with $ belong to the broker`);
  return problems;
}

/** Every problem with the options, one phrase each (empty: fine). */
export function mqttOptionProblems(o: MqttOptions): string[] {
  const problems: string[] = [];
  if (o.url !== null) {
    let u: URL | null = null;
    try {
      u = new URL(o.url);
    } catch {
      problems.push(`url "${o.url}": not a URL; wants mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (e.g. mqtt://192.168.1.5:1883), or none for the embedded broker`);
    }
    if (u !== null) {
      if (u.protocol !== "mqtt:" && u.protocol !== "mqtts:") problems.push(`url "${o.url}": the scheme is ${u.protocol.replace(/:$/, "")}; wants mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (e.g. mqtt://192.168.1.5:1883)`);
      else if (u.hostname === "") problems.push(`url "${o.url}": no host`);
      if (u.username !== "" || u.password !== "") problems.push(`url "${o.url}": give the credentials as username and password, not in the URL (it is shown in the status)`);
      if ((u.pathname !== "" && u.pathname !== "/") || u.search !== "" || u.hash !== "") problems.push(`url "${o.url}": no path, query or fragment`);
    }
    if (o.embeddedListen !== undefined) problems.push("embeddedListen: only for the embedded broker (url none)");
  }
  if (o.embeddedListen !== undefined) {
    const { host, port } = o.embeddedListen;
    if (typeof host !== "string" || host.length === 0) problems.push("embeddedListen.host: wants an address (0.0.0.0: every interface)");
    if (!Number.isInteger(port) || port < 0 || port > 65_535) problems.push(`embeddedListen.port: got ${port}; wants 0..65535`);
  }
  problems.push(...prefixProblems("topicPrefix", o.topicPrefix), ...prefixProblems("discoveryPrefix", o.discoveryPrefix));
  // Nested, one tree would hold the other's topics (discoveryPrefix "peergrid/3" makes Home Assistant's
  // birth topic the box's own status topic).
  const nested = (a: string, b: string) => a === b || a.startsWith(`${b}/`);
  if (typeof o.topicPrefix === "string" && typeof o.discoveryPrefix === "string" && (nested(o.topicPrefix, o.discoveryPrefix) || nested(o.discoveryPrefix, o.topicPrefix))) {
    problems.push("topicPrefix and discoveryPrefix: must differ, and neither may lie under the other");
  }
  if (o.username !== undefined && (typeof o.username !== "string" || o.username.length === 0 || o.username.length > 256)) problems.push("username: 1 to 256 characters");
  if (o.password !== undefined && o.username === undefined) problems.push("password: given without a username");
  if (o.url === null && o.username === BRIDGE_USERNAME) problems.push(`username: "${BRIDGE_USERNAME}" is the box's own, on its embedded broker`);
  // On the embedded broker the username and password are what every client must give: a username alone
  // would let nobody in, and an empty password anyone who knows the username.
  if (o.url === null && o.username !== undefined && (o.password === undefined || o.password === "")) problems.push("password: the embedded broker wants a non-empty password with its username");
  if (o.password !== undefined && (typeof o.password !== "string" || o.password.length > 1024)) problems.push("password: at most 1024 characters");
  if (!Number.isInteger(o.outboxMax) || o.outboxMax < 1 || o.outboxMax > OUTBOX_MAX_LIMIT) problems.push(`outboxMax: got ${o.outboxMax}; wants a whole number 1..${OUTBOX_MAX_LIMIT}`);
  const bytes = o.outboxBytesMax;
  if (bytes !== undefined && (!Number.isInteger(bytes) || bytes < 65_536 || bytes > OUTBOX_BYTES_LIMIT)) problems.push(`outboxBytesMax: got ${bytes}; wants a whole number 65536..${OUTBOX_BYTES_LIMIT}`);
  if (o.currency !== undefined && !/^[A-Z]{3}$/.test(o.currency)) problems.push(`currency: got "${o.currency}"; wants an ISO 4217 code such as EUR`);
  const r = o.reconnectPeriodMs;
  if (r !== undefined && (!Number.isInteger(r) || r < 100 || r > 600_000)) problems.push(`reconnectPeriodMs: got ${r}; wants 100..600000`);
  return problems;
}

// ---------------------------------------------------------------- topics

export interface Topics {
  /** Home Assistant's node id and the MQTT client id: P with [^A-Za-z0-9_-] made "_", then "_B". */
  readonly node: string;
  readonly status: string;
  readonly block: string;
  readonly price: string;
  readonly trades: string;
  readonly island: string;
  readonly haStatus: string;
  /** Prefixes of every topic the bridge publishes (P/B/, and D/<component>/N/ for its discovery configs). */
  readonly own: readonly string[];
  meterState(meterId: number): string;
  config(component: DiscoveryComponent, objectId: string): string;
}

const DISCOVERY_COMPONENTS = ["sensor", "binary_sensor"] as const;
type DiscoveryComponent = (typeof DISCOVERY_COMPONENTS)[number];

export function topicsOf(topicPrefix: string, discoveryPrefix: string, boxId: number): Topics {
  assert(Number.isSafeInteger(boxId) && boxId >= 0, "a box id is a member number");
  const base = `${topicPrefix}/${boxId}`;
  const node = `${topicPrefix.replace(/[^A-Za-z0-9_-]/g, "_")}_${boxId}`;
  return {
    node,
    status: `${base}/status`,
    block: `${base}/block`,
    price: `${base}/market/price`,
    trades: `${base}/market/trades`,
    island: `${base}/grid/island`,
    haStatus: `${discoveryPrefix}/status`,
    own: [`${base}/`, ...DISCOVERY_COMPONENTS.map((c) => `${discoveryPrefix}/${c}/${node}/`)],
    meterState: (meterId) => `${base}/meter/${meterId}/state`,
    config: (component, objectId) => `${discoveryPrefix}/${component}/${node}/${objectId}/config`,
  };
}

// ---------------------------------------------------------------- payloads

function readingPayload(r: MqttReading): string {
  return JSON.stringify({
    timeMs: r.timeMs,
    powerW: r.powerW,
    importWh: r.importWh,
    exportWh: r.exportWh,
    voltagesV: r.voltagesDeciV.map((v) => v / 10),
    frequencyHz: r.frequencyMilliHz / 1_000,
    quality: r.quality,
    problems: r.problems,
  });
}

function pricePayload(p: MqttPrice): string {
  const price = p.priceMicroPerKWh;
  return JSON.stringify({ intervalStartMs: p.intervalStartMs, rule: p.rule, priceMicroPerKWh: price, pricePerKWh: price === null ? null : price / 1_000_000, volumeWh: p.volumeWh, tradeCount: p.tradeCount });
}

function tradesPayload(c: MqttClearing): string {
  const trades = c.trades.slice(0, TRADES_PER_MESSAGE_MAX);
  return JSON.stringify({ intervalStartMs: c.intervalStartMs, rule: c.rule, priceMicroPerKWh: c.priceMicroPerKWh, volumeWh: c.volumeWh, tradeCount: c.trades.length, trades, truncated: trades.length < c.trades.length });
}

function islandPayload(i: MqttIsland): string {
  return JSON.stringify({ islanded: i.islanded, sinceMs: i.sinceMs, changedMs: i.changedMs });
}

/** Home Assistant's MQTT discovery: the entity configs, by topic. */
export class Discovery {
  private readonly device: Record<string, unknown>;

  constructor(
    private readonly t: Topics,
    boxName: string,
    private readonly currency: string,
  ) {
    this.device = { identifiers: [t.node], name: boxName, manufacturer: "peergrid", model: "peergrid box" };
  }

  private common(objectId: string, name: string, stateTopic: string): Record<string, unknown> {
    return {
      name,
      unique_id: `${this.t.node}_${objectId}`,
      state_topic: stateTopic,
      availability_topic: this.t.status,
      payload_available: "online",
      payload_not_available: "offline",
      device: this.device,
      origin: { name: "peergrid" },
    };
  }

  /** A meter's power, import energy and export energy sensors. */
  meter(meterId: number): [topic: string, payload: string][] {
    const state = this.t.meterState(meterId);
    const good = (field: string) => `{{ value_json.${field} if value_json.quality == 0 else None }}`;
    const sensor = (objectId: string, body: Record<string, unknown>): [string, string] => [this.t.config("sensor", objectId), JSON.stringify(body)];
    return [
      sensor(`meter_${meterId}_power`, { ...this.common(`meter_${meterId}_power`, `Meter ${meterId} power`, state), value_template: good("powerW"), unit_of_measurement: "W", device_class: "power", state_class: "measurement" }),
      sensor(`meter_${meterId}_import`, { ...this.common(`meter_${meterId}_import`, `Meter ${meterId} import energy`, state), value_template: good("importWh"), unit_of_measurement: "Wh", device_class: "energy", state_class: "total_increasing" }),
      sensor(`meter_${meterId}_export`, { ...this.common(`meter_${meterId}_export`, `Meter ${meterId} export energy`, state), value_template: good("exportWh"), unit_of_measurement: "Wh", device_class: "energy", state_class: "total_increasing" }),
    ];
  }

  /** The local price sensor and the island binary sensor. */
  box(): [topic: string, payload: string][] {
    return [
      [
        this.t.config("sensor", "price"),
        JSON.stringify({ ...this.common("price", "Local energy price", this.t.price), value_template: "{{ value_json.pricePerKWh }}", unit_of_measurement: `${this.currency}/kWh`, state_class: "measurement", suggested_display_precision: 4 }),
      ],
      [
        this.t.config("binary_sensor", "island"),
        JSON.stringify({ ...this.common("island", "Microgrid islanded", this.t.island), value_template: "{{ 'ON' if value_json.islanded else 'OFF' }}", payload_on: "ON", payload_off: "OFF", device_class: "problem" }),
      ],
    ];
  }
}

// ---------------------------------------------------------------- the outbox

export type RetainedKind = "status" | "config" | "state";

export interface OutMessage {
  readonly topic: string;
  readonly payload: string;
  readonly retain: boolean;
}

export interface OutboxLimits {
  readonly eventsMax: number;
  readonly eventsBytesMax: number;
  readonly retainedTopicsMax: number;
}

const RETAINED_ORDER: readonly RetainedKind[] = ["status", "config", "state"];

/**
 * What the bridge has yet to send (no I/O, no clock). Retained topics: the latest payload of each, and
 * the ones the broker may not have yet ("dirty"), in the order they became so. Events: first in, first
 * out, the oldest dropped (and counted) beyond eventsMax messages or eventsBytesMax bytes.
 * Invariants: events <= eventsMax; eventsBytes <= eventsBytesMax; retained topics <= retainedTopicsMax;
 * every dirty topic has a latest payload.
 */
export class Outbox {
  private readonly latest = new Map<string, { readonly payload: string; readonly kind: RetainedKind }>();
  private readonly dirty = new Set<string>();
  private events: { readonly topic: string; readonly payload: string; readonly bytes: number }[] = [];
  private head = 0; // events[head..] are waiting
  private eventsBytes = 0;
  private droppedCount = 0;

  constructor(private readonly limits: OutboxLimits) {
    assert(limits.eventsMax >= 1 && limits.eventsBytesMax >= 1 && limits.retainedTopicsMax >= 1, "outbox limits are positive");
  }

  get depth(): number {
    return this.dirty.size + this.events.length - this.head;
  }

  get bytes(): number {
    return this.eventsBytes;
  }

  /** Events dropped: over the bound, or failed to publish (failed()). */
  get dropped(): number {
    return this.droppedCount;
  }

  get retainedTopics(): number {
    return this.latest.size;
  }

  /** The latest value of a retained topic, to be sent after whatever became dirty before it. */
  setRetained(topic: string, payload: string, kind: RetainedKind): void {
    assert(this.latest.has(topic) || this.latest.size < this.limits.retainedTopicsMax, `more than ${this.limits.retainedTopicsMax} retained topics`);
    this.latest.set(topic, { payload, kind });
    this.dirty.delete(topic);
    this.dirty.add(topic);
  }

  /** Send these retained topics again (kinds null: all of them, status first, then configs, then state). */
  markDirty(kinds: readonly RetainedKind[] | null): void {
    for (const kind of kinds ?? RETAINED_ORDER) {
      for (const [topic, v] of this.latest) {
        if (v.kind !== kind) continue;
        this.dirty.delete(topic);
        this.dirty.add(topic);
      }
    }
  }

  /** A taken message that could not be published: a retained topic's latest value goes again, an event is counted as dropped. */
  failed(m: OutMessage): void {
    if (!m.retain) this.droppedCount++;
    else if (this.latest.has(m.topic)) this.dirty.add(m.topic);
  }

  pushEvent(topic: string, payload: string): void {
    const bytes = Buffer.byteLength(topic) + Buffer.byteLength(payload);
    if (bytes > this.limits.eventsBytesMax) {
      this.droppedCount++;
      return;
    }
    this.events.push({ topic, payload, bytes });
    this.eventsBytes += bytes;
    while (this.events.length - this.head > this.limits.eventsMax || this.eventsBytes > this.limits.eventsBytesMax) {
      this.eventsBytes -= this.takeEvent().bytes;
      this.droppedCount++;
    }
    assert(this.events.length - this.head <= this.limits.eventsMax && this.eventsBytes <= this.limits.eventsBytesMax, "the outbox holds within its bounds");
  }

  /** The next message to send: dirty retained topics first (the current state), then the oldest event. */
  take(): OutMessage | undefined {
    for (const topic of this.dirty) {
      this.dirty.delete(topic);
      const v = this.latest.get(topic);
      assert(v !== undefined, "a dirty topic has a value");
      return { topic, payload: v.payload, retain: true };
    }
    if (this.head === this.events.length) return undefined;
    const e = this.takeEvent();
    this.eventsBytes -= e.bytes;
    return { topic: e.topic, payload: e.payload, retain: false };
  }

  private takeEvent(): { readonly topic: string; readonly payload: string; readonly bytes: number } {
    const e = this.events[this.head];
    assert(e !== undefined, "an event is waiting");
    this.head++;
    if (this.head === this.events.length) {
      this.events = [];
      this.head = 0;
    } else if (this.head >= 1_024 && this.head * 2 >= this.events.length) {
      this.events = this.events.slice(this.head); // amortised O(1) per event
      this.head = 0;
    }
    return e;
  }
}

// ---------------------------------------------------------------- the bridge

export interface MqttStatus {
  readonly connected: boolean;
  readonly embedded: boolean;
  /** The external broker's URL, or where the embedded broker listens. */
  readonly brokerUrl: string;
  /** Messages waiting in the outbox (not yet handed to the connection). */
  readonly outboxDepth: number;
  readonly outboxBytes: number;
  readonly inflight: number;
  /** Publications the broker acknowledged. */
  readonly published: number;
  /** Events dropped from the full outbox or failed to publish. */
  readonly dropped: number;
  readonly lastError: string | null;
}

type Phase = "new" | "running" | "stopping" | "stopped";

export class MqttBridge {
  private readonly options: MqttOptions;
  private readonly t: Topics;
  private readonly discovery: Discovery;
  private readonly outbox: Outbox;
  private phase: Phase = "new";
  private client: MqttClient | null = null;
  private broker: EmbeddedBroker | null = null;
  private brokerUrl: string;
  private connected = false;
  private inflight = 0;
  private published = 0;
  private lastError: string | null = null;
  private lastLoggedError: string | null = null;
  private readonly metersSeen = new Set<number>();
  private islandPayload: string | null = null;
  private readonly unsubscribes: (() => void)[] = [];
  private drainWaiters: (() => void)[] = [];
  private lastConfigRepublishMs = -Infinity;
  private republishTimer: NodeJS.Timeout | null = null;
  private starting: Promise<void> | null = null;
  private stopping: Promise<void> | null = null;
  /** Events dropped so far that the log has told of, and when it last did (at most once a DROP_LOG_SPACING_MS). */
  private droppedLogged = 0;
  private lastDropLogMs = -Infinity;

  constructor(
    private readonly source: MqttSource,
    options: MqttOptions,
    private readonly log: NodeLog = () => {},
  ) {
    const problems = mqttOptionProblems(options);
    if (problems.length > 0) throw new PeergridError("PG_ERR_MQTT_CONFIG", `MQTT: ${problems.join("; ")}`);
    this.options = options;
    this.t = topicsOf(options.topicPrefix, options.discoveryPrefix, source.boxId);
    this.discovery = new Discovery(this.t, source.boxName, options.currency ?? "EUR");
    this.outbox = new Outbox({ eventsMax: options.outboxMax, eventsBytesMax: options.outboxBytesMax ?? OUTBOX_BYTES_MAX_DEFAULT, retainedTopicsMax: RETAINED_TOPICS_MAX });
    const listen = options.embeddedListen ?? DEFAULT_EMBEDDED_LISTEN;
    this.brokerUrl = options.url ?? listenUrl(listen.host, listen.port);
  }

  /** The topics this bridge publishes (for the README, tests and tools). */
  get topics(): Topics {
    return this.t;
  }

  /**
   * Start the embedded broker (if no url), queue the box's state and discovery configs, follow the
   * source, and connect. Resolves without waiting for the connection: an unreachable broker is retried
   * for as long as the bridge runs, and what is published meanwhile waits in the outbox.
   */
  start(): Promise<void> {
    assert(this.phase === "new", "an MQTT bridge starts once");
    this.phase = "running";
    this.starting = this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    let login: { readonly url: string; readonly username?: string; readonly password?: string };
    if (this.options.url === null) {
      try {
        login = await this.startEmbeddedBroker();
      } catch (err) {
        this.phase = "stopped";
        throw err;
      }
    } else {
      login = { url: this.options.url, ...(this.options.username !== undefined && { username: this.options.username }), ...(this.options.password !== undefined && { password: this.options.password }) };
    }
    this.outbox.setRetained(this.t.status, "online", "status");
    for (const [topic, payload] of this.discovery.box()) this.outbox.setRetained(topic, payload, "config");
    this.updateIsland();
    const price = this.source.lastPrice();
    if (price !== null) this.outbox.setRetained(this.t.price, pricePayload(price), "state");
    this.unsubscribes.push(
      this.source.onReading(this.guard("reading", (meterId, r) => this.onReading(meterId, r))),
      this.source.onBlock(this.guard("block", (block, clearing) => this.onBlock(block, clearing))),
    );
    this.connectClient(login.url, login.username, login.password);
    this.log("info", "MQTT bridge started", { broker: this.brokerUrl, embedded: this.broker !== null, topics: `${this.options.topicPrefix}/${this.source.boxId}/#` });
  }

  /** The embedded broker, listening; where and how the bridge logs in to it. */
  private async startEmbeddedBroker(): Promise<{ readonly url: string; readonly username: string; readonly password: string }> {
    const listen = this.options.embeddedListen ?? DEFAULT_EMBEDDED_LISTEN;
    const broker = await EmbeddedBroker.start({
      host: listen.host,
      port: listen.port,
      ...(this.options.username !== undefined && { username: this.options.username }),
      ...(this.options.password !== undefined && { password: this.options.password }),
      bridgeClientId: this.t.node,
      protectedPrefixes: this.t.own,
      log: this.log,
    });
    this.broker = broker;
    this.brokerUrl = listenUrl(listen.host, broker.port);
    return { url: broker.localUrl, username: broker.bridgeUsername, password: broker.bridgePassword };
  }

  private connectClient(url: string, username: string | undefined, password: string | undefined): void {
    const o: IClientOptions = {
      clientId: this.t.node,
      ...(username !== undefined && { username }),
      ...(password !== undefined && { password }),
      protocolVersion: 4,
      clean: true,
      keepalive: KEEPALIVE_S,
      connectTimeout: CONNECT_TIMEOUT_MS,
      reconnectPeriod: this.options.reconnectPeriodMs ?? RECONNECT_PERIOD_MS_DEFAULT,
      resubscribe: false, // subscribed again on each connection (onConnect)
      queueQoSZero: false,
      will: { topic: this.t.status, payload: Buffer.from("offline"), qos: 1, retain: true },
    };
    const client = connect(url, o);
    this.client = client;
    client.on("connect", () => this.onConnect());
    client.on("close", () => this.onClose());
    client.on("error", (err) => this.noteError(err));
    client.on("message", (topic, payload) => {
      if (topic === this.t.haStatus && payload.toString("utf8") === "online") this.onHomeAssistantOnline();
    });
  }

  /**
   * Stop following the source, send what waits (up to STOP_STEP_MS), publish "offline" to the status
   * topic, disconnect cleanly (so the broker drops the will), and close the embedded broker.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  status(): MqttStatus {
    return {
      connected: this.connected,
      embedded: this.options.url === null,
      brokerUrl: this.brokerUrl,
      outboxDepth: this.outbox.depth,
      outboxBytes: this.outbox.bytes,
      inflight: this.inflight,
      published: this.published,
      dropped: this.outbox.dropped,
      lastError: this.lastError,
    };
  }

  // ------------------------------------------------------------ source events

  /**
   * A source listener runs inside the node's block loop or the meters' poll: a fault in the bridge must
   * not stop the box keeping its ledger. It is logged and shown in status(), and the bridge goes on.
   */
  private guard<A extends unknown[]>(what: string, f: (...args: A) => void): (...args: A) => void {
    return (...args) => {
      if (this.phase !== "running") return;
      try {
        f(...args);
      } catch (err) {
        this.lastError = `${what}: ${err instanceof Error ? err.message : String(err)}`;
        this.log("error", "MQTT bridge failed to publish an event", { what, error: this.lastError });
      }
    };
  }

  private onReading(meterId: number, r: MqttReading): void {
    assert(Number.isInteger(meterId) && meterId >= 0 && meterId <= METER_ID_MAX, `meter id ${meterId} outside 0..${METER_ID_MAX}`);
    if (!this.metersSeen.has(meterId)) {
      this.metersSeen.add(meterId);
      for (const [topic, payload] of this.discovery.meter(meterId)) this.outbox.setRetained(topic, payload, "config");
    }
    this.outbox.setRetained(this.t.meterState(meterId), readingPayload(r), "state");
    this.pump();
  }

  private onBlock(block: MqttBlock, clearing: MqttClearing | null): void {
    this.outbox.pushEvent(this.t.block, JSON.stringify({ height: block.height, timeMs: block.timeMs, txCount: block.txCount, hash: block.hash, proposer: block.proposer }));
    if (clearing !== null) {
      this.outbox.setRetained(this.t.price, pricePayload(clearing), "state");
      this.outbox.pushEvent(this.t.trades, tradesPayload(clearing));
    }
    this.updateIsland();
    this.pump();
    this.logDrops(false);
  }

  /** Say that events were dropped: the first at once, then at most once a DROP_LOG_SPACING_MS (and on reconnection). */
  private logDrops(now: boolean): void {
    const dropped = this.outbox.dropped - this.droppedLogged;
    if (dropped === 0 || (!now && Date.now() - this.lastDropLogMs < DROP_LOG_SPACING_MS)) return;
    this.droppedLogged = this.outbox.dropped;
    this.lastDropLogMs = Date.now();
    this.log("warn", "MQTT outbox full: the oldest events dropped", { dropped, droppedTotal: this.outbox.dropped, outboxMax: this.options.outboxMax, outboxBytesMax: this.options.outboxBytesMax ?? OUTBOX_BYTES_MAX_DEFAULT, connected: this.connected });
  }

  private updateIsland(): void {
    const payload = islandPayload(this.source.island());
    if (payload === this.islandPayload) return;
    this.islandPayload = payload;
    this.outbox.setRetained(this.t.island, payload, "state");
  }

  private onHomeAssistantOnline(): void {
    if (this.phase !== "running" || this.republishTimer !== null) return;
    const waitMs = this.lastConfigRepublishMs + CONFIG_REPUBLISH_SPACING_MS - Date.now();
    if (waitMs <= 0) return this.republishConfigs();
    this.republishTimer = setTimeout(() => {
      this.republishTimer = null;
      if (this.phase === "running") this.republishConfigs();
    }, waitMs);
  }

  private republishConfigs(): void {
    this.lastConfigRepublishMs = Date.now();
    this.log("info", "Home Assistant is online: publishing the discovery configs again", {});
    this.outbox.markDirty(["config"]);
    this.pump();
  }

  // ------------------------------------------------------------ the connection

  private onConnect(): void {
    const client = this.client;
    assert(client !== null, "connected with a client");
    this.connected = true;
    this.lastLoggedError = null;
    this.log("info", "MQTT connected", { broker: this.brokerUrl });
    client.subscribe(this.t.haStatus, { qos: 1 }, (err) => {
      if (err) this.noteError(err);
    });
    this.logDrops(true);
    this.outbox.markDirty(null); // the broker may have lost every retained topic (a restart without persistence)
    this.pump();
  }

  private onClose(): void {
    if (!this.connected) return;
    this.connected = false;
    if (this.phase === "running") this.log("warn", "MQTT connection lost; reconnecting", { broker: this.brokerUrl, outboxDepth: this.outbox.depth });
  }

  private noteError(err: Error): void {
    this.lastError = err.message;
    if (err.message === this.lastLoggedError) return; // once per kind of failure, not every reconnection attempt
    this.lastLoggedError = err.message;
    this.log("warn", "MQTT error", { broker: this.brokerUrl, error: err.message });
  }

  /** Hand waiting messages to the connection, at most INFLIGHT_MAX unacknowledged. */
  private pump(): void {
    const client = this.client;
    while (client !== null && this.connected && this.inflight < INFLIGHT_MAX) {
      const m = this.outbox.take();
      if (m === undefined) break;
      this.send(client, m);
    }
    if (this.outbox.depth === 0 && this.inflight === 0) {
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of waiters) w();
    }
  }

  private send(client: MqttClient, m: OutMessage): void {
    this.inflight++;
    assert(this.inflight <= INFLIGHT_MAX, "in flight within its bound");
    client.publish(m.topic, m.payload, { qos: 1, retain: m.retain }, (err) => {
      this.inflight--;
      if (err === undefined || err === null) {
        this.published++;
        this.pump();
        return;
      }
      // Not pumped from here: a publication failing at once would loop; the next connection or event sends it.
      this.outbox.failed(m);
      this.noteError(err);
      this.logDrops(false);
    });
  }

  private waitDrained(timeoutMs: number): Promise<void> {
    if (this.outbox.depth === 0 && this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.drainWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private async doStop(): Promise<void> {
    // A stop during start waits for it (the embedded broker is listening only then): nothing is left behind.
    await this.starting?.catch(() => {});
    if (this.phase !== "running") {
      this.phase = "stopped";
      return;
    }
    this.phase = "stopping";
    for (const u of this.unsubscribes.splice(0)) u();
    if (this.republishTimer !== null) clearTimeout(this.republishTimer);
    this.republishTimer = null;
    const client = this.client;
    if (client !== null) {
      let clean = false;
      if (this.connected) {
        await this.waitDrained(STOP_STEP_MS);
        try {
          await within(client.publishAsync(this.t.status, "offline", { qos: 1, retain: true }), STOP_STEP_MS, "publishing offline");
          this.published++;
          clean = true;
        } catch (err) {
          this.noteError(err instanceof Error ? err : new Error(String(err)));
        }
      }
      // Not clean: force, so MQTT.js does not wait for acknowledgements that will not come.
      await within(client.endAsync(!clean), STOP_STEP_MS, "disconnecting").catch(() => client.end(true));
      this.connected = false;
    }
    if (this.broker !== null) await this.broker.close();
    this.phase = "stopped";
    this.log("info", "MQTT bridge stopped", { published: this.published, dropped: this.outbox.dropped, unsent: this.outbox.depth });
  }
}

function listenUrl(host: string, port: number): string {
  return `mqtt://${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** p, or a rejection once ms have passed without it settling. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`MQTT: ${what} took over ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
