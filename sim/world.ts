// The world side of `peergrid sim` (sim/neighbourhood.ts): sim/outage.ts's
// run, second by second, reduced to what the boxes of the neighbourhood
// would put in the ledger: the controller's island decisions and breaker
// commands (sparse), and every readingPeriodS the premises' meter counters.
// The meters integrate the world's power here, each second: a premise's
// net import, or its net export times the share the island took.
//
// The world never depends on the ledger (orders change no load, no PV and
// no dispatch), so it can run ahead on its own thread: `runWorldThread`
// starts it in a worker and hands over its minutes in order, at most
// WORLD_LEAD_MINUTES_MAX ahead of the ledger (the worker waits beyond
// that). `runWorld` runs the same code in this thread. Either way the
// ledger side sees the same minutes, so the chain is the same.
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import type { GridEvent } from "../market/grid-monitor.js";
import type { DispatchReason } from "../market/dispatch.js";
import { assert } from "../ledger/assert.js";
import { type Kind, type OutageReport, type OutageScenario, type OutageStep, OutageRun, type Policies } from "./outage.js";

const MS_PER_S = 1_000;
const S_PER_HOUR = 3_600;

export interface WorldPremise {
  readonly kind: Kind;
  readonly label: string;
  readonly pvPeakW: number;
  readonly policies: Policies;
}

export interface WorldSwitch {
  readonly premise: number; // priority index
  readonly close: boolean;
  readonly readback: "open" | "closed" | "unknown";
  readonly reason: DispatchReason;
  readonly supplyW: number;
  readonly demandW: number;
}

/** One second with something for the controller to record. */
export interface WorldSecond {
  readonly timeMs: number;
  readonly events: readonly GridEvent[];
  readonly switches: readonly WorldSwitch[];
}

/** The meters' counters, whole Wh, by premise, at timeMs. */
export interface WorldReading {
  readonly timeMs: number;
  readonly importWh: Float64Array;
  readonly exportWh: Float64Array;
}

/** What happened in one simulated minute (readings stamped in it included). */
export interface WorldMinute {
  readonly index: number;
  readonly seconds: readonly WorldSecond[];
  readonly readings: readonly WorldReading[];
}

/** Energy at the point of common coupling and behind the meters, joules (W x s). */
export interface WorldTotals {
  readonly demandJ: number;
  readonly servedJ: number;
  readonly supplyJ: number;
  readonly curtailedJ: number;
  readonly gridImportJ: number;
  readonly gridExportJ: number;
}

export type WorldMessage =
  | { readonly type: "init"; readonly premises: readonly WorldPremise[]; readonly start: WorldReading }
  | { readonly type: "minute"; readonly minute: WorldMinute }
  | { readonly type: "end"; readonly report: OutageReport; readonly totals: WorldTotals };

export interface WorldJob {
  readonly world: OutageScenario;
  readonly readingPeriodS: number;
}

/** How far (simulated minutes) the world may run ahead of the ledger on its own thread. */
export const WORLD_LEAD_MINUTES_MAX = 120;

/** Run the world in this thread, giving each message to `post` in order. */
export function runWorld(job: WorldJob, post: (m: WorldMessage) => void): void {
  new WorldMirror(job, post).run();
}

class WorldMirror {
  private readonly run_: OutageRun;
  private readonly importJ: Float64Array;
  private readonly exportJ: Float64Array;
  private readonly totals = { demandJ: 0, servedJ: 0, supplyJ: 0, curtailedJ: 0, gridImportJ: 0, gridExportJ: 0 };
  private minute: { index: number; seconds: WorldSecond[]; readings: WorldReading[] } | null = null;

  constructor(
    private readonly job: WorldJob,
    private readonly post: (m: WorldMessage) => void,
  ) {
    this.run_ = new OutageRun(job.world, (st) => this.second(st));
    const premises = this.run_.premises;
    this.importJ = new Float64Array(premises.length);
    this.exportJ = new Float64Array(premises.length);
    // Counters at start: a meter that has been in service a while (whole kWh, fixed by the premise).
    premises.forEach((p, i) => {
      this.importJ[i] = (1_000 + ((p.id * 7_919) % 9_000)) * 3_600_000;
      this.exportJ[i] = p.pvPeakW > 0 ? (500 + ((p.id * 104_729) % 4_000)) * 3_600_000 : 0;
    });
    const policies = this.run_.policies;
    post({
      type: "init",
      premises: premises.map((p, i) => ({ kind: p.kind, label: p.label, pvPeakW: p.pvPeakW, policies: policies[i] as Policies })),
      start: this.reading(job.world.dayStartMs - 2 * MS_PER_S),
    });
  }

  run(): void {
    const report = this.run_.run();
    this.flush();
    this.post({ type: "end", report, totals: { ...this.totals } });
  }

