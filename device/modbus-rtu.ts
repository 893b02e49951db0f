// Modbus RTU over a serial line (RS-485 adapter): the link of a Bus
// (bus.ts) for every meter on that line.
//
// An RTU reply carries no transaction id, so what keeps values on their
// registers is discipline on the line:
//   - before a request, whatever the line holds is discarded (a late reply,
//     noise): nothing received before a request can answer it;
//   - a reply must pass every check of modbus-frame.ts (unit, function,
//     exact length, CRC) or the exchange fails as garbage;
//   - after a timeout or garbage, recover() waits out the slowest reply a
//     meter could still send (replyDelayMsMax plus the wire time of the
//     longest frame) and discards everything received meanwhile, so a late
//     reply dies on the line instead of answering the next request.
// A port that goes away (a USB adapter unplugged) fails the exchange in
// flight with a link error; the next request reopens it, no sooner than the
// backoff allows, and goes on once the adapter is back.
import { SerialPort } from "serialport";
import { type BusLink, ModbusError, ModbusErrorCode } from "./bus.js";
import { RTU_FRAME_BYTES_MAX, type Reply, type Request, charsPerSecond, encodeRtu, interFrameMs, parseRtuReply, wireMs } from "./modbus-frame.js";
import type { SerialSettings } from "./register-map.js";

export interface RtuLinkOptions extends SerialSettings {
  readonly path: string;
  /** The longest a meter on this line takes to start its reply. */
  readonly replyDelayMsMax: number;
  readonly reopenDelayMsMin: number;
  readonly reopenDelayMsMax: number;
}

export const DEFAULT_RTU_LINK_OPTIONS = { parity: "none", dataBits: 8, stopBits: 1, replyDelayMsMax: 100, reopenDelayMsMin: 500, reopenDelayMsMax: 30_000 } as const;

export interface RtuLinkStats {
  opens: number;
  openFailures: number;
  discardedBytes: number; // stray bytes thrown away before a request or while recovering
  strayAfterReply: number; // bytes that followed a complete reply
}

export class RtuLink implements BusLink {
  readonly label: string;
  readonly options: RtuLinkOptions;
  readonly stats: RtuLinkStats = { opens: 0, openFailures: 0, discardedBytes: 0, strayAfterReply: 0 };
  private readonly charsPerS: number;
  private port: SerialPort | null = null;
  private received: Buffer = Buffer.alloc(0);
  private onData: (() => void) | null = null;
  private onGone: ((err: Error) => void) | null = null;
  private failures = 0;
  private retryAtMs = 0;

  constructor(options: Pick<RtuLinkOptions, "path" | "baud"> & Partial<RtuLinkOptions>) {
    this.options = { ...DEFAULT_RTU_LINK_OPTIONS, ...options };
    const o = this.options;
    this.charsPerS = charsPerSecond(o.baud, o.dataBits, o.parity, o.stopBits);
    this.label = `rtu ${o.path} ${o.baud} ${o.dataBits}${o.parity[0]?.toUpperCase() ?? "N"}${o.stopBits}`;
  }

  /** The silence that must separate two frames on this line (3.5 characters). */
  get interFrameMs(): number {
    return interFrameMs(this.options.baud, this.charsPerS);
  }

  /** How long recover() waits: the slowest reply that could still come, whole. */
  get settleMs(): number {
    return this.options.replyDelayMsMax + wireMs(RTU_FRAME_BYTES_MAX, this.charsPerS) + this.interFrameMs;
  }

