// The box's HTTP API, minimal for now (the Raft issue's four routes; the full
// API comes with the product issue). fastify: every route declares its
// request and response schemas (TypeBox, one source for type, validation and
// serialisation, so no field leaks that a schema does not name), and every
// error carries a stable code.
//
//   GET  /api/v1/status          the box: id, role, term, height, head, peers
//                                (?resetLatency=true: then forget the commit latencies)
//   GET  /api/v1/blocks/:height  a block's header and its transactions' verdicts
//   POST /api/v1/tx              a signed transaction: raw bytes
//                                (application/octet-stream) or {"tx": "<hex>"}
//   GET  /api/v1/tx/:id          its fate: pending, committed (height, result), rejected
//   GET  /api/v1/meters          this box's meters: per bus the poll's jitter, round
//                                time and request counts; per meter its map, poll
//                                counts, last problem and last checked reading
//                                (?resetTimings=true: then forget jitter and round times)
//   GET  /api/v1/market          the market's rules (interval, clearing rule, shadow or
//                                binding), the last clearing and settlement, every balance
//   GET  /api/v1/members/by-key/:publicKey
//                                a member by its public key: number, roles, active, last
//                                sequence number, and the chain hash a signer signs for
//   GET  /api/v1/grid            island state, the voted critical-load list, every breaker
//                                as last switched, open proposals, and on the controller box
//                                its grid decision and dispatch figures
//   GET  /api/v1/market/intervals/:start
//                                one recorded interval: its clearing with every trade (and
//                                the Wh delivered once settled), closed orders, settlement
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import Fastify, { type FastifyInstance } from "fastify";
import { PeergridError } from "../ledger/errors.js";
import { parseHex, toHex } from "../ledger/hash.js";
import { resultName } from "../ledger/state.js";
import { GLOBAL_KEY, MARKET_KEY, memberKey, publicKeyKey } from "../ledger/records.js";
import { assert } from "../ledger/assert.js";
import { criticalLoads } from "../ledger/governance.js";
import type { MicrogridController } from "./controller.js";
import type { StoredInterval, StoredSettlement } from "../ledger/store.js";
import { TX_BYTES_MAX_ANY, roleNames } from "../ledger/tx.js";
import type { BoxMeters, MetersStatus } from "./meters.js";
import type { BoxNode, TxFate } from "./node.js";

const ErrorSchema = Type.Object({ statusCode: Type.Integer(), code: Type.String(), message: Type.String() }, { additionalProperties: false });

const Hex = (bytes: number) => Type.String({ pattern: `^[0-9a-f]{${bytes * 2}}$` });

const LatencySchema = Type.Object({
  count: Type.Integer(),
  window: Type.Integer(),
  p50: Type.Union([Type.Number(), Type.Null()]),
  p99: Type.Union([Type.Number(), Type.Null()]),
  max: Type.Union([Type.Number(), Type.Null()]),
});

const StatusSchema = Type.Object({
  boxId: Type.Integer(),
  name: Type.String(),
  role: Type.String(),
  term: Type.Integer(),
  leader: Type.Union([Type.Integer(), Type.Null()]),
  height: Type.Integer(),
  lastBlockHash: Hex(32),
  lastBlockTimeMs: Type.Integer(),
  commitIndex: Type.Integer(),
  appliedIndex: Type.Integer(),
  peers: Type.Array(Type.Object({ id: Type.Integer(), connected: Type.Boolean(), queuedBytes: Type.Integer() })),
  mempool: Type.Object({ txs: Type.Integer(), bytes: Type.Integer() }),
  durableRaftIndex: Type.Integer(),
  commitLatencyMs: LatencySchema,
  counters: Type.Record(Type.String(), Type.Integer()),
});

