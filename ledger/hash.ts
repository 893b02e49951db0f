// Hashing for the ledger (SHA-256 from @noble/hashes: pure, audited, and the
// same code in the box and in the neighbours' browsers). Every hash is
// domain-separated by a tag so that a transaction id can never be mistaken
// for a block hash or a Merkle node.
import { sha256 } from "@noble/hashes/sha2.js";
import { assert } from "./assert.js";

export const HASH_BYTES = 32;
export type Hash = Uint8Array;

const TEXT = new TextEncoder();

export const HashTag = {
  tx: 0x10,
  blockHeader: 0x11,
  genesis: 0x12,
  merkleNode: 0x01,
  stateBucket: 0x21,
  stateNode: 0x22,
  trades: 0x31,
  settlement: 0x32,
} as const;

export function hash(data: Uint8Array): Hash {
  return sha256(data);
}

// Small typed arrays above 64 bytes live outside V8's heap and are costly to
// allocate and collect; hashing thousands of transactions a block would make
// one per call. Preimages are built in this scratch buffer instead (safe:
// JavaScript runs one call at a time and sha256 keeps no reference).
const SCRATCH = new Uint8Array(16 * 1024);

/** SHA-256 of tag | parts... */
export function hashTagged(tag: number, ...parts: Uint8Array[]): Hash {
  let total = 1;
  for (const part of parts) total += part.length;
  if (total > SCRATCH.length) {
    const h = sha256.create();
    h.update(Uint8Array.of(tag));
    for (const part of parts) h.update(part);
    return h.digest();
  }
  SCRATCH[0] = tag;
  let at = 1;
  for (const part of parts) {
    SCRATCH.set(part, at);
    at += part.length;
  }
  return sha256(SCRATCH.subarray(0, total));
}

export function utf8(text: string): Uint8Array {
  return TEXT.encode(text);
}

export const ZERO_HASH: Hash = new Uint8Array(HASH_BYTES);

const HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));

export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += HEX[bytes[i] as number];
  return out;
}

/** Strict hex: even length, lowercase or uppercase digits only. Returns null when malformed. */
export function parseHex(text: string, byteLength?: number): Uint8Array | null {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return null;
  if (byteLength !== undefined && text.length !== byteLength * 2) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(i * 2, i * 2 + 2), 16);
  return out;
}

export function fromHex(text: string, byteLength?: number): Uint8Array {
  const out = parseHex(text, byteLength);
  assert(out !== null, `invalid hex${byteLength === undefined ? "" : ` of ${byteLength} bytes`}: ${text.slice(0, 80)}`);
  return out;
}
