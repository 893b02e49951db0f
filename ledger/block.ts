// Blocks. A block is one Raft log entry: a signed header and the encoded
// transactions it carries.
//
// Header (version 1):
//   u8 version | uvar height | parentHash[32] | uvar timeMs | txRoot[32]
//   | stateRoot[32] | uvar proposer | uvar raftTerm | uvar raftIndex
//   | uvar txCount | signature[64]
// `stateRoot` is the state after the PARENT block, so a leader can propose
// without first applying its own block, and every box checks on the next
// block that it reached the same state. The block hash is the tagged hash of
// the header without its signature; the proposer signs
//   BLOCK_SIGN_DOMAIN | chain hash | header without signature.
// Body: for each transaction, uvar length | bytes.
import { assert } from "./assert.js";
import { Reader, Writer } from "./codec.js";
import { DecodeError, DecodeReason } from "./errors.js";
import { HASH_BYTES, type Hash, HashTag, hashTagged, utf8 } from "./hash.js";
import { merkleRoot } from "./merkle.js";
import { AUTHOR_MAX, SIGNATURE_BYTES, type SignedTx, type Signer, TIME_MS_MAX, TX_BYTES_MAX_ANY, decodeTx } from "./tx.js";

export const BLOCK_VERSION = 1;
/** Hard limits of the encoding; a chain's own (smaller) limits live in its genesis parameters. */
export const BLOCK_TXS_MAX = 100_000;
export const BLOCK_BYTES_MAX = 16 * 1024 * 1024;
export const HEADER_BYTES_MAX = 1 + 8 + 32 + 8 + 32 + 32 + 4 + 8 + 8 + 4 + SIGNATURE_BYTES;

export interface BlockHeader {
  readonly version: number;
  readonly height: number;
  readonly parentHash: Hash;
  readonly timeMs: number;
  readonly txRoot: Hash;
  readonly stateRoot: Hash; // state after the parent block
  readonly proposer: number; // member index
  readonly raftTerm: number;
  readonly raftIndex: number;
  readonly txCount: number;
}

export interface Block {
  readonly header: BlockHeader;
  readonly signature: Uint8Array;
  readonly hash: Hash;
  readonly txs: readonly SignedTx[];
}

// A header is encoded several times a block (its hash when built and when
// checked, its signing message when signed and when verified, the stored
// header); arrays over 64 bytes live outside V8's heap and are costly to
// allocate, so the encoding is written into this scratch buffer and copied
// only where it is kept (safe: JavaScript runs one call at a time, and every
// user below copies or hashes the view before returning).
const HEADER_SCRATCH = new Uint8Array(HEADER_BYTES_MAX);

/** The unsigned header's encoding in the scratch buffer: valid until the next call. */
function unsignedHeaderView(h: BlockHeader): Uint8Array {
  const w = new Writer(HEADER_SCRATCH);
  w.u8(h.version).uvar(h.height).fixed(h.parentHash, HASH_BYTES).uvar(h.timeMs);
  w.fixed(h.txRoot, HASH_BYTES).fixed(h.stateRoot, HASH_BYTES);
  w.uvar(h.proposer).uvar(h.raftTerm).uvar(h.raftIndex).uvar(h.txCount);
  assert(w.buffer === HEADER_SCRATCH, "a header fits in HEADER_BYTES_MAX");
  return w.view();
}

export function encodeUnsignedHeader(h: BlockHeader): Uint8Array {
  return unsignedHeaderView(h).slice();
}

export function blockHash(h: BlockHeader): Hash {
  return hashTagged(HashTag.blockHeader, unsignedHeaderView(h));
}

const BLOCK_SIGN_DOMAIN = utf8("peergrid/block/1"); // 16 bytes

export function blockSigningMessage(chainHash: Hash, h: BlockHeader): Uint8Array {
  const unsigned = unsignedHeaderView(h);
  const msg = new Uint8Array(BLOCK_SIGN_DOMAIN.length + HASH_BYTES + unsigned.length);
  msg.set(BLOCK_SIGN_DOMAIN, 0);
  msg.set(chainHash, BLOCK_SIGN_DOMAIN.length);
  msg.set(unsigned, BLOCK_SIGN_DOMAIN.length + HASH_BYTES);
  return msg;
}

