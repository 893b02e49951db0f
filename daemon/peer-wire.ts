// Box-to-box messages that are not Raft's own, carried on the same
// authenticated links (daemon/transport.ts) as Raft messages:
//
//   forward            a box hands transactions it accepted to the leader's pool
//   blocksRequest      "send me blocks from height H": a box that installed a
//                      Raft snapshot (replicated.ts ChainPoint) fetches the blocks
//                      it lacks, and verifies every one itself
//   blocks             the answer: encoded blocks from fromHeight on, in order
//   blocksPruned       the answer instead when block fromHeight is at or below
//                      the sender's prunedTo (its readings are gone, store.ts
//                      retention, or it never held it): "ask for one of my
//                      checkpoints", the heights of those it holds (prunedTo's
//                      first; the asker takes the newest below its snapshot's
//                      block, so it walks and re-applies the fewest blocks)
//   headersRequest     "send me block headers from height H", and
//   headers            the answer: signed headers from fromHeight on, in order,
//                      up to the first the sender does not hold. The asker
//                      walks them down from its snapshot's block hash to a
//                      checkpoint's block, so the checkpoint is anchored to
//                      the chain Raft committed before a byte of it is used
//   checkpointRequest  "send me the records of your checkpoint at height B,
//                      those whose keys come after afterKey", and
//   checkpoint         the answer: one part, records in key order; `total` is
//                      the checkpoint's record count (0: the sender holds no
//                      checkpoint at B); `done` says this part is the last
//
//   message := marker:u8 (=0x81) | type:u8 | from:uvar | to:uvar | body
//   forward            count:uvar | tx:bytes * count
//   blocksRequest      fromHeight:uvar | countMax:uvar
//   blocks             fromHeight:uvar | count:uvar | block:bytes * count
//   blocksPruned       fromHeight:uvar | prunedTo:uvar | count:uvar | checkpoint:uvar * count
//                      1 <= fromHeight <= prunedTo = checkpoint[0] < checkpoint[1] < ...
//   headersRequest     fromHeight:uvar | countMax:uvar
//   headers            fromHeight:uvar | count:uvar | header:bytes * count
//   checkpointRequest  height:uvar | afterKey:str
//   checkpoint         height:uvar | afterKey:str | total:uvar | done:bool | count:uvar
//                      | (key:str | value:bytes) * count       keys ascending (UTF-8 bytes), after afterKey
//
// A checkpoint part holds at most CHECKPOINT_PART_RECORDS_MAX records and
// CHECKPOINT_PART_BYTES_MAX bytes of keys and values (one larger record goes
// alone): a state of 1,000 premises (a few MB) comes in a handful of parts,
// each far within WIRE_MESSAGE_BYTES_MAX, and neither box holds up its event
// loop (heartbeats, blocks) for long on one part.
//
// The marker has the high bit set, which a Raft wire message's version byte
// (ledger/raft/wire.ts) never has: one frame is one or the other. Canonical
// and bounded like every decoder here; any junk is a DecodeError, and the
// transport closes the link that sent it.
import { compareBytes, isSafeUint } from "../ledger/assert.js";
import { BLOCK_BYTES_MAX, HEADER_BYTES_MAX } from "../ledger/block.js";
import { Reader, Writer, varintSize } from "../ledger/codec.js";
import { DecodeReason } from "../ledger/errors.js";
import { KEY_BYTES_MAX, VALUE_BYTES_MAX } from "../ledger/state-tree.js";
import { TX_BYTES_MAX_ANY } from "../ledger/tx.js";
import type { NodeId } from "../ledger/raft/raft.js";
import { WIRE_ENTRY_DATA_BYTES_MAX, WIRE_MESSAGE_BYTES_MAX, WIRE_NODE_ID_MAX } from "../ledger/raft/wire.js";

export const PEER_WIRE_MARKER = 0x81;
/** Most transactions in one forward message. */
export const FORWARD_TXS_MAX = 8_192;
/** Most blocks in one blocks message (and the most a request may ask for). */
export const BLOCKS_PER_MESSAGE_MAX = 64;
/**
 * Most bytes of blocks in one blocks message: a largest block (genesis caps
 * blockBytesMax at 16 MiB) always fits, with room left for the message's own
 * fields, the frame and its MAC within WIRE_MESSAGE_BYTES_MAX.
 */
