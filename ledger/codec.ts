// Canonical binary encoding shared by transactions, blocks, genesis and state
// records. Canonical means one value has exactly one encoding: varints are
// minimal, booleans are 0/1, lengths are bounded, and a decoder must consume
// every byte it is given. Unsigned varints are LEB128 (7 bits a byte, low
// group first) limited to Number.MAX_SAFE_INTEGER; signed ones are zigzag.
import { assert } from "./assert.js";
import { DecodeError, DecodeReason } from "./errors.js";

const TEXT_ENCODER = new TextEncoder();
// ignoreBOM: a leading U+FEFF is part of the string. Without it the decoder
// strips it, so "\uFEFFx" and "x" would decode to the same value (not canonical).
const TEXT_DECODER = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const TWO_POW_7 = 128;
const LONE_SURROGATE = /\p{Cs}/u; // with the u flag a well-formed pair is one astral code point, not Cs

export function varintSize(value: number): number {
  let size = 1;
  let v = value;
  while (v >= TWO_POW_7) {
    v = Math.floor(v / TWO_POW_7);
    size++;
  }
  return size;
}

export class Writer {
  private buf: Uint8Array;
  private pos = 0;

  /** A capacity for a new buffer, or a buffer to reuse (replaced by a larger one if it fills up). */
  constructor(capacityOrBuffer: number | Uint8Array = 128) {
    this.buf = typeof capacityOrBuffer === "number" ? new Uint8Array(capacityOrBuffer) : capacityOrBuffer;
  }

  /** The underlying buffer (a new one if writing outgrew the one given). */
  get buffer(): Uint8Array {
    return this.buf;
  }

  private ensure(extra: number): void {
    if (this.pos + extra <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.pos + extra) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  u8(value: number): this {
    assert(Number.isInteger(value) && value >= 0 && value <= 0xff, `u8 out of range: ${value}`);
    this.ensure(1);
    this.buf[this.pos++] = value;
    return this;
  }

  bool(value: boolean): this {
    return this.u8(value ? 1 : 0);
  }

  uvar(value: number): this {
    assert(Number.isSafeInteger(value) && value >= 0, `uvarint out of range: ${value}`);
    this.ensure(8);
    let v = value;
    while (v >= TWO_POW_7) {
      this.buf[this.pos++] = (v % TWO_POW_7) | 0x80;
      v = Math.floor(v / TWO_POW_7);
    }
    this.buf[this.pos++] = v;
    return this;
  }

  svar(value: number): this {
    assert(Number.isSafeInteger(value) && Math.abs(value) <= 2 ** 51, `svarint out of range: ${value}`);
    return this.uvar(value >= 0 ? value * 2 : -value * 2 - 1);
  }

  fixed(bytes: Uint8Array, length: number): this {
    assert(bytes.length === length, `fixed field wants ${length} bytes, got ${bytes.length}`);
    this.ensure(length);
    this.buf.set(bytes, this.pos);
    this.pos += length;
    return this;
  }

  raw(bytes: Uint8Array): this {
    this.ensure(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
    return this;
  }

  bytes(bytes: Uint8Array, maxLength: number): this {
    assert(bytes.length <= maxLength, `byte field longer than ${maxLength}`);
    this.uvar(bytes.length);
    return this.raw(bytes);
  }

  str(value: string, maxBytes: number): this {
    // TextEncoder turns a lone surrogate into U+FFFD, so two strings would share one encoding.
    assert(!LONE_SURROGATE.test(value), "text with a lone UTF-16 surrogate has no UTF-8 encoding");
    return this.bytes(TEXT_ENCODER.encode(value), maxBytes);
  }

  get length(): number {
    return this.pos;
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.pos);
  }

  /** The bytes written so far, without a copy: valid until the next write. */
  view(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

export class Reader {
  private pos: number;
  private readonly end: number;

  constructor(
    private readonly buf: Uint8Array,
    start = 0,
    end = buf.length,
  ) {
    assert(start >= 0 && start <= end && end <= buf.length, "reader bounds");
    this.pos = start;
    this.end = end;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  fail(reason: DecodeReason, message: string): never {
    throw new DecodeError(reason, message, this.pos);
  }

  private need(n: number, what: string): void {
    if (this.end - this.pos < n) this.fail(DecodeReason.truncated, `input ends inside ${what}`);
  }

  u8(what: string): number {
    this.need(1, what);
    return this.buf[this.pos++] as number;
  }

  bool(what: string): boolean {
    const v = this.u8(what);
    if (v > 1) this.fail(DecodeReason.nonCanonical, `${what} must be 0 or 1, got ${v}`);
    return v === 1;
  }

  /** Unsigned LEB128 in [0, max]; rejects over-long (non-minimal) encodings. */
  uvar(what: string, max: number = Number.MAX_SAFE_INTEGER): number {
    let value = 0;
    let scale = 1;
    for (let i = 0; ; i++) {
      if (i >= 8) this.fail(DecodeReason.outOfRange, `${what} varint longer than 8 bytes`);
      const byte = this.u8(what);
      const group = byte & 0x7f;
      value += group * scale;
      if ((byte & 0x80) === 0) {
        if (group === 0 && i > 0) this.fail(DecodeReason.nonCanonical, `${what} varint is not minimal`);
        break;
      }
      scale *= TWO_POW_7;
    }
    if (!Number.isSafeInteger(value) || value > max) {
      this.fail(DecodeReason.outOfRange, `${what} ${value} exceeds ${max}`);
    }
    return value;
  }

  /** Zigzag signed varint with |value| <= maxAbs. */
  svar(what: string, maxAbs: number): number {
    const z = this.uvar(what, maxAbs * 2);
    return z % 2 === 0 ? z / 2 : -(z + 1) / 2;
  }

  fixed(length: number, what: string): Uint8Array {
    this.need(length, what);
    const out = this.buf.subarray(this.pos, this.pos + length);
    this.pos += length;
    return out;
  }

  /**
   * Like fixed(), but a fresh copy. (Not view.slice(): on a Node Buffer,
   * slice() is a view of the same memory, which a caller may reuse.)
   */
  copy(length: number, what: string): Uint8Array {
    return new Uint8Array(this.fixed(length, what));
  }

  bytes(maxLength: number, what: string): Uint8Array {
    const length = this.uvar(`${what} length`);
    if (length > maxLength) this.fail(DecodeReason.oversized, `${what} is ${length} bytes, limit ${maxLength}`);
    return this.fixed(length, what);
  }

  str(maxBytes: number, what: string): string {
    return this.utf8(this.bytes(maxBytes, what), what);
  }

  /** Bytes already read (as by bytes()) as UTF-8 text: anything else is a DecodeError. */
  utf8(raw: Uint8Array, what: string): string {
    try {
      return TEXT_DECODER.decode(raw);
    } catch {
      return this.fail(DecodeReason.invalid, `${what} is not valid UTF-8`);
    }
  }

  /** Every decoder ends here: trailing bytes are an error, never ignored. */
  done(what: string): void {
    if (this.pos !== this.end) {
      this.fail(DecodeReason.trailing, `${this.end - this.pos} trailing bytes after ${what}`);
    }
  }
}
