// What `peergrid sim` shows a person: a few lines for the terminal, and a
// folder they can open (report.html, its SVG charts, report.json).
//
// Everything here is a function of the NeighbourhoodReport alone, so the
// same report gives byte-identical text, HTML and SVG (no clock, no locale:
// numbers are formatted by hand, never with toLocaleString). What varies per
// run (the command line, the runtime, the Node version, the commit) is the
// `meta`, and it goes into report.json only.
//
// Money in the report is integer micro-currency; it is shown as units with 2
// decimals (totals) or 3 (prices per kWh), rounded half away from zero on the
// integer, the currency left unnamed ("units"). Every string that reaches SVG
// or HTML goes through esc(): labels come from the report, and a report is
// data (it may have been edited, or come from another version).
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { assert } from "../ledger/assert.js";
import type { IntervalRow, NeighbourhoodReport } from "./neighbourhood.js";

/** report.json's `format`: bump when its shape changes incompatibly. */
export const REPORT_FORMAT = "peergrid-sim-report/1";
/** The file that says a folder holds a sim report (so a next run may overwrite it; see daemon/sim-command.ts). */
export const REPORT_MARKER = ".peergrid-sim-report";
export const REPORT_FILES = {
  json: "report.json",
  html: "report.html",
  supplyDemand: "supply-demand.svg",
  price: "price.svg",
  energy: "energy.svg",
} as const;

/** What varies between two runs of the same scenario: report.json only. */
export interface ReportMeta {
  /** The command as typed, e.g. "peergrid sim --prosumers 6 --hours 2". */
  readonly command: string;
  readonly runtimeMs: number;
  readonly nodeVersion: string;
  /** The peergrid commit the run was built from, if known, and whether the tree had changes. */
  readonly commit: string | null;
  readonly commitDirty: boolean | null;
  /** The options the scenario was made from (after defaults). */
  readonly options?: unknown;
}

/** Charts draw at most this many points per series; a longer run is drawn in buckets of whole intervals. */
const CHART_POINTS_MAX = 768;
/** The HTML's interval table shows at most this many rows (a month of 15-minute intervals); report.json has them all. */
const TABLE_ROWS_MAX = 3_000;

const MS_PER_MIN = 60_000;
const MS_PER_HOUR = 3_600_000;
const MS_PER_DAY = 86_400_000;
const DEFAULT_INTERVAL_MS = 15 * MS_PER_MIN;

// ---- formatting: integers by hand, deterministic ----

/** XML/HTML text and attribute escaping. */
export function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c] as string);
}

