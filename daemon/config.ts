// `peergrid start --config <file>`: everything a box runs with, in one JSON
// file, checked before anything starts. Every mistake is reported at once,
// each naming its key (as a JSON pointer, /meters/0/device) and what would be
// right; nothing is opened, bound or written until the whole file is good.
// Relative paths in the file (the data directory, the key, a meter map file,
// the admin token file) are taken from the file's own directory, so a
// config and its key can move together. The example for a Raspberry Pi with
// one Eastron SDM630 on /dev/ttyUSB0 is scripts/raspberry-pi/peergrid.json;
// README "Running a box" documents every key.
//
//   {
//     "dataDir": "/var/lib/peergrid",                 made by `peergrid init`
//     "key": "/etc/peergrid/box.key",                 the box's member key
//     "raft": { "listen": "0.0.0.0:7400",
//               "peers": { "1": "192.168.1.21:7400" } }    member index -> address
//     "http": { "listen": "0.0.0.0:8400",             "off": no API
//               "adminTokenFile": "admin.token" },    admin routes' credential
//     "meters": [ { "id": 0, "map": "eastron-sdm630",
//                   "device": "serial:/dev/ttyUSB0:9600:none", "unit": 1 } ],
//     "autoBid": { ...a bidding policy (README: automatic bidding)... },
//     "controller": { ...a controller file's content... },
//     "mqtt": { "broker": "embedded" | "mqtt://host:1883", ... },
//     "timing": { "tickMs": 100, "electionTicks": 10, "heartbeatTicks": 1, "blockIntervalMs": 1000 }
//   }
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { ConfigError, PeergridError } from "../ledger/errors.js";
import type { NodeId } from "../ledger/raft/raft.js";
import type { BiddingPolicy } from "../market/auto-bid.js";
import { parseBiddingPolicy } from "./auto-bidder.js";
import { type ControllerConfig, parseControllerConfig } from "./controller.js";
import { type MeterSpec, parseMeterSpec } from "./meters.js";
import { DEFAULT_MQTT_OPTIONS, type MqttOptions, mqttOptionProblems } from "./mqtt.js";
import type { NodeTiming } from "./node.js";
import { parseAddress } from "./start.js";
import type { PeerAddress } from "./transport.js";

const Address = (description: string) => Type.String({ minLength: 1, description });

const ConfigSchema = Type.Object(
  {
    dataDir: Type.String({ minLength: 1, description: "the box's data directory, made by `peergrid init`" }),
    key: Type.String({ minLength: 1, description: "the box's key file: its member key in the genesis" }),
    raft: Type.Object(
      {
        listen: Type.Optional(Address("where other boxes reach this one, HOST:PORT (default 0.0.0.0:7400)")),
        peers: Type.Record(Type.String(), Address("another box's Raft address, HOST:PORT, by its member index"), { description: "the other boxes: {\"<member index>\": \"HOST:PORT\"}" }),
      },
      { additionalProperties: false },
    ),
    http: Type.Optional(
      Type.Object(
        {
          listen: Type.Optional(Address('the HTTP API and web app, HOST:PORT, or "off" (default 127.0.0.1:8400)')),
          adminTokenFile: Type.Optional(Type.String({ minLength: 1, description: "a file holding the token admin routes require (at least 32 characters)" })),
        },
        { additionalProperties: false },
      ),
    ),
    meters: Type.Optional(
      Type.Array(
        Type.Object(
          {
            id: Type.Integer({ minimum: 0, maximum: 255, description: "the meter's channel on this box" }),
            map: Type.String({ minLength: 1, description: "a shipped register map, a map file, or sunspec" }),
            device: Type.String({ minLength: 1, description: "tcp:HOST:PORT or serial:DEVICE[:BAUD[:PARITY]]" }),
            unit: Type.Optional(Type.Integer({ minimum: 1, maximum: 247, description: "its Modbus unit id (default: the map's factory id)" })),
          },
          { additionalProperties: false },
        ),
      ),
    ),
    autoBid: Type.Optional(Type.Unknown({ description: "a bidding policy (README: automatic bidding)" })),
    controller: Type.Optional(Type.Unknown({ description: "the microgrid controller's settings (README: microgrid controller)" })),
    mqtt: Type.Optional(
      Type.Union([
        Type.Literal("off"),
        Type.Object(
          {
            broker: Type.String({ minLength: 1, description: '"embedded" (the box runs its own broker; the default) or mqtt://HOST[:PORT] / mqtts://HOST[:PORT]' }),
            listen: Type.Optional(Address("the embedded broker's address, HOST:PORT (default 0.0.0.0:1883)")),
            topicPrefix: Type.Optional(Type.String({ minLength: 1 })),
            discoveryPrefix: Type.Optional(Type.String({ minLength: 1, description: "Home Assistant's discovery prefix (default homeassistant)" })),
            username: Type.Optional(Type.String({ minLength: 1 })),
            passwordFile: Type.Optional(Type.String({ minLength: 1, description: "a file holding the broker password" })),
            outboxMax: Type.Optional(Type.Integer({ minimum: 1, description: "the most events held while the broker is unreachable (default 1000)" })),
            currency: Type.Optional(Type.String({ description: "ISO 4217 code of prices (default EUR)" })),
          },
          { additionalProperties: false },
        ),
      ], { description: 'MQTT publishing with Home Assistant discovery (README: MQTT); "off" for none' }),
    ),
    timing: Type.Optional(
      Type.Object(
        {
          tickMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 10_000 })),
          electionTicks: Type.Optional(Type.Integer({ minimum: 2, maximum: 1_000 })),
          heartbeatTicks: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000 })),
          blockIntervalMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 3_600_000 })),
        },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type ConfigFile = Static<typeof ConfigSchema>;

