// One box in the neighbourhood's Raft cluster: the shell that joins the pure
// Raft core (ledger/raft/raft.ts), its durable log in a worker thread
// (async-raft-log.ts), the TCP transport, the transaction pool and the
// ledger. Everything here is I/O and timers; every decision that must be the
// same on every box lives in a pure core (raft.ts, replicated.ts, state.ts).
//
// The Ready loop (the contract of raft.ts, as the simulator's shell does it):
//   rd = raft.ready()
//   check rd.entries' signatures ahead            in a worker thread (signature-checks.ts)
//   await raftLog.save(rd.hardState, rd.entries)   fsynced, in a worker thread
//   send rd.messages                               only now: what they promise is durable
//   await the checks of rd.committed's blocks
//   apply rd.committed                             committed entries -> blocks (replicated.ts)
//   raft.advance(rd)
// One Ready is in flight at a time. Meanwhile messages are stepped and ticks
// counted, and heartbeats go out at once (takeImmediateMessages): an SD card
// stalled in fsync for seconds does not silence a leader.
//
// Blocks: the leader cuts one every blockIntervalMs, aligned to the wall
// clock's interval boundaries, empty ones too, from its pool, and proposes it
// as one Raft entry. It cuts the next only when everything in its log is
// applied (so a block's state root is the one after its parent, which the
// header must carry), and at once when the head is older than an interval
// (after an election). Its clock only ever moves the chain's time forward
// (replicated.ts nextBlockTimeMs): a leader whose clock is behind cannot take
// the chain's time backwards. (One whose clock runs fast can push it ahead;
// every box counts blocks timed ahead of its own clock and warns.)
//
// Transactions: any box accepts one (submit), checks what it can without a
// block (decoding, author, signature, sequence), pools it, and forwards it
// to the leader. A box re-forwards what is still pooled after
// resubmitAfterMs (then after 3x, 7x ... as long: mempool.ts dueForResend)
// and whenever the leader changes; the leader's pool drops duplicates.
// fate(id) answers pending / committed at height H with result R / rejected
// with a reason. Signatures are checked in a worker thread, once per box
// (signature-checks.ts): at submit, or when a block's entry arrives.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { assert, bytesEqual } from "../ledger/assert.js";
import { type Block, decodeBlock, encodeBlock } from "../ledger/block.js";
import { AnchorVotes, CatchUpError, CheckpointParts, HeaderWalk } from "../ledger/checkpoint-fetch.js";
import { BlockRejectedError, DecodeError, PeergridError, StoreError } from "../ledger/errors.js";
import { type Hash, toHex } from "../ledger/hash.js";
import type { NodeSigner } from "../ledger/keys.js";
import { Ledger } from "../ledger/ledger.js";
import { Mempool, type MempoolLimits, DEFAULT_MEMPOOL_LIMITS } from "../ledger/mempool.js";
import { AsyncRaftLog } from "../ledger/raft/async-raft-log.js";
import type { ConfChange } from "../ledger/raft/conf-change.js";
import { type Entry, type Message, type NodeId, RaftNode, type Ready, Role } from "../ledger/raft/raft.js";
import { GLOBAL_KEY, type KeyRecord, type MemberRecord, memberKey, publicKeyKey } from "../ledger/records.js";
import { type ChainPoint, applyEntry, decodeChainPoint, encodeChainPoint, nextBlockTimeMs } from "../ledger/replicated.js";
import { type ApplyResult, ResultCode, genesisState, lastSeqOf, resultName } from "../ledger/state.js";
import { Role as MemberRole, type SignedTx, TX_BYTES_MAX_ANY, decodeTx, signatureOf, writeTxSigningMessage } from "../ledger/tx.js";
import { LatencyRecorder, type LatencySummary } from "./latency.js";
import { LedgerPruner, type RetentionOptions, type RetentionStatus } from "./ledger-pruner.js";
import { LedgerCheckpointer } from "./ledger-checkpointer.js";
import { type SignatureCheckStats, SignatureChecks } from "./signature-checks.js";
import {
  BLOCKS_MESSAGE_BYTES_MAX,
  BLOCKS_PER_MESSAGE_MAX,
  CHECKPOINT_BYTES_MAX,
  CHECKPOINT_FULL_PART,
  CHECKPOINT_PART_BYTES_MAX,
  CHECKPOINT_PART_RECORDS_MAX,
  CHECKPOINT_RECORDS_MAX,
  CHECKPOINTS_LISTED_MAX,
  FORWARD_TXS_MAX,
  HEADERS_PER_MESSAGE_MAX,
  type PeerAnswer,
  type PeerMessage,
  chunkByBytes,
} from "./peer-wire.js";
import { type LinkMessage, type PeerAddress, Transport, type TransportLimits, memberKeysOf } from "./transport.js";

export const RAFT_LOG_FILE = "raft.sqlite";

/**
 * Timing defaults, chosen for SD cards and Wi-Fi (BENCHMARKS.md, sim/):
 * a tick of 100 ms, heartbeats every tick, an election after 10 to 20 ticks
 * (1-2 s) without a leader. Heartbeats bypass a stalled fsync, so a 2 s
 * stall does not cause an election (the simulator shows it); a dead leader
 * is replaced within about 2 s, and the first block follows at once.
 */
export interface NodeTiming {
  readonly tickMs: number;
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly blockIntervalMs: number;
  /** A pooled transaction not yet in a block is forwarded to the leader again after this. */
  readonly resubmitAfterMs: number;
  /** A transaction behind a sequence gap waits this long for its predecessor (mempool.ts select). */
  readonly gapWaitMs: number;
  /** Clock disagreement worth a warning: blocks this far ahead of this box's clock, or a head this far ahead of a leader's. */
  readonly clockSkewMaxMs: number;
}

export const DEFAULT_TIMING: NodeTiming = {
  tickMs: 100,
  electionTicks: 10,
  heartbeatTicks: 1,
  blockIntervalMs: 1_000,
  resubmitAfterMs: 2_000,
  gapWaitMs: 3_000,
  clockSkewMaxMs: 5_000,
};

export type LogLevel = "info" | "warn" | "error";
export type NodeLog = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export interface BoxNodeOptions {
  /** Holds ledger.sqlite (made by `peergrid init`) and raft.sqlite. */
  readonly dataDir: string;
  readonly signer: NodeSigner;
  /** Raft addresses of the other boxes, by member index. */
  readonly peers: ReadonlyMap<NodeId, PeerAddress>;
  readonly listenHost?: string;
  readonly listenPort?: number;
  readonly timing?: Partial<NodeTiming>;
  readonly mempool?: Partial<MempoolLimits>;
  readonly transportLimits?: Partial<TransportLimits>;
  /** The wall clock (ms since the epoch); a test may skew it, the demo runs it fast (clockRate). */
  readonly now?: () => number;
  /**
   * How many of `now`'s ms pass in one real ms (default 1; the demo's accelerated clock, daemon/sim-clock.ts).
   * timing.blockIntervalMs, resubmitAfterMs, gapWaitMs and clockSkewMaxMs are in `now`'s ms; timers armed
   * from them are divided by this. The Raft tick is real.
   */
  readonly clockRate?: number;
  readonly log?: NodeLog;
  /** Called once if the box cannot go on (its Raft log failed): it has stopped taking part. */
  readonly onFatal?: (err: Error) => void;
  readonly compaction?: Partial<CompactionOptions>;
  /** Keep raw readings for a window only (ledger-pruner.ts); absent: keep every reading. */
  readonly retention?: RetentionOptions;
  /** Milliseconds of fsync stall added to every Raft log save (tests of slow SD cards). */
  readonly raftLogStallMs?: number;
}

