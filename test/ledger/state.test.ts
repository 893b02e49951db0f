// The ledger state machine, as transcripts: a small neighbourhood, blocks of
// signed transactions, and the verdict on each.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";
import { type Block, decodeBlock, encodeBlock } from "../../ledger/block.js";
import { BlockRejectedError } from "../../ledger/errors.js";
import { genesisBlock, parseGenesis } from "../../ledger/genesis.js";
import { hash, toHex, utf8 } from "../../ledger/hash.js";
import { NodeSigner } from "../../ledger/keys.js";
import { type GlobalRecord, breakerKey, type MemberRecord, type MeterRecord, type OrderRecord, GLOBAL_KEY, memberKey, meterKey, orderKey } from "../../ledger/records.js";
import { type LedgerState, ResultCode, applyBlock, energyBoundWh, genesisState, makeChain, resultName } from "../../ledger/state.js";
import { AUTHOR_MAX, type SignedTx, type TxBody, Quality, Role } from "../../ledger/tx.js";
import { Harness, INTERVAL_MS, type TestMember, deepFreeze, genesisJson, order, reading, treeDump, verifier } from "./fixtures.js";

// The neighbourhood. Indexes are genesis order.
const BOX_A = 0; // box + admin, proposes every block
const ANN = 1; // user
const BOX_B = 2; // box
const AUDITOR = 3; // auditor only: may neither read meters nor trade
const MEMBERS: TestMember[] = [
  { name: "box A", signer: NodeSigner.generate(), roles: ["box", "admin"] },
  { name: "Ann", signer: NodeSigner.generate(), roles: ["user"] },
  { name: "box B", signer: NodeSigner.generate(), roles: ["box"] },
  { name: "auditor", signer: NodeSigner.generate(), roles: ["auditor"] },
];
const PARAMS = { market: { priceMinMicroPerKWh: 1_000, openOrdersPerMemberMax: 3 } };
const SKEW_MS = 10_000; // default readingSkewMaxMs
const AGE_MS = 600_000; // default readingAgeMaxMs
const SEQ_GAP_MAX = 1_000_000; // default seqGapMax

let h: Harness;
beforeEach(() => {
  h = new Harness(MEMBERS, PARAMS);
});

const names = (codes: readonly number[]): string[] => codes.map(resultName);

/**
 * Apply `[...before, bad]` and `before` on the current state: `bad` gets
 * `code`, everything before it is ok, and the state root is the same as if
 * `bad` had never been in the block.
 */
/** Codes given before the signature and sequence number are known good: such a tx changes nothing at all. */
const ENVELOPE_FAILURES: ReadonlySet<number> = new Set([ResultCode.unknownAuthor, ResultCode.authorRemoved, ResultCode.badSignature, ResultCode.staleSequence, ResultCode.sequenceGap]);

/**
 * The tx is rejected with `code`. A tx refused for its envelope changes
 * nothing; one refused by a rule changes only its author's lastSeq (it
 * consumes its sequence number, so it can never be replayed into acceptance).
 */
function rejects(bad: SignedTx, code: ResultCode, before: SignedTx[] = []): void {
  const withBad = h.try([...before, bad]);
  assert.deepEqual(names(withBad.results), [...before.map(() => "ok"), resultName(code)]);
  const without = h.try(before);
  if (ENVELOPE_FAILURES.has(code)) {
    assert.equal(toHex(withBad.state.tree.root), toHex(without.state.tree.root), "a tx rejected for its envelope changes nothing");
    return;
  }
  const key = memberKey(bad.tx.author);
  const changed = new Set([...withBad.state.tree.entries(), ...without.state.tree.entries()].map((e) => e.key));
  for (const k of changed) {
    if (k === key) continue;
    assert.deepEqual(withBad.state.tree.get(k), without.state.tree.get(k), `a rejected tx changes nothing but its author's sequence (${k})`);
  }
  const a = withBad.state.tree.get(key) as MemberRecord;
  const b = without.state.tree.get(key) as MemberRecord;
  assert.equal(a.lastSeq, bad.tx.seq, "a rule rejection consumes the sequence number");
  assert.deepEqual({ ...a, lastSeq: 0 }, { ...b, lastSeq: 0 }, "and changes nothing else of the author");
}

function accepts(...txs: SignedTx[]): void {
  assert.deepEqual(names(h.apply(txs).results), txs.map(() => "ok"));
}

/** A reading by `author` stamped shortly before the next block. */
function readingTx(author: number, importWh: number, exportWh = 0, extra: Parameters<typeof reading>[3] = {}, dtMs = -500): SignedTx {
  return h.tx(author, reading(h.nextTimeMs + dtMs, importWh, exportWh, extra));
}

function orderTx(author: number, extra: Parameters<typeof order>[0] = {}): SignedTx {
  return h.tx(author, order({ intervalStartMs: h.nextIntervalMs(1), expiresAtMs: h.nextIntervalMs(1), ...extra }));
}

