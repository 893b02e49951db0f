// The box as a product (issue 7, point 6): `npm run bench:api` (builds, then
// runs dist/scripts/bench-api.js; `-- --quick` for a short run, `-- --help`).
//
//   1. reads     ONE real box (`peergrid start` through LocalCluster, signing
//                --synthetic-readings 60 a second so the ledger has readings),
//                pinned to core 0 (taskset -a -p: every thread, the Raft log
//                worker too); autocannon in its own process pinned to core 1,
//                keep-alive, --connections at once, drives GET /api/v1/status
//                and GET /api/v1/readings for --window-s each after a
//                warm-up, --runs times (routes alternating). Requests from
//                loopback are exempt from the box's rate limits
//                (DEFAULT_RATE_LIMITS.exemptLoopback), so nothing is raised;
//                any non-2xx answer is counted and reported.
//   2. stream    --phones SSE clients on GET /api/v1/stream?topics=block,
//                split over two client processes pinned to core 1, for
//                --stream-s: every client must get every block committed in
//                the window; lag = receipt time - the block's header timeMs
//                (proposal time, so it includes the commit); the box's CPU.
//                The box is a real `peergrid start` (--synthetic-readings
//                60), pinned to core 0, as in part 1: it serves up to 1,024
//                stream clients (DEFAULT_STREAM_LIMITS.clientsMax), and the
//                per-address cap does not apply to loopback. Drops are the
//                box's own count (peergrid_stream_dropped_total, /metrics).
//   3. resources a 5-box LocalCluster (real processes, not pinned: 5 boxes
//                on this machine's cores), each box polling one simulated
//                Modbus meter (one `peergrid meter simulate --count 5`
//                process) and running the embedded MQTT broker; each box's
//                CPU (% of one core, utime + stime from /proc/PID/stat) and
//                RSS (VmRSS) sampled every second for --resources-s.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { request } from "node:http";
import os from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { LocalCluster, waitFor } from "../daemon/local-cluster.js";
import { CpuMeter, cpuSplit, fmtInt, foreignCpuPercent, getJson, hostInfo, measuredCommit, median, pct, Ports, positiveInt, printTable, r1, range, readOptions, type Row, rssMB, sleep, withLocalCluster } from "./bench-common.js";

// ---------------------------------------------------------------- options

interface Options {
  readonly quick: boolean;
  readonly parts: ReadonlySet<string>;
  readonly connections: number;
  readonly warmupS: number;
  readonly windowS: number;
  readonly runs: number;
  readonly phones: number;
  readonly streamS: number;
  readonly resourcesS: number;
  readonly dir: string;
}

const USAGE = `usage: node dist/scripts/bench-api.js [options]
  --quick            short run (~2 min): 1 run of 5 s, 20 s stream, 20 s resources
  --parts a,b,c      which of reads, stream, resources (default all)
  --connections N    keep-alive connections of the read load (default 64)
  --warmup-s N       load per route before the measured runs (default 5)
  --window-s N       measured seconds per route and run (default 10)
  --runs N           runs per route (default 3)
  --phones N         stream clients (default 500)
  --stream-s N       measured stream window (default 60)
  --resources-s N    resource sampling window of the 5-box cluster (default 60)
  --dir PATH         parent of the temporary data directories (default the OS temp dir)`;

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: "boolean", default: false },
      parts: { type: "string" },
      connections: { type: "string" },
      "warmup-s": { type: "string" },
      "window-s": { type: "string" },
      runs: { type: "string" },
      phones: { type: "string" },
      "stream-s": { type: "string" },
      "resources-s": { type: "string" },
      dir: { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  if (values.help === true) return null;
  const quick = values.quick === true;
  const parts = new Set((values.parts ?? "reads,stream,resources").split(",").map((s) => s.trim()));
  for (const p of parts) if (!["reads", "stream", "resources"].includes(p)) throw new Error(`--parts: unknown part ${p}`);
  return {
    quick,
    parts,
    connections: positiveInt(values.connections, 64, "connections"),
    warmupS: positiveInt(values["warmup-s"], quick ? 2 : 5, "warmup-s"),
    windowS: positiveInt(values["window-s"], quick ? 5 : 10, "window-s"),
    runs: positiveInt(values.runs, quick ? 1 : 3, "runs"),
    phones: positiveInt(values.phones, 500, "phones"),
    streamS: positiveInt(values["stream-s"], quick ? 20 : 60, "stream-s"),
    resourcesS: positiveInt(values["resources-s"], quick ? 20 : 60, "resources-s"),
    dir: resolve(values.dir ?? os.tmpdir()),
  };
}

