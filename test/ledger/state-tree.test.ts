// The persistent sparse Merkle state tree, compared with a plain Map.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Writer } from "../../ledger/codec.js";
import { type Hash, toHex } from "../../ledger/hash.js";
import { BUCKET_COUNT, EMPTY_STATE_ROOT, NODE_ARITY, STATE_TREE_LEVELS, StateTree, bucketOf, verifyStateProof } from "../../ledger/state-tree.js";
import { Rng } from "./fixtures.js";

const encode = (v: number): Uint8Array => new Writer(8).uvar(v).finish();
const empty = (): StateTree<number> => StateTree.empty<number>(encode);

/** Keys chosen so that many share a bucket (buckets with 2, 3 or more keys get exercised). */
const KEY_POOL: string[] = (() => {
  const byBucket = new Map<number, string[]>();
  for (let i = 0; i < 40_000; i++) {
    const key = `m/${i}`;
    const b = bucketOf(key);
    byBucket.set(b, [...(byBucket.get(b) ?? []), key]);
  }
  const crowded = [...byBucket.values()].filter((keys) => keys.length >= 2).sort((a, b) => b.length - a.length);
  assert.ok((crowded[0] as string[]).length >= 3, "a bucket with at least three keys");
  const shared = crowded.slice(0, 12).flat();
  const lonely = Array.from({ length: 40 }, (_, i) => `r/${i}/0`);
  return [...shared, ...lonely, "", "k/ünïcödé"];
})();

