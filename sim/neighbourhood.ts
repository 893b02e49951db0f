// `peergrid sim`: a whole neighbourhood through the real cores, in simulated
// time. The world (loads, PV, the PCC meter, the grid monitor, the dispatch,
// breakers and the community battery) is sim/outage.ts's run, second by
// second; this file mirrors every second of it into a ledger kept by a few
// voting boxes (sim/ledger-cluster.ts: the real Raft core, block rules,
// mempool and state machine), as the boxes of the neighbourhood would:
//   - every premise is a member with a box and one meter at its connection;
//     its box signs a reading of the meter's import and export counters
//     every readingPeriodS (the meters integrate the world's power each
//     second) and submits it to a voter;
//   - the microgrid controller (voter 0's member) signs an `island`
//     transaction for each decision of the grid monitor and a `switch`
//     transaction for each breaker command of the dispatch, at the second
//     they happen;
//   - every box bids for its member with the product's own rule
//     (daemon/auto-bidder.ts planInterval: in the block that enters
//     interval S, a persistence forecast from the member's settled metered
//     energy, market/auto-bid.ts planBids, orders for S + I), with its
//     seeded policy (sim/outage.ts policiesFor: the islanded one while the
//     ledger says the microgrid is islanded);
//   - the ledger clears each interval and settles it against the metered
//     energy (market/interval.ts, inside applyBlock): every price, trade
//     and amount in the report is the ledger's.
//
// The shortcuts the issue allows, each named in the report (SHORTCUTS):
// consensus among `voters` boxes (the others submit to them), one state
// machine for the voters (sim/ledger-cluster.ts), readings every
// readingPeriodS (60 by default) instead of every second, and a stand-in
// for Ed25519 (sim/sim-ledger.ts SimSigner). None changes a price, a
// cleared or delivered Wh, or a dispatch decision:
//   - the dispatch and the monitor run in the world every second, whatever
//     the ledger does;
//   - a reading is taken at second 58 of its period. The boundary block of
//     an interval (the first block at or after S) is cut at S exactly, and
//     a transaction submitted at second t is in the block of t + 1 at the
//     earliest, so the last reading a boundary block settles against is the
//     one taken at S - 2 s: the one it would be with a reading every second.
//     A test runs a small neighbourhood both ways and compares every
//     settlement;
//   - signatures and the number of voters change only signature bytes and
//     block proposers: a test compares the clearings and settlements. One
//     thing does follow the signature bytes: a transaction's id is a hash
//     of its signed bytes, and the clearing breaks a tie between orders of
//     one price placed in one block by the lower id. Another scheme can
//     then pair a buyer with another of two tied sellers, which moves
//     individual members' amounts (by rounding and by whose export
//     delivers), never a price or a total volume. BENCHMARKS.md has a day
//     run with Ed25519 beside the stand-in.
import { assert } from "../ledger/assert.js";
import type { Block } from "../ledger/block.js";
import { parseGenesis } from "../ledger/genesis.js";
import { type Hash, parseHex, toHex } from "../ledger/hash.js";
import { COMMUNITY_ACCOUNT, GLOBAL_KEY, type GlobalRecord } from "../ledger/records.js";
import { type ApplyResult, type LedgerState, ResultCode, genesisState, makeChain, resultName } from "../ledger/state.js";
import { NodeSigner, NodeVerifier } from "../ledger/keys.js";
import { Quality, type SignedTx, type Signer, type TxBody, signTx } from "../ledger/tx.js";
import { planInterval } from "../daemon/auto-bidder.js";
import type { OpenOrder } from "../market/auto-bid.js";
import type { MarketOutcome } from "../market/interval.js";
import { createHash } from "node:crypto";
import { DEFAULT_SIM_CLUSTER, SimCluster, type SimClusterOptions } from "./ledger-cluster.js";
import { DEFAULT_OUTAGE, type OutageReport, type OutageScenario, checkScenario, clockOf, clockToMs, outageWindow } from "./outage.js";
import { type WorldMessage, type WorldPremise, type WorldReading, type WorldSecond, type WorldTotals, WorldThread, runWorld } from "./world.js";
import { SimSigner, simVerifier } from "./sim-ledger.js";
import { MS_PER_DAY, MS_PER_HOUR } from "./site.js";

const MS_PER_S = 1_000;
const S_PER_HOUR = 3_600;

