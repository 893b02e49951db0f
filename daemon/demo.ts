// `peergrid demo`, what `npm start` runs: a whole neighbourhood on this
// machine, each box a real `peergrid start` process on loopback.
//
// This process is the orchestrator. It makes a fresh neighbourhood in the
// demo's folder (keys, a genesis, a data directory per box: LocalCluster),
// hosts one simulated Modbus TCP meter per household (device/sim-meter.ts,
// an Eastron SDM630's registers; solar and load profiles), starts the boxes,
// each reading its own meter over Modbus TCP and trading for its household
// by an automatic-bidding policy (prosumers sell their surplus, the others
// buy), waits for a leader, prints where everything is, then prints the
// market as it clears, until Ctrl-C.
//
// Time. Every process runs on one simulated clock (daemon/sim-clock.ts):
// `--speed 15` (the default) makes a 15-minute market interval pass in a
// real minute, with a block every real second (15 simulated seconds). The
// simulated day starts at 09:10 local time (--start-at), when the sun is
// up: the bidders order at the first boundary (09:15) from what the meters
// measured, and the first trades clear at 09:30, about 80 s in.
//
// Stopping. Ctrl-C or SIGTERM: every box gets SIGTERM and exits 0 (one that
// has not after STOP_WAIT_MS gets SIGKILL), then this process exits 0. The
// boxes run in their own process groups, so the terminal's Ctrl-C reaches
// only this process: there is one orderly stop, not two racing ones; a
// repeated signal (npm forwards the terminal's Ctrl-C again) is ignored.
// And none outlives this process, however it ends: each watches its stdin,
// whose other end this process holds (--exit-with-parent).
//
// Ports (loopback only; --base-port B, N boxes): box i's Raft on B+2i and
// its HTTP API and web app on B+2i+1 (LocalCluster's plan), household i's
// meter on B+2N+i, the MQTT broker (box 0's, embedded) on B+3N. All are
// checked free before anything starts.
import { randomBytes } from "node:crypto";
import { type WriteStream, createWriteStream, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join, relative } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { assert } from "../ledger/assert.js";
import { UsageError } from "../ledger/errors.js";
import { DEFAULT_MARKET_PARAMS } from "../ledger/genesis.js";
import type { RoleName } from "../ledger/tx.js";
import type { BiddingPolicy } from "../market/auto-bid.js";
import { loadRegisterMap } from "../device/meter-kind.js";
import { SimulatedMeter, type SimulatedMeterOptions } from "../device/sim-meter.js";
import { prepareDemoDir, releaseDemoDir } from "./demo-dir.js";
import { LocalCluster, waitFor } from "./local-cluster.js";
import type { NodeStatus } from "./node.js";
import { type SimClock, SPEED_MAX, formatClock, simNow } from "./sim-clock.js";

export const BOXES_MIN = 2; // a market needs a seller and a buyer
export const BOXES_MAX = 10;
export const BASE_PORT_MIN = 1024;

export interface DemoOptions {
  /** Made afresh on every run (only if a demo made it: demo-dir.ts). */
  readonly dataDir: string;
  readonly boxes: number;
  /** Simulated ms per real ms, 1..SPEED_MAX. */
  readonly speed: number;
  readonly basePort: number;
  /** The simulated time of day the demo starts at, minutes after local midnight. */
  readonly startMinuteOfDay: number;
  /** Box 0 runs an embedded MQTT broker on loopback, and every box publishes to it. */
  readonly mqtt: boolean;
  /** Real seconds between progress lines (a clearing is printed when it happens). */
  readonly progressEveryS: number;
}

export const DEMO_DEFAULTS = { dataDir: "demo-data", boxes: 5, speed: 15, basePort: 7400, startAt: "09:10", mqtt: true, progressEveryS: 15 } as const;

/** A box that does not exit within this long of SIGTERM gets SIGKILL. */
const STOP_WAIT_MS = 10_000;
/** Boxes start and elect a leader within this (a slow machine: seconds). */
const START_WAIT_MS = 30_000;
const POLL_MS = 1_000;

// ---------------------------------------------------------------- the households

interface Household {
  readonly name: string;
  /** The solar array's output at noon, W (0: no panels). */
  readonly solarPeakW: number;
  /** What the household draws all day, W; the morning and evening peaks come on top. */
  readonly loadBaseW: number;
}

