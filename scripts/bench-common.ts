// What the benchmark scripts share: reading their options, describing the
// machine and the commit they measured, printing a result table, measuring
// CPU (a process's, and the machine's outside ours), and the bare Ed25519
// verify rate.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { LocalCluster } from "../daemon/local-cluster.js";
import type { NodeStatus } from "../daemon/node.js";
import { NodeSigner, NodeVerifier } from "../ledger/keys.js";
import { ledgerPath } from "../ledger/ledger.js";
import { LedgerStore } from "../ledger/store.js";
import { percentile } from "../daemon/latency.js";

/** Parse the options with `parse` (null: --help was asked); a bad option prints the usage and sets exit code 2. */
export function readOptions<T>(parse: (argv: string[]) => T | null, usage: string): T | null {
  let o: T | null;
  try {
    o = parse(process.argv.slice(2));
  } catch (err) {
    console.error(`${(err as Error).message}\n${usage}`);
    process.exitCode = 2;
    return null;
  }
  if (o === null) console.log(usage);
  return o;
}

/** An option's positive whole number, or `fallback` when it is not given. */
export function positiveInt(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} wants a positive integer, got ${text}`);
  return n;
}

/** An option's comma-separated positive whole numbers, or `fallback` when it is not given. */
export function positiveIntList(text: string | undefined, fallback: readonly number[], name: string): number[] {
  return text === undefined ? [...fallback] : text.split(",").map((t) => positiveInt(t.trim(), 0, name));
}

/** The commit measured, marked when the measured code (`dirs`) differs from it (`note` says how). */
export function measuredCommit(dirs: readonly string[], note: string): string {
  let commit = "unknown";
  try {
    commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", ...dirs], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
    if (dirty !== "") commit += ` ${note}`;
  } catch {
    // not a git checkout
  }
  return commit;
}

/** The machine, as every benchmark reports it. */
export function hostInfo() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model ?? "unknown",
    cores: cpus.length,
    memoryGB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    openssl: process.versions.openssl,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    loadAvgStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}

export const fmtInt = (n: number) => Math.round(n).toLocaleString("en-US");

export type Row = [name: string, value: string, target: string, verdict: string];

export function printTable(title: string, rows: readonly Row[]): void {
  const widths = [0, 1, 2].map((c) => Math.max(0, ...rows.map((r) => r[c]!.length)));
  console.log(`\n${title}`);
  for (const r of rows) console.log(`  ${r[0].padEnd(widths[0]!)}  ${r[1].padStart(widths[1]!)}  ${r[2].padEnd(widths[2]!)}  ${r[3]}`.trimEnd());
}

/**
 * Blocks of loopback ports, below the ephemeral range, each run of a bench on its
 * own (offset by the process id), and each cluster of a run on ports of its own,
 * so no step waits for the last one's sockets to leave TIME_WAIT.
 */
export class Ports {
  private next: number;
  constructor(base: number, stride: number, slots: number) {
    this.next = base + (process.pid % slots) * stride;
  }
  /** The first of `n` ports no earlier take() gave. */
  take(n: number): number {
    const first = this.next;
    this.next += n;
    return first;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
export const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** GET a JSON document; null when it does not come (in time) or is not 2xx. */
export async function getJson<T>(url: string, timeoutMs = 2_000): Promise<T | null> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    return r.ok ? ((await r.json()) as T) : null;
  } catch {
    return null;
  }
}

/** A process's resident memory (or another /proc status field, e.g. VmHWM), MB. */
export function rssMB(pid: number | undefined, field = "VmRSS"): number {
  if (pid === undefined) return 0;
  try {
    const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m === null ? 0 : Number(m[1]) / 1024;
  } catch {
    return 0;
  }
}

/** A process's CPU time so far, in clock ticks (user + system, from /proc). */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" "); // after "pid (comm) "
  return Number(fields[11]) + Number(fields[12]); // utime, stime: fields 14 and 15 of the whole line
}

export function clockTicksPerS(): number {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
}

export interface ChainWindow {
  readonly seconds: number; // whole seconds of load in the window
  readonly signedInWindow: number; // readings signed in those seconds that are in the chain
  readonly rejected: number; // ... of which with a verdict other than ok
  readonly blocks: number; // blocks cut in the window
  readonly offsetsMs: number[]; // each block's distance from the nearest whole second
  readonly intervalsMs: number[];
  readonly skips: number; // intervals over 1.5 s
}

/**
 * One box's ledger after a step: of the readings signed in the whole seconds
 * of [t0, t1) (the synthetic load signs each second's at that second), how
 * many are in the chain; and when the blocks cut in [t0, t1) were timed.
 */
export function chainWindow(dataDir: string, t0: number, t1: number): ChainWindow {
  const store = LedgerStore.open(ledgerPath(dataDir), { readonly: true });
  try {
    const fromMs = Math.ceil(t0 / 1000) * 1000;
    const toMs = Math.floor(t1 / 1000) * 1000;
    const times: number[] = [];
    let signedInWindow = 0;
    let rejected = 0;
    for (const { block, results } of store.blocksFrom(1)) {
      const t = block.header.timeMs;
      if (t >= t0 && t < t1) times.push(t);
      block.txs.forEach((tx, i) => {
        const body = tx.tx.body;
        if (body.type !== "reading" || body.timeMs < fromMs || body.timeMs >= toMs) return;
        signedInWindow++;
        if (results[i] !== 0) rejected++;
      });
    }
    const intervalsMs = times.slice(1).map((t, i) => t - (times[i] as number));
    return {
      seconds: (toMs - fromMs) / 1000,
      signedInWindow,
      rejected,
      blocks: times.length,
      offsetsMs: times.map((t) => Math.min(t % 1000, 1000 - (t % 1000))),
      intervalsMs,
      skips: intervalsMs.filter((d) => d > 1_500).length,
    };
  } finally {
    store.close();
  }
}

/** Nearest-rank percentile (q in (0, 1]) of numbers in any order; null for none. */
export function pct(xs: readonly number[], q: number): number | null {
  return xs.length === 0 ? null : percentile([...xs].sort((a, b) => a - b), q);
}

/** The median (nearest rank) of numbers in any order; NaN for none. */
export const median = (xs: readonly number[]) => pct(xs, 0.5) ?? Number.NaN;

/** One decimal, for tables and log lines. */
export const r1 = (x: number | null) => (x === null ? "-" : (Math.round(x * 10) / 10).toString());

/** CPU of a process between two samples, % of one core. */
export class CpuMeter {
  private ticks: number;
  private atMs: number;
  constructor(readonly pid: number) {
    this.ticks = cpuTicks(pid);
    this.atMs = performance.now();
  }
  sample(): number {
    const t = cpuTicks(this.pid);
    const at = performance.now();
    const p = ((t - this.ticks) / clockTicksPerS() / ((at - this.atMs) / 1000)) * 100;
    this.ticks = t;
    this.atMs = at;
    return p;
  }
}

/**
 * CPU ticks of the whole machine (/proc/stat) and of this script's process
 * tree (itself, its live descendants, and the reaped ones through cutime +
 * cstime): their difference over a part is CPU the machine spent on work
 * that is not ours (other users' jobs, the hypervisor's steal).
 */
export interface CpuSplit {
  readonly machine: number;
  readonly ours: number;
  readonly atMs: number;
}

export function cpuSplit(): CpuSplit {
  const f = (readFileSync("/proc/stat", "utf8").split("\n")[0] as string).trim().split(/\s+/).slice(1).map(Number);
  const machine = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
  const procs = new Map<number, { ppid: number; ticks: number }>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, "utf8");
      const x = st.slice(st.lastIndexOf(")") + 2).split(" ");
      procs.set(Number(d), { ppid: Number(x[1]), ticks: Number(x[11]) + Number(x[12]) + Number(x[13]) + Number(x[14]) });
    } catch {
      // exited
    }
  }
  const ourPid = (pid: number): boolean => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
      if (p === process.pid) return true;
      p = procs.get(p)?.ppid ?? 0;
    }
    return false;
  };
  let ours = 0;
  for (const [pid, p] of procs) if (ourPid(pid)) ours += p.ticks;
  return { machine, ours, atMs: performance.now() };
}

/** Share of all cores busy with work not ours between two splits, %. */
export function foreignCpuPercent(a: CpuSplit, b: CpuSplit): number {
  const seconds = (b.atMs - a.atMs) / 1000;
  return Math.max(0, ((b.machine - a.machine - (b.ours - a.ours)) / clockTicksPerS() / seconds / os.cpus().length) * 100);
}

/** Every running box's status (with `query`, e.g. "?resetLatency=true"); a box that does not answer in 5 s is left out. */
export async function statusesOf(c: LocalCluster, query = ""): Promise<Map<number, NodeStatus>> {
  const out = new Map<number, NodeStatus>();
  await Promise.all(
    [...c.procs.keys()].map(async (i) => {
      const s = await getJson<NodeStatus>(`http://127.0.0.1:${c.httpPort(i)}/api/v1/status${query}`, 5_000); // a loaded box may be slow to answer
      if (s !== null) out.set(i, s);
    }),
  );
  return out;
}