export interface BlockDraft {
  readonly height: number;
  readonly parentHash: Hash;
  readonly timeMs: number;
  readonly stateRoot: Hash;
  readonly proposer: number;
  readonly raftTerm: number;
  readonly raftIndex: number;
  readonly txs: readonly SignedTx[];
}

/** Build and sign a block (the leader's job). */
export function buildBlock(draft: BlockDraft, signer: Signer, chainHash: Hash): Block {
  const header: BlockHeader = {
    version: BLOCK_VERSION,
    height: draft.height,
    parentHash: draft.parentHash,
    timeMs: draft.timeMs,
    txRoot: merkleRoot(draft.txs.map((t) => t.id)),
    stateRoot: draft.stateRoot,
    proposer: draft.proposer,
    raftTerm: draft.raftTerm,
    raftIndex: draft.raftIndex,
    txCount: draft.txs.length,
  };
  const signature = signer.sign(blockSigningMessage(chainHash, header));
  assert(signature.length === SIGNATURE_BYTES, "Ed25519 signatures are 64 bytes");
  return { header, signature, hash: blockHash(header), txs: draft.txs };
}

export function encodeHeader(h: BlockHeader, signature: Uint8Array): Uint8Array {
  const unsigned = unsignedHeaderView(h);
  const out = new Uint8Array(unsigned.length + SIGNATURE_BYTES);
  out.set(unsigned, 0);
  out.set(signature, unsigned.length);
  return out;
}

function readHeader(r: Reader): { header: BlockHeader; signature: Uint8Array } {
  const version = r.u8("block version");
  if (version !== BLOCK_VERSION) r.fail(DecodeReason.unsupportedVersion, `block version ${version} (this box reads ${BLOCK_VERSION})`);
  const height = r.uvar("height", 2 ** 48);
  const parentHash = r.copy(HASH_BYTES, "parentHash");
  const timeMs = r.uvar("timeMs", TIME_MS_MAX);
  const txRoot = r.copy(HASH_BYTES, "txRoot");
  const stateRoot = r.copy(HASH_BYTES, "stateRoot");
  const proposer = r.uvar("proposer", AUTHOR_MAX);
  const raftTerm = r.uvar("raftTerm", 2 ** 48);
  const raftIndex = r.uvar("raftIndex", 2 ** 48);
  const txCount = r.uvar("txCount", BLOCK_TXS_MAX);
  const signature = r.copy(SIGNATURE_BYTES, "block signature");
  const header = { version, height, parentHash, timeMs, txRoot, stateRoot, proposer, raftTerm, raftIndex, txCount };
  return { header, signature };
}

export function decodeHeader(bytes: Uint8Array): { header: BlockHeader; signature: Uint8Array; hash: Hash } {
  const r: Reader = new Reader(bytes);
  const { header, signature } = readHeader(r);
  r.done("block header");
  return { header, signature, hash: blockHash(header) };
}

export function encodeBlock(block: Block): Uint8Array {
  assert(block.txs.length === block.header.txCount, "header txCount matches the body");
  const w = new Writer(HEADER_BYTES_MAX + block.txs.reduce((n, t) => n + t.bytes.length + 2, 0));
  w.raw(encodeHeader(block.header, block.signature));
  for (const t of block.txs) w.bytes(t.bytes, TX_BYTES_MAX_ANY);
  return w.finish();
}

/**
 * Decode a block. Structure only: whether its links, roots and signatures
 * are right is the state machine's question (ledger/state.ts applyBlock).
 */
export function decodeBlock(bytes: Uint8Array): Block {
  if (bytes.length > BLOCK_BYTES_MAX) {
    throw new DecodeError(DecodeReason.oversized, `block is ${bytes.length} bytes, limit ${BLOCK_BYTES_MAX}`, 0);
  }
  const r: Reader = new Reader(bytes);
  const { header, signature } = readHeader(r);
  const txs: SignedTx[] = [];
  for (let i = 0; i < header.txCount; i++) {
    const raw = r.bytes(TX_BYTES_MAX_ANY, `transaction ${i}`);
    const start = r.offset - raw.length; // after the length prefix: where the tx's own offsets count from
    try {
      txs.push(decodeTx(raw));
    } catch (err) {
      if (err instanceof DecodeError) throw new DecodeError(err.reason, `transaction ${i}: ${err.message}`, start + err.offset);
      throw err;
    }
  }
  r.done("block");
  return { header, signature, hash: blockHash(header), txs };
}