type MemberBody = Extract<TxBody, { type: "member" }>;
type MemberAction = MemberBody extends infer B ? (B extends unknown ? Omit<B, "type"> : never) : never;
const memberTx = (author: number, body: MemberAction): SignedTx => h.tx(author, { type: "member", ...body } as MemberBody);

function get<R>(key: string): R | undefined {
  return h.state.tree.get(key) as R | undefined;
}

describe("state: genesis", () => {
  test("the genesis state holds the members, their keys and the global record", () => {
    const s = h.state;
    assert.equal(s.height, 0);
    assert.deepEqual(s.blockHash, genesisBlock(h.genesis).hash);
    assert.equal(s.tree.size, 2 * MEMBERS.length + 1);
    assert.deepEqual(get(GLOBAL_KEY), { kind: "global", memberCount: 4, activeAdmins: 1, activeBoxes: 2, islandedSinceMs: -1, islandedMsInPeriod: 0, islandChangeMs: -1 });
    const a = get<MemberRecord>(memberKey(BOX_A));
    assert.equal(a?.roles, Role.box | Role.admin);
    assert.equal(a?.lastSeq, 0);
  });

  test("an empty block moves height, hash, time and raft position but not the tree", () => {
    const before = h.state;
    const b = h.block([]);
    const { state, results } = applyBlock(before, b, verifier);
    assert.deepEqual(results, []);
    assert.equal(state.height, 1);
    assert.deepEqual(state.blockHash, b.hash);
    assert.equal(state.timeMs, b.header.timeMs);
    assert.equal(state.raftIndex, 1);
    assert.deepEqual(state.tree.root, before.tree.root);
  });
});

