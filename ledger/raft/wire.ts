// The wire format of Raft messages between boxes: a canonical binary encoding
// of every `Message` variant (and the entries inside an append). Pure: bytes
// in, a message out, no I/O, no clock, no randomness; the transport
// (daemon/transport.ts) frames these payloads on TCP.
//
//   message := version:u8 (=2) | type:u8 | from:uvar | to:uvar | term:uvar | body
//   body of
//     preVote, vote  lastIndex:uvar | lastTerm:uvar [| transfer:bool (vote only)]
//     preVoteResp, voteResp                reject:bool
//     append         prevIndex:uvar | prevTerm:uvar | commit:uvar | count:uvar | entry*count
//       entry        term:uvar | kind:u8 | data:bytes   (index is NOT sent, see below)
//     appendResp     reject:bool | index:uvar | hintIndex:uvar | hintTerm:uvar
//     heartbeat      commit:uvar
//     heartbeatResp, timeoutNow            (nothing)
//     snapshot       snapshot
//   snapshot := index:uvar | term:uvar | voterCount:uvar | voter:uvar* | learnerCount:uvar | learner:uvar* | data:bytes
//
// Version 2 added entry kinds and the snapshot message; a version-1 peer is
// refused (unsupported_version), as a mixed cluster could not agree on them.
// An entry's kind is 0 (normal) or 1 (confChange, whose data must decode as
// a ConfChange: conf-change.ts). A snapshot names an entry (index >= 1,
// 1 <= term <= the message term) and a valid configuration: at least one
// voter, ids strictly increasing, voters and learners disjoint. The same
// snapshot encoding (encodeSnapshot) is how raft.sqlite stores one.
//
// Canonical: one message has exactly one encoding (minimal varints, 0/1
// booleans), and decode consumes every byte or throws. decodeMessage throws
// only DecodeError, for any malformed, truncated, oversized or trailing input;
// a peer's bytes can never reach the Raft core as anything but a well-formed
// Message.
//
// Entry indexes are implied: in an append, entry i has index prevIndex + 1 + i.
// The Raft core trusts exactly that (handleAppend walks m.entries by e.index),
// so the format makes a contradicting frame impossible rather than checking
// for it. The decoder also refuses entry terms that no honest leader sends:
// terms must not decrease, must be >= prevTerm and <= the message term.
import { assert, assertNever, isSafeUint } from "../assert.js";
import { Reader, Writer, varintSize } from "../codec.js";
import { DecodeError, DecodeReason, PeergridError } from "../errors.js";
import { decodeConfChange } from "./conf-change.js";
import type { Entry, EntryKind, Message, MessageType, NodeId, Snapshot } from "./raft.js";

export const WIRE_VERSION = 2;

/** Member indexes (Raft node ids); the same bound as transaction authors (ledger/tx.ts AUTHOR_MAX). */
export const WIRE_NODE_ID_MAX = 2 ** 24 - 1;
/** Most entries in one append on the wire. The core sends at most entriesPerMessageMax (64 by default). */
export const WIRE_ENTRIES_PER_MESSAGE_MAX = 4096;
/** One entry's data: a whole block, so as large as the largest block (ledger/block.ts BLOCK_BYTES_MAX). */
export const WIRE_ENTRY_DATA_BYTES_MAX = 16 * 1024 * 1024;
/**
 * One encoded message: room for one maximal entry plus the header. Larger
 * appends are cut into several by splitAppend() before encoding.
 */
export const WIRE_MESSAGE_BYTES_MAX = WIRE_ENTRY_DATA_BYTES_MAX + 4096;
/** Voters plus learners in a snapshot's configuration (a neighbourhood has tens of boxes). */
export const WIRE_CONFIG_NODES_MAX = 1024;
/** A snapshot's application data: a small record (the ledger's height and hash), not the state itself. */
export const WIRE_SNAPSHOT_DATA_BYTES_MAX = 1024 * 1024;

/** Type codes. Stable: a code is never reused for another meaning. */
export const WireType = {
  preVote: 1,
  preVoteResp: 2,
  vote: 3,
  voteResp: 4,
  append: 5,
  appendResp: 6,
  heartbeat: 7,
  heartbeatResp: 8,
  timeoutNow: 9,
  snapshot: 10,
} as const satisfies Record<MessageType, number>;