// ---------------------------------------------------------------- the bare verify rate

interface VerifyJob {
  readonly role: "verify";
  readonly durationMs: number;
}

/** In a worker: verify signatures of reading-sized messages for durationMs; report the count. */
function verifyWorker(job: VerifyJob): void {
  const signer = NodeSigner.generate();
  const verifier = new NodeVerifier();
  const msgs = range(64).map((i) => {
    const m = new Uint8Array(64 + 95).map((_, k) => (i * 31 + k * 7) & 0xff); // prefix + a reading's bytes
    return { m, sig: signer.sign(m) };
  });
  for (const x of msgs) verifier.verify(signer.publicKey, x.m, x.sig); // warm-up
  let n = 0;
  const end = performance.now() + job.durationMs;
  const t0 = performance.now();
  while (performance.now() < end) {
    for (const x of msgs) if (verifier.verify(signer.publicKey, x.m, x.sig)) n++;
  }
  parentPort?.postMessage({ count: n, ms: performance.now() - t0 });
}

/** Ed25519 verifies a second through node:crypto (NodeVerifier), `threads` worker threads for durationMs, summed. */
export async function verifyRate(threads: number, durationMs: number): Promise<number> {
  const results = await Promise.all(
    range(threads).map(
      () =>
        new Promise<number>((resolveRate, reject) => {
          const w = new Worker(new URL(import.meta.url), { workerData: { role: "verify", durationMs } satisfies VerifyJob });
          w.once("message", (r: { count: number; ms: number }) => resolveRate((r.count * 1000) / r.ms));
          w.once("error", reject);
        }),
    ),
  );
  return results.reduce((a, b) => a + b, 0);
}

// verifyRate's workers run this module.
if (!isMainThread && (workerData as VerifyJob | undefined)?.role === "verify") verifyWorker(workerData as VerifyJob);

/**
 * A fresh neighbourhood of `boxes` in a new temporary directory under `parent` (LocalCluster.create),
 * handed to `run`; then every box is stopped (SIGTERM unless said) and the directory removed unless
 * `keep`, whatever `run` did.
 */
export async function withLocalCluster<T>(
  o: { readonly parent: string; readonly prefix: string; readonly boxes: number; readonly basePort: number; readonly keep?: boolean; readonly stopSignal?: NodeJS.Signals },
  run: (c: LocalCluster) => Promise<T>,
): Promise<T> {
  const dir = mkdtempSync(join(o.parent, o.prefix));
  const c = LocalCluster.create({ dir, boxes: o.boxes, basePort: o.basePort, chainId: "bench" });
  try {
    return await run(c);
  } finally {
    await c.stopAll(o.stopSignal ?? "SIGTERM");
    if (o.keep !== true) rmSync(dir, { recursive: true, force: true });
  }
}
