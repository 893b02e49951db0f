// The outage scenario of issue 6 (sim/outage.ts): one day of a neighbourhood
// with a long outage at dusk, through the real grid monitor, dispatch,
// auto-bidder, clearing and settlement. Prints a readable report and, last,
// the whole report as one JSON line.
//   npm run sim:outage
//   npm run sim:outage -- --seed 7 --outage 18:00-24:00 --battery-kwh 200 --battery-kw 100
//   npm run sim:outage -- --critical-reserve-hours 0     no reserve: households may drain the battery
//   npm run sim:outage -- --json                          the JSON line only
import { parseArgs } from "node:util";
import { DEFAULT_OUTAGE, type OutageReport, type OutageScenario, type PriceSummary, checkScenario, outageWindow, runOutage } from "../sim/outage.js";
import { fmtInt, hostInfo, measuredCommit, positiveInt, readOptions } from "./bench-common.js";

const USAGE =
  "usage: sim-outage [--seed N] [--prosumers 60] [--consumers 500] [--critical 3] [--start 12:00] [--outage 18:00-24:00]\n" +
  "                  [--battery-kwh 200] [--battery-kw 100] [--critical-reserve-hours 8] [--unknown-per-million 1000] [--json]";

function wholeOrZero(text: string | undefined, fallback: number, name: string): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text)) throw new Error(`--${name} wants a whole number, got ${text}`);
  return Number(text);
}

function parse(argv: string[]): { scenario: OutageScenario; json: boolean } | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      seed: { type: "string" },
      prosumers: { type: "string" },
      consumers: { type: "string" },
      critical: { type: "string" },
      start: { type: "string", default: "12:00" },
      outage: { type: "string", default: "18:00-24:00" },
      "battery-kwh": { type: "string" },
      "battery-kw": { type: "string" },
      "critical-reserve-hours": { type: "string" },
      "unknown-per-million": { type: "string" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", default: false },
    },
  });
  if (values.help) return null;
  const d = DEFAULT_OUTAGE;
  const scenario: OutageScenario = {
    ...d,
    ...outageWindow(values.start, values.outage),
    seed: positiveInt(values.seed, d.seed, "seed"),
    prosumers: wholeOrZero(values.prosumers, d.prosumers, "prosumers"),
    consumers: wholeOrZero(values.consumers, d.consumers, "consumers"),
    critical: wholeOrZero(values.critical, d.critical, "critical"),
    batteryWh: wholeOrZero(values["battery-kwh"], d.batteryWh / 1_000, "battery-kwh") * 1_000,
    batteryMaxW: wholeOrZero(values["battery-kw"], d.batteryMaxW / 1_000, "battery-kw") * 1_000,
    criticalReserveHours: wholeOrZero(values["critical-reserve-hours"], d.criticalReserveHours, "critical-reserve-hours"),
    readBackUnknownPerMillion: wholeOrZero(values["unknown-per-million"], d.readBackUnknownPerMillion, "unknown-per-million"),
  };
  const problems = checkScenario(scenario);
  if (problems.length > 0) throw new Error(problems.join("; "));
  return { scenario, json: values.json };
}

const money = (micro: number | null) => (micro === null ? "-" : (micro / 1_000_000).toFixed(3));
const kwh = (wh: number) => (wh / 1_000).toFixed(1);

function priceLine(name: string, p: PriceSummary): string {
  return (
    `  ${name.padEnd(7)} ${String(p.intervalsWithPrice).padStart(3)} of ${String(p.intervals).padStart(3)} intervals priced; ` +
    `mean ${money(p.meanMicroPerKWh)}/kWh (min ${money(p.minMicroPerKWh)}, max ${money(p.maxMicroPerKWh)}), ` +
    `cleared ${kwh(p.volumeWh)} kWh, delivered ${kwh(p.deliveredWh)} kWh; utility ${money(p.utilityMicro)}, community ${money(p.communityMicro)}`
  );
}

