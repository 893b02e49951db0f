// Community governance: proposals and votes, one member one vote, on the
// critical-load priority list, the market parameters, and membership
// (enrol, remove, set roles). A pure part of the ledger state machine
// (applyBlock in state.ts runs it); the genesis `governance` section sets
// the quorum, the threshold and the voting periods.
//
// Who votes: every active member with a role other than auditor alone (a
// read-only replica is not a neighbour). Any such member may propose.
//
// A proposal (transaction) names its action, the last block of its voting
// (votingEndsHeight: at least votingBlocksMin and at most votingBlocksMax
// blocks after the block that takes it) and the block at whose start it
// takes effect if accepted (effectiveHeight: after the voting, at most
// votingBlocksMax blocks after it). It is checked when made (its premises
// exist, its market parameters are valid together with the ones in force,
// its enrolment key is new, its subject is an active member); at most
// openProposalsMax proposals are open or waiting at once.
//
// A vote (transaction) approves or rejects one open proposal, once per
// member, up to and including votingEndsHeight.
//
// At the start of each block (before the market's step and the block's
// transactions):
//   1. every open proposal whose voting ended in an earlier block is
//      decided: the electorate is the members entitled to vote at that
//      point; it is accepted when votes cast x 1000 >= quorumPermille x
//      electorate and approvals x 1000 > thresholdPermille x votes cast,
//      else rejected (and leaves the open list);
//   2. every accepted proposal whose effectiveHeight has come is applied,
//      in the order the proposals were made: the critical-load list
//      replaces the last one; market parameter changes apply on top of the
//      ones in force (checked again: two proposals can each be valid alone
//      and not together, and then the later one fails); membership changes
//      go through the same rules as an admin's member transaction (the last
//      admin and the last box stay). An action that cannot apply any more
//      is recorded as failed, with the reason.
// Proposals and votes stay in the state as the audit trail.
import { assert, assertNever, bytesEqual } from "./assert.js";
import { type Genesis, type MarketParams, marketParamProblems } from "./genesis.js";
import type { Hash } from "./hash.js";
import {
  CRITICAL_LOADS_KEY,
  type CriticalLoadsRecord,
  GLOBAL_KEY,
  GOVERNANCE_KEY,
  type GlobalRecord,
  type GovernanceRecord,
  MARKET_PARAMS_KEY,
  type MarketParamsRecord,
  type MemberRecord,
  type ProposalRecord,
  type StateRecord,
  type VoteRecord,
  memberKey,
  proposalKey,
  publicKeyKey,
  voteKey,
} from "./records.js";
import { ResultCode } from "./results.js";
import { AUTHOR_MAX, type MemberBody, type ProposalAction, type ProposalBody, Role, type VoteBody } from "./tx.js";

/** Read and write access to the state as a block changes it (state.ts Overlay). */
export interface StateAccess {
  get<R extends StateRecord>(key: string, kind: R["kind"]): R | undefined;
  set(key: string, rec: StateRecord | null): void;
}

/** Whether a member takes part in votes (and may propose). */
export function isVoter(m: MemberRecord): boolean {
  return m.active && (m.roles & ~Role.auditor) !== 0;
}

/** The market parameters in force: the genesis ones, or what a vote made them. */
export function currentMarketParams(access: Pick<StateAccess, "get">, genesis: Genesis): MarketParams {
  return access.get<MarketParamsRecord>(MARKET_PARAMS_KEY, "marketParams")?.params ?? genesis.market;
}

/** The voted critical-load list (empty until a vote sets one). */
export function criticalLoads(access: Pick<StateAccess, "get">): readonly number[] {
  return access.get<CriticalLoadsRecord>(CRITICAL_LOADS_KEY, "criticalLoads")?.premises ?? [];
}

type MemberChange = Extract<MemberBody, { action: "enrol" }> | Extract<MemberBody, { action: "remove" }> | Extract<MemberBody, { action: "setRoles" }>;

