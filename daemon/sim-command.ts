// `peergrid sim`: a whole neighbourhood through the real cores in simulated
// time (sim/neighbourhood.ts), with a progress bar on stderr, then the text
// summary and a report folder a person can open (sim/report.ts).
//
// Everything is checked before the run starts (each option, the scenario it
// makes, the --out folder), so a mistake costs no waiting and writes nothing:
// one line naming the option, exit 2. The files are written only once the run
// is done. --out never overwrites a folder of someone else's files: it takes a
// missing or empty folder, or one a previous `peergrid sim` wrote (its marker,
// sim/report.ts REPORT_MARKER), and then replaces only the report's own files.
import { type Command, Option } from "commander";
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { UsageError } from "../ledger/errors.js";
import { DEFAULT_SIM_OPTIONS, type NeighbourhoodProgress, type NeighbourhoodScenario, type SimOptions, runNeighbourhood, scenarioFrom } from "../sim/neighbourhood.js";
import { checkScenario } from "../sim/outage.js";
import { MS_PER_DAY, MS_PER_HOUR } from "../sim/site.js";
import { LocalClock, REPORT_FILES, REPORT_FORMAT, REPORT_MARKER, type ReportMeta, fmtCount, fmtDuration, fmtInt, summaryText, writeReportFiles } from "../sim/report.js";


/** The option each of SimOptions' fields comes from (scenarioFrom's RangeErrors name the field). */
const FLAG_OF: Readonly<Record<string, string>> = {
  seed: "--seed",
  prosumers: "--prosumers",
  batteries: "--batteries",
  consumers: "--consumers",
  critical: "--critical",
  days: "--days",
  hours: "--hours",
  date: "--date",
  start: "--start",
  outage: "--outage",
  voters: "--voters",
  readingPeriodS: "--reading-period-s",
  latitude: "--latitude",
  latitudeDeg: "--latitude",
  longitude: "--longitude",
  longitudeDeg: "--longitude",
  utcOffsetHours: "--utc-offset-hours",
  batteryKWh: "--battery-kwh",
  batteryKW: "--battery-kw",
  premises: "--prosumers, --consumers, --critical",
};

interface SimFlags {
  prosumers: string;
  batteries: string;
  consumers: string;
  critical: string;
  days: string;
  hours?: string;
  date: string;
  start: string;
  outage?: string;
  seed: string;
  voters: string;
  readingPeriodS: string;
  latitude: string;
  longitude: string;
  utcOffsetHours: string;
  batteryKwh: string;
  batteryKw: string;
  out: string;
  json?: boolean;
}

function whole(flag: string, text: string): number {
  if (!/^-?\d{1,15}$/.test(text.trim())) throw new UsageError(`${flag}: a whole number, got "${text}"`);
  return Number(text.trim());
}

function decimal(flag: string, text: string): number {
  if (!/^-?\d{1,15}(\.\d{1,15})?$/.test(text.trim())) throw new UsageError(`${flag}: a number like 51.5 or -0.13, got "${text}"`);
  return Number(text.trim());
}

/** A scenarioFrom RangeError ("field: why") as a usage error naming the option. */
function usageOf(err: unknown): never {
  if (!(err instanceof RangeError)) throw err;
  const m = /^([A-Za-z ]+): (.*)$/s.exec(err.message);
  const flag = m === null ? undefined : FLAG_OF[m[1] as string];
  throw new UsageError(flag === undefined ? err.message : `${flag}: ${m?.[2] ?? ""}`);
}

/** The flags as SimOptions (--hours replaces --days). */
export function simOptionsOf(o: SimFlags, daysGiven: boolean): SimOptions {
  const hours = o.hours === undefined ? null : whole("--hours", o.hours);
  if (hours !== null && daysGiven) throw new UsageError("--hours replaces --days: give one of them");
  const outage = o.outage === undefined || o.outage === "none" ? null : o.outage;
  const options: SimOptions = {
    seed: whole("--seed", o.seed),
    prosumers: whole("--prosumers", o.prosumers),
    batteries: whole("--batteries", o.batteries),
    consumers: whole("--consumers", o.consumers),
    critical: whole("--critical", o.critical),
    days: hours === null ? whole("--days", o.days) : Math.max(1, Math.ceil(hours / 24)),
    ...(hours !== null && { hours }),
    date: o.date,
    start: o.start,
    outage,
    voters: whole("--voters", o.voters),
    readingPeriodS: whole("--reading-period-s", o.readingPeriodS),
    latitudeDeg: decimal("--latitude", o.latitude),
    longitudeDeg: decimal("--longitude", o.longitude),
    utcOffsetHours: decimal("--utc-offset-hours", o.utcOffsetHours),
    batteryKWh: whole("--battery-kwh", o.batteryKwh),
    batteryKW: whole("--battery-kw", o.batteryKw),
  };
  return options;
}

