// The box-to-box messages beside Raft's: canonical round trips, and junk
// refused with a DecodeError (the transport then closes the link).
import assert from "node:assert/strict";
import { it } from "node:test";
import {
  BLOCKS_PER_MESSAGE_MAX,
  CHECKPOINT_PART_BYTES_MAX,
  CHECKPOINT_PART_RECORDS_MAX,
  CHECKPOINT_RECORDS_MAX,
  FORWARD_TXS_MAX,
  HEADERS_PER_MESSAGE_MAX,
  type PeerMessage,
  chunkByBytes,
  decodePeerMessage,
  encodePeerMessage,
  isPeerMessage,
  isPeerPayload,
} from "../../daemon/peer-wire.js";
import { HEADER_BYTES_MAX } from "../../ledger/block.js";
import { DecodeError } from "../../ledger/errors.js";
import { KEY_BYTES_MAX as STATE_KEY_BYTES_MAX, VALUE_BYTES_MAX as STATE_VALUE_BYTES_MAX } from "../../ledger/state-tree.js";
import { WIRE_MESSAGE_BYTES_MAX, encodeMessage } from "../../ledger/raft/wire.js";

const rec = (key: string, n = 20) => ({ key, value: new Uint8Array(n).fill(key.length) });

const samples: PeerMessage[] = [
  { type: "forward", from: 1, to: 2, txs: [new Uint8Array([1, 2, 3]), new Uint8Array(150).fill(7)] },
  { type: "forward", from: 0, to: 16_777_215, txs: [] },
  { type: "blocksRequest", from: 3, to: 0, fromHeight: 1, countMax: BLOCKS_PER_MESSAGE_MAX },
  { type: "blocks", from: 0, to: 3, fromHeight: 42, blocks: [new Uint8Array(300).fill(1), new Uint8Array(5)] },
  { type: "blocks", from: 0, to: 3, fromHeight: 9, blocks: [] },
  { type: "blocksPruned", from: 0, to: 3, fromHeight: 9, prunedTo: 86_400, checkpoints: [86_400, 86_700, 87_000] },
  { type: "blocksPruned", from: 0, to: 3, fromHeight: 7, prunedTo: 7, checkpoints: [7] },
  { type: "headersRequest", from: 3, to: 1, fromHeight: 1, countMax: HEADERS_PER_MESSAGE_MAX },
  { type: "headers", from: 1, to: 3, fromHeight: 100, headers: [new Uint8Array(HEADER_BYTES_MAX).fill(2), new Uint8Array(180).fill(3)] },
  { type: "headers", from: 1, to: 3, fromHeight: 0, headers: [] },
  { type: "checkpointRequest", from: 3, to: 1, height: 5_000, afterKey: "" },
  { type: "checkpointRequest", from: 3, to: 1, height: 5_000, afterKey: "r/12/3" },
  { type: "checkpoint", from: 1, to: 3, height: 5_000, afterKey: "", total: 4, done: false, records: [rec("b/1"), rec("g", 7)] },
  { type: "checkpoint", from: 1, to: 3, height: 5_000, afterKey: "g", total: 4, done: true, records: [rec("m/1"), rec("m/10", 0)] },
  { type: "checkpoint", from: 1, to: 3, height: 5_000, afterKey: "", total: 0, done: true, records: [] },
  { type: "checkpoint", from: 1, to: 3, height: 5_000, afterKey: "\u00e9", total: 1, done: true, records: [rec("\u00e9\u00e9")] },
];

it("round-trips every message, and tells peer frames from Raft frames", () => {
  for (const m of samples) {
    const bytes = encodePeerMessage(m);
    assert.ok(isPeerPayload(bytes));
    assert.deepEqual(decodePeerMessage(bytes), m);
  }
  assert.equal(isPeerPayload(encodeMessage({ type: "heartbeat", from: 1, to: 2, term: 3, commit: 4 })), false);
});

