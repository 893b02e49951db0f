// Transactions: every body type round trips and verifies; every malformed
// encoding is refused with the DecodeError reason that names the problem.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Writer } from "../../ledger/codec.js";
import { DecodeError, DecodeReason } from "../../ledger/errors.js";
import { hash, utf8 } from "../../ledger/hash.js";
import {
  ISLAND_REASONS,
  type IslandBody,
  SWITCH_REASONS,
  type SwitchBody,
  type OrderBody,
  type ReadingBody,
  type SignedTx,
  type Tx,
  type TxBody,
  OrderFlag,
  Quality,
  Role,
  SIGNATURE_BYTES,
  TX_BYTES_MAX,
  TX_BYTES_MAX_ANY,
  TX_VERSION,
  TxType,
  decodeTx,
  encodeUnsignedTx,
  signTx,
  signatureOf,
  txId,
  txSignPrefix,
  txSigningMessage,
} from "../../ledger/tx.js";
import { T0, keyFor, reading, verifier } from "./fixtures.js";

const CHAIN = hash(utf8("a chain"));
const OTHER_CHAIN = hash(utf8("another chain"));
const alice = keyFor("alice");
const bob = keyFor("bob");

const BODIES: Record<string, TxBody> = {
  "reading, 3 phases": reading(T0, 48_211_337, 1_290_455, { powerW: -3_250, meterId: 2 }),
  "reading, 1 phase": reading(T0 + 1_000, 1_000_000, 0, { voltagesDeciV: [2304], quality: Quality.estimated | Quality.stale }),
  "reading, the meter did not answer": reading(T0 + 2_000, 1_000_000, 0, { voltagesDeciV: [], quality: Quality.commsError }),
  "order, buy, anyone": {
    type: "order",
    side: "buy",
    energyWh: 2_500,
    priceMicroPerKWh: 310_000,
    intervalStartMs: T0 + 900_000,
    expiresAtMs: T0 + 1_800_000,
    flags: 0,
    counterparty: null,
  },
  "order, sell, to member 0, local renewable": {
    type: "order",
    side: "sell",
    energyWh: 800,
    priceMicroPerKWh: 120_000,
    intervalStartMs: T0 + 1_800_000,
    expiresAtMs: T0 + 1_800_000,
    flags: OrderFlag.localRenewableOnly,
    counterparty: 0,
  },
  "order, sell, to member 70000": {
    type: "order",
    side: "sell",
    energyWh: 1,
    priceMicroPerKWh: 0,
    intervalStartMs: 0,
    expiresAtMs: 1,
    flags: 0,
    counterparty: 70_000,
  },
  cancel: { type: "cancel", orderId: hash(utf8("some order")) },
  "member enrol": { type: "member", action: "enrol", publicKey: bob.publicKey, roles: Role.user | Role.auditor, name: "Bob's flat ⚡" },
  "member remove": { type: "member", action: "remove", subject: 3 },
  "member setRoles": { type: "member", action: "setRoles", subject: 300, roles: Role.box | Role.controller },
  island: { type: "island", islanded: true, timeMs: 1_700_000_000_123, reason: "UV2", measured: -1 },
  "island reconnected": { type: "island", islanded: false, timeMs: 1, reason: "reconnected", measured: 0 },
  vote: { type: "vote", proposal: hash(utf8("a proposal")), approve: false },
  "proposal criticalLoads": { type: "proposal", action: { kind: "criticalLoads", premises: [7, 2 ** 24 - 1, 0] }, votingEndsHeight: 100, effectiveHeight: 101 },
  "proposal marketParams": {
    type: "proposal",
    action: { kind: "marketParams", changes: [{ param: "clearingRule", value: 1 }, { param: "utilityImportMicroPerKWh", value: 350_000 }] },
    votingEndsHeight: 2 ** 40,
    effectiveHeight: 2 ** 40 + 1,
  },
  "proposal enrol": { type: "proposal", action: { kind: "enrol", publicKey: bob.publicKey, roles: Role.user, name: "Bob" }, votingEndsHeight: 5, effectiveHeight: 9 },
  "proposal remove": { type: "proposal", action: { kind: "remove", subject: 3 }, votingEndsHeight: 5, effectiveHeight: 6 },
  "proposal setRoles": { type: "proposal", action: { kind: "setRoles", subject: 3, roles: Role.controller }, votingEndsHeight: 5, effectiveHeight: 6 },
  switch: { type: "switch", premise: 2 ** 24 - 1, breaker: 255, close: false, readback: "unknown", timeMs: 1_700_000_000_000, reason: "deficit", supplyW: 12_000, demandW: 2 ** 31 - 1 },
};

