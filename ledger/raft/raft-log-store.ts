// The durable side of the Raft Ready contract (raft.ts): the log and the hard
// state (term, vote, commit) of one box, in their own SQLite file
// (<data-dir>/raft.sqlite), apart from the ledger store so that a Raft fsync
// never waits behind a block's big write and vice versa.
//
//   save(hardState | null, entries)   ONE SQLite transaction, fsynced (WAL,
//                                     synchronous=FULL) before it returns
//   load() -> { hardState, entries }  what a restarting RaftNode is built from
//
// `entries` replace the stored suffix from entries[0].index on (delete, then
// insert), exactly as a Ready's entries are defined: a follower that truncates
// a conflicting suffix hands us the new entries from the conflict on. Because
// the truncation, the inserts and the hard state are one transaction, a crash
// leaves either the state before the save or the state after it, never a log
// with a hole or a vote without its term.
//
// This class is synchronous (better-sqlite3); the event loop is kept free of
// its fsyncs by running it in a worker thread (raft-log-worker.ts).
//
// Invariants (asserted on save; refused as a corrupt file on load):
//   the log is dense from index 1, terms never decrease along it
//   commit <= lastIndex
//   the stored term never decreases; a vote once cast in a term never changes
//   an entry at or below the stored commit is never replaced by another one
// Not yet: snapshots / log compaction (the log starts at index 1), which the
// Raft issue still owes; see RAFT_LOG_ENTRIES_MAX.
import Database from "better-sqlite3";
import { configureDurable, fsyncDir } from "../sqlite-files.js";
import { existsSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { assert, isSafeUint } from "../assert.js";
import { StoreError } from "../errors.js";
import type { Entry, HardState, RaftStorage } from "./raft.js";

const APPLICATION_ID = 0x5047524c; // "PGRL": a peergrid Raft log (the ledger store is "PGRD")
const SCHEMA_VERSION = 1;

/** Most entries one save may carry (a Ready after a long catch-up is bigger than one message, but bounded). */
export const ENTRIES_PER_SAVE_MAX = 10_000;
/** Largest entry payload (a block of a busy second is well under 1 MiB). */
export const ENTRY_BYTES_MAX = 16 * 1024 * 1024;
/** Most payload bytes in one save (one SQLite transaction, held in memory twice while it crosses to the worker). */
export const SAVE_BYTES_MAX = 64 * 1024 * 1024;
/**
 * Most entries load() will read back. Without snapshots the whole log is held
 * in memory by the RaftNode; ~46 days of 1 Hz blocks. Past it load refuses
 * with PG_ERR_RAFT_LOG_TOO_LONG rather than exhaust a 1 GB box: compaction
 * (snapshots) is what lifts this.
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
  data BLOB NOT NULL
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

/** Argument checks of save(): the shape of a Ready's entries, before any SQL runs. */
export function checkSaveArguments(hardState: HardState | null, entries: readonly Entry[]): void {
  assert(entries.length <= ENTRIES_PER_SAVE_MAX, `at most ${ENTRIES_PER_SAVE_MAX} entries per save (got ${entries.length})`);
  if (hardState !== null) {
    assert(isSafeUint(hardState.term) && isSafeUint(hardState.commit), "hard state term and commit are whole numbers");
    assert(hardState.vote === null || isSafeUint(hardState.vote), "a vote names a node id or nobody");
  }
  let bytes = 0;
  entries.forEach((e, i) => {
    assert(isSafeUint(e.index) && e.index >= 1 && isSafeUint(e.term) && e.term >= 1, "entries have positive index and term");
    assert(e.data instanceof Uint8Array && e.data.byteLength <= ENTRY_BYTES_MAX, `entry ${e.index}: data is at most ${ENTRY_BYTES_MAX} bytes`);
    bytes += e.data.byteLength;
    if (i > 0) {
      const prev = entries[i - 1] as Entry;
      assert(e.index === prev.index + 1, `entries are dense (${prev.index} then ${e.index})`);
      assert(e.term >= prev.term, `terms never decrease along the log (${prev.term} then ${e.term} at ${e.index})`);
    }
  });
  assert(bytes <= SAVE_BYTES_MAX, `at most ${SAVE_BYTES_MAX} payload bytes per save (got ${bytes})`);
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
      insertEntry: db.prepare("INSERT INTO entries (idx, term, data) VALUES (?, ?, ?)"),
      allEntries: db.prepare("SELECT idx, term, data FROM entries ORDER BY idx"),
    };
  }

  /**
   * Make `hardState` (when not null) and `entries` durable in one SQLite
   * transaction; on return they survive a power cut (WAL fsynced at commit).
   * `entries` replace any stored entries from entries[0].index on.
   * `beforeCommit` runs inside the transaction after the writes (the test
   * knob that simulates a slow fsync uses it).
   */
  save(hardState: HardState | null, entries: readonly Entry[], beforeCommit?: () => void): void {
    checkSaveArguments(hardState, entries);
    this.db.transaction(() => {
      const stored = this.readHardState();
      const first = entries[0];
      if (first !== undefined) this.replaceSuffix(first, entries, stored.commit);
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
      const lastIndex = (this.stmts.lastIndex.get() as { n: number }).n;
      assert(commit <= lastIndex, `commit ${commit} <= last index ${lastIndex}`);
      // An entry's term was some leader's term, which this node adopted (and saved) before taking the entry.
      assert(lastIndex === 0 || this.termAt(lastIndex) <= term, `no entry has a term above the saved term ${term}`);
      beforeCommit?.();
    })();
  }

  /** Delete the stored entries from first.index on and insert `entries` (first is entries[0]). */
  private replaceSuffix(first: Entry, entries: readonly Entry[], storedCommit: number): void {
    const lastIndex = (this.stmts.lastIndex.get() as { n: number }).n;
    assert(first.index <= lastIndex + 1, `entries start at ${first.index}, leaving a hole after the stored last index ${lastIndex}`);
    if (first.index > 1) {
      const prevTerm = this.termAt(first.index - 1);
      assert(prevTerm <= first.term, `terms never decrease along the log (${prevTerm} at ${first.index - 1}, then ${first.term})`);
    }
    // A committed entry may be written again (the same entry: same index and
    // term, Log Matching) but never replaced by another one.
    for (const e of entries) {
      if (e.index > storedCommit) break;
      assert(this.termAt(e.index) === e.term, `committed entry ${e.index} is never replaced`);
    }
    this.stmts.truncateFrom.run(first.index);
    for (const e of entries) this.stmts.insertEntry.run(e.index, e.term, bufferOf(e.data));
  }

  private termAt(index: number): number {
    const row = this.stmts.termAt.get(index) as { term: number } | undefined;
    assert(row !== undefined, `entry ${index} is stored`);
    return row.term;
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
      const count = (this.stmts.countEntries.get() as { n: number }).n;
      if (count > RAFT_LOG_ENTRIES_MAX) {
        throw new StoreError("PG_ERR_RAFT_LOG_TOO_LONG", `${this.path} holds ${count} Raft entries; at most ${RAFT_LOG_ENTRIES_MAX} are loaded (log compaction is not implemented yet)`);
      }
      const entries: Entry[] = [];
      for (const row of this.stmts.allEntries.iterate() as Iterable<Row>) {
        const e: Entry = { index: row.idx as number, term: row.term as number, data: bytesOf(row.data as Buffer) };
        const prev = entries.at(-1);
        if (e.index !== entries.length + 1) this.corrupt(`entry ${e.index} follows ${prev?.index ?? 0}: the log has a hole`);
        if (prev !== undefined && e.term < prev.term) this.corrupt(`term ${e.term} at ${e.index} is below term ${prev.term} before it`);
        if (e.term > hardState.term) this.corrupt(`entry ${e.index} has term ${e.term}, above the saved term ${hardState.term}`);
        entries.push(e);
      }
      if (hardState.commit > entries.length) this.corrupt(`commit ${hardState.commit} is beyond the last index ${entries.length}`);
      return { hardState, entries };
    })();
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
