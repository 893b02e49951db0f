// Deterministic simulation of a Raft cluster: N copies of the real RaftNode
// in one process on a simulated clock, network and disk, all driven by one
// seed, with faults: symmetric and one-way partitions, message loss,
// duplication, reordering and delay, crash and restart losing whatever was
// not yet fsynced, fsync stalls, and clock drift. Meanwhile every node
// compacts its log (keeping a margin), so lagging and restarted nodes catch
// up by snapshot, and the membership changes while the faults run: a voter
// is removed then added back (sometimes the leader), a spare box is added as
// a learner, promoted, demoted and removed. After a run the checkers assert
// the safety properties and that the cluster recovers once the faults heal.
// Any failing seed replays exactly (`npm run sim:faults -- --seed N`).
//
// The node shell here follows the Ready contract to the letter: a Ready's
// snapshot, hardState and entries reach the simulated disk (after a simulated
// fsync, sometimes stalled) and the snapshot is installed in the state
// machine, only then are its messages sent and its committed entries
// applied, then advance(). A crash drops a Ready whose fsync had not
// finished, with its messages. A compaction reaches the disk at once.
//
// The state machine of a node is a hash chain over the entries it applied
// (or the snapshot it installed). The checkers:
//   - at most one leader per term;
//   - every node applies the same entry (term, kind, data, and chain hash) at
//     each index, and installs only snapshots whose hash is the chain's there;
//   - every acknowledged proposal is in the committed log exactly once;
//   - every node's configuration is the one the committed log gives at its
//     commit index (changes take effect on commit, and survive restarts);
//   - after the heal, a new proposal commits within recoveryMsMax.
import { type ClusterConfig, type ConfChange, applyConfChange, changesConfig, decodeConfChange } from "../ledger/raft/conf-change.js";
import { type Entry, EntryKind, type Message, type NodeId, RaftNode, type Ready, Role, type Snapshot } from "../ledger/raft/raft.js";
import { Rng } from "./rng.js";

export interface RaftSimOptions {
  readonly seed: number;
  readonly nodes: number; // voters of the initial configuration, ids 1..nodes
  readonly spares: number; // boxes running from the start outside the configuration (ids nodes+1..), for membership changes
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
  readonly compactEveryEntries: number; // a node compacts once this many applied entries are past its snapshot and margin (0: never)
  readonly compactMarginEntries: number; // entries kept behind the applied index when compacting
  readonly membershipChanges: boolean; // change the configuration while the faults run
  readonly confChangeEveryMs: number;
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
  spares: 1,
  compactEveryEntries: 20,
  compactMarginEntries: 10,
  membershipChanges: true,
  confChangeEveryMs: 1_000,
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
  readonly compactions: number;
  readonly snapshotsInstalled: number;
  readonly confChangesCommitted: number; // changes of the plan seen in effect on a leader
  readonly messages: { readonly sent: number; readonly lost: number; readonly duplicated: number };
  readonly recoveryMs: number | null; // heal -> first commit of an entry proposed after it
}

interface Disk {
  hardState: { term: number; vote: NodeId | null; commit: number };
  snapshot: Snapshot | null;
  entries: Entry[]; // after the snapshot
}

/** A node's state machine, durable: what was applied stays applied. */
interface StateMachine {
  applied: number; // index
  hash: number; // chain hash of everything up to `applied`
  readonly hashes: Map<number, number>; // index -> chain hash, from the last installed snapshot on (for compaction)
}

/** The committed log as the nodes applied it (the first to apply an index sets it; the others must agree). */
interface CommittedEntry {
  readonly term: number;
  readonly kind: EntryKind;
  readonly data: Uint8Array;
  readonly hash: number;
}