function sign(body: TxBody, seq = 7, author = 1): SignedTx {
  return signTx({ author, seq, body }, alice, CHAIN);
}

function verifies(t: SignedTx, chain = CHAIN, key = alice.publicKey): boolean {
  return verifier.verify(key, txSigningMessage(txSignPrefix(chain), t.bytes, true), signatureOf(t.bytes));
}

function refused(input: Uint8Array, reason: DecodeReason): void {
  assert.throws(
    () => decodeTx(input),
    (err: unknown) => {
      assert.ok(err instanceof DecodeError, `not a DecodeError: ${String(err)}`);
      assert.equal(err.reason, reason, err.message);
      return true;
    },
  );
}

/** Hand-made envelope: the signature is 64 zero bytes (decoding does not check it). */
function envelope(type: number, body: (w: Writer) => void, opts: { version?: number; author?: number; seq?: number } = {}): Uint8Array {
  const w = new Writer();
  w.u8(opts.version ?? TX_VERSION).u8(type).uvar(opts.author ?? 1).uvar(opts.seq ?? 1);
  body(w);
  w.raw(new Uint8Array(SIGNATURE_BYTES));
  return w.finish();
}

function readingBody(w: Writer, o: { phases?: number; quality?: number } = {}): void {
  const phases = o.phases ?? 3;
  w.uvar(0).uvar(T0).uvar(1_000).uvar(2_000).svar(-5);
  w.u8(phases);
  for (let i = 0; i < phases; i++) w.uvar(2300);
  w.uvar(50_000).u8(o.quality ?? 0);
}

function orderBody(w: Writer, o: { side?: number; flags?: number } = {}): void {
  w.u8(o.side ?? 0).uvar(10).uvar(100).uvar(T0).uvar(T0 + 1).u8(o.flags ?? 0).uvar(0);
}

