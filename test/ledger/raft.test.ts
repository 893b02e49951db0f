// The Raft core against the paper's scenarios (§5.1-§5.4, Figures 7 and 8)
// and what mature libraries test beyond it (Pre-Vote, CheckQuorum, learners,
// leader transfer, restart), plus transcripts of the exact messages.
// Membership changes and snapshots are in raft-membership.test.ts, on the
// same harness (exported below).
// A tiny deterministic network (raft-net.ts) drives the nodes: every Ready is
// "persisted" into the node's storage before its messages are delivered.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Entry, type NodeId, Role } from "../../ledger/raft/raft.js";
import { committedIndex, isMajority, voteResult } from "../../ledger/raft/quorum.js";
import { Rng } from "../../sim/rng.js";
import { ELECTION, HEARTBEAT, Net, entriesOfTerms, types } from "./raft-net.js";

describe("quorum arithmetic", () => {
  test("a majority is more than half of the configured voters, self included", () => {
    assert.equal(isMajority(2, 4), false, "2 of 4 is not a majority");
    assert.equal(isMajority(3, 4), true);
    assert.equal(isMajority(3, 5), true);
    assert.equal(isMajority(2, 5), false);
    assert.equal(isMajority(1, 1), true);
  });

  test("committedIndex compares numbers as numbers, against a dumb reference", () => {
    assert.equal(committedIndex([1, 2, 3], new Map([[1, 10], [2, 9], [3, 2]])), 9); // as strings, "10" < "9" would pick wrongly
    const rng = new Rng(7);
    for (let trial = 0; trial < 500; trial++) {
      const n = rng.int(1, 7);
      const voters = Array.from({ length: n }, (_, i) => i + 1);
      const match = new Map(voters.map((v) => [v, rng.int(0, 120)]));
      // Reference: the largest x such that more than half hold >= x.
      let reference = 0;
      for (let x = 0; x <= 120; x++) if ([...match.values()].filter((m) => m >= x).length > n / 2) reference = x;
      assert.equal(committedIndex(voters, match), reference, JSON.stringify([...match]));
    }
  });

  test("voteResult: won, lost or pending over the voters only", () => {
    assert.equal(voteResult([1, 2, 3, 4], new Map([[1, true], [2, true]])), "pending");
    assert.equal(voteResult([1, 2, 3, 4], new Map([[1, true], [2, true], [3, false], [4, false]])), "lost");
    assert.equal(voteResult([1, 2, 3, 4, 5], new Map([[1, true], [2, true], [3, true]])), "won");
    assert.equal(voteResult([1, 2, 3], new Map([[1, true], [9, true]])), "pending", "a non-voter's grant does not count");
  });
});