describe("state: every result code", () => {
  test("ok: a reading, an order, a cancel and an enrolment all pass and bump lastSeq", () => {
    const o = orderTx(ANN);
    accepts(readingTx(BOX_A, 1_000), o, h.tx(ANN, { type: "cancel", orderId: o.id }));
    accepts(memberTx(BOX_A, { action: "enrol", publicKey: NodeSigner.generate().publicKey, roles: Role.user, name: "Bea" }));
    assert.equal(get<MemberRecord>(memberKey(BOX_A))?.lastSeq, 2);
    assert.equal(get<MemberRecord>(memberKey(ANN))?.lastSeq, 2);
  });

  test("unknownAuthor: an author index nobody holds", () => {
    rejects(h.tx(99, reading(h.nextTimeMs, 1, 0), { signer: h.signerOf(BOX_A) }), ResultCode.unknownAuthor);
  });

  test("authorRemoved: a removed box's reading (in a later block and in the same block)", () => {
    const removal = memberTx(BOX_A, { action: "remove", subject: BOX_B });
    rejects(readingTx(BOX_B, 1_000), ResultCode.authorRemoved, [removal]);
    accepts(removal);
    rejects(readingTx(BOX_B, 1_000), ResultCode.authorRemoved);
  });

  test("badSignature: signed with another member's key, or for another chain", () => {
    rejects(h.tx(ANN, order({ intervalStartMs: h.nextIntervalMs(), expiresAtMs: h.nextIntervalMs() }), { signer: h.signerOf(BOX_A) }), ResultCode.badSignature);
    rejects(h.tx(BOX_A, reading(h.nextTimeMs, 1, 0), { chainHash: hash(utf8("another chain")) }), ResultCode.badSignature);
  });

  test("staleSequence: a sequence number at or below the last accepted one", () => {
    accepts(readingTx(BOX_A, 1_000, 0, {}, -900), readingTx(BOX_A, 1_001, 0, {}, -800)); // seq 1, 2
    rejects(h.tx(BOX_A, reading(h.nextTimeMs, 1_002, 0), { seq: 2 }), ResultCode.staleSequence);
    rejects(h.tx(BOX_A, reading(h.nextTimeMs, 1_002, 0), { seq: 1 }), ResultCode.staleSequence);
  });

  test("sequenceGap: more than seqGapMax ahead; exactly seqGapMax is fine", () => {
    rejects(h.tx(BOX_A, reading(h.nextTimeMs, 1, 0), { seq: SEQ_GAP_MAX + 1 }), ResultCode.sequenceGap);
    accepts(h.tx(BOX_A, reading(h.nextTimeMs, 1, 0), { seq: SEQ_GAP_MAX }));
  });

  test("notPermitted: a user reads a meter, a non-admin enrols or removes, an auditor trades", () => {
    rejects(readingTx(ANN, 1_000), ResultCode.notPermitted);
    rejects(memberTx(ANN, { action: "remove", subject: BOX_B }), ResultCode.notPermitted);
    rejects(memberTx(BOX_B, { action: "enrol", publicKey: NodeSigner.generate().publicKey, roles: Role.user, name: "x" }), ResultCode.notPermitted);
    rejects(orderTx(AUDITOR), ResultCode.notPermitted);
    rejects(readingTx(AUDITOR, 1_000), ResultCode.notPermitted);
  });

  test("readingTimeOrder: a reading not after the meter's latest one", () => {
    const t = h.nextTimeMs - 500;
    const first = h.tx(BOX_A, reading(t, 1_000, 0));
    rejects(h.tx(BOX_A, reading(t, 1_000, 0)), ResultCode.readingTimeOrder, [first]);
    accepts(first);
    rejects(h.tx(BOX_A, reading(t - 1, 1_000, 0)), ResultCode.readingTimeOrder);
    rejects(h.tx(BOX_A, reading(t, 1_000, 0)), ResultCode.readingTimeOrder);
    // Another meter of the same box has its own clock.
    accepts(h.tx(BOX_A, reading(t, 5, 0, { meterId: 1 })));
  });

  test("readingTimeWindow: further ahead than the skew or older than the age limit; the limits themselves pass", () => {
    const bt = h.nextTimeMs;
    rejects(h.tx(BOX_A, reading(bt + SKEW_MS + 1, 1, 0)), ResultCode.readingTimeWindow);
    rejects(h.tx(BOX_A, reading(bt - AGE_MS - 1, 1, 0, { meterId: 1 })), ResultCode.readingTimeWindow);
    accepts(h.tx(BOX_A, reading(bt - AGE_MS, 1, 0, { meterId: 1 })), h.tx(BOX_A, reading(bt + SKEW_MS, 1, 0)));
  });

  test("readingCounterBackwards: an import or export counter below the last good one", () => {
    accepts(readingTx(BOX_A, 5_000, 700));
    rejects(readingTx(BOX_A, 4_999, 700), ResultCode.readingCounterBackwards);
    rejects(readingTx(BOX_A, 5_000, 699), ResultCode.readingCounterBackwards);
    accepts(readingTx(BOX_A, 5_000, 700)); // unchanged counters are fine
  });

  test("readingCounterJump: more energy than meterPowerMaxW allows in the time since; the bound itself passes", () => {
    const t = h.nextTimeMs - 500;
    accepts(h.tx(BOX_A, reading(t, 5_000, 700)));
    const boundWh = energyBoundWh(1_000, 250_000) + 1; // 250 kW for one second, rounded up, plus rounding of the counters
    assert.equal(boundWh, 71);
    rejects(h.tx(BOX_A, reading(t + 1_000, 5_000 + boundWh + 1, 700)), ResultCode.readingCounterJump);
    rejects(h.tx(BOX_A, reading(t + 1_000, 5_000, 700 + boundWh + 1)), ResultCode.readingCounterJump);
    accepts(h.tx(BOX_A, reading(t + 1_000, 5_000 + boundWh, 700 + boundWh)));
  });

  test("orderEnergy: zero or above orderEnergyMaxWh", () => {
    rejects(orderTx(ANN, { energyWh: 0 }), ResultCode.orderEnergy);
    rejects(orderTx(ANN, { energyWh: 1_000_001 }), ResultCode.orderEnergy);
    accepts(orderTx(ANN, { energyWh: 1_000_000 }));
  });

  test("orderPrice: below the minimum or above the maximum; both limits pass", () => {
    rejects(orderTx(ANN, { priceMicroPerKWh: 999 }), ResultCode.orderPrice);
    rejects(orderTx(ANN, { priceMicroPerKWh: 2_000_001 }), ResultCode.orderPrice);
    accepts(orderTx(ANN, { priceMicroPerKWh: 1_000 }), orderTx(ANN, { priceMicroPerKWh: 2_000_000 }));
  });

  test("orderInterval: unaligned, the current interval, or further ahead than orderIntervalsAheadMax", () => {
    rejects(orderTx(ANN, { intervalStartMs: h.nextIntervalMs(1) + 1 }), ResultCode.orderInterval);
    rejects(orderTx(ANN, { intervalStartMs: h.nextIntervalMs(0) }), ResultCode.orderInterval);
    rejects(orderTx(ANN, { intervalStartMs: h.nextIntervalMs(97) }), ResultCode.orderInterval);
    accepts(orderTx(ANN, { intervalStartMs: h.nextIntervalMs(96) }));
  });

  test("orderExpired: expiring at or before the block's time", () => {
    rejects(orderTx(ANN, { expiresAtMs: h.nextTimeMs }), ResultCode.orderExpired);
    accepts(orderTx(ANN, { expiresAtMs: h.nextTimeMs + 1 }));
  });

  test("orderCounterparty: oneself, an unknown member, a removed member", () => {
    rejects(orderTx(ANN, { counterparty: ANN }), ResultCode.orderCounterparty);
    rejects(orderTx(ANN, { counterparty: 99 }), ResultCode.orderCounterparty);
    accepts(memberTx(BOX_A, { action: "remove", subject: BOX_B }));
    rejects(orderTx(ANN, { counterparty: BOX_B }), ResultCode.orderCounterparty);
    accepts(orderTx(ANN, { counterparty: BOX_A, side: "sell" }));
  });

  test("openOrdersLimit: the fourth open order of a member; a cancel makes room", () => {
    const orders = [orderTx(ANN), orderTx(ANN, { side: "sell" }), orderTx(ANN, { energyWh: 7 })];
    accepts(...orders);
    assert.equal(get<MemberRecord>(memberKey(ANN))?.openOrders, 3);
    rejects(orderTx(ANN), ResultCode.openOrdersLimit);
    accepts(h.tx(ANN, { type: "cancel", orderId: (orders[1] as SignedTx).id }), orderTx(ANN));
    assert.equal(get<MemberRecord>(memberKey(ANN))?.openOrders, 3);
  });

  test("orderNotFound: an id that was never an order, or one already cancelled", () => {
    rejects(h.tx(ANN, { type: "cancel", orderId: hash(utf8("no such order")) }), ResultCode.orderNotFound);
    const o = orderTx(ANN);
    const cancel = h.tx(ANN, { type: "cancel", orderId: o.id });
    accepts(o, cancel);
    assert.equal(get(orderKey(o.id)), undefined);
    assert.equal(get<MemberRecord>(memberKey(ANN))?.openOrders, 0);
    rejects(h.tx(ANN, { type: "cancel", orderId: o.id }), ResultCode.orderNotFound);
  });

  test("notOrderAuthor: cancelling somebody else's order", () => {
    const o = orderTx(ANN);
    accepts(o);
    rejects(h.tx(BOX_A, { type: "cancel", orderId: o.id }), ResultCode.notOrderAuthor);
    assert.equal(get<OrderRecord>(orderKey(o.id))?.author, ANN);
  });

  test("keyAlreadyEnrolled: a genesis key, or the same new key twice in one block", () => {
    rejects(memberTx(BOX_A, { action: "enrol", publicKey: h.signerOf(ANN).publicKey, roles: Role.user, name: "Ann 2" }), ResultCode.keyAlreadyEnrolled);
    const key = NodeSigner.generate().publicKey;
    const first = memberTx(BOX_A, { action: "enrol", publicKey: key, roles: Role.user, name: "Cy" });
    rejects(memberTx(BOX_A, { action: "enrol", publicKey: key, roles: Role.box, name: "Cy 2" }), ResultCode.keyAlreadyEnrolled, [first]);
  });

  test("unknownSubject: removing or changing a member that does not exist or was removed", () => {
    rejects(memberTx(BOX_A, { action: "remove", subject: 99 }), ResultCode.unknownSubject);
    rejects(memberTx(BOX_A, { action: "setRoles", subject: 99, roles: Role.user }), ResultCode.unknownSubject);
    accepts(memberTx(BOX_A, { action: "remove", subject: BOX_B }));
    rejects(memberTx(BOX_A, { action: "remove", subject: BOX_B }), ResultCode.unknownSubject);
    rejects(memberTx(BOX_A, { action: "setRoles", subject: BOX_B, roles: Role.box }), ResultCode.unknownSubject);
  });

  test("lastAdmin: the only admin cannot remove itself or drop its admin role; with a second admin it can", () => {
    rejects(memberTx(BOX_A, { action: "remove", subject: BOX_A }), ResultCode.lastAdmin);
    rejects(memberTx(BOX_A, { action: "setRoles", subject: BOX_A, roles: Role.box }), ResultCode.lastAdmin);
    accepts(memberTx(BOX_A, { action: "setRoles", subject: ANN, roles: Role.user | Role.admin }));
    assert.equal(get<{ activeAdmins: number }>(GLOBAL_KEY)?.activeAdmins, 2);
    accepts(memberTx(BOX_A, { action: "setRoles", subject: BOX_A, roles: Role.box }));
    assert.equal(get<{ activeAdmins: number }>(GLOBAL_KEY)?.activeAdmins, 1);
    rejects(memberTx(ANN, { action: "remove", subject: ANN }), ResultCode.lastAdmin);
  });

  test("noRoles: enrolling or setting a member with no roles at all", () => {
    rejects(memberTx(BOX_A, { action: "enrol", publicKey: NodeSigner.generate().publicKey, roles: 0, name: "nobody" }), ResultCode.noRoles);
    rejects(memberTx(BOX_A, { action: "setRoles", subject: ANN, roles: 0 }), ResultCode.noRoles);
  });

  test("lastBox: the last box cannot be removed or lose its box role (no block could follow)", () => {
    accepts(memberTx(BOX_A, { action: "setRoles", subject: ANN, roles: Role.user | Role.admin }));
    accepts(memberTx(BOX_A, { action: "remove", subject: BOX_B }));
    assert.equal(get<{ activeBoxes: number }>(GLOBAL_KEY)?.activeBoxes, 1);
    rejects(memberTx(BOX_A, { action: "setRoles", subject: BOX_A, roles: Role.admin }), ResultCode.lastBox);
    rejects(memberTx(ANN, { action: "remove", subject: BOX_A }), ResultCode.lastBox);
    accepts(memberTx(ANN, { action: "enrol", publicKey: NodeSigner.generate().publicKey, roles: Role.box, name: "box C" }));
    accepts(memberTx(ANN, { action: "remove", subject: BOX_A }));
    assert.equal(get<{ activeBoxes: number }>(GLOBAL_KEY)?.activeBoxes, 1);
  });

  test("memberLimit: no member index beyond what the encoding can carry", () => {
    const global = get<GlobalRecord>(GLOBAL_KEY);
    assert.ok(global !== undefined);
    h.state = { ...h.state, tree: h.state.tree.withUpdates(new Map([[GLOBAL_KEY, { ...global, memberCount: AUTHOR_MAX + 1 }]])) };
    rejects(memberTx(BOX_A, { action: "enrol", publicKey: NodeSigner.generate().publicKey, roles: Role.user, name: "one too many" }), ResultCode.memberLimit);
  });

  test("every result code but ok has a test above", () => {
    // Keep this list in step with ResultCode: a new code needs a transcript here.
    const covered = [
      "unknownAuthor", "authorRemoved", "badSignature", "staleSequence", "sequenceGap", "notPermitted",
      "readingTimeOrder", "readingTimeWindow", "readingCounterBackwards", "readingCounterJump",
      "orderEnergy", "orderPrice", "orderInterval", "orderExpired", "orderCounterparty", "openOrdersLimit",
      "orderNotFound", "notOrderAuthor", "keyAlreadyEnrolled", "unknownSubject", "lastAdmin", "noRoles",
      "lastBox", "memberLimit", "islandUnchanged", "islandTimeOrder", "eventTimeWindow", "unknownPremise", "switchTimeOrder",
      // governance.test.ts has these:
      "proposalVoting", "proposalInvalid", "proposalsLimit", "proposalNotFound", "votingClosed", "alreadyVoted",
    ];
    assert.deepEqual(Object.keys(ResultCode).filter((k) => k !== "ok").sort(), [...covered].sort());
  });
});

