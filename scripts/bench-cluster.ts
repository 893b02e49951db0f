// Raft cluster benchmark (issue 3): `npm run bench:cluster` (builds, then runs
// dist/scripts/bench-cluster.js; `-- --quick` for a short run, `-- --help`).
// Real `peergrid start` processes on loopback (daemon/local-cluster.ts), with
// the default timings (tick 100 ms, election after 10 ticks, heartbeat every
// tick, 1-second blocks), for 3 and for 5 boxes:
//
//   0. ceiling      the machine's Ed25519 verify rate through node:crypto
//                   (NodeVerifier), one worker thread per core for 2 s, summed.
//                   Every box verifies every signature once (the box that
//                   takes a reading checks it then, and its block's apply
//                   reuses the verdict: daemon/signature-checks.ts): R
//                   readings/s cost about boxes x R verifies/s on this one
//                   machine (plus R signatures), which bounds R.
//   a. throughput   each box signs N synthetic readings a second (its own
//                   key, through node.submit, as the meter loop will); N
//                   rises step by step, a fresh cluster each step, until the
//                   cluster no longer keeps up, then the gap is halved twice.
//                   A step keeps up when, over the measured window: every
//                   reading signed in its whole seconds is in the chain
//                   within 3 s (>= 98 %, counted in the ledger by signing
//                   time), no pool holds more than 2 s of load at the end, no
//                   second without a block (no interval > 1.5 s) and no
//                   "busy" block tick (the previous block still uncommitted
//                   at the boundary), no election, nothing refused. Reported
//                   twice: the highest rate that keeps up, and the highest
//                   that keeps up with commit p99 <= 2 s on every box.
//   b. latency      commit latency from submission at each box (status
//                   commitLatencyMs, reset after the warm-up with
//                   ?resetLatency=true), at that rate: the median of the
//                   boxes' p50 and the worst box's p99.
//   c. jitter       from the committed chain: each block's distance from the
//                   whole second, and the intervals between blocks (under
//                   load, and in the idle cluster of e).
//   d. failover     kill -9 the leader (light load), 5 times: the first block
//                   of another proposer, by its header time and as first seen
//                   by polling the survivors every 20 ms.
//   e. idle         CPU (utime + stime from /proc/PID/stat) and RSS (VmRSS,
//                   VmHWM from /proc/PID/status) of each box of an idle 5-box
//                   cluster, over 30 s.
//
// All the boxes share this machine's cores, so every figure is for the whole
// neighbourhood on one machine: a real box has its own CPU. Each step also
// reports "foreign CPU": what the machine spent outside the boxes and this
// script (other users' work, the hypervisor's steal); with any of it the
// figures are lower bounds.
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { LocalCluster, waitFor } from "../daemon/local-cluster.js";
import type { NodeStatus } from "../daemon/node.js";
import { chainWindow, type ChainWindow, clockTicksPerS, cpuSplit, cpuTicks, fmtInt, foreignCpuPercent, getJson, hostInfo, measuredCommit, pct, Ports, positiveInt, positiveIntList, printTable, range, readOptions, type Row, rssMB, sleep, statusesOf, verifyRate } from "./bench-common.js";

// ---------------------------------------------------------------- options

interface Options {
  readonly quick: boolean;
  readonly sizes: readonly number[];
  readonly rates: ReadonlyMap<number, readonly number[]>; // boxes -> readings/s per box, in order
  readonly warmupS: number;
  readonly windowS: number;
  readonly failovers: number;
  readonly idleS: number;
  readonly dir: string;
  readonly keep: boolean;
}

const DEFAULT_RATES: Record<number, number[]> = {
  3: [100, 200, 300, 400, 500, 650, 800, 1_000, 1_300, 1_600],
  5: [50, 100, 150, 200, 250, 300, 400, 500, 650, 800],
};

