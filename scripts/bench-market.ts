// Market benchmark (issue 5): `npm run bench:market` (builds, then runs
// dist/scripts/bench-market.js; `-- --help`).
//
// Clearing one interval of N open orders (default 10,000; target <= 50 ms,
// so a clearing never delays a one-second block). The book is seeded and
// shaped like a neighbourhood's: half buys, half sells, limit prices spread
// around a utility tariff so that about half the volume crosses, 500 members,
// and a share of orders with preferences (a named counterparty, local
// renewable only), which make the matching search further. Each rule is
// timed once cold (the first clearing of the process, as a box's first
// after it starts; pay-as-clear runs first, so pay-as-bid's "cold" run
// already shares warm code) and then over several runs after ten warm-up
// runs; the median and the worst are reported. Then a book built against
// the search (renewable-only buys against sellers without renewables).
// Then settling that
// interval (target <= 100 ms for 500 participants): the pay-as-clear
// trades against a seeded metered import and export for every member.
import { parseArgs } from "node:util";
import { type ClearingOrder, type ClearingRule, clear } from "../market/clearing.js";
import { settle } from "../market/settlement.js";
import { Rng } from "../sim/rng.js";
import { type Row, fmtInt, hostInfo, measuredCommit, positiveInt, printTable, readOptions } from "./bench-common.js";

interface Options {
  readonly orders: number;
  readonly members: number;
  readonly runs: number;
  readonly preferShare: number; // percent of orders with a preference
  readonly seed: number;
}

const USAGE = "usage: node dist/scripts/bench-market.js [--orders 10000] [--members 500] [--runs 20] [--prefer-percent 10] [--seed 1]";

function parse(argv: string[]): Options | null {
  const { values } = parseArgs({ args: argv, options: { orders: { type: "string" }, members: { type: "string" }, runs: { type: "string" }, "prefer-percent": { type: "string" }, seed: { type: "string" }, help: { type: "boolean" } } });
  if (values.help === true) return null;
  const preferShare = values["prefer-percent"] === undefined ? 10 : Number(values["prefer-percent"]);
  if (!(preferShare >= 0 && preferShare <= 100)) throw new Error("--prefer-percent wants 0..100");
  return { orders: positiveInt(values.orders, 10_000, "orders"), members: positiveInt(values.members, 500, "members"), runs: positiveInt(values.runs, 20, "runs"), preferShare, seed: positiveInt(values.seed, 1, "seed") };
}

/** A seeded order book: prices around 300,000 micro/kWh (0.30 a kWh), 100 Wh to 5 kWh each. */
export function orderBook(o: Pick<Options, "orders" | "members" | "preferShare" | "seed">): ClearingOrder[] {
  const rng = new Rng(o.seed);
  return Array.from({ length: o.orders }, (_, n): ClearingOrder => {
    const side = rng.int(0, 1) === 0 ? "buy" : "sell";
    const prefer = rng.int(0, 99) < o.preferShare;
    const id = new Uint8Array(32);
    for (let i = 0; i < 32; i++) id[i] = rng.int(0, 255);
    return {
      id,
      author: rng.int(0, o.members - 1),
      side,
      energyWh: 100 + rng.int(0, 4_900),
      priceMicroPerKWh: (side === "buy" ? 200_000 : 150_000) + rng.int(0, 200_000),
      placedHeight: 1 + rng.int(0, 899),
      localRenewableOnly: prefer && side === "buy" && rng.int(0, 1) === 0,
      counterparty: prefer && rng.int(0, 1) === 0 ? rng.int(0, o.members - 1) : null,
    };
  });
}

