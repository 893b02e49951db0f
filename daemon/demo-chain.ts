// The demonstration chain, `peergrid demo-chain`: a small neighbourhood's
// chain built in one process through the real ledger code paths (keys,
// signed readings from simple solar and load curves, orders, a cancel, an
// enrolment, a replayed transaction that must be rejected, signed blocks,
// the SQLite store), then audited with `verify`. Everything derives from one
// seed: the same seed gives the same chain hash. (It was `peergrid demo`
// before the boxes could run a neighbourhood; that is now daemon/demo.ts.)
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Genesis, parseGenesis } from "../ledger/genesis.js";
import { toHex } from "../ledger/hash.js";
import { NodeSigner, NodeVerifier } from "../ledger/keys.js";
import { Ledger, ledgerPath } from "../ledger/ledger.js";
import { LedgerStore } from "../ledger/store.js";
import { type LedgerState, ResultCode } from "../ledger/state.js";
import { type SignedTx, type TxBody, Quality, signTx } from "../ledger/tx.js";
import { type VerifyReport, verifyChain } from "../ledger/verify.js";
import { seededSigner, solarW } from "../sim/profiles.js";
import { Rng } from "../sim/rng.js";
import { prepareDemoDir, releaseDemoDir } from "./demo-dir.js";

export interface DemoChainOptions {
  readonly dataDir: string;
  readonly boxes: number;
  readonly neighbours: number;
  readonly seconds: number;
  readonly seed: number;
  readonly log: (line: string) => void;
}

export interface DemoChainResult {
  readonly blocks: number;
  readonly accepted: number;
  readonly rejected: number;
  readonly chainHash: string;
  readonly headHash: string;
  readonly report: VerifyReport;
  /** Starts of the market intervals cleared on the chain. */
  readonly intervals: readonly number[];
}

const DEMO_START_MS = Date.UTC(2026, 5, 21, 11, 0, 0); // midsummer, late morning: the panels produce

interface DemoMeter {
  readonly box: number; // member index
  readonly signer: NodeSigner;
  readonly solarPeakW: number;
  readonly baseLoadW: number;
  importMilliWh: number;
  exportMilliWh: number;
  seq: number;
}

