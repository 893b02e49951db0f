// The demo's accelerated time. Every process of a demo neighbourhood (the
// orchestrator with its simulated meters, and each box) computes the same
// simulated clock from the same three numbers, so they agree on "now"
// without talking to each other:
//
//   simMs = simStartMs + (Date.now() - realStartMs) * speed
//
// A box takes them as `peergrid start --clock sim=MS,real=MS,speed=N` (a
// hidden option: a box in a real neighbourhood never runs on it). Boxes on
// one machine read one system clock, so their simulated clocks agree as
// closely as their real ones do (scaled by `speed`).
//
// Units, the rule the daemon follows: a duration that is compared with the
// clock (the block interval, resend and gap waits, the mempool's age limit,
// a reading's freshness in the genesis) is in simulated ms; a timer
// (setTimeout) runs in real ms, so whoever arms one from a clock difference
// divides by the speed (BoxNode's and MeterPoller's `clockRate`). Raft's tick
// and election timeouts stay real: they are about the network, which the
// demo does not accelerate. So at speed 15 a block still comes once a real
// second, and is 15 simulated seconds after its parent.
//
// Every time parameter, on this clock (speed S, up to 60):
// - genesis ledger.blockIntervalMs: 1000 S (the demo writes it; at most
//   60,000, hence SPEED_MAX). readingSkewMaxMs (10 s) and readingAgeMaxMs
//   (600 s) are simulated: a reading may be 10/S real s ahead of its block
//   (the poller stamps it before it is sent, on the same system clock as the
//   leader, so it never is) and must be committed within 600/S real s (10 s
//   at 60x; it takes one or two).
// - genesis market: intervalMs (15 min), order intervals ahead, expiries:
//   simulated, as they should be; the bidder orders at the boundary, a
//   simulated interval before the target, i.e. 900/S real s ahead.
// - genesis governance counts blocks, not ms: a 3,600-block vote is a real
//   hour at any speed (S simulated hours).
// - node timing (timingOnClock) and the mempool's age (mempoolOnClock):
//   converted, so they keep their real length.
// - meters: one poll a real second (periodMs 1000 S), each reading 1000 S
//   simulated ms after the last, its counters advanced by the simulated
//   meter over that simulated time; the counter-jump and staleness checks
//   compare simulated energy with simulated time, so they hold.
// - health (healthOnClock): a meter is "silent" after 10 s real, not 10
//   simulated; a stale head is counted in block intervals already.
// - the bidder's wait for its cancels (cancelWaitMs) is real (Date.now).
import { UsageError } from "../ledger/errors.js";
import { DEFAULT_MEMPOOL_LIMITS, type MempoolLimits } from "../ledger/mempool.js";
import { DEFAULT_HEALTH_LIMITS, type HealthLimits } from "./http.js";
import { DEFAULT_TIMING, type NodeTiming } from "./node.js";

export interface SimClock {
  /** Simulated time at realStartMs, ms since the epoch. */
  readonly simStartMs: number;
  /** The real time (Date.now) the simulation started at. */
  readonly realStartMs: number;
  /** Simulated ms per real ms: a whole number, 1..SPEED_MAX. */
  readonly speed: number;
}

/**
 * The fastest the clock may run: a block a real second is then 60 simulated
 * seconds, the longest block interval a genesis may state (ledger/genesis.ts
 * blockIntervalMs). Faster, blocks would have to be rarer than one a second.
 */
export const SPEED_MAX = 60;

/** The clock as a `now` function. Invariant: never earlier than simStartMs for real times after realStartMs. */
export function simNow(c: SimClock, realNow: () => number = Date.now): () => number {
  return () => c.simStartMs + (realNow() - c.realStartMs) * c.speed;
}

export function formatClock(c: SimClock): string {
  return `sim=${c.simStartMs},real=${c.realStartMs},speed=${c.speed}`;
}

/** `sim=MS,real=MS,speed=N` (any order), as formatClock writes it. Throws UsageError naming what is wrong. */
export function parseClock(text: string, what = "--clock"): SimClock {
  const fields = new Map<string, string>();
  for (const part of text.split(",")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new UsageError(`${what} "${text}" is not sim=MS,real=MS,speed=N (the demo writes it: peergrid demo)`);
    fields.set(part.slice(0, eq).trim(), part.slice(eq + 1).trim());
  }
  const num = (name: string, min: number, max: number): number => {
    const v = fields.get(name);
    if (v === undefined || !/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new UsageError(`${what}: ${name} must be a whole number ${min}..${max}, got ${v === undefined ? "nothing" : `"${v}"`}`);
    return Number(v);
  };
  for (const k of fields.keys()) if (!["sim", "real", "speed"].includes(k)) throw new UsageError(`${what}: unknown field "${k}" (sim, real, speed)`);
  const timeMax = 2 ** 47; // far beyond any date a box will see, and exact in a double
  return { simStartMs: num("sim", 0, timeMax), realStartMs: num("real", 0, timeMax), speed: num("speed", 1, SPEED_MAX) };
}

/**
 * The node's timing on a clock running `speed` times real time: the
 * durations the node compares with its clock become simulated ms, so that
 * they keep their real length (a block a real second, a resend after 2 real
 * seconds). `timing` is given in real ms, as on the command line.
 */
export function timingOnClock(timing: Partial<NodeTiming>, speed: number): Partial<NodeTiming> {
  if (speed === 1) return timing;
  const t = { ...DEFAULT_TIMING, ...timing };
  return { ...timing, blockIntervalMs: t.blockIntervalMs * speed, resubmitAfterMs: t.resubmitAfterMs * speed, gapWaitMs: t.gapWaitMs * speed, clockSkewMaxMs: t.clockSkewMaxMs * speed };
}

/** The health check's durations on such a clock (its stale head is counted in block intervals already). */
export function healthOnClock(speed: number): Partial<HealthLimits> {
  return { meterSilentMs: DEFAULT_HEALTH_LIMITS.meterSilentMs * speed, switchErrorRecentMs: DEFAULT_HEALTH_LIMITS.switchErrorRecentMs * speed };
}

/** The mempool's age limit on such a clock (the rest of its limits are counts and bytes). */
export function mempoolOnClock(speed: number): Partial<MempoolLimits> {
  return speed === 1 ? {} : { ageMsMax: DEFAULT_MEMPOOL_LIMITS.ageMsMax * speed };
}
