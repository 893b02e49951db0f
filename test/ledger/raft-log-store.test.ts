// The durable Raft log (ledger/raft/raft-log-store.ts) and its worker-thread
// facade (ledger/raft/async-raft-log.ts), on real SQLite files in temp dirs:
//   - the store: round trip, suffix replacement, hard state, reopen, the
//     invariants it asserts (and that a refused save writes nothing), foreign
//     and corrupt files refused; compaction and received snapshots, each
//     atomic, and the log loaded after them;
//   - the facade: saves in order, queue full, a failed save stops later ones,
//     a worker crash rejects what is pending, close finishes pending saves,
//     and a 2-second stalled fsync does not stop the main event loop;
//   - kill -9 of a child saving pipelined batches (compactions and received
//     snapshots among them): the file loads to the state after some save no
//     earlier than the last acknowledged one;
//   - a 3-node cluster of the real RaftNode persisting every Ready through
//     AsyncRaftLog, compacting, with nodes restarted from their files and a
//     lagging one caught up by snapshot.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { AssertionError, StoreError } from "../../ledger/errors.js";
import { AsyncRaftLog, RaftLogError, RaftLogErrorCode } from "../../ledger/raft/async-raft-log.js";
import { encodeConfChange } from "../../ledger/raft/conf-change.js";
import { type Entry, EntryKind, type HardState, type Message, type NodeId, RaftNode, type RaftStorage, Role, type Snapshot } from "../../ledger/raft/raft.js";
import { RaftLogStore } from "../../ledger/raft/raft-log-store.js";
import { encodeSnapshot } from "../../ledger/raft/wire.js";
import { Rng } from "../../sim/rng.js";
import { tempDir } from "../helpers/chain-fixture.js";
import { entryData, snapshotData, summarizeStorage } from "../helpers/raft-log-writer.js";
import { stateData, stateOf } from "./raft-net.js";

const enc = new TextEncoder();
const entry = (index: number, term: number, text = `e${index}t${term}`): Entry => ({ index, term, kind: EntryKind.normal, data: enc.encode(text) });
const entriesOf = (from: number, terms: number[]): Entry[] => terms.map((t, i) => entry(from + i, t));
const hs = (term: number, vote: NodeId | null, commit: number): HardState => ({ term, vote, commit });
const termsOf = (s: RaftStorage): number[] => s.entries.map((e) => e.term);
const snap = (index: number, term: number, voters: NodeId[] = [1, 2, 3], learners: NodeId[] = []): Snapshot => ({ index, term, voters, learners, data: enc.encode(`s${index}t${term}`) });

function rejectsWithCode(p: Promise<unknown>, code: string, name?: string): Promise<void> {
  return assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof Error);
    assert.equal((err as { code?: string }).code, code, err.message);
    if (name !== undefined) assert.equal(err.name, name);
    return true;
  });
}

