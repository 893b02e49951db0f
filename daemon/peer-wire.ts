// Box-to-box messages that are not Raft's own, carried on the same
// authenticated links (daemon/transport.ts) as Raft messages:
//
//   forward        a box hands transactions it accepted to the leader's pool
//   blocksRequest  "send me blocks from height H": a box that installed a
//                  Raft snapshot (replicated.ts ChainPoint) fetches the blocks
//                  it lacks, and verifies every one itself
//   blocks         the answer: encoded blocks from fromHeight on, in order
//
//   message := marker:u8 (=0x81) | type:u8 | from:uvar | to:uvar | body
//   forward        count:uvar | tx:bytes * count
//   blocksRequest  fromHeight:uvar | countMax:uvar
//   blocks         fromHeight:uvar | count:uvar | block:bytes * count
//
// The marker has the high bit set, which a Raft wire message's version byte
// (ledger/raft/wire.ts) never has: one frame is one or the other. Canonical
// and bounded like every decoder here; any junk is a DecodeError, and the
// transport closes the link that sent it.
import { isSafeUint } from "../ledger/assert.js";
import { BLOCK_BYTES_MAX } from "../ledger/block.js";
import { Reader, Writer, varintSize } from "../ledger/codec.js";
import { DecodeReason } from "../ledger/errors.js";
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
const HEIGHT_MAX = 2 ** 48 - 1;

export const PeerType = { forward: 1, blocksRequest: 2, blocks: 3 } as const;

export type PeerMessage =
  | { readonly type: "forward"; readonly from: NodeId; readonly to: NodeId; readonly txs: readonly Uint8Array[] }
  | { readonly type: "blocksRequest"; readonly from: NodeId; readonly to: NodeId; readonly fromHeight: number; readonly countMax: number }
  | { readonly type: "blocks"; readonly from: NodeId; readonly to: NodeId; readonly fromHeight: number; readonly blocks: readonly Uint8Array[] };

export function isPeerMessage(m: { readonly type: string }): m is PeerMessage {
  return m.type === "forward" || m.type === "blocksRequest" || m.type === "blocks";
}

export function isPeerPayload(payload: Uint8Array): boolean {
  return payload.length > 0 && payload[0] === PEER_WIRE_MARKER;
}

export function encodedSize(m: PeerMessage): number {
  const list = m.type === "forward" ? m.txs : m.type === "blocks" ? m.blocks : [];
  return 32 + list.reduce((n, b) => n + varintSize(b.length) + b.length, 0);
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
    default:
      return r.fail(DecodeReason.unknownType, `peer message type ${code}`);
  }
  r.done("peer message");
  return m;
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
