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
//
// BLOCK MODE (the default; `blocks: false` keeps the old string entries):
// the entries are ledger blocks, and each node applies them through the one
// rule the daemon uses (ledger/replicated.ts applyEntry) to a pure
// LedgerState (no SQLite). Leaders cut a block every blockIntervalMs of their
// own drifting clock (empty ones too), only when all of their log is applied
// (daemon/node.ts canCut), with the header naming raftTerm = term and
// raftIndex = lastIndex + 1, the time from nextBlockTimeMs (monotonic). Clients
// submit signed readings and orders (sim/sim-ledger.ts, a stand-in signature
// scheme) to random nodes, which forward them to the leader's pool over the
// simulated network and again after txRetryMs until they see them in a block.
// Snapshots carry encodeChainPoint; a node installing one copies the missing
// blocks from a reachable peer's applied chain and re-applies each (no state
// is copied). The ledger is durable (as the real block store); see
// replayCheck. Checkers, besides the above:
//   (1) no two nodes have different blocks at one height;
//   (2) on every restart and at the end, the node's durable Raft snapshot and
//       log rebuild exactly its ledger (same hashes and roots, same height);
//   (3) every transaction acknowledged committed (its submitting node applied
//       it with result ok) is in the final chain exactly once, with result ok;
//   (4) every node's state root after each height is the same;
//   (5) after the heal, a block cut after it commits within recoveryMsMax;
//   and no committed entry is ever skipped by applyEntry (honest leaders).
import { type ClusterConfig, type ConfChange, applyConfChange, changesConfig, decodeConfChange } from "../ledger/raft/conf-change.js";
import { type Entry, EntryKind, type Message, type NodeId, RaftNode, type Ready, Role, type Snapshot } from "../ledger/raft/raft.js";
import { type Block, buildBlock, decodeBlock, encodeBlock } from "../ledger/block.js";
import { bytesEqual } from "../ledger/assert.js";
import { BlockRejectedError } from "../ledger/errors.js";
import { toHex } from "../ledger/hash.js";
import { type ChainPoint, applyEntry, decodeChainPoint, encodeChainPoint, nextBlockTimeMs } from "../ledger/replicated.js";
import { type LedgerState, ResultCode, applyBlock } from "../ledger/state.js";
import type { SignedTx } from "../ledger/tx.js";
import { EventQueue } from "./event-queue.js";
import { Rng } from "./rng.js";
import { SIM_GENESIS_MS, type SimChain, type SimSigner, TxFactory, lastSeqOf, simChain, simVerifier } from "./sim-ledger.js";

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
  readonly blocks: boolean; // block mode: entries are ledger blocks with transactions (else strings "p17")
  readonly blockIntervalMs: number; // a leader cuts a block this often (its own clock), empty or not
  readonly txEveryMs: number; // block mode: a client submits a transaction to a random node this often
  readonly txRetryMs: number; // a node re-forwards a transaction it was given until it sees it in a block
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
  compactEveryEntries: 8,
  compactMarginEntries: 4,
  membershipChanges: true,
  confChangeEveryMs: 1_000,
  blocks: true,
  blockIntervalMs: 1_000,
  txEveryMs: 400,
  txRetryMs: 2_000,
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
  readonly recoveryMs: number | null; // heal -> first commit of an entry (a block, in block mode) proposed after it
  readonly blocks: number; // block mode: height of the longest chain
  readonly txsSubmitted: number;
  readonly txsAcked: number; // acknowledged committed to their submitter (applied with result ok)
  readonly blocksFetched: number; // blocks copied from peers and re-applied after installing a snapshot
  readonly catchUpWaits: number; // snapshot installs held because no reachable peer had the blocks yet
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

/**
 * Block mode: a node's ledger, DURABLE like its block store (the real box
 * keeps it in SQLite): what was applied stays applied across a crash. On
 * every restart the checker rebuilds the state from the node's durable Raft
 * log and snapshot (replayCheck) and demands the same block hashes and state
 * roots, so a ledger that held more (or other) than its Raft log says fails.
 */
interface NodeLedger {
  states: LedgerState[]; // states[h]: after block h (states[0]: genesis)
  blocks: Uint8Array[]; // blocks[h]: encoded block h, what a peer fetches (blocks[0] unused)
  results: (readonly number[])[]; // results[h]: the result code of each transaction of block h
}