it("refuses truncated, trailing, unknown and out-of-range input", () => {
  const good = encodePeerMessage(samples[0] as PeerMessage);
  for (let n = 0; n < good.length; n++) assert.throws(() => decodePeerMessage(good.subarray(0, n)), DecodeError, `truncated to ${n}`);
  assert.throws(() => decodePeerMessage(new Uint8Array([...good, 0])), DecodeError);
  assert.throws(() => decodePeerMessage(new Uint8Array([0x81, 99, 1, 2])), DecodeError);
  assert.throws(() => decodePeerMessage(new Uint8Array([0x01, 1, 1, 2, 0])), DecodeError);
  assert.throws(() => decodePeerMessage(encodePeerMessage({ type: "blocksRequest", from: 1, to: 2, fromHeight: 0, countMax: 1 })), DecodeError);
  const tooMany = new Uint8Array([0x81, 1, 1, 2, ...varint(FORWARD_TXS_MAX + 1)]);
  assert.throws(() => decodePeerMessage(tooMany), DecodeError);
  const hugeTx = new Uint8Array([0x81, 1, 1, 2, 1, ...varint(100_000)]);
  assert.throws(() => decodePeerMessage(hugeTx), DecodeError);
  for (let seed = 1; seed <= 500; seed++) {
    const junk = Uint8Array.from({ length: seed % 60 }, (_, i) => (seed * 31 + i * 17) & 0xff);
    try {
      decodePeerMessage(junk);
    } catch (err) {
      assert.ok(err instanceof DecodeError, `junk ${seed}: ${String(err)}`);
    }
  }
});

it("says which of its messages are peer messages (not Raft's)", () => {
  for (const m of samples) assert.ok(isPeerMessage(m));
  for (const type of ["heartbeat", "append", "snapshot", "toString", "constructor"]) assert.equal(isPeerMessage({ type }), false, type);
});

it("refuses pruned answers, header and checkpoint messages that are junk or over their bounds", () => {
  const refused = (m: PeerMessage, why: RegExp) => assert.throws(() => decodePeerMessage(encodePeerMessage(m)), (e: unknown) => e instanceof DecodeError && why.test(e.message), String(why));
  // A pruned answer must be about a height it pruned.
  refused({ type: "blocksPruned", from: 0, to: 3, fromHeight: 10, prunedTo: 9, checkpoints: [9] }, /pruned to 9/);
  refused({ type: "blocksPruned", from: 0, to: 3, fromHeight: 0, prunedTo: 9, checkpoints: [9] }, /height 0/);
  refused({ type: "blocksPruned", from: 0, to: 3, fromHeight: 5, prunedTo: 9, checkpoints: [] }, /first must be the pruned height/);
  refused({ type: "blocksPruned", from: 0, to: 3, fromHeight: 5, prunedTo: 9, checkpoints: [8, 9] }, /first must be the pruned height/);
  refused({ type: "blocksPruned", from: 0, to: 3, fromHeight: 5, prunedTo: 9, checkpoints: [9, 20, 20] }, /then ascending/);
  refused({ type: "headersRequest", from: 3, to: 1, fromHeight: 0, countMax: 1 }, /from height 1/);
  refused({ type: "headersRequest", from: 3, to: 1, fromHeight: 5, countMax: 0 }, /from height 1/);
  refused({ type: "headersRequest", from: 3, to: 1, fromHeight: 5, countMax: HEADERS_PER_MESSAGE_MAX + 1 }, /exceeds/);
  refused({ type: "headers", from: 1, to: 3, fromHeight: 0, headers: [new Uint8Array(100)] }, /start at height 1/);
  refused({ type: "checkpointRequest", from: 3, to: 1, height: 0, afterKey: "" }, /after genesis/);
  const part = (p: Partial<Extract<PeerMessage, { type: "checkpoint" }>>): PeerMessage => ({ type: "checkpoint", from: 1, to: 3, height: 9, afterKey: "", total: 10, done: false, records: [rec("a")], ...p });
  // Keys strictly ascending (byte order, as SQLite sorts them), after afterKey: no record twice, none skipped back.
  refused(part({ records: [rec("b"), rec("a")] }), /not after/);
  refused(part({ records: [rec("a"), rec("a")] }), /not after/);
  refused(part({ afterKey: "m/2", records: [rec("m/10")] }), /not after/);
  refused(part({ afterKey: "a", records: [rec("a")] }), /not after/);
  refused(part({ afterKey: "\u00e9", records: [rec("z")] }), /not after/); // "z" < "é" in UTF-8 bytes
  refused(part({ total: 1, records: [rec("a"), rec("b")] }), /part of a checkpoint of 1/);
  refused(part({ total: 0, done: true, records: [rec("a")] }), /part of a checkpoint of 0/);
  refused(part({ total: 0, done: false, records: [] }), /last part/);
  refused(part({ height: 0 }), /after genesis/);
  refused(part({ total: CHECKPOINT_RECORDS_MAX + 1 }), /exceeds/);
  // Bytes per part: one record may be as large as a record can be, two may not pass the part's bound.
  const big = STATE_VALUE_BYTES_MAX;
  const many = Array.from({ length: Math.ceil(CHECKPOINT_PART_BYTES_MAX / big) + 1 }, (_, i) => rec(`k/${String(i).padStart(4, "0")}`, big));
  refused(part({ total: many.length, records: many }), /over 1048576 bytes/);
  assert.equal(decodePeerMessage(encodePeerMessage(part({ records: [rec("a", big)] }))).type, "checkpoint");
  // Records per part.
  const tiny = Array.from({ length: CHECKPOINT_PART_RECORDS_MAX + 1 }, (_, i) => ({ key: `k/${String(i).padStart(6, "0")}`, value: new Uint8Array(0) }));
  refused(part({ total: tiny.length, records: tiny }), /record count .* exceeds/);
  // A key or value over the state tree's bounds, and a key that is not UTF-8.
  const good = encodePeerMessage(part({ records: [rec("ab")] }));
  const keyAt = good.indexOf(0x61); // the key's first byte: "a"
  const badUtf8 = good.slice();
  badUtf8[keyAt] = 0xff;
  assert.throws(() => decodePeerMessage(badUtf8), (e: unknown) => e instanceof DecodeError && /UTF-8/.test(e.message));
  const longKey = new Uint8Array([...good.subarray(0, keyAt - 1), ...varint(STATE_KEY_BYTES_MAX + 1), ...new Uint8Array(STATE_KEY_BYTES_MAX + 1).fill(0x61), ...varint(0)]);
  assert.throws(() => decodePeerMessage(longKey), DecodeError);
  // Every truncation of every new message, and trailing bytes.
  for (const m of samples.slice(5)) {
    const bytes = encodePeerMessage(m);
    for (let n = 0; n < bytes.length; n++) assert.throws(() => decodePeerMessage(bytes.subarray(0, n)), DecodeError, `${m.type} truncated to ${n}`);
    assert.throws(() => decodePeerMessage(new Uint8Array([...bytes, 0])), DecodeError, `${m.type} with a trailing byte`);
  }
});