function contents(tree: StateTree<number>): [string, number][] {
  return [...tree.entries()].map((e) => [e.key, e.value] as [string, number]).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function sorted(ref: ReadonlyMap<string, number>): [string, number][] {
  return [...ref.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

function fromScratch(ref: ReadonlyMap<string, number>): StateTree<number> {
  return empty().withUpdates(new Map(ref));
}

function randomBatch(rng: Rng, ref: ReadonlyMap<string, number>): Map<string, number | null> {
  const batch = new Map<string, number | null>();
  const n = rng.range(1, 12);
  for (let i = 0; i < n; i++) {
    const key = rng.pick(KEY_POOL);
    // Deletions of present keys, deletions of absent keys, inserts and overwrites.
    batch.set(key, rng.int(3) === 0 ? null : ref.has(key) && rng.int(2) === 0 ? (ref.get(key) as number) : rng.int(1_000_000));
  }
  return batch;
}

const flip = (h: Hash): Hash => Uint8Array.from(h, (b, i) => (i === 31 ? b ^ 0x80 : b));

describe("state tree", () => {
  test("the empty tree has the empty root, size 0 and no entries", () => {
    const t = empty();
    assert.deepEqual(t.root, EMPTY_STATE_ROOT);
    assert.equal(t.size, 0);
    assert.deepEqual([...t.entries()], []);
    assert.equal(t.get("m/0"), undefined);
  });

  test("randomized sets and deletes agree with a Map, and roots are history independent", () => {
    for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
      const rng = new Rng(seed);
      let tree = empty();
      const ref = new Map<string, number>();
      for (let step = 0; step < 60; step++) {
        const batch = randomBatch(rng, ref);
        tree = tree.withUpdates(batch);
        for (const [k, v] of batch) v === null ? ref.delete(k) : ref.set(k, v);
        assert.equal(tree.size, ref.size, `size, seed ${seed} step ${step}`);
        for (const k of KEY_POOL) assert.equal(tree.get(k), ref.get(k), `get ${k}, seed ${seed} step ${step}`);
        assert.deepEqual(contents(tree), sorted(ref), `entries, seed ${seed} step ${step}`);
        assert.equal(toHex(tree.root), toHex(fromScratch(ref).root), `history independence, seed ${seed} step ${step}`);
      }
    }
  });

  test("entries() yields every key exactly once, with the encoding of its value", () => {
    const ref = new Map(KEY_POOL.map((k, i) => [k, i] as [string, number]));
    const tree = fromScratch(ref);
    const seen = new Set<string>();
    for (const e of tree.entries()) {
      assert.ok(!seen.has(e.key), `duplicate ${e.key}`);
      seen.add(e.key);
      assert.deepEqual(e.bytes, encode(e.value));
    }
    assert.equal(seen.size, KEY_POOL.length);
  });

  test("the same contents inserted one by one in different orders give one root", () => {
    const keys = KEY_POOL.slice(0, 30);
    const one = keys.reduce((t, k, i) => t.withUpdates(new Map([[k, i]])), empty());
    const reversed = [...keys].reverse().reduce((t, k) => t.withUpdates(new Map([[k, keys.indexOf(k)]])), empty());
    assert.deepEqual(one.root, reversed.root);
    // Detours leave no trace: add junk, then delete it.
    const detour = one.withUpdates(new Map([["junk", 1], [KEY_POOL[40] as string, 2]])).withUpdates(new Map([["junk", null], [KEY_POOL[40] as string, null]]));
    assert.deepEqual(detour.root, one.root);
  });

  test("deleting everything returns to the empty root; deleting an absent key changes nothing", () => {
    const tree = fromScratch(new Map(KEY_POOL.map((k, i) => [k, i] as [string, number])));
    assert.deepEqual(tree.withUpdates(new Map([["absent", null]])).root, tree.root);
    const cleared = tree.withUpdates(new Map(KEY_POOL.map((k) => [k, null] as [string, null])));
    assert.equal(cleared.size, 0);
    assert.deepEqual(cleared.root, EMPTY_STATE_ROOT);
  });

  test("a value change changes the root; writing the same value does not", () => {
    const tree = fromScratch(new Map([["a", 1], ["b", 2]]));
    assert.notDeepEqual(tree.withUpdates(new Map([["a", 3]])).root, tree.root);
    assert.deepEqual(tree.withUpdates(new Map([["a", 1]])).root, tree.root);
  });

  test("withUpdates leaves the old tree unchanged (persistence)", () => {
    const rng = new Rng(99);
    const versions: { tree: StateTree<number>; root: string; contents: [string, number][] }[] = [];
    let tree = empty();
    let ref = new Map<string, number>();
    for (let step = 0; step < 40; step++) {
      versions.push({ tree, root: toHex(tree.root), contents: contents(tree) });
      const batch = randomBatch(rng, ref);
      tree = tree.withUpdates(batch);
      ref = new Map(ref);
      for (const [k, v] of batch) v === null ? ref.delete(k) : ref.set(k, v);
    }
    for (const v of versions) {
      assert.equal(toHex(v.tree.root), v.root);
      assert.deepEqual(contents(v.tree), v.contents);
      assert.equal(v.tree.size, v.contents.length);
    }
  });

  test("withUpdates with no updates returns the same tree", () => {
    const tree = fromScratch(new Map([["a", 1]]));
    assert.equal(tree.withUpdates(new Map()), tree);
  });
});

describe("state tree proofs", () => {
  // Every other pool key is present, so absent keys share buckets with present ones.
  const ref = new Map(KEY_POOL.filter((_, i) => i % 2 === 0).map((k, i) => [k, i * 7] as [string, number]));
  const tree = fromScratch(ref);
  const root = tree.root;
  const absent = [...KEY_POOL.filter((_, i) => i % 2 === 1), "never-set", "o/00"];

  test("the proof keys really share buckets", () => {
    const presentBuckets = new Set([...ref.keys()].map(bucketOf));
    assert.ok(absent.filter((k) => presentBuckets.has(bucketOf(k))).length >= 5);
  });

  test("a proof verifies for every present key with its value", () => {
    for (const [k, v] of ref) {
      const proof = tree.prove(k);
      assert.equal(proof.levels.length, STATE_TREE_LEVELS);
      assert.ok(proof.levels.every((l) => l.length === NODE_ARITY));
      assert.equal(proof.bucket, bucketOf(k));
      assert.ok(proof.bucketEntries.some((e) => e.key === k));
      assert.ok(verifyStateProof(proof, encode(v), root), k);
    }
  });

  test("an absence proof (value null) verifies for every absent key, also in an empty tree", () => {
    for (const k of absent) assert.ok(verifyStateProof(tree.prove(k), null, root), k);
    assert.ok(verifyStateProof(empty().prove("x"), null, EMPTY_STATE_ROOT));
  });

  test("a proof fails for a wrong value, a tampered entry, a tampered sibling or another root", () => {
    const otherRoot = tree.withUpdates(new Map([["x", 1]])).root;
    for (const [k, v] of ref) {
      const proof = tree.prove(k);
      const value = encode(v);
      assert.ok(!verifyStateProof(proof, encode(v + 1), root), `wrong value ${k}`);
      assert.ok(!verifyStateProof(proof, value, otherRoot), `other root ${k}`);
      for (let l = 0; l < STATE_TREE_LEVELS; l++) {
        for (const c of [0, 7, 15]) {
          const levels = proof.levels.map((hs, i) => (i === l ? hs.map((h, j) => (j === c ? flip(h) : h)) : hs));
          assert.ok(!verifyStateProof({ ...proof, levels }, value, root), `tampered child ${c} at level ${l} of ${k}`);
        }
      }
      const bucketEntries = proof.bucketEntries.map((e) => (e.key === k ? { key: e.key, bytes: Uint8Array.from(e.bytes, (b, i) => (i === 0 ? b ^ 1 : b)) } : e));
      assert.ok(!verifyStateProof({ ...proof, bucketEntries }, value, root), `tampered entry ${k}`);
      const dropped = proof.bucketEntries.filter((e) => e.key !== k);
      assert.ok(!verifyStateProof({ ...proof, bucketEntries: dropped }, null, root), `absence claimed by dropping ${k}'s entry`);
    }
  });

  test("an absence proof fails once tampered or against another root", () => {
    for (const k of absent.slice(0, 10)) {
      const proof = tree.prove(k);
      const levels = proof.levels.map((hs, i) => (i === 1 ? hs.map((h, j) => (j === 3 ? flip(h) : h)) : hs));
      assert.ok(!verifyStateProof({ ...proof, levels }, null, root), k);
      assert.ok(!verifyStateProof(proof, null, EMPTY_STATE_ROOT), k);
      const invented = [...proof.bucketEntries, { key: k, bytes: new Uint8Array(0) }].sort((x, y) => (x.key < y.key ? -1 : 1));
      assert.ok(!verifyStateProof({ ...proof, bucketEntries: invented }, new Uint8Array(0), root), `${k} with an invented entry`);
    }
  });

  test("an absence proof for a PRESENT key is refused", () => {
    for (const [k] of ref) assert.ok(!verifyStateProof(tree.prove(k), null, root), k);
  });

  test("a proof with unsorted or duplicated bucket entries is refused", () => {
    const [k, v] = [...ref].find(([key]) => tree.prove(key).bucketEntries.length >= 2) ?? [...ref][0]!;
    const proof = tree.prove(k);
    if (proof.bucketEntries.length >= 2) {
      assert.ok(!verifyStateProof({ ...proof, bucketEntries: [...proof.bucketEntries].reverse() }, encode(v), root));
    }
    assert.ok(!verifyStateProof({ ...proof, bucketEntries: [...proof.bucketEntries, ...proof.bucketEntries] }, encode(v), root));
  });

  test("a proof is refused for another key's bucket or a short sibling list", () => {
    const [k, v] = [...ref][0] as [string, number];
    const proof = tree.prove(k);
    assert.ok(verifyStateProof(proof, encode(v), root));
    assert.ok(!verifyStateProof({ ...proof, bucket: (proof.bucket ^ 1) % BUCKET_COUNT }, encode(v), root));
    assert.ok(!verifyStateProof({ ...proof, levels: proof.levels.slice(1) }, encode(v), root));
    assert.ok(!verifyStateProof({ ...proof, levels: proof.levels.map((hs) => hs.slice(1)) }, encode(v), root));
  });

});