describe("state: island and switch transactions (the microgrid controller)", () => {
  // BOX_A gains the controller role; Ann (a user) may not island the microgrid or switch breakers.
  const island = (author: number, islanded: boolean, timeMs: number, reason: "UV1" | "reconnected" | "manual" = islanded ? "UV1" : "reconnected") =>
    h.tx(author, { type: "island", islanded, timeMs, reason, measured: islanded ? 1_500 : 0 });
  const sw = (author: number, premise: number, close: boolean, timeMs: number) =>
    h.tx(author, { type: "switch", premise, breaker: 0, close, readback: close ? "closed" : "open", timeMs, reason: close ? "restore" : "deficit", supplyW: 10_000, demandW: 2_000 });
  beforeEach(() => accepts(memberTx(BOX_A, { action: "setRoles", subject: BOX_A, roles: Role.box | Role.admin | Role.controller })));

  test("notPermitted: only a controller islands the microgrid or switches a breaker", () => {
    rejects(island(ANN, true, h.nextTimeMs - 500), ResultCode.notPermitted);
    rejects(sw(ANN, ANN, false, h.nextTimeMs - 500), ResultCode.notPermitted);
  });

  test("ok, then islandUnchanged and islandTimeOrder: a transition is a change, in time order", () => {
    accepts(island(BOX_A, true, h.nextTimeMs - 500));
    const g = get<GlobalRecord>(GLOBAL_KEY);
    assert.ok(g !== undefined && g.islandedSinceMs > 0 && g.islandChangeMs === h.state.timeMs - 500);
    rejects(island(BOX_A, true, h.nextTimeMs - 400), ResultCode.islandUnchanged);
    rejects(island(BOX_A, false, h.state.timeMs - 600), ResultCode.islandTimeOrder);
    accepts(island(BOX_A, false, h.nextTimeMs - 300));
    const after = get<GlobalRecord>(GLOBAL_KEY);
    assert.equal(after?.islandedSinceMs, -1);
    assert.ok((after?.islandedMsInPeriod ?? 0) > 0, "the islanded time is kept for settlement");
  });

  test("eventTimeWindow: an island or switch event stamped too far ahead of, or behind, its block", () => {
    rejects(island(BOX_A, true, h.nextTimeMs + SKEW_MS + 1), ResultCode.eventTimeWindow);
    rejects(sw(BOX_A, BOX_B, false, h.nextTimeMs - AGE_MS - 1), ResultCode.eventTimeWindow);
  });

  test("ok, unknownPremise and switchTimeOrder: a breaker record per premise, commands in time order", () => {
    accepts(sw(BOX_A, BOX_B, false, h.nextTimeMs - 500));
    assert.deepEqual(get(breakerKey(BOX_B, 0)), { kind: "breaker", premise: BOX_B, breaker: 0, commandedClose: false, readback: "open", changeMs: h.state.timeMs - 500, operations: 1 });
    rejects(sw(BOX_A, 77, false, h.nextTimeMs - 500), ResultCode.unknownPremise);
    rejects(sw(BOX_A, BOX_B, true, h.state.timeMs - 600), ResultCode.switchTimeOrder);
    accepts(sw(BOX_A, BOX_B, true, h.nextTimeMs - 500));
    assert.equal(get<{ operations: number }>(breakerKey(BOX_B, 0))?.operations, 2);
  });
});

