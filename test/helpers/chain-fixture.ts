// A reusable chain fixture for store, crash, verify tests and benchmarks:
// seeded keys, a genesis, and `nextBlock`, which builds the next signed block
// on a Ledger: N readings spread over the boxes' meters, plus a few orders
// (and cancels of the previous block's orders, so a long chain never reaches
// the open-order limit). Every value is a function of (seed, author, meter,
// height), so a process that reopens a ledger continues the same chain and a
// test can recompute what any reading must hold.
//
// Invariants: every transaction nextBlock makes is valid (ResultCode.ok);
// readings per block <= 256 * boxes (one per meter and block).
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Block } from "../../ledger/block.js";
import { type Genesis, parseGenesis } from "../../ledger/genesis.js";
import { toHex } from "../../ledger/hash.js";
import { NodeSigner, NodeVerifier } from "../../ledger/keys.js";
import type { Ledger } from "../../ledger/ledger.js";
import { type MemberRecord, memberKey } from "../../ledger/records.js";
import { ResultCode } from "../../ledger/state.js";
import { LedgerStore } from "../../ledger/store.js";
import { type VerifyReport, verifyChain } from "../../ledger/verify.js";
import { type OrderBody, type ReadingBody, type SignedTx, type TxBody, Quality, signTx } from "../../ledger/tx.js";

/** 2026-01-15T12:00:00Z. Block h is at T0 + h seconds. */
export const FIXTURE_T0_MS = Date.UTC(2026, 0, 15, 12, 0, 0);
export const BLOCK_INTERVAL_MS = 1_000;
export const MARKET_INTERVAL_MS = 60_000;
export const METERS_PER_BOX_MAX = 256;

export interface Fixture {
  readonly seed: number;
  readonly boxes: number;
  readonly signers: readonly NodeSigner[]; // member i = box i; box 0 is also the admin
  readonly genesis: Genesis;
  readonly verifier: NodeVerifier;
}

/** The Ed25519 seed of box `index`: SHA-256 of a label, so keys are the same on every run. */
export function fixtureSigner(seed: number, index: number): NodeSigner {
  return new NodeSigner(new Uint8Array(createHash("sha256").update(`peergrid-fixture/${seed}/${index}`).digest()));
}

export function makeFixture(options: { seed?: number; boxes?: number; chainId?: string } = {}): Fixture {
  const seed = options.seed ?? 1;
  const boxes = options.boxes ?? 8;
  if (!(boxes >= 1 && boxes <= 64)) throw new RangeError("boxes must be 1..64");
  const signers = Array.from({ length: boxes }, (_, i) => fixtureSigner(seed, i));
  const genesis = parseGenesis({
    chainId: options.chainId ?? `fixture-${seed}`,
    genesisTimeMs: FIXTURE_T0_MS,
    members: signers.map((s, i) => ({ name: `box-${i}`, publicKey: toHex(s.publicKey), roles: i === 0 ? ["box", "user", "admin"] : ["box", "user"] })),
    market: { intervalMs: MARKET_INTERVAL_MS },
  });
  return { seed, boxes, signers, genesis, verifier: new NodeVerifier() };
}

export function blockTimeMs(height: number): number {
  return FIXTURE_T0_MS + height * BLOCK_INTERVAL_MS;
}

/** Reading j of a block goes to box j % boxes, meter floor(j / boxes). */
export function meterOf(fx: Fixture, j: number): { author: number; meterId: number } {
  return { author: j % fx.boxes, meterId: Math.floor(j / fx.boxes) };
}

/** The reading meter (author, meterId) reports in block `height`: counters grow with the height. */
export function readingFor(author: number, meterId: number, height: number): ReadingBody {
  const k = author * METERS_PER_BOX_MAX + meterId;
  return {
    type: "reading",
    meterId,
    timeMs: blockTimeMs(height) - 200,
    importWh: 10_000 + k * 7 + height * (1 + (k % 3)),
    exportWh: 500 + height * (k % 2),
    powerW: 100 * (k % 13) - 600,
    voltagesDeciV: [2300 + (height % 17), 2290 + (k % 20), 2310],
    frequencyMilliHz: 49_950 + (height % 100),
    quality: Quality.good,
  };
}