const USAGE = `usage: node dist/scripts/bench-cluster.js [options]
  --quick            short run (~3 min): shorter windows, 2 failovers, 10 s idle
  --sizes 3,5        cluster sizes (default 3,5)
  --rates-3 a,b,..   readings/s per box tried with 3 boxes (default ${DEFAULT_RATES[3]?.join(",")})
  --rates-5 a,b,..   the same with 5 boxes (default ${DEFAULT_RATES[5]?.join(",")}); other sizes use these
  --warmup-s N       load before each measured window (default 4)
  --window-s N       measured window of each throughput step (default 10; quick 6)
  --failovers N      leader kills per cluster size (default 5; quick 2)
  --idle-s N         idle CPU/RSS window (default 30; quick 10)
  --dir PATH         parent of the temporary data directories (default the OS temp dir)
  --keep             keep the data directories`;

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: "boolean", default: false },
      sizes: { type: "string" },
      "rates-3": { type: "string" },
      "rates-5": { type: "string" },
      "warmup-s": { type: "string" },
      "window-s": { type: "string" },
      failovers: { type: "string" },
      "idle-s": { type: "string" },
      dir: { type: "string" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help === true) return null;
  const quick = values.quick === true;
  const sizes = positiveIntList(values.sizes, [3, 5], "sizes");
  for (const s of sizes) if (s < 3 || s > 9) throw new Error("--sizes: 3 to 9 boxes");
  const r3 = positiveIntList(values["rates-3"], DEFAULT_RATES[3] as number[], "rates-3");
  const r5 = positiveIntList(values["rates-5"], DEFAULT_RATES[5] as number[], "rates-5");
  return {
    quick,
    sizes,
    rates: new Map(sizes.map((s) => [s, s === 3 ? r3 : r5])),
    warmupS: positiveInt(values["warmup-s"], 4, "warmup-s"),
    windowS: positiveInt(values["window-s"], quick ? 6 : 10, "window-s"),
    failovers: positiveInt(values.failovers, quick ? 2 : 5, "failovers"),
    idleS: positiveInt(values["idle-s"], quick ? 10 : 30, "idle-s"),
    dir: resolve(values.dir ?? os.tmpdir()),
    keep: values.keep === true,
  };
}

// ---------------------------------------------------------------- small tools

interface Run {
  readonly c: LocalCluster;
  readonly dir: string;
}

async function startCluster(o: Options, ports: Ports, boxes: number, perBox: number, tag: string): Promise<Run> {
  const dir = mkdtempSync(join(o.dir, `peergrid-bench-${tag}-`));
  const c = LocalCluster.create({ dir, boxes, basePort: ports.take(2 * boxes + 2), chainId: "bench" }); // a Raft and an HTTP port a box, and spare
  try {
    await Promise.all(range(boxes).map((i) => c.start(i, perBox > 0 ? ["--synthetic-readings", String(perBox)] : [])));
    await waitFor("a leader and two blocks on every box", async () => {
      const s = await c.statuses();
      return s.size === boxes && [...s.values()].filter((x) => x.role === "leader").length === 1 && [...s.values()].every((x) => x.height >= 2);
    });
  } catch (err) {
    await c.stopAll("SIGKILL");
    throw err;
  }
  return { c, dir };
}