describe("state: membership, replays and meter baselines", () => {
  test("a tx rejected by a rule consumes its sequence number: its bytes cannot be replayed once the rule would pass", () => {
    const newcomer = 4; // the next member index
    const early = orderTx(ANN, { counterparty: newcomer });
    rejects(early, ResultCode.orderCounterparty);
    h.apply([early]);
    accepts(memberTx(BOX_A, { action: "enrol", publicKey: NodeSigner.generate().publicKey, roles: Role.box, name: "newcomer" }));
    assert.deepEqual(names(h.apply([early]).results), ["staleSequence"]);
    assert.equal(get<MemberRecord>(memberKey(ANN))?.openOrders, 0);
  });

  test("a member enrolled by an admin can then submit", () => {
    const newBox = NodeSigner.generate();
    accepts(memberTx(BOX_A, { action: "enrol", publicKey: newBox.publicKey, roles: Role.box | Role.user, name: "box C" }));
    const index = 4; // the next member index after four genesis members
    const m = get<MemberRecord>(memberKey(index));
    assert.equal(m?.name, "box C");
    assert.deepEqual(m?.publicKey, newBox.publicKey);
    accepts(h.tx(index, reading(h.nextTimeMs - 100, 10, 0), { signer: newBox }), h.tx(index, order({ intervalStartMs: h.nextIntervalMs(), expiresAtMs: h.nextIntervalMs() }), { signer: newBox }));
    assert.equal(get<MeterRecord>(meterKey(index, 0))?.importWh, 10);
  });

  test("a member given a role by setRoles can use it at once; a removed member cannot submit anything", () => {
    accepts(memberTx(BOX_A, { action: "setRoles", subject: ANN, roles: Role.user | Role.box }), readingTx(ANN, 42));
    accepts(memberTx(BOX_A, { action: "remove", subject: ANN }));
    assert.equal(get<MemberRecord>(memberKey(ANN))?.active, false);
    rejects(readingTx(ANN, 43), ResultCode.authorRemoved);
    rejects(orderTx(ANN), ResultCode.authorRemoved);
  });

  test("a replayed transaction (same bytes, later block) is refused as staleSequence", () => {
    const r = readingTx(BOX_A, 1_000);
    const o = orderTx(ANN);
    accepts(r, o);
    const again = h.apply([r, o]);
    assert.deepEqual(names(again.results), ["staleSequence", "staleSequence"]);
  });

  test("the same transaction twice in one block: the second is staleSequence", () => {
    const o = orderTx(ANN);
    assert.deepEqual(names(h.apply([o, o]).results), ["ok", "staleSequence"]);
    assert.equal(get<MemberRecord>(memberKey(ANN))?.openOrders, 1);
  });

  test("a quality-flagged reading is accepted but does not move the counter baseline", () => {
    const t = h.nextTimeMs - 500;
    accepts(h.tx(BOX_A, reading(t, 10_000, 500)));
    // A glitch: counters far off, flagged by the box. Accepted as the latest reading...
    accepts(h.tx(BOX_A, reading(t + 1_000, 9_000_000, 1, { quality: Quality.counterJump })));
    let m = get<MeterRecord>(meterKey(BOX_A, 0));
    assert.equal(m?.importWh, 9_000_000);
    assert.equal(m?.quality, Quality.counterJump);
    assert.equal(m?.readingCount, 2);
    // ...but the baseline is still the last good one,
    assert.deepEqual([m?.goodTimeMs, m?.goodImportWh, m?.goodExportWh], [t, 10_000, 500]);
    // so the next good reading is checked against it, not against the glitch.
    accepts(h.tx(BOX_A, reading(t + 2_000, 10_100, 510)));
    rejects(h.tx(BOX_A, reading(t + 3_000, 10_099, 510)), ResultCode.readingCounterBackwards);
    m = get<MeterRecord>(meterKey(BOX_A, 0));
    assert.deepEqual([m?.goodTimeMs, m?.goodImportWh, m?.goodExportWh], [t + 2_000, 10_100, 510]);
  });

  test("a meter whose first reading is flagged has no baseline until a good one arrives", () => {
    const t = h.nextTimeMs - 500;
    accepts(h.tx(BOX_A, reading(t, 5, 0, { quality: Quality.commsError })));
    assert.equal(get<MeterRecord>(meterKey(BOX_A, 0))?.goodTimeMs, -1);
    accepts(h.tx(BOX_A, reading(t + 1_000, 99_999_999, 0)));
    assert.equal(get<MeterRecord>(meterKey(BOX_A, 0))?.goodImportWh, 99_999_999);
  });
});