/** The scenario of the options. Throws UsageError. */
export function simScenarioOf(options: SimOptions): NeighbourhoodScenario {
  try {
    return scenarioFrom(options);
  } catch (err) {
    usageOf(err);
  }
}

/** --out: a missing or empty folder, or one holding a previous sim report. Throws UsageError. */
export function checkOutDir(dir: string): void {
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) throw new UsageError(`--out: ${dir} is a file, not a folder`);
  const entries = readdirSync(dir);
  if (entries.length > 0 && !entries.includes(REPORT_MARKER)) throw new UsageError(`--out: ${dir} holds files that are not a peergrid sim report: choose another folder (a report overwrites only a folder a report made)`);
}

/** What progress looks like: a redrawn bar on a terminal, a line every ~10 % otherwise. */
export class SimProgress {
  private readonly startedMs = performance.now();
  private lastDrawMs = -Infinity;
  private lastTenth = 0;
  private width = 0;

  constructor(
    private readonly out: NodeJS.WritableStream & { isTTY?: boolean },
    private readonly startMs: number,
    private readonly clock: LocalClock,
  ) {}

  update(p: NeighbourhoodProgress): void {
    const now = performance.now();
    const fraction = p.totalS === 0 ? 1 : p.doneS / p.totalS;
    const elapsedMs = now - this.startedMs;
    const leftMs = fraction === 0 ? null : (elapsedMs * (1 - fraction)) / fraction;
    const simMs = this.startMs + p.doneS * 1_000;
    const day = Math.floor((p.doneS * 1_000) / MS_PER_DAY);
    const when = `${p.totalS > MS_PER_DAY / 1_000 ? `day ${day + 1} ` : ""}${this.clock.clock(simMs)}`;
    const pct = `${String(Math.floor(fraction * 100)).padStart(3)} %`;
    const figures = `simulated ${when}, ${fmtInt(p.height)} blocks, ${fmtInt(p.txs)} txs, ${seconds(elapsedMs)} elapsed${leftMs === null ? "" : `, ~${seconds(leftMs)} left`}`;
    if (this.out.isTTY === true) {
      if (now - this.lastDrawMs < 100 && fraction < 1) return; // a terminal needs no more than 10 frames a second
      this.lastDrawMs = now;
      const cells = 24;
      const filled = Math.round(fraction * cells);
      const line = `[${"#".repeat(filled)}${"-".repeat(cells - filled)}] ${pct}  ${figures}`;
      this.out.write(`\r${line}${" ".repeat(Math.max(0, this.width - line.length))}`);
      this.width = line.length;
      return;
    }
    const tenth = Math.floor(fraction * 10);
    if (tenth <= this.lastTenth) return;
    this.lastTenth = tenth;
    this.out.write(`sim ${pct}  ${figures}\n`);
  }

  done(): void {
    if (this.out.isTTY === true && this.width > 0) this.out.write("\n");
  }
}

function seconds(ms: number): string {
  if (ms < 60_000) return `${(ms / 1_000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${String(Math.round((ms % 60_000) / 1_000)).padStart(2, "0")} s`;
}

/** The peergrid commit this build came from, and whether its tree had changes; null when not known (no git, not a checkout). */
function commitOf(): { commit: string | null; dirty: boolean | null } {
  const root = fileURLToPath(new URL("../../", import.meta.url));
  const git = (args: string[]) => execFileSync("git", args, { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5_000 }).trim();
  try {
    const commit = git(["rev-parse", "HEAD"]);
    if (!/^[0-9a-f]{40}$/.test(commit)) return { commit: null, dirty: null };
    return { commit, dirty: git(["status", "--porcelain", "--untracked-files=no"]) !== "" };
  } catch {
    return { commit: null, dirty: null };
  }
}

