// The Raft core: a pure, deterministic state machine in the shape of etcd's
// raft library. It does no I/O, reads no clock and draws no random number of
// its own: time is tick(), randomness a function handed in, the network and
// the disk are the caller's.
//
//   step(message) / tick() / propose(data) / proposeConfChange(cc)
//   transferLeadership(to) / compact(index, data)
//   ready()   -> what the caller must do now
//   advance() -> the caller did it
//
// THE CONTRACT (one place, as in etcd): for a Ready, the caller first makes
// `snapshot` (when not null: it replaces the whole stored log, and the
// caller's state machine installs it), then `hardState` and `entries` durable
// (fsync), THEN sends `messages`, THEN applies `committed` in order, THEN
// calls advance(ready). A vote or an acknowledgement is therefore never sent
// before what it promises is on disk. ready() and advance() alternate: one
// Ready at a time.
//
// Roles are swapped step functions (follower / pre-candidate / candidate /
// leader), not flags checked everywhere. Implemented: elections with
// randomized timeouts, Pre-Vote, CheckQuorum (with leader leases, so a box
// returning from a partition cannot depose a healthy leader), log replication
// with fast conflict back-off, commitment only by counting replicas of a
// current-term entry, learners (never campaign, never counted; they answer a
// vote request, which only a candidate that thinks them voters sends), leader transfer,
// snapshots and membership changes:
//
// SNAPSHOTS. compact(index, data) drops the entries up to an applied index;
// the app's `data` describes its state there. The log in memory then holds
// only the entries after the snapshot. A follower whose next entry the leader
// no longer holds gets the snapshot instead (one at a time: no other append
// goes to it until it answers or electionTicks pass and it answers a
// heartbeat). A follower restores a snapshot beyond its commit: if it holds
// the entry the snapshot ends at (same index and term) it keeps its log and
// only commits up to it (etcd's fast-forward); otherwise it drops its log,
// takes the snapshot's configuration, and hands the snapshot out in Ready.
//
// MEMBERSHIP. One server at a time (Raft thesis §4.1): a conf-change entry
// adds, removes, promotes or demotes one node, and TAKES EFFECT WHEN IT IS
// COMMITTED (as in etcd, where it takes effect when applied). Safe because
// (1) a leader proposes a change only once every conf change in its log is
// committed, so a node holding change k+1 in its log has committed change k
// (the append carrying k+1 carried that commit): configurations in use differ
// by at most one change, and the majorities of two configurations one change
// apart always intersect; (2) a new leader proposes none before an entry of
// its own term commits (the fix to the single-server bug Ongaro reported in
// 2015: an uncommitted change of an old term might otherwise commit under it).
// The configuration in effect is the snapshot's plus every committed change
// after it, so a restart recovers it from storage alone; RaftConfig.voters
// and learners are only the configuration before any snapshot.
// A removed (or demoted) leader steps down once the change commits. A node
// outside the configuration cannot disrupt: its answers are ignored, and so
// are its vote requests unless its log is at least as up to date as ours (a
// node removed while away lacks the committed removal, which a majority
// holds). Leader messages (append, heartbeat, snapshot) are taken from any
// sender, as terms decide, and a node answers vote requests even when its own
// configuration does not list it as a voter (as etcd does): a box that joins,
// or lags behind the changes, must be able to hear and elect a leader its own
// configuration does not know yet.
//
// Invariants (asserted):
//   snapIndex <= commit <= lastIndex; applied <= commit
//   applied >= snapIndex unless a received snapshot waits in a Ready
//   an entry at or below commit is never truncated
//   term never decreases; a vote is cast at most once per term
//   voters and learners are disjoint, and there is at least one voter
import { assert, assertNever, compareNumbers } from "../assert.js";
import { type ClusterConfig, type ConfChange, applyConfChange, changesConfig, decodeConfChange, encodeConfChange, isValidConfig } from "./conf-change.js";
import { type NodeId, VoteResult, committedIndex, voteResult } from "./quorum.js";

export type { NodeId } from "./quorum.js";
export type { ClusterConfig, ConfChange } from "./conf-change.js";

export const EntryKind = { normal: 0, confChange: 1 } as const;
export type EntryKind = (typeof EntryKind)[keyof typeof EntryKind];

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly kind: EntryKind;
  /** normal: application bytes (empty: the no-op a new leader appends to commit earlier terms); confChange: encodeConfChange(). */
  readonly data: Uint8Array;
}

/** The state of the application at `index` (its `data`), and the configuration in effect there. */
export interface Snapshot {
  readonly index: number;
  readonly term: number; // of the entry at `index`
  readonly voters: readonly NodeId[]; // sorted numerically
  readonly learners: readonly NodeId[]; // sorted numerically
  readonly data: Uint8Array; // opaque application bytes
}

export interface HardState {
  readonly term: number;
  readonly vote: NodeId | null;
  readonly commit: number;
}