/** Enrol, remove or set roles, under the membership rules (an admin's member transaction, or an accepted proposal). */
export function changeMembership(access: StateAccess, b: MemberChange): ResultCode {
  const global = access.get<GlobalRecord>(GLOBAL_KEY, "global");
  assert(global !== undefined, "the global record exists from genesis");
  switch (b.action) {
    case "enrol": {
      if (b.roles === 0) return ResultCode.noRoles;
      if (access.get(publicKeyKey(b.publicKey), "key") !== undefined) return ResultCode.keyAlreadyEnrolled;
      const index = global.memberCount;
      if (index > AUTHOR_MAX) return ResultCode.memberLimit; // member indexes must stay encodable
      access.set(memberKey(index), { kind: "member", index, publicKey: b.publicKey, roles: b.roles, active: true, name: b.name, lastSeq: 0, openOrders: 0 });
      access.set(publicKeyKey(b.publicKey), { kind: "key", member: index });
      access.set(GLOBAL_KEY, {
        ...global,
        memberCount: index + 1,
        activeAdmins: global.activeAdmins + ((b.roles & Role.admin) !== 0 ? 1 : 0),
        activeBoxes: global.activeBoxes + ((b.roles & Role.box) !== 0 ? 1 : 0),
      });
      return ResultCode.ok;
    }
    case "remove":
    case "setRoles": {
      const subject = access.get<MemberRecord>(memberKey(b.subject), "member");
      if (subject === undefined || !subject.active) return ResultCode.unknownSubject;
      const newRoles = b.action === "remove" ? 0 : b.roles;
      if (b.action === "setRoles" && newRoles === 0) return ResultCode.noRoles;
      const count = (role: number, roles: number): number => ((roles & role) !== 0 ? 1 : 0);
      const admins = global.activeAdmins - count(Role.admin, subject.roles) + count(Role.admin, newRoles);
      const boxes = global.activeBoxes - count(Role.box, subject.roles) + count(Role.box, newRoles);
      // Someone must stay able to enrol members, and someone able to propose blocks.
      if (admins < 1) return ResultCode.lastAdmin;
      if (boxes < 1) return ResultCode.lastBox;
      const roles = b.action === "remove" ? subject.roles : newRoles; // a removed member keeps its record for the audit trail
      access.set(memberKey(b.subject), { ...subject, roles, active: b.action !== "remove" });
      access.set(GLOBAL_KEY, { ...global, activeAdmins: admins, activeBoxes: boxes });
      return ResultCode.ok;
    }
    default:
      return assertNever(b, "member action");
  }
}

function memberChangeOf(a: Extract<ProposalAction, { kind: "enrol" | "remove" | "setRoles" }>): MemberChange {
  switch (a.kind) {
    case "enrol":
      return { type: "member", action: "enrol", publicKey: a.publicKey, roles: a.roles, name: a.name };
    case "remove":
      return { type: "member", action: "remove", subject: a.subject };
    case "setRoles":
      return { type: "member", action: "setRoles", subject: a.subject, roles: a.roles };
    default:
      return assertNever(a, "membership action");
  }
}

/** The market parameters a change would give on top of `base`, with everything wrong with them. */
function changedParams(base: MarketParams, a: Extract<ProposalAction, { kind: "marketParams" }>): { params: MarketParams; problems: string[] } {
  const next: Record<string, number | string> = { ...base };
  for (const c of a.changes) {
    if (c.param === "clearingRule") next[c.param] = c.value === 0 ? "pay-as-clear" : c.value === 1 ? "pay-as-bid" : "?";
    else if (c.param === "settlementMode") next[c.param] = c.value === 0 ? "shadow" : c.value === 1 ? "binding" : "?";
    else next[c.param] = c.value;
  }
  const params = next as unknown as MarketParams;
  return { params, problems: marketParamProblems(params) };
}

/** Whether an action could apply to the state as it is (a proposal is refused when it could not). */
function actionValid(access: StateAccess, genesis: Genesis, a: ProposalAction): boolean {
  switch (a.kind) {
    case "criticalLoads":
      return a.premises.every((p) => access.get<MemberRecord>(memberKey(p), "member")?.active === true);
    case "marketParams":
      return changedParams(currentMarketParams(access, genesis), a).problems.length === 0;
    case "enrol":
      return a.roles !== 0 && access.get(publicKeyKey(a.publicKey), "key") === undefined;
    case "remove":
    case "setRoles": {
      const subject = access.get<MemberRecord>(memberKey(a.subject), "member");
      return subject !== undefined && subject.active && (a.kind === "remove" || a.roles !== 0);
    }
    default:
      return assertNever(a, "proposal action");
  }
}

export function applyProposal(access: StateAccess, genesis: Genesis, author: MemberRecord, b: ProposalBody, id: Hash, height: number): ResultCode {
  const g = genesis.governance;
  if (!isVoter(author)) return ResultCode.notPermitted;
  const voting = b.votingEndsHeight - height;
  if (voting < g.votingBlocksMin || voting > g.votingBlocksMax || b.effectiveHeight - b.votingEndsHeight > g.votingBlocksMax) return ResultCode.proposalVoting;
  const gov = access.get<GovernanceRecord>(GOVERNANCE_KEY, "governance") ?? { kind: "governance", open: [] };
  if (gov.open.length >= g.openProposalsMax) return ResultCode.proposalsLimit;
  if (!actionValid(access, genesis, b.action)) return ResultCode.proposalInvalid;
  access.set(proposalKey(id), {
    kind: "proposal",
    id,
    author: author.index,
    action: b.action,
    createdHeight: height,
    votingEndsHeight: b.votingEndsHeight,
    effectiveHeight: b.effectiveHeight,
    yes: 0,
    no: 0,
    electorate: 0,
    status: "open",
    outcome: "",
  });
  access.set(GOVERNANCE_KEY, { kind: "governance", open: [...gov.open, id] });
  return ResultCode.ok;
}