async function stopCluster(o: Options, r: Run): Promise<void> {
  await r.c.stopAll("SIGTERM");
  if (!o.keep) rmSync(r.dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------- a-c. throughput, latency, jitter

interface Step {
  readonly boxes: number;
  readonly perBox: number;
  readonly offeredPerS: number;
  readonly acceptedPerS: number;
  readonly committedPerS: number;
  readonly refused: number;
  readonly mempoolEndMax: number;
  readonly p50Ms: number | null; // the median of the boxes' p50
  readonly p99Ms: number | null; // the worst box's p99
  readonly maxMs: number | null;
  readonly elections: number;
  readonly busyTicks: number;
  readonly chain: ChainWindow;
  readonly rssMaxMB: number;
  readonly foreignCpuPercent: number; // CPU this machine spent outside the boxes and this script, in the window (of all cores)
  readonly keepsUp: boolean; // throughput: committed, pools bounded, a block every second, no election, nothing refused
  readonly why: string[];
  readonly latencyOk: boolean; // ... and commit p99 <= 2 s on every box
}


/** After a window, how long its last readings may take to commit: the latency target. */
const DRAIN_MS = 3_000;

async function throughputStep(o: Options, ports: Ports, boxes: number, perBox: number): Promise<Step> {
  const run = await startCluster(o, ports, boxes, perBox, `tput${boxes}`);
  try {
    const c = run.c;
    await sleep(o.warmupS * 1000); // warm-up under load (not a measurement)
    const cpu0 = cpuSplit();
    const s0 = await statusesOf(c, "?resetLatency=true");
    const t0 = Date.now();
    while (Date.now() < t0 + o.windowS * 1000) await sleep(250);
    const s1 = await statusesOf(c);
    const t1 = Date.now();
    const foreign = foreignCpuPercent(cpu0, cpuSplit());
    const rssMaxMB = Math.max(...range(boxes).map((i) => rssMB(c.procs.get(i)?.child.pid)));
    await sleep(DRAIN_MS); // the readings of the window's last seconds get their blocks
    const heads = await statusesOf(c);
    const highest = [...heads].sort((a, b) => b[1].height - a[1].height)[0]?.[0] ?? 0;
    await c.stopAll("SIGTERM");
    const chain = chainWindow(c.dataDir(highest), t0, t1);
    return judge(boxes, perBox, s0, s1, (t1 - t0) / 1000, chain, rssMaxMB, foreign);
  } finally {
    await stopCluster(o, run);
  }
}

function judge(boxes: number, perBox: number, s0: Map<number, NodeStatus>, s1: Map<number, NodeStatus>, windowS: number, chain: ChainWindow, rssMaxMB: number, foreignCpuPercent: number): Step {
  const offeredPerS = boxes * perBox;
  const delta = (k: string) => range(boxes).reduce((a, i) => a + ((s1.get(i)?.counters[k as keyof NodeStatus["counters"]] ?? 0) - (s0.get(i)?.counters[k as keyof NodeStatus["counters"]] ?? 0)), 0);
  const lat = [...s1.values()].map((s) => s.commitLatencyMs);
  const p50Ms = pct(lat.map((l) => l.p50 ?? Number.POSITIVE_INFINITY), 0.5);
  const p99Ms = Math.max(...lat.map((l) => l.p99 ?? Number.POSITIVE_INFINITY));
  const maxMs = Math.max(...lat.map((l) => l.max ?? Number.POSITIVE_INFINITY));
  const terms = new Set([...s0.values(), ...s1.values()].map((s) => s.term));
  const mempoolEndMax = Math.max(...[...s1.values()].map((s) => s.mempool.txs));
  const step = {
    boxes,
    perBox,
    offeredPerS,
    acceptedPerS: delta("txsSubmitted") / windowS,
    committedPerS: chain.seconds > 0 ? chain.signedInWindow / chain.seconds : 0,
    refused: delta("txsRefused"),
    mempoolEndMax,
    p50Ms,
    p99Ms,
    maxMs,
    elections: terms.size - 1,
    busyTicks: delta("blockTicksBusy"),
    chain,
    rssMaxMB,
  };
  const why: string[] = [];
  if (s0.size !== boxes || s1.size !== boxes) why.push(`only ${Math.min(s0.size, s1.size)} of ${boxes} boxes answered`);
  if (step.committedPerS < 0.98 * offeredPerS) why.push(`${Math.round(step.committedPerS)}/s of the ${offeredPerS}/s offered committed within ${DRAIN_MS} ms of the window`);
  if (chain.rejected > 0) why.push(`${chain.rejected} readings rejected by the ledger`);
  if (mempoolEndMax > 2 * offeredPerS) why.push(`a pool holds ${mempoolEndMax} (> 2 s of load)`);
  if (chain.skips > 0 || step.busyTicks > 0) why.push(`${chain.skips} skipped seconds, ${step.busyTicks} busy block ticks`);
  if (step.elections > 0) why.push(`${step.elections} election(s)`);
  if (step.refused > 0) why.push(`${step.refused} refused`);
  return { ...step, foreignCpuPercent, keepsUp: why.length === 0, why, latencyOk: p99Ms <= 2_000 };
}

async function throughput(o: Options, ports: Ports, boxes: number, log: (s: string) => void): Promise<Step[]> {
  const steps: Step[] = [];
  const rates = o.rates.get(boxes) ?? [];
  let lastPass: number | null = null;
  let firstFail: number | null = null;
  for (const perBox of rates) {
    const s = await runStep(o, ports, boxes, perBox, log);
    steps.push(s);
    if (!s.keepsUp) {
      firstFail = perBox;
      break;
    }
    lastPass = perBox;
  }
  // Halve the gap between the last rate that kept up and the first that did not, twice (once if --quick).
  for (let i = 0; i < (o.quick ? 1 : 2) && lastPass !== null && firstFail !== null && firstFail - lastPass >= 20; i++) {
    const mid = Math.round((lastPass + firstFail) / 2 / 5) * 5;
    const s = await runStep(o, ports, boxes, mid, log);
    steps.push(s);
    if (s.keepsUp) lastPass = mid;
    else firstFail = mid;
  }
  return steps;
}

async function runStep(o: Options, ports: Ports, boxes: number, perBox: number, log: (s: string) => void): Promise<Step> {
  let s: Step;
  try {
    s = await throughputStep(o, ports, boxes, perBox);
  } catch (err) {
    log(`  ${boxes} boxes x ${perBox}/s: the step failed: ${(err as Error).message}`);
    const empty: ChainWindow = { seconds: 0, signedInWindow: 0, rejected: 0, blocks: 0, offsetsMs: [], intervalsMs: [], skips: 0 };
    s = { boxes, perBox, offeredPerS: boxes * perBox, acceptedPerS: 0, committedPerS: 0, refused: 0, mempoolEndMax: 0, p50Ms: null, p99Ms: null, maxMs: null, elections: 0, busyTicks: 0, chain: empty, rssMaxMB: 0, foreignCpuPercent: 0, keepsUp: false, why: [(err as Error).message], latencyOk: false };
  }
  log(
    `  ${boxes} boxes x ${perBox}/s = ${s.offeredPerS}/s offered: committed ${Math.round(s.committedPerS)}/s, accepted ${Math.round(s.acceptedPerS)}/s, ` +
      `p50 ${s.p50Ms} ms, p99 ${s.p99Ms} ms, pool at end <= ${s.mempoolEndMax}, blocks ${s.chain.blocks}, offset p99 ${pct(s.chain.offsetsMs, 0.99)} ms, ` +
      `rss <= ${s.rssMaxMB.toFixed(0)} MB, foreign CPU ${s.foreignCpuPercent.toFixed(0)} %: ${s.keepsUp ? "keeps up" : `does not keep up (${s.why.join("; ")})`}${s.latencyOk ? "" : "; p99 over 2 s"}`,
  );
  return s;
}

// ---------------------------------------------------------------- d. failover

interface Failover {
  readonly killed: number;
  readonly next: number;
  readonly electedMs: number; // first poll in which a survivor said it leads
  readonly blockTimeMs: number; // the first block of another proposer, by its header time
  readonly seenMs: number; // ... and when a survivor first reported it committed
}

async function failovers(o: Options, ports: Ports, boxes: number, log: (s: string) => void): Promise<Failover[]> {
  const perBox = 50;
  const run = await startCluster(o, ports, boxes, perBox, `failover${boxes}`);
  const out: Failover[] = [];
  try {
    for (let k = 0; k < o.failovers; k++) {
      const f = await killOnce(run.c, perBox);
      out.push(f);
      log(`  ${boxes} boxes, kill ${k + 1}: leader ${f.killed} killed; ${f.next} led after ${f.electedMs} ms; its first block timed +${f.blockTimeMs} ms, seen committed at +${f.seenMs} ms`);
    }
  } finally {
    await stopCluster(o, run);
  }
  return out;
}

async function killOnce(c: LocalCluster, perBox: number): Promise<Failover> {
  const before = await waitFor("one leader, every box up", async () => {
    const s = await c.statuses();
    const leaders = [...s].filter(([, x]) => x.role === "leader");
    return s.size === c.o.boxes && leaders.length === 1 ? { s, leader: (leaders[0] as [number, NodeStatus])[0] } : null;
  });
  const old = before.leader;
  const headAtKill = Math.max(...[...before.s.values()].map((x) => x.height));
  const survivors = range(c.o.boxes).filter((i) => i !== old);
  const killMs = Date.now();
  const exited = c.kill(old, "SIGKILL");
  let electedMs = Number.NaN;
  const found = await waitFor(
    "a block from a new leader",
    async () => {
      const s = await statusesOf(c);
      const now = Date.now();
      for (const [i, x] of s) if (survivors.includes(i) && x.role === "leader" && Number.isNaN(electedMs)) electedMs = now - killMs;
      const top = [...s].filter(([i]) => survivors.includes(i)).sort((a, b) => b[1].height - a[1].height)[0];
      if (top === undefined || top[1].height <= headAtKill) return null;
      for (let h = headAtKill + 1; h <= top[1].height; h++) {
        const b = await getJson<{ proposer: number; timeMs: number }>(`http://127.0.0.1:${c.httpPort(top[0])}/api/v1/blocks/${h}`);
        if (b !== null && b.proposer !== old) return { next: b.proposer, blockTimeMs: b.timeMs - killMs, seenMs: now - killMs };
      }
      return null;
    },
    30_000,
    20,
  );
  await exited;
  await c.start(old, ["--synthetic-readings", String(perBox)]);
  await waitFor("the killed box caught up", async () => {
    const s = await c.statuses();
    const top = Math.max(...[...s.values()].map((x) => x.height));
    return s.size === c.o.boxes && (s.get(old)?.height ?? 0) >= top - 1;
  });
  await sleep(1_500); // let its links settle before the next kill (a pause, not a measurement)
  return { killed: old, electedMs, ...found };
}

// ---------------------------------------------------------------- e. idle

interface Idle {
  readonly box: number;
  readonly role: string;
  readonly cpuPercent: number; // of one core
  readonly rssMB: number;
  readonly hwmMB: number;
}



async function idle(o: Options, ports: Ports, log: (s: string) => void): Promise<IdleResult> {
  const boxes = 5;
  const run = await startCluster(o, ports, boxes, 0, "idle");
  try {
    const c = run.c;
    await sleep(3_000); // past startup
    const pids = range(boxes).map((i) => c.procs.get(i)?.child.pid as number);
    const hz = clockTicksPerS();
    const t0 = performance.now();
    const wall0 = Date.now();
    const ticks0 = pids.map(cpuTicks);
    await sleep(o.idleS * 1000);
    const ticks1 = pids.map(cpuTicks);
    const seconds = (performance.now() - t0) / 1000;
    const roles = await c.statuses();
    const out = range(boxes).map((i) => ({
      box: i,
      role: roles.get(i)?.role ?? "?",
      cpuPercent: (((ticks1[i] as number) - (ticks0[i] as number)) / hz / seconds) * 100,
      rssMB: rssMB(pids[i]),
      hwmMB: rssMB(pids[i], "VmHWM"),
    }));
    for (const x of out) log(`  idle box ${x.box} (${x.role}): ${x.cpuPercent.toFixed(2)} % of a core, RSS ${x.rssMB.toFixed(0)} MB (peak ${x.hwmMB.toFixed(0)} MB)`);
    const wall1 = Date.now();
    await c.stopAll("SIGTERM");
    return { boxes: out, chain: chainWindow(c.dataDir(0), wall0, wall1) };
  } finally {
    await stopCluster(o, run);
  }
}

// ---------------------------------------------------------------- report

function machine() {
  return { ...hostInfo(), commit: measuredCommit(["daemon", "ledger"], "(daemon/ or ledger/ changed since)") };
}

const verdict = (ok: boolean) => (ok ? "met" : "MISSED");
const ms = (n: number | null) => (n === null || !Number.isFinite(n) ? "-" : `${fmtInt(n)} ms`);

interface SizeResult {
  readonly boxes: number;
  readonly steps: Step[];
  readonly best: Step | null; // the highest rate that kept up with commit p99 <= 2 s
  readonly bestThroughput: Step | null; // the highest rate that kept up, whatever the latency
  readonly failovers: Failover[];
}

interface IdleResult {
  readonly boxes: Idle[];
  readonly chain: ChainWindow;
}

const rateRow = (name: string, st: Step | null, ceiling: number, target: string, ok: boolean | null): Row => [
  name,
  st === null ? "none" : `${fmtInt(st.offeredPerS)} /s = ${((100 * st.offeredPerS) / ceiling).toFixed(1)} % of the ceiling (x ${st.boxes} verifies: ${((100 * st.offeredPerS * st.boxes) / ceiling).toFixed(0)} %)`,
  target,
  ok === null ? "" : verdict(ok),
];

const timingRows = (label: string, st: Step | null): Row[] => {
  const off = st?.chain.offsetsMs ?? [];
  const iv = st?.chain.intervalsMs ?? [];
  return [
    [`commit latency p50 (median box) ${label}`, ms(st?.p50Ms ?? null), "", ""],
    [`commit latency p99 (worst box) ${label}`, ms(st?.p99Ms ?? null), "<= 2,000 ms", verdict((st?.p99Ms ?? Infinity) <= 2_000)],
    [`block offset from the second p50 / p99 / max ${label}`, off.length === 0 ? "-" : `${pct(off, 0.5)} / ${pct(off, 0.99)} / ${pct(off, 1)} ms`, "p99 <= 50 ms", verdict((pct(off, 0.99) ?? Infinity) <= 50)],
    [`block interval min / p50 / max ${label}`, iv.length === 0 ? "-" : `${pct(iv, 0.001)} / ${pct(iv, 0.5)} / ${pct(iv, 1)} ms`, "", ""],
  ];
};

function report(ceiling: { oneThread: number; allThreads: number; threads: number }, sizes: readonly SizeResult[], idleRun: IdleResult | null): void {
  printTable(`Ed25519 verify ceiling (node:crypto, NodeVerifier, worker threads x 2 s)`, [
    ["one thread", `${fmtInt(ceiling.oneThread)} /s`, "", ""],
    [`${ceiling.threads} threads, total`, `${fmtInt(ceiling.allThreads)} /s`, "", ""],
  ]);
  for (const r of sizes) {
    const five = r.boxes === 5;
    const ref = r.best ?? r.steps[0] ?? null; // latency and jitter: at the best rate, else at the lowest tried
    const rows: Row[] = [
      rateRow("highest sustained, p99 <= 2 s", r.best, ceiling.allThreads, five ? ">= 1,500 /s with 5 boxes" : "", five ? (r.best?.offeredPerS ?? 0) >= 1_500 : null),
      rateRow("highest sustained, throughput only", r.bestThroughput, ceiling.allThreads, "", null),
      ...timingRows(ref === null ? "" : `at ${fmtInt(ref.offeredPerS)}/s`, ref),
    ];
    const fo = r.failovers.map((f) => f.seenMs);
    if (fo.length > 0) {
      rows.push(["leader kill -9 -> next block seen committed", `${fo.map((x) => fmtInt(x)).join(", ")} ms; max ${fmtInt(Math.max(...fo))}`, "<= 3,000 ms", verdict(Math.max(...fo) <= 3_000)]);
      rows.push(["  ... by the block's header time", `${r.failovers.map((f) => fmtInt(f.blockTimeMs)).join(", ")} ms`, "", ""]);
      rows.push(["  ... a new leader known", `${r.failovers.map((f) => fmtInt(f.electedMs)).join(", ")} ms`, "", ""]);
    }
    printTable(`${r.boxes} boxes (default timings: tick 100 ms, election 10 ticks, heartbeat 1, block 1,000 ms)`, rows);
    printTable(`${r.boxes} boxes: every throughput step`, r.steps.map((s): Row => [
      `${s.perBox}/s per box = ${fmtInt(s.offeredPerS)}/s`,
      `committed ${fmtInt(s.committedPerS)}/s, p50 ${ms(s.p50Ms)}, p99 ${ms(s.p99Ms)}, offset p99 ${pct(s.chain.offsetsMs, 0.99) ?? "-"} ms, pool ${s.mempoolEndMax}, RSS ${s.rssMaxMB.toFixed(0)} MB, foreign CPU ${s.foreignCpuPercent.toFixed(0)} %`,
      "",
      `${s.keepsUp ? "keeps up" : `no: ${s.why.join("; ")}`}${s.latencyOk ? "" : "; p99 over 2 s"}`,
    ]));
  }
  if (idleRun !== null) {
    const idleBoxes = idleRun.boxes;
    const cpuMax = Math.max(...idleBoxes.map((x) => x.cpuPercent));
    const rssMax = Math.max(...idleBoxes.map((x) => x.rssMB));
    const off = idleRun.chain.offsetsMs;
    printTable("idle 5-box cluster", [
      ...idleBoxes.map((x): Row => [`box ${x.box} (${x.role})`, `${x.cpuPercent.toFixed(2)} % CPU, RSS ${x.rssMB.toFixed(0)} MB (peak ${x.hwmMB.toFixed(0)})`, "", ""]),
      ["worst box", `${cpuMax.toFixed(2)} % of a core, ${rssMax.toFixed(0)} MB`, "<= 3 %, <= 150 MB", verdict(cpuMax <= 3 && rssMax <= 150)],
      ["block offset from the second p50 / p99 / max, idle", off.length === 0 ? "-" : `${pct(off, 0.5)} / ${pct(off, 0.99)} / ${pct(off, 1)} ms`, "p99 <= 50 ms", verdict((pct(off, 0.99) ?? Infinity) <= 50)],
    ]);
  }
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const o = readOptions(parseOptions, USAGE);
  if (o === null) return;
  const log = (s: string) => console.error(s);
  const started = performance.now();
  const m = machine();
  console.log(`peergrid Raft cluster benchmark${o.quick ? " (--quick)" : ""}`);
  console.log(`machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGB} GB, node ${m.node}, OpenSSL ${m.openssl}, ${m.platform}; commit ${m.commit}; load average ${m.loadAvgStart.join(" ")}`);
  const threads = Math.max(1, m.cores);
  log("verify ceiling ...");
  const ceiling = { oneThread: await verifyRate(1, 2_000), allThreads: await verifyRate(threads, 2_000), threads };
  log(`  ${fmtInt(ceiling.oneThread)} /s on one thread, ${fmtInt(ceiling.allThreads)} /s on ${threads}`);
  const ports = new Ports(20_000, 400, 30);
  const sizes: SizeResult[] = [];
  for (const boxes of o.sizes) {
    log(`${boxes} boxes: throughput ...`);
    const steps = await throughput(o, ports, boxes, log);
    const passing = steps.filter((s) => s.keepsUp).sort((a, b) => b.offeredPerS - a.offeredPerS);
    const best = passing.find((s) => s.latencyOk) ?? null;
    log(`${boxes} boxes: leader kills ...`);
    let fo: Failover[] = [];
    try {
      fo = await failovers(o, ports, boxes, log);
    } catch (err) {
      log(`  the failover runs failed: ${(err as Error).message}`);
    }
    sizes.push({ boxes, steps, best, bestThroughput: passing[0] ?? null, failovers: fo });
  }
  log("idle 5-box cluster ...");
  let idleRun: IdleResult | null = null;
  try {
    idleRun = await idle(o, ports, log);
  } catch (err) {
    log(`  the idle run failed: ${(err as Error).message}`);
  }
  report(ceiling, sizes, idleRun);
  const elapsedS = Math.round((performance.now() - started) / 1000);
  console.log(`\n${elapsedS} s; load average at end ${os.loadavg().map((x) => x.toFixed(2)).join(" ")}`);
  const summary = {
    bench: "peergrid-cluster",
    version: 1,
    machine: m,
    options: { quick: o.quick, warmupS: o.warmupS, windowS: o.windowS, failovers: o.failovers, idleS: o.idleS },
    verifyCeiling: ceiling,
    sizes: sizes.map((r) => ({
      boxes: r.boxes,
      highestSustainedPerS: r.best?.offeredPerS ?? null,
      highestSustainedThroughputOnlyPerS: r.bestThroughput?.offeredPerS ?? null,
      ratioToVerifyCeiling: r.best === null ? null : r.best.offeredPerS / ceiling.allThreads,
      latencyMs: r.best === null ? null : { p50: r.best.p50Ms, p99: r.best.p99Ms, max: r.best.maxMs },
      blockOffsetMs: r.best === null ? null : { p50: pct(r.best.chain.offsetsMs, 0.5), p99: pct(r.best.chain.offsetsMs, 0.99), max: pct(r.best.chain.offsetsMs, 1) },
      blockIntervalMs: r.best === null ? null : { min: pct(r.best.chain.intervalsMs, 0.001), p50: pct(r.best.chain.intervalsMs, 0.5), max: pct(r.best.chain.intervalsMs, 1) },
      failovers: r.failovers,
      steps: r.steps.map((s) => ({ ...s, chain: { ...s.chain, offsetsMs: undefined, offsetP99Ms: pct(s.chain.offsetsMs, 0.99) } })),
    })),
    idle: idleRun === null ? null : { boxes: idleRun.boxes, blockOffsetMs: { p50: pct(idleRun.chain.offsetsMs, 0.5), p99: pct(idleRun.chain.offsetsMs, 0.99), max: pct(idleRun.chain.offsetsMs, 1) } },
    elapsedS,
  };
  console.log(JSON.stringify(summary));
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  await main();
}