describe("RaftLogStore (synchronous, in this thread)", () => {
  test("a new file loads empty; save then load round-trips hard state and entries", (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    const store = RaftLogStore.open(path);
    assert.deepEqual(store.load(), { hardState: hs(0, null, 0), snapshot: null, entries: [] });
    const entries = [entry(1, 1), entry(2, 1, ""), { index: 3, term: 2, kind: EntryKind.normal, data: new Uint8Array([0, 255, 7]) }];
    store.save(hs(2, 3, 2), entries);
    assert.deepEqual(store.load(), { hardState: hs(2, 3, 2), snapshot: null, entries });
    store.close();
  });

  test("entries replace the stored suffix from entries[0].index on; the prefix is kept", (t) => {
    const store = RaftLogStore.open(join(tempDir(t, "raftlog"), "raft.sqlite"));
    store.save(hs(1, 1, 1), entriesOf(1, [1, 1, 1, 1, 1]));
    // A leader of term 2 overwrites 3.. with a shorter suffix: 5 must go too.
    store.save(hs(2, null, 1), entriesOf(3, [2, 2]));
    const s = store.load();
    assert.deepEqual(termsOf(s), [1, 1, 2, 2]);
    assert.deepEqual(s.entries[1], entry(2, 1), "the prefix is untouched");
    assert.deepEqual(s.entries[3], entry(4, 2));
    // Appending right after the end, and rewriting the same committed entry, are fine.
    store.save(null, [entry(1, 1), entry(2, 1), entry(3, 2), entry(4, 2), entry(5, 2)]);
    assert.deepEqual(termsOf(store.load()), [1, 1, 2, 2, 2]);
    store.close();
  });

  test("a null hard state keeps the stored one; a hard-state-only save keeps the log", (t) => {
    const store = RaftLogStore.open(join(tempDir(t, "raftlog"), "raft.sqlite"));
    store.save(hs(3, 2, 0), entriesOf(1, [1, 3]));
    store.save(null, entriesOf(3, [3]));
    assert.deepEqual(store.load().hardState, hs(3, 2, 0));
    store.save(hs(4, 1, 3), []);
    assert.deepEqual(store.load(), { hardState: hs(4, 1, 3), snapshot: null, entries: entriesOf(1, [1, 3, 3]) });
    store.close();
  });

  test("survives close and reopen", (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    const a = RaftLogStore.open(path);
    a.save(hs(5, 2, 2), entriesOf(1, [1, 4, 5]));
    a.close();
    const b = RaftLogStore.open(path);
    assert.deepEqual(b.load(), { hardState: hs(5, 2, 2), snapshot: null, entries: entriesOf(1, [1, 4, 5]) });
    b.close();
  });

  test("broken invariants are assertion failures and write nothing", (t) => {
    const store = RaftLogStore.open(join(tempDir(t, "raftlog"), "raft.sqlite"));
    store.save(hs(3, 2, 2), entriesOf(1, [1, 2, 3]));
    const before = store.load();
    const cases: [string, () => void][] = [
      ["a hole after the last index", () => store.save(null, entriesOf(5, [3]))],
      ["entries not dense", () => store.save(null, [entry(4, 3), entry(6, 3)])],
      ["terms decreasing inside a save", () => store.save(null, [entry(4, 3), entry(5, 2)])],
      ["terms decreasing against the stored log", () => store.save(null, entriesOf(3, [1]))],
      ["the term going back", () => store.save(hs(2, null, 2), [])],
      ["a second vote in one term", () => store.save(hs(3, 1, 2), [])],
      ["commit going back", () => store.save(hs(3, 2, 1), [])],
      ["commit beyond the log", () => store.save(hs(3, 2, 4), [])],
      ["a committed entry replaced", () => store.save(hs(4, null, 2), entriesOf(2, [4, 4]))],
      ["an entry above the saved term", () => store.save(null, entriesOf(4, [9]))],
      ["index 0", () => store.save(null, [entry(0, 1)])],
    ];
    for (const [what, save] of cases) {
      assert.throws(save, AssertionError, what);
      assert.deepEqual(store.load(), before, `${what}: nothing written`);
    }
    store.close();
  });

  test("refuses a foreign SQLite file, a newer schema and a file that is not SQLite", (t) => {
    const dir = tempDir(t, "raftlog");
    const foreign = join(dir, "foreign.sqlite");
    const other = new Database(foreign);
    other.exec("CREATE TABLE t (x)");
    other.close();
    assert.throws(() => RaftLogStore.open(foreign), (e: unknown) => e instanceof StoreError && e.code === "PG_ERR_STORE_FOREIGN");

    const ledgerLike = join(dir, "ledger.sqlite");
    const l = new Database(ledgerLike);
    l.pragma("application_id = 1346851396"); // "PGRD": the ledger store, not a Raft log
    l.exec("CREATE TABLE meta (k)");
    l.close();
    assert.throws(() => RaftLogStore.open(ledgerLike), (e: unknown) => e instanceof StoreError && e.code === "PG_ERR_STORE_FOREIGN");

    const newer = join(dir, "newer.sqlite");
    RaftLogStore.open(newer).close();
    const n = new Database(newer);
    n.pragma("user_version = 99");
    n.close();
    assert.throws(() => RaftLogStore.open(newer), (e: unknown) => e instanceof StoreError && e.code === "PG_ERR_STORE_VERSION");

    const junk = join(dir, "junk.sqlite");
    writeFileSync(junk, Buffer.alloc(8192, 0x5a));
    assert.throws(() => RaftLogStore.open(junk), (e: unknown) => e instanceof StoreError && e.code === "PG_ERR_STORE_CORRUPT");
  });

  test("refuses on load a file whose rows break the log's invariants (edited behind its back)", (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    const store = RaftLogStore.open(path);
    store.save(hs(2, 1, 1), entriesOf(1, [1, 2, 2]));
    store.close();
    const db = new Database(path);
    db.exec("DELETE FROM entries WHERE idx = 2");
    db.close();
    const again = RaftLogStore.open(path);
    assert.throws(() => again.load(), (e: unknown) => e instanceof StoreError && e.code === "PG_ERR_STORE_CORRUPT" && /hole/.test(e.message));
    again.close();
  });

  test("refuses a version-1 file (no entry kinds, no snapshots) with PG_ERR_STORE_VERSION", (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    RaftLogStore.open(path).close();
    const db = new Database(path);
    db.pragma("user_version = 1");
    db.close();
    assert.throws(() => RaftLogStore.open(path), (e: unknown) => e instanceof StoreError && e.code === "PG_ERR_STORE_VERSION" && /version 1/.test(e.message));
  });

  test("entry kinds round-trip; a conf-change entry that does not decode is refused on save and on load", (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    const store = RaftLogStore.open(path);
    const change: Entry = { index: 2, term: 1, kind: EntryKind.confChange, data: encodeConfChange({ type: "addLearner", node: 7 }) };
    store.save(hs(1, 1, 0), [entry(1, 1), change]);
    assert.deepEqual(store.load().entries[1], change);
    assert.throws(() => store.save(null, [{ ...change, index: 3, data: new Uint8Array([9]) }]), AssertionError);
    assert.throws(() => store.save(null, [{ ...entry(3, 1), kind: 7 as EntryKind }]), AssertionError);
    store.close();
    const db = new Database(path);
    db.prepare("UPDATE entries SET data = X'0109' WHERE idx = 2").run();
    db.close();
    const again = RaftLogStore.open(path);
    assert.throws(() => again.load(), (e: unknown) => e instanceof StoreError && e.code === "PG_ERR_STORE_CORRUPT" && /conf-change entry 2/.test(e.message));
    again.close();
  });

  test("compact stores the snapshot and deletes the entries it covers, in one step; load and reopen see exactly that", (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    const store = RaftLogStore.open(path);
    store.save(hs(2, 1, 8), entriesOf(1, [1, 1, 1, 2, 2, 2, 2, 2, 2, 2]));
    store.compact(snap(6, 2));
    const expected = { hardState: hs(2, 1, 8), snapshot: snap(6, 2), entries: entriesOf(7, [2, 2, 2, 2]) };
    assert.deepEqual(store.load(), expected);
    // The log goes on after a compaction: appends, a conflicting suffix, a second compaction up to the commit.
    store.save(hs(3, null, 8), entriesOf(9, [3, 3, 3]));
    store.compact(snap(8, 2));
    assert.deepEqual(store.load(), { hardState: hs(3, null, 8), snapshot: snap(8, 2), entries: entriesOf(9, [3, 3, 3]) });
    store.save(hs(3, null, 11), []);
    store.compact(snap(11, 3, [1, 2], [3]));
    assert.deepEqual(store.load(), { hardState: hs(3, null, 11), snapshot: snap(11, 3, [1, 2], [3]), entries: [] }, "compacted to the last entry");
    store.save(null, entriesOf(12, [3]));
    store.close();
    const reopened = RaftLogStore.open(path);
    assert.deepEqual(reopened.load(), { hardState: hs(3, null, 11), snapshot: snap(11, 3, [1, 2], [3]), entries: entriesOf(12, [3]) });
    reopened.close();
  });

  test("a received snapshot replaces the whole log, its entries follow it, in one transaction", (t) => {
    const store = RaftLogStore.open(join(tempDir(t, "raftlog"), "raft.sqlite"));
    store.save(hs(2, 1, 3), entriesOf(1, [1, 1, 2, 2, 2, 2])); // 4..6 uncommitted, and they conflict with the leader's
    store.save(hs(4, null, 9), entriesOf(9, [4]), snap(8, 3));
    assert.deepEqual(store.load(), { hardState: hs(4, null, 9), snapshot: snap(8, 3), entries: entriesOf(9, [4]) });
    store.save(hs(4, null, 12), [], snap(12, 4));
    assert.deepEqual(store.load(), { hardState: hs(4, null, 12), snapshot: snap(12, 4), entries: [] }, "older snapshot and every entry replaced");
    store.close();
  });

  test("compactions and snapshot saves that break the invariants are assertion failures and write nothing", (t) => {
    const store = RaftLogStore.open(join(tempDir(t, "raftlog"), "raft.sqlite"));
    store.save(hs(3, 2, 6), entriesOf(1, [1, 1, 2, 2, 3, 3, 3, 3]));
    store.compact(snap(4, 2));
    const before = store.load();
    const cases: [string, () => void][] = [
      ["compacting an uncommitted entry", () => store.compact(snap(7, 3))],
      ["compacting backwards", () => store.compact(snap(3, 1))],
      ["compacting to the same index", () => store.compact(snap(4, 2))],
      ["a snapshot naming the wrong term", () => store.compact(snap(5, 2))],
      ["a snapshot without voters", () => store.compact(snap(5, 3, []))],
      ["a snapshot with a voter that is a learner", () => store.compact(snap(5, 3, [1, 2], [2]))],
      ["a snapshot with unsorted voters", () => store.compact(snap(5, 3, [2, 1]))],
      ["entries inside the snapshot", () => store.save(null, entriesOf(4, [3]))],
      ["a received snapshot before the commit", () => store.save(hs(3, 2, 6), [], snap(5, 3))],
      ["a received snapshot not newer than the stored one", () => store.save(hs(3, 2, 6), [], snap(4, 2))],
      ["a received snapshot beyond the commit saved", () => store.save(hs(3, 2, 6), [], snap(9, 3))],
      ["entries not following a received snapshot", () => store.save(hs(3, 2, 9), entriesOf(11, [3]), snap(9, 3))],
      ["a received snapshot of a term after the saved term", () => store.save(hs(3, 2, 9), [], snap(9, 4))],
    ];
    for (const [what, write] of cases) {
      assert.throws(write, AssertionError, what);
      assert.deepEqual(store.load(), before, `${what}: nothing written`);
    }
    store.close();
  });

  test("refuses on load a snapshot that does not decode, or entries overlapping it", (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    const store = RaftLogStore.open(path);
    store.save(hs(2, 1, 3), entriesOf(1, [1, 1, 2, 2]));
    store.compact(snap(3, 2));
    store.close();
    const edit = (sql: string, pattern: RegExp) => {
      const db = new Database(path);
      db.exec("BEGIN");
      db.exec(sql);
      db.exec("COMMIT");
      db.close();
      const again = RaftLogStore.open(path);
      assert.throws(() => again.load(), (e: unknown) => e instanceof StoreError && e.code === "PG_ERR_STORE_CORRUPT" && pattern.test(e.message), sql);
      again.close();
    };
    edit("UPDATE snapshot SET body = X'00'", /snapshot does not decode/);
    const good = encodeSnapshotHex(snap(3, 2));
    edit(`UPDATE snapshot SET body = X'${good}'; INSERT INTO entries (idx, term, kind, data) VALUES (3, 2, 0, X'')`, /overlaps the snapshot/);
    edit("DELETE FROM entries WHERE idx = 3; UPDATE snapshot SET idx = 2", /snapshot row says 2\/2/);
  });
});