export type Message =
  | { readonly type: "preVote"; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly lastIndex: number; readonly lastTerm: number }
  | { readonly type: "preVoteResp"; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly reject: boolean }
  | { readonly type: "vote"; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly lastIndex: number; readonly lastTerm: number; readonly transfer: boolean }
  | { readonly type: "voteResp"; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly reject: boolean }
  | {
      readonly type: "append";
      readonly from: NodeId;
      readonly to: NodeId;
      readonly term: number;
      readonly prevIndex: number;
      readonly prevTerm: number;
      readonly entries: readonly Entry[];
      readonly commit: number;
    }
  | {
      readonly type: "appendResp";
      readonly from: NodeId;
      readonly to: NodeId;
      readonly term: number;
      readonly reject: boolean;
      readonly index: number; // accepted: the follower's match index; rejected: the prevIndex refused
      readonly hintIndex: number; // rejected: where the leader should look next
      readonly hintTerm: number; // rejected: the follower's term at hintIndex (0: none)
    }
  | { readonly type: "heartbeat"; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly commit: number }
  | { readonly type: "heartbeatResp"; readonly from: NodeId; readonly to: NodeId; readonly term: number }
  | { readonly type: "timeoutNow"; readonly from: NodeId; readonly to: NodeId; readonly term: number }
  // Answered by an accepting appendResp whose index is at least snapshot.index.
  | { readonly type: "snapshot"; readonly from: NodeId; readonly to: NodeId; readonly term: number; readonly snapshot: Snapshot };

export type MessageType = Message["type"];

export const Role = { follower: "follower", preCandidate: "preCandidate", candidate: "candidate", leader: "leader" } as const;
export type Role = (typeof Role)[keyof typeof Role];

export interface Ready {
  /** A snapshot from the leader: persist it (it replaces every stored entry) and install it in the state machine, FIRST. */
  readonly snapshot: Snapshot | null;
  readonly hardState: HardState | null; // to persist, when it changed
  readonly entries: readonly Entry[]; // to persist (they replace any stored entries from entries[0].index on)
  readonly messages: readonly Message[]; // to send AFTER the above is durable
  readonly committed: readonly Entry[]; // to apply, in order (after the snapshot, when there is one)
  readonly role: Role;
  readonly lead: NodeId | null;
}

export interface RaftConfig {
  readonly id: NodeId;
  /** The initial configuration: used only when storage holds no snapshot (then the snapshot's, plus committed changes, rule). */
  readonly voters: readonly NodeId[];
  readonly learners?: readonly NodeId[];
  /** Ticks without a leader before an election; the timeout is drawn from [electionTicks, 2 * electionTicks). */
  readonly electionTicks: number;
  readonly heartbeatTicks: number;
  readonly preVote: boolean;
  readonly checkQuorum: boolean;
  /** Uniform integer in [0, n): the only randomness, handed in (seeded in simulations). */
  readonly randomInt: (n: number) => number;
  /** Most entries in one append message (a limit on every message). */
  readonly entriesPerMessageMax?: number;
  /** Largest proposal (one block) in bytes. */
  readonly proposalBytesMax?: number;
  /** Most bytes of proposed but not yet committed entries; past it, proposals are refused until commits catch up. */
  readonly uncommittedBytesMax?: number;
}

export interface RaftStorage {
  readonly hardState: HardState;
  readonly snapshot: Snapshot | null; // the latest durable snapshot (null: none yet, the log starts at 1)
  readonly entries: readonly Entry[]; // the durable log after the snapshot: snapshot.index + 1 .. n, dense
}

interface Progress {
  match: number;
  next: number;
  recentActive: boolean;
  /** > 0: a snapshot of this index is on its way; no append goes out until the follower answers or the retry time passes. */
  snapshotIndex: number;
  snapshotElapsed: number; // ticks since that snapshot was sent
}

type StepFn = (m: Message) => void;

const ENTRIES_PER_MESSAGE_MAX = 64;
const PROPOSAL_BYTES_MAX = 16 * 1024 * 1024;
const UNCOMMITTED_BYTES_MAX = 64 * 1024 * 1024;

const EMPTY = new Uint8Array(0);

function confChangeOf(e: Entry): ConfChange {
  assert(e.kind === EntryKind.confChange, "a conf-change entry");
  try {
    return decodeConfChange(e.data);
  } catch (err) {
    // Every path into the log (proposals, the wire, the store) checks the payload first.
    assert(false, `conf-change entry ${e.index} does not decode: ${err instanceof Error ? err.message : String(err)}`);
  }
}

export class RaftNode {
  readonly id: NodeId;
  private readonly cfg: RaftConfig;

  // The configuration in effect: the snapshot's plus every committed change after it.
  private conf: ClusterConfig;
  private voters: ReadonlySet<NodeId>;
  private learners: ReadonlySet<NodeId>;
  private snapConfig: ClusterConfig; // the configuration at snapIndex

  // Durable state (HardState + snapshot + log)
  private termValue: number;
  private voteValue: NodeId | null;
  private commitValue: number;
  private snap: Snapshot | null; // the latest snapshot; null iff snapIndex === 0
  private snapIndex: number;
  private snapTerm: number;
  private log: Entry[]; // log[i] has index snapIndex + 1 + i

  // Volatile state
  private roleValue: Role = Role.follower;
  private step: StepFn;
  private leadValue: NodeId | null = null;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private votes = new Map<NodeId, boolean>();
  private progress = new Map<NodeId, Progress>();
  private transferee: NodeId | null = null;
  private transferElapsed = 0;
  private pendingConfIndex = 0; // leader: no conf change may be proposed until this index is committed

  // Output bookkeeping
  private messages: Message[] = [];
  private stableIndex: number; // entries up to here are durable (or covered by the snapshot)
  private applied: number;
  private lastHardState: HardState;
  private unstableSnapshot: Snapshot | null = null; // received from a leader, not yet handed out and advanced