export interface BlockOptions {
  readonly readings: number;
  /** Orders placed in this block (default 2); the previous block's open orders are cancelled. */
  readonly orders?: number;
}

/** Signs transactions for each author with the next sequence numbers after the ledger's state. */
class Sequencer {
  private readonly next = new Map<number, number>();
  constructor(
    private readonly fx: Fixture,
    private readonly ledger: Ledger,
  ) {}

  sign(author: number, body: TxBody): SignedTx {
    let seq = this.next.get(author);
    if (seq === undefined) {
      const m = this.ledger.state.tree.get(memberKey(author)) as MemberRecord | undefined;
      if (m === undefined || m.kind !== "member") throw new Error(`member ${author} is not in the state`);
      seq = m.lastSeq + 1;
    }
    this.next.set(author, seq + 1);
    return signTx({ author, seq, body }, this.fx.signers[author] as NodeSigner, this.ledger.state.chain.hash);
  }
}

function orderFor(height: number, i: number): OrderBody {
  const t = blockTimeMs(height);
  const intervalStartMs = t - (t % MARKET_INTERVAL_MS) + MARKET_INTERVAL_MS;
  return {
    type: "order",
    side: i % 2 === 0 ? "sell" : "buy",
    energyWh: 10 + ((height + i) % 50),
    priceMicroPerKWh: 90_000 + ((height * 7 + i) % 50) * 1_000,
    intervalStartMs,
    expiresAtMs: intervalStartMs + MARKET_INTERVAL_MS,
    flags: 0,
    counterparty: null,
  };
}

/** Build and sign block ledger.state.height + 1 (does not append it). */
export function nextBlock(ledger: Ledger, fx: Fixture, options: BlockOptions): Block {
  const height = ledger.state.height + 1;
  const readings = options.readings;
  const orders = options.orders ?? 2;
  if (!(readings >= 0 && readings <= fx.boxes * METERS_PER_BOX_MAX)) throw new RangeError(`at most ${fx.boxes * METERS_PER_BOX_MAX} readings per block`);
  const seq = new Sequencer(fx, ledger);
  const txs: SignedTx[] = [];
  // Cancel the previous block's orders that are still open (found through the store's index).
  const prevTime = ledger.state.timeMs;
  for (const stored of ledger.store.txsByTypeTime("order", prevTime, prevTime + 1, 1_000)) {
    if (stored.result !== ResultCode.ok || ledger.state.tree.get(`o/${toHex(stored.signed.id)}`) === undefined) continue;
    txs.push(seq.sign(stored.signed.tx.author, { type: "cancel", orderId: stored.signed.id }));
  }
  for (let j = 0; j < readings; j++) {
    const { author, meterId } = meterOf(fx, j);
    txs.push(seq.sign(author, readingFor(author, meterId, height)));
  }
  for (let i = 0; i < orders; i++) txs.push(seq.sign((height + i) % fx.boxes, orderFor(height, i)));
  const proposer = height % fx.boxes;
  return ledger.propose(txs, fx.signers[proposer] as NodeSigner, proposer, blockTimeMs(height), 1, height);
}

/** Append `count` blocks made by nextBlock; every transaction must be accepted. */
export function appendBlocks(ledger: Ledger, fx: Fixture, count: number, options: BlockOptions): void {
  for (let i = 0; i < count; i++) {
    const { results } = ledger.append(nextBlock(ledger, fx, options));
    const bad = results.findIndex((r) => r !== ResultCode.ok);
    if (bad >= 0) throw new Error(`fixture block ${ledger.state.height}: transaction ${bad} was rejected with code ${results[bad]}`);
  }
}

/** A fresh directory under the OS temp dir, removed when the test ends. */
export function tempDir(t: { after(fn: () => void): void }, label = "test"): string {
  const dir = mkdtempSync(join(tmpdir(), `peergrid-${label}-`));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `peergrid verify`'s check of the ledger file at `path`, opened read-only as an auditor would. */
export function verifyPath(path: string, fx: Fixture): VerifyReport {
  const store = LedgerStore.open(path, { readonly: true });
  try {
    return verifyChain(store, fx.verifier);
  } finally {
    store.close();
  }
}
