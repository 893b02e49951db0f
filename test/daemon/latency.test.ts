// Commit-latency percentiles (daemon/latency.ts) against a reference that
// sorts the newest `capacity` samples: the same numbers, without the sort.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { LatencyRecorder } from "../../daemon/latency.js";

function reference(samples: readonly number[], capacity: number) {
  const window = samples.slice(-capacity).map((v) => Math.max(0, Math.floor(v)));
  if (window.length === 0) return { count: samples.length, window: 0, p50: null, p99: null, max: null };
  const sorted = [...window].sort((a, b) => a - b);
  const nearestRank = (q: number) => sorted[Math.ceil(q * sorted.length) - 1]; // written out: not the code under test
  return { count: samples.length, window: window.length, p50: nearestRank(0.5), p99: nearestRank(0.99), max: sorted.at(-1) };
}

describe("LatencyRecorder", () => {
  it("agrees with sorting the window, whatever the samples (huge, fractional, negative) and resets", () => {
    const sample = fc.oneof(fc.integer({ min: 0, max: 3_000 }), fc.integer({ min: 60_000, max: 200_000 }), fc.double({ min: -50, max: 5_000, noNaN: true }));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 50 }), fc.array(sample, { maxLength: 200 }), fc.nat(200), (capacity, samples, resetAt) => {
        const r = new LatencyRecorder(capacity);
        let since: number[] = [];
        samples.forEach((v, i) => {
          if (i === resetAt) {
            r.reset();
            since = [];
          }
          r.record(v);
          since.push(v);
        });
        assert.deepEqual(r.summary(), reference(since, capacity));
      }),
      { numRuns: 500 },
    );
  });

  it("an empty record has no percentiles", () => {
    assert.deepEqual(new LatencyRecorder(10).summary(), { count: 0, window: 0, p50: null, p99: null, max: null });
  });
});
