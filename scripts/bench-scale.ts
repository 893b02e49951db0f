// Scale study, the measured part (issue 8, point 4): `npm run bench:scale`
// (builds, then runs dist/scripts/bench-scale.js; `-- --quick` for a short
// run, `-- --help`). For each neighbourhood size N (default 10, 100 and 1,000
// metered premises, each read once a second: N readings a second in all), a
// fresh 5-box LocalCluster: real `peergrid start` processes on loopback, real
// Ed25519, SQLite and Raft over TCP. Each box signs N/5 readings a second of
// N/5 simulated meters (--synthetic-readings, through node.submit, as the
// meter loop does). After a warm-up (then the commit latencies are reset:
// status ?resetLatency=true, from loopback), over the measured window:
//
//   disk      each box's data directory at the start and the end of the
//             window, by file: the ledger (ledger.sqlite, -wal, -shm) and the
//             Raft log (raft.sqlite, -wal, -shm); and the ledger's size as
//             SQLite counts it (page_count x page_size through a short
//             read-only connection): what ledger.sqlite holds once the WAL is
//             checkpointed, whatever the -wal file's high-water mark. Ledger
//             growth is the latter's, per second, x 86,400 a day, x 365 a
//             year. The Raft log is compacted (DEFAULT_COMPACTION keeps 120 to
//             240 entries), so its size is bounded rather than growing, but
//             the first compaction comes after ~240 blocks: within a shorter
//             window it grows, and is reported apart. Disk writes: each box's
//             write_bytes (/proc/PID/io, every thread: WAL frames, checkpoints
//             and the Raft log, counted when the pages are dirtied).
//   blocks    from the committed chain (the leader's ledger, read after the
//             boxes stopped): the blocks cut in the window, their transactions
//             and their encoded size (encodeBlock: what the leader proposes
//             through Raft); blocks per second.
//   CPU       each box's utime + stime (/proc/PID/stat) sampled every second:
//             the median and max of the 1-s samples and the window's mean; its
//             main thread's mean (/proc/PID/task/PID/stat: the event loop; the
//             signature checks, the Raft log and the ledger checkpoints run on
//             worker threads); RSS (VmRSS). CPU per reading: the box's
//             CPU-seconds per second / the readings committed per second,
//             leader and followers.
//   latency   commit latency from submission at each box (status
//             commitLatencyMs): the median box's p50, the worst box's p99.
//   verify    the bare Ed25519 verify rate on one thread (NodeVerifier), for
//             scaling the per-reading cost to another CPU.
//
// All five boxes share this machine's cores: per-box CPU is measured while
// sharing them. "Foreign CPU" is what the machine spent outside this script's
// process tree in the window (other users' work, the hypervisor's steal);
// with any of it the figures are lower bounds.
import { readFileSync, readdirSync, statSync } from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import Database from "better-sqlite3";
import { waitFor } from "../daemon/local-cluster.js";
import { RAFT_LOG_FILE, type NodeStatus } from "../daemon/node.js";
import { encodeBlock } from "../ledger/block.js";
import { LEDGER_FILE, ledgerPath } from "../ledger/ledger.js";
import { LedgerStore } from "../ledger/store.js";
import { METER_ID_MAX } from "../ledger/tx.js";
import {
  type ChainWindow,
  chainWindow,
  clockTicksPerS,
  CpuMeter,
  cpuSplit,
  cpuTicks,
  fmtInt,
  foreignCpuPercent,
  hostInfo,
  measuredCommit,
  median,
  pct,
  positiveInt,
  positiveIntList,
  printTable,
  r1,
  range,
  readOptions,
  type Row,
  rssMB,
  sleep,
  statusesOf,
  verifyRate,
  withLocalCluster,
} from "./bench-common.js";

// ---------------------------------------------------------------- options

interface Options {
  readonly quick: boolean;
  readonly premises: readonly number[];
  readonly boxes: number;
  readonly warmupS: number;
  readonly windowS: number;
  readonly dir: string;
  readonly keep: boolean;
}

