// The state commitment: a persistent (immutable, structurally shared) Merkle
// tree of fixed shape: 4,096 buckets under three levels of 16-way nodes.
//
//   bucket(key)  = top 12 bits of fmix32(FNV-1a(key))      (see bucketOf)
//   bucket hash  = H(stateBucket | for each entry in key order: len(key) | key | len(value) | value)
//   node hash    = H(stateNode | the 16 child hashes)
//   empty        = EMPTY[0] for an empty bucket, EMPTY[d] for an empty subtree d levels up
//
// Why this shape: on this class of hardware one SHA-256 call costs about 3 µs
// (@noble/hashes, pure JS), so what matters is hash calls per changed key. A
// block of readings touches thousands of meter records. A binary tree over
// 65,536 buckets with separate leaf and value hashes costs about six calls a
// key; here a changed key costs about one (its bucket's hash) plus its share of
// ~270 node hashes, so a full block's root costs a few milliseconds.
// Buckets stay small (state is members, meters and open orders: tens of
// thousands of records, a handful per bucket), and a proof is the key's bucket
// (keys and values in full) plus 3 x 16 child hashes. The bucket index need
// not be cryptographic: the root commits to the buckets' full contents, and a
// 12-bit index could be ground with any hash.
//
// Updating never touches the previous tree: applyBlock() returns a new state
// and the caller may keep the old one.
import { assert, bytesEqual } from "./assert.js";
import { Writer, varintSize } from "./codec.js";
import { type Hash, HashTag, hash, hashTagged } from "./hash.js";

export const BUCKET_BITS = 12;
export const NODE_ARITY = 16;
export const NODE_BITS = 4;
export const STATE_TREE_LEVELS = BUCKET_BITS / NODE_BITS; // inner levels above the buckets
export const BUCKET_COUNT = 1 << BUCKET_BITS;
/** A state key's bound, in UTF-8 bytes, and an encoded record's. */
export const KEY_BYTES_MAX = 1024;
export const VALUE_BYTES_MAX = 1 << 16;

/** EMPTY[d]: the hash of an empty subtree d levels above the buckets. */
const EMPTY: Hash[] = (() => {
  const out: Hash[] = [hashTagged(HashTag.stateBucket)];
  for (let d = 1; d <= STATE_TREE_LEVELS; d++) out.push(nodeHashOf(Array<Hash>(NODE_ARITY).fill(out[d - 1] as Hash)));
  return out;
})();

export const EMPTY_STATE_ROOT: Hash = EMPTY[STATE_TREE_LEVELS] as Hash;

export interface Entry<V> {
  readonly key: string;
  readonly keyBytes: Uint8Array; // UTF-8 of the key, kept to hash the bucket cheaply
  readonly value: V;
  readonly bytes: Uint8Array; // the value's canonical encoding
}

interface Bucket<V> {
  readonly kind: "bucket";
  readonly hash: Hash;
  readonly entries: readonly Entry<V>[]; // sorted by key, non-empty
}

interface Inner<V> {
  readonly kind: "inner";
  readonly hash: Hash;
  readonly children: readonly (TreeNode<V> | null)[]; // NODE_ARITY of them
}

type TreeNode<V> = Bucket<V> | Inner<V>;

/** Deterministic bucket index of a key: FNV-1a over its UTF-16 code units, then murmur3's finaliser. */
export function bucketOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> (32 - BUCKET_BITS);
}

const TEXT = new TextEncoder();

// Bucket and node preimages are built in this reused buffer (see hash.ts for
// why: large short-lived typed arrays are what makes applying a block slow).
let scratch: Uint8Array = new Uint8Array(4096);

/** The hash of a bucket holding these (key, encoded value) pairs, in key order. */
export function bucketHashOf(entries: readonly { readonly key: string; readonly bytes: Uint8Array; readonly keyBytes?: Uint8Array }[]): Hash {
  if (entries.length === 0) return EMPTY[0] as Hash;
  const w = new Writer(scratch);
  w.u8(HashTag.stateBucket);
  for (const e of entries) w.bytes(e.keyBytes ?? TEXT.encode(e.key), KEY_BYTES_MAX).bytes(e.bytes, VALUE_BYTES_MAX);
  scratch = w.buffer; // keep it if it grew
  return hash(w.view());
}

function nodeHashOf(children: readonly Hash[]): Hash {
  assert(children.length === NODE_ARITY, "a node has 16 children");
  return hashTagged(HashTag.stateNode, ...children);
}

function hashOf<V>(node: TreeNode<V> | null, level: number): Hash {
  return node === null ? (EMPTY[level] as Hash) : node.hash;
}

/** Which child of a node at `level` (1 = just above the buckets) a bucket lies under. */
function childIndex(bucket: number, level: number): number {
  return (bucket >> ((level - 1) * NODE_BITS)) & (NODE_ARITY - 1);
}

/** One pending change: a new value or a deletion (null). */
export type Update<V> = V | null;

/** The canonical encoding of a value, which the root commits to. */
export type Encode<V> = (value: V) => Uint8Array;