describe("§5.1 terms and §5.2 elections", () => {
  test("a node starts as a follower of nobody, at its stored term", () => {
    const net = new Net([1, 2, 3], { terms: new Map([[1, 4]]) });
    assert.equal(net.node(1).role, Role.follower);
    assert.equal(net.node(1).lead, null);
    assert.equal(net.node(1).term, 4);
  });

  test("transcript: an election without Pre-Vote", () => {
    const net = new Net([1, 2, 3]);
    for (let i = 0; i < 2 * ELECTION && net.node(1).role === Role.follower; i++) net.node(1).tick();
    assert.equal(net.node(1).role, Role.candidate);
    assert.equal(net.node(1).term, 1);
    assert.equal(net.node(1).vote, 1);
    const rd = net.node(1).ready();
    assert.deepEqual(rd.hardState, { term: 1, vote: 1, commit: 0 }, "the self-vote is persisted with the requests");
    assert.deepEqual(types(rd.messages), ["vote 1>2 t1", "vote 1>3 t1"]);
    const delivered = net.pump();
    assert.deepEqual(types(delivered.slice(0, 4)), ["vote 1>2 t1", "vote 1>3 t1", "voteResp 2>1 t1", "voteResp 3>1 t1"]);
    assert.deepEqual(net.leaders(), [1]);
    assert.equal(net.node(2).lead, 1);
    assert.equal(net.node(2).vote, 1);
  });

  test("transcript: with Pre-Vote the term moves only once a majority would vote", () => {
    const net = new Net([1, 2, 3], { preVote: true });
    for (let i = 0; i < 2 * ELECTION && net.node(1).role === Role.follower; i++) net.node(1).tick();
    assert.equal(net.node(1).role, Role.preCandidate);
    assert.equal(net.node(1).term, 0, "a pre-vote changes no term");
    const delivered = net.pump();
    assert.deepEqual(types(delivered.slice(0, 6)), ["preVote 1>2 t1", "preVote 1>3 t1", "preVoteResp 2>1 t1", "preVoteResp 3>1 t1", "vote 1>2 t1", "vote 1>3 t1"]);
    assert.deepEqual(net.leaders(), [1]);
    assert.equal(net.node(1).term, 1);
  });

  test("a node seeing a higher term adopts it and becomes a follower; a lower term is ignored", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    const leader = net.node(1);
    leader.stepMessage({ type: "heartbeat", from: 2, to: 1, term: 7, commit: 0 });
    assert.equal(leader.role, Role.follower);
    assert.equal(leader.term, 7);
    assert.equal(leader.lead, 2);
    const before = net.node(3).term;
    net.node(3).stepMessage({ type: "vote", from: 2, to: 3, term: before - 1, lastIndex: 99, lastTerm: 99, transfer: false });
    assert.equal(net.node(3).term, before);
    assert.ok(!net.node(3).ready().messages.some((m) => m.type === "voteResp"), "no answer to a stale request");
  });

  test("the leader sends heartbeats every heartbeat interval", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    const from = net.sent.length;
    net.tick(1, HEARTBEAT);
    assert.deepEqual(types(net.sent.slice(from).filter((m) => m.type === "heartbeat")), ["heartbeat 1>2 t1", "heartbeat 1>3 t1"]);
  });

  test("a candidate whose election times out starts another in a new term", () => {
    const net = new Net([1, 2, 3]);
    net.isolate(1);
    net.tick(1, 2 * ELECTION);
    const first = net.node(1).term;
    assert.equal(net.node(1).role, Role.candidate);
    net.tick(1, 2 * ELECTION);
    assert.ok(net.node(1).term > first);
  });

  test("with 4 voters, 2 votes do not make a leader (split); with 5, 3 do", () => {
    const four = new Net([1, 2, 3, 4]);
    four.isolate(3);
    four.isolate(4);
    four.tick(1, 2 * ELECTION);
    assert.notEqual(four.node(1).role, Role.leader, "1 and 2 are 2 of 4");
    const five = new Net([1, 2, 3, 4, 5]);
    five.isolate(4);
    five.isolate(5);
    five.elect(1);
  });

  test("one vote per term, first come first served, persisted before the answer", () => {
    const net = new Net([1, 2, 3]);
    const voter = net.node(3);
    voter.stepMessage({ type: "vote", from: 1, to: 3, term: 1, lastIndex: 0, lastTerm: 0, transfer: false });
    const rd = voter.ready();
    assert.deepEqual(rd.hardState, { term: 1, vote: 1, commit: 0 });
    assert.deepEqual(rd.messages.map((m) => m.type === "voteResp" && m.reject), [false]);
    net.pump();
    voter.stepMessage({ type: "vote", from: 2, to: 3, term: 1, lastIndex: 0, lastTerm: 0, transfer: false });
    assert.deepEqual(voter.ready().messages.map((m) => m.type === "voteResp" && m.reject), [true], "second candidate of the term refused");
  });

  test("restart: a node restarted from its durable state never votes twice in one term", () => {
    const net = new Net([1, 2, 3]);
    net.node(3).stepMessage({ type: "vote", from: 1, to: 3, term: 5, lastIndex: 0, lastTerm: 0, transfer: false });
    net.pump();
    const restarted = net.start(3);
    assert.equal(restarted.vote, 1);
    assert.equal(restarted.term, 5);
    restarted.stepMessage({ type: "vote", from: 2, to: 3, term: 5, lastIndex: 0, lastTerm: 0, transfer: false });
    assert.deepEqual(restarted.ready().messages.map((m) => m.type === "voteResp" && m.reject), [true]);
  });

  test("§5.4.1: a voter refuses a candidate whose log is behind its own", () => {
    const logs = new Map([[3, entriesOfTerms([1, 1, 2])]]);
    const net = new Net([1, 2, 3], { logs });
    const voter = net.node(3);
    const ask = (lastIndex: number, lastTerm: number) => {
      voter.stepMessage({ type: "vote", from: 1, to: 3, term: voter.term + 1, lastIndex, lastTerm, transfer: false });
      const answer = voter.ready().messages.find((m) => m.type === "voteResp");
      net.pump();
      return answer !== undefined && answer.type === "voteResp" && !answer.reject;
    };
    assert.equal(ask(5, 1), false, "longer but older last term");
    assert.equal(ask(2, 2), false, "same last term, shorter");
    assert.equal(ask(3, 2), true, "same last term, as long");
  });

  test("a candidate that hears from a leader of its term falls back to follower", () => {
    const net = new Net([1, 2, 3]);
    net.isolate(1);
    net.tick(1, 2 * ELECTION);
    const c = net.node(1);
    assert.equal(c.role, Role.candidate);
    c.stepMessage({ type: "append", from: 2, to: 1, term: c.term, prevIndex: 0, prevTerm: 0, entries: [], commit: 0 });
    assert.equal(c.role, Role.follower);
    assert.equal(c.lead, 2);
  });

  test("randomized timeouts: nodes rarely time out together", () => {
    const net = new Net([1, 2, 3, 4, 5], { seed: 3 });
    let ticks = 0;
    while (net.leaders().length === 0 && ticks < 20 * ELECTION) (net.tickAll(1), ticks++);
    assert.equal(net.leaders().length, 1);
    assert.ok(ticks < 3 * ELECTION, `a leader within ${ticks} ticks`);
  });
});

