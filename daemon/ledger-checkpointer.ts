// Durability of a box's ledger without an fsync on the event loop.
//
// A box opens its ledger.sqlite "replayable" (ledger/sqlite-files.ts): WAL,
// no fsync per block, no automatic checkpoint. Every block it applies is a
// committed Raft entry that its Raft log (raft.sqlite, fsynced from its own
// worker) still holds, so a power cut that loses the newest blocks from the
// ledger loses nothing: on restart the box re-applies them from the log.
//
// This worker thread holds a second connection to the same file and runs
// checkpoints (which fsync the WAL and the database) on request. Once a
// checkpoint has copied every frame, every block written before the request
// was made is durable in the ledger: `durableRaftIndex` is what the main
// thread may then compact its Raft log up to, never further.
//
// Protocol: the main thread posts { raftIndex } (the ledger head's Raft index
// at the moment of asking; everything up to it is already committed to the
// WAL); the worker answers { raftIndex, complete } after
// PRAGMA wal_checkpoint(PASSIVE). PASSIVE never blocks the writer; a
// checkpoint that could not copy every frame (a reader held an old snapshot)
// reports complete = false and the next one tries again.
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { assert } from "../ledger/assert.js";

interface Request {
  readonly raftIndex: number;
}
interface Reply {
  readonly raftIndex: number;
  readonly complete: boolean;
  readonly error?: string;
}

if (!isMainThread && parentPort !== null && (workerData as { ledgerCheckpointer?: string } | null)?.ledgerCheckpointer !== undefined) {
  const port = parentPort;
  const db = new Database((workerData as { ledgerCheckpointer: string }).ledgerCheckpointer, { fileMustExist: true });
  db.pragma("synchronous = NORMAL");
  db.pragma("wal_autocheckpoint = 0");
  port.on("message", (req: Request | "close") => {
    if (req === "close") {
      db.close();
      port.close();
      return;
    }
    try {
      const [row] = db.pragma("wal_checkpoint(PASSIVE)") as { busy: number; log: number; checkpointed: number }[];
      const complete = row !== undefined && row.busy === 0 && row.log === row.checkpointed;
      port.postMessage({ raftIndex: req.raftIndex, complete } satisfies Reply);
    } catch (err) {
      port.postMessage({ raftIndex: req.raftIndex, complete: false, error: err instanceof Error ? err.message : String(err) } satisfies Reply);
    }
  });
}

/** The main thread's side: ask for checkpoints, learn how far the ledger is durable. */
export class LedgerCheckpointer {
  private readonly worker: Worker;
  private inFlight = false;
  private closed = false;
  /** Every block with a Raft index up to this is fsynced in ledger.sqlite. */
  durableRaftIndex: number;
  failures = 0;
  lastError: string | null = null;

  constructor(path: string, durableRaftIndex: number) {
    this.durableRaftIndex = durableRaftIndex;
    this.worker = new Worker(new URL(import.meta.url), { workerData: { ledgerCheckpointer: path } });
    this.worker.on("message", (r: Reply) => {
      this.inFlight = false;
      if (r.complete) this.durableRaftIndex = Math.max(this.durableRaftIndex, r.raftIndex);
      if (r.error !== undefined) {
        this.failures++;
        this.lastError = r.error;
      }
    });
    this.worker.on("error", (err) => {
      this.failures++;
      this.lastError = err.message;
    });
  }

  /** Ask for a checkpoint covering every block up to `raftIndex` (already written); one at a time. */
  request(raftIndex: number): void {
    assert(raftIndex >= 0, "a raft index");
    if (this.inFlight || this.closed || raftIndex <= this.durableRaftIndex) return;
    this.inFlight = true;
    this.worker.postMessage({ raftIndex } satisfies Request);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const exited = new Promise<void>((resolve) => this.worker.once("exit", () => resolve()));
    this.worker.postMessage("close");
    const timer = setTimeout(() => void this.worker.terminate(), 10_000);
    await exited;
    clearTimeout(timer);
  }
}