describe("tx: every body type", () => {
  for (const [name, body] of Object.entries(BODIES)) {
    test(`${name}: encodes, decodes back deep-equal, and its signature verifies`, () => {
      const t = sign(body);
      const back = decodeTx(t.bytes);
      assert.deepEqual(back.tx, t.tx);
      assert.deepEqual(back.bytes, t.bytes);
      assert.deepEqual(back.id, t.id);
      assert.ok(t.bytes.length <= TX_BYTES_MAX[body.type], `${t.bytes.length} bytes`);
      assert.ok(verifies(t), "verifies with the author's key on its chain");
      assert.ok(!verifies(t, OTHER_CHAIN), "worthless on another chain");
      assert.ok(!verifies(t, CHAIN, bob.publicKey), "does not verify with another key");
    });
  }

  test("encoding is deterministic: same tx, same bytes, same id", () => {
    for (const body of Object.values(BODIES)) {
      const a = sign(body);
      const b = sign(body);
      assert.deepEqual(a.bytes, b.bytes);
      assert.deepEqual(a.id, b.id);
      assert.deepEqual(encodeUnsignedTx(a.tx), encodeUnsignedTx(b.tx));
      assert.deepEqual(a.bytes.subarray(0, a.bytes.length - SIGNATURE_BYTES), encodeUnsignedTx(a.tx));
    }
  });

  test("a typical signed 3-phase reading is at most 120 bytes", () => {
    const t = signTx(
      {
        author: 12,
        seq: 4_000_000, // a box signing one a second for six weeks
        body: reading(1_731_000_000_123, 87_654_321, 12_345_678, { powerW: -4_321, voltagesDeciV: [2301, 2299, 2310], frequencyMilliHz: 49_987 }),
      },
      alice,
      CHAIN,
    );
    console.log(`typical signed 3-phase reading: ${t.bytes.length} bytes`);
    assert.ok(t.bytes.length <= 120, `${t.bytes.length} bytes`);
  });

  test("the id is the tagged hash of the whole encoding, signature included", () => {
    const t = sign(BODIES.cancel as TxBody);
    assert.deepEqual(t.id, txId(t.bytes));
    assert.notDeepEqual(t.id, hash(t.bytes), "domain-separated from a plain hash");
  });

  test("the id changes when any single byte changes", () => {
    const t = sign(BODIES["reading, 3 phases"] as TxBody);
    const seen = new Set<string>([Buffer.from(t.id).toString("hex")]);
    for (let i = 0; i < t.bytes.length; i++) {
      const m = t.bytes.slice();
      m[i] = (m[i] as number) ^ 0x01;
      seen.add(Buffer.from(txId(m)).toString("hex"));
    }
    assert.equal(seen.size, t.bytes.length + 1);
  });

  test("decoding keeps a view of the raw bytes (no copy) but copies every decoded field", () => {
    const t = sign(BODIES.cancel as TxBody);
    const input = t.bytes.slice();
    const d = decodeTx(input);
    input.fill(0);
    assert.deepEqual(d.tx, t.tx, "fields (order id, keys) are copies");
    assert.deepEqual(d.id, t.id, "the id was computed at decoding");
    assert.equal(d.bytes.buffer, input.buffer, "bytes are a view: callers must not change their input");
  });

  test("the hand-made envelope helper agrees with the real encoder", () => {
    const body = BODIES["reading, 3 phases"] as TxBody;
    const tx: Tx = { author: 1, seq: 1, body };
    const mine = envelope(TxType.reading, (w) => {
      const b = body as ReturnType<typeof reading>;
      w.uvar(b.meterId).uvar(b.timeMs).uvar(b.importWh).uvar(b.exportWh).svar(b.powerW).u8(3);
      for (const v of b.voltagesDeciV) w.uvar(v);
      w.uvar(b.frequencyMilliHz).u8(b.quality);
    });
    assert.deepEqual(mine.subarray(0, mine.length - SIGNATURE_BYTES), encodeUnsignedTx(tx));
    assert.deepEqual(decodeTx(mine).tx, tx);
  });
});

