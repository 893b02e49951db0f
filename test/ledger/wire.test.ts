// The Raft wire format: every variant round-trips, and every malformed input
// (each truncation, each trailing byte, wrong version or type, impossible
// entries, unknown entry kinds, malformed conf changes and snapshots,
// oversized counts) is refused with a DecodeError and nothing else.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { DecodeError } from "../../ledger/errors.js";
import { type Entry, EntryKind, type Message } from "../../ledger/raft/raft.js";
import { encodeConfChange } from "../../ledger/raft/conf-change.js";
import {
  WIRE_CONFIG_NODES_MAX,
  WIRE_ENTRIES_PER_MESSAGE_MAX,
  WIRE_MESSAGE_BYTES_MAX,
  WIRE_NODE_ID_MAX,
  WIRE_SNAPSHOT_DATA_BYTES_MAX,
  WIRE_VERSION,
  WireError,
  WireType,
  decodeMessage,
  decodeSnapshot,
  encodeMessage,
  encodeSnapshot,
  encodedSize,
  splitAppend,
} from "../../ledger/raft/wire.js";
import { violations } from "./purity.test.js";

const entries = (prevIndex: number, terms: number[], dataBytes = 3): Entry[] =>
  terms.map((term, i) => ({ term, index: prevIndex + 1 + i, kind: EntryKind.normal, data: new Uint8Array(dataBytes).fill(i + 1) }));

/** One of every variant, with values that exercise multi-byte varints. */
export const SAMPLES: Message[] = [
  { type: "preVote", from: 1, to: 2, term: 7, lastIndex: 300, lastTerm: 6 },
  { type: "preVoteResp", from: 2, to: 1, term: 7, reject: true },
  { type: "vote", from: 1, to: 2, term: 8, lastIndex: 2 ** 40, lastTerm: 7, transfer: true },
  { type: "vote", from: 1, to: 2, term: 8, lastIndex: 0, lastTerm: 0, transfer: false },
  { type: "voteResp", from: 2, to: 1, term: 8, reject: false },
  { type: "append", from: WIRE_NODE_ID_MAX, to: 0, term: 9, prevIndex: 41, prevTerm: 8, commit: 40, entries: entries(41, [8, 9, 9]) },
  { type: "append", from: 1, to: 3, term: 9, prevIndex: 0, prevTerm: 0, commit: 0, entries: [] },
  { type: "append", from: 1, to: 3, term: 9, prevIndex: 5, prevTerm: 9, commit: 5, entries: [{ term: 9, index: 6, kind: EntryKind.normal, data: new Uint8Array(0) }] },
  { type: "appendResp", from: 3, to: 1, term: 9, reject: true, index: 44, hintIndex: 12, hintTerm: 3 },
  { type: "heartbeat", from: 1, to: 2, term: 9, commit: 44 },
  { type: "heartbeatResp", from: 2, to: 1, term: 9 },
  { type: "timeoutNow", from: 1, to: 2, term: 9 },
  {
    type: "append",
    from: 1,
    to: 4,
    term: 9,
    prevIndex: 200,
    prevTerm: 9,
    commit: 199,
    entries: [
      { term: 9, index: 201, kind: EntryKind.confChange, data: encodeConfChange({ type: "addLearner", node: 4 }) },
      { term: 9, index: 202, kind: EntryKind.normal, data: new Uint8Array([9]) },
    ],
  },
  { type: "snapshot", from: 1, to: 4, term: 9, snapshot: { index: 5000, term: 8, voters: [1, 2, 300], learners: [4, 5], data: new Uint8Array([1, 2, 3]) } },
  { type: "snapshot", from: 1, to: 2, term: 1, snapshot: { index: 1, term: 1, voters: [0], learners: [], data: new Uint8Array(0) } },
];