export type TxFate =
  | { readonly status: "pending"; readonly id: string; readonly sinceMs: number }
  | { readonly status: "committed"; readonly id: string; readonly height: number; readonly index: number; readonly result: string; readonly resultCode: number }
  | { readonly status: "rejected"; readonly id: string; readonly code: string; readonly message: string }
  | { readonly status: "unknown"; readonly id: string };

export type SubmitOutcome = { readonly ok: true; readonly id: string; readonly fate: TxFate } | { readonly ok: false; readonly id: string | null; readonly code: string; readonly message: string };

export interface NodeCounters {
  blocksProposed: number;
  blocksApplied: number;
  entriesSkipped: number;
  blockTicksBusy: number; // interval boundaries with the previous block still uncommitted
  txsSubmitted: number;
  txsRefused: number;
  txsForwarded: number;
  txsReceivedForwarded: number;
  txsExpired: number;
  clockBehindChain: number; // blocks this box cut with its clock far behind the chain's head time
  blocksAheadOfClock: number; // committed blocks timed more than clockSkewMaxMs after this box's clock
  blocksCaughtUp: number; // blocks fetched from peers after a snapshot
  checkpointsInstalled: number; // peers' checkpoints installed in place of blocks they pruned
  compactions: number;
}

export interface CompactionOptions {
  /** Entries kept behind the applied index, so a box a little behind catches up from the log. */
  readonly keepEntries: number;
  /** Compact when this many entries have been applied since the last snapshot. */
  readonly everyEntries: number;
}

/** Two minutes of one-second blocks kept, compacted every two minutes: at most ~240 blocks held in memory. */
export const DEFAULT_COMPACTION: CompactionOptions = { keepEntries: 120, everyEntries: 120 };

interface DurablePoint {
  readonly index: number; // the Raft index of the block
  readonly point: ChainPoint;
}

const DURABLE_POINTS_MAX = 4_096;

export interface NodeStatus {
  readonly boxId: NodeId;
  readonly name: string;
  readonly role: Role;
  readonly term: number;
  readonly leader: NodeId | null;
  readonly height: number;
  readonly lastBlockHash: string;
  readonly lastBlockTimeMs: number;
  readonly commitIndex: number;
  readonly appliedIndex: number;
  readonly peers: readonly { readonly id: NodeId; readonly connected: boolean; readonly queuedBytes: number }[];
  readonly mempool: { readonly txs: number; readonly bytes: number };
  /** ledger.sqlite is fsynced through this Raft index (ledger-checkpointer.ts); later blocks are replayable from raft.sqlite. */
  readonly durableRaftIndex: number;
  readonly commitLatencyMs: LatencySummary;
  readonly counters: NodeCounters;
  /** Where signature checks were made: ahead in the worker, answered from a remembered verdict, or on the spot. */
  readonly signatureChecks: SignatureCheckStats;
  /** Retention of raw readings; null: every reading is kept. */
  readonly retention: RetentionStatus | null;
  /** 0: this box holds the chain from genesis; B: it caught up from a peer's checkpoint of the state after block B and never held some blocks before B. */
  readonly historyFrom: number;
}

const STOPPED: SubmitOutcome = { ok: false, id: null, code: "PG_ERR_STOPPED", message: "this box is shutting down" };

/** Bounded memory of what became of transactions submitted here (the oldest forgotten first). */
const FATES_MAX = 200_000;

/** What one catch-up has learnt of the other boxes (node.ts catchUp). */
interface CatchUpRound {
  /** `${box}/${height}`: checkpoints refused in this catch-up, not fetched again. */
  readonly refused: Set<string>;
  /** Boxes that pruned the blocks asked for since the head last moved: the checkpoint heights each holds. */
  readonly offers: Map<NodeId, readonly number[]>;
  /** Boxes asked for blocks since the head last moved (or the last install attempt). */
  readonly asked: Set<NodeId>;
  /** The boxes that vouched for the snapshot's block. */
  readonly anchor: AnchorVotes;
}

/** How long catchUp waits for a peer's answer (blocks, headers, a checkpoint part of 1 MiB at most) before asking another. */
const PEER_ANSWER_TIMEOUT_MS = 5_000;
/** catchUp's pause after a round that moved nothing (no answer, nothing new, a refused answer): no busy loop of requests. */
const CATCH_UP_RETRY_MS = 250;

export class BoxNode {
  readonly id: NodeId;
  readonly timing: NodeTiming;
  readonly counters: NodeCounters = {
    blocksProposed: 0,
    blocksApplied: 0,
    entriesSkipped: 0,
    blockTicksBusy: 0,
    txsSubmitted: 0,
    txsRefused: 0,
    txsForwarded: 0,
    txsReceivedForwarded: 0,
    txsExpired: 0,
    clockBehindChain: 0,
    blocksAheadOfClock: 0,
    blocksCaughtUp: 0,
    checkpointsInstalled: 0,
    compactions: 0,
  };
  readonly commitLatency = new LatencyRecorder(100_000);
  private readonly mempool: Mempool;
  private readonly now: () => number;
  private readonly clockRate: number;
  private readonly log: NodeLog;
  private transport!: Transport;
  private appliedIndex: number;
  private persisting = false;
  private stopped = false;
  private fatal: Error | null = null;
  private lastLeader: NodeId | null = null;
  private lastClockWarningMs = -Infinity;
  private lastPruneWarningMs = -Infinity;
  private readonly submittedAt = new Map<string, number>(); // txs submitted here and still pending
  private readonly fates = new Map<string, TxFate>();
  private forwardQueue: SignedTx[] = [];
  private readonly timers: NodeJS.Timeout[] = [];
  private blockTimer: NodeJS.Timeout | null = null;
  private readonly scratch: Uint8Array;
  private readonly listeners = new Set<(block: Block, result: ApplyResult) => void>();
  private readonly compaction: CompactionOptions;
  private syncTarget: { point: ChainPoint; index: number } | null = null;
  private answerWaiter: ((m: PeerAnswer) => boolean) | null = null; // the one answer catchUp waits for (ask)
  private readonly durablePoints: DurablePoint[] = [];
  private readonly checkpointer: LedgerCheckpointer;
  private readonly pruner: LedgerPruner | null;
  /**
   * Blocks of appended, not yet applied entries, by Raft index: decoded when
   * the entry arrived (so the apply does not decode them again), and their
   * signature checks started then (processReady). Dropped at the apply.
   */
  private readonly ahead = new Map<number, { readonly data: Uint8Array; readonly block: Block; readonly checked: Promise<unknown> }>();

