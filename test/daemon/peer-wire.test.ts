// The box-to-box messages beside Raft's: canonical round trips, and junk
// refused with a DecodeError (the transport then closes the link).
import assert from "node:assert/strict";
import { it } from "node:test";
import { BLOCKS_PER_MESSAGE_MAX, FORWARD_TXS_MAX, type PeerMessage, chunkByBytes, decodePeerMessage, encodePeerMessage, isPeerPayload } from "../../daemon/peer-wire.js";
import { DecodeError } from "../../ledger/errors.js";
import { encodeMessage } from "../../ledger/raft/wire.js";

const samples: PeerMessage[] = [
  { type: "forward", from: 1, to: 2, txs: [new Uint8Array([1, 2, 3]), new Uint8Array(150).fill(7)] },
  { type: "forward", from: 0, to: 16_777_215, txs: [] },
  { type: "blocksRequest", from: 3, to: 0, fromHeight: 1, countMax: BLOCKS_PER_MESSAGE_MAX },
  { type: "blocks", from: 0, to: 3, fromHeight: 42, blocks: [new Uint8Array(300).fill(1), new Uint8Array(5)] },
  { type: "blocks", from: 0, to: 3, fromHeight: 9, blocks: [] },
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
