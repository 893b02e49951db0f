// The live stream of GET /api/v1/stream (Server-Sent Events): what each
// applied block brings, fanned out to every connected client.
//
//   event: block     height, time, transaction count, hash, proposer
//   event: reading   each accepted reading of the block, summarised
//   event: clearing  a market interval cleared in the block: price, volume, trade count
//   event: trade     each trade of that clearing: orders, buyer, seller, energy, prices
//   event: island    the microgrid islanded or reconnected (the global record changed)
//
// A client names the topics it wants (?topics=block,reading); a comment
// line every heartbeatMs keeps proxies and phones from closing an idle
// connection, and tells a client the box is alive.
//
// Bounded: at most clientsMax clients, clientsPerAddressMax of them from
// one address (the HTTP route decides which addresses count), and per client
// at most clientBufferBytesMax bytes waiting in its response and socket
// buffers, less when many are connected: all of them together hold at most
// buffersBytesMax (what the kernel's socket buffer holds is beyond our
// reach, and bounded by the kernel). A client whose pending bytes pass its
// bound (a phone that went to sleep, a reader that stopped reading) is
// dropped: its connection is destroyed and counted, and it may reconnect;
// the box never buffers without limit and never slows down for one client.
// Events are not kept for replay: a client that reconnects starts from the
// next event.
//
// The pure part (what a block's events are, how a frame is written) is
// eventsOfBlock and sseFrame; StreamHub is the shell with the sockets.
import type { ServerResponse } from "node:http";
import type { Block } from "../ledger/block.js";
import { toHex } from "../ledger/hash.js";
import { GLOBAL_KEY, type TradeTerms } from "../ledger/records.js";
import { type ApplyResult, ResultCode } from "../ledger/state.js";
import type { BoxNode } from "./node.js";

export const STREAM_TOPICS = ["block", "reading", "clearing", "trade", "island"] as const;
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
  | {
      readonly type: "trade";
      readonly data: Omit<TradeTerms, "buyOrder" | "sellOrder"> & { readonly height: number; readonly intervalStartMs: number; readonly index: number; readonly buyOrder: string; readonly sellOrder: string };
    }
  | { readonly type: "island"; readonly data: { readonly height: number; readonly islanded: boolean; readonly sinceMs: number | null; readonly changeMs: number | null } };

export interface StreamLimits {
  /** Bytes a client may have waiting (response and socket buffers) before it is dropped. */
  readonly clientBufferBytesMax: number;
  /** Bytes all clients together may have waiting: with n clients, each may have buffersBytesMax / n (if less than the above). */
  readonly buffersBytesMax: number;
  readonly clientsMax: number;
  /** Clients from one address (of those the route counts: not the box's own tools on loopback). */
  readonly clientsPerAddressMax: number;
  readonly heartbeatMs: number;
}

/**
 * 256 KiB is over a thousand reading events: minutes of a 60-meter box for a
 * client that keeps up at all. 1,024 clients at that bound would be 256 MiB
 * of a 1 GB box: together they hold at most 64 MiB (64 KiB each when all
 * 1,024 are connected, still hundreds of events).
 */
export const DEFAULT_STREAM_LIMITS: StreamLimits = { clientBufferBytesMax: 256 * 1024, buffersBytesMax: 64 * 1024 * 1024, clientsMax: 1_024, clientsPerAddressMax: 16, heartbeatMs: 15_000 };

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
    for (const t of c.trades) {
      const { buyer, seller, energyWh, buyerPriceMicroPerKWh, sellerPriceMicroPerKWh } = t;
      events.push({
        type: "trade",
        data: { height: h.height, intervalStartMs: c.intervalStartMs, index: t.index, buyOrder: toHex(t.buyOrder), sellOrder: toHex(t.sellOrder), buyer, seller, energyWh, buyerPriceMicroPerKWh, sellerPriceMicroPerKWh },
      });
    }
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
  /** Counted against clientsPerAddressMax; null: not counted. */
  readonly address: string | null;
}

/** Why a client would be refused: clientsMax are connected, or clientsPerAddressMax from its address. */
export type StreamRefusal = "full" | "address";

export interface StreamStats {
  clients: number;
  /** Clients dropped for falling behind by more than clientBufferBytesMax. */
  dropped: number;
  /** Frames written (an event to three clients is three). */
  frames: number;
  /** Clients refused because clientsMax were connected, or clientsPerAddressMax from their address. */
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
  private readonly perAddress = new Map<string, number>();
  private nextId = 1;
  private islandedSince: number;
  private readonly unsubscribe: () => void;
  private readonly heartbeat: NodeJS.Timeout;
  private closed = false;

  constructor(node: StreamNode, limits: Partial<StreamLimits> = {}) {
    this.limits = { ...DEFAULT_STREAM_LIMITS, ...limits };
    const l = this.limits;
    if (!(l.clientBufferBytesMax >= 1 && l.buffersBytesMax >= 1 && l.clientsMax >= 1 && l.clientsPerAddressMax >= 1 && l.heartbeatMs >= 10)) throw new RangeError(`stream limits out of range: ${JSON.stringify(l)}`);
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

  /** Whether a client from `address` (null: not counted by address) would be refused, and why. */
  refusal(address: string | null): StreamRefusal | null {
    if (this.closed || this.clients.size >= this.limits.clientsMax) return "full";
    if (address !== null && (this.perAddress.get(address) ?? 0) >= this.limits.clientsPerAddressMax) return "address";
    return null;
  }

  /**
   * Take over an HTTP response as a stream client. False (nothing written)
   * when refusal(address) would refuse it, or when its connection has closed
   * already (its "close" has been and gone: it would hold a place for ever).
   */
  attach(res: ServerResponse, topics: ReadonlySet<StreamTopic>, address: string | null = null): boolean {
    if (this.refusal(address) !== null) {
      this.stats.refused++;
      return false;
    }
    if (res.destroyed || res.writableEnded || res.socket?.destroyed === true) return false;
    const client: Client = { res, topics, address };
    this.clients.add(client);
    if (address !== null) this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    this.stats.clients = this.clients.size;
    res.on("close", () => this.forget(client));
    // A write to a connection that broke is an "error" event: with no listener, it would throw in the box.
    res.on("error", () => {
      this.forget(client);
      res.destroy();
    });
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

  /** What one client may have waiting now: its own bound, or its share of what all may hold. */
  clientBoundBytes(): number {
    return Math.min(this.limits.clientBufferBytesMax, Math.floor(this.limits.buffersBytesMax / Math.max(1, this.clients.size)));
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
    if (c.res.writableLength > this.clientBoundBytes()) {
      this.stats.dropped++;
      this.forget(c);
      c.res.destroy();
    }
  }

  /** Idempotent: "close" follows a drop's destroy(), and may follow an "error". */
  private forget(c: Client): void {
    if (!this.clients.delete(c)) return;
    this.stats.clients = this.clients.size;
    if (c.address === null) return;
    const n = (this.perAddress.get(c.address) ?? 0) - 1;
    if (n > 0) this.perAddress.set(c.address, n);
    else this.perAddress.delete(c.address);
  }
}
