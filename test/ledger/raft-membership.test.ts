// Membership changes and snapshots of the Raft core (RAFT-SCENARIOS.md,
// "Beyond the paper": membership, snapshots, restart), and transcripts of
// the exact messages for both. The harness is raft-net.ts: every Ready is
// persisted (snapshot first) before its messages are delivered.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { AssertionError } from "../../ledger/errors.js";
import {
  type ClusterConfig,
  type ConfChange,
  applyConfChange,
  decodeConfChange,
  encodeConfChange,
  isValidConfig,
} from "../../ledger/raft/conf-change.js";
import { type Entry, EntryKind, type Message, type NodeId, RaftNode, type Ready, Role, type Snapshot } from "../../ledger/raft/raft.js";
import { Rng } from "../../sim/rng.js";
import { ELECTION, HEARTBEAT, Net, entriesOfTerms } from "./raft-net.js";

const cc = (type: ConfChange["type"], node: NodeId): ConfChange => ({ type, node });
const conf = (voters: NodeId[], learners: NodeId[] = []): ClusterConfig => ({ voters, learners });

/** One line per message, with what matters in it: the transcripts compare these. */
function show(m: Message): string {
  const head = `${m.type} ${m.from}>${m.to} t${m.term}`;
  switch (m.type) {
    case "append":
      return `${head} prev=${m.prevIndex}/${m.prevTerm} commit=${m.commit} [${m.entries.map((e) => `${e.index}/${e.term}${e.kind === EntryKind.confChange ? "cc" : ""}`).join(",")}]`;
    case "appendResp":
      return `${head} ${m.reject ? `reject ${m.index} hint=${m.hintIndex}/${m.hintTerm}` : `ok ${m.index}`}`;
    case "heartbeat":
      return `${head} commit=${m.commit}`;
    case "snapshot":
      return `${head} snap=${m.snapshot.index}/${m.snapshot.term} voters=${m.snapshot.voters.join(",")} learners=${m.snapshot.learners.join(",")}`;
    default:
      return head;
  }
}
const transcript = (ms: readonly Message[]): string[] => ms.map(show);

/** Propose a change on `leader` and deliver until the network settles. */
function change(net: Net, leader: NodeId, c: ConfChange): void {
  assert.ok(net.node(leader).proposeConfChange(c), `node ${leader} accepts ${c.type} ${c.node}`);
  net.pump();
}

function assertConfig(net: Net, ids: NodeId[], expected: ClusterConfig): void {
  for (const id of ids) assert.deepEqual(net.node(id).config, expected, `node ${id}'s configuration`);
}