/** Entry kind codes (raft.ts EntryKind): the same numbers on the wire. */
const ENTRY_KIND_MAX = 1;

const TYPE_BY_CODE: ReadonlyMap<number, MessageType> = new Map(Object.entries(WireType).map(([name, code]) => [code, name as MessageType]));

/** A message that cannot be put on the wire (bigger than WIRE_MESSAGE_BYTES_MAX even when split). */
export class WireError extends PeergridError {
  constructor(code: string, message: string) {
    super(code, message);
    this.name = "WireError";
  }
}

// Header: version + type + three varints of at most 8 bytes each.
const HEADER_BYTES_MAX = 2 + 3 * 8;
// Append body before the entries: four varints.
const APPEND_FIXED_BYTES_MAX = 4 * 8;

function entryEncodedSize(e: Entry): number {
  return varintSize(e.term) + 1 + varintSize(e.data.length) + e.data.length;
}

function idsSize(ids: readonly NodeId[]): number {
  return ids.reduce((n, id) => n + varintSize(id), varintSize(ids.length));
}

function snapshotEncodedSize(s: Snapshot): number {
  return varintSize(s.index) + varintSize(s.term) + idsSize(s.voters) + idsSize(s.learners) + varintSize(s.data.length) + s.data.length;
}

/** The exact size encodeMessage would produce, without encoding (for splitting and queue accounting). */
export function encodedSize(m: Message): number {
  let size = 2 + varintSize(m.from) + varintSize(m.to) + varintSize(m.term);
  switch (m.type) {
    case "preVote":
      return size + varintSize(m.lastIndex) + varintSize(m.lastTerm);
    case "vote":
      return size + varintSize(m.lastIndex) + varintSize(m.lastTerm) + 1;
    case "preVoteResp":
    case "voteResp":
      return size + 1;
    case "append":
      size += varintSize(m.prevIndex) + varintSize(m.prevTerm) + varintSize(m.commit) + varintSize(m.entries.length);
      for (const e of m.entries) size += entryEncodedSize(e);
      return size;
    case "appendResp":
      return size + 1 + varintSize(m.index) + varintSize(m.hintIndex) + varintSize(m.hintTerm);
    case "heartbeat":
      return size + varintSize(m.commit);
    case "heartbeatResp":
    case "timeoutNow":
      return size;
    case "snapshot":
      return size + snapshotEncodedSize(m.snapshot);
    default:
      return assertNever(m, "message");
  }
}

/**
 * Encode one message. The message must be one the Raft core could have made
 * (ids in range, entries dense from prevIndex + 1): anything else is a bug in
 * the caller and fails an assertion. Too big for one frame: WireError (cut an
 * append with splitAppend first).
 */
export function encodeMessage(m: Message): Uint8Array {
  assert(isSafeUint(m.from) && m.from <= WIRE_NODE_ID_MAX && isSafeUint(m.to) && m.to <= WIRE_NODE_ID_MAX, "node ids in range");
  assert(isSafeUint(m.term), "term is a whole number");
  const size = encodedSize(m);
  if (size > WIRE_MESSAGE_BYTES_MAX) {
    throw new WireError("PG_ERR_WIRE_OVERSIZED", `${m.type} message of ${size} bytes exceeds ${WIRE_MESSAGE_BYTES_MAX}`);
  }
  const w = new Writer(size);
  w.u8(WIRE_VERSION).u8(WireType[m.type]).uvar(m.from).uvar(m.to).uvar(m.term);
  switch (m.type) {
    case "preVote":
      w.uvar(m.lastIndex).uvar(m.lastTerm);
      break;
    case "vote":
      w.uvar(m.lastIndex).uvar(m.lastTerm).bool(m.transfer);
      break;
    case "preVoteResp":
    case "voteResp":
      w.bool(m.reject);
      break;
    case "append":
      encodeAppendBody(w, m);
      break;
    case "appendResp":
      w.bool(m.reject).uvar(m.index).uvar(m.hintIndex).uvar(m.hintTerm);
      break;
    case "heartbeat":
      w.uvar(m.commit);
      break;
    case "heartbeatResp":
    case "timeoutNow":
      break;
    case "snapshot":
      assert(m.snapshot.term <= m.term, "a snapshot's term is not after the message term");
      writeSnapshot(w, m.snapshot);
      break;
    default:
      assertNever(m, "message");
  }
  const out = w.finish();
  assert(out.length === size, "encodedSize agrees with the encoding");
  return out;
}

