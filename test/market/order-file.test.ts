// `peergrid market clear <orders.json>` (market/order-file.ts through the
// CLI): the ledger's clearing function on an auditor's file, the result as
// JSON; every mistake in the file named by its field, with exit code 2.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { runCli } from "../helpers/cli.js";

const hexId = (n: number) => n.toString(16).padStart(64, "0");
const ORDERS = [
  { id: hexId(1), author: 1, side: "buy", energyWh: 500, priceMicroPerKWh: 300_000, placedHeight: 3 },
  { id: hexId(2), author: 2, side: "buy", energyWh: 400, priceMicroPerKWh: 250_000, placedHeight: 4 },
  { id: hexId(3), author: 3, side: "buy", energyWh: 300, priceMicroPerKWh: 150_000 },
  { id: hexId(4), author: 4, side: "sell", energyWh: 600, priceMicroPerKWh: 100_000 },
  { id: hexId(5), author: 5, side: "sell", energyWh: 400, priceMicroPerKWh: 201_001, counterparty: null },
];

describe("peergrid market clear", () => {
  let dir = "";
  const file = (name: string, content: unknown) => {
    const path = join(dir, name);
    writeFileSync(path, typeof content === "string" ? content : JSON.stringify(content));
    return path;
  };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "peergrid-market-clear-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("clears a list of orders: the uniform price and each trade, ids in hex", async () => {
    const r = await runCli("market", "clear", file("list.json", ORDERS));
    assert.equal(r.code, 0, r.out);
    const out = JSON.parse(r.out) as { rule: string; priceMicroPerKWh: number; volumeWh: number; trades: { buyOrder: string; sellOrder: string; energyWh: number; buyerPaysMicro: number; sellerGetsMicro: number }[] };
    assert.equal(out.rule, "pay-as-clear");
    assert.equal(out.priceMicroPerKWh, 225_500);
    assert.equal(out.volumeWh, 900);
    assert.deepEqual(out.trades.map((t) => [t.buyOrder.slice(-1), t.sellOrder.slice(-1), t.energyWh]), [["1", "4", 500], ["2", "4", 100], ["2", "5", 300]]);
    assert.equal(out.trades[0]?.buyerPaysMicro, 112_750);
  });

  it("the object form names the rule and the renewable sellers; the command line overrides them", async () => {
    const withPrefs = ORDERS.map((o) => (o.author === 1 ? { ...o, localRenewableOnly: true } : o));
    const path = file("object.json", { rule: "pay-as-bid", localRenewableSellers: [5], orders: withPrefs });
    const bid = JSON.parse((await runCli("market", "clear", path)).out) as { rule: string; priceMicroPerKWh: null; trades: { buyer: number; seller: number; communityGetsMicro: number }[] };
    assert.equal(bid.rule, "pay-as-bid");
    assert.equal(bid.priceMicroPerKWh, null);
    assert.ok(bid.trades.filter((t) => t.buyer === 1).every((t) => t.seller === 5), "buyer 1 takes renewable energy only");
    assert.ok(bid.trades.some((t) => t.communityGetsMicro > 0));
    const clearRule = JSON.parse((await runCli("market", "clear", path, "--rule", "pay-as-clear", "--renewable-sellers", "4,5")).out) as { rule: string; trades: { buyer: number; seller: number }[] };
    assert.equal(clearRule.rule, "pay-as-clear");
    assert.ok(clearRule.trades.some((t) => t.buyer === 1 && t.seller === 4));
  });

  it("names every mistake in the file, with exit code 2", async () => {
    const cases: [unknown, RegExp][] = [
      [[{ ...ORDERS[0], priceMicroPerKWh: "cheap" }], /\[0\]\.priceMicroPerKWh: Expected integer/],
      [[ORDERS[0], { ...ORDERS[1], side: "hold" }], /\[1\]\.side/],
      [[ORDERS[0], { ...ORDERS[1], energyWh: 0 }], /\[1\]\.energyWh: Expected integer to be greater or equal to 1/],
      [[ORDERS[0], { ...ORDERS[1], id: ORDERS[0]?.id }], /orders\[1\]\.id: 0+1 appears twice/],
      [[{ ...ORDERS[0], colour: "green" }], /\[0\]: Unexpected property|\[0\]\.colour/],
      [{ rule: "pay-as-you-like", orders: ORDERS }, /rule/],
      [{ order: ORDERS }, /orders|order/],
      [42, /the document: expected a list of orders/],
      [[{ ...ORDERS[0], energyWh: 2 ** 40 - 1, priceMicroPerKWh: 2 ** 40 - 1 }], /orders\[0\]: worth more than 8589934592 micro-currency/],
    ];
    for (const [content, message] of cases) {
      const r = await runCli("market", "clear", file("bad.json", content));
      assert.equal(r.code, 2, `${JSON.stringify(content).slice(0, 80)}: ${r.out}`);
      assert.match(r.out, message, JSON.stringify(content).slice(0, 80));
    }
    assert.equal((await runCli("market", "clear", file("notjson.json", "{orders: ["))).code, 2);
    assert.equal((await runCli("market", "clear", join(dir, "missing.json"))).code, 2);
    assert.equal((await runCli("market", "clear", file("ok.json", ORDERS), "--renewable-sellers", "two")).code, 2);
  });
});