// ---------------------------------------------------------------- small tools

const SELF = fileURLToPath(import.meta.url);
const BIN = fileURLToPath(new URL("../../bin/peergrid.js", import.meta.url));
const AUTOCANNON = fileURLToPath(new URL("../../node_modules/autocannon/autocannon.js", import.meta.url));

let hasTaskset: boolean | null = null;
function tasksetAvailable(): boolean {
  if (hasTaskset === null) {
    try {
      execFileSync("taskset", ["-p", String(process.pid)], { stdio: "ignore" });
      hasTaskset = os.cpus().length >= 2;
    } catch {
      hasTaskset = false;
    }
  }
  return hasTaskset;
}

/** Pin every thread of a running process to one core (no-op without taskset or a second core). */
function pin(pid: number, core: number): void {
  if (tasksetAvailable()) execFileSync("taskset", ["-a", "-p", "-c", String(core), String(pid)], { stdio: "ignore" });
}

/** Run a node script, pinned to a core when taskset is there; resolves with its stdout. `each` is called every second while it runs. */
function runNode(args: readonly string[], core: number, each?: (pid: number) => void): Promise<string> {
  const child = spawnPinned(args, core);
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr?.on("data", (d: Buffer) => (err += d.toString()));
  const timer = each === undefined ? null : setInterval(() => each(child.pid as number), 1_000);
  return new Promise((resolveOut, reject) => {
    child.once("exit", (code) => {
      if (timer !== null) clearInterval(timer);
      if (code === 0) resolveOut(out);
      else reject(new Error(`${args.join(" ")} exited ${code}: ${err.slice(-2000)}`));
    });
  });
}

// ---------------------------------------------------------------- 1. reads

interface LoadResult {
  readonly route: string;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly non2xx: number;
  readonly errors: number;
  readonly bytesPerReq: number;
  readonly boxCpu: number; // median of per-second samples, % of one core
  readonly genCpu: number; // the load generator's, likewise
}

interface AutocannonJson {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  throughput: { total: number };
  duration: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  "2xx": number;
}

async function autocannon(url: string, connections: number, seconds: number, boxPid: number): Promise<Omit<LoadResult, "route">> {
  // CPU sampled each second of the load (the first second, with the generator's start-up, left out).
  const box = new CpuMeter(boxPid);
  let gen: CpuMeter | null = null;
  const boxCpu: number[] = [];
  const genCpu: number[] = [];
  let tick = 0;
  const out = await runNode([AUTOCANNON, "-c", String(connections), "-d", String(seconds), "-j", url], 1, (pid) => {
    try {
      const b = box.sample();
      const g = gen?.sample();
      gen ??= new CpuMeter(pid);
      if (tick++ >= 1 && tick <= seconds && g !== undefined) {
        boxCpu.push(b);
        genCpu.push(g);
      }
    } catch {
      // the generator ended
    }
  });
  const j = JSON.parse(out) as AutocannonJson;
  const total = j["2xx"] + j.non2xx;
  return { rps: j["2xx"] / j.duration, p50Ms: j.latency.p50, p99Ms: j.latency.p99, non2xx: j.non2xx, errors: j.errors + j.timeouts, bytesPerReq: total > 0 ? j.throughput.total / total : 0, boxCpu: median(boxCpu), genCpu: median(genCpu) };
}

const READ_ROUTES = ["/api/v1/status", "/api/v1/readings"] as const;

/** Parts 1 and 2's box: one `peergrid start` signing 60 readings a second, every thread pinned to core 0, a few blocks in. */
async function startReadingBox(c: LocalCluster): Promise<{ readonly pid: number; readonly base: string }> {
  const p = await c.start(0, ["--synthetic-readings", "60"]);
  const pid = p.child.pid as number;
  pin(pid, 0);
  await waitFor("a few blocks", async () => ((await c.status(0))?.height ?? 0) >= 3);
  return { pid, base: `http://127.0.0.1:${c.httpPort(0)}` };
}

