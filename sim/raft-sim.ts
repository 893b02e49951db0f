// Deterministic simulation of a Raft cluster: N copies of the real RaftNode
// in one process on a simulated clock, network and disk, all driven by one
// seed, with faults: symmetric and one-way partitions, message loss,
// duplication, reordering and delay, crash and restart losing whatever was
// not yet fsynced, fsync stalls, and clock drift. After a run the checkers
// assert the safety properties and that the cluster recovers once the faults
// heal. Any failing seed replays exactly (`npm run sim:faults -- --seed N`).
//
// The node shell here follows the Ready contract to the letter: a Ready's
// hardState and entries reach the simulated disk (after a simulated fsync,
// sometimes stalled), only then are its messages sent and its committed
// entries applied, then advance(). A crash drops a Ready whose fsync had not
// finished, with its messages.
import { type Entry, type Message, type NodeId, RaftNode, type Ready, Role } from "../ledger/raft/raft.js";
import { Rng } from "./rng.js";

export interface RaftSimOptions {
  readonly seed: number;
  readonly nodes: number;
  readonly durationMs: number; // faults run for the first 70%, then heal
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly faults: boolean;
  readonly partitions: boolean; // with faults: link cuts, isolation and crashes too (not only loss, stalls, drift)
  readonly lossRate: number;
  readonly duplicateRate: number;
  readonly delayMsMin: number;
  readonly delayMsMax: number;
  readonly fsyncMs: number;
  readonly stallRate: number; // share of fsyncs that stall
  readonly stallMs: number;
  readonly clockDriftMax: number; // e.g. 0.05: a node's clock runs up to 5% fast or slow
  readonly proposalEveryMs: number;
  readonly recoveryMsMax: number; // after the heal, a new entry must commit within this
}

export const DEFAULT_RAFT_SIM: Omit<RaftSimOptions, "seed"> = {
  nodes: 5,
  durationMs: 60_000,
  tickMs: 100,
  electionTicks: 10,
  heartbeatTicks: 1,
  faults: true,
  partitions: true,
  lossRate: 0.05,
  duplicateRate: 0.02,
  delayMsMin: 1,
  delayMsMax: 30,
  fsyncMs: 5,
  stallRate: 0.01,
  stallMs: 2_000,
  clockDriftMax: 0.05,
  proposalEveryMs: 200,
  recoveryMsMax: 5_000,
};

export interface RaftSimReport {
  readonly seed: number;
  readonly ok: boolean;
  readonly failures: readonly string[];
  readonly committed: number; // entries on the longest applied log
  readonly proposalsAcked: number;
  readonly leaderChanges: number;
  readonly termsWithLeader: number; // elections that produced a leader
  readonly crashes: number;
  readonly stalls: number;
  readonly messages: { readonly sent: number; readonly lost: number; readonly duplicated: number };
  readonly recoveryMs: number | null; // heal -> first commit of an entry proposed after it
}

interface SimNode {
  readonly id: NodeId;
  raft: RaftNode;
  disk: { hardState: { term: number; vote: NodeId | null; commit: number }; entries: Entry[] };
  applied: Entry[]; // durable state machine: what was applied stays applied
  up: boolean;
  persisting: boolean;
  incarnation: number;
  readonly drift: number;
}

interface Event {
  readonly at: number;
  readonly seq: number;
  readonly run: () => void;
}

/** A binary min-heap of events by (time, insertion order): deterministic ordering. */
class EventQueue {
  private readonly heap: Event[] = [];
  private seq = 0;

  push(at: number, run: () => void): void {
    const e: Event = { at, seq: this.seq++, run };
    this.heap.push(e);
    let i = this.heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(this.heap[i] as Event, this.heap[parent] as Event)) break;
      [this.heap[i], this.heap[parent]] = [this.heap[parent] as Event, this.heap[i] as Event];
      i = parent;
    }
  }

  pop(): Event | undefined {
    const top = this.heap[0];
    const last = this.heap.pop();
    if (top === undefined || last === undefined || this.heap.length === 0) return top;
    this.heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.heap.length && before(this.heap[l] as Event, this.heap[m] as Event)) m = l;
      if (r < this.heap.length && before(this.heap[r] as Event, this.heap[m] as Event)) m = r;
      if (m === i) break;
      [this.heap[i], this.heap[m]] = [this.heap[m] as Event, this.heap[i] as Event];
      i = m;
    }
    return top;
  }
}

function before(a: Event, b: Event): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

const TEXT = new TextEncoder();
const DECODE = new TextDecoder();

