// The event queue of the deterministic simulations (sim/raft-sim.ts,
// sim/ledger-cluster.ts): a binary min-heap of callbacks by (time, insertion
// order), so two events at the same simulated millisecond run in the order
// they were scheduled, and a seed replays exactly.

export interface SimEvent {
  readonly at: number;
  readonly seq: number;
  readonly run: () => void;
}

export class EventQueue {
  private readonly heap: SimEvent[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  /** The time of the next event (undefined: none). */
  peekAt(): number | undefined {
    return this.heap[0]?.at;
  }

  push(at: number, run: () => void): void {
    const e: SimEvent = { at, seq: this.seq++, run };
    this.heap.push(e);
    let i = this.heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(this.heap[i] as SimEvent, this.heap[parent] as SimEvent)) break;
      [this.heap[i], this.heap[parent]] = [this.heap[parent] as SimEvent, this.heap[i] as SimEvent];
      i = parent;
    }
  }

  pop(): SimEvent | undefined {
    const top = this.heap[0];
    const last = this.heap.pop();
    if (top === undefined || last === undefined || this.heap.length === 0) return top;
    this.heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.heap.length && before(this.heap[l] as SimEvent, this.heap[m] as SimEvent)) m = l;
      if (r < this.heap.length && before(this.heap[r] as SimEvent, this.heap[m] as SimEvent)) m = r;
      if (m === i) break;
      [this.heap[i], this.heap[m]] = [this.heap[m] as SimEvent, this.heap[i] as SimEvent];
      i = m;
    }
    return top;
  }
}

function before(a: SimEvent, b: SimEvent): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}