export interface NeighbourhoodScenario {
  /** The world: premises, window, outage, battery, dispatch (sim/outage.ts). */
  readonly world: OutageScenario;
  /** Boxes in the Raft configuration; the other premises' boxes submit to them. */
  readonly voters: number;
  /** A box reads its meter and signs a reading this often (1: every second, as a real box). */
  readonly readingPeriodS: number;
  /** "stand-in" (default): sim/sim-ledger.ts's cheap stand-in; "ed25519": the real signatures (slow; tests compare the two). */
  readonly signatures?: "stand-in" | "ed25519";
  /** Raft timing and the simulated network (defaults: the daemon's timing, a LAN). */
  readonly cluster?: Partial<Omit<SimClusterOptions, "seed" | "voters" | "genesis" | "signers" | "verifier" | "startMs" | "onBlock">>;
}

export function checkNeighbourhood(s: NeighbourhoodScenario): string[] {
  const problems: string[] = [];
  if (!Number.isSafeInteger(s.voters) || s.voters < 1 || s.voters > 9) problems.push("voters: 1 to 9");
  if (!Number.isSafeInteger(s.readingPeriodS) || s.readingPeriodS < 1 || s.readingPeriodS > 300) problems.push("readingPeriodS: 1 to 300");
  return problems;
}

/** Raft's tick in `peergrid sim` (the daemon's is 100 ms): fewer heartbeats, on a network that loses nothing. */
export const SIM_TICK_MS = 500;

export const SHORTCUTS = (s: NeighbourhoodScenario): string[] => [
  `consensus among ${s.voters} voting boxes (the real Raft core, on a simulated LAN without faults, ticking every ${s.cluster?.tickMs ?? DEFAULT_SIM_CLUSTER.tickMs} ms); the ${s.world.critical + s.world.prosumers + s.world.consumers} premises' boxes submit to them`,
  "one ledger state machine for the voters: each committed block is applied once (every box computes the same state; the state roots prove it)",
  `meter readings every ${s.readingPeriodS} s (taken at second ${s.readingPeriodS === 1 ? "0" : `${s.readingPeriodS - 2}`} of each period, so every settlement matches 1 Hz readings)`,
  ...(s.world.calmStepS > 1 ? [`the dispatch runs every ${s.world.calmStepS} s while the grid is up and every breaker closed (its answer is then "all closed, no command"), every second otherwise`] : []),
  s.signatures === "ed25519"
    ? "real Ed25519 signatures (no shortcut)"
    : "a stand-in for Ed25519 (sim/sim-ledger.ts: 64 bytes mixed from the key and the message, not a signature); transaction ids hash the signed bytes, so between orders tied on price and block the pairing can differ from Ed25519's, moving members' amounts slightly, never a price or a volume",
];

export interface IntervalRow {
  readonly startMs: number;
  readonly clock: string;
  /** Offered and bid energy in the orders the ledger accepted for the interval. */
  readonly offeredWh: number;
  readonly bidWh: number;
  readonly buyOrders: number;
  readonly sellOrders: number;
  readonly priceMicroPerKWh: number | null;
  readonly clearedWh: number;
  /** From its settlement (one interval later); null until settled. */
  readonly deliveredWh: number | null;
  readonly islandedPermille: number | null;
  readonly meteredImportWh: number | null;
  readonly meteredExportWh: number | null;
}

