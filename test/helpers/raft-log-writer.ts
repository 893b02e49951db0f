// The child process of the Raft log kill -9 test (test/ledger/raft-log-store.test.ts):
//
//   node dist/test/helpers/raft-log-writer.js <raft.sqlite> <seed>
//
// Opens (or creates) the Raft log through AsyncRaftLog (so through the worker
// thread) and saves Ready-shaped batches as fast as it can, up to
// IN_FLIGHT_MAX saves pipelined, until it is killed: appends, term changes
// with votes, conflicting suffixes replaced by a later term, commit advances,
// compactions (compact(snapshot)) and snapshots received from a leader
// (save(..., snapshot), which replaces the whole log). Entry and snapshot
// payloads are a pure function of (term, index) so the parent can check every
// byte. It reports on stdout, one synchronous line each:
//   open <summary>          the log as loaded at start
//   begin <seq> <summary>   save <seq> is posted; <summary> is the log after it
//   ack <seq>               save <seq>'s promise resolved: it is durable
import { realpathSync, writeSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { AsyncRaftLog } from "../../ledger/raft/async-raft-log.js";
import { type Entry, EntryKind, type HardState, type RaftStorage, type Snapshot } from "../../ledger/raft/raft.js";
import { Rng } from "../../sim/rng.js";

const IN_FLIGHT_MAX = 4;
/** A safety net: an orphaned writer (its parent died) stops by itself. */
const RUN_TIME_MAX_MS = 30_000;
const ENTRY_BYTES_MIN = 16;
const ENTRY_BYTES_SPREAD = 4_000;

/** The payload of the entry (term, index): any byte out of place is detected by the parent. */
export function entryData(term: number, index: number): Uint8Array {
  const n = ENTRY_BYTES_MIN + ((term * 7919 + index * 31) % ENTRY_BYTES_SPREAD);
  const data = new Uint8Array(n);
  for (let i = 0; i < n; i++) data[i] = (term * 131 + index * 7 + i) & 0xff;
  return data;
}

/** The data of the snapshot (index, term) the writer makes. */
export function snapshotData(index: number, term: number): Uint8Array {
  return new TextEncoder().encode(`state at ${index}/${term}`);
}

interface SnapMeta {
  readonly index: number;
  readonly term: number;
}

/** One line naming a whole durable state: hard state, snapshot, then the log as runs of one term ("term@firstIndex"), then the last index. */
export function summarize(hs: HardState, snap: SnapMeta | null, terms: readonly number[]): string {
  const base = snap?.index ?? 0;
  const runs: string[] = [];
  terms.forEach((t, i) => {
    if (i === 0 || terms[i - 1] !== t) runs.push(`${t}@${base + i + 1}`);
  });
  return `hs=${hs.term}/${hs.vote ?? "-"}/${hs.commit} snap=${snap === null ? "-" : `${snap.index}/${snap.term}`} log=${runs.join(",")};${base + terms.length}`;
}

export function summarizeStorage(s: RaftStorage): string {
  return summarize(s.hardState, s.snapshot, s.entries.map((e) => e.term));
}

function say(line: string): void {
  writeSync(1, `${line}\n`); // synchronous: in the pipe before we go on
}

interface Model {
  hs: HardState;
  snap: SnapMeta | null;
  terms: number[]; // terms[i] is the term of entry snapIndex + 1 + i
}

type Op =
  | { readonly type: "save"; readonly hardState: HardState | null; readonly entries: Entry[]; readonly snapshot: Snapshot | null }
  | { readonly type: "compact"; readonly snapshot: Snapshot };

const snapIndexOf = (m: Model) => m.snap?.index ?? 0;
const lastIndexOf = (m: Model) => snapIndexOf(m) + m.terms.length;
const termOf = (m: Model, index: number) => (index === snapIndexOf(m) ? (m.snap?.term ?? 0) : (m.terms[index - snapIndexOf(m) - 1] as number));
const snapshotOf = (index: number, term: number): Snapshot => ({ index, term, voters: [1, 2, 3], learners: [], data: snapshotData(index, term) });

/** The next Ready-shaped save or compaction, applied to `m` (the state it leaves). */
function nextOp(rng: Rng, m: Model): Op {
  const r = rng.next();
  if (r < 0.08 && m.hs.commit > snapIndexOf(m)) {
    // The application compacts up to some committed index.
    const index = rng.int(snapIndexOf(m) + 1, m.hs.commit);
    const snapshot = snapshotOf(index, termOf(m, index));
    m.terms = m.terms.slice(index - snapIndexOf(m));
    m.snap = snapshot;
    return { type: "compact", snapshot };
  }
  let { term, vote, commit } = m.hs;
  const before = m.hs;
  if (term === 0 || rng.int(0, 9) === 0) {
    term++;
    vote = rng.pick([null, 1, 2, 3]);
  }
  let snapshot: Snapshot | null = null;
  let from = lastIndexOf(m) + 1;
  let count = 0;
  if (r < 0.13 && term > 0) {
    // A leader's snapshot beyond our commit: it replaces the whole log.
    snapshot = snapshotOf(Math.max(lastIndexOf(m), commit) + rng.int(0, 30), term);
    if (snapshot.index <= snapIndexOf(m)) snapshot = snapshotOf(snapIndexOf(m) + 1, term);
    m.snap = snapshot;
    m.terms = [];
    commit = snapshot.index;
    from = snapshot.index + 1;
    count = rng.int(0, 10);
  } else if (r < 0.75) {
    count = rng.int(1, 40);
  } else if (r < 0.9 && lastIndexOf(m) > commit) {
    // A new leader's entries conflict with our uncommitted suffix: a later term, replacing it from a random point.
    term++;
    vote = null;
    from = rng.int(commit + 1, lastIndexOf(m));
    count = rng.int(1, 20);
  }
  m.terms.length = from - 1 - snapIndexOf(m);
  const entries: Entry[] = [];
  for (let i = 0; i < count; i++) {
    entries.push({ term, index: from + i, kind: EntryKind.normal, data: entryData(term, from + i) });
    m.terms.push(term);
  }
  if (rng.int(0, 1) === 0) commit = rng.int(commit, lastIndexOf(m));
  m.hs = { term, vote, commit };
  const changed = term !== before.term || vote !== before.vote || commit !== before.commit;
  return { type: "save", hardState: changed || entries.length === 0 ? m.hs : null, entries, snapshot };
}

async function main(argv: readonly string[]): Promise<void> {
  const [path, seedText] = argv;
  if (path === undefined || seedText === undefined || !/^\d+$/.test(seedText)) {
    process.stderr.write("usage: raft-log-writer <raft.sqlite> <seed>\n");
    process.exit(2);
  }
  const log = await AsyncRaftLog.open(path);
  const loaded = await log.load();
  say(`open ${summarizeStorage(loaded)}`);
  const m: Model = { hs: loaded.hardState, snap: loaded.snapshot, terms: loaded.entries.map((e) => e.term) };
  const rng = new Rng(Number(seedText));
  const inFlight: Promise<void>[] = [];
  const startedMs = Date.now();
  for (let seq = 1; Date.now() - startedMs < RUN_TIME_MAX_MS; seq++) {
    const op = nextOp(rng, m);
    say(`begin ${seq} ${summarize(m.hs, m.snap, m.terms)}`);
    const done = op.type === "compact" ? log.compact(op.snapshot) : log.save(op.hardState, op.entries, op.snapshot);
    inFlight.push(done.then(() => say(`ack ${seq}`)));
    if (inFlight.length >= IN_FLIGHT_MAX) await inFlight.shift();
  }
  await Promise.all(inFlight);
  await log.close();
}

// Run only as a program, so that tests may import the helpers above.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
