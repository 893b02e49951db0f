// AsyncRaftLog: the main thread's handle on the Raft log, whose SQLite file
// lives in a worker thread (raft-log-worker.ts). Saves return promises so the
// event loop keeps running while an SD card takes seconds over an fsync.
//
// How a box uses it (the Ready contract of raft.ts):
//   const rd = node.ready();
//   await log.save(rd.hardState, rd.entries, rd.snapshot); // durable: the worker's transaction committed
//   if (rd.snapshot) install(rd.snapshot);
//   send(rd.messages); apply(rd.committed); node.advance(rd);
// and, when the application compacts (its state at `index` described by `data`):
//   log.compact(node.compact(index, data)); // before the next save: requests run in call order
// Meanwhile timers, meter polls and the HTTP API run. The node must not be
// stepped between ready() and advance() in ways that depend on the save (the
// etcd rule); ticks and heartbeats for what is already durable are fine.
//
// Guarantees
//   - saves are applied strictly in call order (one worker, one in-order
//     message queue, a synchronous handler);
//   - a save's promise resolves only after its SQLite transaction committed
//     (WAL fsynced, synchronous=FULL);
//   - at most `pendingSavesMax` requests and `pendingBytesMax` payload bytes
//     wait at once; past either, save() rejects at once with
//     PG_ERR_RAFT_LOG_QUEUE_FULL and NOTHING of that save is written: the
//     caller must retry it (or a later Ready that covers it) before it relies
//     on a later save;
//   - after a save fails, every later request fails (PG_ERR_RAFT_LOG_FAILED):
//     a later Ready must never be durable without an earlier one;
//   - if the worker dies, every pending promise rejects with
//     PG_ERR_RAFT_LOG_WORKER_DIED (the cause attached) and so does every
//     later call; what the worker had committed is on disk and load()s after
//     a restart;
//   - close() lets pending saves finish, closes the file and ends the thread
//     (terminating it after closeTimeoutMs if a stall outlasts that).
import { Worker } from "node:worker_threads";
import { assert } from "../assert.js";
import { AssertionError, PeergridError, StoreError } from "../errors.js";
import type { Entry, HardState, RaftStorage, Snapshot } from "./raft.js";
import { checkSaveArguments, checkSnapshotArgument, type RaftLogStoreOptions } from "./raft-log-store.js";
import type { Reply, Request, SerializedError, WorkerOptions } from "./raft-log-worker.js";

export const RaftLogErrorCode = {
  queueFull: "PG_ERR_RAFT_LOG_QUEUE_FULL",
  closed: "PG_ERR_RAFT_LOG_CLOSED",
  workerDied: "PG_ERR_RAFT_LOG_WORKER_DIED",
  failed: "PG_ERR_RAFT_LOG_FAILED",
} as const;
export type RaftLogErrorCode = (typeof RaftLogErrorCode)[keyof typeof RaftLogErrorCode];

/** A failure of the asynchronous Raft log itself (queue, worker, lifecycle). */
export class RaftLogError extends PeergridError {
  constructor(code: RaftLogErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "RaftLogError";
  }
}

export const PENDING_SAVES_MAX = 64;
export const PENDING_BYTES_MAX = 128 * 1024 * 1024;
export const CLOSE_TIMEOUT_MS = 30_000;

export interface AsyncRaftLogOptions extends RaftLogStoreOptions {
  /** Most requests (saves and loads) waiting for the worker at once. */
  readonly pendingSavesMax?: number;
  /** Most entry payload bytes waiting for the worker at once. */
  readonly pendingBytesMax?: number;
  /** How long close() waits for pending saves before it terminates the worker. */
  readonly closeTimeoutMs?: number;
  /** TEST ONLY: the worker blocks this long inside every save's transaction (a stalled fsync). */
  readonly stallMsPerSave?: number;
  /** TEST ONLY: the worker crashes on the save after this many. */
  readonly crashAfterSaves?: number;
}

interface Pending {
  readonly id: number;
  readonly bytes: number;
  readonly resolve: (value: RaftStorage | undefined) => void;
  readonly reject: (err: Error) => void;
}

const WORKER_URL = new URL("./raft-log-worker.js", import.meta.url);

