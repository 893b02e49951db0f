// One box's transaction sequence numbers. Everything a box signs with its
// key (its meters' readings, the orders and cancels of automatic bidding)
// takes its numbers here, one submission at a time: each transaction is
// signed with the next number only after the previous one was answered by
// the pool, so a later number can never reach a block before an earlier one
// (which the ledger would then refuse as stale), and two signers of one box
// never take one number.
//
// A number is used up only when the pool accepts its transaction; a refused
// one (pool full, author full) is taken by the next transaction. A number the
// ledger has already taken (a transaction committed before this box
// restarted, or by another process with the same key) is skipped: the next
// number is always past both this box's last accepted one and the ledger's.
import { lastSeqOf } from "../ledger/state.js";
import { type SignedTx, type Signer, type TxBody, signTx } from "../ledger/tx.js";
import type { BoxNode, SubmitOutcome } from "./node.js";

/** What BoxSequence needs of a node (daemon/node.ts BoxNode). */
export type SequenceNode = Pick<BoxNode, "ledger" | "submit">;

export class BoxSequence {
  private last: number;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly node: SequenceNode,
    readonly signer: Signer,
    /** The member index the box signs as. */
    readonly author: number,
  ) {
    this.last = lastSeqOf(node.ledger.state, author);
  }

  /** Sign `body` with the next number and submit it, after every earlier submission of this box was answered. */
  submit(body: TxBody): Promise<{ readonly tx: SignedTx; readonly out: SubmitOutcome }> {
    const run = this.queue.then(async () => {
      const state = this.node.ledger.state;
      const seq = Math.max(this.last, lastSeqOf(state, this.author)) + 1;
      const tx = signTx({ author: this.author, seq, body }, this.signer, state.chain.hash);
      const out = await this.node.submit(tx.bytes);
      if (out.ok) this.last = seq;
      return { tx, out };
    });
    this.queue = run.catch(() => undefined); // one failed submission never blocks the next
    return run;
  }

  /** Resolves once every submission so far has been answered. */
  async drain(): Promise<void> {
    await this.queue;
  }
}
