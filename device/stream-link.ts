// What the TCP and RTU links (modbus-tcp.ts, modbus-rtu.ts) share: the
// bytes received on their stream, the wait for one reply (a timeout, the
// stream going away, the verdicts of modbus-frame.ts), and the backoff
// between failed attempts to open the stream.
import { doublingMs } from "../ledger/assert.js";
import { type BusLink, ModbusError, ModbusErrorCode } from "./bus.js";
import type { Reply, Request } from "./modbus-frame.js";

/** What the link's parser says about the bytes received so far. */
export type Judgement = { readonly reply: Reply } | { readonly garbage: string } | null; // null: wait for more

export interface ReopenDelays {
  readonly minMs: number;
  readonly maxMs: number;
}

export abstract class StreamLink implements BusLink {
  abstract readonly label: string;
  /** Bytes received and not yet consumed. */
  protected received: Buffer = Buffer.alloc(0);
  private onData: (() => void) | null = null;
  private onGone: ((err: Error) => void) | null = null;
  private failures = 0;
  private retryAtMs = 0;

  constructor(private readonly reopen: ReopenDelays) {}

  abstract exchange(req: Request, timeoutMs: number): Promise<Reply>;
  abstract recover(): Promise<void>;
  abstract close(): Promise<void>;

  /**
   * Send with `send` and wait for the reply to `req`: `judge` is asked each
   * time bytes arrive, a timeout after `timeoutMs`, a link error if the
   * stream goes away meanwhile (`gone` says how, "the connection was lost").
   */
  protected awaitReply(req: Request, timeoutMs: number, gone: string, judge: () => Judgement, send: (fail: (err: Error) => void) => void): Promise<Reply> {
    return new Promise<Reply>((resolve, reject) => {
      const done = (err: Error | null, reply?: Reply) => {
        clearTimeout(timer);
        this.onData = null;
        this.onGone = null;
        if (err !== null) reject(err);
        else resolve(reply as Reply);
      };
      const timer = setTimeout(() => done(new ModbusError(ModbusErrorCode.timeout, `${this.label}: no reply from unit ${req.unit} within ${timeoutMs} ms`)), timeoutMs);
      this.onGone = (err) => done(new ModbusError(ModbusErrorCode.dropped, `${this.label}: ${gone} (${err.message})`, { cause: err }));
      this.onData = () => {
        const j = judge();
        if (j === null) return;
        if ("garbage" in j) done(new ModbusError(ModbusErrorCode.garbage, `${this.label}: ${j.garbage}`));
        else done(null, j.reply);
      };
      send((err) => done(new ModbusError(ModbusErrorCode.link, `${this.label}: cannot write (${err.message})`, { cause: err })));
    });
  }

  /** The stream delivered bytes; `idleBytesMax` bounds what is kept while no exchange waits (the excess is noise). */
  protected arrived(chunk: Buffer, idleBytesMax: number): void {
    this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
    if (this.onData !== null) {
      this.onData();
    } else if (this.received.length > idleBytesMax) {
      this.discarded(this.received.length);
      this.received = Buffer.alloc(0);
    }
  }

  /** Bytes thrown away as noise between exchanges (the RTU link counts them). */
  protected discarded(_bytes: number): void {}

  /** The stream went away by itself (not dropped by this link). */
  protected lost(err: Error): void {
    this.onGone?.(err);
  }

  /** Open the stream with `open`, no sooner than the backoff after failed attempts allows. */
  protected async opening<T>(what: "connect" | "open", open: () => Promise<T>): Promise<T> {
    const now = Date.now();
    if (now < this.retryAtMs) throw new ModbusError(ModbusErrorCode.link, `${this.label}: not available (${this.failures} failed attempts to ${what}; next try in ${this.retryAtMs - now} ms)`);
    try {
      const stream = await open();
      this.failures = 0;
      this.retryAtMs = 0;
      return stream;
    } catch (err) {
      this.failures++;
      this.retryAtMs = Date.now() + doublingMs(this.failures - 1, this.reopen.minMs, this.reopen.maxMs);
      throw new ModbusError(ModbusErrorCode.link, `${this.label}: cannot ${what} (${err instanceof Error ? err.message : String(err)})`, { cause: err });
    }
  }
}
