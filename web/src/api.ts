// The box's HTTP API as the page uses it. Everything is same-origin (the box
// that served the page). A route this box does not have (an older box, or one
// still being added) answers 404 PG_ERR_NO_ROUTE: the page then says "not
// available" for that part instead of failing whole.

/** The outcome of one call: the JSON, or why not. */
export type Got<T> = { readonly ok: true; readonly data: T } | { readonly ok: false; readonly missing: boolean; readonly status: number; readonly code: string; readonly message: string };

/** Requests wait at most this long: a box on the LAN answers in milliseconds. */
const REQUEST_TIMEOUT_MS = 8_000;

export async function getJson<T>(path: string): Promise<Got<T>> {
  return call<T>(path, { method: "GET" });
}

async function call<T>(path: string, init: RequestInit): Promise<Got<T>> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
  try {
    const res = await fetch(path, { ...init, signal: ctl.signal, cache: "no-store" });
    const text = await res.text();
    let body: unknown = null;
    try {
      body = text === "" ? null : JSON.parse(text);
    } catch {
      body = null;
    }
    if (res.ok) return { ok: true, data: body as T };
    const e = (body ?? {}) as { code?: string; message?: string };
    const code = e.code ?? `HTTP_${res.status}`;
    return { ok: false, missing: code === "PG_ERR_NO_ROUTE", status: res.status, code, message: e.message ?? res.statusText };
  } catch (err) {
    return { ok: false, missing: false, status: 0, code: "PG_ERR_UNREACHABLE", message: `the box did not answer (${(err as Error).message})` };
  } finally {
    clearTimeout(timer);
  }
}

// Shapes of the routes in daemon/http.ts that the page reads (only the fields it uses).

export interface Status {
  readonly boxId: number;
  readonly name: string;
  readonly height: number;
  readonly lastBlockTimeMs: number;
}

export interface MemberByKey {
  readonly chainHash: string;
  readonly height: number;
  readonly member: { readonly index: number; readonly name: string; readonly roles: readonly string[]; readonly active: boolean; readonly lastSeq: number; readonly openOrders: number };
}

export interface Trade {
  readonly buyOrder: string;
  readonly sellOrder: string;
  readonly buyer: number;
  readonly seller: number;
  readonly energyWh: number;
  readonly buyerPriceMicroPerKWh: number;
  readonly sellerPriceMicroPerKWh: number;
  readonly deliveredWh: number | null;
}

export interface Interval {
  readonly startMs: number;
  readonly priceMicroPerKWh: number | null;
  readonly volumeWh: number;
  readonly trades: readonly Trade[];
}

export interface Market {
  readonly intervalMs: number;
  readonly clearingRule: string;
  readonly settlementMode: string;
  readonly lastCleared: Interval | null;
  readonly balances: readonly { readonly account: string; readonly balanceMicro: number }[];
}

export interface Proposal {
  readonly id: string;
  readonly author: number;
  readonly kind: string;
  readonly status: string;
  readonly yes: number;
  readonly no: number;
  readonly votingEndsHeight: number;
  readonly effectiveHeight: number;
}

export interface Grid {
  readonly islanded: boolean;
  readonly islandedSinceMs: number | null;
  readonly criticalLoads: readonly number[];
  readonly breakers: readonly { readonly premise: number; readonly breaker: number; readonly commandedClose: boolean; readonly readback: string }[];
  readonly proposals: readonly Proposal[];
}

export interface Fate {
  readonly status: "pending" | "committed" | "rejected" | "unknown";
  readonly id: string;
  readonly result?: string;
  readonly code?: string;
  readonly message?: string;
}

/** An open order (GET /api/v1/market/book and /api/v1/members/:member). */
export interface OpenOrder {
  readonly id: string;
  readonly author: number;
  readonly side: "buy" | "sell";
  readonly energyWh: number;
  readonly priceMicroPerKWh: number;
  readonly intervalStartMs: number;
}

/** GET /api/v1/market/book?interval= */
export interface Book {
  readonly intervals: readonly { readonly intervalStartMs: number; readonly bids: readonly OpenOrder[]; readonly asks: readonly OpenOrder[]; readonly bidWh: number; readonly askWh: number }[];
}

/** GET /api/v1/members/:member */
export interface MemberDetail {
  readonly member: { readonly index: number; readonly name: string };
  readonly balanceMicro: number;
  readonly orders: readonly OpenOrder[];
  readonly trades: readonly { readonly intervalStartMs: number; readonly side: "buy" | "sell"; readonly counterparty: number; readonly energyWh: number; readonly priceMicroPerKWh: number; readonly deliveredWh: number | null }[];
}

/** A proposal with what it would do (GET /api/v1/governance). */
export interface GovProposal {
  readonly id: string;
  readonly author: number;
  readonly action: { readonly kind: string; readonly premises?: readonly number[]; readonly name?: string; readonly subject?: number; readonly changes?: readonly { readonly param: string; readonly value: number }[] };
  readonly votingEndsHeight: number;
  readonly yes: number;
  readonly no: number;
  readonly electorate: number;
  readonly status: string;
}

/** One point of a meter's history (GET /api/v1/readings/:member/:meterId). */
export interface HistoryPoint {
  readonly timeMs: number;
  readonly importWh: number;
  readonly exportWh: number;
  readonly powerW: number;
  readonly meanPowerW: number | null;
}

/** A meter's latest reading (GET /api/v1/readings). */
export interface LatestReading {
  readonly member: number;
  readonly meterId: number;
  readonly timeMs: number;
  readonly powerW: number;
  readonly importWh: number;
  readonly exportWh: number;
}

export async function submitTx(hex: string): Promise<Got<Fate>> {
  return call<Fate>("/api/v1/tx", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ tx: hex }) });
}
