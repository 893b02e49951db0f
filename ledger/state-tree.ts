// The state commitment: a persistent (immutable, structurally shared) sparse
// Merkle tree of fixed depth over 2^16 buckets.
//
//   bucket(key)  = first 16 bits of SHA-256(key)
//   leaf hash    = H(stateLeaf | len(key) | key | SHA-256(encode(value)))
//   bucket hash  = H(stateBucket | leaf hashes in key order), or EMPTY[0]
//   node hash    = H(stateNode | left | right), EMPTY[d] for an empty subtree
//
// Updating k keys costs about k * 17 hashes and path-copies k * 16 nodes, so
// the previous state is never touched (apply() returns a new state and the
// caller may keep the old one). A proof for one key is the (key, value hash)
// of every entry in its bucket plus 16 sibling hashes; because the keys are
// in the proof, it can show a key's value or that the key is absent.
import { assert, bytesEqual } from "./assert.js";
import { Writer } from "./codec.js";
import { type Hash, HashTag, hash, hashTagged, hashTagged2, utf8 } from "./hash.js";

export const STATE_TREE_DEPTH = 16;
const BUCKET_COUNT = 1 << STATE_TREE_DEPTH;

/** EMPTY[d] is the hash of an empty subtree whose leaves are d levels below it. */
const EMPTY: Hash[] = (() => {
  const out: Hash[] = [hashTagged(HashTag.stateBucket)];
  for (let d = 1; d <= STATE_TREE_DEPTH; d++) {
    const below = out[d - 1] as Hash;
    out.push(hashTagged2(HashTag.stateNode, below, below));
  }
  return out;
})();

export const EMPTY_STATE_ROOT: Hash = EMPTY[STATE_TREE_DEPTH] as Hash;

export interface Entry<V> {
  readonly key: string;
  readonly value: V;
  readonly leafHash: Hash;
}

interface Bucket<V> {
  readonly kind: "bucket";
  readonly hash: Hash;
  readonly entries: readonly Entry<V>[]; // sorted by key, non-empty
}

interface Inner<V> {
  readonly kind: "inner";
  readonly hash: Hash;
  readonly left: TreeNode<V> | null;
  readonly right: TreeNode<V> | null;
}

type TreeNode<V> = Bucket<V> | Inner<V>;

// Bucket indexes are needed on every lookup; keys repeat a lot (a member, a
// meter), so cache them. The cache is bounded and only saves work: results
// never depend on it.
const BUCKET_CACHE_MAX = 1 << 17;
const bucketCache = new Map<string, number>();

export function bucketOf(key: string): number {
  const cached = bucketCache.get(key);
  if (cached !== undefined) return cached;
  const h = hash(utf8(key));
  const index = ((h[0] as number) << 8) | (h[1] as number);
  if (bucketCache.size >= BUCKET_CACHE_MAX) bucketCache.clear();
  bucketCache.set(key, index);
  return index;
}

export function valueHash(valueBytes: Uint8Array): Hash {
  return hash(valueBytes);
}

export function leafHashOf(key: string, valueDigest: Hash): Hash {
  const w = new Writer(48 + key.length);
  w.u8(HashTag.stateLeaf).str(key, 1024).fixed(valueDigest, 32);
  return hash(w.finish());
}

export function leafHash(key: string, valueBytes: Uint8Array): Hash {
  return leafHashOf(key, valueHash(valueBytes));
}

function bucketHash(leafHashes: readonly Hash[]): Hash {
  const buf = new Uint8Array(1 + leafHashes.length * 32);
  buf[0] = HashTag.stateBucket;
  leafHashes.forEach((h, i) => buf.set(h, 1 + i * 32));
  return hash(buf);
}

function nodeHash<V>(node: TreeNode<V> | null, depth: number): Hash {
  return node === null ? (EMPTY[depth] as Hash) : node.hash;
}

/** One pending change: a new value or a deletion (null). */
export type Update<V> = V | null;