describe("tx: decoding refuses", () => {
  test("a version other than 1 (unsupported_version)", () => {
    for (const version of [0, 2, 255]) refused(envelope(TxType.reading, readingBody, { version }), DecodeReason.unsupportedVersion);
  });

  test("unknown types 0, 9, 99 (unknown_type)", () => {
    for (const type of [0, 9, 99]) {
      refused(envelope(type, readingBody), DecodeReason.unknownType);
    }
  });

  test("an encoding larger than its type allows (oversized)", () => {
    const t = sign(BODIES["reading, 3 phases"] as TxBody);
    for (const [type, max] of Object.entries(TX_BYTES_MAX)) {
      const big = new Uint8Array(max + 1);
      big.set(t.bytes.subarray(0, 2));
      big[1] = TxType[type as keyof typeof TX_BYTES_MAX];
      refused(big, DecodeReason.oversized);
    }
    refused(new Uint8Array(TX_BYTES_MAX_ANY + 1), DecodeReason.oversized);
  });

  test("every proper prefix of every valid encoding (truncated)", () => {
    for (const body of Object.values(BODIES)) {
      const t = sign(body);
      for (let n = 0; n < t.bytes.length; n++) refused(t.bytes.subarray(0, n), DecodeReason.truncated);
    }
  });

  test("one extra trailing byte (trailing)", () => {
    for (const body of Object.values(BODIES)) {
      const t = sign(body);
      const longer = new Uint8Array(t.bytes.length + 1);
      longer.set(t.bytes);
      refused(longer, DecodeReason.trailing);
    }
  });

  test("a reading with 4 phases, or a good one with none (out_of_range); 1 and 3 are fine, and none on a flagged reading", () => {
    refused(envelope(TxType.reading, (w) => readingBody(w, { phases: 0 })), DecodeReason.outOfRange);
    assert.deepEqual((decodeTx(envelope(TxType.reading, (w) => readingBody(w, { phases: 0, quality: Quality.outOfRange }))).tx.body as ReadingBody).voltagesDeciV, []);
    refused(envelope(TxType.reading, (w) => readingBody(w, { phases: 4, quality: Quality.commsError })), DecodeReason.outOfRange);
    assert.deepEqual((decodeTx(envelope(TxType.reading, (w) => readingBody(w, { phases: 0, quality: Quality.commsError | Quality.stale }))).tx.body as ReadingBody).voltagesDeciV, []);
    assert.equal((decodeTx(envelope(TxType.reading, (w) => readingBody(w, { phases: 1 }))).tx.body as ReadingBody).voltagesDeciV.length, 1);
    assert.equal((decodeTx(envelope(TxType.reading, (w) => readingBody(w, { phases: 3 }))).tx.body as ReadingBody).voltagesDeciV.length, 3);
  });

  test("unknown quality bits on a reading", () => {
    assert.equal((decodeTx(envelope(TxType.reading, (w) => readingBody(w, { quality: 0x3f }))).tx.body as ReadingBody).quality, 0x3f);
    for (const quality of [0x40, 0x80, 0xff]) refused(envelope(TxType.reading, (w) => readingBody(w, { quality })), DecodeReason.outOfRange);
  });

  test("unknown order flag bits and an order side that is neither buy nor sell", () => {
    for (const flags of [0x02, 0x80]) refused(envelope(TxType.order, (w) => orderBody(w, { flags })), DecodeReason.outOfRange);
    refused(envelope(TxType.order, (w) => orderBody(w, { side: 2 })), DecodeReason.outOfRange);
    assert.equal((decodeTx(envelope(TxType.order, (w) => orderBody(w, { side: 1, flags: 1 }))).tx.body as OrderBody).side, "sell");
  });

  test("a proposal that takes effect before its voting ends, names a premise twice, or changes a parameter twice or none", () => {
    const proposal = (action: (w: Writer) => void, ends = 5, effective = 6) => envelope(TxType.proposal, (w) => (action(w), w.uvar(ends).uvar(effective)));
    assert.equal(decodeTx(proposal((w) => w.u8(3).uvar(2))).tx.body.type, "proposal");
    refused(proposal((w) => w.u8(3).uvar(2), 6, 6), DecodeReason.outOfRange);
    refused(proposal((w) => w.u8(0).uvar(2).uvar(4).uvar(4)), DecodeReason.outOfRange);
    refused(proposal((w) => w.u8(1).uvar(2).u8(0).uvar(1).u8(0).uvar(2)), DecodeReason.outOfRange);
    refused(proposal((w) => w.u8(1).uvar(0)), DecodeReason.outOfRange);
    refused(proposal((w) => w.u8(1).uvar(1).u8(99).uvar(1)), DecodeReason.outOfRange);
    refused(proposal((w) => w.u8(9).uvar(1)), DecodeReason.outOfRange);
  });

  test("an island reason, a switch reason or a breaker state beyond the known ones", () => {
    const island = (reason: number) => envelope(TxType.island, (w) => w.bool(true).uvar(5).u8(reason).svar(0));
    const swtch = (readback: number, reason: number) => envelope(TxType.switch, (w) => w.uvar(3).u8(0).bool(true).u8(readback).uvar(5).u8(reason).uvar(0).uvar(0));
    assert.equal((decodeTx(island(ISLAND_REASONS.length - 1)).tx.body as IslandBody).reason, "reconnected");
    refused(island(ISLAND_REASONS.length), DecodeReason.outOfRange);
    assert.equal((decodeTx(swtch(2, SWITCH_REASONS.length - 1)).tx.body as SwitchBody).readback, "unknown");
    refused(swtch(3, 0), DecodeReason.outOfRange);
    refused(swtch(0, SWITCH_REASONS.length), DecodeReason.outOfRange);
  });

  test("unknown role bits in enrol and setRoles, and an unknown member action", () => {
    const enrol = (roles: number) => envelope(TxType.member, (w) => w.u8(0).fixed(bob.publicKey, 32).u8(roles).str("x", 64));
    const setRoles = (roles: number) => envelope(TxType.member, (w) => w.u8(2).uvar(3).u8(roles));
    assert.equal(decodeTx(enrol(0x3f)).tx.body.type, "member");
    assert.equal(decodeTx(setRoles(0x3f)).tx.body.type, "member");
    for (const roles of [0x40, 0x80, 0xc0]) {
      refused(enrol(roles), DecodeReason.outOfRange);
      refused(setRoles(roles), DecodeReason.outOfRange);
    }
    refused(envelope(TxType.member, (w) => w.u8(3).uvar(3)), DecodeReason.outOfRange);
  });

  test("seq 0 (sequence numbers start at 1)", () => {
    refused(envelope(TxType.reading, readingBody, { seq: 0 }), DecodeReason.outOfRange);
    assert.equal(decodeTx(envelope(TxType.reading, readingBody, { seq: 1 })).tx.seq, 1);
  });

  test("an author above 2^24-1 and a non-minimal author varint", () => {
    refused(envelope(TxType.reading, readingBody, { author: 2 ** 24 }), DecodeReason.outOfRange);
    const t = sign(BODIES.cancel as TxBody, 1, 1);
    const padded = new Uint8Array(t.bytes.length + 1);
    padded.set([t.bytes[0] as number, t.bytes[1] as number, 0x81, 0x00]);
    padded.set(t.bytes.subarray(3), 4);
    refused(padded, DecodeReason.nonCanonical);
  });

  test("values above their field limits (meter id, power, frequency, voltage, counterparty)", () => {
    const bad: ((w: Writer) => void)[] = [
      (w) => w.uvar(256).uvar(T0).uvar(1).uvar(1).svar(0).u8(1).uvar(2300).uvar(50_000).u8(0), // meterId
      (w) => w.uvar(0).uvar(T0).uvar(1).uvar(1).svar(2 ** 31).u8(1).uvar(2300).uvar(50_000).u8(0), // powerW
      (w) => w.uvar(0).uvar(T0).uvar(1).uvar(1).svar(0).u8(1).uvar(65_536).uvar(50_000).u8(0), // voltage
      (w) => w.uvar(0).uvar(T0).uvar(1).uvar(1).svar(0).u8(1).uvar(2300).uvar(100_001).u8(0), // frequency
      (w) => w.uvar(0).uvar(2 ** 48).uvar(1).uvar(1).svar(0).u8(1).uvar(2300).uvar(50_000).u8(0), // timeMs
    ];
    for (const body of bad) refused(envelope(TxType.reading, body), DecodeReason.outOfRange);
    refused(envelope(TxType.order, (w) => w.u8(0).uvar(10).uvar(100).uvar(T0).uvar(T0).u8(0).uvar(2 ** 24 + 1)), DecodeReason.outOfRange);
  });

  test("invalid UTF-8 in a member name and a name over 64 bytes", () => {
    refused(envelope(TxType.member, (w) => w.u8(0).fixed(bob.publicKey, 32).u8(Role.user).bytes(Uint8Array.of(0xc3, 0x28), 64)), DecodeReason.invalid);
    refused(envelope(TxType.member, (w) => w.u8(0).fixed(bob.publicKey, 32).u8(Role.user).bytes(new Uint8Array(65).fill(0x61), 65)), DecodeReason.oversized);
  });
});