/** 1234567 -> "1,234,567" (any locale). */
function group(digits: string): string {
  return digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

export function fmtInt(n: number): string {
  assert(Number.isFinite(n), "fmtInt takes a finite number");
  const r = Math.round(n);
  return `${r < 0 ? "-" : ""}${group(String(Math.abs(r)))}`;
}

/** A float with `decimals` places and grouped thousands. */
function fmtFixed(x: number, decimals: number): string {
  assert(Number.isFinite(x), "fmtFixed takes a finite number");
  const [whole, frac] = Math.abs(x).toFixed(decimals).split(".") as [string, string | undefined];
  const negative = x < 0 && /[1-9]/.test(`${whole}${frac ?? ""}`);
  return `${negative ? "-" : ""}${group(whole)}${frac === undefined ? "" : `.${frac}`}`;
}

/** Integer micro-units as units with `decimals` (2 or 3), rounded half away from zero on the integer. */
export function fmtMoney(micro: number, decimals: 2 | 3 = 2): string {
  assert(Number.isSafeInteger(micro), "money is integer micro-units");
  const step = 10 ** (6 - decimals);
  const abs = Math.floor((Math.abs(micro) + step / 2) / step); // in 10^-decimals units
  const whole = Math.floor(abs / 10 ** decimals);
  const frac = String(abs % 10 ** decimals).padStart(decimals, "0");
  return `${micro < 0 && abs > 0 ? "-" : ""}${group(String(whole))}.${frac}`;
}

export function fmtPrice(microPerKWh: number | null): string {
  return microPerKWh === null ? "none" : `${fmtMoney(microPerKWh, 3)} units/kWh`;
}

/** Parts per million as a percentage with one decimal. */
export function fmtPercent(ppm: number): string {
  return `${(Math.round(ppm / 1_000) / 10).toFixed(1)} %`;
}

export function fmtKWh(kWh: number): string {
  return `${fmtFixed(kWh, Math.abs(kWh) >= 1_000 ? 0 : 1)} kWh`;
}

/** Bytes in SI units (kB = 1,000 bytes), 3 significant figures. */
export function fmtBytes(bytes: number): string {
  const units = ["bytes", "kB", "MB", "GB", "TB"];
  let v = bytes;
  let u = 0;
  while (Math.abs(v) >= 1_000 && u < units.length - 1) {
    v /= 1_000;
    u++;
  }
  return u === 0 ? `${fmtInt(v)} bytes` : `${v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)} ${units[u]}`;
}

export function fmtDuration(ms: number): string {
  assert(Number.isFinite(ms) && ms >= 0, "a duration is not negative");
  if (ms === 0) return "0 s";
  if (ms % MS_PER_DAY === 0) return `${ms / MS_PER_DAY} day${ms === MS_PER_DAY ? "" : "s"}`;
  if (ms % MS_PER_HOUR === 0) return `${ms / MS_PER_HOUR} h`;
  if (ms >= MS_PER_HOUR) return `${Math.floor(ms / MS_PER_HOUR)} h ${Math.floor((ms % MS_PER_HOUR) / MS_PER_MIN)} min`;
  if (ms >= MS_PER_MIN) return `${Math.floor(ms / MS_PER_MIN)} min${ms % MS_PER_MIN === 0 ? "" : ` ${Math.floor((ms % MS_PER_MIN) / 1_000)} s`}`;
  return ms >= 1_000 ? `${fmtFixed(ms / 1_000, ms % 1_000 === 0 ? 0 : 1)} s` : `${fmtInt(ms)} ms`;
}

/** "1 premise", "29 premises". */
export const fmtCount = (n: number, noun: string) => `${fmtInt(n)} ${noun}${n === 1 ? "" : noun.endsWith("s") ? "es" : "s"}`;
const mod = (a: number, b: number) => ((a % b) + b) % b;
const pad2 = (n: number) => String(n).padStart(2, "0");

// ---- local time ----

/**
 * The report's local clock: local = UTC + offsetMs, the site's offset
 * (report.scenario.site; UTC without a site). Every time shown (axes,
 * table, events) is formatted from this one, as the engine's clock strings are.
 */
export class LocalClock {
  constructor(readonly offsetMs: number) {}

  static of(r: NeighbourhoodReport): LocalClock {
    return new LocalClock((r.scenario.site?.utcOffsetHours ?? 0) * MS_PER_HOUR);
  }

  /** "HH:MM", local. */
  clock(timeMs: number): string {
    const t = mod(timeMs + this.offsetMs, MS_PER_DAY);
    return `${pad2(Math.floor(t / MS_PER_HOUR))}:${pad2(Math.floor((t % MS_PER_HOUR) / MS_PER_MIN))}`;
  }

  /** "HH:MM:SS", local. */
  clockS(timeMs: number): string {
    const t = mod(timeMs + this.offsetMs, MS_PER_DAY);
    return `${this.clock(timeMs)}:${pad2(Math.floor((t % MS_PER_MIN) / 1_000))}`;
  }

  /** "YYYY-MM-DD", local. */
  date(timeMs: number): string {
    return new Date(timeMs + this.offsetMs).toISOString().slice(0, 10);
  }

  /** Local midnight-aligned: is timeMs a whole multiple of stepMs after local midnight? */
  aligned(timeMs: number, stepMs: number): boolean {
    return mod(timeMs + this.offsetMs, stepMs) === 0;
  }

  /** The offset as it is written: "UTC", "UTC+2", "UTC-3:30". */
  name(): string {
    if (this.offsetMs === 0) return "UTC";
    const abs = Math.abs(this.offsetMs);
    const m = Math.round((abs % MS_PER_HOUR) / MS_PER_MIN);
    return `UTC${this.offsetMs < 0 ? "-" : "+"}${Math.floor(abs / MS_PER_HOUR)}${m === 0 ? "" : `:${pad2(m)}`}`;
  }
}

// ---- figures shared by the text, the HTML and the charts ----

interface Span {
  readonly startMs: number;
  readonly endMs: number;
}

/** The islanded periods inside the run: from the grid monitor's events, else from the intervals' islandedPermille. */
export function islandSpans(r: NeighbourhoodReport): Span[] {
  const t0 = r.scenario.startMs;
  const t1 = t0 + r.scenario.durationMs;
  const spans: Span[] = [];
  const events = [...r.outage.island.events].sort((a, b) => a.timeMs - b.timeMs);
  if (events.length > 0) {
    let open: number | null = events[0]?.islanded === false ? t0 : null; // the first event reconnects: islanded since before the run
    for (const e of events) {
      if (e.islanded && open === null) open = Math.max(t0, e.timeMs);
      if (!e.islanded && open !== null) {
        if (Math.min(t1, e.timeMs) > open) spans.push({ startMs: open, endMs: Math.min(t1, e.timeMs) });
        open = null;
      }
    }
    if (open !== null && t1 > open) spans.push({ startMs: open, endMs: t1 });
    return spans;
  }
  const step = intervalMsOf(r.market.intervals);
  for (const iv of r.market.intervals) {
    if ((iv.islandedPermille ?? 0) === 0) continue;
    const last = spans[spans.length - 1];
    if (last !== undefined && last.endMs === iv.startMs) spans[spans.length - 1] = { startMs: last.startMs, endMs: iv.startMs + step };
    else spans.push({ startMs: iv.startMs, endMs: iv.startMs + step });
  }
  return spans;
}

function intervalMsOf(rows: readonly IntervalRow[]): number {
  let step = Infinity;
  for (let i = 1; i < rows.length; i++) {
    const d = (rows[i] as IntervalRow).startMs - (rows[i - 1] as IntervalRow).startMs;
    if (d > 0) step = Math.min(step, d);
  }
  return Number.isFinite(step) ? step : DEFAULT_INTERVAL_MS;
}

interface Headline {
  readonly label: string;
  readonly value: string;
  readonly detail: string;
}

/** The figures a person looks at first, as text (the terminal and the HTML show the same ones). */
export function headlines(r: NeighbourhoodReport): Headline[] {
  const e = r.energy;
  const m = r.market;
  const c = r.outage.critical;
  const l = r.ledger;
  const perDayBytes = r.scenario.durationMs === 0 ? 0 : Math.round((l.bytes * MS_PER_DAY) / r.scenario.durationMs);
  const saving = m.savingsMicro >= 0 ? `${fmtMoney(m.savingsMicro)} units saved` : `${fmtMoney(-m.savingsMicro)} units extra cost`;
  const islandedS = r.outage.island.islandedSeconds;
  return [
    { label: "Self-sufficiency", value: fmtPercent(e.selfSufficiencyPpm), detail: `of the ${fmtKWh(e.servedKWh)} served, not from the utility (grid import ${fmtKWh(e.gridImportKWh)})` },
    { label: "Self-consumption", value: fmtPercent(e.selfConsumptionPpm), detail: `of the ${fmtKWh(e.pvKWh)} of solar used locally (export ${fmtKWh(e.gridExportKWh)}, curtailed ${fmtKWh(e.pvCurtailedKWh)})` },
    { label: "Traded locally", value: fmtPercent(m.tradedLocallyPpm), detail: `of the members' metered imports (${fmtKWh(m.deliveredKWh)} of ${fmtKWh(m.meteredImportKWh)}) delivered by local trades` },
    { label: "Community savings", value: saving, detail: `members paid ${fmtMoney(m.membersCostMicro)} units against ${fmtMoney(m.baselineCostMicro)} units buying everything from the utility; community fund ${fmtMoney(m.communityFundMicro)} units` },
    {
      label: "Local price",
      value: m.priceMeanMicroPerKWh === null ? "nothing cleared" : `${fmtPrice(m.priceMeanMicroPerKWh)} mean`,
      detail: m.priceMeanMicroPerKWh === null ? `${m.intervals.length} intervals, none cleared` : `volume-weighted; range ${fmtMoney(m.priceMinMicroPerKWh ?? 0, 3)} to ${fmtPrice(m.priceMaxMicroPerKWh)}; ${m.intervalsCleared} of ${m.intervals.length} intervals cleared, ${fmtKWh(m.clearedKWh)}`,
    },
    {
      label: "Critical loads during outages",
      value: islandedS === 0 ? "no outage" : `${fmtPercent(c.whileIslandedCoveragePpm)} covered`,
      detail: islandedS === 0 ? "the microgrid never islanded" : `${fmtKWh(c.whileIslandedServedKWh)} of ${fmtKWh(c.whileIslandedDemandKWh)} served over ${fmtDuration(islandedS * 1_000)} islanded; ${fmtPercent(c.coverageWhileSupplyAllowedPpm)} whenever the supply allowed`,
    },
    { label: "Energy shed", value: fmtKWh(r.outage.shed.energyKWh), detail: `${fmtKWh(r.outage.shed.criticalKWh)} of it critical; at most ${fmtInt(r.outage.shed.peakPremisesOff)} premises off at once` },
    { label: "Blocks", value: fmtInt(l.blocks), detail: `${fmtInt(l.txs)} transactions, ${l.txsPerSecond.toFixed(3)} tx/s; at most ${fmtInt(l.blockTxsMax)} in a block` },
    { label: "Ledger size", value: fmtBytes(l.bytes), detail: `${fmtInt(l.bytes)} bytes; ${fmtBytes(perDayBytes)} per day; blocks ${fmtBytes(l.blockBytesMean)} mean, ${fmtBytes(l.blockBytesMax)} max` },
    { label: "Commit latency", value: `${fmtInt(l.commitLatencyMs.p50)} ms median`, detail: `p99 ${fmtInt(l.commitLatencyMs.p99)} ms, max ${fmtInt(l.commitLatencyMs.max)} ms; ${fmtInt(l.leaderChanges)} leader changes` },
  ];
}

/** One line about the scenario: who, when, which outage. */
export function scenarioLine(r: NeighbourhoodReport, clock = LocalClock.of(r)): string {
  const s = r.scenario;
  const premises = s.prosumers + s.consumers + s.critical;
  const outage = s.outageEndMs > s.outageStartMs ? `utility outage ${clock.clock(s.outageStartMs)}-${clock.clock(s.outageEndMs)}` : "no utility outage";
  return (
    `${fmtCount(premises, "premise")} (${fmtCount(s.prosumers, "prosumer")}, ${fmtCount(s.consumers, "consumer")}, ${fmtCount(s.critical, "critical site")}), ` +
    `${fmtDuration(s.durationMs)} from ${clock.date(s.startMs)} ${clock.clock(s.startMs)} ${clock.name()}, ${outage}, seed ${s.seed}; ` +
    `community battery ${fmtKWh(s.batteryWh / 1_000)}; ${s.voters} voting boxes, readings every ${s.readingPeriodS} s`
  );
}

// ---- the terminal ----

/** The text summary for the terminal: a few lines, every number with its unit. */
export function summaryText(r: NeighbourhoodReport): string {
  const lines = [`peergrid sim: ${scenarioLine(r)}`];
  const heads = headlines(r);
  const width = Math.max(...heads.map((h) => h.label.length));
  for (const h of heads) lines.push(`  ${h.label.padEnd(width)}  ${h.value}: ${h.detail}`);
  lines.push(`  ${"Chain head".padEnd(width)}  ${r.ledger.headHash} at height ${fmtInt(r.ledger.height)} (the same seed gives the same hash)`);
  const rejected = Object.entries(r.ledger.rejected);
  if (rejected.length > 0) lines.push(`  ${"Rejected".padEnd(width)}  ${rejected.map(([k, n]) => `${k} x${fmtInt(n)}`).join(", ")}`);
  lines.push("  Shortcuts taken (none changes a price, a cleared or delivered Wh, or a dispatch decision):");
  for (const s of r.shortcuts) lines.push(`    - ${s}`);
  return lines.join("\n");
}

// ---- SVG charts ----

const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
const COLOURS = {
  offered: "#E69F00",
  bid: "#0072B2",
  cleared: "#009E73",
  import: "#56B4E9",
  export: "#D55E00",
  price: "#0072B2",
  island: "#7f7f7f",
  axis: "#444",
  grid: "#ddd",
  text: "#222",
} as const;

/** Coordinates with one decimal: small files, identical on every run. */
const f1 = (n: number) => {
  const s = n.toFixed(1);
  return s.endsWith(".0") ? s.slice(0, -2) : s;
};

/** A nice axis maximum and tick step covering `max` (1, 2, 2.5, 5 x 10^k). */
function niceScale(max: number, ticksMax = 6): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const rough = max / ticksMax;
  const pow = 10 ** Math.floor(Math.log10(rough));
  const step = ([1, 2, 2.5, 5, 10].find((k) => k * pow >= rough) ?? 10) * pow;
  return { top: Math.ceil(max / step - 1e-9) * step, step };
}

