// The durable side of the Raft Ready contract (raft.ts): the log and the hard
// state (term, vote, commit) of one box, in their own SQLite file
// (<data-dir>/raft.sqlite), apart from the ledger store so that a Raft fsync
// never waits behind a block's big write and vice versa.
//
//   save(hardState | null, entries, snapshot | null)
//                                     ONE SQLite transaction, fsynced (WAL,
//                                     synchronous=FULL) before it returns
//   compact(snapshot)                 ONE transaction: store the snapshot and
//                                     delete the entries up to its index
//   load() -> { hardState, snapshot, entries }
//                                     what a restarting RaftNode is built from
//
// `entries` replace the stored suffix from entries[0].index on (delete, then
// insert), exactly as a Ready's entries are defined: a follower that truncates
// a conflicting suffix hands us the new entries from the conflict on. A
// Ready's snapshot (received from the leader) replaces the WHOLE stored log:
// every entry goes, the snapshot is stored, then the Ready's entries (which
// follow it) are inserted. compact() is the other way a snapshot arrives: the
// box's own, from RaftNode.compact(); it keeps the entries after it. (Two
// calls, not one, because the two differ exactly there.) Because every write
// of one call is one transaction, a crash leaves either the state before it
// or the state after it, never a log with a hole, a vote without its term, or
// entries deleted without the snapshot that covers them.
//
// This class is synchronous (better-sqlite3); the event loop is kept free of
// its fsyncs by running it in a worker thread (raft-log-worker.ts).
//
// Invariants (asserted on save; refused as a corrupt file on load):
//   the log is dense from snapshot.index + 1 (1 without a snapshot), terms
//   never decrease along it (from the snapshot's term)
//   snapshot.index <= commit <= lastIndex
//   the stored term never decreases; a vote once cast in a term never changes
//   an entry at or below the stored commit is never replaced by another one
//   the snapshot only moves forward; a compaction covers only committed entries
//
// Schema version 2 (entry kinds, snapshots). A version-1 file is refused
// (PG_ERR_STORE_VERSION): there were no users to migrate.
import Database from "better-sqlite3";
import { configureDurable, fsyncDir } from "../sqlite-files.js";
import { existsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { assert, isSafeUint } from "../assert.js";
import { DecodeError, StoreError } from "../errors.js";
import { decodeConfChange, isValidConfig } from "./conf-change.js";
import { type Entry, EntryKind, type HardState, type RaftStorage, type Snapshot } from "./raft.js";
import { WIRE_SNAPSHOT_DATA_BYTES_MAX, decodeSnapshot, encodeSnapshot } from "./wire.js";

const APPLICATION_ID = 0x5047524c; // "PGRL": a peergrid Raft log (the ledger store is "PGRD")
const SCHEMA_VERSION = 2;

/** Most entries one save may carry (a Ready after a long catch-up is bigger than one message, but bounded). */
export const ENTRIES_PER_SAVE_MAX = 10_000;
/** Largest entry payload (a block of a busy second is well under 1 MiB). */
export const ENTRY_BYTES_MAX = 16 * 1024 * 1024;
/** Most payload bytes in one save (one SQLite transaction, held in memory twice while it crosses to the worker). */
export const SAVE_BYTES_MAX = 64 * 1024 * 1024;
/** A snapshot's application data (the same bound as on the wire). */
export const SNAPSHOT_DATA_BYTES_MAX = WIRE_SNAPSHOT_DATA_BYTES_MAX;
/**
 * Most entries (after the snapshot) load() will read back: the RaftNode holds
 * them all in memory; ~46 days of 1 Hz blocks. Past it load refuses with
 * PG_ERR_RAFT_LOG_TOO_LONG rather than exhaust a 1 GB box: the box must
 * compact (RaftNode.compact + compact()) far more often than that.
 */
export const RAFT_LOG_ENTRIES_MAX = 4_000_000;

const SCHEMA = `
CREATE TABLE hard_state (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  term INTEGER NOT NULL,
  vote INTEGER,
  commit_index INTEGER NOT NULL
);
CREATE TABLE entries (
  idx INTEGER PRIMARY KEY,
  term INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE TABLE snapshot (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  idx INTEGER NOT NULL,
  term INTEGER NOT NULL,
  body BLOB NOT NULL
);
INSERT INTO hard_state (id, term, vote, commit_index) VALUES (1, 0, NULL, 0);
`;

export interface RaftLogStoreOptions {
  /** Skip SQLite's quick_check on open (it reads the whole file: slow on a long log on an SD card). */
  readonly skipQuickCheck?: boolean;
}

type Row = Record<string, unknown>;

function sqliteMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A plain Uint8Array view of a Buffer read from SQLite (no copy; deepEqual-comparable with what was saved). */
function bytesOf(buf: Buffer): Uint8Array {
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

function bufferOf(data: Uint8Array): Buffer {
  return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

/** A snapshot as RaftNode makes one: names an entry, a valid configuration, bounded data. */
export function checkSnapshotArgument(s: Snapshot): void {
  assert(isSafeUint(s.index) && s.index >= 1 && isSafeUint(s.term) && s.term >= 1, "a snapshot names an entry (index and term >= 1)");
  assert(isValidConfig(s), "a snapshot's configuration has a voter, sorted ids, voters and learners disjoint");
  assert(s.data instanceof Uint8Array && s.data.byteLength <= SNAPSHOT_DATA_BYTES_MAX, `snapshot data is at most ${SNAPSHOT_DATA_BYTES_MAX} bytes`);
}

/** Argument checks of save(): the shape of a Ready's snapshot and entries, before any SQL runs. */
export function checkSaveArguments(hardState: HardState | null, entries: readonly Entry[], snapshot: Snapshot | null = null): void {
  if (snapshot !== null) {
    checkSnapshotArgument(snapshot);
    assert(entries.length === 0 || (entries[0] as Entry).index === snapshot.index + 1, "a Ready's entries follow its snapshot");
  }
  assert(entries.length <= ENTRIES_PER_SAVE_MAX, `at most ${ENTRIES_PER_SAVE_MAX} entries per save (got ${entries.length})`);
  if (hardState !== null) {
    assert(isSafeUint(hardState.term) && isSafeUint(hardState.commit), "hard state term and commit are whole numbers");
    assert(hardState.vote === null || isSafeUint(hardState.vote), "a vote names a node id or nobody");
  }
  let bytes = 0;
  entries.forEach((e, i) => {
    assert(isSafeUint(e.index) && e.index >= 1 && isSafeUint(e.term) && e.term >= 1, "entries have positive index and term");
    assert(e.data instanceof Uint8Array && e.data.byteLength <= ENTRY_BYTES_MAX, `entry ${e.index}: data is at most ${ENTRY_BYTES_MAX} bytes`);
    assert(e.kind === EntryKind.normal || e.kind === EntryKind.confChange, `entry ${e.index}: a known kind`);
    if (e.kind === EntryKind.confChange) assert(confChangeError(e.data) === null, `entry ${e.index}: a conf change that decodes`);
    bytes += e.data.byteLength;
    if (i > 0) {
      const prev = entries[i - 1] as Entry;
      assert(e.index === prev.index + 1, `entries are dense (${prev.index} then ${e.index})`);
      assert(e.term >= prev.term, `terms never decrease along the log (${prev.term} then ${e.term} at ${e.index})`);
    }
  });
  assert(bytes <= SAVE_BYTES_MAX, `at most ${SAVE_BYTES_MAX} payload bytes per save (got ${bytes})`);
}

function confChangeError(data: Uint8Array): string | null {
  try {
    decodeConfChange(data);
    return null;
  } catch (err) {
    if (err instanceof DecodeError) return err.message;
    throw err;
  }
}

interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
}

export class RaftLogStore {
  private readonly stmts: ReturnType<RaftLogStore["prepare"]>;

  private constructor(
    private readonly db: Database.Database,
    readonly path: string,
  ) {
    this.stmts = this.prepare();
  }

  /**
   * Open the Raft log at `path`, creating it when the file is missing or is
   * an empty SQLite file (a create that crashed before its first commit
   * leaves exactly that). Refuses anything else that is not a peergrid Raft
   * log with a StoreError: PG_ERR_STORE_CORRUPT (not SQLite, quick_check
   * fails, invariants broken), PG_ERR_STORE_FOREIGN, PG_ERR_STORE_VERSION.
   */
  static open(path: string, options: RaftLogStoreOptions = {}): RaftLogStore {
    const existed = existsSync(path) && statSync(path).size > 0;
    let db: Database.Database;
    try {
      db = new Database(path);
    } catch (err) {
      throw new StoreError("PG_ERR_STORE_CORRUPT", `${path} cannot be opened as SQLite: ${sqliteMessage(err)}`, { cause: err });
    }
    try {
      // Before WAL: switching the journal mode is the first read of the header, where a non-SQLite file fails.
      if (!existed || isEmptyDatabase(db)) {
        initialize(db);
        // SQLite fsyncs the file, not the directory entry that names it: without this a power cut
        // could lose the whole new file, and with it a vote already cast (POSIX: the entry is the directory's data).
        fsyncDir(dirname(path));
      }
      checkFile(db, path, options);
      configureDurable(db);
      return new RaftLogStore(db, path);
    } catch (err) {
      db.close();
      if (err instanceof StoreError) throw err;
      throw new StoreError("PG_ERR_STORE_CORRUPT", `${path} is not a usable peergrid Raft log: ${sqliteMessage(err)}`, { cause: err });
    }
  }

  private prepare() {
    const db = this.db;
    return {
      hardState: db.prepare("SELECT term, vote, commit_index FROM hard_state WHERE id = 1"),
      setHardState: db.prepare("UPDATE hard_state SET term = ?, vote = ?, commit_index = ? WHERE id = 1"),
      lastIndex: db.prepare("SELECT COALESCE(MAX(idx), 0) AS n FROM entries"),
      countEntries: db.prepare("SELECT COUNT(*) AS n FROM entries"),
      termAt: db.prepare("SELECT term FROM entries WHERE idx = ?"),
      truncateFrom: db.prepare("DELETE FROM entries WHERE idx >= ?"),
      deleteUpTo: db.prepare("DELETE FROM entries WHERE idx <= ?"),
      insertEntry: db.prepare("INSERT INTO entries (idx, term, kind, data) VALUES (?, ?, ?, ?)"),
      allEntries: db.prepare("SELECT idx, term, kind, data FROM entries ORDER BY idx"),
      snapshotMeta: db.prepare("SELECT idx, term FROM snapshot WHERE id = 1"),
      snapshot: db.prepare("SELECT idx, term, body FROM snapshot WHERE id = 1"),
      setSnapshot: db.prepare("INSERT OR REPLACE INTO snapshot (id, idx, term, body) VALUES (1, ?, ?, ?)"),
    };
  }

  /**
   * Make `snapshot` (when not null), `hardState` (when not null) and
   * `entries` durable in one SQLite transaction; on return they survive a
   * power cut (WAL fsynced at commit). A snapshot (a Ready's: received from
   * the leader) replaces every stored entry; `entries` then replace any
   * stored entries from entries[0].index on. `beforeCommit` runs inside the
   * transaction after the writes (the test knob that simulates a slow fsync
   * uses it).
   */
  save(hardState: HardState | null, entries: readonly Entry[], snapshot: Snapshot | null = null, beforeCommit?: () => void): void {
    checkSaveArguments(hardState, entries, snapshot);
    this.db.transaction(() => {
      const stored = this.readHardState();
      let snap = this.readSnapshotMeta();
      if (snapshot !== null) {
        assert(snapshot.index > (snap?.index ?? 0), `a received snapshot (${snapshot.index}) is newer than the stored one (${snap?.index ?? 0})`);
        assert(snapshot.index >= stored.commit, `a received snapshot (${snapshot.index}) covers every committed entry (${stored.commit})`);
        assert((hardState?.commit ?? stored.commit) >= snapshot.index, "the commit covers the received snapshot");
        this.stmts.truncateFrom.run(0);
        this.stmts.setSnapshot.run(snapshot.index, snapshot.term, bufferOf(encodeSnapshot(snapshot)));
        snap = snapshot;
      }
      const first = entries[0];
      if (first !== undefined) this.replaceSuffix(first, entries, stored.commit, snap);
      if (hardState !== null) {
        assert(hardState.term >= stored.term, `term never decreases (stored ${stored.term}, saving ${hardState.term})`);
        assert(
          hardState.term > stored.term || stored.vote === null || hardState.vote === stored.vote,
          `a vote is cast at most once per term (term ${stored.term}: stored vote ${stored.vote}, saving ${hardState.vote})`,
        );
        assert(hardState.commit >= stored.commit, `commit never decreases (stored ${stored.commit}, saving ${hardState.commit})`);
        this.stmts.setHardState.run(hardState.term, hardState.vote, hardState.commit);
      }
      const commit = hardState?.commit ?? stored.commit;
      const term = hardState?.term ?? stored.term;
      const lastIndex = this.lastIndex(snap);
      assert(commit <= lastIndex, `commit ${commit} <= last index ${lastIndex}`);
      // An entry's term was some leader's term, which this node adopted (and saved) before taking the entry.
      assert(lastIndex === 0 || this.termAt(lastIndex, snap) <= term, `no entry has a term above the saved term ${term}`);
      beforeCommit?.();
    })();
  }

  /**
   * Store this box's own snapshot (RaftNode.compact's) and delete the entries
   * it covers, in one transaction: a crash leaves the old snapshot with the
   * entries or the new one without them. Only committed entries are compacted.
   */
  compact(snapshot: Snapshot): void {
    checkSnapshotArgument(snapshot);
    this.db.transaction(() => {
      const stored = this.readHardState();
      const snap = this.readSnapshotMeta();
      assert(snapshot.index > (snap?.index ?? 0), `compaction moves forward (stored snapshot ${snap?.index ?? 0}, new ${snapshot.index})`);
      assert(snapshot.index <= stored.commit, `only committed entries are compacted (commit ${stored.commit}, snapshot ${snapshot.index})`);
      assert(this.termAt(snapshot.index, snap) === snapshot.term, `the snapshot names the stored entry ${snapshot.index} (term ${snapshot.term})`);
      this.stmts.deleteUpTo.run(snapshot.index);
      this.stmts.setSnapshot.run(snapshot.index, snapshot.term, bufferOf(encodeSnapshot(snapshot)));
    })();
  }

  private lastIndex(snap: SnapshotMeta | null): number {
    return Math.max((this.stmts.lastIndex.get() as { n: number }).n, snap?.index ?? 0);
  }

  /** Delete the stored entries from first.index on and insert `entries` (first is entries[0]). */
  private replaceSuffix(first: Entry, entries: readonly Entry[], storedCommit: number, snap: SnapshotMeta | null): void {
    const lastIndex = this.lastIndex(snap);
    const snapIndex = snap?.index ?? 0;
    assert(first.index > snapIndex, `entries start at ${first.index}, inside the snapshot (up to ${snapIndex})`);
    assert(first.index <= lastIndex + 1, `entries start at ${first.index}, leaving a hole after the stored last index ${lastIndex}`);
    if (first.index > 1) {
      const prevTerm = this.termAt(first.index - 1, snap);
      assert(prevTerm <= first.term, `terms never decrease along the log (${prevTerm} at ${first.index - 1}, then ${first.term})`);
    }
    // A committed entry may be written again (the same entry: same index and
    // term, Log Matching) but never replaced by another one.
    for (const e of entries) {
      if (e.index > storedCommit) break;
      assert(this.termAt(e.index, snap) === e.term, `committed entry ${e.index} is never replaced`);
    }
    this.stmts.truncateFrom.run(first.index);
    for (const e of entries) this.stmts.insertEntry.run(e.index, e.term, e.kind, bufferOf(e.data));
  }

  private termAt(index: number, snap: SnapshotMeta | null): number {
    if (snap !== null && index === snap.index) return snap.term;
    const row = this.stmts.termAt.get(index) as { term: number } | undefined;
    assert(row !== undefined, `entry ${index} is stored`);
    return row.term;
  }

  private readSnapshotMeta(): SnapshotMeta | null {
    const row = this.stmts.snapshotMeta.get() as Row | undefined;
    return row === undefined ? null : { index: row.idx as number, term: row.term as number };
  }

  private readHardState(): HardState {
    const row = this.stmts.hardState.get() as Row | undefined;
    if (row === undefined) throw new StoreError("PG_ERR_STORE_CORRUPT", `${this.path}: the hard_state row is missing`);
    return { term: row.term as number, vote: (row.vote as number | null) ?? null, commit: row.commit_index as number };
  }

  /**
   * The durable state a restarting RaftNode is built from. What is read from
   * disk is input: a broken invariant here is a corrupt file (StoreError),
   * not a bug of this process.
   */
  load(): RaftStorage {
    return this.db.transaction(() => {
      const hardState = this.readHardState();
      const snapshot = this.readSnapshot(hardState);
      const count = (this.stmts.countEntries.get() as { n: number }).n;
      if (count > RAFT_LOG_ENTRIES_MAX) {
        throw new StoreError("PG_ERR_RAFT_LOG_TOO_LONG", `${this.path} holds ${count} Raft entries after its snapshot; at most ${RAFT_LOG_ENTRIES_MAX} are loaded (compact more often)`);
      }
      const snapIndex = snapshot?.index ?? 0;
      const entries: Entry[] = [];
      for (const row of this.stmts.allEntries.iterate() as Iterable<Row>) {
        const kind = row.kind as number;
        if (kind !== EntryKind.normal && kind !== EntryKind.confChange) this.corrupt(`entry ${row.idx as number} has an unknown kind ${kind}`);
        const e: Entry = { index: row.idx as number, term: row.term as number, kind, data: bytesOf(row.data as Buffer) };
        const prevIndex = entries.at(-1)?.index ?? snapIndex;
        const prevTerm = entries.at(-1)?.term ?? snapshot?.term ?? 0;
        if (e.index !== prevIndex + 1) this.corrupt(`entry ${e.index} follows ${prevIndex}: the log has a hole (or overlaps the snapshot)`);
        if (e.term < prevTerm) this.corrupt(`term ${e.term} at ${e.index} is below term ${prevTerm} before it`);
        if (e.term > hardState.term) this.corrupt(`entry ${e.index} has term ${e.term}, above the saved term ${hardState.term}`);
        if (kind === EntryKind.confChange) {
          const problem = confChangeError(e.data);
          if (problem !== null) this.corrupt(`conf-change entry ${e.index} does not decode (${problem})`);
        }
        entries.push(e);
      }
      const lastIndex = snapIndex + entries.length;
      if (hardState.commit > lastIndex) this.corrupt(`commit ${hardState.commit} is beyond the last index ${lastIndex}`);
      if (hardState.commit < snapIndex) this.corrupt(`commit ${hardState.commit} is before the snapshot at ${snapIndex}`);
      return { hardState, snapshot, entries };
    })();
  }

  private readSnapshot(hardState: HardState): Snapshot | null {
    const row = this.stmts.snapshot.get() as Row | undefined;
    if (row === undefined) return null;
    let s: Snapshot;
    try {
      s = decodeSnapshot(bytesOf(row.body as Buffer));
    } catch (err) {
      if (!(err instanceof DecodeError)) throw err;
      return this.corrupt(`the snapshot does not decode (${err.message})`);
    }
    if (s.index !== row.idx || s.term !== row.term) this.corrupt(`the snapshot row says ${row.idx as number}/${row.term as number}, its body ${s.index}/${s.term}`);
    if (s.term > hardState.term) this.corrupt(`the snapshot's term ${s.term} is above the saved term ${hardState.term}`);
    return s;
  }

  private corrupt(what: string): never {
    throw new StoreError("PG_ERR_STORE_CORRUPT", `${this.path}: ${what}; restore it from a backup or resync from the neighbours`);
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}


function isEmptyDatabase(db: Database.Database): boolean {
  const appId = db.pragma("application_id", { simple: true }) as number;
  const tables = (db.prepare("SELECT COUNT(*) AS n FROM sqlite_master").get() as { n: number }).n;
  return appId === 0 && tables === 0;
}

/** Schema and identity in one transaction: a crash leaves an empty file (re-initialized on open) or a whole one. */
function initialize(db: Database.Database): void {
  db.pragma("synchronous = FULL");
  db.transaction(() => {
    db.exec(SCHEMA);
    db.pragma(`application_id = ${APPLICATION_ID}`);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
  })();
}


function checkFile(db: Database.Database, path: string, options: RaftLogStoreOptions): void {
  const appId = db.pragma("application_id", { simple: true }) as number;
  if (appId !== APPLICATION_ID) {
    throw new StoreError("PG_ERR_STORE_FOREIGN", `${path} is an SQLite file but not a peergrid Raft log (application_id ${appId})`);
  }
  const version = db.pragma("user_version", { simple: true }) as number;
  if (version !== SCHEMA_VERSION) {
    throw new StoreError("PG_ERR_STORE_VERSION", `${path} has Raft log schema version ${version}; this peergrid reads version ${SCHEMA_VERSION}`);
  }
  if (!options.skipQuickCheck) {
    const rows = db.pragma("quick_check(5)") as { quick_check: string }[];
    const problems = rows.map((r) => r.quick_check).filter((m) => m !== "ok");
    if (problems.length > 0) throw new StoreError("PG_ERR_STORE_CORRUPT", `${path} is corrupt (SQLite quick_check: ${problems.join("; ")}); resync from the neighbours`);
  }
}