/**
 * Households by box: prosumers (solar) and consumers alternate, so any number
 * of boxes has both. Consumers draw more (a heat pump, an electric car).
 */
const HOUSEHOLDS: readonly Household[] = [
  { name: "ann", solarPeakW: 5_000, loadBaseW: 350 },
  { name: "bob", solarPeakW: 0, loadBaseW: 1_200 },
  { name: "cho", solarPeakW: 4_000, loadBaseW: 300 },
  { name: "dev", solarPeakW: 0, loadBaseW: 800 },
  { name: "eva", solarPeakW: 6_500, loadBaseW: 500 },
  { name: "fay", solarPeakW: 0, loadBaseW: 1_500 },
  { name: "gus", solarPeakW: 3_000, loadBaseW: 400 },
  { name: "hal", solarPeakW: 0, loadBaseW: 600 },
  { name: "ida", solarPeakW: 4_500, loadBaseW: 450 },
  { name: "jon", solarPeakW: 0, loadBaseW: 1_000 },
];

/**
 * A household's meter profile: device/profiles.ts's half-sine sun and
 * two-hump load, the same on any date, so the demo trades from 09:30 in
 * any season. THE SEAM for the realistic profiles (issue 8, sim/premise.ts,
 * which device/sim-meter.ts now takes as `power`): return
 * `{ power: (t) => premise.netPowerW(t) }` here, premise i of one
 * `createNeighbourhood({ seed, site, … })`; then choose the simulated date
 * (a winter morning at 51.5 N has little surplus) and a seed whose weather
 * lets the first intervals trade, and say so in the summary.
 */
function meterProfile(h: Household, utcOffsetHours: number): Pick<SimulatedMeterOptions, "solar" | "load"> {
  return {
    solar: { peakW: h.solarPeakW, sunriseHour: 6, sunsetHour: 20, utcOffsetHours },
    load: { baseW: h.loadBaseW, morningPeakW: 2 * h.loadBaseW, eveningPeakW: 3 * h.loadBaseW, utcOffsetHours },
  };
}

/**
 * Household i's bidding policy: sell surplus at 0.09 to 0.135 per kWh (more
 * than the utility's 0.08 export tariff), buy at up to 0.20 to 0.29 (less
 * than its 0.30 import tariff): trading locally pays both sides.
 */
function policyOf(i: number): BiddingPolicy {
  return { sellFloorMicroPerKWh: 90_000 + 5_000 * i, buyCeilingMicroPerKWh: 200_000 + 10_000 * i, maxBuyWh: 5_000, batteryReserveWh: 0, minOrderWh: 10, toleranceWh: 20 };
}

function rolesOf(i: number): RoleName[] {
  const h = HOUSEHOLDS[i] as Household;
  return ["box", ...(i === 0 ? (["admin"] as const) : []), ...(h.solarPeakW > 0 ? (["renewable"] as const) : [])];
}

// ---------------------------------------------------------------- ports

interface PortUse {
  readonly port: number;
  readonly what: string;
}

export function demoPorts(basePort: number, boxes: number, mqtt: boolean): PortUse[] {
  const ports: PortUse[] = [];
  for (let i = 0; i < boxes; i++) ports.push({ port: basePort + 2 * i, what: `box ${i}'s Raft link` }, { port: basePort + 2 * i + 1, what: `box ${i}'s web app and API` });
  for (let i = 0; i < boxes; i++) ports.push({ port: basePort + 2 * boxes + i, what: `household ${i}'s simulated meter` });
  if (mqtt) ports.push({ port: basePort + 3 * boxes, what: "the MQTT broker" });
  assert(new Set(ports.map((p) => p.port)).size === ports.length && ports.every((p) => p.port >= basePort && p.port <= 65_535), "one port for each use");
  return ports;
}

/** null if 127.0.0.1:port can be listened on now; else why not (EADDRINUSE, EACCES). */
function portProblem(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", (err: NodeJS.ErrnoException) => resolve(err.code ?? String(err)));
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => server.close(() => resolve(null)));
  });
}