function main(): void {
  const o = readOptions(parse, USAGE);
  if (o === null) return;
  const m = hostInfo();
  console.log(`peergrid market benchmark: clearing ${fmtInt(o.orders)} orders of ${o.members} members (${o.preferShare} % with a preference), ${o.runs} runs per rule`);
  console.log(`machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGB} GB, node ${m.node}, ${m.platform}; commit ${measuredCommit(["market"], "(market/ changed since)")}; load average ${m.loadAvgStart.join(" ")}`);
  const book = orderBook(o);
  const isLocalRenewable = (a: number) => a % 3 !== 0; // two members in three have solar
  const rows: Row[] = [];
  const results = [];
  for (const rule of ["pay-as-clear", "pay-as-bid"] as ClearingRule[]) {
    const c0 = performance.now();
    clear(book, { rule, isLocalRenewable }); // the first clearing of the process: cold code
    const coldMs = performance.now() - c0;
    for (let w = 0; w < 10; w++) clear(book, { rule, isLocalRenewable }); // warm-up: JIT
    const times: number[] = [];
    let last = clear(book, { rule, isLocalRenewable });
    for (let r = 0; r < o.runs; r++) {
      const t0 = performance.now();
      last = clear(book, { rule, isLocalRenewable });
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    const median = times[Math.floor(times.length / 2)] as number;
    const worst = times[times.length - 1] as number;
    console.log(`  ${rule}: first (cold) ${coldMs.toFixed(1)} ms; then median ${median.toFixed(1)} ms, worst ${worst.toFixed(1)} ms; ${fmtInt(last.trades.length)} trades, ${fmtInt(last.volumeWh)} Wh, price ${last.priceMicroPerKWh ?? "-"}`);
    rows.push([`clear ${fmtInt(o.orders)} orders, ${rule} (median / worst)`, `${median.toFixed(1)} / ${worst.toFixed(1)} ms`, "<= 50 ms", worst <= 50 ? "met" : "MISSED"]);
    results.push({ rule, coldMs, medianMs: median, worstMs: worst, trades: last.trades.length, volumeWh: last.volumeWh, priceMicroPerKWh: last.priceMicroPerKWh });
  }
  // A book built against the search: 5,000 buys that take local renewable energy only, against 5,000
  // sells of members without it and 100 with it (a naive search walks every sell for every buy).
  const hostile: ClearingOrder[] = [];
  const hid = (n: number) => Uint8Array.from({ length: 32 }, (_, i) => (i < 4 ? (n >>> (8 * (3 - i))) & 0xff : 0));
  for (let i = 0; i < 5_000; i++) hostile.push({ id: hid(hostile.length), author: 100_000 + i, side: "buy", energyWh: 100, priceMicroPerKWh: 300_000, placedHeight: 1, localRenewableOnly: true, counterparty: null });
  for (let i = 0; i < 5_000; i++) hostile.push({ id: hid(hostile.length), author: 2 * i + 1, side: "sell", energyWh: 100, priceMicroPerKWh: 100_000 + i, placedHeight: 1, localRenewableOnly: false, counterparty: null });
  for (let i = 0; i < 100; i++) hostile.push({ id: hid(hostile.length), author: 2 * i, side: "sell", energyWh: 100, priceMicroPerKWh: 200_000, placedHeight: 1, localRenewableOnly: false, counterparty: null });
  const evenRenewable = (a: number) => a % 2 === 0 && a < 100_000;
  for (const rule of ["pay-as-clear", "pay-as-bid"] as ClearingRule[]) {
    clear(hostile, { rule, isLocalRenewable: evenRenewable });
    const h: number[] = [];
    for (let r = 0; r < o.runs; r++) {
      const t0 = performance.now();
      clear(hostile, { rule, isLocalRenewable: evenRenewable });
      h.push(performance.now() - t0);
    }
    h.sort((a, b) => a - b);
    const hMedian = h[Math.floor(h.length / 2)] as number;
    console.log(`  hostile book, ${rule}: median ${hMedian.toFixed(1)} ms, worst ${(h[h.length - 1] as number).toFixed(1)} ms`);
    rows.push([`clear a hostile book of 10,100 orders, ${rule} (median / worst)`, `${hMedian.toFixed(1)} / ${(h[h.length - 1] as number).toFixed(1)} ms`, "<= 50 ms", (h[h.length - 1] as number) <= 50 ? "met" : "MISSED"]);
  }

  // Settlement of the interval (pay-as-clear's trades) for every member, each with a metered import and export.
  const trades = clear(book, { rule: "pay-as-clear", isLocalRenewable }).trades;
  const rng = new Rng(o.seed + 1);
  const metered = new Map(Array.from({ length: o.members }, (_, m) => [m, { importWh: rng.int(0, 20_000), exportWh: rng.int(0, 20_000) }] as const));
  const params = { utilityImportMicroPerKWh: 300_000, utilityExportMicroPerKWh: 80_000, islanded: false, imbalanceMicroPerKWh: 400_000, buyerFeeMicroPerKWh: 2_000, sellerFeeMicroPerKWh: 2_000 };
  const s0 = performance.now();
  settle(trades, metered, params);
  const settleColdMs = performance.now() - s0;
  for (let w = 0; w < 10; w++) settle(trades, metered, params);
  const st: number[] = [];
  let settled = settle(trades, metered, params);
  for (let r = 0; r < o.runs; r++) {
    const t0 = performance.now();
    settled = settle(trades, metered, params);
    st.push(performance.now() - t0);
  }
  st.sort((a, b) => a - b);
  const sMedian = st[Math.floor(st.length / 2)] as number;
  const sWorst = st[st.length - 1] as number;
  console.log(`  settle ${o.members} members, ${fmtInt(trades.length)} trades: first (cold) ${settleColdMs.toFixed(1)} ms; then median ${sMedian.toFixed(1)} ms, worst ${sWorst.toFixed(1)} ms; ${fmtInt(settled.transfers.length)} transfers`);
  rows.push([`settle ${o.members} participants (median / worst)`, `${sMedian.toFixed(1)} / ${sWorst.toFixed(1)} ms`, "<= 100 ms", sWorst <= 100 ? "met" : "MISSED"]);
  printTable("clearing and settlement", rows);
  console.log(JSON.stringify({ bench: "peergrid-market", version: 1, options: o, results, settlement: { members: o.members, trades: trades.length, coldMs: settleColdMs, medianMs: sMedian, worstMs: sWorst } }));
}

main();