function revive(e: SerializedError): Error {
  switch (e.name) {
    case "StoreError":
      return new StoreError(e.code ?? "PG_ERR_STORE_CORRUPT", e.message);
    case "AssertionError": {
      // Keep the class: a broken invariant must crash the caller loudly, not be retried.
      const err = new AssertionError("");
      err.message = e.message;
      return err;
    }
    case "RaftLogError":
      return new RaftLogError(RaftLogErrorCode.failed, e.message);
    default:
      return new RaftLogError(RaftLogErrorCode.failed, `the Raft log worker failed: ${e.name}: ${e.message}`);
  }
}

export class AsyncRaftLog {
  private readonly pending = new Map<number, Pending>(); // in request order (Map keeps insertion order)
  private pendingBytes = 0;
  private nextId = 1;
  private dead: RaftLogError | null = null; // the worker is gone
  private failed: Error | null = null; // a request failed: no later one may run
  private closing: Promise<void> | null = null;
  private readonly exited: Promise<void>;
  private readonly pendingSavesMax: number;
  private readonly pendingBytesMax: number;
  private readonly closeTimeoutMs: number;

  private constructor(
    private readonly worker: Worker,
    readonly path: string,
    options: AsyncRaftLogOptions,
  ) {
    this.pendingSavesMax = options.pendingSavesMax ?? PENDING_SAVES_MAX;
    this.pendingBytesMax = options.pendingBytesMax ?? PENDING_BYTES_MAX;
    this.closeTimeoutMs = options.closeTimeoutMs ?? CLOSE_TIMEOUT_MS;
    assert(this.pendingSavesMax >= 1 && this.pendingBytesMax >= 1 && this.closeTimeoutMs >= 1, "limits are positive");
    let lastError: unknown = null;
    worker.on("message", (reply: Reply) => this.onReply(reply));
    worker.on("error", (err) => (lastError = err));
    this.exited = new Promise((resolve) => {
      worker.once("exit", (code) => {
        const cause = lastError ?? new Error(`exit code ${code}`);
        const detail = lastError instanceof Error ? lastError.message : `exit code ${code}`;
        this.dead = new RaftLogError(RaftLogErrorCode.workerDied, `the Raft log worker for ${path} ended (${detail}); pending saves may not be durable`, { cause });
        this.rejectAll(this.dead);
        resolve();
      });
    });
  }

  /** Start the worker and open (or create) the log at `path`; rejects with the worker's StoreError if the file is refused. */
  static open(path: string, options: AsyncRaftLogOptions = {}): Promise<AsyncRaftLog> {
    const workerOptions: WorkerOptions = {
      path,
      ...(options.skipQuickCheck !== undefined && { skipQuickCheck: options.skipQuickCheck }),
      ...(options.stallMsPerSave !== undefined && { stallMsPerSave: options.stallMsPerSave }),
      ...(options.crashAfterSaves !== undefined && { crashAfterSaves: options.crashAfterSaves }),
    };
    const worker = new Worker(WORKER_URL, { workerData: workerOptions });
    return new Promise((resolve, reject) => {
      const onFirst = (reply: Reply) => {
        worker.off("exit", onExit);
        worker.off("error", onError);
        if (reply.type === "opened") resolve(new AsyncRaftLog(worker, path, options));
        else if (reply.type === "openFailed") reject(revive(reply.error));
        else reject(new RaftLogError(RaftLogErrorCode.failed, `the Raft log worker answered ${reply.type} before opening`));
      };
      const onError = (err: Error) => reject(new RaftLogError(RaftLogErrorCode.workerDied, `the Raft log worker for ${path} failed to start: ${err.message}`, { cause: err }));
      const onExit = (code: number) => reject(new RaftLogError(RaftLogErrorCode.workerDied, `the Raft log worker for ${path} exited (code ${code}) before opening`));
      worker.once("message", onFirst);
      worker.once("error", onError);
      worker.once("exit", onExit);
    });
  }

