// The box's HTTP API (fastify). Every route declares its request and
// response schemas (TypeBox: one source for the type, the validation, the
// serialisation, so no field leaks that a schema does not name, and the
// OpenAPI document the box serves), a summary and tags; every error is
// {statusCode, code, message} with a stable code (PG_ERR_...).
//
// Box
//   GET  /api/v1/status          the box: id, role, term, height, head, peers
//                                (?resetLatency=true: then forget the commit latencies)
//   GET  /api/v1/health          200 ok, or 503 degraded with the problems (for systemd, monitoring)
//   GET  /api/v1/openapi.json    the OpenAPI 3.1 document of every route
//   GET  /metrics                Prometheus text (daemon/metrics.ts)
// Chain
//   GET  /api/v1/blocks?before=&limit=   recent block headers, newest first
//   GET  /api/v1/blocks/:height  a block's header and its transactions' verdicts
//   POST /api/v1/tx              a signed transaction (orders and cancels too): raw bytes
//                                (application/octet-stream) or {"tx": "<hex>"}
//   GET  /api/v1/tx/:id          its fate: pending, committed (height, result), rejected
// Meters
//   GET  /api/v1/meters          this box's meters: buses, poll counts, last checked reading
//                                (?resetTimings=true: then forget jitter and round times)
//   GET  /api/v1/readings        every meter's latest reading in the ledger
//   GET  /api/v1/readings/:member/:meterId?from=&to=&stepMs=
//                                one meter's history from the ledger, downsampled on request
// Market
//   GET  /api/v1/market          the rules, the last clearing and settlement, every balance
//   GET  /api/v1/market/book?interval=   the open orders by interval: bids and asks, totals
//   GET  /api/v1/market/intervals/:start one recorded interval: clearing, trades, settlement
// Members and governance
//   GET  /api/v1/members/:member a member, its balance, open orders and recent trades
//   GET  /api/v1/members/by-key/:publicKey   a member by its key (what a signer needs)
//   GET  /api/v1/grid            island state, critical loads, breakers, open proposals, controller
//   GET  /api/v1/governance      proposals (any status), the critical-load list, market parameters
//   GET  /api/v1/governance/proposals/:id    one proposal and its votes
// Live
//   GET  /api/v1/stream?topics=  Server-Sent Events: block, reading, clearing, trade, island (daemon/stream.ts)
// Admin (Authorization: Bearer <the token in http.adminTokenFile>)
//   POST /api/v1/admin/members            the box enrols a member (signs a member transaction)
//   POST /api/v1/admin/members/:member/remove
//   GET  /api/v1/admin/config             the box's running settings, secrets removed
//
// Rate limits, per client address and class of route (read, tx, admin,
// stream connections, metrics), in fixed windows (@fastify/rate-limit, an
// LRU of 10,000 clients): 429 PG_ERR_RATE_LIMITED with Retry-After. The box's
// own tools on loopback (the CLI, the local cluster, benchmarks) are exempt
// unless exemptLoopback is off.
//
// Reads of the ledger state that walk every record (the order book,
// balances, proposals) are computed once per block (treeIndexOf) and shared
// by every request until the next block.
import { createHash, timingSafeEqual } from "node:crypto";
import rateLimit from "@fastify/rate-limit";
import swagger from "@fastify/swagger";
import { type Static, type TSchema, Type } from "@sinclair/typebox";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import { PeergridError } from "../ledger/errors.js";
import { parseHex, toHex } from "../ledger/hash.js";
import { type LedgerState, resultName } from "../ledger/state.js";
import {
  type BalanceRecord,
  type BreakerRecord,
  CRITICAL_LOADS_KEY,
  GLOBAL_KEY,
  MARKET_KEY,
  MARKET_PARAMS_KEY,
  type OrderRecord,
  type ProposalRecord,
  type VoteRecord,
  memberKey,
  meterKey,
  publicKeyKey,
} from "../ledger/records.js";
import { assert } from "../ledger/assert.js";
import { criticalLoads } from "../ledger/governance.js";
import type { BoxSequence } from "./box-sequence.js";
import type { ControllerStatus, MicrogridController } from "./controller.js";
import type { MeterPoint, StoredInterval, StoredSettlement } from "../ledger/store.js";
import { MEMBER_NAME_BYTES_MAX, METER_ID_MAX, OrderFlag, type ProposalAction, Role, type RoleName, TX_BYTES_MAX_ANY, roleNames } from "../ledger/tx.js";
import type { BoxMeters, MetersStatus } from "./meters.js";
import { DurationHistogram, type MqttStatus, boxMetrics, renderMetrics } from "./metrics.js";
import type { BoxNode, TxFate } from "./node.js";
import { STREAM_TOPICS, StreamHub, type StreamLimits, parseTopics } from "./stream.js";

const ErrorSchema = Type.Object(
  { statusCode: Type.Integer(), code: Type.String({ description: "stable: PG_ERR_..." }), message: Type.String({ description: "what went wrong and, where there is one, the fix" }) },
  { additionalProperties: false },
);

const Hex = (bytes: number) => Type.String({ pattern: `^[0-9a-f]{${bytes * 2}}$` });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Count = Type.Integer({ minimum: 0 });
const TimeMs = Type.Integer({ minimum: 0, maximum: 2 ** 48 });
const MemberIndex = Type.Integer({ minimum: 0, maximum: 2 ** 24 - 1, description: "a member's number (its index in the ledger)" });

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
  signatureChecks: Type.Object(
    { ahead: Count, remembered: Count, onTheSpot: Count, batches: Count },
    { description: "where signature checks were made: ahead in the worker, answered from a remembered verdict, on the spot; batches sent to the worker" },
  ),
  retention: Nullable(
    Type.Object(
      {
        keepReadingsMs: Count,
        checkpointEveryMs: Count,
        readingsPrunedTo: Type.Integer({ minimum: 0, description: "blocks 1..this hold no raw readings any more" }),
        checkpoints: Type.Array(Count, { description: "heights of the state copies kept, oldest first" }),
        rowsDeleted: Count,
        deleting: Type.Boolean({ description: "rows of pruned blocks are still being deleted" }),
      },
      { description: "retention of raw readings (config ledger.keepReadingsDays); null: every reading is kept" },
    ),
  ),
  historyFrom: Type.Integer({ minimum: 0, description: "0: this box holds the chain from genesis; B: it caught up from a peer's checkpoint of the state after block B, and lacks the blocks before B that it never had (`peergrid verify` lists them)" }),
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
  /** How many transactions the header commits to; more than txs lists when the readings were pruned. */
  txCount: Type.Integer(),
  readingsPruned: Type.Boolean({ description: "the box no longer keeps this block's readings (retention); txs lists the rest" }),
  txs: Type.Array(
    Type.Object({ id: Hex(32), type: Type.String(), author: Type.Integer(), seq: Type.Integer(), result: Type.String(), resultCode: Type.Integer() }),
  ),
});

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

const TxJsonSchema = Type.Object({ tx: Type.String({ pattern: "^[0-9a-fA-F]+$", maxLength: TX_BYTES_MAX_ANY * 2, description: "the signed transaction's bytes in hex" }) }, { additionalProperties: false });

const HealthSchema = Type.Object({
  status: Type.Union([Type.Literal("ok"), Type.Literal("degraded")]),
  problems: Type.Array(Type.Object({ code: Type.String({ description: "stable: PG_HEALTH_..." }), message: Type.String() })),
  height: Count,
  headAgeMs: Type.Integer(),
  leader: Nullable(Count),
  role: Type.String(),
});

const HeaderSchema = Type.Object({
  height: Count,
  hash: Hex(32),
  parentHash: Hex(32),
  timeMs: Count,
  proposer: Count,
  raftTerm: Count,
  txCount: Count,
  stateRootAfter: Hex(32),
});

const LatestReadingSchema = Type.Object({
  member: Count,
  meterId: Count,
  height: Count,
  timeMs: Count,
  importWh: Count,
  exportWh: Count,
  powerW: Type.Integer({ description: "+ importing from the grid, - exporting" }),
  voltagesDeciV: Type.Array(Count),
  frequencyMilliHz: Count,
  quality: Type.Integer({ description: "0 good; else the Quality flag bits" }),
});

const PointSchema = Type.Object({
  timeMs: Count,
  height: Count,
  importWh: Count,
  exportWh: Count,
  powerW: Type.Integer(),
  meanPowerW: Nullable(Type.Integer({ description: "the mean power since the previous point, from the counters ((import - export) Wh per hour); null for the first point or across a counter reset" })),
  quality: Count,
});

const OrderSchema = Type.Object({
  id: Hex(32),
  author: Count,
  side: Type.Union([Type.Literal("buy"), Type.Literal("sell")]),
  energyWh: Count,
  priceMicroPerKWh: Count,
  intervalStartMs: Count,
  expiresAtMs: Count,
  localRenewableOnly: Type.Boolean(),
  counterparty: Nullable(Count),
  placedHeight: Count,
});

