// Assertions stay on in production (TigerBeetle's rule): corrupt state must
// crash loudly rather than limp on and sign something wrong.
import { AssertionError } from "./errors.js";

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new AssertionError(message);
}

export function assertNever(value: never, what = "value"): never {
  throw new AssertionError(`unexpected ${what}: ${JSON.stringify(value)}`);
}

export function isSafeUint(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n >= 0;
}

/** The wait after `doublings` failures: minMs doubled that many times, never above maxMs. */
export function doublingMs(doublings: number, minMs: number, maxMs: number): number {
  return Math.min(maxMs, minMs * 2 ** Math.min(doublings, 30)); // 2^30 x any sane minimum is beyond any maximum
}

export function divFloor(a: number, b: number): number {
  assert(Number.isSafeInteger(a) && Number.isSafeInteger(b) && b > 0, "divFloor takes safe integers and b > 0");
  return Math.floor(a / b);
}

export function divCeil(a: number, b: number): number {
  assert(Number.isSafeInteger(a) && Number.isSafeInteger(b) && b > 0, "divCeil takes safe integers and b > 0");
  return Math.ceil(a / b);
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Numeric comparator: never sort numbers with the default (string) sort. */
export function compareNumbers(a: number, b: number): number {
  return a - b;
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}
