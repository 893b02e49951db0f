// What the page signs: order, cancel and vote bodies, and the interval an
// order is for. Pure (no DOM, no clock): the caller hands in the time, so
// this is the same arithmetic the ledger applies (ledger/state.ts applyOrder:
// an order is for a future interval, a multiple of intervalMs, and must not
// have expired when its block is cut).
import { parseHex } from "../../ledger/hash.js";
import { ORDER_ENERGY_WH_MAX, type OrderSideName, PRICE_MICRO_PER_KWH_MAX, type SignedTx, type Signer, type TxBody, signTx } from "../../ledger/tx.js";

/**
 * Blocks are cut about once a second and a submission takes a block or two to
 * commit: an order for the interval that starts sooner than this would reach
 * its block after that interval started, and be refused. Then the one after.
 */
export const ORDER_LEAD_MS = 5_000;

/**
 * The start of the next interval an order placed at nowMs can still be for. `clockRate`: how many of the
 * box's ms pass in a real one (a demo's box runs fast; BoxClock), so the lead stays ORDER_LEAD_MS of real time.
 */
export function nextOrderIntervalStartMs(nowMs: number, intervalMs: number, clockRate = 1): number {
  if (!Number.isSafeInteger(nowMs) || !Number.isSafeInteger(intervalMs) || intervalMs <= 0) throw new Error("nextOrderIntervalStartMs takes integers and intervalMs > 0");
  const next = nowMs - (nowMs % intervalMs) + intervalMs;
  return next - nowMs < ORDER_LEAD_MS * clockRate ? next + intervalMs : next;
}

/** Samples of the box's clock kept to estimate its rate, and the shortest span that gives one. */
const CLOCK_SAMPLES_MAX = 32;
const CLOCK_RATE_SPAN_MS = 10_000;

/**
 * The box's clock as the page sees it, from the time of its last block in each status: that time plus
 * the real time since, at the rate the blocks' times advance. A box on a real clock advances one ms a ms
 * (rate 1); a demo's box runs a whole number of times faster (`peergrid demo --speed`), and a page that
 * assumed rate 1 would fall behind it by up to a minute of the box's time and offer intervals already
 * closing. The rate is the blocks' time over real time across the samples of the last minutes, rounded
 * to a whole number (below 1.5: 1). A chain time that goes back (another box, a new chain) starts over.
 */
export class BoxClock {
  private readonly samples: { readonly realMs: number; readonly boxMs: number }[] = [];
  rate = 1;

  observe(realMs: number, lastBlockTimeMs: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last !== undefined && (lastBlockTimeMs < last.boxMs || realMs < last.realMs)) this.samples.length = 0;
    this.samples.push({ realMs, boxMs: lastBlockTimeMs });
    if (this.samples.length > CLOCK_SAMPLES_MAX) this.samples.shift();
    const first = this.samples[0] as { realMs: number; boxMs: number };
    const spanMs = realMs - first.realMs;
    if (spanMs >= CLOCK_RATE_SPAN_MS) {
      const r = (lastBlockTimeMs - first.boxMs) / spanMs;
      this.rate = r < 1.5 ? 1 : Math.round(r);
    }
  }

  /** The box's time now (realMs: this browser's clock); before any status, the browser's. */
  now(realMs: number): number {
    const last = this.samples[this.samples.length - 1];
    return last === undefined ? realMs : Math.round(last.boxMs + (realMs - last.realMs) * this.rate);
  }
}

/** Micro-currency units in one currency unit: prices are typed in units, signed in micro-units. */
const MICRO_PER_UNIT = 1_000_000;
const PRICE_DECIMALS_MAX = 6;

/**
 * A price per kWh as the neighbour typed it ("0.15") in micro-currency per kWh, exactly: the digits are
 * shifted, never multiplied as a float (0.15 * 1e6 is not 150000 in binary), and a price finer than one
 * micro-unit, or beyond what an order can carry, is refused rather than rounded or wrapped.
 */
