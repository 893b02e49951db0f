// `peergrid start`: run one box until SIGTERM or SIGINT. The box's Raft
// node, its HTTP API, its meters (or, for benchmarks and cluster tests, a
// synthetic meter load), with a policy automatic bidding for its owner
// (daemon/auto-bidder.ts), and on a controller box the grid monitor and the
// islanding dispatch (daemon/controller.ts). Shutdown is graceful: the HTTP server
// stops taking requests, the Raft log finishes the saves it has, the SQLite
// files are closed; nothing is torn (and a kill -9 tears nothing either: every
// write is one SQLite transaction).
//
// On the demo's accelerated clock (`clock`, daemon/sim-clock.ts) the node, the
// meters' timestamps, the bidder and the API's ages all read the simulated
// time; the timing options stay in real ms (a block a real second) and are
// converted here. The demo also starts its boxes with `exitWithParent`, so
// that none outlives it.
import { readKeyFile } from "../ledger/keys.js";
import type { NodeId } from "../ledger/raft/raft.js";
import { PeergridError } from "../ledger/errors.js";
import type { BiddingPolicy } from "../market/auto-bid.js";
import { AutoBidder } from "./auto-bidder.js";
import { type ControllerConfig, MicrogridController } from "./controller.js";
import { memberKey } from "../ledger/records.js";
import { Role } from "../ledger/tx.js";
import { BoxSequence } from "./box-sequence.js";
import { buildHttp } from "./http.js";
import { BoxNode, type NodeLog, type NodeTiming } from "./node.js";
import type { RetentionOptions } from "./ledger-pruner.js";
import { BoxMeters, type MeterSpec } from "./meters.js";
import { MqttBridge, type MqttOptions, sourceOf } from "./mqtt.js";
import { registerWebApp } from "./web.js";
import { SyntheticLoad } from "./synthetic-load.js";
import type { PeerAddress } from "./transport.js";
import { type SimClock, healthOnClock, mempoolOnClock, simNow, timingOnClock } from "./sim-clock.js";

export interface StartOptions {
  readonly dataDir: string;
  readonly keyFile: string;
  readonly raftListen: PeerAddress;
  readonly httpListen: PeerAddress | null;
  readonly peers: ReadonlyMap<NodeId, PeerAddress>;
  readonly syntheticReadingsPerS: number;
  /** This box's meters (daemon/meters.ts); readings are signed and submitted every second. */
  readonly meters?: readonly MeterSpec[];
  /** Bid for the box's member each market interval by this policy (`--auto-bid <policy.json>`, parseBiddingPolicy). */
  readonly autoBid?: BiddingPolicy;
  /** This box is the microgrid controller (its member must have the controller role). */
  readonly controller?: ControllerConfig;
  readonly timing: Partial<NodeTiming>;
  /** Keep raw readings for a window (ledger-pruner.ts); absent: every reading is kept. */
  readonly retention?: RetentionOptions;
  /** Admin routes of the HTTP API take this token (Authorization: Bearer); null or absent: they are off. */
  readonly adminToken?: string | null;
  /** Publish to MQTT (daemon/mqtt.ts); null or absent: off. */
  readonly mqtt?: MqttOptions | null;
  /** Run on the demo's accelerated clock (`--clock`); absent: the real one. `timing` stays in real ms. */
  readonly clock?: SimClock;
  /** Stop, cleanly, when standard input closes (`--exit-with-parent`): the demo holds it, so its boxes go when it goes, even after a kill -9. */
  readonly exitWithParent?: boolean;
}

/** host:port, [v6]:port or a bare port (on all interfaces). */
export function parseAddress(text: string, what: string): PeerAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(text) ?? /^()()(\d{1,5})$/.exec(text);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || !(port >= 0 && port <= 65535)) throw new PeergridError("PG_ERR_USAGE", `${what} "${text}" is not HOST:PORT (e.g. 192.168.1.20:7400)`);
  return { host: m[1] || m[2] || "0.0.0.0", port };
}

