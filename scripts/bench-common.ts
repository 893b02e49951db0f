// What the benchmark scripts share: reading their options, describing the
// machine and the commit they measured, and printing a result table.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import os from "node:os";
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