  constructor(cfg: RaftConfig, storage: RaftStorage) {
    assert(cfg.electionTicks > cfg.heartbeatTicks && cfg.heartbeatTicks > 0, "election timeout longer than the heartbeat interval");
    this.cfg = cfg;
    this.id = cfg.id;
    const hs = storage.hardState;
    const s = storage.snapshot;
    this.snap = s;
    this.snapIndex = s?.index ?? 0;
    this.snapTerm = s?.term ?? 0;
    assert(s === null || (s.index >= 1 && s.term >= 1 && s.term <= hs.term), "a stored snapshot names an entry of a term not after the stored term");
    this.snapConfig = s === null ? { voters: sortIds(cfg.voters), learners: sortIds(cfg.learners ?? []) } : { voters: s.voters, learners: s.learners };
    assert(isValidConfig(this.snapConfig), "the initial (or snapshot) configuration has a voter, sorted ids, and voters and learners disjoint");
    storage.entries.forEach((e, i) => {
      const prevTerm = i === 0 ? this.snapTerm : (storage.entries[i - 1] as Entry).term;
      assert(e.index === this.snapIndex + 1 + i && e.term >= prevTerm, "the log is dense after the snapshot with non-decreasing terms");
      assert(e.term <= hs.term, "no stored entry is of a term after the stored term");
      if (e.kind === EntryKind.confChange) confChangeOf(e);
    });
    this.log = [...storage.entries];
    this.termValue = hs.term;
    this.voteValue = hs.vote;
    this.commitValue = hs.commit;
    assert(this.snapIndex <= this.commitValue && this.commitValue <= this.lastIndex, "snapshot <= commit <= last index");
    this.stableIndex = this.lastIndex;
    // The caller's state machine holds at least the snapshot (it installs storage.snapshot if it is older);
    // entries after it are applied again unless setApplied() says they are there already.
    this.applied = this.snapIndex;
    this.lastHardState = hs;
    this.conf = this.configAt(this.commitValue);
    this.voters = new Set(this.conf.voters);
    this.learners = new Set(this.conf.learners);
    this.step = this.stepFollower;
    this.becomeFollower(this.termValue, null);
  }

  // ---------------------------------------------------------------- queries

  get term(): number {
    return this.termValue;
  }
  get role(): Role {
    return this.roleValue;
  }
  get lead(): NodeId | null {
    return this.leadValue;
  }
  get commit(): number {
    return this.commitValue;
  }
  get vote(): NodeId | null {
    return this.voteValue;
  }
  /** The configuration in effect (committed), ids sorted numerically. */
  get config(): ClusterConfig {
    return { voters: [...this.conf.voters], learners: [...this.conf.learners] };
  }
  /** The latest snapshot (made by compact() or received from a leader); null before the first. */
  get snapshot(): Snapshot | null {
    return this.snap;
  }
  /** The first index still in the log (entries before it are in the snapshot). */
  get firstIndex(): number {
    return this.snapIndex + 1;
  }
  get lastIndex(): number {
    return this.snapIndex + this.log.length;
  }
  get lastTerm(): number {
    return this.termAt(this.lastIndex);
  }
  /** The term of entry `index`: 0 for index 0, -1 when unknown (compacted into the snapshot, or beyond the log). */
  termAt(index: number): number {
    if (index === this.snapIndex) return this.snapTerm;
    if (index < this.snapIndex) return -1;
    const e = this.log[index - this.snapIndex - 1];
    return e === undefined ? -1 : e.term;
  }
  /** Entries from..to (inclusive), which must not reach into the snapshot. */
  entries(from: number, to = this.lastIndex): Entry[] {
    assert(from > this.snapIndex || from > to, `entries from ${from} are compacted (the log starts at ${this.firstIndex})`);
    return this.log.slice(from - this.snapIndex - 1, Math.max(0, to - this.snapIndex));
  }
  /** Skip re-applying entries the caller's state machine already holds (after a restart). */
  setApplied(index: number): void {
    assert(index <= this.commitValue, "applied <= commit");
    assert(index >= this.snapIndex, "the state machine holds at least the snapshot");
    this.applied = index;
  }

  // ---------------------------------------------------------------- inputs

  tick(): void {
    if (this.roleValue === Role.leader) this.tickLeader();
    else this.tickElection();
  }

  /**
   * Append data as a new entry if this node leads. False when it does not
   * (the caller forwards it), while leadership is being handed over, or when
   * the proposal is too large or too much is still uncommitted (backpressure:
   * a leader that cannot commit must not grow its log without bound).
   */
  propose(data: Uint8Array): boolean {
    if (this.roleValue !== Role.leader || this.transferee !== null) return false;
    if (data.length > (this.cfg.proposalBytesMax ?? PROPOSAL_BYTES_MAX)) return false;
    let uncommitted = data.length;
    for (let i = this.commitValue + 1; i <= this.lastIndex; i++) uncommitted += this.entryAt(i).data.length;
    if (uncommitted > (this.cfg.uncommittedBytesMax ?? UNCOMMITTED_BYTES_MAX)) return false;
    this.appendEntries([{ term: this.termValue, index: this.lastIndex + 1, kind: EntryKind.normal, data }]);
    this.bcastAppend();
    return true;
  }

  /**
   * Propose one membership change. False when this node does not lead, while
   * leadership is being handed over, while an earlier change is not yet
   * committed (or this leader has not yet committed an entry of its own
   * term), or when the change would change nothing (already so, or it would
   * leave no voter). It takes effect on every node when it commits.
   */
  proposeConfChange(cc: ConfChange): boolean {
    if (this.roleValue !== Role.leader || this.transferee !== null) return false;
    if (this.pendingConfIndex > this.commitValue) return false;
    if (!changesConfig(this.conf, cc)) return false;
    const data = encodeConfChange(cc);
    this.appendEntries([{ term: this.termValue, index: this.lastIndex + 1, kind: EntryKind.confChange, data }]);
    this.pendingConfIndex = this.lastIndex;
    this.bcastAppend();
    return true;
  }