function encodeSnapshotHex(s: Snapshot): string {
  return Buffer.from(encodeSnapshot(s)).toString("hex");
}

describe("AsyncRaftLog (the worker thread)", () => {
  test("pipelined saves apply in call order and load sees them all", async (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    const log = await AsyncRaftLog.open(path);
    const saves: Promise<void>[] = [];
    const order: number[] = [];
    for (let i = 1; i <= 20; i++) {
      // Save i appends entry i: applied out of order, one would leave a hole and be refused.
      saves.push(log.save(hs(i, null, Math.max(0, i - 2)), [entry(i, i)]).then(() => void order.push(i)));
    }
    await Promise.all(saves);
    assert.deepEqual(order, Array.from({ length: 20 }, (_, i) => i + 1));
    const s = await log.load();
    assert.equal(s.entries.length, 20);
    assert.deepEqual(s.hardState, hs(20, null, 18));
    await log.close();
    const reopened = RaftLogStore.open(path);
    assert.deepEqual(reopened.load(), s, "what load() saw is what is on disk");
    reopened.close();
  });

  test("compact and saves with a received snapshot go through the worker in call order", async (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    const log = await AsyncRaftLog.open(path);
    const pending = [
      log.save(hs(1, 1, 3), entriesOf(1, [1, 1, 1, 1])),
      log.compact(snap(3, 1)), // needs the save before it: in order, or it is refused
      log.save(null, entriesOf(5, [1])),
      log.save(hs(2, null, 9), entriesOf(10, [2]), snap(9, 2)),
      log.compact(snap(9, 2, [1, 2])).catch((e: unknown) => e), // not newer: refused, and every later request with it
    ];
    const results = await Promise.all(pending);
    assert.ok(results[4] instanceof AssertionError);
    await rejectsWithCode(log.load(), RaftLogErrorCode.failed);
    await log.close();
    const store = RaftLogStore.open(path);
    assert.deepEqual(store.load(), { hardState: hs(2, null, 9), snapshot: snap(9, 2), entries: entriesOf(10, [2]) });
    store.close();
  });

  test("open refuses a foreign file with the StoreError from the worker", async (t) => {
    const path = join(tempDir(t, "raftlog"), "foreign.sqlite");
    const db = new Database(path);
    db.exec("CREATE TABLE t (x)");
    db.close();
    await rejectsWithCode(AsyncRaftLog.open(path), "PG_ERR_STORE_FOREIGN", "StoreError");
  });

  test("a full queue rejects at once with QUEUE_FULL and writes nothing of that save", async (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    const log = await AsyncRaftLog.open(path, { pendingSavesMax: 2, stallMsPerSave: 200 });
    const a = log.save(hs(1, 1, 0), entriesOf(1, [1]));
    const b = log.save(null, entriesOf(2, [1]));
    const c = log.save(null, entriesOf(3, [1]));
    await rejectsWithCode(c, RaftLogErrorCode.queueFull, "RaftLogError");
    assert.equal(log.pendingCount, 2);
    await Promise.all([a, b]);
    // Backpressure, not failure: once the queue drains the refused save can be retried.
    await log.save(null, entriesOf(3, [1]));
    assert.deepEqual(termsOf(await log.load()), [1, 1, 1]);
    await log.close();
  });

  test("the pending-bytes limit refuses a save that would exceed it", async (t) => {
    const log = await AsyncRaftLog.open(join(tempDir(t, "raftlog"), "raft.sqlite"), { pendingBytesMax: 1000, stallMsPerSave: 100 });
    const big = (index: number): Entry => ({ index, term: 1, kind: EntryKind.normal, data: new Uint8Array(600) });
    const a = log.save(hs(1, null, 0), [big(1)]);
    await rejectsWithCode(log.save(null, [big(2)]), RaftLogErrorCode.queueFull);
    await a;
    await log.save(null, [big(2)]);
    await log.close();
  });

  test("a failed save rejects with its error and every later request fails", async (t) => {
    const log = await AsyncRaftLog.open(join(tempDir(t, "raftlog"), "raft.sqlite"));
    await log.save(hs(1, 1, 0), entriesOf(1, [1]));
    const hole = log.save(null, entriesOf(5, [1])); // valid in itself; refused against the stored log
    const after = log.save(null, entriesOf(2, [1]));
    await assert.rejects(hole, AssertionError);
    await rejectsWithCode(after, RaftLogErrorCode.failed);
    await rejectsWithCode(log.save(null, entriesOf(2, [1])), RaftLogErrorCode.failed);
    await log.close();
  });

  test("a worker crash rejects every pending save with WORKER_DIED; what committed before stays", async (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    const log = await AsyncRaftLog.open(path, { crashAfterSaves: 2 });
    const ok = [log.save(hs(1, 1, 0), entriesOf(1, [1])), log.save(null, entriesOf(2, [1]))];
    const lost = [log.save(null, entriesOf(3, [1])), log.save(null, entriesOf(4, [1]))];
    await Promise.all(ok);
    for (const p of lost) {
      await assert.rejects(p, (err: unknown) => {
        assert.ok(err instanceof RaftLogError);
        assert.equal(err.code, RaftLogErrorCode.workerDied);
        assert.match(err.message, /simulated crash/);
        assert.ok(err.cause instanceof Error);
        return true;
      });
    }
    await rejectsWithCode(log.save(null, entriesOf(3, [1])), RaftLogErrorCode.workerDied);
    await log.close(); // closing a dead log is fine
    const store = RaftLogStore.open(path);
    assert.deepEqual(termsOf(store.load()), [1, 1]);
    store.close();
  });

  test("close finishes the pending saves, then refuses new ones", async (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    const log = await AsyncRaftLog.open(path, { stallMsPerSave: 30 });
    const saves = [1, 2, 3, 4, 5].map((i) => log.save(i === 1 ? hs(1, 2, 0) : null, [entry(i, 1)]));
    const closed = log.close();
    await rejectsWithCode(log.save(null, [entry(6, 1)]), RaftLogErrorCode.closed);
    await Promise.all(saves);
    await closed;
    await log.close(); // idempotent
    const store = RaftLogStore.open(path);
    assert.deepEqual(store.load(), { hardState: hs(1, 2, 0), snapshot: null, entries: entriesOf(1, [1, 1, 1, 1, 1]) });
    store.close();
  });

  test("close gives up on a stall longer than closeTimeoutMs: the worker is terminated, the pending save rejects", async (t) => {
    const path = join(tempDir(t, "raftlog"), "raft.sqlite");
    const log = await AsyncRaftLog.open(path, { stallMsPerSave: 1_500, closeTimeoutMs: 100 });
    const stalled = log.save(hs(1, 1, 0), entriesOf(1, [1]));
    const startedMs = performance.now();
    await log.close();
    assert.ok(performance.now() - startedMs < 1_000, "close did not wait for the whole stall");
    await rejectsWithCode(stalled, RaftLogErrorCode.workerDied);
    const store = RaftLogStore.open(path); // the interrupted transaction left nothing behind
    assert.deepEqual(store.load(), { hardState: hs(0, null, 0), snapshot: null, entries: [] });
    store.close();
  });

  test("a save stalled 2 s in the worker (as a slow fsync) leaves the event loop ticking; the promise waits for the stall", async (t) => {
    const STALL_MS = 2_000;
    const log = await AsyncRaftLog.open(join(tempDir(t, "raftlog"), "raft.sqlite"), { stallMsPerSave: STALL_MS });
    let ticks = 0;
    let gapMaxMs = 0;
    let lastMs = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      gapMaxMs = Math.max(gapMaxMs, now - lastMs);
      lastMs = now;
      ticks++;
    }, 10);
    const startedMs = performance.now();
    let resolvedAtMs = -1;
    try {
      await log.save(hs(1, 1, 0), entriesOf(1, [1])).then(() => (resolvedAtMs = performance.now() - startedMs));
    } finally {
      clearInterval(timer);
    }
    await log.close();
    assert.ok(resolvedAtMs >= STALL_MS - 50, `the save resolved after ${resolvedAtMs} ms, before its 2 s transaction committed`);
    // A blocked loop would show one gap of ~2000 ms and no ticks; loose bounds for a loaded 2-core CI box.
    assert.ok(ticks >= 50, `the 10 ms timer fired only ${ticks} times during a 2 s save`);
    assert.ok(gapMaxMs < 500, `the event loop stalled ${gapMaxMs.toFixed(0)} ms during the save`);
  });
});