  private constructor(
    private readonly opts: BoxNodeOptions,
    private readonly checks: SignatureChecks,
    readonly ledger: Ledger,
    private readonly raftLog: AsyncRaftLog,
    private readonly raft: RaftNode,
    id: NodeId,
  ) {
    this.id = id;
    this.compaction = { ...DEFAULT_COMPACTION, ...opts.compaction };
    this.checkpointer = new LedgerCheckpointer(ledger.store.path, 0);
    this.timing = { ...DEFAULT_TIMING, ...opts.timing };
    this.mempool = new Mempool({ ...DEFAULT_MEMPOOL_LIMITS, ...opts.mempool });
    this.now = opts.now ?? Date.now;
    this.clockRate = opts.clockRate ?? 1;
    assert(this.clockRate >= 1 && Number.isInteger(this.clockRate), "the clock runs a whole number of times real time");
    this.log = opts.log ?? (() => {});
    this.pruner = opts.retention === undefined ? null : new LedgerPruner(ledger.store, opts.retention, (msg, fields) => this.log("info", msg, fields));
    const snap = raft.snapshot;
    if (snap !== null && ledger.state.raftIndex < snap.index) {
      // A snapshot was received and saved, but the blocks it stands for were not all fetched yet.
      this.appliedIndex = ledger.state.raftIndex;
      this.syncTarget = { point: decodeChainPoint(snap.data), index: snap.index };
    } else {
      this.appliedIndex = Math.min(ledger.state.raftIndex, raft.commit);
      if (this.appliedIndex > (snap?.index ?? 0)) raft.setApplied(this.appliedIndex);
    }
    this.scratch = new Uint8Array(ledger.state.chain.txSignPrefix.length + TX_BYTES_MAX_ANY);
  }

  /** Open the box's ledger and Raft log, join the cluster and start the timers. */
  static async start(opts: BoxNodeOptions): Promise<BoxNode> {
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    // Replayable: no fsync per block on the event loop; blocks lost to a power cut are re-applied from raft.sqlite.
    const checks = new SignatureChecks();
    let ledger: Ledger;
    try {
      ledger = Ledger.open(opts.dataDir, checks, { skipQuickCheck: true, durability: "replayable" });
    } catch (err) {
      await checks.close();
      throw err;
    }
    let raftLog: AsyncRaftLog | null = null;
    try {
      const id = memberIndexOf(ledger, opts.signer.publicKey);
      raftLog = await AsyncRaftLog.open(join(opts.dataDir, RAFT_LOG_FILE), {
        skipQuickCheck: true,
        ...(opts.raftLogStallMs !== undefined && { stallMsPerSave: opts.raftLogStallMs }),
      });
      const storage = await raftLog.load();
      const timing = { ...DEFAULT_TIMING, ...opts.timing };
      const { voters, learners } = initialConfiguration(ledger);
      // A box not in the genesis configuration (enrolled later) starts outside it and waits to hear a
      // leader: the leader adds it once the ledger says it is a box (reconcileMembership).
      const raft = new RaftNode(
        {
          id,
          voters,
          learners,
          electionTicks: timing.electionTicks,
          heartbeatTicks: timing.heartbeatTicks,
          preVote: true,
          checkQuorum: true,
          randomInt: (n) => Math.floor(Math.random() * n),
        },
        storage,
      );
      const node = new BoxNode(opts, checks, ledger, raftLog, raft, id);
      await node.startTransport();
      node.startTimers();
      node.log("info", "box started", { box: id, height: ledger.state.height, term: raft.term, commit: raft.commit, voters, learners });
      return node;
    } catch (err) {
      await raftLog?.close();
      ledger.close();
      await checks.close();
      throw err;
    }
  }

  private async startTransport(): Promise<void> {
    const peers = this.opts.peers;
    this.transport = await Transport.start({
      id: this.id,
      signer: this.opts.signer,
      verifier: this.checks,
      chainHash: this.ledger.state.chain.hash,
      members: memberKeysOf(() => this.ledger.state),
      addresses: (i) => peers.get(i) ?? null,
      onMessage: (from, m) => this.onLinkMessage(from, m),
      random: Math.random,
      ...(this.opts.listenHost !== undefined && { listenHost: this.opts.listenHost }),
      ...(this.opts.listenPort !== undefined && { listenPort: this.opts.listenPort }),
      ...(this.opts.transportLimits !== undefined && { limits: this.opts.transportLimits }),
    });
  }

  private startTimers(): void {
    const t = this.timing;
    this.timers.push(
      setInterval(() => {
        this.raft.tick();
        this.pump();
      }, t.tickMs),
    );
    this.timers.push(setInterval(() => this.housekeeping(), 250));
    this.scheduleBlockTick();
  }

  get raftPort(): number {
    return this.transport.port;
  }

  get role(): Role {
    return this.raft.role;
  }

  get term(): number {
    return this.raft.term;
  }

  get leader(): NodeId | null {
    return this.raft.lead;
  }

