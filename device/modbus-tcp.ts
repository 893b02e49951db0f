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
import { type BusLink, ModbusError, ModbusErrorCode } from "./bus.js";

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

export class TcpLink implements BusLink {
  readonly label: string;
  readonly options: TcpLinkOptions;
  private socket: net.Socket | null = null;
  private received: Buffer = Buffer.alloc(0);
  private onData: (() => void) | null = null;
  private onGone: ((err: Error) => void) | null = null;
  private transactionId = 0;
  private failures = 0;
  private retryAtMs = 0;
  stale = 0;

  constructor(options: Pick<TcpLinkOptions, "host" | "port"> & Partial<TcpLinkOptions>) {
    this.options = { ...DEFAULT_TCP_LINK_OPTIONS, ...options };
    this.label = `tcp ${options.host}:${options.port}`;
  }

  async exchange(req: Request, timeoutMs: number): Promise<Reply> {
    const socket = await this.connected();
    const id = (this.transactionId = (this.transactionId + 1) & 0xffff);
    return new Promise<Reply>((resolve, reject) => {
      const done = (err: Error | null, reply?: Reply) => {
        clearTimeout(timer);
        this.onData = null;
        this.onGone = null;
        if (err !== null) reject(err);
        else resolve(reply as Reply);
      };
      const timer = setTimeout(() => done(new ModbusError(ModbusErrorCode.timeout, `${this.label}: no reply from unit ${req.unit} within ${timeoutMs} ms`)), timeoutMs);
      this.onGone = (err) => done(new ModbusError(ModbusErrorCode.link, `${this.label}: the connection was lost (${err.message})`, { cause: err }));
      this.onData = () => {
        for (;;) {
          const v = parseTcpReply(req, id, this.received);
          if (v.kind === "incomplete") {
            if (this.received.length > RECEIVE_BYTES_MAX) return done(new ModbusError(ModbusErrorCode.garbage, `${this.label}: ${this.received.length} bytes without a reply`));
            return;
          }
          if (v.kind === "stale") {
            this.stale++;
            this.received = this.received.subarray(v.bytes);
            continue;
          }
          if (v.kind === "garbage") return done(new ModbusError(ModbusErrorCode.garbage, `${this.label}: ${v.reason}`));
          this.received = this.received.subarray(v.bytes);
          return done(null, v.reply);
        }
      };
      this.received = Buffer.alloc(0); // nothing from before this request is an answer to it
      socket.write(encodeTcp(req, id));
    });
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

  private async connected(): Promise<net.Socket> {
    if (this.socket !== null && !this.socket.destroyed) return this.socket;
    const now = Date.now();
    if (now < this.retryAtMs) throw new ModbusError(ModbusErrorCode.link, `${this.label}: not reachable (${this.failures} failed connects; next try in ${this.retryAtMs - now} ms)`);
    try {
      const socket = await this.connect();
      this.failures = 0;
      this.retryAtMs = 0;
      return socket;
    } catch (err) {
      this.failures++;
      const o = this.options;
      this.retryAtMs = Date.now() + Math.min(o.reconnectDelayMsMax, o.reconnectDelayMsMin * 2 ** Math.min(this.failures - 1, 20));
      throw new ModbusError(ModbusErrorCode.link, `${this.label}: cannot connect (${err instanceof Error ? err.message : String(err)})`, { cause: err });
    }
  }

  private connect(): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: this.options.host, port: this.options.port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no connection within ${this.options.connectTimeoutMs} ms`));
      }, this.options.connectTimeoutMs);
      socket.once("connect", () => {
        clearTimeout(timer);
        socket.off("error", reject);
        this.socket = socket;
        socket.on("data", (chunk: Buffer) => {
          if (this.socket !== socket) return;
          this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
          this.onData?.();
        });
        socket.on("error", () => {}); // 'close' follows
        socket.once("close", () => {
          if (this.socket !== socket) return; // dropped on purpose (recover, close): no exchange is waiting on it
          this.socket = null;
          this.onGone?.(new Error("closed by the peer"));
        });
        resolve(socket);
      });
      socket.once("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }
}
