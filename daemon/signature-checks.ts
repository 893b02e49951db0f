// Ed25519 signature checks off the event loop, each made once per box.
//
// Every box checks every transaction's signature: when one is submitted here
// (precheck) and when a block holding it is applied. At 1,500 readings a
// second that is most of a box's CPU (bench:cluster profiles: over half of
// the main thread's time), and on the main thread it held the leader's block
// timer, due on the second, behind bursts of checks. So:
//
//   a worker thread    makes the checks; the checks asked for in one turn of
//                      the event loop go to it as one message, and verdicts
//                      come back in order;
//   remembered         verdicts: a good signature checked ahead (at precheck,
//                      or when a block entry arrives, before it commits) is
//                      remembered, and the apply of its block consumes it
//                      instead of checking again on the main thread.
//
// Soundness: a remembered verdict is keyed by SHA-256 over the exact triple
// (a 32-byte public key, a 64-byte signature, the message: anything else is
// refused before the lookup, so the concatenation splits one way only), and
// a verdict is a pure function of that triple; the ledger's rules are unchanged (state.ts still asks its
// SignatureVerifier about every signature). Only good verdicts are kept (a
// bad one is re-checked on the spot, and fails again). The memory is bounded
// (oldest forgotten first), and a forgotten verdict only costs a check.
//
// If the worker dies, pending and later checks are made on the main thread:
// slower, never wrong.
import { createHash } from "node:crypto";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { assert } from "../ledger/assert.js";
import { NodeVerifier } from "../ledger/keys.js";
import type { SignatureVerifier } from "../ledger/tx.js";

const KEY_BYTES = 32;
const SIGNATURE_BYTES = 64;
const ITEM_HEAD = KEY_BYTES + SIGNATURE_BYTES + 4; // key | signature | u32 message length | message

interface Batch {
  readonly id: number;
  readonly count: number;
  readonly buffer: ArrayBuffer;
}
interface Verdicts {
  readonly id: number;
  readonly ok: Uint8Array;
}

function checkBatch(verifier: SignatureVerifier, bytes: Uint8Array, count: number): Uint8Array {
  const ok = new Uint8Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const length = view.getUint32(at + KEY_BYTES + SIGNATURE_BYTES);
    const publicKey = bytes.subarray(at, at + KEY_BYTES);
    const signature = bytes.subarray(at + KEY_BYTES, at + KEY_BYTES + SIGNATURE_BYTES);
    const message = bytes.subarray(at + ITEM_HEAD, at + ITEM_HEAD + length);
    ok[i] = verifier.verify(publicKey, message, signature) ? 1 : 0;
    at += ITEM_HEAD + length;
  }
  return ok;
}

if (!isMainThread && parentPort !== null && (workerData as { signatureChecks?: boolean } | null)?.signatureChecks === true) {
  const port = parentPort;
  const verifier = new NodeVerifier();
  port.on("message", (b: Batch | "close") => {
    if (b === "close") {
      port.close();
      return;
    }
    const ok = checkBatch(verifier, new Uint8Array(b.buffer), b.count);
    port.postMessage({ id: b.id, ok } satisfies Verdicts, [ok.buffer as ArrayBuffer]);
  });
}

export interface SignatureCheckStats {
  /** Checks made in the worker. */
  ahead: number;
  /** Checks the ledger asked for that a remembered verdict answered. */
  remembered: number;
  /** Checks made on the main thread (nothing remembered, or no worker). */
  onTheSpot: number;
  /** Batches sent to the worker. */
  batches: number;
}

interface Pending {
  readonly key: string;
  readonly resolve: (ok: boolean) => void;
}

/**
 * A box's signature checks: a SignatureVerifier for the ledger (answers from
 * remembered verdicts, else checks on the spot) and checkAhead() for the
 * shell (checks in the worker and remembers good verdicts).
 */
export class SignatureChecks implements SignatureVerifier {
  readonly stats: SignatureCheckStats = { ahead: 0, remembered: 0, onTheSpot: 0, batches: 0 };
  private readonly spot = new NodeVerifier();
  private readonly good = new Map<string, true>(); // insertion order = age
  private worker: Worker | null;
  private queued: Uint8Array[] = [];
  private queuedBytes = 0;
  private queuedWaiters: Pending[] = [];
  private flushScheduled = false;
  private readonly inFlight = new Map<number, { readonly waiters: Pending[]; readonly items: Uint8Array[] }>();
  private nextBatch = 0;

  constructor(
    readonly rememberMax = 65_536,
    useWorker = true,
  ) {
    assert(Number.isInteger(rememberMax) && rememberMax > 0, "rememberMax is a positive integer");
    this.worker = useWorker ? this.startWorker() : null;
  }