function decimalsOf(step: number): number {
  for (let d = 0; d < 4; d++) if (Math.abs(Math.round(step * 10 ** d) - step * 10 ** d) < 1e-9) return d;
  return 4;
}

interface Frame {
  readonly w: number;
  readonly h: number;
  readonly left: number;
  readonly right: number;
  readonly top: number;
  readonly bottom: number;
  readonly t0: number;
  readonly t1: number;
  readonly yTop: number;
}

const xOf = (f: Frame, t: number) => f.left + ((t - f.t0) / (f.t1 - f.t0)) * (f.w - f.left - f.right);
const yOf = (f: Frame, v: number) => f.h - f.bottom - (v / f.yTop) * (f.h - f.top - f.bottom);

function svgOpen(w: number, h: number, title: string, desc: string): string {
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" font-family="${esc(FONT)}" font-size="15" fill="${COLOURS.text}">\n` +
    `<title>${esc(title)}</title>\n<desc>${esc(desc)}</desc>\n<rect width="${w}" height="${h}" fill="#fff"/>\n` +
    `<text x="12" y="22" font-size="18" font-weight="600">${esc(title)}</text>\n`
  );
}

interface LegendItem {
  readonly label: string;
  readonly swatch: string; // an SVG element drawn in a 18 x 12 box at (0, 0)
}

