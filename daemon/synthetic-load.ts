// Synthetic meter readings: a load for benchmarks and cluster tests until
// the device layer's poll loop (issue 4) produces real ones. Every second,
// aligned to the wall clock, the box signs `readingsPerS` readings with its
// own key, through exactly the path a real reading takes (node.submit).
//
// A box has at most METER_ID_MAX + 1 = 256 meters. A load above 256
// readings a second therefore gives some meters more than one reading in a
// second, at distinct millisecond times (the ledger requires a meter's
// readings to be strictly later); counters advance by the energy of the
// power drawn since the meter's previous reading, so every reading is valid.
import type { NodeSigner } from "../ledger/keys.js";
import { meterKey } from "../ledger/records.js";
import { lastSeqOf } from "../ledger/state.js";
import { METER_ID_MAX, Quality, signTx } from "../ledger/tx.js";
import { MempoolRefusal } from "../ledger/mempool.js";
import type { BoxNode, SubmitOutcome } from "./node.js";

const METERS = METER_ID_MAX + 1;
const MS_PER_HOUR = 3_600_000;
const CATCH_UP_MS = 5_000;
const CHUNK = 32; // readings signed and submitted between two turns of the event loop

interface MeterState {
  timeMs: number;
  importMilliWh: number;
  exportMilliWh: number;
}

export interface SyntheticLoadStats {
  signed: number;
  accepted: number;
  refused: number;
  lastRefusal: string | null;
  secondsSkipped: number;
}

export class SyntheticLoad {
  readonly stats: SyntheticLoadStats = { signed: 0, accepted: 0, refused: 0, lastRefusal: null, secondsSkipped: 0 };
  private readonly meters = new Map<number, MeterState>();
  private seq: number;
  private timer: NodeJS.Timeout | null = null;
  private nextSecondMs = 0; // the second the next burst is for
  private stopped = false;
  private bursting = false; // one burst at a time: they share the sequence

  constructor(
    private readonly node: BoxNode,
    private readonly signer: NodeSigner,
    readonly readingsPerS: number,
    private readonly now: () => number = Date.now,
  ) {
    this.seq = lastSeqOf(node.ledger.state, node.id);
    this.resumeMeters();
  }

  /**
   * After a restart, go on from each meter's last reading in the ledger, as a
   * real meter's counters do: starting the counters afresh would put every
   * reading of this box behind its last one, and the ledger rejects them all
   * (readingCounterBackwards) for ever. The ledger keeps whole Wh; the
   * previous run may have been up to 999 mWh further, so resume at the top
   * of that range (never below, and within the +1 Wh the jump rule allows).
   */
  private resumeMeters(): void {
    for (let meterId = 0; meterId < METERS; meterId++) {
      const r = this.node.ledger.state.tree.get(meterKey(this.node.id, meterId));
      if (r === undefined || r.kind !== "meter") continue;
      this.meters.set(meterId, { timeMs: r.timeMs, importMilliWh: r.importWh * 1_000 + 999, exportMilliWh: r.exportWh * 1_000 + 999 });
    }
  }

  start(): void {
    const nowMs = this.now();
    this.nextSecondMs = nowMs - (nowMs % 1_000) + 1_000;
    this.schedule();
  }