export interface StateProof {
  readonly key: string;
  readonly bucket: number;
  /** Every entry of the key's bucket, in key order, with its encoded value. */
  readonly bucketEntries: readonly { readonly key: string; readonly bytes: Uint8Array }[];
  /** For each level from the buckets up, the 16 child hashes of the node on the key's path. */
  readonly levels: readonly (readonly Hash[])[];
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
    return hashOf(this.rootNode, STATE_TREE_LEVELS);
  }

  get(key: string): V | undefined {
    const bucket = this.findBucket(bucketOf(key));
    if (bucket === null) return undefined;
    const i = searchEntries(bucket.entries, key);
    return i >= 0 ? (bucket.entries[i] as Entry<V>).value : undefined;
  }

  private findBucket(index: number): Bucket<V> | null {
    let node = this.rootNode;
    for (let level = STATE_TREE_LEVELS; level >= 1 && node !== null; level--) {
      assert(node.kind === "inner", "inner nodes above bucket level");
      node = node.children[childIndex(index, level)] ?? null;
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
    let sizeDelta = 0;
    const rebuilt = new Map<number, Bucket<V> | null>();
    for (const [index, changes] of byBucket) {
      const [bucket, delta] = updateBucket(this.findBucket(index), changes, this.encode);
      rebuilt.set(index, bucket);
      sizeDelta += delta;
    }
    const indexes = [...rebuilt.keys()].sort((a, b) => a - b);
    const root = rebuild(this.rootNode, STATE_TREE_LEVELS, 0, indexes, rebuilt);
    const next = new StateTree<V>(root, this.size + sizeDelta, this.encode);
    assert(next.size >= 0, "state tree size never negative");
    return next;
  }

  *entries(): Generator<Entry<V>> {
    yield* walk(this.rootNode);
  }

  prove(key: string): StateProof {
    const bucket = bucketOf(key);
    const levels: Hash[][] = [];
    let node = this.rootNode;
    for (let level = STATE_TREE_LEVELS; level >= 1; level--) {
      const children = node === null ? null : (node as Inner<V>).children;
      levels.push(Array.from({ length: NODE_ARITY }, (_, i) => hashOf(children?.[i] ?? null, level - 1)));
      node = children?.[childIndex(bucket, level)] ?? null;
    }
    const entries = node === null ? [] : (node as Bucket<V>).entries;
    return { key, bucket, bucketEntries: entries.map((e) => ({ key: e.key, bytes: e.bytes })), levels: levels.reverse() };
  }
}

/**
 * Check a proof against a state root: with `valueBytes`, that the key holds
 * exactly that encoded value; with null, that the key is absent.
 */
export function verifyStateProof(proof: StateProof, valueBytes: Uint8Array | null, root: Hash): boolean {
  if (proof.levels.length !== STATE_TREE_LEVELS || proof.bucket !== bucketOf(proof.key)) return false;
  const entries = proof.bucketEntries;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as StateProof["bucketEntries"][number];
    if (bucketOf(e.key) !== proof.bucket || TEXT.encode(e.key).length > KEY_BYTES_MAX || e.bytes.length > VALUE_BYTES_MAX) return false;
    if (i > 0 && !((entries[i - 1] as typeof e).key < e.key)) return false; // strictly sorted: one entry per key
  }
  const own = entries.find((e) => e.key === proof.key);
  if (valueBytes === null ? own !== undefined : own === undefined || !bytesEqual(own.bytes, valueBytes)) return false;
  let current = bucketHashOf(entries);
  for (let level = 1; level <= STATE_TREE_LEVELS; level++) {
    const children = proof.levels[level - 1] as readonly Hash[];
    if (children.length !== NODE_ARITY || children.some((h) => h.length !== 32)) return false;
    if (!bytesEqual(children[childIndex(proof.bucket, level)] as Hash, current)) return false;
    current = nodeHashOf(children);
  }
  return bytesEqual(current, root);
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

function updateBucket<V>(old: Bucket<V> | null, changes: readonly [string, Update<V>][], encode: Encode<V>): [Bucket<V> | null, number] {
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
    const keyBytes = i >= 0 ? (entries[i] as Entry<V>).keyBytes : TEXT.encode(key);
    const entry: Entry<V> = { key, keyBytes, value: update, bytes: encode(update) };
    if (i >= 0) entries[i] = entry;
    else {
      entries.splice(-(i + 1), 0, entry);
      delta++;
    }
  }
  if (entries.length === 0) return [null, delta];
  return [{ kind: "bucket", hash: bucketHashOf(entries), entries }, delta];
}

/** Path-copy the nodes above the changed buckets (indexes sorted ascending, all under this node). */
function rebuild<V>(
  node: TreeNode<V> | null,
  level: number,
  base: number,
  indexes: readonly number[],
  rebuilt: ReadonlyMap<number, Bucket<V> | null>,
): TreeNode<V> | null {
  if (level === 0) {
    assert(indexes.length === 1 && indexes[0] === base, "one bucket per leaf position");
    return rebuilt.get(base) ?? null;
  }
  assert(node === null || node.kind === "inner", "inner nodes above bucket level");
  const old = node === null ? null : (node as Inner<V>).children;
  const span = 1 << ((level - 1) * NODE_BITS); // buckets under each child
  const children: (TreeNode<V> | null)[] = [];
  let at = 0;
  for (let c = 0; c < NODE_ARITY; c++) {
    const childBase = base + c * span;
    let end = at;
    while (end < indexes.length && (indexes[end] as number) < childBase + span) end++;
    const prev = old?.[c] ?? null;
    children.push(end > at ? rebuild(prev, level - 1, childBase, indexes.slice(at, end), rebuilt) : prev);
    at = end;
  }
  assert(at === indexes.length, "every changed bucket lies under this node");
  if (children.every((c) => c === null)) return null;
  return { kind: "inner", hash: nodeHashOf(children.map((c) => hashOf(c, level - 1))), children };
}

function* walk<V>(node: TreeNode<V> | null): Generator<Entry<V>> {
  if (node === null) return;
  if (node.kind === "bucket") {
    yield* node.entries;
    return;
  }
  for (const child of node.children) yield* walk(child);
}
