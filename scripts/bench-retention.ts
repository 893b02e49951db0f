// Scale study, the retention part (issue 8, point 4): `npm run bench:retention`
// (builds, then runs dist/scripts/bench-retention.js; `-- --quick`, `-- --help`).
//
// What a year of ledger takes on a box's SD card, and which retention window
// (config ledger.keepReadingsDays) keeps it within the card. For each
// neighbourhood size N (default 10, 100 and 1,000 metered premises), a real
// ledger in SQLite on disk (ledger/store.ts, the product's store and state
// machine) takes --hours of one-second blocks, each with every premise's
// reading (one meter each, three phases, as the synthetic load of
// bench-scale) and, once per 15-minute market interval, one order from each
// premise (a fifth sell, the rest buy): the auto-bidder's rate; the
// simulated day of `peergrid sim` made ~100 non-reading transactions per
// premise-day, most of them orders, and so does this. Every block is applied
// through the state machine (clearing, settlement, the market tables). The
// one shortcut: transactions carry the simulator's stand-in signature
// (sim/sim-ledger.ts), 64 bytes like Ed25519's, so every byte on disk is the
// same and the run is not bound by signing (bench-scale measures that cost).
//
// Meanwhile the box's own pruner (daemon/ledger-pruner.ts) runs after every
// block with a window of --keep-minutes: the file's in-use size is sampled
// each 5 minutes of chain time, and must stop growing with the readings once
// the window is full (deleted pages are reused; the file never shrinks by
// itself). At the end:
//
//   per reading   bytes on disk one reading takes: (in-use bytes - the bytes
//                 kept for ever) / the readings held
//   kept for ever a copy of the file with every reading pruned and no
//                 checkpoint, VACUUMed: the headers, orders, market tables and
//                 state; taken at the middle of the run and at its end, and
//                 the growth between the two (per day) is what a year piles
//                 up (the state, latest readings and genesis are there from
//                 the first block and do not grow with time)
//   checkpoint    the bytes of one checkpoint (dbstat of checkpoint_state)
//
// and the year's plan: the window W (days) such that 365 days kept for ever
// + W days of readings + the checkpoints W needs fit the ledger's share of a
// 32 GB card (--budget-gb, default 24: 32 GB less ~3 GB for Raspberry Pi OS
// Lite, up to 4 GB of journald logs, and 1 GB of headroom; raft.sqlite is
// bounded by compaction at a few MB).
import { copyFileSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { createHash } from "node:crypto";
import Database from "better-sqlite3";
import { LedgerPruner, checkpointEveryFor } from "../daemon/ledger-pruner.js";
import { parseGenesis } from "../ledger/genesis.js";
import { toHex, utf8 } from "../ledger/hash.js";
import { Ledger, ledgerPath } from "../ledger/ledger.js";
import { ResultCode } from "../ledger/state.js";
import { LedgerStore } from "../ledger/store.js";
import { Quality, type SignedTx, type TxBody, TxType, signTx } from "../ledger/tx.js";
import { SimSigner, simVerifier } from "../sim/sim-ledger.js";
import { MS_PER_DAY, MS_PER_HOUR } from "../sim/site.js";
import { fmtInt, hostInfo, measuredCommit, positiveInt, positiveIntList, printTable, readOptions } from "./bench-common.js";

const USAGE = `usage: node dist/scripts/bench-retention.js [--premises 10,100,1000] [--hours H] [--keep-minutes M] [--budget-gb G] [--quick]
  --premises      neighbourhood sizes, metered premises read once a second (default 10,100,1000)
  --hours         chain time each size runs, in hours (default 1; --quick: 0.25)
  --keep-minutes  the pruner's window while it runs (default 20; --quick: 5)
  --budget-gb     the ledger's share of a 32 GB card, in GB of 10^9 bytes (default 24)`;

interface Options {
  readonly premises: readonly number[];
  readonly hours: number;
  readonly keepMinutes: number;
  readonly budgetGB: number;
}

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    options: { premises: { type: "string" }, hours: { type: "string" }, "keep-minutes": { type: "string" }, "budget-gb": { type: "string" }, quick: { type: "boolean" }, help: { type: "boolean" } },
    strict: true,
  });
  if (values.help === true) return null;
  const quick = values.quick === true;
  const premises = positiveIntList(values.premises, [10, 100, 1_000], "premises");
  const hours = values.hours === undefined ? (quick ? 0.25 : 1) : Number(values.hours);
  if (!(hours > 0 && hours <= 48)) throw new Error(`--hours wants 0 < H <= 48, got ${values.hours}`);
  const keepMinutes = positiveInt(values["keep-minutes"], quick ? 5 : 20, "keep-minutes");
  if (keepMinutes >= hours * 60) throw new Error("--keep-minutes must be shorter than the run (--hours)");
  return { premises, hours, keepMinutes, budgetGB: positiveInt(values["budget-gb"], 24, "budget-gb") };
}

