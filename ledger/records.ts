// State records: what the ledger state machine keeps, under which key, and
// the canonical encoding each leaf of the state tree commits to.
//
//   g                     GlobalRecord   member count, active admins and boxes
//   m/<member>            MemberRecord   key, roles, active, last sequence
//   k/<public key hex>    KeyRecord      public key -> member index
//   r/<member>/<meter>    MeterRecord    latest reading and last good counters
//   o/<order id hex>      OrderRecord    an open order
import { assertNever } from "./assert.js";
import { Reader, Writer } from "./codec.js";
import { DecodeReason } from "./errors.js";
import { HASH_BYTES, type Hash, toHex } from "./hash.js";
import {
  AUTHOR_MAX,
  ENERGY_WH_MAX,
  MEMBER_NAME_BYTES_MAX,
  ORDER_ENERGY_WH_MAX,
  OrderSide,
  type OrderSideName,
  POWER_W_ABS_MAX,
  PRICE_MICRO_PER_KWH_MAX,
  PUBLIC_KEY_BYTES,
  SEQ_MAX,
  TIME_MS_MAX,
  decodeMeasurement,
  encodeMeasurement,
} from "./tx.js";

export interface GlobalRecord {
  readonly kind: "global";
  readonly memberCount: number; // next member index
  readonly activeAdmins: number;
  readonly activeBoxes: number;
}

export interface MemberRecord {
  readonly kind: "member";
  readonly index: number;
  readonly publicKey: Uint8Array;
  readonly roles: number;
  readonly active: boolean;
  readonly name: string;
  readonly lastSeq: number; // 0 before the first transaction
  readonly openOrders: number;
}

export interface KeyRecord {
  readonly kind: "key";
  readonly member: number;
}

export interface MeterRecord {
  readonly kind: "meter";
  readonly author: number;
  readonly meterId: number;
  readonly readingCount: number;
  // latest reading, whatever its quality
  readonly timeMs: number;
  readonly importWh: number;
  readonly exportWh: number;
  readonly powerW: number;
  readonly voltagesDeciV: readonly number[];
  readonly frequencyMilliHz: number;
  readonly quality: number;
  // last reading of good quality: the baseline for counter checks (-1 = none yet)
  readonly goodTimeMs: number;
  readonly goodImportWh: number;
  readonly goodExportWh: number;
}

export interface OrderRecord {
  readonly kind: "order";
  readonly id: Hash;
  readonly author: number;
  readonly side: OrderSideName;
  readonly energyWh: number;
  readonly priceMicroPerKWh: number;
  readonly intervalStartMs: number;
  readonly expiresAtMs: number;
  readonly flags: number;
  readonly counterparty: number | null;
  readonly placedHeight: number;
}

export type StateRecord = GlobalRecord | MemberRecord | KeyRecord | MeterRecord | OrderRecord;

export const GLOBAL_KEY = "g";
export const memberKey = (member: number): string => `m/${member}`;
export const publicKeyKey = (publicKey: Uint8Array): string => `k/${toHex(publicKey)}`;
export const meterKey = (author: number, meterId: number): string => `r/${author}/${meterId}`;
export const orderKey = (id: Hash): string => `o/${toHex(id)}`;

const RecordKind = { global: 1, member: 2, key: 3, meter: 4, order: 5 } as const;

export function encodeRecord(rec: StateRecord): Uint8Array {
  const w = new Writer(64);
  w.u8(RecordKind[rec.kind]);
  switch (rec.kind) {
    case "global":
      w.uvar(rec.memberCount).uvar(rec.activeAdmins).uvar(rec.activeBoxes);
      break;
    case "member":
      w.uvar(rec.index).fixed(rec.publicKey, PUBLIC_KEY_BYTES).u8(rec.roles).bool(rec.active);
      w.str(rec.name, MEMBER_NAME_BYTES_MAX).uvar(rec.lastSeq).uvar(rec.openOrders);
      break;
    case "key":
      w.uvar(rec.member);
      break;
    case "meter":
      w.uvar(rec.author).uvar(rec.meterId).uvar(rec.readingCount).uvar(rec.timeMs);
      encodeMeasurement(w, rec);
      w.svar(rec.goodTimeMs).uvar(rec.goodImportWh).uvar(rec.goodExportWh);
      break;
    case "order":
      w.fixed(rec.id, HASH_BYTES).uvar(rec.author).u8(OrderSide[rec.side]).uvar(rec.energyWh);
      w.uvar(rec.priceMicroPerKWh).uvar(rec.intervalStartMs).uvar(rec.expiresAtMs).u8(rec.flags);
      w.uvar(rec.counterparty === null ? 0 : rec.counterparty + 1).uvar(rec.placedHeight);
      break;
    default:
      assertNever(rec, "state record");
  }
  return w.finish();
}