const BlockSchema = Type.Object({
  height: Type.Integer(),
  hash: Hex(32),
  parentHash: Hex(32),
  timeMs: Type.Integer(),
  proposer: Type.Integer(),
  raftTerm: Type.Integer(),
  raftIndex: Type.Integer(),
  stateRoot: Hex(32),
  stateRootAfter: Hex(32),
  txRoot: Hex(32),
  txs: Type.Array(
    Type.Object({ id: Hex(32), type: Type.String(), author: Type.Integer(), seq: Type.Integer(), result: Type.String(), resultCode: Type.Integer() }),
  ),
});

const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Count = Type.Integer({ minimum: 0 });

const MetersSchema = Type.Object({
  submitted: Type.Object({ readings: Count, accepted: Count, refused: Count, lastRefusal: Nullable(Type.String()) }),
  buses: Type.Array(
    Type.Object({
      link: Type.String(),
      seconds: Count,
      skipped: Count,
      pollStartMs: LatencySchema,
      roundMs: LatencySchema,
      requests: Type.Object({ requests: Count, replies: Count, exceptions: Count, timeouts: Count, garbage: Count, linkErrors: Count, retries: Count, failed: Count, refusedQueueFull: Count }),
      meters: Type.Array(
        Type.Object({
          meterId: Count,
          map: Type.String(),
          layout: Nullable(Type.String()),
          unit: Count,
          stats: Type.Object({ polls: Count, good: Count, failed: Count, flagged: Count, lastProblem: Nullable(Type.String()), lastLatencyMs: Nullable(Type.Number()), layout: Nullable(Type.String()) }),
          last: Nullable(
            Type.Object({
              timeMs: Type.Integer(),
              importWh: Type.Integer(),
              exportWh: Type.Integer(),
              powerW: Type.Integer(),
              voltagesDeciV: Type.Array(Type.Integer()),
              frequencyMilliHz: Type.Integer(),
              quality: Count,
              problems: Type.Array(Type.String()),
            }),
          ),
        }),
      ),
    }),
  ),
});

const FateSchema = Type.Object({
  status: Type.Union([Type.Literal("pending"), Type.Literal("committed"), Type.Literal("rejected"), Type.Literal("unknown")]),
  id: Hex(32),
  sinceMs: Type.Optional(Type.Integer()),
  height: Type.Optional(Type.Integer()),
  index: Type.Optional(Type.Integer()),
  result: Type.Optional(Type.String()),
  resultCode: Type.Optional(Type.Integer()),
  code: Type.Optional(Type.String()),
  message: Type.Optional(Type.String()),
});

const TxJsonSchema = Type.Object({ tx: Type.String({ pattern: "^[0-9a-fA-F]+$", maxLength: TX_BYTES_MAX_ANY * 2 }) }, { additionalProperties: false });

/** An API error with a stable code and an HTTP status. */
export class ApiError extends PeergridError {
  constructor(
    readonly statusCode: number,
    code: string,
    message: string,
  ) {
    super(code, message);
    this.name = "ApiError";
  }
}

/** Refusal codes of submit() and the HTTP status each one means. */
function statusForRefusal(code: string): number {
  if (code.startsWith("PG_ERR_DECODE_")) return 400;
  if (code === "PG_ERR_MEMPOOL_FULL" || code === "PG_ERR_MEMPOOL_AUTHOR_FULL" || code === "PG_ERR_STOPPED") return 503;
  if (code === "PG_ERR_MEMPOOL_DUPLICATE" || code === "PG_ERR_MEMPOOL_STALE_SEQUENCE") return 409;
  return 422; // understood, and refused: bad signature, unknown or removed author
}

export interface HttpOptions {
  readonly logger?: boolean;
  /** The box's meters, if it polls any (daemon/meters.ts). */
  readonly meters?: () => BoxMeters | null;
  /** The microgrid controller, on the box that is one (daemon/controller.ts). */
  readonly controller?: () => MicrogridController | null;
}