async function reads(o: Options, ports: Ports, log: (s: string) => void): Promise<{ runs: LoadResult[]; readingsListed: number }> {
  return withLocalCluster({ parent: o.dir, prefix: "peergrid-bench-api-reads-", boxes: 1, basePort: ports.take(2) }, async (c) => {
    const { pid, base } = await startReadingBox(c);
    const listed = (await getJson<{ readings: unknown[] }>(`${base}/api/v1/readings`))?.readings.length ?? 0;
    for (const route of READ_ROUTES) await autocannon(base + route, o.connections, o.warmupS, pid); // warm-up
    const runs: LoadResult[] = [];
    for (let run = 0; run < o.runs; run++) {
      for (const route of READ_ROUTES) {
        const r = { route, ...(await autocannon(base + route, o.connections, o.windowS, pid)) };
        log(`  run ${run + 1} ${route}: ${fmtInt(r.rps)}/s, p50 ${r.p50Ms} ms, p99 ${r.p99Ms} ms, ${fmtInt(r.bytesPerReq)} B/answer, non-2xx ${r.non2xx}, errors ${r.errors}, CPU box ${r1(r.boxCpu)} %, load generator ${r1(r.genCpu)} %`);
        runs.push(r);
      }
    }
    return { runs, readingsListed: listed };
  });
}

// ---------------------------------------------------------------- 2. stream

interface PhoneReport {
  readonly connected: number;
  readonly failed: number;
  readonly closedEarly: number;
  /** Per client: the heights it received, in order. */
  readonly heights: number[][];
  readonly lagsMs: number[]; // every (client, block) lag
  readonly blockTimes: Record<number, number>; // height -> header timeMs
}

/** In the child: open `clients` SSE clients, read for `seconds`, report. */
async function phonesRole(url: string, clients: number, seconds: number): Promise<void> {
  const heights: number[][] = range(clients).map(() => []);
  const lagsMs: number[] = [];
  const blockTimes: Record<number, number> = {};
  let connected = 0;
  let failed = 0;
  let closedEarly = 0;
  let ending = false;
  const reqs = range(clients).map((i) => {
    const req = request(url, { agent: false, headers: { accept: "text/event-stream" } }, (res) => {
      if (res.statusCode !== 200) {
        failed++;
        res.resume();
        return;
      }
      connected++;
      res.setEncoding("utf8");
      let buf = "";
      res.on("data", (chunk: string) => {
        const at = Date.now();
        buf += chunk;
        let end: number;
        while ((end = buf.indexOf("\n\n")) >= 0) {
          const frame = buf.slice(0, end);
          buf = buf.slice(end + 2);
          if (!frame.includes("event: block")) continue;
          const data = frame.split("\n").find((l) => l.startsWith("data: "));
          if (data === undefined) continue;
          const b = JSON.parse(data.slice(6)) as { height: number; timeMs: number };
          heights[i]?.push(b.height);
          blockTimes[b.height] = b.timeMs;
          lagsMs.push(at - b.timeMs);
        }
      });
      res.on("close", () => {
        if (!ending) closedEarly++;
      });
    });
    req.on("error", () => {
      if (!ending) failed++;
    });
    req.end();
    return req;
  });
  await sleep(seconds * 1000);
  ending = true;
  for (const r of reqs) r.destroy();
  process.stdout.write(JSON.stringify({ connected, failed, closedEarly, heights, lagsMs, blockTimes } satisfies PhoneReport));
}

interface StreamResult {
  readonly phones: number;
  readonly connected: number;
  readonly failedOrDropped: number;
  readonly blocksInWindow: number;
  readonly clientsWithEveryBlock: number;
  readonly missed: number; // (client, block) pairs missing
  readonly lagP50Ms: number | null;
  readonly lagP99Ms: number | null;
  readonly lagMaxMs: number | null;
  readonly boxCpuMedian: number;
  readonly boxCpuMax: number;
  readonly boxRssMaxMB: number;
  readonly hubDropped: number;
  readonly hubRefused: number;
  readonly windowS: number;
}

function spawnPinned(args: readonly string[], core: number): ChildProcess {
  const [cmd, argv] = tasksetAvailable() ? ["taskset", ["-c", String(core), process.execPath, ...args]] : [process.execPath, [...args]];
  return spawn(cmd as string, argv as string[], { stdio: ["ignore", "pipe", "pipe"] });
}

