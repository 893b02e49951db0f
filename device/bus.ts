// One Modbus bus: exactly one request in flight, in the order asked.
//
// A physical bus (an RS-485 line, or a TCP gateway in front of one) answers
// one request at a time, and on RTU a reply carries no transaction id: two
// overlapping requests, or a late reply after a timeout, put values on the
// wrong registers. So every meter and relay on one bus shares one Bus, and
// the Bus:
//   - queues requests (bounded: at queueMax a request is refused with
//     PG_ERR_BUS_QUEUE_FULL at once, never silently delayed without end);
//   - sends one at a time through its link, each with an explicit timeout;
//   - leaves gapMs of silence between the end of one exchange and the next
//     request (meters need it; the Modbus RTU minimum is 3.5 characters);
//   - after a timeout, garbage or a lost link, lets the link recover (RTU:
//     wait out the slowest reply and discard whatever arrived; TCP: a fresh
//     connection) before anything else is sent, then retries up to
//     retriesMax times. An exception reply is an answer, not retried.
import { PeergridError } from "../ledger/errors.js";
import { type Reply, type Request, encodePdu } from "./modbus-frame.js";
import type { BlockWords, ReadBlock, RegisterTable } from "./register-map.js";

export class ModbusError extends PeergridError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "ModbusError";
  }
}

export const ModbusErrorCode = {
  timeout: "PG_ERR_MODBUS_TIMEOUT",
  garbage: "PG_ERR_MODBUS_GARBAGE",
  link: "PG_ERR_MODBUS_LINK", // cannot connect or open, or cannot write
  dropped: "PG_ERR_MODBUS_DROPPED", // the stream went away while a reply was awaited
  queueFull: "PG_ERR_BUS_QUEUE_FULL",
  closed: "PG_ERR_BUS_CLOSED",
} as const;

/** The line under a bus: one exchange at a time (the Bus guarantees it). */
export interface BusLink {
  /** Where it goes, for messages ("tcp 192.168.1.40:502", "rtu /dev/ttyUSB0 9600 8N1"). */
  readonly label: string;
  /** Send `req`; resolve with its reply; reject with a ModbusError (timeout, garbage, link). */
  exchange(req: Request, timeoutMs: number): Promise<Reply>;
  /** Make the line clean after a failed exchange, before the next request. */
  recover(): Promise<void>;
  close(): Promise<void>;
}

export interface BusOptions {
  readonly timeoutMs: number;
  readonly gapMs: number;
  readonly retriesMax: number;
  readonly queueMax: number;
}

export const DEFAULT_BUS_OPTIONS: BusOptions = {
  timeoutMs: 300,
  gapMs: 5,
  retriesMax: 1,
  queueMax: 256,
};

export interface BusStats {
  requests: number;
  replies: number;
  exceptions: number;
  timeouts: number;
  garbage: number;
  linkErrors: number;
  retries: number;
  failed: number; // requests that failed after their retries
  refusedQueueFull: number;
}

interface Queued {
  readonly req: Request;
  readonly timeoutMs: number;
  readonly resolve: (r: Reply) => void;
  readonly reject: (e: Error) => void;
}

export class Bus {
  readonly options: BusOptions;
  readonly stats: BusStats = { requests: 0, replies: 0, exceptions: 0, timeouts: 0, garbage: 0, linkErrors: 0, retries: 0, failed: 0, refusedQueueFull: 0 };
  private readonly queue: Queued[] = [];
  private running = false;
  private closed = false;

  constructor(
    readonly link: BusLink,
    options: Partial<BusOptions> = {},
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    this.options = { ...DEFAULT_BUS_OPTIONS, ...options };
    const o = this.options;
    if (!(o.timeoutMs > 0 && o.gapMs >= 0 && Number.isInteger(o.retriesMax) && o.retriesMax >= 0 && Number.isInteger(o.queueMax) && o.queueMax > 0)) {
      throw new RangeError(`bus options: timeoutMs > 0, gapMs >= 0, retriesMax and queueMax whole (got ${JSON.stringify(o)})`);
    }
  }

