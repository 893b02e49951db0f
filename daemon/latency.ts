// A bounded record of latencies (the newest `capacity` samples, in a ring)
// with percentiles on request: what status and the benchmarks report as
// commit latency. Percentiles use the nearest-rank rule.
//
// status() may be asked every second by every phone on the LAN, so a summary
// must not sort the window (100,000 samples: 8 ms of event loop here). The
// ring keeps each sample, and a count per whole millisecond up to BUCKETS_MS
// is kept beside it; a percentile is a walk over the counts. Samples are
// whole milliseconds (Date.now differences; anything else is floored, and a
// negative one, from a clock stepped back, counts as 0). The rare sample at
// or beyond BUCKETS_MS is found exactly by scanning the ring.
import { assert } from "../ledger/assert.js";

export interface LatencySummary {
  readonly count: number; // samples ever recorded
  readonly window: number; // samples the percentiles are over
  readonly p50: number | null;
  readonly p99: number | null;
  readonly max: number | null;
}

const BUCKETS_MS = 65_536;

export class LatencyRecorder {
  private readonly ring: Float64Array;
  private readonly counts = new Uint32Array(BUCKETS_MS + 1); // the last one: BUCKETS_MS and beyond
  private next = 0;
  private total = 0;

  constructor(readonly capacity: number) {
    assert(Number.isInteger(capacity) && capacity > 0, "capacity is a positive integer");
    this.ring = new Float64Array(capacity);
  }

  record(ms: number): void {
    const v = Number.isFinite(ms) ? Math.max(0, Math.floor(ms)) : 0;
    if (this.total >= this.capacity) (this.counts[bucketOf(this.ring[this.next] as number)] as number)--;
    this.ring[this.next] = v;
    (this.counts[bucketOf(v)] as number)++;
    this.next = (this.next + 1) % this.capacity;
    this.total++;
  }

  /** Forget every sample (a benchmark resets after its warm-up). */
  reset(): void {
    this.next = 0;
    this.total = 0;
    this.counts.fill(0);
  }

  summary(): LatencySummary {
    const n = Math.min(this.total, this.capacity);
    if (n === 0) return { count: this.total, window: 0, p50: null, p99: null, max: null };
    return { count: this.total, window: n, p50: this.atRank(nearestRank(n, 0.5)), p99: this.atRank(nearestRank(n, 0.99)), max: this.atRank(n) };
  }

  /** The sample of 1-based rank r in ascending order. */
  private atRank(r: number): number {
    let seen = 0;
    for (let b = 0; b < BUCKETS_MS; b++) {
      seen += this.counts[b] as number;
      if (seen >= r) return b;
    }
    // Among the samples of BUCKETS_MS ms or more: find them in the ring.
    const n = Math.min(this.total, this.capacity);
    const big = Array.from(this.ring.subarray(0, n)).filter((v) => v >= BUCKETS_MS).sort((a, b) => a - b);
    return big[r - seen - 1] as number;
  }
}

function bucketOf(v: number): number {
  return v < BUCKETS_MS ? v : BUCKETS_MS;
}

/** The 1-based rank of the q-th percentile (q in (0, 1]) of n samples, by the nearest-rank rule. */
export function nearestRank(n: number, q: number): number {
  assert(n > 0 && q > 0 && q <= 1, "a percentile of a non-empty sample");
  return Math.min(n, Math.ceil(q * n));
}

/** Nearest-rank percentile of an ascending array (q in (0, 1]). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  return sorted[nearestRank(sorted.length, q) - 1] as number;
}

/** The summary of a plain list of samples (sorted here; for short lists such as a poller's last hour). */
export function summarise(samples: readonly number[]): LatencySummary {
  if (samples.length === 0) return { count: 0, window: 0, p50: null, p99: null, max: null };
  const sorted = [...samples].sort((a, b) => a - b);
  return { count: sorted.length, window: sorted.length, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[sorted.length - 1] as number };
}
