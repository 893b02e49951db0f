// The canonical codec: one value, one encoding; everything else is refused
// with a DecodeError whose `reason` says why.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Reader, Writer, varintSize } from "../../ledger/codec.js";
import { AssertionError, DecodeError, DecodeReason } from "../../ledger/errors.js";

const bytes = (...b: number[]): Uint8Array => Uint8Array.from(b);

function decodeFails(reason: DecodeReason, read: (r: Reader) => unknown, input: Uint8Array): void {
  assert.throws(
    () => {
      const r = new Reader(input);
      read(r);
      r.done("test value");
    },
    (err: unknown) => err instanceof DecodeError && err.reason === reason,
    `expected DecodeError(${reason}) for ${Buffer.from(input).toString("hex")}`,
  );
}

describe("codec: unsigned varints", () => {
  const cases: [number, number[]][] = [
    [0, [0x00]],
    [1, [0x01]],
    [127, [0x7f]],
    [128, [0x80, 0x01]],
    [300, [0xac, 0x02]],
    [16_383, [0xff, 0x7f]],
    [16_384, [0x80, 0x80, 0x01]],
    [2 ** 32, [0x80, 0x80, 0x80, 0x80, 0x10]],
    [2 ** 53 - 1, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]],
  ];
  for (const [value, encoding] of cases) {
    test(`${value} encodes as ${Buffer.from(encoding).toString("hex")} and back`, () => {
      const out = new Writer(1).uvar(value).finish();
      assert.deepEqual([...out], encoding);
      assert.equal(varintSize(value), encoding.length);
      const r = new Reader(out);
      assert.equal(r.uvar("v"), value);
      r.done("v");
    });
  }

  test("every power of two and its neighbours up to 2^53-1 round trip", () => {
    for (let e = 0; e <= 53; e++) {
      for (const v of [2 ** e - 1, 2 ** e, 2 ** e + 1]) {
        if (!Number.isSafeInteger(v)) continue;
        const out = new Writer().uvar(v).finish();
        assert.equal(out.length, varintSize(v));
        assert.equal(new Reader(out).uvar("v"), v);
      }
    }
  });

  test("non-minimal encodings are refused as non_canonical", () => {
    decodeFails(DecodeReason.nonCanonical, (r) => r.uvar("v"), bytes(0x80, 0x00)); // 0 in two bytes
    decodeFails(DecodeReason.nonCanonical, (r) => r.uvar("v"), bytes(0x81, 0x00)); // 1 in two bytes
    decodeFails(DecodeReason.nonCanonical, (r) => r.uvar("v"), bytes(0xff, 0x80, 0x00)); // 127 in three
  });

  test("a varint longer than 8 bytes is refused", () => {
    decodeFails(DecodeReason.outOfRange, (r) => r.uvar("v"), bytes(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01));
    decodeFails(DecodeReason.outOfRange, (r) => r.uvar("v"), bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01));
  });

  test("an 8-byte varint above 2^53-1 is refused", () => {
    decodeFails(DecodeReason.outOfRange, (r) => r.uvar("v"), bytes(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10)); // 2^53
    decodeFails(DecodeReason.outOfRange, (r) => r.uvar("v"), bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)); // 2^56-1
  });

  test("a varint above the field's maximum is refused; the maximum itself is fine", () => {
    assert.equal(new Reader(bytes(0xff, 0x01)).uvar("v", 255), 255);
    decodeFails(DecodeReason.outOfRange, (r) => r.uvar("v", 255), bytes(0x80, 0x02));
  });

  test("a varint cut short is truncated", () => {
    decodeFails(DecodeReason.truncated, (r) => r.uvar("v"), bytes());
    decodeFails(DecodeReason.truncated, (r) => r.uvar("v"), bytes(0x80));
    decodeFails(DecodeReason.truncated, (r) => r.uvar("v"), bytes(0xff, 0xff, 0xff));
  });

  test("the writer refuses negative, fractional and unsafe values", () => {
    for (const v of [-1, 0.5, 2 ** 53, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => new Writer().uvar(v), AssertionError, `uvar(${v})`);
    }
  });
});

describe("codec: signed (zigzag) varints", () => {
  const cases: [number, number][] = [
    [0, 0],
    [-1, 1],
    [1, 2],
    [-2, 3],
    [2, 4],
    [-64, 127],
    [64, 128],
    [-1_500, 2_999],
    [-(2 ** 31 - 1), 2 ** 32 - 3],
    [-(2 ** 51), 2 ** 52 - 1],
    [2 ** 51, 2 ** 52],
  ];
  for (const [value, zigzag] of cases) {
    test(`${value} is zigzag ${zigzag}`, () => {
      const out = new Writer().svar(value).finish();
      assert.deepEqual(out, new Writer().uvar(zigzag).finish());
      assert.equal(new Reader(out).svar("v", 2 ** 51), value);
    });
  }

  test("|value| above maxAbs is refused in both directions; maxAbs itself is fine", () => {
    const enc = (v: number) => new Writer().svar(v).finish();
    assert.equal(new Reader(enc(10)).svar("v", 10), 10);
    assert.equal(new Reader(enc(-10)).svar("v", 10), -10);
    decodeFails(DecodeReason.outOfRange, (r) => r.svar("v", 10), enc(11));
    decodeFails(DecodeReason.outOfRange, (r) => r.svar("v", 10), enc(-11));
  });

  test("the writer refuses |value| above 2^51", () => {
    assert.throws(() => new Writer().svar(2 ** 51 + 1), AssertionError);
    assert.throws(() => new Writer().svar(-(2 ** 51) - 1), AssertionError);
  });
});

