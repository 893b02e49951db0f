// Bus benchmark (issue 4): `npm run bench:bus` (builds, then runs
// dist/scripts/bench-bus.js; `-- --help`).
//
// How many SDM630-class meters one RS-485 bus polls at 1 Hz, at 9600 and
// 19200 baud, against the limit computed from the frames. A pseudo-terminal
// has no wire time, so the meters are a separate process on the far end of
// a socat pair that answers each request only when a real line would have
// delivered it: after the request's wire time, the meter's reply delay and
// the reply's own wire time. The poller (device/poller.ts over bus.ts and
// modbus-rtu.ts, exactly as a box runs them) polls N meters for a window;
// N keeps up when no second was skipped (each round finished within its
// second) and every reading was good.
//
// The limit: one SDM630 poll is the map's read blocks (3 requests); each
// request costs its frame's wire time, the reply delay, the reply's wire
// time and the 3.5-character silence before the next request. 1 s divided
// by that is the most meters a second can hold. CPU per polled meter is the
// poller process's user + system time over meters x seconds.
import { fork } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { SerialPort } from "serialport";
import { Bus } from "../device/bus.js";
import { charsPerSecond, crc16, encodeReplyPdu, interFrameMs, parseRequestPdu, rtuFrame, rtuReplyBytes, wireMs } from "../device/modbus-frame.js";
import { RtuLink } from "../device/modbus-rtu.js";
import { MeterPoller } from "../device/poller.js";
import { type RegisterMap, encodeValue, fixedLayout, planReads } from "../device/register-map.js";
import { loadRegisterMap } from "../device/meter-kind.js";
import { percentile } from "../daemon/latency.js";
import { startSocatPair } from "../test/helpers/pymodbus.js";
import { hostInfo, measuredCommit } from "./bench-common.js";

const SCRIPT = fileURLToPath(import.meta.url);

interface PeerArgs {
  readonly role: "peer";
  readonly path: string;
  readonly baud: number;
  readonly units: number;
  readonly replyDelayMs: number;
}

// ---------------------------------------------------------------- the meters' end of the line

function sdm630Image(map: RegisterMap): Map<number, number> {
  const values = { voltageL1: 230.1, voltageL2: 229.8, voltageL3: 231.2, currentL1: 4, currentL2: 3, currentL3: 2, powerL1: 920, powerL2: 690, powerL3: 460, powerTotal: 2070, frequency: 50, importEnergy: 1_234_000, exportEnergy: 56_000 } as const;
  const image = new Map<number, number>();
  for (const [name, q] of map.quantities) encodeValue(q, values[name as keyof typeof values]).forEach((w, i) => image.set(q.address + i, w));
  return image;
}

function runPeer(a: PeerArgs): void {
  const map = loadRegisterMap("eastron-sdm630");
  const image = sdm630Image(map);
  const cps = charsPerSecond(a.baud, 8, "none", 1);
  const port = new SerialPort({ path: a.path, baudRate: a.baud });
  let buf = Buffer.alloc(0);
  let busyUntil = 0;
  port.on("data", (d: Buffer) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 8) {
      const frame = buf.subarray(0, 8);
      buf = buf.subarray(8);
      const crc = crc16(frame, 6);
      if (frame[6] !== (crc & 0xff) || frame[7] !== crc >> 8) continue; // noise: a real meter ignores it
      const unit = frame[0] as number;
      if (unit < 1 || unit > a.units) continue;
      const parsed = parseRequestPdu(unit, frame.subarray(1, 6));
      if (!("request" in parsed)) continue;
      const r = parsed.request;
      const words = r.fn === 4 ? Array.from({ length: r.count }, (_, i) => image.get(r.address + i) ?? 0) : [];
      const reply = rtuFrame(unit, encodeReplyPdu(r, r.fn === 4 ? { kind: "registers", values: words } : { kind: "exception", code: 1, message: "" }));
      // The request was on the wire for 8 characters; then the meter thinks; then its reply takes its own wire time.
      const now = performance.now();
      const at = Math.max(now, busyUntil) + wireMs(8, cps) + a.replyDelayMs + wireMs(reply.length, cps);
      busyUntil = at;
      setTimeout(() => port.write(reply), at - now);
    }
  });
  process.on("message", (m) => {
    if (m === "stop") port.close(() => process.exit(0));
  });
  port.on("open", () => process.send?.("ready"));
}

