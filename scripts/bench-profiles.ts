// Profile benchmark (issue 8, point 3): what the neighbourhood simulator
// pays for realistic premises. `npx tsc -p tsconfig.json && node
// dist/scripts/bench-profiles.js` (`--help`).
//
// A neighbourhood of 560 premises by default (3 critical sites, 20
// prosumers with PV and a battery, 40 with PV only, 497 consumers: the
// issue's 60 + 500) at London, stepped through one local day a second at a
// time: every premise's netPowerW (load, PV, battery) each simulated
// second, 48 million calls, as the simulator does. Reported: ns per call
// (the per-day table builds included, as they fall in the run), the whole
// day's time against the simulator's budget (the full day of the whole
// simulator in at most 60 s), and the per-day table build cost alone.
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { createNeighbourhood } from "../sim/premise.js";
import { LONDON, MS_PER_DAY, localDayOf, offsetMsOf, utcMs } from "../sim/site.js";
import { type Row, fmtInt, hostInfo, measuredCommit, positiveInt, printTable, readOptions } from "./bench-common.js";

interface Options {
  readonly premises: number;
  readonly seconds: number;
  readonly seed: number;
  readonly month: number;
}

const USAGE = "usage: node dist/scripts/bench-profiles.js [--premises 560] [--seconds 86400] [--seed 7] [--month 6]";

function parse(argv: string[]): Options | null {
  const { values } = parseArgs({ args: argv, options: { premises: { type: "string" }, seconds: { type: "string" }, seed: { type: "string" }, month: { type: "string" }, help: { type: "boolean" } } });
  if (values.help === true) return null;
  const month = positiveInt(values.month, 6, "month");
  if (month > 12) throw new Error("--month wants 1..12");
  return { premises: positiveInt(values.premises, 560, "premises"), seconds: positiveInt(values.seconds, 86_400, "seconds"), seed: positiveInt(values.seed, 7, "seed"), month };
}

function main(): void {
  const o = readOptions(parse, USAGE);
  if (o === null) return;
  const critical = Math.min(3, o.premises);
  const withBattery = Math.min(20, o.premises - critical);
  const prosumers = Math.min(40, o.premises - critical - withBattery);
  const consumers = o.premises - critical - withBattery - prosumers;
  const buildStart = performance.now();
  const { premises } = createNeighbourhood({ seed: o.seed, site: LONDON, critical, prosumersWithBattery: withBattery, prosumers, consumers });
  const buildMs = performance.now() - buildStart;
  const startMs = utcMs(2025, o.month, 15);
  const day = localDayOf(startMs, offsetMsOf(LONDON));

  // The per-day tables alone (a different day, so the run below builds its own).
  const tablesStart = performance.now();
  for (const p of premises) {
    p.loadDay(day - 1);
    p.pvW(startMs - MS_PER_DAY + 12 * 3_600_000);
  }
  const tablesMs = performance.now() - tablesStart;

  let checksum = 0;
  const runStart = performance.now();
  for (let s = 0; s < o.seconds; s++) {
    const t = startMs + s * 1_000;
    for (const p of premises) checksum += p.netPowerW(t);
  }
  const runMs = performance.now() - runStart;
  const calls = o.seconds * premises.length;
  const nsPerCall = (runMs * 1e6) / calls;

  console.log(JSON.stringify({ host: hostInfo(), commit: measuredCommit(["sim"], "+ uncommitted sim/"), options: o, premises: { critical, withBattery, prosumers, consumers } }));
  const rows: Row[] = [
    ["create the premises", `${buildMs.toFixed(1)} ms`, "", ""],
    ["per-day tables, all premises", `${tablesMs.toFixed(1)} ms`, "", ""],
    ["netPowerW calls", fmtInt(calls), "", ""],
    ["ns per netPowerW", nsPerCall.toFixed(1), "<= 500 (a day of 560 in < 25 s)", nsPerCall <= 500 ? "ok" : "SLOW"],
    ["the whole day", `${(runMs / 1_000).toFixed(2)} s`, "well under 60 s", runMs < 30_000 ? "ok" : "SLOW"],
    ["checksum (net Wh of the day, all premises)", fmtInt(checksum / 3_600), "", ""],
  ];
  printTable(`Profiles: ${premises.length} premises, ${fmtInt(o.seconds)} one-second steps from 2025-${String(o.month).padStart(2, "0")}-15 00:00 UTC, London`, rows);
}

main();
