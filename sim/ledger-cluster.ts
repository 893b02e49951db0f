// The ledger of a simulated neighbourhood (`peergrid sim`): a few voting
// boxes running the real Raft core (ledger/raft/raft.ts) and the real ledger
// rules (ledger/replicated.ts applyEntry, ledger/state.ts applyBlock,
// ledger/mempool.ts) on a simulated clock and network, in one process. The
// other boxes of the neighbourhood do not vote: they submit their signed
// transactions to a voter, as a box outside the Raft configuration would.
//
// What it keeps of the daemon (daemon/node.ts), and what it simplifies (the
// report lists these, see SIMPLIFICATIONS):
//   - The Ready contract: a Ready's entries and hard state are "persisted"
//     (after fsyncMs) before its messages go out and its committed entries
//     are applied, then advance(). Heartbeats go at once
//     (takeImmediateMessages).
//   - The leader cuts a block at every whole second of its clock from its
//     mempool (round-robin over authors, sequence order, gaps waited out),
//     only when its whole log is applied (canCut), with the header naming
//     its Raft term and index; nextBlockTimeMs keeps the chain's time
//     monotonic. Followers forward what they are given to the leader they
//     know, over the network.
//   - ONE state machine for all voters: every committed entry is applied
//     once, by the first voter to learn it is committed; the others check
//     that their entry at that index has the same term (Raft's log matching
//     property: same index and term, same entry) and move their applied
//     index. Every box computes the same state from the same blocks (that is
//     what the state root in each header proves), so applying it five times
//     would change nothing but the run time.
//   - No faults: the network delivers every message after a seeded delay in
//     [delayMsMin, delayMsMax]; no crash, partition or clock drift (those
//     are `npm run sim:faults`'s business). A transaction forwarded to a
//     leader that lost its office before taking it would be lost: the run
//     counts it (txsLost), and it is 0 whenever leadership is stable.
//   - Logs are compacted every compactEveryEntries, keeping a margin.
import { assert } from "../ledger/assert.js";
import { type Block, buildBlock, encodeBlock } from "../ledger/block.js";
import type { Hash } from "../ledger/hash.js";
import { Mempool, type MempoolLimits, DEFAULT_MEMPOOL_LIMITS } from "../ledger/mempool.js";
import { type Entry, type Message, type NodeId, RaftNode, type Ready, Role } from "../ledger/raft/raft.js";
import { applyEntry, encodeChainPoint, nextBlockTimeMs } from "../ledger/replicated.js";
import { type ApplyResult, type LedgerState, lastSeqOf } from "../ledger/state.js";
import type { SignatureVerifier, SignedTx, Signer } from "../ledger/tx.js";
import { EventQueue } from "./event-queue.js";
import { Rng } from "./rng.js";

export interface SimClusterOptions {
  readonly seed: number;
  /** Voting boxes: Raft ids 1..voters are members 0..voters-1 of the genesis. */
  readonly voters: number;
  readonly genesis: LedgerState;
  /** The voters' block signers, by member index. */
  readonly signers: readonly Signer[];
  readonly verifier: SignatureVerifier;
  /** The simulated clock at the start (the genesis time or later). */
  readonly startMs: number;
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly blockIntervalMs: number;
  readonly delayMsMin: number;
  readonly delayMsMax: number;
  readonly fsyncMs: number;
  readonly gapWaitMs: number;
  readonly compactEveryEntries: number;
  readonly compactMarginEntries: number;
  readonly mempool: MempoolLimits;
  /** Every block, once, as it is applied: its encoded size and how long from its cut to its commit on the leader. */
  readonly onBlock: (block: Block, result: ApplyResult, bytes: number, commitLatencyMs: number) => void;
}