interface SimNode {
  readonly id: NodeId;
  raft: RaftNode;
  disk: Disk;
  sm: StateMachine;
  ledger: NodeLedger;
  pool: Map<string, { tx: SignedTx; at: number }>; // the mempool a leader cuts from (volatile)
  mine: Map<string, { tx: SignedTx; sentAt: number }>; // submitted here, not yet seen in a block (volatile: a client request)
  up: boolean;
  persisting: boolean;
  incarnation: number;
  readonly drift: number;
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

  // Block mode (see NodeLedger): the chain as the nodes applied it, by height (the first node to apply a height sets it).
  const sc: SimChain | null = o.blocks ? simChain(o.nodes + o.spares) : null;
  const txFactory = sc === null ? null : new TxFactory(sc);
  const globalHash: string[] = [];
  const globalRoot: string[] = [];
  const cutAt = new Map<string, number>(); // block hash -> simulated time its leader cut it
  const ackedTxs = new Set<string>(); // tx ids acknowledged committed (ok) to the client by the node it submitted to
  const bstats = { submitted: 0, fetched: 0, waits: 0 };
  const newLedger = (): NodeLedger => ({ states: sc === null ? [] : [sc.genesis], blocks: [new Uint8Array(0)], results: [[]] });
  /** A node's wall clock (block times): it drifts like its tick timer (a tick of tickMs takes tickMs * drift). */
  const wall = (n: SimNode): number => SIM_GENESIS_MS + Math.round(now / n.drift);
  const head = (n: SimNode): LedgerState => n.ledger.states[n.ledger.states.length - 1] as LedgerState;

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
    nodes.set(id, { id, raft: makeRaft({ id, disk }), disk, sm, ledger: newLedger(), pool: new Map(), mine: new Map(), up: true, persisting: false, incarnation: 0, drift });
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
    if (sc !== null) {
      // The ledger already holds the chain point's blocks (catchUp, before this); the Raft-level chain hash is the sim's bookkeeping.
      const p = decodeChainPoint(s.data);
      const known = committed.get(s.index);
      if (known === undefined || known.term !== s.term || globalHash[p.height] !== toHex(p.blockHash)) {
        fail(`node ${n.id} installs a snapshot at ${s.index} (term ${s.term}, height ${p.height}) that is not the committed chain there`);
      }
      n.sm.applied = s.index;
      n.sm.hash = known?.hash ?? 0;
      n.sm.hashes.clear();
      n.sm.hashes.set(s.index, n.sm.hash);
      stats.installs++;
      return;
    }
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
      if (sc !== null) {
        applyLedger(n, e);
        continue;
      }
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
    const complete = () => {
      if (n.incarnation !== incarnation) return; // crashed meanwhile: the Ready is lost, nothing was sent
      // Block mode: a received snapshot is a chain point; fetch and re-apply the blocks it stands for first.
      // All or nothing, in one step with the rest of the Ready (the real box saves the snapshot, then fetches,
      // resuming after a restart; here a crash while it waits simply loses the Ready). No peer with the blocks
      // reachable: hold the Ready and try again, as the real box does (heartbeats still flow meanwhile).
      if (sc !== null && rd.snapshot !== null && !catchUp(n, decodeChainPoint(rd.snapshot.data))) {
        bstats.waits++;
        queue.push(now + 200, complete);
        return;
      }
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
      // As the daemon: a leader whose head is an interval old cuts at once (a new leader, or a busy block tick).
      if (sc !== null && canCut(n) && wall(n) >= head(n).timeMs + o.blockIntervalMs) cutBlock(n);
      processReady(n);
    };
    queue.push(now + latency, complete);
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
    const s = n.raft.compact(index, sc === null ? snapshotData(index, hash) : encodeChainPoint(chainPointAt(n, index)));
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

  // ---------------------------------------------------------------- block mode

  /** The ledger's verdict on one committed entry (the one rule, ledger/replicated.ts). */
  const applyLedger = (n: SimNode, e: Entry) => {
    const out = applyEntry(head(n), e, simVerifier);
    if (out.kind === "skip") fail(`node ${n.id} skips committed entry ${e.index}: ${out.code} ${out.reason}`);
    else if (out.kind === "block") appendBlock(n, out.block, e.data, out.result.state, out.result.results, "applies");
  };