describe("§5.3 replication and §5.4 safety", () => {
  test("a proposal is replicated, committed on a majority, then on every follower, applied in order", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.propose(1, "a");
    net.propose(1, "b");
    for (const id of [1, 2, 3]) {
      assert.equal(net.node(id).commit, 3, `node ${id} commit`);
      assert.deepEqual(net.applied.get(id)?.map((e) => new TextDecoder().decode(e.data)), ["", "a", "b"]);
    }
  });

  test("an entry on a minority is not committed; committing a later entry commits the earlier", () => {
    const net = new Net([1, 2, 3, 4, 5]);
    net.elect(1);
    net.isolate(3);
    net.isolate(4);
    net.isolate(5);
    net.propose(1, "only on 1 and 2");
    assert.equal(net.node(1).commit, 1, "2 of 5 hold entry 2");
    net.heal();
    net.propose(1, "later");
    assert.equal(net.node(1).commit, 3);
    assert.equal(net.node(5).commit, 3);
  });

  test("Figure 7: a new leader brings followers with missing, extra and conflicting entries into line", () => {
    const leaderLog = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
    const logs = new Map<NodeId, Entry[]>([
      [1, entriesOfTerms(leaderLog)],
      [2, entriesOfTerms([1, 1, 1, 4, 4, 5, 5, 6, 6])], // (a) missing one
      [3, entriesOfTerms([1, 1, 1, 4])], // (b) missing many
      [4, entriesOfTerms([1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6])], // (c) one extra, uncommitted
      [5, entriesOfTerms([1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7])], // (d) extra of a later term
      [6, entriesOfTerms([1, 1, 1, 4, 4, 4, 4])], // (e) conflicting term 4 tail
      [7, entriesOfTerms([1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3])], // (f) conflicting terms 2 and 3
    ]);
    const terms = new Map<NodeId, number>([...logs.keys()].map((id) => [id, 7]));
    const net = new Net([1, 2, 3, 4, 5, 6, 7], { logs, terms });
    // Leader 1 of term 8 (as in the figure); (d) would refuse it (7 > 6), a majority grants.
    for (const id of [5]) net.isolate(id);
    net.elect(1);
    net.heal();
    net.propose(1, "x");
    const expected = [...leaderLog, 8, 8];
    for (const id of [1, 2, 3, 4, 5, 6, 7]) assert.deepEqual(net.logTerms(id), expected, `follower ${id}`);
  });

  test("fast back-off: a follower far behind with a conflicting tail is repaired in few round trips", () => {
    const logs = new Map<NodeId, Entry[]>([
      [1, entriesOfTerms([1, ...Array<number>(60).fill(2)])],
      [2, entriesOfTerms([1, ...Array<number>(60).fill(2)])],
      [3, entriesOfTerms([1, ...Array<number>(80).fill(3)].slice(0, 81))],
    ]);
    // Node 3's term-3 tail is uncommitted garbage from a leader that never got a majority.
    const net = new Net([1, 2, 3], { logs, terms: new Map([[1, 3], [2, 3], [3, 3]]) });
    net.isolate(3);
    net.elect(1);
    net.heal();
    const from = net.sent.length;
    net.propose(1, "y");
    const rejections = net.sent.slice(from).filter((m) => m.type === "appendResp" && m.from === 3 && m.reject).length;
    assert.deepEqual(net.logTerms(3), net.logTerms(1));
    assert.ok(rejections <= 3, `${rejections} rejected appends (one index at a time would take ~80)`);
  });

  test("Figure 8: an old-term entry on a majority is not committed until an entry of the new term is", () => {
    // S1 leads term 2 and got entry 2 (term 2) onto S2 only; S5 (term 3) wrote entry 2 (term 3) nowhere else.
    const logs = new Map<NodeId, Entry[]>([
      [1, entriesOfTerms([1, 2])],
      [2, entriesOfTerms([1, 2])],
      [3, entriesOfTerms([1])],
      [4, entriesOfTerms([1])],
      [5, entriesOfTerms([1, 3])],
    ]);
    const terms = new Map<NodeId, number>([[1, 3], [2, 3], [3, 3], [4, 3], [5, 3]]);
    const net = new Net([1, 2, 3, 4, 5], { logs, terms });
    net.isolate(5);
    // S1 wins term 4 and sends its log; deliver only its old-term entry 2 to S3 before anything of term 4.
    net.isolate(3);
    net.isolate(4);
    for (let i = 0; i < 3 * ELECTION && net.node(1).role !== Role.leader; i++) net.tick(1);
    assert.equal(net.node(1).role, Role.candidate, "1 and 2 are not a majority of 5");
    net.heal();
    net.isolate(5);
    net.elect(1);
    // Now S1 (term 4+) has replicated entry 2 (term 2) and its no-op; the commit happened through the no-op.
    const leader = net.node(1);
    assert.ok(leader.commit >= 3);
    assert.equal(leader.termAt(leader.commit), leader.term, "commitment went through a current-term entry");
    // The rule itself: a leader whose old-term entry is on a majority does not commit it by counting.
    const old = new Net([1, 2, 3], { logs: new Map([[1, entriesOfTerms([1, 2])], [2, entriesOfTerms([1, 2])], [3, entriesOfTerms([1])]]), terms: new Map([[1, 2], [2, 2], [3, 2]]) });
    for (const id of [1, 2, 3]) old.isolate(id);
    for (let i = 0; i < 3 * ELECTION && old.node(1).role !== Role.candidate; i++) old.tick(1);
    const s1 = old.node(1);
    s1.stepMessage({ type: "voteResp", from: 2, to: 1, term: s1.term, reject: false });
    assert.equal(s1.role, Role.leader);
    assert.equal(s1.lastIndex, 3, "the no-op of the new term is entry 3");
    s1.stepMessage({ type: "appendResp", from: 2, to: 1, term: s1.term, reject: false, index: 2, hintIndex: 0, hintTerm: 0 });
    assert.equal(s1.commit, 0, "entry 2 (term 2) is on 1 and 2, a majority, and still not committed");
    s1.stepMessage({ type: "appendResp", from: 2, to: 1, term: s1.term, reject: false, index: 3, hintIndex: 0, hintTerm: 0 });
    assert.equal(s1.commit, 3, "the current-term entry commits, and every entry before it");
  });

  test("a follower commits what the leader says is committed, never beyond what it holds", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    net.propose(1, "a");
    assert.equal(net.node(3).commit, 1);
    net.heal();
    net.tick(1, HEARTBEAT);
    assert.equal(net.node(3).commit, 2);
  });
});