  /** Queue a request; resolves with its reply (an exception reply included), rejects with a ModbusError. */
  request(req: Request, timeoutMs = this.options.timeoutMs): Promise<Reply> {
    if (this.closed) return Promise.reject(new ModbusError(ModbusErrorCode.closed, `the bus ${this.link.label} is closed`));
    try {
      encodePdu(req); // a request Modbus does not allow is the caller's mistake: refused now, never sent or retried
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.queue.length >= this.options.queueMax) {
      this.stats.refusedQueueFull++;
      return Promise.reject(new ModbusError(ModbusErrorCode.queueFull, `the bus ${this.link.label} has ${this.queue.length} requests waiting (queueMax ${this.options.queueMax}): poll less often or split the bus`));
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ req, timeoutMs, resolve, reject });
      if (!this.running) void this.run();
    });
  }

  /** Requests waiting (not counting the one in flight). */
  get waiting(): number {
    return this.queue.length;
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      for (let q = this.queue.shift(); q !== undefined; q = this.queue.shift()) {
        await this.serve(q);
        if (this.options.gapMs > 0) await this.sleep(this.options.gapMs);
      }
    } finally {
      this.running = false;
    }
  }

  private async serve(q: Queued): Promise<void> {
    this.stats.requests++;
    for (let attempt = 0; ; attempt++) {
      if (this.closed) return q.reject(new ModbusError(ModbusErrorCode.closed, `the bus ${this.link.label} is closed`));
      try {
        const reply = await this.link.exchange(q.req, q.timeoutMs);
        this.stats.replies++;
        if (reply.kind === "exception") this.stats.exceptions++;
        return q.resolve(reply);
      } catch (err) {
        const e = err instanceof ModbusError ? err : new ModbusError(ModbusErrorCode.link, `${this.link.label}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
        if (e.code === ModbusErrorCode.timeout) this.stats.timeouts++;
        else if (e.code === ModbusErrorCode.garbage) this.stats.garbage++;
        else this.stats.linkErrors++;
        await this.link.recover().catch(() => {}); // a link that cannot recover fails the next exchange, which says why
        if (attempt >= this.options.retriesMax) {
          this.stats.failed++;
          return q.reject(e);
        }
        this.stats.retries++;
      }
    }
  }

  /** Refuse what waits, let the request in flight end, close the link. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (let q = this.queue.shift(); q !== undefined; q = this.queue.shift()) q.reject(new ModbusError(ModbusErrorCode.closed, `the bus ${this.link.label} is closed`));
    await this.link.close();
  }
}

/** Read `count` registers at `address` of `unit` (FC4 for input registers, FC3 for holding): the words, or the exception the device answered. */
export async function readRegisters(bus: Bus, unit: number, table: RegisterTable, address: number, count: number): Promise<readonly number[] | Extract<Reply, { kind: "exception" }>> {
  const reply = await bus.request({ fn: table === "input" ? 4 : 3, unit, address, count });
  if (reply.kind === "exception") return reply;
  if (reply.kind !== "registers") throw new ModbusError(ModbusErrorCode.garbage, `${bus.link.label}: a ${reply.kind} reply to a read of registers`);
  return reply.values;
}

/**
 * Read each block from `unit`, in order: the words read, or the first block
 * the device refused with an exception (what follows it is not asked).
 */
export async function readBlocks(bus: Bus, unit: number, blocks: readonly ReadBlock[]): Promise<{ readonly read: BlockWords[] } | { readonly refused: ReadBlock; readonly exception: Extract<Reply, { kind: "exception" }> }> {
  const read: BlockWords[] = [];
  for (const block of blocks) {
    const words = await readRegisters(bus, unit, block.table, block.start, block.count);
    if ("kind" in words) return { refused: block, exception: words };
    read.push({ block, words });
  }
  return { read };
}