/** The daemon's Raft timing (daemon/node.ts DEFAULT_TIMING) and a LAN's delays. */
export const DEFAULT_SIM_CLUSTER: Omit<SimClusterOptions, "seed" | "voters" | "genesis" | "signers" | "verifier" | "startMs" | "onBlock"> = {
  tickMs: 100,
  electionTicks: 10,
  heartbeatTicks: 1,
  blockIntervalMs: 1_000,
  delayMsMin: 1,
  delayMsMax: 20,
  fsyncMs: 5,
  gapWaitMs: 3_000,
  compactEveryEntries: 256,
  compactMarginEntries: 64,
  mempool: DEFAULT_MEMPOOL_LIMITS,
};

export interface SimClusterStats {
  messages: number;
  leaderChanges: number;
  blocksCut: number;
  txsSubmitted: number;
  txsRefused: number; // by the leader's mempool (full, stale, duplicate)
  txsLost: number; // forwarded to a box that no longer led
  compactions: number;
}

interface Voter {
  readonly id: NodeId;
  readonly raft: RaftNode;
  readonly mempool: Mempool;
  appliedIndex: number;
  persisting: boolean;
  /** Given to this box while it knew no leader: forwarded at the next block tick. */
  held: SignedTx[];
  /** What it forwards to the leader this millisecond: one message. */
  forwarding: { readonly atMs: number; readonly to: Voter; readonly txs: SignedTx[] } | null;
}

/** A recent applied point, kept by its Raft index: the chain there (for compaction snapshots). */
interface Point {
  readonly term: number;
  readonly height: number;
  readonly blockHash: Hash;
}

export class SimCluster {
  private readonly queue = new EventQueue();
  private readonly rng: Rng;
  private readonly voters: Voter[] = [];
  private current: LedgerState;
  /** The Raft index the shared state has applied, and the recent points behind it. */
  private appliedIndex = 0;
  private readonly points = new Map<number, Point>(); // by Raft index, the last few hundred
  /** Blocks proposed and not yet applied, by Raft index: when they were cut, and the block (the daemon too keeps what it decoded). */
  private readonly proposed = new Map<number, { readonly atMs: number; readonly bytes: Uint8Array; readonly block: Block }>();
  private lastLeader: NodeId | null = null;
  /** Per voter: the transactions handed to it at this millisecond, one message in flight. */
  private readonly outgoing: ({ readonly atMs: number; readonly txs: SignedTx[] } | undefined)[] = [];
  private now: number;
  readonly stats: SimClusterStats = { messages: 0, leaderChanges: 0, blocksCut: 0, txsSubmitted: 0, txsRefused: 0, txsLost: 0, compactions: 0 };

  constructor(private readonly o: SimClusterOptions) {
    assert(o.voters >= 1 && o.signers.length >= o.voters, "a signer for every voter");
    assert(o.delayMsMin >= 1 && o.delayMsMax >= o.delayMsMin, "messages take at least a millisecond");
    this.rng = new Rng(o.seed);
    this.current = o.genesis;
    this.now = o.startMs;
    const ids = Array.from({ length: o.voters }, (_, i) => i + 1);
    for (const id of ids) {
      const raft = new RaftNode(
        { id, voters: ids, electionTicks: o.electionTicks, heartbeatTicks: o.heartbeatTicks, preVote: true, checkQuorum: true, randomInt: (k) => this.rng.int(0, k - 1) },
        { hardState: { term: 0, vote: null, commit: 0 }, snapshot: null, entries: [] },
      );
      const v: Voter = { id, raft, mempool: new Mempool(o.mempool), appliedIndex: 0, persisting: false, held: [], forwarding: null };
      this.voters.push(v);
      this.scheduleTick(v);
      this.scheduleBlockTick(v);
    }
  }

  /** The ledger as applied so far. */
  get state(): LedgerState {
    return this.current;
  }

  get nowMs(): number {
    return this.now;
  }