async function checkPorts(o: DemoOptions): Promise<void> {
  const ports = demoPorts(o.basePort, o.boxes, o.mqtt);
  for (const p of ports) {
    const problem = await portProblem(p.port);
    if (problem === null) continue;
    const last = (ports[ports.length - 1] as PortUse).port;
    const why = problem === "EADDRINUSE" ? "is in use (another program, or a demo still running)" : `cannot be listened on (${problem})`;
    throw new UsageError(`port ${p.port} on 127.0.0.1, for ${p.what}, ${why}. The demo takes ports ${o.basePort} to ${last}: choose others with --base-port, e.g. --base-port ${o.basePort < 40_000 ? o.basePort + 10_000 : 17_400}`);
  }
}

// ---------------------------------------------------------------- the run

/** Parse HH:MM (a time of day) into minutes after midnight. */
export function parseTimeOfDay(text: string, what: string): number {
  const m = /^(\d{1,2}):(\d{2})$/.exec(text);
  const minutes = m === null ? NaN : Number(m[1]) * 60 + Number(m[2]);
  if (m === null || Number(m[1]) > 23 || Number(m[2]) > 59) throw new UsageError(`${what} "${text}" is not a time of day HH:MM, e.g. 09:10`);
  return minutes;
}

export function checkDemoOptions(o: DemoOptions): void {
  if (o.boxes < BOXES_MIN || o.boxes > BOXES_MAX) throw new UsageError(`--boxes must be ${BOXES_MIN}..${BOXES_MAX}: a market needs at least one household that sells and one that buys`);
  if (!Number.isInteger(o.speed) || o.speed < 1 || o.speed > SPEED_MAX) throw new UsageError(`--speed must be a whole number 1..${SPEED_MAX}: simulated seconds per real second (15: a 15-minute market interval passes in a minute; a block stays one a real second)`);
  const portsMax = 3 * o.boxes + 1;
  if (o.basePort < BASE_PORT_MIN || o.basePort + portsMax - 1 > 65_535) throw new UsageError(`--base-port must be ${BASE_PORT_MIN}..${65_535 - portsMax + 1}: the demo takes ${portsMax} ports from it`);
  if (o.progressEveryS < 1 || o.progressEveryS > 3_600) throw new UsageError("--progress-every must be 1..3600 seconds");
}

/** Run the demo until SIGINT or SIGTERM; resolves with the exit code (0: every box stopped cleanly). Throws UsageError before starting anything. */
export async function runDemo(o: DemoOptions, out: (line: string) => void): Promise<number> {
  checkDemoOptions(o);
  await checkPorts(o);
  prepareDemoDir(o.dataDir, "peergrid demo");
  const demo = new Demo(o, out);
  try {
    return await demo.run();
  } finally {
    releaseDemoDir(o.dataDir);
  }
}

const STOP = Symbol("stop");

class Demo {
  private readonly clock: SimClock;
  private readonly now: () => number;
  private readonly cluster: LocalCluster;
  private readonly token = randomBytes(32).toString("hex");
  private readonly logs: WriteStream[] = [];
  private readonly meters: SimulatedMeter[] = [];
  private readonly exitedEarly = new Set<number>();
  private readonly ready = new Set<number>();
  private stopSignal: string | null = null;
  private wakeStop: () => void = () => {};
  private readonly stopRequested: Promise<typeof STOP>;
  private reader: Interface | null = null;
  private lastClearedMs = -1;
  private enrolled = 0;

  constructor(
    private readonly o: DemoOptions,
    private readonly out: (line: string) => void,
  ) {
    assert(o.boxes >= BOXES_MIN && o.boxes <= HOUSEHOLDS.length && BOXES_MAX === HOUSEHOLDS.length, "a household for every box");
    this.stopRequested = new Promise((resolve) => (this.wakeStop = () => resolve(STOP)));
    const day = new Date();
    day.setHours(0, 0, 0, 0); // local midnight today: the web app, in this machine's browser, shows the same hours
    this.clock = { simStartMs: day.getTime() + o.startMinuteOfDay * 60_000, realStartMs: Date.now(), speed: o.speed };
    this.now = simNow(this.clock);
    this.cluster = LocalCluster.create({
      dir: o.dataDir,
      boxes: o.boxes,
      basePort: o.basePort,
      chainId: "demo-neighbourhood",
      // The genesis states the block interval in the chain's (simulated) time: a block a real second.
      genesis: { timeMs: this.clock.simStartMs, ledger: { blockIntervalMs: 1_000 * o.speed } },
      member: (i) => ({ name: (HOUSEHOLDS[i] as Household).name, roles: rolesOf(i) }),
      supervised: true,
      onLine: (box, line) => this.logs[box]?.write(`${line}\n`),
    });
    for (let i = 0; i < o.boxes; i++) {
      this.logs.push(createWriteStream(join(o.dataDir, `box-${i}.log`)));
      writeFileSync(this.policyFile(i), JSON.stringify(policyOf(i), null, 2) + "\n");
    }
    writeFileSync(this.tokenFile(), `${this.token}\n`, { mode: 0o600 });
  }