  /** Called for every block this box applies, after it is stored. */
  onBlock(listener: (block: Block, result: ApplyResult) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // ---------------------------------------------------------------- the Ready loop

  private pump(): void {
    if (this.stopped) return;
    for (const m of this.raft.takeImmediateMessages()) this.transport.send(m);
    if (this.persisting || !this.raft.hasReady()) return;
    this.persisting = true;
    this.processReady(this.raft.ready()).then(
      () => {
        if (this.stopped) return;
        this.persisting = false;
        this.afterReady();
        this.pump();
      },
      (err: unknown) => this.die(err instanceof Error ? err : new Error(String(err))),
    );
  }

  /** One Ready, in the order of the contract (raft.ts). */
  private async processReady(rd: Ready): Promise<void> {
    this.checkEntriesAhead(rd.entries); // in the worker, while the entries are saved and replicated
    if (rd.hardState !== null || rd.entries.length > 0 || rd.snapshot !== null) await this.raftLog.save(rd.hardState, rd.entries, rd.snapshot);
    if (this.stopped) return;
    for (const m of rd.messages) this.transport.send(m);
    if (rd.snapshot !== null) this.syncTarget = { point: decodeChainPoint(rd.snapshot.data), index: rd.snapshot.index };
    if (this.syncTarget !== null) await this.catchUp(this.syncTarget);
    if (rd.committed.length > 0) await this.checkedAheadOf(rd.committed);
    if (this.stopped) return;
    this.applyCommitted(rd.committed);
    this.raft.advance(rd);
  }

  // ---------------------------------------------------------------- signatures, ahead of the apply

  /**
   * Start checking the signatures of the blocks in newly appended entries, in
   * the worker (signature-checks.ts): the apply of a committed block then
   * finds its verdicts remembered and the event loop stays free for
   * heartbeats and the block timer. An entry that is not a block is left to
   * the apply, which skips it.
   */
  private checkEntriesAhead(entries: readonly Entry[]): void {
    for (const e of entries) {
      if ((e.kind ?? 0) !== 0 || e.data.length === 0) continue;
      let block: Block;
      try {
        block = decodeBlock(e.data);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        continue;
      }
      const checked = this.checks.hasRoomFor(block.txs.length) ? this.checkTxsAhead(block.txs) : Promise.resolve();
      this.ahead.set(e.index, { data: e.data, block, checked });
    }
  }

  /** The checks of these entries' blocks, done. */
  private async checkedAheadOf(entries: readonly Entry[]): Promise<void> {
    const waits: Promise<unknown>[] = [];
    for (const e of entries) {
      const a = this.ahead.get(e.index);
      if (a !== undefined) waits.push(a.checked);
    }
    if (waits.length > 0) await Promise.all(waits);
  }

  /** The block decoded when this entry arrived (null if it was not, or the entry at its index was replaced since). */
  private takeDecoded(e: Entry): Block | undefined {
    const a = this.ahead.get(e.index);
    this.ahead.delete(e.index);
    return a !== undefined && a.data === e.data ? a.block : undefined;
  }

  /** Check these transactions' signatures in the worker, with their authors' keys as the ledger holds them now. */
  private checkTxsAhead(txs: readonly SignedTx[]): Promise<unknown> {
    const state = this.ledger.state;
    const waits: Promise<boolean>[] = [];
    for (const t of txs) {
      const author = state.tree.get(memberKey(t.tx.author));
      if (author === undefined || author.kind !== "member") continue; // enrolled in a block not yet applied: checked at the apply
      const message = writeTxSigningMessage(this.scratch, state.chain.txSignPrefix, t.bytes);
      waits.push(this.checks.checkAhead(author.publicKey, message, signatureOf(t.bytes)));
    }
    return Promise.all(waits);
  }

  // ---------------------------------------------------------------- snapshots: catching up on blocks

  /**
   * Bring the ledger up to a snapshot's chain point by fetching the blocks it
   * lacks from other boxes and applying each through the full state machine
   * (a peer's word is never taken: a block that does not verify is refused and
   * another box asked). Heartbeats keep flowing meanwhile (pump's immediate
   * messages), so a long catch-up does not look like a dead box.
   *
   * A peer that pruned the readings of the blocks asked for (store.ts
   * retention) says so (blocksPruned, with the checkpoints it holds). Once
   * every other box was asked and none sent the blocks whole, this box
   * installs the newest checkpoint below the snapshot's block that a box
   * offers (the fewest headers to walk and blocks to re-apply), once other
   * boxes vouch for the snapshot's block (installCheckpointFrom), and goes
   * on with whole blocks after it.
   */
  private async catchUp(target: { point: ChainPoint; index: number }): Promise<void> {
    const { point } = target;
    const peers = () => [...this.raft.config.voters, ...this.raft.config.learners].filter((v) => v !== this.id);
    const voters = this.raft.config.voters.filter((v) => v !== this.id);
    const round: CatchUpRound = {
      refused: new Set(),
      offers: new Map(),
      asked: new Set(),
      // Two boxes but this one vouch for the snapshot's block, or the only other voter.
      anchor: new AnchorVotes(point, Math.max(1, Math.min(2, voters.length))),
    };
    let attempt = 0;
    while (!this.stopped && this.ledger.state.height < point.height) {
      // The leader every other time, and in between each other box in turn (learners too: an auditor may keep every block).
      const others = peers();
      const lead = this.raft.lead;
      const from = lead !== null && lead !== this.id && attempt % 2 === 0 ? lead : others[Math.floor(attempt / 2) % Math.max(1, others.length)];
      attempt++;
      if (from === undefined) throw new PeergridError("PG_ERR_CATCH_UP", "no other box to fetch blocks from");
      let progressed = await this.catchUpFrom(from, point, round);
      if (progressed) {
        round.asked.clear();
        round.offers.clear();
      } else if (!this.stopped && others.every((b) => round.asked.has(b)) && round.offers.size > 0) {
        progressed = await this.installBestCheckpoint(point, round);
        round.asked.clear(); // ask them all again before the next install
      }
      // No progress (no answer, nothing new, a refused answer): pause before the next box, rather than spin.
      if (!progressed && !this.stopped) await new Promise<void>((resolve) => setTimeout(resolve, CATCH_UP_RETRY_MS));
    }
    if (this.stopped) return;
    const at = this.ledger.store.header(point.height);
    if (at === null || !bytesEqual(at.hash, point.blockHash)) {
      throw new PeergridError("PG_ERR_CHAIN_DIVERGED", `the snapshot names block ${toHex(point.blockHash)} at height ${point.height}, this ledger holds ${at === null ? "none" : toHex(at.hash)}`);
    }
    this.appliedIndex = Math.max(this.appliedIndex, target.index);
    for (const index of this.ahead.keys()) if (index <= this.appliedIndex) this.ahead.delete(index);
    this.syncTarget = null;
    this.log("info", "caught up to the snapshot", { height: point.height, index: target.index });
  }

  /** One round of catching up from one box: its next blocks, or its word that it pruned them (an offer of its checkpoints). Whether the head moved. */
  private async catchUpFrom(from: NodeId, point: ChainPoint, round: CatchUpRound): Promise<boolean> {
    const fromHeight = this.ledger.state.height + 1;
    const answer = await this.requestBlocks(from, fromHeight, Math.min(BLOCKS_PER_MESSAGE_MAX, point.height - fromHeight + 1));
    round.asked.add(from);
    if (answer === null || this.stopped) return false;
    if (answer.type === "blocksPruned") {
      round.offers.set(from, answer.checkpoints);
      return false;
    }
    const blocks: Block[] = [];
    try {
      for (const bytes of answer.blocks) blocks.push(decodeBlock(bytes));
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.log("warn", "a fetched block does not decode; asking another box", { from, height: fromHeight + blocks.length, error: err.message });
    }
    await Promise.all(blocks.map((b) => (this.checks.hasRoomFor(b.txs.length) ? this.checkTxsAhead(b.txs) : null)));
    if (this.stopped) return false;
    for (const block of blocks) {
      if (this.ledger.state.height >= point.height) break;
      try {
        this.ledger.append(block);
        this.appliedIndex = Math.max(this.appliedIndex, block.header.raftIndex);
        this.counters.blocksCaughtUp++;
      } catch (err) {
        if (!(err instanceof BlockRejectedError)) throw err;
        this.log("warn", "a fetched block does not verify; asking another box", { from, height: this.ledger.state.height + 1, error: err.message });
        break;
      }
    }
    return this.ledger.state.height >= fromHeight;
  }

  /**
   * Install the newest checkpoint a box offers that lies between this
   * ledger's head and the snapshot's block (only an ancestor of that block
   * is anchored by its hash; a later checkpoint would be the peer's word)
   * and was not refused in this catch-up. Whether one was installed.
   */
  private async installBestCheckpoint(point: ChainPoint, round: CatchUpRound): Promise<boolean> {
    const head = this.ledger.state.height;
    let best: { from: NodeId; height: number } | null = null;
    for (const [from, heights] of round.offers) {
      for (const height of heights) {
        if (height > head && height < point.height && !round.refused.has(`${from}/${height}`) && (best === null || height > best.height)) best = { from, height };
      }
    }
    if (best === null) {
      // Every box pruned past the snapshot's block (this box was away, or catching up, for longer than their window).
      this.log("warn", "no box holds a checkpoint below the snapshot's block, nor the blocks whole; waiting for one", { head, snapshotHeight: point.height, offers: Object.fromEntries(round.offers) });
      return false;
    }
    if (!(await this.confirmAnchor(point, round))) return false;
    return this.installCheckpointFrom(best.from, best.height, point, round.refused);
  }

  /**
   * Have other boxes vouch for the snapshot's block (checkpoint-fetch.ts
   * AnchorVotes): Raft does not make the leader that sent the snapshot
   * honest, and a checkpoint is checked only against the chain down from
   * that block. Whether enough did.
   */
  private async confirmAnchor(point: ChainPoint, round: CatchUpRound): Promise<boolean> {
    const votes = round.anchor;
    for (const box of this.raft.config.voters) {
      if (votes.confirmed || this.stopped) break;
      if (box === this.id || votes.has(box)) continue;
      const request: PeerMessage = { type: "headersRequest", from: this.id, to: box, fromHeight: point.height, countMax: 1 };
      const headers = await this.ask(box, request, (m) => (m.type === "headers" && m.fromHeight === point.height ? m.headers : null));
      if (headers !== null && votes.take(box, headers) === "denied") {
        this.log("error", "a box names another block at the snapshot's height than the snapshot does: the snapshot or that box is not the chain's", { box, height: point.height, snapshotBlock: toHex(point.blockHash) });
      }
    }
    if (!votes.confirmed) this.log("warn", "not enough boxes vouch for the snapshot's block yet; no checkpoint is installed until they do", { height: point.height, needed: votes.needed, denials: votes.denials });
    return votes.confirmed;
  }

  /**
   * Install the checkpoint of the state after block B that box `from` holds
   * (it pruned the blocks up to B, or a later checkpoint it keeps). Its headers from the snapshot's block P
   * down to B are checked first, each the parent of the one above and the
   * first P's hash (checkpoint-fetch.ts HeaderWalk), then its records are
   * fetched part by part and installed only if they hash to the root block
   * B+1's header names (store.ts installCheckpoint: one SQLite transaction).
   * Anything wrong is logged and the next box asked; nothing is written. A
   * checkpoint refused for what it holds goes into `refused`, not to be
   * fetched again in this catch-up (one that timed out may be).
   */
  private async installCheckpointFrom(from: NodeId, height: number, point: ChainPoint, refused: Set<string>): Promise<boolean> {
    const head = this.ledger.state.height;
    assert(height > head && height < point.height, "a checkpoint between the head and the snapshot's block");
    const startedMs = performance.now();
    this.log("info", "a box pruned the blocks this ledger lacks: installing its checkpoint of the state after them", { from, height, head, snapshotHeight: point.height });
    try {
      const walk = new HeaderWalk(point, height, HEADERS_PER_MESSAGE_MAX);
      for (let want = walk.want(); want !== null; want = walk.want()) {
        const { fromHeight, count } = want;
        const request: PeerMessage = { type: "headersRequest", from: this.id, to: from, fromHeight, countMax: count };
        const headers = await this.ask(from, request, (m) => (m.type === "headers" && m.fromHeight === fromHeight ? m.headers : null));
        if (this.stopped) return false;
        if (headers === null) throw new CatchUpError("PG_ERR_CATCH_UP_TIMEOUT", `no answer for the headers of blocks ${fromHeight}..${fromHeight + count - 1}`);
        walk.take(fromHeight, headers);
      }
      const parts = new CheckpointParts(height, CHECKPOINT_RECORDS_MAX, CHECKPOINT_BYTES_MAX, CHECKPOINT_FULL_PART);
      while (!parts.done) {
        const afterKey = parts.afterKey;
        const request: PeerMessage = { type: "checkpointRequest", from: this.id, to: from, height, afterKey };
        const part = await this.ask(from, request, (m) => (m.type === "checkpoint" && m.height === height && m.afterKey === afterKey ? m : null));
        if (this.stopped) return false;
        if (part === null) throw new CatchUpError("PG_ERR_CATCH_UP_TIMEOUT", `no answer for the part of the checkpoint at ${height} after key "${afterKey}"`);
        parts.take(part);
      }
      const { header, nextHeader } = walk.result();
      const installed = this.ledger.installCheckpoint(header, nextHeader, parts.records);
      this.appliedIndex = Math.max(this.appliedIndex, this.ledger.state.raftIndex);
      this.counters.checkpointsInstalled++;
      this.transport.refreshMembership(); // members enrolled or removed in the blocks not held
      this.log("info", "installed a checkpoint: the history before it is not held here; fetching the blocks after it", {
        from,
        height,
        records: installed.records,
        headersChecked: point.height - height + 1,
        notHeld: this.ledger.store.historyGaps().at(-1) ?? null,
        ms: Math.round(performance.now() - startedMs),
      });
      return true;
    } catch (err) {
      if (!(err instanceof CatchUpError) && !(err instanceof StoreError)) throw err;
      if (err.code === "PG_ERR_CATCH_UP_TIMEOUT") {
        this.log("warn", "a box did not answer for its checkpoint in time; asking another box", { from, height, error: err.message });
        return false;
      }
      refused.add(`${from}/${height}`);
      this.log("warn", "a box's checkpoint was refused; nothing was written; asking another box", { from, height, code: err.code, error: err.message });
      return false;
    }
  }

  /** Blocks from `fromHeight`, or the box's word that it pruned them (null: no answer in time). */
  private requestBlocks(from: NodeId, fromHeight: number, countMax: number): Promise<Extract<PeerAnswer, { type: "blocks" | "blocksPruned" }> | null> {
    const request: PeerMessage = { type: "blocksRequest", from: this.id, to: from, fromHeight, countMax };
    return this.ask(from, request, (m) => ((m.type === "blocks" || m.type === "blocksPruned") && m.fromHeight === fromHeight ? m : null));
  }

  /**
   * Send `request` to box `to` and wait for its answer, the first message
   * from it that `match` takes (anything else is dropped), for at most
   * PEER_ANSWER_TIMEOUT_MS (null then). One question at a time: catchUp asks
   * them in turn.
   */
  private ask<T>(to: NodeId, request: PeerMessage, match: (m: PeerAnswer) => T | null): Promise<T | null> {
    assert(this.answerWaiter === null, "one question to a peer at a time");
    return new Promise((resolve) => {
      const waiter = (m: PeerAnswer): boolean => {
        if (m.from !== to) return false;
        const value = match(m);
        if (value === null) return false;
        clearTimeout(timer);
        this.answerWaiter = null;
        resolve(value);
        return true;
      };
      const timer = setTimeout(() => {
        if (this.answerWaiter === waiter) this.answerWaiter = null;
        resolve(null);
      }, PEER_ANSWER_TIMEOUT_MS);
      this.answerWaiter = waiter;
      this.transport.send(request);
    });
  }

  // ---------------------------------------------------------------- compaction

  /**
   * Compact the Raft log to a point the ledger has fsynced (the checkpointer
   * says so), keeping compactKeepEntries entries so that a box a little
   * behind catches up from the log, not a snapshot. What is compacted away is
   * in every box's ledger; a new box fetches it as blocks (catchUp).
   */
  private maybeCompact(): void {
    const c = this.compaction;
    const durable = this.checkpointer.durableRaftIndex;
    const candidate = [...this.durablePoints].reverse().find((p) => p.index <= durable && p.index <= this.appliedIndex - c.keepEntries);
    const snapIndex = this.raft.snapshot?.index ?? 0;
    if (candidate === undefined || candidate.index - snapIndex < c.everyEntries || this.persisting || this.syncTarget !== null) return;
    const snap = this.raft.compact(candidate.index, encodeChainPoint(candidate.point));
    this.raftLog.compact(snap).catch((err: unknown) => this.die(err instanceof Error ? err : new Error(String(err))));
    this.counters.compactions++;
    while (this.durablePoints.length > 0 && (this.durablePoints[0] as DurablePoint).index <= candidate.index) this.durablePoints.shift();
  }

  private noteCheckpointRequest(): void {
    const s = this.ledger.state;
    const last = this.durablePoints.at(-1);
    if (s.height === 0 || (last !== undefined && last.index >= s.raftIndex)) return;
    this.durablePoints.push({ index: s.raftIndex, point: { height: s.height, blockHash: s.blockHash } });
    if (this.durablePoints.length > DURABLE_POINTS_MAX) this.durablePoints.splice(0, this.durablePoints.length - DURABLE_POINTS_MAX);
    this.checkpointer.request(s.raftIndex);
  }

  // ---------------------------------------------------------------- membership

  /**
   * The leader keeps Raft's configuration equal to the ledger's membership:
   * active members with the box role vote, active auditors (without it)
   * follow as learners; anyone else is removed. One change at a time (the
   * core refuses another while one is pending), no restart anywhere.
   */
  private reconcileMembership(): void {
    if (this.raft.role !== Role.leader) return;
    const want = desiredConfiguration(this.ledger.state);
    const have = this.raft.config;
    const change = nextConfChange(have, want);
    if (change === null) return;
    if (this.raft.proposeConfChange(change)) {
      this.log("info", "proposing a membership change", { ...change });
      this.pump();
    }
  }

  private afterReady(): void {
    const lead = this.raft.lead;
    if (lead !== this.lastLeader) {
      this.log("info", "leader changed", { leader: lead, term: this.raft.term, role: this.raft.role });
      this.lastLeader = lead;
      if (lead !== null && lead !== this.id) this.forwardQueue = this.mempool.allForNewLeader(this.now()); // re-forward all to the new leader
    }
    this.flushForwards();
    // A new leader (or one whose last cut was busy) cuts a block at once when the head is an interval old.
    if (this.canCut() && this.now() >= this.ledger.state.timeMs + this.timing.blockIntervalMs) this.cutBlock();
  }

  private die(err: Error): void {
    if (this.fatal !== null) return;
    this.fatal = err;
    this.log("error", "the Raft log failed; this box stops taking part", { error: err.message });
    void this.stop().finally(() => this.opts.onFatal?.(err));
  }

  private applyCommitted(entries: readonly Entry[]): void {
    for (const e of entries) {
      const decoded = this.takeDecoded(e);
      if (e.index <= this.appliedIndex) continue; // applied before a restart: the ledger holds it
      const outcome = applyEntry(this.ledger.state, e, this.checks, decoded);
      if (outcome.kind === "block") {
        this.ledger.commitApplied(outcome.block, outcome.result);
        this.onApplied(outcome.block, outcome.result);
      } else if (outcome.kind === "skip") {
        this.counters.entriesSkipped++;
        this.log("warn", "committed entry skipped: not a valid next block", { index: e.index, term: e.term, code: outcome.code, reason: outcome.reason });
      }
      this.appliedIndex = e.index;
    }
  }

  private onApplied(block: Block, result: ApplyResult): void {
    this.counters.blocksApplied++;
    const nowMs = this.now();
    if (block.header.timeMs > nowMs + this.timing.clockSkewMaxMs) this.counters.blocksAheadOfClock++;
    const state = this.ledger.state;
    for (const t of this.mempool.removeCommitted(block.txs, (a) => lastSeqOf(state, a))) {
      // Acknowledged, then overtaken: say so (it would otherwise read "unknown" and stay in submittedAt for ever).
      const key = toHex(t.id);
      if (this.submittedAt.delete(key)) this.remember({ status: "rejected", id: key, code: "PG_ERR_TX_STALE_SEQUENCE", message: `member ${t.tx.author}'s sequence ${t.tx.seq} was taken by another of its transactions, committed first` });
    }
    block.txs.forEach((t, i) => {
      const key = toHex(t.id);
      const submitted = this.submittedAt.get(key);
      if (submitted === undefined) return;
      this.submittedAt.delete(key);
      this.commitLatency.record(Math.round((nowMs - submitted) / this.clockRate)); // real ms, on any clock
      const code = result.results[i] as number;
      this.remember({ status: "committed", id: key, height: block.header.height, index: i, result: resultName(code), resultCode: code });
    });
    if (block.txs.some((t) => t.tx.body.type === "member")) this.transport.refreshMembership();
    for (const l of this.listeners) l(block, result);
  }

  // ---------------------------------------------------------------- blocks

  private scheduleBlockTick(): void {
    if (this.stopped) return;
    const interval = this.timing.blockIntervalMs;
    const delay = Math.ceil((interval - (this.now() % interval)) / this.clockRate); // real ms to the clock's next boundary
    this.blockTimer = setTimeout(() => {
      this.blockTimer = null;
      if (this.raft.role === Role.leader) {
        if (this.canCut()) this.cutBlock();
        else this.counters.blockTicksBusy++;
      }
      this.scheduleBlockTick();
    }, delay);
  }

  /** Leading, and everything in the log applied: the head is final and the next block can be built on it. */
  private canCut(): boolean {
    return !this.stopped && this.raft.role === Role.leader && this.appliedIndex === this.raft.lastIndex && !this.persisting;
  }

  private cutBlock(): void {
    assert(this.canCut(), "cut only on a final head");
    const nowMs = this.now();
    const head = this.ledger.state;
    if (nowMs + this.timing.clockSkewMaxMs < head.timeMs) this.warnClock(nowMs, head.timeMs);
    const p = head.chain.genesis.ledger;
    const txs = this.mempool.select(p.txsPerBlockMax, p.blockBytesMax - 4096, { lastSeqOf: (a) => lastSeqOf(head, a), nowMs, gapWaitMs: this.timing.gapWaitMs });
    const block = this.ledger.propose(txs, this.opts.signer, this.id, nextBlockTimeMs(nowMs, head.timeMs), this.raft.term, this.raft.lastIndex + 1);
    if (this.raft.propose(encodeBlock(block))) {
      this.counters.blocksProposed++;
      this.pump();
    }
  }

  /**
   * This box's clock is far behind the chain. Either its clock is wrong or an
   * earlier leader's ran fast. It goes on cutting blocks (at parent + 1 ms,
   * so the chain's time never goes back and never stops the chain); handing
   * leadership away would stop every block if the chain itself ran ahead.
   * The operator is told, at most once a minute.
   */
  private warnClock(nowMs: number, headTimeMs: number): void {
    this.counters.clockBehindChain++;
    if (nowMs - this.lastClockWarningMs < 60_000 * this.clockRate) return;
    this.lastClockWarningMs = nowMs;
    this.log("warn", "this box's clock is far behind the chain's time: check its time source (NTP, or the RTC when offline)", { nowMs, headTimeMs, behindMs: headTimeMs - nowMs });
  }

  // ---------------------------------------------------------------- transactions

  /** Accept a signed transaction from a user, an app or this box's meters. */
  async submit(bytes: Uint8Array): Promise<SubmitOutcome> {
    if (this.stopped) return STOPPED;
    let tx: SignedTx;
    try {
      tx = decodeTx(new Uint8Array(bytes)); // a copy: decodeTx keeps a view of its input
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      this.counters.txsRefused++;
      return { ok: false, id: null, code: err.code, message: err.message };
    }
    const id = toHex(tx.id);
    const known = this.knownFate(tx, id);
    if (known !== null) return { ok: true, id, fate: known };
    const refusal = await this.precheck(tx);
    if (this.stopped) return STOPPED;
    // While the signature was checked, the same transaction may have been submitted again, or committed.
    const knownNow = this.knownFate(tx, id);
    if (knownNow !== null) return { ok: true, id, fate: knownNow };
    const stored = refusal !== null ? this.storedFate(tx.id) : null; // included by a careless leader, rejected there
    if (stored !== null) return { ok: true, id, fate: stored };
    const nowMs = this.now();
    const added = refusal ?? this.mempool.add(tx, lastSeqOf(this.ledger.state, tx.tx.author), nowMs);
    if (!added.ok) {
      this.counters.txsRefused++;
      this.remember({ status: "rejected", id, code: added.code, message: added.message });
      return { ok: false, id, code: added.code, message: added.message };
    }
    this.counters.txsSubmitted++;
    this.submittedAt.set(id, nowMs);
    if (this.raft.role !== Role.leader) {
      this.forwardQueue.push(tx);
      if (this.forwardQueue.length >= FORWARD_TXS_MAX) this.flushForwards();
      else queueMicrotask(() => this.flushForwards());
    }
    const fate: TxFate = { status: "pending", id, sinceMs: nowMs };
    return { ok: true, id, fate };
  }

  /**
   * Committed, or pending here. A block holds an authentic transaction only if its sequence number
   * is taken, so a new one (the hot path: every meter reading) costs no store query.
   */
  private knownFate(tx: SignedTx, id: string): TxFate | null {
    const numberTaken = tx.tx.seq <= lastSeqOf(this.ledger.state, tx.tx.author);
    const known = (numberTaken ? this.storedFate(tx.id) : null) ?? this.recentFate(id);
    return known.status === "committed" || known.status === "pending" ? known : null;
  }

  /** What a box can know of a transaction before a block: who signed it (checked in the worker). */
  private async precheck(t: SignedTx): Promise<{ ok: false; code: string; message: string } | null> {
    const state = this.ledger.state;
    const author = state.tree.get(memberKey(t.tx.author)) as MemberRecord | undefined;
    const refuse = (code: number, message: string) => ({ ok: false as const, code: `PG_ERR_TX_${resultName(code).replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`, message });
    if (author === undefined || author.kind !== "member") return refuse(ResultCode.unknownAuthor, `member ${t.tx.author} does not exist`);
    if (!author.active) return refuse(ResultCode.authorRemoved, `member ${t.tx.author} was removed`);
    const message = writeTxSigningMessage(this.scratch, state.chain.txSignPrefix, t.bytes);
    if (!(await this.checks.checkAhead(author.publicKey, message, signatureOf(t.bytes)))) return refuse(ResultCode.badSignature, `the signature does not verify with member ${t.tx.author}'s key on this chain`);
    return null;
  }

  fate(id: Hash): TxFate {
    return this.storedFate(id) ?? this.recentFate(toHex(id));
  }

  /** In a block of this ledger (an index lookup). */
  private storedFate(id: Hash): TxFate | null {
    const stored = this.ledger.store.getTx(id);
    return stored === null ? null : { status: "committed", id: toHex(id), height: stored.height, index: stored.index, result: resultName(stored.result), resultCode: stored.result };
  }

  /** What this box remembers without its store: a verdict it gave, or pending in its pool. */
  private recentFate(key: string): TxFate {
    const remembered = this.fates.get(key);
    if (remembered !== undefined) return remembered;
    const since = this.submittedAt.get(key);
    if (since !== undefined && this.mempool.has(key)) return { status: "pending", id: key, sinceMs: since };
    return { status: "unknown", id: key };
  }

  private remember(f: TxFate): void {
    this.fates.delete(f.id);
    this.fates.set(f.id, f);
    if (this.fates.size > FATES_MAX) this.fates.delete(this.fates.keys().next().value as string);
  }

  private flushForwards(): void {
    const lead = this.raft.lead;
    if (this.forwardQueue.length === 0 || lead === null || this.stopped) return;
    if (lead === this.id) {
      this.forwardQueue = []; // this box leads: its own pool is the block source
      return;
    }
    const txs = this.forwardQueue.map((t) => t.bytes);
    this.forwardQueue = [];
    for (const chunk of chunkByBytes(txs, FORWARD_TXS_MAX, 4 * 1024 * 1024)) {
      this.transport.send({ type: "forward", from: this.id, to: lead, txs: chunk });
      this.counters.txsForwarded += chunk.length;
    }
  }

  private onForward(from: NodeId, txs: readonly Uint8Array[]): void {
    // From an authenticated box, which checked each signature when it accepted
    // it; the block checks again. Here only what keeps the pool sound.
    const state = this.ledger.state;
    const nowMs = this.now();
    for (const bytes of txs) {
      let tx: SignedTx;
      try {
        tx = decodeTx(bytes);
      } catch (err) {
        if (!(err instanceof DecodeError)) throw err;
        this.log("warn", "a forwarded transaction does not decode", { from, error: err.message });
        continue;
      }
      const author = state.tree.get(memberKey(tx.tx.author));
      if (author === undefined || author.kind !== "member" || !author.active) continue;
      if (this.mempool.add(tx, author.lastSeq, nowMs).ok) this.counters.txsReceivedForwarded++;
    }
  }

  // ---------------------------------------------------------------- messages

  private onLinkMessage(from: NodeId, m: LinkMessage): void {
    if (this.stopped) return;
    switch (m.type) {
      case "forward":
        this.onForward(from, m.txs);
        return;
      case "blocksRequest":
        this.onBlocksRequest(m);
        return;
      case "headersRequest":
        this.transport.send({ type: "headers", from: this.id, to: m.from, fromHeight: m.fromHeight, headers: this.ledger.store.rawHeaders(m.fromHeight, m.countMax) });
        return;
      case "checkpointRequest":
        this.onCheckpointRequest(m);
        return;
      case "blocks":
      case "blocksPruned":
      case "headers":
      case "checkpoint":
        this.answerWaiter?.(m); // the answer catchUp waits for; anything else is dropped
        return;
      default: {
        const raftMessage: Message = m; // a compile error if a peer message type is not handled above
        this.raft.stepMessage(raftMessage);
        this.pump();
      }
    }
  }

  /**
   * Answer with the blocks asked for, as many as fit one message (at least
   * one: the asker goes on from there). A block held without its readings
   * (pruned) or not held at all cannot be sent whole: then say how far this
   * box pruned, so the asker fetches its checkpoint there instead.
   */
  private onBlocksRequest(m: Extract<PeerMessage, { type: "blocksRequest" }>): void {
    const blocks: Uint8Array[] = [];
    let bytes = 0;
    for (let h = m.fromHeight; h < m.fromHeight + m.countMax; h++) {
      const b = this.ledger.store.getBlock(h);
      if (b === null || b.readingsPruned) break;
      const encoded = encodeBlock(b.block);
      if (blocks.length > 0 && bytes + encoded.length > BLOCKS_MESSAGE_BYTES_MAX) break;
      blocks.push(encoded);
      bytes += encoded.length;
    }
    const prunedTo = this.ledger.store.readingsPrunedTo();
    if (blocks.length === 0 && m.fromHeight <= prunedTo) {
      const checkpoints = this.ledger.store
        .checkpoints()
        .map((c) => c.height)
        .filter((h) => h >= prunedTo)
        .slice(-CHECKPOINTS_LISTED_MAX);
      if (checkpoints[0] !== prunedTo) checkpoints.unshift(prunedTo); // more than the message lists: the oldest, then the newest
      this.transport.send({ type: "blocksPruned", from: this.id, to: m.from, fromHeight: m.fromHeight, prunedTo, checkpoints: checkpoints.slice(0, CHECKPOINTS_LISTED_MAX) });
      return;
    }
    this.transport.send({ type: "blocks", from: this.id, to: m.from, fromHeight: m.fromHeight, blocks });
  }

  /** One part of this box's checkpoint at the height asked (total 0: none there, e.g. pruned further since). */
  private onCheckpointRequest(m: Extract<PeerMessage, { type: "checkpointRequest" }>): void {
    const part = this.ledger.store.checkpointPart(m.height, m.afterKey, CHECKPOINT_PART_RECORDS_MAX, CHECKPOINT_PART_BYTES_MAX);
    this.transport.send({ type: "checkpoint", from: this.id, to: m.from, height: m.height, afterKey: m.afterKey, ...part });
  }

  // ---------------------------------------------------------------- housekeeping

  private housekeeping(): void {
    if (this.stopped) return;
    this.noteCheckpointRequest();
    this.maybeCompact();
    this.prune();
    this.reconcileMembership();
    const nowMs = this.now();
    for (const t of this.mempool.expire(nowMs)) {
      const key = toHex(t.id);
      this.counters.txsExpired++;
      if (this.submittedAt.delete(key)) this.remember({ status: "rejected", id: key, code: "PG_ERR_TX_EXPIRED", message: "no block took it in time" });
    }
    if (this.raft.role !== Role.leader && this.raft.lead !== null) {
      const stale = this.mempool.dueForResend(nowMs, this.timing.resubmitAfterMs);
      if (stale.length > 0) {
        this.forwardQueue.push(...stale);
        this.flushForwards();
      }
    }
  }

  /** Retention's share of housekeeping; a failure (a full disk) is logged and tried again later, the box goes on. */
  private prune(): void {
    if (this.pruner === null) return;
    try {
      this.pruner.step();
    } catch (err) {
      const nowMs = this.now();
      if (nowMs - this.lastPruneWarningMs >= 60_000 * this.clockRate) {
        this.lastPruneWarningMs = nowMs;
        this.log("warn", "retention failed; readings are kept until it works", { error: err instanceof Error ? err.message : String(err) });
      }
    }
  }

  status(): NodeStatus {
    const s = this.ledger.state;
    const me = s.tree.get(memberKey(this.id)) as MemberRecord | undefined;
    const cfg = this.raft.config;
    return {
      boxId: this.id,
      name: me?.name ?? "",
      role: this.raft.role,
      term: this.raft.term,
      leader: this.raft.lead,
      height: s.height,
      lastBlockHash: toHex(s.blockHash),
      lastBlockTimeMs: s.timeMs,
      commitIndex: this.raft.commit,
      appliedIndex: this.appliedIndex,
      peers: [...cfg.voters, ...cfg.learners]
        .filter((p) => p !== this.id)
        .map((p) => {
          const st = this.transport.peerStats(p);
          return { id: p, connected: st.connected, queuedBytes: st.queuedBytes };
        }),
      mempool: { txs: this.mempool.size, bytes: this.mempool.bytes },
      durableRaftIndex: this.checkpointer.durableRaftIndex,
      commitLatencyMs: this.commitLatency.summary(),
      counters: { ...this.counters },
      signatureChecks: { ...this.checks.stats },
      retention: this.pruner?.status() ?? null,
      historyFrom: this.ledger.store.historyFrom(),
    };
  }

  /** Stop timers and links, let the Raft log finish its saves, close the files. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    if (this.blockTimer !== null) clearTimeout(this.blockTimer);
    await this.transport?.close();
    await this.raftLog.close();
    await this.checkpointer.close();
    this.ledger.close(); // the last connection to close checkpoints the rest
    await this.checks.close();
    this.log("info", "box stopped", { box: this.id });
  }
}

/** The member index of the box holding `publicKey`, which must be an active member of this chain. */
export function memberIndexOf(ledger: Ledger, publicKey: Uint8Array): NodeId {
  const k = ledger.state.tree.get(publicKeyKey(publicKey)) as KeyRecord | undefined;
  if (k === undefined || k.kind !== "key") throw new PeergridError("PG_ERR_NOT_A_MEMBER", `the key ${toHex(publicKey).slice(0, 16)}… is not a member of chain ${ledger.state.chain.genesis.chainId}`);
  const m = ledger.state.tree.get(memberKey(k.member)) as MemberRecord | undefined;
  assert(m !== undefined && bytesEqual(m.publicKey, publicKey), "a key record names its member");
  if (!m.active) throw new PeergridError("PG_ERR_NOT_A_MEMBER", `member ${k.member} (${m.name}) was removed from the chain`);
  return k.member;
}

/** The configuration the ledger's membership asks for (see reconcileMembership). */
export function desiredConfiguration(state: Ledger["state"]): { voters: NodeId[]; learners: NodeId[] } {
  const g = state.tree.get(GLOBAL_KEY);
  const count = g !== undefined && g.kind === "global" ? g.memberCount : 0;
  const voters: NodeId[] = [];
  const learners: NodeId[] = [];
  for (let i = 0; i < count; i++) {
    const m = state.tree.get(memberKey(i));
    if (m === undefined || m.kind !== "member" || !m.active) continue;
    if ((m.roles & MemberRole.box) !== 0) voters.push(i);
    else if ((m.roles & MemberRole.auditor) !== 0) learners.push(i);
  }
  return { voters, learners };
}

/**
 * The next single change from `have` towards `want`: new voters and learners
 * first (a cluster grows before it shrinks), then removals; never the last
 * voter. Null when they agree.
 */
export function nextConfChange(have: { readonly voters: readonly NodeId[]; readonly learners: readonly NodeId[] }, want: { readonly voters: readonly NodeId[]; readonly learners: readonly NodeId[] }): ConfChange | null {
  const addVoter = want.voters.find((v) => !have.voters.includes(v));
  if (addVoter !== undefined) return { type: "addVoter", node: addVoter };
  const addLearner = want.learners.find((l) => !have.learners.includes(l));
  if (addLearner !== undefined) return { type: "addLearner", node: addLearner };
  const dropVoter = have.voters.find((v) => !want.voters.includes(v));
  if (dropVoter !== undefined && have.voters.length > 1) return want.learners.includes(dropVoter) ? { type: "addLearner", node: dropVoter } : { type: "removeVoter", node: dropVoter };
  const dropLearner = have.learners.find((l) => !want.learners.includes(l));
  if (dropLearner !== undefined) return { type: "removeLearner", node: dropLearner };
  return null;
}

/**
 * The cluster a chain starts with: its genesis members with the box role
 * vote, auditors without it follow as learners. Later changes are Raft
 * configuration entries (the stored log wins over this).
 */
export function initialConfiguration(ledger: Ledger): { voters: NodeId[]; learners: NodeId[] } {
  return desiredConfiguration(genesisState(ledger.state.chain));
}
