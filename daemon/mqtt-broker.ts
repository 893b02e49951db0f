// The box's embedded MQTT broker: what `peergrid start` serves when no
// external broker is configured, so that a box alone is enough for Home
// Assistant or any MQTT client on the LAN (daemon/mqtt.ts publishes to it).
//
// Why aedes: it is the MQTT 3.1.1 broker of the MQTT.js authors (the same
// mqtt-packet parser as the mqtt client the bridge uses), kept up to date
// (1.x is ESM, `engines.node >= 20`, typed), in-process (no second daemon to
// install and supervise on the box), with retained messages, wills and QoS 1
// in its default in-memory persistence, and hooks to authenticate and
// authorise. Its state is in memory only: a restart of the box empties it,
// and the bridge publishes its retained topics again when it connects.
//
// Who may do what (the LAN can be hostile; DESIGN.md "Security"):
// - the bridge connects with a secret made here for this process (never
//   configured, never logged); it alone may publish under the box's own
//   topics (protectedPrefixes: P/B/ and its discovery configs D/<component>/N/),
//   so nobody on the LAN can put a false price, island state, will or entity
//   into them. Everything else stays open: Home Assistant's birth message
//   (D/status), other devices' discovery configs, another box's P/B'/;
// - other clients need the configured username and password when one is set
//   (compared in constant time), and may subscribe to anything. With none set
//   (the default) anyone who reaches the port reads everything: the readings,
//   prices and trades of the box (README: MQTT);
// - nobody else may take the bridge's client id (it would knock the bridge off).
//
// Limits (STYLE.md "a limit on everything"; a refused publication closes the
// client's connection, MQTT 3.1.1 having no reason codes to send instead):
// - CONNECTIONS_MAX connections at once from elsewhere, and BOX_CONNECTIONS_MAX
//   more from the box itself (the bridge among them: a LAN full of idle
//   connections must not keep the box's own bridge out); the next is closed at once;
// - PACKET_BYTES_MAX a packet: a packet announcing more closes the connection
//   as soon as its fixed header arrives, before its body is buffered (aedes
//   itself would buffer up to MQTT's 256 MiB per connection);
// - no persistent sessions: every connection starts clean (a CONNECT asking
//   otherwise is answered "no session present"), so the broker queues nothing
//   for a subscriber that went away;
// - other clients' retained messages: RETAINED_OTHERS_TOPICS_MAX topics and
//   RETAINED_OTHERS_BYTES_MAX bytes together; beyond either, a new one is refused.
import { randomBytes, timingSafeEqual } from "node:crypto";
import type { EventEmitter } from "node:events";
import { type AddressInfo, type Server, type Socket, createServer } from "node:net";
import { Aedes, type AuthenticateError, type Client } from "aedes";
import { assert } from "../ledger/assert.js";
import { PeergridError } from "../ledger/errors.js";
import type { NodeLog } from "./node.js";

/** The username the bridge connects with (no one else may use it). */
export const BRIDGE_USERNAME = "peergrid-bridge";

/** Connections the embedded broker holds at once from other hosts (Home Assistant, a few tools). */
export const CONNECTIONS_MAX = 64;
/** And from the box itself (its address at both ends): the bridge, and room for a local tool or two. */
export const BOX_CONNECTIONS_MAX = 4;
/** The largest packet any client may send (the bridge's largest, a clearing's trades, is well below). */
export const PACKET_BYTES_MAX = 256 * 1024;
/** Retained topics that clients other than the bridge may hold on the broker, and their payloads' bytes. */
export const RETAINED_OTHERS_TOPICS_MAX = 1_000;
export const RETAINED_OTHERS_BYTES_MAX = 4 * 1024 * 1024;

export interface EmbeddedBrokerOptions {
  readonly host: string;
  /** 0: any free port (tests). */
  readonly port: number;
  /** Credentials every client but the bridge must give (none: anonymous clients are let in). */
  readonly username?: string;
  readonly password?: string;
  /** The client id the bridge connects with: refused to anyone else. */
  readonly bridgeClientId: string;
  /** Topic prefixes ("peergrid/3/") only the bridge may publish under. */
  readonly protectedPrefixes: readonly string[];
  /** Where the broker's own failures go (a failure of one client's connection is that client's). */
  readonly log?: NodeLog;
  /** Other clients' retained messages at most (defaults RETAINED_OTHERS_TOPICS_MAX and RETAINED_OTHERS_BYTES_MAX). */
  readonly retainedOthersTopicsMax?: number;
  readonly retainedOthersBytesMax?: number;
}