describe("conf-change arithmetic and encoding", () => {
  test("add, remove, promote, demote; never the last voter; against a dumb reference", () => {
    assert.deepEqual(applyConfChange(conf([1, 2, 3]), cc("addVoter", 10)), conf([1, 2, 3, 10]), "sorted numerically, not as strings");
    assert.deepEqual(applyConfChange(conf([1, 2], [3]), cc("addVoter", 3)), conf([1, 2, 3]), "a learner is promoted");
    assert.deepEqual(applyConfChange(conf([1, 2, 3]), cc("addLearner", 2)), conf([1, 3], [2]), "a voter is demoted");
    assert.deepEqual(applyConfChange(conf([1, 2], [3]), cc("removeVoter", 3)), conf([1, 2], [3]), "removeVoter leaves a learner alone");
    assert.deepEqual(applyConfChange(conf([1, 2], [3]), cc("removeLearner", 3)), conf([1, 2]));
    assert.deepEqual(applyConfChange(conf([1]), cc("removeVoter", 1)), conf([1]), "the last voter stays");
    assert.deepEqual(applyConfChange(conf([1]), cc("addLearner", 1)), conf([1]), "the last voter is not demoted");
    const rng = new Rng(3);
    const types: ConfChange["type"][] = ["addVoter", "removeVoter", "addLearner", "removeLearner"];
    let c = conf([1, 2, 3]);
    for (let i = 0; i < 2000; i++) {
      const change = cc(rng.pick(types), rng.int(1, 8));
      const next = applyConfChange(c, change);
      // Reference: a role per node, changed by a table.
      const role = new Map<NodeId, string>([...c.voters.map((v) => [v, "v"] as const), ...c.learners.map((l) => [l, "l"] as const)]);
      const r = role.get(change.node);
      if (change.type === "addVoter") role.set(change.node, "v");
      else if (change.type === "addLearner") role.set(change.node, "l");
      else if (change.type === "removeVoter" && r === "v") role.delete(change.node);
      else if (change.type === "removeLearner" && r === "l") role.delete(change.node);
      const voters = [...role].filter(([, x]) => x === "v").map(([id]) => id).sort((a, b) => a - b);
      const learners = [...role].filter(([, x]) => x === "l").map(([id]) => id).sort((a, b) => a - b);
      assert.deepEqual(next, voters.length === 0 ? c : conf(voters, learners), JSON.stringify({ c, change }));
      assert.ok(isValidConfig(next));
      c = next;
    }
  });

  test("encodeConfChange is canonical; junk is a DecodeError", () => {
    for (const t of ["addVoter", "removeVoter", "addLearner", "removeLearner"] as const) {
      for (const node of [0, 1, 127, 128, 2 ** 24 - 1]) {
        const bytes = encodeConfChange(cc(t, node));
        assert.deepEqual(decodeConfChange(bytes), cc(t, node));
        assert.deepEqual(encodeConfChange(decodeConfChange(bytes)), bytes);
      }
    }
    const refuses = (bytes: number[], reason: string) =>
      assert.throws(() => decodeConfChange(Uint8Array.from(bytes)), (e: unknown) => e instanceof Error && e.name === "DecodeError" && (e as { reason?: string }).reason === reason, JSON.stringify(bytes));
    refuses([], "truncated");
    refuses([1, 1], "truncated");
    refuses([2, 1, 5], "unsupported_version");
    refuses([1, 0, 5], "unknown_type");
    refuses([1, 5, 5], "unknown_type");
    refuses([1, 1, 5, 0], "trailing");
    refuses([1, 1, 0x85, 0x00], "non_canonical");
    refuses([1, 1, 0x80, 0x80, 0x80, 0x08], "out_of_range"); // 2^24
    assert.throws(() => encodeConfChange(cc("addVoter", 2 ** 24)), AssertionError);
  });
});

