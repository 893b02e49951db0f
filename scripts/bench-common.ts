// What the benchmark scripts share: reading their options, describing the
// machine and the commit they measured, and printing a result table.
import { execFileSync } from "node:child_process";
import os from "node:os";

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
