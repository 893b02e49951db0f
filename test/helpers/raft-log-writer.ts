// The child process of the Raft log kill -9 test (test/ledger/raft-log-store.test.ts):
//
//   node dist/test/helpers/raft-log-writer.js <raft.sqlite> <seed>
//
// Opens (or creates) the Raft log through AsyncRaftLog (so through the worker
// thread) and saves Ready-shaped batches as fast as it can, up to
// IN_FLIGHT_MAX saves pipelined, until it is killed: appends, term changes
// with votes, conflicting suffixes replaced by a later term, commit advances.
// Entry payloads are a pure function of (term, index) so the parent can check
// every byte. It reports on stdout, one synchronous line each:
//   open <summary>          the log as loaded at start
//   begin <seq> <summary>   save <seq> is posted; <summary> is the log after it
//   ack <seq>               save <seq>'s promise resolved: it is durable
import { realpathSync, writeSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { AsyncRaftLog } from "../../ledger/raft/async-raft-log.js";
import type { Entry, HardState, RaftStorage } from "../../ledger/raft/raft.js";
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

/** One line naming a whole durable state: hard state, then the log as runs of one term ("term@firstIndex"), then the last index. */
export function summarize(hs: HardState, terms: readonly number[]): string {
  const runs: string[] = [];
  terms.forEach((t, i) => {
    if (i === 0 || terms[i - 1] !== t) runs.push(`${t}@${i + 1}`);
  });
  return `hs=${hs.term}/${hs.vote ?? "-"}/${hs.commit} log=${runs.join(",")};${terms.length}`;
}

export function summarizeStorage(s: RaftStorage): string {
  return summarize(s.hardState, s.entries.map((e) => e.term));
}

function say(line: string): void {
  writeSync(1, `${line}\n`); // synchronous: in the pipe before we go on
}

interface Model {
  hs: HardState;
  terms: number[]; // terms[i] is the term of entry i + 1
}

/** The next Ready-shaped save, applied to `m` (the state it leaves). */
function nextSave(rng: Rng, m: Model): { hardState: HardState | null; entries: Entry[] } {
  let { term, vote, commit } = m.hs;
  const before = m.hs;
  let from = m.terms.length + 1;
  let count = 0;
  const r = rng.next();
  if (term === 0 || rng.int(0, 9) === 0) {
    term++;
    vote = rng.pick([null, 1, 2, 3]);
  }
  if (r < 0.75) {
    count = rng.int(1, 40);
  } else if (r < 0.9 && m.terms.length > commit) {
    // A new leader's entries conflict with our uncommitted suffix: a later term, replacing it from a random point.
    term++;
    vote = null;
    from = rng.int(commit + 1, m.terms.length);
    count = rng.int(1, 20);
  }
  m.terms.length = from - 1;
  const entries: Entry[] = [];
  for (let i = 0; i < count; i++) {
    entries.push({ term, index: from + i, kind: 0, data: entryData(term, from + i) });
    m.terms.push(term);
  }
  if (rng.int(0, 1) === 0) commit = rng.int(commit, m.terms.length);
  m.hs = { term, vote, commit };
  const changed = term !== before.term || vote !== before.vote || commit !== before.commit;
  return { hardState: changed || entries.length === 0 ? m.hs : null, entries };
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
  const m: Model = { hs: loaded.hardState, terms: loaded.entries.map((e) => e.term) };
  const rng = new Rng(Number(seedText));
  const inFlight: Promise<void>[] = [];
  const startedMs = Date.now();
  for (let seq = 1; Date.now() - startedMs < RUN_TIME_MAX_MS; seq++) {
    const { hardState, entries } = nextSave(rng, m);
    say(`begin ${seq} ${summarize(m.hs, m.terms)}`);
    inFlight.push(log.save(hardState, entries).then(() => say(`ack ${seq}`)));
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