  /**
   * One burst for every wall-clock second, signed with that second's time
   * even when it runs late. Taking the second from the clock when the timer
   * fires lost a whole second of readings whenever a busy event loop held a
   * burst past the next second (the benchmark then counted load that was
   * never offered). A load more than CATCH_UP_MS behind skips ahead instead
   * of replaying the past (after the process was stopped, say).
   */
  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      const nowMs = this.now();
      if (this.nextSecondMs < nowMs - CATCH_UP_MS) {
        const skipTo = nowMs - (nowMs % 1_000);
        this.stats.secondsSkipped += (skipTo - this.nextSecondMs) / 1_000;
        this.nextSecondMs = skipTo;
      }
      if (this.bursting) {
        this.stats.secondsSkipped++; // the last second's readings are still being signed: the load is more than this box can take
      } else {
        this.bursting = true;
        this.burst(this.nextSecondMs)
          .catch((err: unknown) => {
            this.stats.lastRefusal = `burst failed: ${err instanceof Error ? err.message : String(err)}`;
          })
          .finally(() => {
            this.bursting = false;
          });
      }
      this.nextSecondMs += 1_000;
      this.schedule();
    }, Math.max(0, this.nextSecondMs - this.now()));
  }

  /**
   * One second's readings, in chunks of CHUNK: each chunk is signed with
   * consecutive sequence numbers, submitted together (its signatures are
   * checked in one batch, in the node's worker) and answered before the next
   * is signed, so the box's own timers (the leader's block cut, due on the
   * same second) wait for one chunk at most, never for the whole second's
   * load. After a refusal the rest of the second is dropped and the
   * sequence resumes at the first number refused. A pool refusing by bytes
   * may still have taken a smaller reading after it; its number is then
   * refused as a duplicate when reused, which counts as taken, so the
   * sequence fills the gap and goes on.
   */
  async burst(second: number = this.now() - (this.now() % 1_000)): Promise<void> {
    const chainHash = this.node.ledger.state.chain.hash;
    for (let k0 = 0; k0 < this.readingsPerS && !this.stopped; k0 += CHUNK) {
      const seq0 = this.seq;
      const submitted: Promise<SubmitOutcome>[] = [];
      for (let k = k0; k < Math.min(k0 + CHUNK, this.readingsPerS); k++) {
        const meterId = k % METERS;
        const timeMs = second + Math.floor(k / METERS); // a meter's second reading in a second comes 1 ms later
        const m = this.meters.get(meterId) ?? { timeMs: timeMs - 1_000, importMilliWh: 1_000_000 * (meterId + 1), exportMilliWh: 0 };
        if (timeMs <= m.timeMs) continue;
        const powerW = ((meterId * 37 + Math.floor(timeMs / 1_000)) % 9_000) - 3_000; // -3 kW (exporting) .. 6 kW
        const milliWh = Math.floor((Math.abs(powerW) * (timeMs - m.timeMs) * 1_000) / MS_PER_HOUR);
        if (powerW >= 0) m.importMilliWh += milliWh;
        else m.exportMilliWh += milliWh;
        m.timeMs = timeMs;
        this.meters.set(meterId, m);
        const tx = signTx(
          {
            author: this.node.id,
            seq: seq0 + submitted.length + 1,
            body: {
              type: "reading",
              meterId,
              timeMs,
              importWh: Math.floor(m.importMilliWh / 1_000),
              exportWh: Math.floor(m.exportMilliWh / 1_000),
              powerW,
              voltagesDeciV: [2300, 2310, 2295],
              frequencyMilliHz: 50_000,
              quality: Quality.good,
            },
          },
          this.signer,
          chainHash,
        );
        this.stats.signed++;
        submitted.push(this.node.submit(tx.bytes));
      }
      const outcomes = await Promise.all(submitted);
      const firstRefused = outcomes.findIndex((o) => !o.ok && o.code !== MempoolRefusal.duplicate);
      this.seq = seq0 + (firstRefused < 0 ? outcomes.length : firstRefused); // refused numbers are free again
      for (const out of outcomes) {
        if (out.ok) {
          this.stats.accepted++;
          continue;
        }
        this.stats.refused++;
        this.stats.lastRefusal = `${out.code}: ${out.message}`;
      }
      const refused = outcomes[firstRefused];
      if (refused !== undefined && !refused.ok) {
        if (refused.code === MempoolRefusal.stale) this.resync();
        return;
      }
    }
  }

  /** Take up the ledger's sequence again (after this box's pending readings were lost). */
  private resync(): void {
    this.seq = Math.max(this.seq, lastSeqOf(this.node.ledger.state, this.node.id));
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
  }
}