function encodeAppendBody(w: Writer, m: Extract<Message, { type: "append" }>): void {
  if (m.entries.length > WIRE_ENTRIES_PER_MESSAGE_MAX) {
    throw new WireError("PG_ERR_WIRE_OVERSIZED", `append of ${m.entries.length} entries exceeds ${WIRE_ENTRIES_PER_MESSAGE_MAX}`);
  }
  w.uvar(m.prevIndex).uvar(m.prevTerm).uvar(m.commit).uvar(m.entries.length);
  m.entries.forEach((e, i) => {
    // Invariant (Raft's, relied on by the implied indexes): dense from prevIndex + 1.
    assert(e.index === m.prevIndex + 1 + i, `append entry ${i} has index ${e.index}, expected ${m.prevIndex + 1 + i}`);
    assert(e.data.length <= WIRE_ENTRY_DATA_BYTES_MAX, `entry ${e.index} data exceeds ${WIRE_ENTRY_DATA_BYTES_MAX} bytes`);
    assert(e.kind >= 0 && e.kind <= ENTRY_KIND_MAX, `entry ${e.index} has a known kind`);
    w.uvar(e.term).u8(e.kind).bytes(e.data, WIRE_ENTRY_DATA_BYTES_MAX);
  });
}

function writeSnapshot(w: Writer, s: Snapshot): void {
  assert(isSafeUint(s.index) && s.index >= 1 && isSafeUint(s.term) && s.term >= 1, "a snapshot names an entry");
  assert(s.voters.length + s.learners.length <= WIRE_CONFIG_NODES_MAX, `at most ${WIRE_CONFIG_NODES_MAX} nodes in a configuration`);
  if (s.data.length > WIRE_SNAPSHOT_DATA_BYTES_MAX) {
    throw new WireError("PG_ERR_WIRE_OVERSIZED", `snapshot data of ${s.data.length} bytes exceeds ${WIRE_SNAPSHOT_DATA_BYTES_MAX}`);
  }
  w.uvar(s.index).uvar(s.term);
  for (const ids of [s.voters, s.learners]) {
    w.uvar(ids.length);
    for (const id of ids) {
      assert(isSafeUint(id) && id <= WIRE_NODE_ID_MAX, "node ids in range");
      w.uvar(id);
    }
  }
  w.bytes(s.data, WIRE_SNAPSHOT_DATA_BYTES_MAX);
}

/** A snapshot alone, in the wire's encoding (raft.sqlite stores snapshots so). WireError if its data is too large. */
export function encodeSnapshot(s: Snapshot): Uint8Array {
  const size = snapshotEncodedSize(s);
  const w = new Writer(size);
  writeSnapshot(w, s);
  const out = w.finish();
  assert(out.length === size, "snapshotEncodedSize agrees with the encoding");
  return out;
}

/** The inverse of encodeSnapshot; throws only DecodeError. The data is a copy. */
export function decodeSnapshot(bytes: Uint8Array): Snapshot {
  const r = new Reader(bytes);
  const s = readSnapshot(r, Number.MAX_SAFE_INTEGER);
  r.done("snapshot");
  return s;
}

function readIds(r: Reader, what: string, budget: number): NodeId[] {
  const count = r.uvar(`${what} count`);
  if (count > budget) r.fail(DecodeReason.oversized, `${count} ${what}, at most ${WIRE_CONFIG_NODES_MAX} nodes in a configuration`);
  if (count > r.remaining) r.fail(DecodeReason.truncated, `input ends inside ${count} ${what}`);
  const ids: NodeId[] = [];
  for (let i = 0; i < count; i++) {
    const id = r.uvar(what, WIRE_NODE_ID_MAX);
    const prev = ids.at(-1);
    if (prev !== undefined && id <= prev) r.fail(DecodeReason.invalid, `${what} are not strictly increasing (${prev} then ${id})`);
    ids.push(id);
  }
  return ids;
}