export const BLOCKS_MESSAGE_BYTES_MAX = WIRE_ENTRY_DATA_BYTES_MAX;
/** Most headers in one headers message (and the most a request may ask for): about 0.9 MB of headers at most. */
export const HEADERS_PER_MESSAGE_MAX = 4_096;
/** Most records in one checkpoint part. */
export const CHECKPOINT_PART_RECORDS_MAX = 16_384;
/** Most bytes of keys and values in one checkpoint part (a part of one record may be larger: a record's own bound). */
export const CHECKPOINT_PART_BYTES_MAX = 1024 * 1024;
/** A part cut because it was full: every part but the last must be (the sender stops before a record that would not fit). */
export const CHECKPOINT_FULL_PART = { records: CHECKPOINT_PART_RECORDS_MAX, bytes: CHECKPOINT_PART_BYTES_MAX, slackBytes: KEY_BYTES_MAX + VALUE_BYTES_MAX } as const;
/** Most records a checkpoint may announce: 20 times the state of 1,000 premises (~10 records a premise). */
export const CHECKPOINT_RECORDS_MAX = 200_000;
/**
 * Most bytes a box holds of one checkpoint until it is installed: keys,
 * values and RECORD_OVERHEAD_BYTES a record (ledger/checkpoint-fetch.ts).
 * The state of 1,000 premises takes ~4 MB so; a peer cannot fill a Pi's memory.
 */
export const CHECKPOINT_BYTES_MAX = 96 * 1024 * 1024;
/** Most checkpoint heights a blocksPruned lists (a box keeps about five: ledger-pruner.ts). */
export const CHECKPOINTS_LISTED_MAX = 64;
const HEIGHT_MAX = 2 ** 48 - 1;

export const PeerType = { forward: 1, blocksRequest: 2, blocks: 3, blocksPruned: 4, headersRequest: 5, headers: 6, checkpointRequest: 7, checkpoint: 8 } as const;

/** One state record of a checkpoint: its key and its encoded value (ledger/records.ts), as the state table holds them. */
export interface CheckpointRecord {
  readonly key: string;
  readonly value: Uint8Array;
}

export type PeerMessage =
  | { readonly type: "forward"; readonly from: NodeId; readonly to: NodeId; readonly txs: readonly Uint8Array[] }
  | { readonly type: "blocksRequest"; readonly from: NodeId; readonly to: NodeId; readonly fromHeight: number; readonly countMax: number }
  | { readonly type: "blocks"; readonly from: NodeId; readonly to: NodeId; readonly fromHeight: number; readonly blocks: readonly Uint8Array[] }
  | { readonly type: "blocksPruned"; readonly from: NodeId; readonly to: NodeId; readonly fromHeight: number; readonly prunedTo: number; readonly checkpoints: readonly number[] }
  | { readonly type: "headersRequest"; readonly from: NodeId; readonly to: NodeId; readonly fromHeight: number; readonly countMax: number }
  | { readonly type: "headers"; readonly from: NodeId; readonly to: NodeId; readonly fromHeight: number; readonly headers: readonly Uint8Array[] }
  | { readonly type: "checkpointRequest"; readonly from: NodeId; readonly to: NodeId; readonly height: number; readonly afterKey: string }
  | {
      readonly type: "checkpoint";
      readonly from: NodeId;
      readonly to: NodeId;
      readonly height: number;
      readonly afterKey: string;
      readonly total: number;
      readonly done: boolean;
      readonly records: readonly CheckpointRecord[];
    };

/** The answers a box waits for (node.ts catchUp); the rest are requests or forwards. */
export type PeerAnswer = Extract<PeerMessage, { type: "blocks" | "blocksPruned" | "headers" | "checkpoint" }>;

export function isPeerMessage(m: { readonly type: string }): m is PeerMessage {
  return Object.hasOwn(PeerType, m.type);
}

export function isPeerPayload(payload: Uint8Array): boolean {
  return payload.length > 0 && payload[0] === PEER_WIRE_MARKER;
}

export function encodedSize(m: PeerMessage): number {
  const list = m.type === "forward" ? m.txs : m.type === "blocks" ? m.blocks : m.type === "headers" ? m.headers : [];
  const records = m.type === "checkpoint" ? m.records.reduce((n, r) => n + 3 * r.key.length + r.value.length + 16, 0) : 0;
  const keys = m.type === "checkpoint" || m.type === "checkpointRequest" ? 3 * m.afterKey.length + 8 : 0;
  return 32 + keys + records + list.reduce((n, b) => n + varintSize(b.length) + b.length, 0);
}