async function stream(o: Options, ports: Ports, log: (s: string) => void): Promise<StreamResult> {
  return withLocalCluster({ parent: o.dir, prefix: "peergrid-bench-api-stream-", boxes: 1, basePort: ports.take(2) }, async (c) => {
    // A real `peergrid start` box (its stream takes up to 1,024 clients; loopback has no per-address cap).
    const { pid, base } = await startReadingBox(c);
    const url = `${base}/api/v1/stream?topics=block`;
    // Two client processes (half each), both on core 1; they connect, then read for streamS + the connect margin.
    const connectS = 5;
    const half = Math.ceil(o.phones / 2);
    const shares = [half, o.phones - half].filter((n) => n > 0);
    const clients = shares.map((n) => runNode([SELF, "--role", "phones", "--url", url, "--clients", String(n), "--seconds", String(connectS + o.streamS)], 1));
    await sleep(connectS * 1000);
    const t0 = Date.now();
    const cpu = new CpuMeter(pid);
    const cpuSamples: number[] = [];
    let rssMax = 0;
    while (Date.now() < t0 + o.streamS * 1000 - 1_000) {
      await sleep(1_000);
      cpuSamples.push(cpu.sample());
      rssMax = Math.max(rssMax, rssMB(pid));
    }
    const t1 = Date.now() - 1_500; // blocks up to here had time to reach everyone before the clients stop
    const reports = (await Promise.all(clients)).map((s) => JSON.parse(s) as PhoneReport);
    // The box's own count of clients it dropped for falling behind (Prometheus); refusals show as failed connections.
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const droppedLine = /^peergrid_stream_dropped_total (\d+)$/m.exec(metrics);
    const hub = { dropped: droppedLine === null ? -1 : Number(droppedLine[1]), refused: reports.reduce((a, r) => a + r.failed, 0) };
    // The blocks of the window: header time in [t0, t1), as any client saw them.
    const times = new Map<number, number>();
    for (const r of reports) for (const [h, t] of Object.entries(r.blockTimes)) times.set(Number(h), t);
    const window = [...times].filter(([, t]) => t >= t0 && t < t1).map(([h]) => h);
    const all = reports.flatMap((r) => r.heights);
    let missed = 0;
    let complete = 0;
    for (const hs of all) {
      const got = new Set(hs);
      const m = window.filter((h) => !got.has(h)).length;
      missed += m;
      if (m === 0) complete++;
    }
    const lags = reports.flatMap((r) => r.lagsMs);
    const res: StreamResult = {
      phones: o.phones,
      connected: reports.reduce((a, r) => a + r.connected, 0),
      failedOrDropped: reports.reduce((a, r) => a + r.failed + r.closedEarly, 0),
      blocksInWindow: window.length,
      clientsWithEveryBlock: complete,
      missed,
      lagP50Ms: pct(lags, 0.5),
      lagP99Ms: pct(lags, 0.99),
      lagMaxMs: lags.length === 0 ? null : Math.max(...lags),
      boxCpuMedian: median(cpuSamples),
      boxCpuMax: Math.max(...cpuSamples),
      boxRssMaxMB: rssMax,
      hubDropped: hub.dropped,
      hubRefused: hub.refused,
      windowS: (t1 - t0) / 1000,
    };
    log(`  ${res.connected}/${res.phones} connected; ${res.blocksInWindow} blocks in ${r1(res.windowS)} s; ${res.clientsWithEveryBlock} clients got every one (${res.missed} missed); lag p50 ${res.lagP50Ms} ms, p99 ${res.lagP99Ms} ms, max ${res.lagMaxMs} ms; dropped ${res.hubDropped}, refused ${res.hubRefused}, failed/closed ${res.failedOrDropped}; box CPU median ${r1(res.boxCpuMedian)} %, max ${r1(res.boxCpuMax)} %, RSS <= ${r1(res.boxRssMaxMB)} MB`);
    return res;
  });
}

// ---------------------------------------------------------------- 3. resources

interface BoxUsage {
  readonly box: number;
  readonly leader: boolean;
  readonly cpuMedian: number;
  readonly cpuMax: number;
  readonly rssMedianMB: number;
  readonly rssMaxMB: number;
}