interface SimNode {
  readonly id: NodeId;
  raft: RaftNode;
  disk: Disk;
  sm: StateMachine;
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

/** FNV-1a over the previous hash and one entry: the state machine's chain. */
function chain(prev: number, e: Entry): number {
  let h = (prev ^ 0x811c9dc5) >>> 0;
  const mix = (b: number) => (h = Math.imul(h ^ (b & 0xff), 0x01000193) >>> 0);
  for (const n of [e.index, e.term, e.kind]) for (let k = 0; k < 4; k++) mix(n >>> (8 * k));
  for (const b of e.data) mix(b);
  return h;
}

const snapshotData = (index: number, hash: number): Uint8Array => TEXT.encode(`${index}:${hash}`);
function parseSnapshotData(data: Uint8Array): { index: number; hash: number } {
  const [index, hash] = DECODE.decode(data).split(":").map(Number);
  return { index: index as number, hash: hash as number };
}

export function runRaftSim(seed: number, overrides: Partial<Omit<RaftSimOptions, "seed">> = {}): RaftSimReport {
  const o: RaftSimOptions = { ...DEFAULT_RAFT_SIM, ...overrides, seed };
  const rng = new Rng(seed);
  const queue = new EventQueue();
  const failures: string[] = [];
  const fail = (what: string) => {
    if (failures.length < 10) failures.push(`t=${now}ms: ${what}`);
  };
  const voterIds = Array.from({ length: o.nodes }, (_, i) => i + 1);
  const ids = Array.from({ length: o.nodes + o.spares }, (_, i) => i + 1);
  const initialConfig: ClusterConfig = { voters: voterIds, learners: [] };
  const cut = new Set<string>(); // "a>b": messages from a to b are dropped
  const leaderOfTerm = new Map<number, NodeId>();
  const acked = new Set<string>();
  const committed = new Map<number, CommittedEntry>();
  const configs: ClusterConfig[] = [initialConfig]; // configs[i]: the configuration after committed entries 1..i
  const stats = { sent: 0, lost: 0, duplicated: 0, crashes: 0, stalls: 0, leaderChanges: 0, compactions: 0, installs: 0, confChanges: 0 };
  let now = 0;
  let faultsOn = o.faults;
  let lastLeader: NodeId | null = null;
  let proposalSeq = 0;
  const healAt = Math.floor(o.durationMs * 0.7);
  let firstAfterHeal = Number.MAX_SAFE_INTEGER; // proposal number of the first one made after the heal
  let recoveryMs: number | null = null;

  const makeRaft = (n: { id: NodeId; disk: Disk }): RaftNode =>
    new RaftNode(
      {
        id: n.id,
        voters: voterIds, // the initial configuration: the disk's snapshot and log say what it is now
        electionTicks: o.electionTicks,
        heartbeatTicks: o.heartbeatTicks,
        preVote: true,
        checkQuorum: true,
        randomInt: (k) => rng.int(0, k - 1),
      },
      { hardState: n.disk.hardState, snapshot: n.disk.snapshot, entries: n.disk.entries },
    );

  const nodes = new Map<NodeId, SimNode>();
  for (const id of ids) {
    const disk: Disk = { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] };
    const drift = 1 + (rng.next() * 2 - 1) * o.clockDriftMax;
    const sm: StateMachine = { applied: 0, hash: 0, hashes: new Map([[0, 0]]) };
    nodes.set(id, { id, raft: makeRaft({ id, disk }), disk, sm, up: true, persisting: false, incarnation: 0, drift });
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

  const install = (n: SimNode, s: Snapshot) => {
    const { index, hash } = parseSnapshotData(s.data);
    const known = committed.get(s.index);
    if (index !== s.index || known === undefined || known.hash !== hash || known.term !== s.term) {
      fail(`node ${n.id} installs a snapshot at ${s.index} (term ${s.term}) that is not the committed state there`);
    }
    n.sm.applied = s.index;
    n.sm.hash = hash;
    n.sm.hashes.clear();
    n.sm.hashes.set(s.index, hash);
    stats.installs++;
  };

  const apply = (n: SimNode, entries: readonly Entry[]) => {
    for (const e of entries) {
      if (e.index !== n.sm.applied + 1) {
        fail(`node ${n.id} applies entry ${e.index} after ${n.sm.applied}`);
        return;
      }
      n.sm.hash = chain(n.sm.hash, e);
      n.sm.applied = e.index;
      n.sm.hashes.set(e.index, n.sm.hash);
      const known = committed.get(e.index);
      if (known === undefined) {
        // Invariant: the committed log grows by one index at a time (each node applies in order).
        committed.set(e.index, { term: e.term, kind: e.kind, data: e.data, hash: n.sm.hash });
        const last = configs[configs.length - 1] as ClusterConfig;
        configs.push(e.kind === EntryKind.confChange ? applyConfChange(last, decodeConfChange(e.data)) : last);
      } else if (known.term !== e.term || known.hash !== n.sm.hash) fail(`node ${n.id} applied a different entry ${e.index} (or a different history before it)`);
      if (e.data.length === 0 || e.kind !== EntryKind.normal) continue;
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
      if (rd.snapshot !== null) {
        n.disk.snapshot = rd.snapshot; // it replaces the whole stored log
        n.disk.entries = [];
        install(n, rd.snapshot);
      }
      if (rd.hardState !== null) n.disk.hardState = rd.hardState;
      if (rd.entries.length > 0) {
        const keep = (rd.entries[0] as Entry).index - 1 - (n.disk.snapshot?.index ?? 0);
        n.disk.entries = n.disk.entries.slice(0, keep).concat(rd.entries);
      }
      for (const m of rd.messages) deliver(m); // only now: what they promise is durable
      apply(n, rd.committed);
      n.raft.advance(rd);
      n.persisting = false;
      maybeCompact(n);
      processReady(n);
    });
  };

