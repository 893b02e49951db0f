// Modbus frames (device/modbus-frame.ts): CRCs equal to pymodbus's, requests
// as the specification lays them out, and replies accepted only when they
// answer exactly the request asked (unit, function, length, CRC, and for TCP
// the transaction id). Random bytes never throw, never pass as a reply.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  type Request,
  crc16,
  encodeRtu,
  encodeTcp,
  interFrameMs,
  charsPerSecond,
  parseRtuReply,
  parseTcpReply,
  rtuReplyBytes,
} from "../../device/modbus-frame.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const fromHex = (h: string) => new Uint8Array(Buffer.from(h.replace(/ /g, ""), "hex"));

/** An RTU frame with its CRC appended (low byte first). */
function withCrc(body: number[]): Uint8Array {
  const b = Uint8Array.from(body);
  const crc = crc16(b);
  return Uint8Array.from([...body, crc & 0xff, crc >> 8]);
}

function registersReply(unit: number, fn: number, values: readonly number[]): Uint8Array {
  return withCrc([unit, fn, 2 * values.length, ...values.flatMap((v) => [v >> 8, v & 0xff])]);
}

describe("Modbus CRC and requests", () => {
  it("CRC-16 equals pymodbus 3.0's computeCRC on these frames", () => {
    // Computed with /usr/bin/python3 -c "from pymodbus.utilities import computeCRC; ..." (Debian python3-pymodbus 3.0.0).
    const vectors: [string, string][] = [
      ["010300000001", "840a"],
      ["01040000000a", "700d"],
      ["110300000012", "c757"],
      ["0104240000000000000000", "e8cc"],
      ["018402", "c2c1"],
      ["0105000aff00", "ac38"],
      ["010600010003", "980b"],
    ];
    for (const [body, crc] of vectors) {
      const c = crc16(fromHex(body));
      assert.equal(hex(Uint8Array.from([c & 0xff, c >> 8])), crc, body);
    }
  });

  it("encodes RTU and TCP requests byte for byte", () => {
    assert.equal(hex(encodeRtu({ fn: 4, unit: 1, address: 0, count: 10 })), "01040000000a700d");
    assert.equal(hex(encodeRtu({ fn: 3, unit: 17, address: 0, count: 18 })), "110300000012c757");
    assert.equal(hex(encodeRtu({ fn: 5, unit: 1, address: 10, on: true })), "0105000aff00ac38");
    assert.equal(hex(encodeTcp({ fn: 4, unit: 1, address: 70, count: 6 }, 0x1234)), "123400000006010400460006");
    assert.equal(hex(encodeTcp({ fn: 16, unit: 2, address: 1, values: [3, 0xabcd] }, 1)), "00010000000b02100001000204" + "0003abcd");
  });

  it("refuses requests Modbus does not allow", () => {
    assert.throws(() => encodeRtu({ fn: 3, unit: 1, address: 0, count: 126 }), /count 126 outside 1..125/);
    assert.throws(() => encodeRtu({ fn: 4, unit: 1, address: 65530, count: 10 }), /last address/);
    assert.throws(() => encodeRtu({ fn: 6, unit: 1, address: 0, value: 65536 }), /register value/);
    assert.throws(() => encodeRtu({ fn: 3, unit: 256, address: 0, count: 1 }), /unit id/);
    assert.throws(() => encodeTcp({ fn: 16, unit: 1, address: 0, values: [] }, 1), /register count 0/);
  });
});