function print(r: OutageReport, runtimeS: number): void {
  const s = r.scenario;
  const c = r.critical;
  const b = r.breakers;
  const clock = (ms: number | null) => (ms === null ? "never" : r.island.events.find((e) => e.timeMs === ms)?.clock ?? String(ms));
  console.log(`Outage scenario (issue 6), seed ${s.seed}: ${s.critical} critical sites, ${s.prosumers} prosumers, ${s.consumers} consumers; ${runtimeS.toFixed(1)} s`);
  console.log(`  neighbourhood peak ${fmtInt(r.premises.neighbourhoodPeakW)} W at ${r.premises.neighbourhoodPeakClock}; critical sites: ${r.premises.critical.map((p) => `${p.label} (peak ${fmtInt(p.peakW)} W)`).join(", ")}`);
  console.log(`  battery ${kwh(s.batteryWh)} kWh, ${kwh(s.batteryMaxW)} kW; critical reserve ${kwh(r.battery.criticalReserveWh)} kWh (${s.criticalReserveHours} h of the critical peak)`);
  console.log("Grid monitor");
  for (const e of r.island.events) console.log(`  ${e.clock} ${e.islanded ? "islanded" : "connected"} (${e.reason}, measured ${e.measured})`);
  console.log(`  islanded ${clock(r.island.startMs)} to ${clock(r.island.endMs)}: ${r.island.detectionDelayMs ?? "-"} ms after the outage began, reconnected ${r.island.reconnectionDelayMs ?? "-"} ms after it ended; ${fmtInt(r.island.islandedSeconds)} s islanded`);
  const cadence = r.steps.calmStepS === 1 ? "every second" : `every second islanded or restoring, every ${r.steps.calmStepS} s otherwise`;
  console.log(`  ${fmtInt(r.steps.dispatchSteps)} dispatch steps over ${fmtInt(r.steps.seconds)} s (${cadence})`);
  console.log("Critical sites");
  console.log(`  coverage while supply allowed ${(c.coverageWhileSupplyAllowedPpm / 10_000).toFixed(2)} % (${c.servedWhileSupplyAllowedKWh} of ${c.demandWhileSupplyAllowedKWh} kWh)`);
  console.log(`  served while islanded ${(c.whileIslandedCoveragePpm / 10_000).toFixed(2)} % (${c.whileIslandedServedKWh} of ${c.whileIslandedDemandKWh} kWh); over the day ${c.servedKWh} of ${c.demandKWh} kWh`);
  console.log(`  seconds off while the supply allowed: ${c.offWhileSupplyAllowedSeconds} (share ${c.offWhileSupplyAllowedShare}); seconds off for any reason: ${c.offSeconds}`);
  console.log("Shedding and breakers");
  console.log(`  energy shed ${r.shed.energyKWh} kWh (non-critical ${r.shed.nonCriticalKWh}, critical ${r.shed.criticalKWh}; ${r.shed.duringIslandKWh} while islanded); at most ${r.shed.peakPremisesOff} premises off at once`);
  console.log(`  breaker operations ${fmtInt(b.operations)} (${fmtInt(b.opens)} opens, ${fmtInt(b.closes)} closes); most on one breaker ${b.maxPerBreaker} (premise ${b.maxPerBreakerId ?? "-"})`);
  console.log(`  commands ${fmtInt(b.commands)} (${fmtInt(b.repeats)} repeats, ${b.overridesMinOn} overriding min-on); read-backs unknown ${fmtInt(b.readBackUnknown)}`);
  console.log(`  order violations ${r.invariants.orderViolationSeconds} s (${r.invariants.orderViolationConnectedSeconds} connected), served above supply ${r.invariants.servedAboveSupplySteps} steps, overload ${r.invariants.overloadSeconds} s (worst ${fmtInt(r.invariants.overloadWorstW)} W${r.invariants.overloadSeconds === 0 ? "" : `; at ${r.invariants.overloadClocks.join(", ")}`})`);
  console.log("Energy and battery");
  console.log(`  demand ${r.energy.demandKWh} kWh, served ${r.energy.servedKWh}, PV ${r.energy.pvKWh} (curtailed ${r.energy.pvCurtailedKWh}), grid import ${r.energy.gridImportKWh}, export ${r.energy.gridExportKWh}`);
  console.log(`  battery min ${kwh(r.battery.minWh)} kWh at ${r.battery.minClock}, end ${kwh(r.battery.endWh)} kWh, discharged ${kwh(r.battery.dischargedWh)} kWh; reserve reached ${r.battery.reserveReachedClock ?? "never"}`);
  console.log("Market (volume-weighted clearing price per kWh, currency units)");
  for (const phase of ["before", "during", "after"] as const) console.log(priceLine(phase, r.market.prices[phase]));
  console.log("  interval  phase   island  price   cleared kWh  delivered kWh  buys sells");
  for (const iv of r.market.intervals) {
    console.log(`  ${iv.clock}     ${iv.phase.padEnd(7)} ${String(iv.islandedPermille).padStart(5)}‰  ${money(iv.priceMicroPerKWh).padStart(5)}  ${kwh(iv.volumeWh).padStart(11)}  ${kwh(iv.deliveredWh).padStart(13)}  ${String(iv.buyOrders).padStart(4)} ${String(iv.sellOrders).padStart(5)}`);
  }
  console.log("Simplifications");
  for (const line of r.simplifications) console.log(`  - ${line}`);
}

function main(): void {
  const o = readOptions(parse, USAGE);
  if (o === null) return;
  const started = Date.now();
  const report = runOutage(o.scenario);
  const runtimeS = (Date.now() - started) / 1_000;
  if (!o.json) print(report, runtimeS);
  const host = hostInfo();
  console.log(JSON.stringify({ runtimeS, commit: measuredCommit(["sim", "market"], "+ uncommitted changes"), host: { cpu: host.cpu, cores: host.cores, node: host.node }, report }));
}

main();