  /**
   * Boxes hand signed transactions to voter `via` (0-based) now; they reach the leader's pool over the
   * network. What is handed to one voter at one millisecond travels as one message (the boxes of a
   * neighbourhood read their meters in step), in the order given.
   */
  submit(tx: SignedTx, via: number): void {
    const k = via % this.voters.length;
    this.stats.txsSubmitted++;
    const batch = this.outgoing[k];
    if (batch !== undefined && batch.atMs === this.now) {
      batch.txs.push(tx);
      return;
    }
    const fresh = { atMs: this.now, txs: [tx] };
    this.outgoing[k] = fresh;
    const v = this.voters[k] as Voter;
    this.send(() => {
      if (this.outgoing[k] === fresh) this.outgoing[k] = undefined;
      for (const t of fresh.txs) this.receive(v, t);
    });
  }

  /** Run every event up to and including `timeMs`. */
  runUntil(timeMs: number): void {
    for (let at = this.queue.peekAt(); at !== undefined && at <= timeMs; at = this.queue.peekAt()) {
      const e = this.queue.pop();
      assert(e !== undefined && e.at >= this.now, "simulated time never goes back");
      this.now = e.at;
      e.run();
    }
    this.now = Math.max(this.now, timeMs);
  }

  // ---- transactions ----

  private receive(v: Voter, tx: SignedTx): void {
    if (v.raft.role === Role.leader) {
      const r = v.mempool.add(tx, lastSeqOf(this.current, tx.tx.author), this.now);
      if (!r.ok) this.stats.txsRefused++;
      return;
    }
    const lead = v.raft.lead;
    if (lead === null) {
      v.held.push(tx);
      return;
    }
    this.forward(v, this.voters[lead - 1] as Voter, tx);
  }

  /** A follower forwards to the leader it knows; what it forwards in one millisecond goes as one message. */
  private forward(from: Voter, to: Voter, tx: SignedTx): void {
    const batch = from.forwarding;
    if (batch !== null && batch.atMs === this.now && batch.to === to) {
      batch.txs.push(tx);
      return;
    }
    const fresh = { atMs: this.now, to, txs: [tx] };
    from.forwarding = fresh;
    this.send(() => {
      if (from.forwarding === fresh) from.forwarding = null;
      for (const t of fresh.txs) {
        if (to.raft.role !== Role.leader) this.stats.txsLost++;
        else this.receive(to, t);
      }
    });
  }

  private send(deliver: () => void): void {
    this.stats.messages++;
    this.queue.push(this.now + this.o.delayMsMin + this.rng.int(0, this.o.delayMsMax - this.o.delayMsMin), deliver);
  }

  // ---- Raft ----

  private scheduleTick(v: Voter): void {
    this.queue.push(this.now + this.o.tickMs, () => {
      v.raft.tick();
      this.processReady(v);
      this.scheduleTick(v);
    });
  }

  private deliver(m: Message): void {
    const to = this.voters[m.to - 1];
    assert(to !== undefined, "messages go to voters");
    this.send(() => {
      to.raft.stepMessage(m);
      this.processReady(to);
    });
  }

  private processReady(v: Voter): void {
    for (const m of v.raft.takeImmediateMessages()) this.deliver(m);
    if (v.persisting || !v.raft.hasReady()) return;
    const rd: Ready = v.raft.ready();
    assert(rd.snapshot === null, "no voter falls behind the compaction margin without faults");
    v.persisting = true;
    const latency = rd.hardState !== null || rd.entries.length > 0 ? this.o.fsyncMs : 0;
    this.queue.push(this.now + latency, () => {
      for (const m of rd.messages) this.deliver(m); // only now: what they promise is durable
      this.apply(v, rd.committed);
      v.raft.advance(rd);
      v.persisting = false;
      this.noteLeader(v);
      this.maybeCompact(v);
      if (this.canCut(v) && this.now >= this.current.timeMs + this.o.blockIntervalMs) this.cutBlock(v);
      this.processReady(v);
    });
  }

  private noteLeader(v: Voter): void {
    if (v.raft.role !== Role.leader || this.lastLeader === v.id) return;
    if (this.lastLeader !== null) this.stats.leaderChanges++;
    this.lastLeader = v.id;
  }