/** A box's settings, checked, with paths made absolute. */
export interface BoxConfig {
  readonly dataDir: string;
  readonly keyFile: string;
  readonly raftListen: PeerAddress;
  readonly peers: ReadonlyMap<NodeId, PeerAddress>;
  readonly httpListen: PeerAddress | null;
  /** Admin routes take this token (Authorization: Bearer); null: admin routes are off. */
  readonly adminToken: string | null;
  readonly meters: readonly MeterSpec[];
  readonly autoBid?: BiddingPolicy;
  readonly controller?: ControllerConfig;
  /** MQTT publishing; null: off. Without an `mqtt` section, the embedded broker on 0.0.0.0:1883. */
  readonly mqtt: MqttOptions | null;
  readonly timing: Partial<NodeTiming>;
}

/** The least an admin token may be: long enough that guessing it over the LAN is hopeless. */
export const ADMIN_TOKEN_CHARS_MIN = 32;

/** Read and check a config file; every mistake at once (ConfigError), each naming its key. */
export function loadConfig(path: string): BoxConfig {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new PeergridError("PG_ERR_USAGE", `cannot read the config file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path}`, [`/: not valid JSON (${(err as Error).message})`]);
  }
  return parseConfig(json, path, dirname(resolve(path)));
}

/** Check a parsed config document; `baseDir` is where its relative paths start. */
export function parseConfig(json: unknown, source: string, baseDir: string, readText: (path: string) => string = (p) => readFileSync(p, "utf8")): BoxConfig {
  const what = `config file ${source}`;
  const problems = [...Value.Errors(ConfigSchema, json)].slice(0, 20).map((e) => `${e.path || "/"}: ${e.message}${e.path === "" ? " (scripts/raspberry-pi/peergrid.json is a whole example)" : ""}`);
  if (problems.length > 0) throw new ConfigError(what, problems);
  const f = json as ConfigFile;
  const path = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const address = (text: string, at: string): PeerAddress | null => {
    try {
      return parseAddress(text, at);
    } catch {
      problems.push(`${at}: ${text} is not HOST:PORT (e.g. 192.168.1.20:7400)`);
      return null;
    }
  };
  const raftListen = address(f.raft.listen ?? "0.0.0.0:7400", "/raft/listen");
  const peers = new Map<NodeId, PeerAddress>();
  for (const [index, text] of Object.entries(f.raft.peers)) {
    if (!/^[0-9]{1,9}$/.test(index)) {
      problems.push(`/raft/peers/${index}: "${index}" is not a member index; peers are {"<member index>": "HOST:PORT"}, the index being the box's place in the genesis members`);
      continue;
    }
    const a = address(text, `/raft/peers/${index}`);
    if (a !== null) peers.set(Number(index), a);
  }
  const httpText = f.http?.listen ?? "127.0.0.1:8400";
  const httpListen = httpText === "off" ? null : address(httpText, "/http/listen");
  let adminToken: string | null = null;
  if (f.http?.adminTokenFile !== undefined) {
    try {
      adminToken = readText(path(f.http.adminTokenFile)).trim();
      if (adminToken.length < ADMIN_TOKEN_CHARS_MIN) problems.push(`/http/adminTokenFile: the token is ${adminToken.length} characters; it must be at least ${ADMIN_TOKEN_CHARS_MIN} (make one with: openssl rand -hex 32 > ${f.http.adminTokenFile})`);
    } catch (err) {
      problems.push(`/http/adminTokenFile: cannot read ${path(f.http.adminTokenFile)} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  const meters: MeterSpec[] = [];
  const ids = new Set<number>();
  (f.meters ?? []).forEach((m, i) => {
    if (ids.has(m.id)) problems.push(`/meters/${i}/id: meter ${m.id} is listed twice (each meter its own channel id)`);
    ids.add(m.id);
    const via = m.device.startsWith("tcp:") ? "tcp" : m.device.startsWith("serial:") ? "serial" : null;
    if (via === null) {
      problems.push(`/meters/${i}/device: "${m.device}" is not tcp:HOST:PORT or serial:DEVICE[:BAUD[:PARITY]] (e.g. serial:/dev/ttyUSB0:9600:none)`);
      return;
    }
    const map = m.map.endsWith(".json") ? path(m.map) : m.map;
    try {
      meters.push(parseMeterSpec(`${m.id}=${map}@${m.device}${m.unit === undefined ? "" : `/${m.unit}`}`));
    } catch (err) {
      problems.push(`/meters/${i}: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
  const section = <T>(name: string, parse: () => T): T | undefined => {
    try {
      return parse();
    } catch (err) {
      if (err instanceof ConfigError) problems.push(...err.problems.map((p) => `/${name}${p.startsWith("/") ? "" : ": "}${p}`));
      else problems.push(`/${name}: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
  };
  const autoBid = f.autoBid === undefined ? undefined : section("autoBid", () => parseBiddingPolicy(f.autoBid, "autoBid"));
  const controller = f.controller === undefined ? undefined : section("controller", () => parseControllerConfig(f.controller, "controller"));
  if (f.autoBid !== undefined && meters.length === 0) problems.push("/autoBid: bidding forecasts from this box's meters: add one under /meters");
  if (controller !== undefined && !meters.some((m) => m.meterId === controller.pccMeterId)) {
    problems.push(`/controller/pccMeterId: ${controller.pccMeterId} is not one of /meters' ids (${[...ids].join(", ") || "none"}): the controller watches the grid at one of this box's meters`);
  }
  const mqtt = mqttSection(f.mqtt, path, readText, problems);
  const t = f.timing ?? {};
  if (t.electionTicks !== undefined && t.electionTicks <= (t.heartbeatTicks ?? 1)) problems.push("/timing/electionTicks: must be more than heartbeatTicks");
  if (problems.length > 0 || raftListen === null) throw new ConfigError(what, problems);
  return {
    dataDir: path(f.dataDir),
    keyFile: path(f.key),
    raftListen,
    peers,
    httpListen,
    adminToken,
    meters,
    ...(autoBid !== undefined && { autoBid }),
    ...(controller !== undefined && { controller }),
    mqtt,
    timing: t,
  };
}

/** The `mqtt` section as MqttOptions (null: "off"); its problems go to `problems`, named under /mqtt. */
function mqttSection(m: ConfigFile["mqtt"], path: (p: string) => string, readText: (p: string) => string, problems: string[]): MqttOptions | null {
  if (m === "off") return null;
  if (m === undefined) return { ...DEFAULT_MQTT_OPTIONS };
  const embedded = m.broker === "embedded";
  let listen: PeerAddress | undefined;
  if (m.listen !== undefined) {
    if (!embedded) problems.push("/mqtt/listen: only for the embedded broker (broker \"embedded\")");
    try {
      listen = parseAddress(m.listen, "/mqtt/listen");
    } catch {
      problems.push(`/mqtt/listen: ${m.listen} is not HOST:PORT (e.g. 0.0.0.0:1883)`);
    }
  }
  let password: string | undefined;
  if (m.passwordFile !== undefined) {
    try {
      password = readText(path(m.passwordFile)).trim();
    } catch (err) {
      problems.push(`/mqtt/passwordFile: cannot read ${path(m.passwordFile)} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
    }
  }
  const o: MqttOptions = {
    url: embedded ? null : m.broker,
    ...(listen !== undefined && embedded && { embeddedListen: listen }),
    topicPrefix: m.topicPrefix ?? DEFAULT_MQTT_OPTIONS.topicPrefix,
    discoveryPrefix: m.discoveryPrefix ?? DEFAULT_MQTT_OPTIONS.discoveryPrefix,
    ...(m.username !== undefined && { username: m.username }),
    ...(password !== undefined && { password }),
    outboxMax: m.outboxMax ?? DEFAULT_MQTT_OPTIONS.outboxMax,
    ...(m.currency !== undefined && { currency: m.currency }),
  };
  const own = mqttOptionProblems(o).map((p) => `/mqtt/${p.replace(/^url /, "broker ")}`);
  problems.push(...own);
  return own.length > 0 ? null : o;
}
