// The worker thread that owns the Raft log's SQLite file (raft-log-store.ts),
// so that an fsync stalling for seconds on a tired SD card blocks this thread
// and not the daemon's event loop: heartbeats for what is already durable,
// meter polls and the HTTP API keep running meanwhile. The main-thread side
// is AsyncRaftLog (async-raft-log.ts); this file is loaded from dist/ as
// compiled JavaScript.
//
// Protocol (structured-clone messages; the main thread numbers requests):
//   workerData: WorkerOptions        -> opens the store, answers `opened` or `openFailed`
//   { type: "save", id, ... }        -> `done` { id } once the SQLite transaction committed
//   { type: "compact", id, snapshot } -> `done` { id } once the compaction committed
//   { type: "load", id }             -> `loaded` { id, storage }
//   { type: "close", id }            -> closes the file, answers `done` { id }, then the thread ends
// Any failure answers `failed` { id, error }.
//
// Order: messages are handled one at a time, in arrival order, by a
// synchronous handler, so saves are applied strictly in the order they were
// posted. After a failed save every later request is refused (the log would
// otherwise hold a later Ready without an earlier one: a hole in what was
// promised).
import { isMainThread, parentPort, workerData } from "node:worker_threads";
import { assert, assertNever } from "../assert.js";
import type { Entry, HardState, RaftStorage, Snapshot } from "./raft.js";
import { RaftLogStore, type RaftLogStoreOptions } from "./raft-log-store.js";

export interface WorkerOptions extends RaftLogStoreOptions {
  readonly path: string;
  /** TEST ONLY: block this thread this long inside every save's transaction, as a stalled fsync would. */
  readonly stallMsPerSave?: number;
  /** TEST ONLY: after this many saves committed, the next one crashes the thread (an uncaught error). */
  readonly crashAfterSaves?: number;
}

export type Request =
  | { readonly type: "save"; readonly id: number; readonly hardState: HardState | null; readonly entries: readonly Entry[]; readonly snapshot: Snapshot | null }
  | { readonly type: "compact"; readonly id: number; readonly snapshot: Snapshot }
  | { readonly type: "load"; readonly id: number }
  | { readonly type: "close"; readonly id: number };

export interface SerializedError {
  readonly name: string;
  readonly code: string | null;
  readonly message: string;
}

export type Reply =
  | { readonly type: "opened" }
  | { readonly type: "openFailed"; readonly error: SerializedError }
  | { readonly type: "done"; readonly id: number }
  | { readonly type: "loaded"; readonly id: number; readonly storage: RaftStorage }
  | { readonly type: "failed"; readonly id: number; readonly error: SerializedError };

/** The longest simulated stall: a test knob must not hang a thread forever. */
const STALL_MS_MAX = 60_000;

function serialize(err: unknown): SerializedError {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return { name: err.name, code: typeof code === "string" ? code : null, message: err.message };
  }
  return { name: "Error", code: null, message: String(err) };
}

/** Block this thread for `ms` as a stalled fsync does (not a timer: nothing else runs here meanwhile). */
function stall(ms: number): void {
  assert(Number.isInteger(ms) && ms >= 0 && ms <= STALL_MS_MAX, `a stall is 0..${STALL_MS_MAX} ms`);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function run(options: WorkerOptions): void {
  const port = parentPort;
  assert(port !== null, "runs as a worker thread");
  const send = (reply: Reply) => port.postMessage(reply);
  let store: RaftLogStore;
  try {
    store = RaftLogStore.open(options.path, options);
  } catch (err) {
    send({ type: "openFailed", error: serialize(err) });
    port.close();
    return;
  }
  send({ type: "opened" });
  const stallMs = options.stallMsPerSave ?? 0;
  const beforeCommit = stallMs > 0 ? () => stall(stallMs) : undefined;
  let saves = 0;
  let failure: SerializedError | null = null;

  port.on("message", (req: Request) => {
    if (req.type === "save" && options.crashAfterSaves !== undefined && saves >= options.crashAfterSaves) {
      throw new Error(`simulated crash of the Raft log worker after ${saves} saves`); // uncaught: ends the thread
    }
    if (failure !== null && req.type !== "close") {
      send({ type: "failed", id: req.id, error: { name: "RaftLogError", code: "PG_ERR_RAFT_LOG_FAILED", message: `an earlier save failed: ${failure.message}` } });
      return;
    }
    try {
      switch (req.type) {
        case "save":
          store.save(req.hardState, req.entries, req.snapshot, beforeCommit);
          saves++;
          send({ type: "done", id: req.id });
          return;
        case "compact":
          store.compact(req.snapshot);
          send({ type: "done", id: req.id });
          return;
        case "load":
          send({ type: "loaded", id: req.id, storage: store.load() });
          return;
        case "close":
          store.close();
          send({ type: "done", id: req.id });
          port.close(); // nothing left to do: the thread ends
          return;
        default:
          assertNever(req, "request");
      }
    } catch (err) {
      failure = serialize(err);
      send({ type: "failed", id: req.id, error: failure });
    }
  });
}

if (!isMainThread && parentPort !== null) run(workerData as WorkerOptions);