  private apply(v: Voter, entries: readonly Entry[]): void {
    for (const e of entries) {
      assert(e.index === v.appliedIndex + 1, "each voter applies its committed log in order");
      if (e.index > this.appliedIndex) this.applyShared(e);
      else {
        // Invariant: same index, same term, same entry (log matching); the state applied there is the one.
        const p = this.points.get(e.index);
        assert(p === undefined || p.term === e.term, `voter ${v.id} applies a different entry at ${e.index}`);
      }
      v.appliedIndex = e.index;
    }
  }

  private applyShared(e: Entry): void {
    assert(e.index === this.appliedIndex + 1, "the shared state applies the committed log in order");
    const mine = this.proposed.get(e.index);
    this.proposed.delete(e.index);
    const out = applyEntry(this.current, e, this.o.verifier, mine !== undefined && mine.bytes === e.data ? mine.block : undefined);
    if (out.kind === "skip") throw new Error(`committed entry ${e.index} is not a valid next block (${out.code}): ${out.reason}`);
    this.appliedIndex = e.index;
    if (out.kind === "block") {
      this.current = out.result.state;
      for (const v of this.voters) if (v.raft.role === Role.leader) v.mempool.removeCommitted(out.block.txs, (a) => lastSeqOf(this.current, a));
      this.o.onBlock(out.block, out.result, e.data.length, mine === undefined ? 0 : this.now - mine.atMs);
    }
    this.points.set(e.index, { term: e.term, height: this.current.height, blockHash: this.current.blockHash });
    this.points.delete(e.index - 2 * (this.o.compactEveryEntries + this.o.compactMarginEntries));
  }

  private maybeCompact(v: Voter): void {
    const snapIndex = v.raft.firstIndex - 1;
    if (v.appliedIndex - snapIndex < this.o.compactEveryEntries + this.o.compactMarginEntries) return;
    const index = v.appliedIndex - this.o.compactMarginEntries;
    const p = this.points.get(index);
    assert(p !== undefined, "a recent point to compact to");
    v.raft.compact(index, encodeChainPoint({ height: p.height, blockHash: p.blockHash }));
    this.stats.compactions++;
  }

  // ---- blocks ----

  private scheduleBlockTick(v: Voter): void {
    const interval = this.o.blockIntervalMs;
    this.queue.push(this.now + interval - (this.now % interval), () => {
      if (v.held.length > 0 && (v.raft.role === Role.leader || v.raft.lead !== null)) {
        const held = v.held;
        v.held = [];
        for (const tx of held) this.receive(v, tx);
      }
      if (this.canCut(v)) this.cutBlock(v);
      this.scheduleBlockTick(v);
    });
  }

  /** Leading, and everything in the log applied: the head is final and the next block can be built on it. */
  private canCut(v: Voter): boolean {
    return v.raft.role === Role.leader && v.appliedIndex === v.raft.lastIndex && !v.persisting;
  }

  private cutBlock(v: Voter): void {
    assert(v.appliedIndex === this.appliedIndex, "a leader cuts on the shared head");
    const head = this.current;
    const p = head.chain.genesis.ledger;
    const txs = v.mempool.select(p.txsPerBlockMax, p.blockBytesMax - 4096, { lastSeqOf: (a) => lastSeqOf(head, a), nowMs: this.now, gapWaitMs: this.o.gapWaitMs });
    const block = buildBlock(
      { height: head.height + 1, parentHash: head.blockHash, timeMs: nextBlockTimeMs(this.now, head.timeMs), stateRoot: head.tree.root, proposer: v.id - 1, raftTerm: v.raft.term, raftIndex: v.raft.lastIndex + 1, txs },
      this.o.signers[v.id - 1] as Signer,
      head.chain.hash,
    );
    const bytes = encodeBlock(block);
    if (v.raft.propose(bytes)) {
      this.stats.blocksCut++;
      this.proposed.set(block.header.raftIndex, { atMs: this.now, bytes, block });
      this.processReady(v);
    }
  }
}
