// The Raft core: a pure, deterministic state machine in the shape of etcd's
// raft library. It does no I/O, reads no clock and draws no random number of
// its own: time is tick(), randomness a function handed in, the network and
// the disk are the caller's.
//
//   step(message) / tick() / propose(data) / transferLeadership(to)
//   ready()   -> what the caller must do now
//   advance() -> the caller did it
//
// THE CONTRACT (one place, as in etcd): for a Ready, the caller first makes
// `hardState` and `entries` durable (fsync), THEN sends `messages`, THEN
// applies `committed` in order, THEN calls advance(ready). A vote or an
// acknowledgement is therefore never sent before what it promises is on disk.
//
// Roles are swapped step functions (follower / pre-candidate / candidate /
// leader), not flags checked everywhere. Implemented: elections with
// randomized timeouts, Pre-Vote, CheckQuorum (with leader leases, so a box
// returning from a partition cannot depose a healthy leader), log replication
// with fast conflict back-off, commitment only by counting replicas of a
// current-term entry, learners (never vote, never counted), leader transfer.
// Not yet: snapshots and membership changes (the configuration is fixed at
// construction), which the Raft issue still owes.
//
// Invariants (asserted):
//   applied <= commit <= lastIndex
//   an entry at or below commit is never truncated
//   term never decreases; a vote is cast at most once per term
import { assert, assertNever } from "../assert.js";
import { type NodeId, VoteResult, committedIndex, voteResult } from "./quorum.js";

export type { NodeId } from "./quorum.js";

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly data: Uint8Array; // empty: the no-op a new leader appends to commit earlier terms
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
  | { readonly type: "timeoutNow"; readonly from: NodeId; readonly to: NodeId; readonly term: number };

export type MessageType = Message["type"];

export const Role = { follower: "follower", preCandidate: "preCandidate", candidate: "candidate", leader: "leader" } as const;
export type Role = (typeof Role)[keyof typeof Role];

export interface Ready {
  readonly hardState: HardState | null; // to persist, when it changed
  readonly entries: readonly Entry[]; // to persist (they replace any stored entries from entries[0].index on)
  readonly messages: readonly Message[]; // to send AFTER the above is durable
  readonly committed: readonly Entry[]; // to apply, in order
  readonly role: Role;
  readonly lead: NodeId | null;
}

export interface RaftConfig {
  readonly id: NodeId;
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
  readonly entries: readonly Entry[]; // the durable log, indexes 1..n
}

interface Progress {
  match: number;
  next: number;
  recentActive: boolean;
}

type StepFn = (m: Message) => void;

const ENTRIES_PER_MESSAGE_MAX = 64;
const PROPOSAL_BYTES_MAX = 16 * 1024 * 1024;
const UNCOMMITTED_BYTES_MAX = 64 * 1024 * 1024;

export class RaftNode {
  readonly id: NodeId;
  private readonly voters: ReadonlySet<NodeId>;
  private readonly learners: ReadonlySet<NodeId>;
  private readonly cfg: RaftConfig;

  // Durable state (HardState + log)
  private termValue: number;
  private voteValue: NodeId | null;
  private commitValue: number;
  private readonly log: Entry[]; // log[i] has index i + 1

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

  // Output bookkeeping
  private messages: Message[] = [];
  private stableIndex: number; // entries up to here are durable
  private applied: number;
  private lastHardState: HardState;

