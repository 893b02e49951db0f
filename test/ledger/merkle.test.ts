// The transaction Merkle tree, checked against a dumb recursive reference
// (RFC 6962's definition: split at the largest power of two below n).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { sha256 } from "@noble/hashes/sha2.js";
import { type Hash, toHex, utf8 } from "../../ledger/hash.js";
import { EMPTY_MERKLE_ROOT, type MerkleProof, merkleProof, merkleRoot, verifyMerkleProof } from "../../ledger/merkle.js";

const concat = (...parts: Uint8Array[]): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (out.set(p, at), (at += p.length));
  return out;
};

/**
 * Reference, recursive: MTH(D) = D[0] for one leaf; otherwise split D into
 * runs of k leaves, k the largest power of 16 below n, and hash the runs'
 * roots together with the node tag (a single run's root is promoted).
 */
function referenceRoot(ids: readonly Hash[]): Hash {
  if (ids.length === 0) return sha256(Uint8Array.of(0x01));
  if (ids.length === 1) return ids[0] as Hash;
  let k = 1;
  while (k * 16 < ids.length) k *= 16;
  const children: Hash[] = [];
  for (let i = 0; i < ids.length; i += k) children.push(referenceRoot(ids.slice(i, i + k)));
  return children.length === 1 ? (children[0] as Hash) : sha256(concat(Uint8Array.of(0x01), ...children));
}

const ids = (n: number, salt = "tx"): Hash[] => Array.from({ length: n }, (_, i) => sha256(utf8(`${salt}-${i}`)));

describe("merkle", () => {
  test("the empty root is a fixed constant", () => {
    assert.equal(toHex(EMPTY_MERKLE_ROOT), "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a");
    assert.deepEqual(merkleRoot([]), EMPTY_MERKLE_ROOT);
  });

  test("roots of 1..40, 255..257 and 4097 leaves match the recursive reference", () => {
    for (const n of [...Array.from({ length: 40 }, (_, i) => i + 1), 255, 256, 257, 4097]) {
      assert.equal(toHex(merkleRoot(ids(n))), toHex(referenceRoot(ids(n))), `${n} leaves`);
    }
  });

  test("a one-leaf root is the id itself (ids are already tagged hashes), and order matters", () => {
    const [a, b] = ids(2) as [Hash, Hash];
    assert.deepEqual(merkleRoot([a]), a);
    assert.notDeepEqual(merkleRoot([a, b]), merkleRoot([b, a]));
  });

  test("no duplicate-leaf ambiguity: [a,b,c] and [a,b,c,c] have different roots", () => {
    const [a, b, c] = ids(3) as [Hash, Hash, Hash];
    assert.notDeepEqual(merkleRoot([a, b, c]), merkleRoot([a, b, c, c]));
  });

  test("a proof verifies for every index of trees of 1..40 leaves", () => {
    for (let n = 1; n <= 40; n++) {
      const leaves = ids(n);
      const root = merkleRoot(leaves);
      for (let i = 0; i < n; i++) {
        const proof = merkleProof(leaves, i);
        assert.ok(verifyMerkleProof(leaves[i] as Hash, proof, root), `n=${n} i=${i}`);
        assert.ok(proof.siblings.length <= 15 * Math.ceil(Math.log(n) / Math.log(16)), "at most 15 siblings a level");
      }
    }
  });

  test("a proof fails for a wrong id, a wrong root, or any other index (in or out of range)", () => {
    const stranger = sha256(utf8("not in the block"));
    for (let n = 1; n <= 40; n++) {
      const leaves = ids(n);
      const root = merkleRoot(leaves);
      const otherRoot = merkleRoot(ids(n, "other"));
      for (let i = 0; i < n; i++) {
        const proof = merkleProof(leaves, i);
        const id = leaves[i] as Hash;
        assert.ok(!verifyMerkleProof(stranger, proof, root), `wrong id n=${n} i=${i}`);
        assert.ok(!verifyMerkleProof(id, proof, otherRoot), `wrong root n=${n} i=${i}`);
        for (const j of [-1, ...Array.from({ length: n + 2 }, (_, k) => k)]) {
          if (j === i) continue;
          const moved: MerkleProof = { ...proof, index: j };
          assert.ok(!verifyMerkleProof(id, moved, root), `index ${j} instead of ${i}, n=${n}`);
        }
      }
    }
  });

  test("a proof fails with a count that is not a whole number", () => {
    const leaves = ids(1);
    const proof = merkleProof(leaves, 0);
    for (const count of [Number.NaN, 0, 0.5, -1]) assert.ok(!verifyMerkleProof(leaves[0] as Hash, { ...proof, count }, merkleRoot(leaves)), String(count));
  });

  test("a proof fails with a tampered, missing or extra sibling", () => {
    for (const n of [2, 3, 7, 16, 17, 33, 300]) {
      const leaves = ids(n);
      const root = merkleRoot(leaves);
      for (let i = 0; i < n; i++) {
        const proof = merkleProof(leaves, i);
        const id = leaves[i] as Hash;
        proof.siblings.forEach((_, s) => {
          const tampered = proof.siblings.map((h, k) => (k === s ? Uint8Array.from(h, (b, j) => (j === 0 ? b ^ 1 : b)) : h));
          assert.ok(!verifyMerkleProof(id, { ...proof, siblings: tampered }, root), `tampered sibling ${s}`);
        });
        assert.ok(!verifyMerkleProof(id, { ...proof, siblings: proof.siblings.slice(1) }, root), "missing sibling");
        assert.ok(!verifyMerkleProof(id, { ...proof, siblings: [...proof.siblings, id] }, root), "extra sibling");
      }
    }
  });
});
