// Signature checks in a worker thread, remembered for the ledger's apply
// (daemon/signature-checks.ts): verdicts equal node:crypto's on the spot,
// only good ones are remembered, a remembered verdict answers only the exact
// triple it was made for, and a dead worker costs speed, not correctness.
import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";
import { NodeSigner } from "../../ledger/keys.js";
import { SignatureChecks } from "../../daemon/signature-checks.js";

const signer = NodeSigner.generate();
const other = NodeSigner.generate();

function signed(i: number): { message: Uint8Array; signature: Uint8Array } {
  const message = new TextEncoder().encode(`reading ${i} ${"x".repeat(i % 97)}`);
  return { message, signature: signer.sign(message) };
}

describe("SignatureChecks", () => {
  const open: SignatureChecks[] = [];
  const make = (...args: ConstructorParameters<typeof SignatureChecks>) => {
    const c = new SignatureChecks(...args);
    open.push(c);
    return c;
  };
  afterEach(async () => {
    await Promise.all(open.splice(0).map((c) => c.close()));
  });

  it("checks a turn's worth in one batch, in order, good and bad alike", async () => {
    const c = make();
    const items = Array.from({ length: 300 }, (_, i) => signed(i));
    const bad = new Set([7, 150, 299]);
    const verdicts = await Promise.all(
      items.map((it, i) => {
        const sig = new Uint8Array(it.signature);
        if (bad.has(i)) sig[0] = (sig[0] as number) ^ 0x40;
        return c.checkAhead(signer.publicKey, it.message, sig);
      }),
    );
    verdicts.forEach((v, i) => assert.equal(v, !bad.has(i), `item ${i}`));
    assert.equal(c.stats.batches, 1);
    assert.equal(c.stats.ahead, 300);
    assert.equal(c.rememberedCount, 297, "only good verdicts are remembered");
  });

  it("the ledger's check consumes a remembered verdict once, then checks on the spot", async () => {
    const c = make();
    const { message, signature } = signed(1);
    assert.equal(await c.checkAhead(signer.publicKey, message, signature), true);
    assert.equal(c.verify(signer.publicKey, message, signature), true);
    assert.equal(c.stats.remembered, 1);
    assert.equal(c.stats.onTheSpot, 0);
    assert.equal(c.verify(signer.publicKey, message, signature), true);
    assert.equal(c.stats.onTheSpot, 1);
  });

  it("a remembered verdict answers only its exact key, message and signature", async () => {
    const c = make();
    const { message, signature } = signed(2);
    assert.equal(await c.checkAhead(signer.publicKey, message, signature), true);
    const otherMessage = new Uint8Array(message);
    otherMessage[0] = (otherMessage[0] as number) ^ 1;
    assert.equal(c.verify(signer.publicKey, otherMessage, signature), false);
    assert.equal(c.verify(other.publicKey, message, signature), false);
    assert.equal(c.stats.remembered, 0);
    assert.equal(c.known(signer.publicKey, message, signature), true, "still remembered for its own triple");
  });

  it("a remembered verdict does not answer the same bytes split differently between key, signature and message", async () => {
    const c = make();
    const { message, signature } = signed(5);
    assert.equal(await c.checkAhead(signer.publicKey, message, signature), true);
    // key[0..31] | key[31] + sig[0..63] | sig[63] + message: the same 32 + 64 + n bytes, hashed alike if lengths were not checked.
    const k = signer.publicKey.subarray(0, 31);
    const s = new Uint8Array([...signer.publicKey.subarray(31), ...signature.subarray(0, 63)]);
    const m = new Uint8Array([...signature.subarray(63), ...message]);
    assert.equal(c.verify(k, m, s), false);
    assert.equal(c.stats.remembered, 0);
  });

  it("copies its arguments before it returns (a caller reuses its buffers)", async () => {
    const c = make();
    const { message, signature } = signed(3);
    const scratch = new Uint8Array(message);
    const pending = c.checkAhead(signer.publicKey, scratch, signature);
    scratch.fill(0);
    assert.equal(await pending, true);
    assert.equal(c.verify(signer.publicKey, message, signature), true);
    assert.equal(c.stats.remembered, 1);
  });

  it("refuses malformed keys and signatures without asking the worker", async () => {
    const c = make();
    const { message, signature } = signed(4);
    assert.equal(await c.checkAhead(signer.publicKey.subarray(0, 31), message, signature), false);
    assert.equal(await c.checkAhead(signer.publicKey, message, signature.subarray(0, 63)), false);
    assert.equal(await c.checkAhead(new Uint8Array(32).fill(0xff), message, signature), false); // not a curve point
    assert.equal(c.rememberedCount, 0);
  });

  it("remembers at most rememberMax verdicts, forgetting the oldest", async () => {
    const c = make(10);
    const items = Array.from({ length: 25 }, (_, i) => signed(i));
    await Promise.all(items.map((it) => c.checkAhead(signer.publicKey, it.message, it.signature)));
    assert.equal(c.rememberedCount, 10);
    assert.equal(c.known(signer.publicKey, (items[0] as { message: Uint8Array }).message, (items[0] as { signature: Uint8Array }).signature), false);
    assert.equal(c.known(signer.publicKey, (items[24] as { message: Uint8Array }).message, (items[24] as { signature: Uint8Array }).signature), true);
  });

  it("answers every check, rightly, when its worker dies mid-batch", async () => {
    const c = make();
    const items = Array.from({ length: 200 }, (_, i) => signed(i));
    const pending = items.map((it, i) => c.checkAhead(i === 5 ? other.publicKey : signer.publicKey, it.message, it.signature));
    await new Promise((r) => setImmediate(r)); // the batch is posted
    // The worker is private: reach it the way a crash would, from outside.
    await (c as unknown as { worker: { terminate(): Promise<number> } }).worker.terminate();
    const verdicts = await Promise.all(pending);
    verdicts.forEach((v, i) => assert.equal(v, i !== 5, `item ${i}`));
    const later = signed(1000);
    assert.equal(await c.checkAhead(signer.publicKey, later.message, later.signature), true, "later checks are made on the spot");
    assert.ok(c.stats.onTheSpot >= 1);
  });

  it("has room for checks ahead only while their verdicts would still be remembered at the apply", async () => {
    const c = make(20);
    assert.equal(c.hasRoomFor(10), true);
    assert.equal(c.hasRoomFor(11), false, "half of rememberMax");
    const items = Array.from({ length: 6 }, (_, i) => signed(i));
    const pending = items.map((it) => c.checkAhead(signer.publicKey, it.message, it.signature));
    assert.equal(c.pendingCount, 6);
    assert.equal(c.hasRoomFor(4), true);
    assert.equal(c.hasRoomFor(5), false, "pending checks count");
    await Promise.all(pending);
    assert.equal(c.pendingCount, 0);
    assert.equal(c.hasRoomFor(5), false, "remembered verdicts count");
    assert.equal(c.hasRoomFor(4), true);
  });

  it("without a worker, checks on the spot and remembers the same way", async () => {
    const c = make(100, false);
    const { message, signature } = signed(9);
    assert.equal(await c.checkAhead(signer.publicKey, message, signature), true);
    assert.equal(c.verify(signer.publicKey, message, signature), true);
    assert.equal(c.stats.remembered, 1);
  });
});