/** The canonical encoding of a value, which its leaf hash commits to. */
export type Encode<V> = (value: V) => Uint8Array;

export interface StateProof {
  readonly key: string;
  readonly bucket: number;
  /** Every entry of the key's bucket, in key order: its key and the hash of its value's encoding. */
  readonly bucketEntries: readonly { readonly key: string; readonly valueHash: Hash }[];
  readonly siblings: readonly Hash[]; // STATE_TREE_DEPTH hashes, from the bucket level up
}

export class StateTree<V> {
  private constructor(
    private readonly rootNode: TreeNode<V> | null,
    readonly size: number,
    private readonly encode: Encode<V>,
  ) {}

  static empty<V>(encode: Encode<V>): StateTree<V> {
    return new StateTree<V>(null, 0, encode);
  }

  get root(): Hash {
    return nodeHash(this.rootNode, STATE_TREE_DEPTH);
  }

  get(key: string): V | undefined {
    const bucket = this.findBucket(bucketOf(key));
    if (bucket === null) return undefined;
    const i = searchEntries(bucket.entries, key);
    return i >= 0 ? (bucket.entries[i] as Entry<V>).value : undefined;
  }

  private findBucket(index: number): Bucket<V> | null {
    let node = this.rootNode;
    for (let d = STATE_TREE_DEPTH - 1; d >= 0 && node !== null; d--) {
      assert(node.kind === "inner", "inner nodes above bucket level");
      node = ((index >> d) & 1) === 0 ? node.left : node.right;
    }
    if (node === null) return null;
    assert(node.kind === "bucket", "bucket at the bottom level");
    return node;
  }

  /** A new tree with the updates applied; this tree is left unchanged. */
  withUpdates(updates: ReadonlyMap<string, Update<V>>): StateTree<V> {
    if (updates.size === 0) return this;
    const byBucket = new Map<number, [string, Update<V>][]>();
    for (const [key, update] of updates) {
      const b = bucketOf(key);
      let list = byBucket.get(b);
      if (list === undefined) byBucket.set(b, (list = []));
      list.push([key, update]);
    }
    const indexes = [...byBucket.keys()].sort((a, b) => a - b);
    let sizeDelta = 0;
    const rebuilt = new Map<number, Bucket<V> | null>();
    for (const index of indexes) {
      const old = this.findBucket(index);
      const [bucket, delta] = updateBucket(old, byBucket.get(index) as [string, Update<V>][], this.encode);
      rebuilt.set(index, bucket);
      sizeDelta += delta;
    }
    const root = rebuildPath(this.rootNode, STATE_TREE_DEPTH, 0, indexes, rebuilt);
    const next = new StateTree<V>(root, this.size + sizeDelta, this.encode);
    assert(next.size >= 0, "state tree size never negative");
    return next;
  }

  *entries(): Generator<Entry<V>> {
    yield* walk(this.rootNode);
  }

  prove(key: string): StateProof {
    const index = bucketOf(key);
    const siblings: Hash[] = [];
    let node = this.rootNode;
    for (let d = STATE_TREE_DEPTH - 1; d >= 0; d--) {
      if (node === null) {
        siblings.push(EMPTY[d] as Hash);
        continue;
      }
      assert(node.kind === "inner", "inner nodes above bucket level");
      const goRight = ((index >> d) & 1) === 1;
      siblings.push(nodeHash(goRight ? node.left : node.right, d));
      node = goRight ? node.right : node.left;
    }
    const entries = node === null ? [] : (node as Bucket<V>).entries;
    const bucketEntries = entries.map((e) => ({ key: e.key, valueHash: valueHash(this.encode(e.value)) }));
    return { key, bucket: index, bucketEntries, siblings: siblings.reverse() };
  }
}

/**
 * Check a proof against a state root: with `valueBytes`, that the key holds
 * exactly that encoded value; with null, that the key is absent.
 */