describe("wire: round trip", () => {
  test("every variant has a sample", () => {
    const seen = new Set(SAMPLES.map((m) => m.type));
    assert.deepEqual([...seen].sort(), Object.keys(WireType).sort());
  });

  for (const m of SAMPLES) {
    test(`${m.type} round-trips, and its size is predicted exactly`, () => {
      const bytes = encodeMessage(m);
      assert.equal(bytes.length, encodedSize(m));
      assert.equal(bytes[0], WIRE_VERSION);
      assert.equal(bytes[1], WireType[m.type]);
      assert.deepEqual(decodeMessage(bytes), m);
      assert.deepEqual(encodeMessage(decodeMessage(bytes)), bytes, "canonical: re-encoding gives the same bytes");
    });
  }

  test("decoded entry data do not alias the input buffer", () => {
    const m = SAMPLES[5] as Extract<Message, { type: "append" }>;
    const bytes = encodeMessage(m);
    const d = decodeMessage(bytes) as typeof m;
    bytes.fill(0xee);
    assert.deepEqual(d.entries[0]?.data, m.entries[0]?.data);
  });
});

/** Decoding must throw a DecodeError (never another error, never succeed). */
function refuses(bytes: Uint8Array, reason?: string): void {
  assert.throws(
    () => decodeMessage(bytes),
    (err: unknown) => err instanceof DecodeError && (reason === undefined || err.reason === reason),
    `expected a DecodeError${reason === undefined ? "" : ` (${reason})`}`,
  );
}

