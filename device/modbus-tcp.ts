// Modbus TCP: the link of a Bus (bus.ts) to a meter or a gateway over TCP.
//
// One connection, opened when a request needs it. Each request carries a
// new transaction id; a reply with an older one (a late answer to a request
// that timed out) is dropped as stale, and the wait goes on. A reply that
// does not parse closes the connection: the next request starts on a fresh
// stream with nothing left over. A failed connect is retried no sooner than
// the backoff allows (doubling to reconnectDelayMsMax), so a meter that is
// down costs one refused request per backoff step, not a tight loop.
import net from "node:net";
import { type Reply, type Request, encodeTcp, parseTcpReply } from "./modbus-frame.js";
import { StreamLink } from "./stream-link.js";

export interface TcpLinkOptions {
  readonly host: string;
  readonly port: number;
  readonly connectTimeoutMs: number;
  readonly reconnectDelayMsMin: number;
  readonly reconnectDelayMsMax: number;
}

export const DEFAULT_TCP_LINK_OPTIONS = { connectTimeoutMs: 2_000, reconnectDelayMsMin: 250, reconnectDelayMsMax: 30_000 } as const;

/** Bytes held while waiting for a reply: a whole ADU (260 bytes) and stale ones before it. */
const RECEIVE_BYTES_MAX = 4_096;

export class TcpLink extends StreamLink {
  readonly label: string;
  readonly options: TcpLinkOptions;
  private socket: net.Socket | null = null;
  private transactionId = 0;
  stale = 0;

  constructor(options: Pick<TcpLinkOptions, "host" | "port"> & Partial<TcpLinkOptions>) {
    const o = { ...DEFAULT_TCP_LINK_OPTIONS, ...options };
    super({ minMs: o.reconnectDelayMsMin, maxMs: o.reconnectDelayMsMax });
    this.options = o;
    this.label = `tcp ${options.host}:${options.port}`;
  }

  async exchange(req: Request, timeoutMs: number): Promise<Reply> {
    const socket = this.socket !== null && !this.socket.destroyed ? this.socket : await this.opening("connect", () => this.connect());
    const id = (this.transactionId = (this.transactionId + 1) & 0xffff);
    this.received = Buffer.alloc(0); // nothing from before this request is an answer to it
    return this.awaitReply(
      req,
      timeoutMs,
      "the connection was lost",
      () => {
        for (;;) {
          const v = parseTcpReply(req, id, this.received);
          if (v.kind === "incomplete") return this.received.length > RECEIVE_BYTES_MAX ? { garbage: `${this.received.length} bytes without a reply` } : null;
          this.received = this.received.subarray(v.kind === "garbage" ? this.received.length : v.bytes);
          if (v.kind === "stale") {
            this.stale++;
            continue;
          }
          return v.kind === "garbage" ? { garbage: v.reason } : { reply: v.reply };
        }
      },
      (fail) => socket.write(encodeTcp(req, id), (err) => err && fail(err)),
    );
  }

  /** After a timeout or garbage: a fresh connection next time, so nothing late or broken is read as an answer. */
  async recover(): Promise<void> {
    this.drop();
  }

  async close(): Promise<void> {
    this.drop();
  }

  private drop(): void {
    this.socket?.destroy();
    this.socket = null;
    this.received = Buffer.alloc(0);
  }

  private connect(): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: this.options.host, port: this.options.port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no connection within ${this.options.connectTimeoutMs} ms`));
      }, this.options.connectTimeoutMs);
      socket.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      socket.once("connect", () => {
        clearTimeout(timer);
        this.socket = socket;
        this.received = Buffer.alloc(0);
        socket.on("data", (chunk: Buffer) => {
          if (this.socket === socket) this.arrived(chunk, RECEIVE_BYTES_MAX);
        });
        socket.on("error", () => {}); // 'close' follows
        socket.once("close", () => {
          if (this.socket !== socket) return; // dropped on purpose (recover, close): no exchange is waiting on it
          this.socket = null;
          this.lost(new Error("closed by the peer"));
        });
        resolve(socket);
      });
    });
  }
}
