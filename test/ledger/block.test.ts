// Blocks: headers, encoding, signatures. Whether a block may be applied is
// state.test.ts's question; here it is only structure.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  BLOCK_BYTES_MAX,
  type Block,
  blockHash,
  blockSigningMessage,
  buildBlock,
  decodeBlock,
  decodeHeader,
  encodeBlock,
  encodeHeader,
} from "../../ledger/block.js";
import { Writer } from "../../ledger/codec.js";
import { DecodeError, DecodeReason } from "../../ledger/errors.js";
import { hash, utf8 } from "../../ledger/hash.js";
import { merkleRoot } from "../../ledger/merkle.js";
import { EMPTY_STATE_ROOT } from "../../ledger/state-tree.js";
import { type SignedTx, TX_BYTES_MAX_ANY, signTx } from "../../ledger/tx.js";
import { T0, keyFor, reading, verifier } from "./fixtures.js";

const CHAIN = hash(utf8("block test chain"));
const box = keyFor("box");

function txs(n: number): SignedTx[] {
  return Array.from({ length: n }, (_, i) => signTx({ author: 0, seq: i + 1, body: reading(T0 + i * 1000, 1_000 + i, 0) }, box, CHAIN));
}

function block(n: number, patch: { height?: number; timeMs?: number } = {}): Block {
  return buildBlock(
    {
      height: patch.height ?? 7,
      parentHash: hash(utf8("parent")),
      timeMs: patch.timeMs ?? T0 + 10_000,
      stateRoot: EMPTY_STATE_ROOT,
      proposer: 0,
      raftTerm: 3,
      raftIndex: 42,
      txs: txs(n),
    },
    box,
    CHAIN,
  );
}

function refused(input: Uint8Array, reason: DecodeReason): DecodeError {
  let caught: unknown;
  try {
    decodeBlock(input);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof DecodeError, `expected DecodeError, got ${String(caught)}`);
  assert.equal(caught.reason, reason, caught.message);
  return caught;
}

describe("block", () => {
  test("buildBlock fills txRoot and txCount from the transactions and signs the header", () => {
    const b = block(3);
    assert.equal(b.header.txCount, 3);
    assert.deepEqual(b.header.txRoot, merkleRoot(b.txs.map((t) => t.id)));
    assert.deepEqual(b.hash, blockHash(b.header));
    assert.ok(verifier.verify(box.publicKey, blockSigningMessage(CHAIN, b.header), b.signature));
    assert.ok(!verifier.verify(box.publicKey, blockSigningMessage(hash(utf8("other")), b.header), b.signature), "chain-bound");
  });

  test("blocks with 0, 1 and 5 transactions encode and decode back deep-equal", () => {
    for (const n of [0, 1, 5]) {
      const b = block(n);
      const back = decodeBlock(encodeBlock(b));
      assert.deepEqual(back.header, b.header);
      assert.deepEqual(back.signature, b.signature);
      assert.deepEqual(back.hash, b.hash);
      assert.deepEqual(back.txs, b.txs);
      assert.deepEqual(encodeBlock(back), encodeBlock(b), "re-encoding is byte-identical");
    }
  });

  test("a header decodes alone, and its hash does not cover the signature", () => {
    const b = block(2);
    const h = decodeHeader(encodeHeader(b.header, b.signature));
    assert.deepEqual(h.header, b.header);
    assert.deepEqual(h.hash, b.hash);
    assert.deepEqual(blockHash(b.header), blockHash({ ...b.header }), "hash depends on fields only");
  });

  test("the block hash changes with every header field", () => {
    const b = block(1);
    const h = b.header;
    const variants = [
      { ...h, height: h.height + 1 },
      { ...h, parentHash: hash(utf8("x")) },
      { ...h, timeMs: h.timeMs + 1 },
      { ...h, txRoot: hash(utf8("y")) },
      { ...h, stateRoot: hash(utf8("z")) },
      { ...h, proposer: 1 },
      { ...h, raftTerm: h.raftTerm + 1 },
      { ...h, raftIndex: h.raftIndex + 1 },
      { ...h, txCount: 2 },
    ];
    const hashes = new Set([Buffer.from(b.hash).toString("hex"), ...variants.map((v) => Buffer.from(blockHash(v)).toString("hex"))]);
    assert.equal(hashes.size, variants.length + 1);
  });

  test("every proper prefix of an encoded block is refused as truncated", () => {
    const bytes = encodeBlock(block(2));
    for (let n = 0; n < bytes.length; n++) refused(bytes.subarray(0, n), DecodeReason.truncated);
  });

  test("a trailing byte, or one transaction more than txCount, is refused as trailing", () => {
    const b = block(2);
    const bytes = encodeBlock(b);
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    refused(longer, DecodeReason.trailing);
    const extra = new Writer().raw(bytes).bytes(txs(3)[2]?.bytes as Uint8Array, 200).finish();
    refused(extra, DecodeReason.trailing);
  });

  test("an unknown block version is refused", () => {
    const bytes = encodeBlock(block(0));
    bytes[0] = 2;
    refused(bytes, DecodeReason.unsupportedVersion);
  });

  test("a bad transaction inside a block is reported with its offset in the block", () => {
    const b = block(2);
    const bytes = encodeBlock(b);
    const headerLength = encodeHeader(b.header, b.signature).length;
    const secondTxStart = headerLength + 1 + (b.txs[0] as SignedTx).bytes.length; // 1: the length prefix
    bytes[secondTxStart + 1] = 9; // the second transaction's version byte
    const err = refused(bytes, DecodeReason.unsupportedVersion);
    assert.match(err.message, /transaction 1/);
    // The version byte sits after the length prefix; the error is found once it has been read.
    assert.equal(err.offset, secondTxStart + 1 + 1, "offset of the byte after the bad version, in block coordinates");
  });

  test("a transaction length above the largest transaction is oversized", () => {
    const b = block(0);
    const header = encodeHeader({ ...b.header, txCount: 1 }, b.signature);
    const bytes = new Writer().raw(header).uvar(TX_BYTES_MAX_ANY + 1).raw(new Uint8Array(TX_BYTES_MAX_ANY + 1)).finish();
    refused(bytes, DecodeReason.oversized);
  });

  test("a block above 16 MiB is refused before it is read", () => {
    refused(new Uint8Array(BLOCK_BYTES_MAX + 1), DecodeReason.oversized);
  });

  test("encodeBlock refuses a block whose txCount does not match its body", () => {
    const b = block(2);
    assert.throws(() => encodeBlock({ ...b, txs: b.txs.slice(1) }), /txCount/);
  });
});
