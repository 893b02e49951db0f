// The rule every box applies to a committed Raft entry: the next valid block
// at the position it names, or a skip that changes nothing.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { encodeBlock } from "../../ledger/block.js";
import { applyEntry, decodeChainPoint, encodeChainPoint, nextBlockTimeMs, SkipCode } from "../../ledger/replicated.js";
import { DecodeError } from "../../ledger/errors.js";
import { Harness, type TestMember, keyFor, reading, verifier } from "./fixtures.js";

const MEMBERS: TestMember[] = [
  { name: "box-a", signer: keyFor("a"), roles: ["box", "admin"] },
  { name: "box-b", signer: keyFor("b"), roles: ["box"] },
];

describe("applyEntry", () => {
  const h = new Harness(MEMBERS);
  const entryOf = (block: ReturnType<Harness["block"]>, term = block.header.raftTerm, index = block.header.raftIndex) => ({ term, index, kind: 0, data: encodeBlock(block) });

  it("applies a valid block at the position it names", () => {
    const b = h.block([h.tx(0, reading(h.nextTimeMs - 10, 1, 0))]);
    const out = applyEntry(h.state, entryOf(b), verifier);
    assert.equal(out.kind, "block");
    assert.equal(out.kind === "block" && out.result.state.height, 1);
  });

  it("ignores no-ops and configuration changes", () => {
    assert.deepEqual(applyEntry(h.state, { term: 1, index: 1, kind: 0, data: new Uint8Array(0) }, verifier), { kind: "none" });
    assert.deepEqual(applyEntry(h.state, { term: 1, index: 1, kind: 1, data: new Uint8Array([1, 2]) }, verifier), { kind: "none" });
  });

  it("skips what is not a block, a block at another Raft position, and an invalid block", () => {
    const junk = applyEntry(h.state, { term: 1, index: 1, kind: 0, data: new Uint8Array([1, 2, 3]) }, verifier);
    assert.equal(junk.kind === "skip" && junk.code, SkipCode.decode);
    const b = h.block([]);
    const moved = applyEntry(h.state, entryOf(b, b.header.raftTerm, b.header.raftIndex + 1), verifier);
    assert.equal(moved.kind === "skip" && moved.code, SkipCode.position, "a stale proposal re-sent at another index");
    const later = applyEntry(h.state, entryOf(b, b.header.raftTerm + 1), verifier);
    assert.equal(later.kind === "skip" && later.code, SkipCode.position);
    const wrongParent = h.block([], { parentHash: new Uint8Array(32).fill(9) });
    const bad = applyEntry(h.state, entryOf(wrongParent), verifier);
    assert.equal(bad.kind === "skip" && bad.code, "PG_ERR_BLOCK_PARENT");
    const back = h.block([], { timeMs: h.state.timeMs });
    const b2 = applyEntry(h.state, entryOf(back), verifier);
    assert.equal(b2.kind === "skip" && b2.code, "PG_ERR_BLOCK_TIME", "time never goes back");
  });
});

describe("block times and chain points", () => {
  it("a block is always after its parent, on the proposer's clock when that is later", () => {
    assert.equal(nextBlockTimeMs(5_000, 1_000), 5_000);
    assert.equal(nextBlockTimeMs(1_000, 5_000), 5_001);
    assert.equal(nextBlockTimeMs(5_000, 5_000), 5_001);
  });

  it("a chain point round-trips and junk is refused", () => {
    const p = { height: 123_456, blockHash: new Uint8Array(32).fill(3) };
    assert.deepEqual(decodeChainPoint(encodeChainPoint(p)), p);
    assert.throws(() => decodeChainPoint(new Uint8Array([2, 1])), DecodeError);
    assert.throws(() => decodeChainPoint(new Uint8Array([...encodeChainPoint(p), 0])), DecodeError);
  });
});