// ------------------------------------------------------------------ kill -9

const WRITER = fileURLToPath(new URL("../helpers/raft-log-writer.js", import.meta.url));
const KILLS = Number(process.env.PEERGRID_RAFT_LOG_KILLS ?? 10);
const KILL_SEED = Number(process.env.PEERGRID_RAFT_LOG_KILL_SEED ?? 20260301);
const KILLS_PER_DIR = 4;
const CHILD_WAIT_MAX_MS = 20_000;

/** Run the writer and SIGKILL it `delayMs` after it reported its open log. */
function runWriter(path: string, seed: number, delayMs: number): Promise<{ lines: string[]; stderr: string; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, path, String(seed)], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NODE_TEST_CONTEXT: undefined } });
    const lines: string[] = [];
    let partial = "";
    let stderr = "";
    let timer: NodeJS.Timeout | undefined;
    const guard = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the writer never opened in ${CHILD_WAIT_MAX_MS} ms: ${stderr}`));
    }, CHILD_WAIT_MAX_MS);
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop() ?? "";
      for (const line of parts) {
        lines.push(line);
        if (line.startsWith("open ") && timer === undefined) timer = setTimeout(() => child.kill("SIGKILL"), delayMs);
      }
    });
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.on("error", reject);
    child.on("close", (_code, signal) => {
      clearTimeout(guard);
      clearTimeout(timer);
      resolve({ lines, stderr, signal });
    });
  });
}

test("kill -9 while saving pipelined batches: the file loads to a state no earlier than the last acknowledged save", { timeout: 180_000 }, async (t) => {
  const rng = new Rng(KILL_SEED);
  let path = "";
  let verified: string | null = null; // the summary checked after the previous kill in this dir
  const stats = { kills: 0, aheadOfAck: 0, acks: 0, snapshots: 0 };
  for (let i = 0; i < KILLS; i++) {
    if (i % KILLS_PER_DIR === 0) {
      path = join(tempDir(t, "raftkill"), "raft.sqlite");
      verified = null;
    }
    const delayMs = rng.int(20, 400);
    const what = `kill ${i + 1} (seed ${KILL_SEED}, +${delayMs} ms, ${path})`;
    const run = await runWriter(path, rng.int(1, 1_000_000), delayMs);
    assert.equal(run.signal, "SIGKILL", `${what}: the writer ended by itself: ${run.stderr}`);
    stats.kills++;
    const open = run.lines.find((l) => l.startsWith("open "));
    assert.ok(open !== undefined, `${what}: no open line`);
    if (verified !== null) assert.equal(open.slice(5), verified, `${what}: the writer reopened a different log than the one checked`);
    // The states the file may be in: the one after the last acknowledged save, or after any save begun later.
    const begun = new Map<number, string>([[0, open.slice(5)]]);
    let lastAck = 0;
    for (const l of run.lines) {
      const b = /^begin (\d+) (.*)$/.exec(l);
      if (b !== null) begun.set(Number(b[1]), b[2] as string);
      const a = /^ack (\d+)$/.exec(l);
      if (a !== null) {
        assert.equal(Number(a[1]), lastAck + 1, `${what}: acknowledgements come in save order`);
        lastAck = Number(a[1]);
      }
    }
    stats.acks += lastAck;
    const store = RaftLogStore.open(path);
    const loaded = store.load();
    store.close();
    for (const e of loaded.entries) assert.deepEqual(e.data, entryData(e.term, e.index), `${what}: entry ${e.index} has the bytes it was saved with`);
    if (loaded.snapshot !== null) assert.deepEqual(loaded.snapshot.data, snapshotData(loaded.snapshot.index, loaded.snapshot.term), `${what}: the snapshot's bytes`);
    if (loaded.snapshot !== null) stats.snapshots++;
    const summary = summarizeStorage(loaded);
    const matches = [...begun.entries()].filter(([seq, s]) => seq >= lastAck && s === summary).map(([seq]) => seq);
    assert.ok(matches.length > 0, `${what}: the file holds ${summary}, the state after no save from the acknowledged ${lastAck} (${begun.get(lastAck)}) on`);
    if (Math.max(...matches) > lastAck) stats.aheadOfAck++;
    verified = summary;
  }
  t.diagnostic(`raft log kill -9: ${JSON.stringify(stats)}`);
  assert.ok(stats.acks > 0, "the writers acknowledged saves before they were killed");
  assert.ok(stats.snapshots > 0, "some killed files held a snapshot");
});

