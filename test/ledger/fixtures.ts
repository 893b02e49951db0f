// Shared fixtures for the ledger tests: a seeded PRNG, deterministic keys, a
// small genesis and a harness that builds, signs and applies blocks on top of
// a ledger state. Not a test file itself (no test() calls).
import { sha256 } from "@noble/hashes/sha2.js";
import { type Block, type BlockDraft, buildBlock } from "../../ledger/block.js";
import { type Genesis, parseGenesis } from "../../ledger/genesis.js";
import { type Hash, toHex, utf8 } from "../../ledger/hash.js";
import { NodeSigner, NodeVerifier } from "../../ledger/keys.js";
import { type ApplyResult, type Chain, type LedgerState, applyBlock, genesisState, makeChain, resultName } from "../../ledger/state.js";
import { type OrderBody, type ReadingBody, type SignedTx, type Signer, type TxBody, signTx } from "../../ledger/tx.js";
import { Rng as SimRng } from "../../sim/rng.js";

/** 2023-11-14T22:13:20Z: a realistic epoch-milliseconds value. */
export const T0 = 1_700_000_000_000;
export const INTERVAL_MS = 900_000;

/** The project's seeded PRNG (sim/rng.ts) with the small API these tests use. */
export class Rng {
  private readonly inner: SimRng;
  constructor(readonly seed: number) {
    this.inner = new SimRng(seed);
  }
  /** Uniform uint32. */
  u32(): number {
    return this.inner.nextU32();
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 2 ** 32) * n);
  }
  /** Uniform integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return this.inner.int(lo, hi);
  }
  pick<T>(items: readonly T[]): T {
    return this.inner.pick(items);
  }
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
}

/** A deterministic key: the Ed25519 seed is SHA-256 of a label. */
export function keyFor(label: string): NodeSigner {
  return new NodeSigner(sha256(utf8(`peergrid-test-key/${label}`)));
}

export const verifier = new NodeVerifier();

export interface TestMember {
  readonly name: string;
  readonly signer: Signer;
  readonly roles: readonly string[];
}

/** Genesis JSON (before parseGenesis) for the given members. */
export function genesisJson(members: readonly TestMember[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    chainId: "test-grid",
    genesisTimeMs: T0,
    members: members.map((m) => ({ name: m.name, publicKey: toHex(m.signer.publicKey), roles: [...m.roles] })),
    ...extra,
  };
}

export const reading = (timeMs: number, importWh: number, exportWh: number, extra: Partial<ReadingBody> = {}): ReadingBody => ({
  type: "reading",
  meterId: 0,
  timeMs,
  importWh,
  exportWh,
  powerW: 1_200,
  voltagesDeciV: [2301, 2299, 2310],
  frequencyMilliHz: 50_010,
  quality: 0,
  ...extra,
});

export const order = (extra: Partial<OrderBody> = {}): OrderBody => ({
  type: "order",
  side: "buy",
  energyWh: 1_000,
  priceMicroPerKWh: 250_000,
  intervalStartMs: 0, // set by the caller (see Harness.nextIntervalMs)
  expiresAtMs: 0,
  flags: 0,
  counterparty: null,
  ...extra,
});

export function deepFreeze<T>(value: T, seen = new Set<unknown>()): T {
  if (typeof value !== "object" || value === null || seen.has(value)) return value;
  seen.add(value);
  // Typed arrays with elements cannot be frozen; their bytes are compared instead.
  if (ArrayBuffer.isView(value)) return value;
  if (value instanceof Map) for (const [k, v] of value) (deepFreeze(k, seen), deepFreeze(v, seen));
  for (const key of Reflect.ownKeys(value)) deepFreeze((value as Record<string | symbol, unknown>)[key], seen);
  return Object.freeze(value);
}

/** Everything in a state tree as sorted "key=hex(record bytes)" lines. */
export function treeDump(state: LedgerState): string[] {
  const lines: string[] = [];
  for (const e of state.tree.entries()) lines.push(`${e.key}=${toHex(e.bytes)}`);
  return lines.sort();
}

/**
 * A ledger with a proposer: signs transactions with per-author sequence
 * numbers, builds blocks on the current state and applies them.
 */
export class Harness {
  readonly genesis: Genesis;
  readonly chain: Chain;
  state: LedgerState;
  private readonly seqs = new Map<number, number>();

  constructor(
    readonly members: readonly TestMember[],
    extra: Record<string, unknown> = {},
    readonly proposer = 0,
  ) {
    this.genesis = parseGenesis(genesisJson(members, extra));
    this.chain = makeChain(this.genesis);
    this.state = genesisState(this.chain);
  }

  signerOf(index: number): Signer {
    const m = this.members[index];
    if (m === undefined) throw new Error(`no test member ${index}`);
    return m.signer;
  }

  /** Sign `body` as `author`; the sequence number counts up per author unless given. */
  tx(author: number, body: TxBody, opts: { seq?: number; signer?: Signer; chainHash?: Hash } = {}): SignedTx {
    const seq = opts.seq ?? (this.seqs.get(author) ?? 0) + 1;
    this.seqs.set(author, Math.max(seq, this.seqs.get(author) ?? 0));
    return signTx({ author, seq, body }, opts.signer ?? this.signerOf(author), opts.chainHash ?? this.chain.hash);
  }

  /** The next block's time when built now. */
  get nextTimeMs(): number {
    return this.state.timeMs + 1_000;
  }

  /** Start of the first market interval an order in the next block may name. */
  nextIntervalMs(ahead = 1): number {
    const t = this.nextTimeMs;
    return t - (t % INTERVAL_MS) + ahead * INTERVAL_MS;
  }

  block(txs: readonly SignedTx[], patch: Partial<BlockDraft> = {}, signer?: Signer): Block {
    const s = this.state;
    const draft: BlockDraft = {
      height: s.height + 1,
      parentHash: s.blockHash,
      timeMs: this.nextTimeMs,
      stateRoot: s.tree.root,
      proposer: this.proposer,
      raftTerm: Math.max(1, s.raftTerm),
      raftIndex: s.raftIndex + 1,
      txs,
      ...patch,
    };
    return buildBlock(draft, signer ?? this.signerOf(draft.proposer), this.chain.hash);
  }

  /** Apply a block of txs without moving on. */
  try(txs: readonly SignedTx[], patch: Partial<BlockDraft> = {}): ApplyResult {
    return applyBlock(this.state, this.block(txs, patch), verifier);
  }

  /** Apply a block of txs and move on to the new state. */
  apply(txs: readonly SignedTx[], patch: Partial<BlockDraft> = {}): ApplyResult {
    const result = this.try(txs, patch);
    this.state = result.state;
    return result;
  }

  /** Apply and insist every tx was accepted. */
  applyOk(txs: readonly SignedTx[]): ApplyResult {
    const result = this.apply(txs);
    const names = result.results.map(resultName);
    if (names.some((n) => n !== "ok")) throw new Error(`expected all ok, got ${names.join(", ")}`);
    return result;
  }
}

export function hex(bytes: Uint8Array): string {
  return toHex(bytes);
}