function readSnapshot(r: Reader, termMax: number): Snapshot {
  const index = r.uvar("snapshot index");
  const term = r.uvar("snapshot term");
  if (index < 1 || term < 1) r.fail(DecodeReason.invalid, `snapshot at index ${index}, term ${term}: it must name an entry`);
  if (term > termMax) r.fail(DecodeReason.invalid, `snapshot term ${term} after the message term ${termMax}`);
  const voters = readIds(r, "voters", WIRE_CONFIG_NODES_MAX);
  if (voters.length === 0) r.fail(DecodeReason.invalid, "a snapshot's configuration has no voter");
  const learners = readIds(r, "learners", WIRE_CONFIG_NODES_MAX - voters.length);
  const voterSet = new Set(voters);
  for (const l of learners) if (voterSet.has(l)) r.fail(DecodeReason.invalid, `node ${l} is both a voter and a learner`);
  const data = new Uint8Array(r.bytes(WIRE_SNAPSHOT_DATA_BYTES_MAX, "snapshot data"));
  return { index, term, voters, learners, data };
}

/**
 * Decode one message. Throws only DecodeError: for a wrong version, an
 * unknown type, an id out of range, a message to oneself, too many or too
 * large entries, impossible entry terms, truncated input or trailing bytes.
 * Entry data are copies: they do not alias `bytes` (a transport reuses buffers).
 */
export function decodeMessage(bytes: Uint8Array): Message {
  const r = new Reader(bytes);
  if (bytes.length > WIRE_MESSAGE_BYTES_MAX) r.fail(DecodeReason.oversized, `message of ${bytes.length} bytes exceeds ${WIRE_MESSAGE_BYTES_MAX}`);
  const version = r.u8("version");
  if (version !== WIRE_VERSION) r.fail(DecodeReason.unsupportedVersion, `wire version ${version}, this box speaks ${WIRE_VERSION}`);
  const code = r.u8("type");
  const type = TYPE_BY_CODE.get(code);
  if (type === undefined) return r.fail(DecodeReason.unknownType, `unknown message type ${code}`);
  const from: NodeId = r.uvar("from", WIRE_NODE_ID_MAX);
  const to: NodeId = r.uvar("to", WIRE_NODE_ID_MAX);
  if (from === to) r.fail(DecodeReason.invalid, `message from ${from} to itself`);
  const term = r.uvar("term");
  const m = decodeBody(r, type, from, to, term);
  r.done(`${type} message`);
  return m;
}

function decodeBody(r: Reader, type: MessageType, from: NodeId, to: NodeId, term: number): Message {
  switch (type) {
    case "preVote":
      return { type, from, to, term, lastIndex: r.uvar("lastIndex"), lastTerm: r.uvar("lastTerm") };
    case "vote":
      return { type, from, to, term, lastIndex: r.uvar("lastIndex"), lastTerm: r.uvar("lastTerm"), transfer: r.bool("transfer") };
    case "preVoteResp":
    case "voteResp":
      return { type, from, to, term, reject: r.bool("reject") };
    case "append":
      return decodeAppend(r, from, to, term);
    case "appendResp":
      return { type, from, to, term, reject: r.bool("reject"), index: r.uvar("index"), hintIndex: r.uvar("hintIndex"), hintTerm: r.uvar("hintTerm") };
    case "heartbeat":
      return { type, from, to, term, commit: r.uvar("commit") };
    case "heartbeatResp":
    case "timeoutNow":
      return { type, from, to, term };
    case "snapshot":
      return { type, from, to, term, snapshot: readSnapshot(r, term) };
    default:
      return assertNever(type, "message type");
  }
}