describe("wire: refusals", () => {
  for (const m of SAMPLES) {
    test(`${m.type}: every truncation and every trailing byte is refused`, () => {
      const bytes = encodeMessage(m);
      for (let n = 0; n < bytes.length; n++) refuses(bytes.subarray(0, n));
      for (const extra of [0, 1, 0xff]) refuses(Uint8Array.from([...bytes, extra]), "trailing");
    });
  }

  const base = encodeMessage({ type: "heartbeat", from: 1, to: 2, term: 3, commit: 4 });
  const patched = (i: number, v: number): Uint8Array => {
    const b = Uint8Array.from(base);
    b[i] = v;
    return b;
  };

  test("wrong version and unknown types", () => {
    refuses(patched(0, 0), "unsupported_version");
    refuses(patched(0, 1), "unsupported_version"); // version 1 had no entry kinds and no snapshots
    refuses(patched(0, 3), "unsupported_version");
    refuses(patched(1, 0), "unknown_type");
    refuses(patched(1, 11), "unknown_type");
    refuses(patched(1, 0xff), "unknown_type");
  });

  test("a message to oneself, an id out of range, a non-minimal varint, a boolean 2", () => {
    refuses(patched(3, 1), "invalid"); // to = from
    refuses(Uint8Array.from([WIRE_VERSION, WireType.heartbeat, 0x80, 0x80, 0x80, 0x08, 2, 3, 4]), "out_of_range"); // from = 2^24
    refuses(Uint8Array.from([WIRE_VERSION, WireType.heartbeat, 0x81, 0x00, 2, 3, 4]), "non_canonical");
    const resp = encodeMessage({ type: "voteResp", from: 2, to: 1, term: 3, reject: true });
    resp[resp.length - 1] = 2;
    refuses(resp, "non_canonical");
  });

  test("impossible entry terms are refused", () => {
    const hdr = [WIRE_VERSION, WireType.append, 1, 2, 5]; // from 1 to 2, term 5
    // entry := term, kind, data length, data
    // prevIndex 0, prevTerm 0, commit 0, 2 entries: terms 4 then 3 (decreasing)
    refuses(Uint8Array.from([...hdr, 0, 0, 0, 2, 4, 0, 0, 3, 0, 0]), "invalid");
    // entry term 6 after the message term 5
    refuses(Uint8Array.from([...hdr, 0, 0, 0, 1, 6, 0, 0]), "invalid");
    // entry term 2 before prevTerm 3
    refuses(Uint8Array.from([...hdr, 9, 3, 0, 1, 2, 0, 0]), "invalid");
    // prevTerm 6 after the message term 5
    refuses(Uint8Array.from([...hdr, 9, 6, 0, 0]), "invalid");
    // and the same shapes with sane terms decode
    assert.equal((decodeMessage(Uint8Array.from([...hdr, 9, 3, 0, 2, 3, 0, 0, 5, 0, 1, 7])) as Extract<Message, { type: "append" }>).entries[1]?.index, 11);
  });

  test("unknown entry kinds and conf-change entries that do not decode are refused", () => {
    const hdr = [WIRE_VERSION, WireType.append, 1, 2, 5, 0, 0, 0, 1, 5]; // one entry of term 5
    refuses(Uint8Array.from([...hdr, 2, 0]), "invalid"); // kind 2
    refuses(Uint8Array.from([...hdr, 1, 0]), "invalid"); // a conf change with no payload
    refuses(Uint8Array.from([...hdr, 1, 3, 1, 9, 4]), "invalid"); // conf change type 9
    refuses(Uint8Array.from([...hdr, 1, 4, 1, 1, 4, 0]), "invalid"); // trailing byte inside the payload
    const ok = decodeMessage(Uint8Array.from([...hdr, 1, 3, 1, 1, 4])) as Extract<Message, { type: "append" }>;
    assert.deepEqual(ok.entries[0], { term: 5, index: 1, kind: EntryKind.confChange, data: encodeConfChange({ type: "addVoter", node: 4 }) });
  });

  test("snapshots that name no entry, or a configuration that cannot be, are refused", () => {
    const hdr = [WIRE_VERSION, WireType.snapshot, 1, 2, 5]; // from 1 to 2, term 5
    const body = (index: number, term: number, voters: number[], learners: number[]) => [index, term, voters.length, ...voters, learners.length, ...learners, 0];
    assert.equal((decodeMessage(Uint8Array.from([...hdr, ...body(9, 5, [1, 2], [3])])) as Extract<Message, { type: "snapshot" }>).snapshot.index, 9);
    refuses(Uint8Array.from([...hdr, ...body(0, 1, [1], [])]), "invalid"); // index 0
    refuses(Uint8Array.from([...hdr, ...body(9, 0, [1], [])]), "invalid"); // term 0
    refuses(Uint8Array.from([...hdr, ...body(9, 6, [1], [])]), "invalid"); // after the message term
    refuses(Uint8Array.from([...hdr, ...body(9, 5, [], [1])]), "invalid"); // no voter
    refuses(Uint8Array.from([...hdr, ...body(9, 5, [2, 1], [])]), "invalid"); // not increasing
    refuses(Uint8Array.from([...hdr, ...body(9, 5, [1, 1], [])]), "invalid"); // twice
    refuses(Uint8Array.from([...hdr, ...body(9, 5, [1, 2], [2])]), "invalid"); // voter and learner
    refuses(Uint8Array.from([...hdr, 9, 5, 0x81, 0x08, 1]), "oversized"); // 1025 voters
    refuses(Uint8Array.from([...hdr, 9, 5, 1, 1, 0, 0x81, 0x80, 0x40]), "oversized"); // 1 MiB + 1 of data
    const s = { index: 7, term: 3, voters: [1, 2], learners: [9], data: new Uint8Array([4, 5]) };
    assert.deepEqual(decodeSnapshot(encodeSnapshot(s)), s);
    assert.throws(() => decodeSnapshot(Uint8Array.from([...encodeSnapshot(s), 0])), DecodeError);
    const big = { ...s, data: new Uint8Array(WIRE_SNAPSHOT_DATA_BYTES_MAX + 1) };
    assert.throws(() => encodeMessage({ type: "snapshot", from: 1, to: 2, term: 3, snapshot: big }), (e: unknown) => e instanceof WireError && e.code === "PG_ERR_WIRE_OVERSIZED");
    const crowd = { ...s, voters: Array.from({ length: WIRE_CONFIG_NODES_MAX + 1 }, (_, i) => i) };
    assert.throws(() => encodeSnapshot(crowd), { name: "AssertionError" });
  });

  test("oversized counts and lengths are refused before anything is allocated", () => {
    const hdr = [WIRE_VERSION, WireType.append, 1, 2, 5, 0, 0, 0];
    // 4097 entries
    refuses(Uint8Array.from([...hdr, 0x81, 0x20, ...new Array(20).fill(0)]), "oversized");
    // a count the input cannot hold
    refuses(Uint8Array.from([...hdr, 100, 1, 0, 0]), "truncated");
    // an entry claiming 2^30 bytes of data
    refuses(Uint8Array.from([...hdr, 1, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x04]), "oversized");
    // input longer than a whole message
    refuses(new Uint8Array(WIRE_MESSAGE_BYTES_MAX + 1), "oversized");
  });

  test("random bytes only ever yield a DecodeError or a message that re-encodes to themselves", () => {
    let seed = 12345;
    const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
    for (let i = 0; i < 5000; i++) {
      const len = next() % 24;
      const bytes = Uint8Array.from({ length: len }, (_, j) => (j === 0 ? WIRE_VERSION : next()));
      try {
        const m = decodeMessage(bytes);
        assert.deepEqual(encodeMessage(m), bytes);
      } catch (err) {
        assert.ok(err instanceof DecodeError, String(err));
      }
    }
  });
});