  private startWorker(): Worker {
    const w = new Worker(new URL(import.meta.url), { workerData: { signatureChecks: true } });
    w.on("message", (v: Verdicts) => {
      const batch = this.inFlight.get(v.id);
      if (batch === undefined) return;
      this.inFlight.delete(v.id);
      if (this.inFlight.size === 0) w.unref(); // idle: it does not keep the process alive
      batch.waiters.forEach((p, i) => this.settle(p, v.ok[i] === 1));
    });
    const lost = () => {
      if (this.worker !== w) return;
      this.worker = null; // from now on, on the spot
      for (const [id, batch] of this.inFlight) {
        this.inFlight.delete(id);
        this.stats.onTheSpot += batch.items.length;
        batch.waiters.forEach((p, i) => this.settle(p, checkBatch(this.spot, batch.items[i] as Uint8Array, 1)[0] === 1));
      }
    };
    w.on("error", lost);
    w.on("exit", lost);
    w.unref();
    return w;
  }

  /** The ledger's check: a remembered good verdict (consumed), else a check now. */
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
    if (!wellFormed(publicKey, signature)) return false; // before the lookup: the key hashes the three concatenated
    const key = tripleKey(publicKey, message, signature);
    if (this.good.delete(key)) {
      this.stats.remembered++;
      return true;
    }
    this.stats.onTheSpot++;
    return this.spot.verify(publicKey, message, signature);
  }

  /** Whether a good verdict for this triple is remembered (not consumed). */
  known(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
    return wellFormed(publicKey, signature) && this.good.has(tripleKey(publicKey, message, signature));
  }

  /**
   * Check in the worker; a good verdict is remembered for the ledger's check.
   * The arguments are copied before this returns (a caller may reuse them).
   */
  checkAhead(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): Promise<boolean> {
    if (!wellFormed(publicKey, signature)) return Promise.resolve(false); // no check can pass
    const key = tripleKey(publicKey, message, signature);
    if (this.good.has(key)) return Promise.resolve(true);
    const item = new Uint8Array(ITEM_HEAD + message.length);
    item.set(publicKey, 0);
    item.set(signature, KEY_BYTES);
    new DataView(item.buffer).setUint32(KEY_BYTES + SIGNATURE_BYTES, message.length);
    item.set(message, ITEM_HEAD);
    return new Promise((resolve) => {
      const waiter = { key, resolve };
      if (this.worker === null) {
        this.stats.onTheSpot++;
        this.settle(waiter, checkBatch(this.spot, item, 1)[0] === 1);
        return;
      }
      this.queued.push(item);
      this.queuedBytes += item.length;
      this.queuedWaiters.push(waiter);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const items = this.queued;
    const waiters = this.queuedWaiters;
    const bytes = new Uint8Array(this.queuedBytes);
    this.queued = [];
    this.queuedWaiters = [];
    this.queuedBytes = 0;
    if (items.length === 0) return;
    let at = 0;
    for (const it of items) {
      bytes.set(it, at);
      at += it.length;
    }
    const id = this.nextBatch++;
    if (this.worker === null) {
      // The worker died between queueing and now.
      this.stats.onTheSpot += items.length;
      waiters.forEach((p, i) => this.settle(p, checkBatch(this.spot, items[i] as Uint8Array, 1)[0] === 1));
      return;
    }
    this.inFlight.set(id, { waiters, items });
    this.stats.batches++;
    this.stats.ahead += items.length;
    this.worker.ref(); // checks in flight keep the process alive until answered
    this.worker.postMessage({ id, count: items.length, buffer: bytes.buffer } satisfies Batch, [bytes.buffer]);
  }

  private settle(p: Pending, ok: boolean): void {
    if (ok) {
      this.good.delete(p.key);
      this.good.set(p.key, true);
      if (this.good.size > this.rememberMax) this.good.delete(this.good.keys().next().value as string);
    }
    p.resolve(ok);
  }

  /** Verdicts remembered now (bounded by rememberMax). */
  get rememberedCount(): number {
    return this.good.size;
  }

  /** Checks asked for and not yet answered. */
  get pendingCount(): number {
    let n = this.queuedWaiters.length;
    for (const b of this.inFlight.values()) n += b.waiters.length;
    return n;
  }

  /**
   * Whether `n` more checks ahead would all still be remembered when their
   * apply comes (more, and the oldest verdicts would be forgotten first:
   * checked twice). A box far behind, receiving many full blocks at once,
   * checks the excess at the apply instead.
   */
  hasRoomFor(n: number): boolean {
    return this.good.size + this.pendingCount + n <= this.rememberMax / 2;
  }

  /** Stop the worker; checks still waiting are made here. */
  async close(): Promise<void> {
    const w = this.worker;
    if (w === null) return;
    const exited = new Promise<void>((resolve) => w.once("exit", () => resolve()));
    w.postMessage("close");
    const timer = setTimeout(() => void w.terminate(), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Ed25519 sizes. Only then does key | signature | message split one way, so the hash names the triple. */
function wellFormed(publicKey: Uint8Array, signature: Uint8Array): boolean {
  return publicKey.length === KEY_BYTES && signature.length === SIGNATURE_BYTES;
}

function tripleKey(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): string {
  return createHash("sha256").update(publicKey).update(signature).update(message).digest().toString("latin1");
}
