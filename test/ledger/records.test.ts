// State records: what the state tree's leaves commit to, and what a store reads back.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DecodeError, DecodeReason } from "../../ledger/errors.js";
import { hash, utf8 } from "../../ledger/hash.js";
import { type StateRecord, balanceKey, decodeRecord, encodeRecord, memberKey, meterKey, orderKey, publicKeyKey, tradeKey } from "../../ledger/records.js";
import { T0, keyFor } from "./fixtures.js";

const RECORDS: StateRecord[] = [
  { kind: "global", memberCount: 12, activeAdmins: 2, activeBoxes: 5, islandedSinceMs: T0, islandedMsInPeriod: 2 ** 40, islandChangeMs: -1 },
  { kind: "breaker", premise: 2 ** 24 - 1, breaker: 255, commandedClose: true, readback: "unknown", changeMs: T0, operations: 9 },
  { kind: "member", index: 3, publicKey: keyFor("r").publicKey, roles: 0b10011, active: false, name: "Zoë", lastSeq: 2 ** 40, openOrders: 31 },
  { kind: "key", member: 2 ** 24 - 1 },
  {
    kind: "meter",
    author: 4,
    meterId: 255,
    readingCount: 86_400,
    timeMs: T0,
    importWh: 2 ** 48 - 1,
    exportWh: 0,
    powerW: -(2 ** 31 - 1),
    voltagesDeciV: [2300, 65_535],
    frequencyMilliHz: 100_000,
    quality: 0x3f,
    goodTimeMs: -1,
    goodImportWh: 0,
    goodExportWh: 0,
    settledImportWh: 2 ** 48 - 1,
    settledExportWh: 3,
  },
  {
    kind: "order",
    id: hash(utf8("o")),
    author: 1,
    side: "sell",
    energyWh: 5,
    priceMicroPerKWh: 7,
    intervalStartMs: T0,
    expiresAtMs: T0 + 1,
    flags: 1,
    counterparty: 0,
    placedHeight: 9,
  },
  { kind: "order", id: hash(utf8("p")), author: 1, side: "buy", energyWh: 5, priceMicroPerKWh: 7, intervalStartMs: T0, expiresAtMs: T0, flags: 0, counterparty: null, placedHeight: 0 },
  { kind: "market", clearedStartMs: -1, priceMicroPerKWh: null, volumeWh: 0, tradeCount: 0, tradesHash: hash(utf8("t")), settledEndMs: T0, settlementHash: hash(utf8("s")) },
  { kind: "market", clearedStartMs: T0, priceMicroPerKWh: 0, volumeWh: 2 ** 45, tradeCount: 9, tradesHash: hash(utf8("u")), settledEndMs: 0, settlementHash: hash(utf8("v")) },
  {
    kind: "trade",
    intervalStartMs: T0,
    index: 4,
    buyOrder: hash(utf8("b")),
    sellOrder: hash(utf8("s")),
    buyer: 2 ** 24 - 1,
    seller: 0,
    energyWh: 2 ** 40 - 1,
    buyerPriceMicroPerKWh: 2 ** 40 - 1,
    sellerPriceMicroPerKWh: 0,
  },
  { kind: "balance", account: "utility", balanceMicro: -(2 ** 51) },
  { kind: "balance", account: "community", balanceMicro: 2 ** 51 },
  { kind: "balance", account: 0, balanceMicro: 0 },
  { kind: "balance", account: 2 ** 24 - 1, balanceMicro: -1 },
];

describe("records", () => {
  test("every record kind round trips byte for byte", () => {
    for (const rec of RECORDS) {
      const bytes = encodeRecord(rec);
      const back = decodeRecord(bytes);
      assert.deepEqual(back, rec);
      assert.deepEqual(encodeRecord(back), bytes);
    }
  });

  test("keys name their record", () => {
    assert.equal(memberKey(7), "m/7");
    assert.equal(meterKey(7, 2), "r/7/2");
    assert.match(publicKeyKey(keyFor("r").publicKey), /^k\/[0-9a-f]{64}$/);
    assert.match(orderKey(hash(utf8("o"))), /^o\/[0-9a-f]{64}$/);
    assert.equal(tradeKey(T0, 3), `t/${T0}/3`);
    assert.equal(balanceKey("community"), "b/community");
    assert.equal(balanceKey(5), "b/5");
  });

  test("an unknown record kind, a truncated record and a trailing byte are refused", () => {
    const reason = (bytes: Uint8Array): string => {
      try {
        decodeRecord(bytes);
      } catch (err) {
        assert.ok(err instanceof DecodeError);
        return err.reason;
      }
      return "accepted";
    };
    assert.equal(reason(Uint8Array.of(99)), DecodeReason.unknownType);
    for (const rec of RECORDS) {
      const bytes = encodeRecord(rec);
      for (let n = 0; n < bytes.length; n++) assert.equal(reason(bytes.subarray(0, n)), DecodeReason.truncated, `${rec.kind} cut at ${n}`);
      assert.equal(reason(Uint8Array.from([...bytes, 0])), DecodeReason.trailing);
    }
  });

  test("an order side other than 0 (buy) or 1 (sell) is refused, not read as sell", () => {
    const bytes = encodeRecord(RECORDS.find((r) => r.kind === "order" && r.side === "sell") as StateRecord);
    const sideAt = 1 + 32 + 1; // kind, id, author (one byte)
    assert.equal(bytes[sideAt], 1);
    bytes[sideAt] = 2;
    assert.throws(() => decodeRecord(bytes), (err: unknown) => err instanceof DecodeError && err.reason === DecodeReason.outOfRange);
  });
});