export function buildDemoChain(opts: DemoChainOptions): DemoChainResult {
  prepareDemoDir(opts.dataDir, "peergrid demo-chain");
  const rng = new Rng(opts.seed);
  const boxSigners = Array.from({ length: opts.boxes }, () => seededSigner(rng));
  const neighbourSigners = Array.from({ length: opts.neighbours }, () => seededSigner(rng));
  const genesis: Genesis = parseGenesis({
    chainId: "demo-neighbourhood",
    genesisTimeMs: DEMO_START_MS,
    // Every other box has solar panels (see solarPeakW below): the renewable role lets neighbours buy from it as local renewable.
    members: boxSigners.map((s, i) => ({
      name: `box-${i + 1}`,
      publicKey: toHex(s.publicKey),
      roles: [...(i === 0 ? ["box", "admin"] : ["box", "user"]), ...(i % 2 === 0 ? ["renewable"] : [])],
    })),
    market: { intervalMs: 60_000 },
  });
  writeFileSync(join(opts.dataDir, "genesis.json"), JSON.stringify(genesis, null, 2) + "\n");
  const verifier = new NodeVerifier();
  const ledger = Ledger.create(opts.dataDir, genesis, verifier);
  const chainHash = ledger.state.chain.hash;
  opts.log(`chain "${genesis.chainId}" ${toHex(chainHash).slice(0, 16)}… with ${opts.boxes} boxes; building ${opts.seconds} one-second blocks`);

  const meters: DemoMeter[] = boxSigners.map((signer, box) => ({
    box,
    signer,
    solarPeakW: box % 2 === 0 ? rng.int(3_000, 6_000) : 0, // every other box is a prosumer
    baseLoadW: rng.int(250, 900),
    importMilliWh: rng.int(1_000_000, 9_000_000) * 1000,
    exportMilliWh: rng.int(0, 2_000_000) * 1000,
    seq: 0,
  }));
  const neighbourSeq = neighbourSigners.map(() => 0);
  const admin = meters[0] as DemoMeter;
  let accepted = 0;
  let rejected = 0;
  let replay: SignedTx | null = null;
  let openOrder = null as { tx: SignedTx; by: number } | null;

  // Every other box has solar panels: they sell; the others buy what they use.
  for (let s = 1; s <= opts.seconds; s++) {
    const secondMs = DEMO_START_MS + s * 1000;
    const txs: SignedTx[] = [];
    const sign = (author: number, signer: NodeSigner, seq: number, body: TxBody) => signTx({ author, seq, body }, signer, chainHash);

    if (s === 1) {
      // The admin box enrols the neighbours who have no box of their own.
      neighbourSigners.forEach((n, i) => {
        txs.push(sign(admin.box, admin.signer, ++admin.seq, { type: "member", action: "enrol", publicKey: n.publicKey, roles: 2, name: `neighbour-${i + 1}` }));
      });
    }
    for (const m of meters) {
      const powerW = m.baseLoadW + rng.int(0, 400) - solarW(m.solarPeakW, secondMs, rng);
      if (powerW >= 0) m.importMilliWh += Math.round((powerW * 1000) / 3600);
      else m.exportMilliWh += Math.round((-powerW * 1000) / 3600);
      const reading = sign(m.box, m.signer, ++m.seq, {
        type: "reading",
        meterId: 0,
        timeMs: secondMs,
        importWh: Math.floor(m.importMilliWh / 1000),
        exportWh: Math.floor(m.exportMilliWh / 1000),
        powerW,
        voltagesDeciV: [2300 + rng.int(-40, 40), 2300 + rng.int(-40, 40), 2300 + rng.int(-40, 40)],
        frequencyMilliHz: 50_000 + rng.int(-50, 50),
        quality: Quality.good,
      });
      txs.push(reading);
      if (s === 5 && m.box === 1) replay = reading;
    }
    if (s === 10 && replay !== null) txs.push(replay); // a replay: must be rejected as a stale sequence
    if (s % 60 === 15) {
      const nextInterval = secondMs - (secondMs % 60_000) + 60_000;
      for (const m of meters.filter((x) => x.solarPeakW > 0)) {
        txs.push(sign(m.box, m.signer, ++m.seq, { type: "order", side: "sell", energyWh: rng.int(10, 60), priceMicroPerKWh: rng.int(80_000, 120_000), intervalStartMs: nextInterval, expiresAtMs: nextInterval + 60_000, flags: 0, counterparty: null }));
      }
      for (const m of meters.filter((x) => x.solarPeakW === 0)) {
        txs.push(sign(m.box, m.signer, ++m.seq, { type: "order", side: "buy", energyWh: rng.int(5, 20), priceMicroPerKWh: rng.int(90_000, 140_000), intervalStartMs: nextInterval, expiresAtMs: nextInterval + 60_000, flags: 0, counterparty: null }));
      }
      neighbourSigners.forEach((n, i) => {
        const author = opts.boxes + i;
        const tx = sign(author, n, ++neighbourSeq[i]!, { type: "order", side: "buy", energyWh: rng.int(10, 50), priceMicroPerKWh: rng.int(100_000, 160_000), intervalStartMs: nextInterval, expiresAtMs: nextInterval + 60_000, flags: 1, counterparty: null });
        txs.push(tx);
        if (openOrder === null) openOrder = { tx, by: i };
      });
    }
    if (s % 60 === 30 && openOrder !== null) {
      const { tx, by } = openOrder;
      txs.push(sign(opts.boxes + by, neighbourSigners[by] as NodeSigner, ++neighbourSeq[by]!, { type: "cancel", orderId: tx.id }));
      openOrder = null;
    }
    const proposer = (s - 1) % opts.boxes;
    const block = ledger.propose(txs, boxSigners[proposer] as NodeSigner, proposer, secondMs + 250, 1, s);
    const { results } = ledger.append(block);
    for (const r of results) r === ResultCode.ok ? accepted++ : rejected++;
  }
  const head = ledger.state;
  ledger.close();
  opts.log(`built ${head.height} blocks: ${accepted} transactions accepted, ${rejected} rejected (a deliberate replay)`);
  opts.log("auditing the chain from genesis (peergrid verify)…");
  const store = LedgerStore.open(ledgerPath(opts.dataDir), { readonly: true });
  try {
    const report = verifyChain(store, new NodeVerifier());
    const market = marketSummary(store, head, opts.dataDir);
    for (const line of market.lines) opts.log(line);
    return { blocks: head.height, accepted, rejected, chainHash: toHex(chainHash), headHash: toHex(head.blockHash), report, intervals: market.intervals };
  } finally {
    store.close();
    releaseDemoDir(opts.dataDir);
  }
}

const money = (micro: number) => (micro / 1e6).toFixed(4);

/** What the market did on the demo chain: each clearing and settlement, and the balances at the end. */
function marketSummary(store: LedgerStore, head: LedgerState, dataDir: string): { lines: string[]; intervals: number[] } {
  const lines = ["", "market (one-minute intervals; a shadow market: balances are shown, no money is owed):"];
  const intervals = store.marketIntervals(Number.MAX_SAFE_INTEGER, 1_000).reverse();
  for (const c of intervals) {
    const when = new Date(c.startMs).toISOString().slice(11, 16);
    const delivered = c.trades.every((t) => t.deliveredWh !== null) ? `, ${c.trades.reduce((a, t) => a + (t.deliveredWh ?? 0), 0)} Wh delivered` : ", not settled yet";
    const price = c.priceMicroPerKWh === null ? "no price" : `price ${money(c.priceMicroPerKWh)}/kWh`;
    lines.push(`  ${when} UTC  ${c.buyOrders} buys, ${c.sellOrders} sells -> ${price}, ${c.trades.length} trades, ${c.volumeWh} Wh${c.trades.length > 0 ? delivered : ""}`);
  }
  const balances = [...head.tree.entries()].flatMap((e) => (e.value.kind === "balance" ? [e.value] : []));
  balances.sort((a, b) => String(a.account).localeCompare(String(b.account), "en", { numeric: true }));
  lines.push(`  balances: ${balances.map((b) => `${typeof b.account === "number" ? `member ${b.account}` : b.account} ${money(b.balanceMicro)}`).join(", ")}`);
  const traded = intervals.find((c) => c.trades.length > 0);
  if (traded !== undefined) lines.push(`  re-derive one from the chain: peergrid market replay ${dataDir} --interval ${new Date(traded.startMs).toISOString()}`);
  return { lines, intervals: intervals.map((c) => c.startMs) };
}
