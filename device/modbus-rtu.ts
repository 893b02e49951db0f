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
import { StreamLink } from "./stream-link.js";
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

export class RtuLink extends StreamLink {
  readonly label: string;
  readonly options: RtuLinkOptions;
  readonly stats: RtuLinkStats = { opens: 0, openFailures: 0, discardedBytes: 0, strayAfterReply: 0 };
  private readonly charsPerS: number;
  private port: SerialPort | null = null;

  constructor(options: Pick<RtuLinkOptions, "path" | "baud"> & Partial<RtuLinkOptions>) {
    const o = { ...DEFAULT_RTU_LINK_OPTIONS, ...options };
    super({ minMs: o.reopenDelayMsMin, maxMs: o.reopenDelayMsMax });
    this.options = o;
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
    const port = this.port !== null && this.port.isOpen ? this.port : await this.opening("open", () => this.open());
    const frame = encodeRtu(req); // throws for a request Modbus does not allow, before anything is sent
    this.discarded(this.received.length); // nothing received before a request can answer it
    this.received = Buffer.alloc(0);
    return this.awaitReply(
      req,
      timeoutMs + wireMs(frame.length, this.charsPerS),
      "the port went away",
      () => {
        const v = parseRtuReply(req, this.received);
        if (v.kind === "incomplete") return this.received.length > RTU_FRAME_BYTES_MAX ? { garbage: `${this.received.length} bytes without a reply` } : null;
        if (v.kind === "garbage") return { garbage: v.reason };
        this.stats.strayAfterReply += this.received.length - v.bytes;
        this.received = Buffer.alloc(0);
        return { reply: v.reply };
      },
      (fail) => port.write(Buffer.from(frame), (err) => err && fail(err)),
    );
  }

  /** Wait out whatever reply could still arrive, and throw it away. */
  async recover(): Promise<void> {
    await new Promise((r) => setTimeout(r, this.settleMs));
    this.discarded(this.received.length);
    this.received = Buffer.alloc(0);
    const port = this.port;
    if (port !== null && port.isOpen) await new Promise<void>((r) => port.flush(() => r()));
  }

  async close(): Promise<void> {
    const port = this.port;
    this.port = null;
    if (port !== null && port.isOpen) await new Promise<void>((r) => port.close(() => r()));
  }

  protected override discarded(bytes: number): void {
    this.stats.discardedBytes += bytes;
  }

  private open(): Promise<SerialPort> {
    const o = this.options;
    return new Promise((resolve, reject) => {
      const port = new SerialPort({ path: o.path, baudRate: o.baud, parity: o.parity, dataBits: o.dataBits, stopBits: o.stopBits, autoOpen: false });
      port.open((err) => {
        if (err !== null && err !== undefined) {
          this.stats.openFailures++;
          return reject(err);
        }
        this.stats.opens++;
        this.port = port;
        this.received = Buffer.alloc(0);
        port.on("data", (chunk: Buffer) => {
          if (this.port === port) this.arrived(chunk, RTU_FRAME_BYTES_MAX); // between exchanges: noise, bounded
        });
        port.on("error", () => {}); // 'close' follows
        port.on("close", (e: Error | null) => {
          if (this.port !== port) return; // closed on purpose
          this.port = null;
          this.lost(e ?? new Error("closed"));
        });
        resolve(port);
      });
    });
  }
}