async function resources(o: Options, ports: Ports, log: (s: string) => void): Promise<{ boxes: BoxUsage[]; simulatorCpu: number; meterReadings: number; elections: number }> {
  const boxes = 5;
  const dir = mkdtempSync(join(o.dir, "peergrid-bench-api-res-"));
  const c = LocalCluster.create({ dir, boxes, basePort: ports.take(2 * boxes), chainId: "bench" });
  const meterPort = ports.take(boxes);
  const mqttPort = ports.take(boxes);
  const sim = spawn(process.execPath, [BIN, "meter", "simulate", "--listen", `127.0.0.1:${meterPort}`, "--count", String(boxes)], { stdio: ["ignore", "pipe", "pipe"] });
  const simLines: string[] = [];
  createInterface({ input: sim.stdout }).on("line", (l) => simLines.push(l));
  try {
    await waitFor("the simulated meters", () => simLines.some((l) => l.includes('"msg":"ready"')), 15_000);
    await Promise.all(range(boxes).map((i) => c.start(i, ["--meter", `0=eastron-sdm630@tcp:127.0.0.1:${meterPort + i}`, "--mqtt", `embedded@127.0.0.1:${mqttPort + i}`])));
    await waitFor("a leader and two blocks on every box", async () => {
      const s = await c.statuses();
      return s.size === boxes && [...s.values()].filter((x) => x.role === "leader").length === 1 && [...s.values()].every((x) => x.height >= 2);
    });
    await sleep(5_000); // settle: first polls, MQTT discovery
    const s0 = await c.statuses();
    const pids = range(boxes).map((i) => c.procs.get(i)?.child.pid as number);
    const meters = pids.map((p) => new CpuMeter(p));
    const simCpu = new CpuMeter(sim.pid as number);
    const cpu: number[][] = range(boxes).map(() => []);
    const rss: number[][] = range(boxes).map(() => []);
    const t0 = Date.now();
    while (Date.now() < t0 + o.resourcesS * 1000) {
      await sleep(1_000);
      for (const i of range(boxes)) {
        cpu[i]?.push(meters[i]?.sample() ?? 0);
        rss[i]?.push(rssMB(pids[i]));
      }
    }
    const simulatorCpu = simCpu.sample();
    const s1 = await c.statuses();
    const readings = (await getJson<{ readings: unknown[] }>(`http://127.0.0.1:${c.httpPort(0)}/api/v1/readings`))?.readings.length ?? 0;
    const terms = new Set([...s0.values(), ...s1.values()].map((s) => s.term));
    const out = range(boxes).map((i) => ({
      box: i,
      leader: s1.get(i)?.role === "leader",
      cpuMedian: median(cpu[i] ?? []),
      cpuMax: Math.max(...(cpu[i] ?? [])),
      rssMedianMB: median(rss[i] ?? []),
      rssMaxMB: Math.max(...(rss[i] ?? [])),
    }));
    for (const b of out) log(`  box ${b.box}${b.leader ? " (leader)" : ""}: CPU median ${r1(b.cpuMedian)} %, max ${r1(b.cpuMax)} %; RSS median ${r1(b.rssMedianMB)} MB, max ${r1(b.rssMaxMB)} MB`);
    log(`  meter simulator (5 meters): CPU ${r1(simulatorCpu)} %; meters with a reading in the ledger: ${readings}; elections in the window: ${terms.size - 1}`);
    return { boxes: out, simulatorCpu, meterReadings: readings, elections: terms.size - 1 };
  } finally {
    await c.stopAll("SIGTERM");
    sim.kill("SIGTERM");
    await new Promise<void>((r) => (sim.exitCode !== null ? r() : sim.once("exit", () => r())));
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- main

async function main(o: Options): Promise<void> {
  const log = (s: string) => console.error(s);
  const host = hostInfo();
  console.log(JSON.stringify({ machine: host, commit: measuredCommit(["daemon", "ledger", "scripts"], "+ uncommitted changes"), taskset: tasksetAvailable(), options: { ...o, parts: [...o.parts] } }, null, 2));
  const ports = new Ports(30_000, 200, 50);
  const rows: Row[] = [];
  if (o.parts.has("reads")) {
    log(`1. reads: one box on core 0, autocannon -c ${o.connections} on core 1, ${o.runs} x ${o.windowS} s per route`);
    const c0 = cpuSplit();
    const { runs, readingsListed } = await reads(o, ports, log);
    const foreign = foreignCpuPercent(c0, cpuSplit());
    log(`  foreign CPU during the part: ${r1(foreign)} % of all cores`);
    rows.push(["reads: foreign CPU (not ours), all cores", `${r1(foreign)} %`, "0", ""]);
    for (const route of READ_ROUTES) {
      const rs = runs.filter((r) => r.route === route);
      const rps = median(rs.map((r) => r.rps));
      rows.push([`${route} req/s (median of ${rs.length})`, fmtInt(rps), ">= 5,000/s", rps >= 5_000 ? "ok" : "BELOW"]);
      rows.push([`${route} p50 / p99 latency`, `${r1(median(rs.map((r) => r.p50Ms)))} / ${r1(median(rs.map((r) => r.p99Ms)))} ms`, "", ""]);
      rows.push([`${route} CPU box / load generator`, `${r1(median(rs.map((r) => r.boxCpu)))} / ${r1(median(rs.map((r) => r.genCpu)))} %`, "", ""]);
      rows.push([`${route} non-2xx / errors`, `${rs.reduce((a, r) => a + r.non2xx, 0)} / ${rs.reduce((a, r) => a + r.errors, 0)}`, "0", ""]);
    }
    console.log(JSON.stringify({ reads: { runs, readingsListed } }));
  }
  if (o.parts.has("stream")) {
    log(`2. stream: ${o.phones} SSE clients (topics=block) for ${o.streamS} s`);
    const c0 = cpuSplit();
    const s = await stream(o, ports, log);
    const foreign = foreignCpuPercent(c0, cpuSplit());
    log(`  foreign CPU during the part: ${r1(foreign)} % of all cores`);
    rows.push(["stream: foreign CPU (not ours), all cores", `${r1(foreign)} %`, "0", ""]);
    const ok = s.connected === s.phones && s.missed === 0 && s.failedOrDropped === 0 && s.hubDropped === 0;
    rows.push([`stream: clients with every block of ${s.blocksInWindow}`, `${s.clientsWithEveryBlock} / ${s.phones}`, "all", ok ? "ok" : "NO"]);
    rows.push(["stream: lag p50 / p99 / max", `${s.lagP50Ms} / ${s.lagP99Ms} / ${s.lagMaxMs} ms`, "", ""]);
    rows.push(["stream: box CPU median / max", `${r1(s.boxCpuMedian)} / ${r1(s.boxCpuMax)} %`, "", ""]);
    console.log(JSON.stringify({ stream: s }));
  }
  if (o.parts.has("resources")) {
    log(`3. resources: 5 boxes, a simulated meter each, embedded MQTT, ${o.resourcesS} s`);
    const c0 = cpuSplit();
    const r = await resources(o, ports, log);
    const foreign = foreignCpuPercent(c0, cpuSplit());
    log(`  foreign CPU during the part: ${r1(foreign)} % of all cores`);
    rows.push(["resources: foreign CPU (not ours), all cores", `${r1(foreign)} %`, "0", ""]);
    for (const b of r.boxes) rows.push([`box ${b.box}${b.leader ? " (leader)" : ""} CPU med / max, RSS med / max`, `${r1(b.cpuMedian)} / ${r1(b.cpuMax)} %, ${r1(b.rssMedianMB)} / ${r1(b.rssMaxMB)} MB`, "", ""]);
    console.log(JSON.stringify({ resources: r }));
  }
  printTable("Box as a product (issue 7)", rows);
}

async function role(argv: string[]): Promise<boolean> {
  if (argv[0] !== "--role") return false;
  const names = ["role", "url", "clients", "seconds"] as const;
  const { values } = parseArgs({ args: argv, strict: true, options: Object.fromEntries(names.map((n) => [n, { type: "string" as const }])) });
  const str = (k: string) => String(values[k]);
  switch (values.role) {
    case "phones":
      await phonesRole(str("url"), Number(str("clients")), Number(str("seconds")));
      return true;
    default:
      return false;
  }
}

if (!(await role(process.argv.slice(2)))) {
  const o = readOptions(parseOptions, USAGE);
  if (o !== null) await main(o);
}
