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
//     "timing": { "tickMs": 100, "electionTicks": 10, "heartbeatTicks": 1, "blockIntervalMs": 1000 },
//     "ledger": { "keepReadingsDays": 30 }             raw readings kept 30 days (default: all)
//   }
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import { Value, type ValueError, ValueErrorType } from "@sinclair/typebox/value";
import { ConfigError, PeergridError } from "../ledger/errors.js";
import { toHex } from "../ledger/hash.js";
import { readKeyFile } from "../ledger/keys.js";
import { LEDGER_FILE } from "../ledger/ledger.js";
import { AUTHOR_MAX } from "../ledger/tx.js";
import type { NodeId } from "../ledger/raft/raft.js";
import type { BiddingPolicy } from "../market/auto-bid.js";
import { parseBiddingPolicy } from "./auto-bidder.js";
import { type ControllerConfig, parseControllerConfig } from "./controller.js";
import { type MeterSpec, parseMeterSpec } from "./meters.js";
import { DEFAULT_EMBEDDED_LISTEN, DEFAULT_MQTT_OPTIONS, type MqttOptions, mqttOptionProblems } from "./mqtt.js";
import { DEFAULT_TIMING, type NodeTiming } from "./node.js";
import { type RetentionOptions, retentionOfDays } from "./ledger-pruner.js";
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
            id: Type.Integer({ minimum: 0, maximum: 255, description: "the meter's channel on this box, a whole number 0..255" }),
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
            outboxMax: Type.Optional(Type.Integer({ minimum: 1, description: "the most events held while the broker is unreachable, a whole number (default 1000)" })),
            currency: Type.Optional(Type.String({ description: "ISO 4217 code of prices (default EUR)" })),
          },
          { additionalProperties: false },
        ),
      ], { description: 'MQTT publishing with Home Assistant discovery (README: MQTT); "off" for none' }),
    ),
    ledger: Type.Optional(
      Type.Object(
        {
          keepReadingsDays: Type.Optional(
            Type.Number({ description: "keep raw meter readings this many days (at least 1/24, an hour), then give them up; everything else is kept for ever (default: keep every reading; README: retention)" }),
          ),
        },
        { additionalProperties: false },
      ),
    ),
    timing: Type.Optional(
      Type.Object(
        {
          tickMs: Type.Optional(Type.Integer({ minimum: 10, maximum: 10_000, description: `the Raft tick, whole ms 10..10000 (default ${DEFAULT_TIMING.tickMs})` })),
          electionTicks: Type.Optional(Type.Integer({ minimum: 2, maximum: 1_000, description: `ticks without a leader before an election, 2..1000 and more than heartbeatTicks (default ${DEFAULT_TIMING.electionTicks})` })),
          heartbeatTicks: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000, description: `ticks between a leader's heartbeats, 1..1000 and fewer than electionTicks (default ${DEFAULT_TIMING.heartbeatTicks})` })),
          blockIntervalMs: Type.Optional(Type.Integer({ minimum: 100, maximum: 3_600_000, description: `one block per this many ms, 100..3600000 (default ${DEFAULT_TIMING.blockIntervalMs})` })),
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
  /** Keep raw readings for a window (ledger-pruner.ts); absent: every reading is kept. */
  readonly retention?: RetentionOptions;
}

/** The least an admin token may be: long enough that guessing it over the LAN is hopeless. */
export const ADMIN_TOKEN_CHARS_MIN = 32;
/** Schema problems named at once; the rest show once these are fixed. */
const SCHEMA_PROBLEMS_MAX = 20;
const EXAMPLE_FILE_HINT = " (scripts/raspberry-pi/peergrid.json is a whole example)";

/**
 * Read and check a config file; every mistake at once (ConfigError), each naming its key. Beyond the
 * document (parseConfig), the files it names: the key, the data directory (boxFileProblems).
 */
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
  return checkConfig(json, path, dirname(resolve(path)), (p) => readFileSync(p, "utf8"), true);
}