export function buildHttp(node: BoxNode, options: HttpOptions = {}): FastifyInstance {
  const app = Fastify({ logger: options.logger ?? false, bodyLimit: 64 * 1024 });
  app.addContentTypeParser("application/octet-stream", { parseAs: "buffer", bodyLimit: TX_BYTES_MAX_ANY }, (_req, body, done) => done(null, body));

  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof ApiError) return reply.status(err.statusCode).send({ statusCode: err.statusCode, code: err.code, message: err.message });
    const e = err as { statusCode?: number; code?: string; message: string; validation?: unknown };
    const statusCode = e.validation !== undefined ? 400 : (e.statusCode ?? 500);
    const code = e.validation !== undefined ? "PG_ERR_BAD_REQUEST" : statusCode === 413 ? "PG_ERR_BODY_TOO_LARGE" : statusCode === 415 ? "PG_ERR_UNSUPPORTED_MEDIA_TYPE" : statusCode < 500 ? (e.code ?? "PG_ERR_BAD_REQUEST") : "PG_ERR_INTERNAL";
    if (statusCode >= 500) app.log.error(err);
    return reply.status(statusCode).send({ statusCode, code, message: statusCode >= 500 ? "internal error" : e.message });
  });
  app.setNotFoundHandler((req, reply) => reply.status(404).send({ statusCode: 404, code: "PG_ERR_NO_ROUTE", message: `no route ${req.method} ${req.url}` }));

  // ?resetLatency=true: the status, then the commit latencies start afresh (a
  // benchmark reads and resets after its warm-up; only statistics are reset).
  app.get<{ Querystring: { resetLatency?: boolean } }>(
    "/api/v1/status",
    { schema: { querystring: Type.Object({ resetLatency: Type.Optional(Type.Boolean()) }, { additionalProperties: false }), response: { 200: StatusSchema } } },
    async (req) => {
      const status = node.status();
      if (req.query.resetLatency === true) node.commitLatency.reset();
      return status;
    },
  );

  app.get<{ Params: { height: number } }>(
    "/api/v1/blocks/:height",
    { schema: { params: Type.Object({ height: Type.Integer({ minimum: 0, maximum: 2 ** 48 }) }), response: { 200: BlockSchema, 404: ErrorSchema } } },
    async (req) => {
      const stored = node.ledger.store.getBlock(req.params.height);
      if (stored === null) throw new ApiError(404, "PG_ERR_BLOCK_NOT_FOUND", `no block at height ${req.params.height} (head is ${node.ledger.state.height})`);
      const { block, results, stateRoot } = stored;
      const h = block.header;
      return {
        height: h.height,
        hash: toHex(block.hash),
        parentHash: toHex(h.parentHash),
        timeMs: h.timeMs,
        proposer: h.proposer,
        raftTerm: h.raftTerm,
        raftIndex: h.raftIndex,
        stateRoot: toHex(h.stateRoot),
        stateRootAfter: toHex(stateRoot),
        txRoot: toHex(h.txRoot),
        txs: block.txs.map((t, i) => ({ id: toHex(t.id), type: t.tx.body.type, author: t.tx.author, seq: t.tx.seq, result: resultName(results[i] as number), resultCode: results[i] as number })),
      };
    },
  );

  app.post(
    "/api/v1/tx",
    { schema: { response: { 202: FateSchema, 200: FateSchema, 400: ErrorSchema, 409: ErrorSchema, 422: ErrorSchema, 503: ErrorSchema } } },
    async (req, reply) => {
      const bytes = txBytesOf(req.body, req.headers["content-type"]);
      const out = await node.submit(bytes);
      if (!out.ok) throw new ApiError(statusForRefusal(out.code), out.code, out.message);
      return reply.status(out.fate.status === "committed" ? 200 : 202).send(out.fate);
    },
  );

  app.get<{ Params: { id: string } }>(
    "/api/v1/tx/:id",
    { schema: { params: Type.Object({ id: Type.String({ pattern: "^[0-9a-fA-F]{64}$" }) }), response: { 200: FateSchema, 404: ErrorSchema } } },
    async (req) => {
      const fate: TxFate = node.fate(parseHex(req.params.id.toLowerCase(), 32) as Uint8Array);
      if (fate.status === "unknown") throw new ApiError(404, "PG_ERR_TX_NOT_FOUND", `no transaction ${fate.id} is known to this box (never submitted here, not in a recent block, or forgotten)`);
      return fate;
    },
  );

  // ?resetTimings=true: the status, then the poll jitter and round times start afresh (as resetLatency above).
  app.get<{ Querystring: { resetTimings?: boolean } }>(
    "/api/v1/meters",
    { schema: { querystring: Type.Object({ resetTimings: Type.Optional(Type.Boolean()) }, { additionalProperties: false }), response: { 200: MetersSchema } } },
    async (req) => {
      const meters = options.meters?.() ?? null;
      const status = meters?.status() ?? NO_METERS;
      if (req.query.resetTimings === true) meters?.resetTimings();
      return status;
    },
  );

  app.get<{ Params: { publicKey: string } }>(
    "/api/v1/members/by-key/:publicKey",
    {
      schema: {
        params: Type.Object({ publicKey: Type.String({ pattern: "^[0-9a-fA-F]{64}$" }) }),
        response: {
          200: Type.Object({
            chainHash: Hex(32),
            height: Count,
            member: Type.Object({ index: Count, name: Type.String(), roles: Type.Array(Type.String()), active: Type.Boolean(), lastSeq: Count, openOrders: Count }),
          }),
          404: ErrorSchema,
        },
      },
    },
    async (req) => {
      const state = node.ledger.state;
      const key = state.tree.get(publicKeyKey(parseHex(req.params.publicKey.toLowerCase(), 32) as Uint8Array));
      const m = key?.kind === "key" ? state.tree.get(memberKey(key.member)) : undefined;
      if (m?.kind !== "member") throw new ApiError(404, "PG_ERR_MEMBER_NOT_FOUND", `no member holds the key ${req.params.publicKey.toLowerCase()} on this chain (an admin's member transaction, or a vote, enrols it)`);
      return {
        chainHash: toHex(state.chain.hash),
        height: state.height,
        member: { index: m.index, name: m.name, roles: roleNames(m.roles), active: m.active, lastSeq: m.lastSeq, openOrders: m.openOrders },
      };
    },
  );

  app.get("/api/v1/grid", { schema: { response: { 200: GridSchema } } }, async () => {
    const state = node.ledger.state;
    const global = state.tree.get(GLOBAL_KEY);
    assert(global?.kind === "global", "the global record exists from genesis");
    const breakers: Static<typeof GridSchema>["breakers"] = [];
    const proposals: Static<typeof GridSchema>["proposals"] = [];
    for (const { value } of state.tree.entries()) {
      if (value.kind === "breaker") breakers.push({ premise: value.premise, breaker: value.breaker, commandedClose: value.commandedClose, readback: value.readback, changeMs: value.changeMs, operations: value.operations });
      if (value.kind === "proposal" && (value.status === "open" || value.status === "accepted")) {
        proposals.push({ id: toHex(value.id), author: value.author, kind: value.action.kind, status: value.status, yes: value.yes, no: value.no, votingEndsHeight: value.votingEndsHeight, effectiveHeight: value.effectiveHeight });
      }
    }
    breakers.sort((a, b) => a.premise - b.premise || a.breaker - b.breaker);
    const c = options.controller?.() ?? null;
    return {
      islanded: global.islandedSinceMs >= 0,
      islandedSinceMs: global.islandedSinceMs >= 0 ? global.islandedSinceMs : null,
      lastChangeMs: global.islandChangeMs >= 0 ? global.islandChangeMs : null,
      criticalLoads: [...criticalLoads({ get: (k) => state.tree.get(k) as never })],
      breakers,
      proposals,
      controller: c === null ? null : { ...c.status(), lastFigures: c.status().lastFigures === null ? null : { ...c.status().lastFigures } },
    };
  });

  app.get("/api/v1/market", { schema: { response: { 200: MarketSchema } } }, async () => {
    const state = node.ledger.state;
    const market = state.tree.get(MARKET_KEY);
    const m = state.chain.genesis.market;
    const lastCleared = market?.kind === "market" ? node.ledger.store.marketInterval(market.clearedStartMs) : null;
    const lastSettlement = market?.kind === "market" ? node.ledger.store.marketSettlement(market.settledEndMs) : null;
    const balances = [...state.tree.entries()].flatMap((e) => (e.value.kind === "balance" ? [{ account: String(e.value.account), balanceMicro: e.value.balanceMicro }] : []));
    balances.sort((a, b) => a.account.localeCompare(b.account, "en", { numeric: true }));
    return {
      intervalMs: m.intervalMs,
      clearingRule: m.clearingRule,
      settlementMode: m.settlementMode,
      lastCleared: lastCleared === null ? null : intervalJson(lastCleared),
      lastSettlement: lastSettlement === null ? null : settlementJson(lastSettlement),
      balances,
    };
  });

  app.get<{ Params: { start: number } }>(
    "/api/v1/market/intervals/:start",
    {
      schema: {
        params: Type.Object({ start: Type.Integer({ minimum: 0, maximum: 2 ** 48 }) }),
        response: { 200: Type.Object({ interval: IntervalSchema, settlement: Nullable(SettlementSchema) }), 404: ErrorSchema },
      },
    },
    async (req) => {
      const interval = node.ledger.store.marketInterval(req.params.start);
      if (interval === null) {
        const I = node.ledger.state.chain.genesis.market.intervalMs;
        const hint = req.params.start % I === 0 ? "it has not been cleared (yet) on this chain" : `intervals start at multiples of ${I} ms`;
        throw new ApiError(404, "PG_ERR_INTERVAL_NOT_FOUND", `no recorded interval starts at ${req.params.start}: ${hint}`);
      }
      const settlement = node.ledger.store.settlementOfInterval(req.params.start);
      return { interval: intervalJson(interval), settlement: settlement === null ? null : settlementJson(settlement) };
    },
  );

  return app;
}