// ---------------------------------------------------------------- the poller's end

/** Per-meter poll time on a line: the map's requests, each with its frames' wire time, the reply delay and the silence after. */
export function pollMsPerMeter(map: RegisterMap, baud: number, replyDelayMs: number): number {
  const cps = charsPerSecond(baud, 8, "none", 1);
  return planReads(map).reduce((ms, b) => ms + wireMs(8, cps) + replyDelayMs + wireMs(rtuReplyBytes({ fn: 4, unit: 1, address: b.start, count: b.count }), cps) + interFrameMs(baud, cps), 0);
}

interface Step {
  readonly meters: number;
  readonly seconds: number;
  readonly skipped: number;
  readonly good: number;
  readonly readings: number;
  readonly cpuMsPerMeterS: number;
  readonly roundMsP50: number | null; // a whole round of all meters, median over the window
  readonly offsetMsP99: number | null; // each poll's start against its second, p99 over the window
  readonly keepsUp: boolean;
}

async function runStep(baud: number, meters: number, windowS: number, replyDelayMs: number, map: RegisterMap): Promise<Step> {
  const dir = mkdtempSync(join(os.tmpdir(), "peergrid-bench-bus-"));
  const line = await startSocatPair(dir);
  const peer = fork(SCRIPT, [JSON.stringify({ role: "peer", path: line.b, baud, units: meters, replyDelayMs } satisfies PeerArgs)], { stdio: "inherit" });
  await new Promise<void>((resolve) => peer.once("message", () => resolve()));
  const link = new RtuLink({ path: line.a, baud, replyDelayMsMax: replyDelayMs * 2 });
  const cps = charsPerSecond(baud, 8, "none", 1);
  const bus = new Bus(link, { timeoutMs: 4 * replyDelayMs + 2 * wireMs(100, cps), gapMs: interFrameMs(baud, cps), retriesMax: 0 });
  let readings = 0;
  let good = 0;
  const poller = new MeterPoller(bus, Array.from({ length: meters }, (_, i) => ({ meterId: i, layout: fixedLayout(map), unit: i + 1 })), (_id, r) => {
    readings++;
    if (r.quality === 0) good++;
  });
  poller.start();
  await new Promise((r) => setTimeout(r, 2_000)); // warm-up
  const s0 = { ...poller.stats, rounds: poller.stats.roundsMs.length, offsets: poller.stats.offsetsMs.length, readings, good };
  const cpu0 = process.cpuUsage();
  await new Promise((r) => setTimeout(r, windowS * 1_000));
  const cpu = process.cpuUsage(cpu0);
  const seconds = poller.stats.seconds - s0.seconds;
  const skipped = poller.stats.skipped - s0.skipped;
  const stepReadings = readings - s0.readings;
  const stepGood = good - s0.good;
  poller.stop();
  await new Promise((r) => setTimeout(r, 1_500)); // let the last round end
  await bus.close();
  peer.send("stop");
  await new Promise<void>((resolve) => peer.once("exit", () => resolve()));
  await line.stop();
  rmSync(dir, { recursive: true, force: true });
  const cpuMsPerMeterS = (cpu.user + cpu.system) / 1_000 / (meters * windowS);
  const rounds = poller.stats.roundsMs.slice(s0.rounds).sort((x, y) => x - y);
  const roundMsP50 = rounds.length === 0 ? null : (rounds[Math.floor(rounds.length / 2)] as number);
  const offsets = poller.stats.offsetsMs.slice(s0.offsets).sort((x, y) => x - y);
  const offsetMsP99 = offsets.length === 0 ? null : percentile(offsets, 0.99);
  return { meters, seconds, skipped, good: stepGood, readings: stepReadings, cpuMsPerMeterS, roundMsP50, offsetMsP99, keepsUp: skipped === 0 && stepReadings === stepGood && stepReadings >= meters * (seconds - 1) };
}