const BookIntervalSchema = Type.Object({
  intervalStartMs: Count,
  bids: Type.Array(OrderSchema, { description: "buy orders, highest price first, then oldest" }),
  asks: Type.Array(OrderSchema, { description: "sell orders, lowest price first, then oldest" }),
  bidWh: Count,
  askWh: Count,
  bestBidMicroPerKWh: Nullable(Count),
  bestAskMicroPerKWh: Nullable(Count),
});

const MemberSchema = Type.Object({ index: Count, name: Type.String(), publicKey: Hex(32), roles: Type.Array(Type.String()), active: Type.Boolean(), lastSeq: Count, openOrders: Count });

const MemberTradeSchema = Type.Object({
  intervalStartMs: Count,
  index: Count,
  side: Type.Union([Type.Literal("buy"), Type.Literal("sell")]),
  order: Hex(32),
  counterparty: Count,
  energyWh: Count,
  priceMicroPerKWh: Type.Integer({ description: "the price this member pays (buy) or receives (sell) per kWh" }),
  deliveredWh: Nullable(Count),
});

const ProposalSchema = Type.Object({
  id: Hex(32),
  author: Count,
  action: Type.Object({
    kind: Type.String(),
    premises: Type.Optional(Type.Array(Count)),
    changes: Type.Optional(Type.Array(Type.Object({ param: Type.String(), value: Type.Integer() }))),
    publicKey: Type.Optional(Hex(32)),
    roles: Type.Optional(Type.Array(Type.String())),
    name: Type.Optional(Type.String()),
    subject: Type.Optional(Count),
  }),
  createdHeight: Count,
  votingEndsHeight: Count,
  effectiveHeight: Count,
  yes: Count,
  no: Count,
  electorate: Count,
  status: Type.String(),
  outcome: Type.String(),
});

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

/** Requests per client address and window, by class of route. */
export interface RateLimits {
  readonly windowMs: number;
  readonly read: number;
  /** POST /api/v1/tx. */
  readonly tx: number;
  readonly admin: number;
  /** Connections to the live stream. */
  readonly stream: number;
  readonly metrics: number;
  /** Requests from 127.0.0.0/8 and ::1 (the box's own CLI, tools and benchmarks) are not limited. */
  readonly exemptLoopback: boolean;
}

export const DEFAULT_RATE_LIMITS: RateLimits = { windowMs: 60_000, read: 600, tx: 120, admin: 30, stream: 30, metrics: 120, exemptLoopback: true };

type RateClass = Exclude<keyof RateLimits, "windowMs" | "exemptLoopback">;

export interface HealthLimits {
  /** The head block may be this many block intervals old before the box is degraded. */
  readonly headStaleBlocks: number;
  /** A meter polled without a good poll for this long is failing. */
  readonly meterSilentMs: number;
  /** A controller switch error this recent makes the box degraded. */
  readonly switchErrorRecentMs: number;
}

export const DEFAULT_HEALTH_LIMITS: HealthLimits = { headStaleBlocks: 5, meterSilentMs: 10_000, switchErrorRecentMs: 60_000 };

/** The most points one history answer holds; a longer range asks for a larger stepMs. */
export const READING_POINTS_MAX = 2_000;

/**
 * The most readings (every meter's: the index is by time, not by meter) one
 * history request walks over: its cost whatever the range and however
 * sparse the meter's readings. 500,000 is over two hours of the design load
 * (60 meters at 1 Hz), a raw answer of 2,000 s with room to spare.
 */
export const READING_ENTRIES_MAX = 500_000;

export interface HttpOptions {
  readonly logger?: boolean;
  /** The box's meters, if it polls any (daemon/meters.ts). */
  readonly meters?: () => BoxMeters | null;
  /** The microgrid controller, on the box that is one (daemon/controller.ts). */
  readonly controller?: () => MicrogridController | null;
  /** The MQTT bridge's state, when the box has one (for /metrics). */
  readonly mqtt?: () => MqttStatus | null;
  /** Admin routes take this token (Authorization: Bearer); null or absent: they answer 403 PG_ERR_ADMIN_DISABLED. */
  readonly adminToken?: string | null;
  /** The box's own signer and sequence: admin routes sign member transactions with it. */
  readonly sequence?: BoxSequence;
  /** The box's running settings, shown by GET /api/v1/admin/config with secrets removed. */
  readonly config?: unknown;
  readonly rateLimits?: Partial<RateLimits>;
  readonly stream?: Partial<StreamLimits>;
  readonly health?: Partial<HealthLimits>;
  /** The wall clock (ms since the epoch) for ages; a test may move it. */
  readonly now?: () => number;
  /** Readings one history request may walk over (default READING_ENTRIES_MAX; a test makes it small). */
  readonly historyEntriesMax?: number;
}

/** What the route groups share. */
interface Ctx {
  readonly node: BoxNode;
  readonly options: HttpOptions;
  readonly now: () => number;
  readonly hub: StreamHub;
  readonly latency: DurationHistogram;
  readonly counters: { rateLimited: number };
  readonly health: HealthWatch;
  readonly healthLimits: HealthLimits;
  readonly historyEntriesMax: number;
  readonly rateLimits: RateLimits;
}

/** The live stream hub of an app built by buildHttp (tests publish through it). */
const hubs = new WeakMap<FastifyInstance, StreamHub>();
export function streamHubOf(app: FastifyInstance): StreamHub {
  const hub = hubs.get(app);
  assert(hub !== undefined, "the app was built by buildHttp");
  return hub;
}

export function buildHttp(node: BoxNode, options: HttpOptions = {}): FastifyInstance {
  const app = Fastify({ logger: options.logger ?? false, bodyLimit: 64 * 1024 });
  app.addContentTypeParser("application/octet-stream", { parseAs: "buffer", bodyLimit: TX_BYTES_MAX_ANY }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err, _req, reply) => {
    if (err instanceof ApiError) return reply.status(err.statusCode).send({ statusCode: err.statusCode, code: err.code, message: err.message });
    const e = err as { statusCode?: number; code?: string; message: string; validation?: unknown };
    const statusCode = e.validation !== undefined ? 400 : (e.statusCode ?? 500);
    if (statusCode >= 500) app.log.error(err);
    return reply.status(statusCode).send({ statusCode, code: e.validation !== undefined ? "PG_ERR_BAD_REQUEST" : codeForStatus(statusCode, e.code), message: statusCode >= 500 ? "internal error" : e.message });
  });
  app.setNotFoundHandler((req, reply) => reply.status(404).send({ statusCode: 404, code: "PG_ERR_NO_ROUTE", message: `no route ${req.method} ${req.url} (GET /api/v1/openapi.json lists them)` }));

  const now = options.now ?? Date.now;
  const ctx: Ctx = {
    node,
    options,
    now,
    hub: new StreamHub(node, options.stream),
    latency: new DurationHistogram(),
    counters: { rateLimited: 0 },
    health: new HealthWatch(),
    healthLimits: { ...DEFAULT_HEALTH_LIMITS, ...options.health },
    historyEntriesMax: options.historyEntriesMax ?? READING_ENTRIES_MAX,
    rateLimits: { ...DEFAULT_RATE_LIMITS, ...options.rateLimits },
  };
  assert(Number.isSafeInteger(ctx.historyEntriesMax) && ctx.historyEntriesMax >= 1, "historyEntriesMax is a positive integer");
  hubs.set(app, ctx.hub);
  // Health samples the meters and the controller with each block: a failing meter is seen even if no one asks.
  const unsubscribe = node.onBlock(() => sampleHealth(ctx));
  app.addHook("preClose", async () => {
    unsubscribe();
    ctx.hub.close(); // the stream's connections would otherwise hold the server open
  });
  app.addHook("onResponse", async (req, reply) => {
    const route = req.routeOptions.url ?? "unmatched";
    if (route === STREAM_ROUTE && reply.statusCode === 200) return; // a stream's whole life is not a request's latency
    ctx.latency.observe(route, req.method, reply.statusCode, reply.elapsedTime);
  });

  app.register(swagger, {
    openapi: {
      openapi: "3.1.0",
      info: {
        title: "peergrid box API",
        version: "1",
        description:
          "The HTTP API of one peergrid box. Errors are {statusCode, code, message} with a stable code (PG_ERR_...). " +
          "Orders, cancels, votes and proposals are signed transactions, submitted with POST /api/v1/tx. Rate limits apply per client address (429 PG_ERR_RATE_LIMITED).",
      },
      tags: [
        { name: "box", description: "this box: status, health, metrics" },
        { name: "chain", description: "blocks and transactions" },
        { name: "meters", description: "meters and their readings" },
        { name: "market", description: "the neighbourhood market" },
        { name: "members", description: "members, balances, their orders and trades" },
        { name: "grid", description: "island state, breakers and governance" },
        { name: "stream", description: "live events" },
        { name: "admin", description: "membership and settings; need the admin token" },
      ],
      components: { securitySchemes: { adminToken: { type: "http", scheme: "bearer", description: "the token in the file named by http.adminTokenFile in the box's config" } } },
    },
  });
  registerRateLimit(app, ctx, ctx.rateLimits);
  // Routes in a plugin registered after swagger and the rate limit, so that both see every route.
  app.register(async (api) => {
    boxRoutes(api, ctx);
    chainRoutes(api, ctx);
    meterRoutes(api, ctx);
    marketRoutes(api, ctx);
    memberRoutes(api, ctx);
    gridRoutes(api, ctx);
    streamRoute(api, ctx);
    api.register(async (admin) => adminRoutes(admin, ctx));
  });
  return app;
}

