// The live stream of GET /api/v1/stream (Server-Sent Events): what each
// applied block brings, fanned out to every connected client.
//
//   event: block     height, time, transaction count, hash, proposer
//   event: reading   each accepted reading of the block, summarised
//   event: clearing  a market interval cleared in the block: price, volume, trades
//   event: island    the microgrid islanded or reconnected (the global record changed)
//
// A client names the topics it wants (?topics=block,reading); a comment
// line every heartbeatMs keeps proxies and phones from closing an idle
// connection, and tells a client the box is alive.
//
// Bounded: at most clientsMax clients, and per client at most
// clientBufferBytesMax bytes waiting in its response and socket buffers
// (what the kernel's socket buffer holds is beyond our reach, and bounded
// by the kernel). A client whose pending bytes pass the bound (a phone that
// went to sleep, a reader that stopped reading) is dropped: its connection
// is destroyed and counted, and it may reconnect; the box never buffers
// without limit and never slows down for one client. Events are not kept
// for replay: a client that reconnects starts from the next event.
//
// The pure part (what a block's events are, how a frame is written) is
// eventsOfBlock and sseFrame; StreamHub is the shell with the sockets.
import type { ServerResponse } from "node:http";
import type { Block } from "../ledger/block.js";
import { toHex } from "../ledger/hash.js";
import { GLOBAL_KEY } from "../ledger/records.js";
import { type ApplyResult, ResultCode } from "../ledger/state.js";
import type { BoxNode } from "./node.js";

export const STREAM_TOPICS = ["block", "reading", "clearing", "island"] as const;
export type StreamTopic = (typeof STREAM_TOPICS)[number];

export type StreamEvent =
  | { readonly type: "block"; readonly data: { readonly height: number; readonly timeMs: number; readonly txCount: number; readonly hash: string; readonly proposer: number } }
  | {
      readonly type: "reading";
      readonly data: {
        readonly height: number;
        readonly member: number;
        readonly meterId: number;
        readonly timeMs: number;
        readonly importWh: number;
        readonly exportWh: number;
        readonly powerW: number;
        readonly quality: number;
      };
    }
  | {
      readonly type: "clearing";
      readonly data: {
        readonly height: number;
        readonly intervalStartMs: number;
        readonly rule: string;
        readonly priceMicroPerKWh: number | null;
        readonly volumeWh: number;
        readonly trades: number;
        readonly buyOrders: number;
        readonly sellOrders: number;
      };
    }
  | { readonly type: "island"; readonly data: { readonly height: number; readonly islanded: boolean; readonly sinceMs: number | null; readonly changeMs: number | null } };

export interface StreamLimits {
  /** Bytes a client may have waiting (response and socket buffers) before it is dropped. */
  readonly clientBufferBytesMax: number;
  readonly clientsMax: number;
  readonly heartbeatMs: number;
}

/** 256 KiB is over a thousand reading events: minutes of a 60-meter box for a client that keeps up at all. */
export const DEFAULT_STREAM_LIMITS: StreamLimits = { clientBufferBytesMax: 256 * 1024, clientsMax: 1_024, heartbeatMs: 15_000 };

/** The island state a global record shows (-1: connected). */
function islandedSinceOf(result: Pick<ApplyResult, "state">): number {
  const g = result.state.tree.get(GLOBAL_KEY);
  return g?.kind === "global" ? g.islandedSinceMs : -1;
}

/**
 * The events of one applied block, in the order a client sees them: the
 * block, its accepted readings, a clearing, an island change (against the
 * island state before the block, `islandedSinceBefore`).
 */
export function eventsOfBlock(block: Block, result: Pick<ApplyResult, "state" | "results" | "market">, islandedSinceBefore: number): StreamEvent[] {
  const h = block.header;
  const events: StreamEvent[] = [{ type: "block", data: { height: h.height, timeMs: h.timeMs, txCount: block.txs.length, hash: toHex(block.hash), proposer: h.proposer } }];
  block.txs.forEach((t, i) => {
    const b = t.tx.body;
    if (b.type !== "reading" || result.results[i] !== ResultCode.ok) return;
    events.push({ type: "reading", data: { height: h.height, member: t.tx.author, meterId: b.meterId, timeMs: b.timeMs, importWh: b.importWh, exportWh: b.exportWh, powerW: b.powerW, quality: b.quality } });
  });
  const c = result.market?.clearing;
  if (c !== undefined) {
    events.push({
      type: "clearing",
      data: { height: h.height, intervalStartMs: c.intervalStartMs, rule: c.rule, priceMicroPerKWh: c.priceMicroPerKWh, volumeWh: c.volumeWh, trades: c.trades.length, buyOrders: c.buyOrders, sellOrders: c.sellOrders },
    });
  }
  const after = islandedSinceOf(result);
  if (after !== islandedSinceBefore) {
    const g = result.state.tree.get(GLOBAL_KEY);
    const changeMs = g?.kind === "global" && g.islandChangeMs >= 0 ? g.islandChangeMs : null;
    events.push({ type: "island", data: { height: h.height, islanded: after >= 0, sinceMs: after >= 0 ? after : null, changeMs } });
  }
  return events;
}