export interface NeighbourhoodReport {
  readonly scenario: { readonly seed: number; readonly prosumers: number; readonly consumers: number; readonly critical: number; readonly startMs: number; readonly durationMs: number; readonly outageStartMs: number; readonly outageEndMs: number; readonly voters: number; readonly readingPeriodS: number; readonly batteryWh: number;
    /** The site of the realistic profiles (null: the issue 6 shapes, on UTC); every clock in the report is its local time. */
    readonly site: { readonly latitudeDeg: number; readonly longitudeDeg: number; readonly utcOffsetHours: number } | null;
    /** Prosumers with a home battery. */
    readonly batteries: number;
  };
  readonly shortcuts: readonly string[];
  readonly energy: {
    readonly demandKWh: number;
    readonly servedKWh: number;
    /** PV behind the meters of premises that were on, home batteries' charge and discharge netted in. */
    readonly pvKWh: number;
    readonly pvCurtailedKWh: number;
    /** At the point of common coupling: what the neighbourhood as a whole drew from and gave to the utility. */
    readonly gridImportKWh: number;
    readonly gridExportKWh: number;
    /** Share of the energy served that did not come from the utility. */
    readonly selfSufficiencyPpm: number;
    /** Share of the PV output used in the neighbourhood (not exported, not curtailed). */
    readonly selfConsumptionPpm: number;
  };
  readonly market: {
    readonly intervals: readonly IntervalRow[];
    readonly intervalsCleared: number;
    readonly clearedKWh: number;
    readonly deliveredKWh: number;
    /** Metered imports of the members over the settled periods, and the share of it delivered by local trades. */
    readonly meteredImportKWh: number;
    readonly tradedLocallyPpm: number;
    /** Volume-weighted mean, min and max of the clearing prices, micro per kWh (null: nothing cleared). */
    readonly priceMeanMicroPerKWh: number | null;
    readonly priceMinMicroPerKWh: number | null;
    readonly priceMaxMicroPerKWh: number | null;
    /** The members' net cost as settled, against the same metered energy at the utility's tariffs (no local market); micro. */
    readonly membersCostMicro: number;
    readonly baselineCostMicro: number;
    readonly savingsMicro: number;
    /** What the community account took in (fees, spread, islanded imbalance). */
    readonly communityFundMicro: number;
    readonly settlements: number;
  };
  readonly outage: Pick<OutageReport, "island" | "critical" | "shed" | "breakers" | "invariants" | "battery">;
  readonly ledger: {
    readonly blocks: number;
    readonly txs: number;
    readonly txsByType: Readonly<Record<string, number>>;
    readonly rejected: Readonly<Record<string, number>>;
    readonly txsPerSecond: number;
    readonly bytes: number;
    readonly blockBytesMean: number;
    readonly blockBytesMax: number;
    readonly blockTxsMax: number;
    readonly commitLatencyMs: { readonly p50: number; readonly p99: number; readonly max: number };
    readonly leaderChanges: number;
    readonly messages: number;
    readonly txsRefused: number;
    readonly txsLost: number;
    readonly height: number;
    /** The head block's hash: the same seed gives the same one. */
    readonly headHash: string;
    readonly stateRoot: string;
  };
}

export interface NeighbourhoodProgress {
  readonly doneS: number;
  readonly totalS: number;
  readonly height: number;
  readonly txs: number;
}

/** Seconds of ledger before the window, so the voters have a leader when the day starts. */
const LEAD_IN_S = 30;

/**
 * Run the scenario; `onProgress` is called every simulated 10 minutes. The world runs on a worker thread
 * (thread: true, the default) or first, in this one (the same chain either way).
 */
export async function runNeighbourhood(
  s: NeighbourhoodScenario,
  opts: { readonly onProgress?: (p: NeighbourhoodProgress) => void; readonly onBlock?: (block: Block, result: ApplyResult, bytes: number) => void; readonly thread?: boolean } = {},
): Promise<NeighbourhoodReport> {
  const problems = [...checkScenario(s.world), ...checkNeighbourhood(s)];
  assert(problems.length === 0, `neighbourhood: ${problems.join("; ")}`);
  const job = { world: s.world, readingPeriodS: s.readingPeriodS };
  if (opts.thread === false) {
    const messages: WorldMessage[] = [];
    runWorld(job, (m) => messages.push(m));
    return new NeighbourhoodRun(s, opts.onProgress, opts.onBlock).run(async () => messages.shift() as WorldMessage);
  }
  const world = new WorldThread(job);
  try {
    return await new NeighbourhoodRun(s, opts.onProgress, opts.onBlock).run(() => world.next());
  } finally {
    await world.close();
  }
}

interface Interval {
  startMs: number;
  offeredWh: number;
  bidWh: number;
  buyOrders: number;
  sellOrders: number;
  priceMicroPerKWh: number | null;
  clearedWh: number;
  deliveredWh: number | null;
  islandedPermille: number | null;
  meteredImportWh: number | null;
  meteredExportWh: number | null;
}