const INTERVAL_MS = 900_000;
const T0 = Date.UTC(2026, 5, 21, 0, 0, 0);

interface SizeResult {
  readonly premises: number;
  readonly blocks: number;
  readonly readings: number;
  readonly orders: number;
  readonly rejected: number;
  readonly seconds: number;
  readonly samples: readonly { readonly chainMinutes: number; readonly inUseMB: number; readonly fileMB: number }[];
  readonly readingBytes: number;
  readonly keptForeverPerDayMB: number;
  readonly checkpointMB: number;
  readonly rawPerDayMB: number;
  readonly tables: Record<string, number>; // MB by table and index, at the end
  readonly fill: Record<string, number>; // the share of those pages' bytes that hold data, at the end
  readonly keptPerDay: readonly [string, number][]; // MB a day kept for ever, by table and index
}

/** The ledger's bytes in use (pages not on the free list), after checkpointing the WAL. */
function sizes(path: string): { inUse: number; file: number } {
  const db = new Database(path);
  try {
    db.pragma("wal_checkpoint(TRUNCATE)");
    const page = db.pragma("page_size", { simple: true }) as number;
    const count = db.pragma("page_count", { simple: true }) as number;
    const free = db.pragma("freelist_count", { simple: true }) as number;
    return { inUse: (count - free) * page, file: statSync(path).size };
  } finally {
    db.close();
  }
}

/**
 * What stays for ever: a copy of the ledger with every reading given up, VACUUMed, in bytes (its
 * checkpoint's rows left out: the year's plan counts checkpoints apart).
 */
function keptForever(path: string, scratch: string): { bytes: number; tables: Record<string, number> } {
  sizes(path); // checkpoint the WAL into the file, so a copy of the file alone is the whole ledger
  const copy = `${scratch}.sqlite`;
  copyFileSync(path, copy);
  const store = LedgerStore.open(copy);
  store.checkpoint();
  store.pruneReadingsTo(store.head().height);
  while (!store.pruneStep(50_000).done);
  store.close();
  const db = new Database(copy);
  db.exec("DELETE FROM checkpoint_state; DELETE FROM checkpoints;");
  const vacuumed = `${scratch}-vacuumed.sqlite`;
  db.exec(`VACUUM INTO '${vacuumed}'`);
  db.close();
  const bytes = statSync(vacuumed).size;
  const tables = tablesOf(vacuumed);
  rmSync(copy);
  rmSync(vacuumed);
  return { bytes, tables };
}

/** Bytes by table and index (SQLite's dbstat), largest first; `used`: the bytes of their pages that hold data. */
function tablesOf(path: string, used?: Record<string, number>): Record<string, number> {
  const db = new Database(path, { readonly: true });
  try {
    const out: Record<string, number> = {};
    const rows = db.prepare("SELECT name, sum(pgsize) AS bytes, sum(pgsize - unused) AS used FROM dbstat GROUP BY name ORDER BY bytes DESC").all() as { name: string; bytes: number; used: number }[];
    for (const r of rows) {
      out[r.name] = r.bytes;
      if (used !== undefined) used[r.name] = r.used;
    }
    return out;
  } finally {
    db.close();
  }
}