/** A stable code for an error fastify raised (its own codes are FST_...). */
function codeForStatus(statusCode: number, code: string | undefined): string {
  if (statusCode >= 500) return "PG_ERR_INTERNAL";
  if (code?.startsWith("PG_ERR_") === true) return code;
  switch (statusCode) {
    case 400:
      return "PG_ERR_BAD_REQUEST";
    case 404:
      return "PG_ERR_NOT_FOUND";
    case 413:
      return "PG_ERR_BODY_TOO_LARGE";
    case 415:
      return "PG_ERR_UNSUPPORTED_MEDIA_TYPE";
    default:
      return `PG_ERR_HTTP_${statusCode}`;
  }
}

/** The route's documentation fields. */
const doc = (tag: string, summary: string, description?: string) => ({ tags: [tag], summary, ...(description !== undefined && { description }) });

/** Error responses a route documents; every route can answer 429. */
const errors = (...codes: number[]) => Object.fromEntries([...codes, 429].map((c) => [c, ErrorSchema]));

function rateClassOf(method: string, url: string | undefined): RateClass {
  if (url === STREAM_ROUTE) return "stream";
  if (url === "/metrics") return "metrics";
  if (url?.startsWith("/api/v1/admin/") === true) return "admin";
  if (method === "POST" && url === "/api/v1/tx") return "tx";
  return "read";
}

function isLoopback(ip: string): boolean {
  return ip.startsWith("127.") || ip === "::1" || ip.startsWith("::ffff:127.");
}

function registerRateLimit(app: FastifyInstance, ctx: Ctx, limits: RateLimits): void {
  for (const c of ["read", "tx", "admin", "stream", "metrics"] as const) if (!(Number.isInteger(limits[c]) && limits[c] >= 1)) throw new RangeError(`rate limit ${c}: ${limits[c]}`);
  const classOf = (req: FastifyRequest) => rateClassOf(req.method, req.routeOptions.url);
  app.register(rateLimit, {
    global: true,
    timeWindow: limits.windowMs,
    cache: 10_000, // clients remembered (LRU): the memory bound
    keyGenerator: (req) => `${classOf(req)} ${req.ip}`,
    max: (req) => limits[classOf(req)],
    allowList: (req) => limits.exemptLoopback && isLoopback(req.ip),
    errorResponseBuilder: (req, c) => {
      ctx.counters.rateLimited++;
      const cls = classOf(req);
      return new ApiError(429, "PG_ERR_RATE_LIMITED", `too many ${cls} requests from ${req.ip}: at most ${c.max} per ${limits.windowMs / 1000} s; retry in ${c.after}`);
    },
  });
}

// ---------------------------------------------------------------- box: status, health, openapi, metrics

