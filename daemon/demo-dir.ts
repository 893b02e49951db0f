// The folder a demo builds in. `peergrid demo` and `peergrid demo-chain`
// delete and rebuild theirs on every run, so they delete only a folder that
// carries the demos' marker (one a demo made), and never one a demo is
// running from (its pid file names a live process): a mistyped --data-dir
// must not cost anyone their data.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "../ledger/errors.js";

const MARKER = ".peergrid-demo";
const PID_FILE = "demo.pid";

/** The process a demo is running in from `dir`, if one is (its pid file names a live process). */
function runningPid(dir: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(join(dir, PID_FILE), "utf8").trim());
  } catch {
    return null;
  }
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return null;
  try {
    process.kill(pid, 0); // no signal: is it alive?
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM" ? pid : null; // EPERM: alive, someone else's
  }
}

/** Make `dir` empty for a demo run by `by` (a command, for the marker), and say this process runs from it. Throws UsageError. */
export function prepareDemoDir(dir: string, by: string): void {
  if (existsSync(dir)) {
    if (!existsSync(join(dir, MARKER))) throw new UsageError(`${dir} exists and was not made by a peergrid demo: choose another --data-dir (a demo deletes and rebuilds its folder on every run)`);
    const running = runningPid(dir);
    if (running !== null) throw new UsageError(`a demo is running from ${dir} (process ${running}): stop it first (Ctrl-C in its terminal), or give this one another --data-dir`);
    rmSync(dir, { recursive: true, force: true });
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, MARKER), `made by \`${by}\`; deleted and rebuilt on every run\n`);
  writeFileSync(join(dir, PID_FILE), `${process.pid}\n`);
}

/** This process no longer runs from `dir` (the data stays, for `peergrid verify` and a look around). */
export function releaseDemoDir(dir: string): void {
  rmSync(join(dir, PID_FILE), { force: true });
}