export function encodePeerMessage(m: PeerMessage): Uint8Array {
  const w = new Writer(encodedSize(m)).u8(PEER_WIRE_MARKER).u8(PeerType[m.type]).uvar(m.from).uvar(m.to);
  switch (m.type) {
    case "forward":
      w.uvar(m.txs.length);
      for (const t of m.txs) w.bytes(t, TX_BYTES_MAX_ANY);
      break;
    case "blocksRequest":
      w.uvar(m.fromHeight).uvar(m.countMax);
      break;
    case "blocks":
      w.uvar(m.fromHeight).uvar(m.blocks.length);
      for (const b of m.blocks) w.bytes(b, BLOCK_BYTES_MAX);
      break;
    case "blocksPruned":
      w.uvar(m.fromHeight).uvar(m.prunedTo).uvar(m.checkpoints.length);
      for (const h of m.checkpoints) w.uvar(h);
      break;
    case "headersRequest":
      w.uvar(m.fromHeight).uvar(m.countMax);
      break;
    case "headers":
      w.uvar(m.fromHeight).uvar(m.headers.length);
      for (const h of m.headers) w.bytes(h, HEADER_BYTES_MAX);
      break;
    case "checkpointRequest":
      w.uvar(m.height).str(m.afterKey, KEY_BYTES_MAX);
      break;
    case "checkpoint":
      w.uvar(m.height).str(m.afterKey, KEY_BYTES_MAX).uvar(m.total).bool(m.done).uvar(m.records.length);
      for (const r of m.records) w.str(r.key, KEY_BYTES_MAX).bytes(r.value, VALUE_BYTES_MAX);
      break;
  }
  const out = w.finish();
  if (out.length > WIRE_MESSAGE_BYTES_MAX) throw new RangeError(`a ${m.type} message of ${out.length} bytes exceeds ${WIRE_MESSAGE_BYTES_MAX}`);
  return out;
}

export function decodePeerMessage(bytes: Uint8Array): PeerMessage {
  const r = new Reader(bytes);
  if (bytes.length > WIRE_MESSAGE_BYTES_MAX) r.fail(DecodeReason.oversized, `peer message of ${bytes.length} bytes`);
  if (r.u8("marker") !== PEER_WIRE_MARKER) r.fail(DecodeReason.unsupportedVersion, "not a peer message");
  const code = r.u8("peer message type");
  const from = r.uvar("from", WIRE_NODE_ID_MAX);
  const to = r.uvar("to", WIRE_NODE_ID_MAX);
  let m: PeerMessage;
  switch (code) {
    case PeerType.forward: {
      const n = r.uvar("tx count", FORWARD_TXS_MAX);
      const txs: Uint8Array[] = [];
      for (let i = 0; i < n; i++) txs.push(r.copy(r.uvar("tx length", TX_BYTES_MAX_ANY), "tx"));
      m = { type: "forward", from, to, txs };
      break;
    }
    case PeerType.blocksRequest:
      m = { type: "blocksRequest", from, to, fromHeight: r.uvar("from height", HEIGHT_MAX), countMax: r.uvar("count", BLOCKS_PER_MESSAGE_MAX) };
      if (m.fromHeight === 0 || m.countMax === 0) r.fail(DecodeReason.outOfRange, "blocks are asked for from height 1, at least one");
      break;
    case PeerType.blocks: {
      const fromHeight = r.uvar("from height", HEIGHT_MAX);
      const n = r.uvar("block count", BLOCKS_PER_MESSAGE_MAX);
      const blocks: Uint8Array[] = [];
      for (let i = 0; i < n; i++) blocks.push(r.copy(r.uvar("block length", BLOCK_BYTES_MAX), "block"));
      if (fromHeight === 0 && n > 0) r.fail(DecodeReason.outOfRange, "blocks start at height 1");
      m = { type: "blocks", from, to, fromHeight, blocks };
      break;
    }
    case PeerType.blocksPruned: {
      const fromHeight = r.uvar("from height", HEIGHT_MAX);
      const prunedTo = r.uvar("pruned to", HEIGHT_MAX);
      if (fromHeight === 0 || prunedTo < fromHeight) r.fail(DecodeReason.outOfRange, `blocks pruned to ${prunedTo} cannot be the answer for height ${fromHeight}`);
      const n = r.uvar("checkpoint count", CHECKPOINTS_LISTED_MAX);
      const checkpoints: number[] = [];
      for (let i = 0; i < n; i++) checkpoints.push(r.uvar("checkpoint height", HEIGHT_MAX));
      if (checkpoints[0] !== prunedTo || checkpoints.some((h, i) => i > 0 && h <= (checkpoints[i - 1] as number))) {
        r.fail(DecodeReason.invalid, `checkpoints ${checkpoints.join(", ")}: the first must be the pruned height ${prunedTo}, then ascending`);
      }
      m = { type: "blocksPruned", from, to, fromHeight, prunedTo, checkpoints };
      break;
    }
    case PeerType.headersRequest:
      m = { type: "headersRequest", from, to, fromHeight: r.uvar("from height", HEIGHT_MAX), countMax: r.uvar("count", HEADERS_PER_MESSAGE_MAX) };
      if (m.fromHeight === 0 || m.countMax === 0) r.fail(DecodeReason.outOfRange, "headers are asked for from height 1, at least one");
      break;
    case PeerType.headers: {
      const fromHeight = r.uvar("from height", HEIGHT_MAX);
      const n = r.uvar("header count", HEADERS_PER_MESSAGE_MAX);
      const headers: Uint8Array[] = [];
      for (let i = 0; i < n; i++) headers.push(r.copy(r.uvar("header length", HEADER_BYTES_MAX), "header"));
      if (fromHeight === 0 && n > 0) r.fail(DecodeReason.outOfRange, "headers start at height 1");
      m = { type: "headers", from, to, fromHeight, headers };
      break;
    }
    case PeerType.checkpointRequest: {
      const height = r.uvar("checkpoint height", HEIGHT_MAX);
      if (height === 0) r.fail(DecodeReason.outOfRange, "a checkpoint is of a block after genesis");
      m = { type: "checkpointRequest", from, to, height, afterKey: r.str(KEY_BYTES_MAX, "after key") };
      break;
    }
    case PeerType.checkpoint:
      m = readCheckpointPart(r, from, to);
      break;
    default:
      return r.fail(DecodeReason.unknownType, `peer message type ${code}`);
  }
  r.done("peer message");
  return m;
}