function legend(items: readonly LegendItem[], x0: number, y: number, w: number): string {
  let x = x0;
  let row = y;
  const out: string[] = [];
  for (const it of items) {
    const width = 26 + it.label.length * 7.8;
    if (x + width > w - 8 && x > x0) {
      x = x0;
      row += 20;
    }
    out.push(`<g transform="translate(${f1(x)},${f1(row - 10)})">${it.swatch}<text x="24" y="11" font-size="14">${esc(it.label)}</text></g>`);
    x += width + 14;
  }
  return `${out.join("\n")}\n`;
}

const lineSwatch = (colour: string, dash = "") => `<line x1="0" y1="6" x2="18" y2="6" stroke="${colour}" stroke-width="2.5"${dash === "" ? "" : ` stroke-dasharray="${dash}"`}/>`;
const boxSwatch = (colour: string, opacity: number) => `<rect width="18" height="12" fill="${colour}" fill-opacity="${opacity}"/>`;

/** Time ticks at local round times (whole steps after local midnight; steps of days from the first midnight): at most `ticksMax`. */
function timeTicks(f: Frame, clock: LocalClock, ticksMax: number): string {
  const steps = [15, 30, 60, 120, 180, 240, 360, 720, 1_440, 2_880, 10_080, 20_160, 40_320, 80_640].map((m) => m * MS_PER_MIN);
  const span = f.t1 - f.t0;
  const step = steps.find((s) => span / s <= ticksMax) ?? (steps[steps.length - 1] as number);
  const align = Math.min(step, MS_PER_DAY);
  const multiDay = span > MS_PER_DAY;
  const yBase = f.h - f.bottom;
  const out: string[] = [];
  for (let t = f.t0 + mod(-(f.t0 + clock.offsetMs), align); t <= f.t1; t += step) {
    const x = f1(xOf(f, t));
    out.push(`<line x1="${x}" y1="${f1(f.top)}" x2="${x}" y2="${f1(yBase)}" stroke="${COLOURS.grid}"/>`);
    out.push(`<line x1="${x}" y1="${f1(yBase)}" x2="${x}" y2="${f1(yBase + 5)}" stroke="${COLOURS.axis}"/>`);
    const label = step >= MS_PER_DAY ? clock.date(t).slice(5) : clock.clock(t);
    out.push(`<text x="${x}" y="${f1(yBase + 20)}" text-anchor="middle">${esc(label)}</text>`);
    if (multiDay && step < MS_PER_DAY && clock.aligned(t, MS_PER_DAY)) out.push(`<text x="${x}" y="${f1(yBase + 36)}" text-anchor="middle" font-size="12">${esc(clock.date(t).slice(5))}</text>`);
  }
  return `${out.join("\n")}\n`;
}

function valueAxis(f: Frame, step: number, unitLabel: string, scale: (v: number) => string): string {
  const out: string[] = [];
  const n = Math.round(f.yTop / step);
  for (let i = 0; i <= n; i++) {
    const v = i * step;
    const y = f1(yOf(f, v));
    out.push(`<line x1="${f1(f.left)}" y1="${y}" x2="${f1(f.w - f.right)}" y2="${y}" stroke="${COLOURS.grid}"/>`);
    out.push(`<text x="${f1(f.left - 6)}" y="${f1(yOf(f, v) + 5)}" text-anchor="end">${esc(scale(v))}</text>`);
  }
  const midY = f1((f.top + f.h - f.bottom) / 2);
  out.push(`<text transform="translate(16,${midY}) rotate(-90)" text-anchor="middle" font-size="13">${esc(unitLabel)}</text>`);
  return `${out.join("\n")}\n`;
}

function frameLines(f: Frame, xLabel: string): string {
  const yBase = f1(f.h - f.bottom);
  return (
    `<line x1="${f1(f.left)}" y1="${yBase}" x2="${f1(f.w - f.right)}" y2="${yBase}" stroke="${COLOURS.axis}"/>\n` +
    `<line x1="${f1(f.left)}" y1="${f1(f.top)}" x2="${f1(f.left)}" y2="${yBase}" stroke="${COLOURS.axis}"/>\n` +
    `<text x="${f1((f.left + f.w - f.right) / 2)}" y="${f1(f.h - 6)}" text-anchor="middle" font-size="13">${esc(xLabel)}</text>\n`
  );
}

function islandBands(f: Frame, spans: readonly Span[]): string {
  return spans
    .map((s) => {
      const x0 = xOf(f, Math.max(f.t0, s.startMs));
      const x1 = xOf(f, Math.min(f.t1, s.endMs));
      return `<rect x="${f1(x0)}" y="${f1(f.top)}" width="${f1(Math.max(1, x1 - x0))}" height="${f1(f.h - f.top - f.bottom)}" fill="${COLOURS.island}" fill-opacity="0.18"/>\n`;
    })
    .join("");
}

/** A run's intervals, in buckets of `per` consecutive intervals (1 for all but long runs). */
interface Bucket {
  readonly startMs: number;
  readonly endMs: number;
  readonly offeredWh: number;
  readonly bidWh: number;
  readonly clearedWh: number;
  readonly importWh: number | null;
  readonly exportWh: number | null;
  /** Volume-weighted over the bucket's cleared intervals; null: none cleared. */
  readonly priceMicroPerKWh: number | null;
}

function buckets(rows: readonly IntervalRow[], intervalMs: number, per: number): Bucket[] {
  const out: Bucket[] = [];
  for (let i = 0; i < rows.length; i += per) {
    const group = rows.slice(i, i + per);
    const first = group[0] as IntervalRow;
    const sum = (pick: (r: IntervalRow) => number) => group.reduce((a, r) => a + pick(r), 0);
    const sumOrNull = (pick: (r: IntervalRow) => number | null) => (group.every((r) => pick(r) === null) ? null : sum((r) => pick(r) ?? 0));
    const priced = group.filter((r) => r.priceMicroPerKWh !== null && r.clearedWh > 0);
    const volume = priced.reduce((a, r) => a + r.clearedWh, 0);
    out.push({
      startMs: first.startMs,
      endMs: (group[group.length - 1] as IntervalRow).startMs + intervalMs,
      offeredWh: sum((r) => r.offeredWh),
      bidWh: sum((r) => r.bidWh),
      clearedWh: sum((r) => r.clearedWh),
      importWh: sumOrNull((r) => r.meteredImportWh),
      exportWh: sumOrNull((r) => r.meteredExportWh),
      priceMicroPerKWh: volume === 0 ? null : Math.round(priced.reduce((a, r) => a + (r.priceMicroPerKWh as number) * r.clearedWh, 0) / volume),
    });
  }
  return out;
}