/** AuthErrorCode of aedes (a const enum there, which isolated modules cannot import). */
const BAD_USERNAME_OR_PASSWORD = 4;
const IDENTIFIER_REJECTED = 2;

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

function sameSecret(given: Buffer | string | undefined, expected: Buffer): boolean {
  if (given === undefined) return false;
  const g = typeof given === "string" ? Buffer.from(given, "utf8") : given;
  return g.length === expected.length && timingSafeEqual(g, expected);
}

/**
 * Follows the packets of one MQTT connection by their fixed headers (a type byte, then the remaining
 * length: 1 to 4 bytes of 7 bits, least significant first) and says when one announces more than
 * bytesMax, or its length is malformed. Pure: bytes in, a verdict out; chunks may split anywhere.
 */
export class PacketSizeGuard {
  /** Bytes of the current packet's body still to come (0: a header is next). */
  private bodyBytesLeft = 0;
  /** -1: the next byte is a packet's type byte; else how many length bytes have been read. */
  private lengthBytes = -1;
  private length = 0;

  constructor(private readonly bytesMax: number) {
    assert(Number.isSafeInteger(bytesMax) && bytesMax >= 2, "a packet bound of at least a header");
  }

  /** False once a packet is over the bound (or malformed): close the connection. */
  feed(chunk: Uint8Array): boolean {
    let i = 0;
    while (i < chunk.length) {
      if (this.bodyBytesLeft > 0) {
        const n = Math.min(this.bodyBytesLeft, chunk.length - i);
        this.bodyBytesLeft -= n;
        i += n;
        continue;
      }
      const b = chunk[i++] as number;
      if (this.lengthBytes < 0) {
        this.lengthBytes = 0;
        this.length = 0;
        continue;
      }
      this.length += (b & 0x7f) * 128 ** this.lengthBytes;
      this.lengthBytes++;
      if ((b & 0x80) !== 0) {
        if (this.lengthBytes === 4) return false; // a fifth length byte: malformed
        continue;
      }
      if (this.length + 1 + this.lengthBytes > this.bytesMax) return false;
      this.bodyBytesLeft = this.length;
      this.lengthBytes = -1;
    }
    return true;
  }
}

export class EmbeddedBroker {
  /** The bridge's own credentials for this process: random, held only in memory. */
  readonly bridgeUsername = BRIDGE_USERNAME;
  readonly bridgePassword: string;
  private readonly bridgeClients = new WeakSet<Client>();

  private constructor(
    private readonly aedes: Aedes,
    private readonly server: Server,
    private readonly sockets: ReadonlySet<Socket>,
    readonly host: string,
    readonly port: number,
    bridgePassword: string,
  ) {
    this.bridgePassword = bridgePassword;
  }