/**
 * What the document alone cannot show, found before the box opens anything: the key file is a key this
 * user can read (else the box would stop half-started), the data directory holds a ledger made by
 * `peergrid init` and this user may write it, and raft.peers does not list this box itself (checked
 * against the genesis.json that init leaves in the data directory, when it is there). Reads; writes nothing.
 */
function boxFileProblems(c: Pick<BoxConfig, "keyFile" | "dataDir" | "peers">): string[] {
  const problems: string[] = [];
  let publicKeyHex: string | null = null;
  try {
    publicKeyHex = toHex(readKeyFile(c.keyFile).publicKey);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    problems.push(`/key: ${message}${message.includes("(EACCES)") ? ` (the user the box runs as must own it: chown peergrid:peergrid ${c.keyFile})` : ""}`);
  }
  const ledgerFile = join(c.dataDir, LEDGER_FILE);
  if (!existsSync(ledgerFile)) {
    problems.push(`/dataDir: ${c.dataDir} holds no ledger (${LEDGER_FILE}): make it with peergrid init --genesis genesis.json --data-dir ${c.dataDir}`);
  } else {
    try {
      accessSync(c.dataDir, constants.R_OK | constants.W_OK | constants.X_OK);
      accessSync(ledgerFile, constants.R_OK | constants.W_OK);
    } catch (err) {
      problems.push(`/dataDir: ${c.dataDir} is not readable and writable by this user (${(err as NodeJS.ErrnoException).code ?? String(err)}): chown -R peergrid:peergrid ${c.dataDir}`);
    }
  }
  const self = publicKeyHex === null ? null : genesisIndexOf(c.dataDir, publicKeyHex);
  if (self !== null && c.peers.has(self)) {
    problems.push(`/raft/peers/${self}: member ${self} is this box itself (its key is member ${self} of the genesis); list only the other boxes`);
  }
  return problems;
}

/** This key's member index in the data directory's genesis.json; null without one (a data directory made by hand). */
function genesisIndexOf(dataDir: string, publicKeyHex: string): number | null {
  let members: unknown;
  try {
    members = (JSON.parse(readFileSync(join(dataDir, "genesis.json"), "utf8")) as { members?: unknown }).members;
  } catch {
    return null;
  }
  if (!Array.isArray(members)) return null;
  const i = members.findIndex((m: unknown) => typeof m === "object" && m !== null && String((m as { publicKey?: unknown }).publicKey).toLowerCase() === publicKeyHex);
  return i >= 0 ? i : null;
}

/** Check a parsed config document; `baseDir` is where its relative paths start. The files it names are not looked at (loadConfig does). */
export function parseConfig(json: unknown, source: string, baseDir: string, readText: (path: string) => string = (p) => readFileSync(p, "utf8")): BoxConfig {
  return checkConfig(json, source, baseDir, readText, false);
}