describe("wire: encoder limits and splitting appends", () => {
  test("an entry that is not where Raft puts it is a caller bug (assertion), not a silent re-index", () => {
    const bad: Message = { type: "append", from: 1, to: 2, term: 3, prevIndex: 4, prevTerm: 3, commit: 0, entries: [{ term: 3, index: 9, kind: EntryKind.normal, data: new Uint8Array(0) }] };
    assert.throws(() => encodeMessage(bad), { name: "AssertionError" });
  });

  test("too many entries for one message is a WireError; splitAppend cuts them into valid parts", () => {
    const n = WIRE_ENTRIES_PER_MESSAGE_MAX + 10;
    const m: Message = { type: "append", from: 1, to: 2, term: 3, prevIndex: 100, prevTerm: 2, commit: 99, entries: entries(100, new Array(n).fill(3), 1) };
    assert.throws(() => encodeMessage(m), (e: unknown) => e instanceof WireError && e.code === "PG_ERR_WIRE_OVERSIZED");
    const parts = splitAppend(m);
    assert.equal(parts.length, 2);
    const decoded = parts.map((p) => decodeMessage(encodeMessage(p)) as Extract<Message, { type: "append" }>);
    assert.deepEqual(
      decoded.flatMap((p) => p.entries),
      (m as Extract<Message, { type: "append" }>).entries,
    );
    assert.equal(decoded[1]?.prevIndex, 100 + WIRE_ENTRIES_PER_MESSAGE_MAX);
    assert.equal(decoded[1]?.prevTerm, 3);
    for (const p of decoded) assert.equal(p.commit, 99);
  });

  test("splitAppend by bytes keeps each part within the limit and the entries in order", () => {
    const m: Message = { type: "append", from: 1, to: 2, term: 5, prevIndex: 0, prevTerm: 0, commit: 3, entries: entries(0, [1, 2, 3, 4, 5, 5, 5], 100) };
    const parts = splitAppend(m, 300);
    assert.ok(parts.length >= 3);
    for (const p of parts) assert.ok(encodeMessage(p).length <= 300);
    assert.deepEqual(
      parts.flatMap((p) => (p.type === "append" ? p.entries : [])),
      (m as Extract<Message, { type: "append" }>).entries,
    );
    assert.deepEqual(splitAppend(SAMPLES[0] as Message, 300), [SAMPLES[0]]);
    assert.throws(() => splitAppend(m, 100), WireError);
  });
});

for (const file of ["wire.ts", "conf-change.ts"]) {
  test(`${file} is pure (no node:* imports, no clock, no randomness)`, () => {
    const src = readFileSync(fileURLToPath(new URL(`../../../ledger/raft/${file}`, import.meta.url)), "utf8");
    assert.deepEqual(violations(src), []);
  });
}