function boxRoutes(api: FastifyInstance, ctx: Ctx): void {
  const { node } = ctx;
  // ?resetLatency=true: the status, then the commit latencies start afresh (a
  // benchmark reads and resets after its warm-up; only statistics are reset).
  api.get<{ Querystring: { resetLatency?: boolean } }>(
    "/api/v1/status",
    {
      schema: {
        ...doc("box", "This box: id, Raft role and term, leader, head block, peers, pool, commit latency", "?resetLatency=true forgets the commit latencies after answering (benchmarks): only from the box itself (loopback) or with the admin token, else 403 PG_ERR_RESET_FORBIDDEN."),
        querystring: Type.Object({ resetLatency: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
        response: { 200: StatusSchema, ...errors(400, 403) },
      },
    },
    async (req) => {
      if (req.query.resetLatency === true) checkMayReset(ctx, req, "resetLatency");
      const status = node.status();
      if (req.query.resetLatency === true) node.commitLatency.reset();
      return status;
    },
  );

  api.get(
    "/api/v1/health",
    {
      schema: {
        ...doc(
          "box",
          "Health for systemd and monitoring: 200 ok, or 503 degraded with the problems",
          "Degraded when no leader is known, the head block is older than a few block intervals, a meter of this box is polled without a good poll, or the microgrid controller had a switch error recently.",
        ),
        response: { 200: HealthSchema, 503: HealthSchema, ...errors() },
      },
    },
    async (_req, reply) => {
      const h = healthOf(ctx);
      return reply.status(h.status === "ok" ? 200 : 503).send(h);
    },
  );

  api.get(
    "/api/v1/openapi.json",
    { schema: { ...doc("box", "This API's OpenAPI 3.1 document"), response: { 200: Type.Object({ openapi: Type.String() }, { additionalProperties: true }), ...errors() } } },
    async () => api.swagger(),
  );

  api.get(
    "/metrics",
    {
      schema: {
        ...doc("box", "Prometheus metrics (text format 0.0.4)", "Block height and age, commit latency, Raft role and term, peers, pool, meter polls and latency, MQTT outbox, HTTP latency, rate limiting, stream clients."),
        response: { 200: { description: "Prometheus text", content: { "text/plain": { schema: Type.String() } } }, ...errors() },
      },
    },
    async (_req, reply) => {
      const text = renderMetrics(
        boxMetrics({
          nowMs: ctx.now(),
          status: node.status(),
          meters: ctx.options.meters?.()?.status() ?? null,
          mqtt: ctx.options.mqtt?.() ?? null,
          http: ctx.latency,
          rateLimited: ctx.counters.rateLimited,
          stream: { clients: ctx.hub.stats.clients, dropped: ctx.hub.stats.dropped },
        }),
      );
      return reply.type("text/plain; version=0.0.4; charset=utf-8").send(text);
    },
  );
}

/**
 * What health remembers between looks: when each meter last had a good
 * poll, and when the controller's switch errors last grew. A meter seen for
 * the first time, or errors present at the first look, count from then.
 */
class HealthWatch {
  private readonly meters = new Map<number, { good: number; goodAtMs: number; pollsAtGood: number; polls: number }>();
  private switchErrors = { count: -1, atMs: -Infinity };

  sample(meters: Iterable<readonly [number, { readonly polls: number; readonly good: number }]>, controller: ControllerStatus | null, nowMs: number): void {
    for (const [meterId, stats] of meters) {
      const seen = this.meters.get(meterId);
      const goodNow = seen === undefined || stats.good > seen.good;
      this.meters.set(meterId, {
        good: stats.good,
        goodAtMs: goodNow ? nowMs : (seen?.goodAtMs ?? nowMs),
        pollsAtGood: goodNow ? stats.polls : (seen?.pollsAtGood ?? stats.polls),
        polls: stats.polls,
      });
    }
    if (controller !== null && controller.switchErrors !== this.switchErrors.count) {
      const grew = this.switchErrors.count >= 0 || controller.switchErrors > 0;
      this.switchErrors = { count: controller.switchErrors, atMs: grew ? nowMs : this.switchErrors.atMs };
    }
  }

  /** Meters polled since their last good poll, which is older than silentMs. */
  failingMeters(nowMs: number, silentMs: number): { meterId: number; sinceMs: number }[] {
    return [...this.meters]
      .filter(([, m]) => m.polls > m.pollsAtGood && nowMs - m.goodAtMs > silentMs)
      .map(([meterId, m]) => ({ meterId, sinceMs: m.goodAtMs }))
      .sort((a, b) => a.meterId - b.meterId);
  }

  switchErrorAtMs(): number {
    return this.switchErrors.atMs;
  }
}

function sampleHealth(ctx: Ctx): void {
  try {
    const pollers = ctx.options.meters?.()?.pollers ?? [];
    ctx.health.sample(
      pollers.flatMap((p) => [...p.stats.meters]),
      ctx.options.controller?.()?.status() ?? null,
      ctx.now(),
    );
  } catch {
    // Called inside the node's block apply: never throw into it. The next sample tries again.
  }
}

function healthOf(ctx: Ctx): Static<typeof HealthSchema> {
  sampleHealth(ctx);
  const { node, healthLimits: limits } = ctx;
  const nowMs = ctx.now();
  const state = node.ledger.state;
  const problems: { code: string; message: string }[] = [];
  const leader = node.leader;
  if (leader === null) problems.push({ code: "PG_HEALTH_NO_LEADER", message: `no Raft leader is known (this box is ${node.role} in term ${node.term}): no blocks are cut; check the links to the other boxes` });
  const headAgeMs = nowMs - state.timeMs;
  const staleMs = limits.headStaleBlocks * node.timing.blockIntervalMs;
  if (headAgeMs > staleMs) problems.push({ code: "PG_HEALTH_HEAD_STALE", message: `the head block ${state.height} is ${headAgeMs} ms old, more than ${limits.headStaleBlocks} block intervals (${staleMs} ms)` });
  for (const m of ctx.health.failingMeters(nowMs, limits.meterSilentMs)) {
    problems.push({ code: "PG_HEALTH_METER_FAILING", message: `meter ${m.meterId} has had no good poll for ${nowMs - m.sinceMs} ms (GET /api/v1/meters shows its last problem)` });
  }
  const c = ctx.options.controller?.()?.status() ?? null;
  if (c !== null && nowMs - ctx.health.switchErrorAtMs() <= limits.switchErrorRecentMs) {
    problems.push({ code: "PG_HEALTH_SWITCH_ERRORS", message: `the microgrid controller had a switch error in the last ${limits.switchErrorRecentMs} ms (${c.switchErrors} so far; last: ${c.lastError ?? "?"})` });
  }
  return { status: problems.length === 0 ? "ok" : "degraded", problems, height: state.height, headAgeMs, leader, role: node.role };
}

// ---------------------------------------------------------------- chain: blocks and transactions

/** The most headers one GET /api/v1/blocks answers. */
const HEADERS_PER_PAGE_MAX = 100;

function chainRoutes(api: FastifyInstance, ctx: Ctx): void {
  const { node } = ctx;
  api.get<{ Querystring: { before?: number; limit?: number } }>(
    "/api/v1/blocks",
    {
      schema: {
        ...doc("chain", "Recent block headers, newest first", `Headers below ?before (default: above the head), at most ?limit (default 20, at most ${HEADERS_PER_PAGE_MAX}); the next page is ?before=<nextBefore>.`),
        querystring: Type.Object({ before: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 48 })), limit: Type.Optional(Type.Integer({ minimum: 1, maximum: HEADERS_PER_PAGE_MAX })) }, { additionalProperties: false }),
        response: { 200: Type.Object({ height: Count, blocks: Type.Array(HeaderSchema), nextBefore: Nullable(Count) }), ...errors(400) },
      },
    },
    async (req) => {
      const head = node.ledger.state.height;
      const before = Math.min(req.query.before ?? head + 1, head + 1);
      const stored = node.ledger.store.headersBefore(before, req.query.limit ?? 20);
      const blocks = stored.map(({ header: h, hash, stateRoot }) => ({
        height: h.height,
        hash: toHex(hash),
        parentHash: toHex(h.parentHash),
        timeMs: h.timeMs,
        proposer: h.proposer,
        raftTerm: h.raftTerm,
        txCount: h.txCount,
        stateRootAfter: toHex(stateRoot),
      }));
      const last = blocks[blocks.length - 1];
      return { height: head, blocks, nextBefore: last === undefined || last.height === 0 ? null : last.height };
    },
  );

  api.get<{ Params: { height: number } }>(
    "/api/v1/blocks/:height",
    {
      schema: {
        ...doc("chain", "A block's header and its transactions' verdicts"),
        params: Type.Object({ height: Type.Integer({ minimum: 0, maximum: 2 ** 48 }) }),
        response: { 200: BlockSchema, ...errors(400, 404) },
      },
    },
    async (req) => {
      const stored = node.ledger.store.getBlock(req.params.height);
      if (stored === null) {
        const height = req.params.height;
        const from = node.ledger.store.historyFrom();
        if (height <= from) throw new ApiError(404, "PG_ERR_BLOCK_NOT_HELD", `this box does not hold block ${height}: it caught up from a peer's checkpoint of the state after block ${from}; ask a box that keeps the whole history`);
        throw new ApiError(404, "PG_ERR_BLOCK_NOT_FOUND", `no block at height ${height} (head is ${node.ledger.state.height})`);
      }
      const { block, results, stateRoot, readingsPruned } = stored;
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
        txCount: h.txCount,
        readingsPruned,
        txs: block.txs.map((t, i) => ({ id: toHex(t.id), type: t.tx.body.type, author: t.tx.author, seq: t.tx.seq, result: resultName(results[i] as number), resultCode: results[i] as number })),
      };
    },
  );

  api.post(
    "/api/v1/tx",
    {
      schema: {
        ...doc(
          "chain",
          "Submit a signed transaction: a reading, an order, a cancel, a vote, a proposal, a member change",
          "Placing an order and cancelling one are signed transactions (types order and cancel) signed by the member's own key, e.g. in the browser: " +
            "GET /api/v1/members/by-key/{publicKey} gives the member's number, last sequence number and the chain hash to sign for. " +
            "The body is the transaction's bytes (application/octet-stream) or {\"tx\": \"<hex>\"}. 202: pending (follow it with GET /api/v1/tx/{id}); " +
            "200: already committed; 400 does not decode; 409 duplicate or stale sequence number; 422 refused (signature, author); 503 the pool is full.",
        ),
        body: {
          content: {
            "application/json": { schema: TxJsonSchema },
            "application/octet-stream": { schema: Type.Unknown({ description: "the signed transaction's bytes" }) },
          },
        },
        response: { 202: FateSchema, 200: FateSchema, ...errors(400, 409, 413, 415, 422, 503) },
      },
    },
    async (req, reply) => {
      const bytes = txBytesOf(req.body, req.headers["content-type"]);
      const out = await node.submit(bytes);
      if (!out.ok) throw new ApiError(statusForRefusal(out.code), out.code, out.message);
      return reply.status(out.fate.status === "committed" ? 200 : 202).send(out.fate);
    },
  );

  api.get<{ Params: { id: string } }>(
    "/api/v1/tx/:id",
    {
      schema: {
        ...doc("chain", "A transaction's fate: pending, committed (height, result) or rejected (code, reason)"),
        params: Type.Object({ id: Type.String({ pattern: "^[0-9a-fA-F]{64}$" }) }),
        response: { 200: FateSchema, ...errors(400, 404) },
      },
    },
    async (req) => {
      const fate: TxFate = node.fate(parseHex(req.params.id.toLowerCase(), 32) as Uint8Array);
      if (fate.status === "unknown") throw new ApiError(404, "PG_ERR_TX_NOT_FOUND", `no transaction ${fate.id} is known to this box (never submitted here, not in a recent block, or forgotten)`);
      return fate;
    },
  );
}

// ---------------------------------------------------------------- meters and readings

function meterRoutes(api: FastifyInstance, ctx: Ctx): void {
  const { node } = ctx;
  // ?resetTimings=true: the status, then the poll jitter and round times start afresh (as resetLatency above).
  api.get<{ Querystring: { resetTimings?: boolean } }>(
    "/api/v1/meters",
    {
      schema: {
        ...doc("meters", "This box's meters: per bus the poll jitter, round time and request counts; per meter its map, poll counts, last problem and last checked reading", "?resetTimings=true forgets jitter and round times after answering: only from the box itself (loopback) or with the admin token, else 403 PG_ERR_RESET_FORBIDDEN."),
        querystring: Type.Object({ resetTimings: Type.Optional(Type.Boolean()) }, { additionalProperties: false }),
        response: { 200: MetersSchema, ...errors(400, 403) },
      },
    },
    async (req) => {
      if (req.query.resetTimings === true) checkMayReset(ctx, req, "resetTimings");
      const meters = ctx.options.meters?.() ?? null;
      const status = meters?.status() ?? NO_METERS;
      if (req.query.resetTimings === true) meters?.resetTimings();
      return status;
    },
  );

  let latestReadings: { readonly height: number; readonly body: string } | null = null;
  api.get(
    "/api/v1/readings",
    {
      schema: {
        ...doc("meters", "Every meter's latest reading in the ledger (every box's meters)"),
        response: { 200: Type.Object({ height: Count, readings: Type.Array(LatestReadingSchema) }), ...errors() },
      },
    },
    async (_req, reply) => {
      // The answer changes only with a block: built and serialised once per height (phones poll it; see bench:api).
      const height = node.ledger.state.height;
      if (latestReadings?.height !== height) {
        const readings = node.ledger.store.latestReadings().map(({ author, ...r }) => ({ member: author, ...r, voltagesDeciV: [...r.voltagesDeciV] }));
        latestReadings = { height, body: JSON.stringify({ height, readings }) };
      }
      return reply.type("application/json; charset=utf-8").send(latestReadings.body);
    },
  );

  api.get<{ Params: { member: number; meterId: number }; Querystring: { from?: number; to?: number; stepMs?: number } }>(
    "/api/v1/readings/:member/:meterId",
    {
      schema: {
        ...doc(
          "meters",
          "One meter's history from the ledger, downsampled on request",
          `Accepted readings with time in [from, to) (default: the last 15 minutes). Without stepMs every reading; with stepMs the last reading of each stepMs-wide bucket. ` +
            `At most ${READING_POINTS_MAX} points: a longer range needs a larger stepMs (400 PG_ERR_TOO_MANY_POINTS names the least). ` +
            `One request walks over at most ${READING_ENTRIES_MAX} readings of every meter (the ledger indexes readings by time): a raw range holding more is refused the same way, and a bucket whose last share of them holds none of this meter's shows no point. ` +
            `meanPowerW is the mean power between a point and the one before, from the energy counters.`,
        ),
        params: Type.Object({ member: MemberIndex, meterId: Type.Integer({ minimum: 0, maximum: METER_ID_MAX }) }),
        querystring: Type.Object({ from: Type.Optional(TimeMs), to: Type.Optional(TimeMs), stepMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 2 ** 40 })) }, { additionalProperties: false }),
        response: {
          200: Type.Object({ member: Count, meterId: Count, fromMs: Count, toMs: Count, stepMs: Nullable(Count), points: Type.Array(PointSchema) }),
          ...errors(400, 404),
        },
      },
    },
    async (req) => {
      const { member, meterId } = req.params;
      const state = node.ledger.state;
      if (state.tree.get(memberKey(member))?.kind !== "member") throw new ApiError(404, "PG_ERR_MEMBER_NOT_FOUND", `no member ${member} on this chain`);
      if (state.tree.get(meterKey(member, meterId))?.kind !== "meter") throw new ApiError(404, "PG_ERR_METER_NOT_FOUND", `member ${member} has no meter ${meterId} with a reading in the ledger (GET /api/v1/readings lists the meters)`);
      const toMs = req.query.to ?? ctx.now() + 1;
      const fromMs = req.query.from ?? Math.max(0, toMs - 15 * 60_000);
      if (fromMs >= toMs) throw new ApiError(400, "PG_ERR_BAD_RANGE", `from (${fromMs}) must be before to (${toMs})`);
      const stepMs = req.query.stepMs ?? null;
      const points = stepMs === null ? rawHistory(ctx, member, meterId, fromMs, toMs) : sampledHistory(ctx, member, meterId, fromMs, toMs, stepMs);
      return { member, meterId, fromMs, toMs, stepMs, points: withMeanPower(points) };
    },
  );
}