class NeighbourhoodRun {
  private cluster!: SimCluster;
  private premises: readonly WorldPremise[] = [];
  private readonly signers: Signer[] = [];
  private readonly seqs: number[] = [];
  private chainHash!: Uint8Array;
  private readonly intervals = new Map<number, Interval>();
  private readonly latencies: number[] = [];
  private readonly byType = new Map<string, number>();
  private readonly rejected = new Map<string, number>();
  private blocks = 0;
  private txs = 0;
  private bytes = 0;
  private blockBytesMax = 0;
  private blockTxsMax = 0;
  private money = { members: 0, baseline: 0, community: 0, settlements: 0, meteredImportWh: 0 };

  constructor(
    private readonly s: NeighbourhoodScenario,
    private readonly onProgress: ((p: NeighbourhoodProgress) => void) | undefined,
    private readonly onBlockSeen: ((block: Block, result: ApplyResult, bytes: number) => void) | undefined,
  ) {}

  async run(next: () => Promise<WorldMessage>): Promise<NeighbourhoodReport> {
    const init = await next();
    assert(init.type === "init", "the world starts with its premises");
    this.start(init.premises, init.start);
    const dayStartMs = this.s.world.dayStartMs;
    const totalS = this.s.world.durationMs / MS_PER_S;
    for (;;) {
      const m = await next();
      if (m.type === "end") {
        // Let the last blocks commit: the window's end is a boundary, settled by the next block.
        this.cluster.runUntil(this.cluster.nowMs + 3 * MS_PER_S);
        return this.report(m.report, m.totals);
      }
      assert(m.type === "minute", "minutes, then the end");
      const from = dayStartMs + m.minute.index * 60_000;
      assert(this.cluster.nowMs === from, "the world's minutes come in order");
      let k = 0;
      let r = 0;
      for (let t = from; t < from + 60_000; t += MS_PER_S) {
        const sec = m.minute.seconds[k];
        if (sec !== undefined && sec.timeMs === t) {
          this.controller(sec);
          k++;
        }
        this.cluster.runUntil(t + MS_PER_S);
        const reading = m.minute.readings[r];
        if (reading !== undefined && reading.timeMs === t + MS_PER_S) {
          this.submitReadings(reading);
          r++;
        }
        const done = (t + MS_PER_S - dayStartMs) / MS_PER_S;
        if (this.onProgress !== undefined && done % 600 === 0) this.onProgress({ doneS: done, totalS, height: this.cluster.state.height, txs: this.txs });
      }
      assert(k === m.minute.seconds.length && r === m.minute.readings.length, "every second of the minute taken");
    }
  }

  /** The genesis (the voters, then a member per premise), the voters, and the lead-in up to the window. */
  private start(premises: readonly WorldPremise[], first: WorldReading): void {
    const s = this.s;
    this.premises = premises;
    const members = [];
    for (let i = 0; i < s.voters + premises.length; i++) {
      const key = new Uint8Array(createHash("sha256").update(`peergrid-sim-${s.world.seed}-member-${i}`).digest());
      const signer = s.signatures === "ed25519" ? new NodeSigner(key) : new SimSigner(key);
      this.signers.push(signer);
      this.seqs.push(0);
      const p = premises[i - s.voters];
      const roles = p === undefined ? (i === 0 ? ["box", "admin", "controller"] : ["box"]) : p.pvPeakW > 0 ? ["box", "renewable"] : ["box"];
      members.push({ name: p === undefined ? `voter-${i + 1}` : p.label, publicKey: toHex(signer.publicKey), roles });
    }
    const startMs = s.world.dayStartMs - LEAD_IN_S * MS_PER_S;
    const genesis = parseGenesis({ chainId: `peergrid-sim-${s.world.seed}`, genesisTimeMs: startMs, members });
    const chain = makeChain(genesis);
    this.chainHash = chain.hash;
    this.cluster = new SimCluster({
      ...DEFAULT_SIM_CLUSTER,
      ...s.cluster,
      seed: s.world.seed,
      voters: s.voters,
      genesis: genesisState(chain),
      signers: this.signers,
      verifier: s.signatures === "ed25519" ? new NodeVerifier() : simVerifier,
      startMs,
      onBlock: (block, result, bytes, latencyMs) => this.onBlock(block, result, bytes, latencyMs),
    });
    // The lead-in: an election and a few empty blocks, then the first readings (baselines) just before the day.
    this.cluster.runUntil(first.timeMs);
    this.submitReadings(first);
    this.cluster.runUntil(s.world.dayStartMs);
  }

  private memberOf(premiseIndex: number): number {
    return this.s.voters + premiseIndex;
  }