  /** The application compacts when enough is applied past its snapshot, keeping a margin for slow followers. */
  const maybeCompact = (n: SimNode) => {
    if (o.compactEveryEntries <= 0) return;
    const snapIndex = n.raft.firstIndex - 1;
    if (n.sm.applied - snapIndex < o.compactEveryEntries + o.compactMarginEntries) return;
    const index = n.sm.applied - o.compactMarginEntries;
    const hash = n.sm.hashes.get(index);
    if (hash === undefined) {
      fail(`node ${n.id} has no state hash at ${index} to compact to`);
      return;
    }
    const s = n.raft.compact(index, snapshotData(index, hash));
    n.disk.snapshot = s; // persisted at once (a compaction is its own transaction)
    n.disk.entries = n.disk.entries.filter((e) => e.index > index);
    for (const i of n.sm.hashes.keys()) if (i < index) n.sm.hashes.delete(i);
    stats.compactions++;
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
    n.raft.setApplied(Math.min(n.disk.hardState.commit, n.sm.applied));
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

  // Membership: a plan of single-server changes, each proposed until a leader shows it in effect.
  const spare = o.nodes + 1;
  let planStep = 0;
  let victim: NodeId | null = null; // the voter removed then added back
  const planned = (leader: RaftNode): ConfChange | null => {
    switch (planStep % 6) {
      case 0: {
        if (victim === null) {
          const others = leader.config.voters.filter((v) => v !== leader.id && v !== spare);
          // Now and then the leader itself: it must step down once its removal commits.
          victim = others.length === 0 || rng.next() < 0.25 ? leader.id : rng.pick(others);
        }
        return { type: "removeVoter", node: victim };
      }
      case 1:
        return victim === null ? null : { type: "addVoter", node: victim };
      case 2:
        return o.spares > 0 ? { type: "addLearner", node: spare } : null;
      case 3:
        return o.spares > 0 ? { type: "addVoter", node: spare } : null; // promote
      case 4:
        return o.spares > 0 ? { type: "addLearner", node: spare } : null; // demote
      default:
        return o.spares > 0 ? { type: "removeLearner", node: spare } : null;
    }
  };
  const changeMembership = () => {
    const leader = [...nodes.values()].find((n) => n.up && n.raft.role === Role.leader);
    if (leader === undefined) return;
    for (let guard = 0; guard < 6; guard++) {
      const cc = planned(leader.raft);
      if (cc !== null && changesConfig(leader.raft.config, cc)) {
        if (leader.raft.proposeConfChange(cc)) processReady(leader);
        return;
      }
      // In effect already (or nothing to do): the next step of the plan.
      if (cc !== null) stats.confChanges++;
      if (planStep % 6 === 1) victim = null;
      planStep++;
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
  if (o.membershipChanges) for (let t = 2_000; t < healAt; t += o.confChangeEveryMs) queue.push(t, changeMembership);
  for (let t = 500; t < o.durationMs; t += 500) queue.push(t, () => checkConfigs(nodes, configs, fail));
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

  const final: CommittedEntry[] = [];
  for (let i = 1; committed.has(i); i++) final.push(committed.get(i) as CommittedEntry);
  if (final.length !== committed.size) fail(`the committed log has a hole after ${final.length}`);
  checkConfigs(nodes, configs, fail);
  const counts = new Map<string, number>();
  for (const e of final) {
    if (e.kind !== EntryKind.normal || e.data.length === 0) continue;
    const d = DECODE.decode(e.data);
    counts.set(d, (counts.get(d) ?? 0) + 1);
  }
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
    compactions: stats.compactions,
    snapshotsInstalled: stats.installs,
    confChangesCommitted: stats.confChanges,
    messages: { sent: stats.sent, lost: stats.lost, duplicated: stats.duplicated },
    recoveryMs,
  };
}

/**
 * Changes take effect on commit: every node's configuration is what the
 * committed log gives at its commit index (checked where the log is known).
 */
function checkConfigs(nodes: ReadonlyMap<NodeId, SimNode>, configs: readonly ClusterConfig[], fail: (what: string) => void): void {
  for (const n of nodes.values()) {
    if (!n.up) continue;
    const expected = configs[n.raft.commit];
    if (expected === undefined) continue; // committed beyond what any node applied
    const actual = n.raft.config;
    if (JSON.stringify(actual) !== JSON.stringify(expected)) {
      fail(`node ${n.id} (commit ${n.raft.commit}) has configuration ${JSON.stringify(actual)}, the committed log says ${JSON.stringify(expected)}`);
    }
  }
}
