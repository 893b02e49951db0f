// Merkle root of a block's transactions. Leaves are tagged hashes of the
// transaction ids and inner nodes tagged hashes of two children (as in
// RFC 6962, so a leaf can never pose as a node). An odd node at the end of a
// level is promoted unchanged rather than paired with itself, which avoids
// the duplicate-leaf ambiguity of Bitcoin's tree (CVE-2012-2459).
import { assert } from "./assert.js";
import { HASH_BYTES, type Hash, HashTag, hashTagged, hashTagged2 } from "./hash.js";

export const EMPTY_MERKLE_ROOT: Hash = hashTagged(HashTag.merkleNode);

export function merkleLeaf(id: Hash): Hash {
  return hashTagged(HashTag.merkleLeaf, id);
}

export function merkleRoot(ids: readonly Hash[]): Hash {
  if (ids.length === 0) return EMPTY_MERKLE_ROOT;
  let level: Hash[] = ids.map((id) => {
    assert(id.length === HASH_BYTES, "merkle leaves are 32-byte ids");
    return merkleLeaf(id);
  });
  while (level.length > 1) level = nextLevel(level);
  return level[0] as Hash;
}

function nextLevel(level: readonly Hash[]): Hash[] {
  const next: Hash[] = [];
  for (let i = 0; i + 1 < level.length; i += 2) {
    next.push(hashTagged2(HashTag.merkleNode, level[i] as Hash, level[i + 1] as Hash));
  }
  if (level.length % 2 === 1) next.push(level[level.length - 1] as Hash);
  return next;
}

export interface MerkleProof {
  readonly index: number;
  readonly count: number;
  readonly siblings: readonly Hash[]; // bottom-up; levels where the node was promoted have none
}

export function merkleProof(ids: readonly Hash[], index: number): MerkleProof {
  assert(Number.isInteger(index) && index >= 0 && index < ids.length, "proof index in range");
  let level: Hash[] = ids.map(merkleLeaf);
  let i = index;
  const siblings: Hash[] = [];
  while (level.length > 1) {
    const sibling = i % 2 === 0 ? i + 1 : i - 1;
    if (sibling < level.length) siblings.push(level[sibling] as Hash);
    level = nextLevel(level);
    i = Math.floor(i / 2);
  }
  return { index, count: ids.length, siblings };
}

export function verifyMerkleProof(id: Hash, proof: MerkleProof, root: Hash): boolean {
  // Without this a one-leaf proof (no siblings) "verified" for any index.
  if (!Number.isSafeInteger(proof.index) || !Number.isSafeInteger(proof.count) || proof.index < 0 || proof.index >= proof.count) return false;
  let node = merkleLeaf(id);
  let i = proof.index;
  let width = proof.count;
  let s = 0;
  while (width > 1) {
    const sibling = i % 2 === 0 ? i + 1 : i - 1;
    if (sibling < width) {
      const other = proof.siblings[s++];
      if (other === undefined) return false;
      node = i % 2 === 0 ? hashTagged2(HashTag.merkleNode, node, other) : hashTagged2(HashTag.merkleNode, other, node);
    }
    i = Math.floor(i / 2);
    width = Math.ceil(width / 2);
  }
  return s === proof.siblings.length && node.every((b, k) => b === root[k]);
}