  private policyFile(i: number): string {
    return join(this.o.dataDir, `auto-bid-${i}.json`);
  }

  private tokenFile(): string {
    return join(this.o.dataDir, "admin.token");
  }

  private meterPort(i: number): number {
    return this.o.basePort + 2 * this.o.boxes + i;
  }

  private mqttPort(): number {
    return this.o.basePort + 3 * this.o.boxes;
  }

  private url(i: number): string {
    return `http://127.0.0.1:${this.cluster.httpPort(i)}`;
  }

  private name(member: number): string {
    return HOUSEHOLDS[member]?.name ?? `member ${member}`;
  }

  async run(): Promise<number> {
    const onSignal = (signal: NodeJS.Signals) => {
      if (this.stopSignal !== null) return; // already stopping (npm forwards the terminal's Ctrl-C a second time)
      this.stopSignal = signal;
      this.wakeStop();
    };
    // Installed until the very end: a signal during the shutdown must not cut it short.
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
    try {
      let failed = false;
      try {
        const started = await this.start();
        if (started !== STOP) {
          this.printSummary(started);
          this.readKeys();
          await this.watch();
        }
      } catch (err) {
        this.out(`the demo could not start: ${err instanceof Error ? err.message : String(err)}`);
        failed = true;
      }
      const clean = await this.shutdown();
      return clean && !failed ? 0 : 1;
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
    }
  }

  /** Meters, boxes, a leader; or STOP if a signal came first. Throws when a box fails to start. */
  private async start(): Promise<number | typeof STOP> {
    const map = loadRegisterMap("eastron-sdm630");
    const utcOffsetHours = -new Date(this.clock.simStartMs).getTimezoneOffset() / 60;
    for (let i = 0; i < this.o.boxes; i++) {
      const h = HOUSEHOLDS[i] as Household;
      this.meters.push(
        await SimulatedMeter.start({ map, unit: 1, host: "127.0.0.1", port: this.meterPort(i), now: this.now, ...meterProfile(h, utcOffsetHours), importWh: 2_000_000 + 137_000 * i, exportWh: h.solarPeakW > 0 ? 500_000 + 71_000 * i : 0 }),
      );
    }
    this.out(`starting ${this.o.boxes} boxes in ${this.o.dataDir} …`);
    const boxes = Array.from({ length: this.o.boxes }, (_, i) => i);
    // Never a box spawned once a stop began: the shutdown stops the boxes there are when it starts.
    const startBox = (i: number) => (this.stopSignal !== null ? Promise.reject(new Error("stopping")) : this.cluster.start(i, this.boxArgs(i)).then(() => this.ready.add(i)));
    // Box 0 first: it holds the MQTT broker the others publish to (they would retry, with warnings in their logs).
    const started = startBox(0).then(() => Promise.all(boxes.slice(1).map(startBox)));
    started.catch(() => {}); // a stop may come first; the failure is reported below otherwise
    if ((await Promise.race([started, this.stopRequested])) === STOP) return STOP;
    for (const i of boxes) void this.cluster.procs.get(i)?.exited.then((code) => this.noteExit(i, code));
    const deadline = Date.now() + START_WAIT_MS;
    for (;;) {
      const leader = await this.cluster.leader();
      if (leader !== null) return leader;
      if (Date.now() > deadline) throw new Error(`no leader after ${START_WAIT_MS / 1_000} s: see the boxes' logs, ${this.shown(join(this.o.dataDir, "box-<n>.log"))}`);
      if (!(await this.pause(200))) return STOP;
    }
  }