/** The command as given, rebuilt from the options typed (so it can be run again). */
function commandLine(cmd: Command): string {
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`);
  const parts = ["peergrid", "sim"];
  for (const opt of cmd.options) {
    const key = opt.attributeName();
    if (cmd.getOptionValueSource(key) !== "cli") continue;
    const v: unknown = cmd.getOptionValue(key);
    parts.push(opt.long ?? key);
    if (typeof v === "string") parts.push(quote(v));
  }
  return parts.join(" ");
}

/** An option whose default is shown as it is typed (commander quotes string defaults). */
function withDefault(flags: string, description: string, value: number): Option {
  return new Option(flags, description).default(String(value), String(value));
}

export function registerSimCommand(program: Command, log: (s: string) => void, setExit: (code: number) => void): void {
  const d = DEFAULT_SIM_OPTIONS;
  program
    .command("sim")
    .description("simulate a whole neighbourhood through the real Raft core, ledger and market in accelerated time, then write a report (README: Simulating a neighbourhood)")
    .addOption(withDefault("--prosumers <n>", "households with solar panels", d.prosumers))
    .addOption(withDefault("--batteries <n>", "of the prosumers, how many have a home battery", d.batteries))
    .addOption(withDefault("--consumers <n>", "households without solar", d.consumers))
    .addOption(withDefault("--critical <n>", "critical sites (shelters, clinics), powered first in an outage", d.critical))
    .addOption(withDefault("--days <n>", "days to simulate", d.days))
    .option("--hours <n>", "hours to simulate instead of --days (a quick look; the per-day figures are scaled)")
    .option("--date <YYYY-MM-DD>", "the first local day (the season follows from it)", d.date)
    .option("--start <HH:MM>", "local time of day the run starts", d.start)
    .option("--outage <HH:MM-HH:MM>", "the utility is down over this local window (an end at or before its start is the next day); none (the default): no outage")
    .addOption(withDefault("--seed <n>", "the same seed gives the same neighbourhood and the same final chain hash", d.seed))
    .addOption(withDefault("--voters <n>", "voting boxes keeping consensus (the other boxes submit to them), 1 to 9", d.voters))
    .addOption(withDefault("--reading-period-s <s>", "seconds between a box's signed meter readings", d.readingPeriodS))
    .addOption(withDefault("--latitude <deg>", "the neighbourhood's latitude, for the sun", d.latitudeDeg))
    .addOption(withDefault("--longitude <deg>", "the neighbourhood's longitude, for the sun", d.longitudeDeg))
    .addOption(withDefault("--utc-offset-hours <h>", "local time = UTC + this", d.utcOffsetHours))
    .addOption(withDefault("--battery-kwh <kWh>", "the community battery's capacity", d.batteryKWh))
    .addOption(withDefault("--battery-kw <kW>", "the community battery's power limit", d.batteryKW))
    .option("--out <dir>", "the report folder: missing, empty, or a previous report's (only its own files are replaced)", "sim-report")
    .option("--json", "print report.json's content on stdout instead of the summary")
    .action(async (o: SimFlags, cmd: Command) => {
      const options = simOptionsOf(o, cmd.getOptionValueSource("days") === "cli");
      const scenario = simScenarioOf(options);
      const out = resolve(o.out);
      checkOutDir(out);
      const clock = new LocalClock(options.utcOffsetHours * MS_PER_HOUR);
      const w = scenario.world;
      const premises = w.prosumers + w.consumers + w.critical;
      process.stderr.write(`peergrid sim: ${fmtCount(premises, "premise")} for ${fmtDuration(w.durationMs)} from ${clock.date(w.dayStartMs)} ${clock.clock(w.dayStartMs)}, seed ${options.seed} ...\n`);
      const progress = new SimProgress(process.stderr, w.dayStartMs, clock);
      const startedMs = performance.now();
      const report = await runNeighbourhood(scenario, { onProgress: (p) => progress.update(p) });
      const runtimeMs = Math.round(performance.now() - startedMs);
      progress.done();
      const { commit, dirty } = commitOf();
      const meta: ReportMeta = { command: commandLine(cmd), runtimeMs, nodeVersion: process.version, commit, commitDirty: dirty, options };
      checkOutDir(out); // again: someone may have put files there while it ran
      const files = writeReportFiles(out, report, meta);
      const html = files.find((f) => f.path.endsWith(REPORT_FILES.html));
      const json = files.find((f) => f.path.endsWith(REPORT_FILES.json));
      if (o.json === true) {
        log(JSON.stringify({ format: REPORT_FORMAT, meta, report }, null, 2));
        process.stderr.write(`wrote ${html?.path ?? out} and ${json?.path ?? out}\n`);
      } else {
        log(summaryText(report));
        log(`\nSimulated in ${seconds(runtimeMs)}. Open the report: ${html?.path ?? out}`);
        log(`Every figure: ${json?.path ?? out}; charts: ${files.filter((f) => f.path.endsWith(".svg")).map((f) => f.path).join(", ")}`);
      }
      setExit(0);
    });
}
