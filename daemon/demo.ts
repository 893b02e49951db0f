// `peergrid demo`, what `npm start` runs: a whole neighbourhood on this
// machine, each box a real `peergrid start` process on loopback.
//
// This process is the orchestrator. It makes a fresh neighbourhood in the
// demo's folder (keys, a genesis, a data directory per box: LocalCluster),
// hosts one simulated Modbus TCP meter per household (device/sim-meter.ts,
// an Eastron SDM630's registers) showing that household's premise of
// sim/premise.ts (its PV under London's sky, its own demand, perhaps a
// battery: demoPremises), starts the boxes, each reading its own meter over
// Modbus TCP and trading for its household by an automatic-bidding policy
// (prosumers sell their surplus, the others buy), waits for a leader,
// prints where everything is, then prints the market as it clears, until
// Ctrl-C.
//
// Time. Every process runs on one simulated clock (daemon/sim-clock.ts):
// `--speed 15` (the default) makes a 15-minute market interval pass in a
// real minute, with a block every real second (15 simulated seconds). The
// simulated day is always a sunny midsummer day in London, Sunday 21 June
// 2026 (DEMO_DATE, DEMO_SITE: why that day, and the time zones), from 09:10
// London time (--start-at), when the sun is well up: the bidders order at
// the first boundary (09:15) from what the meters measured, and the first
// trades clear at 09:30, about 80 s in.
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
import { SimulatedMeter } from "../device/sim-meter.js";
import { type Premise, type PremiseKind, SiteModel, createPremise } from "../sim/premise.js";
import { LONDON, type Site, daysFromCivil, localDayStartMs, offsetMsOf, weekdayOf } from "../sim/site.js";
import { PV_DEFAULTS, type PvArray } from "../sim/solar.js";
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
/** The summary's household column: the longest, "eva, 6.5 kWp solar, 13.5 kWh battery", fits. */
const HOUSEHOLD_COLUMN = 36;

// ---------------------------------------------------------------- the households and their day

interface Household {
  readonly name: string;
  /** The solar array's nameplate, W peak (0: no panels): its kWp x 1000, and its inverter's limit. */
  readonly solarPeakW: number;
  /** A home battery (sized by sim/premise.ts drawBattery) that stores the surplus before any is exported. */
  readonly battery: boolean;
}

/**
 * Households by box: prosumers (solar) and consumers alternate, so any number
 * of boxes has both. Their demand is drawn per household by sim/household.ts
 * (typical British households: a median of 2,900 kWh a year, appliance runs).
 */
const HOUSEHOLDS: readonly Household[] = [
  { name: "ann", solarPeakW: 5_000, battery: false },
  { name: "bob", solarPeakW: 0, battery: false },
  { name: "cho", solarPeakW: 4_000, battery: false },
  { name: "dev", solarPeakW: 0, battery: false },
  { name: "eva", solarPeakW: 6_500, battery: true }, // stores her morning surplus, sells once the battery is full
  { name: "fay", solarPeakW: 0, battery: false },
  { name: "gus", solarPeakW: 3_000, battery: false },
  { name: "hal", solarPeakW: 0, battery: false },
  { name: "ida", solarPeakW: 4_500, battery: false },
  { name: "jon", solarPeakW: 0, battery: false },
];

/**
 * Where and when the demo runs. The meters show premises of sim/premise.ts:
 * PV under the site's clear sky and the seed's weather, households with
 * their own routines and appliance runs, a home battery. Real PV depends on
 * the season and the weather (a December morning in London has hardly any
 * surplus, an overcast day little), so the demo does not simulate today's
 * date: it always runs the same sunny midsummer day, Sunday 21 June 2026,
 * in London. DEMO_SEED was chosen by computing the day for seeds whose
 * weather makes it clear (sim/weather.ts day types): at 90, every prosumer
 * without a battery exports at least 250 Wh net in every 15-minute interval
 * from 09:00 to 17:00 and every consumer imports, so the bidders sell and
 * buy from the first interval whatever --boxes is
 * (test/daemon/demo-profiles.test.ts holds the demo to that).
 *
 * Time zone. The site keeps London's own clock that day, British Summer
 * Time, UTC+1 (sim/ models no daylight saving: a site has one offset, so
 * the summer one for a summer day). The households' routines follow it and
 * the sun follows London's longitude (solar noon about 13:00 BST). The demo
 * prints London times, and --start-at is a London time. The web app shows
 * the same instants in its browser's time zone: on a machine set to UK time
 * the two agree; elsewhere the summary says what the web app shows. The
 * alternatives are worse: a site moved into this machine's time zone is
 * not London, and loads on this machine's clock under London's sun would
 * cook breakfast at the wrong time of day.
 */
export const DEMO_SITE: Site = { ...LONDON, utcOffsetHours: 1 };
export const DEMO_DATE = { year: 2026, month: 6, day: 21 } as const;
export const DEMO_SEED = 90;
const DEMO_PLACE = "London";
const DEMO_ZONE = "BST";