  /** Hand leadership to `to` once its log has caught up; proposals pause meanwhile. */
  transferLeadership(to: NodeId): void {
    if (this.roleValue !== Role.leader || to === this.id || !this.voters.has(to)) return;
    this.transferee = to;
    this.transferElapsed = 0;
    const pr = this.progress.get(to) as Progress;
    if (pr.match === this.lastIndex) this.send({ type: "timeoutNow", from: this.id, to, term: this.termValue });
    else this.sendAppend(to);
  }

  /**
   * The application's state at `index` (applied, and at most what it has
   * applied) is described by `data`: drop the entries up to `index` from
   * memory and return the snapshot, which the CALLER persists (the log store
   * deletes the same entries with it, in one transaction). It is not handed
   * out in a Ready. Followers that need those entries get the snapshot.
   */
  compact(index: number, data: Uint8Array): Snapshot {
    assert(Number.isSafeInteger(index) && index > this.snapIndex, `compaction to ${index} moves past the snapshot at ${this.snapIndex}`);
    assert(index <= this.applied, `only applied entries are compacted (${index} > applied ${this.applied})`);
    assert(index <= this.stableIndex, "only durable entries are compacted");
    const c = this.configAt(index);
    const s: Snapshot = { index, term: this.termAt(index), voters: c.voters, learners: c.learners, data };
    this.log = this.log.slice(index - this.snapIndex);
    this.snapIndex = index;
    this.snapTerm = s.term;
    this.snapConfig = c;
    this.snap = s;
    assert(this.firstIndex === index + 1 && this.lastIndex >= this.commitValue, "the log keeps every entry after the snapshot");
    return s;
  }

  stepMessage(m: Message): void {
    assert(m.to === this.id, "message addressed to this node");
    if (!this.knows(m.from) && !this.heardFromStranger(m)) return; // not in the configuration: cannot disrupt
    if (m.term > this.termValue) {
      if (!this.onHigherTerm(m)) return;
    } else if (m.term < this.termValue) {
      this.onLowerTerm(m);
      return;
    }
    switch (m.type) {
      case "preVote":
      case "vote":
        this.handleVoteRequest(m);
        return;
      default:
        this.step(m);
    }
  }

  // ---------------------------------------------------------------- outputs

  hasReady(): boolean {
    return (
      this.messages.length > 0 ||
      this.unstableSnapshot !== null ||
      this.stableIndex < this.lastIndex ||
      Math.max(this.applied, this.snapIndex) < this.commitValue ||
      !sameHardState(this.hardState(), this.lastHardState)
    );
  }

  ready(): Ready {
    const hs = this.hardState();
    return {
      snapshot: this.unstableSnapshot,
      hardState: sameHardState(hs, this.lastHardState) ? null : hs,
      entries: this.entries(this.stableIndex + 1),
      messages: [...this.messages],
      // Invariant: applied < snapIndex only while a received snapshot waits (it is applied first).
      committed: this.entries(Math.max(this.applied, this.snapIndex) + 1, this.commitValue),
      role: this.roleValue,
      lead: this.leadValue,
    };
  }

  /** The caller persisted, sent and applied everything in `rd`. */
  advance(rd: Ready): void {
    if (rd.hardState !== null) this.lastHardState = rd.hardState;
    if (rd.snapshot !== null) {
      if (this.unstableSnapshot === rd.snapshot) this.unstableSnapshot = null; // else a newer one arrived meanwhile
      this.applied = Math.max(this.applied, rd.snapshot.index);
    }
    // Entries truncated since ready() are not stable; (index, term) names one entry (Log Matching).
    const last = rd.entries.at(-1);
    if (last !== undefined && this.termAt(last.index) === last.term) this.stableIndex = Math.max(this.stableIndex, last.index);
    const lastApplied = rd.committed.at(-1);
    if (lastApplied !== undefined) this.applied = Math.max(this.applied, lastApplied.index);
    const sent = new Set(rd.messages);
    this.messages = this.messages.filter((m) => !sent.has(m));
    assert(this.applied <= this.commitValue && this.commitValue <= this.lastIndex, "applied <= commit <= lastIndex");
    assert(this.applied >= this.snapIndex || this.unstableSnapshot !== null, "the state machine holds the snapshot, or it waits in the next Ready");
  }

  hardState(): HardState {
    return { term: this.termValue, vote: this.voteValue, commit: this.commitValue };
  }

  /**
   * Messages that promise nothing about this node's disk, which the caller may
   * send at once, even while an earlier Ready is still being fsynced:
   * heartbeats (the leader's term was durable before it asked for votes, and
   * the commit index they carry is at most what the follower acknowledged)
   * and answers to heartbeats (they only say "I am here"; the term they carry
   * may not be durable yet, which is harmless: it promises no vote and no
   * entry). This is what keeps
   * an SD card's multi-second fsync stall from silencing a leader and
   * triggering a needless election. Everything else waits for its Ready.
   */
  takeImmediateMessages(): Message[] {
    const immediate = this.messages.filter((m) => m.type === "heartbeat" || m.type === "heartbeatResp");
    if (immediate.length > 0) this.messages = this.messages.filter((m) => m.type !== "heartbeat" && m.type !== "heartbeatResp");
    return immediate;
  }

