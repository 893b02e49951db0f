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

/** Make a file creation or rename in `dir` durable (POSIX: the entry is data of the directory). */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
