// Quorum arithmetic, kept tiny and separate (as etcd's quorum/ package) so it
// can be tested against a dumb reference. A majority is counted over the
// configured voters, the node itself included: votes > voters / 2. With 4
// voters, 2 votes are NOT a majority; with 5, 3 are. Learners never count.
import { assert } from "../assert.js";

export type NodeId = number;

export const VoteResult = { pending: "pending", won: "won", lost: "lost" } as const;
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult];

export function isMajority(count: number, voterCount: number): boolean {
  assert(Number.isInteger(count) && Number.isInteger(voterCount) && count >= 0 && voterCount >= 0, "counts are whole numbers");
  return count > voterCount / 2;
}

/** The outcome of an election so far, from the answers of `voters` (true = granted). */
export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  if (voters.length === 0) return VoteResult.won; // an empty configuration decides nothing against anyone
  let granted = 0;
  let refused = 0;
  for (const v of voters) {
    const answer = votes.get(v);
    if (answer === true) granted++;
    else if (answer === false) refused++;
  }
  if (isMajority(granted, voters.length)) return VoteResult.won;
  const missing = voters.length - granted - refused;
  return isMajority(granted + missing, voters.length) ? VoteResult.pending : VoteResult.lost;
}

/**
 * The largest index that a majority of `voters` hold: sort the voters' match
 * indexes descending, NUMERICALLY, and take the one at position floor(n/2).
 * (Sorting numbers as strings is a classic bug: ["10","9"] sorts "10" first.)
 */
export function committedIndex(voters: readonly NodeId[], match: ReadonlyMap<NodeId, number>): number {
  if (voters.length === 0) return Number.MAX_SAFE_INTEGER; // no constraint (joint halves may be empty)
  const indexes = voters.map((v) => match.get(v) ?? 0).sort((a, b) => b - a);
  const at = Math.floor(voters.length / 2);
  const result = indexes[at] as number;
  assert(isMajority(indexes.filter((i) => i >= result).length, voters.length), "a majority holds the committed index");
  return result;
}
