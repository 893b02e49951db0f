// The deterministic test network for the Raft core tests (raft.test.ts,
// raft-membership.test.ts): every Ready is "persisted" into the node's
// storage (the snapshot first, then hard state and entries) before its
// messages are delivered; the state machine is the list of applied entries,
// and a snapshot's data is that list, so an installed state can be compared
// entry by entry. Links can be cut; nodes stopped and restarted from disk.
import assert from "node:assert/strict";
import { type Entry, EntryKind, type Message, type NodeId, RaftNode, type RaftStorage, type Ready, Role, type Snapshot } from "../../ledger/raft/raft.js";
import { Rng } from "../../sim/rng.js";

export const ELECTION = 10;
export const HEARTBEAT = 2;

interface Stored {
  hardState: RaftStorage["hardState"];
  snapshot: Snapshot | null;
  entries: Entry[];
}

const TEXT = new TextEncoder();
const UNTEXT = new TextDecoder();

/** The test state machine's snapshot data: the applied entries themselves, so an installed state can be compared entry by entry. */
export function stateData(applied: readonly Entry[]): Uint8Array {
  return TEXT.encode(JSON.stringify(applied.map((e) => [e.index, e.term, e.kind, UNTEXT.decode(e.data)])));
}
export function stateOf(data: Uint8Array): Entry[] {
  const rows = JSON.parse(UNTEXT.decode(data)) as [number, number, 0 | 1, string][];
  return rows.map(([index, term, kind, text]) => ({ index, term, kind, data: TEXT.encode(text) }));
}

export interface NetOptions {
  preVote?: boolean;
  checkQuorum?: boolean;
  learners?: NodeId[];
  /** Nodes that run from the start but are not in the initial configuration (boxes waiting to be added). */
  joiners?: NodeId[];
  logs?: Map<NodeId, Entry[]>;
  terms?: Map<NodeId, number>;
  seed?: number;
}

export class Net {
  readonly nodes = new Map<NodeId, RaftNode>();
  readonly disk = new Map<NodeId, Stored>();
  readonly applied = new Map<NodeId, Entry[]>(); // each node's state machine (an installed snapshot replaces it)
  readonly installed = new Map<NodeId, Snapshot[]>(); // snapshots each node received in a Ready
  readonly sent: Message[] = [];
  private readonly cut = new Set<string>(); // "from>to" links that drop messages
  dropIf: ((m: Message) => boolean) | null = null; // drops chosen messages too (counted in `sent`, not delivered)
  private readonly rng: Rng;

  constructor(
    readonly voters: NodeId[],
    readonly opts: NetOptions = {},
  ) {
    this.rng = new Rng(opts.seed ?? 1);
    for (const id of [...voters, ...(opts.learners ?? []), ...(opts.joiners ?? [])]) {
      const entries = opts.logs?.get(id) ?? [];
      this.disk.set(id, { hardState: { term: opts.terms?.get(id) ?? entries.at(-1)?.term ?? 0, vote: null, commit: 0 }, snapshot: null, entries: [...entries] });
      this.applied.set(id, []);
      this.installed.set(id, []);
      this.start(id);
    }
  }

  start(id: NodeId): RaftNode {
    const d = this.disk.get(id) as Stored;
    const node = new RaftNode(
      {
        id,
        voters: this.voters,
        learners: this.opts.learners ?? [],
        electionTicks: ELECTION,
        heartbeatTicks: HEARTBEAT,
        preVote: this.opts.preVote ?? false,
        checkQuorum: this.opts.checkQuorum ?? false,
        randomInt: (n) => this.rng.int(0, n - 1),
      },
      { hardState: d.hardState, snapshot: d.snapshot, entries: d.entries },
    );
    node.setApplied(Math.min(d.hardState.commit, (this.applied.get(id) ?? []).length));
    this.nodes.set(id, node);
    return node;
  }

  node(id: NodeId): RaftNode {
    return this.nodes.get(id) as RaftNode;
  }

  stop(id: NodeId): void {
    this.nodes.delete(id);
  }