/** A step line through the buckets (a gap where a value is null or buckets are not adjacent). */
function stepPath(f: Frame, bs: readonly Bucket[], pick: (b: Bucket) => number | null): string {
  let d = "";
  let lastEnd: number | null = null;
  for (const b of bs) {
    const v = pick(b);
    if (v === null) {
      lastEnd = null;
      continue;
    }
    const y = f1(yOf(f, Math.max(0, Math.min(v, f.yTop)))); // the axes start at 0 and end at yTop: nothing drawn outside the frame
    d += `${lastEnd === b.startMs ? "L" : "M"}${f1(xOf(f, b.startMs))} ${y}H${f1(xOf(f, b.endMs))}`;
    lastEnd = b.endMs;
  }
  return d;
}

interface ChartInput {
  readonly r: NeighbourhoodReport;
  readonly clock: LocalClock;
  readonly intervalMs: number;
  readonly per: number;
  readonly bs: readonly Bucket[];
  readonly spans: readonly Span[];
}

function chartInput(r: NeighbourhoodReport): ChartInput {
  const rows = r.market.intervals;
  // Invariant the buckets and step lines rely on: intervals in time order, inside the run.
  assert(rows.every((iv, i) => i === 0 || iv.startMs > (rows[i - 1] as IntervalRow).startMs), "report intervals in time order");
  assert(r.scenario.durationMs > 0, "a run has a duration");
  const intervalMs = intervalMsOf(rows);
  const per = Math.max(1, Math.ceil(rows.length / CHART_POINTS_MAX));
  return { r, clock: LocalClock.of(r), intervalMs, per, bs: buckets(rows, intervalMs, per), spans: islandSpans(r) };
}

const W = 640;
const H = 380;

function timeFrame(c: ChartInput, yTop: number, top: number): Frame {
  return { w: W, h: H, left: 62, right: 24, top, bottom: 62, t0: c.r.scenario.startMs, t1: c.r.scenario.startMs + c.r.scenario.durationMs, yTop };
}

function perLabel(c: ChartInput): string {
  return c.per === 1 ? `${fmtDuration(c.intervalMs)} interval` : `${fmtDuration(c.intervalMs * c.per)} (${c.per} intervals)`;
}

function xLabel(c: ChartInput): string {
  return `local time (${c.clock.name()}), from ${c.clock.date(c.r.scenario.startMs)}`;
}

function supplyDemandSvg(c: ChartInput): string {
  const max = Math.max(0, ...c.bs.map((b) => Math.max(b.offeredWh, b.bidWh, b.clearedWh, b.importWh ?? 0, b.exportWh ?? 0))) / 1_000;
  const { top, step } = niceScale(max * 1.04);
  const f = timeFrame(c, top, 84);
  const dec = decimalsOf(step);
  const bars = c.bs
    .filter((b) => b.clearedWh > 0)
    .map((b) => {
      const x0 = xOf(f, b.startMs) + 0.5;
      const x1 = xOf(f, b.endMs) - 0.5;
      const y = yOf(f, b.clearedWh / 1_000);
      return `<rect x="${f1(x0)}" y="${f1(y)}" width="${f1(Math.max(0.5, x1 - x0))}" height="${f1(f.h - f.bottom - y)}" fill="${COLOURS.cleared}" fill-opacity="0.55"/>`;
    })
    .join("\n");
  const line = (pick: (b: Bucket) => number | null, colour: string, dash = "") => {
    const d = stepPath(f, c.bs, (b) => {
      const v = pick(b);
      return v === null ? null : v / 1_000;
    });
    return d === "" ? "" : `<path d="${d}" fill="none" stroke="${colour}" stroke-width="2"${dash === "" ? "" : ` stroke-dasharray="${dash}"`} stroke-linejoin="round"/>\n`;
  };
  const title = "Supply and demand in the local market";
  const desc = `Per ${perLabel(c)}: energy offered by sellers and bid for by buyers in the orders the ledger accepted, energy cleared, and the members' metered imports and exports; islanded periods shaded.`;
  return (
    svgOpen(W, H, title, desc) +
    legend(
      [
        { label: "offered (sell orders)", swatch: lineSwatch(COLOURS.offered) },
        { label: "bid (buy orders)", swatch: lineSwatch(COLOURS.bid) },
        { label: "cleared", swatch: boxSwatch(COLOURS.cleared, 0.55) },
        { label: "metered import", swatch: lineSwatch(COLOURS.import, "5 3") },
        { label: "metered export", swatch: lineSwatch(COLOURS.export, "5 3") },
        { label: "islanded", swatch: boxSwatch(COLOURS.island, 0.3) },
      ],
      12,
      44,
      W,
    ) +
    islandBands(f, c.spans) +
    valueAxis(f, step, `kWh per ${perLabel(c)}`, (v) => v.toFixed(dec)) +
    timeTicks(f, c.clock, 8) +
    `${bars}\n` +
    line((b) => b.importWh, COLOURS.import, "5 3") +
    line((b) => b.exportWh, COLOURS.export, "5 3") +
    line((b) => b.offeredWh, COLOURS.offered) +
    line((b) => b.bidWh, COLOURS.bid) +
    frameLines(f, xLabel(c)) +
    "</svg>\n"
  );
}