function runSize(n: number, o: Options): SizeResult {
  const dir = mkdtempSync(join(tmpdir(), "peergrid-bench-retention-"));
  try {
    const signers = Array.from({ length: n }, (_, i) => new SimSigner(new Uint8Array(createHash("sha256").update(utf8(`bench-retention-${i}`)).digest())));
    const genesis = parseGenesis({
      chainId: `bench-retention-${n}`,
      genesisTimeMs: T0,
      members: signers.map((s, i) => ({ name: `premise-${i}`, publicKey: toHex(s.publicKey), roles: i === 0 ? ["box", "user", "admin"] : ["box", "user"] })),
      ledger: { blockIntervalMs: 1_000 },
    });
    const ledger = Ledger.create(dir, genesis, simVerifier);
    const keepReadingsMs = o.keepMinutes * 60_000;
    const pruner = new LedgerPruner(ledger.store, { keepReadingsMs, checkpointEveryMs: checkpointEveryFor(keepReadingsMs), budgetMs: 1_000 });
    const seq = new Array<number>(n).fill(0);
    const importWh = Array.from({ length: n }, (_, i) => 1_000_000 + i * 37);
    const exportWh = Array.from({ length: n }, (_, i) => 10_000 + i * 11);
    const blocks = Math.round(o.hours * 3_600);
    const midHeight = Math.floor(blocks / 2);
    let keptAtMid = { bytes: 0, tables: {} as Record<string, number> };
    let readings = 0;
    let orders = 0;
    let rejected = 0;
    const samples: { chainMinutes: number; inUseMB: number; fileMB: number }[] = [];
    const sign = (author: number, body: TxBody): SignedTx => signTx({ author, seq: ++seq[author]!, body }, signers[author]!, ledger.state.chain.hash);
    const t0 = performance.now();
    for (let h = 1; h <= blocks; h++) {
      const timeMs = T0 + h * 1_000;
      const txs: SignedTx[] = [];
      for (let i = 0; i < n; i++) {
        const seller = i % 5 === 0;
        const wPerS = seller ? (h % 3 === 0 ? 1 : 0) : 1; // ~3.6 kWh/h for a household, ~1.2 kWh/h exported by a seller
        if (seller) exportWh[i]! += wPerS;
        else if (h % 2 === 0) importWh[i]! += wPerS;
        txs.push(
          sign(i, {
            type: "reading",
            meterId: 0,
            timeMs: timeMs - 200,
            importWh: importWh[i]!,
            exportWh: exportWh[i]!,
            powerW: seller ? -1_200 : 1_800,
            voltagesDeciV: [2300 + (h % 7), 2310, 2295],
            frequencyMilliHz: 50_000 - (h % 20),
            quality: Quality.good,
          }),
        );
        // Premise i places its order for the next interval at its own second of this one.
        if ((timeMs - T0) % INTERVAL_MS === Math.floor((i * INTERVAL_MS) / n / 1_000) * 1_000 + 1_000) {
          const next = timeMs - (timeMs % INTERVAL_MS) + INTERVAL_MS;
          txs.push(
            sign(i, {
              type: "order",
              side: seller ? "sell" : "buy",
              energyWh: 200 + ((i * 37 + h) % 800),
              priceMicroPerKWh: (seller ? 120_000 : 180_000) + ((i * 13) % 60) * 1_000,
              intervalStartMs: next,
              expiresAtMs: next + INTERVAL_MS,
              flags: 0,
              counterparty: null,
            }),
          );
          orders++;
        }
      }
      readings += n;
      const proposer = h % n;
      const block = ledger.propose(txs, signers[proposer]!, proposer, timeMs, 1, h);
      const { results } = ledger.append(block);
      rejected += results.filter((r) => r !== ResultCode.ok).length;
      pruner.step();
      if (h === midHeight) keptAtMid = keptForever(ledgerPath(dir), join(dir, "mid"));
      if (h % 300 === 0) {
        const s = sizes(ledgerPath(dir));
        samples.push({ chainMinutes: h / 60, inUseMB: s.inUse / 1e6, fileMB: s.file / 1e6 });
      }
    }
    while (pruner.status().deleting) pruner.step();
    const seconds = (performance.now() - t0) / 1_000;
    ledger.close();
    const path = ledgerPath(dir);
    const end = sizes(path);
    const db = new Database(path, { readonly: true });
    const held = (db.prepare(`SELECT count(*) AS n FROM txs WHERE type = ${TxType.reading}`).get() as { n: number }).n;
    const used: Record<string, number> = {};
    const tables = Object.fromEntries(Object.entries(tablesOf(path, used)).map(([k, v]) => [k, v / 1e6]));
    const fill = Object.fromEntries(Object.entries(used).map(([k, v]) => [k, v / Math.max(1, (tables[k] ?? 0) * 1e6)]));
    const checkpoints = (db.prepare("SELECT count(*) AS n FROM checkpoints").get() as { n: number }).n;
    db.close();
    const kept = keptForever(path, join(dir, "end"));
    const checkpointBytes = ((tables.checkpoint_state ?? 0) * 1e6) / Math.max(1, checkpoints);
    const readingBytes = (end.inUse - kept.bytes) / Math.max(1, held);
    const perDay = 24 / (o.hours - midHeight / 3_600);
    const keptPerDay = Object.entries(kept.tables)
      .map(([k, v]): [string, number] => [k, ((v - (keptAtMid.tables[k] ?? 0)) / 1e6) * perDay])
      .sort((a, b) => b[1] - a[1]);
    return {
      premises: n,
      blocks,
      readings,
      orders,
      rejected,
      seconds,
      samples,
      readingBytes,
      // The growth from the middle of the run to its end: the state, latest readings and genesis are there from the start.
      keptForeverPerDayMB: ((kept.bytes - keptAtMid.bytes) / 1e6) * perDay,
      keptPerDay,
      checkpointMB: checkpointBytes / 1e6,
      rawPerDayMB: (readingBytes * n * 86_400) / 1e6,
      tables,
      fill,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The longest window (days) that keeps a year in the budget, with the checkpoints it needs. */
function yearPlan(r: SizeResult, budgetGB: number): { windowDays: number; yearGB: number; keptGB: number } {
  const keptMB = 365 * r.keptForeverPerDayMB;
  let windowDays = 0;
  for (let w = 1 / 24; w <= 366; w += 1 / 24) {
    const checkpoints = Math.ceil((w * MS_PER_DAY) / checkpointEveryFor(w * MS_PER_DAY)) + 2;
    const totalMB = keptMB + w * r.rawPerDayMB + checkpoints * r.checkpointMB;
    if (totalMB > budgetGB * 1_000) break;
    windowDays = w;
  }
  const checkpoints = Math.ceil((windowDays * MS_PER_DAY) / checkpointEveryFor(windowDays * MS_PER_DAY)) + 2;
  return { windowDays, keptGB: keptMB / 1_000, yearGB: (keptMB + windowDays * r.rawPerDayMB + checkpoints * r.checkpointMB) / 1_000 };
}

async function main(o: Options): Promise<void> {
  const host = hostInfo();
  const commit = measuredCommit(["ledger", "daemon", "scripts", "sim"], "(with uncommitted changes)");
  console.log(`bench-retention at ${commit} on ${host.cpu} (${host.cores} cores), ${host.node}; ${o.hours} h of chain time per size, pruner window ${o.keepMinutes} min`);
  const results: SizeResult[] = [];
  for (const n of o.premises) {
    const r = runSize(n, o);
    results.push(r);
    printTable(`${fmtInt(n)} premises: ${fmtInt(r.blocks)} blocks, ${fmtInt(r.readings)} readings, ${fmtInt(r.orders)} orders, ${r.rejected} rejected, ${r.seconds.toFixed(0)} s`, [
      ["in use each 5 min (MB)", r.samples.map((s) => s.inUseMB.toFixed(1)).join(" "), "", ""],
      ["file each 5 min (MB)", r.samples.map((s) => s.fileMB.toFixed(1)).join(" "), "", ""],
      ["bytes on disk a reading", r.readingBytes.toFixed(0), "", ""],
      ["raw readings a day (MB)", fmtInt(r.rawPerDayMB), "", ""],
      ["kept for ever a day (MB)", r.keptForeverPerDayMB.toFixed(1), "", ""],
      ["one checkpoint (MB)", r.checkpointMB.toFixed(2), "", ""],
      ["kept for ever a day by table (MB)", r.keptPerDay.slice(0, 7).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(", "), "", ""],
      ["largest tables at the end (MB, % of page bytes used)", Object.entries(r.tables).slice(0, 6).map(([k, v]) => `${k} ${v.toFixed(1)} (${((r.fill[k] ?? 0) * 100).toFixed(0)}%)`).join(", "), "", ""],
    ]);
    if (r.rejected > 0) process.exitCode = 1;
  }
  printTable(
    `A year on a 32 GB card (the ledger's share: ${o.budgetGB} GB)`,
    results.map((r) => {
      const p = yearPlan(r, o.budgetGB);
      const w = p.windowDays >= 1 ? `${p.windowDays.toFixed(1)} days` : `${(p.windowDays * 24).toFixed(0)} hours`;
      return [`${fmtInt(r.premises)} premises`, `keepReadingsDays ${(Math.floor(p.windowDays * 24) / 24).toFixed(2)} (${w})`, `kept for ever ${p.keptGB.toFixed(1)} GB/year`, `year total ${p.yearGB.toFixed(1)} GB`];
    }),
  );
  console.log(`\n(1 h = ${MS_PER_HOUR} ms of chain time; sizes in 10^6 / 10^9 bytes)`);
}

const options = readOptions(parseOptions, USAGE);
if (options !== null) await main(options);
