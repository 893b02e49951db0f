// Merkle root of a block's transactions: a 16-way tree whose leaves are the
// transaction ids themselves.
//
//   level 0   = the ids, in block order
//   level k+1 = for each run of 16 nodes of level k (the last run may be
//               shorter): H(merkleNode | the run's hashes), or the node
//               itself, promoted unchanged, when the run has one node
//   root      = the single node of the top level; EMPTY_MERKLE_ROOT for none
//
// Why 16-way: one SHA-256 call costs ~1.4 µs of overhead plus ~0.4 µs per 64
// bytes here (pure-JS @noble/hashes on a slow core), and a full block holds
// thousands of readings. A binary tree costs one call per transaction (~2 µs,
// 2% of a signature check); 16-way costs one call per 15, which keeps
// verification the only real cost of applying a block. A proof is longer
// (up to 15 hashes a level, 4 levels for 65,536 transactions).
// A leaf can never pose as a node: an id is H(tx tag | bytes), a node
// H(node tag | children). Promoting a lone node instead of pairing it with
// itself avoids the duplicate-leaf ambiguity of Bitcoin's tree
// (CVE-2012-2459). The leaf count is part of the signed header (txCount),
// and a proof is checked against it.
import { assert } from "./assert.js";
import { HASH_BYTES, type Hash, HashTag, hashTagged } from "./hash.js";

export const MERKLE_ARITY = 16;

export const EMPTY_MERKLE_ROOT: Hash = hashTagged(HashTag.merkleNode);

function groupHash(group: readonly Hash[]): Hash {
  return hashTagged(HashTag.merkleNode, ...group);
}

function nextLevel(level: readonly Hash[]): Hash[] {
  const next: Hash[] = [];
  for (let i = 0; i < level.length; i += MERKLE_ARITY) {
    const group = level.slice(i, i + MERKLE_ARITY);
    next.push(group.length === 1 ? (group[0] as Hash) : groupHash(group));
  }
  return next;
}

export function merkleRoot(ids: readonly Hash[]): Hash {
  if (ids.length === 0) return EMPTY_MERKLE_ROOT;
  for (const id of ids) assert(id.length === HASH_BYTES, "merkle leaves are 32-byte ids");
  let level: readonly Hash[] = ids;
  while (level.length > 1) level = nextLevel(level);
  return level[0] as Hash;
}

export interface MerkleProof {
  readonly index: number;
  readonly count: number; // leaves in the tree (the block header's txCount)
  /** Bottom-up; for each level, the other members of the node's run, in order. */
  readonly siblings: readonly Hash[];
}

export function merkleProof(ids: readonly Hash[], index: number): MerkleProof {
  assert(Number.isInteger(index) && index >= 0 && index < ids.length, "proof index in range");
  let level: readonly Hash[] = ids;
  let i = index;
  const siblings: Hash[] = [];
  while (level.length > 1) {
    const start = i - (i % MERKLE_ARITY);
    const group = level.slice(start, start + MERKLE_ARITY);
    group.forEach((h, k) => {
      if (start + k !== i) siblings.push(h);
    });
    level = nextLevel(level);
    i = Math.floor(i / MERKLE_ARITY);
  }
  return { index, count: ids.length, siblings };
}

export function verifyMerkleProof(id: Hash, proof: MerkleProof, root: Hash): boolean {
  if (!Number.isSafeInteger(proof.index) || !Number.isSafeInteger(proof.count) || proof.index < 0 || proof.index >= proof.count) return false;
  let node = id;
  let i = proof.index;
  let width = proof.count;
  let s = 0;
  while (width > 1) {
    const start = i - (i % MERKLE_ARITY);
    const groupLength = Math.min(MERKLE_ARITY, width - start);
    if (groupLength > 1) {
      const group: Hash[] = [];
      for (let k = 0; k < groupLength; k++) {
        const h = start + k === i ? node : proof.siblings[s++];
        if (h === undefined || h.length !== HASH_BYTES) return false;
        group.push(h);
      }
      node = groupHash(group);
    }
    i = Math.floor(i / MERKLE_ARITY);
    width = Math.ceil(width / MERKLE_ARITY);
  }
  return s === proof.siblings.length && node.length === root.length && node.every((b, k) => b === root[k]);
}
