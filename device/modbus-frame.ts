// Modbus frames, pure: requests encoded for RTU (serial) and TCP, and the
// replies taken apart with every check a reply must pass before a single
// register of it is believed. The drivers (I/O) feed bytes in and act on
// the verdicts; nothing here knows a clock or a port.
//
// Why so strict: on RTU a reply carries no transaction id. A late reply to
// a request that timed out, or noise, must never be taken as the answer to
// the next request (it would shift every later value onto the wrong
// register). So a reply is accepted only if it comes from the unit asked,
// answers the function asked, has exactly the length that request implies,
// and its CRC is right; anything else is "garbage": the driver then waits
// out the line and discards what is left before it asks again.
//
// Functions: 1 read coils, 3 read holding registers, 4 read input
// registers, 5 write single coil, 6 write single register, 16 write
// multiple registers. Limits are Modbus's: 125 registers or 2000 coils per
// read, 123 registers per write.

/** Exception codes a device may answer with (Modbus Application Protocol 1.1b3, 7). */
export const ModbusException: Record<number, string> = {
  1: "illegal function",
  2: "illegal data address",
  3: "illegal data value",
  4: "server device failure",
  5: "acknowledge",
  6: "server device busy",
  8: "memory parity error",
  10: "gateway path unavailable",
  11: "gateway target device failed to respond",
};

export const READ_REGISTERS_MAX = 125;
export const READ_COILS_MAX = 2000;
export const WRITE_REGISTERS_MAX = 123;
/** Unit ids a request may address on a serial bus (0 is broadcast: no reply, never used for reads). */
export const UNIT_ID_MIN = 1;
export const UNIT_ID_MAX = 247;
/** The largest RTU frame (Modbus over serial line 1.02, 2.5.1). */
export const RTU_FRAME_BYTES_MAX = 256;
const MBAP_BYTES = 7;
/** The MBAP length field counts the unit id and the PDU: at most 1 + 253 (a TCP ADU is at most 260 bytes). */
const MBAP_LENGTH_MAX = 254;

export type Request =
  | { readonly fn: 1 | 3 | 4; readonly unit: number; readonly address: number; readonly count: number }
  | { readonly fn: 5; readonly unit: number; readonly address: number; readonly on: boolean }
  | { readonly fn: 6; readonly unit: number; readonly address: number; readonly value: number }
  | { readonly fn: 16; readonly unit: number; readonly address: number; readonly values: readonly number[] };

export type Reply =
  | { readonly kind: "registers"; readonly values: readonly number[] } // fn 3, 4
  | { readonly kind: "coils"; readonly values: readonly boolean[] } // fn 1
  | { readonly kind: "written" } // fn 5, 6, 16: the device echoed the request
  | { readonly kind: "exception"; readonly code: number; readonly message: string };

/** What became of the bytes received so far for one request. */
export type Verdict =
  | { readonly kind: "incomplete" } // wait for more
  | { readonly kind: "reply"; readonly reply: Reply; readonly bytes: number } // `bytes`: the frame's length (anything after it is stray)
  | { readonly kind: "garbage"; readonly reason: string };

export class ModbusRequestError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "ModbusRequestError";
  }
}

// ---------------------------------------------------------------- CRC

const CRC_TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xa001 : c >>> 1;
    t[i] = c;
  }
  return t;
})();

/** Modbus CRC-16 (polynomial 0xA001 reflected, initial 0xFFFF); sent low byte first. */
export function crc16(bytes: Uint8Array, end = bytes.length): number {
  let crc = 0xffff;
  for (let i = 0; i < end; i++) crc = (crc >>> 8) ^ (CRC_TABLE[(crc ^ (bytes[i] as number)) & 0xff] as number);
  return crc;
}

// ---------------------------------------------------------------- requests