  async exchange(req: Request, timeoutMs: number): Promise<Reply> {
    const port = await this.opened();
    const frame = encodeRtu(req); // throws for a request Modbus does not allow, before anything is sent
    this.discard();
    return new Promise<Reply>((resolve, reject) => {
      const done = (err: Error | null, reply?: Reply) => {
        clearTimeout(timer);
        this.onData = null;
        this.onGone = null;
        if (err !== null) reject(err);
        else resolve(reply as Reply);
      };
      const timer = setTimeout(() => done(new ModbusError(ModbusErrorCode.timeout, `${this.label}: no reply from unit ${req.unit} within ${timeoutMs} ms`)), timeoutMs + wireMs(frame.length, this.charsPerS));
      this.onGone = (err) => done(new ModbusError(ModbusErrorCode.link, `${this.label}: the port went away (${err.message})`, { cause: err }));
      this.onData = () => {
        const v = parseRtuReply(req, this.received);
        if (v.kind === "incomplete") {
          if (this.received.length > RTU_FRAME_BYTES_MAX) done(new ModbusError(ModbusErrorCode.garbage, `${this.label}: ${this.received.length} bytes without a reply`));
          return;
        }
        if (v.kind === "garbage") return done(new ModbusError(ModbusErrorCode.garbage, `${this.label}: ${v.reason}`));
        this.stats.strayAfterReply += this.received.length - v.bytes;
        this.received = Buffer.alloc(0);
        done(null, v.reply);
      };
      port.write(Buffer.from(frame), (err) => {
        if (err !== null && err !== undefined) done(new ModbusError(ModbusErrorCode.link, `${this.label}: cannot write (${err.message})`, { cause: err }));
      });
    });
  }

  /** Wait out whatever reply could still arrive, and throw it away. */
  async recover(): Promise<void> {
    await new Promise((r) => setTimeout(r, this.settleMs));
    this.discard();
    const port = this.port;
    if (port !== null && port.isOpen) await new Promise<void>((r) => port.flush(() => r()));
  }

  async close(): Promise<void> {
    const port = this.port;
    this.port = null;
    if (port !== null && port.isOpen) await new Promise<void>((r) => port.close(() => r()));
  }

  private discard(): void {
    this.stats.discardedBytes += this.received.length;
    this.received = Buffer.alloc(0);
  }

  private async opened(): Promise<SerialPort> {
    if (this.port !== null && this.port.isOpen) return this.port;
    const now = Date.now();
    if (now < this.retryAtMs) throw new ModbusError(ModbusErrorCode.link, `${this.label}: the port is not available (${this.failures} failed opens; next try in ${this.retryAtMs - now} ms)`);
    try {
      const port = await this.open();
      this.failures = 0;
      this.retryAtMs = 0;
      return port;
    } catch (err) {
      this.failures++;
      this.stats.openFailures++;
      const o = this.options;
      this.retryAtMs = Date.now() + Math.min(o.reopenDelayMsMax, o.reopenDelayMsMin * 2 ** Math.min(this.failures - 1, 20));
      throw new ModbusError(ModbusErrorCode.link, `${this.label}: cannot open (${err instanceof Error ? err.message : String(err)})`, { cause: err });
    }
  }

  private open(): Promise<SerialPort> {
    const o = this.options;
    return new Promise((resolve, reject) => {
      const port = new SerialPort({ path: o.path, baudRate: o.baud, parity: o.parity, dataBits: o.dataBits, stopBits: o.stopBits, autoOpen: false });
      port.open((err) => {
        if (err !== null && err !== undefined) return reject(err);
        this.stats.opens++;
        this.port = port;
        this.received = Buffer.alloc(0);
        port.on("data", (chunk: Buffer) => {
          if (this.port !== port) return;
          this.received = this.received.length === 0 ? chunk : Buffer.concat([this.received, chunk]);
          if (this.onData !== null) this.onData();
          else if (this.received.length > RTU_FRAME_BYTES_MAX) this.discard(); // between exchanges: noise, bounded
        });
        port.on("error", () => {}); // 'close' follows
        port.on("close", (e: Error | null) => {
          if (this.port !== port) return; // closed on purpose
          this.port = null;
          this.onGone?.(e ?? new Error("closed"));
        });
        resolve(port);
      });
    });
  }
}