const SIZES_MAX = 5;
const METERS_PER_BOX_MAX = METER_ID_MAX + 1;

const USAGE = `usage: node dist/scripts/bench-scale.js [options]
  --quick            short run (~2 min): 5 s warm-up, 15 s windows
  --premises a,b,..  neighbourhood sizes, metered premises read once a second (default 10,100,1000; at most ${SIZES_MAX})
  --boxes N          boxes in the cluster (default 5); each reads premises / boxes meters (at most ${METERS_PER_BOX_MAX})
  --warmup-s N       load before the measured window (default 10; quick 5)
  --window-s N       measured window per size (default 60; quick 15)
  --dir PATH         parent of the temporary data directories (default the OS temp dir)
  --keep             keep the data directories`;

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: "boolean", default: false },
      premises: { type: "string" },
      boxes: { type: "string" },
      "warmup-s": { type: "string" },
      "window-s": { type: "string" },
      dir: { type: "string" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help === true) return null;
  const quick = values.quick === true;
  const boxes = positiveInt(values.boxes, 5, "boxes");
  if (boxes < 3 || boxes > 9) throw new Error("--boxes: 3 to 9");
  const premises = positiveIntList(values.premises, [10, 100, 1_000], "premises");
  if (premises.length > SIZES_MAX) throw new Error(`--premises: at most ${SIZES_MAX} sizes`);
  for (const n of premises) {
    if (n % boxes !== 0) throw new Error(`--premises: ${n} is not a multiple of ${boxes} boxes`);
    if (n / boxes > METERS_PER_BOX_MAX) throw new Error(`--premises: ${n} / ${boxes} boxes is more than the ${METERS_PER_BOX_MAX} meters a box reads`);
  }
  return {
    quick,
    premises,
    boxes,
    warmupS: positiveInt(values["warmup-s"], quick ? 5 : 10, "warmup-s"),
    windowS: positiveInt(values["window-s"], quick ? 15 : 60, "window-s"),
    dir: resolve(values.dir ?? os.tmpdir()),
    keep: values.keep === true,
  };
}

// ---------------------------------------------------------------- one box's disk and CPU at an instant

interface DirSizes {
  readonly ledgerBytes: number; // ledger.sqlite + -wal + -shm, file sizes
  readonly raftLogBytes: number; // raft.sqlite + -wal + -shm
  readonly otherBytes: number;
  readonly allocatedBytes: number; // every file's allocated blocks
}

function dirSizes(dir: string): DirSizes {
  let ledgerBytes = 0;
  let raftLogBytes = 0;
  let otherBytes = 0;
  let allocatedBytes = 0;
  for (const name of readdirSync(dir)) {
    let st;
    try {
      st = statSync(join(dir, name));
    } catch {
      continue; // a -wal file removed between the listing and the stat
    }
    if (!st.isFile()) continue;
    allocatedBytes += st.blocks * 512;
    if (name.startsWith(LEDGER_FILE)) ledgerBytes += st.size;
    else if (name.startsWith(RAFT_LOG_FILE)) raftLogBytes += st.size;
    else otherBytes += st.size;
  }
  return { ledgerBytes, raftLogBytes, otherBytes, allocatedBytes };
}

/** The ledger's size once checkpointed: SQLite's page count (the WAL's newest pages included) x the page size. */
function ledgerPagesBytes(dataDir: string): number {
  const db = new Database(ledgerPath(dataDir), { readonly: true, fileMustExist: true });
  try {
    return (db.pragma("page_count", { simple: true }) as number) * (db.pragma("page_size", { simple: true }) as number);
  } finally {
    db.close();
  }
}