describe("membership: one server at a time, in effect once committed", () => {
  test("transcript: adding a voter; it takes effect at the commit and the new node is caught up", () => {
    const net = new Net([1, 2, 3], { joiners: [4] });
    net.elect(1);
    assert.equal(net.node(4).role, Role.follower);
    const leader = net.node(1);
    assert.ok(leader.proposeConfChange(cc("addVoter", 4)));
    assert.deepEqual(leader.config, conf([1, 2, 3]), "appended is not committed: not in effect yet");
    const from = net.sent.length;
    net.pump();
    assert.deepEqual(transcript(net.sent.slice(from)), [
      "append 1>2 t1 prev=1/1 commit=1 [2/1cc]",
      "append 1>3 t1 prev=1/1 commit=1 [2/1cc]",
      "appendResp 2>1 t1 ok 2",
      "appendResp 3>1 t1 ok 2",
      // Committed: the followers are told, then the new configuration takes effect and 4 is probed.
      "append 1>2 t1 prev=2/1 commit=2 []",
      "append 1>3 t1 prev=2/1 commit=2 []",
      "append 1>4 t1 prev=2/1 commit=2 []",
      "appendResp 2>1 t1 ok 2",
      "appendResp 3>1 t1 ok 2",
      "appendResp 4>1 t1 reject 2 hint=1/0",
      "append 1>4 t1 prev=0/0 commit=2 [1/1,2/1cc]",
      "appendResp 4>1 t1 ok 2",
    ]);
    assertConfig(net, [1, 2, 3, 4], conf([1, 2, 3, 4]));
    assert.deepEqual(net.state(4), net.state(1));
  });

  test("add and remove voters one at a time; the quorum follows the configuration", () => {
    const net = new Net([1, 2, 3], { joiners: [4, 5] });
    net.elect(1);
    change(net, 1, cc("addVoter", 4));
    // 1 and 4 are 2 of 4 voters: not a majority.
    net.isolate(2);
    net.isolate(3);
    const commit = net.node(1).commit;
    assert.ok(net.node(1).propose(new TextEncoder().encode("x")));
    net.pump();
    assert.equal(net.node(1).commit, commit, "2 of 4 voters do not commit");
    net.heal();
    net.tick(1, HEARTBEAT);
    assert.ok(net.node(1).commit > commit);
    change(net, 1, cc("addVoter", 5));
    change(net, 1, cc("removeVoter", 2));
    change(net, 1, cc("removeVoter", 3));
    assertConfig(net, [1, 4, 5], conf([1, 4, 5]));
    net.isolate(2);
    net.isolate(3);
    net.propose(1, "after");
    assert.deepEqual(net.state(4), net.state(1), "1, 4 and 5 carry on without 2 and 3");
    assert.equal(net.node(5).commit, net.node(1).commit);
  });

  test("a conf change is refused while one is pending, by a follower, during a transfer, and when it changes nothing", () => {
    const net = new Net([1, 2, 3], { joiners: [4, 5] });
    net.elect(1);
    const leader = net.node(1);
    assert.equal(net.node(2).proposeConfChange(cc("addLearner", 4)), false, "not the leader");
    assert.equal(leader.proposeConfChange(cc("addVoter", 2)), false, "2 is a voter already");
    assert.equal(leader.proposeConfChange(cc("removeLearner", 4)), false, "4 is not a learner");
    net.isolate(2);
    net.isolate(3);
    assert.ok(leader.proposeConfChange(cc("addLearner", 4)));
    assert.equal(leader.proposeConfChange(cc("addLearner", 5)), false, "the first is not committed yet");
    net.pump();
    net.heal();
    net.tick(1, HEARTBEAT);
    assert.deepEqual(leader.config, conf([1, 2, 3], [4]));
    leader.transferLeadership(2);
    assert.equal(leader.proposeConfChange(cc("addLearner", 5)), false, "a transfer is in progress");
    net.pump();
    assert.deepEqual(net.leaders(), [2]);
    const single = new Net([1]);
    single.elect(1);
    assert.equal(single.node(1).proposeConfChange(cc("removeVoter", 1)), false, "it would leave no voter");
  });

  test("a new leader proposes no conf change until an entry of its own term is committed", () => {
    const net = new Net([1, 2, 3]);
    for (const id of [1, 2, 3]) net.isolate(id);
    for (let i = 0; i < 3 * ELECTION && net.node(1).role !== Role.candidate; i++) net.tick(1);
    const n1 = net.node(1);
    n1.stepMessage({ type: "voteResp", from: 2, to: 1, term: n1.term, reject: false });
    assert.equal(n1.role, Role.leader);
    assert.equal(n1.proposeConfChange(cc("addLearner", 9)), false, "its no-op is not committed");
    n1.stepMessage({ type: "appendResp", from: 2, to: 1, term: n1.term, reject: false, index: n1.lastIndex, hintIndex: 0, hintTerm: 0 });
    assert.equal(n1.commit, n1.lastIndex);
    assert.ok(n1.proposeConfChange(cc("addLearner", 9)));
  });

  test("an old-term conf change in a new leader's log takes effect only when the new term commits it", () => {
    // 1 led term 1 and appended "addLearner 4" (index 2) on itself and 2 only; 3 never saw it.
    const add = { term: 1, index: 2, kind: EntryKind.confChange, data: encodeConfChange(cc("addLearner", 4)) } as const;
    const logs = new Map<NodeId, Entry[]>([
      [1, [...entriesOfTerms([1]), add]],
      [2, [...entriesOfTerms([1]), add]],
      [3, entriesOfTerms([1])],
    ]);
    const net = new Net([1, 2, 3], { logs, terms: new Map([[1, 1], [2, 1], [3, 1]]), joiners: [4] });
    net.isolate(1);
    net.elect(2);
    assert.deepEqual(net.node(2).config, conf([1, 2, 3], [4]), "committed with the new leader's no-op");
    net.tick(2, HEARTBEAT);
    assertConfig(net, [3, 4], conf([1, 2, 3], [4]));
  });

  test("transcript: removing the leader; it steps down once the change commits, after telling the others", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    const from = net.sent.length;
    change(net, 1, cc("removeVoter", 1));
    assert.deepEqual(transcript(net.sent.slice(from)), [
      "append 1>2 t1 prev=1/1 commit=1 [2/1cc]",
      "append 1>3 t1 prev=1/1 commit=1 [2/1cc]",
      "appendResp 2>1 t1 ok 2",
      "appendResp 3>1 t1 ok 2",
      // The commit goes out in the old configuration, then 1 is no longer a voter: it steps down (3's answer finds a follower).
      "append 1>2 t1 prev=2/1 commit=2 []",
      "append 1>3 t1 prev=2/1 commit=2 []",
      "appendResp 2>1 t1 ok 2",
      "appendResp 3>1 t1 ok 2",
    ]);
    assert.equal(net.node(1).role, Role.follower);
    assertConfig(net, [1, 2, 3], conf([2, 3]));
    net.tickAll(4 * ELECTION);
    const [leader] = net.leaders();
    assert.ok(leader === 2 || leader === 3, `2 or 3 leads (${net.leaders().join(",")})`);
    assert.equal(net.leaders().length, 1);
    net.propose(leader, "without 1");
    assert.equal(net.node(1).role, Role.follower, "a removed node never campaigns");
  });

  test("a removed node that never learned it was removed cannot disrupt: its votes are ignored, whatever its term", () => {
    for (const preVote of [false, true]) {
      const net = new Net([1, 2, 3], { preVote, checkQuorum: preVote });
      net.elect(1);
      net.isolate(3);
      change(net, 1, cc("removeVoter", 3));
      assertConfig(net, [1, 2], conf([1, 2]));
      assert.deepEqual(net.node(3).config, conf([1, 2, 3]), "3 missed its removal");
      const term = net.node(1).term;
      net.heal();
      const from = net.sent.length;
      net.tickAll(6 * ELECTION);
      const fromThree = net.sent.slice(from).filter((m) => m.from === 3);
      assert.ok(fromThree.some((m) => m.type === (preVote ? "preVote" : "vote")), "3 keeps campaigning");
      assert.ok(!net.sent.slice(from).some((m) => m.to === 3), "nobody answers or writes to it");
      assert.deepEqual(net.leaders(), [1]);
      assert.equal(net.node(1).term, term, `the cluster's term never moved (preVote ${preVote})`);
      if (!preVote) assert.ok(net.node(3).term > term, "3's own term ran ahead, to no effect");
    }
  });

  test("liveness with stale configurations: a node that lags behind its promotion votes, and hears a newer voter it does not know", () => {
    const cfg = { electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, preVote: true, checkQuorum: true, randomInt: () => 0 };
    // 4 was promoted by entries it has not received: it thinks itself a learner. Candidate 1 needs its vote.
    const learner = new RaftNode({ ...cfg, id: 4, voters: [1, 2, 3], learners: [4] }, { hardState: { term: 2, vote: null, commit: 3 }, snapshot: null, entries: entriesOfTerms([1, 1, 2]) });
    learner.stepMessage({ type: "preVote", from: 1, to: 4, term: 3, lastIndex: 9, lastTerm: 2 });
    learner.stepMessage({ type: "vote", from: 1, to: 4, term: 3, lastIndex: 9, lastTerm: 2, transfer: false });
    assert.deepEqual(transcript(learner.ready().messages), ["preVoteResp 4>1 t3", "voteResp 4>1 t3"]);
    assert.equal(learner.ready().messages.every((m) => (m.type === "preVoteResp" || m.type === "voteResp") && !m.reject), true);
    // 3 missed that 5 was added; 5's log is newer than 3's: heard. A stranger with an older log is not (no term change).
    const lagging = new RaftNode({ ...cfg, id: 3, voters: [1, 2, 3] }, { hardState: { term: 2, vote: null, commit: 3 }, snapshot: null, entries: entriesOfTerms([1, 1, 2]) });
    lagging.stepMessage({ type: "vote", from: 9, to: 3, term: 7, lastIndex: 2, lastTerm: 1, transfer: false });
    assert.equal(lagging.term, 2, "an older log from outside the configuration is dropped");
    assert.deepEqual(lagging.ready().messages, [], "and not answered");
    lagging.stepMessage({ type: "vote", from: 5, to: 3, term: 3, lastIndex: 20, lastTerm: 2, transfer: false });
    assert.deepEqual(transcript(lagging.ready().messages), ["voteResp 3>5 t3"]);
    assert.equal(lagging.vote, 5);
  });

  test("a learner gets the log, never votes nor counts; promoted, it does both; a voter can be demoted", () => {
    const net = new Net([1, 2, 3], { joiners: [4] });
    net.elect(1);
    change(net, 1, cc("addLearner", 4));
    assertConfig(net, [1, 2, 3, 4], conf([1, 2, 3], [4]));
    net.propose(1, "a");
    assert.deepEqual(net.state(4), net.state(1));
    net.tick(4, 5 * ELECTION);
    assert.equal(net.node(4).role, Role.follower, "a learner never campaigns");
    net.isolate(2);
    net.isolate(3);
    const commit = net.node(1).commit;
    assert.ok(net.node(1).propose(new TextEncoder().encode("b")));
    net.pump();
    assert.equal(net.node(1).commit, commit, "leader + learner are not a majority of 3 voters");
    net.heal();
    net.tick(1, HEARTBEAT);
    change(net, 1, cc("addVoter", 4));
    assertConfig(net, [1, 2, 3, 4], conf([1, 2, 3, 4]));
    net.isolate(2);
    net.propose(1, "c");
    assert.equal(net.node(4).commit, net.node(1).commit, "1, 3 and 4 are 3 of 4 voters");
    net.heal();
    net.tick(1, HEARTBEAT);
    change(net, 1, cc("addLearner", 3));
    assertConfig(net, [1, 2, 3, 4], conf([1, 2, 4], [3]));
    net.isolate(1);
    net.tickAll(5 * ELECTION);
    const leaders = net.leaders().filter((id) => id !== 1);
    assert.equal(leaders.length, 1);
    assert.notEqual(leaders[0], 3, "a demoted voter does not lead");
  });

  test("a leader demoted to learner steps down like a removed one", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    change(net, 1, cc("addLearner", 1));
    assert.equal(net.node(1).role, Role.follower);
    assertConfig(net, [1, 2, 3], conf([2, 3], [1]));
    net.tickAll(4 * ELECTION);
    assert.equal(net.leaders().length, 1);
    net.propose(net.leaders()[0] as NodeId, "learner 1 still follows");
    assert.deepEqual(net.state(1), net.state(2));
  });

  test("restart: the configuration comes from storage (snapshot + committed changes), not from RaftConfig", () => {
    const net = new Net([1, 2, 3], { joiners: [4] });
    net.elect(1);
    change(net, 1, cc("addVoter", 4));
    net.propose(1, "a");
    const s = net.compact(2, net.node(2).commit);
    assert.deepEqual([s.voters, s.learners], [[1, 2, 3, 4], []], "the snapshot carries the configuration at its index");
    change(net, 1, cc("removeVoter", 3));
    net.propose(1, "b");
    const restarted = net.start(2); // RaftConfig.voters is still [1, 2, 3]
    assert.deepEqual(restarted.config, conf([1, 2, 4]));
    assert.deepEqual(restarted.snapshot, s);
    assert.equal(restarted.firstIndex, s.index + 1);
    // An uncommitted change in the stored log is not in effect after a restart either.
    const hs = { term: 1, vote: 1, commit: 1 };
    const entries: Entry[] = [...entriesOfTerms([1]), { term: 1, index: 2, kind: EntryKind.confChange, data: encodeConfChange(cc("removeVoter", 2)) }];
    const node = new RaftNode(
      { id: 2, voters: [1, 2, 3], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, preVote: false, checkQuorum: false, randomInt: () => 0 },
      { hardState: hs, snapshot: null, entries },
    );
    assert.deepEqual(node.config, conf([1, 2, 3]));
    node.stepMessage({ type: "heartbeat", from: 1, to: 2, term: 1, commit: 2 });
    assert.deepEqual(node.config, conf([1, 3]), "committed: in effect");
  });
});

