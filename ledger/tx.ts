// Transactions: the signed envelope and the bodies of each type.
//
// Envelope (fixed for all types, version 1):
//   u8 version | u8 type | uvar author | uvar seq | body | signature[64]
// `author` is the member index assigned at enrolment (genesis members are
// 0..n-1 in file order), which keeps a reading small: a public key would cost
// 32 bytes on every one of ~5 million readings a day. The signature is Ed25519
// over   TX_SIGN_DOMAIN | chain hash | every byte before the signature,
// so a transaction signed for one chain is worthless on another. The id is
// SHA-256 (tagged) of the whole encoding, signature included.
//
// Types: reading, order, cancel, member, switch (a breaker command and its
// read-back) and island (the microgrid islanded or reconnected), both from a
// member with the controller role, proposal and vote (governance). A new
// type adds a body codec and a type code; the envelope does not change. A decoder that does not know a type refuses it
// with DecodeError(unknown_type).
import { assert, assertNever } from "./assert.js";
import { Reader, Writer } from "./codec.js";
import { DecodeError, DecodeReason } from "./errors.js";
import { HASH_BYTES, type Hash, HashTag, hashTagged, utf8 } from "./hash.js";

export const TX_VERSION = 1;
export const SIGNATURE_BYTES = 64;
export const PUBLIC_KEY_BYTES = 32;

export const TxType = {
  reading: 1,
  order: 2,
  cancel: 3,
  member: 4,
  // Reserved for later issues; the envelope already carries them.
  vote: 5,
  proposal: 6,
  switch: 7,
  island: 8,
} as const;
export type TxTypeName = keyof typeof TxType;

/** Largest encoding accepted for each type (envelope and signature included). */
export const TX_BYTES_MAX = {
  reading: 128,
  order: 160,
  cancel: 128,
  member: 200,
  switch: 128,
  island: 128,
  vote: 128,
  proposal: 1024, // a critical-load list of a few hundred premises
} as const;
export const TX_BYTES_MAX_ANY = 1024;
/** The most premises a critical-load list names. */
export const CRITICAL_LOADS_MAX = 256;

export const AUTHOR_MAX = 2 ** 24 - 1; // member indexes: 16 million members is plenty
export const SEQ_MAX = 2 ** 48 - 1;
export const TIME_MS_MAX = 2 ** 48 - 1; // year 10889
export const ENERGY_WH_MAX = 2 ** 48 - 1;
export const POWER_W_ABS_MAX = 2 ** 31 - 1;
export const METER_ID_MAX = 255;
export const VOLTAGE_DECI_V_MAX = 65_535; // 6553.5 V
export const FREQUENCY_MILLI_HZ_MAX = 100_000; // 100 Hz
export const PHASES_MAX = 3;
export const ORDER_ENERGY_WH_MAX = 2 ** 40 - 1;
export const PRICE_MICRO_PER_KWH_MAX = 2 ** 40 - 1;
/**
 * The most one order can be worth (price x energy / 1000, micro-currency): 2^33, so that the money of
 * a clearing of up to 2^20 orders sums exactly in a double (the genesis keeps its price and size limits
 * within it).
 */
export const ORDER_VALUE_MICRO_MAX = 2 ** 33;
/**
 * The highest utility tariff, imbalance price or fee (100 per kWh): with the market step's bound on the
 * energy one meter settles per period (market/interval.ts METER_PERIOD_WH_MAX) and at most 256 meters a
 * member, what one member owes for one period stays an exact integer.
 */
export const TARIFF_MICRO_PER_KWH_MAX = 100_000_000;
export const MEMBER_NAME_BYTES_MAX = 64;

/** Reading quality flags. 0 means good; any bit set means the value is suspect. */
export const Quality = {
  good: 0,
  outOfRange: 1 << 0,
  counterBackwards: 1 << 1,
  counterJump: 1 << 2,
  stale: 1 << 3,
  commsError: 1 << 4,
  estimated: 1 << 5,
} as const;
export const QUALITY_MASK = 0x3f;