  private reading(timeMs: number): WorldReading {
    const n = this.importJ.length;
    const importWh = new Float64Array(n);
    const exportWh = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      importWh[i] = Math.floor((this.importJ[i] as number) / S_PER_HOUR);
      exportWh[i] = Math.floor((this.exportJ[i] as number) / S_PER_HOUR);
    }
    return { timeMs, importWh, exportWh };
  }

  private second(st: OutageStep): void {
    const t = st.timeMs;
    const index = Math.floor((t - this.job.world.dayStartMs) / 60_000);
    if (this.minute !== null && this.minute.index !== index) this.flush();
    this.minute ??= { index, seconds: [], readings: [] };
    const switches: WorldSwitch[] = [];
    if (st.step !== null) {
      for (const c of st.step.commands) {
        const close = c.action === "close";
        switches.push({
          premise: c.id, // the world's premise ids are their priority index
          close,
          readback: st.closed[c.id] === close ? (close ? "closed" : "open") : "unknown",
          reason: c.reason,
          supplyW: Math.min(st.step.figures.supplyW, 2 ** 31 - 1),
          demandW: Math.min(st.step.targets[c.id]?.demandW ?? 0, 2 ** 31 - 1),
        });
      }
    }
    if (st.events.length > 0 || switches.length > 0) this.minute.seconds.push({ timeMs: t, events: [...st.events], switches });
    this.meter(st);
    const next = t + MS_PER_S;
    // A reading at second (period - 2) of each period: see sim/neighbourhood.ts for why.
    if ((next / MS_PER_S + 2) % this.job.readingPeriodS === 0) this.minute.readings.push(this.reading(next));
  }

  private flush(): void {
    if (this.minute === null) return;
    this.post({ type: "minute", minute: this.minute });
    this.minute = null;
  }

  private meter(st: OutageStep): void {
    const tot = this.totals;
    let drawnW = 0;
    let exportW = 0;
    for (let i = 0; i < this.importJ.length; i++) {
      const load = st.loadW[i] as number;
      const supply = st.pvW[i] as number;
      tot.demandJ += load;
      if (!st.closed[i]) continue;
      tot.servedJ += load;
      tot.supplyJ += supply;
      const net = load - supply;
      if (net >= 0) {
        this.importJ[i] = (this.importJ[i] as number) + net;
        drawnW += net;
      } else {
        this.exportJ[i] = (this.exportJ[i] as number) - net * st.exportShare;
        exportW -= net;
      }
    }
    tot.curtailedJ += exportW * (1 - st.exportShare);
    if (!st.islanded) {
      tot.gridImportJ += Math.max(0, drawnW - exportW);
      tot.gridExportJ += Math.max(0, exportW - drawnW);
    }
  }
}

// ---- the world on its own thread ----

interface ThreadData {
  readonly peergridWorld: WorldJob;
  /** [0]: minutes the ledger has taken. */
  readonly taken: SharedArrayBuffer;
}

if (!isMainThread && parentPort !== null && (workerData as ThreadData | null)?.peergridWorld !== undefined) {
  const data = workerData as ThreadData;
  const port = parentPort;
  const taken = new Int32Array(data.taken);
  let sent = 0;
  runWorld(data.peergridWorld, (m) => {
    if (m.type === "minute") {
      // Backpressure: wait while the ledger is too far behind.
      for (let t = Atomics.load(taken, 0); sent - t >= WORLD_LEAD_MINUTES_MAX; t = Atomics.load(taken, 0)) Atomics.wait(taken, 0, t, 1_000);
      sent++;
    }
    port.postMessage(m);
  });
}

/**
 * The world on a worker thread: `next()` gives its messages in order (init, every minute, end). Call
 * `close()` when done (or on failure) to stop the thread.
 */
export class WorldThread {
  private readonly worker: Worker;
  private readonly taken = new Int32Array(new SharedArrayBuffer(4));
  private readonly queue: WorldMessage[] = [];
  private waiting: { resolve: (m: WorldMessage) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;

  constructor(job: WorldJob) {
    const data: ThreadData = { peergridWorld: job, taken: this.taken.buffer as SharedArrayBuffer };
    this.worker = new Worker(new URL(import.meta.url), { workerData: data });
    this.worker.on("message", (m: WorldMessage) => {
      if (this.waiting !== null) {
        const w = this.waiting;
        this.waiting = null;
        w.resolve(m);
      } else this.queue.push(m);
    });
    const fail = (e: Error) => {
      this.failure ??= e;
      this.waiting?.reject(e);
      this.waiting = null;
    };
    this.worker.on("error", fail);
    this.worker.on("exit", (code) => fail(new Error(`the world's thread ended (exit ${code}) before its last minute`)));
  }

  next(): Promise<WorldMessage> {
    const m = this.queue.shift();
    if (m !== undefined) return Promise.resolve(this.took(m));
    if (this.failure !== null) return Promise.reject(this.failure);
    assert(this.waiting === null, "one reader at a time");
    return new Promise((resolve, reject) => {
      this.waiting = { resolve: (x) => resolve(this.took(x)), reject };
    });
  }

  private took(m: WorldMessage): WorldMessage {
    if (m.type === "minute") {
      Atomics.add(this.taken, 0, 1);
      Atomics.notify(this.taken, 0);
    }
    return m;
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners("exit");
    await this.worker.terminate();
  }
}