// ------------------------------------------------------------------ a cluster of real RaftNodes

const VOTERS: NodeId[] = [1, 2, 3];
const ROUNDS_MAX = 400;
const PUMP_STEPS_MAX = 200;

/** Three RaftNodes, every Ready persisted through its own AsyncRaftLog before its messages go out. */
class DurableCluster {
  readonly nodes = new Map<NodeId, RaftNode>();
  readonly logs = new Map<NodeId, AsyncRaftLog>();
  readonly applied = new Map<NodeId, Entry[]>(VOTERS.map((id) => [id, []]));
  private inbox: Message[] = [];
  private readonly rng = new Rng(7);

  constructor(private readonly dir: string) {}

  path(id: NodeId): string {
    return join(this.dir, `raft-${id}.sqlite`);
  }

  async start(id: NodeId): Promise<RaftNode> {
    assert.ok(!this.nodes.has(id), `node ${id} is down before it starts`);
    const log = await AsyncRaftLog.open(this.path(id));
    const storage = await log.load();
    const node = new RaftNode(
      { id, voters: VOTERS, electionTicks: 10, heartbeatTicks: 2, preVote: true, checkQuorum: true, randomInt: (n) => this.rng.int(0, n - 1) },
      storage,
    );
    // The state machine here is the `applied` list, kept across restarts like a ledger store.
    node.setApplied(Math.min(storage.hardState.commit, (this.applied.get(id) as Entry[]).length));
    this.logs.set(id, log);
    this.nodes.set(id, node);
    return node;
  }