/** Member roles: a bitmask, so a box can also be an admin, a user also an auditor. */
export const Role = {
  box: 1 << 0, // reads meters, proposes blocks, votes in Raft
  user: 1 << 1, // a neighbour who trades
  admin: 1 << 2, // enrols and removes members
  auditor: 1 << 3, // read-only replica (Raft learner)
  controller: 1 << 4, // owns switchgear, runs islanding dispatch
  renewable: 1 << 5, // has local renewable generation (solar): its sells count as local renewable in the market
} as const;
export type RoleName = keyof typeof Role;
export const ROLE_MASK = 0x3f;

export function roleNames(roles: number): RoleName[] {
  return (Object.keys(Role) as RoleName[]).filter((name) => (roles & Role[name]) !== 0);
}

export const OrderSide = { buy: 0, sell: 1 } as const;
export type OrderSideName = keyof typeof OrderSide;

export const OrderFlag = {
  localRenewableOnly: 1 << 0,
} as const;
export const ORDER_FLAG_MASK = 0x01;

export const MemberAction = { enrol: 0, remove: 1, setRoles: 2 } as const;

/**
 * Why the microgrid islanded or reconnected (an island transaction's reason). The trip names are IEEE
 * 1547-2018's: UV1/UV2 under-voltage, OV1/OV2 over-voltage, UF1/UF2 under-frequency, OF1/OF2
 * over-frequency; the others: the controller's grid-available input, no reading from the PCC meter yet,
 * a stale or flagged reading (an unknown grid is unsafe), an operator's command, and reconnection after
 * the grid held inside the reconnection window for its delay.
 */
export const ISLAND_REASONS = ["manual", "controller", "noReading", "stale", "badQuality", "UV1", "UV2", "OV1", "OV2", "UF1", "UF2", "OF1", "OF2", "reconnected"] as const;
export type IslandReason = (typeof ISLAND_REASONS)[number];

/** Why a breaker was switched (a switch transaction's reason; market/dispatch.ts decides). */
export const SWITCH_REASONS = ["manual", "deficit", "restore", "gridUp", "retry", "supplied", "headroom", "minOff", "closeBudget", "order"] as const;
export type SwitchReason = (typeof SWITCH_REASONS)[number];

/** A breaker's state as read back after a command. */
export const BreakerState = { open: 0, closed: 1, unknown: 2 } as const;
export type BreakerStateName = keyof typeof BreakerState;
const BREAKER_STATE_NAMES: readonly BreakerStateName[] = ["open", "closed", "unknown"];

export interface ReadingBody {
  readonly type: "reading";
  readonly meterId: number; // the box's meter channel, 0..255
  readonly timeMs: number;
  readonly importWh: number; // cumulative counter
  readonly exportWh: number; // cumulative counter
  readonly powerW: number; // + importing from the grid, - exporting
  readonly voltagesDeciV: readonly number[]; // one per phase, 0.1 V units
  readonly frequencyMilliHz: number;
  readonly quality: number; // Quality bits
}

export interface OrderBody {
  readonly type: "order";
  readonly side: OrderSideName;
  readonly energyWh: number;
  readonly priceMicroPerKWh: number; // limit price
  readonly intervalStartMs: number; // delivery interval
  readonly expiresAtMs: number;
  readonly flags: number; // OrderFlag bits
  readonly counterparty: number | null; // trade only with this member, or anyone
}

export interface CancelBody {
  readonly type: "cancel";
  readonly orderId: Hash;
}

export type MemberBody =
  | { readonly type: "member"; readonly action: "enrol"; readonly publicKey: Uint8Array; readonly roles: number; readonly name: string }
  | { readonly type: "member"; readonly action: "remove"; readonly subject: number }
  | { readonly type: "member"; readonly action: "setRoles"; readonly subject: number; readonly roles: number };

/** The microgrid controller records that the microgrid islanded or reconnected. */
export interface IslandBody {
  readonly type: "island";
  readonly islanded: boolean;
  readonly timeMs: number; // when the controller decided
  readonly reason: IslandReason;
  /** The measurement that decided it, in the unit its reason implies (deci-volts, milli-Hz; 0 when none). */
  readonly measured: number;
}

/** The microgrid controller switched a premise's breaker: the command and what the device read back. */
export interface SwitchBody {
  readonly type: "switch";
  readonly premise: number; // the premise's member index
  readonly breaker: number; // the premise's breaker channel, 0..255
  readonly close: boolean; // the command: close (power on) or open (shed)
  readonly readback: BreakerStateName; // what the device reported afterwards
  readonly timeMs: number;
  readonly reason: SwitchReason;
  /** The figures behind the decision: supply and the premise's demand, W. */
  readonly supplyW: number;
  readonly demandW: number;
}