  /** Requests (saves and loads) the worker has not answered yet. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Make `snapshot` (when not null: a Ready's, received from the leader; it
   * replaces every stored entry), `hardState` (when not null) and `entries`
   * durable, in call order. Resolves once the worker's SQLite transaction
   * committed. Everything is copied to the worker now: the caller may reuse
   * its arrays at once.
   */
  save(hardState: HardState | null, entries: readonly Entry[], snapshot: Snapshot | null = null): Promise<void> {
    checkSaveArguments(hardState, entries, snapshot); // a bad Ready is this process's bug: throw here, synchronously
    let bytes = snapshot?.data.byteLength ?? 0;
    for (const e of entries) bytes += e.data.byteLength;
    return this.request({ type: "save", id: this.nextId, hardState, entries, snapshot }, bytes).then(() => undefined);
  }

  /**
   * Store this box's own snapshot (RaftNode.compact's result) and delete the
   * entries it covers, atomically, in call order with the saves (so request
   * it before the next save). Resolves once that transaction committed.
   */
  compact(snapshot: Snapshot): Promise<void> {
    checkSnapshotArgument(snapshot);
    return this.request({ type: "compact", id: this.nextId, snapshot }, snapshot.data.byteLength).then(() => undefined);
  }

  /** The durable hard state, snapshot and log, after every save requested before this call. */
  async load(): Promise<RaftStorage> {
    const storage = await this.request({ type: "load", id: this.nextId }, 0);
    assert(storage !== undefined, "a load answers with the storage");
    return storage;
  }

  private request(req: Request, bytes: number): Promise<RaftStorage | undefined> {
    const refused = this.refusal(bytes);
    if (refused !== null) return Promise.reject(refused);
    assert(req.id === this.nextId, "requests are numbered in order");
    this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(req.id, { id: req.id, bytes, resolve, reject });
      this.pendingBytes += bytes;
      this.worker.postMessage(req);
    });
  }

  private refusal(bytes: number): Error | null {
    if (this.closing !== null) return new RaftLogError(RaftLogErrorCode.closed, `the Raft log ${this.path} is closed`);
    if (this.dead !== null) return this.dead;
    if (this.failed !== null) return new RaftLogError(RaftLogErrorCode.failed, `an earlier save to ${this.path} failed: ${this.failed.message}`, { cause: this.failed });
    if (this.pending.size >= this.pendingSavesMax) {
      return new RaftLogError(RaftLogErrorCode.queueFull, `${this.pending.size} Raft log saves are pending (at most ${this.pendingSavesMax}); nothing of this save was written`);
    }
    if (this.pending.size > 0 && this.pendingBytes + bytes > this.pendingBytesMax) {
      // With nothing pending, one save of any size (bounded by SAVE_BYTES_MAX) is let through: otherwise it could never run.
      return new RaftLogError(RaftLogErrorCode.queueFull, `${this.pendingBytes} bytes of Raft log saves are pending (at most ${this.pendingBytesMax}); nothing of this save was written`);
    }
    return null;
  }

  private onReply(reply: Reply): void {
    if (reply.type === "opened" || reply.type === "openFailed") return; // the open handshake, handled in open()
    const first = this.pending.values().next().value as Pending | undefined;
    // Invariant: the worker answers in request order.
    assert(first !== undefined && first.id === reply.id, `the Raft log worker answers request ${reply.id} in order`);
    this.pending.delete(first.id);
    this.pendingBytes -= first.bytes;
    switch (reply.type) {
      case "done":
        first.resolve(undefined);
        return;
      case "loaded":
        first.resolve(reply.storage);
        return;
      case "failed": {
        const err = revive(reply.error);
        this.failed ??= err;
        first.reject(err);
        return;
      }
    }
  }

  private rejectAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.pendingBytes = 0;
  }

  /** Finish pending saves, close the file and end the worker. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    if (this.dead !== null) return;
    const id = this.nextId++;
    const closed = new Promise<RaftStorage | undefined>((resolve, reject) => {
      this.pending.set(id, { id, bytes: 0, resolve, reject });
      this.worker.postMessage({ type: "close", id } satisfies Request);
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), this.closeTimeoutMs)));
    try {
      const outcome = await Promise.race([closed.then(() => "closed" as const), timeout]);
      if (outcome === "timeout") await this.worker.terminate(); // the exit handler rejects what was pending
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}