  private sign(member: number, body: TxBody): SignedTx {
    const seq = (this.seqs[member] as number) + 1;
    this.seqs[member] = seq;
    return signTx({ author: member, seq, body }, this.signers[member] as Signer, this.chainHash);
  }

  private submit(member: number, body: TxBody): void {
    this.cluster.submit(this.sign(member, body), member);
  }

  /** The controller (voter 0's member) records the monitor's decisions and the dispatch's commands as they happen. */
  private controller(sec: WorldSecond): void {
    for (const e of sec.events) this.submit(0, { type: "island", islanded: e.islanded, timeMs: e.timeMs, reason: e.reason, measured: e.measured });
    for (const w of sec.switches) {
      this.submit(0, { type: "switch", premise: this.memberOf(w.premise), breaker: 0, close: w.close, readback: w.readback, timeMs: sec.timeMs, reason: w.reason, supplyW: w.supplyW, demandW: w.demandW });
    }
  }

  private submitReadings(r: WorldReading): void {
    for (let i = 0; i < this.premises.length; i++) {
      this.submit(this.memberOf(i), {
        type: "reading",
        meterId: 0,
        timeMs: r.timeMs,
        importWh: r.importWh[i] as number,
        exportWh: r.exportWh[i] as number,
        powerW: 0,
        voltagesDeciV: [2_300],
        frequencyMilliHz: 50_000,
        quality: Quality.good,
      });
    }
  }

  // ---- the ledger's side ----

  private onBlock(block: Block, result: ApplyResult, bytes: number, latencyMs: number): void {
    this.blocks++;
    this.txs += block.txs.length;
    this.bytes += bytes;
    this.blockBytesMax = Math.max(this.blockBytesMax, bytes);
    this.blockTxsMax = Math.max(this.blockTxsMax, block.txs.length);
    this.latencies.push(latencyMs);
    block.txs.forEach((t, k) => {
      const type = t.tx.body.type;
      this.byType.set(type, (this.byType.get(type) ?? 0) + 1);
      const code = result.results[k] as ResultCode;
      if (code !== ResultCode.ok) {
        const name = `${type}: ${resultName(code)}`;
        this.rejected.set(name, (this.rejected.get(name) ?? 0) + 1);
        return;
      }
      const b = t.tx.body;
      if (b.type === "order") {
        const iv = this.interval(b.intervalStartMs);
        if (b.side === "sell") {
          iv.offeredWh += b.energyWh;
          iv.sellOrders++;
        } else {
          iv.bidWh += b.energyWh;
          iv.buyOrders++;
        }
      }
    });
    if (result.market !== null) {
      this.record(result.market);
      this.bid(result.state, result.market);
    }
    this.onBlockSeen?.(block, result, bytes);
  }

  private interval(startMs: number): Interval {
    let iv = this.intervals.get(startMs);
    if (iv === undefined) {
      iv = { startMs, offeredWh: 0, bidWh: 0, buyOrders: 0, sellOrders: 0, priceMicroPerKWh: null, clearedWh: 0, deliveredWh: null, islandedPermille: null, meteredImportWh: null, meteredExportWh: null };
      this.intervals.set(startMs, iv);
    }
    return iv;
  }

  private record(m: MarketOutcome): void {
    const c = m.clearing;
    const cleared = this.interval(c.intervalStartMs);
    cleared.priceMicroPerKWh = c.volumeWh > 0 ? c.priceMicroPerKWh : null;
    cleared.clearedWh = c.volumeWh;
    const st = m.settlement;
    const intervalMs = this.cluster.state.chain.genesis.market.intervalMs;
    const settled = this.interval(st.periodEndMs - intervalMs);
    let importWh = 0;
    let exportWh = 0;
    for (const e of st.metered) {
      importWh += e.importWh;
      exportWh += e.exportWh;
      this.money.baseline += Math.floor((e.importWh * st.tariffs.utilityImportMicroPerKWh) / 1_000) - Math.floor((e.exportWh * st.tariffs.utilityExportMicroPerKWh) / 1_000);
    }
    for (const tr of st.transfers) {
      if (typeof tr.from === "number") this.money.members += tr.amountMicro;
      if (typeof tr.to === "number") this.money.members -= tr.amountMicro;
      if (tr.to === COMMUNITY_ACCOUNT) this.money.community += tr.amountMicro;
      if (tr.from === COMMUNITY_ACCOUNT) this.money.community -= tr.amountMicro;
    }
    settled.deliveredWh = st.deliveredWh.reduce((a, x) => a + x, 0);
    settled.islandedPermille = st.islandedPermille;
    settled.meteredImportWh = importWh;
    settled.meteredExportWh = exportWh;
    this.money.meteredImportWh += importWh;
    this.money.settlements++;
  }