/**
 * Market parameters the community may change by vote (ledger/governance.ts); the others (the interval
 * length above all) are fixed for the life of the chain. clearingRule and settlementMode travel as
 * 0/1 (pay-as-clear/pay-as-bid, shadow/binding).
 */
export const GOVERNABLE_MARKET_PARAMS = [
  "priceMinMicroPerKWh",
  "priceMaxMicroPerKWh",
  "orderEnergyMaxWh",
  "openOrdersPerMemberMax",
  "orderIntervalsAheadMax",
  "clearingRule",
  "settlementMode",
  "utilityImportMicroPerKWh",
  "utilityExportMicroPerKWh",
  "imbalanceMicroPerKWh",
  "buyerFeeMicroPerKWh",
  "sellerFeeMicroPerKWh",
] as const;
export type GovernableParam = (typeof GOVERNABLE_MARKET_PARAMS)[number];

/** What a proposal would do once accepted. */
export type ProposalAction =
  | { readonly kind: "criticalLoads"; readonly premises: readonly number[] } // in priority order, first = most critical
  | { readonly kind: "marketParams"; readonly changes: readonly { readonly param: GovernableParam; readonly value: number }[] }
  | { readonly kind: "enrol"; readonly publicKey: Uint8Array; readonly roles: number; readonly name: string }
  | { readonly kind: "remove"; readonly subject: number }
  | { readonly kind: "setRoles"; readonly subject: number; readonly roles: number };
const PROPOSAL_KINDS = ["criticalLoads", "marketParams", "enrol", "remove", "setRoles"] as const;

/** A member proposes a change; the members vote; accepted, it takes effect at effectiveHeight. */
export interface ProposalBody {
  readonly type: "proposal";
  readonly action: ProposalAction;
  readonly votingEndsHeight: number; // the last block that may carry a vote
  readonly effectiveHeight: number; // when accepted, applied at the start of this block (> votingEndsHeight)
}

export interface VoteBody {
  readonly type: "vote";
  readonly proposal: Hash; // the proposal transaction's id
  readonly approve: boolean;
}

export type TxBody = ReadingBody | OrderBody | CancelBody | MemberBody | IslandBody | SwitchBody | ProposalBody | VoteBody;

export interface Tx {
  readonly author: number;
  readonly seq: number;
  readonly body: TxBody;
}

/** A transaction as it travels and is stored: the bytes are the source of truth. */
export interface SignedTx {
  readonly tx: Tx;
  readonly bytes: Uint8Array; // full encoding, signature last
  readonly id: Hash;
}

function encodeBody(w: Writer, body: TxBody): void {
  switch (body.type) {
    case "reading":
      w.uvar(body.meterId).uvar(body.timeMs);
      encodeMeasurement(w, body);
      return;
    case "order":
      w.u8(OrderSide[body.side]).uvar(body.energyWh).uvar(body.priceMicroPerKWh);
      w.uvar(body.intervalStartMs).uvar(body.expiresAtMs).u8(body.flags);
      w.uvar(body.counterparty === null ? 0 : body.counterparty + 1);
      return;
    case "cancel":
      w.fixed(body.orderId, HASH_BYTES);
      return;
    case "island":
      w.bool(body.islanded).uvar(body.timeMs).u8(ISLAND_REASONS.indexOf(body.reason)).svar(body.measured);
      return;
    case "switch":
      w.uvar(body.premise).u8(body.breaker).bool(body.close).u8(BreakerState[body.readback]).uvar(body.timeMs);
      w.u8(SWITCH_REASONS.indexOf(body.reason)).uvar(body.supplyW).uvar(body.demandW);
      return;
    case "vote":
      w.fixed(body.proposal, HASH_BYTES).bool(body.approve);
      return;
    case "proposal":
      encodeProposalAction(w, body.action);
      w.uvar(body.votingEndsHeight).uvar(body.effectiveHeight);
      return;
    case "member":
      w.u8(MemberAction[body.action]);
      switch (body.action) {
        case "enrol":
          w.fixed(body.publicKey, PUBLIC_KEY_BYTES).u8(body.roles).str(body.name, MEMBER_NAME_BYTES_MAX);
          return;
        case "remove":
          w.uvar(body.subject);
          return;
        case "setRoles":
          w.uvar(body.subject).u8(body.roles);
          return;
        default:
          return assertNever(body, "member action");
      }
    default:
      return assertNever(body, "tx body");
  }
}