describe("snapshots: compaction and InstallSnapshot", () => {
  test("compact keeps only the entries after the snapshot, and the term of its index", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    for (const t of ["a", "b", "c", "d"]) net.propose(1, t);
    const n = net.node(1);
    assert.throws(() => n.compact(n.commit + 1, new Uint8Array()), AssertionError, "beyond what is applied");
    const s = net.compact(1, 3);
    assert.deepEqual({ index: s.index, term: s.term, voters: s.voters, learners: s.learners }, { index: 3, term: 1, voters: [1, 2, 3], learners: [] });
    assert.equal(n.firstIndex, 4);
    assert.equal(n.termAt(3), 1, "the snapshot's term is kept for matching");
    assert.equal(n.termAt(2), -1, "compacted");
    assert.deepEqual(n.entries(4).map((e) => e.index), [4, 5]);
    assert.throws(() => n.entries(1), AssertionError);
    assert.throws(() => n.compact(3, new Uint8Array()), AssertionError, "compaction only moves forward");
    net.propose(1, "e");
    assert.deepEqual(net.state(2), net.state(1), "replication goes on from the compacted log");
  });

  test("a snapshot carries the configuration at its index, not the one in effect when it is taken", () => {
    const net = new Net([1, 2, 3], { joiners: [4] });
    net.elect(1);
    net.propose(1, "a");
    const before = net.node(1).commit;
    change(net, 1, cc("addLearner", 4));
    change(net, 1, cc("removeVoter", 3));
    assert.deepEqual(net.node(1).config, conf([1, 2], [4]));
    const s = net.compact(1, before);
    assert.deepEqual([s.voters, s.learners], [[1, 2, 3], []]);
    const t = net.compact(1, before + 1);
    assert.deepEqual([t.voters, t.learners], [[1, 2, 3], [4]]);
  });

  test("transcript: a follower behind the leader's compacted log catches up via snapshot", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    for (const t of ["a", "b", "c"]) net.propose(1, t);
    net.compact(1, 4);
    net.heal();
    const from = net.sent.length;
    net.tick(1, HEARTBEAT);
    assert.deepEqual(transcript(net.sent.slice(from)), [
      "heartbeat 1>2 t1 commit=4",
      "heartbeat 1>3 t1 commit=1",
      "heartbeatResp 2>1 t1",
      "heartbeatResp 3>1 t1",
      "append 1>3 t1 prev=4/1 commit=4 []", // where the lost appends left off
      "appendResp 3>1 t1 reject 4 hint=2/0",
      "snapshot 1>3 t1 snap=4/1 voters=1,2,3 learners=", // entries 2..4 are compacted
      "appendResp 3>1 t1 ok 4",
    ]);
    assert.equal(net.installed.get(3)?.length, 1, "3 installed it from a Ready");
    assert.deepEqual(net.state(3), net.state(1));
    assert.equal(net.node(3).commit, 4);
    assert.equal(net.node(3).firstIndex, 5);
    net.propose(1, "d");
    assert.deepEqual(net.state(3), net.state(1));
  });

  test("a Ready with a snapshot: committed holds only what follows it; advance applies it", () => {
    const node = new RaftNode(
      { id: 3, voters: [1, 2, 3], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, preVote: false, checkQuorum: false, randomInt: () => 0 },
      { hardState: { term: 1, vote: null, commit: 1 }, snapshot: null, entries: entriesOfTerms([1]) },
    );
    const s: Snapshot = { index: 6, term: 2, voters: [1, 2, 3], learners: [4], data: new Uint8Array([7]) };
    node.stepMessage({ type: "snapshot", from: 1, to: 3, term: 2, snapshot: s });
    node.stepMessage({ type: "append", from: 1, to: 3, term: 2, prevIndex: 6, prevTerm: 2, commit: 7, entries: [{ term: 2, index: 7, kind: EntryKind.normal, data: new Uint8Array([1]) }] });
    const rd: Ready = node.ready();
    assert.equal(rd.snapshot, s);
    assert.deepEqual(rd.hardState, { term: 2, vote: null, commit: 7 });
    assert.deepEqual(rd.entries.map((e) => e.index), [7]);
    assert.deepEqual(rd.committed.map((e) => e.index), [7], "only what follows the snapshot");
    assert.deepEqual(transcript(rd.messages), ["appendResp 3>1 t2 ok 6", "appendResp 3>1 t2 ok 7"]);
    assert.deepEqual(node.config, conf([1, 2, 3], [4]), "the snapshot's configuration");
    node.advance(rd);
    assert.equal(node.hasReady(), false);
    assert.equal(node.ready().snapshot, null);
    assert.throws(() => node.setApplied(5), AssertionError, "the state machine holds at least the snapshot");
  });

  test("a follower's divergent log is discarded when a snapshot covers it", () => {
    // 3 holds a term-3 tail no majority ever had; 1 and 2 moved on and compacted past it.
    const logs = new Map<NodeId, Entry[]>([
      [1, entriesOfTerms([1, 1, 2, 2])],
      [2, entriesOfTerms([1, 1, 2, 2])],
      [3, entriesOfTerms([1, 1, 3, 3, 3, 3])],
    ]);
    const net = new Net([1, 2, 3], { logs, terms: new Map([[1, 3], [2, 3], [3, 3]]) });
    net.isolate(3);
    net.elect(1);
    for (const t of ["a", "b", "c"]) net.propose(1, t);
    net.compact(1, net.node(1).commit);
    net.heal();
    net.tick(1, HEARTBEAT);
    assert.equal(net.installed.get(3)?.length, 1);
    assert.deepEqual(net.logTerms(3), net.logTerms(1));
    assert.deepEqual(net.state(3), net.state(1), "the term-3 entries are gone, the leader's state is installed");
    assert.equal(net.disk.get(3)?.entries.some((e) => e.term === 3), false, "and gone from its disk");
  });

  test("a follower holding the snapshot's last entry keeps its log and only commits (etcd's fast-forward)", () => {
    const cfg = { id: 3, voters: [1, 2, 3], electionTicks: ELECTION, heartbeatTicks: HEARTBEAT, preVote: false, checkQuorum: false, randomInt: () => 0 };
    const node = new RaftNode(cfg, { hardState: { term: 1, vote: null, commit: 2 }, snapshot: null, entries: entriesOfTerms([1, 1, 1, 1, 1]) });
    node.stepMessage({ type: "snapshot", from: 1, to: 3, term: 1, snapshot: { index: 4, term: 1, voters: [1, 2, 3], learners: [], data: new Uint8Array() } });
    const rd = node.ready();
    assert.equal(rd.snapshot, null, "nothing to install: the entries are here");
    assert.deepEqual(rd.committed.map((e) => e.index), [1, 2, 3, 4]);
    assert.deepEqual(transcript(rd.messages), ["appendResp 3>1 t1 ok 4"]);
    assert.equal(node.firstIndex, 1);
    assert.equal(node.lastIndex, 5, "the suffix after it is kept");
    // A mismatching term at that index: the log is dropped.
    const other = new RaftNode(cfg, { hardState: { term: 2, vote: null, commit: 2 }, snapshot: null, entries: entriesOfTerms([1, 1, 1, 1, 1]) });
    other.stepMessage({ type: "snapshot", from: 1, to: 3, term: 2, snapshot: { index: 4, term: 2, voters: [1, 2, 3], learners: [], data: new Uint8Array() } });
    assert.notEqual(other.ready().snapshot, null);
    assert.deepEqual([other.firstIndex, other.lastIndex, other.commit], [5, 4, 4]);
    // A snapshot at or below the commit is stale: acknowledged with the commit, nothing changes.
    other.stepMessage({ type: "snapshot", from: 1, to: 3, term: 2, snapshot: { index: 3, term: 1, voters: [1, 2, 3], learners: [], data: new Uint8Array() } });
    assert.deepEqual(transcript(other.ready().messages).at(-1), "appendResp 3>1 t2 ok 4");
  });

  test("the leader sends one snapshot at a time, again only after an election timeout without an answer", () => {
    const net = new Net([1, 2, 3]);
    net.elect(1);
    net.isolate(3);
    for (const t of ["a", "b", "c"]) net.propose(1, t);
    net.compact(1, 4);
    net.heal();
    net.dropIf = (m) => m.type === "snapshot"; // every snapshot is lost on the way
    const from = net.sent.length;
    net.tick(1, 3 * ELECTION);
    const snapshots = net.sent.slice(from).filter((m) => m.type === "snapshot").length;
    const heartbeats = net.sent.slice(from).filter((m) => m.type === "heartbeat" && m.to === 3).length;
    assert.equal(heartbeats, (3 * ELECTION) / HEARTBEAT);
    assert.ok(snapshots >= 2 && snapshots <= 4, `${snapshots} snapshots in ${3 * ELECTION} ticks: one per election timeout, not one per heartbeat`);
    net.dropIf = null;
    net.tick(1, ELECTION + HEARTBEAT);
    assert.deepEqual(net.state(3), net.state(1));
  });

  test("a box added after the snapshot's index gets a snapshot that predates it, then its own addition", () => {
    const net = new Net([1, 2, 3], { joiners: [4] });
    net.elect(1);
    net.propose(1, "a");
    net.compact(1, 2);
    change(net, 1, cc("addLearner", 4));
    assert.equal(net.installed.get(4)?.[0]?.voters.join(","), "1,2,3");
    assert.deepEqual(net.node(4).config, conf([1, 2, 3], [4]));
    assert.deepEqual(net.state(4), net.state(1));
  });

  test("restart from a snapshot and the entries after it: nothing acknowledged is lost", () => {
    const net = new Net([1, 2, 3], { preVote: true, checkQuorum: true });
    net.elect(1);
    for (const t of ["a", "b", "c", "d"]) net.propose(1, t);
    for (const id of [1, 2, 3]) net.compact(id, 3);
    net.propose(1, "e");
    for (const id of [1, 2, 3]) {
      const before = { commit: net.node(id).commit, last: net.node(id).lastIndex, term: net.node(id).term };
      const n = net.start(id);
      assert.deepEqual({ commit: n.commit, last: n.lastIndex, term: n.term }, before, `node ${id}`);
      assert.equal(n.firstIndex, 4);
    }
    net.tickAll(4 * ELECTION);
    assert.equal(net.leaders().length, 1);
    net.propose(net.leaders()[0] as NodeId, "f");
    assert.deepEqual(net.state(2), net.state(1));
    assert.deepEqual(net.state(3), net.state(1));
  });
});