/** The PDU (function code and data) of a request; throws ModbusRequestError for one Modbus does not allow. */
export function encodePdu(r: Request): Uint8Array {
  checkInt(r.unit, 0, 255, "unit id");
  checkInt(r.address, 0, 0xffff, "address");
  switch (r.fn) {
    case 1:
    case 3:
    case 4: {
      const max = r.fn === 1 ? READ_COILS_MAX : READ_REGISTERS_MAX;
      checkInt(r.count, 1, max, "count");
      checkInt(r.address + r.count - 1, 0, 0xffff, "last address");
      return bytes(r.fn, r.address >> 8, r.address & 0xff, r.count >> 8, r.count & 0xff);
    }
    case 5:
      return bytes(5, r.address >> 8, r.address & 0xff, r.on ? 0xff : 0x00, 0x00);
    case 6:
      checkInt(r.value, 0, 0xffff, "register value");
      return bytes(6, r.address >> 8, r.address & 0xff, r.value >> 8, r.value & 0xff);
    case 16: {
      const n = r.values.length;
      checkInt(n, 1, WRITE_REGISTERS_MAX, "register count");
      checkInt(r.address + n - 1, 0, 0xffff, "last address");
      const out = new Uint8Array(6 + 2 * n);
      out.set([16, r.address >> 8, r.address & 0xff, n >> 8, n & 0xff, 2 * n]);
      r.values.forEach((v, i) => {
        checkInt(v, 0, 0xffff, "register value");
        out[6 + 2 * i] = v >> 8;
        out[7 + 2 * i] = v & 0xff;
      });
      return out;
    }
  }
}

/** A request as an RTU frame. */
export function encodeRtu(r: Request): Uint8Array {
  return rtuFrame(r.unit, encodePdu(r));
}

/** unit | PDU | CRC (low byte first): a request's frame, or a device's reply. */
export function rtuFrame(unit: number, pdu: Uint8Array): Uint8Array {
  const out = new Uint8Array(pdu.length + 3);
  out[0] = unit;
  out.set(pdu, 1);
  const crc = crc16(out, pdu.length + 1);
  out[pdu.length + 1] = crc & 0xff;
  out[pdu.length + 2] = crc >> 8;
  return out;
}

/** MBAP header (transaction id, protocol 0, length, unit) | PDU. */
export function encodeTcp(r: Request, transactionId: number): Uint8Array {
  checkInt(transactionId, 0, 0xffff, "transaction id");
  const pdu = encodePdu(r);
  const out = new Uint8Array(MBAP_BYTES + pdu.length);
  const length = pdu.length + 1;
  out.set([transactionId >> 8, transactionId & 0xff, 0, 0, length >> 8, length & 0xff, r.unit], 0);
  out.set(pdu, MBAP_BYTES);
  return out;
}

// ---------------------------------------------------------------- replies

/** The PDU length of the normal reply to `r`. */
function replyPduBytes(r: Request): number {
  switch (r.fn) {
    case 1:
      return 2 + Math.ceil(r.count / 8);
    case 3:
    case 4:
      return 2 + 2 * r.count;
    case 5:
    case 6:
    case 16:
      return 5;
  }
}

/**
 * Judge a reply PDU (function code first) to request `r`, whose PDU was
 * `sent`. The PDU must be exactly the length the request implies.
 */
export function parseReplyPdu(r: Request, sent: Uint8Array, pdu: Uint8Array): Verdict {
  const fn = pdu[0];
  if (fn === (r.fn | 0x80)) {
    if (pdu.length !== 2) return garbage(`an exception reply of ${pdu.length} bytes (2 expected)`);
    const code = pdu[1] as number;
    return { kind: "reply", bytes: 2, reply: { kind: "exception", code, message: ModbusException[code] ?? `exception ${code}` } };
  }
  if (fn !== r.fn) return garbage(`a reply to function ${fn} (asked ${r.fn})`);
  const expected = replyPduBytes(r);
  if (pdu.length !== expected) return garbage(`a function ${fn} reply of ${pdu.length} bytes (${expected} expected)`);
  switch (r.fn) {
    case 1:
    case 3:
    case 4: {
      if (pdu[1] !== expected - 2) return garbage(`a byte count of ${pdu[1]} (${expected - 2} expected)`);
      if (r.fn === 1) {
        const values = Array.from({ length: r.count }, (_, i) => (((pdu[2 + (i >> 3)] as number) >> (i & 7)) & 1) === 1);
        return { kind: "reply", bytes: expected, reply: { kind: "coils", values } };
      }
      const values = Array.from({ length: r.count }, (_, i) => (((pdu[2 + 2 * i] as number) << 8) | (pdu[3 + 2 * i] as number)) >>> 0);
      return { kind: "reply", bytes: expected, reply: { kind: "registers", values } };
    }
    case 5:
    case 6:
      // The device echoes the request: anything else is not an acknowledgement of it.
      for (let i = 0; i < 5; i++) if (pdu[i] !== sent[i]) return garbage(`a write acknowledgement that does not echo the request (byte ${i})`);
      return { kind: "reply", bytes: 5, reply: { kind: "written" } };
    case 16:
      for (let i = 0; i < 5; i++) if (pdu[i] !== sent[i]) return garbage(`a write acknowledgement that does not echo the address and count (byte ${i})`);
      return { kind: "reply", bytes: 5, reply: { kind: "written" } };
  }
}