  /** The application compacts: its state up to `index` becomes a snapshot, persisted with the entries dropped (one step). */
  compact(id: NodeId, index: number): Snapshot {
    const state = (this.applied.get(id) as Entry[]).slice(0, index);
    const s = this.node(id).compact(index, stateData(state));
    const d = this.disk.get(id) as Stored;
    d.snapshot = s;
    d.entries = d.entries.filter((e) => e.index > index);
    return s;
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) if (other !== id) (this.cut.add(`${id}>${other}`), this.cut.add(`${other}>${id}`));
  }

  heal(): void {
    this.cut.clear();
  }

  /** Persist one node's Ready, then hand back its messages (the contract's order). */
  private drain(id: NodeId): Message[] {
    const node = this.node(id);
    if (!node.hasReady()) return [];
    const rd: Ready = node.ready();
    const d = this.disk.get(id) as Stored;
    if (rd.snapshot !== null) {
      // First: it replaces the stored log and the state machine.
      d.snapshot = rd.snapshot;
      d.entries = [];
      this.applied.set(id, stateOf(rd.snapshot.data));
      this.installed.get(id)?.push(rd.snapshot);
    }
    if (rd.hardState !== null) d.hardState = rd.hardState;
    if (rd.entries.length > 0) {
      const first = (rd.entries[0] as Entry).index - 1 - (d.snapshot?.index ?? 0);
      d.entries = d.entries.slice(0, first).concat(rd.entries);
    }
    const applied = this.applied.get(id) as Entry[];
    for (const e of rd.committed) {
      assert.equal(e.index, applied.length + 1, `node ${id} applies in order`);
      applied.push(e);
    }
    node.advance(rd);
    return [...rd.messages];
  }

  /** Deliver until nothing moves (bounded). Returns the messages delivered. */
  pump(rounds = 100): Message[] {
    const delivered: Message[] = [];
    for (let r = 0; r < rounds; r++) {
      const batch = [...this.nodes.keys()].flatMap((id) => this.drain(id));
      if (batch.length === 0) return delivered;
      for (const m of batch) {
        this.sent.push(m);
        if (this.cut.has(`${m.from}>${m.to}`) || !this.nodes.has(m.to) || this.dropIf?.(m) === true) continue;
        delivered.push(m);
        this.node(m.to).stepMessage(m);
      }
    }
    throw new Error("the network did not settle");
  }

  tick(id: NodeId, times = 1): void {
    for (let i = 0; i < times; i++) {
      this.node(id).tick();
      this.pump();
    }
  }

  tickAll(times: number): void {
    for (let i = 0; i < times; i++) {
      for (const n of this.nodes.values()) n.tick();
      this.pump();
    }
  }

  /** Make `id` time out first: tick it alone until it campaigns, then let the network settle. */
  elect(id: NodeId): void {
    for (let i = 0; i < 3 * ELECTION && this.node(id).role !== Role.leader; i++) this.tick(id);
    assert.equal(this.node(id).role, Role.leader, `node ${id} became leader`);
  }

  leaders(): NodeId[] {
    return [...this.nodes.entries()].filter(([, n]) => n.role === Role.leader).map(([id]) => id);
  }

  /** Election safety: record each leader's term in `leaderOfTerm`, failing if a term ever has two. */
  checkOneLeaderPerTerm(leaderOfTerm: Map<number, NodeId>, label: string): void {
    for (const id of this.leaders()) {
      const t = this.node(id).term;
      const known = leaderOfTerm.get(t);
      assert.ok(known === undefined || known === id, `${label}: two leaders in term ${t}`);
      leaderOfTerm.set(t, id);
    }
  }

  propose(id: NodeId, text: string): void {
    assert.ok(this.node(id).propose(new TextEncoder().encode(text)), `node ${id} accepts a proposal`);
    this.pump();
  }

  logTerms(id: NodeId): number[] {
    const n = this.node(id);
    return n.entries(n.firstIndex).map((e) => e.term);
  }

  /** The applied sequence of a node as "index:term:text" (conf changes as "index:term:cc"). */
  state(id: NodeId): string[] {
    return (this.applied.get(id) as Entry[]).map((e) => `${e.index}:${e.term}:${e.kind === EntryKind.confChange ? "cc" : UNTEXT.decode(e.data)}`);
  }
}

export const entriesOfTerms = (terms: number[]): Entry[] => terms.map((term, i) => ({ term, index: i + 1, kind: EntryKind.normal, data: new TextEncoder().encode(`e${i + 1}t${term}`) }));
export const types = (ms: readonly Message[]): string[] => ms.map((m) => `${m.type} ${m.from}>${m.to} t${m.term}`);