  // ---------------------------------------------------------------- log and configuration

  private entryAt(index: number): Entry {
    const e = this.log[index - this.snapIndex - 1];
    assert(e !== undefined && e.index === index, `entry ${index} is in the log (${this.firstIndex}..${this.lastIndex})`);
    return e;
  }

  /** The configuration after the entries up to `index` (which must all be committed to be in effect). */
  private configAt(index: number): ClusterConfig {
    assert(index >= this.snapIndex && index <= this.lastIndex, "configAt within the log");
    let c = this.snapConfig;
    for (let i = this.snapIndex + 1; i <= index; i++) {
      const e = this.entryAt(i);
      if (e.kind === EntryKind.confChange) c = applyConfChange(c, confChangeOf(e));
    }
    return c;
  }

  private setConfig(c: ClusterConfig): void {
    assert(isValidConfig(c), "a valid configuration");
    this.conf = c;
    this.voters = new Set(c.voters);
    this.learners = new Set(c.learners);
  }

  /** Entries from..to were just committed: the changes among them take effect, in log order. */
  private applyConfChanges(from: number, to: number): void {
    let c = this.conf;
    for (let i = from; i <= to; i++) {
      const e = this.entryAt(i);
      if (e.kind === EntryKind.confChange) c = applyConfChange(c, confChangeOf(e));
    }
    if (c === this.conf) return;
    this.setConfig(c);
    if (this.roleValue === Role.leader) this.onLeaderConfigChanged();
  }

  private onLeaderConfigChanged(): void {
    if (!this.voters.has(this.id)) {
      // Removed or demoted: the commit that did it was already broadcast (maybeCommit); step down.
      this.becomeFollower(this.termValue, null);
      return;
    }
    for (const id of this.progress.keys()) if (!this.knows(id)) this.progress.delete(id);
    for (const id of [...this.voters, ...this.learners]) {
      if (this.progress.has(id)) continue;
      // Active from the start, so that CheckQuorum gives a new voter a whole election timeout to answer.
      this.progress.set(id, newProgress(0, this.lastIndex + 1, true));
      this.sendAppend(id);
    }
    if (this.transferee !== null && !this.voters.has(this.transferee)) this.transferee = null;
    this.maybeCommit(); // the quorum changed: more may be committed now
  }

  // ---------------------------------------------------------------- terms and roles

  /**
   * Whether a message from a node outside our configuration is heard. Our
   * configuration may be stale (we lag behind its addition), so: a leader's
   * messages, as terms decide; a vote request only from a log at least as up
   * to date as ours. A node removed while it was away lacks the committed
   * entry removing it, which a majority holds: its requests are dropped
   * before they can raise anyone's term.
   */
  private heardFromStranger(m: Message): boolean {
    switch (m.type) {
      case "append":
      case "heartbeat":
      case "snapshot":
        return true;
      case "preVote":
      case "vote":
        return this.isUpToDate(m.lastIndex, m.lastTerm);
      default:
        return false;
    }
  }

  private knows(id: NodeId): boolean {
    return this.voters.has(id) || this.learners.has(id);
  }

  private get promotable(): boolean {
    return this.voters.has(this.id);
  }

  /** Leader lease (CheckQuorum): a follower that heard from a leader recently ignores elections. */
  private inLease(): boolean {
    return this.cfg.checkQuorum && this.leadValue !== null && this.electionElapsed < this.cfg.electionTicks;
  }

  /** Returns false when the message is to be dropped. */
  private onHigherTerm(m: Message): boolean {
    if (m.type === "preVote" || m.type === "vote") {
      const transfer = m.type === "vote" && m.transfer;
      if (!transfer && this.inLease()) return false; // a healthy leader exists: ignore a disruptive candidate
    }
    if (m.type === "preVote") return true; // a pre-vote never changes our term
    if (m.type === "preVoteResp" && !m.reject) return true; // the future term a granted pre-vote names
    const leaderMessage = m.type === "append" || m.type === "heartbeat" || m.type === "timeoutNow" || m.type === "snapshot";
    this.becomeFollower(m.term, leaderMessage ? m.from : null);
    return true;
  }