function decodeAppend(r: Reader, from: NodeId, to: NodeId, term: number): Message {
  const prevIndex = r.uvar("prevIndex");
  const prevTerm = r.uvar("prevTerm");
  const commit = r.uvar("commit");
  if (prevTerm > term) r.fail(DecodeReason.invalid, `prevTerm ${prevTerm} after the message term ${term}`);
  const count = r.uvar("entry count");
  if (count > WIRE_ENTRIES_PER_MESSAGE_MAX) r.fail(DecodeReason.oversized, `${count} entries, limit ${WIRE_ENTRIES_PER_MESSAGE_MAX}`);
  // Each entry takes at least 3 bytes: refuse a count the input cannot hold before allocating for it.
  if (count * 3 > r.remaining) r.fail(DecodeReason.truncated, `input ends inside ${count} entries`);
  if (prevIndex + count > Number.MAX_SAFE_INTEGER) r.fail(DecodeReason.outOfRange, "entry indexes beyond the safe integers");
  const entries: Entry[] = [];
  let lastTerm = prevTerm;
  for (let i = 0; i < count; i++) {
    const entryTerm = r.uvar("entry term");
    if (entryTerm < lastTerm || entryTerm > term) {
      r.fail(DecodeReason.invalid, `entry term ${entryTerm} outside [${lastTerm}, ${term}]`);
    }
    lastTerm = entryTerm;
    const kind = r.u8("entry kind");
    if (kind > ENTRY_KIND_MAX) r.fail(DecodeReason.invalid, `entry kind ${kind} is unknown`);
    const data = new Uint8Array(r.bytes(WIRE_ENTRY_DATA_BYTES_MAX, "entry data"));
    if (kind === 1) checkConfChange(r, data, prevIndex + 1 + i);
    entries.push({ term: entryTerm, index: prevIndex + 1 + i, kind: kind as EntryKind, data });
  }
  return { type: "append", from, to, term, prevIndex, prevTerm, commit, entries };
}

/** A conf-change entry's payload must decode: the Raft core never sees a malformed one. */
function checkConfChange(r: Reader, data: Uint8Array, index: number): void {
  try {
    decodeConfChange(data);
  } catch (err) {
    if (!(err instanceof DecodeError)) throw err;
    r.fail(DecodeReason.invalid, `entry ${index}: conf change payload: ${err.message}`);
  }
}

/**
 * Cut an append into consecutive appends that each encode within `bytesMax`
 * (and WIRE_ENTRIES_PER_MESSAGE_MAX entries). Sent in order on one ordered
 * link, they have the same effect on a follower as the original: part k+1's
 * prev is part k's last entry, and each part carries the same commit (a
 * follower commits only up to the last entry it received, Raft §5.3).
 * Any other message, or an append that fits, comes back alone.
 * WireError when one entry alone does not fit.
 */
export function splitAppend(m: Message, bytesMax: number = WIRE_MESSAGE_BYTES_MAX): Message[] {
  assert(isSafeUint(bytesMax) && bytesMax <= WIRE_MESSAGE_BYTES_MAX, "bytesMax within the wire limit");
  if (m.type !== "append" || (m.entries.length <= WIRE_ENTRIES_PER_MESSAGE_MAX && encodedSize(m) <= bytesMax)) return [m];
  const parts: Message[] = [];
  const budget = bytesMax - HEADER_BYTES_MAX - APPEND_FIXED_BYTES_MAX; // conservative: varints at their largest
  let start = 0;
  while (start < m.entries.length) {
    let end = start;
    let size = 0;
    while (end < m.entries.length && end - start < WIRE_ENTRIES_PER_MESSAGE_MAX) {
      const s = entryEncodedSize(m.entries[end] as Entry);
      if (size + s > budget) break;
      size += s;
      end++;
    }
    if (end === start) {
      throw new WireError("PG_ERR_WIRE_OVERSIZED", `entry ${(m.entries[start] as Entry).index} does not fit in a ${bytesMax}-byte message`);
    }
    const prev = start === 0 ? { index: m.prevIndex, term: m.prevTerm } : (m.entries[start - 1] as Entry);
    parts.push({ ...m, prevIndex: prev.index, prevTerm: prev.term, entries: m.entries.slice(start, end) });
    start = end;
  }
  // Invariant: the parts hold exactly the original entries, in order.
  assert(parts.reduce((n, p) => n + (p.type === "append" ? p.entries.length : 0), 0) === m.entries.length, "split keeps every entry");
  return parts;
}
