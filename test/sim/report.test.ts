// `peergrid sim`'s report (sim/report.ts) and command (daemon/sim-command.ts).
// A small real neighbourhood (6 prosumers, 20 consumers, 3 critical sites,
// 2 hours from 12:00 with a 45-minute outage) runs once through the real
// cores; its files are written to a temporary folder and checked: report.json
// is the report, the SVGs are well-formed XML with the island shaded and
// axes in units and local clock times, the HTML has the headline figures
// and fetches nothing, text from the report is escaped everywhere, the same
// report gives the same bytes, long runs stay within the charts' and the
// table's limits. Chromium (Debian's, through playwright-core) opens the
// page at a phone's size, when it is installed. The command runs as a user
// runs it, a child process: bad options exit 2 naming the option and write
// nothing; a folder of someone else's files is refused; an hour's run
// writes the files, and a second run into the same folder replaces them.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, it } from "node:test";
import { main } from "../../daemon/cli.js";
import { SimProgress, checkOutDir } from "../../daemon/sim-command.js";
import { DEFAULT_SIM_OPTIONS, type IntervalRow, type NeighbourhoodReport, runNeighbourhood, scenarioFrom } from "../../sim/neighbourhood.js";
import { LocalClock, REPORT_FILES, REPORT_FORMAT, REPORT_MARKER, type ReportMeta, esc, fmtMoney, fmtPercent, islandSpans, reportCharts, reportHtml, summaryText, writeReportFiles } from "../../sim/report.js";

const MAIN = fileURLToPath(new URL("../../daemon/main.js", import.meta.url));
const CHROMIUM = "/usr/bin/chromium";
const HOUR_MS = 3_600_000;
const META: ReportMeta = { command: "peergrid sim --test", runtimeMs: 1_234, nodeVersion: process.version, commit: null, commitDirty: null };

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "peergrid-sim-report-"));
  dirs.push(d);
  return d;
}

/** A strict enough XML well-formedness check: tags nest, attributes are quoted and unique, every & is an entity, one root. Returns the root's name. */
function checkXml(text: string): string {
  const entity = /^&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);/;
  const checkChars = (s: string, at: number) => {
    for (let k = s.indexOf("&"); k !== -1; k = s.indexOf("&", k + 1)) assert.match(s.slice(k, k + 12), entity, `a bare & at ${at + k}`);
    assert.ok(!s.includes("<"), `a bare < at ${at}`);
  };
  const stack: string[] = [];
  let root: string | null = null;
  let i = 0;
  while (i < text.length) {
    const lt = text.indexOf("<", i);
    const chunk = lt === -1 ? text.slice(i) : text.slice(i, lt);
    checkChars(chunk, i);
    if (stack.length === 0) assert.equal(chunk.trim(), "", `text outside the root at ${i}`);
    if (lt === -1) break;
    if (text.startsWith("<?xml", lt) && lt === 0) {
      i = text.indexOf("?>", lt) + 2;
      continue;
    }
    const m = /^<(\/?)([A-Za-z_][\w:.-]*)((?:\s+[A-Za-z_:][\w:.-]*="[^"<]*")*)\s*(\/?)>/.exec(text.slice(lt));
    assert.ok(m !== null, `a malformed tag at ${lt}: ${text.slice(lt, lt + 80)}`);
    const [whole, closing, name, attrs, selfClosing] = m as unknown as [string, string, string, string, string];
    const names = [...attrs.matchAll(/([A-Za-z_:][\w:.-]*)="([^"]*)"/g)].map((a) => {
      checkChars(a[2] as string, lt);
      return a[1] as string;
    });
    assert.equal(new Set(names).size, names.length, `a repeated attribute in <${name}> at ${lt}`);
    if (closing === "/") {
      assert.equal(stack.pop(), name, `</${name}> closes another element at ${lt}`);
    } else {
      if (stack.length === 0) {
        assert.equal(root, null, `a second root <${name}> at ${lt}`);
        root = name;
      }
      if (selfClosing !== "/") stack.push(name);
    }
    i = lt + whole.length;
  }
  assert.deepEqual(stack, [], "every element is closed");
  assert.ok(root !== null, "a root element");
  return root;
}