  /** A block joins a node's chain: checkers (1) and (4) at once, the mempool, and acknowledgements to clients. */
  const appendBlock = (n: SimNode, block: Block, bytes: Uint8Array, state: LedgerState, results: readonly number[], how: string) => {
    const L = n.ledger;
    const h = block.header.height;
    if (h !== L.states.length) {
      fail(`node ${n.id} ${how} block ${h} on a chain of height ${L.states.length - 1}`);
      return;
    }
    L.states.push(state);
    L.blocks.push(bytes);
    L.results.push(results);
    const hash = toHex(block.hash);
    const root = toHex(state.tree.root);
    const known = globalHash[h];
    if (known === undefined) {
      globalHash[h] = hash;
      globalRoot[h] = root;
      if (recoveryMs === null && (cutAt.get(hash) ?? -1) >= healAt) recoveryMs = now - healAt; // a block cut after the heal is committed
    } else {
      if (known !== hash) fail(`node ${n.id} ${how} block ${hash.slice(0, 12)} at height ${h}, another node has ${known.slice(0, 12)} there`);
      if (globalRoot[h] !== root) fail(`node ${n.id} has state root ${root.slice(0, 12)} after height ${h}, another node has ${(globalRoot[h] as string).slice(0, 12)}`);
    }
    block.txs.forEach((t, i) => {
      const id = toHex(t.id);
      n.pool.delete(id);
      if (n.mine.delete(id) && results[i] === ResultCode.ok) ackedTxs.add(id);
    });
  };

  /**
   * Bring a node's ledger to a snapshot's chain point: copy the blocks it lacks
   * from a reachable peer's applied chain (the leader first) and re-apply each
   * through applyBlock, verifying all before keeping any. False: no reachable
   * peer has them now.
   */
  const catchUp = (n: SimNode, p: ChainPoint): boolean => {
    const L = n.ledger;
    const have = L.states.length - 1;
    if (have < p.height) {
      const lead = n.raft.lead;
      const from = [...nodes.values()]
        .filter((x) => x !== n && x.up && !cut.has(`${x.id}>${n.id}`) && !cut.has(`${n.id}>${x.id}`) && x.ledger.states.length - 1 >= p.height)
        .sort((a, b) => Number(b.id === lead) - Number(a.id === lead) || a.id - b.id)[0];
      if (from === undefined) return false;
      let state = head(n);
      const staged: { block: Block; bytes: Uint8Array; state: LedgerState; results: readonly number[] }[] = [];
      for (let h = have + 1; h <= p.height; h++) {
        const bytes = from.ledger.blocks[h] as Uint8Array;
        try {
          const block = decodeBlock(bytes);
          const r = applyBlock(state, block, simVerifier);
          staged.push({ block, bytes, state: r.state, results: r.results });
          state = r.state;
        } catch (err) {
          if (!(err instanceof BlockRejectedError)) throw err;
          fail(`node ${n.id}: block ${h} fetched from node ${from.id} does not verify: ${err.message}`);
          return true;
        }
      }
      for (const x of staged) appendBlock(n, x.block, x.bytes, x.state, x.results, `fetches from node ${from.id}`);
      bstats.fetched += staged.length;
    }
    const at = L.states[p.height];
    if (at === undefined || !bytesEqual(at.blockHash, p.blockHash)) fail(`node ${n.id}: the snapshot names block ${toHex(p.blockHash).slice(0, 12)} at height ${p.height}, the ledger holds another`);
    return true;
  };

  /** What a snapshot at Raft index `index` says: the last block at or before it. */
  const chainPointAt = (n: SimNode, index: number): ChainPoint => {
    const states = n.ledger.states;
    let h = states.length - 1;
    while (h > 0 && (states[h] as LedgerState).raftIndex > index) h--;
    const s = states[h] as LedgerState;
    return { height: s.height, blockHash: s.blockHash };
  };

  /** Leading, and everything in its log applied: the head is final (daemon/node.ts canCut). */
  const canCut = (n: SimNode): boolean => n.up && !n.persisting && n.raft.role === Role.leader && n.sm.applied === n.raft.lastIndex;