function tooManyPoints(fromMs: number, toMs: number, why: string): ApiError {
  const leastStepMs = Math.ceil((toMs - fromMs) / READING_POINTS_MAX);
  return new ApiError(400, "PG_ERR_TOO_MANY_POINTS", `${why} in [${fromMs}, ${toMs}): ask with stepMs=${leastStepMs} or more, or a shorter range`);
}

/** Every reading of the meter in [fromMs, toMs), or 400 when there are more than one answer holds or walks over. */
function rawHistory(ctx: Ctx, member: number, meterId: number, fromMs: number, toMs: number): MeterPoint[] {
  // The author's rows of all its meters are decoded: bound them by the points wanted times its meters.
  const authorRowsMax = (READING_POINTS_MAX + 1) * metersOf(ctx, member);
  const walk = ctx.node.ledger.store.meterReadings(member, meterId, fromMs, toMs, READING_POINTS_MAX + 1, { authorRowsMax, entriesMax: ctx.historyEntriesMax });
  if (walk.points.length > READING_POINTS_MAX) throw tooManyPoints(fromMs, toMs, `more than ${READING_POINTS_MAX} points`);
  if (!walk.complete) throw tooManyPoints(fromMs, toMs, `more readings (of every meter) than one answer walks over (${ctx.historyEntriesMax})`);
  return walk.points;
}

/** The meter's last reading in each stepMs bucket of [fromMs, toMs); the walk's bound is shared out among the buckets. */
function sampledHistory(ctx: Ctx, member: number, meterId: number, fromMs: number, toMs: number, stepMs: number): MeterPoint[] {
  const buckets = Math.ceil((toMs - fromMs) / stepMs);
  if (buckets > READING_POINTS_MAX) throw tooManyPoints(fromMs, toMs, `more than ${READING_POINTS_MAX} points`);
  const entriesPerBucketMax = Math.max(1, Math.floor(ctx.historyEntriesMax / buckets));
  return ctx.node.ledger.store.meterSamples(member, meterId, fromMs, toMs, stepMs, { authorRowsPerBucketMax: 16 * metersOf(ctx, member), entriesPerBucketMax });
}

/** The member's meters with a reading in the ledger (at least 1): how many of its rows to decode to find one meter's. */
function metersOf(ctx: Ctx, member: number): number {
  return Math.max(1, treeIndexOf(ctx.node.ledger.state).metersOf.get(member) ?? 1);
}

/** Points with the mean power since the previous point, from the counters (null first, or when a counter went back). */
export function withMeanPower(points: readonly MeterPoint[]): Static<typeof PointSchema>[] {
  return points.map((p, i) => {
    const prev = i === 0 ? undefined : points[i - 1];
    const dtMs = prev === undefined ? 0 : p.timeMs - prev.timeMs;
    const dImport = prev === undefined ? -1 : p.importWh - prev.importWh;
    const dExport = prev === undefined ? -1 : p.exportWh - prev.exportWh;
    // Wh over ms to W: x Wh / dt ms = x * 3,600,000 / dt W. A display figure: rounded to the watt.
    const meanPowerW = dtMs > 0 && dImport >= 0 && dExport >= 0 ? Math.round(((dImport - dExport) * 3_600_000) / dtMs) : null;
    return { timeMs: p.timeMs, height: p.height, importWh: p.importWh, exportWh: p.exportWh, powerW: p.powerW, meanPowerW, quality: p.quality };
  });
}

// ---------------------------------------------------------------- market