const TradeSchema = Type.Object({
  index: Count,
  buyOrder: Hex(32),
  sellOrder: Hex(32),
  buyer: Count,
  seller: Count,
  energyWh: Count,
  buyerPriceMicroPerKWh: Count,
  sellerPriceMicroPerKWh: Count,
  deliveredWh: Nullable(Count),
});
const IntervalSchema = Type.Object({
  startMs: Count,
  clearedAtHeight: Count,
  rule: Type.String(),
  priceMicroPerKWh: Nullable(Count),
  volumeWh: Count,
  buyOrders: Count,
  sellOrders: Count,
  tradesHash: Hex(32),
  trades: Type.Array(TradeSchema),
  closedOrders: Type.Array(Type.Object({ id: Hex(32), author: Count, side: Type.String(), energyWh: Count, filledWh: Count, reason: Type.String() })),
});
const SettlementSchema = Type.Object({
  periodStartMs: Count,
  periodEndMs: Count,
  settledAtHeight: Count,
  tradesIntervalStartMs: Nullable(Count),
  islandedPermille: Count,
  shadow: Type.Boolean(),
  hash: Hex(32),
  metered: Type.Array(Type.Object({ member: Count, importWh: Count, exportWh: Count, meters: Count, silentMeters: Count })),
  transfers: Type.Array(Type.Object({ from: Type.String(), to: Type.String(), amountMicro: Count, why: Type.String(), trade: Nullable(Count) })),
});
const MarketSchema = Type.Object({
  intervalMs: Count,
  clearingRule: Type.String(),
  settlementMode: Type.String(),
  lastCleared: Nullable(IntervalSchema),
  lastSettlement: Nullable(SettlementSchema),
  balances: Type.Array(Type.Object({ account: Type.String(), balanceMicro: Type.Integer() })),
});