  async stop(id: NodeId): Promise<void> {
    await this.logs.get(id)?.close();
    this.logs.delete(id);
    this.nodes.delete(id);
  }

  node(id: NodeId): RaftNode {
    const n = this.nodes.get(id);
    assert.ok(n !== undefined, `node ${id} is up`);
    return n;
  }

  /** The contract: ready -> durable -> send -> apply -> advance, for every node, until nothing moves. */
  async pump(): Promise<void> {
    for (let step = 0; step < PUMP_STEPS_MAX; step++) {
      let moved = false;
      for (const [id, node] of this.nodes) {
        if (!node.hasReady()) continue;
        moved = true;
        const rd = node.ready();
        await (this.logs.get(id) as AsyncRaftLog).save(rd.hardState, rd.entries, rd.snapshot);
        if (rd.snapshot !== null) this.applied.set(id, stateOf(rd.snapshot.data)); // install it
        this.inbox.push(...rd.messages);
        const applied = this.applied.get(id) as Entry[];
        for (const e of rd.committed) {
          assert.equal(e.index, applied.length + 1, `node ${id} applies in order`);
          applied.push(e);
        }
        node.advance(rd);
      }
      const batch = this.inbox;
      this.inbox = [];
      for (const m of batch) this.nodes.get(m.to)?.stepMessage(m); // a message to a stopped node is lost
      if (!moved && batch.length === 0) return;
    }
    assert.fail("the cluster did not settle");
  }