  /** Every box plans its member's orders for the next interval, as daemon/auto-bidder.ts does, in the block that entered this one. */
  private bid(state: LedgerState, m: MarketOutcome): void {
    const target = m.boundaryMs + state.chain.genesis.market.intervalMs;
    const open = new Map<number, OpenOrder[]>();
    for (const { value: r } of state.tree.entries()) {
      if (r.kind !== "order" || r.intervalStartMs !== target) continue;
      const list = open.get(r.author) ?? [];
      list.push({ id: toHex(r.id), side: r.side, energyWh: r.energyWh, priceMicroPerKWh: r.priceMicroPerKWh });
      open.set(r.author, list);
    }
    const global = state.tree.get(GLOBAL_KEY) as GlobalRecord | undefined;
    const islanded = global !== undefined && global.islandedSinceMs >= 0;
    for (let i = 0; i < this.premises.length; i++) {
      const member = this.memberOf(i);
      const policies = this.premises[i]?.policies;
      assert(policies !== undefined, "a policy per premise");
      const plan = planInterval(state, m, member, islanded ? policies.islanded : policies.connected, open.get(member) ?? []);
      if (plan.kind !== "plan") continue;
      for (const id of plan.plan.cancel) this.submit(member, { type: "cancel", orderId: parseHex(id, 32) as Hash });
      for (const o of plan.plan.place) {
        this.submit(member, { type: "order", side: o.side, energyWh: o.energyWh, priceMicroPerKWh: o.priceMicroPerKWh, intervalStartMs: plan.targetStartMs, expiresAtMs: plan.expiresAtMs, flags: 0, counterparty: null });
      }
    }
  }

  // ---- the report ----