function intervalJson(i: StoredInterval): Static<typeof IntervalSchema> {
  return {
    startMs: i.startMs,
    clearedAtHeight: i.height,
    rule: i.rule,
    priceMicroPerKWh: i.priceMicroPerKWh,
    volumeWh: i.volumeWh,
    buyOrders: i.buyOrders,
    sellOrders: i.sellOrders,
    tradesHash: toHex(i.tradesHash),
    trades: i.trades.map(({ trade: t, deliveredWh }) => ({
      index: t.index,
      buyOrder: toHex(t.buyOrder),
      sellOrder: toHex(t.sellOrder),
      buyer: t.buyer,
      seller: t.seller,
      energyWh: t.energyWh,
      buyerPriceMicroPerKWh: t.buyerPriceMicroPerKWh,
      sellerPriceMicroPerKWh: t.sellerPriceMicroPerKWh,
      deliveredWh,
    })),
    closedOrders: i.closedOrders.map((o) => ({ id: toHex(o.id), author: o.author, side: o.side, energyWh: o.energyWh, filledWh: o.filledWh, reason: o.reason })),
  };
}

function settlementJson(s: StoredSettlement): Static<typeof SettlementSchema> {
  return {
    periodStartMs: s.periodStartMs,
    periodEndMs: s.periodEndMs,
    settledAtHeight: s.height,
    tradesIntervalStartMs: s.tradesIntervalStartMs,
    islandedPermille: s.islandedPermille,
    shadow: s.shadow,
    hash: toHex(s.hash),
    metered: s.metered.map((m) => ({ ...m })),
    transfers: s.transfers.map((t) => ({ from: String(t.from), to: String(t.to), amountMicro: t.amountMicro, why: t.why, trade: t.trade ?? null })),
  };
}