export function encodeProposalAction(w: Writer, a: ProposalAction): void {
  w.u8(PROPOSAL_KINDS.indexOf(a.kind));
  switch (a.kind) {
    case "criticalLoads":
      w.uvar(a.premises.length);
      for (const p of a.premises) w.uvar(p);
      return;
    case "marketParams":
      w.uvar(a.changes.length);
      for (const c of a.changes) w.u8(GOVERNABLE_MARKET_PARAMS.indexOf(c.param)).uvar(c.value);
      return;
    case "enrol":
      w.fixed(a.publicKey, PUBLIC_KEY_BYTES).u8(a.roles).str(a.name, MEMBER_NAME_BYTES_MAX);
      return;
    case "remove":
      w.uvar(a.subject);
      return;
    case "setRoles":
      w.uvar(a.subject).u8(a.roles);
      return;
    default:
      return assertNever(a, "proposal action");
  }
}

function decodeProposal(r: Reader): ProposalBody {
  const action = decodeProposalAction(r);
  const votingEndsHeight = r.uvar("votingEndsHeight");
  const effectiveHeight = r.uvar("effectiveHeight");
  if (effectiveHeight <= votingEndsHeight) r.fail(DecodeReason.outOfRange, "a proposal takes effect after its voting ends");
  return { type: "proposal", action, votingEndsHeight, effectiveHeight };
}

export function decodeProposalAction(r: Reader): ProposalAction {
  const code = r.u8("proposal kind");
  const kind = PROPOSAL_KINDS[code];
  let action: ProposalAction;
  switch (kind) {
    case "criticalLoads": {
      const n = r.uvar("premise count", CRITICAL_LOADS_MAX);
      const premises: number[] = [];
      for (let i = 0; i < n; i++) premises.push(r.uvar("premise", AUTHOR_MAX));
      if (new Set(premises).size !== premises.length) r.fail(DecodeReason.outOfRange, "a premise named twice in a critical-load list");
      action = { kind, premises };
      break;
    }
    case "marketParams": {
      const n = r.uvar("change count", GOVERNABLE_MARKET_PARAMS.length);
      const changes: { param: GovernableParam; value: number }[] = [];
      for (let i = 0; i < n; i++) {
        const pc = r.u8("parameter");
        const param = GOVERNABLE_MARKET_PARAMS[pc];
        if (param === undefined) r.fail(DecodeReason.outOfRange, `unknown market parameter ${pc}`);
        if (changes.some((c) => c.param === param)) r.fail(DecodeReason.outOfRange, `market parameter ${param} changed twice`);
        changes.push({ param, value: r.uvar(param, PRICE_MICRO_PER_KWH_MAX) });
      }
      if (n === 0) r.fail(DecodeReason.outOfRange, "a market-parameter proposal changes nothing");
      action = { kind, changes };
      break;
    }
    case "enrol":
      action = { kind, publicKey: r.copy(PUBLIC_KEY_BYTES, "publicKey"), roles: decodeRoles(r), name: r.str(MEMBER_NAME_BYTES_MAX, "member name") };
      break;
    case "remove":
      action = { kind, subject: r.uvar("subject", AUTHOR_MAX) };
      break;
    case "setRoles":
      action = { kind, subject: r.uvar("subject", AUTHOR_MAX), roles: decodeRoles(r) };
      break;
    default:
      return r.fail(DecodeReason.outOfRange, `unknown proposal kind ${code}`);
  }
  return action;
}

/** The bytes an author signs over (everything but the signature). */
export function encodeUnsignedTx(tx: Tx): Uint8Array {
  const w = new Writer(96);
  w.u8(TX_VERSION).u8(TxType[tx.body.type]).uvar(tx.author).uvar(tx.seq);
  encodeBody(w, tx.body);
  return w.finish();
}

