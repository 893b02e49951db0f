// A box's ledger: the pure state machine joined to its SQLite store. This is
// a shell (it does I/O); the rules live in state.ts.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { assert, bytesEqual } from "./assert.js";
import { type Block, buildBlock } from "./block.js";
import type { Genesis } from "./genesis.js";
import { type ApplyResult, type LedgerState, applyBlock } from "./state.js";
import { type Checkpoint, LedgerStore, type OpenOptions } from "./store.js";
import type { SignatureVerifier, SignedTx, Signer } from "./tx.js";

export const LEDGER_FILE = "ledger.sqlite";

export function ledgerPath(dataDir: string): string {
  return join(dataDir, LEDGER_FILE);
}

export class Ledger {
  private current: LedgerState;

  private constructor(
    readonly store: LedgerStore,
    private readonly verifier: SignatureVerifier,
  ) {
    this.current = store.loadState();
  }

  static create(dataDir: string, genesis: Genesis, verifier: SignatureVerifier): Ledger {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    return new Ledger(LedgerStore.create(ledgerPath(dataDir), genesis), verifier);
  }

  static open(dataDir: string, verifier: SignatureVerifier, options: OpenOptions = {}): Ledger {
    return new Ledger(LedgerStore.open(ledgerPath(dataDir), options), verifier);
  }

  get state(): LedgerState {
    return this.current;
  }

  /** Validate, apply and durably store one block; the state moves only when the write committed. */
  append(block: Block): ApplyResult {
    const result = applyBlock(this.current, block, this.verifier);
    this.commitApplied(block, result);
    return result;
  }

  /** Store a block already applied to this ledger's current state (replicated.ts applyEntry did it). */
  commitApplied(block: Block, result: ApplyResult): void {
    assert(result.state.height === this.current.height + 1 && bytesEqual(block.header.parentHash, this.current.blockHash), "the result extends the head");
    this.store.appendBlock(block, result.results, result.state, result.changes, result.market);
    this.current = result.state;
  }

  /**
   * Install a checkpoint of the state after block B in place of the blocks
   * this ledger lacks (store.ts installCheckpoint: checked, one SQLite
   * transaction); the state moves to it only once written.
   */
  installCheckpoint(header: Uint8Array, nextHeader: Uint8Array, records: Iterable<{ readonly key: string; readonly value: Uint8Array }>): Checkpoint {
    const c = this.store.installCheckpoint(header, nextHeader, records);
    this.current = this.store.loadState();
    assert(this.current.height === c.height, "the ledger stands at the installed checkpoint");
    return c;
  }

  /** Build and sign the next block on top of this ledger (the proposer's side). */
  propose(txs: readonly SignedTx[], signer: Signer, proposer: number, timeMs: number, raftTerm: number, raftIndex: number): Block {
    const s = this.current;
    const block = buildBlock(
      { height: s.height + 1, parentHash: s.blockHash, timeMs, stateRoot: s.tree.root, proposer, raftTerm, raftIndex, txs },
      signer,
      s.chain.hash,
    );
    assert(bytesEqual(block.header.parentHash, s.blockHash), "a proposal extends the head");
    return block;
  }

  close(): void {
    this.store.close();
  }
}