const GridSchema = Type.Object({
  islanded: Type.Boolean(),
  islandedSinceMs: Nullable(Count),
  lastChangeMs: Nullable(Count),
  criticalLoads: Type.Array(Count),
  breakers: Type.Array(Type.Object({ premise: Count, breaker: Count, commandedClose: Type.Boolean(), readback: Type.String(), changeMs: Count, operations: Count })),
  proposals: Type.Array(
    Type.Object({ id: Hex(32), author: Count, kind: Type.String(), status: Type.String(), yes: Count, no: Count, votingEndsHeight: Count, effectiveHeight: Count }),
  ),
  controller: Nullable(
    Type.Object({
      decision: Type.String(),
      steps: Count,
      skipped: Count,
      islandTransitions: Count,
      commands: Count,
      retriesHeld: Count,
      switchErrors: Count,
      refusedSubmissions: Count,
      storageReadErrors: Count,
      lastError: Nullable(Type.String()),
      lastFigures: Nullable(Type.Record(Type.String(), Type.Integer())),
      lastStorage: Nullable(Type.Object({ socWh: Nullable(Count), openW: Count, reserveW: Count })),
    }),
  ),
});

const NO_METERS: MetersStatus = { submitted: { readings: 0, accepted: 0, refused: 0, lastRefusal: null }, buses: [] };

type TxJson = Static<typeof TxJsonSchema>;

function txBytesOf(body: unknown, contentType: string | undefined): Uint8Array {
  if (Buffer.isBuffer(body)) return new Uint8Array(body);
  if (contentType?.startsWith("application/json")) {
    const b = body as TxJson;
    const hex = typeof b === "object" && b !== null && typeof b.tx === "string" && Object.keys(b).length === 1 ? b.tx : null;
    if (hex === null || hex.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(hex) || hex.length > TX_BYTES_MAX_ANY * 2) {
      throw new ApiError(400, "PG_ERR_BAD_REQUEST", 'a JSON body is {"tx": "<hex of the signed transaction>"}');
    }
    return Uint8Array.from(Buffer.from(hex, "hex"));
  }
  throw new ApiError(415, "PG_ERR_UNSUPPORTED_MEDIA_TYPE", "send the signed transaction as application/octet-stream, or as JSON {\"tx\": \"<hex>\"}");
}


