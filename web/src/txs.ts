// What the page signs: order, cancel and vote bodies, and the interval an
// order is for. Pure (no DOM, no clock): the caller hands in the time, so
// this is the same arithmetic the ledger applies (ledger/state.ts applyOrder:
// an order is for a future interval, a multiple of intervalMs, and must not
// have expired when its block is cut).
import { parseHex } from "../../ledger/hash.js";
import { type OrderSideName, type SignedTx, type Signer, type TxBody, signTx } from "../../ledger/tx.js";

/**
 * Blocks are cut about once a second and a submission takes a block or two to
 * commit: an order for the interval that starts sooner than this would reach
 * its block after that interval started, and be refused. Then the one after.
 */
export const ORDER_LEAD_MS = 5_000;

/** The start of the next interval an order placed at nowMs can still be for. */
export function nextOrderIntervalStartMs(nowMs: number, intervalMs: number): number {
  if (!Number.isSafeInteger(nowMs) || !Number.isSafeInteger(intervalMs) || intervalMs <= 0) throw new Error("nextOrderIntervalStartMs takes integers and intervalMs > 0");
  const next = nowMs - (nowMs % intervalMs) + intervalMs;
  return next - nowMs < ORDER_LEAD_MS ? next + intervalMs : next;
}

/** An order as the form gives it: Wh and a price per kWh in currency units (e.g. 0.15). */
export interface OrderForm {
  readonly side: OrderSideName;
  readonly energyWh: number;
  readonly pricePerKWh: number;
}

/** Integers for the ledger: price in micro-currency per kWh, rounded to the nearest micro. */
export function orderBody(form: OrderForm, intervalStartMs: number, intervalMs: number): TxBody {
  if (!Number.isSafeInteger(form.energyWh) || form.energyWh < 1) throw new Error("energy is a whole number of Wh, at least 1");
  if (!Number.isFinite(form.pricePerKWh) || form.pricePerKWh < 0) throw new Error("the price is a number, at least 0");
  return {
    type: "order",
    side: form.side,
    energyWh: form.energyWh,
    priceMicroPerKWh: Math.round(form.pricePerKWh * 1_000_000),
    intervalStartMs,
    // Open until its interval ends: it clears when the interval starts, and a
    // later expiry would only keep a stale order in the book.
    expiresAtMs: intervalStartMs + intervalMs,
    flags: 0,
    counterparty: null,
  };
}

function hash32(hex: string): Uint8Array {
  const h = parseHex(hex, 32);
  if (h === null) throw new Error(`not a 32-byte hex id: ${hex.slice(0, 80)}`);
  return h;
}

export function cancelBody(orderIdHex: string): TxBody {
  return { type: "cancel", orderId: hash32(orderIdHex) };
}

export function voteBody(proposalIdHex: string, approve: boolean): TxBody {
  return { type: "vote", proposal: hash32(proposalIdHex), approve };
}

/** Sign as member `author` with sequence number lastSeq + 1, for the chain whose hash the box gave. */
export function sign(body: TxBody, signer: Signer, author: number, lastSeq: number, chainHashHex: string): SignedTx {
  return signTx({ author, seq: lastSeq + 1, body }, signer, hash32(chainHashHex));
}
