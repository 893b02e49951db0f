// Governance in the ledger (ledger/governance.ts): proposals and votes, one
// member one vote, on the critical-load list, market parameters and
// membership; accepted proposals take effect at their stated height.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { NodeSigner } from "../../ledger/keys.js";
import {
  CRITICAL_LOADS_KEY,
  type CriticalLoadsRecord,
  type MemberRecord,
  type ProposalRecord,
  memberKey,
  proposalKey,
} from "../../ledger/records.js";
import { type ApplyResult, ResultCode, resultName } from "../../ledger/state.js";
import { type ProposalAction, type SignedTx, Role } from "../../ledger/tx.js";
import { currentMarketParams } from "../../ledger/governance.js";
import { Harness, type TestMember } from "./fixtures.js";

const ADMIN = 0; // box + admin
const ANN = 1; // user
const BEN = 2; // user
const CLINIC = 3; // user: a critical site
const AUDITOR = 4; // auditor only: no vote
const MEMBERS: TestMember[] = [
  { name: "box", signer: NodeSigner.generate(), roles: ["box", "admin"] },
  { name: "Ann", signer: NodeSigner.generate(), roles: ["user"] },
  { name: "Ben", signer: NodeSigner.generate(), roles: ["user"] },
  { name: "clinic", signer: NodeSigner.generate(), roles: ["user"] },
  { name: "auditor", signer: NodeSigner.generate(), roles: ["auditor"] },
];
// Four voters; quorum 3 of 4 (750 permille), approvals above two thirds of the votes cast.
const GOVERNANCE = { quorumPermille: 750, thresholdPermille: 666, votingBlocksMin: 2, votingBlocksMax: 50, openProposalsMax: 2 };

function harness(): Harness {
  return new Harness(MEMBERS, { governance: GOVERNANCE });
}

function apply(h: Harness, txs: SignedTx[], expect: number[] = txs.map(() => ResultCode.ok)): ApplyResult {
  const r = h.apply(txs);
  assert.deepEqual(r.results.map(resultName), expect.map(resultName));
  return r;
}

const propose = (h: Harness, author: number, action: ProposalAction, voting = 3, wait = 2) =>
  h.tx(author, { type: "proposal", action, votingEndsHeight: h.state.height + 1 + voting, effectiveHeight: h.state.height + 1 + voting + wait });
const vote = (h: Harness, author: number, p: SignedTx, approve = true) => h.tx(author, { type: "vote", proposal: p.id, approve });
const proposal = (h: Harness, p: SignedTx) => h.state.tree.get(proposalKey(p.id)) as ProposalRecord;

/** Apply empty blocks until the height is reached. */
function until(h: Harness, height: number): void {
  while (h.state.height < height) apply(h, []);
}

