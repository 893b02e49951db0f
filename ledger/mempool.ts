// The pool of transactions waiting for a block: bounded, fair, and pure (no
// clock: time is handed in). Every box keeps one; the leader cuts each block
// from its own, and followers forward what they receive to the leader.
//
// Limits (TigerBeetle's rule, a limit on everything) and what happens there:
//   txsMax, bytesMax    a full pool refuses new transactions with a clear code
//                       (backpressure to the submitter), it never evicts
//                       admitted ones silently;
//   perAuthorMax        one chatty or broken box cannot fill the pool;
//   ageMsMax            a transaction that no block took in time is dropped
//                       (its reading would be outside the ledger's age window).
// Selection for a block goes round-robin over authors, each in sequence
// order, so every box's readings make progress even under load.
//
// Invariants: bytes === sum of pooled tx sizes; no id is pooled twice; per
// author, pooled sequence numbers are distinct.
import { assert } from "./assert.js";
import { toHex } from "./hash.js";
import type { SignedTx } from "./tx.js";

export interface MempoolLimits {
  readonly txsMax: number;
  readonly bytesMax: number;
  readonly perAuthorMax: number;
  readonly ageMsMax: number;
}

export const DEFAULT_MEMPOOL_LIMITS: MempoolLimits = {
  txsMax: 50_000,
  bytesMax: 8 * 1024 * 1024,
  perAuthorMax: 2_000,
  ageMsMax: 300_000,
};

export const MempoolRefusal = {
  full: "PG_ERR_MEMPOOL_FULL",
  authorFull: "PG_ERR_MEMPOOL_AUTHOR_FULL",
  duplicate: "PG_ERR_MEMPOOL_DUPLICATE",
  stale: "PG_ERR_MEMPOOL_STALE_SEQUENCE",
} as const;
export type MempoolRefusal = (typeof MempoolRefusal)[keyof typeof MempoolRefusal];

export type AddResult = { readonly ok: true } | { readonly ok: false; readonly code: MempoolRefusal; readonly message: string };

/** How select() keeps each author's transactions in sequence (see there). */
export interface SequenceOrder {
  readonly lastSeqOf: (author: number) => number;
  readonly nowMs: number;
  readonly gapWaitMs: number;
}

interface Pooled {
  readonly tx: SignedTx;
  readonly key: string; // hex id
  readonly addedMs: number;
  resends: number; // times dueForResend() returned it since resendFromMs
  resendFromMs: number; // when it was added, or last sent to a new leader
}

export class Mempool {
  private readonly byId = new Map<string, Pooled>();
  private readonly byAuthor = new Map<number, Pooled[]>(); // each sorted by seq
  private bytesValue = 0;
  private cursor = 0; // round-robin position over authors, so no author always goes first

  constructor(readonly limits: MempoolLimits = DEFAULT_MEMPOOL_LIMITS) {
    assert(limits.txsMax > 0 && limits.bytesMax > 0 && limits.perAuthorMax > 0 && limits.ageMsMax > 0, "mempool limits are positive");
  }

  get size(): number {
    return this.byId.size;
  }

  get bytes(): number {
    return this.bytesValue;
  }

  has(idHex: string): boolean {
    return this.byId.has(idHex);
  }

  /**
   * Admit a transaction. `lastSeq` is its author's last sequence number in
   * the ledger state, so a transaction that can only be refused as stale is
   * not pooled. Signatures are the caller's check before this one.
   */
  add(tx: SignedTx, lastSeq: number, nowMs: number): AddResult {
    const key = toHex(tx.id);
    if (this.byId.has(key)) return refuse(MempoolRefusal.duplicate, `transaction ${key.slice(0, 16)}… is already pending`);
    if (tx.tx.seq <= lastSeq) return refuse(MempoolRefusal.stale, `sequence ${tx.tx.seq} is not after member ${tx.tx.author}'s last, ${lastSeq}`);
    const list = this.byAuthor.get(tx.tx.author) ?? [];
    if (list.some((p) => p.tx.tx.seq === tx.tx.seq)) return refuse(MempoolRefusal.duplicate, `member ${tx.tx.author} already has sequence ${tx.tx.seq} pending`);
    if (list.length >= this.limits.perAuthorMax) return refuse(MempoolRefusal.authorFull, `member ${tx.tx.author} has ${list.length} pending, the most one member may`);
    if (this.byId.size >= this.limits.txsMax || this.bytesValue + tx.bytes.length > this.limits.bytesMax) {
      return refuse(MempoolRefusal.full, `the pool is full (${this.byId.size} transactions, ${this.bytesValue} bytes); retry after the next block`);
    }
    const pooled: Pooled = { tx, key, addedMs: nowMs, resends: 0, resendFromMs: nowMs };
    let at = list.length;
    while (at > 0 && (list[at - 1] as Pooled).tx.tx.seq > tx.tx.seq) at--;
    list.splice(at, 0, pooled);
    this.byAuthor.set(tx.tx.author, list);
    this.byId.set(key, pooled);
    this.bytesValue += tx.bytes.length;
    return { ok: true };
  }