/** Bytes a process (all its threads) has sent towards the block device so far (/proc/PID/io write_bytes). */
function diskWriteBytes(pid: number): number {
  const m = /^write_bytes:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/io`, "utf8"));
  return m === null ? 0 : Number(m[1]);
}

/** CPU ticks of a process's main thread alone (its event loop): the task whose id is the process's. */
function mainThreadTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // as cpuTicks, for one thread
  return Number(fields[11]) + Number(fields[12]);
}

interface BoxPoint {
  readonly files: DirSizes;
  readonly ledgerPagesBytes: number;
  readonly writeBytes: number;
  readonly ticks: number;
  readonly mainTicks: number;
}

function boxPoint(dataDir: string, pid: number): BoxPoint {
  return { files: dirSizes(dataDir), ledgerPagesBytes: ledgerPagesBytes(dataDir), writeBytes: diskWriteBytes(pid), ticks: cpuTicks(pid), mainTicks: mainThreadTicks(pid) };
}

// ---------------------------------------------------------------- the chain

interface BlockStats {
  readonly count: number;
  readonly txsMean: number;
  readonly txsMax: number;
  readonly bytesMean: number; // encoded (encodeBlock)
  readonly bytesMax: number;
  readonly bytesPerTx: number;
}

/** The blocks of heights (fromHeight, toHeight] in a box's ledger: transactions and encoded bytes. */
function blockStats(dataDir: string, fromHeight: number, toHeight: number): BlockStats {
  const store = LedgerStore.open(ledgerPath(dataDir), { readonly: true });
  try {
    const txs: number[] = [];
    const bytes: number[] = [];
    for (let h = fromHeight + 1; h <= toHeight; h++) {
      const b = store.getBlock(h);
      if (b === null) break;
      txs.push(b.block.txs.length);
      bytes.push(encodeBlock(b.block).length);
    }
    const sum = (xs: number[]) => xs.reduce((a, x) => a + x, 0);
    const n = txs.length;
    return {
      count: n,
      txsMean: n === 0 ? 0 : sum(txs) / n,
      txsMax: Math.max(0, ...txs),
      bytesMean: n === 0 ? 0 : sum(bytes) / n,
      bytesMax: Math.max(0, ...bytes),
      bytesPerTx: sum(txs) === 0 ? 0 : sum(bytes) / sum(txs),
    };
  } finally {
    store.close();
  }
}

// ---------------------------------------------------------------- one size

interface BoxResult {
  readonly box: number;
  readonly role: string;
  readonly cpuMeanPercent: number; // the window's CPU-seconds per second, % of one core
  readonly cpuMedianPercent: number; // of the 1-s samples
  readonly cpuMaxPercent: number;
  readonly mainThreadPercent: number; // the event loop's mean
  readonly rssMedianMB: number;
  readonly rssMaxMB: number;
  readonly ledgerGrowthBytesPerS: number; // by SQLite's page count
  readonly ledgerFilesGrowthBytesPerS: number; // by the files' sizes (ledger.sqlite + -wal + -shm)
  readonly raftLogGrowthBytesPerS: number;
  readonly dirGrowthBytesPerS: number; // every file of the data directory
  readonly diskWriteBytesPerS: number;
  readonly start: DirSizes & { readonly ledgerPagesBytes: number };
  readonly end: DirSizes & { readonly ledgerPagesBytes: number };
  readonly afterStop: DirSizes; // once stopped: the ledger checkpointed, its -wal gone
  readonly p50Ms: number | null;
  readonly p99Ms: number | null;
}

interface SizeResult {
  readonly premises: number;
  readonly perBox: number;
  readonly windowS: number;
  readonly offeredPerS: number;
  readonly committedPerS: number; // readings signed in the window's whole seconds that are in the chain
  readonly keepsUp: boolean;
  readonly why: string[];
  readonly leader: number | null;
  readonly elections: number;
  readonly raftLogCompactions: number; // in the window, the most of any box
  readonly blocksPerS: number;
  readonly blocks: BlockStats;
  readonly p50Ms: number | null; // the median box's p50
  readonly p99Ms: number | null; // the worst box's p99
  readonly boxes: BoxResult[];
  readonly foreignCpuPercent: number;
}

/** After the window, the time its last readings get to commit before the chain is read. */
const DRAIN_MS = 3_000;

async function measureSize(o: Options, premises: number, basePort: number, log: (s: string) => void): Promise<SizeResult> {
  const perBox = premises / o.boxes;
  // SIGKILL at the end: nothing is left to stop after a clean run.
  return withLocalCluster({ parent: o.dir, prefix: `peergrid-bench-scale-${premises}-`, boxes: o.boxes, basePort, keep: o.keep, stopSignal: "SIGKILL" }, async (c) => {
    await Promise.all(range(o.boxes).map((i) => c.start(i, ["--synthetic-readings", String(perBox)])));
    await waitFor("a leader and two blocks on every box", async () => {
      const s = await c.statuses();
      return s.size === o.boxes && [...s.values()].filter((x) => x.role === "leader").length === 1 && [...s.values()].every((x) => x.height >= 2);
    });
    await sleep(o.warmupS * 1000); // warm-up under load (not a measurement)
    const pids = range(o.boxes).map((i) => c.procs.get(i)?.child.pid as number);
    const cpu0 = cpuSplit();
    const s0 = await statusesOf(c, "?resetLatency=true");
    const t0 = Date.now();
    const p0 = range(o.boxes).map((i) => boxPoint(c.dataDir(i), pids[i] as number));
    const meters = pids.map((p) => new CpuMeter(p));
    const cpu: number[][] = range(o.boxes).map(() => []);
    const rss: number[][] = range(o.boxes).map(() => []);
    while (Date.now() < t0 + o.windowS * 1000) {
      await sleep(1_000);
      for (const i of range(o.boxes)) {
        cpu[i]?.push(meters[i]?.sample() ?? 0);
        rss[i]?.push(rssMB(pids[i]));
      }
    }
    const p1 = range(o.boxes).map((i) => boxPoint(c.dataDir(i), pids[i] as number));
    const t1 = Date.now();
    const s1 = await statusesOf(c);
    const foreign = foreignCpuPercent(cpu0, cpuSplit());
    await sleep(DRAIN_MS); // the readings of the window's last seconds get their blocks
    await c.stopAll("SIGTERM");
    const afterStop = range(o.boxes).map((i) => dirSizes(c.dataDir(i)));
    const windowS = (t1 - t0) / 1000;
    const boxes = range(o.boxes).map((i) => boxResult(i, s1.get(i), p0[i] as BoxPoint, p1[i] as BoxPoint, afterStop[i] as DirSizes, cpu[i] ?? [], rss[i] ?? [], windowS));
    const leader = [...s1].find(([, s]) => s.role === "leader")?.[0] ?? null;
    const ref = leader ?? 0;
    const chain = chainWindow(c.dataDir(ref), t0, t1);
    const blocks = blockStats(c.dataDir(ref), s0.get(ref)?.height ?? 0, s1.get(ref)?.height ?? 0);
    const r = judge(o, premises, windowS, s0, s1, chain, blocks, boxes, leader, foreign);
    logSize(r, log);
    return r;
  });
}

function boxResult(box: number, s: NodeStatus | undefined, a: BoxPoint, b: BoxPoint, afterStop: DirSizes, cpu: number[], rss: number[], windowS: number): BoxResult {
  const perS = (x: number) => x / windowS;
  const hz = clockTicksPerS();
  return {
    box,
    role: s?.role ?? "?",
    cpuMeanPercent: (perS(b.ticks - a.ticks) / hz) * 100,
    cpuMedianPercent: median(cpu),
    cpuMaxPercent: Math.max(...cpu),
    mainThreadPercent: (perS(b.mainTicks - a.mainTicks) / hz) * 100,
    rssMedianMB: median(rss),
    rssMaxMB: Math.max(...rss),
    ledgerGrowthBytesPerS: perS(b.ledgerPagesBytes - a.ledgerPagesBytes),
    ledgerFilesGrowthBytesPerS: perS(b.files.ledgerBytes - a.files.ledgerBytes),
    raftLogGrowthBytesPerS: perS(b.files.raftLogBytes - a.files.raftLogBytes),
    dirGrowthBytesPerS: perS(b.files.ledgerBytes + b.files.raftLogBytes + b.files.otherBytes - (a.files.ledgerBytes + a.files.raftLogBytes + a.files.otherBytes)),
    diskWriteBytesPerS: perS(b.writeBytes - a.writeBytes),
    start: { ...a.files, ledgerPagesBytes: a.ledgerPagesBytes },
    end: { ...b.files, ledgerPagesBytes: b.ledgerPagesBytes },
    afterStop,
    p50Ms: s?.commitLatencyMs.p50 ?? null,
    p99Ms: s?.commitLatencyMs.p99 ?? null,
  };
}

function judge(o: Options, premises: number, windowS: number, s0: Map<number, NodeStatus>, s1: Map<number, NodeStatus>, chain: ChainWindow, blocks: BlockStats, boxes: BoxResult[], leader: number | null, foreign: number): SizeResult {
  const committedPerS = chain.seconds > 0 ? chain.signedInWindow / chain.seconds : 0;
  const terms = new Set([...s0.values(), ...s1.values()].map((s) => s.term));
  const lat = boxes.map((b) => ({ p50: b.p50Ms ?? Number.POSITIVE_INFINITY, p99: b.p99Ms ?? Number.POSITIVE_INFINITY }));
  const why: string[] = [];
  if (s0.size !== o.boxes || s1.size !== o.boxes) why.push(`only ${Math.min(s0.size, s1.size)} of ${o.boxes} boxes answered`);
  if (committedPerS < 0.98 * premises) why.push(`${r1(committedPerS)}/s of the ${premises}/s offered committed within ${DRAIN_MS} ms of the window`);
  if (chain.rejected > 0) why.push(`${chain.rejected} readings rejected by the ledger`);
  if (chain.skips > 0) why.push(`${chain.skips} seconds without a block`);
  if (terms.size > 1) why.push(`${terms.size - 1} election(s)`);
  return {
    premises,
    perBox: premises / o.boxes,
    windowS,
    offeredPerS: premises,
    committedPerS,
    keepsUp: why.length === 0,
    why,
    leader,
    elections: terms.size - 1,
    raftLogCompactions: Math.max(...range(o.boxes).map((i) => (s1.get(i)?.counters.compactions ?? 0) - (s0.get(i)?.counters.compactions ?? 0))),
    blocksPerS: chain.blocks / windowS,
    blocks,
    p50Ms: pct(lat.map((l) => l.p50), 0.5),
    p99Ms: Math.max(...lat.map((l) => l.p99)),
    boxes,
    foreignCpuPercent: foreign,
  };
}

function logSize(r: SizeResult, log: (s: string) => void): void {
  log(
    `  ${r.premises} premises (${r.perBox}/s per box): committed ${r1(r.committedPerS)}/s, ${r1(r.blocksPerS)} blocks/s, ${r1(r.blocks.txsMean)} txs/block (max ${r.blocks.txsMax}), ` +
      `${fmtInt(r.blocks.bytesMean)} B/block (max ${fmtInt(r.blocks.bytesMax)}), commit p50 ${r.p50Ms} ms p99 ${r.p99Ms} ms, foreign CPU ${r1(r.foreignCpuPercent)} %: ${r.keepsUp ? "keeps up" : `does not keep up (${r.why.join("; ")})`}`,
  );
  for (const b of r.boxes) {
    log(
      `    box ${b.box} (${b.role}): CPU mean ${r1(b.cpuMeanPercent)} % (1-s median ${r1(b.cpuMedianPercent)}, max ${r1(b.cpuMaxPercent)}), main thread ${r1(b.mainThreadPercent)} %; RSS ${r1(b.rssMedianMB)} / ${r1(b.rssMaxMB)} MB; ` +
        `ledger +${fmtInt(b.ledgerGrowthBytesPerS)} B/s (files +${fmtInt(b.ledgerFilesGrowthBytesPerS)}), Raft log +${fmtInt(b.raftLogGrowthBytesPerS)} B/s (${fmtInt(b.end.raftLogBytes)} B at the end); writes ${fmtInt(b.diskWriteBytesPerS)} B/s; commit p50 ${b.p50Ms} p99 ${b.p99Ms} ms`,
    );
  }
}

// ---------------------------------------------------------------- derived figures

const SECONDS_PER_DAY = 86_400;
const SD_CARD_BYTES = 32e9; // a "32 GB" card, decimal, before the OS and the filesystem take their share

/** What a size's figures come to: the leader's, the followers' (median box), and the ledger's growth (median box). */
function derive(r: SizeResult) {
  const leader = r.boxes.find((b) => b.box === r.leader);
  const followers = r.boxes.filter((b) => b.box !== r.leader);
  const med = (f: (b: BoxResult) => number) => median(followers.map(f));
  const perReadingUs = (cpuPercent: number) => (r.committedPerS > 0 ? ((cpuPercent / 100) * 1e6) / r.committedPerS : Number.NaN);
  const growth = median(r.boxes.map((b) => b.ledgerGrowthBytesPerS));
  const perDay = growth * SECONDS_PER_DAY;
  return {
    leaderCpuMeanPercent: leader?.cpuMeanPercent ?? Number.NaN,
    leaderCpuMedianPercent: leader?.cpuMedianPercent ?? Number.NaN,
    leaderCpuMaxPercent: leader?.cpuMaxPercent ?? Number.NaN,
    leaderMainThreadPercent: leader?.mainThreadPercent ?? Number.NaN,
    followerCpuMeanPercent: med((b) => b.cpuMeanPercent),
    followerCpuMedianPercent: med((b) => b.cpuMedianPercent),
    followerCpuMaxPercent: Math.max(...followers.map((b) => b.cpuMaxPercent)),
    followerMainThreadPercent: med((b) => b.mainThreadPercent),
    leaderCpuPerReadingUs: perReadingUs(leader?.cpuMeanPercent ?? Number.NaN),
    followerCpuPerReadingUs: perReadingUs(med((b) => b.cpuMeanPercent)),
    rssMaxMB: Math.max(...r.boxes.map((b) => b.rssMaxMB)),
    ledgerGrowthBytesPerS: growth,
    ledgerBytesPerReading: r.committedPerS > 0 ? growth / r.committedPerS : Number.NaN,
    ledgerBytesPerDay: perDay,
    ledgerBytesPerYear: perDay * 365,
    daysOn32GB: perDay > 0 ? SD_CARD_BYTES / perDay : Number.POSITIVE_INFINITY,
    raftLogBytesEndMax: Math.max(...r.boxes.map((b) => b.end.raftLogBytes)),
    dirGrowthBytesPerS: median(r.boxes.map((b) => b.dirGrowthBytesPerS)),
    leaderDiskWriteBytesPerS: leader?.diskWriteBytesPerS ?? Number.NaN,
    followerDiskWriteBytesPerS: med((b) => b.diskWriteBytesPerS),
  };
}

/** CPU per extra reading a second, between the smallest and the largest size: the slope, without the idle cost. */
function marginal(sizes: readonly SizeResult[]) {
  const ok = [...sizes].sort((a, b) => a.committedPerS - b.committedPerS);
  const lo = ok[0];
  const hi = ok[ok.length - 1];
  if (lo === undefined || hi === undefined || hi.committedPerS - lo.committedPerS <= 0) return null;
  const [dl, dh] = [derive(lo), derive(hi)];
  const dr = hi.committedPerS - lo.committedPerS;
  const slopeUs = (a: number, b: number) => (((b - a) / 100) * 1e6) / dr;
  const leaderUs = slopeUs(dl.leaderCpuMeanPercent, dh.leaderCpuMeanPercent);
  const followerUs = slopeUs(dl.followerCpuMeanPercent, dh.followerCpuMeanPercent);
  return {
    fromPremises: lo.premises,
    toPremises: hi.premises,
    leaderCpuPerReadingUs: leaderUs,
    followerCpuPerReadingUs: followerUs,
    leaderMainThreadPerReadingUs: slopeUs(dl.leaderMainThreadPercent, dh.leaderMainThreadPercent),
    followerMainThreadPerReadingUs: slopeUs(dl.followerMainThreadPercent, dh.followerMainThreadPercent),
    // the cost at no readings, by the same line: what a box spends whatever the load
    leaderIdlePercent: dl.leaderCpuMeanPercent - (leaderUs * lo.committedPerS) / 1e4,
    followerIdlePercent: dl.followerCpuMeanPercent - (followerUs * lo.committedPerS) / 1e4,
  };
}

// ---------------------------------------------------------------- report

const bytes = (n: number) => (n >= 1e9 ? `${r1(n / 1e9)} GB` : n >= 1e6 ? `${r1(n / 1e6)} MB` : n >= 1e3 ? `${r1(n / 1e3)} kB` : `${fmtInt(n)} B`);

function report(o: Options, sizes: readonly SizeResult[], verifyPerS: number): void {
  const d = sizes.map(derive);
  const each = (f: (r: SizeResult, x: ReturnType<typeof derive>) => string) => sizes.map((r, i) => f(r, d[i] as ReturnType<typeof derive>)).join(" | ");
  const rows: Row[] = [
    ["premises (readings/s offered)", each((r) => fmtInt(r.premises)), "", ""],
    ["readings/s committed", each((r) => r1(r.committedPerS)), ">= 98 % of offered", sizes.every((r) => r.keepsUp) ? "kept up" : "NOT ALL KEPT UP"],
    ["blocks/s", each((r) => r1(r.blocksPerS)), "1", ""],
    ["transactions per block, mean / max", each((r) => `${r1(r.blocks.txsMean)} / ${r.blocks.txsMax}`), "", ""],
    ["encoded block, mean / max", each((r) => `${bytes(r.blocks.bytesMean)} / ${bytes(r.blocks.bytesMax)}`), "", ""],
    ["encoded bytes per transaction", each((r) => fmtInt(r.blocks.bytesPerTx)), "", ""],
    ["ledger growth (SQLite pages), per second", each((_, x) => `${bytes(x.ledgerGrowthBytesPerS)}`), "", ""],
    ["... per reading on disk", each((_, x) => `${fmtInt(x.ledgerBytesPerReading)} B`), "", ""],
    ["... per day / per year", each((_, x) => `${bytes(x.ledgerBytesPerDay)} / ${bytes(x.ledgerBytesPerYear)}`), "", ""],
    ["days of raw 1 Hz ledger on 32 GB (no pruning)", each((_, x) => (x.daysOn32GB < 10 ? r1(x.daysOn32GB) : fmtInt(x.daysOn32GB))), "", ""],
    ["Raft log at the end, largest box (bounded by compaction)", each((_, x) => bytes(x.raftLogBytesEndMax)), "", ""],
    ["... Raft log compactions in the window", each((r) => String(r.raftLogCompactions)), "", ""],
    ["data directory growth in the window (files)", each((_, x) => `${bytes(x.dirGrowthBytesPerS)}/s`), "", ""],
    ["disk writes per box, leader / follower (write_bytes)", each((_, x) => `${bytes(x.leaderDiskWriteBytesPerS)}/s / ${bytes(x.followerDiskWriteBytesPerS)}/s`), "", ""],
    ["leader CPU, mean / 1-s median / max (% of a core)", each((_, x) => `${r1(x.leaderCpuMeanPercent)} / ${r1(x.leaderCpuMedianPercent)} / ${r1(x.leaderCpuMaxPercent)}`), "", ""],
    ["follower CPU, mean / 1-s median (median box) / max", each((_, x) => `${r1(x.followerCpuMeanPercent)} / ${r1(x.followerCpuMedianPercent)} / ${r1(x.followerCpuMaxPercent)}`), "", ""],
    ["main thread, leader / follower (% of a core)", each((_, x) => `${r1(x.leaderMainThreadPercent)} / ${r1(x.followerMainThreadPercent)}`), "", ""],
    ["CPU per reading, leader / follower (incl. idle)", each((_, x) => `${fmtInt(x.leaderCpuPerReadingUs)} / ${fmtInt(x.followerCpuPerReadingUs)} us`), "", ""],
    ["RSS, largest box", each((_, x) => `${fmtInt(x.rssMaxMB)} MB`), "", ""],
    ["commit latency p50 (median box) / p99 (worst box)", each((r) => `${r.p50Ms} / ${r.p99Ms} ms`), "", ""],
    ["elections in the window", each((r) => String(r.elections)), "0", ""],
    ["foreign CPU (not ours), all cores", each((r) => `${r1(r.foreignCpuPercent)} %`), "0", ""],
  ];
  printTable(`Scale study: ${o.boxes} boxes on this machine, N = ${sizes.map((r) => fmtInt(r.premises)).join(" | ")} premises, ${o.windowS} s windows`, rows);
  const m = marginal(sizes);
  const vUs = 1e6 / verifyPerS;
  printTable("Per-reading cost on this machine", [
    ["bare Ed25519 verify, one thread", `${fmtInt(verifyPerS)} /s = ${r1(vUs)} us`, "", ""],
    ...(m === null
      ? []
      : ([
          [`CPU per extra reading/s, ${fmtInt(m.fromPremises)} -> ${fmtInt(m.toPremises)} premises, leader / follower`, `${r1(m.leaderCpuPerReadingUs)} / ${r1(m.followerCpuPerReadingUs)} us`, "", ""],
          ["... of which the main thread, leader / follower", `${r1(m.leaderMainThreadPerReadingUs)} / ${r1(m.followerMainThreadPerReadingUs)} us`, "", ""],
          ["CPU at no load by the same line, leader / follower", `${r1(m.leaderIdlePercent)} / ${r1(m.followerIdlePercent)} % of a core`, "", ""],
        ] satisfies Row[])),
  ]);
}

// ---------------------------------------------------------------- main

async function main(o: Options): Promise<void> {
  const log = (s: string) => console.error(s);
  const started = performance.now();
  const m = { ...hostInfo(), commit: measuredCommit(["daemon", "ledger", "scripts"], "+ uncommitted changes") };
  console.log(`peergrid scale study${o.quick ? " (--quick)" : ""}`);
  console.log(`machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGB} GB, node ${m.node}, OpenSSL ${m.openssl}, ${m.platform}; commit ${m.commit}; load average ${m.loadAvgStart.join(" ")}`);
  log("bare verify rate, one thread ...");
  const verifyPerS = await verifyRate(1, 2_000);
  log(`  ${fmtInt(verifyPerS)} /s`);
  // Ports below the ephemeral range, a block of 20 (2 x boxes) per size.
  const basePort = 24_000 + (process.pid % 64) * 100;
  const sizes: SizeResult[] = [];
  for (const [k, premises] of o.premises.entries()) {
    log(`${premises} premises: ${o.boxes} boxes x ${premises / o.boxes} readings/s, ${o.warmupS} s warm-up, ${o.windowS} s measured ...`);
    sizes.push(await measureSize(o, premises, basePort + k * 20, log));
  }
  report(o, sizes, verifyPerS);
  const elapsedS = Math.round((performance.now() - started) / 1000);
  console.log(`\n${elapsedS} s; load average at end ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  const summary = {
    bench: "peergrid-scale",
    version: 1,
    machine: m,
    options: { quick: o.quick, premises: o.premises, boxes: o.boxes, warmupS: o.warmupS, windowS: o.windowS },
    verify: { oneThreadPerS: verifyPerS, usPerVerify: 1e6 / verifyPerS },
    sizes: sizes.map((r) => ({ ...r, derived: derive(r) })),
    marginal: marginal(sizes),
    elapsedS,
  };
  console.log(JSON.stringify(summary));
}

const options = readOptions(parseOptions, USAGE);
if (options !== null) await main(options);