describe("RTU replies", () => {
  const read: Request = { fn: 4, unit: 5, address: 0, count: 3 };

  it("accepts exactly the reply to the request, as soon as its last byte is in", () => {
    const frame = registersReply(5, 4, [0x4365, 0x8000, 7]);
    assert.equal(frame.length, rtuReplyBytes(read));
    for (let n = 0; n < frame.length; n++) assert.equal(parseRtuReply(read, frame.subarray(0, n)).kind, "incomplete", `${n} bytes`);
    assert.deepEqual(parseRtuReply(read, frame), { kind: "reply", bytes: frame.length, reply: { kind: "registers", values: [0x4365, 0x8000, 7] } });
    const trailing = parseRtuReply(read, Uint8Array.from([...frame, 0x99]));
    assert.equal(trailing.kind === "reply" && trailing.bytes, frame.length, "what follows the frame is not part of it");
  });

  it("an exception reply names the exception", () => {
    const v = parseRtuReply(read, withCrc([5, 0x84, 2]));
    assert.deepEqual(v, { kind: "reply", bytes: 5, reply: { kind: "exception", code: 2, message: "illegal data address" } });
  });

  it("another unit, another function, another length, a bad CRC or a bad byte count is garbage", () => {
    const cases: [Uint8Array, RegExp][] = [
      [registersReply(6, 4, [1, 2, 3]), /from unit 6/],
      [registersReply(5, 3, [1, 2, 3]), /function 3/],
      [Uint8Array.from([...registersReply(5, 4, [1, 2, 3]).subarray(0, 10), 0, 0]), /CRC/],
      [withCrc([5, 4, 4, 0, 1, 0, 2, 0, 3]), /byte count of 4/],
    ];
    for (const [bytes, why] of cases) {
      const v = parseRtuReply(read, bytes);
      assert.equal(v.kind, "garbage");
      assert.match(v.kind === "garbage" ? v.reason : "", why);
    }
    // A reply for two registers to a request for three: CRC over the wrong length fails.
    assert.equal(parseRtuReply(read, Uint8Array.from([...registersReply(5, 4, [1, 2]), 0, 0])).kind, "garbage");
  });

  it("write acknowledgements must echo the request", () => {
    const coil: Request = { fn: 5, unit: 1, address: 10, on: true };
    assert.deepEqual(parseRtuReply(coil, encodeRtu(coil)), { kind: "reply", bytes: 8, reply: { kind: "written" } });
    const other = encodeRtu({ fn: 5, unit: 1, address: 10, on: false });
    assert.match((parseRtuReply(coil, other) as { reason: string }).reason, /does not echo/);
  });

  it("coils unpack least significant bit first", () => {
    const req: Request = { fn: 1, unit: 1, address: 0, count: 10 };
    const v = parseRtuReply(req, withCrc([1, 1, 2, 0b1000_0101, 0b10]));
    assert.deepEqual(v.kind === "reply" && v.reply, { kind: "coils", values: [true, false, true, false, false, false, false, true, false, true] });
  });

  it("random bytes never throw and never pass as a reply unless they are one", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 40 }), fc.integer({ min: 1, max: 10 }), (bytes, count) => {
        const req: Request = { fn: 3, unit: 1, address: 0, count };
        const v = parseRtuReply(req, bytes);
        if (v.kind !== "reply") return;
        const frame = bytes.subarray(0, v.bytes);
        const crc = crc16(frame, frame.length - 2);
        assert.ok(frame[0] === 1 && (frame[1] === 3 || frame[1] === 0x83) && frame.at(-2) === (crc & 0xff) && frame.at(-1) === crc >> 8);
      }),
      { numRuns: 5_000 },
    );
  });
});

describe("TCP replies", () => {
  const read: Request = { fn: 3, unit: 1, address: 100, count: 2 };
  const mbap = (id: number, unit: number, pdu: number[]) => Uint8Array.from([id >> 8, id & 0xff, 0, 0, 0, pdu.length + 1, unit, ...pdu]);

  it("matches the transaction id; an earlier transaction's late reply is stale, not an answer", () => {
    const good = mbap(7, 1, [3, 4, 0, 1, 0, 2]);
    assert.deepEqual(parseTcpReply(read, 7, good), { kind: "reply", bytes: good.length, reply: { kind: "registers", values: [1, 2] } });
    assert.deepEqual(parseTcpReply(read, 8, good), { kind: "stale", bytes: good.length });
    assert.equal(parseTcpReply(read, 7, good.subarray(0, 10)).kind, "incomplete");
  });

  it("a wrong protocol, length, unit or PDU is garbage", () => {
    assert.match((parseTcpReply(read, 7, Uint8Array.from([0, 7, 0, 1, 0, 3, 1, 3, 0])) as { reason: string }).reason, /protocol 1/);
    assert.match((parseTcpReply(read, 7, Uint8Array.from([0, 7, 0, 0, 1, 0, 1])) as { reason: string }).reason, /length of 256 \(2..254\)/);
    assert.match((parseTcpReply(read, 7, mbap(7, 2, [3, 4, 0, 1, 0, 2])) as { reason: string }).reason, /unit 2/);
    assert.match((parseTcpReply(read, 7, mbap(7, 1, [3, 2, 0, 1])) as { reason: string }).reason, /bytes/);
  });
});

describe("serial timing", () => {
  it("character rate and the 3.5-character silence, fixed above 19,200 baud", () => {
    const cps = charsPerSecond(9_600, 8, "none", 1);
    assert.equal(cps, 960);
    assert.ok(Math.abs(interFrameMs(9_600, cps) - 3.6458) < 1e-3);
    assert.equal(interFrameMs(38_400, charsPerSecond(38_400, 8, "even", 1)), 1.75);
    assert.equal(charsPerSecond(9_600, 8, "even", 1), 9_600 / 11);
  });
});