/** One SSE frame: id, event name and the JSON data on one line (JSON.stringify never writes a raw newline). */
export function sseFrame(id: number, e: StreamEvent): string {
  return `id: ${id}\nevent: ${e.type}\ndata: ${JSON.stringify(e.data)}\n\n`;
}

/** Parse ?topics=a,b (absent: every topic). Null when a name is not a topic. */
export function parseTopics(text: string | undefined): Set<StreamTopic> | null {
  if (text === undefined || text === "") return new Set(STREAM_TOPICS);
  const names = text.split(",");
  if (!names.every((n): n is StreamTopic => (STREAM_TOPICS as readonly string[]).includes(n))) return null;
  return new Set(names as StreamTopic[]);
}

interface Client {
  readonly res: ServerResponse;
  readonly topics: ReadonlySet<StreamTopic>;
}

export interface StreamStats {
  clients: number;
  /** Clients dropped for falling behind by more than clientBufferBytesMax. */
  dropped: number;
  /** Frames written (an event to three clients is three). */
  frames: number;
  /** Clients refused because clientsMax were connected. */
  refused: number;
  /** Exceptions while turning a block into events (the node never sees them). */
  errors: number;
}

/** What the hub needs of a node. */
export type StreamNode = Pick<BoxNode, "onBlock" | "ledger">;

export class StreamHub {
  readonly limits: StreamLimits;
  readonly stats: StreamStats = { clients: 0, dropped: 0, frames: 0, refused: 0, errors: 0 };
  private readonly clients = new Set<Client>();
  private nextId = 1;
  private islandedSince: number;
  private readonly unsubscribe: () => void;
  private readonly heartbeat: NodeJS.Timeout;
  private closed = false;

  constructor(node: StreamNode, limits: Partial<StreamLimits> = {}) {
    this.limits = { ...DEFAULT_STREAM_LIMITS, ...limits };
    const l = this.limits;
    if (!(l.clientBufferBytesMax >= 1 && l.clientsMax >= 1 && l.heartbeatMs >= 10)) throw new RangeError(`stream limits out of range: ${JSON.stringify(l)}`);
    this.islandedSince = islandedSinceOf(node.ledger);
    this.unsubscribe = node.onBlock((block, result) => this.onBlock(block, result));
    this.heartbeat = setInterval(() => this.beat(), l.heartbeatMs);
    this.heartbeat.unref();
  }

  /**
   * Called inside the node's apply: it must not throw into the node, and
   * costs nothing but the island check while no one listens.
   */
  private onBlock(block: Block, result: ApplyResult): void {
    try {
      const before = this.islandedSince;
      this.islandedSince = islandedSinceOf(result);
      if (this.clients.size === 0) return;
      for (const e of eventsOfBlock(block, result, before)) this.publish(e);
    } catch {
      this.stats.errors++;
    }
  }

  /** Take over an HTTP response as a stream client. False (nothing written) when clientsMax are connected. */
  attach(res: ServerResponse, topics: ReadonlySet<StreamTopic>): boolean {
    if (this.closed || this.clients.size >= this.limits.clientsMax) {
      this.stats.refused++;
      return false;
    }
    const client: Client = { res, topics };
    this.clients.add(client);
    this.stats.clients = this.clients.size;
    res.on("close", () => this.forget(client));
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      "x-accel-buffering": "no",
    });
    this.write(client, `retry: 3000\n: peergrid stream: ${[...topics].join(",")}\n\n`);
    return true;
  }

  /** Send one event to every client that wants its topic. */
  publish(e: StreamEvent): void {
    if (this.clients.size === 0) return;
    const frame = sseFrame(this.nextId++, e);
    for (const c of this.clients) {
      if (!c.topics.has(e.type)) continue;
      this.stats.frames++;
      this.write(c, frame);
    }
  }

  get clientCount(): number {
    return this.clients.size;
  }

  /** End every client's stream and stop listening (the server is closing). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    this.unsubscribe();
    for (const c of [...this.clients]) {
      this.forget(c);
      c.res.end();
    }
  }

  private beat(): void {
    for (const c of [...this.clients]) this.write(c, ": heartbeat\n\n");
  }

  /**
   * Write, then enforce the bound on what waits: writableLength counts the
   * response's own buffer and its socket's, everything this process holds
   * for the client. write() returning false only says the buffer passed its
   * high-water mark; the drop is decided by the bound alone.
   */
  private write(c: Client, chunk: string): void {
    if (c.res.destroyed || c.res.writableEnded) return;
    c.res.write(chunk);
    if (c.res.writableLength > this.limits.clientBufferBytesMax) {
      this.stats.dropped++;
      this.forget(c);
      c.res.destroy();
    }
  }

  private forget(c: Client): void {
    this.clients.delete(c);
    this.stats.clients = this.clients.size;
  }
}
