// Catching up from a peer's checkpoint: the pure part. daemon/node.ts asks
// a peer for the messages (peer-wire.ts) and hands each answer here; the
// store installs the result (store.ts installCheckpoint).
//
// Once its neighbours have pruned the readings of blocks 1..B (store.ts:
// retention), a box whose head is below B cannot fetch those blocks whole;
// it installs a copy of the state after B instead. A peer's word is never
// taken for it:
//   0. AnchorVotes: the snapshot's chain point P comes from the leader, and
//      Raft does not make a leader honest. Before anything is fetched, other
//      boxes must hold a block at P's height with P's hash: at least two of
//      them (or the only other one), so one dishonest box (the leader, or
//      the peer serving the checkpoint) cannot make up a chain point, a
//      state and the headers that lead to it.
//   1. HeaderWalk: the headers from the Raft snapshot's block P down to B,
//      each required to hash to what the one above names as its parent, the
//      first to P's hash in the snapshot (replicated.ts ChainPoint, which
//      Raft committed). So block B+1's header (whose stateRoot is the root
//      of the state after B) and block B's are the chain's, before any
//      record is looked at. The walk holds one chunk of headers at a time.
//   2. CheckpointParts: the records, part by part, each part continuing
//      where the last ended (keys ascending: no record twice), the count the
//      peer announced at the end.
//   3. The store decodes every record and refuses them unless they hash to
//      B+1's stateRoot; it writes nothing before that.
// Then the box fetches B+1.. whole; applying B+1 checks the root once more,
// and the last block's hash must be P's, as for any catch-up.
//
// Invariant: a HeaderWalk's `expected` is the hash of block `nextHeight`,
// authenticated by the chain of parent hashes down from P.
import { assert, bytesEqual } from "./assert.js";
import { decodeHeader } from "./block.js";
import { DecodeError, PeergridError } from "./errors.js";
import { type Hash, toHex } from "./hash.js";
import type { ChainPoint } from "./replicated.js";

const TEXT = new TextEncoder();

/** A peer's answer that cannot be the chain's, or is not the answer asked for: ask another peer. */
export class CatchUpError extends PeergridError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "CatchUpError";
  }
}

/** Walks block headers down from a committed chain point to a checkpoint's block, in chunks. */
export class HeaderWalk {
  private expected: Hash;
  private nextHeight: number; // the highest height not walked yet
  private checkpointHeader: Uint8Array | null = null;
  private childHeader: Uint8Array | null = null;

  /** `height`: the checkpoint's block B, below the snapshot's P (only an ancestor of P is anchored by P's hash). */
  constructor(
    readonly point: ChainPoint,
    readonly height: number,
    readonly chunkMax: number,
  ) {
    assert(Number.isSafeInteger(height) && height >= 1 && height < point.height, "a checkpoint below the chain point");
    assert(Number.isSafeInteger(chunkMax) && chunkMax >= 1, "a chunk holds a header at least");
    this.expected = point.blockHash;
    this.nextHeight = point.height;
  }

  /** The headers to ask for next (ascending from fromHeight), or null when the walk has reached B. */
  want(): { readonly fromHeight: number; readonly count: number } | null {
    if (this.nextHeight < this.height) return null;
    const fromHeight = Math.max(this.height, this.nextHeight - this.chunkMax + 1);
    return { fromHeight, count: this.nextHeight - fromHeight + 1 };
  }

  /** Take the answer to want(): exactly those headers, each the parent of the one above. */
  take(fromHeight: number, headers: readonly Uint8Array[]): void {
    const want = this.want();
    assert(want !== null, "the walk is not over");
    if (fromHeight !== want.fromHeight || headers.length !== want.count) {
      throw new CatchUpError("PG_ERR_CATCH_UP_HEADERS", `asked for the headers of blocks ${want.fromHeight}..${this.nextHeight}, got ${headers.length} from ${fromHeight}`);
    }
    for (let i = headers.length - 1; i >= 0; i--) {
      const bytes = headers[i] as Uint8Array;
      const h = fromHeight + i;
      let decoded: ReturnType<typeof decodeHeader>;
      try {
        decoded = decodeHeader(bytes);
      } catch (err) {
        if (err instanceof DecodeError) throw new CatchUpError("PG_ERR_CATCH_UP_HEADERS", `the header of block ${h} does not decode: ${err.message}`, { cause: err });
        throw err;
      }
      if (decoded.header.height !== h) throw new CatchUpError("PG_ERR_CATCH_UP_HEADERS", `the header sent for block ${h} says height ${decoded.header.height}`);
      if (!bytesEqual(decoded.hash, this.expected)) {
        throw new CatchUpError("PG_ERR_CATCH_UP_HEADERS", `the header sent for block ${h} hashes to ${toHex(decoded.hash)}, not to ${toHex(this.expected)}, which the chain down from block ${this.point.height} names`);
      }
      if (h === this.height + 1) this.childHeader = bytes;
      if (h === this.height) this.checkpointHeader = bytes;
      this.expected = decoded.header.parentHash;
      this.nextHeight = h - 1;
    }
  }

  /** Block B's header and block B+1's (whose stateRoot the checkpoint must hash to), both anchored. */
  result(): { readonly header: Uint8Array; readonly nextHeader: Uint8Array } {
    assert(this.want() === null && this.checkpointHeader !== null && this.childHeader !== null, "the walk reached the checkpoint's block");
    return { header: this.checkpointHeader, nextHeader: this.childHeader };
  }
}

/** One part of a checkpoint as a peer sends it (peer-wire.ts "checkpoint"). */
export interface CheckpointPart {
  readonly height: number;
  readonly afterKey: string;
  readonly total: number;
  readonly done: boolean;
  readonly records: readonly { readonly key: string; readonly value: Uint8Array }[];
}