function decodeReading(r: Reader): ReadingBody {
  const meterId = r.uvar("meterId", METER_ID_MAX);
  const timeMs = r.uvar("timeMs", TIME_MS_MAX);
  return { type: "reading", meterId, timeMs, ...decodeMeasurement(r) };
}

/** What a reading says about its meter; the ledger's meter record (records.ts) holds the last one in the same form. */
export type Measurement = Pick<ReadingBody, "importWh" | "exportWh" | "powerW" | "voltagesDeciV" | "frequencyMilliHz" | "quality">;

/**
 * A reading has one voltage per phase of its meter (1..3), or none when it
 * is flagged (quality not good: the meter did not answer, or gave no
 * voltage): a box records that without inventing voltages it never read.
 */
export function phasesAllowed(phases: number, quality: number): boolean {
  return phases <= PHASES_MAX && (phases >= 1 || quality !== Quality.good);
}

export function encodeMeasurement(w: Writer, m: Measurement): void {
  assert(phasesAllowed(m.voltagesDeciV.length, m.quality), "a reading has 1..3 phases, or none when its quality is not good");
  w.uvar(m.importWh).uvar(m.exportWh).svar(m.powerW).u8(m.voltagesDeciV.length);
  for (const v of m.voltagesDeciV) w.uvar(v);
  w.uvar(m.frequencyMilliHz).u8(m.quality);
}

export function decodeMeasurement(r: Reader): Measurement {
  const importWh = r.uvar("importWh", ENERGY_WH_MAX);
  const exportWh = r.uvar("exportWh", ENERGY_WH_MAX);
  const powerW = r.svar("powerW", POWER_W_ABS_MAX);
  const phases = r.u8("phase count");
  if (phases > PHASES_MAX) r.fail(DecodeReason.outOfRange, `phase count ${phases} not in 0..${PHASES_MAX}`);
  const voltagesDeciV: number[] = [];
  for (let i = 0; i < phases; i++) voltagesDeciV.push(r.uvar("voltage", VOLTAGE_DECI_V_MAX));
  const frequencyMilliHz = r.uvar("frequency", FREQUENCY_MILLI_HZ_MAX);
  const quality = r.u8("quality");
  if ((quality & ~QUALITY_MASK) !== 0) r.fail(DecodeReason.outOfRange, `unknown quality bits ${quality}`);
  if (!phasesAllowed(phases, quality)) r.fail(DecodeReason.outOfRange, "a good reading without phases");
  return { importWh, exportWh, powerW, voltagesDeciV, frequencyMilliHz, quality };
}

function decodeOrder(r: Reader): OrderBody {
  const sideCode = r.u8("side");
  if (sideCode > 1) r.fail(DecodeReason.outOfRange, `order side ${sideCode} is neither buy (0) nor sell (1)`);
  const energyWh = r.uvar("energyWh", ORDER_ENERGY_WH_MAX);
  const priceMicroPerKWh = r.uvar("priceMicroPerKWh", PRICE_MICRO_PER_KWH_MAX);
  const intervalStartMs = r.uvar("intervalStartMs", TIME_MS_MAX);
  const expiresAtMs = r.uvar("expiresAtMs", TIME_MS_MAX);
  const flags = r.u8("flags");
  if ((flags & ~ORDER_FLAG_MASK) !== 0) r.fail(DecodeReason.outOfRange, `unknown order flags ${flags}`);
  const cp = r.uvar("counterparty", AUTHOR_MAX + 1);
  const side: OrderSideName = sideCode === 0 ? "buy" : "sell";
  return { type: "order", side, energyWh, priceMicroPerKWh, intervalStartMs, expiresAtMs, flags, counterparty: cp === 0 ? null : cp - 1 };
}

function decodeRoles(r: Reader): number {
  const roles = r.u8("roles");
  if ((roles & ~ROLE_MASK) !== 0) r.fail(DecodeReason.outOfRange, `unknown role bits ${roles}`);
  return roles;
}

