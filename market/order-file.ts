// The JSON an auditor hands to `peergrid market clear`: an interval's orders,
// either a bare list or an object that also names the rule and the local
// renewable sellers, validated with a message naming the field and the fix.
// The result is printed in the same units, ids in hex.
//
//   { "rule": "pay-as-clear",                 // or "pay-as-bid"; default pay-as-clear
//     "localRenewableSellers": [2, 5],        // default: every seller counts
//     "orders": [ { "id": "<64 hex digits>", "author": 1, "side": "buy",
//                   "energyWh": 500, "priceMicroPerKWh": 300000,
//                   "placedHeight": 12,        // time priority; default 0
//                   "localRenewableOnly": false, "counterparty": null } ] }
import { type Static, Type } from "@sinclair/typebox";
import { Value } from "@sinclair/typebox/value";
import { PeergridError } from "../ledger/errors.js";
import { parseHex, toHex } from "../ledger/hash.js";
import { ORDER_ENERGY_WH_MAX, ORDER_VALUE_MICRO_MAX, PRICE_MICRO_PER_KWH_MAX } from "../ledger/tx.js";
import type { ClearingOptions, ClearingOrder, ClearingResult, ClearingRule } from "./clearing.js";

const Member = Type.Integer({ minimum: 0, maximum: 2 ** 32 - 1 });

const OrderJson = Type.Object(
  {
    id: Type.String({ pattern: "^[0-9a-fA-F]{64}$" }),
    author: Member,
    side: Type.Union([Type.Literal("buy"), Type.Literal("sell")]),
    energyWh: Type.Integer({ minimum: 1, maximum: ORDER_ENERGY_WH_MAX }),
    priceMicroPerKWh: Type.Integer({ minimum: 0, maximum: PRICE_MICRO_PER_KWH_MAX }),
    placedHeight: Type.Optional(Type.Integer({ minimum: 0, maximum: 2 ** 48 })),
    localRenewableOnly: Type.Optional(Type.Boolean()),
    counterparty: Type.Optional(Type.Union([Member, Type.Null()])),
  },
  { additionalProperties: false },
);

const Orders = Type.Array(OrderJson, { maxItems: 1_000_000 });

const OrderFileObject = Type.Object(
  {
    rule: Type.Optional(Type.Union([Type.Literal("pay-as-clear"), Type.Literal("pay-as-bid")])),
    localRenewableSellers: Type.Optional(Type.Array(Member)),
    orders: Orders,
  },
  { additionalProperties: false },
);

const OrderFileJson = Type.Union([Orders, OrderFileObject]);

/** What a field wants, for the message when it is wrong. */
const HINTS: Record<string, string> = {
  id: "64 hex digits, the order's transaction id",
  side: '"buy" or "sell"',
  rule: '"pay-as-clear" or "pay-as-bid"',
  counterparty: "a member number, or null for anyone",
  energyWh: `a whole number of Wh from 1 to ${ORDER_ENERGY_WH_MAX}`,
  priceMicroPerKWh: `a whole number of micro-currency per kWh from 0 to ${PRICE_MICRO_PER_KWH_MAX}`,
};

export interface OrderFile {
  readonly orders: ClearingOrder[];
  readonly rule: ClearingRule | null; // null: not said in the file
  readonly localRenewableSellers: readonly number[] | null; // null: every seller counts
}

/** Validate an order file's JSON; throws PG_ERR_ORDER_FILE naming the first wrong field (`source` names the file). */
export function parseOrderFile(json: unknown, source: string): OrderFile {
  if (!Value.Check(OrderFileJson, json)) {
    // Report against the shape the author evidently meant: a list, or the object form.
    const meant = Array.isArray(json) ? Orders : typeof json === "object" && json !== null ? OrderFileObject : null;
    const e = meant === null ? undefined : Value.Errors(meant, json).First();
    // A JSON pointer (/orders/1/side) as the author would write it (orders[1].side); a bare list's items are orders[i] too.
    const path = e === undefined ? "" : (Array.isArray(json) ? "/orders" : "") + e.path;
    const where = path === "" ? "the document" : path.replace(/\/(\d+)(?=\/|$)/g, "[$1]").replace(/\//g, ".").replace(/^\./, "");
    const hint = HINTS[path.split("/").pop() ?? ""];
    const message = e === undefined ? 'expected a list of orders, or {"orders": [...]}' : hint === undefined ? e.message : `${e.message.replace(/^Expected union value$/, "wrong value")}: expected ${hint}`;
    throw new PeergridError("PG_ERR_ORDER_FILE", `${source}: ${where}: ${message}`);
  }
  const file = json as Static<typeof OrderFileJson>;
  const list = Array.isArray(file) ? file : file.orders;
  const seen = new Set<string>();
  const orders = list.map((o, i): ClearingOrder => {
    const idHex = o.id.toLowerCase();
    if (seen.has(idHex)) throw new PeergridError("PG_ERR_ORDER_FILE", `${source}: orders[${i}].id: ${idHex} appears twice; each order has its own transaction id`);
    if ((BigInt(o.priceMicroPerKWh) * BigInt(o.energyWh)) / 1000n > BigInt(ORDER_VALUE_MICRO_MAX)) {
      throw new PeergridError("PG_ERR_ORDER_FILE", `${source}: orders[${i}]: worth more than ${ORDER_VALUE_MICRO_MAX} micro-currency (priceMicroPerKWh x energyWh / 1000), more than any ledger lets one order be`);
    }
    seen.add(idHex);
    return {
      id: parseHex(idHex, 32) as Uint8Array,
      author: o.author,
      side: o.side,
      energyWh: o.energyWh,
      priceMicroPerKWh: o.priceMicroPerKWh,
      placedHeight: o.placedHeight ?? 0,
      localRenewableOnly: o.localRenewableOnly ?? false,
      counterparty: o.counterparty ?? null,
    };
  });
  return { orders, rule: Array.isArray(file) ? null : (file.rule ?? null), localRenewableSellers: Array.isArray(file) ? null : (file.localRenewableSellers ?? null) };
}

/** The clearing options an order file (and the command line, which wins) asks for. */
export function optionsFor(file: OrderFile, rule: ClearingRule | undefined, renewable: readonly number[] | undefined): ClearingOptions {
  const sellers = renewable ?? file.localRenewableSellers;
  const set = sellers === null ? null : new Set(sellers);
  return { rule: rule ?? file.rule ?? "pay-as-clear", isLocalRenewable: (a) => set === null || set.has(a) };
}

/** A clearing result as JSON: ids in hex. */
export function resultJson(r: ClearingResult): unknown {
  return { ...r, trades: r.trades.map((t) => ({ ...t, buyOrder: toHex(t.buyOrder), sellOrder: toHex(t.sellOrder) })) };
}