/**
 * Judge the bytes received on a serial line since `r` was sent (RTU). The
 * frame's length follows from the request (or from the exception flag), so
 * a reply is complete as soon as that many bytes are in, without waiting
 * for the line to fall silent.
 */
export function parseRtuReply(r: Request, received: Uint8Array): Verdict {
  if (received.length < 2) return { kind: "incomplete" };
  if (received[0] !== r.unit) return garbage(`a frame from unit ${received[0]} (asked ${r.unit})`);
  const fn = received[1] as number;
  const pduBytes = fn === (r.fn | 0x80) ? 2 : fn === r.fn ? replyPduBytes(r) : null;
  if (pduBytes === null) return garbage(`a reply to function ${fn} (asked ${r.fn})`);
  const frameBytes = 1 + pduBytes + 2;
  if (received.length < frameBytes) return { kind: "incomplete" };
  const crc = crc16(received, frameBytes - 2);
  if (received[frameBytes - 2] !== (crc & 0xff) || received[frameBytes - 1] !== crc >> 8) return garbage("a frame whose CRC is wrong");
  const v = parseReplyPdu(r, encodePdu(r), received.subarray(1, 1 + pduBytes));
  return v.kind === "reply" ? { ...v, bytes: frameBytes } : v;
}

/**
 * Judge bytes received on a TCP connection for request `r` sent with
 * `transactionId`. A reply with another transaction id (a late one) is
 * "stale": the driver drops those bytes and keeps waiting.
 */
export function parseTcpReply(r: Request, transactionId: number, received: Uint8Array): Verdict | { readonly kind: "stale"; readonly bytes: number } {
  if (received.length < MBAP_BYTES) return { kind: "incomplete" };
  const id = ((received[0] as number) << 8) | (received[1] as number);
  const protocol = ((received[2] as number) << 8) | (received[3] as number);
  const length = ((received[4] as number) << 8) | (received[5] as number);
  if (protocol !== 0) return garbage(`an MBAP header with protocol ${protocol} (0 expected)`);
  if (length < 2 || length > MBAP_LENGTH_MAX) return garbage(`an MBAP length of ${length} (2..${MBAP_LENGTH_MAX})`);
  const frameBytes = 6 + length;
  if (received.length < frameBytes) return { kind: "incomplete" };
  if (id !== transactionId) return { kind: "stale", bytes: frameBytes };
  if (received[6] !== r.unit) return garbage(`a reply from unit ${received[6]} (asked ${r.unit})`);
  const v = parseReplyPdu(r, encodePdu(r), received.subarray(MBAP_BYTES, frameBytes));
  return v.kind === "reply" ? { ...v, bytes: frameBytes } : v;
}

// ---------------------------------------------------------------- timing

/**
 * Bytes per second on a serial line: a character is a start bit, the data
 * bits, a parity bit if any, and the stop bits.
 */
export function charsPerSecond(baud: number, dataBits: number, parity: "none" | "even" | "odd", stopBits: number): number {
  return baud / (1 + dataBits + (parity === "none" ? 0 : 1) + stopBits);
}