function decodeMember(r: Reader): MemberBody {
  const action = r.u8("member action");
  switch (action) {
    case MemberAction.enrol: {
      const publicKey = r.copy(PUBLIC_KEY_BYTES, "publicKey");
      const roles = decodeRoles(r);
      const name = r.str(MEMBER_NAME_BYTES_MAX, "member name");
      return { type: "member", action: "enrol", publicKey, roles, name };
    }
    case MemberAction.remove:
      return { type: "member", action: "remove", subject: r.uvar("subject", AUTHOR_MAX) };
    case MemberAction.setRoles:
      return { type: "member", action: "setRoles", subject: r.uvar("subject", AUTHOR_MAX), roles: decodeRoles(r) };
    default:
      return r.fail(DecodeReason.outOfRange, `unknown member action ${action}`);
  }
}

function decodeIsland(r: Reader): IslandBody {
  const islanded = r.bool("islanded");
  const timeMs = r.uvar("timeMs", TIME_MS_MAX);
  const code = r.u8("reason");
  const reason = ISLAND_REASONS[code];
  if (reason === undefined) r.fail(DecodeReason.outOfRange, `unknown island reason ${code}`);
  return { type: "island", islanded, timeMs, reason, measured: r.svar("measured", POWER_W_ABS_MAX) };
}

function decodeSwitch(r: Reader): SwitchBody {
  const premise = r.uvar("premise", AUTHOR_MAX);
  const breaker = r.u8("breaker");
  const close = r.bool("close");
  const state = r.u8("readback");
  const readback = BREAKER_STATE_NAMES[state];
  if (readback === undefined) r.fail(DecodeReason.outOfRange, `unknown breaker state ${state}`);
  const timeMs = r.uvar("timeMs", TIME_MS_MAX);
  const code = r.u8("reason");
  const reason = SWITCH_REASONS[code];
  if (reason === undefined) r.fail(DecodeReason.outOfRange, `unknown switch reason ${code}`);
  return { type: "switch", premise, breaker, close, readback, timeMs, reason, supplyW: r.uvar("supplyW", POWER_W_ABS_MAX), demandW: r.uvar("demandW", POWER_W_ABS_MAX) };
}

function typeName(code: number): TxTypeName | null {
  switch (code) {
    case TxType.reading:
      return "reading";
    case TxType.order:
      return "order";
    case TxType.cancel:
      return "cancel";
    case TxType.member:
      return "member";
    case TxType.switch:
      return "switch";
    case TxType.island:
      return "island";
    case TxType.vote:
      return "vote";
    case TxType.proposal:
      return "proposal";
    default:
      return null;
  }
}

/**
 * Decode one signed transaction. Throws DecodeError for anything that is not
 * exactly one canonical encoding: wrong version, unknown type, oversized for
 * its type, truncated, non-minimal or trailing bytes.
 *
 * The result keeps a view of `bytes`, not a copy (a block's transactions
 * share its buffer; a copy each is ~20% of the cost of applying a reading):
 * the caller must not change `bytes` afterwards.
 */
export function decodeTx(bytes: Uint8Array): SignedTx {
  if (bytes.length > TX_BYTES_MAX_ANY) {
    throw new DecodeError(DecodeReason.oversized, `transaction is ${bytes.length} bytes, limit ${TX_BYTES_MAX_ANY}`, 0);
  }
  const head: Reader = new Reader(bytes);
  const version = head.u8("version");
  if (version !== TX_VERSION) head.fail(DecodeReason.unsupportedVersion, `transaction version ${version} (this box reads ${TX_VERSION})`);
  const code = head.u8("type");
  const name = typeName(code);
  if (name === null) head.fail(DecodeReason.unknownType, `unknown transaction type ${code}`);
  if (bytes.length > TX_BYTES_MAX[name]) {
    head.fail(DecodeReason.oversized, `${name} transaction is ${bytes.length} bytes, limit ${TX_BYTES_MAX[name]}`);
  }
  if (bytes.length < head.offset + SIGNATURE_BYTES) head.fail(DecodeReason.truncated, "transaction shorter than its signature");
  const bodyEnd = bytes.length - SIGNATURE_BYTES;
  const r: Reader = new Reader(bytes, head.offset, bodyEnd);
  const author = r.uvar("author", AUTHOR_MAX);
  const seq = r.uvar("seq", SEQ_MAX);
  if (seq === 0) r.fail(DecodeReason.outOfRange, "seq starts at 1");
  let body: TxBody;
  switch (name) {
    case "reading":
      body = decodeReading(r);
      break;
    case "order":
      body = decodeOrder(r);
      break;
    case "cancel":
      body = { type: "cancel", orderId: r.copy(HASH_BYTES, "orderId") };
      break;
    case "member":
      body = decodeMember(r);
      break;
    case "island":
      body = decodeIsland(r);
      break;
    case "switch":
      body = decodeSwitch(r);
      break;
    case "vote":
      body = { type: "vote", proposal: r.copy(HASH_BYTES, "proposal"), approve: r.bool("approve") };
      break;
    case "proposal":
      body = decodeProposal(r);
      break;
    default:
      return assertNever(name, "tx type");
  }
  r.done(`${name} body`);
  return { tx: { author, seq, body }, bytes, id: txId(bytes) };
}