/** The demo's simulated clock at a time of day (minutes after the site's midnight) on DEMO_DATE, UTC ms. */
export function demoTimeMs(minuteOfDay: number): number {
  assert(Number.isSafeInteger(minuteOfDay) && minuteOfDay >= 0 && minuteOfDay < 24 * 60, "a time of day, whole minutes");
  return localDayStartMs(daysFromCivil(DEMO_DATE.year, DEMO_DATE.month, DEMO_DATE.day), offsetMsOf(DEMO_SITE)) + minuteOfDay * 60_000;
}

/** HH:MM at the demo's site: what the demo prints (--start-at is read the same way). */
export function siteClockText(ms: number): string {
  const d = new Date(ms + offsetMsOf(DEMO_SITE));
  return `${String(d.getUTCHours()).padStart(2, "0")}:${String(d.getUTCMinutes()).padStart(2, "0")}`;
}

/** "Sunday 21 June 2026": the demo's day, for the summary. */
function demoDateText(): string {
  const d = DEMO_DATE;
  const weekday = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"][weekdayOf(daysFromCivil(d.year, d.month, d.day))];
  const month = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"][d.month - 1];
  return `${weekday} ${d.day} ${month} ${d.year}`;
}

function kindOf(h: Household): PremiseKind {
  return h.solarPeakW === 0 ? "consumer" : h.battery ? "prosumer-battery" : "prosumer";
}

/**
 * A household's array: facing the equator (south) at 35°, a common pitch of
 * British roofs and the array sim/README.md checks the yields with; its kWp
 * the household's solarPeakW, an inverter as large (no clipping), PVGIS's
 * default losses (PV_DEFAULTS).
 */
function pvOf(h: Household): PvArray {
  assert(h.solarPeakW > 0, "an array only where there are panels");
  return { kWp: h.solarPeakW / 1_000, tiltDeg: 35, azimuthDeg: DEMO_SITE.latitudeDeg >= 0 ? 180 : 0, inverterW: h.solarPeakW, ...PV_DEFAULTS };
}

/**
 * The premises of households 0..boxes-1, premise i for household i, under
 * one SiteModel: one sky over the neighbourhood (each array sees a passing
 * cloud a little earlier or later). Household i's meter shows premise i's
 * netPowerW; a premise is stateful (its battery), so each meter gets its own
 * and asks it in time order, which a SimulatedMeter does.
 */
export function demoPremises(boxes: number): Premise[] {
  assert(Number.isSafeInteger(boxes) && boxes >= 1 && boxes <= HOUSEHOLDS.length, "a household for every box");
  const model = new SiteModel(DEMO_SITE, DEMO_SEED);
  return HOUSEHOLDS.slice(0, boxes).map((h, index) => createPremise({ seed: DEMO_SEED, index, kind: kindOf(h), site: DEMO_SITE, model, ...(h.solarPeakW > 0 && { pv: pvOf(h) }) }));
}

/**
 * Household i's meter: an SDM630 on 127.0.0.1:port (0: any free port)
 * showing premise i's net power at the demo's time; its counters start at
 * made-up readings, as of a meter some years in service.
 */
