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
//   topic prefix and the discovery prefix (protectedPrefixes), so nobody on
//   the LAN can put a false price, island state, will or entity into the box's
//   topics. Home Assistant's birth message (`<discovery>/status`) stays open
//   to everyone, since Home Assistant publishes it;
// - other clients need the configured username and password when one is set
//   (compared in constant time), and may subscribe to anything;
// - nobody else may take the bridge's client id (it would knock the bridge off);
// - at most CONNECTIONS_MAX connections at once (net.Server maxConnections).
import { randomBytes, timingSafeEqual } from "node:crypto";
import { type AddressInfo, type Server, createServer } from "node:net";
import { Aedes, type AuthenticateError, type Client } from "aedes";
import { PeergridError } from "../ledger/errors.js";

/** The username the bridge connects with (no one else may use it). */
export const BRIDGE_USERNAME = "peergrid-bridge";

/** Connections the embedded broker holds at once (Home Assistant, a few tools, the bridge). */
export const CONNECTIONS_MAX = 64;

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
  /** Topics under a protected prefix that anyone may publish to (Home Assistant's birth topic). */
  readonly openTopics: readonly string[];
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

export class EmbeddedBroker {
  /** The bridge's own credentials for this process: random, held only in memory. */
  readonly bridgeUsername = BRIDGE_USERNAME;
  readonly bridgePassword: string;
  private readonly bridgeClients = new WeakSet<Client>();

  private constructor(
    private readonly aedes: Aedes,
    private readonly server: Server,
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
    let broker: EmbeddedBroker | null = null;
    const aedes = await Aedes.createBroker({
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
        if (o.openTopics.includes(topic) || !o.protectedPrefixes.some((p) => topic.startsWith(p))) return done(null);
        done(new Error(`${topic} is the box's own topic`));
      },
    });
    const server = createServer(aedes.handle);
    server.maxConnections = CONNECTIONS_MAX;
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(o.port, o.host, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (err) {
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      const why = err instanceof Error ? err.message : String(err);
      throw new PeergridError("PG_ERR_MQTT_LISTEN", `the embedded MQTT broker cannot listen on ${o.host}:${o.port} (${why}); is another broker running there? Then give its URL instead`, { cause: err });
    }
    const port = (server.address() as AddressInfo).port;
    broker = new EmbeddedBroker(aedes, server, o.host, port, bridgePassword);
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

  /** Stop listening and close every client connection (the bridge has disconnected cleanly before). */
  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    await closed;
  }
}
