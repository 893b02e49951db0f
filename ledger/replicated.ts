// How committed Raft entries become blocks: the one rule every box applies,
// pure, so the daemon (daemon/node.ts) and the simulator (sim/) share it.
//
// A Raft entry is final once committed, but Raft does not make its leader
// honest or its clock right (DESIGN.md: order by Raft, then validate). So a
// committed entry becomes the next block only if it is a well-formed block
// that extends this box's head at exactly the Raft position it claims, and
// passes every check of the ledger state machine (state.ts). Otherwise it is
// SKIPPED: it changes nothing. Every box holds the same state before the
// entry, so every box reaches the same verdict, and the chain stays one.
//
//   entry kind   data                 outcome
//   confChange   a membership change  none (Raft's own business)
//   normal       empty                none (a new leader's no-op)
//   normal       a block              block (appended) or skip (with a reason)
//
// Invariant: a block's header names its own entry (raftTerm, raftIndex), so
// a block proposed for one log position can never be applied at another (a
// stale proposal re-sent by a deposed leader is skipped, not re-applied).
import { Reader, Writer } from "./codec.js";
import { type Block, decodeBlock } from "./block.js";
import { BlockRejectedError, DecodeError, DecodeReason } from "./errors.js";
import type { Hash } from "./hash.js";
import { type ApplyResult, type LedgerState, applyBlock } from "./state.js";
import type { SignatureVerifier } from "./tx.js";

/** The parts of a Raft entry the ledger looks at (ledger/raft/raft.ts Entry). */
export interface LedgerEntry {
  readonly term: number;
  readonly index: number;
  readonly kind?: number; // 0 normal (default), anything else is Raft's own (a configuration change)
  readonly data: Uint8Array;
}

export type EntryOutcome =
  | { readonly kind: "none" }
  | { readonly kind: "block"; readonly block: Block; readonly result: ApplyResult }
  | { readonly kind: "skip"; readonly code: string; readonly reason: string };

export const SkipCode = {
  decode: "PG_ERR_ENTRY_NOT_A_BLOCK",
  position: "PG_ERR_ENTRY_POSITION",
} as const;

/**
 * The verdict on one committed entry; applying it is the caller's (state and
 * store move together). `decoded`, when given, is decodeBlock(entry.data)
 * made earlier (a shell that decoded the entry when it arrived).
 */
export function applyEntry(state: LedgerState, entry: LedgerEntry, verifier: SignatureVerifier, decoded?: Block): EntryOutcome {
  if ((entry.kind ?? 0) !== 0 || entry.data.length === 0) return { kind: "none" };
  let block: Block;
  try {
    block = decoded ?? decodeBlock(entry.data);
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
    return { kind: "skip", code: SkipCode.decode, reason: err.message };
  }
  const h = block.header;
  if (h.raftTerm !== entry.term || h.raftIndex !== entry.index) {
    return { kind: "skip", code: SkipCode.position, reason: `block names raft entry ${h.raftTerm}/${h.raftIndex} but sits at ${entry.term}/${entry.index}` };
  }
  try {
    return { kind: "block", block, result: applyBlock(state, block, verifier) };
  } catch (err) {
    if (!(err instanceof BlockRejectedError)) throw err;
    return { kind: "skip", code: err.code, reason: err.message };
  }
}

/**
 * The time of the next block: the proposer's clock, but always after the
 * parent's. A leader whose clock runs behind cannot move the chain's time
 * backwards (state.ts refuses it anyway); it only repeats parent + 1 ms, and
 * the daemon hands leadership away when its clock is far behind the chain.
 */
export function nextBlockTimeMs(nowMs: number, parentTimeMs: number): number {
  return Math.max(nowMs, parentTimeMs + 1);
}

/**
 * What a Raft snapshot of the ledger says: "the chain up to `height`, whose
 * head is `blockHash`". A box that installs it fetches and verifies the
 * blocks it lacks from its peers (as Hyperledger Fabric's Raft orderer does);
 * it never takes a peer's word for the state.
 */
export interface ChainPoint {
  readonly height: number;
  readonly blockHash: Hash;
}

const CHAIN_POINT_VERSION = 1;

export function encodeChainPoint(p: ChainPoint): Uint8Array {
  return new Writer(48).u8(CHAIN_POINT_VERSION).uvar(p.height).fixed(p.blockHash, 32).finish();
}

export function decodeChainPoint(bytes: Uint8Array): ChainPoint {
  const r = new Reader(bytes);
  const version = r.u8("chain point version");
  if (version !== CHAIN_POINT_VERSION) r.fail(DecodeReason.unsupportedVersion, `chain point version ${version}`);
  const p = { height: r.uvar("height"), blockHash: r.copy(32, "block hash") };
  r.done("chain point");
  return p;
}