export function applyVote(access: StateAccess, author: MemberRecord, b: VoteBody, height: number): ResultCode {
  if (!isVoter(author)) return ResultCode.notPermitted;
  const proposal = access.get<ProposalRecord>(proposalKey(b.proposal), "proposal");
  if (proposal === undefined) return ResultCode.proposalNotFound;
  if (proposal.status !== "open" || height > proposal.votingEndsHeight) return ResultCode.votingClosed;
  const key = voteKey(b.proposal, author.index);
  if (access.get<VoteRecord>(key, "vote") !== undefined) return ResultCode.alreadyVoted;
  access.set(key, { kind: "vote", proposal: b.proposal, member: author.index, approve: b.approve });
  access.set(proposalKey(b.proposal), { ...proposal, yes: proposal.yes + (b.approve ? 1 : 0), no: proposal.no + (b.approve ? 0 : 1) });
  return ResultCode.ok;
}

/** Whether a closed vote accepts: quorum of the electorate, and approvals above the threshold of the votes cast. */
export function accepts(p: Pick<ProposalRecord, "yes" | "no">, electorate: number, genesis: Genesis): boolean {
  const g = genesis.governance;
  const cast = p.yes + p.no;
  return cast > 0 && cast * 1_000 >= g.quorumPermille * electorate && p.yes * 1_000 > g.thresholdPermille * cast;
}

function applyAction(access: StateAccess, genesis: Genesis, p: ProposalRecord, height: number): ResultCode {
  const a = p.action;
  switch (a.kind) {
    case "criticalLoads":
      if (!a.premises.every((m) => access.get<MemberRecord>(memberKey(m), "member")?.active === true)) return ResultCode.unknownSubject;
      access.set(CRITICAL_LOADS_KEY, { kind: "criticalLoads", premises: a.premises, sinceHeight: height });
      return ResultCode.ok;
    case "marketParams": {
      const { params, problems } = changedParams(currentMarketParams(access, genesis), a);
      if (problems.length > 0) return ResultCode.proposalInvalid;
      access.set(MARKET_PARAMS_KEY, { kind: "marketParams", params, sinceHeight: height });
      return ResultCode.ok;
    }
    case "enrol":
    case "remove":
    case "setRoles":
      return changeMembership(access, memberChangeOf(a));
    default:
      return assertNever(a, "proposal action");
  }
}

/**
 * The governance work at the start of the block at `height`: decide the proposals whose voting has
 * ended, apply the accepted ones whose time has come. `members` walks the state before the block
 * (the electorate of every vote decided in this block).
 */
export function governanceStep(access: StateAccess, members: () => Iterable<StateRecord>, genesis: Genesis, height: number, resultName: (code: number) => string): void {
  const gov = access.get<GovernanceRecord>(GOVERNANCE_KEY, "governance");
  if (gov === undefined || gov.open.length === 0) return;
  const due = gov.open.map((id) => access.get<ProposalRecord>(proposalKey(id), "proposal") as ProposalRecord);
  assert(due.every((p) => p !== undefined), "an open proposal has its record");
  if (!due.some((p) => (p.status === "open" && height > p.votingEndsHeight) || (p.status === "accepted" && height >= p.effectiveHeight))) return;
  let electorate = -1;
  const stillOpen: Hash[] = [];
  for (const p0 of due) {
    let p = p0;
    if (p.status === "open" && height > p.votingEndsHeight) {
      if (electorate < 0) {
        electorate = 0;
        for (const r of members()) if (r.kind === "member" && isVoter(r)) electorate++;
      }
      p = { ...p, electorate, status: accepts(p, electorate, genesis) ? "accepted" : "rejected" };
    }
    if (p.status === "accepted" && height >= p.effectiveHeight) {
      const code = applyAction(access, genesis, p, height);
      p = code === ResultCode.ok ? { ...p, status: "applied" } : { ...p, status: "failed", outcome: resultName(code) };
    }
    if (p !== p0) access.set(proposalKey(p.id), p);
    if (p.status === "open" || p.status === "accepted") stillOpen.push(p.id);
  }
  if (stillOpen.length !== gov.open.length || !stillOpen.every((id, i) => bytesEqual(id, gov.open[i] as Hash))) access.set(GOVERNANCE_KEY, { kind: "governance", open: stillOpen });
}