describe("state: blocks that cannot be applied", () => {
  function blockRejected(block: Block, code: string, state: LedgerState = h.state): void {
    assert.throws(
      () => applyBlock(state, block, verifier),
      (err: unknown) => {
        assert.ok(err instanceof BlockRejectedError, String(err));
        assert.equal(err.code, code, err.message);
        assert.equal(err.height, block.header.height);
        return true;
      },
    );
  }

  test("PG_ERR_BLOCK_HEIGHT: skipping a height, or the same height again", () => {
    blockRejected(h.block([], { height: 2 }), "PG_ERR_BLOCK_HEIGHT");
    const first = h.block([]);
    h.apply([]);
    blockRejected(first, "PG_ERR_BLOCK_HEIGHT");
  });

  test("PG_ERR_BLOCK_PARENT: a parent hash that is not the last block's", () => {
    blockRejected(h.block([], { parentHash: hash(utf8("fork")) }), "PG_ERR_BLOCK_PARENT");
  });

  test("PG_ERR_BLOCK_HASH: a block object whose hash is not its header's", () => {
    const b = h.block([]);
    blockRejected({ ...b, hash: hash(utf8("claimed")) }, "PG_ERR_BLOCK_HASH");
  });

  test("PG_ERR_BLOCK_TIME: a time not after the parent's", () => {
    blockRejected(h.block([], { timeMs: h.state.timeMs }), "PG_ERR_BLOCK_TIME");
    blockRejected(h.block([], { timeMs: h.state.timeMs - 1 }), "PG_ERR_BLOCK_TIME");
  });

  test("PG_ERR_BLOCK_RAFT: a raft index not after the parent's, or a lower term", () => {
    blockRejected(h.block([], { raftIndex: h.state.raftIndex }), "PG_ERR_BLOCK_RAFT");
    h.apply([], { raftTerm: 5 });
    blockRejected(h.block([], { raftTerm: 4 }), "PG_ERR_BLOCK_RAFT");
    h.apply([], { raftTerm: 5, raftIndex: h.state.raftIndex + 10 }); // gaps in the raft log are fine
  });

  test("PG_ERR_BLOCK_SIZE: txCount not matching the body", () => {
    const b = h.block([readingTx(BOX_A, 1, 0, {}, -700), readingTx(BOX_A, 2, 0, {}, -600)]);
    blockRejected({ ...b, txs: b.txs.slice(1) }, "PG_ERR_BLOCK_SIZE");
  });

  test("PG_ERR_BLOCK_SIZE: more transactions than txsPerBlockMax, or more bytes than blockBytesMax", () => {
    h = new Harness(MEMBERS, { ...PARAMS, ledger: { txsPerBlockMax: 9, blockBytesMax: 1_024 } });
    // Readings of 100 bytes each (counters near 2^40).
    const readings = (n: number) => Array.from({ length: n }, (_, i) => readingTx(BOX_A, 2 ** 40 + i, 2 ** 40, {}, -900 + i));
    assert.equal(readings(1)[0]?.bytes.length, 100);
    blockRejected(h.block(readings(10)), "PG_ERR_BLOCK_SIZE"); // 10 > 9 transactions
    blockRejected(h.block(readings(9)), "PG_ERR_BLOCK_SIZE"); // 9 * 101 bytes + the largest header > 1 KiB
    assert.deepEqual(names(h.try(readings(8)).results), Array(8).fill("ok")); // 8 * 101 + 201 <= 1 KiB
  });

  test("PG_ERR_BLOCK_STATE_ROOT: a state root this box did not reach", () => {
    blockRejected(h.block([], { stateRoot: hash(utf8("elsewhere")) }), "PG_ERR_BLOCK_STATE_ROOT");
  });

  test("PG_ERR_BLOCK_TX_ROOT: a body swapped for another of the same length", () => {
    const b = h.block([readingTx(BOX_A, 1)]);
    blockRejected({ ...b, txs: [readingTx(BOX_A, 2)] }, "PG_ERR_BLOCK_TX_ROOT");
  });

  test("PG_ERR_BLOCK_PROPOSER: a user, an unknown index, or a removed box proposes; an active box may", () => {
    blockRejected(h.block([], { proposer: ANN }), "PG_ERR_BLOCK_PROPOSER");
    blockRejected(h.block([], { proposer: 99 }, h.signerOf(BOX_A)), "PG_ERR_BLOCK_PROPOSER");
    assert.equal(applyBlock(h.state, h.block([], { proposer: BOX_B }), verifier).state.height, 1);
    accepts(memberTx(BOX_A, { action: "remove", subject: BOX_B }));
    blockRejected(h.block([], { proposer: BOX_B }), "PG_ERR_BLOCK_PROPOSER");
  });

  test("PG_ERR_BLOCK_SIGNATURE: signed with another key, or a signature bit flipped", () => {
    blockRejected(h.block([], { proposer: BOX_A }, h.signerOf(BOX_B)), "PG_ERR_BLOCK_SIGNATURE");
    const b = h.block([readingTx(BOX_A, 1)]);
    const signature = b.signature.slice();
    signature[10] = (signature[10] as number) ^ 0x04;
    blockRejected({ ...b, signature }, "PG_ERR_BLOCK_SIGNATURE");
  });

  test("a rejected block leaves the state as it was", () => {
    const before = h.state;
    const dump = treeDump(before);
    assert.throws(() => h.apply([readingTx(BOX_A, 1)], { stateRoot: hash(utf8("x")) }), BlockRejectedError);
    assert.equal(h.state, before);
    assert.deepEqual(treeDump(h.state), dump);
  });
});