describe("codec: booleans, fixed fields, byte strings, text", () => {
  test("bool is 0 or 1; 2 and 255 are non_canonical", () => {
    assert.equal(new Reader(bytes(0)).bool("b"), false);
    assert.equal(new Reader(bytes(1)).bool("b"), true);
    assert.deepEqual([...new Writer().bool(true).bool(false).finish()], [1, 0]);
    decodeFails(DecodeReason.nonCanonical, (r) => r.bool("b"), bytes(2));
    decodeFails(DecodeReason.nonCanonical, (r) => r.bool("b"), bytes(255));
  });

  test("fixed fields round trip; a short one is truncated; the writer checks the length", () => {
    const out = new Writer().fixed(bytes(1, 2, 3, 4), 4).finish();
    assert.deepEqual([...new Reader(out).fixed(4, "f")], [1, 2, 3, 4]);
    decodeFails(DecodeReason.truncated, (r) => r.fixed(4, "f"), bytes(1, 2, 3));
    assert.throws(() => new Writer().fixed(bytes(1, 2, 3), 4), AssertionError);
  });

  test("length-prefixed bytes round trip, including empty and at the limit", () => {
    for (const len of [0, 1, 127, 128, 300]) {
      const payload = Uint8Array.from({ length: len }, (_, i) => i & 0xff);
      const out = new Writer().bytes(payload, 300).finish();
      const r = new Reader(out);
      assert.deepEqual(r.bytes(300, "b"), payload);
      r.done("b");
    }
  });

  test("length-prefixed bytes over the limit are oversized (reader) or an assertion (writer)", () => {
    const out = new Writer().bytes(new Uint8Array(5), 5).finish();
    decodeFails(DecodeReason.oversized, (r) => r.bytes(4, "b"), out);
    assert.throws(() => new Writer().bytes(new Uint8Array(5), 4), AssertionError);
    // A huge declared length is refused as oversized before anything is read.
    decodeFails(DecodeReason.oversized, (r) => r.bytes(64, "b"), new Writer().uvar(2 ** 40).finish());
  });

  test("length-prefixed bytes shorter than declared are truncated", () => {
    decodeFails(DecodeReason.truncated, (r) => r.bytes(64, "b"), bytes(5, 1, 2));
  });

  test("text round trips: ASCII, multi-byte, emoji, a leading byte-order mark", () => {
    for (const s of ["", "box-7", "Zoë's café", "⚡🏠", "\uFEFFbom"]) {
      const out = new Writer().str(s, 64).finish();
      const r = new Reader(out);
      assert.equal(r.str(64, "s"), s);
      r.done("s");
    }
  });

  test("the writer refuses a lone surrogate (it would encode like U+FFFD); proper pairs are fine", () => {
    for (const s of ["\uD800", "a\uDC00b", "\uDBFF\uDBFF"]) assert.throws(() => new Writer().str(s, 64), AssertionError, JSON.stringify(s));
    assert.deepEqual(new Writer().str("\uD83D\uDE00", 64).finish(), Uint8Array.of(4, 0xf0, 0x9f, 0x98, 0x80));
  });

  test("invalid UTF-8 is refused as invalid", () => {
    const cases = [
      bytes(1, 0xff), // never valid
      bytes(2, 0xc0, 0x80), // over-long NUL
      bytes(3, 0xed, 0xa0, 0x80), // UTF-16 surrogate
      bytes(2, 0xe2, 0x82), // cut inside a sequence
      bytes(1, 0x80), // lone continuation byte
    ];
    for (const input of cases) decodeFails(DecodeReason.invalid, (r) => r.str(64, "s"), input);
  });

  test("text longer than its byte limit is oversized", () => {
    decodeFails(DecodeReason.oversized, (r) => r.str(3, "s"), new Writer().str("ë€", 8).finish()); // 5 bytes
  });
});

describe("codec: reader framing", () => {
  test("done() refuses trailing bytes", () => {
    decodeFails(DecodeReason.trailing, (r) => r.u8("x"), bytes(1, 2));
    decodeFails(DecodeReason.trailing, (r) => r.uvar("x"), bytes(0x05, 0x00));
  });

  test("a reader over a window sees only the window", () => {
    const r = new Reader(bytes(9, 1, 2, 9), 1, 3);
    assert.equal(r.remaining, 2);
    assert.equal(r.u8("a"), 1);
    assert.equal(r.u8("b"), 2);
    assert.throws(() => r.u8("c"), (e: unknown) => e instanceof DecodeError && e.reason === DecodeReason.truncated);
    r.done("window");
  });

  test("DecodeError carries a stable code and the offset", () => {
    try {
      new Reader(bytes(7, 0x80, 0x00), 1).uvar("v"); // the error is found after the last byte
      assert.fail("should throw");
    } catch (err) {
      assert.ok(err instanceof DecodeError);
      assert.equal(err.code, "PG_ERR_DECODE_NON_CANONICAL");
      assert.equal(err.offset, 3);
    }
  });

  test("the writer grows past its initial capacity without losing bytes", () => {
    const w = new Writer(1);
    for (let i = 0; i < 1000; i++) w.uvar(i * 1_000_003);
    const r = new Reader(w.finish());
    for (let i = 0; i < 1000; i++) assert.equal(r.uvar("v"), i * 1_000_003);
    r.done("all");
  });
});