function priceSvg(c: ChartInput): string {
  const prices = c.bs.map((b) => b.priceMicroPerKWh).filter((p): p is number => p !== null);
  const { top, step } = niceScale((Math.max(0, ...prices) * 1.08) / 1_000_000); // headroom: the top price stays clear of the frame
  const f = timeFrame(c, top, 54);
  const dec = Math.max(2, decimalsOf(step));
  const d = stepPath(f, c.bs, (b) => (b.priceMicroPerKWh === null ? null : b.priceMicroPerKWh / 1_000_000));
  const mean = c.r.market.priceMeanMicroPerKWh;
  const meanLine =
    mean === null
      ? `<text x="${f1((f.left + f.w - f.right) / 2)}" y="${f1((f.top + f.h - f.bottom) / 2)}" text-anchor="middle">${esc("no interval cleared: no local price")}</text>\n`
      : `<line x1="${f1(f.left)}" y1="${f1(yOf(f, mean / 1_000_000))}" x2="${f1(f.w - f.right)}" y2="${f1(yOf(f, mean / 1_000_000))}" stroke="${COLOURS.price}" stroke-opacity="0.6" stroke-dasharray="2 4"/>\n` +
        `<text x="${f1(f.w - f.right - 4)}" y="${f1(yOf(f, mean / 1_000_000) - 6)}" text-anchor="end" font-size="12">${esc(`mean ${fmtMoney(mean, 3)}`)}</text>\n`;
  const dots = c.per === 1 && c.bs.length <= 200 ? c.bs.filter((b) => b.priceMicroPerKWh !== null).map((b) => `<circle cx="${f1((xOf(f, b.startMs) + xOf(f, b.endMs)) / 2)}" cy="${f1(yOf(f, (b.priceMicroPerKWh as number) / 1_000_000))}" r="2.5" fill="${COLOURS.price}"/>`).join("\n") : "";
  const title = "Local clearing price";
  const desc = `The price each ${perLabel(c)} cleared at, in currency units per kWh (volume-weighted mean dashed); gaps: nothing cleared; islanded periods shaded.`;
  return (
    svgOpen(W, H, title, desc) +
    legend(
      [
        { label: "clearing price", swatch: lineSwatch(COLOURS.price) },
        { label: "islanded", swatch: boxSwatch(COLOURS.island, 0.3) },
      ],
      12,
      44,
      W,
    ) +
    islandBands(f, c.spans) +
    valueAxis(f, step, "units per kWh", (v) => v.toFixed(dec)) +
    timeTicks(f, c.clock, 8) +
    meanLine +
    (d === "" ? "" : `<path d="${d}" fill="none" stroke="${COLOURS.price}" stroke-width="2" stroke-linejoin="round"/>\n`) +
    (dots === "" ? "" : `${dots}\n`) +
    frameLines(f, xLabel(c)) +
    "</svg>\n"
  );
}

function energySvg(r: NeighbourhoodReport): string {
  const e = r.energy;
  const m = r.market;
  const rows: [string, number, string][] = [
    ["demand", e.demandKWh, COLOURS.axis],
    ["served", e.servedKWh, COLOURS.axis],
    ["solar (PV) output", e.pvKWh, COLOURS.offered],
    ["solar curtailed", e.pvCurtailedKWh, COLOURS.offered],
    ["grid import", e.gridImportKWh, COLOURS.import],
    ["grid export", e.gridExportKWh, COLOURS.export],
    ["members' metered imports", m.meteredImportKWh, COLOURS.import],
    ["cleared in the local market", m.clearedKWh, COLOURS.cleared],
    ["delivered by local trades", m.deliveredKWh, COLOURS.cleared],
    ["shed", r.outage.shed.energyKWh, COLOURS.island],
  ];
  const left = 216;
  const right = 96;
  const rowH = 30;
  const top = 44;
  const h = top + rows.length * rowH + 44;
  const { top: xTop, step } = niceScale(Math.max(0, ...rows.map((x) => x[1])), 5);
  const xv = (v: number) => left + (v / xTop) * (W - left - right);
  const out: string[] = [];
  for (let v = 0; v <= xTop + 1e-9; v += step) {
    const x = f1(xv(v));
    out.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${f1(top + rows.length * rowH)}" stroke="${COLOURS.grid}"/>`);
    out.push(`<text x="${x}" y="${f1(top + rows.length * rowH + 18)}" text-anchor="middle" font-size="13">${esc(v.toFixed(decimalsOf(step)))}</text>`);
  }
  rows.forEach(([label, v, colour], i) => {
    const y = top + i * rowH;
    out.push(`<text x="${left - 8}" y="${f1(y + rowH / 2 + 5)}" text-anchor="end">${esc(label)}</text>`);
    out.push(`<rect x="${left}" y="${f1(y + 5)}" width="${f1(Math.max(0, xv(v) - left))}" height="${rowH - 10}" fill="${colour}" fill-opacity="0.75"/>`);
    out.push(`<text x="${f1(xv(v) + 6)}" y="${f1(y + rowH / 2 + 5)}" font-size="13">${esc(fmtKWh(v))}</text>`);
  });
  out.push(`<text x="${f1((left + W - right) / 2)}" y="${f1(h - 6)}" text-anchor="middle" font-size="13">kWh over the run (${esc(fmtDuration(r.scenario.durationMs))})</text>`);
  return `${svgOpen(W, h, "Energy over the run", "Totals for the whole run, kWh: demand and served, solar output and curtailment, the neighbourhood's exchange with the utility, the local market's volumes, and energy shed.")}${out.join("\n")}\n</svg>\n`;
}

export interface ReportCharts {
  readonly supplyDemand: string;
  readonly price: string;
  readonly energy: string;
}

export function reportCharts(r: NeighbourhoodReport): ReportCharts {
  const c = chartInput(r);
  return { supplyDemand: supplyDemandSvg(c), price: priceSvg(c), energy: energySvg(r) };
}