function checkConfig(json: unknown, source: string, baseDir: string, readText: (path: string) => string, checkFiles: boolean): BoxConfig {
  const what = `config file ${source}`;
  const problems = schemaProblems(ConfigSchema, json);
  if (problems.length > 0) throw new ConfigError(what, problems);
  const f = json as ConfigFile;
  const path = (p: string) => (isAbsolute(p) ? p : resolve(baseDir, p));
  const address = addressParser(problems);
  const readSecret = (file: string, at: string): string | undefined => {
    try {
      return readText(path(file)).trim();
    } catch (err) {
      problems.push(`${at}: cannot read ${path(file)} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
      return undefined;
    }
  };
  const peerCount = Object.keys(f.raft.peers).length;
  // Port 0 (the system picks one) only for a box alone: the others could not know the port.
  const raftListen = address(f.raft.listen ?? "0.0.0.0:7400", "/raft/listen", "0.0.0.0:7400", peerCount === 0 ? null : "the other boxes");
  const peers = raftPeers(f.raft.peers, address, problems);
  const httpText = f.http?.listen ?? "127.0.0.1:8400";
  const httpListen = httpText === "off" ? null : address(httpText, "/http/listen", "0.0.0.0:8400", "the neighbours' phones");
  let adminToken: string | null = null;
  if (f.http?.adminTokenFile !== undefined) {
    adminToken = readSecret(f.http.adminTokenFile, "/http/adminTokenFile") ?? null;
    if (adminToken !== null && adminToken.length < ADMIN_TOKEN_CHARS_MIN) problems.push(`/http/adminTokenFile: the token is ${adminToken.length} characters; it must be at least ${ADMIN_TOKEN_CHARS_MIN} (make one with: openssl rand -hex 32 > ${f.http.adminTokenFile})`);
  }
  const { meters, ids } = meterSection(f.meters ?? [], path, problems);
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
  const mqtt = mqttSection(f.mqtt, readSecret, address, problems);
  const mqttListen = mqtt === null || mqtt.url !== null ? null : (mqtt.embeddedListen ?? DEFAULT_EMBEDDED_LISTEN);
  problems.push(...portClashes([["/raft/listen", raftListen], [f.mqtt === undefined ? "/mqtt (the embedded broker, on 0.0.0.0:1883 by default)" : "/mqtt/listen", mqttListen], ["/http/listen", httpListen]]));
  const t = f.timing ?? {};
  problems.push(...timingProblems(t));
  const days = f.ledger?.keepReadingsDays;
  const retention = days === undefined ? undefined : retentionOfDays(days);
  if (typeof retention === "string") problems.push(`/ledger/keepReadingsDays: ${retention}`);
  if (checkFiles) problems.push(...boxFileProblems({ keyFile: path(f.key), dataDir: path(f.dataDir), peers }));
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
    ...(retention !== undefined && typeof retention !== "string" && { retention }),
  };
}

/**
 * HOST:PORT at key `at`, or null with its problem pushed. `portZeroFor`: who could not find a listener on
 * a port the system picks (port 0 is refused then), or null where port 0 is fine.
 */
type AddressParser = (text: string, at: string, example: string, portZeroFor: string | null) => PeerAddress | null;

function addressParser(problems: string[]): AddressParser {
  return (text, at, example, portZeroFor) => {
    let a: PeerAddress;
    try {
      a = parseAddress(text, at);
    } catch {
      problems.push(`${at}: ${text} is not HOST:PORT (e.g. ${example})`);
      return null;
    }
    if (a.port === 0 && portZeroFor !== null) {
      problems.push(`${at}: port 0 lets the system pick a port, which ${portZeroFor} could not know; give a fixed one (e.g. ${example})`);
      return null;
    }
    return a;
  };
}

/** raft.peers: member index -> address; each index a member index, each address a different box's. */
function raftPeers(given: Readonly<Record<string, string>>, address: AddressParser, problems: string[]): Map<NodeId, PeerAddress> {
  const peers = new Map<NodeId, PeerAddress>();
  const byAddress = new Map<string, string>();
  for (const [index, text] of Object.entries(given)) {
    // No leading zeros: "01" and "1" would name one box twice.
    if (!/^(0|[1-9][0-9]{0,7})$/.test(index) || Number(index) > AUTHOR_MAX) {
      problems.push(`/raft/peers/${index}: "${index}" is not a member index; peers are {"<member index>": "HOST:PORT"}, the index being the box's place in the genesis members`);
      continue;
    }
    const a = address(text, `/raft/peers/${index}`, "192.168.1.20:7400", "that box");
    if (a === null) continue;
    const other = byAddress.get(`${a.host}:${a.port}`);
    if (other !== undefined) problems.push(`/raft/peers/${index}: ${text} is also peer ${other}'s address; each box has its own`);
    byAddress.set(`${a.host}:${a.port}`, index);
    peers.set(Number(index), a);
  }
  return peers;
}

/** The meters, each id once, each device a tcp: or serial: address. */
function meterSection(given: NonNullable<ConfigFile["meters"]>, path: (p: string) => string, problems: string[]): { meters: MeterSpec[]; ids: Set<number> } {
  const meters: MeterSpec[] = [];
  const ids = new Set<number>();
  given.forEach((m, i) => {
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
  return { meters, ids };
}

/** Two listeners of the box on one port (and overlapping hosts): the second would fail to bind after the first started. */
function portClashes(listeners: readonly (readonly [string, PeerAddress | null])[]): string[] {
  const wildcard = (host: string) => host === "0.0.0.0" || host === "::" || host === "";
  const problems: string[] = [];
  listeners.forEach(([at, a], i) => {
    if (a === null || a.port === 0) return;
    const clash = listeners.slice(0, i).find(([, b]) => b !== null && b.port === a.port && (b.host === a.host || wildcard(a.host) || wildcard(b.host)));
    if (clash !== undefined) problems.push(`${at}: port ${a.port} clashes with ${clash[0]}: each listener of the box needs its own port`);
  });
  return problems;
}

/** Raft needs an election timeout longer than the heartbeat, defaults included (else it refuses to start). */
function timingProblems(t: NonNullable<ConfigFile["timing"]>): string[] {
  const election = t.electionTicks ?? DEFAULT_TIMING.electionTicks;
  const heartbeat = t.heartbeatTicks ?? DEFAULT_TIMING.heartbeatTicks;
  if (election > heartbeat) return [];
  return t.electionTicks !== undefined
    ? [`/timing/electionTicks: ${election} must be more than heartbeatTicks (${heartbeat}${t.heartbeatTicks === undefined ? ", the default" : ""})`]
    : [`/timing/heartbeatTicks: ${heartbeat} must be fewer than electionTicks (${election}, the default): lower it, or raise electionTicks`];
}

/**
 * The schema's complaints, one per key (a missing key is also "not a string": the first says it), each with
 * what the key wants (its description); for a union ("off" or an object), the object's own complaints.
 */
function schemaProblems(schema: TSchema, value: unknown, prefix = "", out = new Map<string, string>()): string[] {
  for (const e of Value.Errors(schema, value)) {
    if (out.size >= SCHEMA_PROBLEMS_MAX) break;
    const at = prefix + e.path;
    if (out.has(at)) continue;
    const objectBranch = e.type === ValueErrorType.Union && typeof e.value === "object" && e.value !== null && !Array.isArray(e.value) ? ((e.schema.anyOf as TSchema[] | undefined)?.find((s) => s.type === "object") ?? null) : null;
    if (objectBranch !== null) schemaProblems(objectBranch, e.value, at, out);
    else out.set(at, `${at || "/"}: ${schemaMessage(e)}${at === "" ? EXAMPLE_FILE_HINT : ""}`);
  }
  return [...out.values()];
}

function schemaMessage(e: ValueError): string {
  if (e.type === ValueErrorType.ObjectAdditionalProperties) {
    const keys = Object.keys((e.schema.properties ?? {}) as object);
    return `Unexpected property; the keys here are ${keys.join(", ")}`;
  }
  const wants = typeof e.schema.description === "string" ? e.schema.description : null;
  return wants === null ? e.message : `${e.message}: ${wants}`;
}

/** The `mqtt` section as MqttOptions (null: "off"); its problems go to `problems`, named under /mqtt. */
function mqttSection(m: ConfigFile["mqtt"], readSecret: (file: string, at: string) => string | undefined, address: AddressParser, problems: string[]): MqttOptions | null {
  if (m === "off") return null;
  if (m === undefined) return { ...DEFAULT_MQTT_OPTIONS };
  const embedded = m.broker === "embedded";
  let listen: PeerAddress | undefined;
  if (m.listen !== undefined) {
    if (!embedded) problems.push("/mqtt/listen: only for the embedded broker (broker \"embedded\")");
    listen = address(m.listen, "/mqtt/listen", "0.0.0.0:1883", "MQTT clients") ?? undefined;
  }
  const password = m.passwordFile === undefined ? undefined : readSecret(m.passwordFile, "/mqtt/passwordFile");
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