/**
 * The silent interval that ends an RTU frame: 3.5 character times, and a
 * fixed 1.75 ms above 19,200 baud (Modbus over serial line 1.02, 2.5.1.1).
 */
export function interFrameMs(baud: number, charsPerS: number): number {
  return baud > 19_200 ? 1.75 : (3.5 * 1_000) / charsPerS;
}

/** Wire time of `n` bytes. */
export function wireMs(n: number, charsPerS: number): number {
  return (n * 1_000) / charsPerS;
}

/** The length of the RTU frame that answers `r` normally (for timing a reply). */
export function rtuReplyBytes(r: Request): number {
  return 1 + replyPduBytes(r) + 2;
}

function garbage(reason: string): Verdict {
  return { kind: "garbage", reason };
}

function bytes(...b: number[]): Uint8Array {
  return Uint8Array.from(b);
}

function checkInt(v: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(v) || v < min || v > max) throw new ModbusRequestError(`${what} ${v} outside ${min}..${max}`);
}

// ---------------------------------------------------------------- the device side (simulated meters)

/**
 * A request PDU as a device receives it: the request, or the exception code
 * to answer with (1: a function this device does not serve, 3: a count or
 * value Modbus does not allow).
 */
export function parseRequestPdu(unit: number, pdu: Uint8Array): { readonly request: Request } | { readonly fn: number; readonly exception: number } {
  const fn = pdu[0] ?? 0;
  const u16 = (i: number) => (((pdu[i] as number) << 8) | (pdu[i + 1] as number)) >>> 0;
  switch (fn) {
    case 1:
    case 3:
    case 4: {
      if (pdu.length !== 5) return { fn, exception: 3 };
      const count = u16(3);
      const max = fn === 1 ? READ_COILS_MAX : READ_REGISTERS_MAX;
      if (count < 1 || count > max || u16(1) + count > 0x10000) return { fn, exception: 3 };
      return { request: { fn, unit, address: u16(1), count } };
    }
    case 5: {
      if (pdu.length !== 5 || (u16(3) !== 0xff00 && u16(3) !== 0)) return { fn, exception: 3 };
      return { request: { fn, unit, address: u16(1), on: u16(3) === 0xff00 } };
    }
    case 6:
      if (pdu.length !== 5) return { fn, exception: 3 };
      return { request: { fn, unit, address: u16(1), value: u16(3) } };
    case 16: {
      const count = u16(3);
      if (pdu.length < 6 || count < 1 || count > WRITE_REGISTERS_MAX || pdu[5] !== 2 * count || pdu.length !== 6 + 2 * count) return { fn, exception: 3 };
      return { request: { fn, unit, address: u16(1), values: Array.from({ length: count }, (_, i) => u16(6 + 2 * i)) } };
    }
    default:
      return { fn, exception: 1 };
  }
}

/** The reply PDU a device sends for `r`: the registers or coils read, the echo of a write, or an exception. */
export function encodeReplyPdu(r: Request, reply: Reply): Uint8Array {
  switch (reply.kind) {
    case "exception":
      return bytes(r.fn | 0x80, reply.code);
    case "registers": {
      const out = new Uint8Array(2 + 2 * reply.values.length);
      out[0] = r.fn;
      out[1] = 2 * reply.values.length;
      reply.values.forEach((v, i) => {
        out[2 + 2 * i] = v >> 8;
        out[3 + 2 * i] = v & 0xff;
      });
      return out;
    }
    case "coils": {
      const n = Math.ceil(reply.values.length / 8);
      const out = new Uint8Array(2 + n);
      out[0] = r.fn;
      out[1] = n;
      reply.values.forEach((on, i) => {
        if (on) out[2 + (i >> 3)] = (out[2 + (i >> 3)] as number) | (1 << (i & 7));
      });
      return out;
    }
    case "written":
      return r.fn === 16 ? bytes(16, r.address >> 8, r.address & 0xff, r.values.length >> 8, r.values.length & 0xff) : encodePdu(r).subarray(0, 5);
  }
}