async function runBench(): Promise<void> {
  const { values } = parseArgs({ options: { "window-s": { type: "string" }, "reply-delay-ms": { type: "string" }, bauds: { type: "string" }, help: { type: "boolean" } } });
  if (values.help === true) {
    console.log("usage: node dist/scripts/bench-bus.js [--bauds 9600,19200] [--window-s 10] [--reply-delay-ms 20]");
    return;
  }
  const windowS = Number(values["window-s"] ?? 10);
  const replyDelayMs = Number(values["reply-delay-ms"] ?? 20);
  const bauds = (values.bauds ?? "9600,19200").split(",").map(Number);
  const map = loadRegisterMap("eastron-sdm630");
  console.log(`peergrid bus benchmark: SDM630 meters (${planReads(map).length} requests a poll) on one RTU line, reply delay ${replyDelayMs} ms, ${windowS} s windows`);
  const m = hostInfo();
  console.log(`machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGB} GB, node ${m.node}, ${m.platform}; commit ${measuredCommit(["device"], "(device/ changed since)")}; load average ${m.loadAvgStart.join(" ")}`);
  const results = [];
  for (const baud of bauds) {
    const perMeterMs = pollMsPerMeter(map, baud, replyDelayMs);
    const limit = Math.floor(1_000 / perMeterMs);
    let best: Step | null = null;
    for (let n = Math.max(1, limit - 2); n <= limit + 1; n++) {
      const st = await runStep(baud, n, windowS, replyDelayMs, map);
      console.log(`  ${baud} baud, ${n} meters: ${st.readings} readings (${st.good} good), ${st.skipped} of ${st.seconds} seconds skipped, round p50 ${st.roundMsP50?.toFixed(0) ?? "-"} ms (computed ${(n * perMeterMs).toFixed(0)}), poll start p99 ${st.offsetMsP99 ?? "-"} ms after the second, ${st.cpuMsPerMeterS.toFixed(2)} ms CPU per meter-second: ${st.keepsUp ? "keeps up" : "does not"}`);
      if (st.keepsUp) best = st;
    }
    const ratio = best === null ? 0 : best.meters / (1_000 / perMeterMs);
    // The line's measured capacity: 1 s over the measured time per meter (a whole meter count hides a fraction of one).
    const measuredMsPerMeter = best?.roundMsP50 === null || best === null ? null : best.roundMsP50 / best.meters;
    const capacity = measuredMsPerMeter === null ? null : 1_000 / measuredMsPerMeter;
    console.log(`${baud} baud: computed ${perMeterMs.toFixed(1)} ms per meter, limit ${(1_000 / perMeterMs).toFixed(2)} meters/s; sustained ${best?.meters ?? 0} = ${(100 * ratio).toFixed(0)} % of it; measured ${measuredMsPerMeter?.toFixed(1) ?? "-"} ms per meter = capacity ${capacity?.toFixed(2) ?? "-"} meters/s = ${capacity === null ? "-" : ((100 * capacity) / (1_000 / perMeterMs)).toFixed(0)} % of the limit (target >= 85 %)`);
    results.push({ baud, perMeterMs, limit: 1_000 / perMeterMs, sustained: best?.meters ?? 0, ratio, measuredMsPerMeter, capacity, cpuMsPerMeterS: best?.cpuMsPerMeterS ?? null, offsetMsP99: best?.offsetMsP99 ?? null });
  }
  console.log(JSON.stringify({ bench: "peergrid-bus", version: 1, replyDelayMs, windowS, results }));
}

const arg = process.argv[2];
if (arg !== undefined && arg.startsWith("{")) runPeer(JSON.parse(arg) as PeerArgs);
else void runBench();