  /** Listen on host:port; fails with PG_ERR_MQTT_LISTEN (the port taken, say) and leaves nothing open. */
  static async start(o: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
    const bridgePassword = randomBytes(24).toString("base64url");
    const bridgeSecret = Buffer.from(bridgePassword, "utf8");
    const userSecret = o.password === undefined ? null : Buffer.from(o.password, "utf8");
    const log = o.log ?? (() => {});
    const retainedTopicsMax = o.retainedOthersTopicsMax ?? RETAINED_OTHERS_TOPICS_MAX;
    const retainedBytesMax = o.retainedOthersBytesMax ?? RETAINED_OTHERS_BYTES_MAX;
    let broker: EmbeddedBroker | null = null;
    /** Other clients' retained topics and their payloads' bytes (the bridge's are bounded by the bridge). */
    const othersRetained = new Map<string, number>();
    let othersRetainedBytes = 0;
    const aedes = await Aedes.createBroker({
      preConnect: (_client, packet, done) => {
        packet.clean = true; // no sessions kept: nothing queued for subscribers gone away
        done(null, true);
      },
      authenticate: (client, username, password, done) => {
        if (username === BRIDGE_USERNAME) {
          if (client.id === o.bridgeClientId && sameSecret(password, bridgeSecret)) {
            broker?.bridgeClients.add(client);
            return done(null, true);
          }
          return done(authError("bad username or password", BAD_USERNAME_OR_PASSWORD), false);
        }
        if (client.id === o.bridgeClientId) return done(authError(`client id ${o.bridgeClientId} is the box's own`, IDENTIFIER_REJECTED), false);
        if (o.username === undefined) return done(null, true);
        const ok = username === o.username && userSecret !== null && sameSecret(password, userSecret);
        return ok ? done(null, true) : done(authError("bad username or password", BAD_USERNAME_OR_PASSWORD), false);
      },
      authorizePublish: (client, packet, done) => {
        // client null: the broker's own publications ($SYS heartbeats).
        if (client === null || broker?.bridgeClients.has(client) === true) return done(null);
        const topic = packet.topic;
        if (o.protectedPrefixes.some((p) => topic.startsWith(p))) return done(new Error(`${topic} is the box's own topic`));
        if (!packet.retain) return done(null);
        // A retained message replaces the topic's last one; an empty one deletes it.
        const bytes = typeof packet.payload === "string" ? Buffer.byteLength(packet.payload) : packet.payload.length;
        const before = othersRetained.get(topic) ?? 0;
        const topics = othersRetained.size + (othersRetained.has(topic) || bytes === 0 ? 0 : 1);
        if (bytes > 0 && (topics > retainedTopicsMax || othersRetainedBytes - before + bytes > retainedBytesMax)) {
          return done(new Error(`retained messages of other clients: at most ${retainedTopicsMax} topics and ${retainedBytesMax} bytes`));
        }
        othersRetainedBytes += bytes - before;
        if (bytes === 0) othersRetained.delete(topic);
        else othersRetained.set(topic, bytes);
        done(null);
      },
    });
    // Failures of the broker itself (its will sweep, its persistence): an EventEmitter's "error" with no
    // listener would throw, and take the whole box down with it.
    const emitter: EventEmitter = aedes; // (its typings name only its client events)
    emitter.on("error", (err: Error) => log("error", "embedded MQTT broker failed", { error: err.message }));
    const sockets = new Set<Socket>();
    let otherHostSockets = 0;
    const server = createServer((socket) => {
      const fromBox = socket.remoteAddress !== undefined && socket.remoteAddress === socket.localAddress;
      if (!fromBox && otherHostSockets >= CONNECTIONS_MAX) {
        socket.destroy();
        return;
      }
      if (!fromBox) otherHostSockets++;
      sockets.add(socket);
      socket.once("close", () => {
        sockets.delete(socket);
        if (!fromBox) otherHostSockets--;
      });
      aedes.handle(socket);
      // After aedes's "readable" listener: "data" then only observes what aedes reads, flowing nothing.
      const guard = new PacketSizeGuard(PACKET_BYTES_MAX);
      socket.on("data", (chunk: Buffer) => {
        if (!guard.feed(chunk)) socket.destroy();
      });
    });
    server.maxConnections = CONNECTIONS_MAX + BOX_CONNECTIONS_MAX;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(o.port, o.host, () => {
          server.off("error", reject);
          resolve();
        });
      });
      // Listening: an accept failure (EMFILE, say) is an "error" too, which unheard would throw.
      server.on("error", (err) => log("error", "embedded MQTT broker: accepting a connection failed", { error: err.message }));
    } catch (err) {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      const why = err instanceof Error ? err.message : String(err);
      throw new PeergridError("PG_ERR_MQTT_LISTEN", `the embedded MQTT broker cannot listen on ${o.host}:${o.port} (${why}); is another broker running there? Then give its URL instead`, { cause: err });
    }
    const port = (server.address() as AddressInfo).port;
    broker = new EmbeddedBroker(aedes, server, sockets, o.host, port, bridgePassword);
    return broker;
  }

  /** Where the bridge on this box reaches it: a wildcard listen address is reached on loopback. */
  get localUrl(): string {
    const host = this.host === "0.0.0.0" || this.host === "" ? "127.0.0.1" : this.host === "::" ? "[::1]" : this.host.includes(":") ? `[${this.host}]` : this.host;
    return `mqtt://${host}:${this.port}`;
  }

  get connectedClients(): number {
    return this.aedes.connectedClients;
  }

  /**
   * Stop listening and close every client connection (the bridge has disconnected cleanly before),
   * including those that never finished connecting: aedes closes only its clients, and the server's
   * close waits for every socket.
   */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    for (const socket of this.sockets) socket.destroy();
    await closed;
  }
}