export function txId(bytes: Uint8Array): Hash {
  return hashTagged(HashTag.tx, bytes);
}

export function signatureOf(bytes: Uint8Array): Uint8Array {
  assert(bytes.length > SIGNATURE_BYTES, "signed transaction longer than a signature");
  return bytes.subarray(bytes.length - SIGNATURE_BYTES);
}

const TX_SIGN_DOMAIN = utf8("peergrid/tx/v1\0\0"); // 16 bytes

/** The 48-byte prefix of every transaction signature on one chain. */
export function txSignPrefix(chainHash: Hash): Uint8Array {
  assert(chainHash.length === HASH_BYTES, "chain hash is 32 bytes");
  const prefix = new Uint8Array(TX_SIGN_DOMAIN.length + HASH_BYTES);
  prefix.set(TX_SIGN_DOMAIN, 0);
  prefix.set(chainHash, TX_SIGN_DOMAIN.length);
  return prefix;
}

/**
 * The message a verifier checks, written into `scratch` (which must hold
 * prefix + TX_BYTES_MAX_ANY bytes) and returned as a view of it: verifying a
 * block checks thousands of signatures, and a fresh buffer each is a large
 * share of the cost. Valid until the next call with the same scratch.
 */
export function writeTxSigningMessage(scratch: Uint8Array, prefix: Uint8Array, signed: Uint8Array): Uint8Array {
  const unsignedLength = signed.length - SIGNATURE_BYTES;
  assert(unsignedLength > 0 && scratch.length >= prefix.length + unsignedLength, "signing scratch is large enough");
  scratch.set(prefix, 0);
  scratch.set(signed.subarray(0, unsignedLength), prefix.length);
  return scratch.subarray(0, prefix.length + unsignedLength);
}

/** What the author's key signs: prefix | unsigned encoding. */
export function txSigningMessage(prefix: Uint8Array, signedOrUnsigned: Uint8Array, hasSignature: boolean): Uint8Array {
  const unsignedLength = hasSignature ? signedOrUnsigned.length - SIGNATURE_BYTES : signedOrUnsigned.length;
  const msg = new Uint8Array(prefix.length + unsignedLength);
  msg.set(prefix, 0);
  msg.set(signedOrUnsigned.subarray(0, unsignedLength), prefix.length);
  return msg;
}

/** Anything that can sign (node:crypto in a box, a browser key for a user). */
export interface Signer {
  readonly publicKey: Uint8Array;
  sign(message: Uint8Array): Uint8Array;
}

/**
 * Ed25519 verification, handed to pure cores so that they do no I/O
 * themselves. Contract: verify() is synchronous and keeps no reference to
 * `message` after it returns (callers reuse the buffer).
 */
export interface SignatureVerifier {
  verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean;
}

/** Build, sign and encode a transaction. */
export function signTx(tx: Tx, signer: Signer, chainHash: Hash): SignedTx {
  const unsigned = encodeUnsignedTx(tx);
  const signature = signer.sign(txSigningMessage(txSignPrefix(chainHash), unsigned, false));
  assert(signature.length === SIGNATURE_BYTES, "Ed25519 signatures are 64 bytes");
  const bytes = new Uint8Array(unsigned.length + SIGNATURE_BYTES);
  bytes.set(unsigned, 0);
  bytes.set(signature, unsigned.length);
  const limit = TX_BYTES_MAX[tx.body.type];
  assert(bytes.length <= limit, `${tx.body.type} encodes to ${bytes.length} bytes, limit ${limit}`);
  return { tx, bytes, id: txId(bytes) };
}
