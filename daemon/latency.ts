// A bounded record of latencies (the newest `capacity` samples, in a ring)
// with percentiles on request: what status and the benchmarks report as
// commit latency. Percentiles use the nearest-rank rule on a sorted copy.
import { assert } from "../ledger/assert.js";

export interface LatencySummary {
  readonly count: number; // samples ever recorded
  readonly window: number; // samples the percentiles are over
  readonly p50: number | null;
  readonly p99: number | null;
  readonly max: number | null;
}

export class LatencyRecorder {
  private readonly ring: Float64Array;
  private next = 0;
  private total = 0;

  constructor(readonly capacity: number) {
    assert(Number.isInteger(capacity) && capacity > 0, "capacity is a positive integer");
    this.ring = new Float64Array(capacity);
  }

  record(ms: number): void {
    this.ring[this.next] = ms;
    this.next = (this.next + 1) % this.capacity;
    this.total++;
  }

  /** Forget every sample (a benchmark resets after its warm-up). */
  reset(): void {
    this.next = 0;
    this.total = 0;
  }

  summary(): LatencySummary {
    const n = Math.min(this.total, this.capacity);
    if (n === 0) return { count: this.total, window: 0, p50: null, p99: null, max: null };
    const sorted = Float64Array.from(this.ring.subarray(0, n)).sort(); // typed arrays sort numerically
    return { count: this.total, window: n, p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted[n - 1] as number };
  }
}

/** Nearest-rank percentile of an ascending array (q in (0, 1]). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  assert(sorted.length > 0 && q > 0 && q <= 1, "a percentile of a non-empty sample");
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
}