export function runRaftSim(seed: number, overrides: Partial<Omit<RaftSimOptions, "seed">> = {}): RaftSimReport {
  const o: RaftSimOptions = { ...DEFAULT_RAFT_SIM, ...overrides, seed };
  const rng = new Rng(seed);
  const queue = new EventQueue();
  const failures: string[] = [];
  const fail = (what: string) => {
    if (failures.length < 10) failures.push(`t=${now}ms: ${what}`);
  };
  const ids = Array.from({ length: o.nodes }, (_, i) => i + 1);
  const cut = new Set<string>(); // "a>b": messages from a to b are dropped
  const leaderOfTerm = new Map<number, NodeId>();
  const acked = new Set<string>();
  const stats = { sent: 0, lost: 0, duplicated: 0, crashes: 0, stalls: 0, leaderChanges: 0 };
  let now = 0;
  let faultsOn = o.faults;
  let lastLeader: NodeId | null = null;
  let proposalSeq = 0;
  const healAt = Math.floor(o.durationMs * 0.7);
  let firstAfterHeal = Number.MAX_SAFE_INTEGER; // proposal number of the first one made after the heal
  let recoveryMs: number | null = null;

  const makeRaft = (n: { id: NodeId; disk: SimNode["disk"] }): RaftNode =>
    new RaftNode(
      {
        id: n.id,
        voters: ids,
        electionTicks: o.electionTicks,
        heartbeatTicks: o.heartbeatTicks,
        preVote: true,
        checkQuorum: true,
        randomInt: (k) => rng.int(0, k - 1),
      },
      { hardState: n.disk.hardState, snapshot: null, entries: n.disk.entries },
    );

  const nodes = new Map<NodeId, SimNode>();
  for (const id of ids) {
    const disk = { hardState: { term: 0, vote: null, commit: 0 }, entries: [] as Entry[] };
    const drift = 1 + (rng.next() * 2 - 1) * o.clockDriftMax;
    nodes.set(id, { id, raft: makeRaft({ id, disk }), disk, applied: [], up: true, persisting: false, incarnation: 0, drift });
  }

  const deliver = (m: Message) => {
    stats.sent++;
    if (cut.has(`${m.from}>${m.to}`) || (faultsOn && rng.next() < o.lossRate)) {
      stats.lost++;
      return;
    }
    const copies = faultsOn && rng.next() < o.duplicateRate ? 2 : 1;
    if (copies === 2) stats.duplicated++;
    for (let c = 0; c < copies; c++) {
      const delay = o.delayMsMin + rng.int(0, o.delayMsMax - o.delayMsMin); // different delays reorder messages
      queue.push(now + delay, () => {
        const target = nodes.get(m.to);
        if (target === undefined || !target.up) return;
        target.raft.stepMessage(m);
        processReady(target);
      });
    }
  };

  const apply = (n: SimNode, entries: readonly Entry[]) => {
    for (const e of entries) {
      if (e.index !== n.applied.length + 1) {
        fail(`node ${n.id} applies entry ${e.index} after ${n.applied.length}`);
        return;
      }
      n.applied.push(e);
      if (e.data.length === 0) continue;
      const data = DECODE.decode(e.data);
      if (n.raft.role === Role.leader) acked.add(data);
      // Recovery: a proposal made after the heal is committed (applied somewhere).
      if (recoveryMs === null && Number(data.slice(1)) >= firstAfterHeal) recoveryMs = now - healAt;
    }
  };

  const processReady = (n: SimNode) => {
    if (!n.up) return;
    for (const m of n.raft.takeImmediateMessages()) deliver(m); // heartbeats do not wait for a stalled fsync
    if (n.persisting || !n.raft.hasReady()) return;
    const rd: Ready = n.raft.ready();
    n.persisting = true;
    const incarnation = n.incarnation;
    const stalled = faultsOn && rng.next() < o.stallRate;
    if (stalled) stats.stalls++;
    const needsDisk = rd.hardState !== null || rd.entries.length > 0;
    const latency = needsDisk ? (stalled ? o.stallMs : o.fsyncMs) : 0;
    queue.push(now + latency, () => {
      if (n.incarnation !== incarnation) return; // crashed meanwhile: the Ready is lost, nothing was sent
      if (rd.hardState !== null) n.disk.hardState = rd.hardState;
      if (rd.entries.length > 0) n.disk.entries = n.disk.entries.slice(0, (rd.entries[0] as Entry).index - 1).concat(rd.entries);
      for (const m of rd.messages) deliver(m); // only now: what they promise is durable
      apply(n, rd.committed);
      n.raft.advance(rd);
      n.persisting = false;
      processReady(n);
    });
  };

  const scheduleTick = (n: SimNode, incarnation: number) => {
    queue.push(now + Math.max(1, Math.round(o.tickMs * n.drift)), () => {
      if (n.incarnation !== incarnation || !n.up) return;
      n.raft.tick();
      processReady(n);
      scheduleTick(n, incarnation);
    });
  };

  const crash = (n: SimNode) => {
    if (!n.up) return;
    n.up = false;
    n.incarnation++;
    n.persisting = false;
    stats.crashes++;
  };

  const restart = (n: SimNode) => {
    if (n.up) return;
    n.up = true;
    n.incarnation++;
    n.raft = makeRaft(n);
    n.raft.setApplied(Math.min(n.disk.hardState.commit, n.applied.length));
    scheduleTick(n, n.incarnation);
  };

  const fault = () => {
    const r = rng.next();
    const a = rng.pick(ids);
    const b = rng.pick(ids.filter((x) => x !== a));
    if (r < 0.2) {
      cut.add(`${a}>${b}`); // a symmetric link cut
      cut.add(`${b}>${a}`);
    } else if (r < 0.3) {
      cut.add(`${a}>${b}`); // one-way
    } else if (r < 0.4) {
      for (const x of ids) {
        if (x === a) continue;
        cut.add(`${a}>${x}`); // isolate a node
        cut.add(`${x}>${a}`);
      }
    } else if (r < 0.65) {
      cut.clear();
    } else if (r < 0.8) {
      crash(nodes.get(a) as SimNode);
    } else {
      for (const n of nodes.values()) restart(n);
    }
  };

  const propose = () => {
    const leaders = [...nodes.values()].filter((n) => n.up && n.raft.role === Role.leader);
    for (const n of leaders) {
      const data = `p${++proposalSeq}`;
      if (n.raft.propose(TEXT.encode(data))) processReady(n);
    }
  };

  const observe = () => {
    for (const n of nodes.values()) {
      if (!n.up || n.raft.role !== Role.leader) continue;
      const term = n.raft.term;
      const known = leaderOfTerm.get(term);
      if (known !== undefined && known !== n.id) fail(`two leaders in term ${term}: ${known} and ${n.id}`);
      leaderOfTerm.set(term, n.id);
      if (lastLeader !== n.id) (stats.leaderChanges++, (lastLeader = n.id));
    }
  };

  for (const n of nodes.values()) scheduleTick(n, n.incarnation);
  for (let t = o.proposalEveryMs; t < o.durationMs; t += o.proposalEveryMs) queue.push(t, propose);
  if (o.faults && o.partitions) for (let t = 500; t < healAt; t += 200 + rng.int(0, 1_800)) queue.push(t, fault);
  queue.push(healAt, () => {
    faultsOn = false;
    cut.clear();
    for (const n of nodes.values()) restart(n);
    firstAfterHeal = proposalSeq + 1;
  });

  for (let e = queue.pop(); e !== undefined && e.at <= o.durationMs; e = queue.pop()) {
    now = e.at;
    e.run();
    observe();
  }

  checkLogs(nodes, fail);
  const final = [...nodes.values()].reduce((a, b) => (a.applied.length >= b.applied.length ? a : b)).applied;
  const finalData = final.filter((e) => e.data.length > 0).map((e) => DECODE.decode(e.data));
  const counts = new Map<string, number>();
  for (const d of finalData) counts.set(d, (counts.get(d) ?? 0) + 1);
  for (const d of acked) if (counts.get(d) !== 1) fail(`acknowledged proposal ${d} is in the final log ${counts.get(d) ?? 0} times`);
  if (recoveryMs === null || recoveryMs > o.recoveryMsMax) fail(`no new commit within ${o.recoveryMsMax} ms of the heal (${recoveryMs ?? "never"})`);
  return {
    seed,
    ok: failures.length === 0,
    failures,
    committed: final.length,
    proposalsAcked: acked.size,
    leaderChanges: stats.leaderChanges,
    termsWithLeader: leaderOfTerm.size,
    crashes: stats.crashes,
    stalls: stats.stalls,
    messages: { sent: stats.sent, lost: stats.lost, duplicated: stats.duplicated },
    recoveryMs,
  };
}

/** State machine safety: every applied log is a prefix of the longest one, entry for entry. */
function checkLogs(nodes: ReadonlyMap<NodeId, SimNode>, fail: (what: string) => void): void {
  const logs = [...nodes.values()].map((n) => ({ id: n.id, log: n.applied }));
  const longest = logs.reduce((a, b) => (a.log.length >= b.log.length ? a : b));
  for (const { id, log } of logs) {
    for (let i = 0; i < log.length; i++) {
      const a = log[i] as Entry;
      const b = longest.log[i] as Entry;
      if (a.term !== b.term || DECODE.decode(a.data) !== DECODE.decode(b.data)) {
        fail(`node ${id} applied a different entry ${i + 1} than node ${longest.id}`);
        return;
      }
    }
  }
}