  /**
   * Transactions for the next block, at most `txsMax` of them and `bytesMax`
   * bytes: authors in turn (round-robin), each in sequence order. They stay
   * pooled until removeCommitted() sees them in a committed block.
   *
   * With `order`, only an unbroken run of each author's sequence numbers
   * from its last one in the ledger state is taken: a transaction behind a
   * gap (its predecessor still on the way from another box) would consume a
   * later number and make its predecessor stale, so it waits, but only for
   * gapWaitMs (a predecessor that never comes, say signed by a box that then
   * lost power, must not block its author for ever; the ledger allows gaps).
   */
  select(txsMax: number, bytesMax: number, order?: SequenceOrder): SignedTx[] {
    const authors = [...this.byAuthor.keys()].sort((a, b) => a - b);
    if (authors.length === 0) return [];
    const start = this.cursor % authors.length;
    const turns = [...authors.slice(start), ...authors.slice(0, start)];
    this.cursor = start + 1;
    const taken = new Map<number, number>(turns.map((a) => [a, 0]));
    const out: SignedTx[] = [];
    let bytes = 0;
    for (let progress = true; progress && out.length < txsMax; ) {
      progress = false;
      for (const author of turns) {
        const list = this.byAuthor.get(author) as Pooled[];
        const i = taken.get(author) as number;
        const next = list[i];
        if (next === undefined || out.length >= txsMax || bytes + next.tx.bytes.length > bytesMax) continue;
        if (order !== undefined) {
          const inRun = i === 0 ? this.mayLead(next, order) : next.tx.tx.seq === (list[i - 1] as Pooled).tx.tx.seq + 1;
          if (!inRun) continue; // a gap before it: it waits
        }
        out.push(next.tx);
        bytes += next.tx.bytes.length;
        taken.set(author, i + 1);
        progress = true;
      }
    }
    return out;
  }

  private mayLead(p: Pooled, order: SequenceOrder): boolean {
    return p.tx.tx.seq === order.lastSeqOf(p.tx.tx.author) + 1 || order.nowMs - p.addedMs >= order.gapWaitMs;
  }

  /**
   * A block committed: drop its transactions, and whatever its authors' new
   * sequence numbers made stale. Returns the stale ones (overtaken by a later
   * transaction of their author): their submitters learn they can never commit.
   */
  removeCommitted(txs: readonly SignedTx[], lastSeqOf: (author: number) => number): SignedTx[] {
    for (const t of txs) this.remove(toHex(t.id));
    const overtaken: SignedTx[] = [];
    for (const author of new Set(txs.map((t) => t.tx.author))) {
      const last = lastSeqOf(author);
      for (const p of [...(this.byAuthor.get(author) ?? [])]) {
        if (p.tx.tx.seq > last) continue;
        this.remove(p.key);
        overtaken.push(p.tx);
      }
    }
    return overtaken;
  }

  /** Drop what waited longer than ageMsMax; returns what was dropped (its submitters learn it expired). */
  expire(nowMs: number): SignedTx[] {
    const dropped: SignedTx[] = [];
    for (const p of [...this.byId.values()]) {
      if (nowMs - p.addedMs > this.limits.ageMsMax) {
        this.remove(p.key);
        dropped.push(p.tx);
      }
    }
    return dropped;
  }

  /**
   * Every pooled transaction, each author's in sequence order, to be sent to
   * a new leader now; their resend schedules start again from `nowMs`.
   */
  allForNewLeader(nowMs: number): SignedTx[] {
    const out: SignedTx[] = [];
    for (const list of this.byAuthor.values()) {
      for (const p of list) {
        p.resends = 0;
        p.resendFromMs = nowMs;
        out.push(p.tx);
      }
    }
    return out;
  }

  /**
   * Pooled transactions due to be forwarded to the leader again, each
   * author's in sequence order: first when `firstMs` old, then each time
   * after twice as long as the time before (at firstMs, 3 x, 7 x, 15 x ...
   * after it was added, or after allForNewLeader sent it).
   * A leader that lost them (a restart, a full pool) gets them again; one
   * that is only slow is not sent the same transactions every turn.
   */
  dueForResend(nowMs: number, firstMs: number): SignedTx[] {
    assert(firstMs > 0, "a positive resend delay");
    const out: SignedTx[] = [];
    for (const list of this.byAuthor.values()) {
      for (const p of list) {
        if (nowMs - p.resendFromMs < firstMs * (2 ** (p.resends + 1) - 1)) continue;
        p.resends++;
        out.push(p.tx);
      }
    }
    return out;
  }

  private remove(key: string): void {
    const p = this.byId.get(key);
    if (p === undefined) return;
    this.byId.delete(key);
    this.bytesValue -= p.tx.bytes.length;
    const list = this.byAuthor.get(p.tx.tx.author) as Pooled[];
    list.splice(list.indexOf(p), 1);
    if (list.length === 0) this.byAuthor.delete(p.tx.tx.author);
    assert(this.bytesValue >= 0 && (this.byId.size > 0 || this.bytesValue === 0), "byte count matches the pool");
  }
}

function refuse(code: MempoolRefusal, message: string): AddResult {
  return { ok: false, code, message };
}