/** INDEX=HOST:PORT: where the box with member index INDEX listens for Raft. */
export function parsePeer(text: string): [NodeId, PeerAddress] {
  const eq = text.indexOf("=");
  const index = Number(text.slice(0, eq));
  if (eq <= 0 || !Number.isSafeInteger(index) || index < 0) throw new PeergridError("PG_ERR_USAGE", `--peer "${text}" is not INDEX=HOST:PORT (INDEX: the box's member index in the genesis)`);
  return [index, parseAddress(text.slice(eq + 1), `--peer ${index}`)];
}

export function jsonLog(write: (line: string) => void): NodeLog {
  return (level, msg, fields) => write(JSON.stringify({ t: new Date().toISOString(), level, msg, ...fields }));
}

/** Call `stop` on the first SIGTERM or SIGINT (Ctrl-C), saying so in the log. */
export function onStopSignal(log: NodeLog, stop: () => void): void {
  const onSignal = (signal: string) => {
    log("info", "shutting down", { signal });
    stop();
  };
  process.once("SIGTERM", () => onSignal("SIGTERM"));
  process.once("SIGINT", () => onSignal("SIGINT"));
}

/** Run until a signal; resolves with the exit code. */
export async function runBox(o: StartOptions, write: (line: string) => void): Promise<number> {
  const log = jsonLog(write);
  let fatal: Error | null = null;
  let wake: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (wake = resolve));
  const speed = o.clock?.speed ?? 1;
  const now = o.clock === undefined ? Date.now : simNow(o.clock);
  const node = await BoxNode.start({
    dataDir: o.dataDir,
    signer: readKeyFile(o.keyFile),
    peers: o.peers,
    listenHost: o.raftListen.host,
    listenPort: o.raftListen.port,
    timing: timingOnClock(o.timing, speed),
    mempool: mempoolOnClock(speed),
    ...(o.retention !== undefined && { retention: o.retention }),
    now,
    clockRate: speed,
    log,
    onFatal: (err) => {
      fatal = err;
      wake();
    },
  });
  let load: SyntheticLoad | null = null;
  let meters: BoxMeters | null = null;
  let bidder: AutoBidder | null = null;
  let controller: MicrogridController | null = null;
  let mqtt: MqttBridge | null = null;
  // Readings and orders are signed with one key: they share one sequence (daemon/box-sequence.ts).
  const sequence = new BoxSequence(node, readKeyFile(o.keyFile), node.id);
  const http =
    o.httpListen === null
      ? null
      : buildHttp(node, {
          meters: () => meters,
          controller: () => controller,
          mqtt: () => mqtt?.status() ?? null,
          adminToken: o.adminToken ?? null,
          sequence,
          config: settingsOf(o),
          now,
          ...(speed !== 1 && { health: healthOnClock(speed) }),
        });
  // From here on the finally below releases stdin. A parent gone before this is still seen: the end of a pipe stays.
  const unwatch = o.exitWithParent === true ? watchParent(log, () => wake()) : () => {};
  try {
    if (http !== null && o.httpListen !== null) {
      // In a plugin scope: its routes load after the API's plugins, so the rate limits cover them too.
      await http.register(async (scope) => registerWebApp(scope));
      await http.listen({ host: o.httpListen.host, port: o.httpListen.port });
      const a = http.server.address();
      log("info", "http listening", { port: typeof a === "object" && a !== null ? a.port : null });
    }
    if (o.syntheticReadingsPerS > 0) {
      load = new SyntheticLoad(node, readKeyFile(o.keyFile), o.syntheticReadingsPerS);
      load.start();
      log("info", "synthetic meter load", { readingsPerS: o.syntheticReadingsPerS });
    }
    if (o.meters !== undefined && o.meters.length > 0) {
      meters = new BoxMeters(node, sequence, o.meters, { now, clockRate: speed });
      meters.start();
      log("info", "polling meters", { meters: o.meters.map((m) => ({ meterId: m.meterId, layout: m.meter.layout.name, unit: m.meter.unit, at: m.address.kind === "tcp" ? `${m.address.host}:${m.address.port}` : m.address.path })) });
    }
    if (o.autoBid !== undefined) {
      bidder = new AutoBidder(node, sequence, o.autoBid, { log, now });
      log("info", "automatic bidding", { member: bidder.member, policy: o.autoBid });
    }
    if (o.controller !== undefined) {
      const me = node.ledger.state.tree.get(memberKey(node.id));
      if (me?.kind !== "member" || (me.roles & Role.controller) === 0) {
        throw new PeergridError("PG_ERR_USAGE", `--controller: this box's member (${node.id}) lacks the controller role; an admin's member transaction (setRoles) or a vote must give it first`);
      }
      if (meters === null || !o.meters?.some((m) => m.meterId === o.controller?.pccMeterId)) {
        throw new PeergridError("PG_ERR_USAGE", `--controller: pccMeterId ${o.controller.pccMeterId} is not one of this box's --meter channels`);
      }
      controller = new MicrogridController(node, sequence, o.controller, meters, { log });
      controller.start();
      log("info", "microgrid controller", { premises: o.controller.premises.length, pccMeterId: o.controller.pccMeterId });
    }
    if (o.mqtt !== undefined && o.mqtt !== null) {
      mqtt = new MqttBridge(sourceOf(node, meters), o.mqtt, log);
      await mqtt.start();
      log("info", "mqtt", { broker: mqtt.status().brokerUrl, embedded: mqtt.status().embedded });
    }
    log("info", "ready", { box: node.id, raftPort: node.raftPort, ...(o.clock !== undefined && { clock: o.clock }) });
    onStopSignal(log, wake);
    await stopped;
  } finally {
    load?.stop();
    await mqtt?.stop();
    await controller?.stop();
    await bidder?.stop();
    await meters?.stop();
    await http?.close();
    await node.stop();
    unwatch();
  }
  return fatal === null ? 0 : 1;
}