describe("beyond the paper: Pre-Vote, CheckQuorum, learners, transfer", () => {
  test("Pre-Vote + CheckQuorum: a node back from a partition does not depose a healthy leader", () => {
    const net = new Net([1, 2, 3], { preVote: true, checkQuorum: true });
    net.elect(1);
    const term = net.node(1).term;
    net.isolate(3);
    net.tickAll(5 * ELECTION); // 3 keeps pre-campaigning, its term stays put
    assert.equal(net.node(3).term, term, "pre-votes never raised the isolated node's term");
    net.heal();
    net.tickAll(3 * ELECTION);
    assert.deepEqual(net.leaders(), [1]);
    assert.equal(net.node(1).term, term);
  });

  test("without Pre-Vote, a returning node with a higher term does disrupt (why Pre-Vote exists)", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    const term = net.node(1).term;
    net.isolate(3);
    net.tick(3, 5 * ELECTION);
    net.heal();
    net.tickAll(3 * ELECTION);
    assert.ok(net.node(1).term > term);
  });

  test("CheckQuorum: a leader that cannot hear a majority steps down", () => {
    const net = new Net([1, 2, 3], { checkQuorum: true });
    net.elect(1);
    net.isolate(1);
    net.tick(1, 2 * ELECTION);
    assert.notEqual(net.node(1).role, Role.leader);
  });

  test("learners receive the log, never campaign and never count toward commitment or elections", () => {
    const net = new Net([1, 2, 3], { learners: [4] });
    net.elect(1);
    net.propose(1, "a");
    assert.deepEqual(net.logTerms(4), net.logTerms(1));
    assert.equal(net.node(4).commit, net.node(1).commit);
    net.tick(4, 5 * ELECTION);
    assert.equal(net.node(4).role, Role.follower, "a learner never campaigns");
    net.isolate(2);
    net.isolate(3);
    const commit = net.node(1).commit;
    net.propose(1, "b");
    assert.equal(net.node(1).commit, commit, "leader + learner are not a majority of 3 voters");
    // Asked, a learner answers (as in etcd: only a candidate that thinks it a voter asks; it may lag
    // behind its promotion, see raft-membership.test.ts). A candidate that knows it as a learner
    // never asks, and never counts a learner's grant (voteResult, above).
    net.node(4).stepMessage({ type: "vote", from: 2, to: 4, term: 99, lastIndex: 99, lastTerm: 99, transfer: false });
    assert.deepEqual(net.node(4).ready().messages.filter((m) => m.type === "voteResp").map((m) => m.type === "voteResp" && m.reject), [false]);
    assert.ok(!net.sent.some((m) => (m.type === "vote" || m.type === "preVote") && m.to === 4), "nobody asked the learner before");
  });

  test("leader transfer: the leader catches the transferee up, then it wins at once", () => {
    const net = new Net([1, 2, 3], { preVote: true, checkQuorum: true });
    net.elect(1);
    net.propose(1, "a");
    net.node(1).transferLeadership(3);
    net.pump();
    assert.deepEqual(net.leaders(), [3]);
    assert.equal(net.node(1).lead, 3);
  });

  test("heartbeats may leave at once while a Ready is being persisted; nothing else does, nothing is lost", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    const leader = net.node(1);
    leader.propose(new TextEncoder().encode("slow disk"));
    const inFlight = leader.ready(); // its fsync is stalled: its appends must wait
    assert.ok(inFlight.entries.length === 1 && inFlight.messages.every((m) => m.type === "append"));
    for (let i = 0; i < HEARTBEAT; i++) leader.tick();
    const now = leader.takeImmediateMessages();
    assert.deepEqual(types(now), ["heartbeat 1>2 t1", "heartbeat 1>3 t1"]);
    assert.deepEqual(leader.takeImmediateMessages(), [], "taken once");
    leader.advance(inFlight);
    assert.ok(!leader.ready().messages.some((m) => inFlight.messages.includes(m)), "advance removed exactly the Ready's messages");
  });

  test("a leader refuses an oversized proposal, and new proposals while too much is uncommitted", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    const leader = net.node(1);
    assert.equal(leader.propose(new Uint8Array(16 * 1024 * 1024 + 1)), false, "larger than a block may be");
    net.isolate(1); // nothing commits from here on
    let accepted = 0;
    while (leader.propose(new Uint8Array(8 * 1024 * 1024)) && accepted < 20) accepted++;
    assert.equal(accepted, 8, "64 MiB of uncommitted entries, then backpressure");
    net.pump();
  });

  test("proposals to a follower are refused (the caller forwards them)", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    assert.equal(net.node(2).propose(new Uint8Array([1])), false);
  });
});