  private onLowerTerm(m: Message): void {
    if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === "append" || m.type === "heartbeat" || m.type === "snapshot")) {
      // A leader from an old term (cut off, now back): tell it our term so it steps down.
      this.send({ type: "appendResp", from: this.id, to: m.from, term: this.termValue, reject: true, index: 0, hintIndex: 0, hintTerm: 0 });
    } else if (m.type === "preVote") {
      this.send({ type: "preVoteResp", from: this.id, to: m.from, term: this.termValue, reject: true });
    }
    // Anything else from an old term is ignored.
  }

  private resetTerm(term: number): void {
    assert(term >= this.termValue, "term never decreases");
    if (term !== this.termValue) {
      this.termValue = term;
      this.voteValue = null;
    }
    this.leadValue = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.cfg.electionTicks + this.cfg.randomInt(this.cfg.electionTicks);
    this.votes = new Map();
    this.transferee = null;
    this.progress = new Map();
  }

  private becomeFollower(term: number, lead: NodeId | null): void {
    this.resetTerm(term);
    this.leadValue = lead;
    this.roleValue = Role.follower;
    this.step = this.stepFollower;
  }

  private becomePreCandidate(): void {
    assert(this.roleValue !== Role.leader, "a leader does not pre-campaign");
    // Term and vote stay as they are: a pre-vote changes nothing durable.
    this.votes = new Map();
    this.leadValue = null;
    this.roleValue = Role.preCandidate;
    this.step = this.stepCandidate;
  }

  private becomeCandidate(): void {
    assert(this.roleValue !== Role.leader, "a leader does not campaign");
    this.resetTerm(this.termValue + 1);
    this.voteValue = this.id;
    this.roleValue = Role.candidate;
    this.step = this.stepCandidate;
  }

  private becomeLeader(): void {
    assert(this.roleValue === Role.candidate || this.voters.size === 1, "leaders come from candidates");
    this.resetTerm(this.termValue);
    this.leadValue = this.id;
    this.roleValue = Role.leader;
    this.step = this.stepLeader;
    for (const id of [...this.voters, ...this.learners]) {
      this.progress.set(id, newProgress(id === this.id ? this.lastIndex : 0, this.lastIndex + 1, id === this.id));
    }
    // An entry of the new term: only by committing it can earlier terms' entries commit (Figure 8).
    this.appendEntries([{ term: this.termValue, index: this.lastIndex + 1, kind: EntryKind.normal, data: EMPTY }]);
    // No conf change before that entry commits: an old-term change in our log may still commit with it.
    this.pendingConfIndex = this.lastIndex;
    this.bcastAppend();
  }

  /** "pre": ask whether we could win, changing nothing; "election": a real one; "transfer": asked for by the leader. */
  private campaign(kind: "pre" | "election" | "transfer"): void {
    if (!this.promotable) return;
    const pre = kind === "pre";
    const transfer = kind === "transfer";
    if (pre) this.becomePreCandidate();
    else this.becomeCandidate();
    const term = pre ? this.termValue + 1 : this.termValue;
    this.votes.set(this.id, true);
    if (this.tally() === VoteResult.won) {
      this.onWon(pre);
      return;
    }
    for (const to of this.voters) {
      if (to === this.id) continue;
      if (pre) this.send({ type: "preVote", from: this.id, to, term, lastIndex: this.lastIndex, lastTerm: this.lastTerm });
      else this.send({ type: "vote", from: this.id, to, term, lastIndex: this.lastIndex, lastTerm: this.lastTerm, transfer });
    }
  }

  private tally(): VoteResult {
    return voteResult(this.conf.voters, this.votes);
  }

  private onWon(pre: boolean): void {
    if (pre) this.campaign("election");
    else this.becomeLeader();
  }

  // ---------------------------------------------------------------- elections

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.campaign(this.cfg.preVote ? "pre" : "election");
    }
  }

  /** §5.4.1: grant only to a candidate whose log is at least as up to date as ours. */
  private isUpToDate(lastIndex: number, lastTerm: number): boolean {
    return lastTerm > this.lastTerm || (lastTerm === this.lastTerm && lastIndex >= this.lastIndex);
  }

  private handleVoteRequest(m: Extract<Message, { type: "preVote" | "vote" }>): void {
    const pre = m.type === "preVote";
    // First come, first served in a term; a pre-vote for a later term is not a vote.
    const free = this.voteValue === m.from || (this.voteValue === null && this.leadValue === null) || (pre && m.term > this.termValue);
    // Not `promotable &&`: a node answers even when its own configuration does not list it as a
    // voter (etcd does too). Only a candidate whose configuration lists it as a voter asks, and
    // counts it; if this node merely lags behind its promotion or re-addition, refusing would
    // leave a cluster whose up-to-date voters are a minority unable to elect anyone, forever.
    const grant = free && this.isUpToDate(m.lastIndex, m.lastTerm);
    if (pre) {
      this.send({ type: "preVoteResp", from: this.id, to: m.from, term: grant ? m.term : this.termValue, reject: !grant });
      return;
    }
    if (grant) {
      this.electionElapsed = 0;
      this.voteValue = m.from; // persisted (hardState) before the response is sent: the Ready contract
    }
    this.send({ type: "voteResp", from: this.id, to: m.from, term: this.termValue, reject: !grant });
  }

  // ---------------------------------------------------------------- role step functions

  private stepFollower = (m: Message): void => {
    switch (m.type) {
      case "append":
        this.electionElapsed = 0;
        this.leadValue = m.from;
        this.handleAppend(m);
        return;
      case "heartbeat":
        this.electionElapsed = 0;
        this.leadValue = m.from;
        this.commitTo(Math.min(m.commit, this.lastIndex));
        this.send({ type: "heartbeatResp", from: this.id, to: m.from, term: this.termValue });
        return;
      case "snapshot":
        this.electionElapsed = 0;
        this.leadValue = m.from;
        this.handleSnapshot(m);
        return;
      case "timeoutNow":
        this.campaign("transfer");
        return;
      case "preVoteResp":
      case "voteResp":
      case "appendResp":
      case "heartbeatResp":
        return; // stale answers to a role we no longer have
      case "preVote":
      case "vote":
        return; // handled before the role step
      default:
        assertNever(m, "message");
    }
  };

  private stepCandidate = (m: Message): void => {
    switch (m.type) {
      case "append":
      case "heartbeat":
      case "snapshot":
        // A leader of our term exists (a higher term was handled already).
        this.becomeFollower(this.termValue, m.from);
        this.step(m);
        return;
      case "preVoteResp":
      case "voteResp": {
        if ((m.type === "preVoteResp") !== (this.roleValue === Role.preCandidate)) return;
        this.votes.set(m.from, !m.reject);
        const result = this.tally();
        if (result === VoteResult.won) this.onWon(this.roleValue === Role.preCandidate);
        else if (result === VoteResult.lost) this.becomeFollower(this.termValue, null);
        return;
      }
      case "timeoutNow":
      case "appendResp":
      case "heartbeatResp":
      case "preVote":
      case "vote":
        return;
      default:
        assertNever(m, "message");
    }
  };

  private stepLeader = (m: Message): void => {
    const pr = this.progress.get(m.from);
    if (pr === undefined) return;
    switch (m.type) {
      case "appendResp":
        pr.recentActive = true;
        if (m.reject) this.backOff(m.from, pr, m);
        else this.onAppendAccepted(m.from, pr, m.index);
        return;
      case "heartbeatResp":
        pr.recentActive = true;
        if (pr.match < this.lastIndex) this.sendAppend(m.from);
        return;
      case "append":
      case "heartbeat":
      case "snapshot":
      case "timeoutNow":
      case "preVoteResp":
      case "voteResp":
      case "preVote":
      case "vote":
        return; // two leaders of one term cannot exist; stale answers are ignored
      default:
        assertNever(m, "message");
    }
  };

  // ---------------------------------------------------------------- replication

  private tickLeader(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0;
      if (this.cfg.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.termValue, null); // cannot hear a majority: step down
        return;
      }
    }
    if (this.transferee !== null && ++this.transferElapsed >= this.cfg.electionTicks) this.transferee = null; // give up
    for (const pr of this.progress.values()) {
      // A snapshot unanswered for an election timeout is presumed lost: the next heartbeat answer sends it again.
      if (pr.snapshotIndex > 0 && ++pr.snapshotElapsed >= this.cfg.electionTicks) pr.snapshotIndex = 0;
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat();
    }
  }

  private quorumActive(): boolean {
    const active = new Map<NodeId, boolean>();
    for (const [id, pr] of this.progress) {
      active.set(id, id === this.id || pr.recentActive);
      if (id !== this.id) pr.recentActive = false;
    }
    return voteResult(this.conf.voters, active) === VoteResult.won;
  }

  private appendEntries(entries: readonly Entry[]): void {
    // The leader counts its own copy at once (self.match below). That is safe
    // only because an append to followers leaves in the same Ready, after the
    // entry is durable here, so no follower can acknowledge it first. Appends
    // must therefore never be handed out by takeImmediateMessages().
    for (const e of entries) {
      assert(e.index === this.lastIndex + 1, "entries append at the end");
      this.log.push(e);
    }
    const self = this.progress.get(this.id);
    if (self !== undefined) {
      self.match = this.lastIndex;
      self.next = this.lastIndex + 1;
    }
    this.maybeCommit();
  }

  private send(m: Message): void {
    this.messages.push(m);
  }

  private sendAppend(to: NodeId): void {
    if (this.roleValue !== Role.leader) return; // a leader removed by the commit it is announcing
    const pr = this.progress.get(to) as Progress;
    if (pr.snapshotIndex > 0) return; // a snapshot is on its way: wait for its answer
    const prevIndex = pr.next - 1;
    if (prevIndex < this.snapIndex) {
      // The entries it needs are compacted: send the snapshot instead.
      const s = this.snap;
      assert(s !== null && s.index === this.snapIndex, "a compacted log has its snapshot");
      this.send({ type: "snapshot", from: this.id, to, term: this.termValue, snapshot: s });
      pr.snapshotIndex = s.index;
      pr.snapshotElapsed = 0;
      return;
    }
    const max = this.cfg.entriesPerMessageMax ?? ENTRIES_PER_MESSAGE_MAX;
    const entries = this.entries(pr.next, Math.min(this.lastIndex, prevIndex + max));
    this.send({ type: "append", from: this.id, to, term: this.termValue, prevIndex, prevTerm: this.termAt(prevIndex), entries, commit: this.commitValue });
    if (entries.length > 0) pr.next = (entries[entries.length - 1] as Entry).index + 1; // optimistic: pipeline the rest
  }

  private bcastAppend(): void {
    for (const id of this.progress.keys()) if (id !== this.id) this.sendAppend(id);
  }

  private bcastHeartbeat(): void {
    for (const [id, pr] of this.progress) {
      if (id === this.id) continue;
      // Never tell a follower to commit beyond what it is known to hold.
      this.send({ type: "heartbeat", from: this.id, to: id, term: this.termValue, commit: Math.min(pr.match, this.commitValue) });
    }
  }

  /** Fast back-off: jump over a whole conflicting term instead of one index per round trip. */
  private backOff(from: NodeId, pr: Progress, m: Extract<Message, { type: "appendResp" }>): void {
    if (m.index === 0 && m.hintIndex === 0) return; // a term notice from onLowerTerm, not a log answer
    if (m.index < pr.match) return; // stale: that prefix was already acknowledged
    if (pr.snapshotIndex > 0) return; // an answer to an append sent before the snapshot: wait for the snapshot's
    // The follower names the first index of its conflicting term. If we hold
    // entries of that term, resume after our last one; otherwise at that index.
    let next = m.hintIndex;
    if (m.hintTerm > 0) {
      let i = Math.min(m.index, this.lastIndex);
      while (i > this.snapIndex && this.termAt(i) > m.hintTerm) i--;
      if (this.termAt(i) === m.hintTerm) next = i + 1;
    }
    pr.next = Math.max(pr.match + 1, Math.min(next, m.index));
    assert(pr.next >= 1, "next index is positive");
    this.sendAppend(from); // a snapshot when pr.next fell into the compacted prefix
  }

  private onAppendAccepted(from: NodeId, pr: Progress, index: number): void {
    if (pr.snapshotIndex > 0 && index >= pr.snapshotIndex) pr.snapshotIndex = 0; // the snapshot arrived
    if (index > pr.match) {
      pr.match = index;
      pr.next = Math.max(pr.next, index + 1);
      this.maybeCommit();
      if (this.roleValue !== Role.leader) return; // the commit removed this leader
    }
    if (pr.next <= this.lastIndex) this.sendAppend(from);
    if (from === this.transferee && pr.match === this.lastIndex) this.send({ type: "timeoutNow", from: this.id, to: from, term: this.termValue });
  }

  /** §5.3/§5.4.2: commit what a majority holds, but only through an entry of the current term. */
  private maybeCommit(): void {
    if (this.roleValue !== Role.leader) return;
    const match = new Map<NodeId, number>();
    for (const [id, pr] of this.progress) match.set(id, pr.match);
    const index = committedIndex(this.conf.voters, match);
    if (index > this.commitValue && this.termAt(index) === this.termValue) {
      const from = this.commitValue + 1;
      this.commitValue = index;
      this.bcastAppend(); // tell the followers, in the configuration that committed it (a removed node learns its removal)
      this.applyConfChanges(from, index);
    }
  }

  /** Follower: commit up to `index`; changes among the newly committed entries take effect. */
  private commitTo(index: number): void {
    if (index <= this.commitValue) return;
    assert(index <= this.lastIndex, "commit within the log");
    const from = this.commitValue + 1;
    this.commitValue = index;
    this.applyConfChanges(from, index);
  }

  private handleAppend(m: Extract<Message, { type: "append" }>): void {
    const reply = (reject: boolean, index: number, hintIndex = 0, hintTerm = 0) =>
      this.send({ type: "appendResp", from: this.id, to: m.from, term: this.termValue, reject, index, hintIndex, hintTerm });
    if (m.prevIndex < this.commitValue) {
      // Already committed here; acknowledge what we hold of it and skip the prefix.
      const skip = this.commitValue - m.prevIndex;
      if (skip >= m.entries.length) {
        reply(false, this.commitValue);
        return;
      }
      this.handleAppend({ ...m, prevIndex: this.commitValue, prevTerm: this.termAt(this.commitValue), entries: m.entries.slice(skip) });
      return;
    }
    if (m.prevIndex > this.lastIndex) {
      reply(true, m.prevIndex, this.lastIndex + 1, 0);
      return;
    }
    const have = this.termAt(m.prevIndex);
    if (have !== m.prevTerm) {
      let first = m.prevIndex;
      while (first > this.commitValue + 1 && this.termAt(first - 1) === have) first--;
      reply(true, m.prevIndex, first, have);
      return;
    }
    for (const e of m.entries) {
      if (e.index <= this.lastIndex) {
        if (this.termAt(e.index) === e.term) continue;
        assert(e.index > this.commitValue, "a committed entry is never truncated");
        this.log.length = e.index - 1 - this.snapIndex; // §5.3: delete the conflicting entry and all that follow
        this.stableIndex = Math.min(this.stableIndex, e.index - 1);
      }
      if (e.kind === EntryKind.confChange) confChangeOf(e);
      this.log.push(e);
    }
    const lastNew = m.prevIndex + m.entries.length;
    this.commitTo(Math.min(m.commit, lastNew));
    reply(false, lastNew);
  }

  /** A snapshot from the leader (the entries we need are compacted there). Always accepted: the answer names what we hold. */
  private handleSnapshot(m: Extract<Message, { type: "snapshot" }>): void {
    const s = m.snapshot;
    const accept = (index: number) => this.send({ type: "appendResp", from: this.id, to: m.from, term: this.termValue, reject: false, index, hintIndex: 0, hintTerm: 0 });
    if (s.index <= this.commitValue) {
      accept(this.commitValue); // stale or duplicate: we hold that much, committed
      return;
    }
    if (this.termAt(s.index) === s.term) {
      // We hold the entry it ends at, so (Log Matching) every entry before it: keep the log, commit to it.
      this.commitTo(s.index);
      accept(s.index);
      return;
    }
    this.restore(s);
    accept(s.index);
  }

  /** Replace the whole log by `s`: what we hold beyond our commit either conflicts with it or is missing entries. */
  private restore(s: Snapshot): void {
    assert(s.index > this.commitValue, "a snapshot replaces only uncommitted state");
    assert(s.term >= 1 && s.term <= this.termValue, "a snapshot's term is not after the leader's");
    const c: ClusterConfig = { voters: s.voters, learners: s.learners };
    assert(isValidConfig(c), "a snapshot's configuration is valid");
    this.log = [];
    this.snapIndex = s.index;
    this.snapTerm = s.term;
    this.snap = s;
    this.snapConfig = c;
    this.commitValue = s.index;
    this.stableIndex = s.index; // covered by the snapshot, which the next Ready persists first
    this.unstableSnapshot = s;
    // This node may be outside `c` (it was added after s.index): it learns its addition from the entries that follow.
    this.setConfig(c);
  }
}

function newProgress(match: number, next: number, recentActive: boolean): Progress {
  return { match, next, recentActive, snapshotIndex: 0, snapshotElapsed: 0 };
}

function sortIds(ids: readonly NodeId[]): NodeId[] {
  return [...ids].sort(compareNumbers);
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