  const cutBlock = (n: SimNode) => {
    if (sc === null) return;
    const parent = head(n);
    // The mempool's pick: each author's transactions in sequence; a gap is waited out for 3 s, then skipped.
    const next = new Map<number, number>();
    const selected: SignedTx[] = [];
    const candidates = [...n.pool.entries()].sort(([, a], [, b]) => a.tx.tx.author - b.tx.tx.author || a.tx.tx.seq - b.tx.tx.seq);
    for (const [id, { tx, at }] of candidates) {
      const expected = next.get(tx.tx.author) ?? lastSeqOf(parent, tx.tx.author) + 1;
      if (tx.tx.seq < expected) {
        n.pool.delete(id); // stale: committed already, or overtaken
        continue;
      }
      if (tx.tx.seq > expected && now - at < 3_000) continue;
      if (selected.length >= 200) break;
      selected.push(tx);
      next.set(tx.tx.author, tx.tx.seq + 1);
    }
    const block = buildBlock(
      {
        height: parent.height + 1,
        parentHash: parent.blockHash,
        timeMs: nextBlockTimeMs(wall(n), parent.timeMs),
        stateRoot: parent.tree.root,
        proposer: n.id - 1, // node id = member index + 1
        raftTerm: n.raft.term,
        raftIndex: n.raft.lastIndex + 1,
        txs: selected,
      },
      sc.signers[n.id - 1] as SimSigner,
      sc.chain.hash,
    );
    if (n.raft.propose(encodeBlock(block))) {
      cutAt.set(toHex(block.hash), now);
      processReady(n);
    }
  };

  const scheduleBlockTick = (n: SimNode, incarnation: number) => {
    if (sc === null) return;
    queue.push(now + Math.max(1, Math.round(o.blockIntervalMs * n.drift)), () => {
      if (n.incarnation !== incarnation || !n.up) return;
      if (canCut(n)) cutBlock(n);
      for (const m of n.mine.values()) {
        if (now - m.sentAt < o.txRetryMs) continue;
        m.sentAt = now; // not in a block yet: forward again (to whoever leads now)
        sendTx(n, m.tx);
      }
      scheduleBlockTick(n, incarnation);
    });
  };

  const addToPool = (n: SimNode, tx: SignedTx) => {
    const id = toHex(tx.id);
    if (!n.pool.has(id) && tx.tx.seq > lastSeqOf(head(n), tx.tx.author)) n.pool.set(id, { tx, at: now });
  };

  /** A node passes a transaction to the leader's pool over the simulated network (loss and cuts apply). */
  const sendTx = (n: SimNode, tx: SignedTx) => {
    if (n.raft.role === Role.leader) return addToPool(n, tx);
    const to = n.raft.lead;
    if (to === null || to === n.id) return; // no leader known: the retry will
    if (cut.has(`${n.id}>${to}`) || (faultsOn && rng.next() < o.lossRate)) return;
    queue.push(now + o.delayMsMin + rng.int(0, o.delayMsMax - o.delayMsMin), () => {
      const target = nodes.get(to);
      if (target !== undefined && target.up) addToPool(target, tx);
    });
  };

  /** A client submits a new transaction to a random box; a box that is down refuses it (the client is not told it committed). */
  const submit = () => {
    if (txFactory === null) return;
    const tx = txFactory.make(now, rng.next());
    const n = nodes.get(rng.pick(ids)) as SimNode;
    bstats.submitted++;
    if (!n.up) return;
    n.mine.set(toHex(tx.id), { tx, sentAt: now });
    sendTx(n, tx);
  };