// ---- the HTML page ----

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; background: #f6f6f3; }
main { max-width: 960px; margin: 0 auto; padding: 12px; }
h1 { font-size: 1.4rem; margin: 0.4rem 0; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 0.5rem; }
p.scenario { margin: 0 0 1rem; color: #444; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 8px; margin: 0; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 8px 10px; margin: 0; }
.card dt { font-size: 0.85rem; color: #555; }
.card dd { margin: 0; }
.card .value { font-size: 1.25rem; font-weight: 600; }
.card .detail { font-size: 0.85rem; color: #444; display: block; }
figure { margin: 0 0 1rem; background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 4px; overflow-x: auto; }
figure svg { display: block; width: 100%; min-width: 440px; max-width: 760px; height: auto; margin: 0 auto; } /* on a phone: text no smaller than ~11 px; the figure scrolls sideways a little */
figcaption { font-size: 0.85rem; color: #444; padding: 4px 6px; }
.scroll { overflow-x: auto; background: #fff; border: 1px solid #ddd; border-radius: 8px; }
table { border-collapse: collapse; font-size: 0.85rem; font-variant-numeric: tabular-nums; width: 100%; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th { background: #fafafa; position: sticky; top: 0; }
th:first-child, td:first-child, td.text { text-align: left; }
tr.islanded td { background: #eee; }
code, .hash { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.85rem; overflow-wrap: anywhere; }
ul { padding-left: 1.2rem; }
`;

const kwhCell = (wh: number | null) => (wh === null ? "" : (wh / 1_000).toFixed(2));

function intervalTable(r: NeighbourhoodReport): string {
  const rows = r.market.intervals;
  const shown = rows.slice(0, TABLE_ROWS_MAX);
  const clock = LocalClock.of(r);
  const multiDay = r.scenario.durationMs > MS_PER_DAY;
  const head =
    "<tr><th>interval</th><th>sell orders</th><th>offered kWh</th><th>buy orders</th><th>bid kWh</th><th>cleared kWh</th><th>price units/kWh</th><th>delivered kWh</th><th>islanded %</th><th>metered import kWh</th><th>metered export kWh</th></tr>";
  const body = shown.map((iv) => {
    const islanded = (iv.islandedPermille ?? 0) > 0;
    const when = multiDay ? `${clock.date(iv.startMs).slice(5)} ${clock.clock(iv.startMs)}` : clock.clock(iv.startMs);
    const cells = [
      esc(when),
      fmtInt(iv.sellOrders),
      kwhCell(iv.offeredWh),
      fmtInt(iv.buyOrders),
      kwhCell(iv.bidWh),
      kwhCell(iv.clearedWh),
      iv.priceMicroPerKWh === null ? "" : fmtMoney(iv.priceMicroPerKWh, 3),
      kwhCell(iv.deliveredWh),
      iv.islandedPermille === null ? "" : (iv.islandedPermille / 10).toFixed(1),
      kwhCell(iv.meteredImportWh),
      kwhCell(iv.meteredExportWh),
    ];
    return `<tr${islanded ? ' class="islanded"' : ""}>${cells.map((c) => `<td>${c}</td>`).join("")}</tr>`;
  });
  const note = rows.length > shown.length ? `<p>The first ${fmtInt(shown.length)} of ${fmtInt(rows.length)} intervals; report.json has them all.</p>\n` : "";
  return `${note}<div class="scroll"><table>\n<thead>${head}</thead>\n<tbody>\n${body.join("\n")}\n</tbody>\n</table></div>\n`;
}

/** What the grid monitor's reasons mean (market/grid-monitor.ts); an unknown one is shown as it is. */
const REASONS: Readonly<Record<string, string>> = {
  UV1: "undervoltage, stage 1",
  UV2: "undervoltage, stage 2",
  OV1: "overvoltage, stage 1",
  OV2: "overvoltage, stage 2",
  UF1: "underfrequency, stage 1",
  UF2: "underfrequency, stage 2",
  OF1: "overfrequency, stage 1",
  OF2: "overfrequency, stage 2",
  controller: "the controller's command",
  noReading: "no reading from the PCC meter",
  stale: "PCC readings stale",
  badQuality: "PCC reading of bad quality",
  reconnected: "the grid was back: reconnected",
};

/** An island event's `measured`, in its unit (market/grid-monitor.ts: deci-volts, milli-Hz or ms by reason). */
function measuredText(reason: string, measured: number): string {
  if (/^[UO]V\d$/.test(reason)) return `${fmtFixed(measured / 10, 1)} V`;
  if (/^[UO]F\d$/.test(reason)) return `${fmtFixed(measured / 1_000, 3)} Hz`;
  if (reason === "stale") return `${fmtInt(measured)} ms since the last good reading`;
  if (reason === "reconnected") return `grid good for ${fmtDuration(measured)}`;
  return "";
}

function islandSection(r: NeighbourhoodReport, clock: LocalClock): string {
  const i = r.outage.island;
  if (i.events.length === 0) return "<p>The grid monitor never islanded the microgrid.</p>\n";
  const rows = i.events.map((e) => {
    const reason = String(e.reason);
    const why = REASONS[reason] === undefined ? reason : `${reason}: ${REASONS[reason]}`;
    return `<tr><td>${esc(clock.clockS(e.timeMs))}</td><td class="text">${e.islanded ? "islanded" : "reconnected"}</td><td class="text">${esc(why)}</td><td>${esc(measuredText(reason, e.measured))}</td></tr>`;
  });
  const detection = i.detectionDelayMs === null ? "no island decision for the outage" : `islanded ${fmtDuration(i.detectionDelayMs)} after the outage began`;
  const reconnection = i.reconnectionDelayMs === null ? "not reconnected within the run" : `reconnected ${fmtDuration(i.reconnectionDelayMs)} after it ended`;
  const delays = `The microgrid ${detection}, ${reconnection}: ${fmtDuration(i.islandedSeconds * 1_000)} islanded in all`;
  return `<p>${esc(delays)}.</p>\n<div class="scroll"><table>\n<thead><tr><th>time</th><th>decision</th><th>reason</th><th>measured</th></tr></thead>\n<tbody>\n${rows.join("\n")}\n</tbody>\n</table></div>\n`;
}

function outageDetails(r: NeighbourhoodReport): string {
  const o = r.outage;
  const b = o.battery;
  const items = [
    `Critical sites: ${fmtKWh(o.critical.servedKWh)} served of ${fmtKWh(o.critical.demandKWh)} over the run; ${fmtKWh(o.critical.whileIslandedServedKWh)} of ${fmtKWh(o.critical.whileIslandedDemandKWh)} while islanded; off for ${fmtInt(o.critical.offSeconds)} s in all, ${fmtInt(o.critical.offWhileSupplyAllowedSeconds)} s while the supply allowed.`,
    `Shed: ${fmtKWh(o.shed.energyKWh)} (${fmtKWh(o.shed.nonCriticalKWh)} non-critical, ${fmtKWh(o.shed.criticalKWh)} critical, ${fmtKWh(o.shed.duringIslandKWh)} while islanded); at most ${fmtInt(o.shed.peakPremisesOff)} premises off at once.`,
    `Breakers: ${fmtInt(o.breakers.operations)} operations (${fmtInt(o.breakers.opens)} opens, ${fmtInt(o.breakers.closes)} closes), ${fmtInt(o.breakers.commands)} commands.`,
    `Community battery: ${fmtKWh(b.capacityWh / 1_000)}, ${fmtFixed(b.maxW / 1_000, 0)} kW; ${fmtKWh(b.startWh / 1_000)} at the start, lowest ${fmtKWh(b.minWh / 1_000)} at ${b.minClock}, ${fmtKWh(b.endWh / 1_000)} at the end; ${fmtKWh(b.dischargedWh / 1_000)} discharged.`,
    `Invariants: ${fmtInt(o.invariants.orderViolationSeconds)} s with a critical site off while a household was on, ${fmtInt(o.invariants.servedAboveSupplySteps)} dispatch steps serving above the supply, ${fmtInt(o.invariants.overloadSeconds)} s overloaded.`,
  ];
  return `<ul>\n${items.map((x) => `<li>${esc(x)}</li>`).join("\n")}\n</ul>\n`;
}

function ledgerDetails(r: NeighbourhoodReport): string {
  const l = r.ledger;
  const kv = (rec: Readonly<Record<string, number>>) => {
    const e = Object.entries(rec);
    return e.length === 0 ? "none" : e.map(([k, n]) => `${k} ${fmtInt(n)}`).join(", ");
  };
  const items = [
    `${fmtInt(l.blocks)} blocks, height ${fmtInt(l.height)}; ${fmtInt(l.txs)} transactions (${kv(l.txsByType)}); rejected: ${kv(l.rejected)}.`,
    `Raft: ${fmtInt(l.messages)} messages, ${fmtInt(l.leaderChanges)} leader changes; ${fmtInt(l.txsRefused)} transactions refused, ${fmtInt(l.txsLost)} lost.`,
  ];
  return (
    `<ul>\n${items.map((x) => `<li>${esc(x)}</li>`).join("\n")}\n` +
    `<li>Chain head: <span class="hash">${esc(l.headHash)}</span> (the same seed gives the same hash)</li>\n` +
    `<li>State root: <span class="hash">${esc(l.stateRoot)}</span></li>\n</ul>\n`
  );
}

/** A chart to put inside the page as it is: one <svg> element, no XML prolog (the files have none either). */
function inline(svg: string): string {
  assert(svg.startsWith("<svg ") && svg.trimEnd().endsWith("</svg>"), "a chart is one <svg> element");
  return svg;
}

export function reportHtml(r: NeighbourhoodReport, charts: ReportCharts = reportCharts(r)): string {
  const clock = LocalClock.of(r);
  const cards = headlines(r).map((h) => `<div class="card"><dt>${esc(h.label)}</dt><dd><span class="value">${esc(h.value)}</span><span class="detail">${esc(h.detail)}</span></dd></div>`);
  const figure = (svg: string, file: string, caption: string) => `<figure>\n${inline(svg)}<figcaption>${esc(caption)} (<a href="${esc(file)}">${esc(file)}</a>)</figcaption>\n</figure>\n`;
  const premises = r.scenario.prosumers + r.scenario.consumers + r.scenario.critical;
  return (
    "<!doctype html>\n" +
    '<html lang="en">\n<head>\n<meta charset="utf-8">\n<meta name="viewport" content="width=device-width, initial-scale=1">\n' +
    `<title>${esc(`peergrid sim: ${fmtCount(premises, "premise")}, ${fmtDuration(r.scenario.durationMs)}, seed ${r.scenario.seed}`)}</title>\n` +
    `<style>${CSS}</style>\n</head>\n<body>\n<main>\n` +
    `<h1>${esc(`A simulated neighbourhood: ${fmtCount(premises, "premise")}, ${fmtDuration(r.scenario.durationMs)}`)}</h1>\n` +
    `<p class="scenario">${esc(scenarioLine(r, clock))}. Every price, trade and settlement is the ledger's (the real Raft core, ledger and market).</p>\n` +
    `<dl class="cards">\n${cards.join("\n")}\n</dl>\n` +
    "<h2>Supply and demand</h2>\n" +
    figure(charts.supplyDemand, REPORT_FILES.supplyDemand, "Offered, bid and cleared energy per interval, with the members' metered imports and exports") +
    "<h2>Price</h2>\n" +
    figure(charts.price, REPORT_FILES.price, "The local clearing price per interval") +
    "<h2>Energy</h2>\n" +
    figure(charts.energy, REPORT_FILES.energy, "Energy totals over the run") +
    "<h2>Island events</h2>\n" +
    islandSection(r, clock) +
    outageDetails(r) +
    "<h2>Ledger</h2>\n" +
    ledgerDetails(r) +
    "<h2>Shortcuts taken</h2>\n<p>None changes a price, a cleared or delivered Wh, or a dispatch decision.</p>\n" +
    `<ul>\n${r.shortcuts.map((s) => `<li>${esc(s)}</li>`).join("\n")}\n</ul>\n` +
    `<h2>Intervals</h2>\n<p>${esc(`Local times (${clock.name()}). Orders and volumes are the ledger's; delivered energy and metered imports and exports come from each interval's settlement, one interval later. Shaded rows were islanded.`)}</p>\n` +
    intervalTable(r) +
    `<p>${esc("Written by peergrid sim; report.json next to this page has every figure, and the command and runtime that produced it.")}</p>\n` +
    "</main>\n</body>\n</html>\n"
  );
}

// ---- the files ----

export interface WrittenFile {
  readonly path: string;
  readonly bytes: number;
}

/**
 * Write report.json (the report and `meta`), report.html and the SVG charts into
 * `dir` (made if missing), and the marker that says the folder holds a sim report.
 * The caller decides whether `dir` may be written to (daemon/sim-command.ts refuses
 * a folder of someone else's files).
 */
export function writeReportFiles(dir: string, report: NeighbourhoodReport, meta: ReportMeta): WrittenFile[] {
  mkdirSync(dir, { recursive: true });
  const charts = reportCharts(report);
  const files: [string, string][] = [
    [REPORT_MARKER, "made by `peergrid sim`; a next run may overwrite the report files here\n"],
    [REPORT_FILES.json, `${JSON.stringify({ format: REPORT_FORMAT, meta, report }, null, 2)}\n`],
    [REPORT_FILES.supplyDemand, charts.supplyDemand],
    [REPORT_FILES.price, charts.price],
    [REPORT_FILES.energy, charts.energy],
    [REPORT_FILES.html, reportHtml(report, charts)],
  ];
  const written: WrittenFile[] = [];
  for (const [name, text] of files) {
    const path = join(dir, name);
    writeFileSync(path, text);
    if (name !== REPORT_MARKER) written.push({ path, bytes: Buffer.byteLength(text) });
  }
  return written;
}