  private report(o: OutageReport, p: WorldTotals): NeighbourhoodReport {
    const w = this.s.world;
    const kWh = (j: number) => Math.round(j / S_PER_HOUR) / 1_000;
    const ppm = (part: number, whole: number) => (whole <= 0 ? 0 : Math.floor((part * 1_000_000) / whole));
    const site = w.profiles?.site;
    const offsetMs = site === undefined ? 0 : site.utcOffsetHours * MS_PER_HOUR;
    const rows = [...this.intervals.values()]
      .filter((iv) => iv.startMs >= w.dayStartMs && iv.startMs < w.dayStartMs + w.durationMs)
      .sort((a, b) => a.startMs - b.startMs)
      .map((iv): IntervalRow => ({ ...iv, clock: clockOf(iv.startMs + offsetMs).slice(0, 5) }));
    const priced = rows.filter((r) => r.priceMicroPerKWh !== null && r.clearedWh > 0);
    const clearedWh = priced.reduce((a, r) => a + r.clearedWh, 0);
    const deliveredWh = rows.reduce((a, r) => a + (r.deliveredWh ?? 0), 0);
    const prices = priced.map((r) => r.priceMicroPerKWh as number);
    const lat = [...this.latencies].sort((a, b) => a - b);
    const pick = (q: number) => (lat.length === 0 ? 0 : (lat[Math.min(lat.length - 1, Math.floor(q * lat.length))] as number));
    const head = this.cluster.state;
    return {
      scenario: { seed: w.seed, prosumers: w.prosumers, consumers: w.consumers, critical: w.critical, startMs: w.dayStartMs, durationMs: w.durationMs, outageStartMs: w.outageStartMs, outageEndMs: w.outageEndMs, voters: this.s.voters, readingPeriodS: this.s.readingPeriodS, batteryWh: w.batteryWh,
        site: site === undefined ? null : { latitudeDeg: site.latitudeDeg, longitudeDeg: site.longitudeDeg, utcOffsetHours: site.utcOffsetHours },
        batteries: w.profiles?.batteries ?? 0,
      },
      shortcuts: SHORTCUTS(this.s),
      energy: {
        demandKWh: kWh(p.demandJ),
        servedKWh: kWh(p.servedJ),
        pvKWh: kWh(p.supplyJ),
        pvCurtailedKWh: kWh(p.curtailedJ),
        gridImportKWh: kWh(p.gridImportJ),
        gridExportKWh: kWh(p.gridExportJ),
        selfSufficiencyPpm: ppm(p.servedJ - p.gridImportJ, p.servedJ),
        selfConsumptionPpm: ppm(p.supplyJ - p.gridExportJ - p.curtailedJ, p.supplyJ),
      },
      market: {
        intervals: rows,
        intervalsCleared: priced.length,
        clearedKWh: clearedWh / 1_000,
        deliveredKWh: deliveredWh / 1_000,
        meteredImportKWh: this.money.meteredImportWh / 1_000,
        tradedLocallyPpm: ppm(deliveredWh, this.money.meteredImportWh),
        priceMeanMicroPerKWh: clearedWh === 0 ? null : Math.floor(priced.reduce((a, r) => a + (r.priceMicroPerKWh as number) * r.clearedWh, 0) / clearedWh),
        priceMinMicroPerKWh: prices.length === 0 ? null : prices.reduce((a, x) => Math.min(a, x)),
        priceMaxMicroPerKWh: prices.length === 0 ? null : prices.reduce((a, x) => Math.max(a, x)),
        membersCostMicro: this.money.members,
        baselineCostMicro: this.money.baseline,
        savingsMicro: this.money.baseline - this.money.members,
        communityFundMicro: this.money.community,
        settlements: this.money.settlements,
      },
      outage: { island: o.island, critical: o.critical, shed: o.shed, breakers: o.breakers, invariants: o.invariants, battery: o.battery },
      ledger: {
        blocks: this.blocks,
        txs: this.txs,
        txsByType: Object.fromEntries([...this.byType].sort()),
        rejected: Object.fromEntries([...this.rejected].sort()),
        txsPerSecond: Math.round((this.txs * 1_000 * MS_PER_S) / w.durationMs) / 1_000,
        bytes: this.bytes,
        blockBytesMean: this.blocks === 0 ? 0 : Math.round(this.bytes / this.blocks),
        blockBytesMax: this.blockBytesMax,
        blockTxsMax: this.blockTxsMax,
        commitLatencyMs: { p50: pick(0.5), p99: pick(0.99), max: lat.length === 0 ? 0 : (lat[lat.length - 1] as number) },
        leaderChanges: this.cluster.stats.leaderChanges,
        messages: this.cluster.stats.messages,
        txsRefused: this.cluster.stats.txsRefused,
        txsLost: this.cluster.stats.txsLost,
        height: head.height,
        headHash: toHex(head.blockHash),
        stateRoot: toHex(head.tree.root),
      },
    };
  }
}

// ---- from the command line's words to a scenario ----

/** What `peergrid sim` asks for, in a person's units. */
export interface SimOptions {
  readonly seed: number;
  readonly prosumers: number;
  /** Of the prosumers, how many have a home battery. */
  readonly batteries: number;
  readonly consumers: number;
  readonly critical: number;
  readonly days: number;
  /** A run of this many whole hours instead of `days` (a quick look); null or absent: `days`. */
  readonly hours?: number | null;
  /** The first local day, YYYY-MM-DD (the season follows from it). */
  readonly date: string;
  /** Local time of day the run starts, HH:MM. */
  readonly start: string;
  /** Local "HH:MM-HH:MM" (an end at or before its start is the next day), or null: no outage. */
  readonly outage: string | null;
  readonly voters: number;
  readonly readingPeriodS: number;
  readonly latitudeDeg: number;
  readonly longitudeDeg: number;
  readonly utcOffsetHours: number;
  /** The community battery, kWh and kW. */
  readonly batteryKWh: number;
  readonly batteryKW: number;
}

export const DEFAULT_SIM_OPTIONS: SimOptions = {
  seed: 1,
  prosumers: 60,
  batteries: 15,
  consumers: 500,
  critical: 3,
  days: 1,
  date: "2025-06-21",
  start: "00:00",
  outage: null,
  voters: 5,
  readingPeriodS: 60,
  latitudeDeg: 51.5,
  longitudeDeg: -0.13,
  utcOffsetHours: 0,
  batteryKWh: 200,
  batteryKW: 100,
};