/**
 * Call `stop` once standard input ends: the parent that holds its other end
 * is gone (or closed it to say stop). Returns what lets the process exit
 * afterwards (a stdin being read keeps node running).
 */
function watchParent(log: NodeLog, stop: () => void): () => void {
  const onEnd = () => {
    log("info", "shutting down", { reason: "standard input closed: the process that started this box is gone" });
    stop();
  };
  process.stdin.once("end", onEnd);
  process.stdin.once("error", onEnd);
  process.stdin.on("data", () => {}); // what the parent writes means nothing; reading is how the end is seen
  process.stdin.resume();
  return () => {
    process.stdin.off("end", onEnd);
    process.stdin.off("error", onEnd);
    process.stdin.destroy();
  };
}

/** What GET /api/v1/admin/config shows: the box's settings, with no secret (the admin token, a broker password). */
function settingsOf(o: StartOptions): Record<string, unknown> {
  return {
    dataDir: o.dataDir,
    keyFile: o.keyFile,
    raftListen: o.raftListen,
    peers: Object.fromEntries(o.peers),
    httpListen: o.httpListen,
    adminRoutes: o.adminToken !== undefined && o.adminToken !== null,
    meters: (o.meters ?? []).map((m) => ({ meterId: m.meterId, layout: m.meter.layout.name, unit: m.meter.unit, address: m.address })),
    autoBid: o.autoBid ?? null,
    controller: o.controller === undefined ? null : { pccMeterId: o.controller.pccMeterId, premises: o.controller.premises.length, dispatch: o.controller.dispatch },
    mqtt: o.mqtt === undefined || o.mqtt === null ? null : { url: o.mqtt.url, embeddedListen: o.mqtt.embeddedListen ?? null, topicPrefix: o.mqtt.topicPrefix, discoveryPrefix: o.mqtt.discoveryPrefix, username: o.mqtt.username ?? null },
    timing: o.timing,
    clock: o.clock ?? null,
  };
}