function marketRoutes(api: FastifyInstance, ctx: Ctx): void {
  const { node } = ctx;
  api.get(
    "/api/v1/market",
    {
      schema: {
        ...doc("market", "The market's rules, the last clearing with its trades, the last settlement and every account's balance"),
        response: { 200: MarketSchema, ...errors() },
      },
    },
    async () => {
      const state = node.ledger.state;
      const market = state.tree.get(MARKET_KEY);
      const m = state.chain.genesis.market;
      const lastCleared = market?.kind === "market" ? node.ledger.store.marketInterval(market.clearedStartMs) : null;
      const lastSettlement = market?.kind === "market" ? node.ledger.store.marketSettlement(market.settledEndMs) : null;
      const balances = [...treeIndexOf(state).balances].map(([account, balanceMicro]) => ({ account, balanceMicro }));
      balances.sort((a, b) => a.account.localeCompare(b.account, "en", { numeric: true }));
      return {
        intervalMs: m.intervalMs,
        clearingRule: m.clearingRule,
        settlementMode: m.settlementMode,
        lastCleared: lastCleared === null ? null : intervalJson(lastCleared),
        lastSettlement: lastSettlement === null ? null : settlementJson(lastSettlement),
        balances,
      };
    },
  );

  api.get<{ Querystring: { interval?: number } }>(
    "/api/v1/market/book",
    {
      schema: {
        ...doc("market", "The order book: open orders by delivery interval, bids highest first and asks lowest first, with totals", "?interval=<start ms> for one interval; without it every interval with an open order."),
        querystring: Type.Object({ interval: Type.Optional(TimeMs) }, { additionalProperties: false }),
        response: { 200: Type.Object({ height: Count, intervalMs: Count, intervals: Type.Array(BookIntervalSchema) }), ...errors(400) },
      },
    },
    async (req) => {
      const state = node.ledger.state;
      const I = state.chain.genesis.market.intervalMs;
      const only = req.query.interval;
      if (only !== undefined && only % I !== 0) throw new ApiError(400, "PG_ERR_BAD_INTERVAL", `intervals start at multiples of ${I} ms: ${only} is not one (the nearest before is ${only - (only % I)})`);
      const book = treeIndexOf(state).book;
      const intervals = only === undefined ? book : book.filter((i) => i.intervalStartMs === only);
      return { height: state.height, intervalMs: I, intervals };
    },
  );

  api.get<{ Params: { start: number } }>(
    "/api/v1/market/intervals/:start",
    {
      schema: {
        ...doc("market", "One recorded interval by its start: its clearing with every trade (and the Wh delivered once settled), closed orders, and its settlement"),
        params: Type.Object({ start: Type.Integer({ minimum: 0, maximum: 2 ** 48 }) }),
        response: { 200: Type.Object({ interval: IntervalSchema, settlement: Nullable(SettlementSchema) }), ...errors(400, 404) },
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
}

function orderJson(o: OrderRecord): Static<typeof OrderSchema> {
  return {
    id: toHex(o.id),
    author: o.author,
    side: o.side,
    energyWh: o.energyWh,
    priceMicroPerKWh: o.priceMicroPerKWh,
    intervalStartMs: o.intervalStartMs,
    expiresAtMs: o.expiresAtMs,
    localRenewableOnly: (o.flags & OrderFlag.localRenewableOnly) !== 0,
    counterparty: o.counterparty,
    placedHeight: o.placedHeight,
  };
}

/** Bids by price descending, asks ascending; then older first, then by id (the clearing's ranking, market/clearing.ts). */
export function bookOf(intervalStartMs: number, orders: readonly OrderRecord[]): Static<typeof BookIntervalSchema> {
  const tie = (a: OrderRecord, b: OrderRecord) => a.placedHeight - b.placedHeight || toHex(a.id).localeCompare(toHex(b.id));
  const bids = orders.filter((o) => o.side === "buy").sort((a, b) => b.priceMicroPerKWh - a.priceMicroPerKWh || tie(a, b));
  const asks = orders.filter((o) => o.side === "sell").sort((a, b) => a.priceMicroPerKWh - b.priceMicroPerKWh || tie(a, b));
  return {
    intervalStartMs,
    bids: bids.map(orderJson),
    asks: asks.map(orderJson),
    bidWh: bids.reduce((n, o) => n + o.energyWh, 0),
    askWh: asks.reduce((n, o) => n + o.energyWh, 0),
    bestBidMicroPerKWh: bids[0]?.priceMicroPerKWh ?? null,
    bestAskMicroPerKWh: asks[0]?.priceMicroPerKWh ?? null,
  };
}

/**
 * What requests read by walking every state record, computed once per state
 * (a block makes a new tree; the old one's index goes with it): no request
 * walks the records, groups or sorts them itself.
 */
interface TreeIndex {
  /** Open orders by interval, the earliest first, each ranked as the clearing ranks it (bookOf). */
  readonly book: readonly Static<typeof BookIntervalSchema>[];
  /** Open orders by author, by interval then age. */
  readonly ordersOf: ReadonlyMap<number, readonly OrderRecord[]>;
  /** Account name ("3", "utility", "community") -> balance, micro-currency. */
  readonly balances: ReadonlyMap<string, number>;
  readonly proposals: readonly ProposalRecord[]; // newest first
  readonly proposalsById: ReadonlyMap<string, ProposalRecord>; // by id (hex)
  readonly votes: ReadonlyMap<string, readonly VoteRecord[]>; // by proposal id (hex), by member
  readonly metersOf: ReadonlyMap<number, number>; // member -> meters with a reading
  readonly breakers: readonly BreakerRecord[]; // by premise, then breaker
}

const treeIndexes = new WeakMap<object, TreeIndex>();

/** Append `v` to the list under `k` (in place: one walk, no copies). */
function pushTo<K, V>(m: Map<K, V[]>, k: K, v: V): void {
  const list = m.get(k);
  if (list === undefined) m.set(k, [v]);
  else list.push(v);
}

function treeIndexOf(state: LedgerState): TreeIndex {
  const cached = treeIndexes.get(state.tree);
  if (cached !== undefined) return cached;
  const byInterval = new Map<number, OrderRecord[]>();
  const ordersOf = new Map<number, OrderRecord[]>();
  const balances = new Map<string, number>();
  const proposals: ProposalRecord[] = [];
  const votes = new Map<string, VoteRecord[]>();
  const metersOf = new Map<number, number>();
  const breakers: BreakerRecord[] = [];
  for (const { value } of state.tree.entries()) {
    switch (value.kind) {
      case "order":
        pushTo(byInterval, value.intervalStartMs, value);
        pushTo(ordersOf, value.author, value);
        break;
      case "balance":
        balances.set(String((value as BalanceRecord).account), value.balanceMicro);
        break;
      case "proposal":
        proposals.push(value);
        break;
      case "vote":
        pushTo(votes, toHex(value.proposal), value);
        break;
      case "meter":
        metersOf.set(value.author, (metersOf.get(value.author) ?? 0) + 1);
        break;
      case "breaker":
        breakers.push(value);
        break;
      default:
        break;
    }
  }
  const book = [...byInterval].sort(([a], [b]) => a - b).map(([start, orders]) => bookOf(start, orders));
  for (const list of ordersOf.values()) list.sort((a, b) => a.intervalStartMs - b.intervalStartMs || a.placedHeight - b.placedHeight);
  proposals.sort((a, b) => b.createdHeight - a.createdHeight || toHex(a.id).localeCompare(toHex(b.id)));
  for (const v of votes.values()) v.sort((a, b) => a.member - b.member);
  breakers.sort((a, b) => a.premise - b.premise || a.breaker - b.breaker);
  const proposalsById = new Map(proposals.map((p) => [toHex(p.id), p]));
  const index: TreeIndex = { book, ordersOf, balances, proposals, proposalsById, votes, metersOf, breakers };
  treeIndexes.set(state.tree, index);
  return index;
}

// ---------------------------------------------------------------- members

/** The most trades one member answer lists. */
const MEMBER_TRADES_MAX = 500;

function memberRoutes(api: FastifyInstance, ctx: Ctx): void {
  const { node } = ctx;
  api.get<{ Params: { member: number }; Querystring: { tradesLimit?: number; tradesBefore?: number } }>(
    "/api/v1/members/:member",
    {
      schema: {
        ...doc(
          "members",
          "A member: its record, balance, open orders and recent trades (what the web app shows as my orders, trades and balance)",
          `Trades newest first: at most ?tradesLimit (default 50, at most ${MEMBER_TRADES_MAX}) from intervals before ?tradesBefore (ms); the next page is ?tradesBefore=<nextTradesBefore>.`,
        ),
        params: Type.Object({ member: MemberIndex }),
        querystring: Type.Object({ tradesLimit: Type.Optional(Type.Integer({ minimum: 1, maximum: MEMBER_TRADES_MAX })), tradesBefore: Type.Optional(TimeMs) }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            height: Count,
            member: MemberSchema,
            balanceMicro: Type.Integer({ description: "+ is owed to the member (micro-currency)" }),
            orders: Type.Array(OrderSchema),
            trades: Type.Array(MemberTradeSchema),
            nextTradesBefore: Nullable(Count),
          }),
          ...errors(400, 404),
        },
      },
    },
    async (req) => {
      const state = node.ledger.state;
      const index = req.params.member;
      const m = state.tree.get(memberKey(index));
      if (m?.kind !== "member") throw new ApiError(404, "PG_ERR_MEMBER_NOT_FOUND", `no member ${index} on this chain (members are numbered from 0; ${memberCountOf(state)} so far)`);
      const tree = treeIndexOf(state);
      const orders = tree.ordersOf.get(index) ?? [];
      const limit = req.query.tradesLimit ?? 50;
      // One more than asked: whether there is a next page. A page ends on an interval boundary, so it never splits one interval's trades.
      const rows = node.ledger.store.tradesOfMember(index, req.query.tradesBefore ?? 2 ** 48, limit + 1);
      let page = rows.slice(0, limit);
      const more = rows.length > limit;
      const lastStart = page[page.length - 1]?.trade.intervalStartMs;
      if (more && lastStart !== undefined && rows[limit]?.trade.intervalStartMs === lastStart) {
        const whole = node.ledger.store.tradesOfMember(index, lastStart + 1, MEMBER_TRADES_MAX * 4).filter((t) => t.trade.intervalStartMs === lastStart);
        page = [...page.filter((t) => t.trade.intervalStartMs !== lastStart), ...whole];
      }
      const trades = page.map(({ trade: t, deliveredWh }) => {
        const buying = t.buyer === index;
        return {
          intervalStartMs: t.intervalStartMs,
          index: t.index,
          side: buying ? ("buy" as const) : ("sell" as const),
          order: toHex(buying ? t.buyOrder : t.sellOrder),
          counterparty: buying ? t.seller : t.buyer,
          energyWh: t.energyWh,
          priceMicroPerKWh: buying ? t.buyerPriceMicroPerKWh : t.sellerPriceMicroPerKWh,
          deliveredWh,
        };
      });
      return {
        height: state.height,
        member: memberJson(m),
        balanceMicro: tree.balances.get(String(index)) ?? 0,
        orders: orders.map(orderJson),
        trades,
        nextTradesBefore: more && lastStart !== undefined ? lastStart : null,
      };
    },
  );

  api.get<{ Params: { publicKey: string } }>(
    "/api/v1/members/by-key/:publicKey",
    {
      schema: {
        ...doc("members", "A member by its public key: number, roles, active, last sequence number, and the chain hash a signer signs for"),
        params: Type.Object({ publicKey: Type.String({ pattern: "^[0-9a-fA-F]{64}$" }) }),
        response: {
          200: Type.Object({
            chainHash: Hex(32),
            height: Count,
            member: Type.Object({ index: Count, name: Type.String(), roles: Type.Array(Type.String()), active: Type.Boolean(), lastSeq: Count, openOrders: Count }),
          }),
          ...errors(400, 404),
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
}

function memberJson(m: { index: number; name: string; publicKey: Uint8Array; roles: number; active: boolean; lastSeq: number; openOrders: number }): Static<typeof MemberSchema> {
  return { index: m.index, name: m.name, publicKey: toHex(m.publicKey), roles: roleNames(m.roles), active: m.active, lastSeq: m.lastSeq, openOrders: m.openOrders };
}

function memberCountOf(state: LedgerState): number {
  const g = state.tree.get(GLOBAL_KEY);
  return g?.kind === "global" ? g.memberCount : 0;
}

// ---------------------------------------------------------------- grid and governance

/** The most proposals one GET /api/v1/governance lists. */
const PROPOSALS_PER_PAGE_MAX = 200;

function gridRoutes(api: FastifyInstance, ctx: Ctx): void {
  const { node } = ctx;
  api.get(
    "/api/v1/grid",
    {
      schema: {
        ...doc("grid", "Island state, the voted critical-load list, every breaker as last switched, open proposals, and on the controller box its grid decision and dispatch figures"),
        response: { 200: GridSchema, ...errors() },
      },
    },
    async () => {
      const state = node.ledger.state;
      const global = state.tree.get(GLOBAL_KEY);
      assert(global?.kind === "global", "the global record exists from genesis");
      const tree = treeIndexOf(state);
      const breakers = tree.breakers.map((b) => ({ premise: b.premise, breaker: b.breaker, commandedClose: b.commandedClose, readback: b.readback, changeMs: b.changeMs, operations: b.operations }));
      const proposals = tree.proposals
        .filter((p) => p.status === "open" || p.status === "accepted")
        .sort((a, b) => a.createdHeight - b.createdHeight)
        .map((p) => ({ id: toHex(p.id), author: p.author, kind: p.action.kind, status: p.status, yes: p.yes, no: p.no, votingEndsHeight: p.votingEndsHeight, effectiveHeight: p.effectiveHeight }));
      const c = ctx.options.controller?.() ?? null;
      const cs = c?.status() ?? null;
      return {
        islanded: global.islandedSinceMs >= 0,
        islandedSinceMs: global.islandedSinceMs >= 0 ? global.islandedSinceMs : null,
        lastChangeMs: global.islandChangeMs >= 0 ? global.islandChangeMs : null,
        criticalLoads: [...criticalLoads({ get: (k) => state.tree.get(k) as never })],
        breakers,
        proposals,
        controller: cs === null ? null : { ...cs, lastFigures: cs.lastFigures === null ? null : { ...cs.lastFigures } },
      };
    },
  );

  api.get<{ Querystring: { status?: string; limit?: number } }>(
    "/api/v1/governance",
    {
      schema: {
        ...doc("grid", "Governance: proposals of any status (newest first), the critical-load list and the market parameters in force", "Vote or propose with signed vote and proposal transactions (POST /api/v1/tx; `peergrid propose`, `peergrid vote`)."),
        querystring: Type.Object(
          {
            status: Type.Optional(Type.Union([Type.Literal("open"), Type.Literal("accepted"), Type.Literal("rejected"), Type.Literal("applied"), Type.Literal("failed")])),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: PROPOSALS_PER_PAGE_MAX })),
          },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            height: Count,
            criticalLoads: Type.Object({ premises: Type.Array(Count), sinceHeight: Nullable(Count) }),
            marketParams: Type.Object({ params: Type.Record(Type.String(), Type.Union([Type.Integer(), Type.String()])), sinceHeight: Nullable(Count) }),
            proposals: Type.Array(ProposalSchema),
          }),
          ...errors(400),
        },
      },
    },
    async (req) => {
      const state = node.ledger.state;
      const critical = state.tree.get(CRITICAL_LOADS_KEY);
      const params = state.tree.get(MARKET_PARAMS_KEY);
      const proposals = treeIndexOf(state).proposals.filter((p) => req.query.status === undefined || p.status === req.query.status);
      return {
        height: state.height,
        criticalLoads: critical?.kind === "criticalLoads" ? { premises: [...critical.premises], sinceHeight: critical.sinceHeight } : { premises: [], sinceHeight: null },
        marketParams: params?.kind === "marketParams" ? { params: { ...params.params }, sinceHeight: params.sinceHeight } : { params: { ...state.chain.genesis.market }, sinceHeight: null },
        proposals: proposals.slice(0, req.query.limit ?? 50).map(proposalJson),
      };
    },
  );

  api.get<{ Params: { id: string } }>(
    "/api/v1/governance/proposals/:id",
    {
      schema: {
        ...doc("grid", "One proposal by its transaction id, with every vote cast"),
        params: Type.Object({ id: Type.String({ pattern: "^[0-9a-fA-F]{64}$" }) }),
        response: { 200: Type.Object({ proposal: ProposalSchema, votes: Type.Array(Type.Object({ member: Count, approve: Type.Boolean() })) }), ...errors(400, 404) },
      },
    },
    async (req) => {
      const id = req.params.id.toLowerCase();
      const tree = treeIndexOf(node.ledger.state);
      const p = tree.proposalsById.get(id);
      if (p === undefined) throw new ApiError(404, "PG_ERR_PROPOSAL_NOT_FOUND", `no proposal ${id} on this chain (a proposal's id is its transaction's id)`);
      return { proposal: proposalJson(p), votes: (tree.votes.get(id) ?? []).map((v) => ({ member: v.member, approve: v.approve })) };
    },
  );
}