describe("randomized runs with compaction and membership changes", () => {
  test("150 seeded runs: one leader per term, applied states agree, changes take effect", () => {
    const plan: ConfChange[] = [cc("removeVoter", 5), cc("addLearner", 6), cc("addVoter", 5), cc("addVoter", 6), cc("removeVoter", 2), cc("addVoter", 2), cc("removeVoter", 6)];
    let changes = 0;
    let installs = 0;
    for (let seed = 1; seed <= 150; seed++) {
      const rng = new Rng(seed);
      const net = new Net([1, 2, 3, 4, 5], { preVote: true, checkQuorum: true, seed, joiners: [6] });
      const leaderOfTerm = new Map<number, NodeId>();
      let step = 0;
      for (let round = 0; round < 300; round++) {
        const r = rng.next();
        if (r < 0.05) net.isolate(rng.int(1, 6));
        else if (r < 0.15) net.heal();
        else if (r < 0.18) net.start(rng.int(1, 6));
        const leaders = net.leaders();
        if (leaders.length > 0) {
          const l = net.node(rng.pick(leaders));
          if (rng.next() < 0.3) l.propose(new Uint8Array([round & 0xff]));
          if (rng.next() < 0.1 && l.proposeConfChange(plan[step % plan.length] as ConfChange)) step++;
        }
        for (const id of net.nodes.keys()) {
          const n = net.node(id);
          if (rng.next() < 0.05 && (net.applied.get(id) as Entry[]).length - n.firstIndex > 5) net.compact(id, (net.applied.get(id) as Entry[]).length - 2);
        }
        net.tickAll(1);
        net.checkOneLeaderPerTerm(leaderOfTerm, `seed ${seed}`);
      }
      const states = [...net.nodes.keys()].map((id) => net.state(id));
      const longest = states.reduce((a, b) => (a.length >= b.length ? a : b));
      for (const st of states) assert.deepEqual(st, longest.slice(0, st.length), `seed ${seed}: applied states diverge`);
      changes += step;
      installs += [...net.installed.values()].reduce((n, l) => n + l.length, 0);
    }
    assert.ok(changes > 1000, `${changes} conf changes accepted over 150 runs`);
    assert.ok(installs > 200, `${installs} snapshots installed over 150 runs`);
  });
});