  /** The application compacts up to what it applied: the node's snapshot goes to the file, in order with the saves. */
  async compact(id: NodeId): Promise<Snapshot> {
    const applied = this.applied.get(id) as Entry[];
    const s = this.node(id).compact(applied.length, stateData(applied));
    await (this.logs.get(id) as AsyncRaftLog).compact(s);
    return s;
  }

  async tickUntil(done: () => boolean, what: string): Promise<void> {
    for (let r = 0; r < ROUNDS_MAX; r++) {
      if (done()) return;
      for (const n of this.nodes.values()) n.tick();
      await this.pump();
    }
    assert.fail(`not reached in ${ROUNDS_MAX} rounds: ${what}`);
  }

  leader(): RaftNode | undefined {
    return [...this.nodes.values()].find((n) => n.role === Role.leader);
  }

  /** Every up node's file holds exactly its in-memory hard state and log (checked through the worker). */
  async checkDurable(): Promise<void> {
    for (const [id, node] of this.nodes) {
      const s = await (this.logs.get(id) as AsyncRaftLog).load();
      assert.deepEqual(s.hardState, node.hardState(), `node ${id}: durable hard state`);
      assert.deepEqual(s.snapshot, node.snapshot, `node ${id}: durable snapshot`);
      assert.deepEqual(s.entries, node.entries(node.firstIndex), `node ${id}: durable log`);
    }
  }