  /** Wait ms; false if a stop was asked for meanwhile (no timer is left behind to hold the process). */
  private async pause(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const woke = await Promise.race([new Promise<"time">((resolve) => (timer = setTimeout(() => resolve("time"), ms))), this.stopRequested]);
    clearTimeout(timer);
    return woke !== STOP;
  }

  private boxArgs(i: number): string[] {
    const args = ["--clock", formatClock(this.clock), "--meter", `0=eastron-sdm630@tcp:127.0.0.1:${this.meterPort(i)}`, "--auto-bid", this.policyFile(i)];
    if (i === 0) args.push("--admin-token-file", this.tokenFile());
    // One broker for the whole neighbourhood, box 0's, on loopback (a box's default, 0.0.0.0:1883, would
    // open it to the LAN and collide with a broker already there); every box publishes its topics to it.
    if (this.o.mqtt) args.push("--mqtt", i === 0 ? `embedded@127.0.0.1:${this.mqttPort()}` : `mqtt://127.0.0.1:${this.mqttPort()}`);
    return args;
  }

  private noteExit(i: number, code: number | null): void {
    if (this.stopSignal !== null) return;
    this.exitedEarly.add(i);
    this.out(`box ${i} (${this.name(i)}) stopped by itself (exit ${code}); the others go on. Its log: ${this.shown(join(this.o.dataDir, `box-${i}.log`))}`);
  }

  private shown(path: string): string {
    const r = relative(process.cwd(), path);
    return r.startsWith("..") ? path : r;
  }