it("a full part (records and bytes at their bounds) and a full headers answer fit one wire message", () => {
  const fullBytes = Array.from({ length: Math.floor(CHECKPOINT_PART_BYTES_MAX / (STATE_VALUE_BYTES_MAX + 8)) }, (_, i) => rec(`k/${String(i).padStart(5, "0")}`, STATE_VALUE_BYTES_MAX));
  const fullCount = Array.from({ length: CHECKPOINT_PART_RECORDS_MAX }, (_, i) => rec(`k/${String(i).padStart(5, "0")}`, Math.floor(CHECKPOINT_PART_BYTES_MAX / CHECKPOINT_PART_RECORDS_MAX) - 8));
  for (const records of [fullBytes, fullCount, [rec("k".repeat(STATE_KEY_BYTES_MAX), STATE_VALUE_BYTES_MAX)]]) {
    const m: PeerMessage = { type: "checkpoint", from: 16_777_215, to: 16_777_214, height: 2 ** 48 - 1, afterKey: "j".repeat(STATE_KEY_BYTES_MAX), total: CHECKPOINT_RECORDS_MAX, done: false, records };
    const bytes = encodePeerMessage(m);
    assert.ok(bytes.length <= CHECKPOINT_PART_BYTES_MAX + 128 * 1024 && bytes.length < WIRE_MESSAGE_BYTES_MAX, `${bytes.length} bytes`);
    assert.deepEqual(decodePeerMessage(bytes), m);
  }
  const headers: PeerMessage = { type: "headers", from: 1, to: 2, fromHeight: 1, headers: Array.from({ length: HEADERS_PER_MESSAGE_MAX }, () => new Uint8Array(HEADER_BYTES_MAX)) };
  assert.ok(encodePeerMessage(headers).length < 1024 * 1024);
});

it("cuts long lists into messages within the limits", () => {
  const items = Array.from({ length: 100 }, (_, i) => new Uint8Array(10 + i));
  const chunks = chunkByBytes(items, 30, 500);
  assert.deepEqual(chunks.flat(), items);
  for (const c of chunks) assert.ok(c.length <= 30 && (c.length === 1 || c.reduce((n, b) => n + b.length + 8, 0) <= 500));
});

function varint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}