/** A block with a bit of everything, built on the harness's current state. */
function busyTxs(): SignedTx[] {
  const o = orderTx(ANN);
  return [
    readingTx(BOX_A, 1_000 + h.state.height),
    readingTx(BOX_B, 7 * h.state.height, 0, { voltagesDeciV: [2300] }),
    o,
    orderTx(BOX_B, { side: "sell", counterparty: ANN }),
    h.tx(ANN, { type: "cancel", orderId: o.id }),
    memberTx(BOX_A, { action: "enrol", publicKey: NodeSigner.generate().publicKey, roles: Role.user, name: `n${h.state.height}` }),
    readingTx(ANN, 1), // rejected: not permitted
  ];
}

describe("state: purity and determinism", () => {
  test("applyBlock does not modify its input state", () => {
    accepts(readingTx(BOX_A, 100), orderTx(ANN));
    const before = h.state;
    const snapshot = { root: toHex(before.tree.root), height: before.height, hash: toHex(before.blockHash), size: before.tree.size, dump: treeDump(before) };
    const result = h.apply(busyTxs());
    assert.ok(result.results.filter((c) => c === ResultCode.ok).length >= 5);
    assert.notEqual(toHex(result.state.tree.root), snapshot.root);
    assert.deepEqual({ root: toHex(before.tree.root), height: before.height, hash: toHex(before.blockHash), size: before.tree.size, dump: treeDump(before) }, snapshot);
  });

  test("a deep-frozen input state works and gives the same result", () => {
    accepts(readingTx(BOX_A, 100), orderTx(ANN));
    const block = h.block(busyTxs());
    const plain = applyBlock(h.state, block, verifier);
    const frozen = applyBlock(deepFreeze(h.state), block, verifier);
    assert.ok(Object.isFrozen(h.state.tree) && Object.isFrozen(h.state.chain.genesis.members));
    assert.deepEqual(frozen.results, plain.results);
    assert.equal(toHex(frozen.state.tree.root), toHex(plain.state.tree.root));
    assert.deepEqual(treeDump(frozen.state), treeDump(plain.state));
  });

  test("two boxes that build their state independently reach identical roots from the same blocks", () => {
    const blocks: Block[] = [];
    for (let i = 0; i < 6; i++) {
      const b = h.block(busyTxs());
      h.apply([...b.txs]);
      assert.deepEqual(h.state.blockHash, b.hash, "the harness built the same block again");
      blocks.push(b);
    }
    // A second box: its own parse of the genesis JSON, blocks received as bytes.
    const chain = makeChain(parseGenesis(JSON.parse(JSON.stringify(genesisJson(MEMBERS, PARAMS)))));
    let other = genesisState(chain);
    for (const b of blocks) {
      const result = applyBlock(other, decodeBlock(encodeBlock(b)), verifier);
      other = result.state;
    }
    assert.equal(toHex(other.tree.root), toHex(h.state.tree.root));
    assert.equal(toHex(other.blockHash), toHex(h.state.blockHash));
    assert.deepEqual(treeDump(other), treeDump(h.state));
  });

  test("the changes map covers every record that differs, with its new value", () => {
    const before = h.state;
    const { state, changes } = h.apply(busyTxs());
    const beforeDump = new Set(treeDump(before));
    const afterDump = new Set(treeDump(state));
    const differing = [...beforeDump, ...afterDump].filter((line) => !(beforeDump.has(line) && afterDump.has(line))).map((line) => line.split("=")[0] as string);
    assert.ok(differing.length >= 5);
    for (const key of differing) assert.ok(changes.has(key), key);
    for (const [key, rec] of changes) assert.deepEqual(state.tree.get(key), rec ?? undefined, key);
  });
});