function actionJson(a: ProposalAction): Static<typeof ProposalSchema>["action"] {
  switch (a.kind) {
    case "criticalLoads":
      return { kind: a.kind, premises: [...a.premises] };
    case "marketParams":
      return { kind: a.kind, changes: a.changes.map((c) => ({ ...c })) };
    case "enrol":
      return { kind: a.kind, publicKey: toHex(a.publicKey), roles: roleNames(a.roles), name: a.name };
    case "remove":
      return { kind: a.kind, subject: a.subject };
    case "setRoles":
      return { kind: a.kind, subject: a.subject, roles: roleNames(a.roles) };
    default:
      return { kind: (a as { kind: string }).kind };
  }
}

function proposalJson(p: ProposalRecord): Static<typeof ProposalSchema> {
  return {
    id: toHex(p.id),
    author: p.author,
    action: actionJson(p.action),
    createdHeight: p.createdHeight,
    votingEndsHeight: p.votingEndsHeight,
    effectiveHeight: p.effectiveHeight,
    yes: p.yes,
    no: p.no,
    electorate: p.electorate,
    status: p.status,
    outcome: p.outcome,
  };
}

// ---------------------------------------------------------------- live stream

const STREAM_ROUTE = "/api/v1/stream";

function streamRoute(api: FastifyInstance, ctx: Ctx): void {
  api.get<{ Querystring: { topics?: string } }>(
    STREAM_ROUTE,
    {
      schema: {
        ...doc(
          "stream",
          "Live events (Server-Sent Events): block, reading, clearing (the price), trade, island",
          `?topics=${STREAM_TOPICS.join(",")} (any of them; default all). Events: block {height, timeMs, txCount, hash, proposer}; reading {height, member, meterId, timeMs, importWh, exportWh, powerW, quality} for each accepted reading; ` +
            `clearing {height, intervalStartMs, rule, priceMicroPerKWh, volumeWh, trades, buyOrders, sellOrders}; trade {height, intervalStartMs, index, buyOrder, sellOrder, buyer, seller, energyWh, buyerPriceMicroPerKWh, sellerPriceMicroPerKWh} for each trade of a clearing; ` +
            `island {height, islanded, sinceMs, changeMs}. A comment every ${ctx.hub.limits.heartbeatMs / 1000} s. ` +
            `A client more than ${ctx.hub.limits.clientBufferBytesMax} bytes behind (less when many are connected: ${ctx.hub.limits.buffersBytesMax} bytes among them all) is disconnected (reconnect; events are not replayed). ` +
            `503 PG_ERR_STREAM_FULL when ${ctx.hub.limits.clientsMax} clients are connected; 429 PG_ERR_STREAM_CLIENT_LIMIT when ${ctx.hub.limits.clientsPerAddressMax} are from the client's address.`,
        ),
        querystring: Type.Object({ topics: Type.Optional(Type.String({ pattern: `^(${STREAM_TOPICS.join("|")})(,(${STREAM_TOPICS.join("|")}))*$` })) }, { additionalProperties: false }),
        response: { 200: { description: "an event stream", content: { "text/event-stream": { schema: Type.String() } } }, ...errors(400, 503) },
      },
    },
    async (req, reply) => {
      const topics = parseTopics(req.query.topics);
      if (topics === null) throw new ApiError(400, "PG_ERR_BAD_TOPIC", `topics are ${STREAM_TOPICS.join(", ")}, separated by commas`);
      // The box's own tools on loopback are not counted by address, as they are not rate limited.
      const address = ctx.rateLimits.exemptLoopback && isLoopback(req.ip) ? null : req.ip;
      const refusal = ctx.hub.refusal(address);
      if (refusal !== null) {
        ctx.hub.stats.refused++;
        const { clientsMax, clientsPerAddressMax } = ctx.hub.limits;
        if (refusal === "full") throw new ApiError(503, "PG_ERR_STREAM_FULL", `${clientsMax} stream clients are connected, the most this box serves; try again later`);
        throw new ApiError(429, "PG_ERR_STREAM_CLIENT_LIMIT", `${clientsPerAddressMax} streams from ${req.ip} are open, the most one client may have: close one (one stream can carry every topic)`);
      }
      reply.hijack();
      // False only when the connection closed while the request was handled: nothing to answer.
      if (!ctx.hub.attach(reply.raw, topics, address)) reply.raw.destroy();
    },
  );
}