  constructor(cfg: RaftConfig, storage: RaftStorage) {
    assert(cfg.electionTicks > cfg.heartbeatTicks && cfg.heartbeatTicks > 0, "election timeout longer than the heartbeat interval");
    assert(cfg.voters.length > 0, "at least one voter");
    this.cfg = cfg;
    this.id = cfg.id;
    this.voters = new Set(cfg.voters);
    this.learners = new Set(cfg.learners ?? []);
    for (const l of this.learners) assert(!this.voters.has(l), "a node is a voter or a learner, not both");
    storage.entries.forEach((e, i) => {
      assert(e.index === i + 1 && (i === 0 || e.term >= (storage.entries[i - 1] as Entry).term), "log is dense from 1 with non-decreasing terms");
      assert(e.term <= storage.hardState.term, "no stored entry is of a term after the stored term");
    });
    this.log = [...storage.entries];
    this.termValue = storage.hardState.term;
    this.voteValue = storage.hardState.vote;
    this.commitValue = storage.hardState.commit;
    assert(this.commitValue <= this.lastIndex, "commit within the log");
    this.stableIndex = this.lastIndex;
    this.applied = 0; // the caller re-applies from its own applied point; see ready().committed
    this.lastHardState = storage.hardState;
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
  get lastIndex(): number {
    return this.log.length;
  }
  get lastTerm(): number {
    return this.termAt(this.lastIndex);
  }
  termAt(index: number): number {
    if (index === 0) return 0;
    const e = this.log[index - 1];
    return e === undefined ? -1 : e.term;
  }
  entries(from: number, to = this.lastIndex): Entry[] {
    return this.log.slice(from - 1, to);
  }
  /** Skip re-applying entries the caller's state machine already holds (after a restart). */
  setApplied(index: number): void {
    assert(index <= this.commitValue, "applied <= commit");
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
    for (let i = this.commitValue + 1; i <= this.lastIndex; i++) uncommitted += (this.log[i - 1] as Entry).data.length;
    if (uncommitted > (this.cfg.uncommittedBytesMax ?? UNCOMMITTED_BYTES_MAX)) return false;
    this.appendEntries([{ term: this.termValue, index: this.lastIndex + 1, data }]);
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

  stepMessage(m: Message): void {
    assert(m.to === this.id, "message addressed to this node");
    if (!this.knows(m.from)) return; // not in the configuration: ignored (the transport counts it)
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
    return this.messages.length > 0 || this.stableIndex < this.lastIndex || this.applied < this.commitValue || !sameHardState(this.hardState(), this.lastHardState);
  }

  ready(): Ready {
    const hs = this.hardState();
    return {
      hardState: sameHardState(hs, this.lastHardState) ? null : hs,
      entries: this.entries(this.stableIndex + 1),
      messages: [...this.messages],
      committed: this.entries(this.applied + 1, this.commitValue),
      role: this.roleValue,
      lead: this.leadValue,
    };
  }

  /** The caller persisted, sent and applied everything in `rd`. */
  advance(rd: Ready): void {
    if (rd.hardState !== null) this.lastHardState = rd.hardState;
    // Entries truncated since ready() are not stable; (index, term) names one entry (Log Matching).
    const last = rd.entries.at(-1);
    if (last !== undefined && this.termAt(last.index) === last.term) this.stableIndex = Math.max(this.stableIndex, last.index);
    if (rd.committed.length > 0) this.applied = (rd.committed[rd.committed.length - 1] as Entry).index;
    const sent = new Set(rd.messages);
    this.messages = this.messages.filter((m) => !sent.has(m));
    assert(this.applied <= this.commitValue && this.commitValue <= this.lastIndex, "applied <= commit <= lastIndex");
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

  // ---------------------------------------------------------------- terms and roles

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
    const leaderMessage = m.type === "append" || m.type === "heartbeat" || m.type === "timeoutNow";
    this.becomeFollower(m.term, leaderMessage ? m.from : null);
    return true;
  }

  private onLowerTerm(m: Message): void {
    if ((this.cfg.checkQuorum || this.cfg.preVote) && (m.type === "append" || m.type === "heartbeat")) {
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
    this.progress = new Map();
    for (const id of [...this.voters, ...this.learners]) {
      this.progress.set(id, { match: id === this.id ? this.lastIndex : 0, next: this.lastIndex + 1, recentActive: id === this.id });
    }
    // An entry of the new term: only by committing it can earlier terms' entries commit (Figure 8).
    this.appendEntries([{ term: this.termValue, index: this.lastIndex + 1, data: new Uint8Array(0) }]);
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
    return voteResult([...this.voters], this.votes);
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
    const grant = this.promotable && free && this.isUpToDate(m.lastIndex, m.lastTerm);
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
    return voteResult([...this.voters], active) === VoteResult.won;
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
    const pr = this.progress.get(to) as Progress;
    const prevIndex = pr.next - 1;
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
    // The follower names the first index of its conflicting term. If we hold
    // entries of that term, resume after our last one; otherwise at that index.
    let next = m.hintIndex;
    if (m.hintTerm > 0) {
      let i = Math.min(m.index, this.lastIndex);
      while (i > 0 && this.termAt(i) > m.hintTerm) i--;
      if (this.termAt(i) === m.hintTerm) next = i + 1;
    }
    pr.next = Math.max(pr.match + 1, Math.min(next, m.index));
    assert(pr.next >= 1, "next index is positive");
    this.sendAppend(from);
  }

  private onAppendAccepted(from: NodeId, pr: Progress, index: number): void {
    if (index > pr.match) {
      pr.match = index;
      pr.next = Math.max(pr.next, index + 1);
      this.maybeCommit();
    }
    if (pr.next <= this.lastIndex) this.sendAppend(from);
    if (from === this.transferee && pr.match === this.lastIndex) this.send({ type: "timeoutNow", from: this.id, to: from, term: this.termValue });
  }

  /** §5.3/§5.4.2: commit what a majority holds, but only through an entry of the current term. */
  private maybeCommit(): void {
    if (this.roleValue !== Role.leader) return;
    const match = new Map<NodeId, number>();
    for (const [id, pr] of this.progress) match.set(id, pr.match);
    const index = committedIndex([...this.voters], match);
    if (index > this.commitValue && this.termAt(index) === this.termValue) {
      this.commitTo(index);
      this.bcastAppend(); // tell the followers
    }
  }

  private commitTo(index: number): void {
    if (index <= this.commitValue) return;
    assert(index <= this.lastIndex, "commit within the log");
    this.commitValue = index;
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
        this.log.length = e.index - 1; // §5.3: delete the conflicting entry and all that follow
        this.stableIndex = Math.min(this.stableIndex, e.index - 1);
      }
      this.log.push(e);
    }
    const lastNew = m.prevIndex + m.entries.length;
    this.commitTo(Math.min(m.commit, lastNew));
    reply(false, lastNew);
  }
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