export function verifyStateProof(proof: StateProof, valueBytes: Uint8Array | null, root: Hash): boolean {
  if (proof.siblings.length !== STATE_TREE_DEPTH || proof.bucket !== bucketOf(proof.key)) return false;
  const entries = proof.bucketEntries;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as StateProof["bucketEntries"][number];
    if (bucketOf(e.key) !== proof.bucket || e.valueHash.length !== 32) return false;
    if (i > 0 && !((entries[i - 1] as typeof e).key < e.key)) return false; // strictly sorted: one entry per key
  }
  const own = entries.find((e) => e.key === proof.key);
  if (valueBytes === null ? own !== undefined : own === undefined || !bytesEqual(own.valueHash, valueHash(valueBytes))) return false;
  let node = entries.length === 0 ? (EMPTY[0] as Hash) : bucketHash(entries.map((e) => leafHashOf(e.key, e.valueHash)));
  for (let d = 0; d < STATE_TREE_DEPTH; d++) {
    const sibling = proof.siblings[d] as Hash;
    node = ((proof.bucket >> d) & 1) === 1 ? hashTagged2(HashTag.stateNode, sibling, node) : hashTagged2(HashTag.stateNode, node, sibling);
  }
  return bytesEqual(node, root);
}

function searchEntries<V>(entries: readonly Entry<V>[], key: string): number {
  let lo = 0;
  let hi = entries.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const k = (entries[mid] as Entry<V>).key;
    if (k === key) return mid;
    if (k < key) lo = mid + 1;
    else hi = mid - 1;
  }
  return -(lo + 1);
}

function updateBucket<V>(
  old: Bucket<V> | null,
  changes: readonly [string, Update<V>][],
  encode: Encode<V>,
): [Bucket<V> | null, number] {
  const entries: Entry<V>[] = old === null ? [] : [...old.entries];
  let delta = 0;
  for (const [key, update] of changes) {
    const i = searchEntries(entries, key);
    if (update === null) {
      if (i >= 0) {
        entries.splice(i, 1);
        delta--;
      }
      continue;
    }
    const entry: Entry<V> = { key, value: update, leafHash: leafHash(key, encode(update)) };
    if (i >= 0) entries[i] = entry;
    else {
      entries.splice(-(i + 1), 0, entry);
      delta++;
    }
  }
  if (entries.length === 0) return [null, delta];
  return [{ kind: "bucket", hash: bucketHash(entries.map((e) => e.leafHash)), entries }, delta];
}

/** Path-copy the nodes above the changed buckets (indexes sorted ascending). */
function rebuildPath<V>(
  node: TreeNode<V> | null,
  depth: number,
  base: number,
  indexes: readonly number[],
  rebuilt: ReadonlyMap<number, Bucket<V> | null>,
): TreeNode<V> | null {
  if (depth === 0) {
    assert(indexes.length === 1 && indexes[0] === base, "one bucket per leaf position");
    return rebuilt.get(base) ?? null;
  }
  assert(node === null || node.kind === "inner", "inner nodes above bucket level");
  const inner = node as Inner<V> | null;
  const half = 1 << (depth - 1);
  const split = lowerBound(indexes, base + half);
  const leftIdx = indexes.slice(0, split);
  const rightIdx = indexes.slice(split);
  const left = leftIdx.length > 0 ? rebuildPath(inner?.left ?? null, depth - 1, base, leftIdx, rebuilt) : (inner?.left ?? null);
  const right = rightIdx.length > 0 ? rebuildPath(inner?.right ?? null, depth - 1, base + half, rightIdx, rebuilt) : (inner?.right ?? null);
  if (left === null && right === null) return null;
  return { kind: "inner", hash: hashTagged2(HashTag.stateNode, nodeHash(left, depth - 1), nodeHash(right, depth - 1)), left, right };
}

function lowerBound(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((sorted[mid] as number) < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function* walk<V>(node: TreeNode<V> | null): Generator<Entry<V>> {
  if (node === null) return;
  if (node.kind === "bucket") {
    yield* node.entries;
    return;
  }
  yield* walk(node.left);
  yield* walk(node.right);
}