describe("governance", () => {
  test("an accepted critical-load list takes effect at its stated height, not before", () => {
    const h = harness();
    const p = propose(h, ANN, { kind: "criticalLoads", premises: [CLINIC, BEN] });
    apply(h, [p]);
    const ends = proposal(h, p).votingEndsHeight;
    apply(h, [vote(h, ANN, p), vote(h, BEN, p), vote(h, CLINIC, p), vote(h, ADMIN, p, false)]);
    until(h, ends + 1); // voting closed in the block after its end: decided
    assert.equal(proposal(h, p).status, "accepted");
    assert.equal(proposal(h, p).electorate, 4, "the auditor has no vote");
    assert.equal(h.state.tree.get(CRITICAL_LOADS_KEY), undefined, "accepted, not yet in force");
    until(h, proposal(h, p).effectiveHeight);
    assert.equal(proposal(h, p).status, "applied");
    assert.deepEqual((h.state.tree.get(CRITICAL_LOADS_KEY) as CriticalLoadsRecord).premises, [CLINIC, BEN]);
  });

  test("without quorum, or without enough approvals, a proposal is rejected and changes nothing", () => {
    const h = harness();
    const fewVotes = propose(h, ANN, { kind: "criticalLoads", premises: [CLINIC] });
    const split = propose(h, BEN, { kind: "criticalLoads", premises: [BEN] });
    apply(h, [fewVotes, split]);
    // 2 of 4 vote on the first (quorum: 3); on the second 3 vote, 1 approves (not above two thirds).
    apply(h, [vote(h, ANN, fewVotes), vote(h, BEN, fewVotes), vote(h, ANN, split), vote(h, BEN, split, false), vote(h, CLINIC, split, false)]);
    until(h, proposal(h, split).effectiveHeight);
    assert.equal(proposal(h, fewVotes).status, "rejected");
    assert.equal(proposal(h, split).status, "rejected");
    assert.equal(h.state.tree.get(CRITICAL_LOADS_KEY), undefined);
  });

  test("a market-parameter change applies on top of the parameters in force; a later one that no longer fits fails", () => {
    const h = harness();
    const raiseMin = propose(h, ANN, { kind: "marketParams", changes: [{ param: "priceMinMicroPerKWh", value: 1_500_000 }, { param: "clearingRule", value: 1 }] });
    const lowerMax = propose(h, BEN, { kind: "marketParams", changes: [{ param: "priceMaxMicroPerKWh", value: 1_000_000 }] }, 4);
    apply(h, [raiseMin, lowerMax]); // each valid alone against the genesis (min 0, max 2,000,000)
    const everyone = [ADMIN, ANN, BEN, CLINIC];
    apply(h, [...everyone.map((m) => vote(h, m, raiseMin)), ...everyone.map((m) => vote(h, m, lowerMax))]);
    until(h, proposal(h, lowerMax).effectiveHeight);
    assert.equal(proposal(h, raiseMin).status, "applied");
    assert.equal(proposal(h, lowerMax).status, "failed");
    assert.equal(proposal(h, lowerMax).outcome, "proposalInvalid");
    const m = currentMarketParams({ get: (k) => h.state.tree.get(k) as never }, h.genesis);
    assert.deepEqual([m.priceMinMicroPerKWh, m.priceMaxMicroPerKWh, m.clearingRule], [1_500_000, 2_000_000, "pay-as-bid"]);
    // Orders now obey the voted limits.
    const next = h.nextIntervalMs();
    apply(h, [h.tx(ANN, { type: "order", side: "buy", energyWh: 100, priceMicroPerKWh: 1_000_000, intervalStartMs: next, expiresAtMs: next + 1, flags: 0, counterparty: null })], [ResultCode.orderPrice]);
  });

  test("enrolment and removal by vote go through the membership rules", () => {
    const h = harness();
    const newcomer = NodeSigner.generate();
    const enrol = propose(h, ANN, { kind: "enrol", publicKey: newcomer.publicKey, roles: Role.user | Role.renewable, name: "newcomer" });
    const removeAdmin = propose(h, BEN, { kind: "remove", subject: ADMIN });
    apply(h, [enrol, removeAdmin]);
    const everyone = [ADMIN, ANN, BEN, CLINIC];
    apply(h, [...everyone.map((m) => vote(h, m, enrol)), ...everyone.map((m) => vote(h, m, removeAdmin))]);
    until(h, proposal(h, removeAdmin).effectiveHeight);
    assert.equal(proposal(h, enrol).status, "applied");
    assert.equal((h.state.tree.get(memberKey(5)) as MemberRecord).name, "newcomer");
    assert.equal(proposal(h, removeAdmin).status, "failed", "the last admin (and box) stays");
    assert.equal(proposal(h, removeAdmin).outcome, "lastAdmin");
  });

  test("every governance result code: who may propose and vote, periods, validity, limits, one vote each", () => {
    const h = harness();
    const list = { kind: "criticalLoads", premises: [CLINIC] } as const;
    apply(h, [propose(h, AUDITOR, list)], [ResultCode.notPermitted]);
    apply(h, [propose(h, ANN, list, 1)], [ResultCode.proposalVoting]); // shorter than votingBlocksMin
    apply(h, [propose(h, ANN, list, 51)], [ResultCode.proposalVoting]); // longer than votingBlocksMax
    apply(h, [propose(h, ANN, list, 3, 51)], [ResultCode.proposalVoting]); // waits too long to take effect
    apply(h, [propose(h, ANN, { kind: "criticalLoads", premises: [77] })], [ResultCode.proposalInvalid]);
    apply(h, [propose(h, ANN, { kind: "marketParams", changes: [{ param: "priceMinMicroPerKWh", value: 3_000_000 }] })], [ResultCode.proposalInvalid]);
    const a = propose(h, ANN, list, 5);
    const b = propose(h, BEN, list, 5);
    apply(h, [a, b, propose(h, CLINIC, list, 5)], [ResultCode.ok, ResultCode.ok, ResultCode.proposalsLimit]);
    apply(h, [vote(h, ANN, a), vote(h, ANN, a), vote(h, AUDITOR, a)], [ResultCode.ok, ResultCode.alreadyVoted, ResultCode.notPermitted]);
    apply(h, [h.tx(BEN, { type: "vote", proposal: new Uint8Array(32), approve: true })], [ResultCode.proposalNotFound]);
    until(h, proposal(h, a).votingEndsHeight);
    apply(h, [vote(h, BEN, a)], [ResultCode.votingClosed]);
  });
});