function clockMs(text: string, what: string): number {
  try {
    return clockToMs(text);
  } catch (err) {
    throw new RangeError(`${what}: ${(err as Error).message}`);
  }
}

/** The scenario the options describe; a RangeError names the first option that is wrong and why. */
export function scenarioFrom(o: SimOptions): NeighbourhoodScenario {
  const whole = (k: keyof SimOptions, lo: number, hi: number) => {
    const v = o[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < lo || v > hi) throw new RangeError(`${k}: a whole number from ${lo} to ${hi}, got ${String(v)}`);
  };
  whole("seed", 0, 2 ** 32 - 1);
  whole("prosumers", 0, 10_000);
  whole("consumers", 0, 10_000);
  whole("critical", 0, 100);
  whole("batteries", 0, o.prosumers);
  whole("days", 1, 366);
  const hours = o.hours ?? null;
  if (hours !== null) whole("hours", 1, 366 * 24);
  whole("voters", 1, 9);
  whole("readingPeriodS", 1, 300);
  whole("batteryKWh", 0, 1_000_000);
  whole("batteryKW", 0, 1_000_000);
  if (o.prosumers + o.consumers + o.critical < 1) throw new RangeError("premises: at least one prosumer, consumer or critical site");
  if (!(Math.abs(o.latitudeDeg) <= 66)) throw new RangeError(`latitude: -66 to 66 degrees (the sun models need a sunrise every day), got ${o.latitudeDeg}`);
  if (!(Math.abs(o.longitudeDeg) <= 180)) throw new RangeError(`longitude: -180 to 180 degrees, got ${o.longitudeDeg}`);
  if (!(Math.abs(o.utcOffsetHours) <= 14) || !Number.isInteger(o.utcOffsetHours * 4)) throw new RangeError(`utcOffsetHours: -14 to 14 in quarter hours, got ${o.utcOffsetHours}`);
  const d = /^(\d{4})-(\d{2})-(\d{2})$/.exec(o.date);
  const dayMs = d === null ? NaN : Date.UTC(Number(d[1]), Number(d[2]) - 1, Number(d[3]));
  if (d === null || Number.isNaN(dayMs) || new Date(dayMs).toISOString().slice(0, 10) !== o.date) throw new RangeError(`date: a calendar day YYYY-MM-DD, got "${o.date}"`);
  const midnightMs = dayMs - o.utcOffsetHours * MS_PER_HOUR; // the first day's local midnight
  const dayStartMs = midnightMs + clockMs(o.start, "start");
  const durationMs = hours === null ? o.days * MS_PER_DAY : hours * MS_PER_HOUR;
  const span = hours === null ? `${o.days} day${o.days === 1 ? "" : "s"}` : `${hours} h`;
  let outageStartMs = dayStartMs;
  let outageEndMs = dayStartMs; // empty: no outage
  if (o.outage !== null) {
    if (o.outage.split("-").length !== 2) throw new RangeError(`outage: HH:MM-HH:MM, got "${o.outage}"`);
    try {
      ({ outageStartMs, outageEndMs } = outageWindow(o.start, o.outage, midnightMs));
    } catch (err) {
      throw new RangeError(`outage: ${(err as Error).message}`);
    }
    if (outageEndMs > dayStartMs + durationMs) throw new RangeError(`outage: ${o.outage} ends after the run (${span} from ${o.start}); run more ${hours === null ? "--days" : "--hours"} or end it sooner`);
  }
  const world: OutageScenario = {
    ...DEFAULT_OUTAGE,
    seed: o.seed,
    prosumers: o.prosumers,
    consumers: o.consumers,
    critical: o.critical,
    dayStartMs,
    durationMs,
    outageStartMs,
    outageEndMs,
    batteryWh: o.batteryKWh * 1_000,
    batteryMaxW: o.batteryKW * 1_000,
    calmStepS: 10,
    profiles: { site: { latitudeDeg: o.latitudeDeg, longitudeDeg: o.longitudeDeg, utcOffsetHours: o.utcOffsetHours }, batteries: o.batteries },
  };
  const s: NeighbourhoodScenario = { world, voters: o.voters, readingPeriodS: o.readingPeriodS, cluster: { tickMs: SIM_TICK_MS } };
  const problems = [...checkScenario(world), ...checkNeighbourhood(s)];
  if (problems.length > 0) throw new RangeError(problems.join("; "));
  return s;
}