export function parsePriceMicroPerKWh(text: string): number {
  const m = /^\s*([0-9]*)(?:\.([0-9]*))?\s*$/.exec(text);
  const whole = (m?.[1] ?? "").replace(/^0+(?=[0-9])/, "");
  const fraction = m?.[2] ?? "";
  if (m === null || (whole === "" && fraction === "")) throw new Error(`the price per kWh is a plain number such as 0.15, not "${text.slice(0, 24)}"`);
  if (fraction.length > PRICE_DECIMALS_MAX) throw new Error(`the price per kWh has at most ${PRICE_DECIMALS_MAX} decimal places`);
  const tooHigh = `the price per kWh is at most ${PRICE_MICRO_PER_KWH_MAX / MICRO_PER_UNIT}`;
  if (whole.length > 9) throw new Error(tooHigh);
  // Invariant: at most 9 + 6 digits, so the sum is an exact integer (below 2^53) before the bound is checked.
  const micro = Number(whole === "" ? "0" : whole) * MICRO_PER_UNIT + Number(fraction.padEnd(PRICE_DECIMALS_MAX, "0"));
  if (micro > PRICE_MICRO_PER_KWH_MAX) throw new Error(tooHigh);
  return micro;
}

/** Energy in whole Wh as typed ("700"). */
export function parseEnergyWh(text: string): number {
  const t = text.trim();
  if (!/^[0-9]{1,15}$/.test(t)) throw new Error(`the energy is a whole number of Wh such as 500, not "${text.slice(0, 24)}"`);
  const wh = Number(t);
  if (wh < 1 || wh > ORDER_ENERGY_WH_MAX) throw new Error(`the energy is 1 to ${ORDER_ENERGY_WH_MAX} Wh`);
  return wh;
}

/** An order as the ledger takes it: Wh and micro-currency per kWh, integers (parseEnergyWh, parsePriceMicroPerKWh). */
export interface OrderForm {
  readonly side: OrderSideName;
  readonly energyWh: number;
  readonly priceMicroPerKWh: number;
}

export function orderBody(form: OrderForm, intervalStartMs: number, intervalMs: number): TxBody {
  if (!Number.isSafeInteger(form.energyWh) || form.energyWh < 1 || form.energyWh > ORDER_ENERGY_WH_MAX) throw new Error(`energy is a whole number of Wh, 1 to ${ORDER_ENERGY_WH_MAX}`);
  if (!Number.isSafeInteger(form.priceMicroPerKWh) || form.priceMicroPerKWh < 0 || form.priceMicroPerKWh > PRICE_MICRO_PER_KWH_MAX) throw new Error(`the price is a whole number of micro-units per kWh, 0 to ${PRICE_MICRO_PER_KWH_MAX}`);
  return {
    type: "order",
    side: form.side,
    energyWh: form.energyWh,
    priceMicroPerKWh: form.priceMicroPerKWh,
    intervalStartMs,
    // Open until its interval ends: it clears when the interval starts, and a
    // later expiry would only keep a stale order in the book.
    expiresAtMs: intervalStartMs + intervalMs,
    flags: 0,
    counterparty: null,
  };
}

/** What a ledger result code (GET /api/v1/tx/:id `result`) means to the neighbour who signed the transaction. */
const RESULT_WORDS: ReadonlyMap<string, string> = new Map(Object.entries({
  orderEnergy: "the energy is outside the market's limits for one order",
  orderPrice: "the price is outside the market's limits",
  orderInterval: "the interval is not open for orders any more (or not yet); try again",
  orderExpired: "the order expired before it reached a block; try again",
  openOrdersLimit: "you have as many open orders as the market allows; cancel one first",
  orderNotFound: "the order is no longer open (cleared, expired or cancelled already)",
  notOrderAuthor: "the order is not yours",
  notPermitted: "your member's roles do not allow this",
  authorRemoved: "this key's member was removed",
  staleSequence: "another device with this key signed first; try again",
  votingClosed: "voting on this proposal has closed",
  alreadyVoted: "you have voted on this proposal already",
  proposalNotFound: "no such proposal",
}));

export function resultText(result: string): string {
  const words = RESULT_WORDS.get(result);
  return words === undefined ? result : `${words} (${result})`;
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