/** Boxes vouching for a chain point: each that holds a block at its height with its hash. */
export class AnchorVotes {
  private readonly confirmedBy = new Set<number>();
  private readonly deniedBy = new Set<number>();

  /** `needed`: how many other boxes must hold the block (at least 1). */
  constructor(
    readonly point: ChainPoint,
    readonly needed: number,
  ) {
    assert(Number.isSafeInteger(needed) && needed >= 1, "at least one box vouches");
  }

  /** Box `box`'s answer to a request for the header at the point's height: "confirmed", "denied" (another block there), or "none" (it holds none yet: ask again later). */
  take(box: number, headers: readonly Uint8Array[]): "confirmed" | "denied" | "none" {
    const bytes = headers[0];
    if (bytes === undefined) return "none";
    let hash: Hash;
    let height: number;
    try {
      ({ hash, header: { height } } = decodeHeader(bytes));
    } catch (err) {
      if (err instanceof DecodeError) return "none";
      throw err;
    }
    if (height !== this.point.height) return "none";
    if (!bytesEqual(hash, this.point.blockHash)) {
      this.deniedBy.add(box);
      this.confirmedBy.delete(box);
      return "denied";
    }
    this.confirmedBy.add(box);
    this.deniedBy.delete(box);
    return "confirmed";
  }

  has(box: number): boolean {
    return this.confirmedBy.has(box);
  }

  get confirmed(): boolean {
    return this.confirmedBy.size >= this.needed;
  }

  /** The boxes that named another block at the point's height. */
  get denials(): number[] {
    return [...this.deniedBy];
  }
}

/** Bytes of memory a record held until the install costs beyond its key and value (objects, the array slot): counted against `bytesMax`. */
export const RECORD_OVERHEAD_BYTES = 300;

/**
 * Collects a checkpoint's parts, each following on from the last, up to the
 * count the peer announced; at most `recordsMax` records and `bytesMax`
 * bytes in all (keys, values and RECORD_OVERHEAD_BYTES each: what it holds
 * in memory until installed). Every part but the last must be full (as the
 * sender cuts them: `fullPart`), so a peer cannot trickle a record a time.
 */
export class CheckpointParts {
  readonly records: { readonly key: string; readonly value: Uint8Array }[] = [];
  private total: number | null = null;
  private last = "";
  private finished = false;
  private bytes = 0;

  constructor(
    readonly height: number,
    readonly recordsMax: number,
    readonly bytesMax: number,
    /** A part the sender cut because it was full: this many records, or within `slackBytes` of `bytes` bytes of keys and values. */
    readonly fullPart: { readonly records: number; readonly bytes: number; readonly slackBytes: number },
  ) {
    assert(Number.isSafeInteger(recordsMax) && recordsMax >= 1 && Number.isSafeInteger(bytesMax) && bytesMax >= 1, "bounds on records and bytes");
  }

  /** Where the next part starts: after this key ("" for the first). */
  get afterKey(): string {
    return this.last;
  }

  get done(): boolean {
    return this.finished;
  }

  /** Take the answer to a request for the part after `afterKey`. */
  take(part: CheckpointPart): void {
    assert(!this.finished, "a part after the last");
    if (part.height !== this.height || part.afterKey !== this.last) {
      throw new CatchUpError("PG_ERR_CATCH_UP_CHECKPOINT", `asked for the checkpoint at ${this.height} after key "${this.last}", got one at ${part.height} after "${part.afterKey}"`);
    }
    if (part.total === 0) throw new CatchUpError("PG_ERR_CATCH_UP_CHECKPOINT", `the peer holds no checkpoint at ${this.height} (any more)`);
    if (this.total !== null && part.total !== this.total) throw new CatchUpError("PG_ERR_CATCH_UP_CHECKPOINT", `the checkpoint at ${this.height} had ${this.total} records, now ${part.total}`);
    if (part.total > this.recordsMax) throw new CatchUpError("PG_ERR_CATCH_UP_CHECKPOINT", `a checkpoint of ${part.total} records is more than this box takes (${this.recordsMax})`);
    const partBytes = part.records.reduce((n, r) => n + TEXT.encode(r.key).length + r.value.length, 0);
    if (!part.done) {
      const f = this.fullPart;
      if (part.records.length < f.records && partBytes + f.slackBytes < f.bytes) {
        throw new CatchUpError("PG_ERR_CATCH_UP_CHECKPOINT", `a part of ${part.records.length} records (${partBytes} bytes) that is neither full nor the last`);
      }
    }
    this.total = part.total;
    if (this.records.length + part.records.length > part.total) {
      throw new CatchUpError("PG_ERR_CATCH_UP_CHECKPOINT", `more than the ${part.total} records the checkpoint at ${this.height} has`);
    }
    const bytes = this.bytes + partBytes + part.records.length * RECORD_OVERHEAD_BYTES;
    if (bytes > this.bytesMax) throw new CatchUpError("PG_ERR_CATCH_UP_CHECKPOINT", `the checkpoint at ${this.height} is over the ${this.bytesMax} bytes this box takes`);
    this.bytes = bytes;
    for (const r of part.records) this.records.push(r);
    if (part.done && this.records.length !== part.total) {
      throw new CatchUpError("PG_ERR_CATCH_UP_CHECKPOINT", `the checkpoint at ${this.height} ended after ${this.records.length} of its ${part.total} records`);
    }
    const lastRecord = part.records.at(-1);
    if (lastRecord !== undefined) this.last = lastRecord.key;
    this.finished = part.done;
  }
}