// ---------------------------------------------------------------- admin

const ROLE_NAMES = Object.keys(Role) as RoleName[];

function adminRoutes(admin: FastifyInstance, ctx: Ctx): void {
  const token = ctx.options.adminToken ?? null;
  // preParsing: after the rate limit (a route's onRequest hook, which runs after this scope's), before the body
  // is read, parsed or checked: without the token nothing more is said, and nothing more is done.
  admin.addHook("preParsing", async (req, reply) => checkAdmin(token, req, reply));
  const security = [{ adminToken: [] }];

  admin.post<{ Body: { publicKey: string; name: string; roles: RoleName[] } }>(
    "/api/v1/admin/members",
    {
      schema: {
        ...doc(
          "admin",
          "Enrol a member: the box signs a member transaction with its own key (its member must be an admin)",
          "How a neighbour's browser key is enrolled. 202 with the transaction's fate (follow it with GET /api/v1/tx/{id}); 403 PG_ERR_NOT_ADMIN when the box's member is not an admin; 409 when the key is enrolled already.",
        ),
        security,
        body: Type.Object(
          {
            publicKey: Type.String({ pattern: "^[0-9a-fA-F]{64}$", description: "the member's Ed25519 public key, hex" }),
            name: Type.String({ minLength: 1, maxLength: MEMBER_NAME_BYTES_MAX, pattern: "^[^\\u0000-\\u001f\\u007f]+$" }),
            roles: Type.Array(Type.Union(ROLE_NAMES.map((r) => Type.Literal(r))), { minItems: 1, maxItems: ROLE_NAMES.length, uniqueItems: true }),
          },
          { additionalProperties: false },
        ),
        response: { 202: FateSchema, 200: FateSchema, ...errors(400, 401, 403, 409, 422, 503) },
      },
    },
    async (req, reply) => {
      const { publicKey, name, roles } = req.body;
      const key = parseHex(publicKey.toLowerCase(), 32) as Uint8Array;
      if (Buffer.byteLength(name, "utf8") > MEMBER_NAME_BYTES_MAX || /\p{Cs}/u.test(name)) throw new ApiError(400, "PG_ERR_BAD_NAME", `a member's name is well-formed text of at most ${MEMBER_NAME_BYTES_MAX} UTF-8 bytes`);
      const state = ctx.node.ledger.state;
      const held = state.tree.get(publicKeyKey(key));
      if (held?.kind === "key") throw new ApiError(409, "PG_ERR_MEMBER_EXISTS", `the key ${publicKey.toLowerCase()} is member ${held.member}'s already`);
      const mask = roles.reduce((m, r) => m | Role[r], 0);
      return submitAsBox(ctx, reply, { type: "member", action: "enrol", publicKey: key, roles: mask, name });
    },
  );

  admin.post<{ Params: { member: number } }>(
    "/api/v1/admin/members/:member/remove",
    {
      schema: {
        ...doc("admin", "Remove a member: the box signs a member transaction with its own key (its member must be an admin)", "The member keeps its record (the audit trail) and can sign nothing more. The last admin and the last box cannot be removed (the ledger refuses)."),
        security,
        params: Type.Object({ member: MemberIndex }),
        response: { 202: FateSchema, 200: FateSchema, ...errors(400, 401, 403, 404, 409, 422, 503) },
      },
    },
    async (req, reply) => {
      const subject = ctx.node.ledger.state.tree.get(memberKey(req.params.member));
      if (subject?.kind !== "member") throw new ApiError(404, "PG_ERR_MEMBER_NOT_FOUND", `no member ${req.params.member} on this chain`);
      if (!subject.active) throw new ApiError(409, "PG_ERR_MEMBER_REMOVED", `member ${subject.index} (${subject.name}) was removed already`);
      return submitAsBox(ctx, reply, { type: "member", action: "remove", subject: subject.index });
    },
  );

  admin.get(
    "/api/v1/admin/config",
    {
      schema: {
        ...doc("admin", "The box's running settings, with secrets (tokens, passwords, credentials in URLs) removed"),
        security,
        response: { 200: Type.Object({ boxId: Count, config: Type.Unknown() }), ...errors(401, 403) },
      },
    },
    async () => ({ boxId: ctx.node.id, config: redactConfig(ctx.options.config ?? null) }),
  );
}

/** Whether the request carries the admin credential: constant-time over SHA-256 digests, so neither the token's content nor its length leaks by timing. */
function hasAdminToken(token: string | null, req: FastifyRequest): boolean {
  if (token === null || token === "") return false;
  const given = /^Bearer (\S+)$/i.exec(req.headers.authorization ?? "")?.[1];
  const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();
  return given !== undefined && timingSafeEqual(digest(given), digest(token));
}

async function checkAdmin(token: string | null, req: FastifyRequest, reply: FastifyReply): Promise<void> {
  if (token === null || token === "") {
    throw new ApiError(403, "PG_ERR_ADMIN_DISABLED", "admin routes are off on this box: put a token of at least 32 characters in a file (openssl rand -hex 32 > admin.token), name it as http.adminTokenFile in the box's config file, and restart the box");
  }
  if (!hasAdminToken(token, req)) {
    void reply.header("www-authenticate", 'Bearer realm="peergrid admin"');
    throw new ApiError(401, "PG_ERR_UNAUTHORIZED", "admin routes need the header Authorization: Bearer <the token in the box's http.adminTokenFile>");
  }
}

/**
 * Statistics that operators and /metrics read are reset only by the box's
 * own tools (loopback: benchmarks) or an admin; not by any client on the LAN.
 */
function checkMayReset(ctx: Ctx, req: FastifyRequest, what: string): void {
  if (isLoopback(req.ip) || hasAdminToken(ctx.options.adminToken ?? null, req)) return;
  throw new ApiError(403, "PG_ERR_RESET_FORBIDDEN", `?${what}=true resets statistics: only from the box itself (loopback) or with Authorization: Bearer <the admin token>`);
}

/** Sign `body` as this box (its sequence) and submit it, when the box's member is an active admin. */
async function submitAsBox(ctx: Ctx, reply: FastifyReply, body: Parameters<BoxSequence["submit"]>[0]): Promise<FastifyReply> {
  const seq = ctx.options.sequence;
  if (seq === undefined) throw new ApiError(503, "PG_ERR_NO_BOX_SIGNER", "this box was started without its signer for admin transactions");
  const me = ctx.node.ledger.state.tree.get(memberKey(seq.author));
  if (me?.kind !== "member" || !me.active || (me.roles & Role.admin) === 0) {
    throw new ApiError(
      403,
      "PG_ERR_NOT_ADMIN",
      `this box's member ${seq.author}${me?.kind === "member" ? ` (${me.name})` : ""} is not an active admin, so the ledger would refuse its member transaction: an admin must sign it (their own member transaction), or the community can vote it in (peergrid propose --enrol NAME:ROLES:KEY, or --remove)`,
    );
  }
  const { out } = await seq.submit(body);
  if (!out.ok) throw new ApiError(statusForRefusal(out.code), out.code, out.message);
  return reply.status(out.fate.status === "committed" ? 200 : 202).send(out.fate);
}

const SECRET_KEY = /token|secret|password|passphrase|credential|private/i;

/**
 * A JSON copy of a settings object without its secrets: a value under a key
 * that names one is "[redacted]", a URL's password too; Maps become objects.
 * Bounded: 8 levels deep, 1,000 entries per level.
 */
export function redactConfig(v: unknown, depth = 0): unknown {
  if (depth > 8) return "[too deep]";
  if (typeof v === "string") return v.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@\s]*):[^@/\s]*@/i, "$1:[redacted]@");
  if (v === null || typeof v === "number" || typeof v === "boolean") return v;
  if (typeof v === "bigint") return String(v);
  if (v instanceof Uint8Array) return `[${v.length} bytes]`;
  if (Array.isArray(v)) return v.slice(0, 1_000).map((x) => redactConfig(x, depth + 1));
  const entries: [string, unknown][] = v instanceof Map ? [...v].map(([k, x]) => [String(k), x]) : typeof v === "object" ? Object.entries(v as object) : [];
  const out: Record<string, unknown> = {};
  for (const [k, x] of entries.slice(0, 1_000)) {
    if (typeof x === "function" || x === undefined) continue;
    out[k] = SECRET_KEY.test(k) && x !== null ? "[redacted]" : redactConfig(x, depth + 1);
  }
  return out;
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