/** Every URL-ish reference in an HTML page other than the SVG namespace and the report's own files. */
function externalRefs(html: string): string[] {
  const refs: string[] = [];
  const withoutNs = html.replaceAll('xmlns="http://www.w3.org/2000/svg"', "");
  for (const m of withoutNs.matchAll(/(?:https?:|\/\/|url\(|@import|<script|<link|<iframe|<object|<embed)[^\s"'<>]*/gi)) refs.push(m[0]);
  for (const m of withoutNs.matchAll(/\s(?:src|href)="([^"]*)"/gi)) if (!/^[\w-]+\.(svg|json)$/.test(m[1] as string)) refs.push(m[1] as string);
  return refs;
}

function smallScenario() {
  const s = scenarioFrom({ ...DEFAULT_SIM_OPTIONS, prosumers: 6, batteries: 0, consumers: 20, days: 1, start: "12:00", outage: "13:00-13:45" });
  return { ...s, world: { ...s.world, durationMs: 2 * HOUR_MS } };
}

/** A copy of `r` with `days` days of intervals (its rows repeated), for the limits on long runs. */
function stretched(r: NeighbourhoodReport, days: number): NeighbourhoodReport {
  const rows: IntervalRow[] = [];
  const src = r.market.intervals;
  for (let k = 0; k < days * 96; k++) {
    const base = src[k % src.length] as IntervalRow;
    const startMs = r.scenario.startMs + k * 900_000;
    rows.push({ ...base, startMs, clock: new LocalClock(0).clock(startMs) });
  }
  return { ...r, scenario: { ...r.scenario, durationMs: days * 86_400_000 }, market: { ...r.market, intervals: rows } };
}

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === "number" ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The CLI's main() in this process, its stdout (log) and stderr captured. */
async function mainCapturing(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => err.push(String(chunk)) > 0) as typeof process.stderr.write;
  try {
    const code = await main(["node", "peergrid", ...args], (line) => out.push(`${line}\n`));
    return { code, stdout: out.join(""), stderr: err.join("") };
  } finally {
    process.stderr.write = write;
  }
}

describe("the report of a small neighbourhood (29 premises, 2 h, a 45-minute outage)", () => {
  let report: NeighbourhoodReport;
  let dir: string;
  let html: string;
  let svgs: Record<string, string>;

  before(async () => {
    report = await runNeighbourhood(smallScenario());
    dir = join(tempDir(), "out");
    const written = writeReportFiles(dir, report, META);
    assert.deepEqual(written.map((f) => f.path).sort(), Object.values(REPORT_FILES).map((n) => join(dir, n)).sort());
    for (const f of written) assert.equal(readFileSync(f.path).length, f.bytes, f.path);
    html = readFileSync(join(dir, REPORT_FILES.html), "utf8");
    svgs = Object.fromEntries([REPORT_FILES.supplyDemand, REPORT_FILES.price, REPORT_FILES.energy].map((n) => [n, readFileSync(join(dir, n), "utf8")]));
  });

  it("the run islands and clears (else the checks below would check little)", () => {
    assert.ok(report.outage.island.islandedSeconds > 0, "islanded");
    assert.ok(report.market.intervalsCleared > 0, "something cleared");
    assert.equal(report.market.intervals.length, 8);
  });

  it("report.json is the report, with the meta beside it; the marker says the folder is a report's", () => {
    const parsed = JSON.parse(readFileSync(join(dir, REPORT_FILES.json), "utf8")) as { format: string; meta: ReportMeta; report: NeighbourhoodReport };
    assert.equal(parsed.format, REPORT_FORMAT);
    assert.deepEqual(parsed.meta, META);
    assert.deepEqual(parsed.report, JSON.parse(JSON.stringify(report)));
    assert.ok(existsSync(join(dir, REPORT_MARKER)));
  });

  it("the SVGs are well-formed, titled, and have the axes in units and local clock times", () => {
    for (const [name, svg] of Object.entries(svgs)) {
      assert.equal(checkXml(svg), "svg", name);
      assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" viewBox="0 0 \d+ \d+"/, name);
      assert.match(svg, /<title>[^<]+<\/title>/, name);
    }
    const sd = svgs[REPORT_FILES.supplyDemand] as string;
    assert.match(sd, />kWh per 15 min interval</);
    assert.match(sd, />local time \(UTC\), from 2025-06-21</);
    for (const clock of ["12:00", "13:00", "14:00"]) assert.ok(sd.includes(`>${clock}</text>`), clock);
    for (const series of ["offered (sell orders)", "bid (buy orders)", "cleared", "metered import", "metered export", "islanded"]) assert.ok(sd.includes(`>${series}</text>`), series);
    assert.match(svgs[REPORT_FILES.price] as string, />units per kWh</);
    assert.match(svgs[REPORT_FILES.energy] as string, />kWh over the run \(2 h\)</);
  });

  it("the island is shaded on the time axis of both time charts, where the grid monitor said", () => {
    const spans = islandSpans(report);
    assert.equal(spans.length, 1);
    const [span] = spans as [{ startMs: number; endMs: number }];
    assert.equal(span.startMs, report.outage.island.startMs);
    assert.equal(span.endMs, report.outage.island.endMs);
    // 640 wide, plot from x 62 to 616 over 2 h: 13:00 is at 339.
    for (const name of [REPORT_FILES.supplyDemand, REPORT_FILES.price]) {
      const bands = [...(svgs[name] as string).matchAll(/<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="[\d.]+" fill="#7f7f7f" fill-opacity="0.18"\/>/g)];
      assert.equal(bands.length, 1, name);
      assert.equal(Number(bands[0]?.[1]), 339, name);
      const widthOfHour = (616 - 62) / 2;
      assert.ok(Math.abs(Number(bands[0]?.[2]) - (widthOfHour * (span.endMs - span.startMs)) / HOUR_MS) < 0.2, name);
    }
  });

  it("the HTML has the headline figures, the charts, the intervals, the island events and the shortcuts, and fetches nothing", () => {
    for (const text of [
      fmtPercent(report.energy.selfSufficiencyPpm),
      fmtPercent(report.energy.selfConsumptionPpm),
      fmtPercent(report.market.tradedLocallyPpm),
      `${fmtMoney(report.market.savingsMicro)} units saved`,
      `${fmtMoney(report.market.priceMeanMicroPerKWh as number, 3)} units/kWh mean`,
      report.ledger.headHash,
      "Critical loads during outages",
      "Energy shed",
    ]) {
      assert.ok(html.includes(esc(text)), text);
    }
    for (const s of report.shortcuts) assert.ok(html.includes(esc(s)), s);
    for (const e of report.outage.island.events) assert.ok(html.includes(`<td>${e.clock}</td>`), e.clock);
    for (const iv of report.market.intervals) assert.ok(html.includes(`<td>${iv.clock}</td>`), iv.clock);
    assert.equal((html.match(/<svg /g) ?? []).length, 3, "the three charts inline");
    assert.match(html, /<meta name="viewport" content="width=device-width, initial-scale=1">/);
    assert.deepEqual(externalRefs(html), []);
    for (const svg of Object.values(svgs)) assert.deepEqual(externalRefs(svg), []);
  });

  it("the terminal summary: every headline with its unit, the chain head and the shortcuts", () => {
    const text = summaryText(report);
    const lines = text.split("\n");
    assert.ok(lines.length < 25, `a few lines, not ${lines.length}`);
    for (const needle of ["Self-sufficiency", "Self-consumption", "Traded locally", "units saved", "units/kWh mean", "range", "Critical loads during outages", "Energy shed", "kWh", "tx/s", "bytes", "per day", "ms median", report.ledger.headHash]) {
      assert.ok(text.includes(needle), needle);
    }
    for (const s of report.shortcuts) assert.ok(text.includes(s), s);
    for (const line of lines.slice(1, 11)) assert.match(line, /%|kWh|units|bytes|ms|tx\/s/, line);
  });

  it("the same report gives the same charts and page, byte for byte; only report.json carries the meta", () => {
    const again = join(tempDir(), "again");
    writeReportFiles(again, JSON.parse(JSON.stringify(report)) as NeighbourhoodReport, { ...META, runtimeMs: 9_999, commit: "f".repeat(40) });
    for (const name of [REPORT_FILES.html, REPORT_FILES.supplyDemand, REPORT_FILES.price, REPORT_FILES.energy]) {
      assert.equal(readFileSync(join(again, name), "utf8"), readFileSync(join(dir, name), "utf8"), name);
    }
    assert.ok(!html.includes(META.command) && !html.includes("1234"), "no meta in the page");
  });

  it("text from the report is escaped in the page and the charts", () => {
    const evil = "<script>alert(1)</script>";
    const hostile: NeighbourhoodReport = {
      ...report,
      shortcuts: [evil, `a "quoted" & 'apostrophed' <b>shortcut</b>`],
      outage: { ...report.outage, island: { ...report.outage.island, events: report.outage.island.events.map((e) => ({ ...e, clock: `${e.clock}<img src=x onerror=alert(2)>`, reason: evil as never })) } },
      market: { ...report.market, intervals: report.market.intervals.map((iv) => ({ ...iv, clock: `${iv.clock}<i>` })) },
      ledger: { ...report.ledger, headHash: evil, txsByType: { [evil]: 1 }, rejected: { [evil]: 2 } },
    };
    const page = reportHtml(hostile);
    assert.ok(!/<script|<img|<i>|<b>/i.test(page), "no tag from the report survives");
    assert.ok(page.includes("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert.ok(page.includes("a &quot;quoted&quot; &amp; &#39;apostrophed&#39; &lt;b&gt;shortcut&lt;/b&gt;"));
    for (const svg of Object.values(reportCharts(hostile))) assert.equal(checkXml(svg), "svg");
  });

  it("a long run stays within the limits: charts in buckets of whole intervals, the table's first 3,000 rows", () => {
    const long = stretched(report, 40); // 3,840 intervals
    const charts = reportCharts(long);
    for (const svg of Object.values(charts)) assert.equal(checkXml(svg), "svg");
    assert.match(charts.supplyDemand, />kWh per 1 h 15 min \(5 intervals\)</);
    const steps = (charts.price.match(/H[\d.]+/g) ?? []).length;
    assert.ok(steps <= 768, `${steps} price steps`);
    assert.ok(charts.supplyDemand.length < 400_000, `${charts.supplyDemand.length} bytes`);
    const page = reportHtml(long);
    assert.match(page, /The first 3,000 of 3,840 intervals; report.json has them all/);
    assert.equal((page.match(/<tr/g) ?? []).length - 1 - report.outage.island.events.length - 1, 3_000);
    // Days on the time axis: ticks labelled by date.
    assert.match(charts.price, />06-22<\/text>/);
  });

  it("local times: the site's offset, in the engine's clocks and the page's", () => {
    assert.equal(LocalClock.of(report).offsetMs, (report.scenario.site?.utcOffsetHours ?? 0) * HOUR_MS);
    const first = report.market.intervals[0] as IntervalRow;
    const site = { latitudeDeg: 51.5, longitudeDeg: -0.13, utcOffsetHours: 2 };
    const declared = { ...report, scenario: { ...report.scenario, site } } as NeighbourhoodReport;
    const clock = LocalClock.of(declared);
    assert.equal(clock.name(), "UTC+2");
    assert.equal(new LocalClock(-3.5 * HOUR_MS).name(), "UTC-3:30");
    const page = reportHtml(declared);
    assert.ok(page.includes(`<td>${clock.clock(first.startMs)}</td>`) && clock.clock(first.startMs) === "14:00", "the table in local time");
    assert.match(reportCharts(declared).price, />local time \(UTC\+2\), from 2025-06-21</);
    assert.match(reportCharts(declared).price, />14:00<\/text>/);
  });

  it("Chromium shows the page at a phone's width without sideways scrolling, fetching only the page, and opens each SVG", { skip: !existsSync(CHROMIUM) && `no ${CHROMIUM}` }, async () => {
    const { chromium } = await import("playwright-core");
    const browser = await chromium.launch({ executablePath: CHROMIUM });
    try {
      const ctx = await browser.newContext({ viewport: { width: 360, height: 740 }, isMobile: true, hasTouch: true, deviceScaleFactor: 1 });
      const page = await ctx.newPage();
      const requests: string[] = [];
      const errors: string[] = [];
      page.on("request", (r) => requests.push(r.url()));
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(`file://${join(dir, REPORT_FILES.html)}`);
      assert.deepEqual(requests, [`file://${join(dir, REPORT_FILES.html)}`]);
      assert.deepEqual(errors, []);
      const widths = await page.evaluate<{ doc: number; view: number; svgs: number }>(`({ doc: document.documentElement.scrollWidth, view: window.innerWidth, svgs: document.querySelectorAll("svg").length })`);
      assert.ok(widths.doc <= widths.view, `the page is ${widths.doc} px wide on a ${widths.view} px screen`);
      assert.equal(widths.svgs, 3);
      const fontPx = await page.evaluate<number>("Number.parseFloat(getComputedStyle(document.body).fontSize)");
      assert.ok(fontPx >= 14, `body text ${fontPx} px`);
      for (const name of [REPORT_FILES.supplyDemand, REPORT_FILES.price, REPORT_FILES.energy]) {
        await page.goto(`file://${join(dir, name)}`);
        const rootName = await page.evaluate<string>("document.documentElement.localName");
        assert.equal(rootName, "svg", `${name} parses as SVG (a parse error shows another page)`);
      }
    } finally {
      await browser.close();
    }
  });
});

describe("the progress bar", () => {
  const sink = (isTTY: boolean) => {
    const chunks: string[] = [];
    return { chunks, out: { isTTY, write: (s: string) => chunks.push(s) > 0 } as unknown as NodeJS.WritableStream & { isTTY?: boolean } };
  };
  const feed = (p: SimProgress, totalS: number) => {
    for (let doneS = 600; doneS <= totalS; doneS += 600) p.update({ doneS, totalS, height: doneS, txs: doneS * 2 });
    p.done();
  };

  it("off a terminal: a line about every 10 %, with percent, the simulated clock, blocks, elapsed and remaining time", () => {
    const { chunks, out } = sink(false);
    feed(new SimProgress(out, Date.UTC(2025, 5, 21, 12), new LocalClock(2 * HOUR_MS)), 86_400);
    assert.ok(chunks.length >= 9 && chunks.length <= 11, `${chunks.length} lines`);
    assert.ok(chunks.every((c) => c.endsWith("\n") && !c.includes("\r")));
    assert.match(chunks[0] as string, /^sim +1\d %  simulated 1[67]:\d0, [\d,]+ blocks, [\d,]+ txs, [\d.]+ s elapsed, ~[\d.]+ s left\n$/);
    assert.match(chunks[chunks.length - 1] as string, /^sim 100 %  simulated 14:00/, "local time: UTC+2");
  });

  it("on a terminal: one line redrawn with \\r, a bar, then a newline", () => {
    const { chunks, out } = sink(true);
    feed(new SimProgress(out, Date.UTC(2025, 5, 21, 0), new LocalClock(0)), 7_200);
    assert.ok(chunks.length >= 2);
    assert.ok(chunks.slice(0, -1).every((c) => c.startsWith("\r[") && !c.includes("\n")));
    assert.match(chunks[chunks.length - 2] as string, /^\r\[#{24}\] 100 %/);
    assert.equal(chunks[chunks.length - 1], "\n");
  });
});

describe("peergrid sim, as a user runs it", () => {
  it("a bad option exits 2 with one line naming it, and writes nothing", async () => {
    const base = tempDir();
    const cases: [string[], RegExp][] = [
      [["--prosumers", "six"], /--prosumers: a whole number, got "six"/],
      [["--reading-period-s", "0"], /--reading-period-s: a whole number from 1 to 300, got 0/],
      [["--voters", "10"], /--voters: a whole number from 1 to 9/],
      [["--batteries", "61"], /--batteries: a whole number from 0 to 60/],
      [["--outage", "13:00"], /--outage: HH:MM-HH:MM/],
      [["--outage", "25:00-26:00"], /--outage: a time of day is HH:MM/],
      [["--latitude", "80"], /--latitude: -66 to 66 degrees/],
      [["--longitude", "east"], /--longitude: a number/],
      [["--utc-offset-hours", "1.3"], /--utc-offset-hours: -14 to 14 in quarter hours/],
      [["--date", "2025-02-30"], /--date: a calendar day YYYY-MM-DD/],
      [["--start", "7pm"], /--start: a time of day is HH:MM/],
      [["--hours", "2", "--days", "1"], /--hours replaces --days/],
      [["--hours", "2", "--start", "12:00", "--outage", "13:00-15:00"], /--outage: 13:00-15:00 ends after the run \(2 h from 12:00\)/],
    ];
    // The first as a child process (the real exit status), the rest through the CLI's main() in this process (the same code, without a Node start each).
    const [first, ...rest] = cases as [[string[], RegExp], ...[string[], RegExp][]];
    const results = [await run(["sim", ...first[0], "--out", join(base, "r0")])];
    for (const [k, [args]] of rest.entries()) results.push(await mainCapturing(["sim", ...args, "--out", join(base, `r${k + 1}`)]));
    results.forEach((r, k) => {
      const [args, why] = cases[k] as [string[], RegExp];
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, why, args.join(" "));
      assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
      assert.equal(r.stdout, "");
    });
    const unknown = await mainCapturing(["sim", "--prosumer", "5", "--out", join(base, "u")]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown option '--prosumer'/);
    assert.deepEqual(readdirSync(base), [], "nothing written");
  });

  it("--out refuses a folder of someone else's files, and leaves them alone", async () => {
    const out = tempDir();
    writeFileSync(join(out, "thesis.txt"), "years of work");
    const r = await run(["sim", "--hours", "1", "--out", out]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--out: .* holds files that are not a peergrid sim report/);
    assert.deepEqual(readdirSync(out), ["thesis.txt"]);
    assert.equal(readFileSync(join(out, "thesis.txt"), "utf8"), "years of work");
  });

  it("an hour of a tiny neighbourhood writes the report; a second run replaces it in the same folder, --json prints it", async () => {
    const out = join(tempDir(), "nested", "report");
    const args = ["sim", "--prosumers", "3", "--batteries", "0", "--consumers", "8", "--critical", "1", "--start", "12:00", "--hours", "1", "--outage", "12:15-12:30", "--seed", "7", "--out", out];
    const first = await run(args);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /^peergrid sim: 12 premises for 1 h from 2025-06-21 12:00, seed 7/);
    assert.match(first.stderr, /^sim 100 %  simulated 13:00, /m);
    assert.match(first.stdout, /^peergrid sim: 12 premises \(3 prosumers, 8 consumers, 1 critical site\), 1 h from 2025-06-21 12:00 UTC, utility outage 12:15-12:30, seed 7/);
    assert.ok(first.stdout.includes(`Open the report: ${join(out, REPORT_FILES.html)}`));
    assert.ok(first.stdout.includes(join(out, REPORT_FILES.json)));
    assert.deepEqual(readdirSync(out).sort(), [REPORT_MARKER, ...Object.values(REPORT_FILES)].sort());
    const json = JSON.parse(readFileSync(join(out, REPORT_FILES.json), "utf8")) as { meta: ReportMeta & { options: { hours: number; seed: number } }; report: NeighbourhoodReport };
    assert.equal(json.meta.command, `peergrid sim --prosumers 3 --batteries 0 --consumers 8 --critical 1 --hours 1 --start 12:00 --outage 12:15-12:30 --seed 7 --out ${out}`, "the options typed, in --help's order");
    assert.equal(json.meta.nodeVersion, process.version);
    assert.ok(json.meta.commit === null || /^[0-9a-f]{40}$/.test(json.meta.commit));
    assert.equal(json.meta.options.hours, 1);
    assert.equal(json.report.scenario.durationMs, HOUR_MS);
    assert.equal(json.report.scenario.seed, 7);
    assert.ok(json.report.outage.island.islandedSeconds > 0);

    writeFileSync(join(out, "notes.txt"), "mine");
    const second = await run([...args, "--json"]);
    assert.equal(second.code, 0, second.stderr);
    const printed = JSON.parse(second.stdout) as { format: string; report: NeighbourhoodReport };
    assert.equal(printed.format, REPORT_FORMAT);
    assert.equal(printed.report.ledger.headHash, json.report.ledger.headHash, "the same seed, the same chain head");
    assert.equal(readFileSync(join(out, "notes.txt"), "utf8"), "mine", "a user's file in a report folder is kept");
    assert.equal(readFileSync(join(out, REPORT_FILES.html), "utf8"), reportHtml(json.report), "the page is the report's");
  });

  it("--out takes a missing or empty folder or a report's; not a file, nor a folder of other files", () => {
    const base = tempDir();
    assert.doesNotThrow(() => checkOutDir(join(base, "missing", "deeper")));
    assert.doesNotThrow(() => checkOutDir(base), "empty");
    writeFileSync(join(base, "a.txt"), "x");
    assert.throws(() => checkOutDir(join(base, "a.txt")), /--out: .*a\.txt is a file, not a folder/);
    assert.throws(() => checkOutDir(base), /holds files that are not a peergrid sim report/);
    writeFileSync(join(base, REPORT_MARKER), "");
    assert.doesNotThrow(() => checkOutDir(base), "a report's folder");
  });
});