export function startHouseholdMeter(i: number, premise: Premise, now: () => number, port: number): Promise<SimulatedMeter> {
  const h = HOUSEHOLDS[i] as Household;
  assert(premise.index === i && premise.kind === kindOf(h), "household i's meter shows premise i");
  const map = loadRegisterMap("eastron-sdm630");
  return SimulatedMeter.start({ map, unit: 1, host: "127.0.0.1", port, now, power: (t) => premise.netPowerW(t), importWh: 2_000_000 + 137_000 * i, exportWh: h.solarPeakW > 0 ? 500_000 + 71_000 * i : 0 });
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
  /** Household i's premise, shown by its meter. */
  private readonly premises: Premise[];
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
    // DEMO_DATE at the site, not today: the day's sun and weather are known to trade (see DEMO_SITE).
    this.clock = { simStartMs: demoTimeMs(o.startMinuteOfDay), realStartMs: Date.now(), speed: o.speed };
    this.now = simNow(this.clock);
    this.premises = demoPremises(o.boxes);
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
    for (const [i, premise] of this.premises.entries()) this.meters.push(await startHouseholdMeter(i, premise, this.now, this.meterPort(i)));
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

  /** The household as the summary shows it: its panels and battery (its demand is the premise's own). */
  private householdText(i: number): string {
    const h = HOUSEHOLDS[i] as Household;
    const battery = this.premises[i]?.battery ?? null;
    const solar = h.solarPeakW > 0 ? `${(h.solarPeakW / 1000).toFixed(1)} kWp solar` : "no solar";
    return `${h.name}, ${solar}${battery === null ? "" : `, ${fmtKWh(battery.spec.capacityWh)} battery`}`;
  }

  /** What the web app, in a browser on this machine, shows instead of the site's time, if it differs. */
  private browserClockNote(ms: number): string {
    const machineOffsetMin = -new Date(ms).getTimezoneOffset();
    const siteOffsetMin = offsetMsOf(DEMO_SITE) / 60_000;
    if (machineOffsetMin === siteOffsetMin) return "";
    const d = new Date(ms);
    const here = `${String(d.getHours()).padStart(2, "0")}:${String(d.getMinutes()).padStart(2, "0")}`;
    return `; the web app shows your browser's time zone, on this machine UTC${fmtOffset(machineOffsetMin)}: ${here} now`;
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
      `  the day: ${demoDateText()}, sunny, in ${DEMO_PLACE}; times are ${DEMO_PLACE}'s (${DEMO_ZONE}, UTC${fmtOffset(offsetMsOf(DEMO_SITE) / 60_000)})${this.browserClockNote(nowMs)}`,
      `  time runs ${o.speed}x: simulated ${siteClockText(nowMs)} now; a ${intervalMs / 60_000}-minute market interval every ${fmtSeconds((intervalMs / o.speed) / 1_000)}; a block every real second`,
      "",
      `  box  ${"household".padEnd(HOUSEHOLD_COLUMN)} web app and API          Raft            meter (Modbus TCP)`,
      ...Array.from({ length: o.boxes }, (_, i) => {
        return `  ${String(i).padEnd(4)} ${this.householdText(i).padEnd(HOUSEHOLD_COLUMN)} ${`${this.url(i)}/`.padEnd(24)} ${`127.0.0.1:${this.cluster.raftPort(i)}`.padEnd(15)} 127.0.0.1:${this.meterPort(i)}${i === leader ? "   <- leader" : ""}`;
      }),
      "",
      ...(o.mqtt ? [`  MQTT: box 0's broker, mqtt://127.0.0.1:${this.mqttPort()}, has every box's topics (mosquitto_sub -h 127.0.0.1 -p ${this.mqttPort()} -t 'peergrid/#' -v)`] : []),
      `  Each box trades for its household (${this.shown(this.policyFile(0))}, …): solar surplus is offered, shortfall bid for.`,
      `  The first orders go in at ${siteClockText(firstBoundary)} (simulated), from what the meters measured; the first trades clear at ${siteClockText(firstBoundary + intervalMs)}, in about ${fmtSeconds(firstTradesInS)}.`,
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
    const orders = b === undefined ? `no orders for ${siteClockText(next)} yet` : `orders for ${siteClockText(next)}: ${b.asks.length} sell ${b.askWh} Wh, ${b.bids.length} buy ${b.bidWh} Wh`;
    const last = market.lastCleared;
    const price = last === null || last.priceMicroPerKWh === null ? "no price yet" : `last price ${fmtPrice(last.priceMicroPerKWh)} (${siteClockText(last.startMs)})`;
    return `${siteClockText(nowMs)}  block ${s.height}, ${leader}; ${orders}; ${price}`;
  }

  /** The status of a box that answers: the leader's by preference. */
  private async someStatus(): Promise<{ box: number; status: NodeStatus } | null> {
    const statuses = await this.cluster.statuses();
    const any = [...statuses].find(([, s]) => s.role === "leader") ?? [...statuses][0];
    return any === undefined ? null : { box: any[0], status: any[1] };
  }

  private clearingLine(c: ClearingView, intervalMs: number): string {
    const when = `${siteClockText(c.startMs)}–${siteClockText(c.startMs + intervalMs)}`;
    const orders = `${c.sellOrders} sell, ${c.buyOrders} buy order${c.buyOrders === 1 ? "" : "s"}`;
    if (c.buyOrders + c.sellOrders === 0) return `${siteClockText(c.startMs)}  interval ${when}: no orders (a box bids once a period of its readings has settled)`;
    if (c.trades.length === 0) return `${siteClockText(c.startMs)}  interval ${when} cleared: ${orders}, no trade`;
    const trades = c.trades.map((t) => `${this.name(t.buyer)} buys ${t.energyWh} Wh from ${this.name(t.seller)}`);
    const price = c.priceMicroPerKWh === null ? "pay-as-bid" : `${fmtPrice(c.priceMicroPerKWh)}`;
    return `${siteClockText(c.startMs)}  interval ${when} cleared at ${price}: ${c.trades.length} trade${c.trades.length === 1 ? "" : "s"}, ${c.volumeWh} Wh (${orders}): ${trades.join("; ")}`;
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

function fmtKWh(wh: number): string {
  return `${Number.isInteger(wh / 1_000) ? wh / 1_000 : (wh / 1_000).toFixed(1)} kWh`;
}

/** +1, -7, +5:30: a UTC offset in minutes as the summary writes it. */
function fmtOffset(minutes: number): string {
  const a = Math.abs(minutes);
  return `${minutes < 0 ? "-" : "+"}${Math.floor(a / 60)}${a % 60 === 0 ? "" : `:${String(a % 60).padStart(2, "0")}`}`;
}

function fmtSeconds(s: number): string {
  return s < 120 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`;
}
