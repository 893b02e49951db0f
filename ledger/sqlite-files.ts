// What every SQLite file of a box shares: durable settings and making a new
// file's directory entry durable. (The ledger store and the Raft log store
// both use these; their schemas and identities are their own.)
import type Database from "better-sqlite3";
import { closeSync, fsyncSync, openSync } from "node:fs";

/** WAL, and fsync at every commit: what a box acknowledged survives a power cut. */
export function configureDurable(db: Database.Database): void {
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = FULL");
  db.pragma("foreign_keys = OFF");
  db.pragma("wal_autocheckpoint = 1000"); // pages; keeps the -wal file near 4 MB
}

/**
 * WAL without an fsync per commit, and no automatic checkpoints: for a file
 * whose every write can be replayed from another durable source (a box's
 * ledger, rebuilt from the committed Raft log). A commit costs no fsync on
 * the thread that writes, so an SD card's stall never blocks the event loop;
 * the file stays consistent after a power cut (WAL), it may only lack the
 * newest transactions. Checkpoints (which fsync) are run by the caller,
 * off the main thread, and tell it how far the file is durable.
 */
export function configureReplayable(db: Database.Database): void {
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = OFF");
  db.pragma("wal_autocheckpoint = 0");
}

/** Make a file creation or rename in `dir` durable (POSIX: the entry is data of the directory). */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