  /**
   * Checker (2), durability: the node's ledger is durable; rebuilt from its
   * durable Raft snapshot (a chain point in that ledger) and log up to what it
   * applied, it must give the same blocks and state roots, to the same height.
   */
  const replayCheck = (n: SimNode, when: string) => {
    if (sc === null) return;
    const L = n.ledger;
    let state = sc.genesis;
    const snap = n.disk.snapshot;
    if (snap !== null) {
      const p = decodeChainPoint(snap.data);
      const at = L.states[p.height];
      if (at === undefined || !bytesEqual(at.blockHash, p.blockHash)) {
        fail(`${when}: node ${n.id}'s ledger does not hold the block its durable snapshot names at height ${p.height}`);
        return;
      }
      state = at;
    }
    const upto = Math.min(n.disk.hardState.commit, n.sm.applied);
    for (const e of n.disk.entries) {
      if (e.index > upto) break;
      const out = applyEntry(state, e, simVerifier);
      if (out.kind === "skip") {
        fail(`${when}: node ${n.id} replaying its Raft log skips entry ${e.index}: ${out.reason}`);
        return;
      }
      if (out.kind !== "block") continue;
      state = out.result.state;
      const mine = L.states[state.height];
      if (mine === undefined || !bytesEqual(mine.blockHash, state.blockHash) || !bytesEqual(mine.tree.root, state.tree.root)) {
        fail(`${when}: node ${n.id} replaying its Raft log gets another block or state at height ${state.height} than its ledger holds`);
        return;
      }
    }
    if (upto === n.sm.applied && state.height !== L.states.length - 1) {
      fail(`${when}: node ${n.id}'s Raft snapshot and log rebuild its ledger to height ${state.height}, it holds ${L.states.length - 1}`);
    }
  };

  const crash = (n: SimNode) => {
    if (!n.up) return;
    n.up = false;
    n.incarnation++;
    n.persisting = false;
    n.pool.clear();
    n.mine.clear();
    stats.crashes++;
  };

  const restart = (n: SimNode) => {
    if (n.up) return;
    n.up = true;
    n.incarnation++;
    replayCheck(n, "restart");
    n.raft = makeRaft(n);
    n.raft.setApplied(Math.min(n.disk.hardState.commit, n.sm.applied));
    scheduleTick(n, n.incarnation);
    scheduleBlockTick(n, n.incarnation);
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

  for (const n of nodes.values()) (scheduleTick(n, n.incarnation), scheduleBlockTick(n, n.incarnation));
  if (sc === null) for (let t = o.proposalEveryMs; t < o.durationMs; t += o.proposalEveryMs) queue.push(t, propose);
  else for (let t = o.txEveryMs; t < o.durationMs; t += o.txEveryMs) queue.push(t, submit);
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
  let longest: SimNode | null = null;
  if (sc !== null) {
    for (const n of nodes.values()) {
      replayCheck(n, "at the end");
      if (longest === null || n.ledger.states.length > longest.ledger.states.length) longest = n;
    }
    const top = longest as SimNode;
    // (1) and (4) once more, on the final chains (they were checked as each block was applied).
    for (const n of nodes.values()) {
      for (let h = 1; h < n.ledger.states.length; h++) {
        const a = n.ledger.states[h] as LedgerState;
        const b = top.ledger.states[h] as LedgerState;
        if (!bytesEqual(a.blockHash, b.blockHash) || !bytesEqual(a.tree.root, b.tree.root)) {
          fail(`final chains: node ${n.id} and node ${top.id} differ at height ${h}`);
          break;
        }
      }
    }
    // (3) Every transaction acknowledged committed is in the final chain exactly once, with result ok.
    const seen = new Map<string, { times: number; ok: boolean }>();
    for (let h = 1; h < top.ledger.states.length; h++) {
      const results = top.ledger.results[h] as readonly number[];
      decodeBlock(top.ledger.blocks[h] as Uint8Array).txs.forEach((t, i) => {
        const id = toHex(t.id);
        const prev = seen.get(id);
        seen.set(id, { times: (prev?.times ?? 0) + 1, ok: (prev?.ok ?? false) || results[i] === ResultCode.ok });
      });
    }
    for (const id of ackedTxs) {
      const s = seen.get(id);
      if (s === undefined || s.times !== 1 || !s.ok) fail(`acknowledged tx ${id.slice(0, 12)} is in the final chain ${s?.times ?? 0} times${s !== undefined && !s.ok ? ", never ok" : ""}`);
    }
  }
  if (recoveryMs === null || recoveryMs > o.recoveryMsMax) fail(`no new ${sc === null ? "commit" : "block committed"} within ${o.recoveryMsMax} ms of the heal (${recoveryMs ?? "never"})`);
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
    blocks: longest === null ? 0 : longest.ledger.states.length - 1,
    txsSubmitted: bstats.submitted,
    txsAcked: ackedTxs.size,
    blocksFetched: bstats.fetched,
    catchUpWaits: bstats.waits,
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