  async close(): Promise<void> {
    for (const id of [...this.logs.keys()]) await this.stop(id);
  }
}

test("a 3-node cluster of the real RaftNode persists through AsyncRaftLog; restarted nodes keep term, vote and log; a lagging one catches up by snapshot", { timeout: 60_000 }, async (t) => {
  const c = new DurableCluster(tempDir(t, "raftcluster"));
  t.after(() => c.close());
  for (const id of VOTERS) await c.start(id);
  await c.tickUntil(() => c.leader() !== undefined, "a leader is elected");
  const propose = async (n: number, tag: string) => {
    for (let i = 0; i < n; i++) {
      const leader = c.leader();
      assert.ok(leader !== undefined && leader.propose(enc.encode(`${tag}-${i}`)), "the leader accepts a proposal");
      await c.pump();
    }
    const target = (c.leader() as RaftNode).lastIndex;
    await c.tickUntil(() => [...c.nodes.values()].every((n) => n.commit === target && n.lastIndex === target), `every node commits ${target}`);
  };
  await propose(5, "a");
  await c.checkDurable();

  // Restart a follower from its file alone: term, vote and log are what it had.
  const follower = VOTERS.find((id) => id !== (c.leader() as RaftNode).id) as NodeId;
  const f = c.node(follower);
  const before = { term: f.term, vote: f.vote, commit: f.commit, entries: f.entries(1) };
  await c.stop(follower);
  await propose(3, "b"); // the other two carry on meanwhile
  const f2 = await c.start(follower);
  assert.equal(f2.term, before.term, "the restarted follower keeps its term");
  assert.equal(f2.vote, before.vote, "the restarted follower keeps its vote");
  assert.ok(f2.commit >= before.commit, "and its commit");
  assert.deepEqual(f2.entries(1), before.entries, "and its log");

  // Restart the leader too: a new election, nothing committed is lost, a vote is never cast twice.
  const oldLeader = c.leader() as RaftNode;
  const led = { id: oldLeader.id, term: oldLeader.term, vote: oldLeader.vote, entries: oldLeader.entries(1) };
  await c.stop(led.id);
  await c.tickUntil(() => c.leader() !== undefined, "the two others elect a new leader");
  const l2 = await c.start(led.id);
  assert.deepEqual({ term: l2.term, vote: l2.vote, entries: l2.entries(1) }, { term: led.term, vote: led.vote, entries: led.entries }, "the restarted leader keeps term, vote and log");
  await propose(4, "c");
  await c.checkDurable();

  // A follower stopped while the others move on and compact comes back to a log it cannot follow: a snapshot.
  const lagging = VOTERS.find((id) => id !== (c.leader() as RaftNode).id) as NodeId;
  await c.stop(lagging);
  await propose(6, "d");
  for (const id of VOTERS) if (id !== lagging) await c.compact(id);
  const back = await c.start(lagging);
  const leaderSnapshot = (c.leader() as RaftNode).snapshot as Snapshot;
  await propose(2, "e");
  assert.deepEqual(back.snapshot, leaderSnapshot, "the lagging follower installed the leader's snapshot");
  await c.checkDurable();
  const again = await (async () => (await c.stop(lagging), c.start(lagging)))();
  assert.deepEqual(again.snapshot, leaderSnapshot, "and reloads it from its file");
  assert.equal(again.firstIndex, leaderSnapshot.index + 1);
  await propose(1, "f");

  // Every node applied the same sequence, and it contains every acknowledged proposal.
  const seqs = VOTERS.map((id) => (c.applied.get(id) as Entry[]).map((e) => `${e.index}:${e.term}:${new TextDecoder().decode(e.data)}`));
  assert.deepEqual(seqs[1], seqs[0]);
  assert.deepEqual(seqs[2], seqs[0]);
  for (const tag of ["a-4", "b-2", "c-3", "d-5", "e-1", "f-0"]) assert.ok(seqs[0]?.some((s) => s.endsWith(`:${tag}`)), `proposal ${tag} is applied everywhere`);
});