  private clockText(ms: number): string {
    const d = new Date(ms);
    return `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
  }

  private printSummary(leader: number): void {
    const o = this.o;
    const intervalMs = DEFAULT_MARKET_PARAMS.intervalMs; // the demo leaves the genesis market's parameters alone
    const nowMs = this.now();
    const firstBoundary = nowMs - (nowMs % intervalMs) + intervalMs;
    const firstTradesInS = Math.round((firstBoundary + intervalMs - nowMs) / o.speed / 1_000);
    const lines = [
      "",
      `peergrid demo: a neighbourhood of ${o.boxes} boxes on this machine, each its own process on loopback`,
      `  time runs ${o.speed}x: simulated ${this.clockText(nowMs)} now; a ${intervalMs / 60_000}-minute market interval every ${fmtSeconds((intervalMs / o.speed) / 1_000)}; a block every real second`,
      "",
      "  box  household                       web app and API          Raft            meter (Modbus TCP)",
      ...Array.from({ length: o.boxes }, (_, i) => {
        const h = HOUSEHOLDS[i] as Household;
        const who = `${h.name}${h.solarPeakW > 0 ? `, ${(h.solarPeakW / 1000).toFixed(1)} kW solar` : ", no solar"}, ${h.loadBaseW} W base`;
        return `  ${String(i).padEnd(4)} ${who.padEnd(31)} ${`${this.url(i)}/`.padEnd(24)} ${`127.0.0.1:${this.cluster.raftPort(i)}`.padEnd(15)} 127.0.0.1:${this.meterPort(i)}${i === leader ? "   <- leader" : ""}`;
      }),
      "",
      ...(o.mqtt ? [`  MQTT: box 0's broker, mqtt://127.0.0.1:${this.mqttPort()}, has every box's topics (mosquitto_sub -h 127.0.0.1 -p ${this.mqttPort()} -t 'peergrid/#' -v)`] : []),
      `  Each box trades for its household (${this.shown(this.policyFile(0))}, …): solar surplus is offered, shortfall bid for.`,
      `  The first orders go in at ${this.clockText(firstBoundary)} (simulated), from what the meters measured; the first trades clear at ${this.clockText(firstBoundary + intervalMs)}, in about ${fmtSeconds(firstTradesInS)}.`,
      "",
      `  Open ${this.url(0)}/ in a browser. To trade there, enrol the key the page shows: paste it here and press Enter,`,
      `  or: curl -H "Authorization: Bearer $(cat ${this.shown(this.tokenFile())})" -H 'content-type: application/json' \\`,
      `        -d '{"publicKey":"<the key>","name":"me","roles":["user"]}' ${this.url(0)}/api/v1/admin/members`,
      `  Boxes' logs: ${this.shown(join(o.dataDir, "box-<n>.log"))}. Ctrl-C stops everything.`,
      "",
    ];
    for (const l of lines) this.out(l);
  }

  /** Progress lines until a stop: a clearing when it happens, and the chain's state every progressEveryS. */
  private async watch(): Promise<void> {
    let nextProgressMs = Date.now() + this.o.progressEveryS * 1_000;
    for (;;) {
      if (!(await this.pause(POLL_MS))) return;
      const source = await this.someStatus();
      if (source === null) continue;
      const market = await getJson<MarketView>(`${this.url(source.box)}/api/v1/market`);
      if (market?.lastCleared != null && market.lastCleared.startMs !== this.lastClearedMs) {
        this.lastClearedMs = market.lastCleared.startMs;
        this.out(this.clearingLine(market.lastCleared, market.intervalMs));
      }
      if (Date.now() >= nextProgressMs && market !== null) {
        nextProgressMs = Date.now() + this.o.progressEveryS * 1_000;
        this.out(await this.progressLine(source, market));
      }
    }
  }

  /** The chain's height and leader, the orders for the next interval so far, the last price. */
  private async progressLine(source: { box: number; status: NodeStatus }, market: MarketView): Promise<string> {
    const s = source.status;
    const leader = s.leader === null ? "no leader" : `leader ${this.name(s.leader)} (box ${s.leader})`;
    const nowMs = this.now();
    const next = nowMs - (nowMs % market.intervalMs) + market.intervalMs;
    const book = await getJson<{ intervals: BookView[] }>(`${this.url(source.box)}/api/v1/market/book?interval=${next}`);
    const b = book?.intervals[0];
    const orders = b === undefined ? `no orders for ${this.clockText(next)} yet` : `orders for ${this.clockText(next)}: ${b.asks.length} sell ${b.askWh} Wh, ${b.bids.length} buy ${b.bidWh} Wh`;
    const last = market.lastCleared;
    const price = last === null || last.priceMicroPerKWh === null ? "no price yet" : `last price ${fmtPrice(last.priceMicroPerKWh)} (${this.clockText(last.startMs)})`;
    return `${this.clockText(nowMs)}  block ${s.height}, ${leader}; ${orders}; ${price}`;
  }

  /** The status of a box that answers: the leader's by preference. */
  private async someStatus(): Promise<{ box: number; status: NodeStatus } | null> {
    const statuses = await this.cluster.statuses();
    const any = [...statuses].find(([, s]) => s.role === "leader") ?? [...statuses][0];
    return any === undefined ? null : { box: any[0], status: any[1] };
  }

  private clearingLine(c: ClearingView, intervalMs: number): string {
    const when = `${this.clockText(c.startMs)}–${this.clockText(c.startMs + intervalMs)}`;
    const orders = `${c.sellOrders} sell, ${c.buyOrders} buy order${c.buyOrders === 1 ? "" : "s"}`;
    if (c.buyOrders + c.sellOrders === 0) return `${this.clockText(c.startMs)}  interval ${when}: no orders (a box bids once a period of its readings has settled)`;
    if (c.trades.length === 0) return `${this.clockText(c.startMs)}  interval ${when} cleared: ${orders}, no trade`;
    const trades = c.trades.map((t) => `${this.name(t.buyer)} buys ${t.energyWh} Wh from ${this.name(t.seller)}`);
    const price = c.priceMicroPerKWh === null ? "pay-as-bid" : `${fmtPrice(c.priceMicroPerKWh)}`;
    return `${this.clockText(c.startMs)}  interval ${when} cleared at ${price}: ${c.trades.length} trade${c.trades.length === 1 ? "" : "s"}, ${c.volumeWh} Wh (${orders}): ${trades.join("; ")}`;
  }

  /** Keys pasted on standard input are enrolled as neighbours (users) by box 0, through its admin route. */
  private readKeys(): void {
    this.reader = createInterface({ input: process.stdin, terminal: false }); // not terminal: Ctrl-C stays a signal
    this.reader.on("line", (line) => {
      const key = line.trim().toLowerCase();
      if (key === "") return;
      if (!/^[0-9a-f]{64}$/.test(key)) {
        this.out("that is not a key: paste the 64 hex digits the web page shows under “Your key”, then Enter");
        return;
      }
      void this.enrol(key);
    });
  }

  private async enrol(publicKey: string): Promise<void> {
    const name = `neighbour-${++this.enrolled}`;
    try {
      const r = await fetch(`${this.url(0)}/api/v1/admin/members`, {
        method: "POST",
        headers: { authorization: `Bearer ${this.token}`, "content-type": "application/json" },
        body: JSON.stringify({ publicKey, name, roles: ["user"] }),
        signal: AbortSignal.timeout(5_000),
      });
      const body = (await r.json()) as { id?: string; message?: string };
      if (!r.ok) {
        this.out(`not enrolled: ${body.message ?? r.status}`);
        return;
      }
      const fate = await waitFor("the enrolment to commit", async () => {
        const f = await getJson<{ status: string; result?: string }>(`${this.url(0)}/api/v1/tx/${body.id}`);
        return f !== null && f.status !== "pending" ? f : null;
      }, 15_000, 250);
      const known = await getJson<{ member: { index: number } }>(`${this.url(0)}/api/v1/members/by-key/${publicKey}`);
      this.out(fate.status === "committed" && fate.result === "ok" && known !== null ? `enrolled as member ${known.member.index} (${name}): the page notices within a few seconds, and can then place orders` : `not enrolled: ${JSON.stringify(fate)}`);
    } catch (err) {
      this.out(`not enrolled: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Stop the boxes (SIGTERM, then SIGKILL after STOP_WAIT_MS) and the meters. True if every box exited 0. */
  private async shutdown(): Promise<boolean> {
    this.stopSignal ??= "stop";
    if (this.reader !== null) {
      this.reader.close();
      process.stdin.pause(); // a stdin being read would keep this process alive
    }
    const running = [...this.cluster.procs.keys()];
    if (running.length > 0) this.out(`\nstopping ${running.length === 1 ? "the box" : `${running.length} boxes`} …`);
    const stopBox = async (i: number) => {
      const p = this.cluster.procs.get(i);
      const timer = setTimeout(() => p?.child.kill("SIGKILL"), STOP_WAIT_MS);
      const code = await this.cluster.kill(i, "SIGTERM");
      clearTimeout(timer);
      return { i, code };
    };
    // Box 0 last: it holds the MQTT broker, and a box whose broker is gone waits seconds to say goodbye.
    const codes = await Promise.all(running.filter((i) => i !== 0).map(stopBox));
    if (running.includes(0)) codes.push(await stopBox(0));
    await Promise.all(this.meters.map((m) => m.close()));
    await Promise.all(this.logs.map((l) => new Promise<void>((resolve) => l.end(resolve))));
    // A box stopped before it was ready (a Ctrl-C during the start) dies by the signal: that is no fault.
    const unclean = codes.filter((c) => c.code !== 0 && !this.exitedEarly.has(c.i) && this.ready.has(c.i));
    for (const c of unclean) this.out(`box ${c.i} (${this.name(c.i)}) exited with ${c.code ?? "a signal"}: see ${this.shown(join(this.o.dataDir, `box-${c.i}.log`))}`);
    if (running.length > 0) this.out(`stopped. The neighbourhood's data stays in ${this.shown(this.o.dataDir)}: audit a box's chain with peergrid verify ${this.shown(this.cluster.dataDir(0))}`);
    return unclean.length === 0 && this.exitedEarly.size === 0;
  }
}

interface ClearingView {
  readonly startMs: number;
  readonly priceMicroPerKWh: number | null;
  readonly volumeWh: number;
  readonly buyOrders: number;
  readonly sellOrders: number;
  readonly trades: readonly { readonly buyer: number; readonly seller: number; readonly energyWh: number }[];
}

interface BookView {
  readonly bids: readonly unknown[];
  readonly asks: readonly unknown[];
  readonly bidWh: number;
  readonly askWh: number;
}

interface MarketView {
  readonly intervalMs: number;
  readonly lastCleared: ClearingView | null;
}

/** GET a box's JSON; null when it does not answer, or not with 200, within 2 s. */
export async function getJson<T>(url: string): Promise<T | null> {
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(2_000) });
    return r.ok ? ((await r.json()) as T) : null;
  } catch {
    return null;
  }
}

function fmtPrice(microPerKWh: number): string {
  return `${(microPerKWh / 1e6).toFixed(3)}/kWh`;
}

function fmtSeconds(s: number): string {
  return s < 120 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`;
}