/** Decode a stored record (used when a box reopens its store). */
export function decodeRecord(bytes: Uint8Array): StateRecord {
  const r: Reader = new Reader(bytes);
  const kind = r.u8("record kind");
  let rec: StateRecord;
  switch (kind) {
    case RecordKind.global:
      rec = {
        kind: "global",
        memberCount: r.uvar("memberCount", AUTHOR_MAX + 1),
        activeAdmins: r.uvar("activeAdmins", AUTHOR_MAX + 1),
        activeBoxes: r.uvar("activeBoxes", AUTHOR_MAX + 1),
      };
      break;
    case RecordKind.member:
      rec = {
        kind: "member",
        index: r.uvar("index", AUTHOR_MAX),
        publicKey: r.copy(PUBLIC_KEY_BYTES, "publicKey"),
        roles: r.u8("roles"),
        active: r.bool("active"),
        name: r.str(MEMBER_NAME_BYTES_MAX, "name"),
        lastSeq: r.uvar("lastSeq", SEQ_MAX),
        openOrders: r.uvar("openOrders"),
      };
      break;
    case RecordKind.key:
      rec = { kind: "key", member: r.uvar("member", AUTHOR_MAX) };
      break;
    case RecordKind.meter: {
      const author = r.uvar("author", AUTHOR_MAX);
      const meterId = r.uvar("meterId");
      const readingCount = r.uvar("readingCount");
      const timeMs = r.uvar("timeMs", TIME_MS_MAX);
      const { importWh, exportWh, powerW, voltagesDeciV, frequencyMilliHz, quality } = decodeMeasurement(r);
      const goodTimeMs = r.svar("goodTimeMs", TIME_MS_MAX);
      const goodImportWh = r.uvar("goodImportWh", ENERGY_WH_MAX);
      const goodExportWh = r.uvar("goodExportWh", ENERGY_WH_MAX);
      rec = { kind: "meter", author, meterId, readingCount, timeMs, importWh, exportWh, powerW, voltagesDeciV, frequencyMilliHz, quality, goodTimeMs, goodImportWh, goodExportWh };
      break;
    }
    case RecordKind.order: {
      const id = r.copy(HASH_BYTES, "id");
      const author = r.uvar("author", AUTHOR_MAX);
      const sideCode = r.u8("side");
      // Refuse 2..255 rather than read them as "sell": one record, one encoding.
      if (sideCode > OrderSide.sell) r.fail(DecodeReason.outOfRange, `order side ${sideCode}`);
      const side: OrderSideName = sideCode === OrderSide.buy ? "buy" : "sell";
      const energyWh = r.uvar("energyWh", ORDER_ENERGY_WH_MAX);
      const priceMicroPerKWh = r.uvar("price", PRICE_MICRO_PER_KWH_MAX);
      const intervalStartMs = r.uvar("intervalStartMs", TIME_MS_MAX);
      const expiresAtMs = r.uvar("expiresAtMs", TIME_MS_MAX);
      const flags = r.u8("flags");
      const cp = r.uvar("counterparty", AUTHOR_MAX + 1);
      const placedHeight = r.uvar("placedHeight");
      rec = { kind: "order", id, author, side, energyWh, priceMicroPerKWh, intervalStartMs, expiresAtMs, flags, counterparty: cp === 0 ? null : cp - 1, placedHeight };
      break;
    }
    default:
      return r.fail(DecodeReason.unknownType, `unknown state record kind ${kind}`);
  }
  r.done("state record");
  return rec;
}