describe("randomized runs: one leader per term, logs agree on committed entries", () => {
  test("200 seeded runs with message loss and restarts", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const rng = new Rng(seed);
      const net = new Net([1, 2, 3, 4, 5], { preVote: true, checkQuorum: true, seed });
      const leaderOfTerm = new Map<number, NodeId>();
      for (let step = 0; step < 300; step++) {
        const r = rng.next();
        if (r < 0.05) net.isolate(rng.int(1, 5));
        else if (r < 0.15) net.heal();
        else if (r < 0.18) net.start(rng.int(1, 5)); // restart from disk
        const leaders = net.leaders();
        if (leaders.length > 0 && rng.next() < 0.3) net.node(rng.pick(leaders)).propose(new Uint8Array([step & 0xff]));
        net.tickAll(1);
        net.checkOneLeaderPerTerm(leaderOfTerm, `seed ${seed}`);
      }
      // State machine safety: applied sequences are prefixes of one another.
      const applied = [...net.applied.values()].map((es) => es.map((e) => `${e.index}:${e.term}`));
      const longest = applied.reduce((a, b) => (a.length >= b.length ? a : b));
      for (const a of applied) assert.deepEqual(a, longest.slice(0, a.length), `seed ${seed}: applied logs diverge`);
    }
  });
});