/** A checkpoint part's body: its records' keys strictly ascending after afterKey, its counts within their bounds. */
function readCheckpointPart(r: Reader, from: NodeId, to: NodeId): PeerMessage {
  const height = r.uvar("checkpoint height", HEIGHT_MAX);
  if (height === 0) r.fail(DecodeReason.outOfRange, "a checkpoint is of a block after genesis");
  const afterKeyBytes = r.bytes(KEY_BYTES_MAX, "after key");
  const afterKey = r.utf8(afterKeyBytes, "after key");
  const total = r.uvar("record total", CHECKPOINT_RECORDS_MAX);
  const done = r.bool("done");
  const n = r.uvar("record count", CHECKPOINT_PART_RECORDS_MAX);
  if (n > total) r.fail(DecodeReason.outOfRange, `${n} records in a part of a checkpoint of ${total}`);
  if (total === 0 && !done) r.fail(DecodeReason.invalid, "a checkpoint not held (total 0) is the last part");
  const records: CheckpointRecord[] = [];
  let previous = afterKeyBytes;
  let bytes = 0;
  for (let i = 0; i < n; i++) {
    const keyBytes = r.bytes(KEY_BYTES_MAX, "record key");
    // Byte order: SQLite's BINARY collation, which orders the checkpoint_state table.
    if (compareBytes(keyBytes, previous) <= 0) r.fail(DecodeReason.nonCanonical, `record ${i}'s key is not after the one before it`);
    const key = r.utf8(keyBytes, "record key");
    const value = new Uint8Array(r.bytes(VALUE_BYTES_MAX, "record value"));
    bytes += keyBytes.length + value.length;
    if (n > 1 && bytes > CHECKPOINT_PART_BYTES_MAX) r.fail(DecodeReason.oversized, `a checkpoint part of ${n} records over ${CHECKPOINT_PART_BYTES_MAX} bytes`);
    records.push({ key, value });
    previous = keyBytes;
  }
  return { type: "checkpoint", from, to, height, afterKey, total, done, records };
}

/** Cut a list of encoded items into messages of at most `itemsMax` items and about `bytesMax` bytes each. */
export function chunkByBytes(items: readonly Uint8Array[], itemsMax: number, bytesMax: number): Uint8Array[][] {
  const out: Uint8Array[][] = [];
  let cur: Uint8Array[] = [];
  let bytes = 0;
  for (const it of items) {
    if (cur.length > 0 && (cur.length >= itemsMax || bytes + it.length + 8 > bytesMax)) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(it);
    bytes += it.length + 8;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

export function validNodeId(id: number): boolean {
  return isSafeUint(id) && id <= WIRE_NODE_ID_MAX;
}
